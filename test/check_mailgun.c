/* check_mailgun.c -- list addresses for ContactGroups, webhook signatures */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "email.h"
#include "mailgun.h"

Suite *mailgun_suite(void);

#define DOMAIN "lists.example.com"

/* Every address: a valid RFC 5321 addr-spec, local part <= 64 octets, lower case. */
static void
assert_valid(const char *addr)
{
	const char *at = strrchr(addr, '@');
	const char *why = email_check(addr, strlen(addr));

	ck_assert_msg(why == NULL, "%s: %s", addr, why ? why : "");
	ck_assert_ptr_nonnull(at);
	ck_assert_uint_le((size_t)(at - addr), MAILGUN_LOCAL_MAX);
	for (const char *p = addr; *p; p++)
		ck_assert_msg(!(*p >= 'A' && *p <= 'Z'), "%s has upper case", addr);
}

static const struct {
	const char *ns, *name, *want;
} addresses[] = {
	{ "org-a", "admins", "org-a.admins@" DOMAIN },
	{ "org-a", "team.eu", "org-a.team.eu@" DOMAIN },
	{ "organization-personal-org-31farw", "admins",
	  "organization-personal-org-31farw.admins@" DOMAIN },
	/* 30 + 1 + 33 = 64 octets: still readable. */
	{ "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", "ggggggggggggggggggggggggggggggggg",
	  "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnn.ggggggggggggggggggggggggggggggggg@" DOMAIN },
	/*
	 * 65: the first 47 octets, "_", 16 hex digits of SHA-256("o/nnn…")
	 * (computed with Python's hashlib).
	 */
	{ "o", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
	  "o.nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn_c9c15010187ecad4@" DOMAIN },
	/* Not Kubernetes names (the API server refuses them; we still make an address). */
	{ "ns", "Weird_Name!", "ns.weird-name-_cf07583857941f38@" DOMAIN },
};

START_TEST(test_address_vectors)
{
	char out[MAILGUN_ADDRESS_MAX + 1];

	ck_assert_int_eq(mailgun_list_address(addresses[_i].ns, addresses[_i].name, DOMAIN, out,
	    sizeof(out)), 0);
	ck_assert_str_eq(out, addresses[_i].want);
	assert_valid(out);
}
END_TEST

