/* metrics.c -- thread-safe counters, gauges and histograms, Prometheus text format */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Series hang off their family in an append-only list. Readers walk it
 * without a lock (the next pointers are atomic and published with release
 * stores); writers append under the family lock. Nothing is unlinked
 * before metrics_free(), so a series pointer handed out stays valid.
 *
 * Values are doubles stored as their bit patterns in 64-bit atomics and
 * updated by compare-and-swap, so an update never takes a lock.
 */
struct metric_series {
	_Atomic(struct metric_series *) next;
	struct metric *family;
	char *values[METRICS_MAX_LABELS];
	_Atomic uint64_t value;		/* counter or gauge, double bits */
	_Atomic uint64_t sum;		/* histogram sum, double bits */
	_Atomic uint64_t counts[];	/* histogram: per bucket, not cumulative;
					 * the last one is above every bound */
};

struct metric {
	struct metric *next;
	enum metric_type type;
	char *name;
	char *help;
	char *labels[METRICS_MAX_LABELS];
	size_t n_labels;
	double bounds[METRICS_MAX_BUCKETS];
	size_t n_bounds;
	pthread_mutex_t lock;		/* serialises appends to the series list */
	_Atomic(struct metric_series *) series;
	struct metric_series *last;	/* under lock */
};

struct collector {
	metrics_collect_fn fn;
	void (*free_fn)(void *arg);
	void *arg;
};

struct metrics {
	pthread_mutex_t lock;		/* guards the family and collector lists */
	struct metric *head;
	struct metric *tail;
	struct collector collectors[METRICS_MAX_COLLECTORS];
	size_t n_collectors;
};

const double metrics_latency_buckets[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t metrics_latency_buckets_len =
    sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

static uint64_t
to_bits(double v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	return u;
}

static double
from_bits(uint64_t u)
{
	double v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

static void
atomic_add_double(_Atomic uint64_t *p, double v)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);

	while (!atomic_compare_exchange_weak_explicit(p, &old,
	    to_bits(from_bits(old) + v), memory_order_relaxed,
	    memory_order_relaxed))
		;
}

struct metrics *
metrics_new(void)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	if (pthread_mutex_init(&m->lock, NULL) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

static void
series_free(struct metric_series *s, size_t n_labels)
{
	for (size_t i = 0; i < n_labels; i++)
		free(s->values[i]);
	free(s);
}

static void
family_free(struct metric *f)
{
	struct metric_series *s, *next;

	for (s = atomic_load(&f->series); s; s = next) {
		next = atomic_load(&s->next);
		series_free(s, f->n_labels);
	}
	for (size_t i = 0; i < f->n_labels; i++)
		free(f->labels[i]);
	pthread_mutex_destroy(&f->lock);
	free(f->name);
	free(f->help);
	free(f);
}

void
metrics_free(struct metrics *m)
{
	struct metric *f, *next;

	if (!m)
		return;
	for (f = m->head; f; f = next) {
		next = f->next;
		family_free(f);
	}
	for (size_t i = 0; i < m->n_collectors; i++) {
		if (m->collectors[i].free_fn)
			m->collectors[i].free_fn(m->collectors[i].arg);
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metrics; labels the same without ':'. */
static bool
valid_name(const char *s, bool label)
{
	size_t n = strlen(s);

	if (n == 0 || n > METRICS_MAX_NAME)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    c == '_' || (!label && c == ':') ||
		    (i > 0 && c >= '0' && c <= '9');

		if (!ok)
			return false;
	}
	return !(label && strncmp(s, "__", 2) == 0);
}

static bool
valid_labels(const char *const *labels, enum metric_type type, size_t *n)
{
	*n = 0;
	for (; labels && labels[*n]; (*n)++) {
		if (*n == METRICS_MAX_LABELS || !valid_name(labels[*n], true))
			return false;
		if (type == METRIC_HISTOGRAM && strcmp(labels[*n], "le") == 0)
			return false;
		for (size_t j = 0; j < *n; j++)
			if (strcmp(labels[j], labels[*n]) == 0)
				return false;
	}
	return true;
}

static bool
valid_bounds(const double *bounds, size_t n)
{
	if (n > METRICS_MAX_BUCKETS)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
			return false;
	}
	return true;
}

static struct metric *
family_new(enum metric_type type, const char *name, const char *help,
    const char *const *labels, size_t n_labels)
{
	struct metric *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	if (pthread_mutex_init(&f->lock, NULL) != 0) {
		free(f);
		return NULL;
	}
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	if (!f->name || !f->help)
		goto fail;
	for (; f->n_labels < n_labels; f->n_labels++) {
		f->labels[f->n_labels] = strdup(labels[f->n_labels]);
		if (!f->labels[f->n_labels])
			goto fail;
	}
	return f;
fail:
	family_free(f);
	return NULL;
}

static struct metric *
family_register(struct metrics *m, enum metric_type type, const char *name,
    const char *help, const char *const *labels, const double *bounds,
    size_t n_bounds)
{
	struct metric *f, *g;
	size_t n_labels;

	if (!m || !name || !valid_name(name, false) ||
	    !valid_labels(labels, type, &n_labels) ||
	    !valid_bounds(bounds, n_bounds))
		return NULL;
	f = family_new(type, name, help, labels, n_labels);
	if (!f)
		return NULL;
	if (n_bounds)
		memcpy(f->bounds, bounds, n_bounds * sizeof(bounds[0]));
	f->n_bounds = n_bounds;

	pthread_mutex_lock(&m->lock);
	for (g = m->head; g; g = g->next) {
		if (strcmp(g->name, name) == 0)
			break;
	}
	if (!g) {
		if (m->tail)
			m->tail->next = f;
		else
			m->head = f;
		m->tail = f;
	}
	pthread_mutex_unlock(&m->lock);
	if (g) {
		family_free(f);
		return NULL;
	}
	/* A family without labels has exactly one series: show it at once. */
	if (n_labels == 0)
		(void)metric_get(f, NULL);
	return f;
}

struct metric *
metrics_counter(struct metrics *m, const char *name, const char *help,
    const char *const *labels)
{
	return family_register(m, METRIC_COUNTER, name, help, labels, NULL, 0);
}

struct metric *
metrics_gauge(struct metrics *m, const char *name, const char *help,
    const char *const *labels)
{
	return family_register(m, METRIC_GAUGE, name, help, labels, NULL, 0);
}

struct metric *
metrics_histogram(struct metrics *m, const char *name, const char *help,
    const char *const *labels, const double *bounds, size_t n_bounds)
{
	if (n_bounds && !bounds)
		return NULL;
	return family_register(m, METRIC_HISTOGRAM, name, help, labels, bounds,
	    n_bounds);
}

static bool
series_matches(const struct metric_series *s, const char *const *values,
    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(s->values[i], values[i]) != 0)
			return false;
	}
	return true;
}

