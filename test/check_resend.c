/* check_resend.c -- the Resend client against the Resend stand-in, over real sockets */
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
#include "resend.h"
#include "testutil.h"

Suite *resend_suite(void);

#define FAST_RATE 200.0		/* requests per second where the limiter is not the subject */
#define TEST_BACKOFF_MIN_MS 50	/* retries without retry-after: 50, 100, 200, 200 ms */
#define TEST_BACKOFF_MAX_MS 200
#define NO_SUCH_CONTACT "/contacts/9f1c2a8e-0000-4000-8000-000000000000"
#define NO_SUCH_SEGMENT "0b6c8a38-0000-4000-8000-000000000001"
#define CANARY_KEY "re_canary_SECRET_7d41c0"	/* must never reach a log */

static struct tu_standin standin;	/* one per TCase: an unchecked fixture */
static int standin_rc;
static int null_fd = -1;		/* the library logs go here */
static struct resend *rs;		/* one per test, FAST_RATE, short backoff */

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

static struct resend *
client_with(const struct resend_config *cfg)
{
	struct resend *r;
	char err[256] = "";

	ck_assert_msg(resend_new(cfg, &r, err, sizeof(err)) == 0, "resend_new: %s", err);
	return r;
}

/* A client of the stand-in (or of base when not NULL) with the test pacing. */
static struct resend *
client(double rate, const char *base)
{
	struct resend_config cfg = {
		.base_url = base ? base : standin.url,
		.api_key = TU_RESEND_KEY,
		.rate = rate,
		.backoff_min_ms = TEST_BACKOFF_MIN_MS,
		.backoff_max_ms = TEST_BACKOFF_MAX_MS,
	};

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
	rs = client(FAST_RATE, NULL);
}

static void
teardown(void)
{
	log_set_fd(-1);
	if (null_fd >= 0)
		close(null_fd);
	null_fd = -1;
	resend_free(rs);
	rs = NULL;
}

static double
now_s(void)
{
	return clock_mono();
}

/* Loose upper bounds stretch under valgrind, which is many times slower. */
static double
slack(double s)
{
	return tu_under_valgrind() ? s * 4 : s;
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

static void
result_check(int rc, int want_rc, const struct resend_result *res, long status,
    const char *error_name, int attempts)
{
	ck_assert_msg(rc == want_rc, "rc %d (%s), want %d; status %ld, message %s", rc,
	    strerror(-rc), want_rc, res->status, res->message ? res->message : "(none)");
	ck_assert_int_eq(res->status, status);
	if (error_name)
		ck_assert_pstr_eq(res->error_name, error_name);
	else
		ck_assert_ptr_null(res->error_name);
	ck_assert_int_eq(res->attempts, attempts);
}

/* ---- core ---- */

START_TEST(test_headers)
{
	struct resend_result res;
	struct resend *custom;
	json_t *body = json_pack("{s:s}", "name", "Newsletter"), *call;
	const char *ua;
	int rc;

	rc = resend_call(rs, "POST", "/segments", body, &res);
	result_check(rc, 0, &res, 201, NULL, 1);
	ck_assert_ptr_null(res.message);
	ck_assert_msg(json_is_string(json_object_get(res.body, "id")), "no segment id");
	resend_result_free(&res);
	call = last_call();
	ck_assert_str_eq(json_string_value(json_object_get(call, "path")), "/segments");
	ck_assert_str_eq(call_header(call, "authorization"), "Bearer " TU_RESEND_KEY);
	ua = call_header(call, "user-agent");
	ck_assert_msg(ua && strncmp(ua, "milo-contacts/", 14) == 0, "user-agent %s",
	    ua ? ua : "(none)");
	ck_assert_str_eq(call_header(call, "content-type"), "application/json");
	ck_assert_str_eq(call_header(call, "accept"), "application/json");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(call, "body"),
	    "name")), "Newsletter");
	json_decref(call);
	json_decref(body);

	/* A configured User-Agent, a base URL with a trailing slash, no body. */
	{
		char base[96];
		struct resend_config cfg = { .base_url = base, .api_key = TU_RESEND_KEY,
			.rate = FAST_RATE, .user_agent = "milo-tests/9" };

		snprintf(base, sizeof(base), "%s/", standin.url);
		custom = client_with(&cfg);
	}
	rc = resend_call(custom, "GET", "/segments", NULL, &res);
	result_check(rc, 0, &res, 200, NULL, 1);
	ck_assert_str_eq(json_string_value(json_object_get(res.body, "object")), "list");
	resend_result_free(&res);
	call = last_call();
	ck_assert_str_eq(json_string_value(json_object_get(call, "path")), "/segments");
	ck_assert_str_eq(call_header(call, "user-agent"), "milo-tests/9");
	ck_assert_str_eq(call_header(call, "authorization"), "Bearer " TU_RESEND_KEY);
	ck_assert_ptr_null(call_header(call, "content-type"));
	json_decref(call);
	resend_free(custom);
	ck_assert_uint_eq(resend_calls(rs), 1);
	ck_assert_uint_eq(resend_throttled(rs), 0);
}
END_TEST

