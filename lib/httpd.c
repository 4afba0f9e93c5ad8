/* httpd.c -- an HTTPS server on libmicrohttpd: exact-path routes, capped bodies, graceful stop */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "httpd_int.h"
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "tls_transport.h"

/* The last message libmicrohttpd logged on this thread: startup errors. */
static _Thread_local char last_mhd_msg[256];

static void
log_mhd(void *cls, const char *fmt, va_list ap)
{
	size_t n;

	(void)cls;
	vsnprintf(last_mhd_msg, sizeof(last_mhd_msg), fmt, ap);
	n = strlen(last_mhd_msg);
	while (n && (last_mhd_msg[n - 1] == '\n' || last_mhd_msg[n - 1] == ' '))
		last_mhd_msg[--n] = '\0';
	/* Mostly clients failing handshakes or hanging up: not our problem. */
	log_debug("libmicrohttpd", LOG_STR("detail", last_mhd_msg));
}

static double
seconds_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* What a client certificate must be good for, as Go servers require. */
static gnutls_typed_vdata_st client_purpose[] = {
	{ GNUTLS_DT_KEY_PURPOSE_OID,
	  (unsigned char *)(uintptr_t)GNUTLS_KP_TLS_WWW_CLIENT, 0 },
};

static struct conn_ctx *
conn_ctx_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info;

	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return info ? info->socket_context : NULL;
}

/*
 * Which credentials a handshake gets. GnuTLS passes no user pointer, but
 * libmicrohttpd makes the connection the session pointer, and the
 * connection's context (made in on_connection) leads to the store. The
 * reference taken here is dropped when the connection closes, so a
 * certificate rotated away is freed only once no session can use it.
 *
 * With client CAs, libmicrohttpd asks for a client certificate (it does
 * not require one) and the handshake does not verify it: the kubelet's
 * probes present none, and whether a request needs one is the route's
 * business (client_cert_ok()).
 */
static int
retrieve_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_dn,
    int n_req_ca_dn, const gnutls_pk_algorithm_t *pk_algos,
    int n_pk_algos, gnutls_pcert_st **pcert, unsigned int *n_pcert,
    gnutls_privkey_t *key)
{
	struct MHD_Connection *conn = gnutls_session_get_ptr(session);
	struct conn_ctx *ctx;

	(void)req_ca_dn;
	(void)n_req_ca_dn;
	(void)pk_algos;
	(void)n_pk_algos;
	if (!conn)
		return -1;
	ctx = conn_ctx_of(conn);
	if (!ctx || !ctx->h->cfg.tls)
		return -1;
	/* A renegotiation keeps the credentials the connection started with. */
	if (!ctx->cred)
		ctx->cred = tls_store_acquire(ctx->h->cfg.tls);
	tls_cred_get(ctx->cred, pcert, n_pcert, key);
	return 0;
}

/*
 * Whether the client presented a certificate that the client CAs signed,
 * good for client authentication. Checked once per connection (a
 * connection keeps its handshake's certificate).
 */
static bool
client_cert_ok(struct MHD_Connection *conn, struct conn_ctx *ctx)
{
	const union MHD_ConnectionInfo *info;
	gnutls_session_t session;
	unsigned int n = 0, status = 1;

	if (ctx && ctx->client_cert)
		return ctx->client_cert > 0;
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	session = info ? (gnutls_session_t)info->tls_session : NULL;
	if (session && gnutls_certificate_get_peers(session, &n) && n > 0 &&
	    gnutls_certificate_verify_peers(session, client_purpose, 1,
	    &status) < 0)
		status = 1;
	if (ctx)
		ctx->client_cert = n > 0 && status == 0 ? 1 : -1;
	return n > 0 && status == 0;
}

/*
 * libmicrohttpd has made the TLS session (with GnuTLS's own transport on
 * the socket) but not started the handshake when a connection starts; it
 * is the session's only user, on one thread, until the connection closes.
 * The session gets the transport of tls_transport.c: see respond().
 */
/*
 * That order of events is libmicrohttpd 0.9.75's (Debian 12's), not a
 * promise of its API: built against, or running with, any other version
 * the sessions keep GnuTLS's own transport (correct, a few more system
 * calls per request).
 */
#define HTTPD_TRANSPORT_MHD_VERSION 0x00097500
#define HTTPD_TRANSPORT_MHD_VERSION_TEXT "0.9.75"

bool
httpd_own_transport(void)
{
#if MHD_VERSION == HTTPD_TRANSPORT_MHD_VERSION
	static atomic_int ok = -1;	/* -1: not asked yet */
	int v = atomic_load(&ok);

	if (v < 0) {
		v = strcmp(MHD_get_version(), HTTPD_TRANSPORT_MHD_VERSION_TEXT) == 0;
		atomic_store(&ok, v);
	}
	return v;
#else
	return false;
#endif
}

