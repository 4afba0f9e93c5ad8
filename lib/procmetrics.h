/* procmetrics.h -- the standard process_* metrics, read from /proc at scrape time */
#ifndef MILO_PROCMETRICS_H
#define MILO_PROCMETRICS_H

struct metrics;

#define PROCMETRICS_FILE_MAX 4096	/* bytes read of /proc/self/stat or /limits */

/*
 * Registers the process metrics of Prometheus client_golang's process
 * collector (its names, help texts and types) and a collector that
 * refreshes them from proc_dir at every metrics_render():
 *
 *   process_cpu_seconds_total         counter  utime + stime of /proc/self/stat
 *   process_resident_memory_bytes     gauge    rss pages x page size
 *   process_virtual_memory_bytes      gauge    vsize
 *   process_virtual_memory_max_bytes  gauge    "Max address space" soft limit
 *   process_open_fds                  gauge    entries of /proc/self/fd
 *   process_max_fds                   gauge    "Max open files" soft limit
 *   process_start_time_seconds        gauge    btime of /proc/stat + starttime
 *
 * An unlimited limit is 2^64 - 1, as procfs reports it. A figure that
 * cannot be read keeps its last value (client_golang leaves it out).
 * proc_dir: NULL for "/proc" (tests pass another tree). Returns 0,
 * -ENOMEM, -EEXIST when a family could not be registered (its name is
 * taken, or memory ran out), or -ENOSPC (no collector slot left); the
 * families registered before the failure stay.
 */
int procmetrics_register(struct metrics *m, const char *proc_dir);

#endif
