/* log.c -- structured logging, one JSON object per line on stderr */
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#define LOG_LINE_STACK 2048	/* longer lines are written into a malloc'd buffer */
#define LOG_BUFFER_SIZE (64 * 1024)

static _Atomic int threshold = LOG_LEVEL_INFO;
static _Atomic int out_fd = STDERR_FILENO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

int
log_set_level_name(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(name, level_names[i]) == 0) {
			threshold = (int)i;
			return 0;
		}
	}
	return -EINVAL;
}

int
log_level_flag(const char *value, void *out, char *why, size_t whylen)
{
	if (log_set_level_name(value) == 0) {
		*(const char **)out = value;
		return 0;
	}
	snprintf(why, whylen, "%s is not debug, info, warn or error", value);
	return -EINVAL;
}

void
log_set_level(enum log_level level)
{
	threshold = level;
}

enum log_level
log_get_level(void)
{
	return (enum log_level)threshold;
}

int
log_enabled(enum log_level level)
{
	return (int)level >= threshold;
}

static void write_all(int fd, const char *p, size_t len);

/*
 * Buffered output (log_set_flush_interval). Lines are appended under one
 * mutex, so they stay whole and in order; the buffer is written when the
 * next line would not fit, before any warn or error line, by the flusher
 * thread at most interval_ms after the first line into an empty buffer,
 * by log_flush() and at exit.
 */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char *buf;		/* LOG_BUFFER_SIZE bytes once buffering started */
	size_t len;
	struct timespec first;	/* when the oldest waiting line came in */
	unsigned int interval_ms;
	bool flusher;		/* the thread runs */
} lb = { .mu = PTHREAD_MUTEX_INITIALIZER };

static _Atomic bool buffered;

static void
flush_locked(void)
{
	if (lb.len) {
		write_all(out_fd, lb.buf, lb.len);
		lb.len = 0;
	}
}

void
log_flush(void)
{
	pthread_mutex_lock(&lb.mu);
	flush_locked();
	pthread_mutex_unlock(&lb.mu);
}

static void *
flusher(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lb.mu);
	for (;;) {
		struct timespec at;

		struct timespec now;

		while (!lb.len)
			pthread_cond_wait(&lb.cv, &lb.mu);
		at = lb.first;
		at.tv_sec += lb.interval_ms / 1000;
		at.tv_nsec += (long)(lb.interval_ms % 1000) * 1000000L;
		if (at.tv_nsec >= 1000000000L) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000L;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > at.tv_sec ||
		    (now.tv_sec == at.tv_sec && now.tv_nsec >= at.tv_nsec))
			flush_locked();
		else	/* woken early (the buffer filled and restarted): wait on */
			clock_cond_wait(&lb.cv, &lb.mu, (unsigned long)((at.tv_sec - now.tv_sec) *
			    1000 + (at.tv_nsec - now.tv_nsec) / 1000000) + 1);
	}
	return NULL;
}

static int
start_flusher(void)
{
	pthread_attr_t ta;
	pthread_t t;
	int rc;

	if (!(lb.buf = malloc(LOG_BUFFER_SIZE)))
		return -ENOMEM;
	clock_cond_init(&lb.cv);
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &ta, flusher, NULL);
	pthread_attr_destroy(&ta);
	if (rc) {
		free(lb.buf);
		lb.buf = NULL;
		return -rc;
	}
	lb.flusher = true;
	atexit(log_flush);
	return 0;
}

int
log_set_flush_interval(unsigned int ms)
{
	int rc = 0;

	pthread_mutex_lock(&lb.mu);
	flush_locked();
	if (ms && !lb.flusher)
		rc = start_flusher();
	if (rc == 0)
		lb.interval_ms = ms;
	buffered = rc == 0 && ms > 0;
	pthread_mutex_unlock(&lb.mu);
	return rc;
}

/* One whole line out, now or through the buffer. */
static void
emit(enum log_level level, const char *p, size_t n)
{
	if (!buffered) {
		write_all(out_fd, p, n);
		return;
	}
	pthread_mutex_lock(&lb.mu);
	if (level >= LOG_LEVEL_WARN || n > LOG_BUFFER_SIZE - lb.len)
		flush_locked();
	if (level >= LOG_LEVEL_WARN || n > LOG_BUFFER_SIZE) {
		write_all(out_fd, p, n);
	} else {
		if (!lb.len) {
			clock_gettime(CLOCK_MONOTONIC, &lb.first);
			pthread_cond_signal(&lb.cv);
		}
		memcpy(lb.buf + lb.len, p, n);
		lb.len += n;
	}
	pthread_mutex_unlock(&lb.mu);
}

void
log_set_fd(int fd)
{
	log_flush();
	out_fd = fd < 0 ? STDERR_FILENO : fd;
}

