/* check_webhook.c -- the contact-webhook binary over real HTTPS: transport, TLS, rotation, drain */
#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "buf.h"
#include "clock.h"
#include "httpd.h"
#include "subjects.h"
#include "testutil.h"

Suite *webhook_suite(void);

#define VALIDATE_CONTACT "/validate-notification-miloapis-com-v1alpha1-contact"
#define MUTATE_MEMBERSHIP \
	"/mutate-notification-miloapis-com-v1alpha1-contactgroupmembership"
#define SAMPLE_UID "705ab4f5-6393-11e8-b7cc-42010a800002"
#define GOLDEN "test/fixtures/kubernetes/admission.k8s.io.v1.AdmissionReview.json"
#define WAIT_S 60	/* bound on every wait for the server; never reached when healthy */

static const char *const endpoints[] = {
	"/validate-notification-miloapis-com-v1alpha1-contact",
	"/validate-notification-miloapis-com-v1alpha1-contactgroup",
	"/validate-notification-miloapis-com-v1alpha1-contactgroupmembership",
	"/validate-notification-miloapis-com-v1alpha1-contactgroupmembershipremoval",
	"/mutate-notification-miloapis-com-v1alpha1-contact",
	"/mutate-notification-miloapis-com-v1alpha1-contactgroup",
	"/mutate-notification-miloapis-com-v1alpha1-contactgroupmembership",
	"/mutate-notification-miloapis-com-v1alpha1-contactgroupmembershipremoval",
};

/*
 * A running contact-webhook. dir holds the certificates in the layout a
 * Kubernetes Secret volume has (tls.crt -> ..data/tls.crt, ..data ->
 * ..vN), the CA in ca/, and the server's log.
 */
struct server {
	pid_t pid;
	uint16_t port;
	char dir[128];
	char log[256];
	char ca[256];		/* the CA certificate */
	char cadir[256];	/* where certs/dev-cert.sh keeps its files */
	int version;		/* the ..vN that ..data points at */
};

/* One per TCase, started by its unchecked fixture. */
static struct server shared;

/* ------------------------------------------------------------------ */
/* Shell, files and processes                                         */

static void
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	ck_assert_msg(rc == 0, "command failed (%d): %s", rc, cmd);
}

static uint16_t
free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/*
 * A CA with a serving and a client certificate (certs/dev-cert.sh) under
 * dir/ca, published as ..v1 the way the kubelet writes Secret volumes.
 */
static void
certs_make(struct server *s)
{
	snprintf(s->dir, sizeof(s->dir), "/tmp/milo-check-webhook-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(s->dir));
	snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
	snprintf(s->ca, sizeof(s->ca), "%s/ca/ca.crt", s->dir);
	snprintf(s->cadir, sizeof(s->cadir), "%s/ca", s->dir);
	sh("cd '%s' && '%s' --client ca && mkdir ..v1 && "
	    "cp ca/tls.crt ca/tls.key ..v1/ && ln -s ..v1 ..data && "
	    "ln -s ..data/tls.crt tls.crt && ln -s ..data/tls.key tls.key",
	    s->dir, tu_path("certs/dev-cert.sh"));
	s->version = 1;
}

/*
 * Which ..vN ..data points at. Read from the file system, since tests
 * that rotate may run in a child process (CK_FORK) of the fixture's.
 */
static int
certs_version(struct server *s)
{
	char link[PATH_MAX], target[64];
	ssize_t n;

	snprintf(link, sizeof(link), "%s/..data", s->dir);
	n = readlink(link, target, sizeof(target) - 1);
	ck_assert_int_gt(n, 3);
	target[n] = '\0';
	s->version = (int)strtol(target + 3, NULL, 10);
	return s->version;
}

/*
 * The kubelet's atomic update: a new ..vN directory, then ..data swapped
 * to it with one rename(2). With mismatch the new certificate gets the
 * old key, as a broken Secret would.
 */
static void
certs_rotate(struct server *s, bool mismatch)
{
	int v = certs_version(s) + 1;

	sh("cd '%s' && cp ca/tls.key old.key && '%s' --rotate ca && "
	    "mkdir ..v%d && cp ca/tls.crt ..v%d/ && cp %s ..v%d/tls.key && "
	    "ln -s ..v%d ..data.tmp && mv -T ..data.tmp ..data",
	    s->dir, tu_path("certs/dev-cert.sh"), v, v,
	    mismatch ? "old.key" : "ca/tls.key", v, v);
	s->version = v;
}

static pid_t
spawn(char *const argv[], const char *out_path, const char *poll)
{
	pid_t pid = fork();
	sigset_t none;
	int fd;

	ck_assert_int_ge(pid, 0);
	if (pid > 0)
		return pid;
	fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(126);
	if (poll)
		setenv("MILO_CERT_POLL_INTERVAL", poll, 1);
	else
		unsetenv("MILO_CERT_POLL_INTERVAL");
	/* A stand-in reset ends the watches: relist in milliseconds, not client-go's 800. */
	setenv("MILO_WATCH_BACKOFF", "20ms", 1);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(argv[0], argv);
	_exit(127);
}

/* Waits for pid to exit, killing it after timeout_s; returns the wait status. */
static int
reap(pid_t pid, double timeout_s)
{
	double end = clock_mono() + timeout_s;
	int status = 0;

	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (clock_mono() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		tu_sleep_ms(10);
	}
	return status;
}

static const char *
webhook_bin(void)
{
	const char *bin = getenv("MILO_WEBHOOK_BIN");

	return bin ? bin : "build/default/contact-webhook";
}

/* ------------------------------------------------------------------ */
/* HTTPS with libcurl                                                 */

struct exchange {
	const char *method;
	const char *path;
	const char *content_type;
	const char *body;
	size_t len;
	bool plain_http;
	bool fresh;			/* a new connection, not reused after */
	bool expect;			/* Expect: 100-continue, waiting long */
	bool no_client_cert;		/* by default the dev client cert is sent */
	const char *client_dir;		/* where client.crt/key are, if not ca/ */
	CURL *handle;			/* reuse this handle (keep-alive) */
	/* out */
	CURLcode rc;
	long status;
	long new_connections;
	curl_off_t uploaded;
	struct buf reply;
	struct buf headers;
	char error[CURL_ERROR_SIZE];
};

static size_t
on_data(char *p, size_t size, size_t n, void *arg)
{
	return buf_add(arg, p, size * n) == 0 ? size * n : 0;
}

static void
fetch(const struct server *s, struct exchange *x)
{
	CURL *c = x->handle ? x->handle : curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char url[512], line[256], cert[300], key[300];

	ck_assert_ptr_nonnull(c);
	buf_init(&x->reply, 16 << 20);
	buf_init(&x->headers, 1 << 16);
	x->error[0] = '\0';
	snprintf(url, sizeof(url), "%s://localhost:%u%s",
	    x->plain_http ? "http" : "https", (unsigned int)s->port, x->path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, x->method ? x->method : "GET");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)WAIT_S);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->error);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x->reply);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &x->headers);
	curl_easy_setopt(c, CURLOPT_CAINFO, s->ca);
	if (!x->no_client_cert) {
		snprintf(cert, sizeof(cert), "%s/client.crt", x->client_dir ?
		    x->client_dir : s->cadir);
		snprintf(key, sizeof(key), "%s/client.key", x->client_dir ?
		    x->client_dir : s->cadir);
		curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, key);
	}
	if (x->fresh) {
		curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
	}
	if (x->content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s", x->content_type);
		hdrs = curl_slist_append(hdrs, line);
	}
	if (x->body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, x->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)x->len);
	}
	hdrs = curl_slist_append(hdrs, x->expect ? "Expect: 100-continue" :
	    "Expect:");
	/* /metrics wants a token once the webhook has an API server; the
	 * stand-in takes any token as its admin, who may get /metrics. */
	hdrs = curl_slist_append(hdrs, "Authorization: Bearer check-webhook-token");
	curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, (long)WAIT_S * 1000);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	x->rc = curl_easy_perform(c);
	x->status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &x->new_connections);
	curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &x->uploaded);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	if (!x->handle)
		curl_easy_cleanup(c);
}

static void
exchange_free(struct exchange *x)
{
	buf_free(&x->reply);
	buf_free(&x->headers);
}

/* GET path; returns the status (0 on a transport error), body in *body if asked. */
static long
get(const struct server *s, const char *path, char **body)
{
	struct exchange x = { .path = path, .fresh = true };
	long status;

	fetch(s, &x);
	status = x.rc == CURLE_OK ? x.status : 0;
	if (body)
		*body = buf_steal(&x.reply, NULL);
	exchange_free(&x);
	return status;
}

/* POSTs a review; the reply parsed as JSON (NULL if it is not), status in *status. */
static json_t *
post_review(const struct server *s, const char *path, const char *body,
    size_t len, long *status)
{
	/*
	 * One handle for every review, so its connection is kept alive as
	 * kube-apiserver keeps its own: under valgrind a TLS handshake per
	 * review took seconds. libcurl reuses a connection only to the same
	 * port with the same TLS settings, and opens a new one for a server
	 * that has gone.
	 */
	static CURL *keep;
	struct exchange x = { .method = "POST", .path = path,
	    .content_type = "application/json", .body = body, .len = len };
	json_t *j;

	if (!keep)
		keep = curl_easy_init();
	x.handle = keep;
	fetch(s, &x);
	ck_assert_msg(x.rc == CURLE_OK, "%s: %s", path, x.error);
	*status = x.status;
	j = json_loadb(x.reply.ptr ? x.reply.ptr : "", x.reply.len, 0, NULL);
	exchange_free(&x);
	return j;
}

