/* authn.c -- delegated authentication and authorization of HTTP requests (TokenReview, SubjectAccessReview) */
#include "authn.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"

#define KEY_LEN 32		/* SHA-256 */

/*
 * The cache keeps digests, never tokens: a token review under
 * SHA-256("token" 0 token), a decision under SHA-256("decision" 0 token 0
 * verb 0 path). A decision keyed by the token is one keyed by its user,
 * since the token names the user for as long as the token review is
 * cached.
 */
struct entry {
	unsigned char key[KEY_LEN];
	bool used;
	bool yes;		/* authenticated, or allowed */
	double until;		/* clock_mono() seconds */
	json_t *user;		/* token reviews that authenticated: status.user */
};

struct authn {
	struct kube_client *client;
	double token_ttl, allow_ttl, deny_ttl;
	pthread_mutex_t lock;	/* guards entries */
	struct entry entries[AUTHN_CACHE_MAX];
	struct metric *decisions;	/* {decision} */
	struct metric *reviews;		/* {review} */
};

int
authn_new(const struct authn_config *cfg, struct authn **out)
{
	static const char *const by_decision[] = { "decision", NULL };
	static const char *const by_review[] = { "review", NULL };
	static const char *const decisions[] = { "allowed", "unauthenticated",
		"forbidden", "error" };
	static const char *const reviews[] = { "TokenReview", "SubjectAccessReview" };
	struct authn *a = calloc(1, sizeof(*a));

	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->client = cfg->client;
	a->token_ttl = cfg->token_ttl_s ? cfg->token_ttl_s : AUTHN_TOKEN_TTL_S;
	a->allow_ttl = cfg->allow_ttl_s ? cfg->allow_ttl_s : AUTHN_ALLOW_TTL_S;
	a->deny_ttl = cfg->deny_ttl_s ? cfg->deny_ttl_s : AUTHN_DENY_TTL_S;
	pthread_mutex_init(&a->lock, NULL);
	if (cfg->metrics) {
		a->decisions = metrics_counter(cfg->metrics,
		    "milo_metrics_auth_decisions_total",
		    "Requests for /metrics by outcome: allowed, unauthenticated "
		    "(401), forbidden (403), error (500).", by_decision);
		a->reviews = metrics_counter(cfg->metrics,
		    "milo_metrics_auth_reviews_total",
		    "TokenReviews and SubjectAccessReviews sent to the API server "
		    "(cache misses).", by_review);
		/* every series from the start, so rate() sees the first one */
		for (size_t i = 0; i < 4; i++)
			(void)metric_get(a->decisions, &decisions[i]);
		(void)metric_get(a->reviews, &reviews[0]);
		(void)metric_get(a->reviews, &reviews[1]);
	}
	*out = a;
	return 0;
}

void
authn_free(struct authn *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < AUTHN_CACHE_MAX; i++)
		json_decref(a->entries[i].user);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* SHA-256 over the NUL-separated parts (a NULL ends the list). */
static int
digest(unsigned char out[KEY_LEN], const char *const *parts)
{
	gnutls_hash_hd_t h;

	if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
		return -ENOMEM;
	for (size_t i = 0; parts[i]; i++)
		gnutls_hash(h, parts[i], strlen(parts[i]) + 1);
	gnutls_hash_deinit(h, out);
	return 0;
}

/* A live entry for key: 1 with *yes (and *user, a new reference), else 0. */
static int
cache_get(struct authn *a, const unsigned char *key, bool *yes, json_t **user)
{
	double now = clock_mono();
	int found = 0;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < AUTHN_CACHE_MAX; i++) {
		struct entry *e = &a->entries[i];

		if (e->used && memcmp(e->key, key, KEY_LEN) == 0) {
			if (e->until > now) {
				*yes = e->yes;
				if (user)
					*user = json_incref(e->user);
				found = 1;
			}
			break;
		}
	}
	pthread_mutex_unlock(&a->lock);
	return found;
}

/*
 * Stores an outcome (user: borrowed, a reference is taken). The same key
 * is overwritten; else a free slot, an expired one, or the one nearest
 * its expiry is used, so the table never grows.
 */
static void
cache_put(struct authn *a, const unsigned char *key, bool yes, json_t *user,
    double ttl)
{
	double now = clock_mono();
	struct entry *slot = NULL;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < AUTHN_CACHE_MAX; i++) {
		struct entry *e = &a->entries[i];

		if (e->used && memcmp(e->key, key, KEY_LEN) == 0) {
			slot = e;
			break;
		}
		if (!e->used || e->until <= now) {
			if (!slot || slot->used)
				slot = e;
		} else if (!slot || (slot->used && e->until < slot->until)) {
			slot = e;
		}
	}
	json_decref(slot->user);
	memcpy(slot->key, key, KEY_LEN);
	slot->used = true;
	slot->yes = yes;
	slot->user = json_incref(user);
	slot->until = now + ttl;
	pthread_mutex_unlock(&a->lock);
}

/*
 * The token of "Bearer <token>" (scheme case-insensitive, surrounding
 * blanks ignored), as k8s.io/apiserver's bearertoken authenticator reads
 * it: the token is the second space-separated word. Copied into out.
 */