START_TEST(test_address_domain_case_and_errors)
{
	char out[MAILGUN_ADDRESS_MAX + 1], small[20];

	ck_assert_int_eq(mailgun_list_address("org-a", "g", "Lists.Example.COM", out,
	    sizeof(out)), 0);
	ck_assert_str_eq(out, "org-a.g@lists.example.com");
	ck_assert_int_eq(mailgun_list_address("", "g", DOMAIN, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(mailgun_list_address("ns", "", DOMAIN, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(mailgun_list_address(NULL, "g", DOMAIN, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(mailgun_list_address("ns", "g", "localhost", out, sizeof(out)), -EINVAL);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(mailgun_list_address("org-a", "admins", DOMAIN, small, sizeof(small)),
	    -ENAMETOOLONG);
	ck_assert_str_eq(small, "");
}
END_TEST

START_TEST(test_domain_check)
{
	char longest[MAILGUN_DOMAIN_MAX + 2];

	ck_assert_ptr_null(mailgun_domain_check("mg.example.test"));
	ck_assert_ptr_nonnull(mailgun_domain_check(NULL));
	ck_assert_ptr_nonnull(mailgun_domain_check(""));
	ck_assert_ptr_nonnull(mailgun_domain_check("localhost"));
	ck_assert_ptr_nonnull(mailgun_domain_check("bad_domain.com"));
	ck_assert_ptr_nonnull(mailgun_domain_check("-x.example.com"));
	ck_assert_ptr_nonnull(mailgun_domain_check("a..example.com"));
	/* 189 characters fit (64 + "@" + 189 = 254); 190 do not. */
	memset(longest, 'a', sizeof(longest));
	for (size_t i = 60; i < sizeof(longest); i += 61)
		longest[i] = '.';
	longest[MAILGUN_DOMAIN_MAX] = '\0';
	ck_assert_ptr_null(mailgun_domain_check(longest));
	longest[MAILGUN_DOMAIN_MAX] = 'a';
	longest[MAILGUN_DOMAIN_MAX + 1] = '\0';
	ck_assert_ptr_nonnull(mailgun_domain_check(longest));
}
END_TEST

/* The longest names Kubernetes allows, and every length around the 64-octet edge. */
START_TEST(test_address_limits)
{
	char ns[MAILGUN_NAMESPACE_MAX + 1], name[MAILGUN_NAME_MAX + 1];
	char a[MAILGUN_ADDRESS_MAX + 1], b[MAILGUN_ADDRESS_MAX + 1];

	memset(ns, 'n', sizeof(ns) - 1);
	ns[sizeof(ns) - 1] = '\0';
	for (size_t i = 0; i < sizeof(name) - 1; i++)
		name[i] = i % 10 == 9 ? '.' : (char)('a' + i % 26);
	name[sizeof(name) - 1] = '\0';
	ck_assert_int_eq(mailgun_list_address(ns, name, DOMAIN, a, sizeof(a)), 0);
	assert_valid(a);
	ck_assert_ptr_nonnull(strchr(a, '_'));
	/* Deterministic. */
	ck_assert_int_eq(mailgun_list_address(ns, name, DOMAIN, b, sizeof(b)), 0);
	ck_assert_str_eq(a, b);
	for (size_t len = 1; len < 80; len++) {
		char n2[81];

		memset(n2, 'x', len);
		n2[len] = '\0';
		if (len > 2)
			n2[len / 2] = '.';
		ck_assert_int_eq(mailgun_list_address("ns", n2, DOMAIN, a, sizeof(a)), 0);
		assert_valid(a);
		/* Readable exactly while "ns." + name fits. */
		ck_assert_msg((strchr(a, '_') == NULL) == (3 + len <= MAILGUN_LOCAL_MAX), "%s", a);
	}
}
END_TEST

static int
cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/*
 * Distinct groups never share an address: a few thousand namespace/name
 * pairs chosen to collide if the scheme were naive (a dot moved between
 * the namespace and the name, readable vs hashed of the same text).
 */
START_TEST(test_address_distinct)
{
	enum { N = 3000 };
	char **v = calloc(N, sizeof(*v));
	size_t n = 0;

	for (int i = 0; i < 1000; i++) {
		char ns[64], name[300];

		snprintf(ns, sizeof(ns), "ns%d", i % 37);
		snprintf(name, sizeof(name), "g%d.x", i);
		v[n] = malloc(MAILGUN_ADDRESS_MAX + 1);
		ck_assert_int_eq(mailgun_list_address(ns, name, DOMAIN, v[n++],
		    MAILGUN_ADDRESS_MAX + 1), 0);
		snprintf(ns, sizeof(ns), "ns%d-g%d", i % 37, i);
		snprintf(name, sizeof(name), "x");
		v[n] = malloc(MAILGUN_ADDRESS_MAX + 1);
		ck_assert_int_eq(mailgun_list_address(ns, name, DOMAIN, v[n++],
		    MAILGUN_ADDRESS_MAX + 1), 0);
		snprintf(ns, sizeof(ns), "ns%d", i % 37);
		snprintf(name, sizeof(name), "%0*d", 60 + i % 40, i);
		v[n] = malloc(MAILGUN_ADDRESS_MAX + 1);
		ck_assert_int_eq(mailgun_list_address(ns, name, DOMAIN, v[n++],
		    MAILGUN_ADDRESS_MAX + 1), 0);
		assert_valid(v[n - 1]);
	}
	qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 1; i < n; i++)
		ck_assert_msg(strcmp(v[i - 1], v[i]) != 0, "two groups share %s", v[i]);
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}
END_TEST

START_TEST(test_description_and_owner)
{
	char ns[64], name[254], addr[MAILGUN_ADDRESS_MAX + 1];
	char *d = mailgun_list_description("The admins", "org-a", "admins");

	ck_assert_str_eq(d, "The admins [org-a/admins]");
	ck_assert_int_eq(mailgun_list_owner("org-a.admins@" DOMAIN, d, DOMAIN, ns, sizeof(ns),
	    name, sizeof(name)), 1);
	ck_assert_str_eq(ns, "org-a");
	ck_assert_str_eq(name, "admins");
	/* Mailgun compares addresses without regard to case. */
	ck_assert_int_eq(mailgun_list_owner("Org-A.Admins@Lists.Example.com", d, DOMAIN, ns,
	    sizeof(ns), name, sizeof(name)), 1);
	/* Someone else's list that copied the description, another domain, no tag. */
	ck_assert_int_eq(mailgun_list_owner("admins@" DOMAIN, d, DOMAIN, ns, sizeof(ns), name,
	    sizeof(name)), 0);
	ck_assert_str_eq(ns, "");
	ck_assert_int_eq(mailgun_list_owner("org-a.admins@other.example.com", d, DOMAIN, ns,
	    sizeof(ns), name, sizeof(name)), 0);
	ck_assert_int_eq(mailgun_list_owner("org-a.admins@" DOMAIN, "The admins", DOMAIN, ns,
	    sizeof(ns), name, sizeof(name)), 0);
	ck_assert_int_eq(mailgun_list_owner("org-a.admins@" DOMAIN, "[org-a/admins] x", DOMAIN,
	    ns, sizeof(ns), name, sizeof(name)), 0);
	ck_assert_int_eq(mailgun_list_owner("org-a.admins@" DOMAIN, "[/]", DOMAIN, ns,
	    sizeof(ns), name, sizeof(name)), 0);
	ck_assert_int_eq(mailgun_list_owner("org-a.admins@" DOMAIN, NULL, DOMAIN, ns,
	    sizeof(ns), name, sizeof(name)), 0);
	/* ns buffer too small for what the description names. */
	ck_assert_int_eq(mailgun_list_owner("org-a.admins@" DOMAIN, d, DOMAIN, ns, 5, name,
	    sizeof(name)), 0);
	free(d);
	/* Without a description; a hashed address. */
	d = mailgun_list_description(NULL, "o", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn");
	ck_assert_str_eq(d, "[o/nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn]");
	ck_assert_int_eq(mailgun_list_address("o", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
	    DOMAIN, addr, sizeof(addr)), 0);
	ck_assert_int_eq(mailgun_list_owner(addr, d, DOMAIN, ns, sizeof(ns), name,
	    sizeof(name)), 1);
	free(d);
	d = mailgun_list_description("", "a", "b");
	ck_assert_str_eq(d, "[a/b]");
	free(d);
}
END_TEST

/* ---- signatures ---- */

/*
 * Expected values computed independently with Python's hmac module:
 * hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest().
 */
#define KEY "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
#define TS "1529006854"
#define NOW 1529006854
#define TOKEN "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
#define SIG "b63c0701c4f4b614f272106a1b367c5c3369bcdca664ae73ebd52787e45eef07"

#define K(s) (const unsigned char *)(s), strlen(s)

START_TEST(test_sign_vectors)
{
	char out[MAILGUN_SIGNATURE_HEX + 1];

	ck_assert_int_eq(mailgun_sign(K(KEY), TS, TOKEN, out), MAILGUN_OK);
	ck_assert_str_eq(out, SIG);
	ck_assert_int_eq(mailgun_sign(K("standin-webhook-signing-key"), "1764876000",
	    "0123456789abcdef0123456789abcdef0123456789abcdef01", out), MAILGUN_OK);
	ck_assert_str_eq(out, "faf8c50f62460a2349710ead1befa77757e15a872b03d9a4663cc33ed94e7e47");
	/*
	 * mailgun-go's TestVerifyWebhookSignature fields (key "key", timestamp
	 * "123456789", token "token"), digest from `openssl dgst -sha256 -hmac key`.
	 */
	ck_assert_int_eq(mailgun_sign(K("key"), "123456789", "token", out), MAILGUN_OK);
	ck_assert_str_eq(out, "8c56daabdf5b1e84b50766e6bde638e2cc4249c3a8fdaa7079a03cb84b63b73f");
	ck_assert_int_eq(mailgun_verify(K("key"), "123456789", "token", out, 123456789, 300),
	    MAILGUN_OK);
}
END_TEST

START_TEST(test_verify)
{
	char upper[] = SIG;

	for (char *p = upper; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, SIG, NOW, 300), MAILGUN_OK);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, upper, NOW, 300), MAILGUN_OK);
	/* The five-minute window, both ways, inclusive. */
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, SIG, NOW + 300, 300), MAILGUN_OK);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, SIG, NOW + 301, 300),
	    MAILGUN_E_TOO_OLD);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, SIG, NOW - 300, 300), MAILGUN_OK);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, SIG, NOW - 301, 300),
	    MAILGUN_E_TOO_NEW);
	/* Another key, another token, another timestamp: no match. */
	ck_assert_int_eq(mailgun_verify(K("key-other"), TS, TOKEN, SIG, NOW, 300),
	    MAILGUN_E_NO_MATCH);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, "b8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
	    SIG, NOW, 300), MAILGUN_E_NO_MATCH);
	ck_assert_int_eq(mailgun_verify(K(KEY), "1529006855", TOKEN, SIG, NOW, 300),
	    MAILGUN_E_NO_MATCH);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN,
	    "0000000000000000000000000000000000000000000000000000000000000000", NOW, 300),
	    MAILGUN_E_NO_MATCH);
}
END_TEST

