/* check_rules.c -- every admission rule fixture through admission_handle() */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "testutil.h"

Suite *rules_suite(void);

static char **names;
static size_t n_names;

static void
load_names(void)
{
	names = tu_rule_names(&n_names);
}

static void
free_names(void)
{
	tu_names_free(names, n_names);
	names = NULL;
	n_names = 0;
}

START_TEST(test_rule)
{
	json_t *rule = tu_rule_load(names[_i]);
	json_t *review = tu_rule_review(rule, names[_i]);
	char *body = json_dumps(review, JSON_COMPACT);
	struct admission_outcome out;
	enum resource_kind kind;
	enum admission_mode mode;

	ck_assert_msg(admission_route(tu_rule_endpoint(rule), &kind, &mode) == 0,
	    "%s: unknown endpoint", names[_i]);
	ck_assert_int_eq(admission_handle(NULL, kind, mode, body, strlen(body), &out), 0);
	tu_rule_assert(rule, names[_i], out.http_status, out.body, out.body_len);
	admission_outcome_free(&out);
	free(body);
	json_decref(review);
	json_decref(rule);
}
END_TEST

START_TEST(test_fixture_count)
{
	/* The table must not silently shrink to nothing. */
	ck_assert_uint_ge(n_names, 50);
}
END_TEST

Suite *
rules_suite(void)
{
	Suite *s = suite_create("rules");
	TCase *tc = tcase_create("core");

	/* The loop bound must be known when the suite is built. */
	load_names();
	atexit(free_names);
	tcase_add_test(tc, test_fixture_count);
	tcase_add_loop_test(tc, test_rule, 0, (int)n_names);
	suite_add_tcase(s, tc);
	return s;
}
