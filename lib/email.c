/* email.c -- the syntax rule for Contact.spec.email */
#include "email.h"

#include <string.h>

/*
 * Decisions (DESIGN.md section 2):
 *
 * - We accept RFC 5321 addr-spec with a dot-atom local part and nothing
 *   else: no quoted local parts, no IP address literals, no display names,
 *   no comments, no obsolete RFC 5322 forms. A provider can deliver to all
 *   of what we accept, and a user who typed something else gets told why.
 * - The local part is 1..EMAIL_LOCAL_MAX octets of atext and dots, with no
 *   dot at either end and no two dots in a row. The domain is two or more
 *   labels of 1..EMAIL_LABEL_MAX letters, digits and hyphens (LDH), no
 *   hyphen at either end of a label, no dot at either end of the domain
 *   (the root's trailing dot is not accepted), and a top-level label that
 *   is not all digits (RFC 3696 section 2), so "1.2.3.4" is refused. The
 *   whole address is at most EMAIL_TOTAL_MAX octets.
 * - ASCII only. Internationalised addresses (RFC 6531, IDNA U-labels) are
 *   refused rather than half supported; punycode A-labels are plain LDH
 *   and pass. Case is preserved and both cases are accepted; comparing
 *   addresses case-insensitively is the uniqueness rule's business.
 * - One reason per address, the most helpful one, in a fixed order:
 *     1. empty
 *     2. control characters (0x00-0x1f other than whitespace, 0x7f), NUL
 *        included, since len is given
 *     3. '<' or '>' anywhere: a display name. Before non-ASCII and
 *        whitespace, because `José <jose@x.io>` is fixed by removing the
 *        name, not by changing alphabet.
 *     4. bytes >= 0x80
 *     5. a quoted local part: a '"' first, or one before the last '@'.
 *        Before whitespace and the '@' count, so `"john doe"@x.io` and
 *        `"a@b"@x.io` are told the real cause.
 *     6. whitespace (space, tab, LF, VT, FF, CR)
 *     7. no '@', then more than one '@'
 *     8. empty local part, then empty domain
 *     9. an IP address literal ('[' opening the domain)
 *    10. local part too long, then whole address too long
 *    11. local part syntax: leading dot, trailing dot, then left to right
 *        consecutive dots or a character outside atext
 *    12. domain syntax: leading dot, trailing dot, then label by label from
 *        the left: empty label, a character outside LDH, too long, leading
 *        hyphen, trailing hyphen; then fewer than two labels, then an
 *        all-digit top-level label.
 * - The check is a pure function of s[0..len): no allocation, no locale
 *   (the character classes are spelled out), a few linear passes over the
 *   input, and no byte at or beyond len is read.
 */

#define STR_(x) #x
#define STR(x) STR_(x)

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
#define R_LOCAL_LONG \
	"the local part must be no more than " STR(EMAIL_LOCAL_MAX) " characters"
#define R_TOTAL_LONG "must be no more than " STR(EMAIL_TOTAL_MAX) " characters"
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
#define R_LABEL_LONG \
	"each domain label must be no more than " STR(EMAIL_LABEL_MAX) \
	" characters"
#define R_LABEL_LEADING_HYPHEN "a domain label must not start with a hyphen"
#define R_LABEL_TRAILING_HYPHEN "a domain label must not end with a hyphen"
#define R_ONE_LABEL "the domain must have at least two labels, as in example.com"
#define R_TLD_DIGITS "the top-level domain must not be all digits"

/* The atext specials of RFC 5322 section 3.2.3, besides letters and digits. */
static const char atext_specials[] = "!#$%&'*+-/=?^_`{|}~";

/* What the first pass over the whole address found. */
struct scan {
	int control;		/* a control character other than whitespace */
	int whitespace;
	int non_ascii;		/* a byte >= 0x80 */
	int angle;		/* '<' or '>' */
	size_t ats;		/* number of '@' */
	size_t last_at;		/* offset of the last '@', when ats > 0 */
	size_t first_quote;	/* offset of the first '"', or len if none */
};

static int
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) ||
	    memchr(atext_specials, c, sizeof(atext_specials) - 1) != NULL;
}

static int
is_ldh(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-';
}

