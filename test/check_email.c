/* check_email.c -- table tests for the Contact.spec.email syntax rule */
#include "email.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Found by the runner, which is generated from the test file names. */
Suite *email_suite(void);

/*
 * The reasons users see, spelled out here rather than shared with email.c,
 * so that a change of wording shows up as a test change.
 */
#define R_EMPTY "must not be empty"
#define R_CONTROL "must not contain control characters"
#define R_DISPLAY_NAME "display names are not allowed, give only the address"
#define R_NON_ASCII \
	"internationalised addresses are not supported, use ASCII characters only"
#define R_QUOTED "quoted local parts are not supported"
#define R_WHITESPACE "must not contain whitespace"
#define R_NO_AT "must contain an @ between the local part and the domain"
#define R_MANY_AT "must contain only one @"
#define R_LOCAL_EMPTY "the local part before the @ must not be empty"
#define R_DOMAIN_EMPTY "the domain after the @ must not be empty"
#define R_IP_LITERAL \
	"use a domain name after the @, IP address literals are not supported"
#define R_LOCAL_LONG "the local part must be no more than 64 characters"
#define R_TOTAL_LONG "must be no more than 254 characters"
#define R_LOCAL_LEADING_DOT "the local part must not start with a dot"
#define R_LOCAL_TRAILING_DOT "the local part must not end with a dot"
#define R_LOCAL_DOTS "the local part must not contain consecutive dots"
#define R_LOCAL_CHAR \
	"the local part may contain only letters, digits, dots and " \
	"!#$%&'*+-/=?^_`{|}~"
#define R_DOMAIN_LEADING_DOT "the domain must not start with a dot"
#define R_DOMAIN_TRAILING_DOT "the domain must not end with a dot"
#define R_DOMAIN_DOTS "the domain must not contain consecutive dots"
#define R_DOMAIN_CHAR \
	"the domain may contain only letters, digits, hyphens and dots"
#define R_LABEL_LONG "each domain label must be no more than 63 characters"
#define R_LABEL_LEADING_HYPHEN "a domain label must not start with a hyphen"
#define R_LABEL_TRAILING_HYPHEN "a domain label must not end with a hyphen"
#define R_ONE_LABEL "the domain must have at least two labels, as in example.com"
#define R_TLD_DIGITS "the top-level domain must not be all digits"

