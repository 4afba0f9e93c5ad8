/* svix.h -- Svix (Standard Webhooks) signatures: HMAC-SHA256 over "id.timestamp.body" */
#ifndef MILO_SVIX_H
#define MILO_SVIX_H

#include <stddef.h>
#include <time.h>

/*
 * A provider signs every delivery with the endpoint's secret
 * ("whsec_<base64 key>"): svix-signature holds space-separated
 * "<version>,<base64 HMAC-SHA256(key, svix-id "." svix-timestamp "." body)>"
 * entries, of which only "v1" is defined; several appear while a secret is
 * being rotated. svix-timestamp is in Unix seconds and must be within the
 * tolerance of our clock both ways, which bounds replays to that window
 * (the receiver deduplicates on svix-id inside it).
 */

#define SVIX_TOLERANCE_S 300	/* Svix's and Resend's 5 minutes, both ways */

/*
 * Input limits, enforced here. The body's limit is the caller's (it is read
 * before we see it). Svix ids are about 30 characters and a header holds one
 * 47-character entry per active secret, so these are generous.
 */
#define SVIX_ID_MAX 256		/* svix-id, characters */
#define SVIX_TIMESTAMP_MAX 19	/* svix-timestamp, decimal digits */
#define SVIX_HEADER_MAX 4096	/* svix-signature, characters */
#define SVIX_SECRET_MAX 1024	/* "whsec_..." text, characters */

enum svix_status {
	SVIX_OK = 0,
	SVIX_E_INVAL = -1,		/* NULL argument, negative tolerance or clock */
	SVIX_E_SECRET = -2,		/* not "whsec_<base64>", empty key, too long */
	SVIX_E_ID = -3,			/* svix-id missing, too long or not printable */
	SVIX_E_TIMESTAMP = -4,		/* svix-timestamp not decimal Unix seconds */
	SVIX_E_TOO_OLD = -5,		/* older than the tolerance */
	SVIX_E_TOO_NEW = -6,		/* newer than the tolerance */
	SVIX_E_NO_SIGNATURE = -7,	/* header missing, empty or without a v1 entry */
	SVIX_E_NO_MATCH = -8,		/* v1 entries, none of them ours */
	SVIX_E_HEADER_TOO_LONG = -9,	/* svix-signature over SVIX_HEADER_MAX */
	SVIX_E_NOMEM = -10,
	SVIX_E_CRYPTO = -11,		/* GnuTLS refused the HMAC */
};

/* A constant English sentence fragment for a status ("no matching signature"). */
const char *svix_strerror(int status);

/*
 * Decodes a signing secret into the HMAC key. The "whsec_" prefix is
 * optional, as in the Svix libraries; the rest must be padded standard
 * base64 of at least one byte. On success *key is malloc'd (release it with
 * svix_key_free, which wipes it) and 0 is returned; on error *key is NULL
 * and SVIX_E_SECRET, SVIX_E_INVAL or SVIX_E_NOMEM is returned.
 */
int svix_secret_parse(const char *whsec, unsigned char **key, size_t *key_len);

/* Wipes and frees a key from svix_secret_parse; NULL is fine. */
void svix_key_free(unsigned char *key, size_t key_len);

/*
 * Checks one delivery. msg_id, timestamp and signature_header are the
 * three header values as received (NUL-terminated; a missing header is
 * NULL); body is the raw body exactly as read, body_len bytes. now is the
 * current Unix time and tolerance_s the allowed skew (SVIX_TOLERANCE_S).
 *
 * Returns SVIX_OK when some v1 entry matches, compared in constant time.
 * Otherwise the first failure in this order: SVIX_E_INVAL, SVIX_E_ID,
 * SVIX_E_TIMESTAMP, SVIX_E_TOO_OLD / SVIX_E_TOO_NEW,
 * SVIX_E_HEADER_TOO_LONG, SVIX_E_NO_SIGNATURE, SVIX_E_NOMEM /
 * SVIX_E_CRYPTO, SVIX_E_NO_MATCH. Entries that are not "v1,<text>" are
 * skipped. Allocates only the 45-byte expected value, freed before return.
 */
int svix_verify(const unsigned char *key, size_t key_len, const char *msg_id,
    const char *timestamp, const char *signature_header, const char *body,
    size_t body_len, time_t now, long tolerance_s);

/*
 * Computes the header entry "v1,<base64>" for a delivery (tests and
 * stand-ins). msg_id and timestamp are checked as svix_verify checks them,
 * but the timestamp is not compared with any clock. On success *sig is
 * malloc'd (free() it) and 0 is returned; on error *sig is NULL.
 */
int svix_sign(const unsigned char *key, size_t key_len, const char *msg_id,
    const char *timestamp, const char *body, size_t body_len, char **sig);

#endif
