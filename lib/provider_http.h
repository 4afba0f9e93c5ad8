/* provider_http.h -- one request to an email provider's API: rate limited, measured, never retried */
#ifndef MILO_PROVIDER_HTTP_H
#define MILO_PROVIDER_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define PROVIDER_HTTP_TIMEOUT_MS 15000		/* one request, end to end */
#define PROVIDER_HTTP_CONNECT_TIMEOUT_MS 5000
#define PROVIDER_HTTP_RESPONSE_MAX (8u << 20)	/* an answer's body */
#define PROVIDER_HTTP_AUTH_LOG_S 60		/* a refused key is logged once a minute */

struct metrics;
struct provider_http;

struct provider_http_config {
	const char *provider;		/* "resend", "mailgun": metric label and log field */
	const char *base_url;		/* no trailing slash needed */
	const char *auth_header;	/* the whole header line; never logged */
	const char *user_agent;
	const char *ca_file;		/* extra trust for a test server, or NULL */
	double rate;			/* configured requests per second (> 0) */
	bool no_start_delay;		/* tests: the first request goes at once */
	struct metrics *metrics;	/* optional */
	/*
	 * Optional: how many more milliseconds this process may write (a
	 * leader's lease). A write (any method but GET) is refused with
	 * -ECANCELED before it is sent when it is <= 0, and its timeout never
	 * outlasts it: a leader that stalled past its lease makes no write.
	 */
	long (*write_budget_ms)(void *arg);
	void *write_budget_arg;
};

/* The answer to one request. */
struct provider_http_result {
	long status;		/* HTTP status; 0 when no answer came */
	json_t *body;		/* parsed JSON answer (owned), or NULL */
	char *error_name;	/* the error body's "name" (Resend's code), or NULL */
	char *message;		/* the error body's "message", its text, or what failed */
	double retry_after_s;	/* retry-after, or < 0 */
};

void provider_http_result_free(struct provider_http_result *r);

int provider_http_new(const struct provider_http_config *cfg, struct provider_http **out,
    char *err, size_t errlen);
void provider_http_free(struct provider_http *h);

/*
 * One request, sent once: waits for the learned rate (lib/ratelimit.h),
 * sends, and teaches the rate what came back (429s, ratelimit-* headers).
 * Never retries: the caller puts the object back in its queue with a
 * delay, so a worker never sleeps on a backoff. body is len bytes of
 * content_type, or NULL. path starts with "/" and is appended to the base
 * URL. Returns 0 for a 2xx; -EIO for an HTTP error (see out); -ETIMEDOUT,
 * -ECONNREFUSED or -EPROTO when no answer came; -ECANCELED when the write
 * budget is spent; -ENOMEM. out is always filled; free it.
 */
int provider_http_call(struct provider_http *h, const char *method, const char *path,
    const char *content_type, const char *body, size_t len,
    struct provider_http_result *out);

/* Percent-encodes a path segment (an email address, an id). malloc'd; NULL on ENOMEM. */
char *provider_http_escape(const char *segment);

/* The provider's name (the config's), for messages. */
const char *provider_http_name(const struct provider_http *h);

/* Counters, for tests and benchmarks. */
unsigned long provider_http_calls(struct provider_http *h);	/* requests sent */
unsigned long provider_http_throttled(struct provider_http *h);	/* 429 answers */
double provider_http_rate(struct provider_http *h);		/* learned rate now */

#endif
