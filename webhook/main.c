/* main.c -- contact-webhook: flags, signals, and the drain on SIGTERM */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonparse.h"
#include "log.h"
#include "webhook.h"

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits for SIGTERM or SIGINT, reloading certificates on SIGHUP meanwhile. */
static int
wait_for_stop(struct webhook *w, const sigset_t *sigs)
{
	int sig;

	for (;;) {
		sig = sigwaitinfo(sigs, NULL);
		if (sig == SIGHUP)
			webhook_reload(w);
		else if (sig == SIGTERM || sig == SIGINT)
			return sig;
	}
}

/*
 * Readiness is false from now on, but requests are still answered for
 * delay_ms, the time it takes the endpoint change to reach every API
 * server. Another SIGTERM or SIGINT cuts the wait short.
 */
static void
drain(struct webhook *w, const sigset_t *sigs, int sig, uint64_t delay_ms)
{
	uint64_t end = now_ms() + delay_ms, now;
	struct timespec ts;

	webhook_drain(w);
	log_info("shutting down: not ready, still serving", "{s:s, s:I}",
	    "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT",
	    "delay_ms", (json_int_t)delay_ms);
	while ((now = now_ms()) < end) {
		ts.tv_sec = (time_t)((end - now) / 1000);
		ts.tv_nsec = (long)((end - now) % 1000) * 1000000L;
		sig = sigtimedwait(sigs, NULL, &ts);
		if (sig == SIGHUP) {
			webhook_reload(w);
		} else if (sig == SIGTERM || sig == SIGINT) {
			log_info("second signal: stopping now", NULL);
			break;
		}
	}
}

int
main(int argc, char **argv)
{
	struct webhook_options o;
	struct webhook *w;
	sigset_t sigs;
	char err[1024];
	int sig;

	switch (webhook_parse_flags(argc, argv, &o, err, sizeof(err))) {
	case WEBHOOK_FLAGS_RUN:
		break;
	case WEBHOOK_FLAGS_DONE:
		return EXIT_SUCCESS;
	case WEBHOOK_FLAGS_BAD:
		fprintf(stderr, "%s: %s\n", WEBHOOK_PROGRAM, err);
		return 2;
	}

	jsonparse_init();	/* review trees in per-thread arenas */

	/*
	 * Signals are taken synchronously by this thread; every thread the
	 * server starts inherits the mask and never sees them.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* after the mask: the flusher thread must not take the signals */
	if (log_set_flush_interval((unsigned int)o.log_flush_ms) != 0)
		fprintf(stderr, "%s: cannot buffer the log; writing every line "
		    "at once\n", WEBHOOK_PROGRAM);

	if (webhook_start(&o, &w, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", WEBHOOK_PROGRAM, err);
		return EXIT_FAILURE;
	}
	log_info("serving", "{s:s, s:s, s:i, s:s, s:s, s:b}",
	    "version", MILO_VERSION, "address", o.bind_address, "port", o.port,
	    "cert", o.cert_file, "tls_min_version",
	    o.tls_min_version == TLS_MIN_VERSION_13 ? "VersionTLS13" :
	    "VersionTLS12", "client_ca", o.client_ca_file != NULL);

	sig = wait_for_stop(w, &sigs);
	drain(w, &sigs, sig, o.shutdown_delay_ms);
	log_info("finishing requests in flight", NULL);
	webhook_stop(w);
	log_info("stopped", NULL);
	return EXIT_SUCCESS;
}
