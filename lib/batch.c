/* batch.c -- single writes to one group gathered into bulk requests, for providers with a bulk endpoint */
#include "batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hmap.h"

#define PRUNE_EVERY_MS 1000	/* how often uncollected outcomes and idle groups are dropped */
#define IDLE_WAIT_MS 60000	/* the sender's sleep when nothing waits */
#define WAIT_MIN_MS 50		/* the shortest wait_ms suggested */
#define OOM_WAIT_MS 100		/* out of memory: try the group again after this */

enum state { QUEUED, INFLIGHT, DONE };

struct group;

struct entry {
	struct group *g;
	char *key;
	char *payload;
	char *next_payload;	/* asked for while INFLIGHT: queued again after it */
	enum state state;
	uint64_t at_ms;		/* when it was queued, or when its outcome came */
	struct batch_outcome out;	/* DONE */
	struct entry *prev, *next;	/* the group's queue, oldest first (QUEUED) */
	struct entry *all_prev, *all_next;	/* every entry of the group */
};

struct group {
	char *id;
	struct entry *head, *tail;	/* queued */
	struct entry *all;
	size_t queued;
	bool inflight;		/* its request is on the way */
	uint64_t joined_ms;	/* when an entry last joined its queue */
	struct group *next;
};

struct batch {
	struct batch_config c;
	pthread_mutex_t lock;
	pthread_cond_t wake;	/* the sender: something to send, or stop */
	pthread_cond_t sent;	/* forgetters: a request came back */
	pthread_t thread;
	bool stop;
	struct group *groups;
	struct hmap entries;	/* by hash of (group, key) */
	size_t held;
	size_t queued;		/* entries queued, all groups */
	uint64_t last_add_ms;	/* the last add of a key not already held */
	uint64_t pruned_ms;
	unsigned long requests, items;
};

static uint64_t
entry_hash(const char *group, const char *key)
{
	const char *parts[] = { group, key };

	return hmap_hash(parts, 2);
}

static struct entry *
find(struct batch *b, const char *group, const char *key)
{
	uint64_t h = entry_hash(group, key);

	for (struct hmap_node *n = hmap_first(&b->entries, h); n; n = hmap_next(n, h)) {
		struct entry *e = n->value;

		if (strcmp(e->key, key) == 0 && strcmp(e->g->id, group) == 0)
			return e;
	}
	return NULL;
}

static struct group *
group_find(struct batch *b, const char *id)
{
	for (struct group *g = b->groups; g; g = g->next)
		if (strcmp(g->id, id) == 0)
			return g;
	return NULL;
}

static struct group *
group_get(struct batch *b, const char *id)
{
	struct group *g = group_find(b, id);

	if (g)
		return g;
	struct group **tail = &b->groups;

	if (!(g = calloc(1, sizeof(*g))) || !(g->id = strdup(id))) {
		free(g);
		return NULL;
	}
	while (*tail)		/* in order of arrival: the older wins a tie */
		tail = &(*tail)->next;
	*tail = g;
	return g;
}

static void
queue_push(struct batch *b, struct group *g, struct entry *e)
{
	b->queued++;
	e->state = QUEUED;
	e->next = NULL;
	e->prev = g->tail;
	if (g->tail)
		g->tail->next = e;
	else
		g->head = e;
	g->tail = e;
	g->queued++;
}

static void
queue_unlink(struct batch *b, struct group *g, struct entry *e)
{
	b->queued--;
	if (e->prev)
		e->prev->next = e->next;
	else
		g->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		g->tail = e->prev;
	e->prev = e->next = NULL;
	g->queued--;
}

/* Unlinks and frees an entry that is not on the way. */
static void
entry_drop(struct batch *b, struct entry *e)
{
	struct group *g = e->g;

	if (e->state == QUEUED)
		queue_unlink(b, g, e);
	if (e->all_prev)
		e->all_prev->all_next = e->all_next;
	else
		g->all = e->all_next;
	if (e->all_next)
		e->all_next->all_prev = e->all_prev;
	hmap_remove(&b->entries, entry_hash(g->id, e->key), e);
	b->held--;
	free(e->key);
	free(e->payload);
	free(e->next_payload);
	free(e->out.message);
	free(e);
}

/* A new queued entry, or NULL on ENOMEM (nothing changed). */
static struct entry *
entry_new(struct batch *b, struct group *g, const char *key, const char *payload, uint64_t now)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (!e || !(e->key = strdup(key)) || !(e->payload = strdup(payload)) ||
	    hmap_insert(&b->entries, entry_hash(g->id, key), e) != 0) {
		if (e) {
			free(e->key);
			free(e->payload);
		}
		free(e);
		return NULL;
	}
	e->g = g;
	e->at_ms = now;
	e->all_next = g->all;
	if (g->all)
		g->all->all_prev = e;
	g->all = e;
	b->held++;
	queue_push(b, g, e);
	g->joined_ms = now;
	return e;
}

/*
 * When g's oldest entry is sent at the latest: full, quiet for the
 * window, or max_wait_ms old.
 */