START_TEST(test_not_found_at_once)
{
	struct resend_result res;
	double t0 = now_s();
	int rc;

	rc = resend_call(rs, "GET", NO_SUCH_CONTACT, NULL, &res);
	result_check(rc, -EIO, &res, 404, "not_found", 1);
	ck_assert_pstr_eq(res.message, "Contact not found");
	ck_assert_int_eq(json_integer_value(json_object_get(res.body, "statusCode")), 404);
	resend_result_free(&res);
	ck_assert_msg(now_s() - t0 < slack(2.0), "a 404 took %.2f s", now_s() - t0);
	ck_assert_int_eq(calls_total(), 1);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /contacts/{contact}", 404), 1);
}
END_TEST

/* 400, 401/403, 405, 409 (not a lock), 422 and quota 429s are answers, not accidents. */
START_TEST(test_client_errors_not_retried)
{
	struct resend_result res;
	struct resend *wrong;
	json_t *empty = json_object();
	int rc;

	rc = resend_call(rs, "POST", "/contacts", empty, &res);
	result_check(rc, -EIO, &res, 422, "missing_required_field", 1);
	ck_assert_ptr_nonnull(res.message);
	resend_result_free(&res);
	ck_assert_int_eq(tu_resend_count(&standin, "POST /contacts", 422), 1);

	rc = resend_call(rs, "PUT", "/segments", empty, &res);
	result_check(rc, -EIO, &res, 405, "method_not_allowed", 1);
	resend_result_free(&res);

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 409,"
	    " \"name\": \"invalid_idempotent_request\", \"count\": 1}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	result_check(rc, -EIO, &res, 409, "invalid_idempotent_request", 1);
	resend_result_free(&res);

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 429,"
	    " \"name\": \"daily_quota_exceeded\", \"count\": 1}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	result_check(rc, -EIO, &res, 429, "daily_quota_exceeded", 1);
	resend_result_free(&res);
	ck_assert_uint_eq(resend_throttled(rs), 1);	/* counted, not waited on */

	{
		struct resend_config cfg = { .base_url = standin.url,
			.api_key = "re_not_the_key", .rate = FAST_RATE };

		wrong = client_with(&cfg);
	}
	rc = resend_call(wrong, "GET", "/segments", NULL, &res);
	result_check(rc, -EIO, &res, 403, "invalid_api_key", 1);
	resend_result_free(&res);
	resend_free(wrong);

	ck_assert_int_eq(calls_total(), 5);
	json_decref(empty);
}
END_TEST

START_TEST(test_server_errors_retried)
{
	struct resend_result res;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 500, \"count\": 2}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	/* The result is the success's: no error left over from the failed attempts. */
	result_check(rc, 0, &res, 200, NULL, 3);
	ck_assert_ptr_null(res.message);
	ck_assert_ptr_nonnull(res.body);
	resend_result_free(&res);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 500), 2);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 200), 1);

	/* An edge proxy's HTML 502, then a 503: still retried, then fine. */
	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 502,"
	    " \"html\": true, \"count\": 1}");
	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 503, \"count\": 1}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	result_check(rc, 0, &res, 200, NULL, 3);
	resend_result_free(&res);
	ck_assert_uint_eq(resend_throttled(rs), 0);
}
END_TEST

