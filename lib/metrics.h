/* metrics.h -- thread-safe counters, gauges and histograms, Prometheus text format */
#ifndef MILO_METRICS_H
#define MILO_METRICS_H

#include <stddef.h>

#include "buf.h"

/* What GET /metrics answers with (text exposition format 0.0.4). */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#define METRICS_MAX_LABELS 8	/* label names per family */
#define METRICS_MAX_BUCKETS 32	/* finite histogram bounds per family */
#define METRICS_MAX_NAME 128	/* metric and label name length */
#define METRICS_MAX_VALUE 1024	/* label value length */

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics;		/* a registry: families in registration order */
struct metric;		/* a family: name, help, type, label names */
struct metric_series;	/* one family's values for one set of label values */

/* A registry; NULL on ENOMEM. metrics_free(NULL) is a no-op. */
struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/*
 * Register a family. labels is a NULL-terminated list of label names, or
 * NULL for none; names and help are copied. The family belongs to the
 * registry. NULL on ENOMEM, on an invalid metric or label name, when the
 * name is taken, or (histograms) when bounds are not finite and strictly
 * increasing; the registry is then unchanged.
 */
struct metric *metrics_counter(struct metrics *m, const char *name,
    const char *help, const char *const *labels);
struct metric *metrics_gauge(struct metrics *m, const char *name,
    const char *help, const char *const *labels);
struct metric *metrics_histogram(struct metrics *m, const char *name,
    const char *help, const char *const *labels, const double *bounds,
    size_t n_bounds);

/* Bucket bounds from 100 microseconds to 10 seconds, for request latency. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_buckets_len;

/*
 * The series of a family for the given label values, one per label name
 * and in the same order (NULL when the family has no labels). Created with
 * value zero on first use, so it shows up in the output from then on. The
 * pointer stays valid until metrics_free(). NULL on ENOMEM, when f is NULL,
 * or when a value is NULL or longer than METRICS_MAX_VALUE.
 */
struct metric_series *metric_get(struct metric *f, const char *const *values);

/*
 * Updates. They are lock-free and accept a NULL series (doing nothing), so
 * a caller whose registration failed for lack of memory keeps working.
 * Counters only go up: a negative or NaN metric_add() is ignored.
 */
void metric_inc(struct metric_series *s);
void metric_dec(struct metric_series *s);	/* gauges */
void metric_add(struct metric_series *s, double v);
void metric_set(struct metric_series *s, double v);	/* gauges */
void metric_observe(struct metric_series *s, double v);	/* histograms */

/* The current value of a counter or gauge (tests), or the count of a histogram. */
double metric_value(const struct metric_series *s);

/*
 * A collector runs at the start of every metrics_render(), before any
 * family is written, to set values that are read at scrape time (process
 * figures, cache sizes). It may call metric_get() and the update
 * functions, not register families. free_fn (optional) is called with arg
 * by metrics_free(). Returns 0, or -ENOSPC past METRICS_MAX_COLLECTORS
 * (free_fn is then not called and the caller still owns arg).
 */
#define METRICS_MAX_COLLECTORS 8
typedef void (*metrics_collect_fn)(void *arg);
int metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
    void (*free_fn)(void *arg), void *arg);

/*
 * Appends the whole registry to out in the text exposition format: HELP
 * and TYPE lines, then one line per series (histograms: cumulative
 * _bucket lines up to le="+Inf", then _sum and _count). Returns 0, or the
 * buf error (-ENOMEM, -E2BIG) after which out has been freed.
 */
int metrics_render(struct metrics *m, struct buf *out);

#endif
