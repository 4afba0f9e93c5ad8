/* check_httpd.c -- the HTTP server module in-process, over plain HTTP and HTTPS */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "httpd.h"
#include "log.h"
#include "testutil.h"
#include "tls.h"
#include "tls_transport.h"

Suite *httpd_suite(void);

#define ECHO_MAX 4096
#define LARGE_MAX (256 * 1024)

/* What the handlers and hooks saw, for the tests to check. */
static atomic_int begun, ended, last_status;
static atomic_int slow_ms;
static char ca_file[PATH_MAX];		/* the CA to trust over HTTPS */

static int
serve_hello(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	const char *who = httpd_query(req, "who");
	char text[128];

	(void)arg;
	snprintf(text, sizeof(text), "hello %s, %s", who ? who : "nobody",
	    httpd_header(req, "x-test") ? httpd_header(req, "X-TEST") : "-");
	reply->status = 200;
	reply->body = strdup(text);
	reply->body_len = strlen(text);
	return reply->body ? 0 : -ENOMEM;
}

/* Answers the body back, after slow_ms milliseconds. */
static int
serve_echo(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct timespec ts = { 0, 0 };

	(void)arg;
	ts.tv_sec = atomic_load(&slow_ms) / 1000;
	ts.tv_nsec = (long)(atomic_load(&slow_ms) % 1000) * 1000000L;
	nanosleep(&ts, NULL);
	ck_assert_int_eq(req->body[req->body_len], '\0');
	reply->status = 201;
	reply->content_type = "application/octet-stream";
	reply->body = malloc(req->body_len + 1);
	if (!reply->body)
		return -ENOMEM;
	memcpy(reply->body, req->body, req->body_len);
	reply->body_len = req->body_len;
	return 0;
}

static int
serve_broken(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	(void)req;
	if (arg) {
		reply->status = 42;	/* not an HTTP status */
		return 0;
	}
	reply->body = strdup("half-made");
	return -EIO;
}

/* The byte at offset i of a /large answer: no period near a record's size. */
static char
pattern(size_t i)
{
	return (char)('a' + (i + i / 997) % 26);
}

/* GET: ?n= bytes of pattern(); POST: the body back. */
static int
serve_large(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	const char *n = httpd_query(req, "n");
	size_t len = req->body_len ? req->body_len :
	    n ? strtoul(n, NULL, 10) : 0;

	(void)arg;
	reply->status = 200;
	reply->content_type = "application/octet-stream";
	reply->body = malloc(len + 1);
	if (!reply->body)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		reply->body[i] = req->body_len ? req->body[i] : pattern(i);
	reply->body_len = len;
	return 0;
}

/*
 * Defers when it can (then waits, on its own thread, until released);
 * answers "inline" when no thread is free.
 */
static atomic_int deferred_waiting, release_deferred;

static int
serve_defer(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct timespec tick = { 0, 2 * 1000000L };

	(void)arg;
	if (!req->may_block) {
		if (httpd_defer(req))
			return HTTPD_DEFER;
		return httpd_reply_text(reply, 200, "inline");
	}
	ck_assert(!httpd_defer(req));	/* once is all */
	atomic_fetch_add(&deferred_waiting, 1);
	while (!atomic_load(&release_deferred))
		nanosleep(&tick, NULL);
	atomic_fetch_sub(&deferred_waiting, 1);
	return httpd_reply_text(reply, 200, "deferred");
}

static const struct httpd_route routes[] = {
	{ .path = "/defer", .methods = HTTPD_GET, .handler = serve_defer },
	{ .path = "/hello", .methods = HTTPD_GET, .handler = serve_hello },
	{ .path = "/echo", .methods = HTTPD_POST,
	  .content_type = "application/json", .max_body = ECHO_MAX,
	  .handler = serve_echo, .observe = true },
	{ .path = "/both", .methods = HTTPD_GET | HTTPD_POST,
	  .max_body = 16, .handler = serve_hello },
	{ .path = "/broken", .methods = HTTPD_GET, .handler = serve_broken },
	{ .path = "/badstatus", .methods = HTTPD_GET, .handler = serve_broken,
	  .arg = (void *)1 },
	{ .path = "/large", .methods = HTTPD_GET | HTTPD_POST,
	  .max_body = LARGE_MAX, .handler = serve_large },
};

static void
on_begin(const struct httpd_route *route, void *arg)
{
	(void)route;
	(void)arg;
	atomic_fetch_add(&begun, 1);
}

static void
on_end(const struct httpd_route *route, int status, double seconds, void *arg)
{
	(void)route;
	(void)arg;
	ck_assert(seconds >= 0);
	atomic_store(&last_status, status);
	atomic_fetch_add(&ended, 1);
}