static void
attach_transport(struct MHD_Connection *conn, struct conn_ctx *ctx)
{
	const union MHD_ConnectionInfo *info;

	if (!httpd_own_transport())
		return;
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!info || !info->tls_session)
		return;
	/* Out of memory: GnuTLS's transport stays, nothing else changes. */
	ctx->io = tls_transport_attach((gnutls_session_t)info->tls_session,
	    ctx->fd);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode code)
{
	struct httpd *h = cls;
	const union MHD_ConnectionInfo *info;
	struct conn_ctx *ctx;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		info = MHD_get_connection_info(conn,
		    MHD_CONNECTION_INFO_CONNECTION_FD);
		ctx = info ? conn_open(h, info->connect_fd) : NULL;
		if (ctx && h->cfg.tls)
			attach_transport(conn, ctx);
		/* NULL: no budgets for it, and over TLS a failed handshake. */
		*socket_context = ctx;
	} else {
		if (*socket_context)
			conn_close(*socket_context);
		*socket_context = NULL;
	}
}

static struct tls_transport *
conn_transport(struct MHD_Connection *conn)
{
	struct conn_ctx *ctx = conn_ctx_of(conn);

	return ctx ? ctx->io : NULL;
}

/*
 * Whether libmicrohttpd 0.9.75 sends this response's body right after its
 * header: it sends an in-memory body in the same call as the header
 * (MHD_send_hdr_and_body_(), which over TLS makes it two
 * gnutls_record_send() calls, the second as soon as the first has gone),
 * unless the body is empty or the method or status has none. It tells
 * HEAD by exact comparison ("head" gets a body), as strcmp() does here.
 * Should this ever be wrong, on_completed() still sends the header.
 */
static bool
body_follows_header(const struct request *r, int status, size_t len)
{
	return len > 0 && !r->head && status >= 200 && status != 204 &&
	    status != 304;
}

const char *
httpd_header(const struct httpd_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
httpd_query(const struct httpd_request *req, const char *key)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND,
	    key);
}

static const struct httpd_route *
find_route(const struct httpd *h, const char *path)
{
	for (size_t i = 0; i < h->cfg.n_routes; i++) {
		if (strcmp(h->cfg.routes[i].path, path) == 0)
			return &h->cfg.routes[i];
	}
	return NULL;
}

static unsigned int
method_bit(const char *method)
{
	if (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
	    strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)
		return HTTPD_GET;
	if (strcmp(method, MHD_HTTP_METHOD_POST) == 0)
		return HTTPD_POST;
	return 0;
}

static const char *
allow_header(unsigned int methods)
{
	if ((methods & HTTPD_GET) && (methods & HTTPD_POST))
		return "GET, HEAD, POST";
	return (methods & HTTPD_GET) ? "GET, HEAD" : "POST";
}

/* "application/json", "Application/JSON ; charset=utf-8": the type, parameters ignored. */
static bool
media_type_is(const char *value, const char *want)
{
	size_t n = strlen(want);

	if (!value)
		return false;
	value += strspn(value, " \t");
	if (strncasecmp(value, want, n) != 0)
		return false;
	value += n;
	value += strspn(value, " \t");
	return *value == '\0' || *value == ';';
}

/* One response to queue, and what goes with it. */
struct answer {
	int status;
	const char *content_type;	/* NULL: text/plain */
	char *body;
	size_t len;
	bool owned;			/* body is malloc'd: libmicrohttpd frees it */
	const char *allow;		/* an Allow header, or NULL */
	bool retry;			/* Retry-After: HTTPD_RETRY_AFTER_S */
	bool close;			/* Connection: close (also while draining) */
};

/*
 * Queues one response. An owned body is freed by libmicrohttpd, or here
 * if the response cannot be made.
 */
static enum MHD_Result
respond(struct httpd *h, struct MHD_Connection *conn, struct request *r,
    const struct answer *a)
{
	struct MHD_Response *resp;
	struct tls_transport *io;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(a->len, a->body,
	    a->owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		if (a->owned)
			free(a->body);
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	    a->content_type ? a->content_type : "text/plain; charset=utf-8") !=
	    MHD_YES ||
	    (a->allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
	    a->allow) != MHD_YES) ||
	    (a->retry && MHD_add_response_header(resp,
	    MHD_HTTP_HEADER_RETRY_AFTER, HTTPD_RETRY_AFTER_S) != MHD_YES) ||
	    ((a->close || atomic_load(&h->draining)) &&
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
	    "close") != MHD_YES)) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	/*
	 * Over TLS the header's record is held back and leaves with the
	 * body's first record in one sendmsg(), one system call fewer per
	 * response. (They stay two records: libmicrohttpd hands GnuTLS the
	 * header and the body in separate gnutls_record_send() calls.) The
	 * body's send carries both, so a full socket makes it report EAGAIN
	 * and libmicrohttpd retries it as it would any send: nothing held is
	 * left waiting for a send that does not come.
	 */
	io = body_follows_header(r, a->status, a->len) ? conn_transport(conn) :
	    NULL;
	if (io)
		tls_transport_hold_next(io);
	ret = MHD_queue_response(conn, (unsigned int)a->status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		r->status = a->status;
	else if (io)
		(void)tls_transport_settle(io, false);
	return ret;
}