START_TEST(test_retry_after_honoured)
{
	/* The test backoff, but a cap (which also bounds retry-after) above 1 s. */
	struct resend_config cfg = { .base_url = standin.url, .api_key = TU_RESEND_KEY,
		.rate = FAST_RATE, .backoff_min_ms = TEST_BACKOFF_MIN_MS,
		.backoff_max_ms = 5000 };
	struct resend_result res;
	struct resend *r = client_with(&cfg);
	double t0, took;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"rate_limit\", \"retryAfter\": 1,"
	    " \"count\": 1}");
	t0 = now_s();
	rc = resend_call(r, "GET", "/segments", NULL, &res);
	took = now_s() - t0;
	result_check(rc, 0, &res, 200, NULL, 2);
	resend_result_free(&res);
	/* retry-after, not the 50 ms backoff, paced the second attempt. */
	ck_assert_msg(took >= 0.9, "retried after %.3f s, before retry-after", took);
	ck_assert_msg(took < slack(4.0), "retry took %.3f s", took);
	ck_assert_uint_eq(resend_throttled(r), 1);
	resend_free(r);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 429), 1);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 200), 1);
}
END_TEST

START_TEST(test_resource_locked_retried)
{
	struct resend_result res;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 409,"
	    " \"name\": \"resource_locked\", \"count\": 1}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	result_check(rc, 0, &res, 200, NULL, 2);
	resend_result_free(&res);

	/* A 429 without an error body is a rate limit too. */
	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 429,"
	    " \"html\": true, \"count\": 1}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	result_check(rc, 0, &res, 200, NULL, 2);
	resend_result_free(&res);
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
	struct resend_result res;
	char path[256], *e;
	json_t *body, *call;
	int rc;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		e = resend_escape(cases[i].in);
		ck_assert_ptr_nonnull(e);
		ck_assert_str_eq(e, cases[i].out);
		free(e);
	}

	/* The escaped email reaches the contact, and the wire carries the escapes. */
	body = json_pack("{s:s, s:s}", "email", "a+b@example.com", "first_name", "Ada");
	rc = resend_call(rs, "POST", "/contacts", body, &res);
	result_check(rc, 0, &res, 201, NULL, 1);
	resend_result_free(&res);
	json_decref(body);
	e = resend_escape("a+b@example.com");
	snprintf(path, sizeof(path), "/contacts/%s", e);
	free(e);
	rc = resend_call(rs, "GET", path, NULL, &res);
	result_check(rc, 0, &res, 200, NULL, 1);
	ck_assert_str_eq(json_string_value(json_object_get(res.body, "email")),
	    "a+b@example.com");
	ck_assert_str_eq(json_string_value(json_object_get(res.body, "first_name")), "Ada");
	resend_result_free(&res);
	call = last_call();
	ck_assert_str_eq(json_string_value(json_object_get(call, "path")),
	    "/contacts/a%2Bb%40example.com");
	json_decref(call);
}
END_TEST

START_TEST(test_metrics)
{
	struct metrics *m = metrics_new();
	struct resend_config cfg = { .base_url = standin.url, .api_key = TU_RESEND_KEY,
		.rate = FAST_RATE, .metrics = m, .backoff_min_ms = TEST_BACKOFF_MIN_MS,
		.backoff_max_ms = TEST_BACKOFF_MAX_MS };
	struct resend_result res;
	struct resend *r;
	struct buf b;
	const char *text;

	ck_assert_ptr_nonnull(m);
	r = client_with(&cfg);
	ck_assert_int_eq(resend_call(r, "GET", "/segments?limit=10", NULL, &res), 0);
	resend_result_free(&res);
	ck_assert_int_eq(resend_call(r, "GET", NO_SUCH_CONTACT, NULL, &res), -EIO);
	resend_result_free(&res);
	ck_assert_int_eq(resend_call(r, "DELETE", NO_SUCH_CONTACT "/segments/" NO_SUCH_SEGMENT, NULL,
	    &res), 0);
	resend_result_free(&res);
	tu_resend_post(&standin, "faults", "{\"kind\": \"rate_limit\", \"retryAfter\": 1,"
	    " \"count\": 1}");
	ck_assert_int_eq(resend_call(r, "GET", "/segments", NULL, &res), 0);
	resend_result_free(&res);

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	text = buf_str(&b);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{endpoint=\"/segments\","
	    "code=\"200\"} 2\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{endpoint=\"/segments\","
	    "code=\"429\"} 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{endpoint=\"/contacts/{id}\","
	    "code=\"404\"} 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_requests_total{endpoint="
	    "\"/contacts/{id}/segments/{id}\",code=\"200\"} 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_rate_limited_total 1\n"), "%s", text);
	ck_assert_msg(strstr(text, "milo_provider_rate_limiter_wait_seconds_total"), "%s", text);
	ck_assert_msg(!strstr(text, "9f1c2a8e"), "an id leaked into a label: %s", text);
	buf_free(&b);
	resend_free(r);
	metrics_free(m);
}
END_TEST

