/* jsonstream.c -- frames a byte stream of concatenated JSON objects */
#include "jsonstream.h"

#include <errno.h>
#include <string.h>

#include "jsonparse.h"

void
jsonstream_init(struct jsonstream *s, size_t max_value)
{
	memset(s, 0, sizeof(*s));
	s->max_value = max_value;
	/* The buffer never holds more than one value plus one read's worth. */
	buf_init(&s->in, max_value + (1u << 20));
}

void
jsonstream_free(struct jsonstream *s)
{
	buf_free(&s->in);
	memset(s, 0, sizeof(*s));
}

int
jsonstream_partial(const struct jsonstream *s)
{
	return s->depth > 0;
}

/*
 * Forgets everything buffered and returns rc: after a framing error there
 * is no telling where the next value starts, and a caller that feeds on
 * must not see a stale scan position (the buffer may have been freed).
 */
static int
discard(struct jsonstream *s, int rc)
{
	buf_reset(&s->in);
	s->scan = s->start = 0;
	s->depth = s->in_string = s->escape = 0;
	return rc;
}

/* Drops the consumed prefix so the buffer holds only what is pending. */
static void
compact(struct jsonstream *s, size_t upto)
{
	if (upto == 0)
		return;
	memmove(s->in.ptr, s->in.ptr + upto, s->in.len - upto);
	s->in.len -= upto;
	s->in.ptr[s->in.len] = '\0';
	s->scan -= upto;
	s->start -= upto < s->start ? upto : s->start;
}

/* Parses the complete value in [start, end); NULL when it is too big or bad. */
static json_t *
parse(struct jsonstream *s, size_t end, int *err)
{
	json_error_t jerr;
	json_t *v;

	/* Checked here too: a whole value can arrive in one read. */
	if (end - s->start > s->max_value) {
		*err = -E2BIG;
		return NULL;
	}
	v = jsonparse_load(s->in.ptr + s->start, end - s->start, 0, &jerr);
	if (!v)
		*err = -EINVAL;
	return v;
}

int
jsonstream_feed(struct jsonstream *s, const char *data, size_t len,
    jsonstream_fn fn, void *arg)
{
	size_t consumed = 0;
	int rc = 0, err;

	if (len && (err = buf_add(&s->in, data, len)) != 0)
		return discard(s, err);
	for (; s->scan < s->in.len && rc == 0; s->scan++) {
		char c = s->in.ptr[s->scan];

		if (s->depth == 0) {
			if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
				consumed = s->scan + 1;
				continue;
			}
			if (c != '{')
				return discard(s, -EINVAL);
			s->start = s->scan;
			s->depth = 1;
			continue;
		}
		if (s->in_string) {
			if (s->escape)
				s->escape = 0;
			else if (c == '\\')
				s->escape = 1;
			else if (c == '"')
				s->in_string = 0;
			continue;
		}
		if (c == '"') {
			s->in_string = 1;
		} else if (c == '{' || c == '[') {
			s->depth++;
		} else if ((c == '}' || c == ']') && --s->depth == 0) {
			json_t *v = parse(s, s->scan + 1, &err);

			if (!v)
				return discard(s, err);
			consumed = s->scan + 1;
			rc = fn(v, arg);	/* non-zero ends the loop, keeping the rest */
			json_decref(v);
		}
	}
	if (s->depth > 0 && s->in.len - s->start > s->max_value)
		return discard(s, -E2BIG);
	compact(s, s->depth > 0 ? s->start : consumed);
	return rc;
}
