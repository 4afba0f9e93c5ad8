/* check_batch.c -- single writes gathered into bulk requests */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"
#include "clock.h"

Suite *batch_suite(void);

#define MAX_REQUESTS 64
#define MAX_ITEMS 64
#define POLL_US 5000
#define POLL_LIMIT_S 10.0	/* every wait is bounded */

/* What the send callback saw and how it answers. */
struct sink {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int n;				/* requests */
	char group[MAX_REQUESTS][64];
	size_t count[MAX_REQUESTS];
	char keys[MAX_REQUESTS][MAX_ITEMS][32];
	char payloads[MAX_REQUESTS][MAX_ITEMS][32];
	int rc;				/* the outcome given */
	const char *message;
	long retry_after_ms;
	bool gate;			/* true: a request waits for open */
	bool open, in_send;
};

static void
sink_init(struct sink *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->retry_after_ms = -1;
}

static void
sink_destroy(struct sink *s)
{
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

static void
send_cb(void *arg, const char *group, const struct batch_item *items, size_t n,
    struct batch_outcome *out)
{
	struct sink *s = arg;
	int r;

	pthread_mutex_lock(&s->lock);
	r = s->n < MAX_REQUESTS ? s->n : MAX_REQUESTS - 1;
	snprintf(s->group[r], sizeof(s->group[r]), "%s", group);
	s->count[r] = n;
	for (size_t i = 0; i < n && i < MAX_ITEMS; i++) {
		snprintf(s->keys[r][i], sizeof(s->keys[r][i]), "%s", items[i].key);
		snprintf(s->payloads[r][i], sizeof(s->payloads[r][i]), "%s", items[i].payload);
	}
	s->in_send = true;
	pthread_cond_broadcast(&s->cond);
	while (s->gate && !s->open)
		pthread_cond_wait(&s->cond, &s->lock);
	s->in_send = false;
	s->n++;
	out->rc = s->rc;
	out->message = s->message ? strdup(s->message) : NULL;
	out->retry_after_ms = s->retry_after_ms;
	pthread_mutex_unlock(&s->lock);
}

/* A batch sending to s; max_wait_ms 0 is four windows. */
static struct batch *
make(struct sink *s, unsigned long window_ms, unsigned long max_wait_ms, size_t max_items,
    size_t held_max, unsigned long keep_ms)
{
	struct batch_config c = { .window_ms = window_ms,
	    .max_wait_ms = max_wait_ms ? max_wait_ms : 4 * window_ms,
	    .max_items = max_items, .request_ms = 10, .held_max = held_max, .keep_ms = keep_ms,
	    .send = send_cb, .arg = s };
	struct batch *b;

	ck_assert_int_eq(batch_new(&c, &b), 0);
	return b;
}

/* batch_add must answer want; returns what it filled in. */
static struct batch_result
add_is(struct batch *b, const char *group, const char *key, const char *payload,
    enum batch_verdict want)
{
	struct batch_result r;
	enum batch_verdict v = batch_add(b, group, key, payload, &r);

	ck_assert_msg(v == want, "add %s/%s=%s: verdict %d, want %d", group, key, payload,
	    (int)v, (int)want);
	return r;
}

/* A sink and a batch sending to it: the fixture of most tests. */
struct rig {
	struct sink s;
	struct batch *b;
};

/*
 * Starts a rig (make()'s settings) and makes the first add of group "g"
 * (key "a", payload "p"): after a quiet spell it goes alone, so the adds
 * right after it wait.
 */
static void
rig_start(struct rig *t, unsigned long window_ms, unsigned long max_wait_ms, size_t max_items,
    size_t held_max, unsigned long keep_ms)
{
	sink_init(&t->s);
	t->b = make(&t->s, window_ms, max_wait_ms, max_items, held_max, keep_ms);
	add_is(t->b, "g", "a", "p", BATCH_ALONE);
}

static void
rig_stop(struct rig *t)
{
	batch_free(t->b);
	sink_destroy(&t->s);
}

/* Asks until the outcome comes (bounded); returns it. */
static struct batch_result
await(struct batch *b, const char *group, const char *key, const char *payload)
{
	double until = clock_mono() + POLL_LIMIT_S;
	struct batch_result r;
	enum batch_verdict v;

	while ((v = batch_add(b, group, key, payload, &r)) == BATCH_WAIT) {
		ck_assert_uint_ge(r.wait_ms, 1);
		ck_assert_uint_le(r.wait_ms, BATCH_WAIT_MAX_MS);
		ck_assert_msg(clock_mono() < until, "no outcome for %s/%s", group, key);
		usleep(POLL_US);
	}
	ck_assert_int_eq(v, BATCH_DONE);
	return r;
}

static int
requests(struct sink *s)
{
	int n;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Waits (bounded) until the sink has answered n requests. */
static void
wait_requests(struct sink *s, int n)
{
	double until = clock_mono() + POLL_LIMIT_S;

	while (requests(s) < n) {
		ck_assert_msg(clock_mono() < until, "%d requests, want %d", requests(s), n);
		usleep(POLL_US);
	}
}

START_TEST(test_off)
{
	struct sink s;
	struct batch_result r;
	struct batch *b;

	sink_init(&s);
	b = make(&s, 0, 0, 100, 0, 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(batch_add(b, "g", "k", "p", &r), BATCH_ALONE);
	batch_free(b);
	ck_assert_int_eq(s.n, 0);
	sink_destroy(&s);
}
END_TEST

/*
 * The first add after a quiet spell goes alone; the ones right after it
 * wait, each group's in a request of its own.
 */
START_TEST(test_quiet_then_batched)
{
	struct rig t;
	struct batch_result r;
	struct batch_stats st;

	rig_start(&t, 100, 0, 100, 0, 0);
	add_is(t.b, "g", "b", "pb", BATCH_WAIT);
	add_is(t.b, "g", "c", "pc", BATCH_WAIT);
	add_is(t.b, "h", "a", "pa", BATCH_WAIT);
	r = await(t.b, "g", "b", "pb");
	ck_assert_int_eq(r.rc, 0);
	ck_assert_ptr_null(r.message);
	r = await(t.b, "g", "c", "pc");
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(await(t.b, "h", "a", "pa").rc, 0);
	ck_assert_int_eq(requests(&t.s), 2);
	ck_assert_str_eq(t.s.group[0], "g");		/* the oldest first */
	ck_assert_uint_eq(t.s.count[0], 2);
	ck_assert_str_eq(t.s.keys[0][0], "b");
	ck_assert_str_eq(t.s.payloads[0][1], "pc");
	ck_assert_str_eq(t.s.group[1], "h");
	ck_assert_uint_eq(t.s.count[1], 1);
	/* Collected: a later add of the same key starts over. */
	batch_stats(t.b, &st);
	ck_assert_uint_eq(st.requests, 2);
	ck_assert_uint_eq(st.items, 3);
	ck_assert_uint_eq(st.held, 0);
	rig_stop(&t);
}
END_TEST

START_TEST(test_max_items_splits)
{
	struct rig t;
	char key[16];
	size_t total = 0;

	rig_start(&t, 200, 0, 3, 0, 0);
	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		add_is(t.b, "g", key, "p", BATCH_WAIT);
	}
	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_int_eq(await(t.b, "g", key, "p").rc, 0);
	}
	ck_assert_int_eq(requests(&t.s), 3);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_le(t.s.count[i], 3);
		total += t.s.count[i];
	}
	ck_assert_uint_eq(total, 7);
	/* Oldest first. */
	ck_assert_str_eq(t.s.keys[0][0], "k0");
	ck_assert_str_eq(t.s.keys[2][0], "k6");
	rig_stop(&t);
}
END_TEST

