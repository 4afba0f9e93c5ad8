/* tls.h -- GnuTLS serving credentials that are reloaded without a restart */
#ifndef MILO_TLS_H
#define MILO_TLS_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stdint.h>

struct metrics;

#define TLS_POLL_INTERVAL_MS 5000	/* how often the files are compared */
#define TLS_MAX_FILE (1024 * 1024)	/* largest certificate or key file read */
#define TLS_MAX_CHAIN 16		/* certificates in tls.crt */

/*
 * TLS 1.2 and 1.3 only, AEAD ciphers only, forward-secret key exchange
 * only, no SHA-1 signatures; the server's order wins. The 1.3 variant
 * drops 1.2 (--tls-min-version=VersionTLS13).
 */
#define TLS_PRIORITIES_COMMON \
	":-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305" \
	":-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA" \
	":-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1" \
	":-SIGN-RSA-SHA1:-SIGN-ECDSA-SHA1:%SERVER_PRECEDENCE"
#define TLS_PRIORITIES_12 \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" TLS_PRIORITIES_COMMON
#define TLS_PRIORITIES_13 \
	"NORMAL:-VERS-ALL:+VERS-TLS1.3" TLS_PRIORITIES_COMMON

enum tls_min_version { TLS_MIN_VERSION_12, TLS_MIN_VERSION_13 };

/* "VersionTLS12" or "VersionTLS13", the Kubernetes flag values; -EINVAL otherwise. */
int tls_min_version_parse(const char *s, enum tls_min_version *out);
/* The same as a lib/flags.h FLAG_FUNC parser (out: enum tls_min_version *). */
int tls_min_version_flag(const char *value, void *out, char *why, size_t whylen);
/* The GnuTLS priority string for a minimum version. Static. */
const char *tls_priorities(enum tls_min_version v);

struct tls_config {
	const char *cert_file;		/* PEM chain, leaf first */
	const char *key_file;		/* PEM key: PKCS#8, PKCS#1 or SEC 1; ECDSA or RSA */
	const char *client_ca_file;	/* PEM CAs; NULL: no client certificates */
	enum tls_min_version min_version;
	struct metrics *metrics;	/* optional: certwatcher_* counters */
};

/*
 * A loaded certificate chain and its key. Reference counted: the store
 * holds one reference while it is the current one, and every TLS session
 * that was handed it holds one until the connection is gone, so a
 * rotation never frees credentials a handshake may still use.
 */
struct tls_cred;

/* The files and the current credentials. */
struct tls_store;

/*
 * Loads the certificate and key (and client CAs) and returns a store.
 * Returns 0, or a negative errno-style code with a one-line reason in err
 * (e.g. "/etc/certs/tls.key: key does not match the certificate"); *out is
 * then NULL. The paths are copied. Free with tls_store_free().
 */
int tls_store_open(const struct tls_config *cfg, struct tls_store **out,
    char *err, size_t errlen);

/*
 * Stops the watcher and drops the store's reference to the current
 * credentials. Credentials still held by sessions live on until released,
 * so stop the server first. NULL is a no-op.
 */
void tls_store_free(struct tls_store *s);

enum tls_reload_result {
	TLS_RELOAD_UNCHANGED = 0,	/* same bytes as the last attempt */
	TLS_RELOAD_INSTALLED = 1,	/* new handshakes get the new certificate */
};

/*
 * Re-opens both files by path (so a Kubernetes ..data symlink swap is
 * seen), compares their contents with the last attempt and, if they
 * changed, parses and installs them. On any error the current
 * credentials stay. Logs what happened, naming trigger ("poll", "SIGHUP").
 * Returns a tls_reload_result or a negative errno-style code.
 * Thread-safe.
 */
int tls_store_reload(struct tls_store *s, const char *trigger);

/*
 * Starts a thread that calls tls_store_reload() every interval_ms (0:
 * TLS_POLL_INTERVAL_MS). Returns 0 or a negative errno-style code.
 */
int tls_store_watch(struct tls_store *s, unsigned interval_ms);

/* How many certificates have been installed, counting the first. */
uint64_t tls_store_generation(const struct tls_store *s);

/* The client CA bundle as PEM text, or NULL when none. Borrowed. */
const char *tls_store_client_ca(const struct tls_store *s);

/* The GnuTLS priority string. Static. */
const char *tls_store_priorities(const struct tls_store *s);

/*
 * The current credentials with a new reference, never NULL. Release with
 * tls_cred_release(), which frees them with the last reference.
 */
struct tls_cred *tls_store_acquire(struct tls_store *s);
void tls_cred_release(struct tls_cred *c);

/*
 * The chain and key in the shape gnutls_certificate_retrieve_function2
 * returns them. They stay owned by c and valid while a reference is held.
 */
void tls_cred_get(struct tls_cred *c, gnutls_pcert_st **pcert,
    unsigned int *n_pcert, gnutls_privkey_t *key);

#endif
