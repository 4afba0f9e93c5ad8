/* mailgun.h -- Mailgun's rules: mailing-list addresses for ContactGroups, webhook signatures */
#ifndef MILO_MAILGUN_H
#define MILO_MAILGUN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/*
 * A ContactGroup's mailing list is <local>@<domain>, the local part
 * derived from the group's namespace and name alone, so a restart finds
 * the list an earlier attempt made instead of making a second:
 *
 * - "<namespace>.<name>" when it fits RFC 5321's 64 octets and both parts
 *   are Kubernetes names (lower-case letters, digits, "-", and dots between
 *   the name's labels). A namespace has no dot, so the first dot splits
 *   the two: distinct groups never share an address.
 * - otherwise "<prefix>_<16 hex digits>": the first 64 bits of
 *   SHA-256("<namespace>/<name>") after as much of the readable form as
 *   fits (47 octets, cleaned to letters, digits, "-" and single dots). A
 *   Kubernetes name has no "_", so this form never equals a readable one.
 *
 * Either way the local part is a dot-atom (RFC 5322 3.4.1) of at most
 * MAILGUN_LOCAL_MAX octets, lower case.
 */

#define MAILGUN_LOCAL_MAX 64		/* RFC 5321 4.5.3.1.1 */
#define MAILGUN_ADDRESS_MAX 254		/* RFC 5321 4.5.3.1.3 with erratum 1690 */
#define MAILGUN_DOMAIN_MAX (MAILGUN_ADDRESS_MAX - MAILGUN_LOCAL_MAX - 1)
#define MAILGUN_HASH_HEX 16		/* hex digits of the SHA-256 kept */
#define MAILGUN_NAME_MAX 253		/* a Kubernetes object name */
#define MAILGUN_NAMESPACE_MAX 63	/* a Kubernetes namespace */

/*
 * Writes the list address of ns/name under domain into out. Returns 0,
 * -EINVAL (an empty part, or a domain mailgun_domain_check() refuses),
 * -ENAMETOOLONG (out shorter than the address) or -EIO (no SHA-256).
 */
int mailgun_list_address(const char *ns, const char *name, const char *domain, char *out,
    size_t len);

/* NULL when domain can carry list addresses, else a static reason. */
const char *mailgun_domain_check(const char *domain);

/*
 * A list's description: "<description> [<ns>/<name>]", or "[<ns>/<name>]"
 * without one. malloc'd; NULL on ENOMEM.
 */
char *mailgun_list_description(const char *description, const char *ns, const char *name);

/*
 * Whether a listed mailing list is one we made: its description ends in
 * "[<ns>/<name>]" and its address is exactly the one mailgun_list_address()
 * derives for that ns/name under domain (compared without regard to case,
 * as Mailgun compares addresses). 1 with ns and name filled, else 0.
 */
int mailgun_list_owner(const char *address, const char *description, const char *domain,
    char *ns, size_t ns_len, char *name, size_t name_len);

/*
 * Webhook signatures (Mailgun's "Securing Webhooks"; mailgun-go
 * VerifyWebhookSignature): every delivery carries signature.timestamp (Unix
 * seconds), signature.token (50 random characters) and signature.signature
 * = hex(HMAC-SHA256(signing key, timestamp + token)). The timestamp must
 * be within the tolerance of our clock both ways; the receiver remembers
 * tokens to refuse a replay within it.
 */

#define MAILGUN_TOLERANCE_S 300		/* five minutes, as for Svix */
#define MAILGUN_TIMESTAMP_MAX 19	/* decimal digits */
#define MAILGUN_TOKEN_MAX 256		/* Mailgun's are 50 characters */
#define MAILGUN_SIGNATURE_HEX 64	/* hex digits of an HMAC-SHA256 */

enum mailgun_status {
	MAILGUN_OK = 0,
	MAILGUN_E_INVAL = -1,		/* NULL or empty key, negative tolerance */
	MAILGUN_E_TIMESTAMP = -2,	/* not decimal Unix seconds */
	MAILGUN_E_TOO_OLD = -3,
	MAILGUN_E_TOO_NEW = -4,
	MAILGUN_E_TOKEN = -5,		/* missing, too long or not printable ASCII */
	MAILGUN_E_SIGNATURE = -6,	/* missing or not 64 hex digits */
	MAILGUN_E_NO_MATCH = -7,	/* well formed, not ours */
	MAILGUN_E_CRYPTO = -8,		/* GnuTLS refused the HMAC */
};

/* A constant English fragment for a status ("no matching signature"). */
const char *mailgun_strerror(int status);

/*
 * Checks one delivery's signature object (the three strings as received;
 * NULL when missing) at Unix time now. The comparison runs in constant
 * time; hex digits may be of either case. Returns MAILGUN_OK or the first
 * failure in the order of the enum.
 */
int mailgun_verify(const unsigned char *key, size_t key_len, const char *timestamp,
    const char *token, const char *signature, time_t now, long tolerance_s);

/*
 * hex(HMAC-SHA256(key, timestamp + token)) into out (at least
 * MAILGUN_SIGNATURE_HEX + 1 bytes), for tests and stand-ins. 0 or a status.
 */
int mailgun_sign(const unsigned char *key, size_t key_len, const char *timestamp,
    const char *token, char *out);

#endif