static json_t *
post_json(const struct server *s, const char *path, json_t *review,
    long *status)
{
	char *text = json_dumps(review, JSON_COMPACT);
	json_t *j;

	ck_assert_ptr_nonnull(text);
	j = post_review(s, path, text, strlen(text), status);
	free(text);
	return j;
}

/* ------------------------------------------------------------------ */
/* Server life                                                        */

/* Starts the binary on a free loopback port and waits for /healthz. */
static void
server_start(struct server *s, const char *poll, const char *const extra[])
{
	char port[32], certdir[160];
	char *argv[24];
	int n, status;

	for (int attempt = 0; attempt < 5; attempt++) {
		s->port = free_port();
		snprintf(port, sizeof(port), "--secure-port=%u",
		    (unsigned int)s->port);
		snprintf(certdir, sizeof(certdir), "--cert-dir=%s", s->dir);
		n = 0;
		argv[n++] = (char *)(uintptr_t)webhook_bin();
		argv[n++] = port;
		argv[n++] = (char *)(uintptr_t)"--bind-address=127.0.0.1";
		argv[n++] = certdir;
		argv[n++] = (char *)(uintptr_t)"--shutdown-delay=0s";
		/*
		 * Under valgrind this process's TLS handshakes take seconds,
		 * which the server's 10 s header budget (counted from the
		 * accept) would cut short, and a test can outlast the 90 s
		 * idle budget of a connection it keeps: these tests are not
		 * about the budgets (test_hardening.py is).
		 */
		if (tu_under_valgrind()) {
			argv[n++] = (char *)(uintptr_t)"--read-header-timeout=2m";
			argv[n++] = (char *)(uintptr_t)"--idle-timeout=30m";
		}
		for (int i = 0; extra && extra[i] && n < 22; i++)
			argv[n++] = (char *)(uintptr_t)extra[i];
		argv[n] = NULL;
		s->pid = spawn(argv, s->log, poll);
		for (double end = clock_mono() + WAIT_S; clock_mono() < end; tu_sleep_ms(20)) {
			if (waitpid(s->pid, &status, WNOHANG) == s->pid)
				break;	/* the port was taken meanwhile? */
			if (get(s, "/healthz", NULL) == 200)
				return;
		}
		if (kill(s->pid, 0) == 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &status, 0);
		}
	}
	ck_abort_msg("contact-webhook did not come up; see %s", s->log);
}

static void
server_stop(struct server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		reap(s->pid, WAIT_S);
		s->pid = 0;
	}
}

static void
server_cleanup(struct server *s)
{
	server_stop(s);
	if (s->dir[0])
		sh("rm -rf '%s'", s->dir);
	s->dir[0] = '\0';
}

static void
shared_start(const char *poll, const char *const extra[])
{
	memset(&shared, 0, sizeof(shared));
	certs_make(&shared);
	server_start(&shared, poll, extra);
}

static void
setup_plain(void)
{
	shared_start(NULL, NULL);
}

static void
setup_rotation(void)
{
	shared_start("100ms", NULL);
}

static void
setup_sighup(void)
{
	shared_start("0", NULL);
}

static void
setup_client_ca(void)
{
	static char ca_flag[300];
	const char *extra[] = { ca_flag, NULL };

	memset(&shared, 0, sizeof(shared));
	certs_make(&shared);
	snprintf(ca_flag, sizeof(ca_flag), "--client-ca-file=%s", shared.ca);
	server_start(&shared, NULL, extra);
}

static void
setup_tls13(void)
{
	shared_start(NULL, (const char *const[]){
	    "--tls-min-version=VersionTLS13", NULL });
}

static void
teardown_shared(void)
{
	server_cleanup(&shared);
}

/* ------------------------------------------------------------------ */
/* TLS probes with GnuTLS directly, to pin versions and certificates  */

struct probe {
	int rc;				/* gnutls_handshake()'s result */
	gnutls_protocol_t version;
	gnutls_datum_t leaf;		/* the served certificate, DER; gnutls_free */
};

static void
tls_probe(const struct server *s, const char *priority, struct probe *p)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	gnutls_certificate_credentials_t cred;
	gnutls_session_t sess;
	const gnutls_datum_t *certs;
	unsigned int n = 0;
	int fd;

	memset(p, 0, sizeof(*p));
	a.sin_port = htons(s->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(gnutls_certificate_allocate_credentials(&cred), 0);
	ck_assert_int_ge(gnutls_certificate_set_x509_trust_file(cred, s->ca,
	    GNUTLS_X509_FMT_PEM), 1);
	ck_assert_int_eq(gnutls_init(&sess, GNUTLS_CLIENT), 0);
	/* The client side accepts the priority: a failure is the server's. */
	ck_assert_int_eq(gnutls_priority_set_direct(sess, priority, NULL), 0);
	gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_server_name_set(sess, GNUTLS_NAME_DNS, "localhost", 9);
	gnutls_session_set_verify_cert(sess, "localhost", 0);
	gnutls_transport_set_int(sess, fd);
	gnutls_handshake_set_timeout(sess, WAIT_S * 1000);
	do {
		p->rc = gnutls_handshake(sess);
	} while (p->rc < 0 && !gnutls_error_is_fatal(p->rc));
	if (p->rc == 0) {
		p->version = gnutls_protocol_get_version(sess);
		certs = gnutls_certificate_get_peers(sess, &n);
		ck_assert_uint_ge(n, 1);
		p->leaf.data = gnutls_malloc(certs[0].size);
		memcpy(p->leaf.data, certs[0].data, certs[0].size);
		p->leaf.size = certs[0].size;
		gnutls_bye(sess, GNUTLS_SHUT_WR);
	}
	gnutls_deinit(sess);
	gnutls_certificate_free_credentials(cred);
	close(fd);
}

/* A refusal by the peer, as opposed to a problem on this side. */
static bool
refused_by_server(int rc)
{
	return rc == GNUTLS_E_PREMATURE_TERMINATION ||
	    rc == GNUTLS_E_FATAL_ALERT_RECEIVED || rc == GNUTLS_E_PULL_ERROR ||
	    rc == GNUTLS_E_PUSH_ERROR || rc == GNUTLS_E_UNEXPECTED_PACKET_LENGTH;
}

/* Whether the server now hands out the certificate in pem_path. */
static bool
serves(const struct server *s, const char *pem_path)
{
	gnutls_datum_t pem, der;
	gnutls_x509_crt_t crt;
	struct probe p;
	bool same;

	ck_assert_int_eq(gnutls_load_file(pem_path, &pem), 0);
	ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
	ck_assert_int_eq(gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM), 0);
	ck_assert_int_eq(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der), 0);
	tls_probe(s, "NORMAL", &p);
	ck_assert_msg(p.rc == 0, "handshake: %s", gnutls_strerror(p.rc));
	same = p.leaf.size == der.size &&
	    memcmp(p.leaf.data, der.data, der.size) == 0;
	gnutls_free(p.leaf.data);
	gnutls_free(der.data);
	gnutls_free(pem.data);
	gnutls_x509_crt_deinit(crt);
	return same;
}

static bool
wait_serving(const struct server *s, const char *pem_path)
{
	for (double end = clock_mono() + WAIT_S; clock_mono() < end; tu_sleep_ms(20)) {
		if (serves(s, pem_path))
			return true;
	}
	return false;
}

/* The value of one metric line ("name{labels}") in /metrics, -1 if absent. */
/* The value of series in a /metrics text, or -1. */
static double
metric_in(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *line = text; line && *line; line = strchr(line, '\n'),
	    line = line ? line + 1 : NULL)
		if (strncmp(line, series, n) == 0 && line[n] == ' ')
			return strtod(line + n + 1, NULL);
	return -1;
}

/*
 * GET /metrics (200 asserted) on one kept-alive connection: tests poll it,
 * and under valgrind a TLS handshake per poll took seconds.
 */
static char *
metrics_text(const struct server *s)
{
	static CURL *keep;
	struct exchange x = { .path = "/metrics" };
	char *text;

	if (!keep)
		keep = curl_easy_init();
	x.handle = keep;
	fetch(s, &x);
	ck_assert_msg(x.rc == CURLE_OK && x.status == 200, "/metrics: %ld %s", x.status,
	    x.error);
	text = buf_steal(&x.reply, NULL);
	exchange_free(&x);
	return text;
}

static double
metric(const struct server *s, const char *series)
{
	char *text = metrics_text(s);
	double v = metric_in(text, series);

	free(text);
	return v;
}

/* ------------------------------------------------------------------ */
/* Health, readiness, metrics                                         */

START_TEST(test_healthz)
{
	char *body = NULL;

	ck_assert_int_eq(get(&shared, "/healthz", &body), 200);
	ck_assert_str_eq(body, "ok");
	free(body);
}
END_TEST

START_TEST(test_readyz)
{
	char *body = NULL;

	ck_assert_int_eq(get(&shared, "/readyz", &body), 200);
	ck_assert_str_eq(body, "ok");
	free(body);
}
END_TEST