/*
 * RFC 3339 UTC with milliseconds, as zap and klog's JSON format write it.
 * The part up to the second is formatted once a second per thread.
 */
static void
format_time(char *out, size_t len)
{
	static _Thread_local time_t cached_sec;
	static _Thread_local char cached[32];
	static _Thread_local size_t cached_len;	/* 0: nothing cached */
	struct timespec ts;
	struct tm tm;
	int ms, n;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (!cached_len || ts.tv_sec != cached_sec) {
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		    tm.tm_sec);
		if (n < 0 || (size_t)n >= sizeof(cached)) {
			cached_len = 0;
			out[0] = '\0';
			return;
		}
		cached_len = (size_t)n;
		cached_sec = ts.tv_sec;
	}
	if (cached_len + 6 > len) {
		out[0] = '\0';
		return;
	}
	ms = (int)(ts.tv_nsec / 1000000) % 1000;
	memcpy(out, cached, cached_len);
	out[cached_len] = '.';
	out[cached_len + 1] = (char)('0' + ms / 100);
	out[cached_len + 2] = (char)('0' + ms / 10 % 10);
	out[cached_len + 3] = (char)('0' + ms % 10);
	out[cached_len + 4] = 'Z';
	out[cached_len + 5] = '\0';
}

static void
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/*
 * The line is written straight into a buffer, the way
 * json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) writes the object, byte for
 * byte (test/log_equiv.c checks this against jansson). put() counts what
 * does not fit, so a line longer than the stack buffer is written again
 * into one of the size it needs, and a buffer of no size only checks.
 */
struct line_buf {
	char *p;
	size_t len;	/* may pass cap: the length the line needs */
	size_t cap;
};

static void
put(struct line_buf *b, const char *s, size_t n)
{
	if (b->len <= b->cap && n <= b->cap - b->len && n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* The length of the UTF-8 sequence at s (RFC 3629, as jansson checks it), or 0. */
static size_t
utf8_seq(const unsigned char *s)
{
	unsigned char c = s[0];
	uint32_t cp;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/*
 * A JSON string as jansson dumps it (\uXXXX for other control characters,
 * '/' as is); false when s is not UTF-8.
 */
static bool
put_string(struct line_buf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)str, *run = s;

	put(b, "\"", 1);
	while (*s) {
		unsigned char c = *s;
		const char *esc;
		char u[8];
		size_t n;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			s++;
			continue;
		}
		if (c >= 0x80) {
			if (!(n = utf8_seq(s)))
				return false;
			s += n;
			continue;
		}
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			snprintf(u, sizeof(u), "\\u%04X", (unsigned int)c);
			esc = u;
			break;
		}
		put(b, (const char *)run, (size_t)(s - run));
		put(b, esc, strlen(esc));
		run = ++s;
	}
	put(b, (const char *)run, (size_t)(s - run));
	put(b, "\"", 1);
	return true;
}

/*
 * jansson's jsonp_dtostr() at precision 17 (the C locale: we never set
 * another); false for NaN and infinities, which json_real() refuses.
 */
static bool
put_real(struct line_buf *b, double v)
{
	char t[40], *e;
	int n;

	if (!isfinite(v))
		return false;
	n = snprintf(t, sizeof(t), "%.17g", v);	/* at most 24: -2.2250738585072014e-308 */
	if (!strchr(t, '.') && !strchr(t, 'e')) {
		memcpy(t + n, ".0", 3);
		n += 2;
	}
	/* No '+' and no leading zeros in the exponent: 1e+21 -> 1e21, 1e-07 -> 1e-7. */
	if ((e = strchr(t, 'e')) != NULL) {
		char *start = e + 1, *end = start + 1;

		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, (size_t)(t + n - end) + 1);
			n -= (int)(end - start);
		}
	}
	put(b, t, (size_t)n);
	return true;
}

/* A borrowed json_t as json_dumps() nests it; false when jansson cannot dump it. */
static bool
put_json(struct line_buf *b, const json_t *j)
{
	size_t room = b->len <= b->cap ? b->cap - b->len : 0;
	/* json_dumpb() writes at most room bytes and returns what it needs, 0 on error. */
	size_t n = json_dumpb(j, room ? b->p + b->len : NULL, room,
	    JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);

	b->len += n;
	return n > 0;
}

/* False for what json_pack() refused (then the line had no fields) or json_dumps() fails on. */
static bool
put_value(struct line_buf *b, const struct log_field *f)
{
	char num[24];

	switch (f->type) {
	case LOG_FIELD_STR:
		if (f->v.s)
			return put_string(b, f->v.s);
		put(b, "null", 4);
		return true;
	case LOG_FIELD_INT:
		put(b, num, (size_t)snprintf(num, sizeof(num), "%lld", f->v.i));
		return true;
	case LOG_FIELD_FLOAT:
		return put_real(b, f->v.d);
	case LOG_FIELD_BOOL:
		put(b, f->v.b ? "true" : "false", f->v.b ? 4 : 5);
		return true;
	case LOG_FIELD_JSON:
		if (f->v.j)
			return put_json(b, f->v.j);
		put(b, "null", 4);
		return true;
	default:
		return false;
	}
}

