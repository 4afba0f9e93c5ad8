/* reconciler.h -- contact-reconciler: provider sync's private declarations */
#ifndef MILO_RECONCILER_H
#define MILO_RECONCILER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "resource.h"

#define RECONCILER_PROGRAM "contact-reconciler"
#define RECONCILER_CONTROLLER "notification.miloapis.com/contact-reconciler"
#define RECONCILER_DEFAULT_PORT 9444
#define RECONCILER_DEFAULT_WORKERS 2
#define RECONCILER_DEFAULT_RESYNC_S 600		/* every object re-examined (cheaply) */
#define RECONCILER_EVENT_BODY_MAX (1u << 20)	/* a provider webhook body */
#define RECONCILER_SEEN_IDS 4096		/* svix-ids remembered for deduplication */

struct cache;
struct kube_client;
struct resend;
struct metrics;
struct metric;
struct workqueue;

/* Everything a reconcile needs; shared, read-only after start (borrowed). */
struct reconciler {
	struct kube_client *kube;
	struct cache *cache;
	struct resend *resend;
	struct workqueue *queue;
	const char *instance;		/* reportingInstance of Events: the pod name */
	struct metric *m_reconciles;	/* {kind, result} */
	struct metric *m_depth;
};

/* controller.c */

/* "Contact/ns/name" into out; 0 or -ENAMETOOLONG. */
int reconciler_key(char *out, size_t len, enum resource_kind kind, const char *ns,
    const char *name);

/*
 * Reconciles one key. Returns 0 when done, a positive number of
 * milliseconds after which to look again (waiting on something), or a
 * negative code for a failure to retry with backoff.
 */
long reconciler_run(struct reconciler *r, const char *key);

/*
 * Records an Event on a Contact and, for an unsubscribe reported by the
 * provider, sets its ProviderUnsubscribed condition. Used by events.c.
 */
int reconciler_contact_event(struct reconciler *r, const char *ns, const char *name,
    const char *type, const char *reason, const char *note, int unsubscribed);

/*
 * Records the Event also on the Contact's memberships whose provider
 * segment is among segment_ids (the event's data.segment_ids). Returns how
 * many got it.
 */
int reconciler_membership_events(struct reconciler *r, const char *ns, const char *name,
    const json_t *segment_ids, const char *type, const char *reason, const char *note);

/* provider.c: the Resend side of each kind. Strings returned are malloc'd. */

/* The segment name for a group: "<displayName> [<namespace>/<name>]". */
char *provider_segment_name(const char *display_name, const char *ns, const char *name);
/*
 * Finds the segment whose name carries this group's "[ns/name]" suffix (an
 * adoption after a crash) or creates one. *id is set on success.
 */
int provider_segment_ensure(struct resend *p, const char *want_name, const char *ns,
    const char *name, char **id, bool *created, char **why);
int provider_segment_rename(struct resend *p, const char *id, const char *want_name,
    char **why);
int provider_segment_delete(struct resend *p, const char *id, char **why);

/*
 * Creates or updates the provider contact for email; id (NULL when not
 * known yet) is updated in place: an email change moves the same contact.
 */
int provider_contact_ensure(struct resend *p, const char *known_id, const char *email,
    const char *given, const char *family, char **id, bool *created, char **why);
int provider_contact_delete(struct resend *p, const char *id, char **why);
int provider_membership_add(struct resend *p, const char *contact_id,
    const char *segment_id, char **why);
int provider_membership_remove(struct resend *p, const char *contact_id,
    const char *segment_id, char **why);

/*
 * Beyond negative errno codes, the provider functions return these when
 * the provider refused the request (a 4xx other than 429 and 409):
 * retrying the same request cannot help.
 */
#define PROVIDER_REFUSED (-4000)	/* 400, 404, 422…: this object's request is wrong */
#define PROVIDER_UNAUTHORIZED (-4001)	/* 401, 403: the API key, not the object */

/*
 * True when a provider failure is the caller's (a refusal, or an HTTP 4xx
 * other than 429 and 409 when rc is -EIO): do not retry in a loop.
 */
bool provider_error_is_permanent(int rc, long status);

/* events.c: POST /webhooks/resend */
struct provider_events;

int provider_events_new(struct reconciler *r, const unsigned char *secret,
    size_t secret_len, struct provider_events **out);
void provider_events_free(struct provider_events *e);

/*
 * Handles one delivery: verifies the Svix signature (401 on failure),
 * drops a repeated svix-id (200), and records an Event on the matching
 * Contact. Returns the HTTP status to answer and a short reason in *why.
 */
int provider_events_handle(struct provider_events *e, const char *id,
    const char *timestamp, const char *signature, const char *body, size_t len,
    const char **why);

#endif
