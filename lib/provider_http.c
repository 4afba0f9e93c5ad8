/* provider_http.c -- one request to an email provider's API: rate limited, measured, never retried */
#include "provider_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "clock.h"
#include "jsonparse.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"

struct provider_http {
	char *provider;
	char *base_url;
	char *auth;		/* the header line; wiped when freed */
	char *user_agent;
	char *ca_file;
	struct ratelimit *rl;
	long (*write_budget_ms)(void *arg);
	void *write_budget_arg;
	atomic_ulong calls, throttled;

	struct metric *m_requests;	/* milo_provider_requests_total{provider,method,code} */
	struct metric *m_duration;	/* milo_provider_request_duration_seconds{provider,method} */
	struct metric_series *m_throttled;	/* milo_provider_rate_limited_total{provider} */
	struct metric_series *m_wait;	/* milo_provider_rate_limiter_wait_seconds_total{provider} */
	struct metric_series *m_rate;	/* milo_provider_rate_limit_requests_per_second{provider} */
};

/* What the response headers said about limits; each < 0 when absent. */
struct limits {
	double retry_after, remaining, reset, limit, window;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void
provider_http_result_free(struct provider_http_result *r)
{
	json_decref(r->body);
	free(r->error_name);
	free(r->message);
	memset(r, 0, sizeof(*r));
	r->retry_after_s = -1;
}

static void
register_metrics(struct provider_http *h, struct metrics *m)
{
	static const char *const by_call[] = { "provider", "method", "code", NULL };
	static const char *const by_method[] = { "provider", "method", NULL };
	static const char *const by_provider[] = { "provider", NULL };
	const char *const p[] = { h->provider };

	if (!m)
		return;
	h->m_requests = metrics_counter(m, "milo_provider_requests_total",
	    "Requests sent to the email provider, by HTTP method and status (0: no answer).",
	    by_call);
	h->m_duration = metrics_histogram(m, "milo_provider_request_duration_seconds",
	    "How long provider requests took, answer included.", by_method,
	    metrics_latency_buckets, metrics_latency_buckets_len);
	h->m_throttled = metric_get(metrics_counter(m, "milo_provider_rate_limited_total",
	    "Provider answers with HTTP 429.", by_provider), p);
	h->m_wait = metric_get(metrics_counter(m, "milo_provider_rate_limiter_wait_seconds_total",
	    "Time requests waited for the client-side rate limiter.", by_provider), p);
	h->m_rate = metric_get(metrics_gauge(m, "milo_provider_rate_limit_requests_per_second",
	    "The request rate in force: the configured one, lowered by the provider's "
	    "429s and stated quota.", by_provider), p);
}

int
provider_http_new(const struct provider_http_config *cfg, struct provider_http **out,
    char *err, size_t errlen)
{
	struct provider_http *h;
	int rc;

	*out = NULL;
	pthread_once(&curl_once, curl_init_once);
	if (!cfg->provider || !cfg->base_url || !cfg->auth_header || !cfg->user_agent) {
		snprintf(err, errlen, "provider client: missing name, URL, credentials or "
		    "user agent");
		return -EINVAL;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		goto oom;
	h->provider = strdup(cfg->provider);
	h->base_url = strdup(cfg->base_url);
	h->auth = strdup(cfg->auth_header);
	h->user_agent = strdup(cfg->user_agent);
	h->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
	h->write_budget_ms = cfg->write_budget_ms;
	h->write_budget_arg = cfg->write_budget_arg;
	if (!h->provider || !h->base_url || !h->auth || !h->user_agent ||
	    (cfg->ca_file && !h->ca_file))
		goto oom;
	if (h->base_url[0] && h->base_url[strlen(h->base_url) - 1] == '/')
		h->base_url[strlen(h->base_url) - 1] = '\0';
	rc = ratelimit_new(cfg->rate, cfg->no_start_delay ? 0 : -1, &h->rl);
	if (rc) {
		provider_http_free(h);
		snprintf(err, errlen, rc == -EINVAL ? "the %s rate must be a positive number" :
		    "out of memory", cfg->provider);
		return rc;
	}
	register_metrics(h, cfg->metrics);
	metric_set(h->m_rate, ratelimit_rate(h->rl));
	*out = h;
	return 0;
oom:
	provider_http_free(h);
	snprintf(err, errlen, "out of memory");
	return -ENOMEM;
}

void
provider_http_free(struct provider_http *h)
{
	if (!h)
		return;
	free(h->provider);
	free(h->base_url);
	if (h->auth)
		explicit_bzero(h->auth, strlen(h->auth));
	free(h->auth);
	free(h->user_agent);
	free(h->ca_file);
	ratelimit_free(h->rl);
	free(h);
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
	return *end || end == tmp || !isfinite(v) || v < 0 ? -1 : v;
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
#define IS(hdr) (name_len == strlen(hdr) && strncasecmp(line, hdr, name_len) == 0)
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
			l->window = header_number(w + 2, strcspn(w + 2, ";,\r\n"));
	}
#undef IS
	return len;
}

static size_t
collect(char *data, size_t size, size_t n, void *arg)
{
	return buf_add(arg, data, size * n) == 0 ? size * n : 0;
}

/* An error answer: Resend's {name, message}, Mailgun's {message}, or plain text. */
static void
read_error(struct provider_http_result *out, const struct buf *b)
{
	json_t *name = json_object_get(out->body, "name");
	json_t *msg = json_object_get(out->body, "message");

	out->error_name = json_is_string(name) ? strdup(json_string_value(name)) : NULL;
	if (json_is_string(msg))
		out->message = strdup(json_string_value(msg));
	else if (asprintf(&out->message, "HTTP %ld%s%.200s", out->status,
	    b->len ? ": " : "", buf_str(b)) < 0)
		out->message = NULL;
}

/* The budget a write has left: 0 refuses it, else the timeout it gets. */
static long
timeout_for(struct provider_http *h, const char *method)
{
	long budget;

	if (!h->write_budget_ms || strcmp(method, "GET") == 0)
		return PROVIDER_HTTP_TIMEOUT_MS;
	budget = h->write_budget_ms(h->write_budget_arg);
	if (budget <= 0)
		return 0;
	return budget < PROVIDER_HTTP_TIMEOUT_MS ? budget : PROVIDER_HTTP_TIMEOUT_MS;
}

static void
measure(struct provider_http *h, const char *method, long status, double seconds)
{
	char code[16];

	snprintf(code, sizeof(code), "%ld", status);
	metric_inc(metric_get(h->m_requests,
	    (const char *const[]){ h->provider, method, code }));
	metric_observe(metric_get(h->m_duration, (const char *const[]){ h->provider, method }),
	    seconds);
	atomic_fetch_add(&h->calls, 1);
}

/* Teaches the rate what the answer said; logs a refused key once a minute. */
static void
learn(struct provider_http *h, const struct provider_http_result *out,
    const struct limits *l)
{
	ratelimit_server(h->rl, l->limit, l->window, l->remaining, l->reset);
	if (out->status == 429) {
		ratelimit_throttled(h->rl, l->retry_after);
		atomic_fetch_add(&h->throttled, 1);
		metric_inc(h->m_throttled);
	} else if (out->status) {
		ratelimit_accepted(h->rl);
	}
	metric_set(h->m_rate, ratelimit_rate(h->rl));
	if (out->status == 401 || out->status == 403)
		log_limited_every(PROVIDER_HTTP_AUTH_LOG_S * 1000, LOG_LEVEL_ERROR,
		    "the provider refused the API key", LOG_STR("provider", h->provider),
		    LOG_INT("status", out->status),
		    LOG_STR("message", out->message ? out->message : ""));
}

int
provider_http_call(struct provider_http *h, const char *method, const char *path,
    const char *content_type, const char *body, size_t len,
    struct provider_http_result *out)
{
	struct limits l = { -1, -1, -1, -1, -1 };
	char *url = NULL, *ctype = NULL, errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL;
	long timeout_ms;
	double started, waited;
	struct buf b;
	CURL *c;
	CURLcode cc;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->retry_after_s = -1;
	waited = ratelimit_acquire(h->rl);
	metric_add(h->m_wait, waited);
	/* After the wait: the lease may have run out meanwhile. */
	timeout_ms = timeout_for(h, method);
	if (timeout_ms <= 0) {
		out->message = strdup("not sent: this replica no longer holds the lease");
		return -ECANCELED;
	}
	c = curl_easy_init();
	if (!c || asprintf(&url, "%s%s", h->base_url, path) < 0 ||
	    (content_type && asprintf(&ctype, "Content-Type: %s", content_type) < 0)) {
		curl_easy_cleanup(c);
		free(url);
		return -ENOMEM;
	}
	buf_init(&b, PROVIDER_HTTP_RESPONSE_MAX);
	hdrs = curl_slist_append(hdrs, h->auth);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (ctype)
		hdrs = curl_slist_append(hdrs, ctype);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_USERAGENT, h->user_agent);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)PROVIDER_HTTP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &l);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	if (h->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->ca_file);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
	}
	started = clock_mono();
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT :
		    cc == CURLE_COULDNT_CONNECT ? -ECONNREFUSED : -EPROTO;
		if (asprintf(&out->message, "%s %s: %s", method, path,
		    errbuf[0] ? errbuf : curl_easy_strerror(cc)) < 0)
			out->message = NULL;
	} else {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
		if (b.len)
			out->body = jsonparse_load(b.ptr, b.len, 0, NULL);
		if (out->status < 200 || out->status >= 300) {
			read_error(out, &b);
			rc = -EIO;
		}
	}
	out->retry_after_s = l.retry_after;
	measure(h, method, out->status, clock_mono() - started);
	learn(h, out, &l);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	buf_free(&b);
	free(url);
	free(ctype);
	return rc;
}

char *
provider_http_escape(const char *segment)
{
	char *e = curl_easy_escape(NULL, segment, 0), *copy;

	if (!e)
		return NULL;
	copy = strdup(e);
	curl_free(e);
	return copy;
}

const char *
provider_http_name(const struct provider_http *h)
{
	return h->provider;
}

unsigned long
provider_http_calls(struct provider_http *h)
{
	return atomic_load(&h->calls);
}

unsigned long
provider_http_throttled(struct provider_http *h)
{
	return atomic_load(&h->throttled);
}

double
provider_http_rate(struct provider_http *h)
{
	return ratelimit_rate(h->rl);
}