START_TEST(test_metrics)
{
	struct exchange x = { .path = "/metrics", .fresh = true };
	static const char *const want[] = {
		"# TYPE controller_runtime_webhook_requests_total counter\n",
		"# TYPE controller_runtime_webhook_latency_seconds histogram\n",
		"# TYPE controller_runtime_webhook_requests_in_flight gauge\n",
		"# TYPE milo_webhook_admission_decisions_total counter\n",
		"# TYPE certwatcher_read_certificate_total counter\n",
		"# TYPE certwatcher_read_certificate_errors_total counter\n",
		"# HELP controller_runtime_webhook_requests_total ",
		"controller_runtime_webhook_requests_total{webhook=\""
		    VALIDATE_CONTACT "\",code=\"500\"} ",
		"controller_runtime_webhook_latency_seconds_bucket{webhook=\""
		    VALIDATE_CONTACT "\",le=\"0.0001\"} ",
		"controller_runtime_webhook_latency_seconds_bucket{webhook=\""
		    VALIDATE_CONTACT "\",le=\"10\"} ",
		"controller_runtime_webhook_requests_in_flight{webhook=\""
		    MUTATE_MEMBERSHIP "\"} 0\n",
	};
	char *sample;
	size_t len;
	long status;
	json_t *j;

	sample = tu_read_file(tu_path("test/fixtures/sample-review.json"), &len);
	ck_assert_ptr_nonnull(sample);
	j = post_review(&shared, VALIDATE_CONTACT, sample, len, &status);
	json_decref(j);
	free(sample);

	fetch(&shared, &x);
	ck_assert_int_eq(x.status, 200);
	ck_assert(strcasestr(buf_str(&x.headers),
	    "Content-Type: text/plain; version=0.0.4") != NULL);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(buf_str(&x.reply), want[i]), "no %s", want[i]);
	exchange_free(&x);
	ck_assert(metric(&shared, "controller_runtime_webhook_requests_total"
	    "{webhook=\"" VALIDATE_CONTACT "\",code=\"200\"}") >= 1);
	ck_assert(metric(&shared, "milo_webhook_admission_decisions_total"
	    "{webhook=\"" VALIDATE_CONTACT "\",allowed=\"true\"}") >= 1);
	ck_assert(metric(&shared, "controller_runtime_webhook_latency_seconds_count"
	    "{webhook=\"" VALIDATE_CONTACT "\"}") >= 1);
	ck_assert(metric(&shared, "certwatcher_read_certificate_total") >= 1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Transport errors                                                   */

static long
status_of(struct exchange *x)
{
	long status;

	fetch(&shared, x);
	ck_assert_msg(x->rc == CURLE_OK, "%s: %s", x->path, x->error);
	status = x->status;
	return status;
}

START_TEST(test_not_found)
{
	struct exchange x = { .path = "/nope" };

	ck_assert_int_eq(status_of(&x), 404);
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .body = "{}", .len = 2,
	    .path = "/validate-notification-miloapis-com-v1alpha1-user",
	    .content_type = "application/json" };
	ck_assert_int_eq(status_of(&x), 404);
	exchange_free(&x);
	x = (struct exchange){ .path = VALIDATE_CONTACT "/" };
	ck_assert_int_eq(status_of(&x), 404);
	exchange_free(&x);
}
END_TEST

START_TEST(test_method_not_allowed)
{
	struct exchange x = { .path = VALIDATE_CONTACT };

	ck_assert_int_eq(status_of(&x), 405);
	ck_assert(strcasestr(buf_str(&x.headers), "\r\nAllow: POST\r\n"));
	exchange_free(&x);
	x = (struct exchange){ .method = "PUT", .path = VALIDATE_CONTACT,
	    .content_type = "application/json", .body = "{}", .len = 2 };
	ck_assert_int_eq(status_of(&x), 405);
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .path = "/healthz",
	    .content_type = "application/json", .body = "{}", .len = 2 };
	ck_assert_int_eq(status_of(&x), 405);
	ck_assert(strcasestr(buf_str(&x.headers), "\r\nAllow: GET, HEAD\r\n"));
	exchange_free(&x);
}
END_TEST

START_TEST(test_unsupported_media_type)
{
	struct exchange x = { .method = "POST", .path = VALIDATE_CONTACT,
	    .content_type = "text/plain", .body = "{}", .len = 2 };

	ck_assert_int_eq(status_of(&x), 415);
	exchange_free(&x);
	x = (struct exchange){ .method = "POST", .path = VALIDATE_CONTACT,
	    .content_type = "application/x-www-form-urlencoded",
	    .body = "{}", .len = 2 };
	ck_assert_int_eq(status_of(&x), 415);
	exchange_free(&x);
}
END_TEST

/*
 * 8 MiB announced by Content-Length is refused from the headers: the
 * client, waiting for 100 Continue, never sends a byte of it.
 */
START_TEST(test_too_large)
{
	size_t len = 8 * 1024 * 1024;
	char *big = malloc(len);
	struct exchange x = { .method = "POST", .path = VALIDATE_CONTACT,
	    .content_type = "application/json", .body = big, .len = len,
	    .expect = true, .fresh = true };

	ck_assert_ptr_nonnull(big);
	memset(big, ' ', len);
	ck_assert_int_eq(status_of(&x), 413);
	ck_assert_int_eq(x.uploaded, 0);
	exchange_free(&x);
	free(big);
	ck_assert_int_eq(get(&shared, "/healthz", NULL), 200);
}
END_TEST

START_TEST(test_bad_reviews)
{
	static const char *const bodies[] = {
		"",
		"{not json",
		"[]",
		"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
		"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
		    "\"request\":null}",
		"{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"request\":{}}",
		"{\"a\":1,\"a\":2}",
	};
	long status;
	json_t *j;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		j = post_review(&shared, VALIDATE_CONTACT, bodies[i],
		    strlen(bodies[i]), &status);
		ck_assert_msg(status == 400, "%s: %ld", bodies[i], status);
		json_decref(j);
	}
	ck_assert_int_eq(get(&shared, "/healthz", NULL), 200);
}
END_TEST

START_TEST(test_plain_http_refused)
{
	struct exchange x = { .path = "/healthz", .plain_http = true,
	    .fresh = true };

	fetch(&shared, &x);
	ck_assert_int_ne(x.rc, CURLE_OK);
	ck_assert_int_eq(x.status, 0);
	exchange_free(&x);
	ck_assert_int_eq(get(&shared, "/healthz", NULL), 200);
}
END_TEST

/* ------------------------------------------------------------------ */
/* TLS versions and ciphers                                           */

START_TEST(test_tls_versions)
{
	struct probe p;

	tls_probe(&shared, "NORMAL:-VERS-ALL:+VERS-TLS1.1", &p);
	ck_assert_msg(refused_by_server(p.rc), "TLS 1.1: %s",
	    gnutls_strerror(p.rc));
	tls_probe(&shared, "NORMAL:-VERS-ALL:+VERS-TLS1.0", &p);
	ck_assert(refused_by_server(p.rc));
	tls_probe(&shared, "NORMAL:-VERS-ALL:+VERS-TLS1.2", &p);
	ck_assert_msg(p.rc == 0, "TLS 1.2: %s", gnutls_strerror(p.rc));
	ck_assert_int_eq(p.version, GNUTLS_TLS1_2);
	gnutls_free(p.leaf.data);
	tls_probe(&shared, "NORMAL:-VERS-ALL:+VERS-TLS1.3", &p);
	ck_assert_msg(p.rc == 0, "TLS 1.3: %s", gnutls_strerror(p.rc));
	ck_assert_int_eq(p.version, GNUTLS_TLS1_3);
	gnutls_free(p.leaf.data);
}
END_TEST

