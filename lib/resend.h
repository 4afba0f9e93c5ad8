/* resend.h -- the Resend API (segments, contacts, contact segments), rate limited */
#ifndef MILO_RESEND_H
#define MILO_RESEND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define RESEND_DEFAULT_BASE_URL "https://api.resend.com"
#define RESEND_DEFAULT_RATE 2.0		/* requests per second (Resend's documented default) */
#define RESEND_TIMEOUT_MS 15000		/* one call */
#define RESEND_MAX_ATTEMPTS 5		/* per logical call, retries included */
#define RESEND_BACKOFF_MIN_MS 1000	/* 1 s, 2 s, 4 s … without retry-after */
#define RESEND_BACKOFF_MAX_MS 30000
#define RESEND_RESPONSE_MAX (8u << 20)
#define RESEND_PAGE 100			/* list page size (the API's maximum) */

struct resend;
struct metrics;

struct resend_config {
	const char *base_url;		/* NULL: RESEND_DEFAULT_BASE_URL */
	const char *api_key;		/* required; never logged */
	double rate;			/* requests per second; <= 0: default */
	const char *user_agent;		/* NULL: "milo-contacts/<version>" */
	const char *ca_file;		/* extra trust for a test server, or NULL */
	struct metrics *metrics;	/* optional: provider call counters */
	/*
	 * Retry pacing without retry-after: min, 2 min, 4 min … up to max.
	 * 0 means RESEND_BACKOFF_MIN_MS / RESEND_BACKOFF_MAX_MS; tests shorten
	 * them. max also caps a server's retry-after.
	 */
	unsigned int backoff_min_ms;
	unsigned int backoff_max_ms;
};

/* The outcome of one logical call (after retries). */
struct resend_result {
	long status;		/* last HTTP status; 0 when no answer came */
	json_t *body;		/* parsed JSON answer, owned, or NULL */
	char *error_name;	/* the error body's "name" ("not_found"…) */
	char *message;		/* the error body's "message", or what failed */
	int attempts;
};

void resend_result_free(struct resend_result *r);

int resend_new(const struct resend_config *cfg, struct resend **out, char *err,
    size_t errlen);
void resend_free(struct resend *r);

/*
 * One call: waits for the client-side token bucket (shared by all threads,
 * slowed further by the ratelimit-* headers), sends, and retries 429,
 * 409 resource_locked, 5xx and transport failures after retry-after or a
 * capped exponential backoff (the cap bounds retry-after and
 * ratelimit-reset waits too), up to RESEND_MAX_ATTEMPTS. Other 4xx are
 * returned at once. out describes the last attempt only (no error name or
 * message is left over from an earlier one). path starts with "/" and is
 * appended to the base URL.
 * Returns 0 for a 2xx; -EIO for a final HTTP error (see out); -ETIMEDOUT
 * or -ECONNREFUSED when no answer came; -ENOMEM.
 */
int resend_call(struct resend *r, const char *method, const char *path,
    const json_t *body, struct resend_result *out);

/*
 * resend_call for a request that must not be sent twice (POST /segments
 * makes a second segment each time): with RESEND_NOT_IDEMPOTENT only
 * answers that say nothing was done are retried (429 rate_limit_exceeded,
 * 409 resource_locked, no connection); a 5xx, a timeout or a lost reply is
 * returned at once, for the caller to look before it tries again.
 */
#define RESEND_NOT_IDEMPOTENT 0x1u
int resend_call_flags(struct resend *r, const char *method, const char *path,
    const json_t *body, unsigned int flags, struct resend_result *out);

/* Percent-encodes a path segment (an email address, an id). malloc'd. */
char *resend_escape(const char *segment);

/* Counters for tests and metrics. */
unsigned long resend_calls(struct resend *r);		/* requests sent */
unsigned long resend_throttled(struct resend *r);	/* 429 answers */
double resend_wait_seconds(struct resend *r);		/* time spent in the bucket */

#endif
