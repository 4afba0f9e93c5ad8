/* tls_transport.c -- GnuTLS transport for a server socket: fewer recv and send calls per request */
#include "tls_transport.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define VEC_MAX 32		/* records GnuTLS passes at once (its MAX_QUEUE) */
#define SETTLE_WAIT_MS 1000

struct tls_transport {
	int fd;
	bool hold_next;			/* hold the next record sent */
	size_t held_len;		/* bytes held, not yet sent */
	unsigned char *ahead;		/* TLS_TRANSPORT_READ_AHEAD bytes, or NULL */
	size_t ahead_off, ahead_len;	/* unread: ahead[ahead_off, ahead_len) */
	unsigned char held[TLS_TRANSPORT_HOLD_MAX];
};

static atomic_ulong late_sends;

/*
 * One read-ahead buffer kept per thread: a connection gives its buffer
 * back once the bytes in it are taken, and the next read on the thread
 * (most often the same connection's next request, or a read that finds
 * nothing) takes it again without malloc. A thread-specific key frees it
 * when the thread ends (its destructor runs before thread-local storage
 * goes).
 */
static _Thread_local unsigned char *spare;
static _Thread_local bool spare_keyed;
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_ok;

static void
free_spare(void *slot)
{
	unsigned char **p = slot;

	free(*p);
	*p = NULL;
}

static void
make_spare_key(void)
{
	spare_ok = pthread_key_create(&spare_key, free_spare) == 0;
}

static unsigned char *
ahead_get(void)
{
	unsigned char *b = spare;

	if (b) {
		spare = NULL;
		return b;
	}
	return malloc(TLS_TRANSPORT_READ_AHEAD);
}

static void
ahead_put(unsigned char *b)
{
	if (!b)
		return;
	if (!spare_keyed) {
		pthread_once(&spare_once, make_spare_key);
		spare_keyed = spare_ok &&
		    pthread_setspecific(spare_key, &spare) == 0;
	}
	if (spare || !spare_keyed) {
		free(b);
		return;
	}
	spare = b;
}

/*
 * Up to len bytes already read ahead. The buffer goes back to the thread
 * once it is empty: an idle or stalled connection holds none (thousands
 * may be open).
 */
static size_t
take_ahead(struct tls_transport *t, void *data, size_t len)
{
	size_t n = t->ahead_len - t->ahead_off;

	if (n > len)
		n = len;
	memcpy(data, t->ahead + t->ahead_off, n);
	t->ahead_off += n;
	if (t->ahead_off == t->ahead_len) {
		t->ahead_off = t->ahead_len = 0;
		ahead_put(t->ahead);
		t->ahead = NULL;
	}
	return n;
}

/* Reads what the socket has after the held bytes (moved to the front first). */
static ssize_t
read_more(struct tls_transport *t)
{
	size_t have = t->ahead_len - t->ahead_off;
	ssize_t n;

	if (t->ahead_off) {
		memmove(t->ahead, t->ahead + t->ahead_off, have);
		t->ahead_off = 0;
		t->ahead_len = have;
	}
	n = recv(t->fd, t->ahead + t->ahead_len,
	    TLS_TRANSPORT_READ_AHEAD - t->ahead_len, 0);
	if (n > 0)
		t->ahead_len += (size_t)n;
	return n;
}

/*
 * GnuTLS asks for what it needs next: a record's header, then the rest of
 * the record. It gets that much or nothing ("would block" once the socket
 * is drained, so edge-triggered epoll still wakes libmicrohttpd when more
 * comes): a client trickling a record a byte at a time then costs the
 * bytes in this buffer, not a GnuTLS buffer per byte. Only a request
 * larger than the buffer (no valid record is) gets what there is.
 */
static ssize_t
pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	struct tls_transport *t = ptr;
	ssize_t n;
	int e;

	if (t->ahead_len - t->ahead_off >= len ||
	    (t->ahead_len && len > TLS_TRANSPORT_READ_AHEAD))
		return (ssize_t)take_ahead(t, data, len);
	if (!t->ahead && !(t->ahead = ahead_get()))
		return recv(t->fd, data, len, 0);
	do
		n = read_more(t);
	while (n > 0 && t->ahead_len - t->ahead_off < len &&
	    t->ahead_len < TLS_TRANSPORT_READ_AHEAD);
	if (t->ahead_len - t->ahead_off >= len ||
	    (t->ahead_len && (n == 0 || len > TLS_TRANSPORT_READ_AHEAD)))
		return (ssize_t)take_ahead(t, data, len);
	if (t->ahead_len)
		return -1;	/* errno from recv(): EAGAIN, or an error */
	e = errno;
	ahead_put(t->ahead);
	t->ahead = NULL;
	errno = e;
	return n;
}

