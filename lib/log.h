/* log.h -- structured logging, one JSON object per line on stderr */
#ifndef MILO_LOG_H
#define MILO_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the threshold from "debug", "info", "warn" or "error"; -EINVAL otherwise. */
int log_set_level_name(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_enabled(enum log_level level);

/* Redirects output (tests); fd -1 restores stderr. */
void log_set_fd(int fd);

/*
 * Writes {"time":…,"level":…,"msg":msg, …fields} as one line with one
 * write(2), so lines from several threads never interleave. fields is a
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

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
