/* lease.c -- leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm) */
#include "lease.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "kube.h"
#include "log.h"

#define LEASE_JITTER 1.2	/* client-go's JitterFactor for the retry period */

struct lease {
	struct lease_config cfg;
	char *namespace, *name, *identity;
	char path[KUBE_PATH_MAX], collection[KUBE_PATH_MAX];
	pthread_t thread;		/* campaigns: reads and writes the Lease */
	pthread_t watchdog;		/* ends leadership on time, even mid-request */
	pthread_mutex_t lock;		/* guards stopping; wake's mutex */
	pthread_cond_t wake;		/* on CLOCK_MONOTONIC */
	pthread_mutex_t change_lock;	/* one on_change at a time, in order */
	bool stopping;
	atomic_bool leading;

	/* What we last saw of the record, and when (our clock, not theirs). */
	char *observed_holder;
	char *observed_renew;
	long observed_duration;		/* the record's leaseDurationSeconds */
	double observed_at;
	_Atomic double last_renew;	/* when the last successful round began */
	unsigned int seed;
};

/* What one round of tryAcquireOrRenew found. */
enum round {
	ROUND_FAILED,	/* no answer, a conflict, a refusal: try again */
	ROUND_HELD,	/* we hold the lease now */
	ROUND_OTHER,	/* another holder's lease is valid */
};

static bool
same(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/*
 * Validity is judged by when *we* saw the record change, plus its duration:
 * clocks on other replicas do not matter (client-go's observedTime).
 */
static void
observe(struct lease *l, const json_t *spec)
{
	const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
	const char *renew = json_string_value(json_object_get(spec, "renewTime"));
	json_int_t duration = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));

	if (same(holder, l->observed_holder) && same(renew, l->observed_renew) &&
	    duration == l->observed_duration && l->observed_at > 0)
		return;
	free(l->observed_holder);
	free(l->observed_renew);
	l->observed_holder = holder ? strdup(holder) : NULL;
	l->observed_renew = renew ? strdup(renew) : NULL;
	l->observed_duration = (long)duration;
	l->observed_at = clock_mono();
}

/*
 * Another holder's lease is valid for the duration *its record* states
 * (client-go's rule): a replica configured with a longer lease than ours
 * must not be robbed when our own, shorter duration runs out.
 */
static bool
held_by_other(const struct lease *l)
{
	double duration = l->observed_duration > 0 ? (double)l->observed_duration :
	    (double)l->cfg.duration_s;

	return l->observed_holder && l->observed_holder[0] &&
	    !same(l->observed_holder, l->identity) &&
	    l->observed_at + duration > clock_mono();
}

static json_t *
new_spec(struct lease *l, const char *acquire, int transitions)
{
	char now[40];

	clock_rfc3339(now, sizeof(now), 6);	/* a MicroTime */
	return json_pack("{s:s, s:i, s:s, s:s, s:i}", "holderIdentity", l->identity,
	    "leaseDurationSeconds", (int)l->cfg.duration_s, "acquireTime",
	    acquire ? acquire : now, "renewTime", now, "leaseTransitions", transitions);
}

/* One round of client-go's tryAcquireOrRenew. */
static enum round
try_acquire_or_renew(struct lease *l)
{
	struct kube_response resp;
	json_t *obj, *spec, *fresh;
	const char *acquire;
	int transitions, rc;
	bool mine;

	rc = kube_get(l->cfg.client, l->path, &resp);
	if (rc == -EIO && kube_is_not_found(&resp)) {
		kube_response_free(&resp);
		obj = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion",
		    "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name", l->name,
		    "namespace", l->namespace, "spec", new_spec(l, NULL, 0));
		rc = obj ? kube_create(l->cfg.client, l->collection, obj, &resp) : -ENOMEM;
		json_decref(obj);
		if (rc == 0)
			observe(l, json_object_get(resp.body, "spec"));
		kube_response_free(&resp);
		return rc == 0 ? ROUND_HELD : ROUND_FAILED;
	}
	if (rc != 0) {
		kube_response_free(&resp);
		return ROUND_FAILED;
	}
	spec = json_object_get(resp.body, "spec");
	acquire = json_string_value(json_object_get(spec, "acquireTime"));
	transitions = (int)json_integer_value(json_object_get(spec, "leaseTransitions"));
	observe(l, spec);
	if (held_by_other(l)) {
		kube_response_free(&resp);
		return ROUND_OTHER;
	}
	mine = same(l->observed_holder, l->identity);
	fresh = new_spec(l, mine ? acquire : NULL, mine ? transitions : transitions + 1);
	if (!fresh || json_object_set_new(resp.body, "spec", fresh) != 0) {
		kube_response_free(&resp);
		return ROUND_FAILED;
	}
	obj = json_incref(resp.body);
	kube_response_free(&resp);
	/* PUT with the resourceVersion we read: two candidates cannot both win. */
	rc = kube_update(l->cfg.client, l->path, obj, &resp);
	json_decref(obj);
	if (rc == 0)
		observe(l, json_object_get(resp.body, "spec"));
	kube_response_free(&resp);
	return rc == 0 ? ROUND_HELD : ROUND_FAILED;
}

