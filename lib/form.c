/* form.c -- application/x-www-form-urlencoded bodies and query strings (the HTML form rules) */
#include "form.h"

#include <errno.h>
#include <string.h>

/* The bytes the urlencoded serializer leaves as they are (WHATWG URL, 5.2). */
static bool
kept(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '*' || c == '-' || c == '.' || c == '_';
}

size_t
form_escape(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char enc[3];
		size_t w;

		if (kept(*p)) {
			enc[0] = (char)*p;
			w = 1;
		} else if (*p == ' ') {
			enc[0] = '+';
			w = 1;
		} else {
			enc[0] = '%';
			enc[1] = hex[*p >> 4];
			enc[2] = hex[*p & 15];
			w = 3;
		}
		for (size_t i = 0; i < w; i++, n++)
			if (n + 1 < len)
				out[n] = enc[i];
	}
	if (len)
		out[n < len ? n : len - 1] = '\0';
	return n;
}

void
form_init(struct form *f, size_t max)
{
	buf_init(&f->b, max);
}

void
form_free(struct form *f)
{
	buf_free(&f->b);
}

/* Appends one encoded string, a byte at a time through a small stack buffer. */
static int
add_escaped(struct form *f, const char *s)
{
	char chunk[256];
	size_t i = 0;
	int rc = 0;

	for (const char *p = s; *p && rc == 0; p++) {
		char one[2] = { *p, '\0' }, enc[4];
		size_t w = form_escape(one, enc, sizeof(enc));

		if (i + w > sizeof(chunk)) {
			rc = buf_add(&f->b, chunk, i);
			i = 0;
		}
		memcpy(chunk + i, enc, w);
		i += w;
	}
	if (rc == 0 && i)
		rc = buf_add(&f->b, chunk, i);
	return rc;
}

int
form_add(struct form *f, const char *name, const char *value)
{
	int rc = 0;

	if (!name || !value)
		return -EINVAL;
	if (f->b.len)
		rc = buf_addc(&f->b, '&');
	if (rc == 0)
		rc = add_escaped(f, name);
	if (rc == 0)
		rc = buf_addc(&f->b, '=');
	if (rc == 0)
		rc = add_escaped(f, value);
	return rc;
}

int
form_add_bool(struct form *f, const char *name, bool value)
{
	return form_add(f, name, value ? "yes" : "no");
}

const char *
form_text(const struct form *f)
{
	return buf_str(&f->b);
}

size_t
form_len(const struct form *f)
{
	return f->b.len;
}
