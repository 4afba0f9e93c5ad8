/* check_base64.c -- RFC 4648 base64 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

Suite *base64_suite(void);

/* RFC 4648 section 10 test vectors. */
static const char *const vectors[][2] = {
	{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
};

START_TEST(test_vectors)
{
	const char *plain = vectors[_i][0], *enc = vectors[_i][1];
	size_t n;
	char *e = base64_encode(plain, strlen(plain), &n);
	unsigned char *d;

	ck_assert_str_eq(e, enc);
	ck_assert_uint_eq(n, strlen(enc));
	d = base64_decode(enc, strlen(enc), &n);
	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(n, strlen(plain));
	ck_assert_int_eq(memcmp(d, plain, n), 0);
	free(e);
	free(d);
}
END_TEST

START_TEST(test_binary)
{
	unsigned char all[256];
	size_t n;
	char *e;
	unsigned char *d;

	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	e = base64_encode(all, sizeof(all), NULL);
	d = base64_decode(e, strlen(e), &n);
	ck_assert_uint_eq(n, 256);
	ck_assert_int_eq(memcmp(d, all, 256), 0);
	free(e);
	free(d);
}
END_TEST

START_TEST(test_rejects)
{
	static const char *const bad[] = { "Zg=", "Zg", "Z===", "Zm9v!A==", "=Zm9", "Zg==Zg==", "Zm=v" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(base64_decode(bad[i], strlen(bad[i]), NULL) == NULL, "%s", bad[i]);
}
END_TEST

Suite *
base64_suite(void)
{
	Suite *s = suite_create("base64");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_loop_test(core, test_vectors, 0, sizeof(vectors) / sizeof(vectors[0]));
	tcase_add_test(core, test_binary);
	tcase_add_test(limits, test_rejects);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
