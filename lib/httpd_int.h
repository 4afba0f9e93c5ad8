/* httpd_int.h -- what httpd.c, httpd_conn.c and httpd_defer.c share; no other module includes it */
#ifndef MILO_HTTPD_INT_H
#define MILO_HTTPD_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "httpd.h"

struct metric_series;
struct tls_cred;
struct tls_transport;

/* Which budget a connection is under (httpd.h explains each). */
enum conn_phase {
	CONN_READ_HEADER,	/* handshake and request header */
	CONN_READ,		/* the body */
	CONN_WRITE,		/* the handler and the answer */
	CONN_IDLE,		/* keep-alive, waiting for a request line */
	CONN__PHASES,
};

/* Per connection: from NOTIFY_CONNECTION STARTED to CLOSED (httpd_conn.c). */
struct conn_ctx {
	struct httpd *h;
	struct tls_cred *cred;		/* what its handshake was given, or NULL */
	struct tls_transport *io;	/* its TLS session's transport, or NULL */
	int fd;
	struct conn_ctx *prev, *next;	/* the registry; under conns_lock */
	bool killed;			/* shut down by the sweeper; under conns_lock */
	_Atomic uint64_t deadline_ms;	/* clock_mono_ms() instant; 0: none */
	_Atomic int phase;		/* enum conn_phase */
	uint64_t request_ms;		/* when the current request began */
	uint64_t header_ms;		/* when its header was in */
	int client_cert;		/* 1 verified, -1 not, 0 not checked yet */
};

enum defer_state { DEFER_NONE, DEFER_WAITING, DEFER_DONE };

/* Per request: from its request line (or first handler call) to NOTIFY_COMPLETED. */
struct request {
	struct httpd *h;
	struct conn_ctx *conn_ctx;	/* NULL if the connection has none */
	const struct httpd_route *route;	/* NULL for an unknown path */
	struct MHD_Connection *conn;
	const char *method, *url;	/* libmicrohttpd's, valid for the request */
	const char *uri;		/* the raw request target, from the URI callback */
	size_t uri_len;			/* strlen(uri) then: less when it holds a NUL */
	bool bad_target;		/* a control character in it */
	bool started;			/* the handler's first call came */
	struct buf body;
	size_t reserved;		/* body budget bytes held for it */
	struct timespec start;
	uint64_t received_ms;
	int status;			/* the status queued, 0 before */
	bool head;			/* a HEAD request: no body is sent */
	bool too_large;			/* the body went past the route's cap */
	bool over_budget;		/* the body went past the body budget */
	size_t discarded;		/* bytes dropped since */
	bool defer_slot;		/* a deferral thread is reserved for it */
	enum defer_state deferred;
	int handler_rc;			/* the deferred call's result */
	struct httpd_reply reply;	/* the deferred call's reply */
	struct request *next_job;	/* the deferral queue */
};

/* The deferral threads (httpd_defer.c). */
struct defer_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a job queued, or stop */
	pthread_cond_t drained;		/* used or resuming went down */
	struct request *head, *tail;
	pthread_t threads[HTTPD_MAX_THREADS];
	unsigned int n_threads, n_idle;
	unsigned int n_queued;		/* jobs not taken by a thread yet */
	unsigned int used;		/* slots reserved, queued or running */
	unsigned int resuming;		/* answered, connection not resumed yet */
	unsigned int max;
	bool stop;
};

/* The milo_http_* series, all NULL without a registry. */
struct httpd_metrics {
	struct metric_series *connections;
	struct metric_series *timeouts[CONN__PHASES];
	struct metric_series *body_bytes;
	struct metric_series *refused_budget;
	struct metric_series *refused_bad;
	struct metric_series *refused_cert;
	struct metric_series *deferred;
	struct metric_series *deferred_total;
};

struct httpd {
	struct MHD_Daemon *daemon;
	struct httpd_config cfg;	/* defaults filled in */
	atomic_bool draining;
	atomic_uint in_flight;
	uint16_t port;
	MHD_socket listen_fd;		/* ours once quiesced */

	pthread_mutex_t conns_lock;	/* the registry */
	struct conn_ctx *conns;
	pthread_mutex_t sweep_lock;
	pthread_cond_t sweep_cond;
	bool sweep_stop, sweeping;
	pthread_t sweeper;

	atomic_size_t body_bytes;	/* held now */
	atomic_size_t body_peak;	/* most held since httpd_load() */
	atomic_size_t n_conns;		/* open now */
	atomic_size_t conns_peak;	/* most open since httpd_load() */

	struct defer_pool pool;
	bool pool_ready;
	struct httpd_metrics m;
};

/* httpd_conn.c */
void peak_raise(atomic_size_t *peak, size_t v);
int conns_start(struct httpd *h);
void conns_stop(struct httpd *h);
struct conn_ctx *conn_open(struct httpd *h, int fd);
void conn_close(struct conn_ctx *c);
void conn_request_line(struct conn_ctx *c);
void conn_header_done(struct conn_ctx *c);
void conn_body_done(struct conn_ctx *c);
void conn_answered(struct conn_ctx *c);
bool body_reserve(struct httpd *h, size_t n);
void body_release(struct httpd *h, size_t n);

/* httpd_defer.c */
int defer_init(struct httpd *h);
bool defer_reserve(struct httpd *h);
void defer_unreserve(struct httpd *h);
int defer_submit(struct httpd *h, struct request *r);
void defer_wait_idle(struct httpd *h);
void defer_free(struct httpd *h);

#endif
