/* tls.c -- GnuTLS serving credentials that are reloaded without a restart */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"

struct tls_cred {
	atomic_uint refs;
	gnutls_pcert_st pcerts[TLS_MAX_CHAIN];
	unsigned int n_pcerts;
	gnutls_privkey_t key;
	time_t not_after;
};

struct tls_store {
	char *cert_path;
	char *key_path;
	char *client_ca;		/* PEM, or NULL */
	const char *priorities;		/* static */

	pthread_mutex_t lock;		/* guards current */
	struct tls_cred *current;	/* never NULL once open */
	_Atomic uint64_t generation;

	pthread_mutex_t reload_lock;	/* one reload at a time; guards seen_* */
	struct buf seen_cert;		/* file contents at the last attempt */
	struct buf seen_key;
	char last_error[512];		/* logged already; "" after a success */

	struct metric_series *reads;
	struct metric_series *read_errors;
	struct metric_series *reloads;
	struct metric_series *not_after;

	pthread_mutex_t watch_lock;	/* guards watch_stop */
	pthread_cond_t watch_cond;
	bool watch_stop;
	bool watching;
	unsigned int interval_ms;
	pthread_t watcher;
};

int
tls_min_version_parse(const char *s, enum tls_min_version *out)
{
	if (strcmp(s, "VersionTLS12") == 0)
		*out = TLS_MIN_VERSION_12;
	else if (strcmp(s, "VersionTLS13") == 0)
		*out = TLS_MIN_VERSION_13;
	else
		return -EINVAL;
	return 0;
}

int
tls_min_version_flag(const char *value, void *out, char *why, size_t whylen)
{
	if (tls_min_version_parse(value, out) == 0)
		return 0;
	snprintf(why, whylen, "%s is not VersionTLS12 or VersionTLS13", value);
	return -EINVAL;
}

const char *
tls_priorities(enum tls_min_version v)
{
	return v == TLS_MIN_VERSION_13 ? TLS_PRIORITIES_13 : TLS_PRIORITIES_12;
}

/* Key material does not linger in freed memory. */
static void
buf_wipe(struct buf *b)
{
	if (b->ptr)
		explicit_bzero(b->ptr, b->cap);
	buf_free(b);
}

/* Reads a whole file into b (capped at TLS_MAX_FILE), opened afresh by path. */
static int
read_file(const char *path, struct buf *b, char *err, size_t errlen)
{
	char chunk[4096];
	ssize_t n;
	int fd, rc = 0;

	buf_init(b, TLS_MAX_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else
			rc = buf_add(b, chunk, (size_t)n);
		if (rc)
			break;
	}
	explicit_bzero(chunk, sizeof(chunk));
	close(fd);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path,
		    rc == -E2BIG ? "file too large" : strerror(-rc));
		buf_wipe(b);
	}
	return rc;
}

static void
cred_free(struct tls_cred *c)
{
	for (unsigned int i = 0; i < c->n_pcerts; i++)
		gnutls_pcert_deinit(&c->pcerts[i]);
	if (c->key)
		gnutls_privkey_deinit(c->key);
	free(c);
}

void
tls_cred_release(struct tls_cred *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1)
		cred_free(c);
}

void
tls_cred_get(struct tls_cred *c, gnutls_pcert_st **pcert,
    unsigned int *n_pcert, gnutls_privkey_t *key)
{
	*pcert = c->pcerts;
	*n_pcert = c->n_pcerts;
	*key = c->key;
}

/* The key is the one the leaf certificate was issued for. */
static bool
key_matches(struct tls_cred *c)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t a = { NULL, 0 }, b = { NULL, 0 };
	bool ok = false;

	if (gnutls_pubkey_init(&pub) < 0)
		return false;
	if (gnutls_pubkey_import_privkey(pub, c->key, 0, 0) < 0 ||
	    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &a) < 0 ||
	    gnutls_pubkey_export2(c->pcerts[0].pubkey, GNUTLS_X509_FMT_DER,
	    &b) < 0)
		goto out;
	ok = a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
