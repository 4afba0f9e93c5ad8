/* mailgun.c -- Mailgun's rules: mailing-list addresses for ContactGroups, webhook signatures */
#include "mailgun.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "email.h"

#define DIGEST_LEN 32		/* SHA-256 */
/* What a hashed local part keeps of the readable form: the rest is "_" and the hash. */
#define PREFIX_MAX (MAILGUN_LOCAL_MAX - 1 - MAILGUN_HASH_HEX)

static const char hexdigits[] = "0123456789abcdef";

static void
to_hex(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdigits[in[i] >> 4];
		out[2 * i + 1] = hexdigits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* A namespace as Kubernetes makes them: letters, digits, "-"; no dot. */
static bool
plain_label(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!name_char(*s))
			return false;
	return true;
}

/* A Kubernetes object name: labels of [a-z0-9-] between single dots. */
static bool
plain_name(const char *s)
{
	char prev = '.';

	if (!*s)
		return false;
	for (; *s; prev = *s, s++)
		if (!(name_char(*s) || (*s == '.' && prev != '.')))
			return false;
	return prev != '.';
}

const char *
mailgun_domain_check(const char *domain)
{
	char probe[MAILGUN_DOMAIN_MAX + 3];
	const char *why;

	if (!domain || !*domain)
		return "no domain given";
	if (strlen(domain) > MAILGUN_DOMAIN_MAX)
		return "the domain is longer than 189 characters, which leaves no room for "
		    "a 64-character local part in a 254-character address";
	snprintf(probe, sizeof(probe), "x@%s", domain);
	why = email_check(probe, strlen(probe));
	return why ? "the domain must be two or more letter-digit-hyphen labels, such as "
	    "lists.example.com" : NULL;
}

/* SHA-256("<ns>/<name>"), its first MAILGUN_HASH_HEX hex digits into out. */
static int
name_hash(const char *ns, const char *name, char *out)
{
	unsigned char digest[DIGEST_LEN];
	char hex[2 * DIGEST_LEN + 1];
	gnutls_hash_hd_t h;

	if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
		return -EIO;
	if (gnutls_hash(h, ns, strlen(ns)) < 0 || gnutls_hash(h, "/", 1) < 0 ||
	    gnutls_hash(h, name, strlen(name)) < 0) {
		gnutls_hash_deinit(h, digest);
		return -EIO;
	}
	gnutls_hash_deinit(h, digest);
	to_hex(digest, DIGEST_LEN, hex);
	memcpy(out, hex, MAILGUN_HASH_HEX);
	out[MAILGUN_HASH_HEX] = '\0';
	return 0;
}

/* Appends what can stay of s to a hashed address's prefix (cleaned, lower case). */
static size_t
prefix_add(char *prefix, size_t n, const char *s)
{
	for (; *s && n < PREFIX_MAX; s++) {
		char c = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;

		if (c == '.') {
			if (n && prefix[n - 1] != '.')
				prefix[n++] = '.';
		} else {
			prefix[n++] = name_char(c) ? c : '-';
		}
	}
	prefix[n] = '\0';
	return n;
}

static int
local_part(const char *ns, const char *name, char *out)
{
	char hash[MAILGUN_HASH_HEX + 1];
	size_t n, nl = strlen(ns), ml = strlen(name);
	int rc;

	if (plain_label(ns) && plain_name(name) && nl + 1 + ml <= MAILGUN_LOCAL_MAX) {
		memcpy(out, ns, nl);
		out[nl] = '.';
		memcpy(out + nl + 1, name, ml + 1);
		return 0;
	}
	if ((rc = name_hash(ns, name, hash)) != 0)
		return rc;
	n = prefix_add(out, 0, ns);
	if (n < PREFIX_MAX && n && out[n - 1] != '.')
		out[n++] = '.';
	n = prefix_add(out, n, name);
	while (n && out[n - 1] == '.')
		out[--n] = '\0';
	snprintf(out + n, MAILGUN_LOCAL_MAX + 1 - n, "%s%s", n ? "_" : "", hash);
	return 0;
}

int
mailgun_list_address(const char *ns, const char *name, const char *domain, char *out,
    size_t len)
{
	char local[MAILGUN_LOCAL_MAX + 1];
	int n, rc;

	if (len)
		out[0] = '\0';
	if (!ns || !*ns || !name || !*name || mailgun_domain_check(domain))
		return -EINVAL;
	if ((rc = local_part(ns, name, local)) != 0)
		return rc;
	n = snprintf(out, len, "%s@%s", local, domain);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			out[0] = '\0';
		return -ENAMETOOLONG;
	}
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return 0;
}

char *
mailgun_list_description(const char *description, const char *ns, const char *name)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s[%s/%s]", description && *description ? description : "",
	    description && *description ? " " : "", ns, name) < 0)
		return NULL;
	return s;
}

int
mailgun_list_owner(const char *address, const char *description, const char *domain,
    char *ns, size_t ns_len, char *name, size_t name_len)
{
	char want[MAILGUN_ADDRESS_MAX + 1];
	const char *open, *slash;
	size_t len, nl, ml;

	if (!address || !description || (len = strlen(description)) < 5 ||
	    description[len - 1] != ']' || !(open = strrchr(description, '[')))
		return 0;
	slash = memchr(open, '/', (size_t)(description + len - open));
	if (!slash)
		return 0;
	nl = (size_t)(slash - open - 1);
	ml = (size_t)(description + len - 1 - slash - 1);
	if (!nl || !ml || nl >= ns_len || ml >= name_len)
		return 0;
	memcpy(ns, open + 1, nl);
	ns[nl] = '\0';
	memcpy(name, slash + 1, ml);
	name[ml] = '\0';
	if (mailgun_list_address(ns, name, domain, want, sizeof(want)) != 0 ||
	    strcasecmp(want, address) != 0) {
		ns[0] = name[0] = '\0';
		return 0;
	}
	return 1;
}

