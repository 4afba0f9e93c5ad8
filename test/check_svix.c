/* check_svix.c -- Svix webhook signatures: published vectors and every way to fail */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "svix.h"

Suite *svix_suite(void);

/*
 * From svix/svix-webhooks (go/webhook_test.go TestWebhookSign and
 * csharp/Svix.Tests/WebhookTest.cs VerifyWebhookSignWorks /
 * VerifyWebhookSignWithLargePayloadWorks), quoted in
 * shared/reference/resend-and-svix.md section 2.4. The first is also the
 * example in Resend's and Svix's verification docs. A repeat count turns
 * the payload into that many copies of its one character.
 */
#define SVIX_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SVIX_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SVIX_TS "1614265330"
#define SVIX_NOW 1614265330
#define SVIX_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
#define SVIX_BODY "{\"test\": 2432232314}"

/* A well-formed v1 entry that is nobody's signature (Svix's tests). */
#define WRONG_SIG "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

static const struct vector {
	const char *secret, *id, *ts, *payload;
	size_t repeat;
	const char *sig;
} vectors[] = {
	{ SVIX_SECRET, SVIX_ID, SVIX_TS, SVIX_BODY, 0, SVIX_SIG },
	{ SVIX_SECRET, SVIX_ID, SVIX_TS, "a", 1048576,
	  "v1,txpEUxqWZJ5nteTnymUVa+7C4NHpBeXJ6CsBAW0c3/A=" },
	{ SVIX_SECRET, SVIX_ID, SVIX_TS, "a", 262144,
	  "v1,Mw4Pe2WgApuT7NSqnSq0PQPV9gbLdggCl9B865x5Xh0=" },
	{ SVIX_SECRET, SVIX_ID, SVIX_TS, "a", 262143,
	  "v1,NTItnqyWMoFhk2Bbe5V/BMdcFRWgcSQaTgqLHX7FC7c=" },
	/*
	 * The test secret of datum-cloud/email-provider-resend's webhook tests
	 * (shared/reference/milo-upstream.md 4.3, "secret-key"), over a Resend
	 * contact.updated body; expected value computed independently with
	 * Python's hmac and base64 modules.
	 */
	{ "whsec_c2VjcmV0LWtleQ==", "msg_2a1b3c4d5e6f7g8h9i0j", "1760226476",
	  "{\"type\":\"contact.updated\",\"created_at\":\"2026-10-11T23:47:56.678Z\","
	  "\"data\":{\"id\":\"e169aa45-1ecf-4183-9955-b1499d5701d3\","
	  "\"email\":\"steve.wozniak@gmail.com\",\"unsubscribed\":true}}", 0,
	  "v1,I7SXsJaMi4OnHXkuPKw2W0bAbV0XuePsCrakM4l65N0=" },
};

static char *
payload_of(const struct vector *v, size_t *len)
{
	char *p;

	if (v->repeat == 0) {
		*len = strlen(v->payload);
		p = strdup(v->payload);
	} else {
		*len = v->repeat;
		p = malloc(v->repeat);
		if (p)
			memset(p, v->payload[0], v->repeat);
	}
	ck_assert_ptr_nonnull(p);
	return p;
}

/* The key every other test uses, decoded from Svix's published secret. */
static unsigned char *key;
static size_t key_len;

static void
key_setup(void)
{
	ck_assert_int_eq(svix_secret_parse(SVIX_SECRET, &key, &key_len), SVIX_OK);
}

static void
key_teardown(void)
{
	svix_key_free(key, key_len);
	key = NULL;
	key_len = 0;
}

static int
verify_hdr(const char *hdr)
{
	return svix_verify(key, key_len, SVIX_ID, SVIX_TS, hdr, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S);
}

