/* httpd.c -- an HTTPS server on libmicrohttpd: exact-path routes, capped bodies, graceful stop */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
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
#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "tls_transport.h"

struct httpd {
	struct MHD_Daemon *daemon;
	struct httpd_config cfg;
	atomic_bool draining;
	atomic_uint in_flight;
	uint16_t port;
	MHD_socket listen_fd;		/* ours once quiesced */
};

/* Per request: from the first call of the access handler to NOTIFY_COMPLETED. */
struct request {
	const struct httpd_route *route;	/* NULL for an unknown path */
	struct buf body;
	struct timespec start;
	int status;			/* the status queued, 0 before */
	bool head;			/* a HEAD request: no body is sent */
	bool too_large;			/* the body went past the route's cap */
	size_t discarded;		/* bytes dropped since */
};

/* Per connection: from NOTIFY_CONNECTION STARTED to CLOSED. */
struct conn_ctx {
	struct httpd *h;
	struct tls_cred *cred;		/* what its handshake was given, or NULL */
	struct tls_transport *io;	/* its TLS session's transport, or NULL */
};

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
	log_debug("libmicrohttpd", "{s:s}", "detail", last_mhd_msg);
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

/*
 * Which credentials a handshake gets. GnuTLS passes no user pointer, but
 * libmicrohttpd makes the connection the session pointer, and the
 * connection's context (made in on_connection) leads to the store. The
 * reference taken here is dropped when the connection closes, so a
 * certificate rotated away is freed only once no session can use it.
 */
static int
retrieve_cert(gnutls_session_t session, const gnutls_datum_t *req_ca_dn,
    int n_req_ca_dn, const gnutls_pk_algorithm_t *pk_algos,
    int n_pk_algos, gnutls_pcert_st **pcert, unsigned int *n_pcert,
    gnutls_privkey_t *key)
{
	struct MHD_Connection *conn = gnutls_session_get_ptr(session);
	const union MHD_ConnectionInfo *info;
	struct conn_ctx *ctx;

	(void)req_ca_dn;
	(void)n_req_ca_dn;
	(void)pk_algos;
	(void)n_pk_algos;
	if (!conn)
		return -1;
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	ctx = info ? info->socket_context : NULL;
	if (!ctx || !ctx->h->cfg.tls)
		return -1;
	/* A renegotiation keeps the credentials the connection started with. */
	if (!ctx->cred)
		ctx->cred = tls_store_acquire(ctx->h->cfg.tls);
	tls_cred_get(ctx->cred, pcert, n_pcert, key);
	if (tls_store_client_ca(ctx->h->cfg.tls)) {
		/*
		 * libmicrohttpd only asks for a client certificate; require
		 * one, and have GnuTLS verify it against the trusted CAs,
		 * for client authentication, during the handshake. Both take
		 * effect because the certificate request is sent after this
		 * callback.
		 */
		gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert2(session, client_purpose, 1, 0);
	}
	return 0;
}

/*
 * libmicrohttpd has made the TLS session (with GnuTLS's own transport on
 * the socket) but not started the handshake when a connection starts; it
 * is the session's only user, on one thread, until the connection closes.
 * The session gets the transport of tls_transport.c: see respond().
 */
static void
attach_transport(struct MHD_Connection *conn, struct conn_ctx *ctx)
{
	const union MHD_ConnectionInfo *info;
	int fd;

	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!info)
		return;
	fd = info->connect_fd;
	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!info || !info->tls_session)
		return;
	/* Out of memory: GnuTLS's transport stays, nothing else changes. */
	ctx->io = tls_transport_attach((gnutls_session_t)info->tls_session, fd);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode code)
{
	struct httpd *h = cls;
	struct conn_ctx *ctx;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		ctx = calloc(1, sizeof(*ctx));
		if (ctx) {
			ctx->h = h;
			attach_transport(conn, ctx);
		}
		*socket_context = ctx;	/* NULL fails the handshake */
	} else {
		ctx = *socket_context;
		if (ctx) {
			/* The session is gone already (MHD_cleanup_connections()). */
			tls_transport_free(ctx->io);
			tls_cred_release(ctx->cred);
			free(ctx);
		}
		*socket_context = NULL;
	}
}