static struct httpd *
start(const char *addr, struct tls_store *tls, unsigned int threads)
{
	struct httpd_config cfg = {
		.bind_address = addr,
		.tls = tls,
		.threads = threads,
		.routes = routes,
		.n_routes = sizeof(routes) / sizeof(routes[0]),
		.begin = on_begin,
		.end = on_end,
	};
	struct httpd *h;
	char err[256];

	ck_assert_msg(httpd_start(&cfg, &h, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_ne(httpd_port(h), 0);
	return h;
}

/* One exchange with libcurl, every detail a test may look at. */
struct exchange {
	const char *method;
	const char *path;
	const char *content_type;	/* NULL: no header */
	const char *body;
	size_t len;
	size_t chunked;			/* >0: that many zero bytes, chunked */
	bool expect;			/* Expect: 100-continue, waiting long */
	const char *header;		/* one extra request header */
	/* out */
	CURLcode rc;
	long status;
	struct buf reply;
	struct buf headers;
	curl_off_t uploaded;
};

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
	return buf_add(arg, p, size * n) == 0 ? size * n : 0;
}

static size_t
on_read(char *p, size_t size, size_t n, void *arg)
{
	size_t *left = arg, k = size * n < *left ? size * n : *left;

	memset(p, '0', k);
	*left -= k;
	return k;
}

static void
fetch(struct httpd *h, const char *scheme, struct exchange *x)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char url[256], line[256];
	size_t left = x->chunked;

	ck_assert_ptr_nonnull(c);
	buf_init(&x->reply, 16 << 20);
	buf_init(&x->headers, 1 << 16);
	snprintf(url, sizeof(url), "%s://localhost:%u%s", scheme,
	    (unsigned int)httpd_port(h), x->path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x->reply);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x->headers);
	if (ca_file[0])
		curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
	if (strcmp(x->method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (x->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", x->content_type);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (x->header)
		hdrs = curl_slist_append(hdrs, x->header);
	if (x->body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, x->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)x->len);
	} else if (x->chunked) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &left);
		hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
	}
	hdrs = curl_slist_append(hdrs, x->expect ? "Expect: 100-continue" :
	    "Expect:");
	curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 60000L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	x->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
	curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &x->uploaded);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
}

static void
exchange_free(struct exchange *x)
{
	buf_free(&x->reply);
	buf_free(&x->headers);
}

static bool
has_header(const struct exchange *x, const char *line)
{
	return strcasestr(buf_str(&x->headers), line) != NULL;
}

static int null_fd = -1;

static void
quiet(void)
{
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	log_set_fd(null_fd);
	atomic_store(&slow_ms, 0);
}

static void
loud(void)
{
	log_set_fd(-1);
	if (null_fd >= 0)
		close(null_fd);
	null_fd = -1;
}

/* Default threads: affinity, then the cgroup's CPU quota, then the cap. */
START_TEST(test_default_threads)
{
	char dir[] = "/tmp/milo-cgroup-XXXXXX", sub[64], cmd[128];
	cpu_set_t set;
	unsigned int cpus, cap;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	cpus = (unsigned int)CPU_COUNT(&set);
	cap = cpus < HTTPD_DEFAULT_THREADS ? cpus : HTTPD_DEFAULT_THREADS;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* no cgroup files at all */
	ck_assert_uint_eq(httpd_default_threads(dir), cap);
	/* cgroup v2 */
	tu_write_file(dir, "cpu.max", "max 100000\n");
	ck_assert_uint_eq(httpd_default_threads(dir), cap);
	tu_write_file(dir, "cpu.max", "50000 100000\n");
	ck_assert_uint_eq(httpd_default_threads(dir), 1);
	tu_write_file(dir, "cpu.max", "100001 100000\n");
	ck_assert_uint_eq(httpd_default_threads(dir), cap < 2 ? cap : 2);
	tu_write_file(dir, "cpu.max", "6400000 100000\n");
	ck_assert_uint_eq(httpd_default_threads(dir), cap);
	tu_write_file(dir, "cpu.max", "garbage\n");
	ck_assert_uint_eq(httpd_default_threads(dir), cap);
	/* cgroup v1 (no cpu.max) */
	snprintf(cmd, sizeof(cmd), "rm -f %s/cpu.max", dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(sub, sizeof(sub), "%s/cpu", dir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	tu_write_file(sub, "cpu.cfs_quota_us", "-1\n");
	tu_write_file(sub, "cpu.cfs_period_us", "100000\n");
	ck_assert_uint_eq(httpd_default_threads(dir), cap);
	tu_write_file(sub, "cpu.cfs_quota_us", "20000\n");
	ck_assert_uint_eq(httpd_default_threads(dir), 1);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	/* this machine's own cgroup: something sensible */
	ck_assert_uint_ge(httpd_default_threads(NULL), 1);
	ck_assert_uint_le(httpd_default_threads(NULL), HTTPD_DEFAULT_THREADS);
}
END_TEST

START_TEST(test_routes)
{
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "GET", .path = "/hello?who=ann%20b",
	    .header = "X-Test: yes" };

	fetch(h, "http", &x);
	ck_assert_int_eq(x.rc, CURLE_OK);
	ck_assert_int_eq(x.status, 200);
	ck_assert_str_eq(buf_str(&x.reply), "hello ann b, yes");
	ck_assert(has_header(&x, "Content-Type: text/plain"));
	ck_assert(!has_header(&x, "Connection: close"));
	exchange_free(&x);

	x = (struct exchange){ .method = "HEAD", .path = "/hello" };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 200);
	ck_assert_uint_eq(x.reply.len, 0);
	exchange_free(&x);

	x = (struct exchange){ .method = "GET", .path = "/hello/" };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 404);
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