/* ---- rate ---- */

/* Stand-in at 5 requests in any sliding second; the client at 5 per second. */
#define LIMIT 5

static void
server_limit(void)
{
	tu_resend_post(&standin, "config", "{\"rateLimit\": %d, \"rateWindow\": 1,"
	    " \"rateMode\": \"sliding\"}", LIMIT);
}

/* The default pacing: the short test cap would also cap ratelimit-reset waits. */
static struct resend *
limited_client(void)
{
	struct resend_config cfg = { .base_url = standin.url, .api_key = TU_RESEND_KEY,
		.rate = LIMIT };

	return client_with(&cfg);
}

START_TEST(test_rate_sequential)
{
	int n = tu_under_valgrind() ? 10 : 30;
	struct resend *r;
	double t0, took;

	server_limit();
	r = limited_client();
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		struct resend_result res;
		int rc = resend_call(r, "GET", "/segments", NULL, &res);

		ck_assert_msg(rc == 0, "call %d: rc %d, status %ld", i, rc, res.status);
		ck_assert_int_eq(res.attempts, 1);
		resend_result_free(&res);
	}
	took = now_s() - t0;
	ck_assert_uint_eq(resend_throttled(r), 0);
	ck_assert_int_eq(tu_resend_count(&standin, NULL, 429), 0);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 200), n);
	/* Spaced 1/rate apart: never faster (no upper bound asserted). */
	ck_assert_msg(took >= (n - 1) / (double)LIMIT - 0.05, "%d calls in %.2f s", n, took);
	ck_assert_msg(resend_wait_seconds(r) > 0, "the bucket never waited");
	resend_free(r);
}
END_TEST

struct worker {
	struct resend *r;
	int calls;
	int failed;		/* calls that did not succeed at once */
	int last_rc;
	long last_status;
};

static void *
work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < w->calls; i++) {
		struct resend_result res;
		int rc = resend_call(w->r, "GET", "/segments", NULL, &res);

		if (rc != 0 || res.attempts != 1) {
			w->failed++;
			w->last_rc = rc;
			w->last_status = res.status;
		}
		resend_result_free(&res);
	}
	return NULL;
}

START_TEST(test_rate_threads)
{
	enum { THREADS = 4 };
	int per = tu_under_valgrind() ? 3 : 5, n = THREADS * per;
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct resend *r;
	double t0, took;

	server_limit();
	r = limited_client();
	t0 = now_s();
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .r = r, .calls = per };
		ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	took = now_s() - t0;
	for (int i = 0; i < THREADS; i++)
		ck_assert_msg(w[i].failed == 0, "thread %d: %d calls failed or retried"
		    " (last rc %d, status %ld)", i, w[i].failed, w[i].last_rc, w[i].last_status);
	ck_assert_uint_eq(resend_throttled(r), 0);
	ck_assert_uint_eq(resend_calls(r), (unsigned long)n);
	ck_assert_int_eq(tu_resend_count(&standin, NULL, 429), 0);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 200), n);
	ck_assert_msg(took >= (n - 1) / (double)LIMIT - 0.05, "%d calls in %.2f s", n, took);
	resend_free(r);
}
END_TEST

/* ---- limits ---- */

START_TEST(test_connection_refused)
{
	struct resend_result res;
	struct resend *r;
	char base[64];
	int port = tu_closed_port(), rc;
	double t0, took;

	ck_assert_int_ne(port, 0);
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
	r = client(FAST_RATE, base);
	t0 = now_s();
	rc = resend_call(r, "GET", "/segments", NULL, &res);
	took = now_s() - t0;
	result_check(rc, -ECONNREFUSED, &res, 0, NULL, RESEND_MAX_ATTEMPTS);
	ck_assert_ptr_nonnull(res.message);
	ck_assert_msg(strstr(res.message, "GET /segments"), "message: %s", res.message);
	ck_assert_ptr_null(res.body);
	resend_result_free(&res);
	ck_assert_uint_eq(resend_calls(r), RESEND_MAX_ATTEMPTS);
	/* 50 + 100 + 200 + 200 ms of backoff: the configured pacing, not the default. */
	ck_assert_msg(took >= 0.5, "gave up after %.3f s", took);
	ck_assert_msg(took < slack(5.0), "gave up after %.3f s", took);
	resend_free(r);
}
END_TEST