static const char *const all_reasons[] = {
	R_EMPTY, R_CONTROL, R_DISPLAY_NAME, R_NON_ASCII, R_QUOTED,
	R_WHITESPACE, R_NO_AT, R_MANY_AT, R_LOCAL_EMPTY, R_DOMAIN_EMPTY,
	R_IP_LITERAL, R_LOCAL_LONG, R_TOTAL_LONG, R_LOCAL_LEADING_DOT,
	R_LOCAL_TRAILING_DOT, R_LOCAL_DOTS, R_LOCAL_CHAR, R_DOMAIN_LEADING_DOT,
	R_DOMAIN_TRAILING_DOT, R_DOMAIN_DOTS, R_DOMAIN_CHAR, R_LABEL_LONG,
	R_LABEL_LEADING_HYPHEN, R_LABEL_TRAILING_HYPHEN, R_ONE_LABEL,
	R_TLD_DIGITS,
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define MIN_ROWS 150

struct row {
	const char *in;
	size_t len;		/* explicit: inputs may hold NUL bytes */
	const char *want;	/* NULL when the address is valid */
};

/* sizeof, not strlen, so that embedded NUL bytes are part of the input. */
#define OK(s) { s, sizeof(s) - 1, NULL }
#define BAD(s, r) { s, sizeof(s) - 1, r }

static const struct row rows[] = {
	/* Valid: ordinary shapes, both cases, LDH corners. */
	OK("john@example.com"),
	OK("john.doe@example.com"),
	OK("John.Doe@Example.COM"),
	OK("JOHN@EXAMPLE.COM"),
	OK("j@x.io"),
	OK("a@b.co"),
	OK("0@0.a"),
	OK("john+tag@example.com"),
	OK("first.middle.last@example.co.uk"),
	OK("a.b.c@x.io"),
	OK("1234@example.com"),
	OK("john@123.com"),
	OK("john@x.1a"),
	OK("john@x.a1"),
	OK("john@x-y.io"),
	OK("john@x--y.io"),
	OK("x@a-b-c.d-e"),
	OK("john@xn--bcher-kva.example"),
	OK("john@sub.sub2.example.com"),
	OK("john@a.b.c.d.e.f"),
	OK("john@example.museum"),
	OK("o'brien@example.ie"),
	OK("user%host@example.com"),
	OK("_@example.com"),
	OK("-@example.com"),
	OK("~john@example.com"),

	/* Valid: every atext special alone as the local part... */
	OK("!@x.io"), OK("#@x.io"), OK("$@x.io"), OK("%@x.io"),
	OK("&@x.io"), OK("'@x.io"), OK("*@x.io"), OK("+@x.io"),
	OK("-@x.io"), OK("/@x.io"), OK("=@x.io"), OK("?@x.io"),
	OK("^@x.io"), OK("_@x.io"), OK("`@x.io"), OK("{@x.io"),
	OK("|@x.io"), OK("}@x.io"), OK("~@x.io"),
	/* ...between letters... */
	OK("a!b@x.io"), OK("a#b@x.io"), OK("a$b@x.io"), OK("a%b@x.io"),
	OK("a&b@x.io"), OK("a'b@x.io"), OK("a*b@x.io"), OK("a+b@x.io"),
	OK("a-b@x.io"), OK("a/b@x.io"), OK("a=b@x.io"), OK("a?b@x.io"),
	OK("a^b@x.io"), OK("a_b@x.io"), OK("a`b@x.io"), OK("a{b@x.io"),
	OK("a|b@x.io"), OK("a}b@x.io"), OK("a~b@x.io"),
	/* ...and all of them together. */
	OK("!#$%&'*+-/=?^_`{|}~@x.io"),
	OK("a.!#$%&'*+-/=?^_`{|}~.z@x.io"),

	/* Empty. */
	BAD("", R_EMPTY),

	/* No '@'. */
	BAD("john", R_NO_AT),
	BAD("a", R_NO_AT),
	BAD("john.example.com", R_NO_AT),
	BAD("john(at)example.com", R_NO_AT),

	/* More than one '@'. */
	BAD("a@b@x.io", R_MANY_AT),
	BAD("john@@x.io", R_MANY_AT),
	BAD("@@", R_MANY_AT),
	BAD("a@b@", R_MANY_AT),
	BAD("john@x.io@x.io", R_MANY_AT),

	/* Empty local part or domain. */
	BAD("@x.io", R_LOCAL_EMPTY),
	BAD("@", R_LOCAL_EMPTY),
	BAD("@localhost", R_LOCAL_EMPTY),
	BAD("@.io", R_LOCAL_EMPTY),
	BAD("john@", R_DOMAIN_EMPTY),
	BAD("john.doe@", R_DOMAIN_EMPTY),
	BAD(".john@", R_DOMAIN_EMPTY),
	BAD(".@", R_DOMAIN_EMPTY),

	/* Dots in the local part. */
	BAD(".john@x.io", R_LOCAL_LEADING_DOT),
	BAD(".@x.io", R_LOCAL_LEADING_DOT),
	BAD("..@x.io", R_LOCAL_LEADING_DOT),
	BAD("john.@x.io", R_LOCAL_TRAILING_DOT),
	BAD("a.b.@x.io", R_LOCAL_TRAILING_DOT),
	BAD("john..doe@x.io", R_LOCAL_DOTS),
	BAD("a...b@x.io", R_LOCAL_DOTS),

	/* Characters outside atext in the local part. */
	BAD("john(doe)@x.io", R_LOCAL_CHAR),
	BAD("(comment)john@x.io", R_LOCAL_CHAR),
	BAD("john,doe@x.io", R_LOCAL_CHAR),
	BAD("john:doe@x.io", R_LOCAL_CHAR),
	BAD("john;doe@x.io", R_LOCAL_CHAR),
	BAD("john[doe]@x.io", R_LOCAL_CHAR),
	BAD("john]@x.io", R_LOCAL_CHAR),
	BAD("john\\doe@x.io", R_LOCAL_CHAR),
	BAD("john\\ doe@x.io", R_WHITESPACE),

	/* Dots in the domain. */
	BAD("john@.x.io", R_DOMAIN_LEADING_DOT),
	BAD("john@.io", R_DOMAIN_LEADING_DOT),
	BAD("john@x.io.", R_DOMAIN_TRAILING_DOT),
	BAD("john@localhost.", R_DOMAIN_TRAILING_DOT),
	BAD("john@x.io..", R_DOMAIN_TRAILING_DOT),
	BAD("john@x..io", R_DOMAIN_DOTS),
	BAD("john@x...io", R_DOMAIN_DOTS),
	BAD("john@a.b..c", R_DOMAIN_DOTS),

	/* Hyphens at the ends of a label. */
	BAD("john@-x.io", R_LABEL_LEADING_HYPHEN),
	BAD("john@x.-io", R_LABEL_LEADING_HYPHEN),
	BAD("john@-.io", R_LABEL_LEADING_HYPHEN),
	BAD("john@x-.io", R_LABEL_TRAILING_HYPHEN),
	BAD("john@x.io-", R_LABEL_TRAILING_HYPHEN),
	BAD("john@a.b-.c", R_LABEL_TRAILING_HYPHEN),

	/* Characters outside LDH in the domain. */
	BAD("john@x_y.io", R_DOMAIN_CHAR),
	BAD("john@x.i_o", R_DOMAIN_CHAR),
	BAD("john@x!.io", R_DOMAIN_CHAR),
	BAD("john@x+y.io", R_DOMAIN_CHAR),
	BAD("john@x/y.io", R_DOMAIN_CHAR),
	BAD("john@x.io:25", R_DOMAIN_CHAR),
	BAD("john@x*.io", R_DOMAIN_CHAR),
	BAD("john@x'y.io", R_DOMAIN_CHAR),
	BAD("john@x\"y.io", R_DOMAIN_CHAR),
	BAD("john@x.io]", R_DOMAIN_CHAR),
	BAD("john@x.io\\", R_DOMAIN_CHAR),

	/* IP address literals. */
	BAD("john@[192.0.2.1]", R_IP_LITERAL),
	BAD("john@[IPv6:2001:db8::1]", R_IP_LITERAL),
	BAD("john@[]", R_IP_LITERAL),
	BAD("john@[192.0.2.1", R_IP_LITERAL),
	BAD("john@[x.io]", R_IP_LITERAL),

	/* Quoted local parts, however they are spelled. */
	BAD("\"john doe\"@x.io", R_QUOTED),
	BAD("\"john\"@x.io", R_QUOTED),
	BAD("\"a@b\"@x.io", R_QUOTED),
	BAD("john.\"doe\"@x.io", R_QUOTED),
	BAD("\"\"@x.io", R_QUOTED),
	BAD("\"@x.io", R_QUOTED),
	BAD("\"john", R_QUOTED),

	/* Display names. */
	BAD("John <j@x.io>", R_DISPLAY_NAME),
	BAD("<j@x.io>", R_DISPLAY_NAME),
	BAD("John<j@x.io>", R_DISPLAY_NAME),
	BAD("\"John Doe\" <j@x.io>", R_DISPLAY_NAME),
	BAD("John Doe <john.doe@x.io>", R_DISPLAY_NAME),
	BAD("j@x.io>", R_DISPLAY_NAME),
	BAD("<j@x.io", R_DISPLAY_NAME),
	BAD("j@x.io <j@x.io>", R_DISPLAY_NAME),
	BAD("<>", R_DISPLAY_NAME),
	BAD("Jos\xc3\xa9 <jose@x.io>", R_DISPLAY_NAME),
	BAD("John\t<j@x.io>", R_DISPLAY_NAME),

	/* Whitespace. */
	BAD(" john@x.io", R_WHITESPACE),
	BAD("john@x.io ", R_WHITESPACE),
	BAD("john @x.io", R_WHITESPACE),
	BAD("john@ x.io", R_WHITESPACE),
	BAD("jo hn@x.io", R_WHITESPACE),
	BAD("john@x .io", R_WHITESPACE),
	BAD("john\t@x.io", R_WHITESPACE),
	BAD("john@x.io\n", R_WHITESPACE),
	BAD("john@x.io\r\n", R_WHITESPACE),
	BAD("\njohn@x.io", R_WHITESPACE),
	BAD("john\v@x.io", R_WHITESPACE),
	BAD("john\f@x.io", R_WHITESPACE),
	BAD(" ", R_WHITESPACE),
	BAD("\t", R_WHITESPACE),
	BAD("john doe", R_WHITESPACE),
	BAD("a b@c d@e", R_WHITESPACE),

	/* Control characters, embedded NUL included. */
	BAD("\x01", R_CONTROL),
	BAD("john\x01@x.io", R_CONTROL),
	BAD("john@x.io\x7f", R_CONTROL),
	BAD("john@x\x1b.io", R_CONTROL),
	BAD("\x1f" "john@x.io", R_CONTROL),
	BAD("\x08@x.io", R_CONTROL),
	BAD("john\0@x.io", R_CONTROL),
	BAD("john@x.io\0", R_CONTROL),
	BAD("\0", R_CONTROL),
	BAD("\x02 john@x.io", R_CONTROL),
	BAD("jos\xc3\xa9\x01@x.io", R_CONTROL),
	BAD("<\x01>", R_CONTROL),

	/* Anything beyond ASCII. */
	BAD("jos\xc3\xa9@x.io", R_NON_ASCII),
	BAD("john@b\xc3\xbc" "cher.de", R_NON_ASCII),
	BAD("\xff@x.io", R_NON_ASCII),
	BAD("john@x.io\x80", R_NON_ASCII),
	BAD("\xe2\x80\x8b" "john@x.io", R_NON_ASCII),
	BAD("\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90."
	    "\xe5\xb9\xbf\xe5\x91\x8a", R_NON_ASCII),
	BAD("john@x.\xd1\x80\xd1\x84", R_NON_ASCII),
	BAD("john\xc2\xa0" "doe@x.io", R_NON_ASCII),
	BAD("j\xc3\xb6rg @x.io", R_NON_ASCII),
	BAD("\"jos\xc3\xa9\"@x.io", R_NON_ASCII),

	/* A single label. */
	BAD("john@localhost", R_ONE_LABEL),
	BAD("john@com", R_ONE_LABEL),
	BAD("john@123", R_ONE_LABEL),
	BAD("john@x", R_ONE_LABEL),
	BAD("a@b-c", R_ONE_LABEL),

	/* An all-digit top-level label. */
	BAD("john@x.123", R_TLD_DIGITS),
	BAD("john@1.2.3.4", R_TLD_DIGITS),
	BAD("john@192.0.2.1", R_TLD_DIGITS),
	BAD("john@example.0", R_TLD_DIGITS),
	BAD("john@x.io.42", R_TLD_DIGITS),

	/* When several rules break, the order in email.c decides. */
	BAD("john..doe@x_y.io", R_LOCAL_DOTS),
	BAD("(j@localhost", R_LOCAL_CHAR),
	BAD(".john@x.123", R_LOCAL_LEADING_DOT),
	BAD("(a..b@x.io", R_LOCAL_CHAR),
	BAD("a..(b@x.io", R_LOCAL_DOTS),
	BAD("john@-x_.io", R_DOMAIN_CHAR),
	BAD("john@x..-io", R_DOMAIN_DOTS),
	BAD("john@a_b", R_DOMAIN_CHAR),
	BAD("john@-a.b_c", R_LABEL_LEADING_HYPHEN),
	BAD("john@.x..io", R_DOMAIN_LEADING_DOT),
};

/* Rows whose length is given by hand: shorter than the literal, or NULs. */
static const struct row limit_rows[] = {
	{ "john@x.io", 0, R_EMPTY },
	{ "john@x.io", 4, R_NO_AT },
	{ "john@x.io", 5, R_DOMAIN_EMPTY },
	{ "john@x.io", 6, R_ONE_LABEL },
	{ "john@x.io", 7, R_DOMAIN_TRAILING_DOT },
	{ "john@x.io\n", 9, NULL },
	{ "john@x.io \x01", 9, NULL },
	{ "john@x.io\0", 10, R_CONTROL },
	{ "\0john@x.io", 10, R_CONTROL },
	{ "jo\0hn@x.io", 10, R_CONTROL },
	{ "john@x.\0io", 10, R_CONTROL },
	{ "\0\0\0\0", 4, R_CONTROL },
	{ "\0@\0", 3, R_CONTROL },
};

/* Renders an input for a failure message: escaped, and cut when long. */
static const char *
show(const char *s, size_t len)
{
	static char out[256];
	size_t i, n = 0;

	for (i = 0; i < len && n + 5 < sizeof(out) - 24; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, sizeof(out) - n,
			    "\\x%02x", c);
	}
	if (i < len)
		snprintf(out + n, sizeof(out) - n, "... (%zu bytes)", len);
	else
		out[n] = '\0';
	return out;
}

