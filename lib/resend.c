/* resend.c -- the Resend API (segments, contacts, contact segments), rate limited */
#include "resend.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "buf.h"
#include "jsonparse.h"
#include "log.h"
#include "metrics.h"

#define RESEND_USER_AGENT "milo-contacts/0.1.0"
#define RESEND_TEMPLATE_MAX 128

struct resend {
	char *base_url;
	char *auth;		/* "Authorization: Bearer …" */
	char *user_agent;
	char *ca_file;

	pthread_mutex_t lock;	/* guards the bucket and counters */
	double rate, burst, tokens;
	double last_refill;	/* monotonic seconds */
	double blocked_until;	/* no request before this (ratelimit headers, 429) */
	unsigned long calls, throttled;
	double waited;
	double backoff_min, backoff_max;	/* seconds */

	struct metric *m_calls;		/* milo_provider_requests_total{endpoint,code} */
	struct metric *m_throttled;	/* milo_provider_rate_limited_total */
	struct metric *m_wait;		/* milo_provider_rate_limiter_wait_seconds_total */
};

/* What the response headers said about limits. */
struct limits {
	double retry_after;	/* seconds; < 0 when absent */
	double remaining;	/* < 0 when absent */
	double reset;		/* seconds; < 0 when absent */
	double limit;		/* ratelimit-limit; < 0 when absent */
	double window;		/* ratelimit-policy's w=, seconds; < 0 when absent */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void
resend_result_free(struct resend_result *r)
{
	json_decref(r->body);
	free(r->error_name);
	free(r->message);
	memset(r, 0, sizeof(*r));
}

int
resend_new(const struct resend_config *cfg, struct resend **out, char *err, size_t errlen)
{
	struct resend *r;

	*out = NULL;
	pthread_once(&curl_once, curl_init_once);
	if (!cfg->api_key || !cfg->api_key[0]) {
		snprintf(err, errlen, "no Resend API key");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&r->lock, NULL);
	r->base_url = strdup(cfg->base_url ? cfg->base_url : RESEND_DEFAULT_BASE_URL);
	if (r->base_url && r->base_url[0] && r->base_url[strlen(r->base_url) - 1] == '/')
		r->base_url[strlen(r->base_url) - 1] = '\0';
	r->user_agent = strdup(cfg->user_agent ? cfg->user_agent : RESEND_USER_AGENT);
	r->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
	if (asprintf(&r->auth, "Authorization: Bearer %s", cfg->api_key) < 0)
		r->auth = NULL;
	r->rate = cfg->rate > 0 ? cfg->rate : RESEND_DEFAULT_RATE;
	r->backoff_min = (cfg->backoff_min_ms ? cfg->backoff_min_ms :
	    RESEND_BACKOFF_MIN_MS) / 1000.0;
	r->backoff_max = (cfg->backoff_max_ms ? cfg->backoff_max_ms :
	    RESEND_BACKOFF_MAX_MS) / 1000.0;
	if (r->backoff_max < r->backoff_min)
		r->backoff_max = r->backoff_min;
	/*
	 * No bursts: requests are spaced 1/rate apart, so no window of one
	 * second ever sees more than the rate, however the server counts.
	 */
	r->burst = 1;
	r->tokens = 1;
	r->last_refill = mono();
	if (cfg->metrics) {
		static const char *const call_labels[] = { "endpoint", "code", NULL };

		r->m_calls = metrics_counter(cfg->metrics, "milo_provider_requests_total",
		    "Requests sent to the email provider, by endpoint and HTTP status "
		    "(0: no answer).", call_labels);
		r->m_throttled = metrics_counter(cfg->metrics, "milo_provider_rate_limited_total",
		    "Provider answers with HTTP 429.", NULL);
		r->m_wait = metrics_counter(cfg->metrics,
		    "milo_provider_rate_limiter_wait_seconds_total",
		    "Time requests waited for the client-side rate limiter.", NULL);
	}
	if (!r->base_url || !r->user_agent || !r->auth || (cfg->ca_file && !r->ca_file)) {
		resend_free(r);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*out = r;
	return 0;
}

void
resend_free(struct resend *r)
{
	if (!r)
		return;
	free(r->base_url);
	if (r->auth)
		explicit_bzero(r->auth, strlen(r->auth));
	free(r->auth);
	free(r->user_agent);
	free(r->ca_file);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* Takes one token, sleeping as long as the bucket or the server asks. */
static void
acquire(struct resend *r)
{
	double start = mono(), waited;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		double now = mono(), wait;

		r->tokens += (now - r->last_refill) * r->rate;
		if (r->tokens > r->burst)
			r->tokens = r->burst;
		r->last_refill = now;
		if (now < r->blocked_until) {
			wait = r->blocked_until - now;
		} else if (r->tokens >= 1) {
			r->tokens -= 1;
			break;
		} else {
			wait = (1 - r->tokens) / r->rate;
		}
		pthread_mutex_unlock(&r->lock);
		sleep_s(wait);
		pthread_mutex_lock(&r->lock);
	}
	waited = mono() - start;
	r->waited += waited;
	r->calls++;
	pthread_mutex_unlock(&r->lock);
	if (waited > 0)
		metric_add(metric_get(r->m_wait, NULL), waited);
}

/* The server's view wins: nothing is sent before it says the window resets. */
static void
block_until(struct resend *r, double seconds)
{
	double until = mono() + seconds;

	pthread_mutex_lock(&r->lock);
	if (until > r->blocked_until)
		r->blocked_until = until;
	r->tokens = 0;
	pthread_mutex_unlock(&r->lock);
}

static double
header_number(const char *value, size_t len)
{
	char tmp[32], *end;
	double v;

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, value, len);
	tmp[len] = '\0';
	v = strtod(tmp, &end);
	while (*end == ' ' || *end == '\r' || *end == '\n')
		end++;
	return *end || !isfinite(v) || v < 0 ? -1 : v;
}

static size_t
on_header(char *line, size_t size, size_t n, void *arg)
{
	struct limits *l = arg;
	size_t len = size * n;
	const char *colon = memchr(line, ':', len);
	size_t name_len, vlen;
	const char *value;

	if (!colon)
		return len;
	name_len = (size_t)(colon - line);
	value = colon + 1;
	while (value < line + len && *value == ' ')
		value++;
	vlen = (size_t)(line + len - value);
#define IS(h) (name_len == strlen(h) && strncasecmp(line, h, name_len) == 0)
	if (IS("retry-after"))
		l->retry_after = header_number(value, vlen);
	else if (IS("ratelimit-remaining"))
		l->remaining = header_number(value, vlen);
	else if (IS("ratelimit-reset"))
		l->reset = header_number(value, vlen);
	else if (IS("ratelimit-limit"))
		l->limit = header_number(value, vlen);
	else if (IS("ratelimit-policy")) {
		/* "5;w=1": the window in seconds */
		const char *w = memmem(value, vlen, "w=", 2);

		if (w)
			l->window = header_number(w + 2, vlen - (size_t)(w + 2 - value));
	}
#undef IS
	return len;
}

static size_t
collect(char *data, size_t size, size_t n, void *arg)
{
	return buf_add(arg, data, size * n) == 0 ? size * n : 0;
}

/* "/contacts/{id}/segments/{id}": ids and emails folded, for a metric label. */
static void
template_of(const char *path, char *out, size_t len)
{
	size_t o = 0;
	const char *p = path;

	while (*p && o + 6 < len) {
		const char *seg = p + 1, *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strcspn(seg, "?");
		int known = (n == 8 && strncmp(seg, "segments", 8) == 0) ||
		    (n == 8 && strncmp(seg, "contacts", 8) == 0);

		out[o++] = '/';
		if (known && o + n < len) {
			memcpy(out + o, seg, n);
			o += n;
		} else if (o + 4 < len) {
			memcpy(out + o, "{id}", 4);
			o += 4;
		}
		if (!end)
			break;
		p = end;
	}
	out[o] = '\0';
}

static void
read_error(struct resend_result *out, const struct buf *b)
{
	json_t *name = json_object_get(out->body, "name");
	json_t *msg = json_object_get(out->body, "message");

	free(out->error_name);
	free(out->message);
	out->error_name = json_is_string(name) ? strdup(json_string_value(name)) : NULL;
	if (json_is_string(msg))
		out->message = strdup(json_string_value(msg));
	else if (asprintf(&out->message, "HTTP %ld%s%.200s", out->status,
	    b->len ? ": " : "", buf_str(b)) < 0)
		out->message = NULL;
}

/* Sends once. Fills out; returns 0, -EIO (HTTP error) or a transport error. */
static int
send_once(struct resend *r, const char *method, const char *path, const char *body,
    struct resend_result *out, struct limits *l)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char *url = NULL, errbuf[CURL_ERROR_SIZE] = "", tmpl[RESEND_TEMPLATE_MAX], code[16];
	const char *labels[2];
	struct buf b;
	CURLcode cc;
	int rc = 0;

