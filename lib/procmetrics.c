/* procmetrics.c -- the standard process_* metrics, read from /proc at scrape time */
#include "procmetrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

/*
 * Names, help texts and sources follow client_golang's process collector
 * (prometheus/process_collector.go and process_collector_procfs.go, which
 * reads them through the procfs package), so dashboards made for Go
 * programs work unchanged.
 */
#define UNLIMITED 18446744073709551615.0	/* procfs: "unlimited" is 2^64 - 1 */

struct procmetrics {
	char dir[PATH_MAX];
	long ticks;			/* clock ticks per second (USER_HZ) */
	long page;			/* bytes */
	pthread_mutex_t lock;		/* serialises collections (cpu_last) */
	double cpu_last;		/* seconds already added to cpu */
	struct metric_series *cpu;
	struct metric_series *rss;
	struct metric_series *vsize;
	struct metric_series *vsize_max;
	struct metric_series *open_fds;
	struct metric_series *max_fds;
	struct metric_series *start;
};

/* Reads dir/rel into buf (NUL-terminated, at most len - 1 bytes); -errno. */
static int
read_small(const struct procmetrics *p, const char *rel, char *buf, size_t len)
{
	char path[PATH_MAX + 32];
	size_t got = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", p->dir, rel);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (got < len - 1 && (n = read(fd, buf + got, len - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -EIO;
		}
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return 0;
}

/*
 * /proc/self/stat: the command name (field 2) is in parentheses and may
 * hold spaces and parentheses itself, so fields are counted from the last
 * ')'. Fields 14 and 15 are utime and stime, 22 starttime (all in clock
 * ticks), 23 vsize (bytes), 24 rss (pages); see proc(5).
 */
static int
parse_stat(const char *text, unsigned long long f[25])
{
	const char *s = strrchr(text, ')');
	char *end;

	if (!s)
		return -EINVAL;
	s++;
	while (*s == ' ')
		s++;
	for (int i = 3; i <= 24; i++) {
		if (i == 3) {		/* the state, one letter */
			s = strchr(s, ' ');
			if (!s)
				return -EINVAL;
			continue;
		}
		errno = 0;
		f[i] = strtoull(s, &end, 10);
		if (end == s || errno)
			return -EINVAL;
		s = end;
	}
	return 0;
}

/* The soft limit of one /proc/self/limits row, e.g. "Max open files". */
static int
limit_of(const char *text, const char *row, double *out)
{
	const char *s = strstr(text, row);
	char *end;
	double v = 0;

	if (!s)
		return -ENOENT;
	s += strlen(row);
	while (*s == ' ')
		s++;
	if (strncmp(s, "unlimited", 9) == 0) {
		*out = UNLIMITED;
		return 0;
	}
	errno = 0;
	v = (double)strtoull(s, &end, 10);
	if (end == s || errno)
		return -EINVAL;
	*out = v;
	return 0;
}

/*
 * btime of /proc/stat: the boot time, seconds since the epoch. Read a
 * line at a time: the per-CPU and intr lines before it are long on big
 * machines. A line longer than the buffer arrives in pieces; only a
 * piece that starts a line is looked at.
 */
static int
boot_time(const struct procmetrics *p, double *out)
{
	char path[PATH_MAX + 16], line[256];
	bool at_start = true, found = false;
	FILE *f;

	snprintf(path, sizeof(path), "%s/stat", p->dir);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (!found && fgets(line, sizeof(line), f)) {
		if (at_start && strncmp(line, "btime ", 6) == 0) {
			*out = strtod(line + 6, NULL);
			found = true;
		}
		at_start = strchr(line, '\n') != NULL;
	}
	fclose(f);
	return found ? 0 : -ENOENT;
}

/* Entries of /proc/self/fd; the descriptor reading it counts, as in Go. */
static int
count_fds(const struct procmetrics *p, double *out)
{
	char path[PATH_MAX + 16];
	struct dirent *e;
	long n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/self/fd", p->dir);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	*out = (double)n;
	return 0;
}

static void
collect_stat(struct procmetrics *p)
{
	char buf[PROCMETRICS_FILE_MAX];
	unsigned long long f[25] = { 0 };
	double cpu, btime = 0;

	if (read_small(p, "self/stat", buf, sizeof(buf)) != 0 ||
	    parse_stat(buf, f) != 0)
		return;
	cpu = (double)(f[14] + f[15]) / (double)p->ticks;
	pthread_mutex_lock(&p->lock);
	/* A counter only goes up: add what was spent since the last scrape. */
	if (cpu > p->cpu_last) {
		metric_add(p->cpu, cpu - p->cpu_last);
		p->cpu_last = cpu;
	}
	pthread_mutex_unlock(&p->lock);
	metric_set(p->vsize, (double)f[23]);
	metric_set(p->rss, (double)f[24] * (double)p->page);
	if (boot_time(p, &btime) == 0)
		metric_set(p->start, btime + (double)f[22] / (double)p->ticks);
}

static void
collect(void *arg)
{
	struct procmetrics *p = arg;
	char buf[PROCMETRICS_FILE_MAX];
	double v = 0;

	collect_stat(p);
	if (count_fds(p, &v) == 0)
		metric_set(p->open_fds, v);
	if (read_small(p, "self/limits", buf, sizeof(buf)) != 0)
		return;
	if (limit_of(buf, "Max open files", &v) == 0)
		metric_set(p->max_fds, v);
	if (limit_of(buf, "Max address space", &v) == 0)
		metric_set(p->vsize_max, v);
}

static void
procmetrics_free(void *arg)
{
	struct procmetrics *p = arg;

	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* One family without labels and its only series, or NULL. */
static struct metric_series *
one(struct metrics *m, bool counter, const char *name, const char *help)
{
	struct metric *f = counter ? metrics_counter(m, name, help, NULL) :
	    metrics_gauge(m, name, help, NULL);

	return metric_get(f, NULL);
}

int
procmetrics_register(struct metrics *m, const char *proc_dir)
{
	struct procmetrics *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return -ENOMEM;
	snprintf(p->dir, sizeof(p->dir), "%s", proc_dir ? proc_dir : "/proc");
	p->ticks = sysconf(_SC_CLK_TCK);
	p->page = sysconf(_SC_PAGESIZE);
	if (p->ticks <= 0)
		p->ticks = 100;
	if (p->page <= 0)
		p->page = 4096;
	pthread_mutex_init(&p->lock, NULL);
	p->cpu = one(m, true, "process_cpu_seconds_total",
	    "Total user and system CPU time spent in seconds.");
	p->open_fds = one(m, false, "process_open_fds",
	    "Number of open file descriptors.");
	p->max_fds = one(m, false, "process_max_fds",
	    "Maximum number of open file descriptors.");
	p->vsize = one(m, false, "process_virtual_memory_bytes",
	    "Virtual memory size in bytes.");
	p->vsize_max = one(m, false, "process_virtual_memory_max_bytes",
	    "Maximum amount of virtual memory available in bytes.");
	p->rss = one(m, false, "process_resident_memory_bytes",
	    "Resident memory size in bytes.");
	p->start = one(m, false, "process_start_time_seconds",
	    "Start time of the process since unix epoch in seconds.");
	if (!p->cpu || !p->open_fds || !p->max_fds || !p->vsize ||
	    !p->vsize_max || !p->rss || !p->start) {
		/* registered names stay (the registry cannot drop them) */
		rc = -EEXIST;
		goto fail;
	}
	rc = metrics_add_collector(m, collect, procmetrics_free, p);
	if (rc)
		goto fail;
	return 0;
fail:
	procmetrics_free(p);
	return rc;
}
