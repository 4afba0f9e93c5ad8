/* webhook.h -- contact-webhook: the admission webhook server's private declarations */
#ifndef MILO_WEBHOOK_H
#define MILO_WEBHOOK_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "flags.h"
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
/*
 * The most JSON members and array elements a review may hold; past it the
 * body is refused (413) before it is parsed. A review's tree costs about
 * 150 bytes of memory per value, and real reviews of these kinds hold a
 * few hundred; an object with 250,000 annotations would take tens of MiB.
 */
#define WEBHOOK_MAX_REVIEW_VALUES 20000
/*
 * How long a review may take: kube-apiserver appends ?timeout=<its
 * timeoutSeconds>s; without it, its default of 10 s. At most 30 s (the
 * most timeoutSeconds may be). The answer leaves WEBHOOK_ANSWER_MARGIN_MS
 * (at most a fifth of the timeout) before it, whatever the API server does.
 */
#define WEBHOOK_REVIEW_TIMEOUT_MS 10000
#define WEBHOOK_MAX_REVIEW_TIMEOUT_MS 30000
#define WEBHOOK_ANSWER_MARGIN_MS 1000
/*
 * After a burst of request bodies this large, or of this many connections
 * that have closed since, memory goes back to the system.
 */
#define WEBHOOK_TRIM_AFTER_BYTES (1u << 20)
#define WEBHOOK_TRIM_AFTER_CONNECTIONS 256
#define WEBHOOK_TRIM_PERIOD_S 30	/* and this often anyway */
#define WEBHOOK_DEFAULT_PORT 9443
#define WEBHOOK_DEFAULT_BIND "0.0.0.0"
#define WEBHOOK_DEFAULT_CERT_DIR "/tmp/k8s-webhook-server/serving-certs"
/* Defaults, as the help shows them and in milliseconds. */
#define WEBHOOK_DEFAULT_SHUTDOWN_DELAY "10s"
#define WEBHOOK_DEFAULT_SHUTDOWN_DELAY_MS 10000
#define WEBHOOK_DEFAULT_LOG_FLUSH "100ms"
#define WEBHOOK_DEFAULT_LOG_FLUSH_MS 100
#define WEBHOOK_DEFAULT_READ_HEADER_TIMEOUT "10s"
#define WEBHOOK_DEFAULT_READ_HEADER_TIMEOUT_MS 10000
#define WEBHOOK_DEFAULT_READ_TIMEOUT "30s"
#define WEBHOOK_DEFAULT_READ_TIMEOUT_MS 30000
#define WEBHOOK_DEFAULT_WRITE_TIMEOUT "30s"
#define WEBHOOK_DEFAULT_WRITE_TIMEOUT_MS 30000
#define WEBHOOK_DEFAULT_IDLE_TIMEOUT "90s"
#define WEBHOOK_DEFAULT_IDLE_TIMEOUT_MS 90000
#define WEBHOOK_DEFAULT_BODY_INFLIGHT (24ULL << 20)	/* "24Mi" */
#define WEBHOOK_MAX_CONNECTIONS 1000000	/* largest --max-connections */
#define WEBHOOK_MAX_BODY_INFLIGHT (64ULL << 30)	/* largest --max-body-bytes-inflight */
#define WEBHOOK_DENIAL_LOG_PER_S 10	/* denial lines a second at most (info) */
#define WEBHOOK_MAX_BUDGET_MS (24ULL * 3600 * 1000)	/* longest time budget a flag takes */
#define WEBHOOK_CERT_POLL_ENV "MILO_CERT_POLL_INTERVAL"
/* The watch cache's first wait after a failed list or watch (tests shorten it). */
#define WEBHOOK_WATCH_BACKOFF_ENV "MILO_WATCH_BACKOFF"

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
	uint64_t watch_backoff_ms;	/* 0: CACHE_BACKOFF_MIN_MS, client-go's */
	const char *log_level;
	const char *kubeconfig;		/* NULL: $KUBECONFIG, else in-cluster */
	bool verify_subjects;
	bool metrics_auth;		/* /metrics needs a token (with an API server) */
	unsigned int threads;		/* 0: httpd_default_threads() */
	/* Time budgets in ms (0 on the command line: none, HTTPD_NO_TIMEOUT here). */
	uint32_t read_header_timeout_ms;
	uint32_t read_timeout_ms;
	uint32_t write_timeout_ms;
	uint32_t idle_timeout_ms;
	unsigned int max_connections;
	unsigned int max_connections_per_ip;
	uint64_t max_body_inflight;	/* bytes */
};

/*
 * Parses the command line (lib/flags.c: FLAGS_DONE after --help or
 * --version, FLAGS_BAD with the one-line reason in err) and
 * $MILO_CERT_POLL_INTERVAL and $MILO_WATCH_BACKOFF.
 */
enum flags_result webhook_parse_flags(int argc, char **argv, struct webhook_options *o,
    char *err, size_t errlen);
/* The options as they are without flags. */
void webhook_options_defaults(struct webhook_options *o);

/* server.c */
struct webhook;

/*
 * Loads the certificate, registers the metrics and serves. Returns 0, or
 * a negative errno-style code with a one-line reason in err.
 */
int webhook_start(const struct webhook_options *o, struct webhook **out,
    char *err, size_t errlen);
/* Readiness goes false; serving goes on as before (keep-alive included). */
void webhook_drain(struct webhook *w);
/*
 * Once a second from the main thread: logs the count of denials not
 * logged for the rate limit, and returns memory to the system after a
 * burst of large requests.
 */
void webhook_tick(struct webhook *w);
/* Re-reads the certificate and key now (SIGHUP). */
void webhook_reload(struct webhook *w);
/*
 * Answers every request from now on with "Connection: close", stops
 * listening, finishes the requests in flight (bounded), stops and frees.
 */
int webhook_stop(struct webhook *w);

#endif
