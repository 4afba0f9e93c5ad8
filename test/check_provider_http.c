/* check_provider_http.c -- one provider request at a time, against the Resend stand-in */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "provider_http.h"
#include "testutil.h"

Suite *provider_http_suite(void);

#define FAST_RATE 200.0		/* requests per second where the limiter is not the subject */
#define NO_SUCH_CONTACT "/contacts/9f1c2a8e-0000-4000-8000-000000000000"
#define NO_SUCH_SEGMENT "0b6c8a38-0000-4000-8000-000000000001"
#define CANARY_KEY "re_canary_SECRET_7d41c0"	/* must never reach a log */
#define BEARER "Authorization: Bearer "

static struct tu_standin standin;	/* one per TCase: an unchecked fixture */
static int standin_rc;
static int null_fd = -1;		/* the library logs go here */
static struct provider_http *ph;	/* one per test, FAST_RATE */

/* ---- fixtures and helpers ---- */

static void
start_standin(void)
{
	/* No server-side limit unless a test sets one (reset comes back to this). */
	static const char *const args[] = { "--rate", "0", NULL };

	standin_rc = tu_resend_start(&standin, args);
}

static void
stop_standin(void)
{
	tu_resend_stop(&standin);
}

static struct provider_http *
client_with(struct provider_http_config *cfg)
{
	struct provider_http *h;
	char err[256] = "";

	if (!cfg->provider)
		cfg->provider = "resend";
	if (!cfg->user_agent)
		cfg->user_agent = "milo-contacts/test";
	if (!cfg->auth_header)
		cfg->auth_header = BEARER TU_RESEND_KEY;
	ck_assert_msg(provider_http_new(cfg, &h, err, sizeof(err)) == 0,
	    "provider_http_new: %s", err);
	return h;
}

/* A client of the stand-in (or of base when not NULL) whose first call goes at once. */
static struct provider_http *
client(double rate, const char *base)
{
	struct provider_http_config cfg = { .base_url = base ? base : standin.url,
		.rate = rate, .no_start_delay = true };

	return client_with(&cfg);
}

static void
setup(void)
{
	ck_assert_msg(standin_rc == 0, "the Resend stand-in did not start: %s",
	    strerror(-standin_rc));
	tu_resend_reset(&standin);
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	log_set_fd(null_fd);
	ph = client(FAST_RATE, NULL);
}

static void
teardown(void)
{
	log_set_fd(-1);
	if (null_fd >= 0)
		close(null_fd);
	null_fd = -1;
	provider_http_free(ph);
	ph = NULL;
}

/* The stand-in's record of the last API call (new reference). */
static json_t *
last_call(void)
{
	json_t *all = tu_resend_control(&standin, "GET", "calls", NULL);
	json_t *calls = json_object_get(all, "calls"), *last;

	ck_assert_msg(json_array_size(calls) > 0, "the stand-in logged no call");
	last = json_incref(json_array_get(calls, json_array_size(calls) - 1));
	json_decref(all);
	return last;
}

static const char *
call_header(const json_t *call, const char *name)
{
	return json_string_value(json_object_get(json_object_get(call, "headers"), name));
}

/* Every call the stand-in answered, whatever the status. */
static long
calls_total(void)
{
	json_t *c = tu_resend_control(&standin, "GET", "counts", NULL);
	long n = (long)json_integer_value(json_object_get(c, "total"));

	json_decref(c);
	return n;
}

/* One call with a JSON body (or none). */
static int
call(struct provider_http *h, const char *method, const char *path, const json_t *body,
    struct provider_http_result *res)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc = provider_http_call(h, method, path, text ? "application/json" : NULL, text,
	    text ? strlen(text) : 0, res);

	free(text);
	return rc;
}

static void
result_check(int rc, int want_rc, const struct provider_http_result *res, long status,
    const char *error_name)
{
	ck_assert_msg(rc == want_rc, "rc %d (%s), want %d; status %ld, message %s", rc,
	    strerror(-rc), want_rc, res->status, res->message ? res->message : "(none)");
	ck_assert_int_eq(res->status, status);
	if (error_name)
		ck_assert_pstr_eq(res->error_name, error_name);
	else
		ck_assert_ptr_null(res->error_name);
}

/* ---- core ---- */

