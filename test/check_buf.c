/* check_buf.c -- the size-capped buffer */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

Suite *buf_suite(void);

START_TEST(test_append)
{
	struct buf b;
	char *s;
	size_t n;

	buf_init(&b, 1 << 20);
	ck_assert_str_eq(buf_str(&b), "");
	ck_assert_int_eq(buf_addstr(&b, "hello"), 0);
	ck_assert_int_eq(buf_addc(&b, ' '), 0);
	ck_assert_int_eq(buf_printf(&b, "%s %d", "world", 42), 0);
	ck_assert_str_eq(buf_str(&b), "hello world 42");
	ck_assert_uint_eq(b.len, 14);
	buf_reset(&b);
	ck_assert_str_eq(buf_str(&b), "");
	ck_assert_int_eq(buf_add(&b, "a\0b", 3), 0);
	ck_assert_uint_eq(b.len, 3);
	s = buf_steal(&b, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(memcmp(s, "a\0b", 4), 0);
	ck_assert_ptr_null(b.ptr);
	free(s);
	s = buf_steal(&b, &n);
	ck_assert_str_eq(s, "");
	free(s);
	buf_free(&b);
}
END_TEST

START_TEST(test_grows)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	for (int i = 0; i < 10000; i++)
		ck_assert_int_eq(buf_addstr(&b, "0123456789"), 0);
	ck_assert_uint_eq(b.len, 100000);
	ck_assert_uint_ge(b.cap, b.len + 1);
	buf_free(&b);
}
END_TEST

START_TEST(test_cap_exact)
{
	struct buf b;

	buf_init(&b, 10);
	ck_assert_int_eq(buf_add(&b, "0123456789", 10), 0);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_uint_le(b.cap, 11);
	ck_assert_int_eq(buf_addc(&b, 'x'), -E2BIG);
	/* Like curl's dynbuf, an overflow frees: nothing half-written remains. */
	ck_assert_ptr_null(b.ptr);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_cap_zero)
{
	struct buf b;

	buf_init(&b, 0);
	ck_assert_int_eq(buf_add(&b, "", 0), 0);
	ck_assert_int_eq(buf_addc(&b, 'x'), -E2BIG);
	ck_assert_int_eq(buf_printf(&b, "%d", 1), -E2BIG);
	buf_free(&b);
}
END_TEST

START_TEST(test_huge_length)
{
	struct buf b;

	buf_init(&b, 100);
	ck_assert_int_eq(buf_addstr(&b, "abc"), 0);
	/* A length that would wrap size_t arithmetic must be refused, not wrapped. */
	ck_assert_int_eq(buf_add(&b, "x", (size_t)-2), -E2BIG);
	buf_free(&b);
}
END_TEST

Suite *
buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_append);
	tcase_add_test(core, test_grows);
	tcase_add_test(limits, test_cap_exact);
	tcase_add_test(limits, test_cap_zero);
	tcase_add_test(limits, test_huge_length);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