static int
verify_at(const char *ts, time_t now)
{
	char *sig;
	int rc;

	ck_assert_int_eq(svix_sign(key, key_len, SVIX_ID, ts, SVIX_BODY,
	    strlen(SVIX_BODY), &sig), SVIX_OK);
	rc = svix_verify(key, key_len, SVIX_ID, ts, sig, SVIX_BODY,
	    strlen(SVIX_BODY), now, SVIX_TOLERANCE_S);
	free(sig);
	return rc;
}

/* ---- core ---- */

START_TEST(test_vectors)
{
	const struct vector *v = &vectors[_i];
	unsigned char *k;
	size_t klen, len;
	char *body = payload_of(v, &len), *sig;
	long long now = strtoll(v->ts, NULL, 10);

	ck_assert_int_eq(svix_secret_parse(v->secret, &k, &klen), SVIX_OK);
	ck_assert_int_eq(svix_sign(k, klen, v->id, v->ts, body, len, &sig), SVIX_OK);
	ck_assert_str_eq(sig, v->sig);
	ck_assert_int_eq(svix_verify(k, klen, v->id, v->ts, v->sig, body, len,
	    (time_t)now, SVIX_TOLERANCE_S), SVIX_OK);
	/* One byte more or less in the body and it no longer matches. */
	ck_assert_int_eq(svix_verify(k, klen, v->id, v->ts, v->sig, body, len - 1,
	    (time_t)now, SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
	free(sig);
	free(body);
	svix_key_free(k, klen);
}
END_TEST

START_TEST(test_secret_forms)
{
	unsigned char *k;
	size_t klen;

	/* 24 bytes, and the prefix is optional as in the Svix libraries. */
	ck_assert_uint_eq(key_len, 24);
	ck_assert_int_eq(svix_secret_parse(&SVIX_SECRET[6], &k, &klen), SVIX_OK);
	ck_assert_uint_eq(klen, key_len);
	ck_assert_int_eq(memcmp(k, key, klen), 0);
	svix_key_free(k, klen);
	ck_assert_int_eq(svix_secret_parse("whsec_c2VjcmV0LWtleQ==", &k, &klen), SVIX_OK);
	ck_assert_uint_eq(klen, 10);
	ck_assert_int_eq(memcmp(k, "secret-key", 10), 0);
	svix_key_free(k, klen);
}
END_TEST

START_TEST(test_wrong_secret)
{
	unsigned char *k;
	size_t klen;

	ck_assert_int_eq(svix_secret_parse("whsec_c2VjcmV0LWtleQ==", &k, &klen), SVIX_OK);
	ck_assert_int_eq(svix_verify(k, klen, SVIX_ID, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
	svix_key_free(k, klen);
}
END_TEST

START_TEST(test_tampered)
{
	const char *body = "{\"test\": 2432232315}";

	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, SVIX_SIG, body,
	    strlen(body), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
	ck_assert_int_eq(svix_verify(key, key_len, "msg_p5jXN8AQM9LWM0D4loKWxJeK",
	    SVIX_TS, SVIX_SIG, SVIX_BODY, strlen(SVIX_BODY), SVIX_NOW,
	    SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
	/* A replay with a fresh timestamp but the old signature. */
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, "1614265331", SVIX_SIG,
	    SVIX_BODY, strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
	/* The body must be the raw bytes: re-serialised JSON is different. */
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, SVIX_SIG,
	    "{\"test\":2432232314}", 19, SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
	/* Signature text is case-sensitive base64. */
	ck_assert_int_eq(verify_hdr("v1,G0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
	    SVIX_E_NO_MATCH);
}
END_TEST

START_TEST(test_tolerance)
{
	/* Svix: too old past the tolerance, too new past it, both inclusive. */
	ck_assert_int_eq(verify_at(SVIX_TS, SVIX_NOW + SVIX_TOLERANCE_S), SVIX_OK);
	ck_assert_int_eq(verify_at(SVIX_TS, SVIX_NOW + SVIX_TOLERANCE_S + 1), SVIX_E_TOO_OLD);
	ck_assert_int_eq(verify_at(SVIX_TS, SVIX_NOW - SVIX_TOLERANCE_S), SVIX_OK);
	ck_assert_int_eq(verify_at(SVIX_TS, SVIX_NOW - SVIX_TOLERANCE_S - 1), SVIX_E_TOO_NEW);
	ck_assert_int_eq(verify_at(SVIX_TS, SVIX_NOW + 86400), SVIX_E_TOO_OLD);
	ck_assert_int_eq(verify_at("0", SVIX_NOW), SVIX_E_TOO_OLD);
	ck_assert_int_eq(verify_at("9223372036854775807", SVIX_NOW), SVIX_E_TOO_NEW);
	/* A zero tolerance still accepts the exact second. */
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, 0), SVIX_OK);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW + 1, 0), SVIX_E_TOO_OLD);
	/* The window is checked before the signature, as Svix does. */
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, WRONG_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW + 1000, SVIX_TOLERANCE_S), SVIX_E_TOO_OLD);
}
END_TEST

/* Header lists and whether they verify the Svix example. */
static const struct header_case {
	const char *header;
	int want;
} headers[] = {
	{ SVIX_SIG, SVIX_OK },
	/* Several signatures, only the second matches (secret rotation). */
	{ WRONG_SIG " " SVIX_SIG, SVIX_OK },
	/* Svix's multi-signature case: v2 entry ignored, the valid one not last. */
	{ WRONG_SIG " v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " SVIX_SIG
	  " " WRONG_SIG, SVIX_OK },
	{ SVIX_SIG " " WRONG_SIG, SVIX_OK },
	/* Extra spaces between and around entries are empty entries. */
	{ "  " WRONG_SIG "   " SVIX_SIG "  ", SVIX_OK },
	{ "junk v1 ,x ,y " SVIX_SIG, SVIX_OK },
	/* Only non-v1 entries carry the right value: nothing to check. */
	{ "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_SIGNATURE },
	{ "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_SIGNATURE },
	{ "V1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_SIGNATURE },
	{ "v0,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,x", SVIX_E_NO_SIGNATURE },
	/* Malformed entries. */
	{ "", SVIX_E_NO_SIGNATURE },
	{ "   ", SVIX_E_NO_SIGNATURE },
	{ "v1", SVIX_E_NO_SIGNATURE },
	{ "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_SIGNATURE },
	{ ",g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_SIGNATURE },
	{ "v1,", SVIX_E_NO_MATCH },
	{ "v1,dawfeoifkpqwoekfpqoekf", SVIX_E_NO_MATCH },
	{ WRONG_SIG, SVIX_E_NO_MATCH },
	{ "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", SVIX_E_NO_MATCH },
	{ "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE==", SVIX_E_NO_MATCH },
	{ "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=,v1", SVIX_E_NO_MATCH },
	{ "v1, g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_MATCH },
	{ "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\t", SVIX_E_NO_MATCH },
	{ "v1\tg0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_SIGNATURE },
	/* Bad base64 of the right length. */
	{ "v1,g0hM9SsE!OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_MATCH },
	{ "v1,============================================", SVIX_E_NO_MATCH },
	{ "v1,g0hM9SsE-OTPJTGt_tmIKtSyZlE3uFJELVlNIOLJ1OE=", SVIX_E_NO_MATCH },
};

START_TEST(test_headers)
{
	const struct header_case *c = &headers[_i];

	ck_assert_msg(verify_hdr(c->header) == c->want, "header \"%s\": got %d (%s), want %d",
	    c->header, verify_hdr(c->header), svix_strerror(verify_hdr(c->header)), c->want);
}
END_TEST

START_TEST(test_missing_headers)
{
	ck_assert_int_eq(verify_hdr(NULL), SVIX_E_NO_SIGNATURE);
	ck_assert_int_eq(svix_verify(key, key_len, NULL, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_ID);
	ck_assert_int_eq(svix_verify(key, key_len, "", SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_ID);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, NULL, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_TIMESTAMP);
}
END_TEST

START_TEST(test_bad_timestamps)
{
	static const char *const bad[] = {
		"", "hello", "1614265330a", " 1614265330", "1614265330 ", "+1614265330",
		"-1614265330", "1614265330.5", "0x60377af2", "1.6e9",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(svix_verify(key, key_len, SVIX_ID, bad[i], SVIX_SIG, SVIX_BODY,
		    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S) == SVIX_E_TIMESTAMP,
		    "timestamp \"%s\"", bad[i]);
}
END_TEST

START_TEST(test_empty_and_binary_body)
{
	static const char bin[] = { 'a', '\0', 'b', '\n', '\xff' };
	char *sig, *sig2;

	ck_assert_int_eq(svix_sign(key, key_len, SVIX_ID, SVIX_TS, NULL, 0, &sig), SVIX_OK);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, sig, NULL, 0,
	    SVIX_NOW, SVIX_TOLERANCE_S), SVIX_OK);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, sig, "", 0,
	    SVIX_NOW, SVIX_TOLERANCE_S), SVIX_OK);
	/* Bytes after a NUL count. */
	ck_assert_int_eq(svix_sign(key, key_len, SVIX_ID, SVIX_TS, bin, sizeof(bin), &sig2),
	    SVIX_OK);
	ck_assert_str_ne(sig, sig2);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, sig2, bin, sizeof(bin),
	    SVIX_NOW, SVIX_TOLERANCE_S), SVIX_OK);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, sig2, bin, 1,
	    SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
	free(sig);
	free(sig2);
}
END_TEST

START_TEST(test_strerror)
{
	for (int rc = SVIX_OK; rc >= SVIX_E_CRYPTO; rc--) {
		const char *m = svix_strerror(rc);

		ck_assert_ptr_nonnull(m);
		ck_assert_uint_gt(strlen(m), 0);
		ck_assert_str_ne(m, "unknown svix status");
		for (int other = rc + 1; other <= SVIX_OK; other++)
			ck_assert_str_ne(m, svix_strerror(other));
	}
	ck_assert_str_eq(svix_strerror(SVIX_E_NO_MATCH), "no matching signature");
	ck_assert_str_eq(svix_strerror(SVIX_E_TOO_OLD), "message timestamp too old");
	ck_assert_str_eq(svix_strerror(1), "unknown svix status");
	ck_assert_str_eq(svix_strerror(-1000), "unknown svix status");
}
END_TEST

/* ---- limits ---- */

/* A header of exactly len bytes: filler entries, then the given tail. */
static char *
header_of(size_t len, const char *tail)
{
	size_t tlen = strlen(tail);
	char *h = malloc(len + 1);

	ck_assert_ptr_nonnull(h);
	ck_assert_uint_ge(len, tlen + 1);
	for (size_t i = 0; i < len - tlen; i++)
		h[i] = (i % 5 == 4) ? ' ' : "v2,x"[i % 5];
	h[len - tlen - 1] = ' ';
	memcpy(h + len - tlen, tail, tlen + 1);
	return h;
}

START_TEST(test_header_size)
{
	char *h = header_of(SVIX_HEADER_MAX, SVIX_SIG);

	ck_assert_uint_eq(strlen(h), SVIX_HEADER_MAX);
	ck_assert_int_eq(verify_hdr(h), SVIX_OK);
	free(h);
	/* One byte over: refused even though the valid entry is there. */
	h = header_of(SVIX_HEADER_MAX + 1, SVIX_SIG);
	ck_assert_int_eq(verify_hdr(h), SVIX_E_HEADER_TOO_LONG);
	free(h);
	/* A huge header is refused without being walked. */
	h = header_of(16 * SVIX_HEADER_MAX, SVIX_SIG);
	ck_assert_int_eq(verify_hdr(h), SVIX_E_HEADER_TOO_LONG);
	free(h);
}
END_TEST

START_TEST(test_many_entries)
{
	/* As many wrong v1 entries as fit, the right one last. */
	size_t one = strlen(WRONG_SIG) + 1, n = (SVIX_HEADER_MAX - strlen(SVIX_SIG)) / one;
	char *h = malloc(SVIX_HEADER_MAX + 1), *p = h;

	ck_assert_ptr_nonnull(h);
	for (size_t i = 0; i < n; i++) {
		memcpy(p, WRONG_SIG " ", one);
		p += one;
	}
	memcpy(p, SVIX_SIG, strlen(SVIX_SIG) + 1);
	ck_assert_uint_le(strlen(h), SVIX_HEADER_MAX);
	ck_assert_int_eq(verify_hdr(h), SVIX_OK);
	p[0] = 'x';
	ck_assert_int_eq(verify_hdr(h), SVIX_E_NO_MATCH);
	free(h);
}
END_TEST

START_TEST(test_id_limits)
{
	char id[SVIX_ID_MAX + 2], *sig;

	memset(id, 'i', SVIX_ID_MAX);
	id[SVIX_ID_MAX] = '\0';
	ck_assert_int_eq(svix_sign(key, key_len, id, SVIX_TS, SVIX_BODY, strlen(SVIX_BODY),
	    &sig), SVIX_OK);
	ck_assert_int_eq(svix_verify(key, key_len, id, SVIX_TS, sig, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_OK);
	id[SVIX_ID_MAX] = 'i';
	id[SVIX_ID_MAX + 1] = '\0';
	ck_assert_int_eq(svix_verify(key, key_len, id, SVIX_TS, sig, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_ID);
	free(sig);
	ck_assert_int_eq(svix_sign(key, key_len, id, SVIX_TS, SVIX_BODY, strlen(SVIX_BODY),
	    &sig), SVIX_E_ID);
	ck_assert_ptr_null(sig);
	/* Control and non-ASCII bytes are not header text. */
	ck_assert_int_eq(svix_verify(key, key_len, "msg_\n1", SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_ID);
	ck_assert_int_eq(svix_verify(key, key_len, "msg_\x7f", SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_ID);
	ck_assert_int_eq(svix_verify(key, key_len, "msg_\xc3\xa9", SVIX_TS, SVIX_SIG,
	    SVIX_BODY, strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_ID);
}
END_TEST

START_TEST(test_timestamp_limits)
{
	char *sig;

	/* 19 digits fit a long long up to its maximum; 20 never do. */
	ck_assert_int_eq(svix_sign(key, key_len, SVIX_ID, "9223372036854775807", "", 0,
	    &sig), SVIX_OK);
	free(sig);
	ck_assert_int_eq(svix_sign(key, key_len, SVIX_ID, "9223372036854775808", "", 0,
	    &sig), SVIX_E_TIMESTAMP);
	ck_assert_int_eq(svix_sign(key, key_len, SVIX_ID, "00000000001614265330", "", 0,
	    &sig), SVIX_E_TIMESTAMP);
	/* Leading zeros are digits; the text itself is what is signed. */
	ck_assert_int_eq(verify_at("0001614265330", SVIX_NOW), SVIX_OK);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, "0001614265330", SVIX_SIG,
	    SVIX_BODY, strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_NO_MATCH);
}
END_TEST

START_TEST(test_secret_limits)
{
	static const char *const bad[] = {
		"", "whsec_", "whsec_!!!!", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", "whsec_====",
		"whsec_ MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
		/* The common mistake of pasting a signature prefix in front. */
		"v1,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"whsec_MfKQ9r8G-KYqrTwjUPD8ILPZIo2LaLaS",
	};
	char big[SVIX_SECRET_MAX + 5];
	unsigned char *k = (unsigned char *)"x";
	size_t klen = 7;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(svix_secret_parse(bad[i], &k, &klen) == SVIX_E_SECRET,
		    "secret \"%s\"", bad[i]);
		ck_assert_ptr_null(k);
		ck_assert_uint_eq(klen, 0);
	}
	/*
	 * SVIX_SECRET_MAX bytes of valid base64 fit; the next valid length
	 * does not, and the limit counts the prefix too.
	 */
	memset(big, 'A', SVIX_SECRET_MAX);
	big[SVIX_SECRET_MAX] = '\0';
	ck_assert_int_eq(svix_secret_parse(big, &k, &klen), SVIX_OK);
	ck_assert_uint_eq(klen, SVIX_SECRET_MAX / 4 * 3);
	svix_key_free(k, klen);
	memset(big, 'A', SVIX_SECRET_MAX + 4);
	big[SVIX_SECRET_MAX + 4] = '\0';
	ck_assert_int_eq(svix_secret_parse(big, &k, &klen), SVIX_E_SECRET);
	memcpy(big, "whsec_", 6);
	big[SVIX_SECRET_MAX] = '\0';
	ck_assert_int_eq(svix_secret_parse(big, &k, &klen), SVIX_E_SECRET);
	big[SVIX_SECRET_MAX - 2] = '\0';
	ck_assert_int_eq(svix_secret_parse(big, &k, &klen), SVIX_OK);
	svix_key_free(k, klen);
	ck_assert_int_eq(svix_secret_parse(NULL, &k, &klen), SVIX_E_INVAL);
	ck_assert_int_eq(svix_secret_parse(SVIX_SECRET, NULL, &klen), SVIX_E_INVAL);
	svix_key_free(NULL, 0);
}
END_TEST

START_TEST(test_bad_arguments)
{
	char *sig = (char *)"x";

	ck_assert_int_eq(svix_verify(NULL, 0, SVIX_ID, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_INVAL);
	ck_assert_int_eq(svix_verify(key, 0, SVIX_ID, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_INVAL);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, SVIX_SIG, NULL, 3,
	    SVIX_NOW, SVIX_TOLERANCE_S), SVIX_E_INVAL);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), SVIX_NOW, -1), SVIX_E_INVAL);
	ck_assert_int_eq(svix_verify(key, key_len, SVIX_ID, SVIX_TS, SVIX_SIG, SVIX_BODY,
	    strlen(SVIX_BODY), -1, SVIX_TOLERANCE_S), SVIX_E_INVAL);
	ck_assert_int_eq(svix_sign(key, key_len, SVIX_ID, SVIX_TS, SVIX_BODY,
	    strlen(SVIX_BODY), NULL), SVIX_E_INVAL);
	ck_assert_int_eq(svix_sign(NULL, 0, SVIX_ID, SVIX_TS, SVIX_BODY,
	    strlen(SVIX_BODY), &sig), SVIX_E_INVAL);
	ck_assert_ptr_null(sig);
}
END_TEST

Suite *
svix_suite(void)
{
	Suite *s = suite_create("svix");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_checked_fixture(core, key_setup, key_teardown);
	tcase_add_checked_fixture(limits, key_setup, key_teardown);
	tcase_add_loop_test(core, test_vectors, 0, sizeof(vectors) / sizeof(vectors[0]));
	tcase_add_test(core, test_secret_forms);
	tcase_add_test(core, test_wrong_secret);
	tcase_add_test(core, test_tampered);
	tcase_add_test(core, test_tolerance);
	tcase_add_loop_test(core, test_headers, 0, sizeof(headers) / sizeof(headers[0]));
	tcase_add_test(core, test_missing_headers);
	tcase_add_test(core, test_bad_timestamps);
	tcase_add_test(core, test_empty_and_binary_body);
	tcase_add_test(core, test_strerror);
	tcase_add_test(limits, test_header_size);
	tcase_add_test(limits, test_many_entries);
	tcase_add_test(limits, test_id_limits);
	tcase_add_test(limits, test_timestamp_limits);
	tcase_add_test(limits, test_secret_limits);
	tcase_add_test(limits, test_bad_arguments);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
