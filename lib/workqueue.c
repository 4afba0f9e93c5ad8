/* workqueue.c -- a deduplicating work queue with per-key backoff (client-go's shape) */
#include "workqueue.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hmap.h"
#include "metrics.h"

/* What the queue knows about one key; dropped when it knows nothing. */
struct entry {
	bool queued;		/* in the ready list */
	bool processing;	/* a worker holds it */
	bool dirty;		/* added while processing: queue again when done */
	unsigned int failures;
	uint64_t delay_at;	/* earliest pending delayed add, ms; 0: none */
	uint64_t ready_at;	/* when it entered the ready list, ms (queue duration) */
	uint64_t started_at;	/* when a worker took it, ms (work duration) */
	struct entry *next;	/* ready list */
	char key[];
};

struct delayed {
	uint64_t at;
	char *key;
};

struct workqueue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct hmap keys;
	struct entry *head, *tail;	/* ready, FIFO */
	size_t n_ready;
	size_t n_processing;		/* keys workers hold */
	struct delayed *heap;		/* min-heap on at */
	size_t n_heap, cap_heap;
	bool shutdown;

	/* client-go's workqueue metrics (workqueue_instrument), or NULL */
	struct metric_series *m_depth, *m_adds, *m_queue_s, *m_work_s, *m_retries;
	struct metric_series *m_unfinished_s, *m_longest_s;
};

static uint64_t
key_hash(const char *key)
{
	return hmap_hash(&key, 1);
}

static struct entry *
find(struct workqueue *q, const char *key)
{
	uint64_t h = key_hash(key);

	for (struct hmap_node *n = hmap_first(&q->keys, h); n; n = hmap_next(n, h)) {
		struct entry *e = n->value;

		if (strcmp(e->key, key) == 0)
			return e;
	}
	return NULL;
}

static struct entry *
find_or_make(struct workqueue *q, const char *key)
{
	struct entry *e = find(q, key);
	size_t len;

	if (e)
		return e;
	len = strlen(key);
	e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	memcpy(e->key, key, len + 1);
	if (hmap_insert(&q->keys, key_hash(key), e) != 0) {
		free(e);
		return NULL;
	}
	return e;
}

/* Forgets a key the queue holds no state for. */
static void
maybe_drop(struct workqueue *q, struct entry *e)
{
	if (e->queued || e->processing || e->dirty || e->failures || e->delay_at)
		return;
	hmap_remove(&q->keys, key_hash(e->key), e);
	free(e);
}

static void
push_ready(struct workqueue *q, struct entry *e)
{
	e->ready_at = clock_mono_ms();
	metric_inc(q->m_adds);
	e->queued = true;
	e->next = NULL;
	if (q->tail)
		q->tail->next = e;
	else
		q->head = e;
	q->tail = e;
	q->n_ready++;
	metric_set(q->m_depth, (double)q->n_ready);
	pthread_cond_signal(&q->cond);
}

/* Makes the key ready unless it already is; defers it while a worker has it. */
static void
make_ready(struct workqueue *q, struct entry *e)
{
	if (e->queued)
		return;
	if (e->processing)
		e->dirty = true;
	else
		push_ready(q, e);
}

int
workqueue_new(struct workqueue **out)
{
	struct workqueue *q = calloc(1, sizeof(*q));

	*out = NULL;
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	clock_cond_init(&q->cond);
	hmap_init(&q->keys);
	*out = q;
	return 0;
}

void
workqueue_free(struct workqueue *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->keys.n_buckets; i++)
		for (struct hmap_node *n = q->keys.buckets[i]; n; n = n->next)
			free(n->value);
	hmap_free(&q->keys);
	for (size_t i = 0; i < q->n_heap; i++)
		free(q->heap[i].key);
	free(q->heap);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

int
workqueue_add(struct workqueue *q, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&q->lock);
	if (q->shutdown) {
		pthread_mutex_unlock(&q->lock);
		return 0;
	}
	e = find_or_make(q, key);
	if (e)
		make_ready(q, e);
	pthread_mutex_unlock(&q->lock);
	return e ? 0 : -ENOMEM;
}

static void
heap_swap(struct workqueue *q, size_t a, size_t b)
{
	struct delayed t = q->heap[a];

	q->heap[a] = q->heap[b];
	q->heap[b] = t;
}