out:
	gnutls_free(a.data);
	gnutls_free(b.data);
	gnutls_pubkey_deinit(pub);
	return ok;
}

static time_t
leaf_not_after(const struct tls_cred *c)
{
	gnutls_x509_crt_t crt;
	time_t t = (time_t)-1;

	if (gnutls_x509_crt_init(&crt) < 0)
		return t;
	if (gnutls_x509_crt_import(crt, &c->pcerts[0].cert,
	    GNUTLS_X509_FMT_DER) == 0)
		t = gnutls_x509_crt_get_expiration_time(crt);
	gnutls_x509_crt_deinit(crt);
	return t;
}

static int
cred_parse(const struct tls_store *s, const struct buf *cert,
    const struct buf *key, struct tls_cred **out, char *err, size_t errlen)
{
	struct tls_cred *c = calloc(1, sizeof(*c));
	gnutls_datum_t d;
	unsigned int n = TLS_MAX_CHAIN;
	int rc;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	d.data = (unsigned char *)cert->ptr;
	d.size = (unsigned int)cert->len;
	rc = d.size ? gnutls_pcert_list_import_x509_raw(c->pcerts, &n, &d,
	    GNUTLS_X509_FMT_PEM, 0) : GNUTLS_E_NO_CERTIFICATE_FOUND;
	if (rc < 0 || n == 0) {
		snprintf(err, errlen, "%s: %s", s->cert_path, rc < 0 ?
		    gnutls_strerror(rc) : "no certificate found");
		goto fail;
	}
	c->n_pcerts = n;
	d.data = (unsigned char *)key->ptr;
	d.size = (unsigned int)key->len;
	if (gnutls_privkey_init(&c->key) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	rc = gnutls_privkey_import_x509_raw(c->key, &d, GNUTLS_X509_FMT_PEM,
	    NULL, 0);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", s->key_path, gnutls_strerror(rc));
		goto fail;
	}
	if (!key_matches(c)) {
		snprintf(err, errlen, "%s: key does not match the certificate "
		    "in %s", s->key_path, s->cert_path);
		goto fail;
	}
	c->not_after = leaf_not_after(c);
	atomic_init(&c->refs, 1);
	*out = c;
	return 0;
fail:
	cred_free(c);
	return -EINVAL;
}

static bool
buf_same(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 ||
	    memcmp(a->ptr, b->ptr, a->len) == 0);
}

/* Makes c the current credentials; the old ones go with their last user. */
static void
install(struct tls_store *s, struct tls_cred *c)
{
	struct tls_cred *old;

	pthread_mutex_lock(&s->lock);
	old = s->current;
	s->current = c;
	pthread_mutex_unlock(&s->lock);
	tls_cred_release(old);
	atomic_fetch_add(&s->generation, 1);
	if (c->not_after != (time_t)-1)
		metric_set(s->not_after, (double)c->not_after);
}

