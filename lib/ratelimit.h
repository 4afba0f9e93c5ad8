/* ratelimit.h -- a client-side request rate that learns the server's quota */
#ifndef MILO_RATELIMIT_H
#define MILO_RATELIMIT_H

#include <stdbool.h>

/*
 * Requests are spaced 1/rate apart (no bursts, so no window the server
 * counts in ever sees more than the rate). The rate is learned:
 *
 * - It starts at half the configured rate, and the first request waits one
 *   window: a process restarted a moment ago respects the window its
 *   predecessor filled.
 * - A server that states its quota (ratelimit-limit / ratelimit-policy)
 *   caps the rate at it.
 * - A 429 lowers the rate a little below what the server accepted in the
 *   last window (or halves it when nothing was accepted) and pauses for
 *   retry-after; that accepted rate is remembered as the quota.
 * - Without 429s the rate grows back: quickly while well below the
 *   remembered quota, slowly near and above it (probing whether it grew),
 *   and never above the configured rate.
 *
 * Thread-safe; one per provider account.
 */

#define RATELIMIT_WINDOW_S 1.0		/* a quota's window when the server does not say */
#define RATELIMIT_START_FRACTION 0.5	/* of the configured rate, after a start */
#define RATELIMIT_FAST_GROWTH 0.10	/* of the configured rate per second, far below a 429 */
#define RATELIMIT_SLOW_GROWTH 0.005	/* of the rate per second, near the last 429 */
#define RATELIMIT_MIN_RATE 0.05		/* requests per second: never stop entirely */

struct ratelimit;

/*
 * rate: the configured requests per second (> 0); start_delay_s: how long
 * the first request waits (< 0: RATELIMIT_WINDOW_S, a predecessor's
 * window; tests pass 0). Returns 0 or -EINVAL / -ENOMEM.
 */
int ratelimit_new(double rate, double start_delay_s, struct ratelimit **out);
void ratelimit_free(struct ratelimit *rl);

/*
 * Waits until a request may go (sleeping the calling thread) and takes its
 * slot. Returns the seconds waited.
 */
double ratelimit_acquire(struct ratelimit *rl);

/* What came back: a 2xx or any answer the server counted but did not throttle. */
void ratelimit_accepted(struct ratelimit *rl);
/* A 429; retry_after_s < 0 when the server did not say. */
void ratelimit_throttled(struct ratelimit *rl, double retry_after_s);
/*
 * The server's own statement of its quota: limit requests per window_s
 * (ratelimit-limit, ratelimit-policy's w=), and remaining in the current
 * window with reset_s to go (each < 0 when absent). An exhausted window
 * pauses requests until it resets (at most one request's spacing).
 */
void ratelimit_server(struct ratelimit *rl, double limit, double window_s,
    double remaining, double reset_s);

/* The rate in force now, requests per second (for a metric). */
double ratelimit_rate(struct ratelimit *rl);
/* The configured rate. */
double ratelimit_configured(struct ratelimit *rl);

#endif