START_TEST(test_gives_up_after_max_attempts)
{
	struct resend_result res;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 503}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	result_check(rc, -EIO, &res, 503, "service_unavailable", RESEND_MAX_ATTEMPTS);
	resend_result_free(&res);
	ck_assert_int_eq(tu_resend_count(&standin, "GET /segments", 503), RESEND_MAX_ATTEMPTS);
}
END_TEST

START_TEST(test_dropped_connection_retried)
{
	struct resend_result res;
	json_t *body = json_pack("{s:s}", "email", "drop@example.com");
	int rc;

	/* The reply is lost after the contact was made: the retry finds it there. */
	tu_resend_post(&standin, "faults", "{\"kind\": \"drop\", \"afterApply\": true,"
	    " \"count\": 1}");
	rc = resend_call(rs, "POST", "/contacts", body, &res);
	result_check(rc, 0, &res, 201, NULL, 2);
	ck_assert_ptr_null(res.message);
	resend_result_free(&res);
	json_decref(body);
	ck_assert_int_eq(calls_total(), 2);
}
END_TEST

/* A request that must not run twice is retried only when nothing was done. */
START_TEST(test_not_idempotent)
{
	struct resend_result res;
	struct resend *down;
	json_t *body = json_pack("{s:s}", "name", "Once");
	char base[64];
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 500, \"count\": 1}");
	rc = resend_call_flags(rs, "POST", "/segments", body, RESEND_NOT_IDEMPOTENT, &res);
	result_check(rc, -EIO, &res, 500, "application_error", 1);
	resend_result_free(&res);

	tu_resend_post(&standin, "faults", "{\"kind\": \"drop\", \"afterApply\": true,"
	    " \"count\": 1}");
	rc = resend_call_flags(rs, "POST", "/segments", body, RESEND_NOT_IDEMPOTENT, &res);
	result_check(rc, -EPROTO, &res, 0, NULL, 1);
	resend_result_free(&res);

	/* Answers that say "not done": retried as usual. */
	tu_resend_post(&standin, "faults", "{\"kind\": \"rate_limit\", \"count\": 1}");
	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 409,"
	    " \"name\": \"resource_locked\", \"count\": 1}");
	rc = resend_call_flags(rs, "POST", "/segments", body, RESEND_NOT_IDEMPOTENT, &res);
	result_check(rc, 0, &res, 201, NULL, 3);
	resend_result_free(&res);
	ck_assert_int_eq(tu_resend_count(&standin, "POST /segments", 201), 1);

	snprintf(base, sizeof(base), "http://127.0.0.1:%d", tu_closed_port());
	down = client(FAST_RATE, base);
	rc = resend_call_flags(down, "POST", "/segments", body, RESEND_NOT_IDEMPOTENT, &res);
	result_check(rc, -ECONNREFUSED, &res, 0, NULL, RESEND_MAX_ATTEMPTS);
	resend_result_free(&res);
	resend_free(down);
	json_decref(body);
}
END_TEST

/* A huge retry-after must not park every thread for an hour. */
START_TEST(test_retry_after_capped)
{
	struct resend_result res;
	double t0, took;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"rate_limit\", \"retryAfter\": 3600,"
	    " \"count\": 1}");
	t0 = now_s();
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	took = now_s() - t0;
	result_check(rc, 0, &res, 200, NULL, 2);
	resend_result_free(&res);
	ck_assert_msg(took < slack(3.0), "waited %.2f s on retry-after 3600", took);
}
END_TEST

