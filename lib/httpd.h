/* httpd.h -- an HTTPS server on libmicrohttpd: exact-path routes, capped bodies, graceful stop */
#ifndef MILO_HTTPD_H
#define MILO_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics;
struct tls_store;
struct MHD_Connection;
struct request;

/*
 * Limits. libmicrohttpd enforces the connection counts; the rest is
 * enforced here, where input is read.
 *
 * Connections: epoll makes an idle one cost no time, but a TLS connection
 * costs about 14 KiB of memory from its accept (GnuTLS's session 7 KiB,
 * libmicrohttpd's pool and structures) and about 20 KiB once it trickles
 * bytes: 2,500 of them, about 50 MiB, fit in the Deployment's 64 MiB
 * (not beside a spent body budget too). A cap per client address keeps
 * one address from taking them all.
 */
#define HTTPD_CONN_LIMIT 2500		/* concurrent connections */
#define HTTPD_PER_IP_LIMIT 256		/* concurrent connections per client address */
/*
 * Time budgets, as Go's http.Server fields. Each counts from a fixed
 * instant, so a client that trickles bytes cannot stretch it; a
 * connection past its budget is shut down (checked every HTTPD_SWEEP_MS).
 *
 * - read header (ReadHeaderTimeout): a new connection's TLS handshake and
 *   first request header, from the accept; a later request's header, from
 *   its request line;
 * - read (ReadTimeout): the whole request, body included, from the same
 *   instant;
 * - write (WriteTimeout): the answer, handler included, from the end of
 *   the request header;
 * - idle (IdleTimeout): a keep-alive connection between an answer and the
 *   next request line. Go clients drop idle connections after 90 s too.
 */
#define HTTPD_READ_HEADER_TIMEOUT_MS 10000
#define HTTPD_READ_TIMEOUT_MS 30000
#define HTTPD_WRITE_TIMEOUT_MS 30000
#define HTTPD_IDLE_TIMEOUT_MS 90000
#define HTTPD_NO_TIMEOUT UINT32_MAX	/* a budget that never runs out */
#define HTTPD_SWEEP_MS 200
/*
 * Bytes of request bodies held at once across every connection, each
 * request's counted from its Content-Length before a byte is read (or as
 * a chunked body grows). Past it a request gets 503 with Retry-After
 * instead of a buffer.
 */
#define HTTPD_BODY_BUDGET (24u << 20)
#define HTTPD_RETRY_AFTER_S "1"
/*
 * Per-connection pool for the request line, headers and read buffer.
 * libmicrohttpd clears it between requests, so bigger costs time on every
 * request; API server requests carry well under 1 KiB of headers.
 */
#define HTTPD_CONN_MEMORY (16 * 1024)
/* Bytes of an over-cap body without Content-Length read (not kept) before hanging up. */
#define HTTPD_DISCARD_MAX (1024 * 1024)
#define HTTPD_STOP_TIMEOUT_MS 30000	/* longest wait for in-flight requests on stop */
#define HTTPD_MAX_THREADS 64
#define HTTPD_DEFAULT_THREADS 4	/* at most, when not configured */
#define HTTPD_DEFER_THREADS 16		/* threads for handlers that wait (HTTPD_DEFER) */
#define HTTPD_METRICS_MAX (4 * 1024 * 1024)	/* a /metrics answer */

#define HTTPD_GET (1u << 0)		/* HEAD is allowed wherever GET is */
#define HTTPD_POST (1u << 1)

/* One request, complete with its body, as a handler sees it. */
struct httpd_request {
	const char *method;
	const char *path;		/* without the query string */
	const char *body;		/* NUL-terminated; "" when there was none */
	size_t body_len;
	struct MHD_Connection *conn;	/* for httpd_header() and httpd_query() */
	uint64_t received_ms;		/* clock_mono_ms() when the header was in */
	bool may_block;			/* called again after HTTPD_DEFER */
	struct request *internal;	/* httpd's own */
};

/* A header value (name case-insensitive), or NULL. Borrowed for the call. */
const char *httpd_header(const struct httpd_request *req, const char *name);
/* A query parameter, unescaped, or NULL. Borrowed for the call. */
const char *httpd_query(const struct httpd_request *req, const char *key);

/* What a handler answers. */
struct httpd_reply {
	int status;
	const char *content_type;	/* static; NULL: text/plain */
	char *body;			/* malloc'd; httpd takes it and frees it */
	size_t body_len;
};

/*
 * Fills reply and returns 0; a negative errno-style code makes httpd
 * answer 500 (and free any body already set). Called from the server's
 * threads, concurrently; a handler must not wait there for anything slow,
 * since every connection of the thread waits with it. One that finds it
 * needs to wait calls httpd_defer() and, when that says yes, returns
 * HTTPD_DEFER: its reply (if any) is freed, the connection is set aside,
 * and the handler is called once more with the same request on a thread
 * of its own (req->may_block set), where it may wait, but only for a
 * bounded time: the server's stop waits for it.
 */
