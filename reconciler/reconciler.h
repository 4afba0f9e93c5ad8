/* reconciler.h -- contact-reconciler: provider sync's private declarations */
#ifndef MILO_RECONCILER_H
#define MILO_RECONCILER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "flags.h"
#include "provider.h"
#include "resource.h"
#include "tls.h"

#define RECONCILER_PROGRAM "contact-reconciler"
#define RECONCILER_CONTROLLER "notification.miloapis.com/contact-reconciler"
#define RECONCILER_DEFAULT_PORT 9444
#ifndef MILO_VERSION
#define MILO_VERSION "0.1.0"
#endif
#define RECONCILER_VERSION MILO_VERSION
#define RECONCILER_DEFAULT_WORKERS 2
#define RECONCILER_MAX_WORKERS 32
#define RECONCILER_DEFAULT_RESYNC_S 600		/* every object re-examined (cheaply) */
#define RECONCILER_DEFAULT_AUDIT_S 3600		/* the provider read back and compared */
#define RECONCILER_MAILGUN_BULK_WINDOW_MS 250	/* --mailgun-bulk-window */
#define RECONCILER_EVENT_BODY_MAX (1u << 20)	/* a provider webhook body */
/* A queue key "Kind/namespace/name": a kind, a label (63) and a subdomain (253). */
#define RECONCILER_KEY_MAX 512
/* A membership's providerID "<contact id>/<group id>": with Mailgun two addresses. */
#define RECONCILER_PROVIDER_ID_MAX 512
#define RECONCILER_SEEN_IDS 4096		/* delivery ids remembered in memory */
#define RECONCILER_EVENT_IDS 16			/* delivery ids kept in a Contact's status */

struct audit;
struct cache;
struct kube_client;
struct metrics;
struct metric;
struct provider;
struct workqueue;

/* Everything a reconcile needs; shared, read-only after start (borrowed). */
struct reconciler {
	struct kube_client *kube;
	struct cache *cache;
	struct provider *provider;
	struct workqueue *queue;
	const char *instance;		/* reportingInstance of Events: the pod name */
	struct audit *audit;		/* the provider audit's metrics, or NULL */
};

/* flags.c */

/* One provider's settings from the command line. */
struct reconciler_provider_flags {
	const char *api_key_file;
	const char *base_url;
	double rate;			/* 0: the provider's default */
	const char *ca_file;
	const char *webhook_secret_file;
	const char *domain;		/* Mailgun */
	uint64_t bulk_window_ms;	/* Mailgun: --mailgun-bulk-window */
};

struct reconciler_options {
	const char *kubeconfig;
	const char *bind_address;
	long port;
	const char *cert_dir;
	const char *cert_file, *key_file;
	enum tls_min_version tls_min_version;
	bool leader_elect;
	const char *lease_namespace;
	const char *lease_name;
	uint64_t lease_duration_ms, renew_deadline_ms, retry_period_ms;
	const char *provider;
	struct reconciler_provider_flags resend, mailgun;
	long workers;
	uint64_t resync_ms;
	uint64_t audit_period_ms;	/* --provider-audit-period; 0: no audits */
	const char *log_level;
	bool metrics_auth;
};

void reconciler_options_defaults(struct reconciler_options *o);
enum flags_result reconciler_parse_flags(int argc, char **argv, struct reconciler_options *o,
    char *err, size_t errlen);

/* controller.c */

/* "Contact/ns/name" into out; 0 or -ENAMETOOLONG. */
int reconciler_key(char *out, size_t len, enum resource_kind kind, const char *ns,
    const char *name);

/* How one reconcile ended, controller-runtime's way. */
struct reconcile_result {
	const char *result;	/* "success", "error", "requeue", "requeue_after" (metric label) */
	bool backoff;		/* put the key back after its per-key backoff */
	unsigned long after_ms;	/* put it back after this (with backoff: at least this) */
};

/*
 * Reconciles one key. Never sleeps on a retry: a failure comes back as
 * backoff (and the provider's retry-after as after_ms) for the worker to
 * queue the key again while it takes the next one.
 */