START_TEST(test_headers)
{
	struct provider_http_result res;
	struct provider_http_config cfg = { .rate = FAST_RATE, .no_start_delay = true,
		.user_agent = "milo-tests/9" };
	struct provider_http *custom;
	json_t *body = json_pack("{s:s}", "name", "Newsletter"), *c;
	char base[96];
	int rc;

	rc = call(ph, "POST", "/segments", body, &res);
	result_check(rc, 0, &res, 201, NULL);
	ck_assert_ptr_null(res.message);
	ck_assert_msg(json_is_string(json_object_get(res.body, "id")), "no segment id");
	provider_http_result_free(&res);
	c = last_call();
	ck_assert_str_eq(json_string_value(json_object_get(c, "path")), "/segments");
	ck_assert_str_eq(call_header(c, "authorization"), "Bearer " TU_RESEND_KEY);
	ck_assert_str_eq(call_header(c, "user-agent"), "milo-contacts/test");
	ck_assert_str_eq(call_header(c, "content-type"), "application/json");
	ck_assert_str_eq(call_header(c, "accept"), "application/json");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(c, "body"),
	    "name")), "Newsletter");
	json_decref(c);
	json_decref(body);

	/* A configured User-Agent, a base URL with a trailing slash, no body. */
	snprintf(base, sizeof(base), "%s/", standin.url);
	cfg.base_url = base;
	custom = client_with(&cfg);
	rc = call(custom, "GET", "/segments", NULL, &res);
	result_check(rc, 0, &res, 200, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(res.body, "object")), "list");
	provider_http_result_free(&res);
	c = last_call();
	ck_assert_str_eq(json_string_value(json_object_get(c, "path")), "/segments");
	ck_assert_str_eq(call_header(c, "user-agent"), "milo-tests/9");
	ck_assert_ptr_null(call_header(c, "content-type"));
	json_decref(c);
	provider_http_free(custom);
	ck_assert_uint_eq(provider_http_calls(ph), 1);
	ck_assert_uint_eq(provider_http_throttled(ph), 0);
	ck_assert_str_eq(provider_http_name(ph), "resend");
}
END_TEST

START_TEST(test_not_found)
{
	struct provider_http_result res;
	int rc;

	rc = call(ph, "GET", NO_SUCH_CONTACT, NULL, &res);
	result_check(rc, -EIO, &res, 404, "not_found");
	ck_assert_pstr_eq(res.message, "Contact not found");
	ck_assert_int_eq(json_integer_value(json_object_get(res.body, "statusCode")), 404);
	provider_http_result_free(&res);
	ck_assert_int_eq(calls_total(), 1);
}
END_TEST

/*
 * Nothing is retried here, whatever the answer: the caller puts the object
 * back in its queue with a delay, so no worker sleeps on a backoff.
 */
START_TEST(test_every_answer_once)
{
	static const struct {
		const char *fault;
		long status;
		const char *name;
	} cases[] = {
		{ "{\"kind\": \"error\", \"status\": 500, \"count\": 1}", 500, "application_error" },
		{ "{\"kind\": \"error\", \"status\": 503, \"count\": 1}", 503, "service_unavailable" },
		{ "{\"kind\": \"error\", \"status\": 409, \"name\": \"resource_locked\","
		  " \"count\": 1}", 409, "resource_locked" },
		{ "{\"kind\": \"error\", \"status\": 429, \"name\": \"daily_quota_exceeded\","
		  " \"count\": 1}", 429, "daily_quota_exceeded" },
	};
	struct provider_http_result res;
	json_t *empty = json_object();
	int rc;

	rc = call(ph, "POST", "/contacts", empty, &res);
	result_check(rc, -EIO, &res, 422, "missing_required_field");
	provider_http_result_free(&res);
	rc = call(ph, "PUT", "/segments", empty, &res);
	result_check(rc, -EIO, &res, 405, "method_not_allowed");
	provider_http_result_free(&res);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tu_resend_post(&standin, "faults", "%s", cases[i].fault);
		rc = call(ph, "GET", "/segments", NULL, &res);
		result_check(rc, -EIO, &res, cases[i].status, cases[i].name);
		provider_http_result_free(&res);
	}
	ck_assert_int_eq(calls_total(), 6);
	ck_assert_uint_eq(provider_http_throttled(ph), 1);
	json_decref(empty);
}
END_TEST

