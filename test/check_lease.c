/* check_lease.c -- leader election on a Lease, against the kube stand-in */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "kube.h"
#include "lease.h"
#include "log.h"
#include "testutil.h"

Suite *lease_suite(void);

#define NS "default"
#define LEASE_NAME "milo-contacts-reconciler"
#define LEASES_PREFIX "/apis/coordination.k8s.io/"	/* for stand-in faults */
#define POLL_MS 20

/* Short timings that keep client-go's rule: duration > deadline > 1.2 x retry. */
#define DURATION 3
#define DEADLINE 2
#define RETRY 1

static int null_fd = -1;		/* the library logs go here */
static struct kube_client *kc;		/* the test's own view of the API */
static char lease_path[256];

/* A replica campaigning through its own client; counts what on_change said. */
struct candidate {
	const char *identity;
	struct kube_client *client;
	struct lease *l;
	atomic_int on;		/* the last on_change value */
	atomic_int wins, losses;
};

static struct candidate cand_a = { .identity = "replica-a" };
static struct candidate cand_b = { .identity = "replica-b" };

/* Leaders by the callbacks: never more than one, at any moment. */
static atomic_int leaders, max_leaders;

/* ---- fixtures and helpers ---- */

static void
candidate_reset(struct candidate *c)
{
	c->client = tu_kube_client(tu_kube.kubeconfig);
	c->l = NULL;
	atomic_store(&c->on, 0);
	atomic_store(&c->wins, 0);
	atomic_store(&c->losses, 0);
}

static void
setup(void)
{
	tu_kube_ready();
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	log_set_fd(null_fd);
	kc = tu_kube_client(tu_kube.kubeconfig);
	candidate_reset(&cand_a);
	candidate_reset(&cand_b);
	atomic_store(&leaders, 0);
	atomic_store(&max_leaders, 0);
	ck_assert_int_eq(kube_path(lease_path, sizeof(lease_path), "coordination.k8s.io", "v1",
	    NS, "leases", LEASE_NAME, NULL), 0);
}

static void
candidate_stop(struct candidate *c)
{
	lease_stop(c->l);
	c->l = NULL;
}

static void
teardown(void)
{
	/* Without fork, a failed test leaves its candidates running. */
	candidate_stop(&cand_a);
	candidate_stop(&cand_b);
	kube_client_free(cand_a.client);
	kube_client_free(cand_b.client);
	kube_client_free(kc);
	cand_a.client = cand_b.client = kc = NULL;
	log_set_fd(-1);
	if (null_fd >= 0)
		close(null_fd);
	null_fd = -1;
}

static void
on_change(bool leading, void *arg)
{
	struct candidate *c = arg;

	if (leading) {
		int n = atomic_fetch_add(&leaders, 1) + 1, max = atomic_load(&max_leaders);

		while (n > max && !atomic_compare_exchange_weak(&max_leaders, &max, n))
			;
		atomic_fetch_add(&c->wins, 1);
	} else {
		atomic_fetch_sub(&leaders, 1);
		atomic_fetch_add(&c->losses, 1);
	}
	atomic_store(&c->on, leading);
}

static void
candidate_start(struct candidate *c, unsigned int duration, unsigned int deadline,
    unsigned int retry)
{
	struct lease_config cfg = {
		.client = c->client, .namespace = NS, .name = LEASE_NAME,
		.identity = c->identity, .duration_s = duration,
		.renew_deadline_s = deadline, .retry_period_s = retry,
		.on_change = on_change, .arg = c,
	};

	ck_assert_int_eq(lease_start(&cfg, &c->l), 0);
	ck_assert_ptr_nonnull(c->l);
}

static bool
leads(const struct candidate *c)
{
	return c->l && lease_leading(c->l);
}

/* The invariant, checked on every poll: two candidates never both lead. */
static void
at_most_one(void)
{
	ck_assert_msg(!(leads(&cand_a) && leads(&cand_b)), "both candidates lead");
	ck_assert_int_le(atomic_load(&max_leaders), 1);
}

enum what { LEADS, FOLLOWS, TOLD_LEADS, TOLD_FOLLOWS, ANY_LEADS };

static bool
holds(enum what w, const struct candidate *c)
{
	switch (w) {
	case LEADS:
		return leads(c);
	case FOLLOWS:
		return !leads(c);
	case TOLD_LEADS:
		return atomic_load(&c->on) == 1;
	case TOLD_FOLLOWS:
		return atomic_load(&c->on) == 0;
	case ANY_LEADS:
		return leads(&cand_a) || leads(&cand_b);
	}
	return false;
}

