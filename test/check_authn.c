/* check_authn.c -- TokenReview and SubjectAccessReview for /metrics, against the kube stand-in */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authn.h"
#include "buf.h"
#include "kube.h"
#include "metrics.h"
#include "testutil.h"

Suite *authn_suite(void);

#define WAIT_S 20	/* bound on waiting for a cached outcome to expire */

static struct kube_client *kc;
static struct metrics *reg;

/*
 * Tokens: the client's own, prom (may get /metrics) and nobody (may not);
 * every other token is refused.
 */
static void
setup(void)
{
	tu_kube_ready();
	tu_standin_post(&tu_kube, "users", "{\"tokens\": {"
	    "\"prom-token\": {\"username\": \"prom\", \"uid\": \"u1\", \"groups\":"
	    " [\"system:authenticated\"]},"
	    "\"nobody-token\": {\"username\": \"nobody\", \"groups\": [\"system:authenticated\"]}}}");
	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"standin-token\", \"prom-token\","
	    " \"nobody-token\"]}");
	tu_standin_post(&tu_kube, "sar-policy", "{\"default\": false, \"rules\": ["
	    "{\"user\": \"prom\", \"path\": \"/metrics\", \"verb\": \"get\"}]}");
	kc = tu_kube_client(tu_kube.kubeconfig);
	reg = metrics_new();
}

static void
teardown(void)
{
	kube_client_free(kc);
	metrics_free(reg);
	kc = NULL;
	reg = NULL;
}

static struct authn *
new_authn(unsigned int ttl_s)
{
	struct authn *a;
	struct authn_config c = { .client = kc, .metrics = reg, .token_ttl_s = ttl_s,
	    .allow_ttl_s = ttl_s, .deny_ttl_s = ttl_s };

	ck_assert_int_eq(authn_new(&c, &a), 0);
	return a;
}

/* A series' value from the registry's text, e.g. "x_total{review=\"TokenReview\"}". */
static double
series(const char *name)
{
	struct buf b;
	char *text, *at;
	double v;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(metrics_render(reg, &b), 0);
	text = buf_steal(&b, NULL);
	at = strstr(text, name);
	ck_assert_msg(at != NULL, "%s missing", name);
	v = strtod(at + strlen(name) + 1, NULL);
	free(text);
	return v;
}

static double
reviews(const char *kind)
{
	char name[128];

	snprintf(name, sizeof(name), "milo_metrics_auth_reviews_total{review=\"%s\"}", kind);
	return series(name);
}

/* authn_check with a reply; the body copied to text (may be NULL). */
static int
check(struct authn *a, const char *header, const char *method, const char *path,
    int *status, char *text, size_t len)
{
	struct httpd_reply r = { 0 };
	int rc = authn_check(a, header, method, path, &r);

	*status = rc == AUTHN_ALLOWED ? 200 : r.status;
	if (text)
		snprintf(text, len, "%.*s", (int)r.body_len, r.body ? r.body : "");
	free(r.body);
	return rc;
}

