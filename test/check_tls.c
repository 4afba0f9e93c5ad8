/* check_tls.c -- loading, checking and reloading serving credentials */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "testutil.h"
#include "tls.h"
#include "tls_transport.h"

Suite *tls_suite(void);

/*
 * Two certificate sets from different CAs, made once: a/ and b/ as
 * certs/dev-cert.sh lays them out, r/ an RSA pair; live/ is what a store
 * under test reads.
 */
static char dir[128];

static void
sh(const char *fmt, ...)
{
	char cmd[4 * PATH_MAX];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	ck_assert_msg(rc == 0, "command failed (%d): %s", rc, cmd);
}

static void
setup(void)
{
	char script[PATH_MAX];

	snprintf(dir, sizeof(dir), "/tmp/milo-check-tls-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(script, sizeof(script), "%s", tu_path("certs/dev-cert.sh"));
	sh("'%s' '%s/a' && '%s' '%s/b'", script, dir, script, dir);
	sh("cd '%s' && mkdir r && cd r && printf 'cn = rsa\\ntls_www_server\\n"
	    "signing_key\\nencryption_key\\nexpiration_days = 30\\n' >t && "
	    "certtool --generate-privkey --key-type=rsa --bits=2048 "
	    "--outfile tls.key >/dev/null 2>&1 && certtool "
	    "--generate-self-signed --load-privkey tls.key --template t "
	    "--outfile tls.crt >/dev/null 2>&1", dir);
}

static void
teardown(void)
{
	sh("rm -rf '%s'", dir);
}

/* The store logs every load; keep the test output to the results. */
static int null_fd = -1;

static void
quiet(void)
{
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	log_set_fd(null_fd);
}

static void
loud(void)
{
	log_set_fd(-1);
	if (null_fd >= 0)
		close(null_fd);
	null_fd = -1;
}

/* Puts set's tls.crt and key's tls.key in live/, each by an atomic rename. */
static void
install(const char *cert_set, const char *key_set)
{
	sh("cd '%s' && mkdir -p live && cp %s/tls.crt live/.c && "
	    "cp %s/tls.key live/.k && mv live/.c live/tls.crt && "
	    "mv live/.k live/tls.key", dir, cert_set, key_set);
}

/* dir/rel in out, which is returned. */
static char *
path(char out[PATH_MAX], const char *rel)
{
	snprintf(out, PATH_MAX, "%s/%.512s", dir, rel);
	return out;
}

static struct tls_store *
open_live(struct metrics *m)
{
	struct tls_config cfg = { 0 };
	struct tls_store *s;
	char err[512];
	char cert[PATH_MAX], key[PATH_MAX];

	cfg.cert_file = path(cert, "live/tls.crt");
	cfg.key_file = path(key, "live/tls.key");
	cfg.metrics = m;
	ck_assert_msg(tls_store_open(&cfg, &s, err, sizeof(err)) == 0, "%s", err);
	return s;
}

/* The DER of the chain's first certificate, to tell certificates apart. */
static void
leaf(struct tls_cred *c, gnutls_datum_t *out)
{
	gnutls_pcert_st *pc;
	gnutls_privkey_t key;
	unsigned int n;

	tls_cred_get(c, &pc, &n, &key);
	ck_assert_uint_ge(n, 1);
	ck_assert_ptr_nonnull(key);
	*out = pc[0].cert;
}

static bool
same_leaf(struct tls_cred *a, struct tls_cred *b)
{
	gnutls_datum_t x, y;

	leaf(a, &x);
	leaf(b, &y);
	return x.size == y.size && memcmp(x.data, y.data, x.size) == 0;
}

START_TEST(test_open)
{
	struct tls_store *s;
	struct tls_cred *c;

	install("a", "a");
	s = open_live(NULL);
	ck_assert_uint_eq(tls_store_generation(s), 1);
	ck_assert_ptr_null(tls_store_client_ca(s));
	ck_assert_str_eq(tls_store_priorities(s), TLS_PRIORITIES_12);
	c = tls_store_acquire(s);
	ck_assert_ptr_nonnull(c);
	tls_cred_release(c);
	tls_store_free(s);
}
END_TEST

START_TEST(test_rsa)
{
	struct tls_store *s;

	install("r", "r");
	s = open_live(NULL);
	ck_assert_uint_eq(tls_store_generation(s), 1);
	tls_store_free(s);
}
END_TEST

START_TEST(test_client_ca)
{
	struct tls_config cfg = { 0 };
	struct tls_store *s;
	char err[512], cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];

	cfg = (struct tls_config){ .cert_file = path(cert, "a/tls.crt"),
	    .key_file = path(key, "a/tls.key"),
	    .client_ca_file = path(ca, "b/ca.crt"),
	    .min_version = TLS_MIN_VERSION_13 };
	ck_assert_int_eq(tls_store_open(&cfg, &s, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(tls_store_client_ca(s), "BEGIN CERTIFICATE"));
	ck_assert_str_eq(tls_store_priorities(s), TLS_PRIORITIES_13);
	tls_store_free(s);

	cfg.client_ca_file = key;	/* a key is not a CA bundle */
	ck_assert_int_eq(tls_store_open(&cfg, &s, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(s);
}
END_TEST

START_TEST(test_reload_installs_and_keeps_old_alive)
{
	struct metrics *m = metrics_new();
	struct tls_store *s;
	struct tls_cred *old, *cur;
	struct buf text;
	const char *expiry;

	install("a", "a");
	s = open_live(m);
	old = tls_store_acquire(s);
	ck_assert_int_eq(tls_store_reload(s, "test"), TLS_RELOAD_UNCHANGED);
	ck_assert_uint_eq(tls_store_generation(s), 1);

	install("b", "b");
	ck_assert_int_eq(tls_store_reload(s, "test"), TLS_RELOAD_INSTALLED);
	ck_assert_uint_eq(tls_store_generation(s), 2);
	cur = tls_store_acquire(s);
	ck_assert(!same_leaf(old, cur));
	/* The old credentials are intact while referenced. */
	leaf(old, &(gnutls_datum_t){ 0 });
	tls_cred_release(old);
	tls_cred_release(cur);

	buf_init(&text, 1 << 16);
	ck_assert_int_eq(metrics_render(m, &text), 0);
	ck_assert_ptr_nonnull(strstr(buf_str(&text),
	    "\ncertwatcher_read_certificate_total 3\n"));
	ck_assert_ptr_nonnull(strstr(buf_str(&text),
	    "\ncertwatcher_read_certificate_errors_total 0\n"));
	ck_assert_ptr_nonnull(strstr(buf_str(&text),
	    "\nmilo_tls_certificate_reloads_total 1\n"));
	expiry = strstr(buf_str(&text),
	    "\nmilo_tls_certificate_expiration_timestamp_seconds ");
	ck_assert_ptr_nonnull(expiry);
	ck_assert(strtod(strchr(expiry + 1, ' '), NULL) > (double)time(NULL));
	buf_free(&text);
	tls_store_free(s);
	metrics_free(m);
}
END_TEST

START_TEST(test_reload_keeps_current_on_error)
{
	struct tls_store *s;
	struct tls_cred *before, *after;

	install("a", "a");
	s = open_live(NULL);
	before = tls_store_acquire(s);

	install("b", "a");	/* half-way through a rotation */
	ck_assert_int_eq(tls_store_reload(s, "test"), -EINVAL);
	/* The same bad pair is not parsed again. */
	ck_assert_int_eq(tls_store_reload(s, "test"), TLS_RELOAD_UNCHANGED);
	sh("rm -f '%s/live/tls.key'", dir);
	ck_assert_int_eq(tls_store_reload(s, "test"), -ENOENT);
	ck_assert_uint_eq(tls_store_generation(s), 1);
	after = tls_store_acquire(s);
	ck_assert(same_leaf(before, after));
	tls_cred_release(after);

	install("b", "b");	/* the rotation completes */
	ck_assert_int_eq(tls_store_reload(s, "test"), TLS_RELOAD_INSTALLED);
	after = tls_store_acquire(s);
	ck_assert(!same_leaf(before, after));
	tls_cred_release(after);
	tls_cred_release(before);
	tls_store_free(s);
}
END_TEST

START_TEST(test_watch)
{
	struct tls_store *s;
	struct timespec tick = { 0, 20 * 1000000L };

	install("a", "a");
	s = open_live(NULL);
	ck_assert_int_eq(tls_store_watch(s, 20), 0);
	ck_assert_int_eq(tls_store_watch(s, 20), -EALREADY);
	install("b", "b");
	for (int i = 0; i < 1500 && tls_store_generation(s) < 2; i++)
		nanosleep(&tick, NULL);
	ck_assert_uint_eq(tls_store_generation(s), 2);
	tls_store_free(s);	/* stops and joins the watcher */
}
END_TEST

static int
open_err(const char *cert, const char *key, char *err, size_t errlen)
{
	struct tls_config cfg = { 0 };
	struct tls_store *s = (struct tls_store *)&cfg;
	char c[PATH_MAX], k[PATH_MAX];
	int rc;

	cfg.cert_file = path(c, cert);
	cfg.key_file = path(k, key);
	rc = tls_store_open(&cfg, &s, err, errlen);
	ck_assert_ptr_null(s);
	return rc;
}

START_TEST(test_open_errors)
{
	char err[512];

	ck_assert_int_eq(open_err("nope/tls.crt", "a/tls.key", err,
	    sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "nope/tls.crt: No such file"));
	ck_assert_int_eq(open_err("a/tls.crt", "b/tls.key", err, sizeof(err)),
	    -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "does not match"));
	ck_assert_int_eq(open_err("a/tls.key", "a/tls.key", err, sizeof(err)),
	    -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "a/tls.key:"));
	ck_assert_int_eq(open_err("a/tls.crt", "a/tls.crt", err, sizeof(err)),
	    -EINVAL);
	sh("cd '%s' && : >empty", dir);
	ck_assert_int_eq(open_err("empty", "a/tls.key", err, sizeof(err)),
	    -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "empty:"));
	ck_assert_int_eq(open_err("a", "a/tls.key", err, sizeof(err)), -EISDIR);
}
END_TEST