START_TEST(test_method_not_allowed)
{
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "GET", .path = "/echo" };

	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 405);
	ck_assert(has_header(&x, "Allow: POST\r\n"));
	exchange_free(&x);
	x = (struct exchange){ .method = "DELETE", .path = "/both" };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 405);
	ck_assert(has_header(&x, "Allow: GET, HEAD, POST\r\n"));
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .path = "/hello",
	    .body = "x", .len = 1, .content_type = "application/json" };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 405);
	ck_assert(has_header(&x, "Allow: GET, HEAD\r\n"));
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

START_TEST(test_body_round_trip)
{
	static const char body[] = "{\"a\":\"\0\xff\"}";
	struct httpd *h = start("127.0.0.1", NULL, 2);
	struct exchange x = { .method = "POST", .path = "/echo?timeout=10s",
	    .content_type = "Application/JSON ; charset=utf-8",
	    .body = body, .len = sizeof(body) - 1 };

	atomic_store(&begun, 0);
	atomic_store(&ended, 0);
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 201);
	ck_assert_uint_eq(x.reply.len, sizeof(body) - 1);
	ck_assert_mem_eq(x.reply.ptr, body, sizeof(body) - 1);
	ck_assert(has_header(&x, "Content-Type: application/octet-stream"));
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
	/* The end hook has run by the time the server is stopped. */
	ck_assert_int_eq(atomic_load(&begun), 1);
	ck_assert_int_eq(atomic_load(&ended), 1);
	ck_assert_int_eq(atomic_load(&last_status), 201);
}
END_TEST

START_TEST(test_unsupported_media_type)
{
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "POST", .path = "/echo",
	    .content_type = "text/plain", .body = "{}", .len = 2 };

	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 415);
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .path = "/echo",
	    .content_type = "application/jsonx", .body = "{}", .len = 2 };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 415);
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .path = "/echo",
	    .body = "{}", .len = 2, .header = "Content-Type:" };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 415);
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

START_TEST(test_handler_failures)
{
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "GET", .path = "/broken" };

	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 500);
	exchange_free(&x);
	x = (struct exchange){ .method = "GET", .path = "/badstatus" };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 500);
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

START_TEST(test_draining)
{
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "GET", .path = "/hello" };

	ck_assert(!httpd_draining(h));
	httpd_set_draining(h, true);
	ck_assert(httpd_draining(h));
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 200);
	ck_assert(has_header(&x, "Connection: close"));
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

START_TEST(test_ipv6)
{
	struct httpd *h = start("::1", NULL, 1);
	struct exchange x = { .method = "GET", .path = "/hello" };
	char url[128];
	CURL *c = curl_easy_init();
	long status = 0;

	snprintf(url, sizeof(url), "http://[::1]:%u/hello",
	    (unsigned int)httpd_port(h));
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	buf_init(&x.reply, 1024);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x.reply);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	ck_assert_int_eq(status, 200);
	curl_easy_cleanup(c);
	buf_free(&x.reply);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

struct background {
	struct httpd *h;
	struct exchange x;
	pthread_t thread;
};

static void *
background_main(void *arg)
{
	struct background *bg = arg;

	fetch(bg->h, "http", &bg->x);
	return NULL;
}