/* A failed request's outcome reaches every entry it carried, each with its own copy. */
START_TEST(test_failure_reaches_each)
{
	struct rig t;
	struct batch_result r1, r2;

	rig_start(&t, 50, 0, 100, 0, 0);
	t.s.rc = -42;		/* before the first request: the first add went alone */
	t.s.message = "HTTP 500: Internal Server Error";
	t.s.retry_after_ms = 1500;
	add_is(t.b, "g", "b", "p", BATCH_WAIT);
	add_is(t.b, "g", "c", "p", BATCH_WAIT);
	r1 = await(t.b, "g", "b", "p");
	r2 = await(t.b, "g", "c", "p");
	ck_assert_int_eq(r1.rc, -42);
	ck_assert_int_eq(r2.rc, -42);
	ck_assert_str_eq(r1.message, "HTTP 500: Internal Server Error");
	ck_assert_ptr_ne(r1.message, r2.message);
	ck_assert_int_eq(r1.retry_after_ms, 1500);
	free(r1.message);
	free(r2.message);
	/* Asked again later (the controller's retry), with nothing else going on: alone. */
	add_is(t.b, "g", "b", "p", BATCH_ALONE);
	t.s.rc = 0;
	t.s.message = NULL;
	rig_stop(&t);
}
END_TEST