static struct metric_series *
series_find(struct metric *f, const char *const *values)
{
	struct metric_series *s;

	for (s = atomic_load_explicit(&f->series, memory_order_acquire); s;
	    s = atomic_load_explicit(&s->next, memory_order_acquire)) {
		if (series_matches(s, values, f->n_labels))
			return s;
	}
	return NULL;
}

static struct metric_series *
series_new(struct metric *f, const char *const *values)
{
	size_t n_counts = f->type == METRIC_HISTOGRAM ? f->n_bounds + 1 : 0;
	struct metric_series *s;

	s = calloc(1, sizeof(*s) + n_counts * sizeof(s->counts[0]));
	if (!s)
		return NULL;
	s->family = f;
	for (size_t i = 0; i < f->n_labels; i++) {
		s->values[i] = strdup(values[i]);
		if (!s->values[i]) {
			series_free(s, i);
			return NULL;
		}
	}
	atomic_init(&s->value, to_bits(0.0));
	atomic_init(&s->sum, to_bits(0.0));
	return s;
}

struct metric_series *
metric_get(struct metric *f, const char *const *values)
{
	struct metric_series *s;

	if (!f)
		return NULL;
	for (size_t i = 0; i < f->n_labels; i++) {
		if (!values || !values[i] ||
		    strnlen(values[i], METRICS_MAX_VALUE + 1) > METRICS_MAX_VALUE)
			return NULL;
	}
	s = series_find(f, values);
	if (s)
		return s;

	pthread_mutex_lock(&f->lock);
	s = series_find(f, values);	/* someone may have won the race */
	if (!s) {
		s = series_new(f, values);
		if (s) {
			if (f->last)
				atomic_store_explicit(&f->last->next, s,
				    memory_order_release);
			else
				atomic_store_explicit(&f->series, s,
				    memory_order_release);
			f->last = s;
		}
	}
	pthread_mutex_unlock(&f->lock);
	return s;
}

void
metric_add(struct metric_series *s, double v)
{
	if (!s || s->family->type == METRIC_HISTOGRAM || isnan(v))
		return;
	if (s->family->type == METRIC_COUNTER && v < 0)
		return;
	atomic_add_double(&s->value, v);
}

void
metric_inc(struct metric_series *s)
{
	metric_add(s, 1.0);
}

void
metric_dec(struct metric_series *s)
{
	if (s && s->family->type == METRIC_GAUGE)
		metric_add(s, -1.0);
}

void
metric_set(struct metric_series *s, double v)
{
	if (!s || s->family->type != METRIC_GAUGE)
		return;
	atomic_store_explicit(&s->value, to_bits(v), memory_order_relaxed);
}

void
metric_observe(struct metric_series *s, double v)
{
	const struct metric *f;
	size_t i;

	if (!s || s->family->type != METRIC_HISTOGRAM || isnan(v))
		return;
	f = s->family;
	for (i = 0; i < f->n_bounds && v > f->bounds[i]; i++)
		;
	atomic_fetch_add_explicit(&s->counts[i], 1, memory_order_relaxed);
	atomic_add_double(&s->sum, v);
}

