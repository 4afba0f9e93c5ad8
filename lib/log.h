/* log.h -- structured logging, one JSON object per line on stderr */
#ifndef MILO_LOG_H
#define MILO_LOG_H

#include <pthread.h>
#include <stdbool.h>
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
 * Writes {"time":…,"level":…,"msg":msg, …fields} as one line with one
 * write(2) (or into the buffer, see below), so lines from several threads
 * never interleave. fields is a
 * jansson json_pack() format for an object ("{s:s, s:i}") followed by its
 * arguments, or NULL for none. A format error is logged as the message
 * alone rather than lost.
 */
void log_msg(enum log_level level, const char *msg, const char *fields, ...);

/*
 * Lines are formatted without jansson for the formats log_msg() uses
 * (strings, numbers, booleans); anything else goes through json_pack and
 * json_dumps. Nonzero forces the jansson path for every line, so tests can
 * check that both write the same bytes (test/log_equiv.c, run by make test).
 */
void log_set_reference_path(int on);

/*
 * Repeated failures at one call site: at most one line per interval, the
 * next one saying how many were left out in between ("suppressed"), so an
 * outage writes a bounded number of lines. fields are written without
 * their braces:
 *
 *	log_limited(LOG_LEVEL_WARN, "cannot read", "s:s, s:s", "path", p, "error", e);
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

#define log_limited(level, msg, fields, ...)				\
	log_limited_every(0, level, msg, fields, __VA_ARGS__)

/* The same with its own interval. */
#define log_limited_every(ms, level, msg, fields, ...) do {			\
	static struct log_limit lim_ = LOG_LIMIT_INIT_MS(ms);			\
	unsigned long n_;							\
										\
	if (log_limit_pass(&lim_, &n_))						\
		log_msg((level), (msg), "{" fields ", s:I}", __VA_ARGS__,	\
		    "suppressed", (long long)n_);				\
} while (0)

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
