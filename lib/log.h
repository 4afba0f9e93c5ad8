/* log.h -- structured logging, one JSON object per line on stderr */
#ifndef MILO_LOG_H
#define MILO_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Sets the threshold from "debug", "info", "warn" or "error"; -EINVAL otherwise. */
int log_set_level_name(const char *name);
/* The same as a lib/flags.h FLAG_FUNC parser: out (const char **) keeps the name. */
int log_level_flag(const char *value, void *out, char *why, size_t whylen);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_enabled(enum log_level level);

/* Redirects output (tests); fd -1 restores stderr. Flushes first. */
void log_set_fd(int fd);

/*
 * Buffers debug and info lines and writes them together, at most ms
 * milliseconds after the first of them (and whenever 64 KiB are waiting):
 * one write(2) for many lines instead of one each, klog's
 * --log-flush-frequency. Warn and error lines flush the buffer and go out
 * at once; lines stay whole and in order. 0 (the default) writes every
 * line as it comes. The first nonzero call starts a flusher thread and
 * registers log_flush() with atexit(); a process that forks after it
 * should log_flush() first. Returns 0 or a negative errno (then unbuffered).
 */
int log_set_flush_interval(unsigned int ms);

/* Writes whatever is buffered now. */
void log_flush(void);

/*
 * One field of a line: a key and a typed value, built with the LOG_*
 * macros below and passed to log_fields() or the log_info() family:
 *
 *	log_info("cache: listed", LOG_STR("resource", plural), LOG_INT("count", n));
 *	log_warn("stopped");
 *
 * Nothing is copied or freed: keys and values are borrowed for the call.
 */
struct json_t;

enum log_field_type {
	LOG_FIELD_NONE,		/* the macros' end marker; not written */
	LOG_FIELD_STR,
	LOG_FIELD_INT,
	LOG_FIELD_FLOAT,
	LOG_FIELD_BOOL,
	LOG_FIELD_JSON,
};

struct log_field {
	const char *key;
	enum log_field_type type;
	union {
		const char *s;		/* NULL: written as null */
		long long i;
		double d;
		bool b;
		const struct json_t *j;	/* dumped compactly; NULL: written as null */
	} v;
};

#define LOG_STR(k, val) { .key = (k), .type = LOG_FIELD_STR, .v.s = (val) }
#define LOG_INT(k, val) { .key = (k), .type = LOG_FIELD_INT, .v.i = (val) }
#define LOG_FLOAT(k, val) { .key = (k), .type = LOG_FIELD_FLOAT, .v.d = (val) }
#define LOG_BOOL(k, val) { .key = (k), .type = LOG_FIELD_BOOL, .v.b = (val) }
#define LOG_JSON(k, val) { .key = (k), .type = LOG_FIELD_JSON, .v.j = (val) }

/*
 * Writes {"time":…,"level":…,"msg":msg, …fields} as one line with one
 * write(2) (or into the buffer, see log_set_flush_interval()), so lines
 * from several threads never interleave. The line is byte for byte what
 * json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) writes for the same object
 * (test/log_equiv.c checks it), and so are the edge cases jansson decides:
 * a field named time, level or msg is left out; a repeated key keeps its
 * first place and its last value; a field jansson would refuse (a NULL
 * key, a key or string that is not UTF-8, a NaN or infinite double, a
 * LOG_JSON value json_dumps() fails on) leaves the line with no fields at
 * all; a msg that is not UTF-8, no line. msg NULL is "".
 */
void log_fields(enum log_level level, const char *msg, const struct log_field *f, size_t n);

/*
 * log_msg(level, msg, fields...) with zero or more LOG_* fields; the
 * fields go into a compound literal after msg, with an end marker so that
 * "no fields" needs no empty macro argument (C11 has no __VA_OPT__).
 */
#define LOG_MSG_(m, ...) (m)
#define LOG_REST_(m, ...) __VA_ARGS__
#define LOG_ARRAY_(...)							\
	((const struct log_field[]){ LOG_REST_(__VA_ARGS__, { .type = LOG_FIELD_NONE }) })
#define LOG_COUNT_(...) (sizeof(LOG_ARRAY_(__VA_ARGS__)) / sizeof(struct log_field) - 1)

#define log_msg(level, ...)						\
	log_fields((level), LOG_MSG_(__VA_ARGS__, 0), LOG_ARRAY_(__VA_ARGS__),	\
	    LOG_COUNT_(__VA_ARGS__))
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

/*
 * Repeated failures at one call site: at most one line per interval, the
 * next one saying how many were left out in between ("suppressed"), so an
 * outage writes a bounded number of lines:
 *
 *	log_limited(LOG_LEVEL_WARN, "cannot read", LOG_STR("path", p), LOG_STR("error", e));
 */
#define LOG_LIMIT_INTERVAL_MS 10000

struct log_limit {
	pthread_mutex_t lock;
	unsigned int interval_ms;	/* 0: LOG_LIMIT_INTERVAL_MS */
	unsigned int burst;		/* lines per interval; 0: one */
	uint64_t window_ms;		/* monotonic: when the current interval began */
	unsigned int written;		/* lines written in it */
	unsigned long suppressed;	/* counted since the last line written */
};

#define LOG_LIMIT_INIT_BURST(ms, n) { PTHREAD_MUTEX_INITIALIZER, (ms), (n), 0, 0, 0 }
#define LOG_LIMIT_INIT_MS(ms) LOG_LIMIT_INIT_BURST(ms, 1)
#define LOG_LIMIT_INIT LOG_LIMIT_INIT_MS(0)

/*
 * True when the caller should write its line now (one of the first burst
 * lines of the interval); *suppressed: lines left out before it.
 */
bool log_limit_pass(struct log_limit *l, unsigned long *suppressed);

/* A limit not statically initialised (burst lines every interval_ms). */
void log_limit_init(struct log_limit *l, unsigned int interval_ms, unsigned int burst);

/*
 * Lines left out in an interval that has ended, now to be reported by the
 * caller since no line came after them (0 while the interval lasts).
 */
unsigned long log_limit_drain(struct log_limit *l);

/* log_msg(level, msg, fields...) with a "suppressed" field appended. */
#define log_limited(level, ...) log_limited_every(0, level, __VA_ARGS__)

/* The same with its own interval. */
#define log_limited_every(ms, level, ...) do {				\
	static struct log_limit lim_ = LOG_LIMIT_INIT_MS(ms);		\
	unsigned long n_;						\
									\
	if (log_limit_pass(&lim_, &n_))					\
		log_msg((level), __VA_ARGS__,				\
		    LOG_INT("suppressed", (long long)n_));		\
} while (0)

#endif