/* Polls until w holds for c; fails after bound seconds. Returns the wait. */
static double
wait_for(enum what w, const struct candidate *c, double bound, const char *what)
{
	double t0 = clock_mono(), took;

	for (;;) {
		at_most_one();
		took = clock_mono() - t0;
		if (holds(w, c))
			return took;
		ck_assert_msg(took < bound, "%s: not within %.1f s", what, bound);
		tu_sleep_ms(POLL_MS);
	}
}

/* Polls for s seconds; w must hold for c all along. */
static void
hold_for(enum what w, const struct candidate *c, double s, const char *what)
{
	double t0 = clock_mono();

	while (clock_mono() - t0 < s) {
		at_most_one();
		ck_assert_msg(holds(w, c), "%s (after %.2f s)", what, clock_mono() - t0);
		tu_sleep_ms(POLL_MS);
	}
}

/* The Lease's spec as stored (new reference), or NULL when there is none. */
static json_t *
lease_spec(void)
{
	struct kube_response r;
	json_t *spec;
	int rc = kube_get(kc, lease_path, &r);

	if (rc == -EIO && kube_is_not_found(&r)) {
		kube_response_free(&r);
		return NULL;
	}
	ck_assert_msg(rc == 0, "get lease: %d, HTTP %ld", rc, r.status);
	spec = json_incref(json_object_get(r.body, "spec"));
	kube_response_free(&r);
	ck_assert_ptr_nonnull(spec);
	return spec;
}

static const char *
spec_str(const json_t *spec, const char *key)
{
	const char *s = json_string_value(json_object_get(spec, key));

	return s ? s : "";
}

static long
spec_int(const json_t *spec, const char *key)
{
	return (long)json_integer_value(json_object_get(spec, key));
}

/* Asserts who holds the Lease and how often it changed hands. */
static void
assert_lease(const char *holder, long transitions)
{
	json_t *spec = lease_spec();

	ck_assert_ptr_nonnull(spec);
	ck_assert_str_eq(spec_str(spec, "holderIdentity"), holder);
	ck_assert_int_eq(spec_int(spec, "leaseTransitions"), transitions);
	json_decref(spec);
}

/* Another replica's Lease, as its client-go would have written it. */
static void
create_foreign_lease(const char *holder, int duration, int transitions)
{
	struct kube_response r;
	char now[64], leases[256];
	json_t *obj;
	int rc;

	clock_rfc3339(now, sizeof(now), 6);
	ck_assert_int_eq(kube_path(leases, sizeof(leases), "coordination.k8s.io", "v1", NS,
	    "leases", NULL, NULL), 0);
	obj = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:i, s:s, s:s, s:i}}",
	    "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
	    "metadata", "name", LEASE_NAME, "namespace", NS,
	    "spec", "holderIdentity", holder, "leaseDurationSeconds", duration,
	    "acquireTime", now, "renewTime", now, "leaseTransitions", transitions);
	ck_assert_ptr_nonnull(obj);
	rc = kube_create(kc, leases, obj, &r);
	ck_assert_msg(rc == 0, "create lease: %d, HTTP %ld", rc, r.status);
	kube_response_free(&r);
	json_decref(obj);
}

/* The other replica renews: a new renewTime, written with its resourceVersion. */
static void
renew_foreign_lease(int duration)
{
	struct kube_response r;
	char now[64];
	json_t *obj;
	int rc;

	ck_assert_int_eq(kube_get(kc, lease_path, &r), 0);
	obj = json_incref(r.body);
	kube_response_free(&r);
	clock_rfc3339(now, sizeof(now), 6);
	json_object_set_new(json_object_get(obj, "spec"), "renewTime", json_string(now));
	json_object_set_new(json_object_get(obj, "spec"), "leaseDurationSeconds",
	    json_integer(duration));
	rc = kube_update(kc, lease_path, obj, &r);
	ck_assert_msg(rc == 0, "renew lease: %d, HTTP %ld", rc, r.status);
	kube_response_free(&r);
	json_decref(obj);
}

/* ---- core ---- */