/* Clears the holder so a successor need not wait for the lease to expire. */
static void
release(struct lease *l)
{
	struct kube_response resp;
	json_t *spec;

	if (kube_get(l->cfg.client, l->path, &resp) == 0) {
		spec = json_object_get(resp.body, "spec");
		if (same(json_string_value(json_object_get(spec, "holderIdentity")),
		    l->identity)) {
			json_t *obj = json_incref(resp.body);

			json_object_set_new(spec, "holderIdentity", json_string(""));
			json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
			kube_response_free(&resp);
			kube_update(l->cfg.client, l->path, obj, &resp);
			json_decref(obj);
		}
	}
	kube_response_free(&resp);
}

/* Flips leadership and tells the caller; change_lock held. */
static void
change(struct lease *l, bool leading)
{
	if (atomic_exchange(&l->leading, leading) == leading)
		return;
	log_info(leading ? "leader election: became the leader" :
	    "leader election: lost the lease",
	    LOG_STR("lease", l->name), LOG_STR("identity", l->identity));
	if (l->cfg.on_change)
		l->cfg.on_change(leading, l->cfg.arg);
}

static void
set_leading(struct lease *l, bool leading)
{
	pthread_mutex_lock(&l->change_lock);
	change(l, leading);
	pthread_mutex_unlock(&l->change_lock);
}

static void
wake_all(struct lease *l)
{
	pthread_mutex_lock(&l->lock);
	pthread_cond_broadcast(&l->wake);
	pthread_mutex_unlock(&l->lock);
}

/* A round that began at started succeeded: we lead until started + deadline. */
static void
renewed(struct lease *l, double started)
{
	pthread_mutex_lock(&l->change_lock);
	l->last_renew = started;
	change(l, true);
	pthread_mutex_unlock(&l->change_lock);
	wake_all(l);	/* the watchdog re-arms for the new deadline */
}

/* Past the renew deadline we stop acting, before anyone else may start. */
static void
lose_if_stale(struct lease *l)
{
	pthread_mutex_lock(&l->change_lock);
	if (atomic_load(&l->leading) &&
	    clock_mono() - l->last_renew > l->cfg.renew_deadline_s)
		change(l, false);
	pthread_mutex_unlock(&l->change_lock);
}

/* Waits until the monotonic time due or until stopped; returns true when stopping. */
static bool
wait_until(struct lease *l, double due)
{
	bool stopping;
	double now;

	pthread_mutex_lock(&l->lock);
	while (!l->stopping && (now = clock_mono()) < due)
		clock_cond_wait(&l->wake, &l->lock, (unsigned long)((due - now) * 1000) + 1);
	stopping = l->stopping;
	pthread_mutex_unlock(&l->lock);
	return stopping;
}

static void *
campaign(void *arg)
{
	struct lease *l = arg;

	for (;;) {
		double period = l->cfg.retry_period_s, started = clock_mono();
		enum round r = try_acquire_or_renew(l);

		/*
		 * The lease was written at some point after started, so others
		 * judge it from then on or later: counting from started keeps
		 * us on the safe side of them. A round slower than the deadline
		 * proves nothing.
		 */
		if (r == ROUND_HELD && clock_mono() - started <= l->cfg.renew_deadline_s)
			renewed(l, started);
		else if (r == ROUND_OTHER)
			set_leading(l, false);	/* someone else holds it: we lost */
		else
			lose_if_stale(l);
		if (!atomic_load(&l->leading))
			period *= 1 + (LEASE_JITTER * (double)(rand_r(&l->seed) % 1000) / 1000.0);
		if (wait_until(l, clock_mono() + period))
			break;
	}
	pthread_mutex_lock(&l->change_lock);
	if (atomic_load(&l->leading)) {
		change(l, false);
		pthread_mutex_unlock(&l->change_lock);
		release(l);
	} else {
		pthread_mutex_unlock(&l->change_lock);
	}
	return NULL;
}