static void
log_installed(const struct tls_store *s, const struct tls_cred *c,
    const char *trigger)
{
	char when[32] = "unknown";
	struct tm tm;

	if (c->not_after != (time_t)-1 && gmtime_r(&c->not_after, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	log_info("certificate loaded", LOG_STR("cert", s->cert_path),
	    LOG_STR("key", s->key_path), LOG_STR("trigger", trigger),
	    LOG_INT("generation", tls_store_generation(s)), LOG_INT("chain", c->n_pcerts),
	    LOG_STR("not_after", when));
	if (c->not_after != (time_t)-1 && c->not_after < time(NULL))
		log_warn("certificate has expired", LOG_STR("cert", s->cert_path),
		    LOG_STR("not_after", when));
}

/*
 * Reads both files and installs them when they differ from the last
 * attempt. Called with reload_lock held.
 */
static int
reload_locked(struct tls_store *s, const char *trigger, char *err,
    size_t errlen)
{
	struct buf cert, key;
	struct tls_cred *c = NULL;
	int rc;

	metric_inc(s->reads);
	rc = read_file(s->cert_path, &cert, err, errlen);
	if (rc)
		goto fail;
	rc = read_file(s->key_path, &key, err, errlen);
	if (rc) {
		buf_free(&cert);
		goto fail;
	}
	if (s->current && buf_same(&cert, &s->seen_cert) &&
	    buf_same(&key, &s->seen_key)) {
		buf_free(&cert);
		buf_wipe(&key);
		return TLS_RELOAD_UNCHANGED;
	}
	/* Remember what was tried, so a bad pair is not re-parsed every poll. */
	buf_free(&s->seen_cert);
	buf_wipe(&s->seen_key);
	s->seen_cert = cert;
	s->seen_key = key;
	rc = cred_parse(s, &cert, &key, &c, err, errlen);
	if (rc)
		goto fail;
	install(s, c);
	if (tls_store_generation(s) > 1)
		metric_inc(s->reloads);
	log_installed(s, c, trigger);
	return TLS_RELOAD_INSTALLED;
fail:
	metric_inc(s->read_errors);
	return rc;
}

int
tls_store_reload(struct tls_store *s, const char *trigger)
{
	char err[512];
	int rc;

	bool repeat = false;

	pthread_mutex_lock(&s->reload_lock);
	rc = reload_locked(s, trigger, err, sizeof(err));
	/* A file that stays missing is reported once, not every poll. */
	if (rc < 0) {
		repeat = strcmp(err, s->last_error) == 0;
		snprintf(s->last_error, sizeof(s->last_error), "%s", err);
	} else {
		s->last_error[0] = '\0';
	}
	pthread_mutex_unlock(&s->reload_lock);
	if (rc < 0 && (!repeat || strcmp(trigger, "poll") != 0))
		log_warn("certificate reload failed; keeping the current one",
		    LOG_STR("trigger", trigger), LOG_STR("error", err));
	else if (rc == TLS_RELOAD_UNCHANGED)
		log_debug("certificate unchanged", LOG_STR("trigger", trigger));
	return rc;
}

static void
register_metrics(struct tls_store *s, struct metrics *m)
{
	s->reads = metric_get(metrics_counter(m,
	    "certwatcher_read_certificate_total",
	    "Total number of certificate and key reads.", NULL), NULL);
	s->read_errors = metric_get(metrics_counter(m,
	    "certwatcher_read_certificate_errors_total",
	    "Total number of certificate and key reads that failed or did "
	    "not parse.", NULL), NULL);
	s->reloads = metric_get(metrics_counter(m,
	    "milo_tls_certificate_reloads_total",
	    "Certificates installed without a restart after the first.",
	    NULL), NULL);
	s->not_after = metric_get(metrics_gauge(m,
	    "milo_tls_certificate_expiration_timestamp_seconds",
	    "The date after which the serving certificate expires (its notAfter), Unix time.", NULL),
	    NULL);
}

static int
read_client_ca(struct tls_store *s, const char *path, char *err,
    size_t errlen)
{
	gnutls_x509_crt_t *list = NULL;
	unsigned int n = 0;
	gnutls_datum_t d;
	struct buf b;
	int rc = read_file(path, &b, err, errlen);

	if (rc)
		return rc;
	d.data = (unsigned char *)b.ptr;
	d.size = (unsigned int)b.len;
	rc = d.size ? gnutls_x509_crt_list_import2(&list, &n, &d,
	    GNUTLS_X509_FMT_PEM, 0) : GNUTLS_E_NO_CERTIFICATE_FOUND;
	if (rc < 0 || n == 0) {
		snprintf(err, errlen, "%s: %s", path, rc < 0 ?
		    gnutls_strerror(rc) : "no certificate found");
		buf_free(&b);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < n; i++)
		gnutls_x509_crt_deinit(list[i]);
	gnutls_free(list);
	s->client_ca = buf_steal(&b, NULL);
	return s->client_ca ? 0 : -ENOMEM;
}

static struct tls_store *
store_new(const struct tls_config *cfg)
{
	struct tls_store *s = calloc(1, sizeof(*s));
	pthread_condattr_t ca;

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->reload_lock, NULL);
	pthread_mutex_init(&s->watch_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->watch_cond, &ca);
	pthread_condattr_destroy(&ca);
	buf_init(&s->seen_cert, TLS_MAX_FILE);
	buf_init(&s->seen_key, TLS_MAX_FILE);
	atomic_init(&s->generation, 0);
	s->priorities = tls_priorities(cfg->min_version);
	s->cert_path = strdup(cfg->cert_file);
	s->key_path = strdup(cfg->key_file);
	if (!s->cert_path || !s->key_path) {
		tls_store_free(s);
		return NULL;
	}
	return s;
}

int
tls_store_open(const struct tls_config *cfg, struct tls_store **out,
    char *err, size_t errlen)
{
	struct tls_store *s;
	int rc;

	*out = NULL;
	if (!cfg->cert_file || !cfg->key_file) {
		snprintf(err, errlen, "a certificate and a key file are needed");
		return -EINVAL;
	}
	s = store_new(cfg);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (cfg->metrics)
		register_metrics(s, cfg->metrics);
	if (cfg->client_ca_file) {
		rc = read_client_ca(s, cfg->client_ca_file, err, errlen);
		if (rc)
			goto fail;
	}
	pthread_mutex_lock(&s->reload_lock);
	rc = reload_locked(s, "startup", err, errlen);
	pthread_mutex_unlock(&s->reload_lock);
	if (rc < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	tls_store_free(s);
	return rc;
}

static void *
watch_main(void *arg)
{
	struct tls_store *s = arg;
	struct timespec until;

	pthread_mutex_lock(&s->watch_lock);
	while (!s->watch_stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += s->interval_ms / 1000;
		until.tv_nsec += (long)(s->interval_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!s->watch_stop && pthread_cond_timedwait(&s->watch_cond,
		    &s->watch_lock, &until) != ETIMEDOUT)
			;
		if (s->watch_stop)
			break;
		pthread_mutex_unlock(&s->watch_lock);
		(void)tls_store_reload(s, "poll");
		pthread_mutex_lock(&s->watch_lock);
	}
	pthread_mutex_unlock(&s->watch_lock);
	return NULL;
}

int
tls_store_watch(struct tls_store *s, unsigned int interval_ms)
{
	int rc;

	if (s->watching)
		return -EALREADY;
	s->interval_ms = interval_ms ? interval_ms : TLS_POLL_INTERVAL_MS;
	rc = pthread_create(&s->watcher, NULL, watch_main, s);
	if (rc)
		return -rc;
	s->watching = true;
	return 0;
}

void
tls_store_free(struct tls_store *s)
{
	if (!s)
		return;
	if (s->watching) {
		pthread_mutex_lock(&s->watch_lock);
		s->watch_stop = true;
		pthread_cond_signal(&s->watch_cond);
		pthread_mutex_unlock(&s->watch_lock);
		pthread_join(s->watcher, NULL);
	}
	tls_cred_release(s->current);
	buf_free(&s->seen_cert);
	buf_wipe(&s->seen_key);
	pthread_cond_destroy(&s->watch_cond);
	pthread_mutex_destroy(&s->watch_lock);
	pthread_mutex_destroy(&s->reload_lock);
	pthread_mutex_destroy(&s->lock);
	free(s->client_ca);
	free(s->cert_path);
	free(s->key_path);
	free(s);
}

uint64_t
tls_store_generation(const struct tls_store *s)
{
	return atomic_load(&s->generation);
}

const char *
tls_store_client_ca(const struct tls_store *s)
{
	return s->client_ca;
}

const char *
tls_store_priorities(const struct tls_store *s)
{
	return s->priorities;
}

struct tls_cred *
tls_store_acquire(struct tls_store *s)
{
	struct tls_cred *c;

	pthread_mutex_lock(&s->lock);
	c = s->current;
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_unlock(&s->lock);
	return c;
}