START_TEST(test_single_candidate)
{
	json_t *spec;
	char *renewed, *acquired;

	ck_assert_ptr_null(lease_spec());
	candidate_start(&cand_a, DURATION, DEADLINE, RETRY);
	wait_for(LEADS, &cand_a, tu_slack(5), "a lone candidate leads");
	wait_for(TOLD_LEADS, &cand_a, tu_slack(1), "on_change(true)");
	ck_assert_int_eq(atomic_load(&cand_a.wins), 1);

	spec = lease_spec();
	ck_assert_ptr_nonnull(spec);
	ck_assert_str_eq(spec_str(spec, "holderIdentity"), cand_a.identity);
	ck_assert_int_eq(spec_int(spec, "leaseTransitions"), 0);
	ck_assert_int_eq(spec_int(spec, "leaseDurationSeconds"), DURATION);
	ck_assert_msg(strlen(spec_str(spec, "renewTime")) == 27, "renewTime %s",
	    spec_str(spec, "renewTime"));
	ck_assert_msg(strlen(spec_str(spec, "acquireTime")) == 27, "acquireTime %s",
	    spec_str(spec, "acquireTime"));
	renewed = strdup(spec_str(spec, "renewTime"));
	acquired = strdup(spec_str(spec, "acquireTime"));
	json_decref(spec);

	/* It keeps renewing every retry period, as the holder, without a transition. */
	{
		double t0 = clock_mono();

		for (;;) {
			spec = lease_spec();
			if (strcmp(spec_str(spec, "renewTime"), renewed) != 0)
				break;
			json_decref(spec);
			ck_assert_msg(clock_mono() - t0 < tu_slack(RETRY + 3), "no renewal");
			tu_sleep_ms(100);
		}
	}
	ck_assert_str_eq(spec_str(spec, "holderIdentity"), cand_a.identity);
	ck_assert_str_eq(spec_str(spec, "acquireTime"), acquired);
	ck_assert_int_eq(spec_int(spec, "leaseTransitions"), 0);
	json_decref(spec);
	free(renewed);
	free(acquired);
	ck_assert(leads(&cand_a));
	ck_assert_int_eq(atomic_load(&cand_a.wins), 1);

	/* Stopping releases: the holder is cleared, the count kept. */
	candidate_stop(&cand_a);
	ck_assert_int_eq(atomic_load(&cand_a.on), 0);
	ck_assert_int_eq(atomic_load(&cand_a.losses), 1);
	assert_lease("", 0);
}
END_TEST

START_TEST(test_handover_on_stop)
{
	/* A long lease, so that "quickly" cannot be the lease running out. */
	const unsigned int duration = 8, deadline = 5;
	double took;

	candidate_start(&cand_a, duration, deadline, RETRY);
	wait_for(LEADS, &cand_a, tu_slack(5), "the first candidate leads");
	candidate_start(&cand_b, duration, deadline, RETRY);
	hold_for(LEADS, &cand_a, 1.5, "the leader keeps leading");
	ck_assert_int_eq(atomic_load(&cand_b.wins), 0);
	assert_lease(cand_a.identity, 0);

	candidate_stop(&cand_a);
	ck_assert_int_eq(atomic_load(&cand_a.on), 0);
	took = wait_for(LEADS, &cand_b, duration, "the other candidate takes over");
	ck_assert_msg(took < duration - 3, "takeover after %.2f s: the lease ran out instead"
	    " of being released", took);
	wait_for(TOLD_LEADS, &cand_b, tu_slack(1), "on_change(true) for the successor");
	assert_lease(cand_b.identity, 1);
	ck_assert_int_eq(atomic_load(&max_leaders), 1);

	candidate_stop(&cand_b);
	assert_lease("", 1);
}
END_TEST

/* Both start at once on no Lease: one creates it and leads, the other follows. */
START_TEST(test_race_to_create)
{
	const struct candidate *winner, *other;

	candidate_start(&cand_a, DURATION, DEADLINE, RETRY);
	candidate_start(&cand_b, DURATION, DEADLINE, RETRY);
	wait_for(ANY_LEADS, NULL, tu_slack(5), "one of two candidates leads");
	winner = leads(&cand_a) ? &cand_a : &cand_b;
	other = winner == &cand_a ? &cand_b : &cand_a;
	hold_for(LEADS, winner, DURATION + 0.5, "the first leader keeps leading");
	ck_assert(!leads(other));
	ck_assert_int_eq(atomic_load(&other->wins), 0);
	ck_assert_int_eq(atomic_load(&winner->wins), 1);
	assert_lease(winner->identity, 0);
	ck_assert_int_eq(atomic_load(&max_leaders), 1);
}
END_TEST

/*
 * Another replica's Lease: not taken while its record's duration has not
 * run out (however short ours is), nor while it is renewed; taken over
 * once renewals stop, no sooner than the duration after the last one.
 */