static uint64_t
due_at(const struct batch *b, const struct group *g)
{
	uint64_t quiet = g->joined_ms + b->c.window_ms, oldest = g->head->at_ms + b->c.max_wait_ms;

	if (g->queued >= b->c.max_items)
		return 0;
	return quiet < oldest ? quiet : oldest;
}

/*
 * When an entry of g may expect its outcome, without optimism (asking
 * too early costs the caller a round for nothing): the longest it may
 * wait, then one request's time for every request queued before it and
 * its own.
 */
static unsigned long
estimate_wait(struct batch *b, const struct group *g, uint64_t now)
{
	uint64_t due = g->head ? g->head->at_ms + b->c.max_wait_ms : now;
	unsigned long ahead = 1, ms;

	for (const struct group *o = b->groups; o; o = o->next)
		ahead += (unsigned long)((o->queued + b->c.max_items - 1) / b->c.max_items) +
		    (o->inflight ? 1 : 0);
	ms = (unsigned long)(due > now ? due - now : 0) + ahead * b->c.request_ms;
	if (ms < WAIT_MIN_MS)
		ms = WAIT_MIN_MS;
	return ms > BATCH_WAIT_MAX_MS ? BATCH_WAIT_MAX_MS : ms;
}

enum batch_verdict
batch_add(struct batch *b, const char *group, const char *key, const char *payload,
    struct batch_result *r)
{
	uint64_t now = clock_mono_ms();
	enum batch_verdict v = BATCH_WAIT;
	struct entry *e;
	struct group *g;
	bool active;
	char *copy;

	memset(r, 0, sizeof(*r));
	r->retry_after_ms = -1;
	if (b->c.window_ms == 0)
		return BATCH_ALONE;
	pthread_mutex_lock(&b->lock);
	e = find(b, group, key);
	if (e && e->state == DONE && strcmp(e->payload, payload) == 0) {
		r->rc = e->out.rc;
		r->message = e->out.message;
		r->retry_after_ms = e->out.retry_after_ms;
		e->out.message = NULL;
		entry_drop(b, e);
		pthread_mutex_unlock(&b->lock);
		return BATCH_DONE;
	}
	if (e && e->state == DONE) {
		entry_drop(b, e);	/* an outcome for another payload: ask anew */
		e = NULL;
	}
	g = e ? e->g : group_get(b, group);
	if (e && strcmp(e->payload, payload) != 0 && (copy = strdup(payload))) {
		char **slot = e->state == INFLIGHT ? &e->next_payload : &e->payload;

		free(*slot);
		*slot = copy;
	} else if (e && e->state == INFLIGHT && e->next_payload &&
	    strcmp(e->payload, payload) == 0) {
		free(e->next_payload);	/* back to what is on the way */
		e->next_payload = NULL;
	} else if (!e) {
		/* A burst: another add within the window, or adds still queued. */
		active = b->queued || now - b->last_add_ms < b->c.window_ms;
		b->last_add_ms = now;
		if (!g || !active || b->held >= b->c.held_max ||
		    !(e = entry_new(b, g, key, payload, now))) {
			v = BATCH_ALONE;
		} else {
			pthread_cond_signal(&b->wake);
		}
	}
	if (v == BATCH_WAIT)
		r->wait_ms = estimate_wait(b, g, now);
	pthread_mutex_unlock(&b->lock);
	return v;
}

void
batch_forget(struct batch *b, const char *group, const char *key)
{
	struct entry *e;

	pthread_mutex_lock(&b->lock);
	while ((e = find(b, group, key)) && e->state == INFLIGHT)
		pthread_cond_wait(&b->sent, &b->lock);
	if (e)
		entry_drop(b, e);
	pthread_mutex_unlock(&b->lock);
}

void
batch_forget_group(struct batch *b, const char *group)
{
	struct group *g;

	pthread_mutex_lock(&b->lock);
	while ((g = group_find(b, group)) && g->inflight)
		pthread_cond_wait(&b->sent, &b->lock);
	while (g && g->all)
		entry_drop(b, g->all);
	pthread_mutex_unlock(&b->lock);
}

void
batch_stats(struct batch *b, struct batch_stats *s)
{
	pthread_mutex_lock(&b->lock);
	s->requests = b->requests;
	s->items = b->items;
	s->held = b->held;
	pthread_mutex_unlock(&b->lock);
}

/* ---- the sending thread ---- */

/*
 * The group to send now (full, or its oldest entry has waited the
 * window), oldest first; else NULL and *sleep_ms until one is due.
 */
static struct group *
next_due(struct batch *b, uint64_t now, unsigned long *sleep_ms)
{
	struct group *best = NULL;
	uint64_t soonest = UINT64_MAX;

	for (struct group *g = b->groups; g; g = g->next) {
		uint64_t due;

		if (!g->head || g->inflight)
			continue;
		due = due_at(b, g);
		if (due <= now && (!best || g->head->at_ms < best->head->at_ms))
			best = g;
		if (due < soonest)
			soonest = due;
	}
	*sleep_ms = soonest == UINT64_MAX ? IDLE_WAIT_MS : soonest > now ?
	    (unsigned long)(soonest - now) : 0;
	return best;
}

