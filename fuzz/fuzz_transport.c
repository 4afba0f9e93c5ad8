/*
 * fuzz_transport.c -- libFuzzer target: lib/tls_transport.c, the server's
 * framing of TLS records on a socket (read-ahead, held records).
 *
 * A GnuTLS server session reads and writes through tls_transport over one
 * end of a loopback TCP connection whose buffers the input sizes (so that
 * sends are cut short where the socket fills, as on a real network); a
 * GnuTLS client on the other end talks to it. The input is a script: the client sends
 * application data in pieces of chosen sizes, the server reads with chosen
 * sizes, the server answers as libmicrohttpd does (a header record held
 * back with tls_transport_hold_next() and sent with the body's record), or
 * settles a hold, the client reads. What each side reads must be exactly
 * what the other sent, in order, once both are drained; a record the
 * transport was told to drop ends the check for that direction only.
 *
 * The first byte's low bit instead selects raw mode: the rest of the input
 * is written to the server as the client's bytes, in pieces, while the
 * server handshakes: an attacker's bytes through the read-ahead, which must
 * neither crash nor loop.
 *
 * PSK key exchange over TLS 1.2 keeps a handshake cheap: the target is the
 * transport, not GnuTLS's public-key code.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls_transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PRIORITY "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+PSK"
#define MAX_STEPS 256
#define LOG_MAX (2 * 1024 * 1024)	/* more than MAX_STEPS of the largest step */

struct input {
	const uint8_t *p;
	size_t left;
};

static unsigned int
next(struct input *in, unsigned int bound)
{
	unsigned int v;

	if (!in->left)
		return 0;
	v = *in->p++;
	in->left--;
	return bound ? v % bound : v;
}

/* A byte log: what one side sent or received. */
struct log {
	unsigned char *b;
	size_t len;
};

static unsigned char logs[4][LOG_MAX];

static void
log_add(struct log *l, const void *p, size_t n)
{
	if (l->len + n > LOG_MAX)
		abort();	/* the script bounds this */
	memcpy(l->b + l->len, p, n);
	l->len += n;
}

struct pair {
	int fds[2];			/* [0] server, [1] client */
	gnutls_session_t server, client;
	gnutls_psk_server_credentials_t scred;
	gnutls_psk_client_credentials_t ccred;
	struct tls_transport *io;
	struct log c_sent, s_recv, s_sent, c_recv;
	bool s2c_broken;		/* a held record was dropped */
	bool dead;			/* a fatal error on either side */
	unsigned int seq;		/* varies the data */
};

static int
psk_key(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
	(void)s;
	(void)user;
	key->data = gnutls_malloc(16);
	if (!key->data)
		return -1;
	memset(key->data, 0x5a, 16);
	key->size = 16;
	return 0;
}

static void
fill(struct pair *p, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(p->seq++ * 131u + 7u);
}

/* Reads what the client can, into c_recv. */
static void
client_read(struct pair *p, size_t want)
{
	unsigned char b[4096];
	ssize_t n;

	while (want > 0 && !p->dead) {
		n = gnutls_record_recv(p->client, b, want < sizeof(b) ? want : sizeof(b));
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			return;
		if (n <= 0) {
			if (!p->s2c_broken)
				abort();	/* the server's records arrived damaged */
			p->dead = true;
			return;
		}
		log_add(&p->c_recv, b, (size_t)n);
		want -= (size_t)n;
	}
}

/* Reads what the server can, through the transport, into s_recv. */
static void
server_read(struct pair *p, size_t want)
{
	unsigned char b[4096];
	ssize_t n;

	while (want > 0 && !p->dead) {
		n = gnutls_record_recv(p->server, b, want < sizeof(b) ? want : sizeof(b));
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			return;
		if (n <= 0)
			abort();	/* the client's records arrived damaged */
		log_add(&p->s_recv, b, (size_t)n);
		want -= (size_t)n;
	}
}

/*
 * Loopback delivery is not instant (and a small receive window opens only
 * after the reader has made room): waits briefly for something to read on
 * fd, or on either end when fd is -1.
 */
static void
wait_readable(const struct pair *p, int fd)
{
	struct pollfd f[2] = { { .fd = p->fds[0], .events = POLLIN },
	    { .fd = p->fds[1], .events = POLLIN } };

	if (fd >= 0)
		(void)poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 20);
	else
		(void)poll(f, 2, 10);
}