/* The transport's own answers (400, 403, 404, 405, 413, 415, 500, 503), static text. */
static enum MHD_Result
refuse(struct httpd *h, struct MHD_Connection *conn, struct request *r,
    struct answer a)
{
	log_debug("request refused", LOG_INT("status", a.status),
	    LOG_STR("path", r->route ? r->route->path : r->url ? r->url : "(unknown)"));
	a.len = strlen(a.body);
	a.owned = false;
	return respond(h, conn, r, &a);
}

#define TEXT(s) ((char *)(uintptr_t)(s))

/* What the request's headers say about its body's framing. */
struct framing {
	const char *length;		/* the first Content-Length */
	bool conflict;			/* another Content-Length differs */
	bool chunked;			/* any Transfer-Encoding */
};

static bool
same_number(const char *a, const char *b)
{
	a += strspn(a, " \t");
	b += strspn(b, " \t");
	return strcmp(a, b) == 0;
}

static enum MHD_Result
scan_framing(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct framing *f = cls;
	char first = (char)(key[0] | 0x20);

	(void)kind;
	if (first != 'c' && first != 't')
		return MHD_YES;		/* most headers, without a strcasecmp() */
	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		if (!f->length)
			f->length = value;
		else if (!same_number(f->length, value))
			f->conflict = true;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		f->chunked = true;
	}
	return MHD_YES;
}

/*
 * Request smuggling: two Content-Length values, or Content-Length beside
 * Transfer-Encoding, mean that another server on the path may frame the
 * body differently (RFC 9112 6.3). Refused, and the connection closed.
 */
static enum MHD_Result
check_framing(struct httpd *h, struct MHD_Connection *conn, struct request *r,
    struct framing *f)
{
	(void)MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_framing, f);
	if (f->conflict)
		return metric_inc(h->m.refused_bad), refuse(h, conn, r,
		    (struct answer){ .status = MHD_HTTP_BAD_REQUEST, .close = true,
		    .body = TEXT("conflicting Content-Length headers\n") });
	if (f->length && f->chunked)
		return metric_inc(h->m.refused_bad), refuse(h, conn, r,
		    (struct answer){ .status = MHD_HTTP_BAD_REQUEST, .close = true,
		    .body = TEXT("Content-Length with Transfer-Encoding\n") });
	return MHD_YES;
}

/* Content-Type, Content-Length and the body budget, before a byte of the body is read. */
static enum MHD_Result
check_body_headers(struct httpd *h, struct MHD_Connection *conn,
    struct request *r, const char *method, const struct framing *f)
{
	const struct httpd_route *route = r->route;
	const char *type;
	unsigned long long n;
	char *end;

	if (route->content_type && strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
		type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!media_type_is(type, route->content_type))
			return refuse(h, conn, r, (struct answer){
			    .status = MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
			    .body = TEXT("unsupported media type\n") });
	}
	if (!f->length)
		return MHD_YES;
	errno = 0;
	n = strtoull(f->length, &end, 10);
	if (errno || end == f->length || *end != '\0')
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_BAD_REQUEST, .close = true,
		    .body = TEXT("bad Content-Length\n") });
	if (n > route->max_body)
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_CONTENT_TOO_LARGE,
		    .body = TEXT("request body too large\n") });
	if (n == 0)
		return MHD_YES;
	/* The buffer never grows past n + 1 bytes: that much is held for it. */
	if (!body_reserve(h, (size_t)n + 1)) {
		metric_inc(h->m.refused_budget);
		log_debug("body budget spent: request refused",
		    LOG_INT("content_length", n),
		    LOG_INT("held", atomic_load(&h->body_bytes)));
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_SERVICE_UNAVAILABLE, .retry = true,
		    .close = true, .body = TEXT("too many request bodies in "
		    "flight; try again\n") });
	}
	r->reserved = (size_t)n + 1;
	/* The whole body's room at once, rather than a realloc() per doubling. */
	buf_init(&r->body, (size_t)n);
	r->body.ptr = malloc((size_t)n + 1);
	if (!r->body.ptr)
		return MHD_NO;
	r->body.cap = (size_t)n + 1;
	return MHD_YES;
}