static struct tls_transport *
conn_transport(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info;
	struct conn_ctx *ctx;

	info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	ctx = info ? info->socket_context : NULL;
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

/*
 * Queues one response. body is freed by libmicrohttpd when owned, and
 * freed here if the response cannot be made. While draining, the
 * connection is closed after it.
 */
static enum MHD_Result
respond(struct httpd *h, struct MHD_Connection *conn, struct request *r,
    int status, const char *content_type, char *body, size_t len,
    bool owned, const char *allow)
{
	struct MHD_Response *resp;
	struct tls_transport *io;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, body,
	    owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	    content_type ? content_type : "text/plain; charset=utf-8") != MHD_YES ||
	    (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
	    allow) != MHD_YES) ||
	    (atomic_load(&h->draining) && MHD_add_response_header(resp,
	    MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)) {
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
	io = body_follows_header(r, status, len) ? conn_transport(conn) : NULL;
	if (io)
		tls_transport_hold_next(io);
	ret = MHD_queue_response(conn, (unsigned int)status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		r->status = status;
	else if (io)
		(void)tls_transport_settle(io, false);
	return ret;
}

/* The transport's own answers (404, 405, 413, 415, 500), static text. */
static enum MHD_Result
respond_text(struct httpd *h, struct MHD_Connection *conn, struct request *r,
    int status, const char *text, const char *allow)
{
	log_debug("request refused", "{s:i, s:s}", "status", status,
	    "path", r->route ? r->route->path : "(unknown)");
	return respond(h, conn, r, status, NULL, (char *)(uintptr_t)text,
	    strlen(text), false, allow);
}

/* Content-Length is checked before a byte of the body is read. */
static enum MHD_Result
check_body_headers(struct httpd *h, struct MHD_Connection *conn,
    struct request *r, const char *method)
{
	const struct httpd_route *route = r->route;
	const char *len, *type;
	unsigned long long n;
	char *end;

	if (route->content_type && strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
		type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!media_type_is(type, route->content_type))
			return respond_text(h, conn, r,
			    MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
			    "unsupported media type\n", NULL);
	}
	len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (len) {
		errno = 0;
		n = strtoull(len, &end, 10);
		if (errno || end == len || *end != '\0')
			return respond_text(h, conn, r, MHD_HTTP_BAD_REQUEST,
			    "bad Content-Length\n", NULL);
		if (n > route->max_body)
			return respond_text(h, conn, r,
			    MHD_HTTP_CONTENT_TOO_LARGE,
			    "request body too large\n", NULL);
	}
	return MHD_YES;
}

/* First call: headers are in, no body read yet. */
static enum MHD_Result
begin_request(struct httpd *h, struct MHD_Connection *conn, const char *url,
    const char *method, void **req_cls)
{
	const struct httpd_route *route;
	struct request *r = calloc(1, sizeof(*r));

	if (!r)
		return MHD_NO;
	clock_gettime(CLOCK_MONOTONIC, &r->start);
	buf_init(&r->body, 0);
	r->head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	*req_cls = r;
	atomic_fetch_add(&h->in_flight, 1);

	route = find_route(h, url);
	if (!route)
		return respond_text(h, conn, r, MHD_HTTP_NOT_FOUND,
		    "404 page not found\n", NULL);
	r->route = route;
	if (route->observe && h->cfg.begin)
		h->cfg.begin(route, h->cfg.hook_arg);
	if (!(method_bit(method) & route->methods))
		return respond_text(h, conn, r, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "method not allowed\n", allow_header(route->methods));
	buf_init(&r->body, route->max_body);
	return check_body_headers(h, conn, r, method);
}

/*
 * A body chunk. libmicrohttpd 0.9.75 cannot queue a response while a body
 * is arriving, so a body without Content-Length that outgrows the cap is
 * dropped from then on (the buffer is already freed): if it ends within
 * HTTPD_DISCARD_MAX more bytes it gets its 413 at the end, otherwise the
 * connection is closed.
 */