	l->retry_after = l->remaining = l->reset = l->limit = l->window = -1;
	/* The result describes this attempt only, not an earlier failed one. */
	json_decref(out->body);
	free(out->error_name);
	free(out->message);
	out->body = NULL;
	out->error_name = out->message = NULL;
	out->status = 0;
	if (!h || asprintf(&url, "%s%s", r->base_url, path) < 0) {
		curl_easy_cleanup(h);
		return -ENOMEM;
	}
	buf_init(&b, RESEND_RESPONSE_MAX);
	hdrs = curl_slist_append(hdrs, r->auth);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (body)
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_USERAGENT, r->user_agent);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)RESEND_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, l);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (r->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT :
		    cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EPROTO;
		free(out->message);
		if (asprintf(&out->message, "%s %s: %s", method, path,
		    errbuf[0] ? errbuf : curl_easy_strerror(cc)) < 0)
			out->message = NULL;
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
		if (b.len)
			out->body = jsonparse_load(b.ptr, b.len, 0, NULL);
		if (out->status < 200 || out->status >= 300) {
			read_error(out, &b);
			rc = -EIO;
		}
	}
	template_of(path, tmpl, sizeof(tmpl));
	snprintf(code, sizeof(code), "%ld", out->status);
	labels[0] = tmpl;
	labels[1] = code;
	metric_inc(metric_get(r->m_calls, labels));
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	buf_free(&b);
	free(url);
	return rc;
}