START_TEST(test_foreign_holder)
{
	double t0, last_renew = 0, took;

	create_foreign_lease("other-replica", 30, 4);
	candidate_start(&cand_a, DURATION, DEADLINE, RETRY);
	/* Longer than our duration plus two jittered retry periods. */
	hold_for(FOLLOWS, &cand_a, DURATION + 2 * 1.2 * RETRY + 0.3,
	    "a lease was taken before the record's 30 s ran out");

	t0 = clock_mono();
	while (clock_mono() - t0 < DURATION + 0.5) {
		last_renew = clock_mono();
		renew_foreign_lease(DURATION);
		hold_for(FOLLOWS, &cand_a, 0.5, "a renewed foreign lease was taken");
	}
	ck_assert_int_eq(atomic_load(&cand_a.wins), 0);
	assert_lease("other-replica", 4);

	wait_for(LEADS, &cand_a, DURATION + 2 * 2.2 * RETRY + tu_slack(1),
	    "an abandoned lease is taken over");
	took = clock_mono() - last_renew;
	ck_assert_msg(took >= DURATION - 0.05, "taken %.2f s after the last renewal", took);
	{
		json_t *spec = lease_spec();

		ck_assert_str_eq(spec_str(spec, "holderIdentity"), cand_a.identity);
		ck_assert_int_eq(spec_int(spec, "leaseTransitions"), 5);
		ck_assert_int_eq(spec_int(spec, "leaseDurationSeconds"), DURATION);
		json_decref(spec);
	}
	candidate_stop(&cand_a);
}
END_TEST

/* ---- limits ---- */

/*
 * The API fails every Lease call: the leader must stop leading by its renew
 * deadline (lease_leading() and on_change both), the other must not lead,
 * and once the API is back exactly one of them leads.
 */
START_TEST(test_renew_failure)
{
	double t0, took;

	candidate_start(&cand_a, DURATION, DEADLINE, RETRY);
	wait_for(TOLD_LEADS, &cand_a, tu_slack(5), "the first candidate leads");
	candidate_start(&cand_b, DURATION, DEADLINE, RETRY);
	hold_for(LEADS, &cand_a, 0.5, "the leader keeps leading");

	tu_standin_post(&tu_kube, "fail", "{\"pathPrefix\": \"%s\", \"code\": 500}",
	    LEASES_PREFIX);
	t0 = clock_mono();
	took = wait_for(FOLLOWS, &cand_a, DEADLINE + tu_slack(1), "lease_leading() turns false");
	ck_assert_msg(took <= DEADLINE + tu_slack(0.5), "led %.2f s without renewing", took);
	wait_for(TOLD_FOLLOWS, &cand_a, DEADLINE + tu_slack(1.5) - (clock_mono() - t0),
	    "on_change(false) by the deadline");
	ck_assert_int_eq(atomic_load(&cand_a.losses), 1);
	hold_for(FOLLOWS, &cand_b, 1.0, "a candidate led without the API");
	ck_assert_int_eq(atomic_load(&cand_b.wins), 0);

	tu_standin_post(&tu_kube, "fail", "{\"clear\": true}");
	wait_for(ANY_LEADS, NULL, DURATION + 2.2 * RETRY + tu_slack(2),
	    "someone leads once the API is back");
	{
		const struct candidate *winner = leads(&cand_a) ? &cand_a : &cand_b;
		const struct candidate *other = winner == &cand_a ? &cand_b : &cand_a;

		hold_for(LEADS, winner, 1.0, "the new leader keeps leading");
		ck_assert(!leads(other));
		assert_lease(winner->identity, winner == &cand_a ? 0 : 1);
	}
	ck_assert_int_eq(atomic_load(&max_leaders), 1);
	candidate_stop(&cand_a);
	candidate_stop(&cand_b);
}
END_TEST

/*
 * Lease calls hang longer than the deadline: the election thread is stuck
 * in a request, yet lease_leading() and on_change(false) come on time, and
 * a renewal that finished too late does not count as leading.
 */