START_TEST(test_tls_aead_only)
{
	struct probe p;

	tls_probe(&shared, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:"
	    "+AES-128-CBC:+AES-256-CBC:-MAC-ALL:+SHA1:+SHA256", &p);
	ck_assert_msg(refused_by_server(p.rc), "CBC: %s", gnutls_strerror(p.rc));
	tls_probe(&shared, "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:"
	    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD", &p);
	ck_assert_msg(p.rc == 0, "ChaCha20: %s", gnutls_strerror(p.rc));
	gnutls_free(p.leaf.data);
}
END_TEST

START_TEST(test_tls13_minimum)
{
	struct probe p;

	tls_probe(&shared, "NORMAL:-VERS-ALL:+VERS-TLS1.2", &p);
	ck_assert_msg(refused_by_server(p.rc), "TLS 1.2: %s",
	    gnutls_strerror(p.rc));
	tls_probe(&shared, "NORMAL", &p);
	ck_assert_int_eq(p.rc, 0);
	ck_assert_int_eq(p.version, GNUTLS_TLS1_3);
	gnutls_free(p.leaf.data);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The AdmissionReview contract through the endpoints                 */

static json_t *
sample(void)
{
	return tu_load_json("test/fixtures/sample-review.json");
}

/* apiVersion, kind, response.uid and allowed, as kube-apiserver checks them. */
static json_t *
check_review(json_t *reply, const char *uid, bool mutating)
{
	json_t *resp;

	ck_assert_ptr_nonnull(reply);
	ck_assert_str_eq(json_string_value(json_object_get(reply, "apiVersion")),
	    "admission.k8s.io/v1");
	ck_assert_str_eq(json_string_value(json_object_get(reply, "kind")),
	    "AdmissionReview");
	resp = json_object_get(reply, "response");
	ck_assert(json_is_object(resp));
	ck_assert_str_eq(json_string_value(json_object_get(resp, "uid")), uid);
	ck_assert(json_is_boolean(json_object_get(resp, "allowed")));
	if (!mutating) {
		ck_assert_ptr_null(json_object_get(resp, "patch"));
		ck_assert_ptr_null(json_object_get(resp, "patchType"));
	} else if (json_object_get(resp, "patch")) {
		ck_assert_str_eq(json_string_value(json_object_get(resp,
		    "patchType")), "JSONPatch");
	}
	if (json_is_false(json_object_get(resp, "allowed")))
		ck_assert_int_ge(json_integer_value(json_object_get(
		    json_object_get(resp, "status"), "code")), 400);
	return resp;
}

START_TEST(test_golden_fixture)
{
	char *golden;
	size_t len;
	long status;
	json_t *j;

	golden = tu_read_file(tu_path(GOLDEN), &len);
	ck_assert_msg(golden != NULL, "%s", tu_path(GOLDEN));
	for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
		j = post_review(&shared, endpoints[i], golden, len, &status);
		ck_assert_int_eq(status, 200);
		check_review(j, "uidValue", strncmp(endpoints[i], "/mutate", 7) == 0);
		json_decref(j);
	}
	free(golden);
}
END_TEST

START_TEST(test_sample_allowed)
{
	json_t *review = sample(), *j, *resp;
	char path[256];
	long status;

	snprintf(path, sizeof(path), "%s?timeout=10s", VALIDATE_CONTACT);
	j = post_json(&shared, path, review, &status);
	ck_assert_int_eq(status, 200);
	resp = check_review(j, SAMPLE_UID, false);
	ck_assert(json_is_true(json_object_get(resp, "allowed")));
	json_decref(j);
	json_decref(review);
}
END_TEST

/* The first line of the server's log whose key is value, or NULL. */
static json_t *
log_line(const struct server *s, const char *key, const char *value)
{
	char *log = tu_read_file(s->log, NULL), *p, *end;
	json_t *found = NULL;

	ck_assert_ptr_nonnull(log);
	for (p = log; p && *p && !found; p = end ? end + 1 : NULL) {
		json_t *line;

		end = strchr(p, '\n');
		if (end)
			*end = '\0';
		line = json_loads(p, 0, NULL);
		if (line && json_is_string(json_object_get(line, key)) &&
		    strcmp(json_string_value(json_object_get(line, key)), value) == 0)
			found = json_incref(line);
		json_decref(line);
	}
	free(log);
	return found;
}

/* The decision line for uid in the server's log, or NULL. */
static json_t *
decision_line(const struct server *s, const char *uid)
{
	return log_line(s, "uid", uid);
}

/* The start line says which TLS transport serves (lib/tls_transport.c here). */
START_TEST(test_serving_line_names_the_transport)
{
	json_t *line = log_line(&shared, "msg", "serving");

	ck_assert_ptr_nonnull(line);
	ck_assert_str_eq(json_string_value(json_object_get(line, "tls_transport")),
	    httpd_own_transport() ? "milo" : "gnutls");
	ck_assert_str_eq(json_string_value(json_object_get(line, "libmicrohttpd")),
	    MHD_get_version());
	json_decref(line);
}
END_TEST

/*
 * A denial is an info line with the review's details; an allowed review
 * writes none at the default level (a debug line: test_hardening.py).
 */
START_TEST(test_decision_logged)
{
	json_t *review = sample(), *j, *line = NULL;
	long status;

	json_object_set_new(json_object_get(review, "request"), "uid",
	    json_string("allowed-uid"));
	j = post_json(&shared, VALIDATE_CONTACT, review, &status);
	ck_assert_int_eq(status, 200);
	json_decref(j);
	json_object_set_new(json_object_get(review, "request"), "uid",
	    json_string("log-line-uid"));
	json_object_set_new(json_object_get(json_object_get(json_object_get(review,
	    "request"), "object"), "spec"), "email", json_string("john@"));
	j = post_json(&shared, VALIDATE_CONTACT, review, &status);
	ck_assert_int_eq(status, 200);
	json_decref(j);
	json_decref(review);
	/* info lines are written together, within --log-flush-frequency (100ms) */
	for (int i = 0; i < 100 && !line; i++) {
		line = decision_line(&shared, "log-line-uid");
		if (!line)
			usleep(50 * 1000);
	}
	ck_assert_msg(line != NULL, "no decision line for uid log-line-uid in %s",
	    shared.log);
	ck_assert_str_eq(json_string_value(json_object_get(line, "level")), "info");
	ck_assert_str_eq(json_string_value(json_object_get(line, "kind")), "Contact");
	ck_assert_str_eq(json_string_value(json_object_get(line, "namespace")), "org-xyz");
	ck_assert_str_eq(json_string_value(json_object_get(line, "name")), "john-doe");
	ck_assert_str_eq(json_string_value(json_object_get(line, "operation")), "CREATE");
	ck_assert(json_is_false(json_object_get(line, "allowed")));
	ck_assert(json_is_false(json_object_get(line, "dry_run")));
	ck_assert(json_is_number(json_object_get(line, "ms")));
	json_decref(line);
	/* Written after the allowed one: had that one had a line, it would be there. */
	ck_assert_ptr_null(decision_line(&shared, "allowed-uid"));
}
END_TEST

START_TEST(test_wrong_kind_denied)
{
	json_t *review = sample(), *j, *resp;
	long status;

	j = post_json(&shared,
	    "/validate-notification-miloapis-com-v1alpha1-contactgroup", review,
	    &status);
	ck_assert_int_eq(status, 200);
	resp = check_review(j, SAMPLE_UID, false);
	ck_assert(json_is_false(json_object_get(resp, "allowed")));
	ck_assert_ptr_nonnull(json_string_value(json_object_get(
	    json_object_get(resp, "status"), "message")));
	json_decref(j);
	json_decref(review);
}
END_TEST

START_TEST(test_delete_allowed)
{
	json_t *review = sample(), *req, *j, *resp;
	long status;

	req = json_object_get(review, "request");
	json_object_set(req, "oldObject", json_object_get(req, "object"));
	json_object_set_new(req, "object", json_null());
	json_object_set_new(req, "operation", json_string("DELETE"));
	j = post_json(&shared, VALIDATE_CONTACT, review, &status);
	ck_assert_int_eq(status, 200);
	resp = check_review(j, SAMPLE_UID, false);
	ck_assert(json_is_true(json_object_get(resp, "allowed")));
	json_decref(j);
	json_decref(review);
}
END_TEST

START_TEST(test_dry_run_same_verdict)
{
	json_t *review = sample(), *req, *a, *b, *ra, *rb;
	long status;
	char *ma, *mb;

	req = json_object_get(review, "request");
	json_object_del(json_object_get(json_object_get(req, "object"), "spec"),
	    "email");
	a = post_json(&shared, VALIDATE_CONTACT, review, &status);
	ck_assert_int_eq(status, 200);
	json_object_set_new(req, "dryRun", json_true());
	b = post_json(&shared, VALIDATE_CONTACT, review, &status);
	ck_assert_int_eq(status, 200);
	ra = check_review(a, SAMPLE_UID, false);
	rb = check_review(b, SAMPLE_UID, false);
	ck_assert(json_is_false(json_object_get(ra, "allowed")));
	ma = json_dumps(json_object_get(ra, "status"), JSON_SORT_KEYS);
	mb = json_dumps(json_object_get(rb, "status"), JSON_SORT_KEYS);
	ck_assert_str_eq(ma, mb);
	free(ma);
	free(mb);
	json_decref(a);
	json_decref(b);
	json_decref(review);
}
END_TEST

START_TEST(test_mutating_patch)
{
	json_t *review = sample(), *req, *obj, *j, *resp;
	long status;

	req = json_object_get(review, "request");
	obj = tu_load_json("test/fixtures/objects/contactgroupmembership.json");
	json_object_del(json_object_get(json_object_get(obj, "spec"),
	    "contactRef"), "namespace");
	json_object_set_new(req, "object", obj);
	json_object_set_new(req, "kind", json_pack("{s:s, s:s, s:s}", "group",
	    "notification.miloapis.com", "version", "v1alpha1", "kind",
	    "ContactGroupMembership"));
	json_object_set_new(req, "name", json_string("john-doe-admins"));
	j = post_json(&shared, MUTATE_MEMBERSHIP, review, &status);
	ck_assert_int_eq(status, 200);
	resp = check_review(j, SAMPLE_UID, true);
	ck_assert(json_is_true(json_object_get(resp, "allowed")));
	ck_assert(json_is_string(json_object_get(resp, "patch")));
	ck_assert_str_eq(json_string_value(json_object_get(resp, "patchType")),
	    "JSONPatch");
	json_decref(j);
	json_decref(review);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Certificate rotation                                               */

struct load {
	const struct server *s;
	atomic_bool stop;
	atomic_int ok;
	atomic_int failed;
	char first_error[CURL_ERROR_SIZE + 64];
	pthread_mutex_t lock;
	const char *body;
	size_t len;
};

/* Reviews in a loop, each on a new connection so each one handshakes. */
static void *
load_main(void *arg)
{
	struct load *l = arg;

	while (!atomic_load(&l->stop)) {
		struct exchange x = { .method = "POST", .path = VALIDATE_CONTACT,
		    .content_type = "application/json", .body = l->body,
		    .len = l->len, .fresh = true };

		fetch(l->s, &x);
		if (x.rc == CURLE_OK && x.status == 200) {
			atomic_fetch_add(&l->ok, 1);
		} else {
			pthread_mutex_lock(&l->lock);
			if (atomic_fetch_add(&l->failed, 1) == 0)
				snprintf(l->first_error, sizeof(l->first_error),
				    "rc %d status %ld: %s", (int)x.rc, x.status,
				    x.error);
			pthread_mutex_unlock(&l->lock);
		}
		exchange_free(&x);
	}
	return NULL;
}

static void
wait_ok(struct load *l, int more)
{
	int target = atomic_load(&l->ok) + more;

	for (double end = clock_mono() + WAIT_S; clock_mono() < end &&
	    atomic_load(&l->ok) < target; tu_sleep_ms(10))
		;
	ck_assert_int_ge(atomic_load(&l->ok), target);
}

START_TEST(test_rotation_under_load)
{
	struct load l = { .s = &shared, .lock = PTHREAD_MUTEX_INITIALIZER };
	char crt[300];
	pthread_t t[4];
	CURL *keep = curl_easy_init();
	struct exchange x = { .path = "/healthz", .handle = keep };
	size_t len;
	char *body = tu_read_file(tu_path("test/fixtures/sample-review.json"),
	    &len);

	ck_assert_ptr_nonnull(body);
	l.body = body;
	l.len = len;
	/* libcurl reuses no connection idle for 118 s; under valgrind this test can take longer. */
	curl_easy_setopt(keep, CURLOPT_MAXAGE_CONN, 3600L);
	/* A keep-alive connection made with the first certificate. */
	fetch(&shared, &x);
	ck_assert_int_eq(x.status, 200);
	exchange_free(&x);

	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, load_main, &l), 0);
	wait_ok(&l, 8);
	for (int round = 0; round < 3; round++) {
		certs_rotate(&shared, false);
		snprintf(crt, sizeof(crt), "%s/..v%d/tls.crt", shared.dir,
		    shared.version);
		ck_assert_msg(wait_serving(&shared, crt),
		    "rotation %d not picked up", round + 1);
		wait_ok(&l, 8);
	}
	atomic_store(&l.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	ck_assert_msg(atomic_load(&l.failed) == 0, "%d of %d failed; first: %s",
	    atomic_load(&l.failed), atomic_load(&l.ok) + atomic_load(&l.failed),
	    l.first_error);

	/* The old connection lives on, still on the first certificate. */
	x = (struct exchange){ .path = "/healthz", .handle = keep };
	fetch(&shared, &x);
	ck_assert_int_eq(x.status, 200);
	ck_assert_int_eq(x.new_connections, 0);
	exchange_free(&x);
	curl_easy_cleanup(keep);
	free(body);
	ck_assert(metric(&shared, "milo_tls_certificate_reloads_total") >= 3);
}
END_TEST

START_TEST(test_sighup_reload)
{
	char old[300], crt[300];

	snprintf(old, sizeof(old), "%s/..v%d/tls.crt", shared.dir,
	    certs_version(&shared));
	ck_assert(serves(&shared, old));
	certs_rotate(&shared, false);
	snprintf(crt, sizeof(crt), "%s/..v%d/tls.crt", shared.dir,
	    shared.version);
	/* Polling is off: nothing changes until the signal. */
	ck_assert(serves(&shared, old));
	ck_assert_int_eq(kill(shared.pid, SIGHUP), 0);
	ck_assert(wait_serving(&shared, crt));
}
END_TEST

START_TEST(test_bad_rotation_keeps_serving)
{
	char old[300];
	double errors = metric(&shared, "certwatcher_read_certificate_errors_total");

	snprintf(old, sizeof(old), "%s/..v%d/tls.crt", shared.dir,
	    certs_version(&shared));
	certs_rotate(&shared, true);	/* a key that does not fit */
	ck_assert_int_eq(kill(shared.pid, SIGHUP), 0);
	for (double end = clock_mono() + WAIT_S; clock_mono() < end && metric(&shared,
	    "certwatcher_read_certificate_errors_total") <= errors; tu_sleep_ms(20))
		;
	ck_assert(metric(&shared, "certwatcher_read_certificate_errors_total") >
	    errors);
	ck_assert(serves(&shared, old));
	ck_assert_int_eq(get(&shared, "/healthz", NULL), 200);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Client certificates                                                */

/* An admission review and a probe over one fresh connection, with the client files in dir. */
static void
cert_exchange(const char *client_dir, bool no_cert, long *review_status,
    long *probe_status)
{
	struct exchange x = { .method = "POST", .path = VALIDATE_CONTACT,
	    .content_type = "application/json", .fresh = true,
	    .no_client_cert = no_cert, .client_dir = client_dir };
	char *body;
	size_t len;

	body = tu_read_file(tu_path("test/fixtures/sample-review.json"), &len);
	ck_assert_ptr_nonnull(body);
	x.body = body;
	x.len = len;
	fetch(&shared, &x);
	ck_assert_msg(x.rc == CURLE_OK, "%s", x.error);
	*review_status = x.status;
	if (x.status == 403) {
		ck_assert_ptr_nonnull(strstr(buf_str(&x.reply),
		    "client certificate"));
		ck_assert_ptr_nonnull(strcasestr(buf_str(&x.headers),
		    "Connection: close"));
	}
	exchange_free(&x);
	free(body);
	x = (struct exchange){ .path = "/readyz", .fresh = true,
	    .no_client_cert = no_cert, .client_dir = client_dir };
	fetch(&shared, &x);
	ck_assert_msg(x.rc == CURLE_OK, "%s", x.error);
	*probe_status = x.status;
	exchange_free(&x);
}

/*
 * With --client-ca-file the admission endpoints need a client certificate
 * the CA signed for client authentication; the probes (the kubelet has
 * none) answer whatever was presented.
 */
START_TEST(test_client_cert_per_route)
{
	double refused = metric(&shared,
	    "milo_http_requests_refused_total{reason=\"client_certificate\"}");
	long review, probe;
	char other[160];

	cert_exchange(NULL, true, &review, &probe);
	ck_assert_int_eq(review, 403);
	ck_assert_int_eq(probe, 200);
	ck_assert_int_eq(get(&shared, "/healthz", NULL), 200);

	cert_exchange(NULL, false, &review, &probe);
	ck_assert_int_eq(review, 200);
	ck_assert_int_eq(probe, 200);

	/* A serving certificate is not one for client authentication. */
	snprintf(other, sizeof(other), "%s/server-as-client", shared.dir);
	sh("mkdir -p '%s' && cp '%s/tls.crt' '%s/client.crt' && "
	    "cp '%s/tls.key' '%s/client.key'", other, shared.cadir, other,
	    shared.cadir, other);
	cert_exchange(other, false, &review, &probe);
	ck_assert_int_eq(review, 403);
	ck_assert_int_eq(probe, 200);

	/* A client certificate from another CA is no better than none. */
	snprintf(other, sizeof(other), "%s/other", shared.dir);
	sh("'%s' --client '%s'", tu_path("certs/dev-cert.sh"), other);
	cert_exchange(other, false, &review, &probe);
	ck_assert_int_eq(review, 403);
	ck_assert_int_eq(probe, 200);
	ck_assert(metric(&shared, "milo_http_requests_refused_total"
	    "{reason=\"client_certificate\"}") == refused + 3);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SIGTERM                                                            */

struct slow_post {
	const struct server *s;
	atomic_int sent;		/* 1 once the first half is out */
	atomic_bool release;
	const char *body;
	size_t len, off;
	CURLcode rc;
	long status;
	struct buf reply;
};

/* Sends the first half, then holds the rest back until released. */
static size_t
slow_read(char *p, size_t size, size_t n, void *arg)
{
	struct slow_post *sp = arg;
	size_t half = sp->len / 2, k, room = size * n;

	if (sp->off >= half) {
		atomic_store(&sp->sent, 1);
		while (!atomic_load(&sp->release))
			tu_sleep_ms(5);
	}
	k = sp->len - sp->off;
	if (sp->off < half && k > half - sp->off)
		k = half - sp->off;
	if (k > room)
		k = room;
	memcpy(p, sp->body + sp->off, k);
	sp->off += k;
	return k;
}

static void *
slow_main(void *arg)
{
	struct slow_post *sp = arg;
	CURL *c = curl_easy_init();
	struct curl_slist *hdrs = curl_slist_append(NULL,
	    "Content-Type: application/json");
	char url[256];

	hdrs = curl_slist_append(hdrs, "Expect:");
	snprintf(url, sizeof(url), "https://localhost:%u%s",
	    (unsigned int)sp->s->port, VALIDATE_CONTACT);
	buf_init(&sp->reply, 1 << 20);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, sp->s->ca);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)sp->len);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, slow_read);
	curl_easy_setopt(c, CURLOPT_READDATA, sp);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sp->reply);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)WAIT_S * 2);
	sp->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &sp->status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return NULL;
}