static int
heap_push(struct workqueue *q, uint64_t at, const char *key)
{
	size_t i;

	if (q->n_heap == q->cap_heap) {
		size_t cap = q->cap_heap ? q->cap_heap * 2 : 64;
		struct delayed *h = realloc(q->heap, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		q->heap = h;
		q->cap_heap = cap;
	}
	q->heap[q->n_heap].at = at;
	q->heap[q->n_heap].key = strdup(key);
	if (!q->heap[q->n_heap].key)
		return -ENOMEM;
	for (i = q->n_heap++; i > 0 && q->heap[(i - 1) / 2].at > q->heap[i].at; i = (i - 1) / 2)
		heap_swap(q, i, (i - 1) / 2);
	return 0;
}

static struct delayed
heap_pop(struct workqueue *q)
{
	struct delayed top = q->heap[0];
	size_t i = 0;

	q->heap[0] = q->heap[--q->n_heap];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < q->n_heap && q->heap[l].at < q->heap[m].at)
			m = l;
		if (r < q->n_heap && q->heap[r].at < q->heap[m].at)
			m = r;
		if (m == i)
			break;
		heap_swap(q, i, m);
		i = m;
	}
	return top;
}

static int
add_after_locked(struct workqueue *q, const char *key, unsigned long delay_ms)
{
	struct entry *e;
	uint64_t at;

	if (delay_ms == 0) {
		e = find_or_make(q, key);
		if (!e)
			return -ENOMEM;
		make_ready(q, e);
		return 0;
	}
	e = find_or_make(q, key);
	if (!e)
		return -ENOMEM;
	at = clock_mono_ms() + delay_ms;
	if (e->queued || (e->delay_at && e->delay_at <= at))
		return 0;
	if (heap_push(q, at, key) != 0) {
		maybe_drop(q, e);
		return -ENOMEM;
	}
	e->delay_at = at;
	pthread_cond_signal(&q->cond);
	return 0;
}

int
workqueue_add_after(struct workqueue *q, const char *key, unsigned long delay_ms)
{
	int rc = 0;

	pthread_mutex_lock(&q->lock);
	if (!q->shutdown)
		rc = add_after_locked(q, key, delay_ms);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

int
workqueue_add_backoff(struct workqueue *q, const char *key, unsigned long *delay_ms)
{
	unsigned long delay = WORKQUEUE_BACKOFF_MIN_MS;
	struct entry *e;
	int rc = 0;

	pthread_mutex_lock(&q->lock);
	e = q->shutdown ? NULL : find_or_make(q, key);
	if (e) {
		for (unsigned int i = 0; i < e->failures && delay < WORKQUEUE_BACKOFF_MAX_MS; i++)
			delay *= 2;
		if (delay > WORKQUEUE_BACKOFF_MAX_MS)
			delay = WORKQUEUE_BACKOFF_MAX_MS;
		e->failures++;
		metric_inc(q->m_retries);
		rc = add_after_locked(q, key, delay);
	} else if (!q->shutdown) {
		rc = -ENOMEM;
	}
	pthread_mutex_unlock(&q->lock);
	if (delay_ms)
		*delay_ms = delay;
	return rc;
}

void
workqueue_forget(struct workqueue *q, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&q->lock);
	e = find(q, key);
	if (e) {
		e->failures = 0;
		maybe_drop(q, e);
	}
	pthread_mutex_unlock(&q->lock);
}

unsigned int
workqueue_failures(struct workqueue *q, const char *key)
{
	struct entry *e;
	unsigned int n = 0;

	pthread_mutex_lock(&q->lock);
	e = find(q, key);
	if (e)
		n = e->failures;
	pthread_mutex_unlock(&q->lock);
	return n;
}

/* Moves delayed keys whose time has come to the ready list. Locked. */
static void
promote(struct workqueue *q, uint64_t now)
{
	while (q->n_heap && q->heap[0].at <= now) {
		struct delayed d = heap_pop(q);
		struct entry *e = find(q, d.key);

		/* A stale heap item (superseded by a sooner add) finds delay_at changed. */
		if (e && e->delay_at == d.at) {
			e->delay_at = 0;
			make_ready(q, e);
		}
		free(d.key);
	}
}

char *
workqueue_get(struct workqueue *q, unsigned long timeout_ms)
{
	uint64_t deadline = timeout_ms ? clock_mono_ms() + timeout_ms : 0;
	char *key = NULL;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		uint64_t now = clock_mono_ms(), wake;

		promote(q, now);
		if (q->shutdown || q->head)
			break;
		if (deadline && now >= deadline)
			break;
		wake = deadline;
		if (q->n_heap && (!wake || q->heap[0].at < wake))
			wake = q->heap[0].at;
		if (!wake) {
			pthread_cond_wait(&q->cond, &q->lock);
			continue;
		}
		clock_cond_wait(&q->cond, &q->lock, (unsigned long)(wake - now));
	}
	if (!q->shutdown && q->head) {
		struct entry *e = q->head;

		q->head = e->next;
		if (!q->head)
			q->tail = NULL;
		q->n_ready--;
		metric_set(q->m_depth, (double)q->n_ready);
		e->queued = false;
		e->processing = true;
		q->n_processing++;
		e->started_at = clock_mono_ms();
		metric_observe(q->m_queue_s, (double)(e->started_at - e->ready_at) / 1000);
		key = strdup(e->key);
		if (!key) {
			e->processing = false;
			q->n_processing--;
			push_ready(q, e);
		}
	}
	pthread_mutex_unlock(&q->lock);
	return key;
}

