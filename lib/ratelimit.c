/* ratelimit.c -- a client-side request rate that learns the server's quota */
#include "ratelimit.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "clock.h"

#define RATELIMIT_HISTORY 4096		/* accepted requests remembered (times) */
#define RATELIMIT_NEAR 0.9		/* "near" the rate of the last 429 */
#define RATELIMIT_MARGIN 0.95		/* of the accepted rate, after a 429 */

struct ratelimit {
	pthread_mutex_t lock;
	double configured;	/* the operator's rate: never exceeded */
	double rate;		/* in force now */
	double server_cap;	/* what the server said its quota is; 0 when it did not */
	double throttled_at;	/* the rate in force at the last 429; 0 before any */
	double window;		/* seconds the server counts in */
	double next_at;		/* monotonic: the next request not before this */
	double blocked_until;	/* monotonic: nothing before this (429, exhausted window) */
	double grown_at;	/* monotonic: when the growth was last applied */
	double accepted[RATELIMIT_HISTORY];	/* a ring of accepted requests' times */
	size_t n_accepted, head;
};

int
ratelimit_new(double rate, double start_delay_s, struct ratelimit **out)
{
	struct ratelimit *rl;
	double now = clock_mono();

	*out = NULL;
	if (!(rate > 0) || !isfinite(rate))
		return -EINVAL;
	rl = calloc(1, sizeof(*rl));
	if (!rl)
		return -ENOMEM;
	pthread_mutex_init(&rl->lock, NULL);
	rl->configured = rate;
	rl->rate = fmax(rate * RATELIMIT_START_FRACTION, fmin(rate, RATELIMIT_MIN_RATE));
	rl->window = RATELIMIT_WINDOW_S;
	/* A predecessor may have filled the server's window just before it died. */
	rl->next_at = now + (start_delay_s >= 0 ? start_delay_s : RATELIMIT_WINDOW_S);
	rl->grown_at = now;
	*out = rl;
	return 0;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	pthread_mutex_destroy(&rl->lock);
	free(rl);
}

static double
ceiling(const struct ratelimit *rl)
{
	return rl->server_cap > 0 ? fmin(rl->configured, rl->server_cap) : rl->configured;
}

/* The rate grows back with time: fast far below the last 429, slowly near it. */
static void
grow(struct ratelimit *rl, double now)
{
	double dt = now - rl->grown_at;

	rl->grown_at = now;
	if (dt <= 0)
		return;
	if (!rl->throttled_at || rl->rate < RATELIMIT_NEAR * rl->throttled_at)
		rl->rate += RATELIMIT_FAST_GROWTH * rl->configured * dt;
	else
		rl->rate += RATELIMIT_SLOW_GROWTH * rl->rate * dt;
	rl->rate = fmin(rl->rate, ceiling(rl));
}

static void
sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

double
ratelimit_acquire(struct ratelimit *rl)
{
	double start = clock_mono();

	pthread_mutex_lock(&rl->lock);
	for (;;) {
		double now = clock_mono(), at;

		grow(rl, now);
		at = fmax(rl->next_at, rl->blocked_until);
		if (now >= at) {
			rl->next_at = fmax(now, rl->next_at) + 1 / rl->rate;
			break;
		}
		pthread_mutex_unlock(&rl->lock);
		sleep_s(at - now);
		pthread_mutex_lock(&rl->lock);
	}
	pthread_mutex_unlock(&rl->lock);
	return clock_mono() - start;
}

void
ratelimit_accepted(struct ratelimit *rl)
{
	pthread_mutex_lock(&rl->lock);
	rl->accepted[rl->head] = clock_mono();
	rl->head = (rl->head + 1) % RATELIMIT_HISTORY;
	if (rl->n_accepted < RATELIMIT_HISTORY)
		rl->n_accepted++;
	pthread_mutex_unlock(&rl->lock);
}

/* Requests accepted within the last window. Called with the lock. */
static size_t
accepted_recently(const struct ratelimit *rl, double now)
{
	size_t n = 0;

	for (size_t i = 0; i < rl->n_accepted; i++) {
		size_t at = (rl->head + RATELIMIT_HISTORY - 1 - i) % RATELIMIT_HISTORY;

		if (now - rl->accepted[at] > rl->window)
			break;
		n++;
	}
	return n;
}

void
ratelimit_throttled(struct ratelimit *rl, double retry_after_s)
{
	double now = clock_mono(), seen;
	size_t n;

	pthread_mutex_lock(&rl->lock);
	grow(rl, now);
	n = accepted_recently(rl, now);
	/*
	 * What the server took in its window is the best guess at its quota:
	 * run a little below it, and grow only slowly near it from now on.
	 */
	seen = n ? (double)n / rl->window : rl->rate / 2;
	rl->throttled_at = fmin(rl->rate, seen);
	rl->rate = fmax(RATELIMIT_MIN_RATE, fmin(rl->rate, RATELIMIT_MARGIN * seen));
	rl->blocked_until = fmax(rl->blocked_until,
	    now + (retry_after_s >= 0 ? retry_after_s : 1 / rl->rate));
	pthread_mutex_unlock(&rl->lock);
}

void
ratelimit_server(struct ratelimit *rl, double limit, double window_s, double remaining,
    double reset_s)
{
	double now = clock_mono();

	pthread_mutex_lock(&rl->lock);
	if (window_s > 0)
		rl->window = window_s;
	if (limit > 0) {
		rl->server_cap = limit / rl->window;
		rl->rate = fmin(rl->rate, ceiling(rl));
	}
	/*
	 * An exhausted window pauses us until it resets, but for no longer
	 * than one request's spacing: Resend reports the reset in whole
	 * seconds, and waiting all of it every time would cut throughput at
	 * the limit by a third. A 429 still stops us if others share the quota.
	 */
	if (remaining == 0 && reset_s > 0)
		rl->blocked_until = fmax(rl->blocked_until, now + fmin(reset_s, 1 / rl->rate));
	pthread_mutex_unlock(&rl->lock);
}

double
ratelimit_rate(struct ratelimit *rl)
{
	double r;

	pthread_mutex_lock(&rl->lock);
	grow(rl, clock_mono());
	r = rl->rate;
	pthread_mutex_unlock(&rl->lock);
	return r;
}

double
ratelimit_configured(struct ratelimit *rl)
{
	return rl->configured;
}