/*
 * Worth another try: rate limits, locks, server errors, no answer. A request
 * that must not be repeated is retried only when the answer says it was
 * not carried out.
 */
static bool
retryable(int rc, const struct resend_result *out, unsigned int flags)
{
	bool once = flags & RESEND_NOT_IDEMPOTENT;

	if (rc == -ECONNREFUSED)
		return true;
	if (rc == -ETIMEDOUT || rc == -EPROTO)
		return !once;
	if (rc != -EIO)
		return false;
	if (out->status == 429)
		return !out->error_name || strcmp(out->error_name, "rate_limit_exceeded") == 0;
	if (out->status == 409)
		return out->error_name && (strcmp(out->error_name, "resource_locked") == 0 ||
		    strcmp(out->error_name, "concurrent_idempotent_requests") == 0);
	return out->status >= 500 && !once;
}

int
resend_call(struct resend *r, const char *method, const char *path, const json_t *body,
    struct resend_result *out)
{
	return resend_call_flags(r, method, path, body, 0, out);
}

/*
 * What the ratelimit-* headers say. A server limit below our rate lowers
 * our rate to it (never raises it). An exhausted window pauses us for one
 * request's worth of the server's rate, not until the whole window resets:
 * Resend reports the reset in whole seconds, and waiting it out every time
 * would cut throughput at the limit by a third; if other clients share the
 * quota, the 429 and its retry-after still stop us.
 */
static void
obey_limits(struct resend *r, const struct limits *l)
{
	double window = l->window > 0 ? l->window : 1;
	double server_rate = l->limit > 0 ? l->limit / window : -1;

	if (server_rate > 0) {
		pthread_mutex_lock(&r->lock);
		if (server_rate < r->rate) {
			log_warn("provider rate limit is below ours; slowing down", "{s:f, s:f}",
			    "configured", r->rate, "server", server_rate);
			r->rate = server_rate;
		}
		pthread_mutex_unlock(&r->lock);
	}
	if (l->remaining == 0 && l->reset > 0)
		block_until(r, fmin(l->reset, server_rate > 0 ? 1 / server_rate : r->backoff_max));
}

int
resend_call_flags(struct resend *r, const char *method, const char *path,
    const json_t *body, unsigned int flags, struct resend_result *out)
{
	char *text = NULL;
	double backoff = r->backoff_min;
	int rc = -EIO;

	memset(out, 0, sizeof(*out));
	if (body && !(text = json_dumps(body, JSON_COMPACT)))
		return -ENOMEM;
	while (out->attempts < RESEND_MAX_ATTEMPTS) {
		struct limits l;

		acquire(r);
		out->attempts++;
		rc = send_once(r, method, path, text, out, &l);
		obey_limits(r, &l);
		if (out->status == 429) {
			pthread_mutex_lock(&r->lock);
			r->throttled++;
			pthread_mutex_unlock(&r->lock);
			metric_inc(metric_get(r->m_throttled, NULL));
		}
		if (!retryable(rc, out, flags) || out->attempts == RESEND_MAX_ATTEMPTS)
			break;
		{
			/* A server's retry-after is capped too: an hour would park every thread. */
			double wait = l.retry_after >= 0 ? fmin(l.retry_after, r->backoff_max) :
			    backoff;

			log_info("provider call will be retried", "{s:s, s:s, s:i, s:f, s:i}",
			    "method", method, "path", path, "status", (int)out->status,
			    "retryInSeconds", wait, "attempt", out->attempts);
			if (out->status == 429)
				block_until(r, wait);
			else
				sleep_s(wait);
			backoff = backoff * 2 > r->backoff_max ? r->backoff_max : backoff * 2;
		}
	}
	free(text);
	return rc;
}

char *
resend_escape(const char *segment)
{
	char *e = curl_easy_escape(NULL, segment, 0), *copy;

	if (!e)
		return NULL;
	copy = strdup(e);
	curl_free(e);
	return copy;
}

unsigned long
resend_calls(struct resend *r)
{
	unsigned long n;

	pthread_mutex_lock(&r->lock);
	n = r->calls;
	pthread_mutex_unlock(&r->lock);
	return n;
}

unsigned long
resend_throttled(struct resend *r)
{
	unsigned long n;

	pthread_mutex_lock(&r->lock);
	n = r->throttled;
	pthread_mutex_unlock(&r->lock);
	return n;
}

double
resend_wait_seconds(struct resend *r)
{
	double w;

	pthread_mutex_lock(&r->lock);
	w = r->waited;
	pthread_mutex_unlock(&r->lock);
	return w;
}
