/* clock.h -- monotonic time, deadlines for timed waits, RFC 3339 timestamps */
#ifndef MILO_CLOCK_H
#define MILO_CLOCK_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Monotonic seconds (fractional), for durations and timeouts. */
double clock_mono(void);
/* Monotonic milliseconds. */
uint64_t clock_mono_ms(void);

/*
 * Timed waits that a wall-clock jump can neither stall nor hurry (libuv's
 * uv_cond_timedwait): clock_cond_init makes a condition variable on
 * CLOCK_MONOTONIC, clock_cond_wait waits on it for at most ms (with the
 * mutex held, as pthread_cond_timedwait). clock_cond_wait returns 0 when
 * signalled (or woken spuriously), ETIMEDOUT when the time is up.
 */
int clock_cond_init(pthread_cond_t *c);
int clock_cond_wait(pthread_cond_t *c, pthread_mutex_t *m, unsigned long ms);

/*
 * Now in UTC as RFC 3339 with frac_digits fractional digits (0, 3 or 6):
 * "2026-11-25T17:05:23Z", "….123Z" (logs), "….123456Z" (Kubernetes
 * MicroTime). out gets "" if it is too small.
 */
void clock_rfc3339(char *out, size_t len, int frac_digits);

#endif
