/* names.c -- object name and namespace syntax, as apimachinery checks it */
#include <string.h>

#include "quote.h"
#include "validate.h"

#define SUBDOMAIN_MSG "a lowercase RFC 1123 subdomain must consist of lower case " \
	"alphanumeric characters, '-' or '.', and must start and end with an " \
	"alphanumeric character (e.g. 'example.com', regex used for validation is " \
	"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
#define LABEL_MSG "a lowercase RFC 1123 label must consist of lower case " \
	"alphanumeric characters or '-', and must start and end with an " \
	"alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for " \
	"validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"

static int
alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])? over s[0..n) */
static int
is_label(const char *s, size_t n)
{
	if (n == 0 || !alnum(s[0]) || !alnum(s[n - 1]))
		return 0;
	for (size_t i = 1; i + 1 < n; i++)
		if (!alnum(s[i]) && s[i] != '-')
			return 0;
	return 1;
}

static int
is_subdomain(const char *s)
{
	const char *dot;

	for (;;) {
		dot = strchr(s, '.');
		if (!is_label(s, dot ? (size_t)(dot - s) : strlen(s)))
			return 0;
		if (!dot)
			return 1;
		s = dot + 1;
	}
}

void
validate_subdomain(struct field_list *errs, const char *path, const char *value)
{
	if (strlen(value) > VALIDATE_SUBDOMAIN_MAX)
		field_invalid(errs, path, value, "must be no more than %d characters",
		    VALIDATE_SUBDOMAIN_MAX);
	if (!is_subdomain(value))
		field_invalid(errs, path, value, "%s", SUBDOMAIN_MSG);
}

void
validate_label(struct field_list *errs, const char *path, const char *value)
{
	if (strlen(value) > VALIDATE_LABEL_MAX)
		field_invalid(errs, path, value, "must be no more than %d characters",
		    VALIDATE_LABEL_MAX);
	if (!is_label(value, strlen(value)))
		field_invalid(errs, path, value, "%s", LABEL_MSG);
}

static void
check_text(struct field_list *errs, const char *path, const char *value,
    long max_chars, int allow_newline)
{
	size_t len = strlen(value);
	const unsigned char *p = (const unsigned char *)value;

	if (utf8_runes(value, len) > (size_t)max_chars)
		field_too_long(errs, path, max_chars);
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n' && allow_newline)
			continue;
		/* C0 controls, DEL, and the C1 range encoded as U+0080..U+009F */
		if (p[i] < 0x20 || p[i] == 0x7f ||
		    (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)) {
			field_invalid(errs, path, value, allow_newline ?
			    "must not contain control characters other than line feeds" :
			    "must not contain control characters");
			return;
		}
	}
}

void
validate_text(struct field_list *errs, const char *path, const char *value,
    long max_chars)
{
	check_text(errs, path, value, max_chars, 0);
}

void
validate_paragraphs(struct field_list *errs, const char *path, const char *value,
    long max_chars)
{
	check_text(errs, path, value, max_chars, 1);
}

int
validate_ref_equal(const struct object_ref *a, const struct object_ref *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a->name ? a->name : "", b->name ? b->name : "") == 0 &&
	    strcmp(a->namespace ? a->namespace : "",
		b->namespace ? b->namespace : "") == 0;
}