static bool
connect_refused(const struct server *s)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

	a.sin_port = htons(s->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
	close(fd);
	return rc != 0 && errno == ECONNREFUSED;
}

/*
 * SIGTERM with a request half-uploaded: readiness fails at once, the
 * server keeps serving through the delay, stops listening, lets the
 * request finish, and exits 0.
 */
START_TEST(test_sigterm_drain)
{
	struct server s = { 0 };
	struct slow_post sp = { .s = &s };
	const char *extra[] = { "--shutdown-delay=1s", NULL };
	char *body;
	pthread_t t;
	int status;
	json_t *j;

	body = tu_read_file(tu_path("test/fixtures/sample-review.json"), &sp.len);
	ck_assert_ptr_nonnull(body);
	sp.body = body;
	certs_make(&s);
	server_start(&s, NULL, extra);	/* the last --shutdown-delay wins */
	ck_assert_int_eq(get(&s, "/readyz", NULL), 200);

	ck_assert_int_eq(pthread_create(&t, NULL, slow_main, &sp), 0);
	for (double end = clock_mono() + WAIT_S; clock_mono() < end && metric(&s,
	    "controller_runtime_webhook_requests_in_flight{webhook=\""
	    VALIDATE_CONTACT "\"}") < 1; tu_sleep_ms(10))
		;
	ck_assert_int_eq(atomic_load(&sp.sent), 1);
	ck_assert_int_eq(kill(s.pid, SIGTERM), 0);

	/* Still serving, but not ready. */
	for (double end = clock_mono() + WAIT_S; clock_mono() < end &&
	    get(&s, "/readyz", NULL) == 200; tu_sleep_ms(10))
		;
	/* Either the 503 came, or the delay already ran out. */
	ck_assert(get(&s, "/readyz", NULL) != 200);

	/* After the delay the listener is gone; the request is still in flight. */
	for (double end = clock_mono() + WAIT_S; clock_mono() < end && !connect_refused(&s);
	    tu_sleep_ms(10))
		;
	ck_assert(connect_refused(&s));
	ck_assert_int_eq(waitpid(s.pid, &status, WNOHANG), 0);

	atomic_store(&sp.release, true);
	pthread_join(t, NULL);
	ck_assert_int_eq(sp.rc, CURLE_OK);
	ck_assert_int_eq(sp.status, 200);
	j = json_loadb(buf_str(&sp.reply), sp.reply.len, 0, NULL);
	check_review(j, SAMPLE_UID, false);
	json_decref(j);
	buf_free(&sp.reply);

	status = reap(s.pid, WAIT_S);
	s.pid = 0;
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	free(body);
	server_cleanup(&s);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The command line                                                   */

/* Runs the binary to completion; its output in *out (free it). */
static int
run(const char *const args[], char **out)
{
	char path[] = "/tmp/milo-check-run-XXXXXX";
	char *argv[16];
	int fd = mkstemp(path), n = 0, status;

	ck_assert_int_ge(fd, 0);
	close(fd);
	argv[n++] = (char *)(uintptr_t)webhook_bin();
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = (char *)(uintptr_t)args[i];
	argv[n] = NULL;
	status = reap(spawn(argv, path, NULL), WAIT_S);
	*out = tu_read_file(path, NULL);
	unlink(path);
	ck_assert_ptr_nonnull(*out);
	return status;
}

static int
lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

START_TEST(test_bad_flags)
{
	static const char *const cases[][3] = {
		{ "--secure-port=abc", NULL },
		{ "--secure-port=0", NULL },
		{ "--secure-port=70000", NULL },
		{ "--threads=0", NULL },
		{ "--log-flush-frequency=soon", NULL },
		{ "--log-flush-frequency=-1s", NULL },
		{ "--threads=65", NULL },
		{ "--threads=two", NULL },
		{ "--secure", "9443", NULL },
		{ "--bind-address=localhost", NULL },
		{ "--tls-min-version=VersionTLS11", NULL },
		{ "--shutdown-delay=10", NULL },
		{ "--shutdown-delay=-5s", NULL },
		{ "--log-level=loud", NULL },
		{ "--tls-cert-file=/x.crt", NULL },
		{ "--cert-dir", NULL },
		{ "--help=yes", NULL },
		{ "--read-header-timeout=soon", NULL },
		{ "--read-timeout=-1s", NULL },
		{ "--write-timeout=25h", NULL },
		{ "--idle-timeout", NULL },
		{ "--max-connections=0", NULL },
		{ "--max-connections-per-ip=many", NULL },
		{ "--max-body-bytes-inflight=1Ki", NULL },
		{ "--max-body-bytes-inflight=24MB", NULL },
		{ "--max-body-bytes-inflight=-24Mi", NULL },
		{ "extra", NULL },
	};
	char *out;
	int status;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		status = run(cases[i], &out);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2,
		    "%s: status %d", cases[i][0], status);
		ck_assert_msg(lines(out) == 1 && strncmp(out,
		    "contact-webhook: ", 17) == 0, "%s: %s", cases[i][0], out);
		free(out);
	}
}
END_TEST

