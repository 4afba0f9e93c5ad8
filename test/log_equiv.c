/*
 * log_equiv.c -- lib/log.c writes its lines without jansson; this checks
 * that each is byte for byte what json_dumps() writes for the same object,
 * and times the admission line both ways.
 *
 *   build/default/log_equiv [-n 200000]      (make bench-log-equiv)
 *
 * -n random calls of log_fields() (control characters, non-ASCII and
 * invalid UTF-8, NULL keys and strings, reserved and repeated keys, integer
 * limits, any double bit pattern, nested JSON, lines on both sides of
 * lib/log.c's 2 KiB stack buffer), each compared, time masked, with the
 * line jansson makes of the same fields as lib/log.c used to: json_pack()
 * of the fields merged into {time, level, msg}, a field it refuses leaving
 * the line without fields, a msg it refuses leaving no line. Exit status 1
 * on the first difference.
 */
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

#define MASKED_TIME "TTTTTTTTTTTTTTTTTTTTTTTT"	/* 2026-11-25T17:05:23.123Z */
#define FIELDS_MAX 12

static int fd;
static off_t pos;
static long lines, with_fields, silent;
static char big[3000];	/* 'x's: tails of it cross the stack buffer's size */

/* What the last call wrote (malloc'd, NUL-terminated), time masked. */
static char *
take(void)
{
	off_t end = lseek(fd, 0, SEEK_END);
	size_t n = (size_t)(end - pos);
	char *s = malloc(n + 1);

	if (!s || pread(fd, s, n, pos) != (ssize_t)n)
		exit(2);
	s[n] = '\0';
	pos = end;
	if (n > 33 && strncmp(s, "{\"time\":\"", 9) == 0)
		memcpy(s + 9, MASKED_TIME, strlen(MASKED_TIME));
	return s;
}

/* What json_pack() made of a field, or NULL where it failed. */
static json_t *
pack_value(const struct log_field *f)
{
	switch (f->type) {
	case LOG_FIELD_STR:
		return f->v.s ? json_string(f->v.s) : json_null();
	case LOG_FIELD_INT:
		return json_integer(f->v.i);
	case LOG_FIELD_FLOAT:
		return json_real(f->v.d);
	case LOG_FIELD_BOOL:
		return json_boolean(f->v.b);
	case LOG_FIELD_JSON:
		return f->v.j ? json_incref((json_t *)(uintptr_t)f->v.j) : json_null();
	default:
		return NULL;
	}
}

/* The line jansson makes of the same call: malloc'd, "" for none. */
static char *
reference(enum log_level level, const char *msg, const struct log_field *f, size_t n)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	json_t *line, *extra = json_object(), *value;
	const char *key;
	char *text, *out;
	size_t len;
	bool ok = extra != NULL;

	line = json_pack("{s:s, s:s, s:s}", "time", MASKED_TIME, "level", names[level],
	    "msg", msg ? msg : "");
	for (size_t i = 0; ok && i < n; i++) {
		value = pack_value(&f[i]);
		ok = f[i].key && value && json_object_set_new(extra, f[i].key, value) == 0;
		if (!f[i].key)
			json_decref(value);
	}
	if (ok && line) {
		json_object_foreach(extra, key, value) {
			if (!json_object_get(line, key))
				json_object_set(line, key, value);
		}
	}
	json_decref(extra);
	with_fields += json_object_size(line) > 3;
	text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(line);
	len = text ? strlen(text) : 0;
	if (!(out = malloc(len + 2)))
		exit(2);
	memcpy(out, text ? text : "", len);
	if (text)
		out[len++] = '\n';
	out[len] = '\0';
	free(text);
	return out;
}

