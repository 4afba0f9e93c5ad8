/*
 * log_equiv.c -- lib/log.c writes its lines without jansson; this checks
 * that every line is byte for byte what json_dumps() writes for the same
 * object, and times the admission line both ways.
 *
 *   build/default/log_equiv [-n 200000]      (make bench-log-equiv)
 *
 * Each case goes through log_fields() into a file and through jansson here
 * (the object json_pack() built from the same fields, as lib/log.c did
 * before its typed fields: a field jansson refuses leaves the line without
 * fields, a msg it refuses leaves no line), and the two are compared with
 * the time masked. Cases: hand-picked edge cases (escapes, control
 * characters, non-ASCII and invalid UTF-8, NULL keys and strings, reserved
 * and repeated keys, special doubles, integer limits, nested JSON, lines
 * longer than lib/log.c's stack buffer), then -n random ones built from the
 * same parts. Exit status 1 on the first difference.
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
static long cases, lines, with_fields, silent;

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

/* The line lib/log.c wrote with jansson: malloc'd, "" for no line. */
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
	for (size_t i = 0; ok && line && i < n; i++) {
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
	if (json_object_size(line) > 3)
		with_fields++;
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

static void
check(int at, enum log_level level, const char *msg, const struct log_field *f, size_t n)
{
	char *got, *want;

	log_fields(level, msg, f, n);
	got = take();
	want = reference(level, msg, f, n);
	cases++;
	if (*want)
		lines++;
	else
		silent++;
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "log_equiv: case at line %d differs:\n  log_fields: %s\n"
		    "  jansson:    %s\n", at, got, want);
		exit(1);
	}
	free(got);
	free(want);
}

#define CHECK(level, msg, ...) do {						\
	const struct log_field f_[] = { __VA_ARGS__ };				\
									\
	check(__LINE__, (level), (msg), f_, sizeof(f_) / sizeof(f_[0]));	\
} while (0)

/* The last NS_BAD strings and NK_BAD keys are not UTF-8. */
static const char *const strings[] = {
	"", "plain", "a\"b", "back\\slash", "new\nline", "tab\tcr\r", "\b\f", "\x01\x1f\x7f",
	"slash/es", "caf\xc3\xa9", "\xe2\x80\xa8 line sep", "\xf0\x9f\x98\x80 emoji",
	"{\"level\":\"error\"}", "\\u0041", "/validate-notification-miloapis-com-v1alpha1-contact",
	"705ab4f5-6393-11e8-b7cc-42010a800002", "\xef\xbf\xbf max 3-byte", "\xf4\x8f\xbf\xbf",
	"\xff bad", "\xc0\xaf overlong", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 too big",
	"\xe2\x82 short", "trailing \xc3", "\xe0\x9f\xbf overlong 3", "\x80 lone continuation",
};
static const char *const keys[] = {
	"uid", "kind", "namespace", "name", "time", "level", "msg", "a\"b", "k\n",
	"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "", "x", "ms", "bad\xff",
};
#define NS (sizeof(strings) / sizeof(strings[0]))
#define NK (sizeof(keys) / sizeof(keys[0]))
#define NS_BAD 8
#define NK_BAD 1

static const double reals[] = {
	0, -0.0, 0.042, 0.1, 1, 100, 1e16, 1e17, 1e21, 1e-7, 123456789.125, 5e-324,
	2.2250738585072014e-308, 1.7976931348623157e308, -3.5, 1e100, 1e-100, 0.5e-5,
	-2.2250738585072014e-308, NAN, INFINITY, -INFINITY,
};
#define NR (sizeof(reals) / sizeof(reals[0]))

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static const char *
rstr(char *buf, size_t len)
{
	uint64_t r = rnd();
	size_t n;

	/* Mostly UTF-8, so that most lines keep their fields. */
	if (r % 8 > 1)
		return strings[rnd() % (NS - NS_BAD)];
	if (r % 8 == 1)
		return strings[rnd() % NS];
	/* Random bytes, mostly printable, some anything. */
	n = (size_t)(rnd() % (len - 1));
	for (size_t i = 0; i < n; i++) {
		uint64_t c = rnd();

		buf[i] = (char)(c % 16 ? 0x20 + c % 95 : 1 + c % 255);
	}
	buf[n] = '\0';
	return buf;
}

static const char *
rkey(char *buf, size_t len)
{
	uint64_t r = rnd() % 64;

	if (r == 0)
		return NULL;
	if (r == 1)
		return keys[rnd() % NK];
	return r < 56 ? keys[rnd() % (NK - NK_BAD)] : rstr(buf, len);
}