/* Go durations: a good one gets as far as the (missing) certificate. */
START_TEST(test_durations)
{
	static const char *const good[] = { "0", "0s", "500ms", "1.5s",
	    "1m30s", "2h", "300us", "300\xc2\xb5s", "1h2m3s4ms5us6ns" };
	static const char *const bad[] = { "", "5", "s", "1.s5", "5x",
	    "-1s", "1e3s", "99999999999h", "1s ", " 1s" };
	char flag[64], *out;
	int status;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(flag, sizeof(flag), "--shutdown-delay=%s", good[i]);
		status = run((const char *const[]){ flag,
		    "--cert-dir=/nonexistent", NULL }, &out);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 1,
		    "%s: %s", good[i], out);
		free(out);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(flag, sizeof(flag), "--shutdown-delay=%s", bad[i]);
		status = run((const char *const[]){ flag,
		    "--cert-dir=/nonexistent", NULL }, &out);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2,
		    "'%s': %s", bad[i], out);
		free(out);
	}
}
END_TEST

START_TEST(test_unreadable_certificate)
{
	static const char *const args[] = { "--cert-dir=/nonexistent/certs",
	    "--secure-port=1", NULL };
	char *out;
	int status = run(args, &out);

	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
	ck_assert_int_eq(lines(out), 1);
	ck_assert_ptr_nonnull(strstr(out, "/nonexistent/certs/tls.crt"));
	free(out);
}
END_TEST

START_TEST(test_help_and_version)
{
	static const char *const flags[] = { "--secure-port", "--bind-address",
	    "--cert-dir", "--tls-cert-file", "--tls-private-key-file",
	    "--tls-min-version", "--client-ca-file", "--shutdown-delay",
	    "--log-level", "--log-flush-frequency", "--threads", "--help", "--version",
	    "--read-header-timeout", "--read-timeout", "--write-timeout",
	    "--idle-timeout", "--max-connections", "--max-connections-per-ip",
	    "--max-body-bytes-inflight", "MILO_CERT_POLL_INTERVAL", "MILO_WATCH_BACKOFF" };
	char *out;
	int status = run((const char *const[]){ "--help", NULL }, &out);

	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		ck_assert_msg(strstr(out, flags[i]), "--help lacks %s", flags[i]);
	free(out);
	status = run((const char *const[]){ "--version", NULL }, &out);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert(strncmp(out, "contact-webhook ", 16) == 0);
	free(out);
}
END_TEST

static int
task_count(pid_t pid)
{
	char path[64];
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* --threads N serves on N threads: two more than with --threads 1. */
START_TEST(test_threads_flag)
{
	struct server one = { 0 }, three = { 0 };

	certs_make(&one);
	certs_make(&three);
	server_start(&one, NULL, (const char *const[]){ "--threads=1", NULL });
	server_start(&three, NULL, (const char *const[]){ "--threads=3", NULL });
	ck_assert_int_gt(task_count(one.pid), 1);
	ck_assert_int_eq(task_count(three.pid) - task_count(one.pid), 2);
	server_cleanup(&one);
	server_cleanup(&three);
}
END_TEST

START_TEST(test_ipv6_and_explicit_files)
{
	struct server s = { 0 };
	char cert[200], key[200], url[128];
	const char *extra[] = { "--bind-address=::1", cert, key, NULL };
	long code = 0;
	CURL *c;

	certs_make(&s);
	snprintf(cert, sizeof(cert), "--tls-cert-file=%s/ca/tls.crt", s.dir);
	snprintf(key, sizeof(key), "--tls-private-key-file=%s/ca/tls.key", s.dir);
	/* "localhost" resolves to ::1 too, so the health check finds it. */
	server_start(&s, NULL, extra);
	snprintf(url, sizeof(url), "https://[::1]:%u/healthz",
	    (unsigned int)s.port);
	c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CAINFO, s.ca);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)WAIT_S);
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	ck_assert_int_eq(code, 200);
	ck_assert(connect_refused(&s));	/* nothing on 127.0.0.1 */
	server_cleanup(&s);
}
END_TEST


/* ------------------------------------------------------------------ */
/* Cluster state: the webhook with --kubeconfig to the API stand-in   */

static struct tu_standin kube;

static void
setup_state(void)
{
	char flag[200];
	const char *extra[] = { flag, NULL };

	memset(&kube, 0, sizeof(kube));
	if (tu_standin_start(&kube, NULL) != 0)
		ck_abort_msg("the Kubernetes API stand-in did not start");
	/* Webhooks stored in the stand-in are not ours here: admission off. */
	tu_standin_post(&kube, "config", "{\"admission\": false}");
	snprintf(flag, sizeof(flag), "--kubeconfig=%s", kube.kubeconfig);
	shared_start(NULL, extra);
}

