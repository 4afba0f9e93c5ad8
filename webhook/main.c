/* main.c -- contact-webhook: flags, signals, and the drain on SIGTERM */
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <microhttpd.h>

#include "httpd.h"
#include "jsonparse.h"
#include "log.h"
#include "webhook.h"

#define TICK_MS 1000		/* webhook_tick() period */
#define MMAP_THRESHOLD (128 * 1024)	/* blocks this large are mapped, and unmapped when freed */
#define FD_RESERVE 64		/* descriptors kept for files, the API client, logs */

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Waits up to ms for a signal, calling webhook_tick() once a second
 * meanwhile; SIGHUP reloads the certificates. Returns SIGTERM or SIGINT,
 * or 0 when the time is up.
 */
static int
wait_signal(struct webhook *w, const sigset_t *sigs, uint64_t ms)
{
	uint64_t end = now_ms() + ms, now, step;
	struct timespec ts;
	int sig;

	while ((now = now_ms()) < end) {
		step = end - now < TICK_MS ? end - now : TICK_MS;
		ts.tv_sec = (time_t)(step / 1000);
		ts.tv_nsec = (long)(step % 1000) * 1000000L;
		sig = sigtimedwait(sigs, NULL, &ts);
		if (sig == SIGHUP)
			webhook_reload(w);
		else if (sig == SIGTERM || sig == SIGINT)
			return sig;
		else if (sig < 0 && errno == EAGAIN)
			webhook_tick(w);
	}
	return 0;
}

/* Waits for SIGTERM or SIGINT. */
static int
wait_for_stop(struct webhook *w, const sigset_t *sigs)
{
	int sig;

	while ((sig = wait_signal(w, sigs, UINT64_MAX / 2)) == 0)
		;
	return sig;
}

/*
 * Go raises its soft descriptor limit to the hard one at start; so do we,
 * since every connection is one. The connection cap stays below what the
 * limit allows.
 */
static void
raise_fd_limit(struct webhook_options *o)
{
	struct rlimit rl;
	rlim_t room;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	room = rl.rlim_cur > 2 * FD_RESERVE ? rl.rlim_cur - FD_RESERVE :
	    FD_RESERVE;
	if (rl.rlim_cur != RLIM_INFINITY && o->max_connections > room) {
		log_warn("--max-connections lowered to what the descriptor limit allows",
		    LOG_INT("wanted", o->max_connections), LOG_INT("allowed", room));
		o->max_connections = (unsigned int)room;
	}
}

/*
 * Readiness is false from now on, but requests are still answered as
 * before, keep-alive included, for delay_ms, the time it takes the
 * endpoint change to reach every API server. Another SIGTERM or SIGINT
 * cuts the wait short.
 */
static void
drain(struct webhook *w, const sigset_t *sigs, int sig, uint64_t delay_ms)
{
	webhook_drain(w);
	log_info("shutting down: not ready, still serving",
	    LOG_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
	    LOG_INT("delay_ms", delay_ms));
	if (wait_signal(w, sigs, delay_ms))
		log_info("second signal: stopping now");
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
	case FLAGS_RUN:
		break;
	case FLAGS_DONE:
		return EXIT_SUCCESS;
	case FLAGS_BAD:
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

	/*
	 * Request bodies and parse arenas above this are mapped and go back
	 * to the system when freed; a fixed threshold keeps glibc from
	 * raising it after the first large free (a burst then stays on the
	 * heap). See also webhook_tick().
	 */
	(void)mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
	raise_fd_limit(&o);
	if (webhook_start(&o, &w, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", WEBHOOK_PROGRAM, err);
		return EXIT_FAILURE;
	}
	log_info("serving", LOG_STR("version", MILO_VERSION),
	    LOG_STR("address", o.bind_address), LOG_INT("port", o.port),
	    LOG_STR("cert", o.cert_file),
	    LOG_STR("tls_min_version", o.tls_min_version == TLS_MIN_VERSION_13 ?
	    "VersionTLS13" : "VersionTLS12"),
	    LOG_BOOL("client_ca", o.client_ca_file != NULL),
	    /* lib/tls_transport.c, or GnuTLS's own on another libmicrohttpd */
	    LOG_STR("tls_transport", httpd_own_transport() ? "milo" : "gnutls"),
	    LOG_STR("libmicrohttpd", MHD_get_version()));

	sig = wait_for_stop(w, &sigs);
	drain(w, &sigs, sig, o.shutdown_delay_ms);
	log_info("finishing requests in flight; answers close their connections");
	webhook_stop(w);
	log_info("stopped");
	return EXIT_SUCCESS;
}
