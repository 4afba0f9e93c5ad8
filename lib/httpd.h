/* httpd.h -- an HTTPS server on libmicrohttpd: exact-path routes, capped bodies, graceful stop */
#ifndef MILO_HTTPD_H
#define MILO_HTTPD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_store;
struct MHD_Connection;

/*
 * Limits, all enforced by libmicrohttpd except the body cap, which is
 * per route (httpd_route.max_body) and enforced here.
 */
#define HTTPD_CONN_LIMIT 1024		/* concurrent connections */
#define HTTPD_PER_IP_LIMIT 256		/* concurrent connections per client address */
/*
 * Inactivity timeout, seconds, for the TLS handshake, headers, body and
 * idle keep-alive alike (libmicrohttpd has one timeout). Longer than the
 * 90 s after which Go clients drop idle connections, so the client side
 * closes first and never sends a request into a connection being closed.
 */
#define HTTPD_TIMEOUT_S 120
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
 * threads, concurrently.
 */
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
};

struct httpd_config {
	const char *bind_address;	/* IPv4 or IPv6 literal; "::" is dual stack */
	uint16_t port;			/* 0: any free port (see httpd_port()) */
	struct tls_store *tls;		/* NULL: plain HTTP (tests) */
	unsigned int threads;		/* 0: httpd_default_threads(NULL) */
	unsigned int conn_limit;	/* 0: HTTPD_CONN_LIMIT */
	unsigned int per_ip_limit;	/* 0: HTTPD_PER_IP_LIMIT */
	unsigned int timeout_s;		/* 0: HTTPD_TIMEOUT_S */
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
 * While draining, every response carries "Connection: close", so clients
 * move to another replica while this one still answers.
 */
void httpd_set_draining(struct httpd *h, bool draining);
bool httpd_draining(const struct httpd *h);

/* Requests that have arrived and are not finished. */
unsigned int httpd_in_flight(const struct httpd *h);

/*
 * Stops accepting connections, waits up to timeout_ms for the requests in
 * flight to finish, then closes every connection and frees h. Returns 0,
 * or -ETIMEDOUT when requests were cut off. NULL is a no-op.
 */
int httpd_stop(struct httpd *h, unsigned int timeout_ms);

/* Fills reply with a plain-text answer (text copied). 0 or -ENOMEM. */
int httpd_reply_text(struct httpd_reply *reply, int status, const char *text);

/* A handler for GET /metrics: arg is the struct metrics registry to render. */
int httpd_serve_metrics(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg);

#endif
