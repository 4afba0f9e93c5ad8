/* provider.h -- the email provider behind one interface: what the controllers call */
#ifndef MILO_PROVIDER_H
#define MILO_PROVIDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct metrics;
struct provider;
struct provider_http;

/*
 * The controllers never know which provider they talk to. Each
 * implementation (provider_resend.c, provider_mailgun.c) owns only what it
 * made, with names or addresses derived from <namespace>/<name> so that a
 * crash between a create and the status write adopts instead of making a
 * second; it never sends a field its API does not type. A third provider
 * is one file and one line in the table in provider.c.
 *
 * Every call makes its requests once (lib/provider_http.h): a failure
 * goes back to the controller, which queues the object again with a delay
 * instead of sleeping in the worker.
 */

/* A ContactGroup as a provider sees it (all borrowed). */
struct provider_group {
	const char *namespace, *name;
	const char *display_name;
	const char *description;	/* or NULL */
	const char *id;			/* status.providerID when known, else NULL */
};

/* A Contact as a provider sees it (all borrowed). */
struct provider_contact {
	const char *namespace, *name;
	const char *email;
	const char *given_name, *family_name;	/* or NULL */
	const char *id;			/* status.providerID when known, else NULL */
};

/* What a successful ensure did, for Events and logs. */
enum provider_change {
	PROVIDER_UNCHANGED,
	PROVIDER_CREATED,
	PROVIDER_ADOPTED,	/* found what an earlier attempt made */
	PROVIDER_UPDATED,
};

const char *provider_change_name(enum provider_change c);	/* "created", ... */

/*
 * Beyond 0 and negative errno codes (-ENOMEM, -ECANCELED: this replica
 * lost its lease, nothing was sent), the calls return:
 */
#define PROVIDER_REFUSED (-4000)	/* 400, 404, 422…: this object's request is wrong */
#define PROVIDER_UNAUTHORIZED (-4001)	/* 401, 403: the API key, not the object */
#define PROVIDER_RETRY (-4002)		/* 429, 409 locked, 5xx, no answer: try again later */
/*
 * member_add only: queued for a bulk request with other members of the
 * group; nothing failed. Call again after e->retry_after_ms for the outcome.
 */
#define PROVIDER_PENDING (-4003)

/* Why a call failed (for status, Events and the log). */
struct provider_error {
	char *message;		/* malloc'd: "HTTP 422 validation_error: …" */
	long retry_after_ms;	/* what the provider asked for, or -1 */
};

void provider_error_free(struct provider_error *e);

/* A provider event (a webhook delivery), decoded. */
struct provider_event {
	char *id;		/* the delivery's id, for deduplication (svix-id, token) */
	char *type;		/* "contact.updated", "unsubscribed", … */
	char *email;		/* the recipient, or NULL */
	json_t *group_ids;	/* array of provider group ids the event names, or NULL */
	char *object_id;	/* the provider's id of what the event is about, or NULL */
	long long time_ms;	/* when it happened at the provider (Unix ms), or 0 */
	int unsubscribed;	/* 1, 0, or -1 when the event does not say */
};

void provider_event_free(struct provider_event *ev);

/* A group (segment, mailing list) as the provider lists it, for the audit (borrowed). */
struct provider_group_info {
	const char *id;
	const char *name;		/* its name as the provider shows it */
	const char *description;	/* or NULL */
};

/* A member of a group as the provider lists it, for the audit (borrowed). */
struct provider_member_info {
	const char *contact_id;		/* the provider's contact id (Mailgun: the address) */
	const char *email;
	const char *given_name, *family_name;	/* or NULL */
	int unsubscribed;		/* 1, 0, or -1 when the provider does not say */
};

/* Called per listed item; a nonzero return stops the listing (and is returned). */
typedef int (*provider_group_fn)(const struct provider_group_info *g, void *arg);
typedef int (*provider_member_fn)(const struct provider_member_info *m, void *arg);

/* One header of a webhook delivery (case-insensitive name), or NULL. */
typedef const char *(*provider_header_fn)(const void *arg, const char *name);

struct provider_ops {
	const char *name;	/* "resend": the --provider value */

	/*
	 * Creates the group's list or segment, or adopts the one an earlier
	 * attempt made, or updates the known one (g->id) to match; *id gets
	 * the provider id (malloc'd). A known id the provider lost is made
	 * again (*did: created).
	 */
	int (*group_ensure)(struct provider *p, const struct provider_group *g, char **id,
	    enum provider_change *did, struct provider_error *e);
	int (*group_delete)(struct provider *p, const struct provider_group *g,
	    struct provider_error *e);

