/* httpd_defer.c -- threads for handlers that must wait, so the serving threads never do */
#include "httpd_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/*
 * A deferred request: its connection is suspended (libmicrohttpd leaves it
 * alone, so the request and its headers are this thread's until resumed);
 * the handler runs again with may_block set, its answer is kept in the
 * request, and the connection is resumed (defer_main()), which makes
 * libmicrohttpd call the access handler once more to queue it (httpd.c).
 */
static void
run(struct request *r)
{
	struct httpd_request req = {
		.method = r->method,
		.path = r->url,
		.body = buf_str(&r->body),
		.body_len = r->body.len,
		.conn = r->conn,
		.received_ms = r->received_ms,
		.may_block = true,
		.internal = r,
	};
	int rc;

	memset(&r->reply, 0, sizeof(r->reply));
	rc = r->route->handler(&req, &r->reply, r->route->arg);
	if (rc == HTTPD_DEFER)
		rc = -EDEADLK;	/* asking twice is a handler bug: 500 */
	r->handler_rc = rc;
	r->deferred = DEFER_DONE;
}

static void *
defer_main(void *arg)
{
	struct httpd *h = arg;
	struct defer_pool *p = &h->pool;
	struct request *r;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stop) {
			p->n_idle++;
			pthread_cond_wait(&p->work, &p->lock);
			p->n_idle--;
		}
		if (!p->head)
			break;	/* stopping, and nothing left */
		r = p->head;
		p->n_queued--;
		p->head = r->next_job;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->lock);
		run(r);
		metric_dec(h->m.deferred);
		/*
		 * The slot is given back before the answer goes, so a request
		 * sent once this one is answered finds it free; stopping still
		 * waits for the resume (resuming).
		 */
		pthread_mutex_lock(&p->lock);
		p->used--;
		p->resuming++;
		pthread_mutex_unlock(&p->lock);
		MHD_resume_connection(r->conn);
		pthread_mutex_lock(&p->lock);
		p->resuming--;
		pthread_cond_broadcast(&p->drained);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int
defer_init(struct httpd *h)
{
	struct defer_pool *p = &h->pool;

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->drained, NULL);
	p->max = h->cfg.defer_threads;
	return 0;
}

bool
defer_reserve(struct httpd *h)
{
	struct defer_pool *p = &h->pool;
	bool ok;

	pthread_mutex_lock(&p->lock);
	ok = !p->stop && p->used < p->max;
	if (ok)
		p->used++;
	pthread_mutex_unlock(&p->lock);
	return ok;
}

void
defer_unreserve(struct httpd *h)
{
	struct defer_pool *p = &h->pool;

	pthread_mutex_lock(&p->lock);
	p->used--;
	pthread_cond_broadcast(&p->drained);
	pthread_mutex_unlock(&p->lock);
}

/*
 * Queues r (its slot reserved, its connection suspended) and makes sure a
 * thread will take it: an idle one, else a new one. Slots never exceed
 * the threads that may exist, so a queued job never waits for a slot.
 * -EAGAIN when no thread could be started and none is there.
 */
int
defer_submit(struct httpd *h, struct request *r)
{
	struct defer_pool *p = &h->pool;
	int rc = 0;

	pthread_mutex_lock(&p->lock);
	r->next_job = NULL;
	if (p->tail)
		p->tail->next_job = r;
	else
		p->head = r;
	p->tail = r;
	p->n_queued++;
	/* An idle thread signalled for an earlier job is not idle for this one. */
	if (p->n_queued > p->n_idle && p->n_threads < p->max) {
		rc = pthread_create(&p->threads[p->n_threads], NULL, defer_main, h);
		if (rc == 0)
			p->n_threads++;
		else
			log_error("cannot start a thread for waiting handlers",
			    LOG_STR("error", strerror(rc)));
	}
	if (rc && p->n_threads == 0) {
		/* Nobody to run it: take it back, the caller answers. */
		p->head = p->tail = NULL;
		p->n_queued = 0;
		pthread_mutex_unlock(&p->lock);
		return -EAGAIN;
	}
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
	metric_inc(h->m.deferred);
	metric_inc(h->m.deferred_total);
	return 0;
}

/*
 * Waits until no deferred request is queued or running, i.e. every
 * suspended connection has been resumed: libmicrohttpd 0.9.75 aborts the
 * process if MHD_stop_daemon() finds one still suspended. Handlers bound
 * their own time, so this ends.
 */
void
defer_wait_idle(struct httpd *h)
{
	struct defer_pool *p = &h->pool;

	pthread_mutex_lock(&p->lock);
	p->stop = true;		/* no new reservations */
	while (p->used > 0 || p->resuming > 0)
		pthread_cond_wait(&p->drained, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void
defer_free(struct httpd *h)
{
	struct defer_pool *p = &h->pool;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned int i = 0; i < p->n_threads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->drained);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
}