/*
 * Bytes target_has_control() stops at: the end, a control character (the
 * request target may not hold one, raw or, in the path, %-escaped), '%'
 * and '?'.
 */
enum { STOP_END = 1, STOP_CONTROL, STOP_ESCAPE, STOP_QUERY };

static const unsigned char target_stop[256] = {
	[0x00] = STOP_END,
	[0x01 ... 0x1f] = STOP_CONTROL,	/* a GNU C range, as in glibc and Linux */
	[0x7f] = STOP_CONTROL,
	['%'] = STOP_ESCAPE,
	['?'] = STOP_QUERY,
};

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* One pass, table-driven: this runs for every request. */
static bool
target_has_control(const char *uri)
{
	const unsigned char *p = (const unsigned char *)uri;
	bool in_path = true;
	int hi, lo, c;

	for (;;) {
		while (!target_stop[*p])
			p++;
		switch (target_stop[*p]) {
		case STOP_END:
			return false;
		case STOP_CONTROL:
			return true;
		case STOP_ESCAPE:
			if (in_path && (hi = hex_value((char)p[1])) >= 0 &&
			    (lo = hex_value((char)p[2])) >= 0) {
				c = hi * 16 + lo;
				if (c < 0x20 || c == 0x7f)
					return true;
			}
			break;
		default:
			in_path = false;
			break;
		}
		p++;
	}
}

/*
 * The request line is in: libmicrohttpd 0.9.75 calls this with the raw
 * request target before it decodes it, and makes what it returns the
 * request's context. A keep-alive connection's header budget starts now.
 */
static void *
on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct httpd *h = cls;
	struct request *r = calloc(1, sizeof(*r));
	struct conn_ctx *ctx = conn_ctx_of(conn);

	if (ctx)
		conn_request_line(ctx);
	if (!r)
		return NULL;	/* begin_request() tries again */
	r->h = h;
	r->conn_ctx = ctx;
	r->uri = uri;
	r->uri_len = strlen(uri);
	r->bad_target = target_has_control(uri);
	buf_init(&r->body, 0);
	return r;
}

/*
 * A NUL in the request target ends the string libmicrohttpd hands out, so
 * "/healthz\0x" looks like "/healthz". libmicrohttpd 0.9.75 keeps the
 * request line in one buffer, the target followed by one separator and
 * the version, so the version starts right after the target unless the
 * target held a NUL.
 */
static bool
target_has_nul(const struct request *r, const char *version)
{
	return r->uri && version && version[0] && version > r->uri &&
	    (size_t)(version - r->uri) > r->uri_len + 1;
}

static struct request *
request_new(struct httpd *h, struct MHD_Connection *conn)
{
	struct request *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->h = h;
	r->conn_ctx = conn_ctx_of(conn);
	buf_init(&r->body, 0);
	return r;
}

/* First call: headers are in, no body read yet. */
static enum MHD_Result
begin_request(struct httpd *h, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, void **req_cls)
{
	const struct httpd_route *route;
	struct request *r = *req_cls;
	struct framing f = { NULL, false, false };
	enum MHD_Result ret;

	if (!r && !(r = request_new(h, conn)))
		return MHD_NO;
	*req_cls = r;
	r->started = true;
	r->conn = conn;
	r->method = method;
	r->url = url;
	clock_gettime(CLOCK_MONOTONIC, &r->start);
	r->received_ms = clock_mono_ms();
	r->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	atomic_fetch_add(&h->in_flight, 1);
	if (r->conn_ctx)
		conn_header_done(r->conn_ctx);

	if (r->bad_target || target_has_nul(r, version))
		return metric_inc(h->m.refused_bad), refuse(h, conn, r,
		    (struct answer){ .status = MHD_HTTP_BAD_REQUEST, .close = true,
		    .body = TEXT("control character in the request target\n") });
	ret = check_framing(h, conn, r, &f);
	if (ret != MHD_YES || r->status)
		return ret;
	route = find_route(h, url);
	if (!route)
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_NOT_FOUND, .body = TEXT("404 page not found\n") });
	r->route = route;
	if (route->observe && h->cfg.begin)
		h->cfg.begin(route, h->cfg.hook_arg);
	if (route->client_cert && h->cfg.tls && tls_store_client_ca(h->cfg.tls) &&
	    !client_cert_ok(conn, r->conn_ctx))
		return metric_inc(h->m.refused_cert), refuse(h, conn, r,
		    (struct answer){ .status = MHD_HTTP_FORBIDDEN, .close = true,
		    .body = TEXT("a client certificate signed by the client CA "
		    "is required\n") });
	if (!(method_bit(method) & route->methods))
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_METHOD_NOT_ALLOWED,
		    .allow = allow_header(route->methods),
		    .body = TEXT("method not allowed\n") });
	buf_init(&r->body, route->max_body);
	return check_body_headers(h, conn, r, method, &f);
}