void reconciler_run(struct reconciler *r, const char *key, struct reconcile_result *out);

/* The controller a key belongs to: "contact", "contactgroup", … (static). */
const char *reconciler_controller(const char *key);

/*
 * A provider event for the Contact ns/name: recorded as an Event unless
 * the Contact's status.providerEvents shows it is a repeat (its id is
 * among the newest RECONCILER_EVENT_IDS kept) or, for an event that
 * changes the subscription, older than the newest such event (its time);
 * ProviderUnsubscribed then follows it. This survives restarts: a replay
 * or a late older event changes nothing. Returns 0, -EALREADY (ignored),
 * -ENOENT (no such Contact) or an API error.
 */
int reconciler_provider_event(struct reconciler *r, const char *ns, const char *name,
    const struct provider_event *ev, const char *type, const char *reason, const char *note);

/*
 * Records the Event also on the Contact's memberships whose provider
 * group is among group_ids (the event's list or segments). Returns how
 * many got it.
 */
int reconciler_membership_events(struct reconciler *r, const char *ns, const char *name,
    const json_t *group_ids, const char *type, const char *reason, const char *note);

/* An events.k8s.io/v1 Event on kind ns/name (uid may be NULL). Best effort. */
void reconciler_event(struct reconciler *r, enum resource_kind kind, const char *ns,
    const char *name, const char *uid, const char *type, const char *reason,
    const char *action, const char *note);

/*
 * The provider audit found drift on kind ns/name. When the object is done
 * and says so (settled, Ready=True), its status is marked: Ready and
 * ProviderSynced False with reason ProviderDrift, and ProviderDrift=True
 * with reason (the drift's kind, "MemberMissing"…) and found (what the
 * audit saw); forget_id drops status.providerID, for a provider object that
 * is gone. The write queues the object through the watch, and the
 * controller's own reconcile repairs the provider: the status write that
 * makes Ready True again closes the drift (ProviderDrift=False, reason
 * Repaired) and records a Warning Event ProviderDriftRepaired saying what
 * was found and what was done. The mark is in the API server, so a crash
 * loses nothing: the resync queues unsettled objects. Returns 1 (marked),
 * 0 (gone, or changed since: being reconciled), or an API error.
 */
int reconciler_drift_mark(struct reconciler *r, enum resource_kind kind, const char *ns,
    const char *name, const char *reason, bool forget_id, const char *found);

/* audit.c: --provider-audit-period */

struct audit_config {
	uint64_t period_ms;		/* 0: no audits (the metrics still exist) */
	bool (*leading)(void *arg);	/* may this replica write now? */
	void *arg;
	struct metrics *metrics;
};

/*
 * The audit of r's provider (borrowed; r->audit is set). Registers its
 * metrics. Returns 0 or -ENOMEM.
 */
int audit_new(struct reconciler *r, const struct audit_config *c, struct audit **out);
/* Starts the audit thread (nothing with period 0). 0 or -EAGAIN. */
int audit_start(struct audit *a);
/* Stops and joins it: an audit in progress ends at its next step. Idempotent. */
void audit_stop(struct audit *a);
void audit_free(struct audit *a);
/* Counts one repaired drift in milo_provider_drift_repaired_total (reason: a ProviderDrift reason). */
void audit_count_repair(struct reconciler *r, const char *reason);

/* events.c: POST /webhooks/<provider> */
struct provider_events;

int provider_events_new(struct reconciler *r, struct provider_events **out);
void provider_events_free(struct provider_events *e);

/*
 * Handles one delivery: the provider verifies and decodes it (401 for a
 * bad signature, 400 for what is not its event), a repeated id is dropped
 * (200), and an Event is recorded on the matching Contact (503 when the
 * API server failed us, so the provider delivers it again). Returns the
 * HTTP status to answer and a short reason in *why.
 */
int provider_events_handle(struct provider_events *e, provider_header_fn header, const void *arg,
    const char *body, size_t len, const char **why);

#endif