START_TEST(test_retry_after_reported_and_obeyed)
{
	struct provider_http_result res;
	double t0, took;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"rate_limit\", \"retryAfter\": 1,"
	    " \"count\": 1}");
	rc = call(ph, "GET", "/segments", NULL, &res);
	result_check(rc, -EIO, &res, 429, "rate_limit_exceeded");
	ck_assert_msg(res.retry_after_s == 1, "retry-after %g", res.retry_after_s);
	provider_http_result_free(&res);
	/* The next request, whoever sends it, waits for the server's retry-after. */
	t0 = clock_mono();
	rc = call(ph, "GET", "/segments", NULL, &res);
	took = clock_mono() - t0;
	result_check(rc, 0, &res, 200, NULL);
	ck_assert_msg(res.retry_after_s < 0, "retry-after %g on a 200", res.retry_after_s);
	provider_http_result_free(&res);
	ck_assert_msg(took >= 0.9, "sent %.3f s after a 429 asking for 1 s", took);
	ck_assert_msg(took < tu_slack(3.0), "waited %.3f s", took);
	/* And the learned rate dropped below the configured one. */
	ck_assert_msg(provider_http_rate(ph) < FAST_RATE, "rate %g", provider_http_rate(ph));
}
END_TEST

START_TEST(test_escape)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "a+b@example.com", "a%2Bb%40example.com" },
		{ "x/y%z w", "x%2Fy%25z%20w" },
		{ "9f1c2a8e-0000-4000-8000-000000000000", "9f1c2a8e-0000-4000-8000-000000000000" },
		{ "", "" },
	};
	struct provider_http_result res;
	char path[256], *e;
	json_t *body, *c;
	int rc;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		e = provider_http_escape(cases[i].in);
		ck_assert_ptr_nonnull(e);
		ck_assert_str_eq(e, cases[i].out);
		free(e);
	}
	/* The escaped email reaches the contact, and the wire carries the escapes. */
	body = json_pack("{s:s, s:s}", "email", "a+b@example.com", "first_name", "Ada");
	rc = call(ph, "POST", "/contacts", body, &res);
	result_check(rc, 0, &res, 201, NULL);
	provider_http_result_free(&res);
	json_decref(body);
	e = provider_http_escape("a+b@example.com");
	snprintf(path, sizeof(path), "/contacts/%s", e);
	free(e);
	rc = call(ph, "GET", path, NULL, &res);
	result_check(rc, 0, &res, 200, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(res.body, "email")),
	    "a+b@example.com");
	provider_http_result_free(&res);
	c = last_call();
	ck_assert_str_eq(json_string_value(json_object_get(c, "path")),
	    "/contacts/a%2Bb%40example.com");
	json_decref(c);
}
END_TEST

START_TEST(test_metrics)
{
	struct metrics *m = metrics_new();
	struct provider_http_config cfg = { .base_url = standin.url, .rate = FAST_RATE,
		.metrics = m, .no_start_delay = true };
	struct provider_http_result res;
	struct provider_http *h;
	struct buf b;
	const char *text;

	ck_assert_ptr_nonnull(m);
	h = client_with(&cfg);
	ck_assert_int_eq(call(h, "GET", "/segments?limit=10", NULL, &res), 0);
	provider_http_result_free(&res);
	ck_assert_int_eq(call(h, "GET", NO_SUCH_CONTACT, NULL, &res), -EIO);
	provider_http_result_free(&res);
	ck_assert_int_eq(call(h, "DELETE", NO_SUCH_CONTACT "/segments/" NO_SUCH_SEGMENT, NULL,
	    &res), 0);
	provider_http_result_free(&res);
	tu_resend_post(&standin, "faults", "{\"kind\": \"rate_limit\", \"retryAfter\": 1,"
	    " \"count\": 1}");
	ck_assert_int_eq(call(h, "GET", "/segments", NULL, &res), -EIO);
	provider_http_result_free(&res);

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	text = buf_str(&b);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{provider=\"resend\","
	    "method=\"GET\",code=\"200\"} 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{provider=\"resend\","
	    "method=\"GET\",code=\"429\"} 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{provider=\"resend\","
	    "method=\"GET\",code=\"404\"} 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{provider=\"resend\","
	    "method=\"DELETE\",code=\"200\"} 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_request_duration_seconds_count{provider="
	    "\"resend\",method=\"GET\"} 3\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_rate_limited_total{provider=\"resend\"} 1\n"),
	    "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_rate_limiter_wait_seconds_total{provider="),
	    "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_rate_limit_requests_per_second{provider="),
	    "%s", text);
	ck_assert_msg(!strstr(text, "9f1c2a8e"), "an id leaked into a label: %s", text);
	buf_free(&b);
	provider_http_free(h);
	metrics_free(m);
}
END_TEST