#define HTTPD_DEFER 1
typedef int (*httpd_handler_fn)(const struct httpd_request *req,
    struct httpd_reply *reply, void *arg);

struct httpd_route {
	const char *path;		/* matched exactly */
	unsigned int methods;		/* HTTPD_GET, HTTPD_POST */
	const char *content_type;	/* media type a body must have; NULL: any */
	size_t max_body;		/* bytes; 0: no body accepted (413) */
	httpd_handler_fn handler;
	void *arg;
	bool observe;			/* report this route to the hooks below */
	/*
	 * With client CAs configured (tls_store_client_ca()), the request
	 * needs a client certificate that they signed for client
	 * authentication: 403 and the connection closed otherwise. Routes
	 * without it (probes) answer whatever the client presented.
	 */
	bool client_cert;
};

struct httpd_config {
	const char *bind_address;	/* IPv4 or IPv6 literal; "::" is dual stack */
	uint16_t port;			/* 0: any free port (see httpd_port()) */
	struct tls_store *tls;		/* NULL: plain HTTP (tests) */
	unsigned int threads;		/* 0: httpd_default_threads(NULL) */
	unsigned int conn_limit;	/* 0: HTTPD_CONN_LIMIT */
	unsigned int per_ip_limit;	/* 0: HTTPD_PER_IP_LIMIT */
	/* Budgets in ms; 0: the HTTPD_*_TIMEOUT_MS default; HTTPD_NO_TIMEOUT: none. */
	uint32_t read_header_timeout_ms;
	uint32_t read_timeout_ms;
	uint32_t write_timeout_ms;
	uint32_t idle_timeout_ms;
	size_t body_budget;		/* 0: HTTPD_BODY_BUDGET */
	unsigned int defer_threads;	/* 0: HTTPD_DEFER_THREADS */
	struct metrics *metrics;	/* optional: milo_http_* families */
	const struct httpd_route *routes;	/* borrowed; must outlive the server */
	size_t n_routes;
	/*
	 * Optional hooks for routes with observe set: begin when a request
	 * for the route has arrived (headers read), end when it is over with
	 * the status sent (0 if none was) and the seconds it took.
	 */
	void (*begin)(const struct httpd_route *route, void *arg);
	void (*end)(const struct httpd_route *route, int status,
	    double seconds, void *arg);
	void *hook_arg;
};

struct httpd;

/*
 * Worker threads when none are configured: one per CPU this process may
 * run on (its affinity mask), no more than its cgroup's CPU quota rounded
 * up (cgroup_dir: NULL for /sys/fs/cgroup; v2 cpu.max or v1 cfs files)
 * and no more than HTTPD_DEFAULT_THREADS. A webhook answers tens of
 * thousands of reviews per second per thread; more threads on a big node
 * would only cost memory.
 */
unsigned int httpd_default_threads(const char *cgroup_dir);

/*
 * Starts serving on internal threads (epoll, a thread pool). Returns 0,
 * or a negative errno-style code with a one-line reason in err; *out is
 * then NULL.
 */
int httpd_start(const struct httpd_config *cfg, struct httpd **out,
    char *err, size_t errlen);

/* The bound port, useful after asking for port 0. */
uint16_t httpd_port(const struct httpd *h);

/*
 * True when TLS connections use lib/tls_transport.c (libmicrohttpd 0.9.75
 * at build and run time), false when they keep GnuTLS's own transport.
 */
bool httpd_own_transport(void);

/*
 * While draining, every response carries "Connection: close", so clients
 * move to another replica while this one still answers.
 */
void httpd_set_draining(struct httpd *h, bool draining);
bool httpd_draining(const struct httpd *h);

/* Requests that have arrived and are not finished. */
unsigned int httpd_in_flight(const struct httpd *h);

/* What the server holds now, and the most it held since the last look. */
struct httpd_load {
	size_t connections, connections_peak;
	size_t body_bytes, body_bytes_peak;	/* counted against the body budget */
};

/*
 * Fills out; the next period's peaks start from now (the webhook gives
 * memory back to the system after a burst).
 */
void httpd_load(struct httpd *h, struct httpd_load *out);

/*
 * From a handler: whether it may return HTTPD_DEFER for this request,
 * i.e. a thread for it is free (reserved from now on). False when every
 * one is taken, or when the handler already runs on one.
 */
bool httpd_defer(const struct httpd_request *req);

/*
 * Stops accepting connections, waits up to timeout_ms for the requests in
 * flight to finish (and, beyond it, for deferred handlers, which bound
 * their own time), then closes every connection and frees h. Returns 0,
 * or -ETIMEDOUT when requests were cut off. NULL is a no-op.
 */
int httpd_stop(struct httpd *h, unsigned int timeout_ms);

/* Fills reply with a plain-text answer (text copied). 0 or -ENOMEM. */
int httpd_reply_text(struct httpd_reply *reply, int status, const char *text);

/* A handler for GET /metrics: arg is the struct metrics registry to render. */
int httpd_serve_metrics(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg);

#endif