/*
 * A body chunk. libmicrohttpd 0.9.75 cannot queue a response while a body
 * is arriving, so a body without Content-Length that outgrows the cap or
 * the body budget is dropped from then on (the buffer is freed): if it
 * ends within HTTPD_DISCARD_MAX more bytes it gets its 413 or 503 at the
 * end, otherwise the connection is closed.
 */
static enum MHD_Result
take_body(struct httpd *h, struct request *r, const char *data, size_t *size)
{
	size_t n = *size, want;
	int rc;

	*size = 0;
	if (r->too_large || r->over_budget) {
		r->discarded += n;
		return r->discarded > HTTPD_DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	/* Without Content-Length the budget is taken as the buffer doubles. */
	if (r->body.len + n + 1 > r->reserved && n <= r->body.max &&
	    r->body.len <= r->body.max - n) {
		want = r->reserved ? 2 * r->reserved : 4096;
		if (want < r->body.len + n + 1)
			want = r->body.len + n + 1;
		if (want > r->body.max + 1)
			want = r->body.max + 1;
		if (!body_reserve(h, want - r->reserved)) {
			metric_inc(h->m.refused_budget);
			r->over_budget = true;
			r->discarded = n;
			buf_free(&r->body);
			return n > HTTPD_DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		r->reserved = want;
	}
	rc = buf_add(&r->body, data, n);
	if (rc == -E2BIG) {
		r->too_large = true;
		r->discarded = n;
		return n > HTTPD_DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	return rc ? MHD_NO : MHD_YES;
}

/* Queues what the handler answered (rc, reply), or a 500 for a failure. */
static enum MHD_Result
answer_handler(struct httpd *h, struct MHD_Connection *conn, struct request *r,
    int rc, struct httpd_reply *reply)
{
	if (rc || reply->status < 100 || reply->status > 599) {
		free(reply->body);
		log_error("request handler failed", LOG_STR("path", r->url),
		    LOG_STR("error", rc < 0 ? strerror(-rc) : "bad status"),
		    LOG_INT("status", reply->status));
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_INTERNAL_SERVER_ERROR,
		    .body = TEXT("internal server error\n") });
	}
	return respond(h, conn, r, &(struct answer){ .status = reply->status,
	    .content_type = reply->content_type, .body = reply->body,
	    .len = reply->body_len, .owned = true });
}

/* Sets r aside for a deferral thread; the connection waits, suspended. */
static enum MHD_Result
defer(struct httpd *h, struct MHD_Connection *conn, struct request *r)
{
	r->defer_slot = false;	/* the job owns it from here */
	r->deferred = DEFER_WAITING;
	MHD_suspend_connection(conn);
	if (defer_submit(h, r) == 0)
		return MHD_YES;
	MHD_resume_connection(conn);
	defer_unreserve(h);
	r->deferred = DEFER_DONE;
	r->handler_rc = -EAGAIN;
	memset(&r->reply, 0, sizeof(r->reply));
	return MHD_YES;		/* answered with a 500 once resumed */
}

static enum MHD_Result
dispatch(struct httpd *h, struct MHD_Connection *conn, struct request *r)
{
	struct httpd_request req = {
		.method = r->method,
		.path = r->url,
		.body = buf_str(&r->body),
		.body_len = r->body.len,
		.conn = conn,
		.received_ms = r->received_ms,
		.internal = r,
	};
	struct httpd_reply reply = { 0, NULL, NULL, 0 };
	int rc;

	if (r->conn_ctx)
		conn_body_done(r->conn_ctx);
	if (r->too_large)
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_CONTENT_TOO_LARGE,
		    .body = TEXT("request body too large\n") });
	if (r->over_budget)
		return refuse(h, conn, r, (struct answer){
		    .status = MHD_HTTP_SERVICE_UNAVAILABLE, .retry = true,
		    .close = true, .body = TEXT("too many request bodies in "
		    "flight; try again\n") });
	rc = r->route->handler(&req, &reply, r->route->arg);
	if (rc == HTTPD_DEFER && r->defer_slot) {
		free(reply.body);
		return defer(h, conn, r);
	}
	if (r->defer_slot) {
		/* Reserved and then not needed. */
		r->defer_slot = false;
		defer_unreserve(h);
	}
	if (rc == HTTPD_DEFER)
		rc = -EDEADLK;	/* deferred without a thread: a handler bug */
	return answer_handler(h, conn, r, rc, &reply);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct httpd *h = cls;
	struct request *r = *req_cls;

	if (!r || !r->started)
		return begin_request(h, conn, url, method, version, req_cls);
	if (r->status) {
		/* Answered early; whatever still arrives is dropped. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->deferred == DEFER_DONE) {
		r->deferred = DEFER_NONE;
		return answer_handler(h, conn, r, r->handler_rc, &r->reply);
	}
	if (*upload_data_size)
		return take_body(h, r, upload_data, upload_data_size);
	return dispatch(h, conn, r);
}

bool
httpd_defer(const struct httpd_request *req)
{
	struct request *r = req->internal;

	if (req->may_block || !r)
		return false;
	if (!r->defer_slot)
		r->defer_slot = defer_reserve(r->h);
	return r->defer_slot;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct httpd *h = cls;
	struct request *r = *req_cls;
	struct conn_ctx *ctx = conn_ctx_of(conn);

	/*
	 * The response has been handed to GnuTLS in full (or abandoned). A
	 * record still held would mean body_follows_header() was wrong: it
	 * is sent now rather than left behind.
	 */
	if (!tls_transport_settle(ctx ? ctx->io : NULL,
	    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) &&
	    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		log_error("TLS record sent late",
		    LOG_STR("path", r && r->route ? r->route->path : "(unknown)"));
	if (ctx)
		conn_answered(ctx);
	if (!r)
		return;
	if (r->started) {
		if (r->route && r->route->observe && h->cfg.end)
			h->cfg.end(r->route, r->status, seconds_since(&r->start),
			    h->cfg.hook_arg);
		atomic_fetch_sub(&h->in_flight, 1);
	}
	if (r->defer_slot)
		defer_unreserve(h);
	if (r->deferred == DEFER_DONE)
		free(r->reply.body);	/* never queued: the client went away */
	buf_free(&r->body);
	body_release(h, r->reserved);
	free(r);
	*req_cls = NULL;
}

/*
 * The CPU quota of the cgroup at dir, rounded up: cgroup v2's cpu.max
 * ("<quota> <period>" or "max <period>"), else v1's cpu/cpu.cfs_quota_us
 * over cpu/cpu.cfs_period_us. 0 when there is none or it cannot be read.
 */
static unsigned int
cgroup_cpus(const char *dir)
{
	char path[512], text[64];
	long long quota = -1, period = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/cpu.max", dir);
	if ((f = fopen(path, "re"))) {
		if (fgets(text, sizeof(text), f) &&
		    sscanf(text, "%lld %lld", &quota, &period) != 2)
			quota = -1;	/* "max 100000": no quota */
		fclose(f);
	} else {
		snprintf(path, sizeof(path), "%s/cpu/cpu.cfs_quota_us", dir);
		if ((f = fopen(path, "re"))) {
			if (fscanf(f, "%lld", &quota) != 1)
				quota = -1;
			fclose(f);
		}
		snprintf(path, sizeof(path), "%s/cpu/cpu.cfs_period_us", dir);
		if ((f = fopen(path, "re"))) {
			if (fscanf(f, "%lld", &period) != 1)
				period = 0;
			fclose(f);
		}
	}
	if (quota <= 0 || period <= 0)
		return 0;
	return (unsigned int)((quota + period - 1) / period);
}

unsigned int
httpd_default_threads(const char *cgroup_dir)
{
	cpu_set_t set;
	unsigned int n = HTTPD_DEFAULT_THREADS, quota;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0 &&
	    (unsigned int)CPU_COUNT(&set) < n)
		n = (unsigned int)CPU_COUNT(&set);
	quota = cgroup_cpus(cgroup_dir ? cgroup_dir : "/sys/fs/cgroup");
	if (quota && quota < n)
		n = quota;
	return n;
}

