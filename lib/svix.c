/* svix.c -- Svix webhook signatures: decode the secret, sign, verify */
#include "svix.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

#define SECRET_PREFIX "whsec_"
#define SIG_VERSION "v1"
#define DIGEST_LEN 32		/* SHA-256 */
#define DIGEST_B64_LEN 44	/* base64 of 32 bytes, padded */

static const char *const messages[] = {
	[0] = "ok",
	[-SVIX_E_INVAL] = "invalid argument",
	[-SVIX_E_SECRET] = "signing secret is not whsec_<base64>",
	[-SVIX_E_ID] = "missing or invalid svix-id",
	[-SVIX_E_TIMESTAMP] = "missing or invalid svix-timestamp",
	[-SVIX_E_TOO_OLD] = "message timestamp too old",
	[-SVIX_E_TOO_NEW] = "message timestamp too new",
	[-SVIX_E_NO_SIGNATURE] = "no v1 signature in svix-signature",
	[-SVIX_E_NO_MATCH] = "no matching signature",
	[-SVIX_E_HEADER_TOO_LONG] = "svix-signature header too long",
	[-SVIX_E_NOMEM] = "out of memory",
	[-SVIX_E_CRYPTO] = "HMAC computation failed",
};

const char *
svix_strerror(int status)
{
	if (status > 0 || -status >= (int)(sizeof(messages) / sizeof(messages[0])))
		return "unknown svix status";
	return messages[-status];
}

/*
 * base64_decode cannot tell bad text from ENOMEM; both come back as
 * SVIX_E_SECRET, which is the likely cause and harmless to misreport.
 */
int
svix_secret_parse(const char *whsec, unsigned char **key, size_t *key_len)
{
	size_t len, plen = strlen(SECRET_PREFIX), klen = 0;
	unsigned char *k;

	if (!key || !key_len)
		return SVIX_E_INVAL;
	*key = NULL;
	*key_len = 0;
	if (!whsec)
		return SVIX_E_INVAL;
	len = strnlen(whsec, SVIX_SECRET_MAX + 1);
	if (len > SVIX_SECRET_MAX)
		return SVIX_E_SECRET;
	if (len >= plen && memcmp(whsec, SECRET_PREFIX, plen) == 0) {
		whsec += plen;
		len -= plen;
	}
	if (len == 0)
		return SVIX_E_SECRET;
	k = base64_decode(whsec, len, &klen);
	if (!k)
		return SVIX_E_SECRET;
	if (klen == 0) {
		free(k);
		return SVIX_E_SECRET;
	}
	*key = k;
	*key_len = klen;
	return SVIX_OK;
}

void
svix_key_free(unsigned char *key, size_t key_len)
{
	if (!key)
		return;
	gnutls_memset(key, 0, key_len);
	free(key);
}

/* Printable ASCII only: it is a header value and part of the signed text. */
static int
check_id(const char *id)
{
	size_t n;

	if (!id)
		return SVIX_E_ID;
	n = strnlen(id, SVIX_ID_MAX + 1);
	if (n == 0 || n > SVIX_ID_MAX)
		return SVIX_E_ID;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];

		if (c < 0x20 || c > 0x7e)
			return SVIX_E_ID;
	}
	return SVIX_OK;
}

/* Decimal digits only (no sign, no spaces), as Svix sends them. */
static int
parse_timestamp(const char *text, long long *out)
{
	size_t n;
	char *end;
	long long v;

	if (!text)
		return SVIX_E_TIMESTAMP;
	n = strnlen(text, SVIX_TIMESTAMP_MAX + 1);
	if (n == 0 || n > SVIX_TIMESTAMP_MAX)
		return SVIX_E_TIMESTAMP;
	for (size_t i = 0; i < n; i++)
		if (text[i] < '0' || text[i] > '9')
			return SVIX_E_TIMESTAMP;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno == ERANGE || *end != '\0')
		return SVIX_E_TIMESTAMP;
	*out = v;
	return SVIX_OK;
}

/* Both sides are >= 0 here, so neither difference can overflow. */
static int
check_window(long long ts, long long now, long tolerance_s)
{
	if (ts < now && now - ts > tolerance_s)
		return SVIX_E_TOO_OLD;
	if (ts > now && ts - now > tolerance_s)
		return SVIX_E_TOO_NEW;
	return SVIX_OK;
}

/*
 * base64(HMAC-SHA256(key, id "." ts "." body)), streamed so the body is
 * never copied. On success *out is malloc'd, DIGEST_B64_LEN characters.
 */
