/* check_workqueue.c -- dedup, dirty keys, delays, backoff, shutdown */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "workqueue.h"

Suite *workqueue_suite(void);

static struct workqueue *q;

static void
setup(void)
{
	ck_assert_int_eq(workqueue_new(&q), 0);
}

static void
teardown(void)
{
	workqueue_free(q);
	q = NULL;
}

static void
expect_key(const char *want)
{
	char *k = workqueue_get(q, 2000);

	ck_assert_ptr_nonnull(k);
	ck_assert_str_eq(k, want);
	workqueue_done(q, k);
	free(k);
}

START_TEST(test_dedup_and_order)
{
	ck_assert_int_eq(workqueue_add(q, "a"), 0);
	ck_assert_int_eq(workqueue_add(q, "b"), 0);
	ck_assert_int_eq(workqueue_add(q, "a"), 0);
	ck_assert_uint_eq(workqueue_len(q), 2);
	expect_key("a");
	expect_key("b");
	ck_assert_ptr_null(workqueue_get(q, 50));
}
END_TEST

START_TEST(test_dirty_while_processing)
{
	char *k;

	workqueue_add(q, "a");
	k = workqueue_get(q, 1000);
	ck_assert_str_eq(k, "a");
	/* Added while a worker holds it: not handed out twice, queued again after done. */
	workqueue_add(q, "a");
	ck_assert_uint_eq(workqueue_len(q), 0);
	ck_assert_ptr_null(workqueue_get(q, 50));
	workqueue_done(q, k);
	free(k);
	ck_assert_uint_eq(workqueue_len(q), 1);
	expect_key("a");
}
END_TEST

START_TEST(test_active_counts_ready_and_held_keys)
{
	char *k;

	ck_assert_uint_eq(workqueue_active(q), 0);
	workqueue_add(q, "a");
	workqueue_add(q, "b");
	workqueue_add_after(q, "later", 60000);
	/* Delayed keys are not active: background work may go on beside them. */
	ck_assert_uint_eq(workqueue_active(q), 2);
	k = workqueue_get(q, 1000);
	ck_assert_uint_eq(workqueue_len(q), 1);
	ck_assert_uint_eq(workqueue_active(q), 2);	/* one ready, one held */
	workqueue_done(q, k);
	free(k);
	ck_assert_uint_eq(workqueue_active(q), 1);
	expect_key("b");
	ck_assert_uint_eq(workqueue_active(q), 0);
	/* A key added while held counts once, and again once it is back in the list. */
	workqueue_add(q, "a");
	k = workqueue_get(q, 1000);
	workqueue_add(q, "a");
	ck_assert_uint_eq(workqueue_active(q), 1);
	workqueue_done(q, k);
	free(k);
	ck_assert_uint_eq(workqueue_active(q), 1);
	expect_key("a");
	ck_assert_uint_eq(workqueue_active(q), 0);
}
END_TEST

