/* tls_transport.h -- GnuTLS transport for a server socket: fewer recv and send calls per request */
#ifndef MILO_TLS_TRANSPORT_H
#define MILO_TLS_TRANSPORT_H

#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * GnuTLS's own transport reads a record with two recv() calls (its 5-byte
 * header, then the rest) and sends every record with its own sendmsg().
 * This one, for a non-blocking socket served by libmicrohttpd:
 *
 * - reads ahead: recv() of up to TLS_TRANSPORT_READ_AHEAD bytes, from
 *   which GnuTLS's reads are then served. GnuTLS asks for exactly what it
 *   needs next (a record's header, then the rest of the record) and gets
 *   all of it or "would block" (EAGAIN), the latter only once the socket
 *   is drained, so a caller that reads until EAGAIN (libmicrohttpd does,
 *   under edge-triggered epoll) is woken when the rest comes. A client
 *   that trickles a record a byte at a time holds its bytes here, not a
 *   GnuTLS buffer per byte;
 * - on request (tls_transport_hold_next()), keeps one record back and
 *   sends it with the next one in a single sendmsg(): a response's header
 *   and body. The held record goes out inside the send that carries the
 *   next record, so a full socket is reported to that send's caller as
 *   EAGAIN, as with GnuTLS's own transport.
 */

/*
 * Memory per connection: about 1 KiB, and the read-ahead buffer while it
 * holds bytes (taken for a read, given back once they are taken; each
 * thread keeps one spare).
 */
/* Bytes asked of one recv(): a whole record fits (TLS allows 2^14 + 2048 and a 5-byte header). */
#define TLS_TRANSPORT_READ_AHEAD (20 * 1024)
#define TLS_TRANSPORT_HOLD_MAX 1024		/* largest record held back */

struct tls_transport;

/*
 * Makes the session read and write the socket fd through a new transport.
 * NULL when out of memory: the session then keeps the transport it had.
 */
struct tls_transport *tls_transport_attach(gnutls_session_t session, int fd);

/*
 * Holds back the next record sent, to go out with the one after it. Only
 * for when another record certainly follows right after, in the same round
 * of sending: a response's header when a body follows it.
 */
void tls_transport_hold_next(struct tls_transport *t);

/*
 * The exchange is over: cancels a hold not yet used. A record still held
 * (there should be none) is dropped if !send; otherwise it is sent,
 * waiting up to a second for room, and the socket is shut down if it
 * cannot be, so the peer sees an error rather than waiting for bytes that
 * never come. Returns true when nothing was held. NULL is a no-op.
 */
bool tls_transport_settle(struct tls_transport *t, bool send);

/*
 * Frees t, dropping anything held or read ahead, once its session does no
 * more I/O: after gnutls_deinit() (libmicrohttpd 0.9.75 has freed the
 * session by the time it reports a connection closed). NULL is a no-op.
 */
void tls_transport_free(struct tls_transport *t);

/* Records that had to be sent by tls_transport_settle(), process-wide (tests). */
unsigned long tls_transport_late_sends(void);

#endif
