/* kube.h -- a small Kubernetes API client on libcurl */
#ifndef MILO_KUBE_H
#define MILO_KUBE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kubeconfig.h"

/*
 * An API path with room for any object the four kinds can name:
 * "/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>/<subresource>"
 * with a namespace of at most 63 characters (an RFC 1123 label), a name of
 * at most 253 (a subdomain), group, plural and subresource far shorter.
 */
#define KUBE_PATH_MAX 1024
#define KUBE_TIMEOUT_MS 10000		/* one ordinary call, end to end */
/*
 * TCP connect and TLS handshake together (libcurl counts both): client-go's
 * TLSHandshakeTimeout is 10 s. Both are cut to a thread's deadline (below),
 * which is what keeps a webhook's review inside its timeout.
 */
#define KUBE_CONNECT_TIMEOUT_MS 10000
#define KUBE_RESPONSE_MAX (64u << 20)	/* a larger response is refused */
#define KUBE_TOKEN_REREAD_S 60		/* token file re-read period (client-go: 1 min) */
#define KUBE_LIST_PAGE 500		/* default list page size */

struct kube_client;

/*
 * The outcome of one call. body is the parsed JSON answer (an object) when
 * there was one; for a failure reason and message come from the API's
 * Status object, or describe the transport error.
 */
struct kube_response {
	long status;		/* HTTP status; 0 when no answer arrived */
	json_t *body;		/* owned */
	char *reason;		/* Status.reason ("NotFound", "Conflict", …) or NULL */
	char *message;		/* Status.message, or what went wrong */
};

void kube_response_free(struct kube_response *r);

/*
 * Creates a client from a resolved configuration (copied). Thread-safe:
 * calls may come from several threads; connections are reused. Returns 0
 * or a negative errno-style code with a reason in err.
 */
int kube_client_new(const struct kube_config *cfg, struct kube_client **out,
    char *err, size_t errlen);
void kube_client_free(struct kube_client *c);

/* The server URL, e.g. for logs. Borrowed. */
const char *kube_client_server(const struct kube_client *c);

/*
 * One request. path starts with "/" (query included); body is sent as
 * JSON with content_type (NULL: application/json). Returns 0 for a 2xx
 * answer; -EIO for any other HTTP status (see out->status and
 * out->reason); -ETIMEDOUT, -ECONNREFUSED or -EPROTO when no answer came;
 * -EFBIG when the answer exceeded KUBE_RESPONSE_MAX; -ENOMEM.
 * A 401 makes the client re-read its token file and try once more.
 */
int kube_request(struct kube_client *c, const char *method, const char *path,
    const char *content_type, const json_t *body, struct kube_response *out);

/*
 * Per-thread limits on the calls kube_request() (and every verb below)
 * makes on the calling thread, for servers whose threads answer others
 * under a deadline. Watches are not affected.
 *
 * A deadline (a clock_mono_ms() instant; 0: none) cuts the connect and
 * total timeouts of each call to what is left of it, so a call that
 * hangs returns -ETIMEDOUT by then; a call made after it fails at once
 * with -ETIMEDOUT.
 *
 * A ban (why: a phrase saying why, kept by pointer, e.g. "too many
 * lookups in flight"; NULL lifts it) makes every call fail at once with
 * -EWOULDBLOCK, its message naming the call and why, without touching
 * the network; kube_thread_refused() counts those since the ban was set,
 * so a caller can tell that its answer needed the API server and ask
 * again on a thread that may wait.
 */
void kube_thread_deadline(uint64_t deadline_ms);
void kube_thread_forbid(const char *why);
unsigned int kube_thread_refused(void);

/* Status reasons, for callers deciding what a failure means. */
bool kube_is_not_found(const struct kube_response *r);
bool kube_is_conflict(const struct kube_response *r);	/* stale resourceVersion */
bool kube_is_already_exists(const struct kube_response *r);
bool kube_is_gone(const struct kube_response *r);	/* 410: Gone or Expired */
bool kube_is_unreachable(const struct kube_response *r); /* no answer, or 5xx */

/*
 * Builds an API path into out:
 *   /apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/<sub>]]
 * group "" means the core API (/api/v1). Returns 0 or -ENAMETOOLONG.
 */