void
workqueue_done(struct workqueue *q, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&q->lock);
	e = find(q, key);
	if (e) {
		if (e->processing) {
			metric_observe(q->m_work_s,
			    (double)(clock_mono_ms() - e->started_at) / 1000);
			q->n_processing--;
		}
		e->processing = false;
		if (e->dirty) {
			e->dirty = false;
			if (!q->shutdown)
				push_ready(q, e);
		}
		maybe_drop(q, e);
	}
	pthread_mutex_unlock(&q->lock);
}

size_t
workqueue_len(struct workqueue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->n_ready;
	pthread_mutex_unlock(&q->lock);
	return n;
}

size_t
workqueue_active(struct workqueue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->n_ready + q->n_processing;
	pthread_mutex_unlock(&q->lock);
	return n;
}

size_t
workqueue_delayed(struct workqueue *q)
{
	size_t n;

	pthread_mutex_lock(&q->lock);
	n = q->n_heap;
	pthread_mutex_unlock(&q->lock);
	return n;
}

void
workqueue_shutdown(struct workqueue *q)
{
	pthread_mutex_lock(&q->lock);
	q->shutdown = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

bool
workqueue_shutting_down(struct workqueue *q)
{
	bool s;

	pthread_mutex_lock(&q->lock);
	s = q->shutdown;
	pthread_mutex_unlock(&q->lock);
	return s;
}

/* At scrape time: how long the keys workers hold now have been held. */
static void
collect(void *arg)
{
	struct workqueue *q = arg;
	uint64_t now = clock_mono_ms(), total = 0, longest = 0;

	pthread_mutex_lock(&q->lock);
	for (size_t i = 0; i < q->keys.n_buckets; i++) {
		for (struct hmap_node *n = q->keys.buckets[i]; n; n = n->next) {
			const struct entry *e = n->value;

			if (!e->processing)
				continue;
			total += now - e->started_at;
			if (now - e->started_at > longest)
				longest = now - e->started_at;
		}
	}
	pthread_mutex_unlock(&q->lock);
	metric_set(q->m_unfinished_s, (double)total / 1000);
	metric_set(q->m_longest_s, (double)longest / 1000);
}

int
workqueue_instrument(struct workqueue *q, struct metrics *m, const char *name)
{
	static const char *const by_name[] = { "name", NULL };
	/* client-go's buckets for both durations: 10ns to 10s by powers of ten. */
	static const double buckets[] = { 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1,
		1, 10 };
	const char *const v[] = { name };

	q->m_depth = metric_get(metrics_gauge(m, "workqueue_depth",
	    "Keys waiting in the work queue.", by_name), v);
	q->m_adds = metric_get(metrics_counter(m, "workqueue_adds_total",
	    "Keys put into the ready list of the work queue.", by_name), v);
	q->m_queue_s = metric_get(metrics_histogram(m, "workqueue_queue_duration_seconds",
	    "Seconds a key waited in the ready list before a worker took it.",
	    by_name, buckets, sizeof(buckets) / sizeof(buckets[0])), v);
	q->m_work_s = metric_get(metrics_histogram(m, "workqueue_work_duration_seconds",
	    "Seconds a worker spent on one key.", by_name, buckets,
	    sizeof(buckets) / sizeof(buckets[0])), v);
	q->m_unfinished_s = metric_get(metrics_gauge(m, "workqueue_unfinished_work_seconds",
	    "Seconds the keys workers hold now have been held, added up; a steady "
	    "climb means stuck workers.",
	    by_name), v);
	q->m_longest_s = metric_get(metrics_gauge(m,
	    "workqueue_longest_running_processor_seconds",
	    "Seconds the key held longest by a worker has been held.",
	    by_name), v);
	q->m_retries = metric_get(metrics_counter(m, "workqueue_retries_total",
	    "Keys put back after a failure, with their backoff.", by_name), v);
	if (!q->m_depth || !q->m_adds || !q->m_queue_s || !q->m_work_s ||
	    !q->m_unfinished_s || !q->m_longest_s || !q->m_retries)
		return -ENOMEM;
	return metrics_add_collector(m, collect, NULL, q);
}
