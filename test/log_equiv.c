/*
 * log_equiv.c -- lib/log.c writes a line without jansson for the common
 * formats; this checks that every line is byte for byte what the jansson
 * path (json_pack + json_dumps, the reference) writes, and times both.
 *
 *   build/default/log_equiv [-n 200000]      (make bench-log-equiv)
 *
 * Every case is logged twice, once per path (lib/log.c's
 * log_set_reference_path), and the two lines compared with the time masked.
 * Cases: hand-picked edge cases (escapes, control characters, non-ASCII and
 * invalid UTF-8, NULL strings with s, s? and s*, reserved and repeated keys,
 * special doubles, integer limits, formats the fast path leaves to jansson,
 * a line over the fast path's buffer), then -n random ones built from the
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


static int fd;
static off_t pos;
static long cases, lines, silent;

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
	/* {"time":"2026-11-25T17:05:23.123Z", */
	if (n > 33 && strncmp(s, "{\"time\":\"", 9) == 0)
		memset(s + 9, 'T', 24);
	return s;
}

#define SAME(...) do {							\
	char *a_, *b_;							\
	log_set_reference_path(0);						\
	__VA_ARGS__;							\
	a_ = take();							\
	log_set_reference_path(1);						\
	__VA_ARGS__;							\
	b_ = take();							\
	cases++;							\
	if (*b_)							\
		lines++;						\
	else								\
		silent++;						\
	if (strcmp(a_, b_) != 0) {					\
		fprintf(stderr, "log_equiv: line %d differs:\n  fast:    %s\n"	\
		    "  jansson: %s\n", __LINE__, a_, b_);		\
		exit(1);						\
	}								\
	free(a_);							\
	free(b_);							\
} while (0)

static const char *const strings[] = {
	"", "plain", "a\"b", "back\\slash", "new\nline", "tab\tcr\r", "\b\f", "\x01\x1f\x7f",
	"slash/es", "caf\xc3\xa9", "\xe2\x80\xa8 line sep", "\xf0\x9f\x98\x80 emoji",
	"\xff bad", "\xc0\xaf overlong", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80 too big",
	"\xe2\x82 short", "trailing \xc3", "{\"level\":\"error\"}", "\\u0041",
	"/validate-notification-miloapis-com-v1alpha1-contact",
	"705ab4f5-6393-11e8-b7cc-42010a800002",
};
static const char *const keys[] = {
	"uid", "kind", "namespace", "name", "time", "level", "msg", "a\"b", "k\n",
	"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", "bad\xff", "", "x", "ms",
};
#define NS (sizeof(strings) / sizeof(strings[0]))
#define NK (sizeof(keys) / sizeof(keys[0]))

static const double reals[] = {
	0, -0.0, 0.042, 0.1, 1, 100, 1e16, 1e17, 1e21, 1e-7, 123456789.125, 5e-324,
	2.2250738585072014e-308, 1.7976931348623157e308, -3.5, 1e100, 1e-100, 0.5e-5,
};

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

	if (r % 4)
		return strings[r % NS];
	/* Random bytes, mostly printable, some anything. */
	size_t n = (size_t)(rnd() % (len - 1));
	for (size_t i = 0; i < n; i++) {
		uint64_t c = rnd();
		buf[i] = (char)(c % 3 ? 0x20 + c % 95 : 1 + c % 255);
	}
	buf[n] = '\0';
	return buf;
}

static const char *
rkey(char *buf, size_t len)
{
	return rnd() % 5 ? keys[rnd() % NK] : rstr(buf, len);
}

