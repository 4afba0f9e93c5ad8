/* check_ratelimit.c -- the learned request rate, in process (no server) */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "clock.h"
#include "ratelimit.h"
#include "testutil.h"

Suite *ratelimit_suite(void);

START_TEST(test_starts_at_half_after_a_window)
{
	struct ratelimit *rl;
	double waited;

	ck_assert_int_eq(ratelimit_new(10, -1, &rl), 0);
	ck_assert_msg(fabs(ratelimit_rate(rl) - 5) < 0.2, "rate %g", ratelimit_rate(rl));
	ck_assert(ratelimit_configured(rl) == 10);
	waited = ratelimit_acquire(rl);
	ck_assert_msg(waited >= RATELIMIT_WINDOW_S - 0.05, "waited %g", waited);
	/* It grows back to the configured rate, never above. */
	for (int i = 0; i < 3; i++)
		ratelimit_acquire(rl);
	ck_assert_msg(ratelimit_rate(rl) <= 10, "rate %g", ratelimit_rate(rl));
	ratelimit_free(rl);
}
END_TEST

START_TEST(test_server_states_its_quota)
{
	struct ratelimit *rl;

	ck_assert_int_eq(ratelimit_new(100, 0, &rl), 0);
	ratelimit_server(rl, 5, 1, -1, -1);
	ck_assert_msg(ratelimit_rate(rl) <= 5, "rate %g", ratelimit_rate(rl));
	/* A window of 2 s: 10 requests in it are 5 per second. */
	ratelimit_server(rl, 10, 2, -1, -1);
	ck_assert_msg(ratelimit_rate(rl) <= 5, "rate %g", ratelimit_rate(rl));
	ratelimit_free(rl);
}
END_TEST

START_TEST(test_throttled_learns_what_was_accepted)
{
	struct ratelimit *rl;
	double t0, waited;

	ck_assert_int_eq(ratelimit_new(50, 0, &rl), 0);
	for (int i = 0; i < 4; i++)
		ratelimit_accepted(rl);
	ratelimit_throttled(rl, 0.2);
	/* 4 accepted in the last second: a little under 4 per second from now. */
	ck_assert_msg(ratelimit_rate(rl) > 3.5 && ratelimit_rate(rl) < 4,
	    "rate %g", ratelimit_rate(rl));
	t0 = clock_mono();
	waited = ratelimit_acquire(rl);
	ck_assert_msg(waited >= 0.15 && clock_mono() - t0 >= 0.15, "retry-after not kept: %g",
	    waited);
	/* Nothing accepted at all: halve. */
	ratelimit_free(rl);
	ck_assert_int_eq(ratelimit_new(8, 0, &rl), 0);
	ratelimit_throttled(rl, -1);
	ck_assert_msg(ratelimit_rate(rl) <= 2.1, "rate %g", ratelimit_rate(rl));
	ratelimit_free(rl);
}
END_TEST

START_TEST(test_rejects_bad_rates)
{
	struct ratelimit *rl = (struct ratelimit *)&rl;

	ck_assert_int_eq(ratelimit_new(0, 0, &rl), -EINVAL);
	ck_assert_ptr_null(rl);
	ck_assert_int_eq(ratelimit_new(-1, 0, &rl), -EINVAL);
	ck_assert_int_eq(ratelimit_new(NAN, 0, &rl), -EINVAL);
	ratelimit_free(NULL);
}
END_TEST

Suite *
ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_starts_at_half_after_a_window);
	tcase_add_test(core, test_server_states_its_quota);
	tcase_add_test(core, test_throttled_learns_what_was_accepted);
	tcase_add_test(limits, test_rejects_bad_rates);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