/* An outcome is only ever reported for the payload asked about. */
START_TEST(test_payload_change)
{
	struct rig t;
	struct batch_stats st;

	rig_start(&t, 150, 0, 100, 0, 0);
	add_is(t.b, "g", "k", "old", BATCH_WAIT);
	add_is(t.b, "g", "k", "new", BATCH_WAIT);
	ck_assert_int_eq(await(t.b, "g", "k", "new").rc, 0);
	ck_assert_int_eq(requests(&t.s), 1);
	ck_assert_uint_eq(t.s.count[0], 1);
	ck_assert_str_eq(t.s.payloads[0][0], "new");
	/*
	 * An outcome for "x" is not one for "y": y is asked anew, and goes
	 * alone since nothing was asked of the group while x waited.
	 */
	add_is(t.b, "g", "n", "p", BATCH_ALONE);
	add_is(t.b, "g", "m", "x", BATCH_WAIT);
	wait_requests(&t.s, 2);
	add_is(t.b, "g", "m", "y", BATCH_ALONE);
	batch_stats(t.b, &st);
	ck_assert_uint_eq(st.held, 0);
	ck_assert_int_eq(requests(&t.s), 2);
	rig_stop(&t);
}
END_TEST

struct forget_arg {
	struct batch *b;
	const char *group, *key;
	bool done;
	pthread_mutex_t lock;
};

static void *
forget_thread(void *arg)
{
	struct forget_arg *f = arg;

	if (f->key)
		batch_forget(f->b, f->group, f->key);
	else
		batch_forget_group(f->b, f->group);
	pthread_mutex_lock(&f->lock);
	f->done = true;
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

static bool
forget_done(struct forget_arg *f)
{
	bool d;

	pthread_mutex_lock(&f->lock);
	d = f->done;
	pthread_mutex_unlock(&f->lock);
	return d;
}

static void
wait_in_send(struct sink *s)
{
	double until = clock_mono() + POLL_LIMIT_S;

	pthread_mutex_lock(&s->lock);
	while (!s->in_send) {
		pthread_mutex_unlock(&s->lock);
		ck_assert_msg(clock_mono() < until, "no request started");
		usleep(POLL_US);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
}

static void
open_gate(struct sink *s)
{
	pthread_mutex_lock(&s->lock);
	s->open = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/*
 * A forget waits out the request carrying its key: a delete sent after it
 * cannot be overtaken by the add. With a payload changed meanwhile, the
 * key goes again after the request (forgotten here: never).
 */
static void
forget_during_send(bool whole_group)
{
	struct forget_arg f = { .group = "g", .key = whole_group ? NULL : "k" };
	struct rig t;
	pthread_t thread;

	rig_start(&t, 20, 0, 100, 0, 0);
	t.s.gate = true;	/* before the first request: the first add went alone */
	f.b = t.b;
	pthread_mutex_init(&f.lock, NULL);
	add_is(t.b, "g", "k", "p", BATCH_WAIT);
	wait_in_send(&t.s);
	add_is(t.b, "g", "k", "p2", BATCH_WAIT);
	pthread_create(&thread, NULL, forget_thread, &f);
	usleep(100000);
	ck_assert(!forget_done(&f));
	open_gate(&t.s);
	pthread_join(thread, NULL);
	ck_assert(forget_done(&f));
	ck_assert_int_eq(requests(&t.s), 1);
	usleep(100000);		/* longer than the window: nothing more is sent */
	ck_assert_int_eq(requests(&t.s), 1);
	rig_stop(&t);
	pthread_mutex_destroy(&f.lock);
}

START_TEST(test_forget_waits_for_the_request)
{
	forget_during_send(false);
}
END_TEST

START_TEST(test_forget_group_waits_for_the_request)
{
	forget_during_send(true);
}
END_TEST

/*
 * While adds keep coming (closer than the window), a group waits for more,
 * up to max_items; it goes once the burst moves on.
 */
START_TEST(test_burst_fills_one_request)
{
	struct rig t;
	char key[16];

	rig_start(&t, 1000, 60000, 100, 0, 0);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		add_is(t.b, i % 2 ? "g" : "h", key, "p", BATCH_WAIT);
		ck_assert_int_eq(requests(&t.s), 0);
		usleep(10000);
	}
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "k%02d", i);
		ck_assert_int_eq(await(t.b, i % 2 ? "g" : "h", key, "p").rc, 0);
	}
	ck_assert_int_eq(requests(&t.s), 2);
	ck_assert_uint_eq(t.s.count[0], 10);
	ck_assert_uint_eq(t.s.count[1], 10);
	rig_stop(&t);
}
END_TEST