/*
 * Checks s[0..len) from an exactly sized heap copy, so that a read past len
 * is caught by ASan and valgrind rather than landing on a NUL.
 */
static const char *
check_exact(const char *s, size_t len)
{
	char *copy = malloc(len ? len : 1);
	const char *why;

	ck_assert_ptr_nonnull(copy);
	if (len)
		memcpy(copy, s, len);
	why = email_check(copy, len);
	free(copy);
	return why;
}

static void
expect(const char *s, size_t len, const char *want)
{
	const char *got = check_exact(s, len);

	ck_assert_msg(got == want || (got && want && strcmp(got, want) == 0),
	    "\"%s\" (%zu bytes): got %s%s%s, want %s%s%s", show(s, len), len,
	    got ? "\"" : "", got ? got : "valid", got ? "\"" : "",
	    want ? "\"" : "", want ? want : "valid", want ? "\"" : "");
}

/* Lower-case first letter, no trailing '.', printable ASCII only. */
static void
expect_well_formed(const char *why)
{
	size_t i, n;

	ck_assert_ptr_nonnull(why);
	n = strlen(why);
	ck_assert_msg(n > 0, "empty reason");
	ck_assert_msg(why[0] >= 'a' && why[0] <= 'z',
	    "reason does not start lower case: \"%s\"", why);
	ck_assert_msg(why[n - 1] != '.', "reason ends with a dot: \"%s\"", why);
	for (i = 0; i < n; i++)
		ck_assert_msg(why[i] >= 0x20 && why[i] < 0x7f,
		    "reason has a control or non-ASCII byte: \"%s\"", why);
}

