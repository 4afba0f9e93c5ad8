/* webhook.h -- contact-webhook: the admission webhook server's private declarations */
#ifndef MILO_WEBHOOK_H
#define MILO_WEBHOOK_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tls.h"

#define WEBHOOK_PROGRAM "contact-webhook"
#ifndef MILO_VERSION
#define MILO_VERSION "0.1.0"
#endif

/*
 * The largest AdmissionReview body, as controller-runtime sizes it:
 * kube-apiserver accepts objects up to 3 MiB, a review carries at most two
 * of them, plus 1 MiB for the rest.
 */
#define WEBHOOK_MAX_BODY (7 * 1024 * 1024)
#define WEBHOOK_DEFAULT_PORT 9443
#define WEBHOOK_DEFAULT_BIND "0.0.0.0"
#define WEBHOOK_DEFAULT_CERT_DIR "/tmp/k8s-webhook-server/serving-certs"
#define WEBHOOK_DEFAULT_SHUTDOWN_DELAY "10s"
#define WEBHOOK_DEFAULT_LOG_FLUSH "100ms"
#define WEBHOOK_CERT_POLL_ENV "MILO_CERT_POLL_INTERVAL"

/* flags.c */
struct webhook_options {
	const char *bind_address;
	uint16_t port;
	const char *cert_dir;
	char cert_file[PATH_MAX];	/* from --tls-cert-file or --cert-dir */
	char key_file[PATH_MAX];
	const char *client_ca_file;	/* NULL: no client certificates */
	enum tls_min_version tls_min_version;
	uint64_t shutdown_delay_ms;
	uint64_t log_flush_ms;		/* 0: every log line written at once */
	uint64_t cert_poll_ms;		/* 0: no polling, SIGHUP only */
	const char *log_level;
	const char *kubeconfig;		/* NULL: $KUBECONFIG, else in-cluster */
	bool verify_subjects;
	bool metrics_auth;		/* /metrics needs a token (with an API server) */
	unsigned int threads;		/* 0: httpd_default_threads() */
};

enum webhook_flags_result {
	WEBHOOK_FLAGS_RUN,		/* options filled in: serve */
	WEBHOOK_FLAGS_DONE,		/* --help or --version printed: exit 0 */
	WEBHOOK_FLAGS_BAD,		/* err holds the one-line reason: exit 2 */
};

/* Parses the command line and $MILO_CERT_POLL_INTERVAL. */
enum webhook_flags_result webhook_parse_flags(int argc, char **argv,
    struct webhook_options *o, char *err, size_t errlen);
void webhook_usage(FILE *out);

/*
 * A Go duration ("10s", "500ms", "1m30s", "1.5h", "0") in milliseconds,
 * rounded down. -EINVAL when malformed or negative, -ERANGE when too large.
 */
int webhook_parse_duration_ms(const char *s, uint64_t *ms);

/* server.c */
struct webhook;

/*
 * Loads the certificate, registers the metrics and serves. Returns 0, or
 * a negative errno-style code with a one-line reason in err.
 */
int webhook_start(const struct webhook_options *o, struct webhook **out,
    char *err, size_t errlen);
/* Readiness goes false and responses ask clients to reconnect elsewhere. */
void webhook_drain(struct webhook *w);
/* Re-reads the certificate and key now (SIGHUP). */
void webhook_reload(struct webhook *w);
/* Finishes the requests in flight (bounded), stops and frees. */
int webhook_stop(struct webhook *w);

#endif
