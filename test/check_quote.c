/* check_quote.c -- Go %q and encoding/json string forms */
#include <check.h>
#include <string.h>

#include "quote.h"

Suite *quote_suite(void);

struct qcase {
	const char *in;
	size_t len;		/* 0: strlen(in) */
	const char *want;
};

/* Expected values are what Go 1.22's strconv.Quote prints. */
static const struct qcase go_cases[] = {
	{ "", 0, "\"\"" },
	{ "john@", 0, "\"john@\"" },
	{ "a\"b\\c", 0, "\"a\\\"b\\\\c\"" },
	{ "\a\b\f\n\r\t\v", 0, "\"\\a\\b\\f\\n\\r\\t\\v\"" },
	{ "\x01", 0, "\"\\x01\"" },
	{ "\x1f", 0, "\"\\x1f\"" },
	{ "\x7f", 0, "\"\\x7f\"" },
	{ "a\0b", 3, "\"a\\x00b\"" },
	{ "jos\xc3\xa9", 0, "\"jos\xc3\xa9\"" },
	{ "\xc2\xa0", 0, "\"\\u00a0\"" },
	{ "\xc2\x85", 0, "\"\\u0085\"" },
	{ "\xc2\xad", 0, "\"\\u00ad\"" },
	{ "\xe2\x80\x8b", 0, "\"\\u200b\"" },
	{ "\xe2\x80\xa8", 0, "\"\\u2028\"" },
	{ "\xef\xbb\xbf", 0, "\"\\ufeff\"" },
	{ "\xee\x80\x80", 0, "\"\\ue000\"" },
	{ "\xf3\xb0\x80\x80", 0, "\"\\U000f0000\"" },
	{ "\xf0\x9f\x98\x80", 0, "\"\xf0\x9f\x98\x80\"" },
	{ "\xe6\x97\xa5\xe6\x9c\xac", 0, "\"\xe6\x97\xa5\xe6\x9c\xac\"" },
	{ "\xff", 0, "\"\\xff\"" },
	{ "\xc0\x80", 0, "\"\\xc0\\x80\"" },
	{ "\xed\xa0\x80", 0, "\"\\xed\\xa0\\x80\"" },
	{ "\xe2\x82", 0, "\"\\xe2\\x82\"" },
	{ "\xf4\x90\x80\x80", 0, "\"\\xf4\\x90\\x80\\x80\"" },
	{ "'single' `back`", 0, "\"'single' `back`\"" },
};

START_TEST(test_go_quote)
{
	const struct qcase *c = &go_cases[_i];
	struct buf b;

	buf_init(&b, 1024);
	ck_assert_int_eq(quote_go(&b, c->in, c->len ? c->len : strlen(c->in)), 0);
	ck_assert_str_eq(buf_str(&b), c->want);
	buf_free(&b);
}
END_TEST

static const struct qcase json_cases[] = {
	{ "plain", 0, "\"plain\"" },
	{ "<a&b>", 0, "\"\\u003ca\\u0026b\\u003e\"" },
	{ "q\"\\", 0, "\"q\\\"\\\\\"" },
	{ "\n\r\t\b\f", 0, "\"\\n\\r\\t\\b\\f\"" },
	{ "\x01", 0, "\"\\u0001\"" },
	{ "\xe2\x80\xa8\xe2\x80\xa9", 0, "\"\\u2028\\u2029\"" },
	{ "\xff", 0, "\"\\ufffd\"" },
	{ "jos\xc3\xa9", 0, "\"jos\xc3\xa9\"" },
};

START_TEST(test_json_quote)
{
	const struct qcase *c = &json_cases[_i];
	struct buf b;

	buf_init(&b, 1024);
	ck_assert_int_eq(quote_json(&b, c->in, c->len ? c->len : strlen(c->in)), 0);
	ck_assert_str_eq(buf_str(&b), c->want);
	buf_free(&b);
}
END_TEST

START_TEST(test_utf8)
{
	ck_assert(utf8_valid("jos\xc3\xa9", 5));
	ck_assert(!utf8_valid("\xc3", 1));
	ck_assert(!utf8_valid("\xed\xa0\x80", 3));
	ck_assert_uint_eq(utf8_runes("jos\xc3\xa9", 5), 4);
	ck_assert_uint_eq(utf8_runes("\xff\xff", 2), 2);
	ck_assert_uint_eq(utf8_runes("", 0), 0);
}
END_TEST

START_TEST(test_quote_cap)
{
	struct buf b;

	/* The quoted form outgrows a small cap: the append fails, nothing leaks. */
	buf_init(&b, 8);
	ck_assert_int_ne(quote_go(&b, "\x01\x02\x03\x04", 4), 0);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b);
}
END_TEST

Suite *
quote_suite(void)
{
	Suite *s = suite_create("quote");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_loop_test(core, test_go_quote, 0, sizeof(go_cases) / sizeof(go_cases[0]));
	tcase_add_loop_test(core, test_json_quote, 0,
	    sizeof(json_cases) / sizeof(json_cases[0]));
	tcase_add_test(core, test_utf8);
	tcase_add_test(limits, test_quote_cap);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
