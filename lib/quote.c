/* quote.c -- Go's %q (strconv.Quote) and encoding/json string forms */
#include "quote.h"

#include <stdint.h>

size_t
utf8_decode(const unsigned char *s, size_t n, long *rune)
{
	unsigned c = s[0];
	size_t need;
	long r, min;

	if (c < 0x80) {
		*rune = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2; r = c & 0x1f; min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3; r = c & 0x0f; min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4; r = c & 0x07; min = 0x10000;
	} else {
		*rune = -1;
		return 1;
	}
	if (n < need) {
		*rune = -1;
		return 1;
	}
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*rune = -1;
			return 1;
		}
		r = (r << 6) | (s[i] & 0x3f);
	}
	if (r < min || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff)) {
		*rune = -1;
		return 1;
	}
	*rune = r;
	return need;
}

int
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	long r;

	while (i < len) {
		i += utf8_decode(p + i, len - i, &r);
		if (r < 0)
			return 0;
	}
	return 1;
}

size_t
utf8_runes(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n = 0;
	long r;

	while (i < len) {
		i += utf8_decode(p + i, len - i, &r);
		n++;
	}
	return n;
}

/*
 * Runes Go's unicode.IsPrint rejects above ASCII: C1 controls, spaces other
 * than U+0020, format characters (Cf), line and paragraph separators,
 * private use and noncharacters. Unassigned code points are treated as
 * printable: Go's tables track one Unicode version and we do not carry
 * them; for the strings Kubernetes users type the forms agree.
 */
static const struct { uint32_t lo, hi; } non_print[] = {
	{ 0x0080, 0x00a0 }, { 0x00ad, 0x00ad }, { 0x0600, 0x0605 },
	{ 0x061c, 0x061c }, { 0x06dd, 0x06dd }, { 0x070f, 0x070f },
	{ 0x0890, 0x0891 }, { 0x08e2, 0x08e2 }, { 0x1680, 0x1680 },
	{ 0x180e, 0x180e }, { 0x2000, 0x200f }, { 0x2028, 0x202f },
	{ 0x205f, 0x2064 }, { 0x2066, 0x206f }, { 0x3000, 0x3000 },
	{ 0xd800, 0xf8ff }, { 0xfdd0, 0xfdef }, { 0xfeff, 0xfeff },
	{ 0xfff9, 0xfffb }, { 0xfffe, 0xffff }, { 0x110bd, 0x110bd },
	{ 0x110cd, 0x110cd }, { 0x13430, 0x1343f }, { 0x1bca0, 0x1bca3 },
	{ 0x1d173, 0x1d17a }, { 0xe0001, 0xe0001 }, { 0xe0020, 0xe007f },
	{ 0xf0000, 0x10ffff },
};

static int
go_printable(long r)
{
	if (r < 0x80)
		return r >= 0x20 && r < 0x7f;
	if ((r & 0xfffe) == 0xfffe)
		return 0;
	for (size_t i = 0; i < sizeof(non_print) / sizeof(non_print[0]); i++)
		if ((uint32_t)r >= non_print[i].lo && (uint32_t)r <= non_print[i].hi)
			return 0;
	return 1;
}

static const char hexdig[] = "0123456789abcdef";

int
quote_go(struct buf *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	int rc = buf_addc(out, '"');

	while (rc == 0 && i < len) {
		long r;
		size_t n = utf8_decode(p + i, len - i, &r);

		if (r < 0) {
			rc = buf_printf(out, "\\x%c%c", hexdig[p[i] >> 4], hexdig[p[i] & 15]);
		} else if (r == '"' || r == '\\') {
			rc = buf_printf(out, "\\%c", (char)r);
		} else if (go_printable(r)) {
			rc = buf_add(out, p + i, n);
		} else {
			switch (r) {
			case '\a': rc = buf_addstr(out, "\\a"); break;
			case '\b': rc = buf_addstr(out, "\\b"); break;
			case '\f': rc = buf_addstr(out, "\\f"); break;
			case '\n': rc = buf_addstr(out, "\\n"); break;
			case '\r': rc = buf_addstr(out, "\\r"); break;
			case '\t': rc = buf_addstr(out, "\\t"); break;
			case '\v': rc = buf_addstr(out, "\\v"); break;
			default:
				if (r < 0x20 || r == 0x7f)
					rc = buf_printf(out, "\\x%02lx", r);
				else if (r < 0x10000)
					rc = buf_printf(out, "\\u%04lx", r);
				else
					rc = buf_printf(out, "\\U%08lx", r);
			}
		}
		i += n;
	}
	return rc ? rc : buf_addc(out, '"');
}

int
quote_json(struct buf *out, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	int rc = buf_addc(out, '"');

	while (rc == 0 && i < len) {
		long r;
		size_t n = utf8_decode(p + i, len - i, &r);

		if (r < 0)
			rc = buf_addstr(out, "\\ufffd");
		else if (r == '"' || r == '\\')
			rc = buf_printf(out, "\\%c", (char)r);
		else if (r == '\n')
			rc = buf_addstr(out, "\\n");
		else if (r == '\r')
			rc = buf_addstr(out, "\\r");
		else if (r == '\t')
			rc = buf_addstr(out, "\\t");
		else if (r == '\b')
			rc = buf_addstr(out, "\\b");
		else if (r == '\f')
			rc = buf_addstr(out, "\\f");
		else if (r < 0x20 || r == '<' || r == '>' || r == '&' ||
		    r == 0x2028 || r == 0x2029)
			rc = buf_printf(out, "\\u%04lx", r);
		else
			rc = buf_add(out, p + i, n);
		i += n;
	}
	return rc ? rc : buf_addc(out, '"');
}