/* Fills addr from an IP literal; sets the MHD address-family flags. */
static int
parse_bind(const char *addr, uint16_t port, struct sockaddr_storage *ss,
    unsigned int *flags)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		/* The unspecified address takes IPv4 clients too. */
		*flags |= IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr) ?
		    MHD_USE_DUAL_STACK : MHD_USE_IPv6;
		return 0;
	}
	return -EINVAL;
}

/*
 * libmicrohttpd's own inactivity timeout, a backstop behind the budgets
 * (which it cannot express: activity restarts it): longer than any of
 * them, none when one of them is none.
 */
static unsigned int
backstop_s(const struct httpd_config *c)
{
	const uint32_t b[] = { c->read_header_timeout_ms, c->read_timeout_ms,
	    c->write_timeout_ms, c->idle_timeout_ms };
	uint32_t most = 0;

	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		if (b[i] == HTTPD_NO_TIMEOUT)
			return 0;
		if (b[i] > most)
			most = b[i];
	}
	return most / 1000 + 60;
}

static struct MHD_Daemon *
start_daemon(struct httpd *h, unsigned int flags, struct sockaddr_storage *ss)
{
	const struct httpd_config *c = &h->cfg;
	struct MHD_OptionItem opts[20];
	size_t n = 0;

#define OPT(o, v, p) \
	do { opts[n].option = (o); opts[n].value = (intptr_t)(v); \
	opts[n].ptr_value = (p); n++; } while (0)
	OPT(MHD_OPTION_EXTERNAL_LOGGER, log_mhd, h);
	OPT(MHD_OPTION_SOCK_ADDR, 0, ss);
	OPT(MHD_OPTION_CONNECTION_LIMIT, c->conn_limit, NULL);
	OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, c->per_ip_limit, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, backstop_s(c), NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTPD_CONN_MEMORY, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, h);
	OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, h);
	OPT(MHD_OPTION_URI_LOG_CALLBACK, on_uri, h);
	if (c->threads > 1)
		OPT(MHD_OPTION_THREAD_POOL_SIZE, c->threads, NULL);
	if (c->tls) {
		OPT(MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)retrieve_cert);
		OPT(MHD_OPTION_HTTPS_PRIORITIES, 0,
		    (void *)(uintptr_t)tls_store_priorities(c->tls));
		if (tls_store_client_ca(c->tls))
			OPT(MHD_OPTION_HTTPS_MEM_TRUST, 0,
			    (void *)(uintptr_t)tls_store_client_ca(c->tls));
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT
	return MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
	    MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
}