/* Stopping waits for the request in flight, which completes. */
START_TEST(test_stop_finishes_in_flight)
{
	struct background bg = { .x = { .method = "POST", .path = "/echo",
	    .content_type = "application/json", .body = "{}", .len = 2 } };
	struct timespec tick = { 0, 5 * 1000000L };

	atomic_store(&slow_ms, 700);
	bg.h = start("127.0.0.1", NULL, 1);
	ck_assert_int_eq(pthread_create(&bg.thread, NULL, background_main, &bg), 0);
	for (int i = 0; i < 6000 && httpd_in_flight(bg.h) == 0; i++)
		nanosleep(&tick, NULL);
	ck_assert_uint_eq(httpd_in_flight(bg.h), 1);
	ck_assert_int_eq(httpd_stop(bg.h, 30000), 0);
	pthread_join(bg.thread, NULL);
	ck_assert_int_eq(bg.x.rc, CURLE_OK);
	ck_assert_int_eq(bg.x.status, 201);
	exchange_free(&bg.x);
}
END_TEST

static void
wait_deferred(int n)
{
	struct timespec tick = { 0, 2 * 1000000L };

	for (int i = 0; i < 30000 && atomic_load(&deferred_waiting) != n; i++)
		nanosleep(&tick, NULL);
	ck_assert_int_eq(atomic_load(&deferred_waiting), n);
}

static void *
release_later(void *arg)
{
	struct timespec t = { 0, 200 * 1000000L };

	(void)arg;
	nanosleep(&t, NULL);
	atomic_store(&release_deferred, 1);
	return NULL;
}

/*
 * A deferred handler waits on a thread of its own: the one serving thread
 * answers others meanwhile; with every deferral thread taken the handler
 * answers inline; the answer comes once it is done; and stopping waits for
 * a deferred one rather than abandoning its suspended connection.
 */
START_TEST(test_deferred_handlers)
{
	struct httpd_config cfg = { .bind_address = "127.0.0.1", .threads = 1,
	    .defer_threads = 1, .routes = routes,
	    .n_routes = sizeof(routes) / sizeof(routes[0]) };
	struct background bg = { .x = { .method = "GET", .path = "/defer" } };
	struct exchange x = { .method = "GET", .path = "/defer" };
	pthread_t releaser;
	char err[256];

	atomic_store(&release_deferred, 0);
	ck_assert_msg(httpd_start(&cfg, &bg.h, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(pthread_create(&bg.thread, NULL, background_main, &bg), 0);
	wait_deferred(1);
	fetch(bg.h, "http", &x);
	ck_assert_int_eq(x.status, 200);
	ck_assert_str_eq(buf_str(&x.reply), "inline");
	exchange_free(&x);
	x = (struct exchange){ .method = "GET", .path = "/hello" };
	fetch(bg.h, "http", &x);
	ck_assert_int_eq(x.status, 200);
	exchange_free(&x);
	atomic_store(&release_deferred, 1);
	pthread_join(bg.thread, NULL);
	ck_assert_int_eq(bg.x.status, 200);
	ck_assert_str_eq(buf_str(&bg.x.reply), "deferred");
	exchange_free(&bg.x);

	/*
	 * Stopping, with no time for the requests in flight, while one is
	 * deferred: its handler is let finish and its connection resumed
	 * before the daemon stops (libmicrohttpd 0.9.75 aborts the process
	 * when it stops with a connection still suspended).
	 */
	atomic_store(&release_deferred, 0);
	bg.x = (struct exchange){ .method = "GET", .path = "/defer" };
	ck_assert_int_eq(pthread_create(&bg.thread, NULL, background_main, &bg), 0);
	wait_deferred(1);
	ck_assert_int_eq(pthread_create(&releaser, NULL, release_later, NULL), 0);
	ck_assert_int_eq(httpd_stop(bg.h, 1), -ETIMEDOUT);
	pthread_join(releaser, NULL);
	pthread_join(bg.thread, NULL);
	ck_assert_int_eq(atomic_load(&deferred_waiting), 0);
	exchange_free(&bg.x);
}
END_TEST

START_TEST(test_bind_errors)
{
	struct httpd_config cfg = { .bind_address = "localhost",
	    .routes = routes, .n_routes = 1 };
	struct httpd *h, *h2;
	char err[256];

	ck_assert_int_eq(httpd_start(&cfg, &h, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(h);
	ck_assert_ptr_nonnull(strstr(err, "not an IP address"));
	h = start("127.0.0.1", NULL, 1);
	cfg.bind_address = "127.0.0.1";
	cfg.port = httpd_port(h);
	ck_assert_int_eq(httpd_start(&cfg, &h2, err, sizeof(err)),
	    -EADDRNOTAVAIL);
	ck_assert_ptr_nonnull(strstr(err, "cannot serve on 127.0.0.1 port"));
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
	ck_assert_int_eq(httpd_stop(NULL, 0), 0);
}
END_TEST

/* Refused from the headers: not a byte of the body is sent. */
START_TEST(test_content_length_too_large)
{
	static char body[ECHO_MAX + 1];
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "POST", .path = "/echo",
	    .content_type = "application/json", .body = body,
	    .len = sizeof(body), .expect = true };

	memset(body, ' ', sizeof(body));
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 413);
	ck_assert_int_eq(x.uploaded, 0);
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .path = "/echo",
	    .content_type = "application/json", .body = body, .len = ECHO_MAX };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 201);	/* the cap itself is fine */
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

/* Without Content-Length: 413 a little past the cap, hang up far past it. */
START_TEST(test_chunked_too_large)
{
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "POST", .path = "/echo",
	    .content_type = "application/json", .chunked = ECHO_MAX + 100 };

	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 413);
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .path = "/echo",
	    .content_type = "application/json",
	    .chunked = ECHO_MAX + HTTPD_DISCARD_MAX + 65536 };
	fetch(h, "http", &x);
	ck_assert_int_ne(x.rc, CURLE_OK);
	ck_assert_int_ne(x.status, 201);
	exchange_free(&x);
	/* GET routes take no body at all. */
	x = (struct exchange){ .method = "GET", .path = "/hello",
	    .body = "x", .len = 1, .expect = true };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 413);
	exchange_free(&x);
	x = (struct exchange){ .method = "GET", .path = "/hello" };
	fetch(h, "http", &x);
	ck_assert_int_eq(x.status, 200);
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