static int
expected_signature(const unsigned char *key, size_t key_len, const char *id,
    const char *ts, const char *body, size_t body_len, char **out)
{
	gnutls_hmac_hd_t h;
	unsigned char digest[DIGEST_LEN];
	int bad;

	*out = NULL;
	if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, key, key_len) < 0)
		return SVIX_E_CRYPTO;
	bad = gnutls_hmac(h, id, strlen(id)) < 0 ||
	    gnutls_hmac(h, ".", 1) < 0 ||
	    gnutls_hmac(h, ts, strlen(ts)) < 0 ||
	    gnutls_hmac(h, ".", 1) < 0 ||
	    (body_len > 0 && gnutls_hmac(h, body, body_len) < 0);
	gnutls_hmac_deinit(h, digest);
	if (bad) {
		gnutls_memset(digest, 0, sizeof(digest));
		return SVIX_E_CRYPTO;
	}
	*out = base64_encode(digest, sizeof(digest), NULL);
	gnutls_memset(digest, 0, sizeof(digest));
	return *out ? SVIX_OK : SVIX_E_NOMEM;
}

/*
 * Walks space-separated "<version>,<signature>" entries. Every v1 entry
 * is compared (no early exit), each in constant time; the lengths compared
 * are public.
 */
static int
match_header(const char *hdr, size_t len, const char *expected)
{
	const char *p = hdr, *end = hdr + len;
	size_t vlen = strlen(SIG_VERSION);
	int seen = 0, matched = 0;

	while (p < end) {
		const char *e = memchr(p, ' ', (size_t)(end - p));
		const char *comma;

		if (!e)
			e = end;
		comma = memchr(p, ',', (size_t)(e - p));
		if (comma && (size_t)(comma - p) == vlen &&
		    memcmp(p, SIG_VERSION, vlen) == 0) {
			size_t slen = (size_t)(e - comma - 1);

			seen = 1;
			if (slen == DIGEST_B64_LEN &&
			    gnutls_memcmp(comma + 1, expected, slen) == 0)
				matched = 1;
		}
		p = e + 1;
	}
	if (matched)
		return SVIX_OK;
	return seen ? SVIX_E_NO_MATCH : SVIX_E_NO_SIGNATURE;
}

int
svix_verify(const unsigned char *key, size_t key_len, const char *msg_id,
    const char *timestamp, const char *signature_header, const char *body,
    size_t body_len, time_t now, long tolerance_s)
{
	long long ts;
	size_t hlen;
	char *expected = NULL;
	int rc;

	if (!key || key_len == 0 || (!body && body_len > 0) ||
	    tolerance_s < 0 || now < 0)
		return SVIX_E_INVAL;
	if ((rc = check_id(msg_id)) < 0)
		return rc;
	if ((rc = parse_timestamp(timestamp, &ts)) < 0)
		return rc;
	if ((rc = check_window(ts, (long long)now, tolerance_s)) < 0)
		return rc;
	if (!signature_header)
		return SVIX_E_NO_SIGNATURE;
	hlen = strnlen(signature_header, SVIX_HEADER_MAX + 1);
	if (hlen > SVIX_HEADER_MAX)
		return SVIX_E_HEADER_TOO_LONG;
	if (hlen == 0)
		return SVIX_E_NO_SIGNATURE;
	rc = expected_signature(key, key_len, msg_id, timestamp, body, body_len,
	    &expected);
	if (rc < 0)
		return rc;
	rc = match_header(signature_header, hlen, expected);
	free(expected);
	return rc;
}

int
svix_sign(const unsigned char *key, size_t key_len, const char *msg_id,
    const char *timestamp, const char *body, size_t body_len, char **sig)
{
	long long ts;
	size_t vlen = strlen(SIG_VERSION);
	char *b64 = NULL, *out;
	int rc;

	if (!sig)
		return SVIX_E_INVAL;
	*sig = NULL;
	if (!key || key_len == 0 || (!body && body_len > 0))
		return SVIX_E_INVAL;
	if ((rc = check_id(msg_id)) < 0)
		return rc;
	if ((rc = parse_timestamp(timestamp, &ts)) < 0)
		return rc;
	rc = expected_signature(key, key_len, msg_id, timestamp, body, body_len,
	    &b64);
	if (rc < 0)
		return rc;
	out = malloc(vlen + 1 + DIGEST_B64_LEN + 1);
	if (!out) {
		free(b64);
		return SVIX_E_NOMEM;
	}
	memcpy(out, SIG_VERSION, vlen);
	out[vlen] = ',';
	memcpy(out + vlen + 1, b64, DIGEST_B64_LEN + 1);
	free(b64);
	*sig = out;
	return SVIX_OK;
}