/* A lost lease: no write leaves, reads still do; a short lease bounds the timeout. */
static long
no_budget(void *arg)
{
	(void)arg;
	return 0;
}

START_TEST(test_write_budget)
{
	struct provider_http_config cfg = { .base_url = standin.url, .rate = FAST_RATE,
		.no_start_delay = true, .write_budget_ms = no_budget };
	struct provider_http_result res;
	struct provider_http *h = client_with(&cfg);
	json_t *body = json_pack("{s:s}", "name", "Never");

	ck_assert_int_eq(call(h, "POST", "/segments", body, &res), -ECANCELED);
	ck_assert_ptr_nonnull(res.message);
	provider_http_result_free(&res);
	ck_assert_int_eq(call(h, "DELETE", "/segments/" NO_SUCH_SEGMENT, NULL, &res), -ECANCELED);
	provider_http_result_free(&res);
	ck_assert_int_eq(calls_total(), 0);
	ck_assert_int_eq(call(h, "GET", "/segments", NULL, &res), 0);
	provider_http_result_free(&res);
	ck_assert_int_eq(calls_total(), 1);
	json_decref(body);
	provider_http_free(h);
}
END_TEST

/* ---- rate ---- */

/* Stand-in at 5 requests in any sliding second; the client at 5 per second. */
#define LIMIT 5

/*
 * The stand-in allows one request per second more than the client's rate:
 * requests leave 1/LIMIT apart, but on a loaded machine one can arrive late
 * and the next ones on time, which puts LIMIT + 1 into one sliding second.
 * What the tests assert is the client's spacing and that no 429 came.
 */
static void
server_limit(void)
{
	tu_resend_post(&standin, "config", "{\"rateLimit\": %d, \"rateWindow\": 1,"
	    " \"rateMode\": \"sliding\"}", LIMIT + 1);
}

START_TEST(test_rate_sequential)
{
	int n = tu_under_valgrind() ? 10 : 30;
	struct provider_http *h;
	double t0, took;

	server_limit();
	h = client(LIMIT, NULL);
	t0 = clock_mono();
	for (int i = 0; i < n; i++) {
		struct provider_http_result res;
		int rc = call(h, "GET", "/segments", NULL, &res);

		ck_assert_msg(rc == 0, "call %d: rc %d, status %ld", i, rc, res.status);
		provider_http_result_free(&res);
	}
	took = clock_mono() - t0;
	ck_assert_uint_eq(provider_http_throttled(h), 0);
	ck_assert_int_eq(tu_resend_count(&standin, NULL, 429), 0);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 200), n);
	/* Spaced 1/rate apart: never faster (no upper bound asserted). */
	ck_assert_msg(took >= (n - 1) / (double)LIMIT - 0.05, "%d calls in %.2f s", n, took);
	provider_http_free(h);
}
END_TEST

struct worker {
	struct provider_http *h;
	int calls;
	int failed;
	int last_rc;
	long last_status;
};

static void *
work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < w->calls; i++) {
		struct provider_http_result res;
		int rc = call(w->h, "GET", "/segments", NULL, &res);

		if (rc != 0) {
			w->failed++;
			w->last_rc = rc;
			w->last_status = res.status;
		}
		provider_http_result_free(&res);
	}
	return NULL;
}

START_TEST(test_rate_threads)
{
	enum { THREADS = 4 };
	int per = tu_under_valgrind() ? 3 : 5, n = THREADS * per;
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct provider_http *h;
	double t0, took;

	server_limit();
	h = client(LIMIT, NULL);
	t0 = clock_mono();
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .h = h, .calls = per };
		ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	took = clock_mono() - t0;
	for (int i = 0; i < THREADS; i++)
		ck_assert_msg(w[i].failed == 0, "thread %d: %d calls failed (last rc %d, "
		    "status %ld)", i, w[i].failed, w[i].last_rc, w[i].last_status);
	ck_assert_uint_eq(provider_http_throttled(h), 0);
	ck_assert_uint_eq(provider_http_calls(h), (unsigned long)n);
	ck_assert_int_eq(tu_resend_count(&standin, NULL, 429), 0);
	ck_assert_msg(took >= (n - 1) / (double)LIMIT - 0.05, "%d calls in %.2f s", n, took);
	provider_http_free(h);
}
END_TEST