START_TEST(test_bad_content_length)
{
	struct httpd *h = start("127.0.0.1", NULL, 1);
	struct exchange x = { .method = "POST", .path = "/echo",
	    .content_type = "application/json", .body = "{}", .len = 2,
	    .header = "Content-Length: 99999999999999999999999" };

	fetch(h, "http", &x);
	ck_assert_int_ge(x.status, 400);	/* curl may send two lengths */
	ck_assert_int_le(x.status, 413);
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
}
END_TEST

/* A request stuck mid-body is cut off once the stop timeout passes. */
static size_t
on_read_stall(char *p, size_t size, size_t n, void *arg)
{
	atomic_int *state = arg;
	struct timespec tick = { 0, 5 * 1000000L };

	(void)size;
	(void)n;
	if (atomic_load(state) == 0) {
		atomic_store(state, 1);
		p[0] = '{';
		return 1;
	}
	while (atomic_load(state) == 1)
		nanosleep(&tick, NULL);
	return CURL_READFUNC_ABORT;
}

struct stalled {
	struct httpd *h;
	atomic_int state;
	CURLcode rc;
};

static void *
stalled_main(void *arg)
{
	struct stalled *st = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *hdrs = curl_slist_append(NULL,
	    "Content-Type: application/json");
	char url[128];

	hdrs = curl_slist_append(hdrs, "Expect:");
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/echo",
	    (unsigned int)httpd_port(st->h));
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)100);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read_stall);
	curl_easy_setopt(c, CURLOPT_READDATA, &st->state);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	st->rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return NULL;
}

START_TEST(test_stop_timeout)
{
	struct stalled st = { .state = 0 };
	struct timespec tick = { 0, 5 * 1000000L };
	pthread_t t;

	st.h = start("127.0.0.1", NULL, 1);
	ck_assert_int_eq(pthread_create(&t, NULL, stalled_main, &st), 0);
	for (int i = 0; i < 6000 && httpd_in_flight(st.h) == 0; i++)
		nanosleep(&tick, NULL);
	ck_assert_uint_eq(httpd_in_flight(st.h), 1);
	ck_assert_int_eq(httpd_stop(st.h, 200), -ETIMEDOUT);
	atomic_store(&st.state, 2);
	pthread_join(t, NULL);
	ck_assert_int_ne(st.rc, CURLE_OK);
}
END_TEST