START_TEST(test_key_never_logged)
{
	struct resend_config cfg = { .base_url = standin.url, .api_key = CANARY_KEY,
		.rate = FAST_RATE, .backoff_min_ms = 10, .backoff_max_ms = 20 };
	struct resend_result res;
	struct resend *r, *down;
	char base[64], *text;
	FILE *tmp = tmpfile();
	enum log_level level = log_get_level();
	size_t len = 0;

	ck_assert_ptr_nonnull(tmp);
	tu_resend_post(&standin, "config", "{\"apiKeys\": [\"%s\"]}", CANARY_KEY);
	log_set_fd(fileno(tmp));
	log_set_level(LOG_DEBUG);

	r = client_with(&cfg);
	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 500, \"count\": 1}");
	ck_assert_int_eq(resend_call(r, "GET", "/segments", NULL, &res), 0);
	resend_result_free(&res);
	ck_assert_int_eq(resend_call(r, "GET", NO_SUCH_CONTACT, NULL, &res), -EIO);
	ck_assert_msg(!strstr(res.message, "SECRET"), "key in a message: %s", res.message);
	resend_result_free(&res);
	resend_free(r);

	snprintf(base, sizeof(base), "http://127.0.0.1:%d", tu_closed_port());
	cfg.base_url = base;
	down = client_with(&cfg);
	ck_assert_int_eq(resend_call(down, "GET", "/segments", NULL, &res), -ECONNREFUSED);
	ck_assert_msg(!strstr(res.message, "SECRET"), "key in a message: %s", res.message);
	resend_result_free(&res);
	resend_free(down);

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
	/* Not vacuous: the retries were logged. */
	ck_assert_msg(strstr(text, "retried") != NULL, "no retry was logged:\n%s", text);
	ck_assert_msg(strstr(text, "SECRET") == NULL && strstr(text, "Bearer") == NULL,
	    "the API key reached the log:\n%s", text);
	free(text);

	/* The stand-in did see it, so it was sent. */
	{
		json_t *call = last_call();

		ck_assert_str_eq(call_header(call, "authorization"), "Bearer " CANARY_KEY);
		json_decref(call);
	}
}
END_TEST

START_TEST(test_new_rejects_bad_config)
{
	struct resend_config cfg = { .base_url = standin.url };
	struct resend *r = (struct resend *)(void *)&cfg;	/* must be reset */
	char err[128] = "";

	ck_assert_int_eq(resend_new(&cfg, &r, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_msg(err[0] != '\0', "no reason given");
	cfg.api_key = "";
	ck_assert_int_eq(resend_new(&cfg, &r, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(r);
	resend_free(NULL);
}
END_TEST

START_TEST(test_non_json_error_body)
{
	struct resend_result res;
	int rc;

	tu_resend_post(&standin, "faults", "{\"kind\": \"error\", \"status\": 400,"
	    " \"html\": true, \"message\": \"edge said no\", \"count\": 1}");
	rc = resend_call(rs, "GET", "/segments", NULL, &res);
	result_check(rc, -EIO, &res, 400, NULL, 1);
	ck_assert_ptr_null(res.body);
	ck_assert_ptr_nonnull(res.message);
	ck_assert_msg(strstr(res.message, "HTTP 400") && strstr(res.message, "edge said no"),
	    "message: %s", res.message);
	resend_result_free(&res);
}
END_TEST

Suite *
resend_suite(void)
{
	Suite *s = suite_create("resend");
	TCase *core = tcase_create("core");
	TCase *rate = tcase_create("rate");
	TCase *limits = tcase_create("limits");
	TCase *all[] = { core, rate, limits };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		tcase_add_unchecked_fixture(all[i], start_standin, stop_standin);
		tcase_add_checked_fixture(all[i], setup, teardown);
		tcase_set_timeout(all[i], tu_under_valgrind() ? 300 : 60);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(core, test_headers);
	tcase_add_test(core, test_not_found_at_once);
	tcase_add_test(core, test_client_errors_not_retried);
	tcase_add_test(core, test_server_errors_retried);
	tcase_add_test(core, test_retry_after_honoured);
	tcase_add_test(core, test_resource_locked_retried);
	tcase_add_test(core, test_escape);
	tcase_add_test(core, test_metrics);
	tcase_add_test(rate, test_rate_sequential);
	tcase_add_test(rate, test_rate_threads);
	tcase_add_test(limits, test_connection_refused);
	tcase_add_test(limits, test_gives_up_after_max_attempts);
	tcase_add_test(limits, test_dropped_connection_retried);
	tcase_add_test(limits, test_not_idempotent);
	tcase_add_test(limits, test_retry_after_capped);
	tcase_add_test(limits, test_key_never_logged);
	tcase_add_test(limits, test_new_rejects_bad_config);
	tcase_add_test(limits, test_non_json_error_body);
	return s;
}
