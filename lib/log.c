/* log.c -- structured logging, one JSON object per line on stderr */
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#define LOG_LINE_FAST_MAX 2048	/* longer lines take the jansson path */
#define LOG_FIELDS_MAX 32
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
 * The line without building a jansson object: the format is read the way
 * json_pack() reads it and the line written the way json_dumps(JSON_COMPACT)
 * writes it, byte for byte (test/log_equiv.c checks this against the
 * jansson path below). Only the common formats are done here: keys "s";
 * values s, s?, s*, i, I, b, f. Anything else (another format character,
 * a NULL or invalid UTF-8 string, a repeated key, a non-finite number, a
 * line over LOG_LINE_FAST_MAX) returns false, and the jansson path, which
 * defines the behaviour, writes the line.
 */
struct line_buf {
	char *p;
	size_t len, cap;
	bool full;
};

static void
put(struct line_buf *b, const char *s, size_t n)
{
	if (b->full || n > b->cap - b->len) {
		b->full = true;
		return;
	}
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

/* A JSON string as jansson dumps it; false when s is not valid UTF-8. */
static bool
put_string(struct line_buf *b, const char *str, bool emit)
{
	const unsigned char *s = (const unsigned char *)str, *run = s;

	if (emit)
		put(b, "\"", 1);
	while (*s) {
		unsigned char c = *s;
		const char *esc = NULL;
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
		if (emit)
			put(b, (const char *)run, (size_t)(s - run));
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
		if (emit)
			put(b, esc, strlen(esc));
		run = ++s;
	}
	if (emit) {
		put(b, (const char *)run, (size_t)(s - run));
		put(b, "\"", 1);
	}
	return true;
}

/* jansson's jsonp_dtostr() at precision 17 in the C locale; false when not that. */
static bool
put_real(struct line_buf *b, double v)
{
	char t[40], *e;
	int n;

	if (!isfinite(v))
		return false;
	n = snprintf(t, sizeof(t), "%.17g", v);
	if (n < 0 || (size_t)n >= sizeof(t) - 3 || strspn(t, "0123456789.e+-") != (size_t)n)
		return false;
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

/* Skips what json_pack() skips between tokens. */
static const char *
skip(const char *f)
{
	while (*f == ' ' || *f == '\t' || *f == '\n' || *f == ',' || *f == ':')
		f++;
	return f;
}

static bool
fast_line(struct line_buf *b, const char *when, const char *level, const char *msg,
    const char *fields, va_list ap)
{
	const char *keys[LOG_FIELDS_MAX];
	size_t n_keys = 0;
	const char *f;

	put(b, "{\"time\":", 8);
	put_string(b, when, true);
	put(b, ",\"level\":", 9);
	put_string(b, level, true);
	put(b, ",\"msg\":", 7);
	if (!put_string(b, msg, true))
		return false;
	if (fields) {
		f = skip(fields);
		if (*f++ != '{')
			return false;
		for (f = skip(f); *f != '}'; f = skip(f)) {
			const char *key, *str = NULL;
			char kind, mod = 0, num[32];
			int len = 0;
			double d = 0;

			if (*f != 's' || f[1] == '#' || f[1] == '%' || f[1] == '+' ||
			    n_keys == LOG_FIELDS_MAX)
				return false;
			f = skip(f + 1);
			kind = *f;
			if (!kind)
				return false;
			f++;
			if (*f == '?' || *f == '*')
				mod = *f++;
			else if (*f == '#' || *f == '%' || *f == '+')
				return false;
			if (mod && kind != 's')
				return false;
			key = va_arg(ap, const char *);
			switch (kind) {
			case 's':
				str = va_arg(ap, const char *);
				if (!str && !mod)
					return false;
				break;
			case 'i':
				len = snprintf(num, sizeof(num), "%d", va_arg(ap, int));
				break;
			case 'I':
				len = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
				    va_arg(ap, json_int_t));
				break;
			case 'b':
				len = va_arg(ap, int) ? 4 : 5;
				memcpy(num, len == 4 ? "true" : "false", (size_t)len);
				break;
			case 'f':
				d = va_arg(ap, double);
				if (!isfinite(d))
					return false;
				break;
			default:
				return false;
			}
			if (!key)
				return false;
			for (size_t i = 0; i < n_keys; i++)
				if (strcmp(keys[i], key) == 0)
					return false;	/* repeated: jansson keeps the last value */
			keys[n_keys++] = key;
			if (kind == 's' && !str && mod == '*') {
				/* Left out; the key must still be valid UTF-8. */
				if (!put_string(b, key, false))
					return false;
				continue;
			}
			if (strcmp(key, "time") == 0 || strcmp(key, "level") == 0 ||
			    strcmp(key, "msg") == 0) {
				/* Already on the line: checked, not written. */
				if (!put_string(b, key, false) || (str && !put_string(b, str, false)))
					return false;
				continue;
			}
			put(b, ",", 1);
			if (!put_string(b, key, true))
				return false;
			put(b, ":", 1);
			if (kind == 's') {
				if (str && !put_string(b, str, true))
					return false;
				if (!str)
					put(b, "null", 4);
			} else if (kind == 'f') {
				put_real(b, d);
			} else {
				put(b, num, (size_t)len);
			}
		}
		if (*skip(f + 1))
			return false;	/* json_pack(): garbage after the format */
	}
	put(b, "}\n", 2);
	return !b->full;
}

/* The jansson path: the reference behaviour, for every format. */
static void
jansson_line(const char *when, enum log_level level, const char *msg, const char *fields,
    va_list ap)
{
	json_t *line, *extra = NULL;
	char *text;
	const char *key;
	json_t *value;

	line = json_pack("{s:s, s:s, s:s}", "time", when,
	    "level", level_names[level], "msg", msg ? msg : "");
	if (!line)
		return;
	if (fields) {
		json_error_t err;

		extra = json_vpack_ex(&err, 0, fields, ap);
	}
	if (json_is_object(extra)) {
		json_object_foreach(extra, key, value) {
			if (!json_object_get(line, key))
				json_object_set(line, key, value);
		}
	}
	json_decref(extra);
	text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(line);
	if (!text)
		return;
	{
		size_t n = strlen(text);

		text[n] = '\n';	/* json_dumps leaves room: overwrite NUL, write n+1 */
		emit(level, text, n + 1);
	}
	free(text);
}

/* Nonzero: every line takes the jansson path (the reference the fast one must match). */
static _Atomic int reference_path;

void
log_set_reference_path(int on)
{
	reference_path = on != 0;
}

void
log_msg(enum log_level level, const char *msg, const char *fields, ...)
{
	char when[40], text[LOG_LINE_FAST_MAX];
	struct line_buf b = { text, 0, sizeof(text), false };
	va_list ap;
	bool done;

	if (!log_enabled(level))
		return;
	format_time(when, sizeof(when));
	if (!reference_path) {
		va_start(ap, fields);
		done = fast_line(&b, when, level_names[level], msg ? msg : "", fields, ap);
		va_end(ap);
		if (done) {
			emit(level, text, b.len);
			return;
		}
	}
	va_start(ap, fields);
	jansson_line(when, level, msg, fields, ap);
	va_end(ap);
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
