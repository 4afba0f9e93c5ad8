/* signals.c -- stop and reload signals for the two programs' main threads */
#include "signals.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"

void
signals_block(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int
signals_wait(const sigset_t *set, long timeout_ms, void (*on_hup)(void *), void *arg)
{
	uint64_t end = timeout_ms >= 0 ? clock_mono_ms() + (uint64_t)timeout_ms : 0;

	for (;;) {
		struct timespec ts;
		uint64_t now;
		int sig;

		if (timeout_ms < 0) {
			sig = sigwaitinfo(set, NULL);
		} else {
			now = clock_mono_ms();
			if (now >= end)
				return 0;
			ts.tv_sec = (time_t)((end - now) / 1000);
			ts.tv_nsec = (long)((end - now) % 1000) * 1000000L;
			sig = sigtimedwait(set, NULL, &ts);
		}
		/*
		 * -1 with EINTR comes after SIGSTOP/SIGCONT or a ptrace attach;
		 * EAGAIN is the timeout, seen again at the top.
		 */
		if (sig == SIGTERM || sig == SIGINT)
			return sig;
		if (sig == SIGHUP && on_hup)
			on_hup(arg);
	}
}

const char *
signals_name(int sig)
{
	switch (sig) {
	case SIGTERM:
		return "SIGTERM";
	case SIGINT:
		return "SIGINT";
	case SIGHUP:
		return "SIGHUP";
	default:
		return "signal";
	}
}