/*
 * A quota below the configured rate, stated by nobody (the stand-in's
 * headers off): the 429s teach the client the quota, and it then uses
 * most of it with few more 429s.
 */
START_TEST(test_rate_learns_an_unstated_quota)
{
	int n = tu_under_valgrind() ? 15 : 60;
	struct provider_http *h;
	double t0, took;
	long ok = 0;

	tu_resend_post(&standin, "config", "{\"rateLimit\": %d, \"rateWindow\": 1,"
	    " \"rateMode\": \"sliding\", \"rateHeaders\": false}", LIMIT);
	h = client(4 * LIMIT, NULL);
	t0 = clock_mono();
	while (ok < n && clock_mono() - t0 < tu_slack(60)) {
		struct provider_http_result res;

		if (call(h, "GET", "/segments", NULL, &res) == 0)
			ok++;
		provider_http_result_free(&res);
	}
	took = clock_mono() - t0;
	ck_assert_int_eq(ok, n);
	ck_assert_msg(provider_http_throttled(h) <= 5, "%lu 429s",
	    provider_http_throttled(h));
	ck_assert_msg(provider_http_rate(h) <= LIMIT * 1.05, "learned rate %g",
	    provider_http_rate(h));
	/* Most of the quota used (the first second runs at half the configured rate). */
	if (!tu_under_valgrind())
		ck_assert_msg((double)n / took >= 0.8 * LIMIT, "%d calls in %.2f s: %.2f/s",
		    n, took, (double)n / took);
	provider_http_free(h);
}
END_TEST