static void
teardown_state(void)
{
	teardown_shared();
	tu_standin_stop(&kube);
}

/* One request to the stand-in's API; the answer's status. */
static long
kube_send(const char *method, const char *path, const json_t *body)
{
	CURL *c = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char url[1024], *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct buf sink;
	long status = 0;

	buf_init(&sink, 1 << 22);
	snprintf(url, sizeof(url), "%s%s", kube.url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
	if (text)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	buf_free(&sink);
	free(text);
	return status;
}

/*
 * Creates obj (an object of ours, or a User/Organization/Project) in the
 * stand-in. An object described with a deletionTimestamp is created with a
 * finalizer and then deleted, which is how an object comes to be "being
 * deleted" in a real API server.
 */
static void
kube_create(const json_t *in)
{
	json_t *obj = json_deep_copy(in), *meta = json_object_get(obj, "metadata");
	bool deleting = json_object_get(meta, "deletionTimestamp") != NULL;
	const char *kind = json_string_value(json_object_get(obj, "kind"));
	const char *ns = json_string_value(json_object_get(json_object_get(obj, "metadata"),
	    "namespace"));
	char path[512], plural[64];

	if (strcmp(kind, "User") == 0)
		snprintf(path, sizeof(path), "/apis/iam.miloapis.com/v1alpha1/users");
	else if (strcmp(kind, "Organization") == 0 || strcmp(kind, "Project") == 0)
		snprintf(path, sizeof(path), "/apis/resourcemanager.miloapis.com/v1alpha1/%ss",
		    strcmp(kind, "Project") == 0 ? "project" : "organization");
	else {
		snprintf(plural, sizeof(plural), "%ss", kind);
		for (char *p = plural; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
		snprintf(path, sizeof(path),
		    "/apis/notification.miloapis.com/v1alpha1/namespaces/%s/%s", ns, plural);
	}
	if (deleting) {
		json_object_del(meta, "deletionTimestamp");
		json_object_set_new(meta, "finalizers", json_pack("[s]", "test.milo/hold"));
	}
	ck_assert_int_eq(kube_send("POST", path, obj), 201);
	if (deleting) {
		char item[600];

		snprintf(item, sizeof(item), "%s/%s", path,
		    json_string_value(json_object_get(meta, "name")));
		ck_assert_int_eq(kube_send("DELETE", item, NULL), 200);
	}
	json_decref(obj);
}

/* The User a Contact names, created so that subject existence holds. */
static void
kube_create_user_of(const json_t *obj)
{
	const char *user = json_string_value(json_object_get(json_object_get(json_object_get(
	    json_object_get(obj, "spec"), "subject"), "userRef"), "name"));
	char path[300];
	json_t *u;

	if (!user)
		return;
	snprintf(path, sizeof(path), "/apis/iam.miloapis.com/v1alpha1/users/%s", user);
	if (kube_send("GET", path, NULL) == 200)
		return;
	u = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "iam.miloapis.com/v1alpha1",
	    "kind", "User", "metadata", "name", user);
	kube_create(u);
	json_decref(u);
}

static double
cached_total(void)
{
	static const char *const kinds[] = { "Contact", "ContactGroup",
	    "ContactGroupMembership", "ContactGroupMembershipRemoval" };
	char series[128], *text = metrics_text(&shared);
	double total = 0;

	for (int i = 0; i < 4; i++) {
		snprintf(series, sizeof(series), "milo_webhook_cache_objects{kind=\"%s\"}",
		    kinds[i]);
		total += metric_in(text, series);
	}
	free(text);
	return total;
}

/* Waits until the webhook's watch cache holds n objects. */
static void
wait_cached(double n)
{
	for (double end = clock_mono() + WAIT_S; clock_mono() < end; tu_sleep_ms(20))
		if (cached_total() == n)
			return;
	ck_abort_msg("the watch cache never held %.0f objects (has %.0f)", n, cached_total());
}

static char **state_rules;
static size_t n_state_rules;

static void
load_state_rules(void)
{
	char **all = tu_rule_names(&n_state_rules);
	size_t n = 0;

	state_rules = calloc(n_state_rules ? n_state_rules : 1, sizeof(char *));
	for (size_t i = 0; i < n_state_rules; i++) {
		if (strncmp(all[i], "state-", 6) == 0)
			state_rules[n++] = strdup(all[i]);
	}
	tu_names_free(all, n_state_rules);
	n_state_rules = n;
}

static void
free_state_rules(void)
{
	tu_names_free(state_rules, n_state_rules);
}

/*
 * Every cluster-state rule fixture, over HTTPS, with its state created in
 * the API server and seen by the webhook's watch cache.
 */
START_TEST(test_state_rule)
{
	json_t *rule = tu_rule_load(state_rules[_i]);
	const json_t *state = json_object_get(rule, "state");
	json_t *review, *reply;
	char uid[64], *body;
	long status;
	size_t i;
	json_t *spec;

	tu_standin_reset(&kube);
	tu_standin_post(&kube, "config", "{\"admission\": false}");
	wait_cached(0);
	json_array_foreach(state, i, spec) {
		json_t *obj = tu_rule_object(spec);

		kube_create_user_of(obj);
		kube_create(obj);
		json_decref(obj);
	}
	wait_cached((double)json_array_size(state));
	snprintf(uid, sizeof(uid), "state-%d", _i);
	review = tu_rule_review(rule, uid);
	kube_create_user_of(json_object_get(json_object_get(review, "request"), "object"));
	body = json_dumps(review, JSON_COMPACT);
	reply = post_review(&shared, tu_rule_endpoint(rule), body, strlen(body), &status);
	ck_assert_ptr_nonnull(reply);
	{
		char *text = json_dumps(reply, JSON_COMPACT);

		tu_rule_assert(rule, uid, status, text, strlen(text));
		free(text);
	}
	json_decref(reply);
	free(body);
	json_decref(review);
	json_decref(rule);
}
END_TEST

/* Posts review (taken) and returns the parsed reply (a new reference). */
static json_t *
send_review(const char *path, json_t *review)
{
	long status;
	json_t *reply = post_json(&shared, path, review, &status);

	json_decref(review);
	ck_assert_int_eq(status, 200);
	ck_assert_ptr_nonnull(reply);
	return reply;
}

static json_t *
contact_object(const char *name, const char *email, const char *user)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:{s:{s:s}}}}",
	    "apiVersion", "notification.miloapis.com/v1alpha1", "kind", "Contact",
	    "metadata", "name", name, "namespace", "org-xyz",
	    "spec", "email", email, "subject", "userRef", "name", user);
}

static json_t *
wrap(json_t *obj, const char *uid)
{
	const char *kind = json_string_value(json_object_get(obj, "kind"));

	return json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s}, s:o, s:b}}",
	    "apiVersion", "admission.k8s.io/v1", "kind", "AdmissionReview", "request",
	    "uid", uid, "operation", "CREATE", "namespace", "org-xyz",
	    "name", json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")),
	    "kind", "group", "notification.miloapis.com", "version", "v1alpha1", "kind", kind,
	    "userInfo", "username", "alice", "object", obj, "dryRun", 0);
}

/* A burst of Contact creates for one User costs one GET of the User. */
START_TEST(test_subject_lookups_cached)
{
	json_t *user = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "iam.miloapis.com/v1alpha1",
	    "kind", "User", "metadata", "name", "u-burst");
	json_t *log;
	size_t i, gets = 0;
	json_t *item;
	time_t t0, elapsed;

	tu_standin_reset(&kube);
	tu_standin_post(&kube, "config", "{\"admission\": false}");
	kube_create(user);
	json_decref(user);
	json_decref(tu_standin_control(&kube, "DELETE", "requests", NULL));
	t0 = time(NULL);
	for (int n = 0; n < 20; n++) {
		char name[32], email[64];
		json_t *reply;

		snprintf(name, sizeof(name), "c%d", n);
		snprintf(email, sizeof(email), "c%d@example.com", n);
		reply = send_review("/validate-notification-miloapis-com-v1alpha1-contact",
		    wrap(contact_object(name, email, "u-burst"), name));
		ck_assert(json_is_true(json_object_get(json_object_get(reply, "response"), "allowed")));
		json_decref(reply);
	}
	log = tu_standin_control(&kube, "GET", "requests", NULL);
	json_array_foreach(json_object_get(log, "items"), i, item)
		if (strstr(json_string_value(json_object_get(item, "path")), "/users/u-burst"))
			gets++;
	/*
	 * One GET per SUBJECTS_POSITIVE_TTL_S: under valgrind on a busy
	 * machine, 20 TLS handshakes in this process can take longer.
	 */
	elapsed = time(NULL) - t0;
	ck_assert_uint_ge(gets, 1);
	ck_assert_msg(gets <= 1 + (size_t)(elapsed / SUBJECTS_POSITIVE_TTL_S),
	    "%zu GETs of the User in %lld s", gets, (long long)elapsed);
	json_decref(log);
}
END_TEST

