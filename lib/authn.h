/* authn.h -- delegated authentication and authorization of HTTP requests (TokenReview, SubjectAccessReview) */
#ifndef MILO_AUTHN_H
#define MILO_AUTHN_H

#include <stddef.h>

#include "httpd.h"

struct kube_client;
struct metrics;

/*
 * /metrics protected as kubebuilder scaffolds it today, with
 * controller-runtime's filters.WithAuthenticationAndAuthorization
 * (pkg/metrics/filters/filters.go): the bearer token is checked with a
 * TokenReview, then a SubjectAccessReview asks whether its user may
 * <lower-case method> the non-resource URL <path>. Outcomes are cached
 * for the times controller-runtime uses, so a scrape every few seconds
 * costs no API call.
 */
#define AUTHN_TOKEN_TTL_S 60	/* a token's review, either outcome (CacheTTL) */
#define AUTHN_ALLOW_TTL_S 300	/* an allowed decision (AllowCacheTTL) */
#define AUTHN_DENY_TTL_S 30	/* a denied decision (DenyCacheTTL) */
#define AUTHN_CACHE_MAX 512	/* cached reviews; past it the one nearest expiry goes */
#define AUTHN_TOKEN_MAX 16384	/* longer Authorization headers are refused (401) */
#define AUTHN_NAME_MAX 256	/* a user name as quoted in an answer */

struct authn_config {
	struct kube_client *client;	/* borrowed; must outlive the authn */
	struct metrics *metrics;	/* optional: milo_metrics_auth_* counters */
	/* 0: the defaults above (tests shorten them) */
	unsigned int token_ttl_s, allow_ttl_s, deny_ttl_s;
};

struct authn;

/* Returns 0 or -ENOMEM. authn_free(NULL) is a no-op. */
int authn_new(const struct authn_config *cfg, struct authn **out);
void authn_free(struct authn *a);

enum authn_result {
	AUTHN_ALLOWED,		/* go on */
	AUTHN_UNAUTHENTICATED,	/* 401: no bearer token, or one the API server refused */
	AUTHN_FORBIDDEN,	/* 403: the user may not <verb> <path> */
	AUTHN_ERROR,		/* 500: a review could not be made */
};

/*
 * Decides one request from its Authorization header (NULL when absent),
 * its method and its path. reply (optional) is filled for anything but
 * AUTHN_ALLOWED with controller-runtime's status and text: 401
 * "Unauthorized", 403 "Authorization denied for user <name>", 500
 * "Authentication failed" or "Authorization for user <name> failed".
 * Returns the result, or a negative errno-style code (-ENOMEM) when
 * reply could not be filled. Thread-safe.
 */
int authn_check(struct authn *a, const char *authorization, const char *method,
    const char *path, struct httpd_reply *reply);

/*
 * A route handler that calls authn_check() before handing the request to
 * handler: set a route's handler to authn_guard_serve and its arg to a
 * struct authn_guard. With authn NULL every request goes through.
 */
struct authn_guard {
	struct authn *authn;		/* borrowed; NULL: no check */
	httpd_handler_fn handler;
	void *arg;
};

int authn_guard_serve(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg);

#endif