START_TEST(test_outcomes)
{
	static const struct {
		const char *header, *method, *path;
		int result, status;
		const char *text;
	} cases[] = {
		{ NULL, "GET", "/metrics", AUTHN_UNAUTHENTICATED, 401, "Unauthorized" },
		{ "", "GET", "/metrics", AUTHN_UNAUTHENTICATED, 401, "Unauthorized" },
		{ "Basic cHJvbTpwcm9t", "GET", "/metrics", AUTHN_UNAUTHENTICATED, 401,
		  "Unauthorized" },
		{ "Bearer ", "GET", "/metrics", AUTHN_UNAUTHENTICATED, 401, "Unauthorized" },
		{ "Bearer  prom-token", "GET", "/metrics", AUTHN_UNAUTHENTICATED, 401,
		  "Unauthorized" },
		{ "Bearer\tprom-token", "GET", "/metrics", AUTHN_UNAUTHENTICATED, 401,
		  "Unauthorized" },
		{ "Bearer stolen", "GET", "/metrics", AUTHN_UNAUTHENTICATED, 401,
		  "Unauthorized" },
		{ "Bearer prom-token", "GET", "/metrics", AUTHN_ALLOWED, 200, "" },
		{ "  bearer prom-token  ", "GET", "/metrics", AUTHN_ALLOWED, 200, "" },
		{ "BEARER prom-token extra", "GET", "/metrics", AUTHN_ALLOWED, 200, "" },
		{ "Bearer prom-token", "HEAD", "/metrics", AUTHN_FORBIDDEN, 403,
		  "Authorization denied for user prom" },
		{ "Bearer prom-token", "GET", "/healthz", AUTHN_FORBIDDEN, 403,
		  "Authorization denied for user prom" },
		{ "Bearer nobody-token", "GET", "/metrics", AUTHN_FORBIDDEN, 403,
		  "Authorization denied for user nobody" },
	};
	struct authn *a = new_authn(0);
	char text[256];
	int status;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = check(a, cases[i].header, cases[i].method, cases[i].path,
		    &status, text, sizeof(text));

		ck_assert_msg(rc == cases[i].result, "case %zu: %d", i, rc);
		ck_assert_int_eq(status, cases[i].status);
		ck_assert_str_eq(text, cases[i].text);
	}
	ck_assert_double_eq(series("milo_metrics_auth_decisions_total{decision=\"allowed\"}"), 3);
	ck_assert_double_eq(series("milo_metrics_auth_decisions_total{decision="
	    "\"unauthenticated\"}"), 7);
	ck_assert_double_eq(series("milo_metrics_auth_decisions_total{decision=\"forbidden\"}"), 3);
	authn_free(a);
}
END_TEST

/* Outcomes are cached: repeated scrapes make no API call at all. */
START_TEST(test_cached)
{
	struct authn *a = new_authn(0);
	json_t *log;
	int status;

	ck_assert_int_eq(check(a, "Bearer prom-token", "GET", "/metrics", &status, NULL, 0),
	    AUTHN_ALLOWED);
	ck_assert_int_eq(check(a, "Bearer nobody-token", "GET", "/metrics", &status, NULL, 0),
	    AUTHN_FORBIDDEN);
	ck_assert_int_eq(check(a, "Bearer stolen", "GET", "/metrics", &status, NULL, 0),
	    AUTHN_UNAUTHENTICATED);
	ck_assert_double_eq(reviews("TokenReview"), 3);
	ck_assert_double_eq(reviews("SubjectAccessReview"), 2);
	json_decref(tu_standin_control(&tu_kube, "DELETE", "requests", NULL));
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(check(a, "Bearer prom-token", "GET", "/metrics", &status,
		    NULL, 0), AUTHN_ALLOWED);
		ck_assert_int_eq(check(a, "Bearer nobody-token", "GET", "/metrics", &status,
		    NULL, 0), AUTHN_FORBIDDEN);
		ck_assert_int_eq(check(a, "Bearer stolen", "GET", "/metrics", &status,
		    NULL, 0), AUTHN_UNAUTHENTICATED);
	}
	ck_assert_double_eq(reviews("TokenReview"), 3);
	ck_assert_double_eq(reviews("SubjectAccessReview"), 2);
	log = tu_standin_control(&tu_kube, "GET", "requests", NULL);
	ck_assert_int_eq(json_array_size(json_object_get(log, "items")), 0);
	json_decref(log);
	authn_free(a);
}
END_TEST

/* With a one-second life, a cached outcome is asked for again. */
START_TEST(test_expiry)
{
	struct authn *a = new_authn(1);
	time_t end = time(NULL) + WAIT_S;
	int status;

	ck_assert_int_eq(check(a, "Bearer prom-token", "GET", "/metrics", &status, NULL, 0),
	    AUTHN_ALLOWED);
	ck_assert_double_eq(reviews("TokenReview"), 1);
	while (reviews("TokenReview") < 2 && time(NULL) < end) {
		struct timespec ts = { 0, 50 * 1000000L };

		ck_assert_int_eq(check(a, "Bearer prom-token", "GET", "/metrics", &status,
		    NULL, 0), AUTHN_ALLOWED);
		nanosleep(&ts, NULL);
	}
	ck_assert_double_eq(reviews("TokenReview"), 2);
	ck_assert_double_ge(reviews("SubjectAccessReview"), 2);
	authn_free(a);
}
END_TEST