START_TEST(test_hung_requests)
{
	double t0;

	candidate_start(&cand_a, DURATION, DEADLINE, RETRY);
	wait_for(TOLD_LEADS, &cand_a, tu_slack(5), "a lone candidate leads");
	tu_standin_post(&tu_kube, "latency", "{\"seconds\": 1.5, \"pathPrefix\": \"%s\"}",
	    LEASES_PREFIX);
	t0 = clock_mono();
	wait_for(FOLLOWS, &cand_a, DEADLINE + tu_slack(0.5), "lease_leading() turns false");
	wait_for(TOLD_FOLLOWS, &cand_a, DEADLINE + tu_slack(1) - (clock_mono() - t0),
	    "on_change(false) while a request hangs");
	/*
	 * The next round starts within a retry period and takes 3 s (GET and
	 * PUT): past the deadline, so it must not count.
	 */
	hold_for(FOLLOWS, &cand_a, RETRY + 3.3 - (clock_mono() - t0),
	    "a too-late renewal made a leader");
	ck_assert_int_eq(atomic_load(&cand_a.wins), 1);

	tu_standin_post(&tu_kube, "latency", "{\"seconds\": 0, \"pathPrefix\": \"%s\"}",
	    LEASES_PREFIX);
	wait_for(TOLD_LEADS, &cand_a, 1.5 + 2.2 * RETRY + tu_slack(2), "leads again");
	ck_assert_int_eq(atomic_load(&cand_a.wins), 2);
	assert_lease(cand_a.identity, 0);
	candidate_stop(&cand_a);
}
END_TEST

START_TEST(test_config_rejected)
{
	static const struct { unsigned int duration, deadline, retry; } bad[] = {
		{ 2, 2, 1 },	/* duration must exceed the deadline */
		{ 2, 3, 1 },
		{ 3, 2, 2 },	/* the deadline must exceed 1.2 x the retry period */
		{ 5, 1, 1 },
		{ 5, 0, 1 },	/* the default deadline (10 s) is over this duration */
	};
	struct lease_config cfg = {
		.client = cand_a.client, .namespace = NS, .name = LEASE_NAME,
		.identity = cand_a.identity, .duration_s = DURATION,
		.renew_deadline_s = DEADLINE, .retry_period_s = RETRY,
	};
	struct lease *l;
	json_t *spec;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lease_config c = cfg;

		c.duration_s = bad[i].duration;
		c.renew_deadline_s = bad[i].deadline;
		c.retry_period_s = bad[i].retry;
		l = (struct lease *)(void *)&cfg;	/* must be reset */
		ck_assert_msg(lease_start(&c, &l) == -EINVAL, "%u/%u/%u accepted",
		    bad[i].duration, bad[i].deadline, bad[i].retry);
		ck_assert_ptr_null(l);
	}
	{
		struct lease_config c[6];

		for (size_t i = 0; i < 6; i++)
			c[i] = cfg;
		c[0].client = NULL;
		c[1].namespace = NULL;
		c[2].name = NULL;
		c[3].identity = NULL;
		c[4].identity = "";
		c[5].name = "";
		for (size_t i = 0; i < 6; i++) {
			l = (struct lease *)(void *)&cfg;
			ck_assert_msg(lease_start(&c[i], &l) == -EINVAL, "case %zu accepted", i);
			ck_assert_ptr_null(l);
		}
	}
	lease_stop(NULL);
	ck_assert_ptr_null(lease_spec());	/* nothing was started */

	/* Zeros are client-go's 15/10/2. */
	cfg.duration_s = cfg.renew_deadline_s = cfg.retry_period_s = 0;
	ck_assert_int_eq(lease_start(&cfg, &l), 0);
	{
		double t0 = clock_mono();

		while (!lease_leading(l)) {
			ck_assert_msg(clock_mono() - t0 < tu_slack(5), "the default config never led");
			tu_sleep_ms(POLL_MS);
		}
	}
	spec = lease_spec();
	ck_assert_int_eq(spec_int(spec, "leaseDurationSeconds"), LEASE_DURATION_S);
	json_decref(spec);
	lease_stop(l);
	assert_lease("", 0);
}
END_TEST

Suite *
lease_suite(void)
{
	static const struct tu_fixtures fx = { tu_kube_start, tu_kube_stop, setup, teardown };
	Suite *s = suite_create("lease");
	TCase *core = tu_tcase(s, "core", &fx, 60);
	TCase *limits = tu_tcase(s, "limits", &fx, 60);

	tcase_add_test(core, test_single_candidate);
	tcase_add_test(core, test_handover_on_stop);
	tcase_add_test(core, test_race_to_create);
	tcase_add_test(core, test_foreign_holder);
	tcase_add_test(limits, test_renew_failure);
	tcase_add_test(limits, test_hung_requests);
	tcase_add_test(limits, test_config_rejected);
	return s;
}
