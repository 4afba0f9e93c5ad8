/* signals.h -- stop and reload signals for the two programs' main threads */
#ifndef MILO_SIGNALS_H
#define MILO_SIGNALS_H

#include <signal.h>

/*
 * Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and in every
 * thread it starts afterwards, which inherit the mask) so that only
 * signals_wait() sees them, and ignores SIGPIPE. Call before starting any
 * thread. Fills set with the three.
 */
void signals_block(sigset_t *set);

/*
 * Waits for SIGTERM or SIGINT and returns it; SIGHUP calls on_hup (when
 * not NULL) and the wait goes on. Anything else that wakes the wait (a
 * stop and continue, a debugger attaching, EINTR) is not a stop. With
 * timeout_ms >= 0, returns 0 once that much time has passed.
 */
int signals_wait(const sigset_t *set, long timeout_ms, void (*on_hup)(void *), void *arg);

/* "SIGTERM", "SIGINT", "SIGHUP" or "signal". Static. */
const char *signals_name(int sig);

#endif
