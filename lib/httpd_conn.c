/* httpd_conn.c -- the server's connections: time budgets that trickling cannot stretch, the body budget */
#include "httpd_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "tls_transport.h"

static const char *const phase_names[CONN__PHASES] = {
	[CONN_READ_HEADER] = "read_header",
	[CONN_READ] = "read",
	[CONN_WRITE] = "write",
	[CONN_IDLE] = "idle",
};

/* A budget's deadline from an instant; 0 (none) when it never runs out. */
static uint64_t
deadline(uint64_t from_ms, uint32_t budget_ms)
{
	return budget_ms == HTTPD_NO_TIMEOUT ? 0 : from_ms + budget_ms;
}

/*
 * Phase changes happen on the connection's own thread; the sweeper only
 * reads them, so plain atomic stores suffice.
 */
static void
enter(struct conn_ctx *c, enum conn_phase p, uint64_t deadline_ms)
{
	atomic_store_explicit(&c->phase, (int)p, memory_order_relaxed);
	atomic_store_explicit(&c->deadline_ms, deadline_ms, memory_order_release);
}

void
peak_raise(atomic_size_t *peak, size_t v)
{
	size_t p = atomic_load_explicit(peak, memory_order_relaxed);

	while (v > p && !atomic_compare_exchange_weak_explicit(peak, &p, v,
	    memory_order_relaxed, memory_order_relaxed))
		;
}

struct conn_ctx *
conn_open(struct httpd *h, int fd)
{
	struct conn_ctx *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->h = h;
	c->fd = fd;
	c->request_ms = clock_mono_ms();
	enter(c, CONN_READ_HEADER, deadline(c->request_ms,
	    h->cfg.read_header_timeout_ms));
	pthread_mutex_lock(&h->conns_lock);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	pthread_mutex_unlock(&h->conns_lock);
	peak_raise(&h->conns_peak, atomic_fetch_add(&h->n_conns, 1) + 1);
	metric_inc(h->m.connections);
	return c;
}

/*
 * libmicrohttpd 0.9.75 reports a connection closed before it closes the
 * socket: once this has taken the connection out of the registry under
 * conns_lock, the sweeper can no longer shut down a descriptor number
 * that is about to be reused.
 */
void
conn_close(struct conn_ctx *c)
{
	struct httpd *h = c->h;

	pthread_mutex_lock(&h->conns_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&h->conns_lock);
	atomic_fetch_sub(&h->n_conns, 1);
	metric_dec(h->m.connections);
	/* The session is gone already (MHD_cleanup_connections()). */
	tls_transport_free(c->io);
	tls_cred_release(c->cred);
	free(c);
}

/* A keep-alive connection's next request: its header budget starts now. */
void
conn_request_line(struct conn_ctx *c)
{
	if (atomic_load_explicit(&c->phase, memory_order_relaxed) != CONN_IDLE)
		return;		/* the first request: counted from the accept */
	c->request_ms = clock_mono_ms();
	enter(c, CONN_READ_HEADER, deadline(c->request_ms,
	    c->h->cfg.read_header_timeout_ms));
}

void
conn_header_done(struct conn_ctx *c)
{
	c->header_ms = clock_mono_ms();
	enter(c, CONN_READ, deadline(c->request_ms, c->h->cfg.read_timeout_ms));
}

void
conn_body_done(struct conn_ctx *c)
{
	enter(c, CONN_WRITE, deadline(c->header_ms, c->h->cfg.write_timeout_ms));
}

void
conn_answered(struct conn_ctx *c)
{
	enter(c, CONN_IDLE, deadline(clock_mono_ms(), c->h->cfg.idle_timeout_ms));
}

/*
 * Shuts down every connection past its deadline. libmicrohttpd then sees
 * the socket end on its own thread and closes the connection as it would
 * any other; a suspended one when it is resumed.
 */
static void
sweep(struct httpd *h)
{
	uint64_t now = clock_mono_ms(), d;
	int phase;

	pthread_mutex_lock(&h->conns_lock);
	for (struct conn_ctx *c = h->conns; c; c = c->next) {
		d = atomic_load_explicit(&c->deadline_ms, memory_order_acquire);
		if (c->killed || d == 0 || now < d)
			continue;
		c->killed = true;
		/* Counted first: whoever sees the connection end sees it counted. */
		phase = atomic_load_explicit(&c->phase, memory_order_relaxed);
		metric_inc(h->m.timeouts[phase]);
		(void)shutdown(c->fd, SHUT_RDWR);
		log_debug("connection over its time budget: closed",
		    LOG_STR("budget", phase_names[phase]), LOG_INT("late_ms", now - d));
	}
	pthread_mutex_unlock(&h->conns_lock);
}

static void *
sweep_main(void *arg)
{
	struct httpd *h = arg;
	struct timespec until;

	pthread_mutex_lock(&h->sweep_lock);
	while (!h->sweep_stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += HTTPD_SWEEP_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!h->sweep_stop && pthread_cond_timedwait(&h->sweep_cond,
		    &h->sweep_lock, &until) != ETIMEDOUT)
			;
		if (h->sweep_stop)
			break;
		pthread_mutex_unlock(&h->sweep_lock);
		sweep(h);
		pthread_mutex_lock(&h->sweep_lock);
	}
	pthread_mutex_unlock(&h->sweep_lock);
	return NULL;
}

int
conns_start(struct httpd *h)
{
	pthread_condattr_t ca;
	int rc;

	pthread_mutex_init(&h->conns_lock, NULL);
	pthread_mutex_init(&h->sweep_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->sweep_cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = pthread_create(&h->sweeper, NULL, sweep_main, h);
	if (rc)
		return -rc;
	h->sweeping = true;
	return 0;
}

/* After MHD_stop_daemon(): every connection is gone. */
void
conns_stop(struct httpd *h)
{
	if (h->sweeping) {
		pthread_mutex_lock(&h->sweep_lock);
		h->sweep_stop = true;
		pthread_cond_signal(&h->sweep_cond);
		pthread_mutex_unlock(&h->sweep_lock);
		pthread_join(h->sweeper, NULL);
		h->sweeping = false;
	}
	pthread_cond_destroy(&h->sweep_cond);
	pthread_mutex_destroy(&h->sweep_lock);
	pthread_mutex_destroy(&h->conns_lock);
}

bool
body_reserve(struct httpd *h, size_t n)
{
	size_t cur = atomic_load_explicit(&h->body_bytes, memory_order_relaxed);

	do {
		if (n > h->cfg.body_budget || cur > h->cfg.body_budget - n)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&h->body_bytes, &cur,
	    cur + n, memory_order_relaxed, memory_order_relaxed));
	peak_raise(&h->body_peak, cur + n);
	metric_add(h->m.body_bytes, (double)n);
	return true;
}

void
body_release(struct httpd *h, size_t n)
{
	if (!n)
		return;
	atomic_fetch_sub_explicit(&h->body_bytes, n, memory_order_relaxed);
	metric_add(h->m.body_bytes, -(double)n);
}