	/*
	 * Creates, adopts or updates the contact (c->id known or not): an email
	 * change keeps the provider's contact and its memberships. group_ids
	 * are the provider ids of the groups the contact is a member of, for a
	 * provider whose members carry the address. *id gets the provider id.
	 */
	int (*contact_ensure)(struct provider *p, const struct provider_contact *c,
	    const char *const *group_ids, size_t n_groups, char **id,
	    enum provider_change *did, struct provider_error *e);
	int (*contact_delete)(struct provider *p, const struct provider_contact *c,
	    const char *const *group_ids, size_t n_groups, struct provider_error *e);

	/*
	 * The contact (its provider id known) into or out of a group.
	 * Idempotent. member_add may answer PROVIDER_PENDING (a provider that
	 * gathers many adds to one group into a bulk request).
	 */
	int (*member_add)(struct provider *p, const char *group_id,
	    const struct provider_contact *c, struct provider_error *e);
	int (*member_remove)(struct provider *p, const char *group_id,
	    const struct provider_contact *c, struct provider_error *e);

	/*
	 * The audit's reads (--provider-audit-period), with the largest page
	 * the provider allows: every group of the account, and every member
	 * of one group (a group the provider no longer has: -ENOENT).
	 */
	int (*list_groups)(struct provider *p, provider_group_fn fn, void *arg,
	    struct provider_error *e);
	int (*list_members)(struct provider *p, const char *group_id, provider_member_fn fn,
	    void *arg, struct provider_error *e);
	/*
	 * Whether a listed group is one this reconciler made, and for which
	 * ContactGroup: 1 with ns and name filled (from the "[ns/name]" suffix,
	 * an address or a description the implementation derived), else 0.
	 */
	int (*group_owner)(struct provider *p, const struct provider_group_info *g, char *ns,
	    size_t ns_len, char *name, size_t name_len);

	/*
	 * Verifies and decodes one webhook delivery. Returns the HTTP status
	 * to answer (200: ev filled; 401: bad signature; 400: not an event of
	 * this provider) and a short reason in *why.
	 */
	int (*event_parse)(struct provider *p, provider_header_fn header, const void *header_arg,
	    const char *body, size_t len, struct provider_event *ev, const char **why);

	void (*free)(struct provider *p);
};

/* What every implementation's struct starts with. */
struct provider {
	const struct provider_ops *ops;
	struct provider_http *http;	/* rate-limited requests; owned */
};

/* Settings from the command line; the implementation takes what it needs. */
struct provider_options {
	const char *base_url;		/* NULL: the provider's default */
	const char *api_key;		/* required; never logged */
	double rate;			/* requests per second; <= 0: the provider's default */
	const char *ca_file;		/* extra trust for a test server */
	const char *domain;		/* Mailgun: the mailing lists' domain */
	unsigned long bulk_window_ms;	/* Mailgun: adds closer than this are sent in bulk; 0: never */
	const unsigned char *webhook_key;	/* the webhooks' signing key, or NULL */
	size_t webhook_key_len;
	const char *user_agent;
	struct metrics *metrics;
	long (*write_budget_ms)(void *arg);	/* see lib/provider_http.h */
	void *write_budget_arg;
};

/*
 * Makes the named provider. Returns 0, -ENOENT for an unknown name (err
 * lists the known ones), -EINVAL for missing settings, -ENOMEM.
 */
int provider_new(const char *name, const struct provider_options *o, struct provider **out,
    char *err, size_t errlen);
void provider_free(struct provider *p);
/* The names provider_new() knows, "resend, …". Static. */
const char *provider_names(void);

/*
 * For implementations: turns a failed provider_http_call() into a return
 * code and *e (the result is freed). A DELETE of what is gone is no
 * failure: pass ok_404.
 */
struct provider_http_result;
int provider_fail(int rc, struct provider_http_result *res, struct provider_error *e);

/* The implementations (provider.c's table). */
int provider_resend_new(const struct provider_options *o, struct provider **out,
    char *err, size_t errlen);
int provider_mailgun_new(const struct provider_options *o, struct provider **out,
    char *err, size_t errlen);

/* The common "<display name> [<namespace>/<name>]" a segment or list is named. */
char *provider_owned_name(const char *display_name, const char *ns, const char *name);

#endif