static double
rreal(void)
{
	uint64_t r = rnd();
	double d;

	if (r % 8 == 0) {
		memcpy(&d, &r, sizeof(d));	/* any bit pattern: NaN and infinity too */
		return d;
	}
	if (r % 8 == 1)
		return reals[rnd() % NR];
	if (r % 8 == 2)
		return (double)(int64_t)rnd();
	return (double)(int64_t)rnd() / (double)(1 + rnd() % 1000000);
}

static long long
rint64(void)
{
	static const long long edges[] = { 0, -1, 1, INT_MIN, INT_MAX, LLONG_MIN, LLONG_MAX };
	uint64_t r = rnd();

	if (r % 4 == 0)
		return edges[rnd() % (sizeof(edges) / sizeof(edges[0]))];
	return (long long)rnd() >> (r % 63);
}

static bool
utf8_ok(const char *s)
{
	json_t *j = json_string(s);

	json_decref(j);
	return j != NULL;
}

/* A small JSON value, also in *keep (the caller's to free), or NULL. */
static json_t *
rjson(char *buf, size_t len, json_t **keep)
{
	const char *s = rstr(buf, len);
	double d = reals[rnd() % NR];

	if (!utf8_ok(s))
		s = NULL;	/* json_pack() would fail */
	if (!isfinite(d))
		d = 0.5;
	switch (rnd() % 5) {
	case 0:
		*keep = NULL;
		break;
	case 1:
		*keep = s ? json_string(s) : json_null();
		break;
	case 2:
		*keep = json_pack("[s?, I, b, n]", s, (json_int_t)rint64(), (int)(rnd() & 1));
		break;
	case 3:
		*keep = json_pack("{s:s?, s:{s:f}, s:[]}", "a/b", s, "nested", "x", d, "empty");
		break;
	default:
		*keep = json_integer(rint64());
		break;
	}
	return *keep;
}

static void
handpicked(void)
{
	char big[5000];
	json_t *j;

	check(__LINE__, LOG_LEVEL_INFO, "no fields", NULL, 0);
	check(__LINE__, LOG_LEVEL_WARN, NULL, NULL, 0);
	check(__LINE__, LOG_LEVEL_ERROR, "bad \xff msg", NULL, 0);
	check(__LINE__, LOG_LEVEL_DEBUG, "debug", NULL, 0);
	CHECK(LOG_LEVEL_DEBUG, "a\"b\nc", LOG_STR("msg", "forged"),
	    LOG_STR("k", "v\n{\"level\":\"error\"}"));
	CHECK(LOG_LEVEL_INFO, "ints", LOG_INT("min", INT_MIN), LOG_INT("max", INT_MAX),
	    LOG_INT("llmin", LLONG_MIN), LOG_INT("llmax", LLONG_MAX), LOG_INT("zero", 0));
	CHECK(LOG_LEVEL_INFO, "bools", LOG_BOOL("t", 1), LOG_BOOL("f", 0), LOG_BOOL("two", 2));
	CHECK(LOG_LEVEL_INFO, "null string", LOG_STR("a", NULL), LOG_INT("b", 1));
	CHECK(LOG_LEVEL_INFO, "null key", LOG_STR(NULL, "v"), LOG_INT("b", 1));
	CHECK(LOG_LEVEL_INFO, "end marker inside", LOG_INT("a", 1), { .type = LOG_FIELD_NONE });
	CHECK(LOG_LEVEL_INFO, "repeated", LOG_STR("a", "1"), LOG_INT("b", 2), LOG_STR("a", "3"),
	    LOG_FLOAT("a", 4.5), LOG_BOOL("c", 1));
	CHECK(LOG_LEVEL_INFO, "repeated, the first refused", LOG_STR("a", "\xff"),
	    LOG_STR("a", "ok"));
	CHECK(LOG_LEVEL_INFO, "repeated, the last refused", LOG_STR("a", "ok"),
	    LOG_FLOAT("a", NAN));
	CHECK(LOG_LEVEL_INFO, "reserved", LOG_STR("time", "x"), LOG_STR("level", "y"),
	    LOG_STR("msg", "z"), LOG_INT("n", 4));
	CHECK(LOG_LEVEL_INFO, "reserved bad", LOG_STR("msg", "\xff"), LOG_INT("n", 4));
	CHECK(LOG_LEVEL_INFO, "nan", LOG_FLOAT("x", NAN), LOG_INT("n", 4));
	CHECK(LOG_LEVEL_INFO, "inf", LOG_INT("n", 4), LOG_FLOAT("x", -INFINITY));
	for (size_t i = 0; i < NR; i++)
		CHECK(LOG_LEVEL_INFO, "real", LOG_FLOAT("x", reals[i]));
	for (size_t i = 0; i < NS; i++)
		CHECK(LOG_LEVEL_INFO, strings[i], LOG_STR(keys[i % NK], strings[i]),
		    LOG_STR(strings[(i + 3) % NS], strings[(i + 5) % NS]));
	CHECK(LOG_LEVEL_INFO, "json null", LOG_JSON("j", NULL));
	j = json_pack("{s:s, s:[i, f, b, n], s:{s:s}, s:{}}", "caf\xc3\xa9", "a/\"b\"\n",
	    "list", 1, 0.1, 1, "nested", "\xe2\x80\xa8", "x", "empty");
	CHECK(LOG_LEVEL_INFO, "json", LOG_JSON("j", j), LOG_JSON("s", json_object_get(j, "list")),
	    LOG_JSON("msg", j));
	json_decref(j);
	j = json_string("top-level string");
	CHECK(LOG_LEVEL_INFO, "json string", LOG_JSON("j", j));
	json_decref(j);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK(LOG_LEVEL_INFO, "over the stack buffer", LOG_STR("big", big), LOG_INT("after", 1));
	CHECK(LOG_LEVEL_INFO, "over the stack buffer, then refused", LOG_STR("big", big),
	    LOG_STR("bad", "\xff"));
	for (size_t cut = 2100; cut > 1900; cut--)	/* around the buffer's 2 KiB */
		CHECK(LOG_LEVEL_INFO, "around the buffer", LOG_STR("big", big + sizeof(big) - cut));
	j = json_pack("{s:s}", "big", big);
	CHECK(LOG_LEVEL_INFO, "json over the stack buffer", LOG_JSON("j", j));
	json_decref(j);
	/* webhook/server.c's log_decision(), the hot one. */
	CHECK(LOG_LEVEL_INFO, "admission",
	    LOG_STR("webhook", "/validate-notification-miloapis-com-v1alpha1-contact"),
	    LOG_STR("uid", "705ab4f5-6393-11e8-b7cc-42010a800002"), LOG_STR("kind", "Contact"),
	    LOG_STR("namespace", "org-xyz"), LOG_STR("name", NULL),
	    LOG_STR("operation", "CREATE"), LOG_BOOL("allowed", 1), LOG_BOOL("dry_run", 0),
	    LOG_BOOL("patched", 0), LOG_FLOAT("ms", 0.042117), LOG_INT("suppressed", 3));
}