static bool
same_key(const char *a, const char *b)
{
	return a && a[0] == b[0] && strcmp(a, b) == 0;
}

/* Keys the line begins with: a field of that name is left out (jansson's merge did so). */
static bool
reserved(const char *key)
{
	return same_key(key, "time") || same_key(key, "level") || same_key(key, "msg");
}

/*
 * The fields after msg, as json_object_set() on one object leaves them: a
 * repeated key in its first place with its last value. A field left out
 * (reserved, repeated) is still checked: one bad field and json_pack()
 * failed, so false leaves the line without fields.
 */
static bool
put_fields(struct line_buf *b, const struct log_field *f, size_t n)
{
	struct line_buf check = { NULL, 0, 0 };

	for (size_t i = 0; i < n; i++) {
		const struct log_field *last = &f[i];
		bool skip;

		if (!f[i].key)
			return false;
		skip = reserved(f[i].key);
		for (size_t j = 0; j < i && !skip; j++)
			skip = same_key(f[j].key, f[i].key);
		if (skip) {
			if (!put_string(&check, f[i].key) || !put_value(&check, &f[i]))
				return false;
			continue;
		}
		for (size_t j = i + 1; j < n; j++)
			if (same_key(f[j].key, f[i].key))
				last = &f[j];
		if (last != &f[i] && !put_value(&check, &f[i]))
			return false;
		put(b, ",", 1);
		if (!put_string(b, f[i].key))
			return false;
		put(b, ":", 1);
		if (!put_value(b, last))
			return false;
	}
	return true;
}

/* The whole line; false when msg is not UTF-8 (jansson wrote nothing then). */
static bool
put_line(struct line_buf *b, const char *when, enum log_level level, const char *msg,
    const struct log_field *f, size_t n)
{
	size_t mark;

	put(b, "{\"time\":\"", 9);
	put(b, when, strlen(when));
	put(b, "\",\"level\":\"", 11);
	put(b, level_names[level], strlen(level_names[level]));
	put(b, "\",\"msg\":", 8);
	if (!put_string(b, msg))
		return false;
	mark = b->len;
	if (!put_fields(b, f, n))
		b->len = mark;
	put(b, "}\n", 2);
	return true;
}

void
log_fields(enum log_level level, const char *msg, const struct log_field *f, size_t n)
{
	char when[40], text[LOG_LINE_STACK];
	struct line_buf b = { text, 0, sizeof(text) };

	if (!log_enabled(level))
		return;
	format_time(when, sizeof(when));
	if (!msg)
		msg = "";
	if (!put_line(&b, when, level, msg, f, n))
		return;
	if (b.len <= b.cap) {
		emit(level, text, b.len);
		return;
	}
	b.cap = b.len;
	b.len = 0;
	if (!(b.p = malloc(b.cap)))
		return;
	put_line(&b, when, level, msg, f, n);
	if (b.len <= b.cap)	/* a LOG_JSON value could have grown meanwhile */
		emit(level, b.p, b.len);
	free(b.p);
}

void
log_limit_init(struct log_limit *l, unsigned int interval_ms, unsigned int burst)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	l->interval_ms = interval_ms;
	l->burst = burst;
}

static uint64_t
limit_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool
limit_window_over(const struct log_limit *l, uint64_t now)
{
	return !l->window_ms || now - l->window_ms >= (l->interval_ms ? l->interval_ms :
	    LOG_LIMIT_INTERVAL_MS);
}

unsigned long
log_limit_drain(struct log_limit *l)
{
	uint64_t now = limit_now_ms();
	unsigned long n = 0;

	pthread_mutex_lock(&l->lock);
	if (l->suppressed && limit_window_over(l, now)) {
		n = l->suppressed;
		l->suppressed = 0;
	}
	pthread_mutex_unlock(&l->lock);
	return n;
}

bool
log_limit_pass(struct log_limit *l, unsigned long *suppressed)
{
	uint64_t now = limit_now_ms();
	bool pass;

	pthread_mutex_lock(&l->lock);
	if (limit_window_over(l, now)) {
		l->window_ms = now;
		l->written = 0;
	}
	pass = l->written < (l->burst ? l->burst : 1);
	if (pass) {
		l->written++;
		*suppressed = l->suppressed;
		l->suppressed = 0;
	} else {
		l->suppressed++;
	}
	pthread_mutex_unlock(&l->lock);
	return pass;
}
