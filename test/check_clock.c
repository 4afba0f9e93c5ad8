/* check_clock.c -- timestamps and deadlines */
#include <check.h>
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

START_TEST(test_mono_and_deadline)
{
	struct timespec now, d;
	double a = clock_mono(), b;
	uint64_t ms = clock_mono_ms();

	clock_gettime(CLOCK_REALTIME, &now);
	clock_deadline(&d, 1500);
	ck_assert(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
	ck_assert(d.tv_sec > now.tv_sec || (d.tv_sec == now.tv_sec && d.tv_nsec > now.tv_nsec));
	ck_assert_int_le(d.tv_sec - now.tv_sec, 3);
	b = clock_mono();
	ck_assert(b >= a);
	ck_assert_uint_ge(clock_mono_ms(), ms);
}
END_TEST

Suite *
clock_suite(void)
{
	Suite *s = suite_create("clock");
	TCase *core = tcase_create("core");

	tcase_add_test(core, test_rfc3339);
	tcase_add_test(core, test_mono_and_deadline);
	suite_add_tcase(s, core);
	return s;
}