static enum MHD_Result
take_body(struct request *r, const char *data, size_t *size)
{
	size_t n = *size;
	int rc;

	*size = 0;
	if (r->too_large) {
		r->discarded += n;
		return r->discarded > HTTPD_DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	rc = buf_add(&r->body, data, n);
	if (rc == -E2BIG) {
		r->too_large = true;
		r->discarded = n;
		return n > HTTPD_DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	return rc ? MHD_NO : MHD_YES;
}

static enum MHD_Result
dispatch(struct httpd *h, struct MHD_Connection *conn, struct request *r,
    const char *url, const char *method)
{
	struct httpd_request req = {
		.method = method,
		.path = url,
		.body = buf_str(&r->body),
		.body_len = r->body.len,
		.conn = conn,
	};
	struct httpd_reply reply = { 0, NULL, NULL, 0 };
	int rc;

	if (r->too_large)
		return respond_text(h, conn, r, MHD_HTTP_CONTENT_TOO_LARGE,
		    "request body too large\n", NULL);
	rc = r->route->handler(&req, &reply, r->route->arg);
	if (rc || reply.status < 100 || reply.status > 599) {
		free(reply.body);
		log_error("request handler failed", "{s:s, s:s, s:i}",
		    "path", url, "error", rc ? strerror(-rc) : "bad status",
		    "status", reply.status);
		return respond_text(h, conn, r, MHD_HTTP_INTERNAL_SERVER_ERROR,
		    "internal server error\n", NULL);
	}
	return respond(h, conn, r, reply.status, reply.content_type,
	    reply.body, reply.body_len, true, NULL);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct httpd *h = cls;
	struct request *r = *req_cls;

	(void)version;
	if (!r)
		return begin_request(h, conn, url, method, req_cls);
	if (r->status) {
		/* Answered early; whatever still arrives is dropped. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size)
		return take_body(r, upload_data, upload_data_size);
	return dispatch(h, conn, r, url, method);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct httpd *h = cls;
	struct request *r = *req_cls;

	/*
	 * The response has been handed to GnuTLS in full (or abandoned). A
	 * record still held would mean body_follows_header() was wrong: it
	 * is sent now rather than left behind.
	 */
	if (!tls_transport_settle(conn_transport(conn),
	    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) &&
	    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		log_error("TLS record sent late", "{s:s}", "path",
		    r && r->route ? r->route->path : "(unknown)");
	if (!r)
		return;
	if (r->route && r->route->observe && h->cfg.end)
		h->cfg.end(r->route, r->status, seconds_since(&r->start),
		    h->cfg.hook_arg);
	buf_free(&r->body);
	free(r);
	*req_cls = NULL;
	atomic_fetch_sub(&h->in_flight, 1);
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

static struct MHD_Daemon *
start_daemon(struct httpd *h, unsigned int flags, struct sockaddr_storage *ss,
    unsigned int threads)
{
	const struct httpd_config *c = &h->cfg;
	struct MHD_OptionItem opts[16];
	size_t n = 0;

#define OPT(o, v, p) \
	do { opts[n].option = (o); opts[n].value = (intptr_t)(v); \
	opts[n].ptr_value = (p); n++; } while (0)
	OPT(MHD_OPTION_EXTERNAL_LOGGER, log_mhd, h);
	OPT(MHD_OPTION_SOCK_ADDR, 0, ss);
	OPT(MHD_OPTION_CONNECTION_LIMIT,
	    c->conn_limit ? c->conn_limit : HTTPD_CONN_LIMIT, NULL);
	OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    c->per_ip_limit ? c->per_ip_limit : HTTPD_PER_IP_LIMIT, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT,
	    c->timeout_s ? c->timeout_s : HTTPD_TIMEOUT_S, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTPD_CONN_MEMORY, NULL);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, h);
	if (threads > 1)
		OPT(MHD_OPTION_THREAD_POOL_SIZE, threads, NULL);
	if (c->tls) {
		OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, h);
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

int
httpd_start(const struct httpd_config *cfg, struct httpd **out, char *err,
    size_t errlen)
{
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
	    MHD_USE_ITC | MHD_USE_ERROR_LOG;
	const char *addr = cfg->bind_address ? cfg->bind_address : "0.0.0.0";
	const union MHD_DaemonInfo *info;
	struct sockaddr_storage ss;
	struct httpd *h;

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
	h->listen_fd = MHD_INVALID_SOCKET;
	atomic_init(&h->draining, false);
	atomic_init(&h->in_flight, 0);
	if (cfg->tls)
		flags |= MHD_USE_TLS;
	last_mhd_msg[0] = '\0';
	h->daemon = start_daemon(h, flags, &ss,
	    cfg->threads ? cfg->threads : httpd_default_threads(NULL));
	if (!h->daemon) {
		snprintf(err, errlen, "cannot serve on %s port %u: %s", addr,
		    (unsigned int)cfg->port,
		    last_mhd_msg[0] ? last_mhd_msg : "libmicrohttpd failed to start");
		free(h);
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
	MHD_stop_daemon(h->daemon);
	if (h->listen_fd != MHD_INVALID_SOCKET)
		close(h->listen_fd);
	free(h);
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