START_TEST(test_row)
{
	expect(rows[_i].in, rows[_i].len, rows[_i].want);
}
END_TEST

START_TEST(test_limit_row)
{
	expect(limit_rows[_i].in, limit_rows[_i].len, limit_rows[_i].want);
}
END_TEST

START_TEST(test_table_size)
{
	ck_assert_uint_ge(NELEM(rows), MIN_ROWS);
}
END_TEST

START_TEST(test_reasons_well_formed)
{
	size_t i;

	for (i = 0; i < NELEM(all_reasons); i++)
		expect_well_formed(all_reasons[i]);
	for (i = 0; i < NELEM(rows); i++) {
		const char *why = email_check(rows[i].in, rows[i].len);

		if (why)
			expect_well_formed(why);
	}
}
END_TEST

/* The length reasons, tested on strings built in the "limits" case. */
static int
built_in_code(const char *why)
{
	return strcmp(why, R_LOCAL_LONG) == 0 ||
	    strcmp(why, R_TOTAL_LONG) == 0 || strcmp(why, R_LABEL_LONG) == 0;
}

/* Every reason is the expected answer of some row, so none goes untested. */
START_TEST(test_every_reason_tested)
{
	size_t i, j;

	for (i = 0; i < NELEM(all_reasons); i++) {
		for (j = 0; j < NELEM(rows); j++)
			if (rows[j].want && strcmp(rows[j].want,
			    all_reasons[i]) == 0)
				break;
		if (j == NELEM(rows) && !built_in_code(all_reasons[i]))
			ck_abort_msg("no row expects \"%s\"", all_reasons[i]);
	}
}
END_TEST