static double
rreal(void)
{
	uint64_t r = rnd();
	double d;

	if (r % 3 == 0) {
		memcpy(&d, &r, sizeof(d));	/* any bit pattern: NaN and infinity too */
		return d;
	}
	if (r % 3 == 1)
		return reals[rnd() % (sizeof(reals) / sizeof(reals[0]))];
	return (double)(int64_t)rnd() / (double)(1 + rnd() % 1000000);
}

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	long n = 200000;
	char big[5000];
	FILE *tmp = tmpfile();

	if (argc == 3 && strcmp(argv[1], "-n") == 0)
		n = atol(argv[2]);
	if (!tmp)
		return 2;
	fd = fileno(tmp);
	log_set_fd(fd);
	log_set_level(LOG_LEVEL_DEBUG);

	/* ---- hand-picked ---- */
	SAME(log_info("plain", NULL));
	SAME(log_warn(NULL, NULL));
	SAME(log_error("bad \xff msg", NULL));
	SAME(log_debug("a\"b\nc", "{s:s, s:s}", "msg", "forged", "k", "v\n{\"level\":\"error\"}"));
	SAME(log_info("bad format", "{s:i", "x", 1));
	SAME(log_info("garbage", "{s:i} x", "x", 1));
	SAME(log_info("spaces", " { s : i , s : s } ", "a", 1, "b", "c"));
	SAME(log_info("empty", "{}"));
	SAME(log_info("not an object", "[s]", "x"));
	SAME(log_info("ints", "{s:i, s:i, s:I, s:I}", "min", INT_MIN, "max", INT_MAX,
	    "llmin", (json_int_t)LLONG_MIN, "llmax", (json_int_t)LLONG_MAX));
	SAME(log_info("bools", "{s:b, s:b, s:b}", "t", 1, "f", 0, "two", 2));
	SAME(log_info("null s", "{s:s}", "a", NULL));
	SAME(log_info("null s?", "{s:s?, s:i}", "a", NULL, "b", 1));
	SAME(log_info("null s*", "{s:s*, s:i}", "a", NULL, "b", 1));
	SAME(log_info("set s*", "{s:s*}", "a", "here"));
	SAME(log_info("null key", "{s:s}", NULL, "v"));
	SAME(log_info("repeated", "{s:s, s:i, s:s}", "a", "1", "b", 2, "a", "3"));
	SAME(log_info("reserved", "{s:s, s:s, s:s, s:i}", "time", "x", "level", "y", "msg",
	    "z", "n", 4));
	SAME(log_info("reserved bad", "{s:s, s:i}", "msg", "\xff", "n", 4));
	SAME(log_info("s#", "{s:s#}", "a", "abcdef", 3));
	SAME(log_info("n", "{s:n, s:i}", "a", "b", 1));
	SAME(log_info("o", "{s:o}", "a", json_string("owned")));
	SAME(log_info("O", "{s:O}", "a", json_null()));
	SAME(log_info("nan", "{s:f}", "x", NAN));
	SAME(log_info("inf", "{s:f}", "x", -INFINITY));
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++)
		SAME(log_info("real", "{s:f}", "x", reals[i]));
	for (size_t i = 0; i < NS; i++)
		SAME(log_info(strings[i], "{s:s, s:s?}", keys[i % NK], strings[i],
		    strings[(i + 3) % NS], strings[(i + 5) % NS]));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	SAME(log_info("over the buffer", "{s:s}", "big", big));
	SAME(log_info("just under", "{s:s}", "big", big + sizeof(big) - 1900));
	/* webhook/server.c's log_decision(), the hot one. */
	SAME(log_info("admission", "{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:b, s:b, "
	    "s:b, s:f}", "webhook", "/validate-notification-miloapis-com-v1alpha1-contact",
	    "uid", "705ab4f5-6393-11e8-b7cc-42010a800002", "kind", "Contact",
	    "namespace", "org-xyz", "name", NULL, "operation", "CREATE", "allowed", 1,
	    "dry_run", 0, "patched", 0, "ms", 0.042117));

	/* ---- random ---- */
	for (long i = 0; i < n; i++) {
		char b[8][24];
		const char *s[8], *k[6];
		double d = rreal();
		int i1 = (int)rnd(), i2 = (int)(rnd() % 3), i3 = (int)rnd();
		json_int_t ll = (json_int_t)rnd();
		uint64_t shape = rnd() % 4;

		/* Arguments drawn once: SAME() evaluates its call twice. */
		for (int j = 0; j < 8; j++)
			s[j] = rstr(b[j], sizeof(b[j]));
		for (int j = 0; j < 6; j++)
			k[j] = j < 3 ? rkey(b[j], sizeof(b[j])) : keys[rnd() % NK];
		for (int j = 1; j < 6; j++)
			if (rnd() % 4 == 0)
				s[j] = NULL;
		if (shape == 0)
			SAME(log_info(s[0] ? s[0] : "m", "{s:s, s:s?, s:i, s:I, s:b, s:f}",
			    k[0], s[1], k[1], s[2], k[2], i1, k[3], ll, k[4], i2, k[5], d));
		else if (shape == 1)
			SAME(log_warn(s[0], "{s:s*, s:f, s:s}", k[0], s[1], k[3], d, k[1],
			    s[6]));
		else if (shape == 2)
			SAME(log_error("admission", "{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:b, "
			    "s:b, s:b, s:f}", "webhook", s[7], "uid", s[1], "kind", s[2],
			    "namespace", s[3], "name", s[4], "operation", s[5], "allowed", i2,
			    "dry_run", i1 & 1, "patched", i3 & 1, "ms", d));
		else
			SAME(log_info("i", "{s:i, s:s, s:i}", k[0], i1, k[1], s[6], k[2], i3));
	}
	printf("log_equiv: %ld cases, identical (%ld lines, %ld calls that write nothing)\n",
	    cases, lines, silent);

	/* ---- time per line, log_decision()'s format, both paths ---- */
	{
		double t[2];
		const long iters = 200000;

		log_set_fd(open("/dev/null", O_WRONLY));
		for (int ref = 0; ref < 2; ref++) {
			double t0;

			log_set_reference_path(ref);
			t0 = now_s();
			for (long i = 0; i < iters; i++)
				log_info("admission", "{s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:b, s:b, "
				    "s:b, s:f}", "webhook",
				    "/validate-notification-miloapis-com-v1alpha1-contact",
				    "uid", "705ab4f5-6393-11e8-b7cc-42010a800002", "kind", "Contact",
				    "namespace", "org-xyz", "name", "john-doe", "operation", "CREATE",
				    "allowed", 1, "dry_run", 0, "patched", 0, "ms", 0.042117);
			t[ref] = (now_s() - t0) * 1e6 / (double)iters;
		}
		printf("log_equiv: the admission line takes %.2f us (fast path) vs %.2f us "
		    "(jansson), %.1fx\n", t[0], t[1], t[1] / t[0]);
	}
	return 0;
}