/* One record from s, retried (same data, as GnuTLS asks) while the peer drains. */
static bool
send_record(struct pair *p, gnutls_session_t s, struct log *sent,
    const unsigned char *b, size_t n)
{
	ssize_t rc;

	for (int tries = 0; tries < 250; tries++) {	/* 5 s of waits at most */
		rc = gnutls_record_send(s, b, n);
		if (rc >= 0) {
			log_add(sent, b, (size_t)rc);
			return true;
		}
		if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED)
			abort();
		/* The socket is full: let the other side read. */
		wait_readable(p, s == p->server ? p->fds[1] : p->fds[0]);
		if (s == p->server)
			client_read(p, SIZE_MAX);
		else
			server_read(p, SIZE_MAX);
		if (p->dead)
			return false;
	}
	abort();	/* never drained */
}

static bool
handshake(struct pair *p)
{
	int rs = GNUTLS_E_AGAIN, rc = GNUTLS_E_AGAIN;

	for (int i = 0; i < 1000 && (rs != 0 || rc != 0); i++) {
		if (rc != 0) {
			rc = gnutls_handshake(p->client);
			if (rc < 0 && gnutls_error_is_fatal(rc))
				return false;
		}
		if (rs != 0) {
			rs = gnutls_handshake(p->server);
			if (rs < 0 && gnutls_error_is_fatal(rs))
				return false;
		}
	}
	return rs == 0 && rc == 0;
}

/*
 * A small send buffer makes sends stop short where it fills; the receive
 * buffer stays larger, since a tiny one makes loopback TCP drop segments
 * and wait for a retransmission.
 */
#define RCVBUF_MIN (16 * 1024)

