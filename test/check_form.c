/* check_form.c -- application/x-www-form-urlencoded bodies */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "form.h"

Suite *form_suite(void);

/*
 * The WHATWG urlencoded serializer's byte classes (URL standard 5.2): kept
 * as they are, a space as "+", everything else %XX upper case. Expected
 * values checked against Python's urllib.parse.quote_plus(s, safe="*")
 * (which differs from WHATWG only in keeping "~").
 */
static const char *const vectors[][2] = {
	{ "", "" },
	{ "abcXYZ019", "abcXYZ019" },
	{ "*-._", "*-._" },
	{ "~", "%7E" },
	{ "a b", "a+b" },
	{ "+", "%2B" },
	{ "&=%", "%26%3D%25" },
	{ "ada@example.com", "ada%40example.com" },
	{ "{\"contact\":\"org-a/ada\"}", "%7B%22contact%22%3A%22org-a%2Fada%22%7D" },
	{ "\xc3\xbc", "%C3%BC" },			/* ü in UTF-8 */
	{ "\x01\x7f\xff", "%01%7F%FF" },
	{ "line\r\nbreak", "line%0D%0Abreak" },
};

START_TEST(test_escape_vectors)
{
	const char *in = vectors[_i][0], *want = vectors[_i][1];
	char out[128];

	ck_assert_uint_eq(form_escape(in, out, sizeof(out)), strlen(want));
	ck_assert_str_eq(out, want);
}
END_TEST

START_TEST(test_escape_truncates_like_snprintf)
{
	char out[5];

	ck_assert_uint_eq(form_escape("a@b c", out, sizeof(out)), 7);	/* "a%40b+c" */
	ck_assert_str_eq(out, "a%40");
	ck_assert_uint_eq(form_escape("abc", out, 0), 3);
	ck_assert_uint_eq(form_escape("@", out, 1), 3);
	ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_pairs)
{
	struct form f;

	form_init(&f, FORM_BODY_MAX);
	ck_assert_str_eq(form_text(&f), "");
	ck_assert_int_eq(form_add(&f, "address", "ada@example.com"), 0);
	ck_assert_int_eq(form_add(&f, "name", "Ada Lovelace"), 0);
	ck_assert_int_eq(form_add(&f, "vars", "{\"contact\":\"org-a/ada\"}"), 0);
	ck_assert_int_eq(form_add_bool(&f, "subscribed", true), 0);
	ck_assert_int_eq(form_add_bool(&f, "upsert", false), 0);
	ck_assert_int_eq(form_add(&f, "description", ""), 0);
	ck_assert_str_eq(form_text(&f), "address=ada%40example.com&name=Ada+Lovelace"
	    "&vars=%7B%22contact%22%3A%22org-a%2Fada%22%7D&subscribed=yes&upsert=no"
	    "&description=");
	ck_assert_uint_eq(form_len(&f), strlen(form_text(&f)));
	ck_assert_int_eq(form_add(&f, NULL, "x"), -EINVAL);
	ck_assert_int_eq(form_add(&f, "x", NULL), -EINVAL);
	form_free(&f);
}
END_TEST

/* A long value crosses the encoder's stack chunk several times. */
START_TEST(test_long_value)
{
	struct form f;
	char *v = malloc(10001), *want = malloc(30001);

	for (int i = 0; i < 10000; i++) {
		v[i] = i % 2 ? '@' : 'a';
		memcpy(want + (i / 2) * 4, "a%40", 4);
	}
	v[10000] = '\0';
	want[20000] = '\0';
	form_init(&f, FORM_BODY_MAX);
	ck_assert_int_eq(form_add(&f, "k", v), 0);
	ck_assert_str_eq(form_text(&f) + 2, want);
	ck_assert_uint_eq(form_len(&f), 20002);
	form_free(&f);
	free(v);
	free(want);
}
END_TEST

START_TEST(test_cap)
{
	struct form f;

	form_init(&f, 16);
	ck_assert_int_eq(form_add(&f, "a", "0123456789"), 0);	/* 12 bytes */
	ck_assert_int_eq(form_add(&f, "b", "@"), -E2BIG);	/* 12 + 5 > 16 */
	/* Emptied, never half-built. */
	ck_assert_uint_eq(form_len(&f), 0);
	ck_assert_str_eq(form_text(&f), "");
	form_free(&f);
}
END_TEST

Suite *
form_suite(void)
{
	Suite *s = suite_create("form");
	TCase *core = tcase_create("core"), *limits = tcase_create("limits");

	tcase_add_loop_test(core, test_escape_vectors, 0, sizeof(vectors) / sizeof(vectors[0]));
	tcase_add_test(core, test_pairs);
	tcase_add_test(core, test_long_value);
	tcase_add_test(limits, test_escape_truncates_like_snprintf);
	tcase_add_test(limits, test_cap);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
