/* check_metrics.c -- counters, gauges, histograms and their text exposition */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metrics.h"

Suite *metrics_suite(void);

/* The registry rendered; free() the result. */
static char *
render(struct metrics *m)
{
	struct buf b;
	char *s;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	s = buf_steal(&b, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(test_counter_text)
{
	struct metrics *m = metrics_new();
	struct metric *f = metrics_counter(m, "milo_things_total",
	    "Things seen.", (const char *const[]){ "webhook", "code", NULL });
	struct metric_series *a, *b;
	char *s;

	ck_assert_ptr_nonnull(f);
	a = metric_get(f, (const char *const[]){ "/a", "200" });
	b = metric_get(f, (const char *const[]){ "/a", "500" });
	ck_assert_ptr_eq(a, metric_get(f, (const char *const[]){ "/a", "200" }));
	metric_inc(a);
	metric_inc(a);
	metric_add(b, 2.5);
	metric_add(b, -1);	/* counters never go down */
	s = render(m);
	ck_assert_str_eq(s,
	    "# HELP milo_things_total Things seen.\n"
	    "# TYPE milo_things_total counter\n"
	    "milo_things_total{webhook=\"/a\",code=\"200\"} 2\n"
	    "milo_things_total{webhook=\"/a\",code=\"500\"} 2.5\n");
	free(s);
	metrics_free(m);
}
END_TEST

START_TEST(test_gauge_without_labels)
{
	struct metrics *m = metrics_new();
	struct metric *f = metrics_gauge(m, "up_things", "Up.", NULL);
	struct metric_series *g = metric_get(f, NULL);
	char *s;

	/* A family without labels shows its single series at once. */
	s = render(m);
	ck_assert_ptr_nonnull(strstr(s, "\nup_things 0\n"));
	free(s);
	metric_inc(g);
	metric_inc(g);
	metric_dec(g);
	ck_assert(metric_value(g) == 1);
	metric_set(g, 1e300);
	s = render(m);
	ck_assert_ptr_nonnull(strstr(s, "\nup_things 1e+300\n"));
	free(s);
	metric_set(g, 0.1);
	s = render(m);
	ck_assert_ptr_nonnull(strstr(s, "\nup_things 0.1\n"));
	free(s);
	metrics_free(m);
}
END_TEST

START_TEST(test_histogram_text)
{
	static const double bounds[] = { 0.001, 0.01, 1 };
	struct metrics *m = metrics_new();
	struct metric *f = metrics_histogram(m, "lat_seconds", "Latency.",
	    (const char *const[]){ "webhook", NULL }, bounds, 3);
	struct metric_series *h = metric_get(f, (const char *const[]){ "/v" });
	char *s;

	metric_observe(h, 0.0005);
	metric_observe(h, 0.001);	/* le is inclusive */
	metric_observe(h, 0.5);
	metric_observe(h, 30);
	metric_observe(h, NAN);		/* ignored */
	s = render(m);
	ck_assert_str_eq(s,
	    "# HELP lat_seconds Latency.\n"
	    "# TYPE lat_seconds histogram\n"
	    "lat_seconds_bucket{webhook=\"/v\",le=\"0.001\"} 2\n"
	    "lat_seconds_bucket{webhook=\"/v\",le=\"0.01\"} 2\n"
	    "lat_seconds_bucket{webhook=\"/v\",le=\"1\"} 3\n"
	    "lat_seconds_bucket{webhook=\"/v\",le=\"+Inf\"} 4\n"
	    "lat_seconds_sum{webhook=\"/v\"} 30.5015\n"
	    "lat_seconds_count{webhook=\"/v\"} 4\n");
	ck_assert(metric_value(h) == 4);
	free(s);
	metrics_free(m);
}
END_TEST

START_TEST(test_latency_buckets)
{
	ck_assert(metrics_latency_buckets[0] <= 0.0001);
	ck_assert(metrics_latency_buckets[metrics_latency_buckets_len - 1] >= 10);
	ck_assert_uint_le(metrics_latency_buckets_len, METRICS_MAX_BUCKETS);
}
END_TEST

START_TEST(test_escaping)
{
	struct metrics *m = metrics_new();
	struct metric *f = metrics_counter(m, "esc_total", "a \\ b\nc",
	    (const char *const[]){ "v", NULL });
	char *s;

	metric_inc(metric_get(f, (const char *const[]){ "q\"b\\n\nx" }));
	s = render(m);
	ck_assert_str_eq(s,
	    "# HELP esc_total a \\\\ b\\nc\n"
	    "# TYPE esc_total counter\n"
	    "esc_total{v=\"q\\\"b\\\\n\\nx\"} 1\n");
	free(s);
	metrics_free(m);
}
END_TEST

START_TEST(test_types_are_kept_apart)
{
	struct metrics *m = metrics_new();
	struct metric_series *c = metric_get(metrics_counter(m, "c_total", "",
	    NULL), NULL);
	struct metric_series *h = metric_get(metrics_histogram(m, "h", "",
	    NULL, metrics_latency_buckets, metrics_latency_buckets_len), NULL);

	metric_set(c, 5);	/* not a gauge */
	metric_dec(c);
	metric_observe(c, 1);
	metric_inc(h);		/* not a counter */
	ck_assert(metric_value(c) == 0);
	ck_assert(metric_value(h) == 0);
	metrics_free(m);
}
END_TEST

struct hammer {
	struct metric_series *counter;
	struct metric_series *hist;
	struct metric *family;
};

static void *
hammer_main(void *arg)
{
	struct hammer *hm = arg;

	for (int i = 0; i < 20000; i++) {
		metric_inc(hm->counter);
		metric_observe(hm->hist, 0.002);
		if (i % 1000 == 0)
			metric_inc(metric_get(hm->family,
			    (const char *const[]){ i % 2000 ? "odd" : "even" }));
	}
	return NULL;
}

START_TEST(test_concurrent_updates)
{
	struct metrics *m = metrics_new();
	struct hammer hm;
	pthread_t t[4];
	char *s;

	hm.counter = metric_get(metrics_counter(m, "n_total", "", NULL), NULL);
	hm.hist = metric_get(metrics_histogram(m, "d_seconds", "", NULL,
	    metrics_latency_buckets, metrics_latency_buckets_len), NULL);
	hm.family = metrics_counter(m, "by_total", "",
	    (const char *const[]){ "k", NULL });
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_main, &hm), 0);
	for (int i = 0; i < 4; i++) {
		s = render(m);	/* scrapes race with updates */
		free(s);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert(metric_value(hm.counter) == 80000);
	ck_assert(metric_value(hm.hist) == 80000);
	s = render(m);
	ck_assert_ptr_nonnull(strstr(s, "d_seconds_count 80000\n"));
	ck_assert_ptr_nonnull(strstr(s, "by_total{k=\"even\"} 40\n"));
	ck_assert_ptr_nonnull(strstr(s, "by_total{k=\"odd\"} 40\n"));
	free(s);
	metrics_free(m);
}
END_TEST

static int collected, freed;

static void
collect_calls(void *arg)
{
	collected++;
	metric_set(arg, (double)collected);
}

static void
count_free(void *arg)
{
	(void)arg;
	freed++;
}

/* A collector sets its values before every render and is freed with the registry. */
START_TEST(test_collector)
{
	struct metrics *m = metrics_new();
	struct metric_series *g = metric_get(metrics_gauge(m, "renders", "Renders.",
	    NULL), NULL);
	char *s;

	collected = freed = 0;
	ck_assert_int_eq(metrics_add_collector(m, collect_calls, count_free, g), 0);
	ck_assert_int_eq(collected, 0);
	s = render(m);
	ck_assert_str_eq(s, "# HELP renders Renders.\n# TYPE renders gauge\nrenders 1\n");
	free(s);
	s = render(m);
	ck_assert_str_eq(s, "# HELP renders Renders.\n# TYPE renders gauge\nrenders 2\n");
	free(s);
	for (int i = 1; i < METRICS_MAX_COLLECTORS; i++)
		ck_assert_int_eq(metrics_add_collector(m, collect_calls, NULL, g), 0);
	ck_assert_int_eq(metrics_add_collector(m, collect_calls, count_free, g), -ENOSPC);
	ck_assert_int_eq(metrics_add_collector(m, NULL, NULL, NULL), -EINVAL);
	metrics_free(m);
	ck_assert_int_eq(freed, 1);
}
END_TEST

START_TEST(test_bad_registrations)
{
	static const double down[] = { 1, 0.5 };
	struct metrics *m = metrics_new();

	ck_assert_ptr_nonnull(metrics_counter(m, "ok_total", "", NULL));
	ck_assert_ptr_null(metrics_counter(m, "ok_total", "", NULL));
	ck_assert_ptr_null(metrics_gauge(m, "9lives", "", NULL));
	ck_assert_ptr_null(metrics_gauge(m, "has-dash", "", NULL));
	ck_assert_ptr_null(metrics_gauge(m, "", "", NULL));
	ck_assert_ptr_null(metrics_gauge(m, "g", "",
	    (const char *const[]){ "bad:label", NULL }));
	ck_assert_ptr_null(metrics_gauge(m, "g", "",
	    (const char *const[]){ "__reserved", NULL }));
	ck_assert_ptr_null(metrics_gauge(m, "g", "",
	    (const char *const[]){ "a", "a", NULL }));
	ck_assert_ptr_null(metrics_histogram(m, "h", "",
	    (const char *const[]){ "le", NULL }, NULL, 0));
	ck_assert_ptr_null(metrics_histogram(m, "h", "", NULL, down, 2));
	ck_assert_ptr_nonnull(metrics_gauge(m, "ns:sub_g", "", NULL));
	metrics_free(m);
}
END_TEST

START_TEST(test_bad_series)
{
	struct metrics *m = metrics_new();
	struct metric *f = metrics_counter(m, "x_total", "",
	    (const char *const[]){ "a", "b", NULL });
	char *big = malloc(METRICS_MAX_VALUE + 2);

	memset(big, 'v', METRICS_MAX_VALUE + 1);
	big[METRICS_MAX_VALUE + 1] = '\0';
	ck_assert_ptr_null(metric_get(f, NULL));
	ck_assert_ptr_null(metric_get(f, (const char *const[]){ "1", NULL }));
	ck_assert_ptr_null(metric_get(f, (const char *const[]){ "1", big }));
	ck_assert_ptr_null(metric_get(NULL, NULL));
	/* Updates through a failed lookup do nothing rather than crash. */
	metric_inc(NULL);
	metric_observe(NULL, 1);
	metric_set(NULL, 1);
	free(big);
	metrics_free(m);
	metrics_free(NULL);
}
END_TEST

START_TEST(test_render_cap)
{
	struct metrics *m = metrics_new();
	struct metric *f = metrics_counter(m, "wide_total", "",
	    (const char *const[]){ "i", NULL });
	char v[16];
	struct buf b;

	for (int i = 0; i < 200; i++) {
		snprintf(v, sizeof(v), "%d", i);
		metric_inc(metric_get(f, (const char *const[]){ v }));
	}
	buf_init(&b, 256);
	ck_assert_int_eq(metrics_render(m, &b), -E2BIG);
	ck_assert_ptr_null(b.ptr);
	metrics_free(m);
}
END_TEST

Suite *
metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_counter_text);
	tcase_add_test(core, test_gauge_without_labels);
	tcase_add_test(core, test_histogram_text);
	tcase_add_test(core, test_latency_buckets);
	tcase_add_test(core, test_escaping);
	tcase_add_test(core, test_types_are_kept_apart);
	tcase_add_test(core, test_concurrent_updates);
	tcase_add_test(core, test_collector);
	tcase_set_timeout(core, 60);
	tcase_add_test(limits, test_bad_registrations);
	tcase_add_test(limits, test_bad_series);
	tcase_add_test(limits, test_render_cap);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