static void
set_buffers(int fd, int sndbuf)
{
	int rcvbuf = sndbuf > RCVBUF_MIN ? sndbuf : RCVBUF_MIN;

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A loopback TCP connection: fds[0] accepted (the server's), fds[1] the client's. */
static void
connect_pair(int fds[2], int buffer)
{
	static int listener = -1;
	static struct sockaddr_in addr;
	socklen_t len = sizeof(addr);

	if (listener < 0) {
		addr.sin_family = AF_INET;
		addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		listener = socket(AF_INET, SOCK_STREAM, 0);
		if (listener < 0 || bind(listener, (struct sockaddr *)&addr,
		    sizeof(addr)) != 0 || listen(listener, 8) != 0 ||
		    getsockname(listener, (struct sockaddr *)&addr, &len) != 0)
			abort();
	}
	fds[1] = socket(AF_INET, SOCK_STREAM, 0);
	if (fds[1] < 0)
		abort();
	set_buffers(fds[1], buffer);	/* before connect: the window follows */
	if (connect(fds[1], (struct sockaddr *)&addr, sizeof(addr)) != 0 &&
	    errno != EINPROGRESS)
		abort();
	fds[0] = accept(listener, NULL, NULL);
	if (fds[0] < 0)
		abort();
	set_buffers(fds[0], buffer);
}

static bool
pair_open(struct pair *p, int buffer)
{
	memset(p, 0, sizeof(*p));
	p->c_sent.b = logs[0];
	p->s_recv.b = logs[1];
	p->s_sent.b = logs[2];
	p->c_recv.b = logs[3];
	connect_pair(p->fds, buffer);
	if (gnutls_psk_allocate_server_credentials(&p->scred) < 0 ||
	    gnutls_psk_allocate_client_credentials(&p->ccred) < 0)
		abort();
	gnutls_psk_set_server_credentials_function(p->scred, psk_key);
	if (gnutls_psk_set_client_credentials(p->ccred, "fuzz",
	    &(gnutls_datum_t){ (unsigned char *)"ZZZZZZZZZZZZZZZZ", 16 },
	    GNUTLS_PSK_KEY_RAW) < 0)
		abort();
	if (gnutls_init(&p->server, GNUTLS_SERVER | GNUTLS_NONBLOCK) < 0 ||
	    gnutls_init(&p->client, GNUTLS_CLIENT | GNUTLS_NONBLOCK) < 0 ||
	    gnutls_priority_set_direct(p->server, PRIORITY, NULL) < 0 ||
	    gnutls_priority_set_direct(p->client, PRIORITY, NULL) < 0 ||
	    gnutls_credentials_set(p->server, GNUTLS_CRD_PSK, p->scred) < 0 ||
	    gnutls_credentials_set(p->client, GNUTLS_CRD_PSK, p->ccred) < 0)
		abort();
	gnutls_transport_set_int(p->client, p->fds[1]);
	p->io = tls_transport_attach(p->server, p->fds[0]);
	return p->io != NULL;
}

static void
pair_close(struct pair *p)
{
	gnutls_deinit(p->server);
	gnutls_deinit(p->client);
	tls_transport_free(p->io);	/* after gnutls_deinit(), as libmicrohttpd does */
	gnutls_psk_free_server_credentials(p->scred);
	gnutls_psk_free_client_credentials(p->ccred);
	close(p->fds[0]);
	close(p->fds[1]);
}

/* Attacker bytes to a handshaking server, in pieces; the server must just fail or wait. */
static void
raw(struct pair *p, struct input *in)
{
	int rc;

	while (in->left) {
		size_t n = 1 + next(in, 64);

		if (n > in->left)
			n = in->left;
		if (send(p->fds[1], in->p, n, MSG_NOSIGNAL) < 0)
			break;
		in->p += n;
		in->left -= n;
		rc = gnutls_handshake(p->server);
		if (rc == 0 || (rc < 0 && gnutls_error_is_fatal(rc)))
			break;
	}
}

/*
 * Until everything the server sent has left its socket (the client reads
 * meanwhile), so that a record sent now finds room at once.
 */
static void
drain_to_client(struct pair *p)
{
	int queued = 1;

	for (int i = 0; i < 250 && !p->dead; i++) {
		client_read(p, SIZE_MAX);
		if (ioctl(p->fds[0], SIOCOUTQ, &queued) != 0 || queued == 0)
			return;
		wait_readable(p, p->fds[1]);
	}
	if (!p->dead)
		abort();	/* the client never took them */
}

/* httpd.c's answer: the header's record held, then the body's, in one send. */
static void
respond(struct pair *p, size_t head, size_t body)
{
	unsigned char b[2 * 4096];

	fill(p, b, head + body);
	if (body)	/* as httpd.c: only when a record certainly follows */
		tls_transport_hold_next(p->io);
	if (!send_record(p, p->server, &p->s_sent, b, head))
		return;
	if (body)
		(void)send_record(p, p->server, &p->s_sent, b + head, body);
}

static void
step(struct pair *p, struct input *in)
{
	unsigned char b[4096];
	size_t n;

	switch (next(in, 6)) {
	case 0:		/* the client sends a piece */
		n = 1 + next(in, 0) * 16;
		fill(p, b, n);
		(void)send_record(p, p->client, &p->c_sent, b, n);
		break;
	case 1:		/* the server reads */
		server_read(p, 1 + next(in, 0) * 16);
		break;
	case 2:		/* the server answers: a header (held if small enough), maybe a body */
		respond(p, 1 + next(in, 0) * 5, next(in, 2) ? next(in, 0) * 16 : 0);
		break;
	case 3:		/* the client reads */
		client_read(p, 1 + next(in, 0) * 16);
		break;
	case 4:		/* a hold no record followed: settling cancels it */
		tls_transport_hold_next(p->io);
		if (!tls_transport_settle(p->io, next(in, 2)))
			abort();	/* nothing was held */
		break;
	default:	/* a record held, then the exchange ends: sent late, or dropped */
		n = 1 + next(in, 0) * 5;
		fill(p, b, n);
		tls_transport_hold_next(p->io);
		if (!send_record(p, p->server, &p->s_sent, b, n))
			break;
		drain_to_client(p);	/* room for it: settling does not wait, or cut */
		if (next(in, 4) != 0) {
			(void)tls_transport_settle(p->io, true);
		} else if (!tls_transport_settle(p->io, false)) {
			p->s2c_broken = true;	/* its bytes are gone */
		}
		break;
	}
}

static bool
same(const struct log *a, const struct log *b)
{
	return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

static bool
prefix(const struct log *part, const struct log *whole)
{
	return part->len <= whole->len && memcmp(part->b, whole->b, part->len) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	struct pair p;
	unsigned int mode = next(&in, 0);

	if (!pair_open(&p, 2048 << next(&in, 7)))
		abort();
	if (mode & 1) {
		raw(&p, &in);
		pair_close(&p);
		return 0;
	}
	if (!handshake(&p))
		abort();
	for (int i = 0; i < MAX_STEPS && in.left && !p.dead; i++) {
		step(&p, &in);
		if (!prefix(&p.s_recv, &p.c_sent) ||
		    !prefix(&p.c_recv, &p.s_sent))
			abort();
	}
	/* Drained, each side has read all the other sent. */
	for (int i = 0; i < 200 && !p.dead && (p.s_recv.len < p.c_sent.len ||
	    (!p.s2c_broken && p.c_recv.len < p.s_sent.len)); i++) {
		wait_readable(&p, -1);
		server_read(&p, SIZE_MAX);
		client_read(&p, SIZE_MAX);
	}
	if (!p.dead && (!same(&p.s_recv, &p.c_sent) ||
	    (!p.s2c_broken && !same(&p.c_recv, &p.s_sent))))
		abort();
	pair_close(&p);
	return 0;
}
