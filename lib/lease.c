/* lease.c -- leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm) */
#include "lease.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kube.h"
#include "log.h"

#define LEASE_JITTER 1.2	/* client-go's JitterFactor for the retry period */

struct lease {
	struct lease_config cfg;
	char *namespace, *name, *identity;
	char path[512], collection[512];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	atomic_bool leading;

	/* What we last saw of the record, and when (our clock, not theirs). */
	char *observed_holder;
	char *observed_renew;
	double observed_at;
	_Atomic double last_renew;	/* when we last renewed as leader */
	unsigned int seed;
};

static double
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
micro_now(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	if (snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    ts.tv_nsec / 1000) < 0)
		out[0] = '\0';
}

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
observe(struct lease *l, const char *holder, const char *renew)
{
	if (same(holder, l->observed_holder) && same(renew, l->observed_renew) &&
	    l->observed_at > 0)
		return;
	free(l->observed_holder);
	free(l->observed_renew);
	l->observed_holder = holder ? strdup(holder) : NULL;
	l->observed_renew = renew ? strdup(renew) : NULL;
	l->observed_at = mono();
}

static json_t *
new_spec(struct lease *l, const char *acquire, int transitions)
{
	char now[40];

	micro_now(now, sizeof(now));
	return json_pack("{s:s, s:i, s:s, s:s, s:i}", "holderIdentity", l->identity,
	    "leaseDurationSeconds", (int)l->cfg.duration_s, "acquireTime",
	    acquire ? acquire : now, "renewTime", now, "leaseTransitions", transitions);
}

/* One round of client-go's tryAcquireOrRenew. True when we hold the lease after it. */
static bool
try_acquire_or_renew(struct lease *l)
{
	struct kube_response resp;
	json_t *obj, *spec, *fresh;
	const char *holder, *renew, *acquire;
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
		kube_response_free(&resp);
		return rc == 0;
	}
	if (rc != 0) {
		kube_response_free(&resp);
		return false;
	}
	spec = json_object_get(resp.body, "spec");
	holder = json_string_value(json_object_get(spec, "holderIdentity"));
	renew = json_string_value(json_object_get(spec, "renewTime"));
	acquire = json_string_value(json_object_get(spec, "acquireTime"));
	transitions = (int)json_integer_value(json_object_get(spec, "leaseTransitions"));
	observe(l, holder, renew);
	mine = same(holder, l->identity);
	if (!mine && holder && holder[0] &&
	    l->observed_at + l->cfg.duration_s > mono()) {
		kube_response_free(&resp);
		return false;	/* someone else holds a valid lease */
	}
	fresh = new_spec(l, mine ? acquire : NULL, mine ? transitions : transitions + 1);
	if (!fresh || json_object_set_new(resp.body, "spec", fresh) != 0) {
		kube_response_free(&resp);
		return false;
	}
	obj = json_incref(resp.body);
	kube_response_free(&resp);
	/* PUT with the resourceVersion we read: two candidates cannot both win. */
	rc = kube_update(l->cfg.client, l->path, obj, &resp);
	json_decref(obj);
	if (rc == 0) {
		spec = json_object_get(resp.body, "spec");
		observe(l, json_string_value(json_object_get(spec, "holderIdentity")),
		    json_string_value(json_object_get(spec, "renewTime")));
	}
	kube_response_free(&resp);
	return rc == 0;
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

static void
set_leading(struct lease *l, bool leading)
{
	if (atomic_exchange(&l->leading, leading) == leading)
		return;
	log_info(leading ? "leader election: became the leader" :
	    "leader election: lost the lease", "{s:s, s:s}", "lease", l->name,
	    "identity", l->identity);
	if (l->cfg.on_change)
		l->cfg.on_change(leading, l->cfg.arg);
}

/* Waits s seconds or until stopped; returns true when stopping. */
static bool
pause_s(struct lease *l, double s)
{
	struct timespec until;
	bool stopping;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)s;
	until.tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->lock);
	while (!l->stopping && pthread_cond_timedwait(&l->wake, &l->lock, &until) == 0)
		;
	stopping = l->stopping;
	pthread_mutex_unlock(&l->lock);
	return stopping;
}

static void *
campaign(void *arg)
{
	struct lease *l = arg;

	for (;;) {
		double period = l->cfg.retry_period_s;

		if (try_acquire_or_renew(l)) {
			l->last_renew = mono();
			set_leading(l, true);
		} else if (atomic_load(&l->leading) &&
		    mono() - l->last_renew > l->cfg.renew_deadline_s) {
			/* Could not renew in time: stop acting before someone else starts. */
			set_leading(l, false);
		}
		if (!atomic_load(&l->leading))
			period *= 1 + (LEASE_JITTER * (double)(rand_r(&l->seed) % 1000) / 1000.0);
		if (pause_s(l, period))
			break;
	}
	if (atomic_load(&l->leading)) {
		set_leading(l, false);
		release(l);
	}
	return NULL;
}

bool
lease_leading(struct lease *l)
{
	/* Past the renew deadline we no longer trust that we lead. */
	return atomic_load(&l->leading) &&
	    mono() - l->last_renew <= l->cfg.renew_deadline_s;
}

int
lease_start(const struct lease_config *cfg, struct lease **out)
{
	struct lease *l = calloc(1, sizeof(*l));

	*out = NULL;
	if (!l)
		return -ENOMEM;
	l->cfg = *cfg;
	if (!l->cfg.duration_s)
		l->cfg.duration_s = LEASE_DURATION_S;
	if (!l->cfg.renew_deadline_s)
		l->cfg.renew_deadline_s = LEASE_RENEW_DEADLINE_S;
	if (!l->cfg.retry_period_s)
		l->cfg.retry_period_s = LEASE_RETRY_PERIOD_S;
	l->namespace = strdup(cfg->namespace);
	l->name = strdup(cfg->name);
	l->identity = strdup(cfg->identity);
	l->seed = (unsigned int)time(NULL);
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->wake, NULL);
	atomic_init(&l->leading, false);
	if (!l->namespace || !l->name || !l->identity ||
	    kube_path(l->path, sizeof(l->path), "coordination.k8s.io", "v1", l->namespace,
	    "leases", l->name, NULL) != 0 ||
	    kube_path(l->collection, sizeof(l->collection), "coordination.k8s.io", "v1",
	    l->namespace, "leases", NULL, NULL) != 0 ||
	    pthread_create(&l->thread, NULL, campaign, l) != 0) {
		free(l->namespace);
		free(l->name);
		free(l->identity);
		pthread_mutex_destroy(&l->lock);
		pthread_cond_destroy(&l->wake);
		free(l);
		return -ENOMEM;
	}
	*out = l;
	return 0;
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
	free(l->observed_holder);
	free(l->observed_renew);
	free(l->namespace);
	free(l->name);
	free(l->identity);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->wake);
	free(l);
}