/* The same input gives the same static reason, by pointer. */
START_TEST(test_static_reason)
{
	const char *a = email_check("john@", 5);
	const char *b = email_check("mary@", 5);

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, b);
}
END_TEST

static int
in_set(int c, const char *set)
{
	return c != 0 && strchr(set, c) != NULL;
}

static const char *
expected_for_byte(int c, int in_domain)
{
	static const char letters_digits[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

	if (c == ' ' || (c >= '\t' && c <= '\r'))
		return R_WHITESPACE;
	if (c < 0x20 || c == 0x7f)
		return R_CONTROL;
	if (c >= 0x80)
		return R_NON_ASCII;
	if (c == '<' || c == '>')
		return R_DISPLAY_NAME;
	if (c == '@')
		return R_MANY_AT;
	if (c == '.' || in_set(c, letters_digits) || c == '-')
		return NULL;
	if (in_domain)
		return R_DOMAIN_CHAR;
	if (c == '"')
		return R_QUOTED;
	return in_set(c, "!#$%&'*+/=?^_`{|}~") ? NULL : R_LOCAL_CHAR;
}

/* Each of the 256 byte values inside the local part: "a?b@x.io". */
START_TEST(test_every_byte_local)
{
	char s[] = "a?b@x.io";

	s[1] = (char)_i;
	expect(s, sizeof(s) - 1, expected_for_byte(_i, 0));
}
END_TEST

/* Each of the 256 byte values inside a domain label: "a@x?y.io". */
START_TEST(test_every_byte_domain)
{
	char s[] = "a@x?y.io";

	s[3] = (char)_i;
	expect(s, sizeof(s) - 1, expected_for_byte(_i, 1));
}
END_TEST

START_TEST(test_null_empty)
{
	ck_assert_str_eq(email_check(NULL, 0), R_EMPTY);
}
END_TEST

/* Appends n copies of c at p; returns the end. */
static char *
fill(char *p, char c, size_t n)
{
	memset(p, c, n);
	return p + n;
}

static char *
put(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

START_TEST(test_local_length)
{
	char s[128], *p;

	p = put(fill(s, 'a', EMAIL_LOCAL_MAX), "@x.io");
	expect(s, (size_t)(p - s), NULL);
	p = put(fill(s, 'a', EMAIL_LOCAL_MAX + 1), "@x.io");
	expect(s, (size_t)(p - s), R_LOCAL_LONG);
	/* The length rule wins over the local part's syntax. */
	p = put(fill(s, '.', EMAIL_LOCAL_MAX + 1), "@x.io");
	expect(s, (size_t)(p - s), R_LOCAL_LONG);
	/* A dotted local part of exactly 64 octets. */
	p = fill(s, 'a', EMAIL_LOCAL_MAX);
	s[10] = s[20] = s[30] = '.';
	p = put(p, "@x.io");
	expect(s, (size_t)(p - s), NULL);
}
END_TEST

/* local octets of a, @, three labels of 63 octets, a last label of tld octets. */
static size_t
long_domain(char *s, size_t local, size_t tld)
{
	char *p = fill(s, 'a', local);

	p = put(p, "@");
	p = put(fill(p, 'b', EMAIL_LABEL_MAX), ".");
	p = put(fill(p, 'c', EMAIL_LABEL_MAX), ".");
	p = put(fill(p, 'd', EMAIL_LABEL_MAX), ".");
	p = fill(p, 'e', tld);
	return (size_t)(p - s);
}

START_TEST(test_total_length)
{
	char s[512], *p;
	size_t n;

	/* 1 + 1 + 3 * (63 + 1) + 60 = 254, then 255. */
	n = long_domain(s, 1, EMAIL_TOTAL_MAX - (1 + 1 + 3 * 64));
	ck_assert_uint_eq(n, EMAIL_TOTAL_MAX);
	expect(s, n, NULL);
	n = long_domain(s, 1, EMAIL_TOTAL_MAX + 1 - (1 + 1 + 3 * 64));
	ck_assert_uint_eq(n, EMAIL_TOTAL_MAX + 1);
	expect(s, n, R_TOTAL_LONG);
	/* A maximal local part: 64 + 1 + (63 + 1 + 63 + 1 + 61) = 254. */
	p = put(fill(s, 'a', EMAIL_LOCAL_MAX), "@");
	p = put(fill(p, 'b', EMAIL_LABEL_MAX), ".");
	p = put(fill(p, 'c', EMAIL_LABEL_MAX), ".");
	p = fill(p, 'd', 61);
	ck_assert_uint_eq((size_t)(p - s), EMAIL_TOTAL_MAX);
	expect(s, (size_t)(p - s), NULL);
	p = fill(p, 'd', 1);
	expect(s, (size_t)(p - s), R_TOTAL_LONG);
	/* The local part's limit is reported before the total's. */
	p = put(fill(s, 'a', EMAIL_LOCAL_MAX + 1), "@");
	p = put(fill(p, 'b', EMAIL_LABEL_MAX), ".");
	p = put(fill(p, 'c', EMAIL_LABEL_MAX), ".");
	p = fill(p, 'd', 63);
	expect(s, (size_t)(p - s), R_LOCAL_LONG);
	/* The total's limit is reported before the labels' syntax. */
	n = long_domain(s, 1, EMAIL_TOTAL_MAX + 1 - (1 + 1 + 3 * 64));
	s[2] = '-';
	expect(s, n, R_TOTAL_LONG);
}
END_TEST

START_TEST(test_label_length)
{
	char s[128], *p;

	p = put(fill(put(s, "a@"), 'b', EMAIL_LABEL_MAX), ".io");
	expect(s, (size_t)(p - s), NULL);
	p = put(fill(put(s, "a@"), 'b', EMAIL_LABEL_MAX + 1), ".io");
	expect(s, (size_t)(p - s), R_LABEL_LONG);
	p = fill(put(s, "a@x."), 'c', EMAIL_LABEL_MAX);
	expect(s, (size_t)(p - s), NULL);
	p = fill(put(s, "a@x."), 'c', EMAIL_LABEL_MAX + 1);
	expect(s, (size_t)(p - s), R_LABEL_LONG);
	/* A too-long label is reported before a hyphen at its end. */
	p = put(fill(put(s, "a@"), 'b', EMAIL_LABEL_MAX + 1), "-.io");
	expect(s, (size_t)(p - s), R_LABEL_LONG);
	/* ...and after a bad character in it. */
	p = put(fill(put(s, "a@_"), 'b', EMAIL_LABEL_MAX + 1), ".io");
	expect(s, (size_t)(p - s), R_DOMAIN_CHAR);
}
END_TEST

#define HUGE_LEN ((size_t)1 << 20)

START_TEST(test_huge)
{
	char *s = malloc(HUGE_LEN + 8);
	size_t i;

	ck_assert_ptr_nonnull(s);
	fill(s, 'a', HUGE_LEN);
	expect(s, HUGE_LEN, R_NO_AT);
	put(s + HUGE_LEN, "@x.io");
	expect(s, HUGE_LEN + 5, R_LOCAL_LONG);
	s[HUGE_LEN - 1] = '\x01';	/* the whole input is scanned */
	expect(s, HUGE_LEN, R_CONTROL);
	s[HUGE_LEN - 1] = ' ';
	expect(s, HUGE_LEN, R_WHITESPACE);
	s[HUGE_LEN - 1] = '\0';
	expect(s, HUGE_LEN, R_CONTROL);
	/* a@ then a 1 MiB domain of short labels. */
	memcpy(s, "a@", 2);
	for (i = 2; i < HUGE_LEN; i++)
		s[i] = i % 2 ? '.' : 'b';
	s[HUGE_LEN - 1] = 'c';
	expect(s, HUGE_LEN, R_TOTAL_LONG);
	/* 1 MiB of '@'. */
	fill(s, '@', HUGE_LEN);
	expect(s, HUGE_LEN, R_MANY_AT);
	free(s);
}
END_TEST

Suite *
email_suite(void)
{
	Suite *s = suite_create("email");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_loop_test(core, test_row, 0, (int)NELEM(rows));
	tcase_add_test(core, test_table_size);
	tcase_add_test(core, test_reasons_well_formed);
	tcase_add_test(core, test_every_reason_tested);
	tcase_add_test(core, test_static_reason);
	tcase_add_loop_test(core, test_every_byte_local, 0, 256);
	tcase_add_loop_test(core, test_every_byte_domain, 0, 256);
	suite_add_tcase(s, core);

	tcase_add_loop_test(limits, test_limit_row, 0,
	    (int)NELEM(limit_rows));
	tcase_add_test(limits, test_null_empty);
	tcase_add_test(limits, test_local_length);
	tcase_add_test(limits, test_total_length);
	tcase_add_test(limits, test_label_length);
	tcase_add_test(limits, test_huge);
	suite_add_tcase(s, limits);
	return s;
}