static uint32_t
or_default(uint32_t v, uint32_t def)
{
	return v ? v : def;
}

/* The configuration with every default filled in. */
static void
fill_defaults(struct httpd_config *c)
{
	c->threads = c->threads ? c->threads : httpd_default_threads(NULL);
	c->conn_limit = or_default(c->conn_limit, HTTPD_CONN_LIMIT);
	c->per_ip_limit = or_default(c->per_ip_limit, HTTPD_PER_IP_LIMIT);
	c->read_header_timeout_ms = or_default(c->read_header_timeout_ms,
	    HTTPD_READ_HEADER_TIMEOUT_MS);
	c->read_timeout_ms = or_default(c->read_timeout_ms, HTTPD_READ_TIMEOUT_MS);
	c->write_timeout_ms = or_default(c->write_timeout_ms,
	    HTTPD_WRITE_TIMEOUT_MS);
	c->idle_timeout_ms = or_default(c->idle_timeout_ms, HTTPD_IDLE_TIMEOUT_MS);
	c->body_budget = c->body_budget ? c->body_budget : HTTPD_BODY_BUDGET;
	c->defer_threads = or_default(c->defer_threads, HTTPD_DEFER_THREADS);
	if (c->defer_threads > HTTPD_MAX_THREADS)
		c->defer_threads = HTTPD_MAX_THREADS;
}

static void
register_metrics(struct httpd *h, struct metrics *m)
{
	static const char *const by_budget[] = { "budget", NULL };
	static const char *const by_reason[] = { "reason", NULL };
	static const char *const budgets[CONN__PHASES] = {
		[CONN_READ_HEADER] = "read_header", [CONN_READ] = "read",
		[CONN_WRITE] = "write", [CONN_IDLE] = "idle",
	};
	struct metric *timeouts, *refused;

	h->m.connections = metric_get(metrics_gauge(m, "milo_http_connections",
	    "Open connections to the HTTPS server.", NULL), NULL);
	timeouts = metrics_counter(m, "milo_http_connection_timeouts_total",
	    "Connections closed for going past a time budget (read_header, "
	    "read, write, idle).", by_budget);
	for (int i = 0; i < CONN__PHASES; i++)
		h->m.timeouts[i] = metric_get(timeouts,
		    (const char *const[]){ budgets[i] });
	h->m.body_bytes = metric_get(metrics_gauge(m,
	    "milo_http_request_body_bytes",
	    "Bytes of request bodies held, counted against the body budget.",
	    NULL), NULL);
	refused = metrics_counter(m, "milo_http_requests_refused_total",
	    "Requests refused before their handler: body_budget (503), "
	    "bad_request (400: framing, control characters), "
	    "client_certificate (403).", by_reason);
	h->m.refused_budget = metric_get(refused,
	    (const char *const[]){ "body_budget" });
	h->m.refused_bad = metric_get(refused,
	    (const char *const[]){ "bad_request" });
	h->m.refused_cert = metric_get(refused,
	    (const char *const[]){ "client_certificate" });
	h->m.deferred = metric_get(metrics_gauge(m, "milo_http_deferred_requests",
	    "Requests whose handler waits on a thread of its own.", NULL), NULL);
	h->m.deferred_total = metric_get(metrics_counter(m,
	    "milo_http_deferred_requests_total",
	    "Requests handed to a thread of their own to wait.", NULL), NULL);
}

/* Frees what httpd_start() set up, the daemon already stopped or never started. */
static void
teardown(struct httpd *h)
{
	conns_stop(h);
	if (h->pool_ready)
		defer_free(h);
	free(h);
}