/* ---- webhook signatures ---- */

const char *
mailgun_strerror(int status)
{
	switch (status) {
	case MAILGUN_OK:
		return "verified";
	case MAILGUN_E_INVAL:
		return "no signing key";
	case MAILGUN_E_TIMESTAMP:
		return "signature.timestamp is not Unix seconds";
	case MAILGUN_E_TOO_OLD:
		return "signature.timestamp is more than 5 minutes old";
	case MAILGUN_E_TOO_NEW:
		return "signature.timestamp is more than 5 minutes ahead";
	case MAILGUN_E_TOKEN:
		return "signature.token is missing or malformed";
	case MAILGUN_E_SIGNATURE:
		return "signature.signature is missing or not 64 hex digits";
	case MAILGUN_E_NO_MATCH:
		return "no matching signature";
	case MAILGUN_E_CRYPTO:
		return "the HMAC could not be computed";
	default:
		return "unknown signature status";
	}
}

static int
parse_timestamp(const char *ts, long long *out)
{
	size_t n = ts ? strlen(ts) : 0;
	long long v = 0;

	if (n == 0 || n > MAILGUN_TIMESTAMP_MAX)
		return MAILGUN_E_TIMESTAMP;
	for (size_t i = 0; i < n; i++) {
		if (ts[i] < '0' || ts[i] > '9')
			return MAILGUN_E_TIMESTAMP;
		if (v > (LLONG_MAX - (ts[i] - '0')) / 10)
			return MAILGUN_E_TIMESTAMP;
		v = v * 10 + (ts[i] - '0');
	}
	*out = v;
	return MAILGUN_OK;
}

static int
check_token(const char *token)
{
	size_t n = token ? strlen(token) : 0;

	if (n == 0 || n > MAILGUN_TOKEN_MAX)
		return MAILGUN_E_TOKEN;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)token[i] < 0x21 || (unsigned char)token[i] > 0x7e)
			return MAILGUN_E_TOKEN;
	return MAILGUN_OK;
}

/* The signature in lower case into out; MAILGUN_E_SIGNATURE unless 64 hex digits. */
static int
normal_hex(const char *sig, char *out)
{
	if (!sig || strlen(sig) != MAILGUN_SIGNATURE_HEX)
		return MAILGUN_E_SIGNATURE;
	for (size_t i = 0; i < MAILGUN_SIGNATURE_HEX; i++) {
		char c = sig[i] >= 'A' && sig[i] <= 'F' ? (char)(sig[i] - 'A' + 'a') : sig[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return MAILGUN_E_SIGNATURE;
		out[i] = c;
	}
	out[MAILGUN_SIGNATURE_HEX] = '\0';
	return MAILGUN_OK;
}

int
mailgun_sign(const unsigned char *key, size_t key_len, const char *timestamp,
    const char *token, char *out)
{
	unsigned char digest[DIGEST_LEN];
	gnutls_hmac_hd_t h;
	int bad;

	out[0] = '\0';
	if (!key || !key_len || !timestamp || !token)
		return MAILGUN_E_INVAL;
	if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, key, key_len) < 0)
		return MAILGUN_E_CRYPTO;
	bad = gnutls_hmac(h, timestamp, strlen(timestamp)) < 0 ||
	    gnutls_hmac(h, token, strlen(token)) < 0;
	gnutls_hmac_deinit(h, digest);
	if (!bad)
		to_hex(digest, DIGEST_LEN, out);
	gnutls_memset(digest, 0, sizeof(digest));
	return bad ? MAILGUN_E_CRYPTO : MAILGUN_OK;
}

int
mailgun_verify(const unsigned char *key, size_t key_len, const char *timestamp,
    const char *token, const char *signature, time_t now, long tolerance_s)
{
	char given[MAILGUN_SIGNATURE_HEX + 1], expected[MAILGUN_SIGNATURE_HEX + 1];
	long long ts;
	int rc;

	if (!key || !key_len || tolerance_s < 0 || now < 0)
		return MAILGUN_E_INVAL;
	if ((rc = parse_timestamp(timestamp, &ts)) != MAILGUN_OK)
		return rc;
	if (ts < (long long)now && (long long)now - ts > tolerance_s)
		return MAILGUN_E_TOO_OLD;
	if (ts > (long long)now && ts - (long long)now > tolerance_s)
		return MAILGUN_E_TOO_NEW;
	if ((rc = check_token(token)) != MAILGUN_OK)
		return rc;
	if ((rc = normal_hex(signature, given)) != MAILGUN_OK)
		return rc;
	if ((rc = mailgun_sign(key, key_len, timestamp, token, expected)) != MAILGUN_OK)
		return rc;
	rc = gnutls_memcmp(given, expected, MAILGUN_SIGNATURE_HEX) == 0 ? MAILGUN_OK :
	    MAILGUN_E_NO_MATCH;
	gnutls_memset(expected, 0, sizeof(expected));
	return rc;
}