/*
 * The campaign thread can sit in one request for the client's whole
 * timeout; this one makes sure on_change(false) still comes by the
 * renew deadline.
 */
static void *
watch_deadline(void *arg)
{
	struct lease *l = arg;

	for (;;) {
		double due = atomic_load(&l->leading) ?
		    l->last_renew + l->cfg.renew_deadline_s + 0.001 :
		    clock_mono() + l->cfg.retry_period_s;

		if (wait_until(l, due))
			return NULL;
		lose_if_stale(l);
	}
}

bool
lease_leading(struct lease *l)
{
	/* Past the renew deadline we no longer trust that we lead. */
	return atomic_load(&l->leading) &&
	    clock_mono() - l->last_renew <= l->cfg.renew_deadline_s;
}

long
lease_remaining_ms(struct lease *l)
{
	double left;

	if (!atomic_load(&l->leading))
		return 0;
	left = l->last_renew + l->cfg.renew_deadline_s - clock_mono();
	return left > 0 ? (long)(left * 1000) : 0;
}

/* client-go's validation: LeaseDuration > RenewDeadline > JitterFactor x RetryPeriod > 0. */
static bool
config_valid(const struct lease_config *c)
{
	return c->client && c->namespace && c->namespace[0] && c->name && c->name[0] &&
	    c->identity && c->identity[0] && c->retry_period_s > 0 &&
	    c->duration_s > c->renew_deadline_s &&
	    (double)c->renew_deadline_s > LEASE_JITTER * (double)c->retry_period_s;
}

/* Replicas started in the same second must not jitter in step. */
static unsigned int
seed_for(const char *identity)
{
	unsigned int h = (unsigned int)time(NULL) ^ (unsigned int)getpid();

	for (const char *p = identity; *p; p++)
		h = h * 31 + (unsigned char)*p;
	return h;
}

static void
lease_free(struct lease *l)
{
	free(l->observed_holder);
	free(l->observed_renew);
	free(l->namespace);
	free(l->name);
	free(l->identity);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->change_lock);
	pthread_cond_destroy(&l->wake);
	free(l);
}

static int
init_sync(struct lease *l)
{
	if (clock_cond_init(&l->wake) != 0)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->change_lock, NULL);
	return 0;
}

int
lease_start(const struct lease_config *cfg, struct lease **out)
{
	struct lease *l;
	int rc = -ENOMEM;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->cfg = *cfg;
	if (!l->cfg.duration_s)
		l->cfg.duration_s = LEASE_DURATION_S;
	if (!l->cfg.renew_deadline_s)
		l->cfg.renew_deadline_s = LEASE_RENEW_DEADLINE_S;
	if (!l->cfg.retry_period_s)
		l->cfg.retry_period_s = LEASE_RETRY_PERIOD_S;
	if (!config_valid(&l->cfg)) {
		free(l);
		return -EINVAL;
	}
	if (init_sync(l) != 0) {
		free(l);
		return -ENOMEM;
	}
	l->namespace = strdup(cfg->namespace);
	l->name = strdup(cfg->name);
	l->identity = strdup(cfg->identity);
	l->seed = seed_for(cfg->identity);
	atomic_init(&l->leading, false);
	if (!l->namespace || !l->name || !l->identity)
		goto fail;
	if (kube_path(l->path, sizeof(l->path), "coordination.k8s.io", "v1", l->namespace,
	    "leases", l->name, NULL) != 0 ||
	    kube_path(l->collection, sizeof(l->collection), "coordination.k8s.io", "v1",
	    l->namespace, "leases", NULL, NULL) != 0) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	if (pthread_create(&l->watchdog, NULL, watch_deadline, l) != 0)
		goto fail;
	if (pthread_create(&l->thread, NULL, campaign, l) != 0) {
		pthread_mutex_lock(&l->lock);
		l->stopping = true;
		pthread_cond_broadcast(&l->wake);
		pthread_mutex_unlock(&l->lock);
		pthread_join(l->watchdog, NULL);
		goto fail;
	}
	*out = l;
	return 0;
fail:
	lease_free(l);
	return rc;
}

void
lease_stop(struct lease *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stopping = true;
	pthread_cond_broadcast(&l->wake);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	pthread_join(l->watchdog, NULL);
	lease_free(l);
}