START_TEST(test_verify_malformed)
{
	char long_token[MAILGUN_TOKEN_MAX + 2];

	memset(long_token, 'a', sizeof(long_token) - 1);
	long_token[sizeof(long_token) - 1] = '\0';
	ck_assert_int_eq(mailgun_verify(NULL, 0, TS, TOKEN, SIG, NOW, 300), MAILGUN_E_INVAL);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, SIG, NOW, -1), MAILGUN_E_INVAL);
	ck_assert_int_eq(mailgun_verify(K(KEY), NULL, TOKEN, SIG, NOW, 300), MAILGUN_E_TIMESTAMP);
	ck_assert_int_eq(mailgun_verify(K(KEY), "", TOKEN, SIG, NOW, 300), MAILGUN_E_TIMESTAMP);
	ck_assert_int_eq(mailgun_verify(K(KEY), "152900685a", TOKEN, SIG, NOW, 300),
	    MAILGUN_E_TIMESTAMP);
	ck_assert_int_eq(mailgun_verify(K(KEY), "-1529006854", TOKEN, SIG, NOW, 300),
	    MAILGUN_E_TIMESTAMP);
	ck_assert_int_eq(mailgun_verify(K(KEY), "99999999999999999999", TOKEN, SIG, NOW, 300),
	    MAILGUN_E_TIMESTAMP);
	ck_assert_int_eq(mailgun_verify(K(KEY), "9223372036854775808", TOKEN, SIG, NOW, 300),
	    MAILGUN_E_TIMESTAMP);
	ck_assert_int_eq(mailgun_verify(K(KEY), "9223372036854775807", TOKEN, SIG, NOW, 300),
	    MAILGUN_E_TOO_NEW);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, NULL, SIG, NOW, 300), MAILGUN_E_TOKEN);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, "", SIG, NOW, 300), MAILGUN_E_TOKEN);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, "a b", SIG, NOW, 300), MAILGUN_E_TOKEN);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, long_token, SIG, NOW, 300), MAILGUN_E_TOKEN);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, NULL, NOW, 300), MAILGUN_E_SIGNATURE);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN, SIG "0", NOW, 300),
	    MAILGUN_E_SIGNATURE);
	ck_assert_int_eq(mailgun_verify(K(KEY), TS, TOKEN,
	    "g63c0701c4f4b614f272106a1b367c5c3369bcdca664ae73ebd52787e45eef07", NOW, 300),
	    MAILGUN_E_SIGNATURE);
	for (int s = MAILGUN_E_CRYPTO; s <= MAILGUN_OK; s++)
		ck_assert_ptr_nonnull(mailgun_strerror(s));
	ck_assert_str_eq(mailgun_strerror(42), "unknown signature status");
}
END_TEST

Suite *
mailgun_suite(void)
{
	Suite *s = suite_create("mailgun");
	TCase *core = tcase_create("core"), *limits = tcase_create("limits");

	tcase_add_loop_test(core, test_address_vectors, 0,
	    sizeof(addresses) / sizeof(addresses[0]));
	tcase_add_test(core, test_description_and_owner);
	tcase_add_test(core, test_sign_vectors);
	tcase_add_test(core, test_verify);
	tcase_add_test(limits, test_address_domain_case_and_errors);
	tcase_add_test(limits, test_domain_check);
	tcase_add_test(limits, test_address_limits);
	tcase_add_test(limits, test_address_distinct);
	tcase_add_test(limits, test_verify_malformed);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
