/* check_clock.c -- timestamps and deadlines */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "clock.h"

Suite *clock_suite(void);

START_TEST(test_rfc3339)
{
	char t[40];

	clock_rfc3339(t, sizeof(t), 0);
	ck_assert_uint_eq(strlen(t), 20);	/* 2026-11-25T17:05:23Z */
	ck_assert(t[4] == '-' && t[10] == 'T' && t[19] == 'Z');
	clock_rfc3339(t, sizeof(t), 3);
	ck_assert_uint_eq(strlen(t), 24);
	ck_assert(t[19] == '.' && t[23] == 'Z');
	clock_rfc3339(t, sizeof(t), 6);
	ck_assert_uint_eq(strlen(t), 27);	/* Kubernetes MicroTime */
	clock_rfc3339(t, 10, 6);
	ck_assert_str_eq(t, "");		/* too small: empty, never cut */
}
END_TEST

START_TEST(test_mono)
{
	double a = clock_mono(), b;
	uint64_t ms = clock_mono_ms();

	b = clock_mono();
	ck_assert(b >= a);
	ck_assert_uint_ge(clock_mono_ms(), ms);
}
END_TEST

/* A monotonic timed wait: it times out after about ms, and a signal ends it early. */
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c;
static int signalled;

static void *
signaller(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&m);
	signalled = 1;
	pthread_cond_signal(&c);
	pthread_mutex_unlock(&m);
	return NULL;
}

START_TEST(test_cond_wait)
{
	uint64_t t0;
	pthread_t t;
	int rc;

	ck_assert_int_eq(clock_cond_init(&c), 0);
	pthread_mutex_lock(&m);
	t0 = clock_mono_ms();
	rc = clock_cond_wait(&c, &m, 50);
	ck_assert_int_eq(rc, ETIMEDOUT);
	ck_assert_uint_ge(clock_mono_ms() - t0, 50);
	ck_assert_int_eq(pthread_create(&t, NULL, signaller, NULL), 0);
	while (!signalled)
		ck_assert_int_eq(clock_cond_wait(&c, &m, 60000), 0);
	pthread_mutex_unlock(&m);
	pthread_join(t, NULL);
	pthread_cond_destroy(&c);
}
END_TEST

Suite *
clock_suite(void)
{
	Suite *s = suite_create("clock");
	TCase *core = tcase_create("core");

	tcase_add_test(core, test_rfc3339);
	tcase_add_test(core, test_mono);
	tcase_add_test(core, test_cond_wait);
	suite_add_tcase(s, core);
	return s;
}