int kube_path(char *out, size_t len, const char *group, const char *version,
    const char *namespace, const char *plural, const char *name,
    const char *subresource);

/* The verbs, on a path built by kube_path(). */
int kube_get(struct kube_client *c, const char *path, struct kube_response *out);
int kube_create(struct kube_client *c, const char *collection, const json_t *obj,
    struct kube_response *out);
int kube_update(struct kube_client *c, const char *path, const json_t *obj,
    struct kube_response *out);
int kube_merge_patch(struct kube_client *c, const char *path, const json_t *patch,
    struct kube_response *out);
int kube_json_patch(struct kube_client *c, const char *path, const json_t *ops,
    struct kube_response *out);
int kube_delete(struct kube_client *c, const char *path, struct kube_response *out);

/*
 * One page of a list: limit 0 means KUBE_LIST_PAGE; cont is the previous
 * page's metadata.continue or NULL. The page is out->body.
 */
int kube_list_page(struct kube_client *c, const char *collection,
    unsigned int limit, const char *cont, struct kube_response *out);

/*
 * Runs fn until it succeeds or fails with something other than a
 * conflict, at most 5 times with 10 ms backoff and jitter (client-go's
 * retry.DefaultRetry). fn re-reads the object and re-applies its change.
 */
int kube_retry_on_conflict(int (*fn)(void *arg, struct kube_response *out),
    void *arg, struct kube_response *out);

/* What a SubjectAccessReview asks. */
struct kube_access {
	const char *user;
	const char *uid;
	const json_t *groups;	/* array of strings, or NULL */
	const json_t *extra;	/* object of string arrays, or NULL */
	const char *verb;
	const char *group;
	const char *resource;
	const char *namespace;
	const char *name;
	const char *path;	/* a non-resource URL ("/metrics"): asked as
				 * nonResourceAttributes {path, verb}; the
				 * resource fields are then not sent */
};

/*
 * Asks the API server whether the user may do it. Returns 0 with *allowed
 * set (and *reason, malloc'd or NULL, the authorizer's reason), or the
 * error of the create call.
 */
int kube_access_review(struct kube_client *c, const struct kube_access *a,
    bool *allowed, char **reason, struct kube_response *out);

/*
 * Asks the API server who a bearer token belongs to (an
 * authentication.k8s.io/v1 TokenReview, no audiences: the API server's
 * own). Returns 0 with *authenticated set and, when it is, *user (a new
 * reference to status.user: username, uid, groups, extra); *error gets
 * status.error (malloc'd) or NULL. Otherwise the error of the create
 * call. The token is sent in the body and never logged; out->body echoes
 * it, so free out promptly.
 */
int kube_token_review(struct kube_client *c, const char *token,
    bool *authenticated, json_t **user, char **error, struct kube_response *out);

/* What an events.k8s.io/v1 Event is about and says. */
struct kube_event {
	const char *namespace;
	const char *regarding_api_version;
	const char *regarding_kind;
	const char *regarding_name;
	const char *regarding_uid;
	const char *type;		/* "Normal" or "Warning" */
	const char *reason;		/* ≤ 128 characters, CamelCase */
	const char *action;		/* ≤ 128 characters */
	const char *note;		/* ≤ 1 kB; longer is cut */
	const char *reporting_controller;
	const char *reporting_instance;
};

int kube_event_create(struct kube_client *c, const struct kube_event *e,
    struct kube_response *out);

/*
 * A watch: streams events from path (a collection, "?watch=1…" added
 * here) starting after resource_version, for at most timeout_s seconds
 * (the server ends the stream then; must be above 0). fn is called for
 * every event with its type ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
 * and object (borrowed); a non-zero return stops the watch and is
 * returned. An ERROR event ends the watch: -EXDEV for 410 Gone (relist),
 * else -EIO, with the Status in out. *stop is polled about once a second.
 * Returns 0 when the server closed the stream, or a kube_request() error.
 */
typedef int (*kube_watch_fn)(const char *type, json_t *object, void *arg);

int kube_watch(struct kube_client *c, const char *collection,
    const char *resource_version, unsigned int timeout_s,
    kube_watch_fn fn, void *arg, const atomic_bool *stop,
    struct kube_response *out);

#endif