static int
is_whitespace(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static void
scan_bytes(const unsigned char *p, size_t len, struct scan *sc)
{
	size_t i;

	memset(sc, 0, sizeof(*sc));
	sc->first_quote = len;
	for (i = 0; i < len; i++) {
		unsigned char c = p[i];

		if (is_whitespace(c))
			sc->whitespace = 1;
		else if (c < 0x20 || c == 0x7f)
			sc->control = 1;
		else if (c >= 0x80)
			sc->non_ascii = 1;
		else if (c == '<' || c == '>')
			sc->angle = 1;
		else if (c == '@') {
			sc->ats++;
			sc->last_at = i;
		} else if (c == '"' && sc->first_quote == len)
			sc->first_quote = i;
	}
}

/* Steps 2-7 of the order above: what the first pass alone can tell. */
static const char *
check_scan(const struct scan *sc, size_t len)
{
	if (sc->control)
		return R_CONTROL;
	if (sc->angle)
		return R_DISPLAY_NAME;
	if (sc->non_ascii)
		return R_NON_ASCII;
	if (sc->first_quote == 0 ||
	    (sc->first_quote < len && sc->ats > 0 &&
	    sc->first_quote < sc->last_at))
		return R_QUOTED;
	if (sc->whitespace)
		return R_WHITESPACE;
	if (sc->ats == 0)
		return R_NO_AT;
	if (sc->ats > 1)
		return R_MANY_AT;
	return NULL;
}

/* A dot-atom; len > 0. */
static const char *
check_local(const unsigned char *p, size_t len)
{
	size_t i;

	if (p[0] == '.')
		return R_LOCAL_LEADING_DOT;
	if (p[len - 1] == '.')
		return R_LOCAL_TRAILING_DOT;
	for (i = 0; i < len; i++) {
		if (p[i] != '.') {
			if (!is_atext(p[i]))
				return R_LOCAL_CHAR;
		} else if (p[i - 1] == '.')	/* i > 0: p[0] is not a dot */
			return R_LOCAL_DOTS;
	}
	return NULL;
}

/* One label between dots; the domain's ends are already known not dots. */
static const char *
check_label(const unsigned char *p, size_t len)
{
	size_t i;

	if (len == 0)
		return R_DOMAIN_DOTS;
	for (i = 0; i < len; i++)
		if (!is_ldh(p[i]))
			return R_DOMAIN_CHAR;
	if (len > EMAIL_LABEL_MAX)
		return R_LABEL_LONG;
	if (p[0] == '-')
		return R_LABEL_LEADING_HYPHEN;
	if (p[len - 1] == '-')
		return R_LABEL_TRAILING_HYPHEN;
	return NULL;
}

static int
all_digits(const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!is_digit(p[i]))
			return 0;
	return 1;
}

/* Dot-separated LDH labels; len > 0. */
static const char *
check_domain(const unsigned char *p, size_t len)
{
	size_t i, start = 0, labels = 0;
	const char *why;

	if (p[0] == '.')
		return R_DOMAIN_LEADING_DOT;
	if (p[len - 1] == '.')
		return R_DOMAIN_TRAILING_DOT;
	for (i = 0; i <= len; i++) {
		if (i < len && p[i] != '.')
			continue;
		if ((why = check_label(p + start, i - start)) != NULL)
			return why;
		labels++;
		if (i < len)
			start = i + 1;
	}
	if (labels < 2)
		return R_ONE_LABEL;
	/* start is now the offset of the last label. */
	if (all_digits(p + start, len - start))
		return R_TLD_DIGITS;
	return NULL;
}

const char *
email_check(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t at, local_len, domain_len;
	struct scan sc;
	const char *why;

	if (len == 0)
		return R_EMPTY;
	scan_bytes(p, len, &sc);
	if ((why = check_scan(&sc, len)) != NULL)
		return why;
	at = sc.last_at;
	local_len = at;
	domain_len = len - at - 1;
	if (local_len == 0)
		return R_LOCAL_EMPTY;
	if (domain_len == 0)
		return R_DOMAIN_EMPTY;
	if (p[at + 1] == '[')
		return R_IP_LITERAL;
	if (local_len > EMAIL_LOCAL_MAX)
		return R_LOCAL_LONG;
	if (len > EMAIL_TOTAL_MAX)
		return R_TOTAL_LONG;
	if ((why = check_local(p, local_len)) != NULL)
		return why;
	return check_domain(p + at + 1, domain_len);
}