/* The same server over TLS with a store, certificates from certs/dev-cert.sh. */
START_TEST(test_https)
{
	char dir[] = "/tmp/milo-check-httpd-XXXXXX", cmd[1024];
	char cert[PATH_MAX], key[PATH_MAX];
	struct tls_config cfg = { .cert_file = cert, .key_file = key };
	struct tls_store *tls;
	struct httpd *h;
	struct exchange x = { .method = "GET", .path = "/hello" };
	char err[512];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "'%s' '%s'", tu_path("certs/dev-cert.sh"),
	    dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(ca_file, sizeof(ca_file), "%s/ca.crt", dir);
	snprintf(cert, sizeof(cert), "%s/tls.crt", dir);
	snprintf(key, sizeof(key), "%s/tls.key", dir);
	ck_assert_msg(tls_store_open(&cfg, &tls, err, sizeof(err)) == 0, "%s", err);
	h = start("127.0.0.1", tls, 2);
	fetch(h, "https", &x);
	ck_assert_int_eq(x.rc, CURLE_OK);
	ck_assert_int_eq(x.status, 200);
	exchange_free(&x);
	x = (struct exchange){ .method = "GET", .path = "/hello" };
	fetch(h, "http", &x);		/* plain HTTP to a TLS port */
	ck_assert_int_ne(x.rc, CURLE_OK);
	ck_assert_int_eq(x.status, 0);
	exchange_free(&x);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
	tls_store_free(tls);
	ca_file[0] = '\0';
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* ---- TLS transport (lib/tls_transport.c) with a raw GnuTLS client ---- */

/* A CA and a serving certificate in dir (a mkdtemp() template), and a store. */
static struct tls_store *
tls_setup(char *dir)
{
	char cmd[1024], cert[PATH_MAX], key[PATH_MAX], err[512];
	struct tls_config cfg = { .cert_file = cert, .key_file = key };
	struct tls_store *tls;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "'%s' '%s' >/dev/null",
	    tu_path("certs/dev-cert.sh"), dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cert, sizeof(cert), "%s/tls.crt", dir);
	snprintf(key, sizeof(key), "%s/tls.key", dir);
	ck_assert_msg(tls_store_open(&cfg, &tls, err, sizeof(err)) == 0, "%s", err);
	return tls;
}

static void
tls_teardown(struct tls_store *tls, const char *dir)
{
	char cmd[1024];

	tls_store_free(tls);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/*
 * One TLS connection, blocking, with 30 s socket timeouts so that a
 * response that never comes fails the test instead of hanging it. The
 * server's certificate is not verified: these tests are about bytes.
 */
struct tclient {
	int fd;
	gnutls_session_t s;
	gnutls_certificate_credentials_t cred;
	char *in;			/* received, not yet consumed */
	size_t in_len, in_cap;
};

static void
tclient_open(struct tclient *c, uint16_t port, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { 30, 0 };
	int rc;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c->fd, 0);
	if (rcvbuf)
		ck_assert_int_eq(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF,
		    &rcvbuf, sizeof(rcvbuf)), 0);
	ck_assert_int_eq(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
	    sizeof(tv)), 0);
	ck_assert_int_eq(setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv,
	    sizeof(tv)), 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(gnutls_certificate_allocate_credentials(&c->cred), 0);
	ck_assert_int_eq(gnutls_init(&c->s, GNUTLS_CLIENT), 0);
	ck_assert_int_eq(gnutls_set_default_priority(c->s), 0);
	ck_assert_int_eq(gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE,
	    c->cred), 0);
	gnutls_transport_set_int(c->s, c->fd);
	do
		rc = gnutls_handshake(c->s);
	while (rc < 0 && !gnutls_error_is_fatal(rc));
	ck_assert_msg(rc == 0, "handshake: %s", gnutls_strerror(rc));
}

static void
tclient_close(struct tclient *c)
{
	gnutls_deinit(c->s);
	gnutls_certificate_free_credentials(c->cred);
	close(c->fd);
	free(c->in);
}

/* Sends data as one record (GnuTLS splits it past 16 KiB). */
static void
tclient_send(struct tclient *c, const char *data, size_t len)
{
	ssize_t n;

	while (len) {
		n = gnutls_record_send(c->s, data, len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		ck_assert_msg(n > 0, "send: %s", gnutls_strerror((int)n));
		data += n;
		len -= (size_t)n;
	}
}

static void
tclient_sendstr(struct tclient *c, const char *s)
{
	tclient_send(c, s, strlen(s));
}

/* Records sent while corked leave in one TCP segment when uncorked. */
static void
tclient_cork(struct tclient *c, int on)
{
	ck_assert_int_eq(setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on,
	    sizeof(on)), 0);
}

/* Reads more; false at the end of the stream. */
static bool
tclient_fill(struct tclient *c)
{
	ssize_t n;

	if (c->in_cap - c->in_len < 65536) {
		c->in_cap = c->in_cap ? 2 * c->in_cap : 262144;
		c->in = realloc(c->in, c->in_cap);
		ck_assert_ptr_nonnull(c->in);
	}
	do
		n = gnutls_record_recv(c->s, c->in + c->in_len, 65536);
	while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED);
	ck_assert_msg(n >= 0, "recv: %s", gnutls_strerror((int)n));
	c->in_len += (size_t)n;
	return n > 0;
}

/*
 * Reads one response: its status, and its body (Content-Length bytes; none
 * for a HEAD) into body when not NULL. -1 when the stream ends first.
 */
