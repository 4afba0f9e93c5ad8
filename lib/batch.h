/* batch.h -- single writes to one group gathered into bulk requests, for providers with a bulk endpoint */
#ifndef MILO_BATCH_H
#define MILO_BATCH_H

#include <stddef.h>

/*
 * The controllers add members one reconcile at a time, each reconcile
 * with its own call. When many adds arrive within a short window (an
 * initial sync, a large group applied at once), a provider with a bulk
 * endpoint can send each group's together. batch_add() answers each add
 * with one of:
 *
 * - BATCH_ALONE: nothing else was added within the window; send this one
 *   yourself, now. A lone change never waits for company.
 * - BATCH_WAIT: it waits in the group's batch (or its request is on the
 *   way); ask again after wait_ms. The worker is not held meanwhile.
 * - BATCH_DONE: the request that carried it was answered; here is how.
 *
 * An add is identified by (group, key) and carries a payload (what to
 * write: a member's fields). Asking again with another payload replaces a
 * queued one, and one whose request is on the way is queued again after
 * it, so an outcome is only ever reported for the payload asked about.
 *
 * One thread sends the batches, one request per group at a time, oldest
 * group first: a group is sent when max_items wait in it, when no entry
 * joined it for window_ms (the burst moved on), or when its oldest entry
 * has waited max_wait_ms. batch_forget() drops what waits for a key and
 * waits out a request that carries it, so a delete sent after it is never
 * overtaken by the add.
 *
 * Everything is in memory: a restart forgets what waited, and the
 * controllers ask again. Thread-safe.
 */

#define BATCH_HELD_MAX 100000	/* entries queued, on the way or uncollected, all groups */
#define BATCH_KEEP_MS 600000	/* an outcome nobody asked about is dropped after this */
#define BATCH_WAIT_MAX_MS 30000	/* the longest wait_ms suggested */

/* One entry of a request (borrowed for the length of the send call). */
struct batch_item {
	const char *key;
	const char *payload;
};

/* How a request went, for every entry it carried (the sender fills it). */
struct batch_outcome {
	int rc;			/* 0 or the caller's failure code */
	char *message;		/* malloc'd, or NULL */
	long retry_after_ms;	/* or -1 */
};

/* Sends one request for group; called from the batch's thread, nothing locked. */
typedef void (*batch_send_fn)(void *arg, const char *group, const struct batch_item *items,
    size_t n, struct batch_outcome *out);

struct batch_config {
	unsigned long window_ms;	/* adds closer than this form a burst; 0: never batch */
	unsigned long max_wait_ms;	/* the longest an entry waits; 0: window_ms */
	size_t max_items;		/* per request, >= 1 */
	unsigned long request_ms;	/* one request's share of time (1000 / rate), for wait_ms */
	size_t held_max;		/* 0: BATCH_HELD_MAX; past it adds go alone */
	unsigned long keep_ms;		/* 0: BATCH_KEEP_MS */
	batch_send_fn send;
	void *arg;
};

enum batch_verdict { BATCH_ALONE, BATCH_WAIT, BATCH_DONE };

struct batch_result {
	int rc;			/* BATCH_DONE: the outcome's */
	char *message;		/* BATCH_DONE: malloc'd (free it) or NULL */
	long retry_after_ms;	/* BATCH_DONE: or -1 */
	unsigned long wait_ms;	/* BATCH_WAIT: ask again after this */
};

struct batch;

/* Starts the sending thread. 0, -EINVAL (no send, max_items 0), -ENOMEM, or pthread's error. */
int batch_new(const struct batch_config *c, struct batch **out);
/* Stops the thread after the request on the way, if any; what waits is dropped. */
void batch_free(struct batch *b);

/*
 * See above. group, key and payload are copied. Keys are compared
 * exactly: normalise them first (Mailgun: lower-case addresses). ENOMEM
 * makes it BATCH_ALONE.
 */
enum batch_verdict batch_add(struct batch *b, const char *group, const char *key,
    const char *payload, struct batch_result *r);

/* Drops what waits for group/key, after its request if one is on the way. */
void batch_forget(struct batch *b, const char *group, const char *key);
/* The same for every key of the group (the group is being deleted). */
void batch_forget_group(struct batch *b, const char *group);

/* Counters, for metrics and tests. */
struct batch_stats {
	unsigned long requests;	/* bulk requests sent */
	unsigned long items;	/* entries they carried */
	size_t held;		/* entries held now */
};

void batch_stats(struct batch *b, struct batch_stats *s);

#endif
