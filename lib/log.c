/* log.c -- structured logging, one JSON object per line on stderr */
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int threshold = LOG_INFO;
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

void
log_set_fd(int fd)
{
	out_fd = fd < 0 ? STDERR_FILENO : fd;
}

/* RFC 3339 UTC with milliseconds, as zap and klog's JSON format write it. */
static void
format_time(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000) % 1000) < 0)
		out[0] = '\0';
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

void
log_msg(enum log_level level, const char *msg, const char *fields, ...)
{
	char when[40];
	json_t *line, *extra = NULL;
	char *text;
	const char *key;
	json_t *value;

	if (!log_enabled(level))
		return;
	format_time(when, sizeof(when));
	line = json_pack("{s:s, s:s, s:s}", "time", when,
	    "level", level_names[level], "msg", msg ? msg : "");
	if (!line)
		return;
	if (fields) {
		va_list ap;
		json_error_t err;

		va_start(ap, fields);
		extra = json_vpack_ex(&err, 0, fields, ap);
		va_end(ap);
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
		write_all(out_fd, text, n + 1);
	}
	free(text);
}
