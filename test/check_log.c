/* check_log.c -- JSON-line logging */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

Suite *log_suite(void);

static FILE *tmp;

static void
capture(void)
{
	tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	log_set_fd(fileno(tmp));
	log_set_level(LOG_INFO);
}

static void
release(void)
{
	log_set_fd(-1);
	log_set_level(LOG_INFO);
	if (tmp)
		fclose(tmp);
	tmp = NULL;
}

/* Every line written so far, as JSON values in an array. */
static json_t *
lines(void)
{
	json_t *all = json_array();
	char line[8192];

	rewind(tmp);
	while (fgets(line, sizeof(line), tmp)) {
		json_t *j = json_loads(line, 0, NULL);

		ck_assert_msg(j != NULL, "not JSON: %s", line);
		ck_assert_msg(line[strlen(line) - 1] == '\n', "line not terminated");
		json_array_append_new(all, j);
	}
	return all;
}

START_TEST(test_line_shape)
{
	json_t *all, *l;

	log_info("admission", "{s:s, s:b, s:f, s:i}", "uid", "u-1", "allowed", 0,
	    "ms", 0.25, "code", 422);
	log_warn("plain", NULL);
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 2);
	l = json_array_get(all, 0);
	ck_assert_str_eq(json_string_value(json_object_get(l, "level")), "info");
	ck_assert_str_eq(json_string_value(json_object_get(l, "msg")), "admission");
	ck_assert_str_eq(json_string_value(json_object_get(l, "uid")), "u-1");
	ck_assert(json_is_false(json_object_get(l, "allowed")));
	ck_assert_int_eq(json_integer_value(json_object_get(l, "code")), 422);
	/* 2026-11-25T17:05:23.123Z */
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(l, "time"))), 24);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 1), "level")), "warn");
	json_decref(all);
}
END_TEST

START_TEST(test_levels)
{
	json_t *all;

	ck_assert_int_eq(log_set_level_name("warn"), 0);
	log_info("hidden", NULL);
	log_debug("hidden", NULL);
	log_error("shown", NULL);
	ck_assert_int_ne(log_set_level_name("loud"), 0);
	ck_assert_int_eq(log_get_level(), LOG_WARN);
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 1);
	json_decref(all);
}
END_TEST

START_TEST(test_hostile_values)
{
	json_t *all, *l;

	/* Quotes, newlines and a reserved key cannot break or forge a line. */
	log_info("a\"b\nc", "{s:s, s:s}", "msg", "forged", "k", "v\n{\"level\":\"error\"}");
	log_info("bad format", "{s:i", "x", 1);
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 2);
	l = json_array_get(all, 0);
	ck_assert_str_eq(json_string_value(json_object_get(l, "msg")), "a\"b\nc");
	ck_assert_str_eq(json_string_value(json_object_get(l, "k")), "v\n{\"level\":\"error\"}");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 1), "msg")),
	    "bad format");
	json_decref(all);
}
END_TEST

Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_checked_fixture(core, capture, release);
	tcase_add_checked_fixture(limits, capture, release);
	tcase_add_test(core, test_line_shape);
	tcase_add_test(core, test_levels);
	tcase_add_test(limits, test_hostile_values);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