/* A review that fails is a 500 and is not remembered. */
START_TEST(test_review_fails)
{
	struct authn *a = new_authn(0);
	char text[256];
	int status;

	tu_standin_post(&tu_kube, "fail", "{\"count\": 1, \"code\": 500, \"pathPrefix\":"
	    " \"/apis/authentication.k8s.io\"}");
	ck_assert_int_eq(check(a, "Bearer prom-token", "GET", "/metrics", &status, text,
	    sizeof(text)), AUTHN_ERROR);
	ck_assert_int_eq(status, 500);
	ck_assert_str_eq(text, "Authentication failed");
	tu_standin_post(&tu_kube, "fail", "{\"count\": 1, \"code\": 503, \"pathPrefix\":"
	    " \"/apis/authorization.k8s.io\"}");
	ck_assert_int_eq(check(a, "Bearer prom-token", "GET", "/metrics", &status, text,
	    sizeof(text)), AUTHN_ERROR);
	ck_assert_str_eq(text, "Authorization for user prom failed");
	ck_assert_int_eq(check(a, "Bearer prom-token", "GET", "/metrics", &status, text,
	    sizeof(text)), AUTHN_ALLOWED);
	ck_assert_double_eq(series("milo_metrics_auth_decisions_total{decision=\"error\"}"), 2);
	authn_free(a);
}
END_TEST

/* The cache holds AUTHN_CACHE_MAX outcomes; past that the oldest goes. */
START_TEST(test_bounded)
{
	struct authn *a = new_authn(0);
	char header[64];
	int status, n = AUTHN_CACHE_MAX + 8;

	for (int i = 0; i < n; i++) {
		snprintf(header, sizeof(header), "Bearer refused-%d", i);
		ck_assert_int_eq(check(a, header, "GET", "/metrics", &status, NULL, 0),
		    AUTHN_UNAUTHENTICATED);
	}
	ck_assert_double_eq(reviews("TokenReview"), n);
	snprintf(header, sizeof(header), "Bearer refused-%d", n - 1);
	ck_assert_int_eq(check(a, header, "GET", "/metrics", &status, NULL, 0),
	    AUTHN_UNAUTHENTICATED);
	ck_assert_double_eq(reviews("TokenReview"), n);		/* still cached */
	ck_assert_int_eq(check(a, "Bearer refused-0", "GET", "/metrics", &status, NULL, 0),
	    AUTHN_UNAUTHENTICATED);
	ck_assert_double_eq(reviews("TokenReview"), n + 1);	/* evicted */
	authn_free(a);
}
END_TEST

/* A header longer than AUTHN_TOKEN_MAX is refused without a review. */
START_TEST(test_long_token)
{
	struct authn *a = new_authn(0);
	size_t len = AUTHN_TOKEN_MAX + 16;
	char *h = malloc(len + 1);
	int status;

	memcpy(h, "Bearer ", 7);
	memset(h + 7, 'x', len - 7);
	h[len] = '\0';
	ck_assert_int_eq(check(a, h, "GET", "/metrics", &status, NULL, 0),
	    AUTHN_UNAUTHENTICATED);
	ck_assert_double_eq(reviews("TokenReview"), 0);
	free(h);
	authn_free(a);
}
END_TEST

Suite *
authn_suite(void)
{
	Suite *s = suite_create("authn");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_unchecked_fixture(core, tu_kube_start, tu_kube_stop);
	tcase_add_checked_fixture(core, setup, teardown);
	tcase_set_timeout(core, 60);
	tcase_add_test(core, test_outcomes);
	tcase_add_test(core, test_cached);
	tcase_add_test(core, test_expiry);
	tcase_add_test(core, test_review_fails);
	tcase_add_unchecked_fixture(limits, tu_kube_start, tu_kube_stop);
	tcase_add_checked_fixture(limits, setup, teardown);
	tcase_set_timeout(limits, 120);
	tcase_add_test(limits, test_bounded);
	tcase_add_test(limits, test_long_token);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