double
metric_value(const struct metric_series *s)
{
	uint64_t total = 0;

	if (!s)
		return 0;
	if (s->family->type != METRIC_HISTOGRAM)
		return from_bits(atomic_load(&s->value));
	for (size_t i = 0; i <= s->family->n_bounds; i++)
		total += atomic_load(&s->counts[i]);
	return (double)total;
}

/* Go's formatting as Prometheus clients print it: shortest exact form. */
static void
format_double(char *out, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(out, len, "NaN");
	} else if (isinf(v)) {
		snprintf(out, len, "%s", v > 0 ? "+Inf" : "-Inf");
	} else {
		snprintf(out, len, "%.15g", v);
		if (strtod(out, NULL) != v)
			snprintf(out, len, "%.17g", v);
	}
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static int
add_escaped(struct buf *out, const char *s, bool quote)
{
	int rc = 0;

	for (; *s && rc == 0; s++) {
		if (*s == '\\')
			rc = buf_addstr(out, "\\\\");
		else if (*s == '\n')
			rc = buf_addstr(out, "\\n");
		else if (quote && *s == '"')
			rc = buf_addstr(out, "\\\"");
		else
			rc = buf_addc(out, *s);
	}
	return rc;
}

/* name{labels[,le="x"]} value */
static int
render_line(struct buf *out, const char *name, const char *suffix,
    const struct metric_series *s, const char *le, double value)
{
	const struct metric *f = s->family;
	char num[64];
	int rc = buf_printf(out, "%s%s", name, suffix);

	if (rc == 0 && (f->n_labels || le))
		rc = buf_addc(out, '{');
	for (size_t i = 0; rc == 0 && i < f->n_labels; i++) {
		rc = buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
		if (rc == 0)
			rc = add_escaped(out, s->values[i], true);
		if (rc == 0)
			rc = buf_addc(out, '"');
	}
	if (rc == 0 && le)
		rc = buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
	if (rc == 0 && (f->n_labels || le))
		rc = buf_addc(out, '}');
	format_double(num, sizeof(num), value);
	if (rc == 0)
		rc = buf_printf(out, " %s\n", num);
	return rc;
}

/*
 * The +Inf bucket and _count are the sum of the buckets as read here, so
 * a scrape racing with observations is still self-consistent.
 */
static int
render_histogram(struct buf *out, const struct metric_series *s)
{
	const struct metric *f = s->family;
	uint64_t cum = 0;
	char le[64];
	int rc = 0;

	for (size_t i = 0; rc == 0 && i <= f->n_bounds; i++) {
		cum += atomic_load_explicit(&s->counts[i], memory_order_relaxed);
		if (i < f->n_bounds)
			format_double(le, sizeof(le), f->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		rc = render_line(out, f->name, "_bucket", s, le, (double)cum);
	}
	if (rc == 0)
		rc = render_line(out, f->name, "_sum", s, NULL,
		    from_bits(atomic_load(&s->sum)));
	if (rc == 0)
		rc = render_line(out, f->name, "_count", s, NULL, (double)cum);
	return rc;
}

static int
render_family(struct buf *out, const struct metric *f)
{
	static const char *const types[] = {
		[METRIC_COUNTER] = "counter",
		[METRIC_GAUGE] = "gauge",
		[METRIC_HISTOGRAM] = "histogram",
	};
	const struct metric_series *s;
	int rc = buf_printf(out, "# HELP %s ", f->name);

	if (rc == 0)
		rc = add_escaped(out, f->help, false);
	if (rc == 0)
		rc = buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
	for (s = atomic_load_explicit(&f->series, memory_order_acquire);
	    rc == 0 && s; s = atomic_load_explicit(&s->next, memory_order_acquire)) {
		if (f->type == METRIC_HISTOGRAM)
			rc = render_histogram(out, s);
		else
			rc = render_line(out, f->name, "", s, NULL,
			    from_bits(atomic_load(&s->value)));
	}
	return rc;
}

int
metrics_add_collector(struct metrics *m, metrics_collect_fn fn,
    void (*free_fn)(void *arg), void *arg)
{
	int rc = 0;

	if (!m || !fn)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	if (m->n_collectors == METRICS_MAX_COLLECTORS)
		rc = -ENOSPC;
	else
		m->collectors[m->n_collectors++] = (struct collector){ fn, free_fn, arg };
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int
metrics_render(struct metrics *m, struct buf *out)
{
	struct collector run[METRICS_MAX_COLLECTORS];
	size_t n_run;
	int rc = 0;

	/* Collectors run unlocked: they may create series, which is lock-free here. */
	pthread_mutex_lock(&m->lock);
	n_run = m->n_collectors;
	memcpy(run, m->collectors, n_run * sizeof(run[0]));
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < n_run; i++)
		run[i].fn(run[i].arg);

	pthread_mutex_lock(&m->lock);
	for (const struct metric *f = m->head; f && rc == 0; f = f->next)
		rc = render_family(out, f);
	pthread_mutex_unlock(&m->lock);
	return rc;
}