static bool
bearer_token(const char *header, char *out, size_t len)
{
	const char *s = header, *end;
	size_t n;

	if (!s)
		return false;
	while (*s == ' ' || *s == '\t')
		s++;
	if (strncasecmp(s, "bearer ", 7) != 0)
		return false;
	s += 7;
	end = strchr(s, ' ');
	n = end ? (size_t)(end - s) : strlen(s);
	while (!end && n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= len)
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

static void
count(struct metric *f, const char *value)
{
	metric_inc(metric_get(f, (const char *const[]){ value }));
}

/*
 * A refusal: counted, and reply filled with status and text (fmt may
 * hold one %s, the user name). Returns result, or -ENOMEM.
 */
static int
refuse(struct authn *a, struct httpd_reply *reply, int result, int status,
    const char *fmt, const char *name)
{
	static const char *const names[] = {
		[AUTHN_UNAUTHENTICATED] = "unauthenticated",
		[AUTHN_FORBIDDEN] = "forbidden",
		[AUTHN_ERROR] = "error",
	};
	char text[AUTHN_NAME_MAX + 64];

	count(a->decisions, names[result]);
	if (!reply)
		return result;
	snprintf(text, sizeof(text), fmt, name ? name : "");
	return httpd_reply_text(reply, status, text) == 0 ? result : -ENOMEM;
}

/* The TokenReview, cached. 1: authenticated (*user set), 0: refused, <0: error. */
static int
review_token(struct authn *a, const char *token, json_t **user)
{
	unsigned char key[KEY_LEN];
	struct kube_response r;
	char *why = NULL;
	bool yes;
	int rc = digest(key, (const char *const[]){ "token", token, NULL });

	if (rc)
		return rc;
	if (cache_get(a, key, &yes, user))
		return yes;
	count(a->reviews, "TokenReview");
	rc = kube_token_review(a->client, token, &yes, user, &why, &r);
	if (rc) {
		log_warn("metrics authentication: TokenReview failed",
		    LOG_INT("status", r.status), LOG_STR("error", r.message));
	} else {
		if (!yes)
			log_debug("metrics authentication: token refused",
			    LOG_STR("error", why));
		cache_put(a, key, yes, *user, a->token_ttl);
		rc = yes;
	}
	free(why);
	kube_response_free(&r);
	return rc;
}

/* The SubjectAccessReview, cached. 1: allowed, 0: denied, <0: error. */
static int
review_access(struct authn *a, const char *token, const json_t *user,
    const char *verb, const char *path)
{
	unsigned char key[KEY_LEN];
	struct kube_response r;
	struct kube_access q = {
		.user = json_string_value(json_object_get(user, "username")),
		.uid = json_string_value(json_object_get(user, "uid")),
		.groups = json_object_get(user, "groups"),
		.extra = json_object_get(user, "extra"),
		.verb = verb,
		.path = path,
	};
	char *why = NULL;
	bool yes;
	int rc = digest(key, (const char *const[]){ "decision", token, verb,
	    path, NULL });

	if (rc)
		return rc;
	if (cache_get(a, key, &yes, NULL))
		return yes;
	count(a->reviews, "SubjectAccessReview");
	rc = kube_access_review(a->client, &q, &yes, &why, &r);
	if (rc) {
		log_warn("metrics authorization: SubjectAccessReview failed",
		    LOG_STR("user", q.user), LOG_INT("status", r.status),
		    LOG_STR("error", r.message));
	} else {
		if (!yes)
			log_debug("metrics authorization: denied", LOG_STR("user", q.user),
			    LOG_STR("verb", verb), LOG_STR("path", path),
			    LOG_STR("reason", why));
		cache_put(a, key, yes, NULL, yes ? a->allow_ttl : a->deny_ttl);
		rc = yes;
	}
	free(why);
	kube_response_free(&r);
	return rc;
}

int
authn_check(struct authn *a, const char *authorization, const char *method,
    const char *path, struct httpd_reply *reply)
{
	char token[AUTHN_TOKEN_MAX], verb[16], name[AUTHN_NAME_MAX];
	const char *username;
	json_t *user = NULL;
	int rc;

	if (!bearer_token(authorization, token, sizeof(token)))
		return refuse(a, reply, AUTHN_UNAUTHENTICATED, 401, "Unauthorized", NULL);
	rc = review_token(a, token, &user);
	if (rc <= 0) {
		explicit_bzero(token, sizeof(token));
		/*
		 * A refused token is a 401, as kube-apiserver answers it;
		 * controller-runtime's filter answers 500 here, because
		 * k8s.io/apiserver's bearer token authenticator reports a
		 * refused token as an error. Only a failed review is a 500.
		 */
		if (rc == 0)
			return refuse(a, reply, AUTHN_UNAUTHENTICATED, 401,
			    "Unauthorized", NULL);
		return refuse(a, reply, AUTHN_ERROR, 500, "Authentication failed", NULL);
	}
	/* The verb is the lower-case method, as for any non-resource request. */
	snprintf(verb, sizeof(verb), "%s", method);
	for (char *p = verb; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	username = json_string_value(json_object_get(user, "username"));
	snprintf(name, sizeof(name), "%s", username ? username : "");
	rc = review_access(a, token, user, verb, path);
	explicit_bzero(token, sizeof(token));
	json_decref(user);
	if (rc < 0)
		return refuse(a, reply, AUTHN_ERROR, 500,
		    "Authorization for user %s failed", name);
	if (rc == 0)
		return refuse(a, reply, AUTHN_FORBIDDEN, 403,
		    "Authorization denied for user %s", name);
	count(a->decisions, "allowed");
	return AUTHN_ALLOWED;
}

int
authn_guard_serve(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct authn_guard *g = arg;
	int rc;

	if (g->authn) {
		rc = authn_check(g->authn, httpd_header(req, "Authorization"),
		    req->method, req->path, reply);
		if (rc != AUTHN_ALLOWED)
			return rc < 0 ? rc : 0;
	}
	return g->handler(req, reply, g->arg);
}
