/* field.c -- Kubernetes field errors and the Status objects that carry them */
#include "field.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quote.h"

#define FIELD_TEXT_MAX (1u << 20)	/* one rendered message; far above any real one */
/*
 * The most bytes of a bad value a message shows. Real values are short
 * (an email is at most 254 bytes, a name 253); a longer one is cut, with
 * a note saying how long it was, so that a megabyte of junk in a field
 * makes a readable denial rather than a message over FIELD_TEXT_MAX.
 */
#define FIELD_VALUE_SHOW_MAX 1024

static const struct {
	const char *reason;
	const char *text;
} types[] = {
	[FIELD_NOT_FOUND] = { "FieldValueNotFound", "Not found" },
	[FIELD_REQUIRED] = { "FieldValueRequired", "Required value" },
	[FIELD_DUPLICATE] = { "FieldValueDuplicate", "Duplicate value" },
	[FIELD_INVALID] = { "FieldValueInvalid", "Invalid value" },
	[FIELD_NOT_SUPPORTED] = { "FieldValueNotSupported", "Unsupported value" },
	[FIELD_FORBIDDEN] = { "FieldValueForbidden", "Forbidden" },
	[FIELD_TOO_LONG] = { "FieldValueTooLong", "Too long" },
	[FIELD_TYPE_INVALID] = { "FieldValueTypeInvalid", "Invalid value" },
	[FIELD_INTERNAL] = { "InternalError", "Internal error" },
};

const char *
field_type_reason(enum field_type t)
{
	return types[t].reason;
}

const char *
field_type_string(enum field_type t)
{
	return types[t].text;
}

void
field_list_init(struct field_list *l)
{
	memset(l, 0, sizeof(*l));
}

void
field_list_free(struct field_list *l)
{
	for (size_t i = 0; i < l->len; i++) {
		free(l->v[i].field);
		free(l->v[i].value);
		free(l->v[i].detail);
	}
	free(l->v);
	field_list_init(l);
}

int
field_list_has(const struct field_list *l, const char *path)
{
	size_t n = strlen(path);

	for (size_t i = 0; i < l->len; i++) {
		const char *f = l->v[i].field;

		if (f && strncmp(f, path, n) == 0 && (f[n] == '\0' || f[n] == '.' || f[n] == '['))
			return 1;
	}
	return 0;
}

static char *
dup_or_null(const char *s, int *failed)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*failed = 1;
	return d;
}

/* Takes ownership of detail (malloc'd or NULL). */
static void
add(struct field_list *l, enum field_type type, const char *path,
    enum field_value vkind, const char *value, char *detail)
{
	struct field_error *e;
	int failed = 0;