/* GnuTLS asks this before a read with a deadline (handshakes). */
static int
pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
	struct tls_transport *t = ptr;
	struct pollfd p = { .fd = t->fd, .events = POLLIN };
	int rc;

	if (t->ahead_len)
		return 1;
	do
		rc = poll(&p, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms);
	while (rc < 0 && errno == EINTR);
	return rc;
}

static ssize_t
send_vec(int fd, struct iovec *iov, int n)
{
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };

	return sendmsg(fd, &m, MSG_NOSIGNAL);
}

/*
 * Sends what is held followed by iov, in one sendmsg(). The held bytes are
 * not the caller's: when the socket takes none of iov's, the caller is
 * told EAGAIN (GnuTLS then keeps its record and sends it again later,
 * which is when the rest of the held bytes go too).
 */
static ssize_t
send_with_held(struct tls_transport *t, const giovec_t *iov, int iovcnt)
{
	struct iovec v[1 + VEC_MAX];
	ssize_t n;

	v[0].iov_base = t->held;
	v[0].iov_len = t->held_len;
	if (iovcnt > VEC_MAX) {
		/* More than GnuTLS ever passes: the held bytes go first alone. */
		n = send_vec(t->fd, v, 1);
	} else {
		for (int i = 0; i < iovcnt; i++) {
			v[1 + i].iov_base = iov[i].iov_base;
			v[1 + i].iov_len = iov[i].iov_len;
		}
		n = send_vec(t->fd, v, 1 + iovcnt);
	}
	if (n < 0)
		return n;
	if ((size_t)n < t->held_len) {
		memmove(t->held, t->held + n, t->held_len - (size_t)n);
		t->held_len -= (size_t)n;
		errno = EAGAIN;
		return -1;
	}
	n -= (ssize_t)t->held_len;
	t->held_len = 0;
	if (iovcnt > VEC_MAX)
		return send_vec(t->fd, (struct iovec *)(uintptr_t)iov,
		    iovcnt < IOV_MAX ? iovcnt : IOV_MAX);
	if (n == 0) {
		errno = EAGAIN;
		return -1;
	}
	return n;
}

static ssize_t
vec_push(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
	struct tls_transport *t = ptr;
	size_t total = 0;

	if (t->held_len)
		return send_with_held(t, iov, iovcnt);
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (t->hold_next) {
		t->hold_next = false;
		if (total <= sizeof(t->held)) {
			for (int i = 0; i < iovcnt; i++) {
				memcpy(t->held + t->held_len, iov[i].iov_base,
				    iov[i].iov_len);
				t->held_len += iov[i].iov_len;
			}
			return (ssize_t)total;
		}
	}
	return send_vec(t->fd, (struct iovec *)(uintptr_t)iov,
	    iovcnt < IOV_MAX ? iovcnt : IOV_MAX);
}

struct tls_transport *
tls_transport_attach(gnutls_session_t session, int fd)
{
	struct tls_transport *t = malloc(sizeof(*t));

	if (!t)
		return NULL;
	t->fd = fd;
	t->hold_next = false;
	t->held_len = 0;
	t->ahead = NULL;
	t->ahead_off = t->ahead_len = 0;
	gnutls_transport_set_ptr(session, t);
	gnutls_transport_set_pull_function(session, pull);
	gnutls_transport_set_pull_timeout_function(session, pull_timeout);
	gnutls_transport_set_vec_push_function(session, vec_push);
	return t;
}

void
tls_transport_hold_next(struct tls_transport *t)
{
	t->hold_next = true;
}

static long
ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000L +
	    (now.tv_nsec - t0->tv_nsec) / 1000000L;
}

bool
tls_transport_settle(struct tls_transport *t, bool send_held)
{
	struct pollfd p;
	struct timespec t0;
	ssize_t n;
	long left;

	if (!t)
		return true;
	t->hold_next = false;
	if (!t->held_len)
		return true;
	if (!send_held) {
		t->held_len = 0;
		return false;
	}
	atomic_fetch_add(&late_sends, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (t->held_len) {
		n = send(t->fd, t->held, t->held_len, MSG_NOSIGNAL);
		if (n > 0) {
			memmove(t->held, t->held + n, t->held_len - (size_t)n);
			t->held_len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		left = SETTLE_WAIT_MS - ms_since(&t0);
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK) ||
		    left <= 0)
			break;
		p = (struct pollfd){ .fd = t->fd, .events = POLLOUT };
		(void)poll(&p, 1, (int)left);
	}
	if (t->held_len) {
		t->held_len = 0;
		(void)shutdown(t->fd, SHUT_RDWR);
	}
	return false;
}

void
tls_transport_free(struct tls_transport *t)
{
	if (!t)
		return;
	ahead_put(t->ahead);	/* on the thread that served the connection */
	free(t);
}

unsigned long
tls_transport_late_sends(void)
{
	return atomic_load(&late_sends);
}