/* Drops outcomes nobody collected within keep_ms and groups with nothing left. */
static void
prune(struct batch *b, uint64_t now)
{
	struct group **gp = &b->groups;

	if (now - b->pruned_ms < PRUNE_EVERY_MS)
		return;
	b->pruned_ms = now;
	while (*gp) {
		struct group *g = *gp;

		for (struct entry *e = g->all, *next; e; e = next) {
			next = e->all_next;
			if (e->state == DONE && now - e->at_ms >= b->c.keep_ms)
				entry_drop(b, e);
		}
		if (!g->all && !g->inflight) {
			*gp = g->next;
			free(g->id);
			free(g);
		} else {
			gp = &g->next;
		}
	}
}

/*
 * Sends up to max_items of g's queue; the lock is held on entry and on
 * return. false when memory ran out before anything was sent.
 */
static bool
send_group(struct batch *b, struct group *g)
{
	size_t n = g->queued < b->c.max_items ? g->queued : b->c.max_items;
	struct entry **sent = calloc(n, sizeof(*sent));
	struct batch_item *items = calloc(n, sizeof(*items));
	struct batch_outcome out = { 0, NULL, -1 };
	char *gid;
	uint64_t now;

	if (!sent || !items || !(gid = strdup(g->id))) {
		free(sent);
		free(items);
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		struct entry *e = g->head;

		queue_unlink(b, g, e);
		e->state = INFLIGHT;
		sent[i] = e;
		items[i] = (struct batch_item){ e->key, e->payload };
	}
	g->inflight = true;
	pthread_mutex_unlock(&b->lock);
	b->c.send(b->c.arg, gid, items, n, &out);
	pthread_mutex_lock(&b->lock);
	now = clock_mono_ms();
	for (size_t i = 0; i < n; i++) {
		struct entry *e = sent[i];

		if (e->next_payload) {
			free(e->payload);
			e->payload = e->next_payload;
			e->next_payload = NULL;
			e->at_ms = now;
			queue_push(b, g, e);
			g->joined_ms = now;
			continue;
		}
		e->state = DONE;
		e->at_ms = now;
		e->out.rc = out.rc;
		e->out.retry_after_ms = out.retry_after_ms;
		e->out.message = out.message ? strdup(out.message) : NULL;
	}
	g->inflight = false;
	b->requests++;
	b->items += n;
	pthread_cond_broadcast(&b->sent);
	free(out.message);
	free(gid);
	free(sent);
	free(items);
	return true;
}

static void *
sender(void *arg)
{
	struct batch *b = arg;

	pthread_mutex_lock(&b->lock);
	while (!b->stop) {
		uint64_t now = clock_mono_ms();
		unsigned long sleep_ms;
		struct group *g;

		prune(b, now);
		if ((g = next_due(b, now, &sleep_ms)) != NULL) {
			if (send_group(b, g))
				continue;
			sleep_ms = OOM_WAIT_MS;
		}
		if (sleep_ms > PRUNE_EVERY_MS && b->held)
			sleep_ms = PRUNE_EVERY_MS;
		clock_cond_wait(&b->wake, &b->lock, sleep_ms ? sleep_ms : 1);
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

int
batch_new(const struct batch_config *c, struct batch **out)
{
	struct batch *b;
	int rc;

	*out = NULL;
	if (!c->send || c->max_items == 0)
		return -EINVAL;
	if (!(b = calloc(1, sizeof(*b))))
		return -ENOMEM;
	b->c = *c;
	if (!b->c.max_wait_ms)
		b->c.max_wait_ms = b->c.window_ms;
	if (!b->c.held_max)
		b->c.held_max = BATCH_HELD_MAX;
	if (!b->c.keep_ms)
		b->c.keep_ms = BATCH_KEEP_MS;
	hmap_init(&b->entries);
	pthread_mutex_init(&b->lock, NULL);
	clock_cond_init(&b->wake);
	pthread_cond_init(&b->sent, NULL);
	b->pruned_ms = clock_mono_ms();
	if ((rc = pthread_create(&b->thread, NULL, sender, b)) != 0) {
		pthread_cond_destroy(&b->sent);
		pthread_cond_destroy(&b->wake);
		pthread_mutex_destroy(&b->lock);
		free(b);
		return -rc;
	}
	*out = b;
	return 0;
}

void
batch_free(struct batch *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->stop = true;
	pthread_cond_signal(&b->wake);
	pthread_mutex_unlock(&b->lock);
	pthread_join(b->thread, NULL);
	while (b->groups) {
		struct group *g = b->groups;

		while (g->all)
			entry_drop(b, g->all);
		b->groups = g->next;
		free(g->id);
		free(g);
	}
	hmap_free(&b->entries);
	pthread_cond_destroy(&b->sent);
	pthread_cond_destroy(&b->wake);
	pthread_mutex_destroy(&b->lock);
	free(b);
}