static int
tclient_response(struct tclient *c, bool head, struct buf *body)
{
	const char *end, *cl;
	size_t hdr, len = 0;
	int status;

	for (;;) {
		end = c->in_len ? memmem(c->in, c->in_len, "\r\n\r\n", 4) : NULL;
		if (end)
			break;
		if (!tclient_fill(c))
			return -1;
	}
	hdr = (size_t)(end - c->in) + 4;
	c->in[hdr - 2] = '\0';
	ck_assert_int_eq(sscanf(c->in, "HTTP/1.1 %d ", &status), 1);
	cl = strcasestr(c->in, "\r\nContent-Length:");
	if (cl)
		len = strtoul(cl + 17, NULL, 10);
	if (head)
		len = 0;
	while (c->in_len < hdr + len) {
		if (!tclient_fill(c))
			return -1;
	}
	if (body) {
		buf_reset(body);
		ck_assert_int_eq(buf_add(body, c->in + hdr, len), 0);
	}
	memmove(c->in, c->in + hdr + len, c->in_len - hdr - len);
	c->in_len -= hdr + len;
	return status;
}

static void
check_pattern(const struct buf *b, size_t n)
{
	ck_assert_uint_eq(b->len, n);
	for (size_t i = 0; i < n; i++) {
		if (b->ptr[i] != pattern(i))
			ck_abort_msg("byte %zu of %zu differs", i, n);
	}
}

/*
 * Requests that arrive together, which the transport reads ahead in one
 * go, are all answered: as separate records in one TCP segment, as one
 * record, and with bodies larger than the read-ahead buffer. A HEAD (no
 * body after the header) and an early 404 work on the same connection.
 */