START_TEST(test_file_too_large)
{
	char err[512];

	sh("cd '%s' && head -c %d /dev/zero >big", dir, TLS_MAX_FILE + 1);
	ck_assert_int_eq(open_err("big", "a/tls.key", err, sizeof(err)), -E2BIG);
	ck_assert_ptr_nonnull(strstr(err, "too large"));
}
END_TEST

START_TEST(test_min_version)
{
	enum tls_min_version v;

	ck_assert_int_eq(tls_min_version_parse("VersionTLS12", &v), 0);
	ck_assert_int_eq(v, TLS_MIN_VERSION_12);
	ck_assert_int_eq(tls_min_version_parse("VersionTLS13", &v), 0);
	ck_assert_int_eq(v, TLS_MIN_VERSION_13);
	ck_assert_int_eq(tls_min_version_parse("VersionTLS11", &v), -EINVAL);
	ck_assert_int_eq(tls_min_version_parse("1.2", &v), -EINVAL);
	ck_assert_int_eq(tls_min_version_parse("", &v), -EINVAL);
}
END_TEST

START_TEST(test_priorities_parse)
{
	gnutls_priority_t p;

	ck_assert_int_eq(gnutls_priority_init(&p, TLS_PRIORITIES_12, NULL), 0);
	gnutls_priority_deinit(p);
	ck_assert_int_eq(gnutls_priority_init(&p, TLS_PRIORITIES_13, NULL), 0);
	gnutls_priority_deinit(p);
}
END_TEST