/* The last 8 strings are not UTF-8. */
static const char *const strings[] = {
	"", "plain", "a\"b", "back\\slash", "new\nline", "tab\tcr\r", "\b\f", "\x01\x1f\x7f",
	"slash/es", "caf\xc3\xa9", "\xe2\x80\xa8 line sep", "\xf0\x9f\x98\x80 emoji",
	"{\"level\":\"error\"}", "\\u0041", "/validate-notification-miloapis-com-v1alpha1-contact",
	"\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xff bad", "\xc0\xaf overlong",
	"\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 too big", "\xe2\x82 short", "trailing \xc3",
	"\xe0\x9f\xbf overlong", "\x80 lone",
};
#define NS (sizeof(strings) / sizeof(strings[0]))
#define NS_UTF8 (NS - 8)
static const char *const keys[] = {
	"uid", "kind", "name", "time", "level", "msg", "a\"b", "k\n", "\xd0\xba\xd0\xbb", "", "x",
};
#define NK (sizeof(keys) / sizeof(keys[0]))
static const double reals[] = {
	0, -0.0, 0.042, 0.1, 1, 1e16, 1e17, 1e21, 1e-7, 123456789.125, 5e-324, 0.5e-5,
	-2.2250738585072014e-308, 1.7976931348623157e308, 1e100, NAN, INFINITY, -INFINITY,
};
static const long long ints[] = { 0, -1, INT_MIN, INT_MAX, LLONG_MIN, LLONG_MAX };

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

#define PICK(a) (a[rnd() % (sizeof(a) / sizeof(a[0]))])

/* Mostly UTF-8, so that most lines keep their fields; buf holds 24 bytes. */
static const char *
rstr(char *buf)
{
	uint64_t r = rnd() % 16, n;

	if (r < 10)
		return strings[rnd() % NS_UTF8];
	if (r < 12)
		return strings[rnd() % NS];
	if (r == 12)
		return big + sizeof(big) - 1 - (1800 + rnd() % 400);
	n = rnd() % 24;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t c = rnd();

		buf[i] = (char)(c % 16 ? 0x20 + c % 95 : 1 + c % 255);
	}
	buf[n] = '\0';
	return buf;
}

/* A field of any type, with a 1 in 64 chance of a NULL key or no type. */
static void
rfield(struct log_field *f, char *kbuf, char *vbuf, json_t **keep)
{
	uint64_t r = rnd();

	f->key = r % 64 == 0 ? NULL : r % 8 ? PICK(keys) : rstr(kbuf);
	f->type = r % 64 == 1 ? LOG_FIELD_NONE : (enum log_field_type)(1 + rnd() % 5);
	*keep = NULL;
	switch (f->type) {
	case LOG_FIELD_STR:
		f->v.s = rnd() % 5 ? rstr(vbuf) : NULL;
		break;
	case LOG_FIELD_INT:
		f->v.i = rnd() % 4 ? (long long)rnd() >> (rnd() % 63) : PICK(ints);
		break;
	case LOG_FIELD_FLOAT:
		r = rnd();
		if (r % 4 == 0)
			memcpy(&f->v.d, &r, sizeof(double));	/* any bit pattern */
		else
			f->v.d = r % 4 == 1 ? PICK(reals) : (double)(int64_t)r / (double)(rnd() % 999 + 1);
		break;
	case LOG_FIELD_BOOL:
		f->v.b = rnd() & 1;
		break;
	case LOG_FIELD_JSON:
		/* json_pack() fails on a string that is not UTF-8: then a NULL value. */
		if (rnd() % 2)
			*keep = json_pack("{s:s, s:[I, f, b, n], s:{}}", "caf\xc3\xa9", rstr(vbuf),
			    "a/b", (json_int_t)rnd(), 0.25, 1, "o");
		else
			*keep = json_pack("[s]", rstr(vbuf));
		f->v.j = *keep;
		break;
	default:
		break;
	}
}

static void
check(enum log_level level, const char *msg, const struct log_field *f, size_t n)
{
	char *got, *want;

	log_fields(level, msg, f, n);
	got = take();
	want = reference(level, msg, f, n);
	if (*want)
		lines++;
	else
		silent++;
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "log_equiv: lines differ:\n  log_fields: %s\n  jansson:    %s\n",
		    got, want);
		exit(1);
	}
	free(got);
	free(want);
}

static void
random_case(void)
{
	struct log_field f[FIELDS_MAX];
	char b[2 * FIELDS_MAX + 1][24];
	json_t *keep[FIELDS_MAX];
	size_t n = (size_t)(rnd() % (FIELDS_MAX + 1));
	const char *msg = rnd() % 32 ? rstr(b[2 * FIELDS_MAX]) : NULL;

	for (size_t i = 0; i < n; i++)
		rfield(&f[i], b[2 * i], b[2 * i + 1], &keep[i]);
	check((enum log_level)(rnd() % 4), msg, f, n);
	for (size_t i = 0; i < n; i++)
		json_decref(keep[i]);
}