/* A restarted process starts at half its rate, after one window. */
START_TEST(test_rate_starts_slow)
{
	struct provider_http_config cfg = { .base_url = standin.url, .rate = 10 };
	struct provider_http_result res;
	struct provider_http *h = client_with(&cfg);
	double t0 = clock_mono(), took;

	ck_assert_msg(provider_http_rate(h) <= 5.5, "starts at %g/s", provider_http_rate(h));
	ck_assert_int_eq(call(h, "GET", "/segments", NULL, &res), 0);
	provider_http_result_free(&res);
	took = clock_mono() - t0;
	ck_assert_msg(took >= 0.9, "the first request went after %.3f s", took);
	provider_http_free(h);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_connection_refused)
{
	struct provider_http_result res;
	struct provider_http *h;
	char base[64];
	int port = tu_closed_port(), rc;

	ck_assert_int_ne(port, 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
	h = client(FAST_RATE, base);
	rc = call(h, "GET", "/segments", NULL, &res);
	result_check(rc, -ECONNREFUSED, &res, 0, NULL);
	ck_assert_ptr_nonnull(res.message);
	ck_assert_msg(strstr(res.message, "GET /segments"), "message: %s", res.message);
	ck_assert_ptr_null(res.body);
	provider_http_result_free(&res);
	ck_assert_uint_eq(provider_http_calls(h), 1);
	provider_http_free(h);
}
END_TEST

START_TEST(test_dropped_connection)
{
	struct provider_http_result res;
	json_t *body = json_pack("{s:s}", "email", "drop@example.com");
	int rc;

	/* The reply is lost after the contact was made: the caller looks before trying again. */
	tu_resend_post(&standin, "faults", "{\"kind\": \"drop\", \"afterApply\": true,"
	    " \"count\": 1}");
	rc = call(ph, "POST", "/contacts", body, &res);
	ck_assert_int_eq(rc, -EPROTO);
	ck_assert_int_eq(res.status, 0);
	provider_http_result_free(&res);
	json_decref(body);
	ck_assert_int_eq(calls_total(), 1);
}
END_TEST

START_TEST(test_key_never_logged)
{
	struct provider_http_config cfg = { .rate = FAST_RATE, .no_start_delay = true,
		.auth_header = BEARER CANARY_KEY };
	struct provider_http_result res;
	struct provider_http *h, *down;
	char base[64], *text;
	FILE *tmp = tmpfile();
	enum log_level level = log_get_level();
	size_t len = 0;

	ck_assert_ptr_nonnull(tmp);
	log_set_fd(fileno(tmp));
	log_set_level(LOG_LEVEL_DEBUG);
	cfg.base_url = standin.url;
	h = client_with(&cfg);
	/* Refused (the stand-in does not know the canary): logged as an error, keyless. */
	ck_assert_int_eq(call(h, "GET", "/segments", NULL, &res), -EIO);
	ck_assert_int_eq(res.status, 403);
	ck_assert_msg(!strstr(res.message, "SECRET"), "key in a message: %s", res.message);
	provider_http_result_free(&res);
	provider_http_free(h);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", tu_closed_port());
	cfg.base_url = base;
	down = client_with(&cfg);
	ck_assert_int_eq(call(down, "GET", "/segments", NULL, &res), -ECONNREFUSED);
	ck_assert_msg(!strstr(res.message, "SECRET"), "key in a message: %s", res.message);
	provider_http_result_free(&res);
	provider_http_free(down);

	log_set_fd(-1);
	log_set_level(level);
	fflush(tmp);
	rewind(tmp);
	{
		char chunk[4096];
		struct buf b;
		size_t n;

		buf_init(&b, 1 << 20);
		while ((n = fread(chunk, 1, sizeof(chunk), tmp)) > 0)
			ck_assert_int_eq(buf_add(&b, chunk, n), 0);
		text = buf_steal(&b, &len);
	}
	fclose(tmp);
	ck_assert_ptr_nonnull(text);
	/* Not vacuous: the refusal was logged, with the provider and the status. */
	ck_assert_msg(strstr(text, "\"msg\":\"the provider refused the API key\"") &&
	    strstr(text, "\"provider\":\"resend\"") && strstr(text, "\"status\":403"),
	    "the refusal was not logged:\n%s", text);
	ck_assert_msg(strstr(text, "SECRET") == NULL && strstr(text, "Bearer") == NULL,
	    "the API key reached the log:\n%s", text);
	free(text);
}
END_TEST

START_TEST(test_new_rejects_bad_config)
{
	struct provider_http_config cfg = { .base_url = standin.url, .provider = "resend",
		.user_agent = "x", .rate = 1 };
	struct provider_http *h = (struct provider_http *)(void *)&cfg;	/* must be reset */
	char err[128] = "";

	ck_assert_int_eq(provider_http_new(&cfg, &h, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(h);
	ck_assert_msg(err[0] != '\0', "no reason given");
	cfg.auth_header = BEARER "x";
	cfg.rate = 0;
	ck_assert_int_eq(provider_http_new(&cfg, &h, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(h);
	provider_http_free(NULL);
}
END_TEST

START_TEST(test_non_json_error_body)
{
	struct provider_http_result res;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 400,"
	    " \"html\": true, \"message\": \"edge said no\", \"count\": 1}");
	rc = call(ph, "GET", "/segments", NULL, &res);
	result_check(rc, -EIO, &res, 400, NULL);
	ck_assert_ptr_null(res.body);
	ck_assert_ptr_nonnull(res.message);
	ck_assert_msg(strstr(res.message, "HTTP 400") && strstr(res.message, "edge said no"),
	    "message: %s", res.message);
	provider_http_result_free(&res);
}
END_TEST

Suite *
provider_http_suite(void)
{
	static const struct tu_fixtures fx = { start_standin, stop_standin, setup, teardown };
	Suite *s = suite_create("provider_http");
	TCase *core = tu_tcase(s, "core", &fx, 90);
	TCase *rate = tu_tcase(s, "rate", &fx, 90);
	TCase *limits = tu_tcase(s, "limits", &fx, 90);

	tcase_add_test(core, test_headers);
	tcase_add_test(core, test_not_found);
	tcase_add_test(core, test_every_answer_once);
	tcase_add_test(core, test_retry_after_reported_and_obeyed);
	tcase_add_test(core, test_escape);
	tcase_add_test(core, test_metrics);
	tcase_add_test(core, test_write_budget);
	tcase_add_test(rate, test_rate_sequential);
	tcase_add_test(rate, test_rate_threads);
	tcase_add_test(rate, test_rate_learns_an_unstated_quota);
	tcase_add_test(rate, test_rate_starts_slow);
	tcase_add_test(limits, test_connection_refused);
	tcase_add_test(limits, test_dropped_connection);
	tcase_add_test(limits, test_key_never_logged);
	tcase_add_test(limits, test_new_rejects_bad_config);
	tcase_add_test(limits, test_non_json_error_body);
	return s;
}