/* The User exists: the mutating endpoint makes the Contact its dependent. */
START_TEST(test_owner_reference)
{
	json_t *user = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "iam.miloapis.com/v1alpha1",
	    "kind", "User", "metadata", "name", "u-owner");
	json_t *reply, *resp, *ops;
	const char *b64;
	unsigned char *text;
	size_t n;

	tu_standin_reset(&kube);
	tu_standin_post(&kube, "config", "{\"admission\": false}");
	kube_create(user);
	json_decref(user);
	reply = send_review("/mutate-notification-miloapis-com-v1alpha1-contact",
	    wrap(contact_object("owned", "owned@example.com", "u-owner"), "m-1"));
	resp = json_object_get(reply, "response");
	ck_assert_str_eq(json_string_value(json_object_get(resp, "patchType")), "JSONPatch");
	b64 = json_string_value(json_object_get(resp, "patch"));
	text = base64_decode(b64, strlen(b64), &n);
	ops = json_loadb((const char *)text, n, 0, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(ops, 0), "path")),
	    "/metadata/ownerReferences");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(
	    json_array_get(ops, 0), "value"), 0), "kind")), "User");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(
	    json_array_get(ops, 0), "value"), 0), "name")), "u-owner");
	free(text);
	json_decref(ops);
	json_decref(reply);
}
END_TEST

static json_t *
membership(const char *contact_ns)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:{s:s, s:s}, s:{s:s, s:s}}}",
	    "apiVersion", "notification.miloapis.com/v1alpha1", "kind", "ContactGroupMembership",
	    "metadata", "name", "m", "namespace", "org-xyz",
	    "spec", "contactRef", "name", "john-doe", "namespace", contact_ns,
	    "contactGroupRef", "name", "admins", "namespace", "org-xyz");
}

static void
create_pair(const char *contact_ns)
{
	json_t *c = tu_load_json("test/fixtures/objects/contact-user.json");
	json_t *g = tu_load_json("test/fixtures/objects/contactgroup.json");

	json_object_set_new(json_object_get(c, "metadata"), "namespace", json_string(contact_ns));
	kube_create(c);
	kube_create(g);
	json_decref(c);
	json_decref(g);
}

/* An object created a moment ago, before the watch delivers it, is found by a live GET. */
START_TEST(test_cache_miss_falls_back)
{
	json_t *reply;

	tu_standin_reset(&kube);
	tu_standin_post(&kube, "config", "{\"admission\": false}");
	wait_cached(0);
	/* Hold the watches back: every watch request fails for now. */
	tu_standin_post(&kube, "fail", "{\"code\": 500, \"pathPrefix\": "
	    "\"/apis/notification.miloapis.com/v1alpha1/contact\"}");
	json_decref(tu_standin_control(&kube, "POST", "cut-watches", "{\"mode\": \"abort\"}"));
	create_pair("org-xyz");
	ck_assert(cached_total() == 0);
	reply = send_review("/validate-notification-miloapis-com-v1alpha1-contactgroupmembership",
	    wrap(membership("org-xyz"), "miss-1"));
	ck_assert(json_is_true(json_object_get(json_object_get(reply, "response"), "allowed")));
	json_decref(reply);
	tu_standin_post(&kube, "fail", "{\"clear\": true}");
}
END_TEST

/* When the API server cannot answer, what cannot be verified is denied, saying so. */
START_TEST(test_api_server_down_fails_closed)
{
	json_t *reply, *st;

	tu_standin_reset(&kube);
	tu_standin_post(&kube, "config", "{\"admission\": false}");
	wait_cached(0);
	tu_standin_post(&kube, "fail", "{\"code\": 503}");
	reply = send_review("/validate-notification-miloapis-com-v1alpha1-contactgroupmembership",
	    wrap(membership("org-xyz"), "down-1"));
	st = json_object_get(json_object_get(reply, "response"), "status");
	ck_assert(json_is_false(json_object_get(json_object_get(reply, "response"), "allowed")));
	ck_assert_int_eq(json_integer_value(json_object_get(st, "code")), 503);
	ck_assert_msg(strstr(json_string_value(json_object_get(st, "message")),
	    "could not be reached") != NULL, "%s", json_string_value(json_object_get(st, "message")));
	json_decref(reply);
	tu_standin_post(&kube, "fail", "{\"clear\": true}");
}
END_TEST

/* A reference into another namespace needs "get" there, asked as the requesting user. */
START_TEST(test_cross_namespace_access)
{
	json_t *reply, *st;

	tu_standin_reset(&kube);
	tu_standin_post(&kube, "config", "{\"admission\": false}");
	create_pair("other-team");
	wait_cached(2);
	tu_standin_post(&kube, "sar-policy", "{\"default\": true, \"rules\": [{\"user\": "
	    "\"alice\", \"namespace\": \"other-team\", \"resource\": \"contacts\", "
	    "\"allowed\": false}]}");
	reply = send_review("/validate-notification-miloapis-com-v1alpha1-contactgroupmembership",
	    wrap(membership("other-team"), "sar-1"));
	st = json_object_get(json_object_get(reply, "response"), "status");
	ck_assert_str_eq(json_string_value(json_object_get(st, "message")),
	    "ContactGroupMembership.notification.miloapis.com \"m\" is invalid: "
	    "spec.contactRef: Forbidden: user \"alice\" may not get contacts in namespace "
	    "\"other-team\"");
	json_decref(reply);
	tu_standin_post(&kube, "sar-policy", "{\"default\": true, \"rules\": []}");
	reply = send_review("/validate-notification-miloapis-com-v1alpha1-contactgroupmembership",
	    wrap(membership("other-team"), "sar-2"));
	ck_assert(json_is_true(json_object_get(json_object_get(reply, "response"), "allowed")));
	json_decref(reply);
}
END_TEST

START_TEST(test_ready_after_sync)
{
	char *body = NULL;

	ck_assert_int_eq(get(&shared, "/readyz", &body), 200);
	free(body);
}
END_TEST

Suite *
webhook_suite(void)
{
	Suite *s = suite_create("webhook");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *tls13 = tcase_create("tls13");
	TCase *rotation = tcase_create("rotation");
	TCase *sighup = tcase_create("sighup");
	TCase *client_ca = tcase_create("client_ca");
	TCase *lifecycle = tcase_create("lifecycle");
	TCase *state = tcase_create("state");
	int timeout = tu_under_valgrind() ? 600 : 180;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	load_state_rules();
	atexit(free_state_rules);
	tcase_add_unchecked_fixture(state, setup_state, teardown_state);
	tcase_set_timeout(state, 120);
	tcase_add_test(state, test_ready_after_sync);
	tcase_add_loop_test(state, test_state_rule, 0, (int)n_state_rules);
	tcase_add_test(state, test_subject_lookups_cached);
	tcase_add_test(state, test_owner_reference);
	tcase_add_test(state, test_cache_miss_falls_back);
	tcase_add_test(state, test_api_server_down_fails_closed);
	tcase_add_test(state, test_cross_namespace_access);
	suite_add_tcase(s, state);
	tcase_add_unchecked_fixture(core, setup_plain, teardown_shared);
	tcase_add_test(core, test_healthz);
	tcase_add_test(core, test_readyz);
	tcase_add_test(core, test_metrics);
	tcase_add_test(core, test_golden_fixture);
	tcase_add_test(core, test_sample_allowed);
	tcase_add_test(core, test_decision_logged);
	tcase_add_test(core, test_serving_line_names_the_transport);
	tcase_add_test(core, test_wrong_kind_denied);
	tcase_add_test(core, test_delete_allowed);
	tcase_add_test(core, test_dry_run_same_verdict);
	tcase_add_test(core, test_mutating_patch);
	tcase_add_test(core, test_tls_versions);
	tcase_add_test(core, test_tls_aead_only);

	tcase_add_unchecked_fixture(limits, setup_plain, teardown_shared);
	tcase_add_test(limits, test_not_found);
	tcase_add_test(limits, test_method_not_allowed);
	tcase_add_test(limits, test_unsupported_media_type);
	tcase_add_test(limits, test_too_large);
	tcase_add_test(limits, test_bad_reviews);
	tcase_add_test(limits, test_plain_http_refused);

	tcase_add_unchecked_fixture(tls13, setup_tls13, teardown_shared);
	tcase_add_test(tls13, test_tls13_minimum);
	tcase_add_unchecked_fixture(rotation, setup_rotation, teardown_shared);
	tcase_add_test(rotation, test_rotation_under_load);
	tcase_add_unchecked_fixture(sighup, setup_sighup, teardown_shared);
	tcase_add_test(sighup, test_sighup_reload);
	tcase_add_test(sighup, test_bad_rotation_keeps_serving);
	tcase_add_unchecked_fixture(client_ca, setup_client_ca, teardown_shared);
	tcase_add_test(client_ca, test_client_cert_per_route);

	tcase_add_test(lifecycle, test_sigterm_drain);
	tcase_add_test(lifecycle, test_bad_flags);
	tcase_add_test(lifecycle, test_durations);
	tcase_add_test(lifecycle, test_unreadable_certificate);
	tcase_add_test(lifecycle, test_help_and_version);
	tcase_add_test(lifecycle, test_ipv6_and_explicit_files);
	tcase_add_test(lifecycle, test_threads_flag);

	TCase *all[] = { core, limits, tls13, rotation, sighup, client_ca,
	    lifecycle };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		tcase_set_timeout(all[i], timeout);
		suite_add_tcase(s, all[i]);
	}
	return s;
}