START_TEST(test_https_pipelined)
{
	char dir[] = "/tmp/milo-check-httpd-XXXXXX", req[512];
	struct tls_store *tls = tls_setup(dir);
	struct httpd *h = start("127.0.0.1", tls, 2);
	unsigned long late = tls_transport_late_sends();
	size_t big = 3 * TLS_TRANSPORT_READ_AHEAD / 2;
	char *body = malloc(big);
	struct tclient c;
	struct buf b;

	ck_assert_ptr_nonnull(body);
	for (size_t i = 0; i < big; i++)
		body[i] = pattern(i);
	buf_init(&b, 8 << 20);
	tclient_open(&c, httpd_port(h), 0);

	/* Three requests, three records (the second split in two), one segment. */
	tclient_cork(&c, 1);
	tclient_sendstr(&c, "GET /hello?who=one HTTP/1.1\r\nHost: x\r\n\r\n");
	snprintf(req, sizeof(req), "POST /large HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: %zu\r\n\r\n", big);
	tclient_sendstr(&c, req);
	tclient_send(&c, body, big);
	tclient_sendstr(&c, "GET /hello?who=three HTTP/1.1\r\nHost: x\r\n\r\n");
	tclient_cork(&c, 0);
	ck_assert_int_eq(tclient_response(&c, false, &b), 200);
	ck_assert_str_eq(buf_str(&b), "hello one, -");
	ck_assert_int_eq(tclient_response(&c, false, &b), 200);
	check_pattern(&b, big);
	ck_assert_int_eq(tclient_response(&c, false, &b), 200);
	ck_assert_str_eq(buf_str(&b), "hello three, -");

	/* Two requests in one record; then HEAD, which has no body, and GET. */
	tclient_sendstr(&c, "GET /hello?who=a HTTP/1.1\r\nHost: x\r\n\r\n"
	    "GET /hello?who=b HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(tclient_response(&c, false, &b), 200);
	ck_assert_str_eq(buf_str(&b), "hello a, -");
	ck_assert_int_eq(tclient_response(&c, false, &b), 200);
	ck_assert_str_eq(buf_str(&b), "hello b, -");
	tclient_sendstr(&c, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(tclient_response(&c, true, &b), 200);
	tclient_sendstr(&c, "GET /hello?who=c HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(tclient_response(&c, false, &b), 200);
	ck_assert_str_eq(buf_str(&b), "hello c, -");

	/* A large answer, then one refused before its body is read. */
	tclient_sendstr(&c, "GET /large?n=1000000 HTTP/1.1\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(tclient_response(&c, false, &b), 200);
	check_pattern(&b, 1000000);
	tclient_sendstr(&c, "POST /nowhere HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 5\r\n\r\nhello");
	ck_assert_int_eq(tclient_response(&c, false, &b), 404);
	tclient_close(&c);

	ck_assert_uint_eq(tls_transport_late_sends(), late);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
	tls_teardown(tls, dir);
	buf_free(&b);
	free(body);
}
END_TEST

struct pipeline {
	struct tclient *c;
	int n;
};

/*
 * Whether the i-th request of a pipeline asks for a large answer: large
 * ones first, which fill the server's socket in the middle of a body
 * while the reader waits; then small ones, sent while it is still full,
 * so that it is full again and again when a header and its body go out.
 */
static bool
pipeline_large(int i)
{
	return i < 200 && i % 2;
}

/* Sends n requests without waiting for answers. */
static void *
pipeline_main(void *arg)
{
	struct pipeline *p = arg;
	char req[128];

	for (int i = 0; i < p->n; i++) {
		if (pipeline_large(i))
			snprintf(req, sizeof(req), "GET /large?n=%d HTTP/1.1\r\n"
			    "Host: x\r\n\r\n", 100000 + i);
		else
			snprintf(req, sizeof(req), "GET /hello?who=%d HTTP/1.1\r\n"
			    "Host: x\r\n\r\n", i);
		tclient_sendstr(p->c, req);
	}
	return NULL;
}

/*
 * A client that reads slowly, through a small receive buffer, while it
 * keeps sending requests: the server's socket is full again and again, in
 * the middle of responses and between a header and its body, and every
 * response still arrives whole and in order.
 */
START_TEST(test_https_slow_reader)
{
	char dir[] = "/tmp/milo-check-httpd-XXXXXX", want[64];
	struct tls_store *tls = tls_setup(dir);
	struct httpd *h = start("127.0.0.1", tls, 1);
	unsigned long late = tls_transport_late_sends();
	struct timespec nap = { 0, 200 * 1000L }, wait = { 0, 300 * 1000000L };
	struct tclient c;
	struct pipeline p = { &c, 3000 };
	pthread_t t;
	struct buf b;

	buf_init(&b, 8 << 20);
	tclient_open(&c, httpd_port(h), 4096);
	ck_assert_int_eq(pthread_create(&t, NULL, pipeline_main, &p), 0);
	nanosleep(&wait, NULL);		/* until the server's socket is full */
	for (int i = 0; i < p.n; i++) {
		if (i % 64 == 0)
			nanosleep(&nap, NULL);
		ck_assert_int_eq(tclient_response(&c, false, &b), 200);
		if (pipeline_large(i)) {
			check_pattern(&b, 100000 + (size_t)i);
		} else {
			snprintf(want, sizeof(want), "hello %d, -", i);
			ck_assert_str_eq(buf_str(&b), want);
		}
	}
	pthread_join(t, NULL);
	tclient_close(&c);
	ck_assert_uint_eq(tls_transport_late_sends(), late);
	ck_assert_int_eq(httpd_stop(h, 1000), 0);
	tls_teardown(tls, dir);
	buf_free(&b);
}
END_TEST

/*
 * lib/tls_transport.c rides on libmicrohttpd 0.9.75's order of events: it
 * is used with exactly that version, at build and at run time, and with
 * no other.
 */
START_TEST(test_own_transport_only_on_its_version)
{
	bool want = MHD_VERSION == 0x00097500 && strcmp(MHD_get_version(), "0.9.75") == 0;

	ck_assert_int_eq(httpd_own_transport(), want);
	/* Debian 12, which the project builds on, has that version. */
	ck_assert(httpd_own_transport());
}
END_TEST

Suite *
httpd_suite(void)
{
	Suite *s = suite_create("httpd");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	curl_global_init(CURL_GLOBAL_DEFAULT);
	tcase_add_checked_fixture(core, quiet, loud);
	tcase_add_checked_fixture(limits, quiet, loud);
	tcase_set_timeout(core, 120);
	tcase_set_timeout(limits, 120);
	tcase_add_test(core, test_routes);
	tcase_add_test(core, test_own_transport_only_on_its_version);
	tcase_add_test(core, test_default_threads);
	tcase_add_test(core, test_method_not_allowed);
	tcase_add_test(core, test_body_round_trip);
	tcase_add_test(core, test_unsupported_media_type);
	tcase_add_test(core, test_handler_failures);
	tcase_add_test(core, test_draining);
	tcase_add_test(core, test_ipv6);
	tcase_add_test(core, test_stop_finishes_in_flight);
	tcase_add_test(core, test_deferred_handlers);
	tcase_add_test(core, test_https);
	tcase_add_test(core, test_https_pipelined);
	tcase_add_test(core, test_https_slow_reader);
	tcase_add_test(limits, test_bind_errors);
	tcase_add_test(limits, test_content_length_too_large);
	tcase_add_test(limits, test_chunked_too_large);
	tcase_add_test(limits, test_bad_content_length);
	tcase_add_test(limits, test_stop_timeout);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