	if (l->len == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct field_error *v = realloc(l->v, cap * sizeof(*v));

		if (!v) {
			l->oom = 1;
			free(detail);
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	e = &l->v[l->len];
	e->type = type;
	e->vkind = vkind;
	e->field = dup_or_null(path, &failed);
	e->value = dup_or_null(value, &failed);
	e->detail = detail;
	if (failed || !e->field) {
		free(e->field);
		free(e->value);
		free(e->detail);
		l->oom = 1;
		return;
	}
	l->len++;
}

static char *
vformat(struct field_list *l, const char *fmt, va_list ap)
{
	char *s = NULL;

	if (!fmt)
		return NULL;
	if (vasprintf(&s, fmt, ap) < 0) {
		l->oom = 1;
		return NULL;
	}
	return s;
}

#define FORMAT_DETAIL(l, fmt, out)			\
	do {						\
		va_list ap_;				\
		va_start(ap_, fmt);			\
		(out) = vformat((l), (fmt), ap_);	\
		va_end(ap_);				\
	} while (0)

void
field_required(struct field_list *l, const char *path, const char *detail, ...)
{
	char *d;

	FORMAT_DETAIL(l, detail, d);
	add(l, FIELD_REQUIRED, path, FV_OMIT, NULL, d);
}

void
field_forbidden(struct field_list *l, const char *path, const char *detail, ...)
{
	char *d;

	FORMAT_DETAIL(l, detail, d);
	add(l, FIELD_FORBIDDEN, path, FV_OMIT, NULL, d);
}

void
field_invalid(struct field_list *l, const char *path, const char *value,
    const char *detail, ...)
{
	char *d;

	FORMAT_DETAIL(l, detail, d);
	add(l, FIELD_INVALID, path, FV_STRING, value ? value : "", d);
}

void
field_invalid_json(struct field_list *l, const char *path, const char *json,
    const char *detail, ...)
{
	char *d;

	FORMAT_DETAIL(l, detail, d);
	add(l, FIELD_INVALID, path, FV_LITERAL, json ? json : "null", d);
}

void
field_type_invalid(struct field_list *l, const char *path, const char *value,
    const char *detail, ...)
{
	char *d;

	FORMAT_DETAIL(l, detail, d);
	add(l, FIELD_TYPE_INVALID, path, FV_STRING, value ? value : "", d);
}

void
field_duplicate(struct field_list *l, const char *path, const char *value)
{
	add(l, FIELD_DUPLICATE, path, FV_STRING, value ? value : "", NULL);
}

void
field_duplicate_detail(struct field_list *l, const char *path, const char *value,
    const char *detail, ...)
{
	char *d;

	FORMAT_DETAIL(l, detail, d);
	add(l, FIELD_DUPLICATE, path, FV_STRING, value ? value : "", d);
}

void
field_not_found(struct field_list *l, const char *path, const char *value)
{
	add(l, FIELD_NOT_FOUND, path, FV_STRING, value ? value : "", NULL);
}

void
field_not_supported(struct field_list *l, const char *path, const char *value,
    const char *const *valid)
{
	struct buf b;
	int rc = 0;

	buf_init(&b, FIELD_TEXT_MAX);
	if (valid && valid[0]) {
		rc = buf_addstr(&b, "supported values: ");
		for (size_t i = 0; rc == 0 && valid[i]; i++) {
			if (i)
				rc = buf_addstr(&b, ", ");
			if (rc == 0)
				rc = quote_go(&b, valid[i], strlen(valid[i]));
		}
	}
	if (rc) {
		l->oom = 1;
		buf_free(&b);
		return;
	}
	add(l, FIELD_NOT_SUPPORTED, path, FV_STRING, value ? value : "",
	    b.ptr ? buf_steal(&b, NULL) : NULL);
}

void
field_too_long(struct field_list *l, const char *path, long max_chars)
{
	char *d = NULL;

	if (asprintf(&d, "may not be more than %ld %s", max_chars,
	    max_chars == 1 ? "character" : "characters") < 0) {
		l->oom = 1;
		return;
	}
	add(l, FIELD_TOO_LONG, path, FV_OMIT, NULL, d);
}

/* How much of value to show: all of it, or a prefix cut at a character boundary. */
static size_t
shown_length(const char *value, size_t len)
{
	size_t n = FIELD_VALUE_SHOW_MAX;

	if (len <= n)
		return len;
	while (n > 0 && ((unsigned char)value[n] & 0xC0) == 0x80)
		n--;	/* value[n] continues a character that would be cut */
	return n;
}

int
field_error_body(struct buf *out, const struct field_error *e)
{
	int rc = buf_addstr(out, field_type_string(e->type));
	size_t len = e->vkind == FV_OMIT ? 0 : strlen(e->value);
	size_t shown = shown_length(e->value ? e->value : "", len);

	if (rc == 0 && e->vkind == FV_STRING) {
		rc = buf_addstr(out, ": ");
		if (rc == 0)
			rc = quote_go(out, e->value, shown);
	} else if (rc == 0 && e->vkind == FV_LITERAL) {
		rc = buf_addstr(out, ": ");
		if (rc == 0)
			rc = buf_add(out, e->value, shown);
	}
	if (rc == 0 && shown < len)
		rc = buf_printf(out, "... (%zu bytes, cut to the first %zu)",
		    len, shown);
	if (rc == 0 && e->detail && e->detail[0])
		rc = buf_printf(out, ": %s", e->detail);
	return rc;
}

int
field_error_string(struct buf *out, const struct field_error *e)
{
	int rc = buf_printf(out, "%s: ", e->field);

	return rc ? rc : field_error_body(out, e);
}

/* Renders every error's Error() text, in order, into texts[]; frees on failure. */
static int
render_all(const struct field_list *l, struct buf *texts)
{
	for (size_t i = 0; i < l->len; i++) {
		buf_init(&texts[i], FIELD_TEXT_MAX);
		if (field_error_string(&texts[i], &l->v[i]) != 0) {
			for (size_t j = 0; j <= i; j++)
				buf_free(&texts[j]);
			return -1;
		}
	}
	return 0;
}

int
field_list_aggregate(struct buf *out, const struct field_list *l)
{
	struct buf *texts;
	size_t shown = 0;
	int rc = 0;

	if (l->len == 0)
		return 0;
	texts = calloc(l->len, sizeof(*texts));
	if (!texts || render_all(l, texts) != 0) {
		free(texts);
		return -1;
	}
	/* Count distinct messages first: one alone is shown without brackets. */
	for (size_t i = 0; i < l->len; i++) {
		int seen = 0;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(buf_str(&texts[i]), buf_str(&texts[j])) == 0;
		if (!seen)
			shown++;
	}
	if (shown > 1)
		rc = buf_addc(out, '[');
	for (size_t i = 0, n = 0; rc == 0 && i < l->len; i++) {
		int seen = 0;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(buf_str(&texts[i]), buf_str(&texts[j])) == 0;
		if (seen)
			continue;
		if (n++)
			rc = buf_addstr(out, ", ");
		if (rc == 0)
			rc = buf_addstr(out, buf_str(&texts[i]));
	}
	if (rc == 0 && shown > 1)
		rc = buf_addc(out, ']');
	for (size_t i = 0; i < l->len; i++)
		buf_free(&texts[i]);
	free(texts);
	return rc;
}

json_t *
field_status_new(int code, const char *reason, const char *message)
{
	return json_pack("{s:s, s:{}, s:s, s:s, s:s, s:i}",
	    "kind", "Status", "metadata", "status", "Failure",
	    "message", message, "reason", reason, "code", code);
}

static json_t *
causes_json(const struct field_list *l)
{
	json_t *causes = json_array();
	struct buf body;

	if (!causes)
		return NULL;
	buf_init(&body, FIELD_TEXT_MAX);
	for (size_t i = 0; i < l->len; i++) {
		json_t *c;

		buf_reset(&body);
		if (field_error_body(&body, &l->v[i]) != 0)
			goto fail;
		c = json_pack("{s:s, s:s, s:s}",
		    "reason", field_type_reason(l->v[i].type),
		    "message", buf_str(&body), "field", l->v[i].field);
		if (!c || json_array_append_new(causes, c) != 0)
			goto fail;
	}
	buf_free(&body);
	return causes;
fail:
	buf_free(&body);
	json_decref(causes);
	return NULL;
}

json_t *
field_status_forbidden(const char *group, const char *resource, const char *name,
    const char *why)
{
	struct buf msg;
	json_t *status = NULL, *details;

	buf_init(&msg, FIELD_TEXT_MAX);
	if (buf_printf(&msg, "%s.%s ", resource, group) != 0)
		goto out;
	/* apimachinery leaves the name out when there is none (omitempty too). */
	if (name && name[0] && (quote_go(&msg, name, strlen(name)) != 0 ||
	    buf_addstr(&msg, " ") != 0))
		goto out;
	if (buf_printf(&msg, "is forbidden: %s", why) != 0)
		goto out;
	details = name && name[0] ?
	    json_pack("{s:s, s:s, s:s}", "name", name, "group", group, "kind", resource) :
	    json_pack("{s:s, s:s}", "group", group, "kind", resource);
	if (!details)
		goto out;
	status = json_pack("{s:s, s:{}, s:s, s:s, s:s, s:o, s:i}",
	    "kind", "Status", "metadata", "status", "Failure",
	    "message", buf_str(&msg), "reason", "Forbidden", "details", details,
	    "code", 403);
out:
	buf_free(&msg);
	return status;
}

json_t *
field_status_invalid(const char *group, const char *kind, const char *name,
    const struct field_list *l)
{
	struct buf msg;
	json_t *status = NULL, *causes;

	buf_init(&msg, FIELD_TEXT_MAX);
	if (buf_printf(&msg, "%s.%s ", kind, group) != 0 ||
	    quote_go(&msg, name ? name : "", name ? strlen(name) : 0) != 0 ||
	    buf_addstr(&msg, " is invalid") != 0)
		goto out;
	if (l->len && (buf_addstr(&msg, ": ") != 0 ||
	    field_list_aggregate(&msg, l) != 0))
		goto out;
	causes = causes_json(l);
	if (!causes)
		goto out;
	status = json_pack("{s:s, s:{}, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:o}, s:i}",
	    "kind", "Status", "metadata", "status", "Failure",
	    "message", buf_str(&msg), "reason", "Invalid",
	    "details", "name", name ? name : "", "group", group, "kind", kind,
	    "causes", causes, "code", 422);
out:
	buf_free(&msg);
	return status;
}
