/* check_rules.c -- every admission rule fixture through admission_handle() */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "cache.h"
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

/*
 * A fixture with "state" (objects described like "object") runs against a
 * watch cache holding them, as a synced webhook would; without, stateless.
 */
static struct cache *
cache_from_state(const json_t *state)
{
	struct cache *c;
	size_t i;
	json_t *spec;

	ck_assert_int_eq(cache_new(NULL, &c), 0);
	for (int k = 0; k < KIND__COUNT; k++)
		ck_assert_int_eq(cache_replace(c, (enum resource_kind)k, NULL, 0), 0);
	json_array_foreach(state, i, spec) {
		json_t *obj = tu_rule_object(spec);
		enum resource_kind kind;
		struct cache_item *it;

		ck_assert_int_eq(kind_from_name(json_string_value(json_object_get(obj, "kind")),
		    &kind), 0);
		it = cache_item_from_json(kind, obj);
		ck_assert_ptr_nonnull(it);
		ck_assert_int_eq(cache_upsert(c, it), 0);
		json_decref(obj);
	}
	return c;
}

START_TEST(test_rule)
{
	json_t *rule = tu_rule_load(names[_i]);
	json_t *review = tu_rule_review(rule, names[_i]);
	char *body = json_dumps(review, JSON_COMPACT);
	const json_t *state = json_object_get(rule, "state");
	struct admission_env env = { 0 };
	struct admission_outcome out;
	enum resource_kind kind;
	enum admission_mode mode;

	ck_assert_msg(admission_route(tu_rule_endpoint(rule), &kind, &mode) == 0,
	    "%s: unknown endpoint", names[_i]);
	if (state)
		env.cache = cache_from_state(state);
	ck_assert_int_eq(admission_handle(state ? &env : NULL, kind, mode, body,
	    strlen(body), &out), 0);
	cache_free(env.cache);
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
