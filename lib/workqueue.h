/* workqueue.h -- a deduplicating work queue with per-key backoff (client-go's shape) */
#ifndef MILO_WORKQUEUE_H
#define MILO_WORKQUEUE_H

#include <stdbool.h>
#include <stddef.h>

#define WORKQUEUE_BACKOFF_MIN_MS 5		/* first retry of a failing key (client-go: 5 ms, doubling) */
#define WORKQUEUE_BACKOFF_MAX_MS (5 * 60 * 1000)	/* cap */

/*
 * Keys are strings ("Contact/ns/name"). A key is in the queue at most once;
 * a key added while a worker holds it is queued again when the worker is
 * done, so an object is never processed by two workers at once and no
 * change is lost. Thread-safe.
 */
struct workqueue;

int workqueue_new(struct workqueue **out);

/*
 * Exports client-go's workqueue metrics for this queue, labelled name:
 * workqueue_depth, workqueue_adds_total, workqueue_queue_duration_seconds,
 * workqueue_work_duration_seconds, workqueue_unfinished_work_seconds,
 * workqueue_longest_running_processor_seconds, workqueue_retries_total
 * (the backoff adds). Call once, before the queue is used. 0 or -ENOMEM.
 */
struct metrics;
int workqueue_instrument(struct workqueue *q, struct metrics *m, const char *name);
void workqueue_free(struct workqueue *q);

/* Queues key now (no-op when already queued). Returns 0 or -ENOMEM. */
int workqueue_add(struct workqueue *q, const char *key);
/* Queues key after delay_ms (a sooner pending add wins). */
int workqueue_add_after(struct workqueue *q, const char *key, unsigned long delay_ms);
/*
 * Queues key after its backoff: WORKQUEUE_BACKOFF_MIN_MS doubled per
 * consecutive failure, capped. Returns the delay chosen through delay_ms.
 */
int workqueue_add_backoff(struct workqueue *q, const char *key, unsigned long *delay_ms);
/* Forgets the key's failures (after a success). */
void workqueue_forget(struct workqueue *q, const char *key);
unsigned int workqueue_failures(struct workqueue *q, const char *key);

/*
 * Waits for a key (up to timeout_ms; 0 waits forever). Returns a malloc'd
 * key the caller must pass to workqueue_done() and then free, or NULL on
 * timeout or shutdown.
 */
char *workqueue_get(struct workqueue *q, unsigned long timeout_ms);
void workqueue_done(struct workqueue *q, const char *key);

/* Keys ready or waiting for their delay; keys being processed are not counted. */
size_t workqueue_len(struct workqueue *q);
size_t workqueue_delayed(struct workqueue *q);
/*
 * Keys ready plus keys workers hold now: background work (the provider
 * audit) waits while this is above 0, so it never delays a reconcile.
 */
size_t workqueue_active(struct workqueue *q);

/* Wakes every waiter; later gets return NULL at once. */
void workqueue_shutdown(struct workqueue *q);
bool workqueue_shutting_down(struct workqueue *q);

#endif