/* ---- time per line ---- */

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* webhook/server.c's log_decision(), the hot one. */
static void
typed_admission(void)
{
	log_info("admission",
	    LOG_STR("webhook", "/validate-notification-miloapis-com-v1alpha1-contact"),
	    LOG_STR("uid", "705ab4f5-6393-11e8-b7cc-42010a800002"), LOG_STR("kind", "Contact"),
	    LOG_STR("namespace", "org-xyz"), LOG_STR("name", "john-doe"),
	    LOG_STR("operation", "CREATE"), LOG_BOOL("allowed", 1), LOG_BOOL("dry_run", 0),
	    LOG_BOOL("patched", 0), LOG_FLOAT("ms", 0.042117));
}

/* The same line as lib/log.c made it with jansson (json_pack, merge, json_dumps). */
static void
jansson_admission(int out)
{
	json_t *line, *extra, *value;
	const char *key;
	char *text;
	size_t n;

	line = json_pack("{s:s, s:s, s:s}", "time", "2026-11-25T17:05:23.123Z",
	    "level", "info", "msg", "admission");
	extra = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:b, s:b, s:b, s:f}",
	    "webhook", "/validate-notification-miloapis-com-v1alpha1-contact",
	    "uid", "705ab4f5-6393-11e8-b7cc-42010a800002", "kind", "Contact",
	    "namespace", "org-xyz", "name", "john-doe", "operation", "CREATE",
	    "allowed", 1, "dry_run", 0, "patched", 0, "ms", 0.042117);
	json_object_foreach(extra, key, value) {
		if (!json_object_get(line, key))
			json_object_set(line, key, value);
	}
	json_decref(extra);
	text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(line);
	if (!text)
		exit(2);
	n = strlen(text);
	text[n] = '\n';	/* json_dumps leaves room: overwrite NUL, write n+1 */
	if (write(out, text, n + 1) < 0)
		exit(2);
	free(text);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Medians of alternating batches, so that both ways see the same machine. */
static void
timing(void)
{
	enum { BATCHES = 5, TYPED = 10000, JANSSON = 2000 };
	double t[2][BATCHES], t0;
	int out = open("/dev/null", O_WRONLY);

	if (out < 0)
		exit(2);
	log_set_fd(out);
	log_set_level(LOG_LEVEL_INFO);
	for (int b = 0; b < BATCHES; b++) {
		t0 = now_s();
		for (int i = 0; i < TYPED; i++)
			typed_admission();
		t[0][b] = (now_s() - t0) * 1e6 / TYPED;
		t0 = now_s();
		for (int i = 0; i < JANSSON; i++)
			jansson_admission(out);
		t[1][b] = (now_s() - t0) * 1e6 / JANSSON;
	}
	qsort(t[0], BATCHES, sizeof(double), cmp_double);
	qsort(t[1], BATCHES, sizeof(double), cmp_double);
	printf("log_equiv: the admission line takes %.2f us (typed fields) vs %.2f us "
	    "(json_pack + json_dumps), %.1fx (medians of %d batches)\n", t[0][BATCHES / 2],
	    t[1][BATCHES / 2], t[1][BATCHES / 2] / t[0][BATCHES / 2], BATCHES);
	log_set_fd(-1);
	close(out);
}

int
main(int argc, char **argv)
{
	long n = 200000;
	FILE *tmp = tmpfile();

	if (argc == 3 && strcmp(argv[1], "-n") == 0)
		n = strtol(argv[2], NULL, 10);
	if (!tmp || n < 0)
		return 2;
	memset(big, 'x', sizeof(big) - 1);
	fd = fileno(tmp);
	log_set_fd(fd);
	log_set_level(LOG_LEVEL_DEBUG);
	for (long i = 0; i < n; i++)
		random_case();
	printf("log_equiv: %ld calls, identical (%ld lines, %ld of them with fields; %ld "
	    "write nothing)\n", n, lines, with_fields, silent);
	timing();
	fclose(tmp);
	return 0;
}