/* ---- tls_transport.c on a socket pair, a GnuTLS client on the other end ---- */

struct pair {
	int sfd, cfd;			/* server's end (non-blocking), client's */
	gnutls_session_t server, client;
	gnutls_certificate_credentials_t scred, ccred;
	struct tls_transport *t;
};

static void
nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	ck_assert_int_ge(fl, 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

/*
 * A handshake over an AF_UNIX socket pair, both ends non-blocking and
 * driven in turn; sndbuf (0: the default) caps what the server's end may
 * have in flight.
 */
static void
pair_open(struct pair *p, int sndbuf)
{
	char cert[PATH_MAX], key[PATH_MAX];
	int sv[2], rs = 1, rc = 1;

	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	p->sfd = sv[0];
	p->cfd = sv[1];
	if (sndbuf)
		ck_assert_int_eq(setsockopt(p->sfd, SOL_SOCKET, SO_SNDBUF,
		    &sndbuf, sizeof(sndbuf)), 0);
	nonblocking(p->sfd);
	nonblocking(p->cfd);
	ck_assert_int_eq(gnutls_certificate_allocate_credentials(&p->scred), 0);
	ck_assert_int_eq(gnutls_certificate_set_x509_key_file(p->scred,
	    path(cert, "a/tls.crt"), path(key, "a/tls.key"),
	    GNUTLS_X509_FMT_PEM), 0);
	ck_assert_int_eq(gnutls_init(&p->server, GNUTLS_SERVER), 0);
	ck_assert_int_eq(gnutls_priority_set_direct(p->server,
	    TLS_PRIORITIES_12, NULL), 0);
	ck_assert_int_eq(gnutls_credentials_set(p->server,
	    GNUTLS_CRD_CERTIFICATE, p->scred), 0);
	gnutls_handshake_set_timeout(p->server, 0);
	gnutls_transport_set_int(p->server, p->sfd);
	p->t = tls_transport_attach(p->server, p->sfd);
	ck_assert_ptr_nonnull(p->t);

	ck_assert_int_eq(gnutls_certificate_allocate_credentials(&p->ccred), 0);
	ck_assert_int_eq(gnutls_init(&p->client, GNUTLS_CLIENT), 0);
	ck_assert_int_eq(gnutls_set_default_priority(p->client), 0);
	ck_assert_int_eq(gnutls_credentials_set(p->client,
	    GNUTLS_CRD_CERTIFICATE, p->ccred), 0);
	gnutls_handshake_set_timeout(p->client, 0);
	gnutls_transport_set_int(p->client, p->cfd);
	for (int i = 0; i < 100000 && (rs || rc); i++) {
		if (rs)
			rs = gnutls_handshake(p->server);
		if (rc)
			rc = gnutls_handshake(p->client);
		ck_assert_msg(rs >= 0 || !gnutls_error_is_fatal(rs),
		    "server handshake: %s", gnutls_strerror(rs));
		ck_assert_msg(rc >= 0 || !gnutls_error_is_fatal(rc),
		    "client handshake: %s", gnutls_strerror(rc));
	}
	ck_assert_int_eq(rs, 0);
	ck_assert_int_eq(rc, 0);
}

static void
pair_close(struct pair *p)
{
	gnutls_deinit(p->server);
	tls_transport_free(p->t);
	gnutls_deinit(p->client);
	gnutls_certificate_free_credentials(p->scred);
	gnutls_certificate_free_credentials(p->ccred);
	close(p->sfd);
	close(p->cfd);
}

/* Whether the kernel holds bytes for fd to read. */
static bool
kernel_has_bytes(int fd)
{
	char c;

	return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/* One record's worth of text, or "" when none is there (EAGAIN). */
static const char *
recv_text(gnutls_session_t s, char *out, size_t cap)
{
	ssize_t n = gnutls_record_recv(s, out, cap - 1);

	if (n == GNUTLS_E_AGAIN)
		n = 0;
	ck_assert_msg(n >= 0, "recv: %s", gnutls_strerror((int)n));
	out[n] = '\0';
	return out;
}

static void
send_text(gnutls_session_t s, const char *text)
{
	ck_assert_int_eq(gnutls_record_send(s, text, strlen(text)),
	    (ssize_t)strlen(text));
}

/*
 * Records that arrive together are read with one recv() and handed out
 * one by one with the socket empty; "would block" comes only after the
 * last. A record larger than the read-ahead buffer arrives whole.
 */
START_TEST(test_transport_read_ahead)
{
	struct pair p;
	char out[256];
	size_t big = 2 * TLS_TRANSPORT_READ_AHEAD + 1000, got = 0;
	char *data = malloc(big), *back = malloc(big);
	struct timespec t0, t1;
	ssize_t n;

	ck_assert_ptr_nonnull(data);
	ck_assert_ptr_nonnull(back);
	pair_open(&p, 0);
	send_text(p.client, "one");
	send_text(p.client, "two");
	send_text(p.client, "three");
	ck_assert_str_eq(recv_text(p.server, out, sizeof(out)), "one");
	ck_assert(!kernel_has_bytes(p.sfd));
	/* With a deadline GnuTLS asks whether bytes are there: they are. */
	gnutls_record_set_timeout(p.server, 3000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_str_eq(recv_text(p.server, out, sizeof(out)), "two");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 2);
	gnutls_record_set_timeout(p.server, 0);
	ck_assert_str_eq(recv_text(p.server, out, sizeof(out)), "three");
	ck_assert_str_eq(recv_text(p.server, out, sizeof(out)), "");

	for (size_t i = 0; i < big; i++)
		data[i] = (char)('a' + (i + i / 997) % 26);
	ck_assert_int_eq(gnutls_record_send(p.client, data, big), 16384);
	ck_assert_int_eq(gnutls_record_send(p.client, data + 16384,
	    big - 16384), 16384);
	ck_assert_int_eq(gnutls_record_send(p.client, data + 32768,
	    big - 32768), (ssize_t)(big - 32768));
	send_text(p.client, "after");
	while (got < big) {
		n = gnutls_record_recv(p.server, back + got, big - got);
		ck_assert_msg(n > 0, "recv: %s", gnutls_strerror((int)n));
		got += (size_t)n;
	}
	ck_assert_mem_eq(back, data, big);
	ck_assert_str_eq(recv_text(p.server, out, sizeof(out)), "after");
	ck_assert_str_eq(recv_text(p.server, out, sizeof(out)), "");
	pair_close(&p);
	free(data);
	free(back);
}
END_TEST

/* Sends 100-byte records until the socket is full; returns how many went. */
static int
fill(struct pair *p, const char *chunk)
{
	ssize_t n;
	int sent = 0;

	while ((n = gnutls_record_send(p->server, chunk, 100)) == 100)
		sent++;
	ck_assert_int_eq(n, GNUTLS_E_AGAIN);
	return sent;
}

/*
 * A held record goes out with the next one, after it and never without
 * it; when the socket is full, the next one's send says so (EAGAIN), and
 * once there is room both arrive, in order.
 */
START_TEST(test_transport_hold)
{
	struct pair p;
	char out[256], chunk[100];
	int sent, n;

	memset(chunk, 'f', sizeof(chunk));
	pair_open(&p, 4096);
	tls_transport_hold_next(p.t);
	send_text(p.server, "header");
	ck_assert(!kernel_has_bytes(p.cfd));
	send_text(p.server, "body");
	ck_assert_str_eq(recv_text(p.client, out, sizeof(out)), "header");
	ck_assert_str_eq(recv_text(p.client, out, sizeof(out)), "body");
	ck_assert(tls_transport_settle(p.t, true));

	/* The same with the socket full when the body is sent. */
	sent = fill(&p, chunk);
	ck_assert_int_gt(sent, 0);
	ck_assert_uint_eq(strlen(recv_text(p.client, out, sizeof(out))), 100);
	/* The record that did not fit goes; the socket is full again. */
	ck_assert_int_eq(gnutls_record_send(p.server, chunk, 100), 100);
	tls_transport_hold_next(p.t);
	send_text(p.server, "header2");
	ck_assert_int_eq(gnutls_record_send(p.server, "body2", 5),
	    GNUTLS_E_AGAIN);
	/* Read as the room comes, sending again each time, as MHD does. */
	n = 1;
	for (int i = 0; i < 100000; i++) {
		ssize_t r = gnutls_record_send(p.server, "body2", 5);

		if (r == 5)
			break;
		ck_assert_int_eq(r, GNUTLS_E_AGAIN);
		ck_assert_uint_eq(strlen(recv_text(p.client, out,
		    sizeof(out))), 100);
		n++;
	}
	while (n < sent + 1) {
		ck_assert_uint_eq(strlen(recv_text(p.client, out,
		    sizeof(out))), 100);
		n++;
	}
	ck_assert_str_eq(recv_text(p.client, out, sizeof(out)), "header2");
	ck_assert_str_eq(recv_text(p.client, out, sizeof(out)), "body2");
	ck_assert_str_eq(recv_text(p.client, out, sizeof(out)), "");
	ck_assert(tls_transport_settle(p.t, true));
	pair_close(&p);
}
END_TEST

/*
 * A hold that no record followed is sent when the exchange is settled
 * (and counted); one settled without sending is dropped.
 */
START_TEST(test_transport_settle)
{
	struct pair p;
	char out[256];
	unsigned long late = tls_transport_late_sends();

	pair_open(&p, 0);
	ck_assert(tls_transport_settle(p.t, true));
	tls_transport_hold_next(p.t);
	ck_assert(tls_transport_settle(p.t, true));	/* cancelled, unused */
	send_text(p.server, "alone");
	ck_assert_str_eq(recv_text(p.client, out, sizeof(out)), "alone");
	tls_transport_hold_next(p.t);
	send_text(p.server, "late");
	ck_assert(!kernel_has_bytes(p.cfd));
	ck_assert(!tls_transport_settle(p.t, true));
	ck_assert_uint_eq(tls_transport_late_sends(), late + 1);
	ck_assert_str_eq(recv_text(p.client, out, sizeof(out)), "late");
	tls_transport_hold_next(p.t);
	send_text(p.server, "dropped");
	ck_assert(!tls_transport_settle(p.t, false));
	ck_assert(!kernel_has_bytes(p.cfd));
	ck_assert_uint_eq(tls_transport_late_sends(), late + 1);
	pair_close(&p);
}
END_TEST

Suite *
tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *transport = tcase_create("transport");

	tcase_add_unchecked_fixture(core, setup, teardown);
	tcase_add_unchecked_fixture(transport, setup, teardown);
	tcase_set_timeout(transport, 60);
	tcase_add_test(transport, test_transport_read_ahead);
	tcase_add_test(transport, test_transport_hold);
	tcase_add_test(transport, test_transport_settle);
	tcase_add_unchecked_fixture(limits, setup, teardown);
	tcase_add_checked_fixture(core, quiet, loud);
	tcase_add_checked_fixture(limits, quiet, loud);
	tcase_set_timeout(core, 120);
	tcase_set_timeout(limits, 120);
	tcase_add_test(core, test_open);
	tcase_add_test(core, test_rsa);
	tcase_add_test(core, test_client_ca);
	tcase_add_test(core, test_reload_installs_and_keeps_old_alive);
	tcase_add_test(core, test_watch);
	tcase_add_test(core, test_min_version);
	tcase_add_test(core, test_priorities_parse);
	tcase_add_test(limits, test_reload_keeps_current_on_error);
	tcase_add_test(limits, test_open_errors);
	tcase_add_test(limits, test_file_too_large);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, transport);
	return s;
}