static void
random_case(void)
{
	struct log_field f[FIELDS_MAX];
	char b[2 * FIELDS_MAX + 1][24];
	json_t *keep[FIELDS_MAX] = { NULL };
	size_t n = (size_t)(rnd() % (FIELDS_MAX + 1));
	const char *msg = rnd() % 32 ? rstr(b[2 * FIELDS_MAX], sizeof(b[0])) : NULL;

	for (size_t i = 0; i < n; i++) {
		f[i].key = rkey(b[2 * i], sizeof(b[0]));
		switch (rnd() % 6) {
		case 0:
		case 1:
			f[i].type = LOG_FIELD_STR;
			f[i].v.s = rnd() % 5 ? rstr(b[2 * i + 1], sizeof(b[0])) : NULL;
			break;
		case 2:
			f[i].type = LOG_FIELD_INT;
			f[i].v.i = rint64();
			break;
		case 3:
			f[i].type = LOG_FIELD_FLOAT;
			f[i].v.d = rreal();
			break;
		case 4:
			f[i].type = LOG_FIELD_BOOL;
			f[i].v.b = rnd() & 1;
			break;
		default:
			f[i].type = LOG_FIELD_JSON;
			f[i].v.j = rjson(b[2 * i + 1], sizeof(b[0]), &keep[i]);
			break;
		}
	}
	check(__LINE__, (enum log_level)(rnd() % 4), msg, f, n);
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

/* The same line as lib/log.c built it with jansson before (json_pack, merge, json_dumps). */
static void
jansson_admission(int out)
{
	json_t *line, *extra;
	const char *key;
	json_t *value;
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

/* Medians of alternating batches, so both see the same machine. */
static void
timing(void)
{
	enum { BATCHES = 7, TYPED = 20000, JANSSON = 4000 };
	double t[2][BATCHES], t0;
	int out = open("/dev/null", O_WRONLY);

	if (out < 0)
		exit(2);
	log_set_fd(out);
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
	fd = fileno(tmp);
	log_set_fd(fd);
	log_set_level(LOG_LEVEL_DEBUG);
	handpicked();
	for (long i = 0; i < n; i++)
		random_case();
	printf("log_equiv: %ld cases, identical (%ld lines, %ld of them with fields; %ld calls "
	    "that write nothing)\n", cases, lines, with_fields, silent);
	log_set_level(LOG_LEVEL_INFO);
	timing();
	fclose(tmp);
	return 0;
}