/* An endless burst does not starve a group: its oldest entry goes after max_wait_ms. */
START_TEST(test_max_wait)
{
	struct rig t;

	rig_start(&t, 60000, 100, 100, 0, 0);
	/* Never optimistic: the longest it may wait. */
	ck_assert_uint_ge(add_is(t.b, "g", "k", "p", BATCH_WAIT).wait_ms, 100);
	ck_assert_int_eq(await(t.b, "g", "k", "p").rc, 0);
	ck_assert_int_eq(requests(&t.s), 1);
	rig_stop(&t);
}
END_TEST

START_TEST(test_forget_queued)
{
	struct rig t;
	struct batch_stats st;

	rig_start(&t, 150, 0, 100, 0, 0);
	add_is(t.b, "g", "k", "p", BATCH_WAIT);
	add_is(t.b, "g", "j", "p", BATCH_WAIT);
	batch_forget(t.b, "g", "k");
	batch_forget(t.b, "g", "nothing");
	ck_assert_int_eq(await(t.b, "g", "j", "p").rc, 0);
	ck_assert_int_eq(requests(&t.s), 1);
	ck_assert_uint_eq(t.s.count[0], 1);
	ck_assert_str_eq(t.s.keys[0][0], "j");
	batch_stats(t.b, &st);
	ck_assert_uint_eq(st.held, 0);
	rig_stop(&t);
}
END_TEST

/* Past held_max adds go alone; uncollected outcomes are dropped after keep_ms. */
START_TEST(test_held_max_and_keep)
{
	double until;
	struct rig t;
	struct batch_stats st;

	rig_start(&t, 50, 0, 100, 2, 50);
	add_is(t.b, "g", "b", "p", BATCH_WAIT);
	add_is(t.b, "g", "c", "p", BATCH_WAIT);
	add_is(t.b, "g", "d", "p", BATCH_ALONE);
	wait_requests(&t.s, 1);
	/* Nobody asks for b and c again: their outcomes go after keep_ms. */
	until = clock_mono() + POLL_LIMIT_S;
	do {
		ck_assert(clock_mono() < until);
		usleep(POLL_US * 10);
		batch_stats(t.b, &st);
	} while (st.held);
	rig_stop(&t);
}
END_TEST

/* Dropped at the end: what waits in a batch never outlives it. */
START_TEST(test_free_with_entries)
{
	struct rig t;

	rig_start(&t, 60000, 0, 100, 0, 0);
	add_is(t.b, "g", "b", "p", BATCH_WAIT);
	add_is(t.b, "h", "a", "p", BATCH_WAIT);
	add_is(t.b, "h", "b", "p", BATCH_WAIT);
	batch_free(t.b);
	ck_assert_int_eq(t.s.n, 0);
	sink_destroy(&t.s);
}
END_TEST

START_TEST(test_config_refused)
{
	struct batch_config c = { .window_ms = 10, .max_items = 0, .send = send_cb };
	struct batch *b;

	ck_assert_int_eq(batch_new(&c, &b), -EINVAL);
	c.max_items = 1;
	c.send = NULL;
	ck_assert_int_eq(batch_new(&c, &b), -EINVAL);
	ck_assert_ptr_null(b);
}
END_TEST

Suite *
batch_suite(void)
{
	Suite *s = suite_create("batch");
	TCase *core = tcase_create("core"), *limits = tcase_create("limits");

	tcase_set_timeout(core, 30);
	tcase_set_timeout(limits, 30);
	tcase_add_test(core, test_off);
	tcase_add_test(core, test_quiet_then_batched);
	tcase_add_test(core, test_max_items_splits);
	tcase_add_test(core, test_failure_reaches_each);
	tcase_add_test(core, test_payload_change);
	tcase_add_test(core, test_forget_waits_for_the_request);
	tcase_add_test(core, test_forget_group_waits_for_the_request);
	tcase_add_test(core, test_forget_queued);
	tcase_add_test(core, test_burst_fills_one_request);
	tcase_add_test(core, test_max_wait);
	tcase_add_test(limits, test_held_max_and_keep);
	tcase_add_test(limits, test_free_with_entries);
	tcase_add_test(limits, test_config_refused);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