START_TEST(test_add_after)
{
	struct timespec a, b;
	char *k;

	clock_gettime(CLOCK_MONOTONIC, &a);
	workqueue_add_after(q, "late", 300);
	workqueue_add_after(q, "soon", 100);
	ck_assert_uint_eq(workqueue_len(q), 0);
	k = workqueue_get(q, 5000);
	ck_assert_str_eq(k, "soon");
	workqueue_done(q, k);
	free(k);
	expect_key("late");
	clock_gettime(CLOCK_MONOTONIC, &b);
	/* Only a lower bound: the machine may be slow, never fast. */
	ck_assert_int_ge((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000, 290);
	/* A sooner add wins over a pending later one; the later one is then stale. */
	workqueue_add_after(q, "x", 60000);
	workqueue_add_after(q, "x", 10);
	expect_key("x");
	ck_assert_ptr_null(workqueue_get(q, 100));
	/* An immediate add of a delayed key makes it ready now. */
	workqueue_add_after(q, "y", 60000);
	workqueue_add(q, "y");
	expect_key("y");
}
END_TEST

START_TEST(test_backoff)
{
	unsigned long d1, d2, d3;

	workqueue_add_backoff(q, "k", &d1);
	workqueue_add_backoff(q, "k", &d2);
	workqueue_add_backoff(q, "k", &d3);
	ck_assert_uint_eq(d1, WORKQUEUE_BACKOFF_MIN_MS);
	ck_assert_uint_eq(d2, 2 * WORKQUEUE_BACKOFF_MIN_MS);
	ck_assert_uint_eq(d3, 4 * WORKQUEUE_BACKOFF_MIN_MS);
	ck_assert_uint_eq(workqueue_failures(q, "k"), 3);
	for (int i = 0; i < 40; i++)
		workqueue_add_backoff(q, "k", &d1);
	ck_assert_uint_eq(d1, WORKQUEUE_BACKOFF_MAX_MS);
	workqueue_forget(q, "k");
	ck_assert_uint_eq(workqueue_failures(q, "k"), 0);
	workqueue_add_backoff(q, "k", &d1);
	ck_assert_uint_eq(d1, WORKQUEUE_BACKOFF_MIN_MS);
}
END_TEST

static void *
waiter(void *arg)
{
	(void)arg;
	return workqueue_get(q, 0);
}

START_TEST(test_shutdown_wakes)
{
	pthread_t t;
	void *res = (void *)1;

	ck_assert_int_eq(pthread_create(&t, NULL, waiter, NULL), 0);
	workqueue_shutdown(q);
	pthread_join(t, &res);
	ck_assert_ptr_null(res);
	ck_assert(workqueue_shutting_down(q));
	workqueue_add(q, "after");
	ck_assert_ptr_null(workqueue_get(q, 10));
}
END_TEST

#define N_KEYS 50
static atomic_int busy[N_KEYS];
static atomic_int overlaps, processed;

static void *
worker(void *arg)
{
	char *k;

	(void)arg;
	while ((k = workqueue_get(q, 0)) != NULL) {
		int i = atoi(k + 1);

		if (atomic_fetch_add(&busy[i], 1) != 0)
			atomic_fetch_add(&overlaps, 1);
		atomic_fetch_add(&processed, 1);
		atomic_fetch_sub(&busy[i], 1);
		workqueue_done(q, k);
		free(k);
	}
	return NULL;
}

/* Four workers, keys added from the main thread: a key never runs twice at once. */
START_TEST(test_workers_exclusive)
{
	pthread_t t[4];
	char key[16];
	int adds = tu_under_valgrind() ? 2000 : 50000;

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker, NULL), 0);
	for (int i = 0; i < adds; i++) {
		snprintf(key, sizeof(key), "k%d", i % N_KEYS);
		ck_assert_int_eq(workqueue_add(q, key), 0);
	}
	while (workqueue_len(q) > 0) {
		struct timespec ts = { 0, 1000000 };

		nanosleep(&ts, NULL);
	}
	workqueue_shutdown(q);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(atomic_load(&overlaps), 0);
	ck_assert_int_ge(atomic_load(&processed), N_KEYS);
	ck_assert_int_le(atomic_load(&processed), adds);
}
END_TEST

Suite *
workqueue_suite(void)
{
	Suite *s = suite_create("workqueue");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_checked_fixture(core, setup, teardown);
	tcase_add_checked_fixture(limits, setup, teardown);
	tcase_add_test(core, test_dedup_and_order);
	tcase_add_test(core, test_dirty_while_processing);
	tcase_add_test(core, test_active_counts_ready_and_held_keys);
	tcase_add_test(core, test_add_after);
	tcase_add_test(core, test_backoff);
	tcase_add_test(core, test_shutdown_wakes);
	tcase_add_test(limits, test_workers_exclusive);
	tcase_set_timeout(limits, 120);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