int
httpd_start(const struct httpd_config *cfg, struct httpd **out, char *err,
    size_t errlen)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	    MHD_USE_ITC | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	const char *addr = cfg->bind_address ? cfg->bind_address : "0.0.0.0";
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage ss;
	struct httpd *h;
	int rc;

	*out = NULL;
	if (parse_bind(addr, cfg->port, &ss, &flags) != 0) {
		snprintf(err, errlen, "bind address %s is not an IP address", addr);
		return -EINVAL;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	h->cfg = *cfg;
	fill_defaults(&h->cfg);
	h->listen_fd = MHD_INVALID_SOCKET;
	atomic_init(&h->draining, false);
	atomic_init(&h->in_flight, 0);
	atomic_init(&h->body_bytes, 0);
	atomic_init(&h->body_peak, 0);
	atomic_init(&h->n_conns, 0);
	atomic_init(&h->conns_peak, 0);
	if (h->cfg.metrics)
		register_metrics(h, h->cfg.metrics);
	defer_init(h);
	h->pool_ready = true;
	rc = conns_start(h);
	if (rc) {
		snprintf(err, errlen, "cannot start the budget thread: %s",
		    strerror(-rc));
		teardown(h);
		return rc;
	}
	if (cfg->tls)
		flags |= MHD_USE_TLS;
	last_mhd_msg[0] = '\0';
	h->daemon = start_daemon(h, flags, &ss);
	if (!h->daemon) {
		snprintf(err, errlen, "cannot serve on %s port %u: %s", addr,
		    (unsigned int)cfg->port,
		    last_mhd_msg[0] ? last_mhd_msg : "libmicrohttpd failed to start");
		teardown(h);
		return -EADDRNOTAVAIL;
	}
	info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
	h->port = info ? info->port : cfg->port;
	*out = h;
	return 0;
}

uint16_t
httpd_port(const struct httpd *h)
{
	return h->port;
}

void
httpd_set_draining(struct httpd *h, bool draining)
{
	atomic_store(&h->draining, draining);
}

bool
httpd_draining(const struct httpd *h)
{
	return atomic_load(&h->draining);
}

unsigned int
httpd_in_flight(const struct httpd *h)
{
	return atomic_load(&h->in_flight);
}

void
httpd_load(struct httpd *h, struct httpd_load *out)
{
	out->connections = atomic_load(&h->n_conns);
	out->connections_peak = atomic_exchange(&h->conns_peak, out->connections);
	out->body_bytes = atomic_load(&h->body_bytes);
	out->body_bytes_peak = atomic_exchange(&h->body_peak, out->body_bytes);
	/* What came in between the loads and the exchanges. */
	if (out->connections_peak < out->connections)
		out->connections_peak = out->connections;
	if (out->body_bytes_peak < out->body_bytes)
		out->body_bytes_peak = out->body_bytes;
}

int
httpd_stop(struct httpd *h, unsigned int timeout_ms)
{
	struct timespec t0, tick = { 0, 10 * 1000000L };
	int rc = 0;

	if (!h)
		return 0;
	/*
	 * Stop accepting, and make the kernel refuse new connections (and
	 * reset those waiting in the backlog) at once, rather than leaving
	 * them to time out. shutdown() keeps the descriptor number ours
	 * until after MHD_stop_daemon(), so no thread can race on a reused one.
	 */
	h->listen_fd = MHD_quiesce_daemon(h->daemon);
	if (h->listen_fd != MHD_INVALID_SOCKET)
		(void)shutdown(h->listen_fd, SHUT_RDWR);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (httpd_in_flight(h) > 0) {
		if (seconds_since(&t0) * 1000.0 >= (double)timeout_ms) {
			rc = -ETIMEDOUT;
			break;
		}
		nanosleep(&tick, NULL);
	}
	defer_wait_idle(h);
	MHD_stop_daemon(h->daemon);
	if (h->listen_fd != MHD_INVALID_SOCKET)
		close(h->listen_fd);
	teardown(h);
	return rc;
}

int
httpd_reply_text(struct httpd_reply *reply, int status, const char *text)
{
	reply->status = status;
	reply->content_type = "text/plain; charset=utf-8";
	reply->body = strdup(text);
	if (!reply->body)
		return -ENOMEM;
	reply->body_len = strlen(text);
	return 0;
}

int
httpd_serve_metrics(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct buf b;
	int rc;

	(void)req;
	buf_init(&b, HTTPD_METRICS_MAX);
	rc = metrics_render(arg, &b);
	if (rc)
		return rc;
	reply->status = 200;
	reply->content_type = METRICS_CONTENT_TYPE;
	reply->body = buf_steal(&b, &reply->body_len);
	return reply->body ? 0 : -ENOMEM;
}
