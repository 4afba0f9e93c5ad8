/* flags.c -- contact-webhook's command line (lib/flags.c's table) */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "httpd.h"
#include "log.h"
#include "webhook.h"

#define ABOUT \
"Kubernetes validating and mutating admission webhook for the Milo\n" \
"notification.miloapis.com/v1alpha1 contact resources, served over HTTPS:\n" \
"/validate-notification-miloapis-com-v1alpha1-<kind> and /mutate-... for\n" \
"contact, contactgroup, contactgroupmembership and\n" \
"contactgroupmembershipremoval; /healthz, /readyz and /metrics.\n" \
"\n" \
"The certificate and key are re-read when their contents change (Kubernetes'\n" \
"..data symlink swap included) and on SIGHUP; new connections get the new\n" \
"certificate. SIGTERM: /readyz fails, serving goes on for --shutdown-delay,\n" \
"then the requests in flight finish and the process exits 0; a second\n" \
"SIGTERM or SIGINT skips the rest of the delay. Logs are JSON lines on\n" \
"stderr.\n" \
"\n" \
"Environment: " WEBHOOK_CERT_POLL_ENV ", how often to compare the\n" \
"certificate files, a duration (default 5s; 0: only on SIGHUP).\n" \
WEBHOOK_WATCH_BACKOFF_ENV ", the watch cache's first wait after a failed list or\n" \
"watch, doubled per failure up to 30s (default 800ms, as client-go's)."

#define STR_(x) #x
#define STR(x) STR_(x)

/* What the table parses into before it becomes webhook_options. */
struct raw_flags {
	long port, threads, max_connections, max_connections_per_ip;
	const char *cert_file, *key_file;
	uint64_t budgets_ms[4];		/* read header, read, write, idle */
};

void
webhook_options_defaults(struct webhook_options *o)
{
	memset(o, 0, sizeof(*o));
	o->bind_address = WEBHOOK_DEFAULT_BIND;
	o->port = WEBHOOK_DEFAULT_PORT;
	o->cert_dir = WEBHOOK_DEFAULT_CERT_DIR;
	o->tls_min_version = TLS_MIN_VERSION_12;
	o->cert_poll_ms = TLS_POLL_INTERVAL_MS;
	o->shutdown_delay_ms = WEBHOOK_DEFAULT_SHUTDOWN_DELAY_MS;
	o->log_flush_ms = WEBHOOK_DEFAULT_LOG_FLUSH_MS;
	o->log_level = "info";
	o->verify_subjects = true;
	o->metrics_auth = true;
	o->max_connections = HTTPD_CONN_LIMIT;
	o->max_connections_per_ip = HTTPD_PER_IP_LIMIT;
	o->max_body_inflight = WEBHOOK_DEFAULT_BODY_INFLIGHT;
}

/* The certificate and key paths, from the two files or the directory. */
static int
cert_paths(struct webhook_options *o, const struct raw_flags *raw, char *err, size_t errlen)
{
	int n1, n2;

	if (!raw->cert_file != !raw->key_file) {
		snprintf(err, errlen, "--tls-cert-file and --tls-private-key-file must be given "
		    "together");
		return -EINVAL;
	}
	if (raw->cert_file) {
		n1 = snprintf(o->cert_file, sizeof(o->cert_file), "%s", raw->cert_file);
		n2 = snprintf(o->key_file, sizeof(o->key_file), "%s", raw->key_file);
	} else {
		n1 = snprintf(o->cert_file, sizeof(o->cert_file), "%s/tls.crt", o->cert_dir);
		n2 = snprintf(o->key_file, sizeof(o->key_file), "%s/tls.key", o->cert_dir);
	}
	if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(o->cert_file) ||
	    (size_t)n2 >= sizeof(o->key_file)) {
		snprintf(err, errlen, "certificate path too long");
		return -ENAMETOOLONG;
	}
	return 0;
}

/* What only makes sense once every flag is known, and the environment. */
static enum flags_result
finish(struct webhook_options *o, const struct raw_flags *raw, char *err, size_t errlen)
{
	uint32_t *budgets[4] = { &o->read_header_timeout_ms, &o->read_timeout_ms,
	    &o->write_timeout_ms, &o->idle_timeout_ms };
	const char *poll = getenv(WEBHOOK_CERT_POLL_ENV);
	const char *backoff = getenv(WEBHOOK_WATCH_BACKOFF_ENV);

	o->port = (uint16_t)raw->port;
	o->threads = (unsigned int)raw->threads;
	o->max_connections = (unsigned int)raw->max_connections;
	o->max_connections_per_ip = (unsigned int)raw->max_connections_per_ip;
	/* Go's http.Server: a zero budget is no budget. */
	for (int i = 0; i < 4; i++)
		*budgets[i] = raw->budgets_ms[i] ? (uint32_t)raw->budgets_ms[i] :
		    HTTPD_NO_TIMEOUT;
	if (o->client_ca_file && !*o->client_ca_file)
		o->client_ca_file = NULL;
	if (poll && flags_duration_ms(poll, &o->cert_poll_ms) != 0) {
		snprintf(err, errlen, "%s: %s is not a duration such as 5s",
		    WEBHOOK_CERT_POLL_ENV, poll);
		return FLAGS_BAD;
	}
	if (backoff && (flags_duration_ms(backoff, &o->watch_backoff_ms) != 0 ||
	    o->watch_backoff_ms > 60000)) {
		snprintf(err, errlen, "%s: %s is not a duration such as 800ms (at most 1m)",
		    WEBHOOK_WATCH_BACKOFF_ENV, backoff);
		return FLAGS_BAD;
	}
	return cert_paths(o, raw, err, errlen) == 0 ? FLAGS_RUN : FLAGS_BAD;
}

enum flags_result
webhook_parse_flags(int argc, char **argv, struct webhook_options *o, char *err,
    size_t errlen)
{
	struct raw_flags raw = {
		.port = WEBHOOK_DEFAULT_PORT,
		.max_connections = HTTPD_CONN_LIMIT,
		.max_connections_per_ip = HTTPD_PER_IP_LIMIT,
		.budgets_ms = { WEBHOOK_DEFAULT_READ_HEADER_TIMEOUT_MS,
		    WEBHOOK_DEFAULT_READ_TIMEOUT_MS, WEBHOOK_DEFAULT_WRITE_TIMEOUT_MS,
		    WEBHOOK_DEFAULT_IDLE_TIMEOUT_MS },
	};
	const struct flag table[] = {
		{ .name = "secure-port", .type = FLAG_INT, .out = &raw.port, .arg = "int",
		  .help = "HTTPS port", .def = STR(WEBHOOK_DEFAULT_PORT), .min = 1,
		  .max = 65535 },
		{ .name = "bind-address", .type = FLAG_FUNC, .out = &o->bind_address,
		  .arg = "ip", .parse = flags_ip,
		  .help = "address to listen on; :: listens on IPv6 and IPv4",
		  .def = WEBHOOK_DEFAULT_BIND },
		{ .name = "cert-dir", .type = FLAG_STRING, .out = &o->cert_dir, .arg = "dir",
		  .help = "directory with tls.crt and tls.key, the Secret layout; ignored "
		      "with --tls-cert-file",
		  .def = WEBHOOK_DEFAULT_CERT_DIR },
		{ .name = "tls-cert-file", .type = FLAG_STRING, .out = &raw.cert_file,
		  .arg = "file", .help = "PEM serving certificate, leaf first, then "
		      "intermediates; needs --tls-private-key-file" },
		{ .name = "tls-private-key-file", .type = FLAG_STRING, .out = &raw.key_file,
		  .arg = "file", .help = "PEM private key (ECDSA or RSA) for --tls-cert-file" },
		{ .name = "tls-min-version", .type = FLAG_FUNC, .out = &o->tls_min_version,
		  .arg = "version", .parse = tls_min_version_flag,
		  .help = "VersionTLS12 or VersionTLS13; only AEAD ciphers either way",
		  .def = "VersionTLS12" },
		{ .name = "client-ca-file", .type = FLAG_STRING, .out = &o->client_ca_file,
		  .arg = "file", .help = "PEM CA bundle; when set, the admission endpoints "
		      "answer only clients presenting a certificate it signed for client "
		      "authentication (403 otherwise); /healthz, /readyz and /metrics need "
		      "none" },
		{ .name = "shutdown-delay", .type = FLAG_DURATION, .out = &o->shutdown_delay_ms,
		  .arg = "duration", .help = "after SIGTERM, how long to keep serving with "
		      "readiness false before finishing the requests in flight and exiting, "
		      "e.g. 5s, 500ms",
		  .def = WEBHOOK_DEFAULT_SHUTDOWN_DELAY, .min = 0, .max = WEBHOOK_MAX_BUDGET_MS },
		{ .name = "read-header-timeout", .type = FLAG_DURATION, .out = &raw.budgets_ms[0],
		  .arg = "duration", .help = "a new connection's TLS handshake and first "
		      "request header, or a later request's header from its request line, "
		      "must arrive within this; trickling bytes does not extend it; 0: no "
		      "limit",
		  .def = WEBHOOK_DEFAULT_READ_HEADER_TIMEOUT, .min = 0,
		  .max = WEBHOOK_MAX_BUDGET_MS },
		{ .name = "read-timeout", .type = FLAG_DURATION, .out = &raw.budgets_ms[1],
		  .arg = "duration", .help = "the whole request, body included, from the "
		      "same instant",
		  .def = WEBHOOK_DEFAULT_READ_TIMEOUT, .min = 0, .max = WEBHOOK_MAX_BUDGET_MS },
		{ .name = "write-timeout", .type = FLAG_DURATION, .out = &raw.budgets_ms[2],
		  .arg = "duration", .help = "the answer, from the end of the request header",
		  .def = WEBHOOK_DEFAULT_WRITE_TIMEOUT, .min = 0, .max = WEBHOOK_MAX_BUDGET_MS },
		{ .name = "idle-timeout", .type = FLAG_DURATION, .out = &raw.budgets_ms[3],
		  .arg = "duration", .help = "a keep-alive connection's wait for its next "
		      "request",
		  .def = WEBHOOK_DEFAULT_IDLE_TIMEOUT, .min = 0, .max = WEBHOOK_MAX_BUDGET_MS },
		{ .name = "max-connections", .type = FLAG_INT, .out = &raw.max_connections,
		  .arg = "int", .help = "open connections at most",
		  .def = STR(HTTPD_CONN_LIMIT), .min = 1, .max = WEBHOOK_MAX_CONNECTIONS },
		{ .name = "max-connections-per-ip", .type = FLAG_INT,
		  .out = &raw.max_connections_per_ip, .arg = "int",
		  .help = "open connections from one client address at most",
		  .def = STR(HTTPD_PER_IP_LIMIT), .min = 1, .max = WEBHOOK_MAX_CONNECTIONS },
		{ .name = "max-body-bytes-inflight", .type = FLAG_BYTES,
		  .out = &o->max_body_inflight, .arg = "quantity",
		  .help = "request body bytes held at once across all connections, e.g. "
		      "24Mi; past it a request gets 503 with Retry-After; at least one "
		      "largest review (7Mi and a byte)",
		  .def = "24Mi", .min = WEBHOOK_MAX_BODY + 1, .max = WEBHOOK_MAX_BODY_INFLIGHT },
		{ .name = "log-level", .type = FLAG_FUNC, .out = &o->log_level, .arg = "level",
		  .parse = log_level_flag, .help = "debug (adds a line per allowed review), "
		      "info (denials, at most " STR(WEBHOOK_DENIAL_LOG_PER_S) " lines a "
		      "second), warn or error",
		  .def = "info" },
		{ .name = "log-flush-frequency", .type = FLAG_DURATION, .out = &o->log_flush_ms,
		  .arg = "duration", .help = "longest time a debug or info line waits to be "
		      "written together with others; warn and error lines go out at once; "
		      "0 writes every line as it comes",
		  .def = WEBHOOK_DEFAULT_LOG_FLUSH, .min = 0, .max = WEBHOOK_MAX_BUDGET_MS },
		{ .name = "kubeconfig", .type = FLAG_STRING, .out = &o->kubeconfig,
		  .arg = "file", .help = "kubeconfig for the cluster-state rules "
		      "(duplicates, references, subjects); default $KUBECONFIG, else the "
		      "in-cluster service account; with none of them only the rules that "
		      "need no cluster state run" },
		{ .name = "verify-subjects", .type = FLAG_BOOL, .out = &o->verify_subjects,
		  .help = "check that a Contact's User, Organization or Project exists; "
		      "false for clusters without Milo's IAM types",
		  .def = "true" },
		{ .name = "metrics-auth", .type = FLAG_BOOL, .out = &o->metrics_auth,
		  .help = "/metrics only for bearer tokens whose user may get the "
		      "non-resource URL /metrics (TokenReview and SubjectAccessReview, as "
		      "controller-runtime's filter); on only when an API server is "
		      "configured",
		  .def = "true" },
		{ .name = "threads", .type = FLAG_INT, .out = &raw.threads, .arg = "int",
		  .help = "threads serving HTTPS", .def = "one per CPU the process may use, "
		      "capped by its cgroup's CPU limit and at 4",
		  .min = 1, .max = HTTPD_MAX_THREADS },
	};
	enum flags_result r;

	webhook_options_defaults(o);
	r = flags_parse(table, sizeof(table) / sizeof(table[0]), argc, argv,
	    WEBHOOK_PROGRAM, MILO_VERSION, ABOUT, err, errlen);
	return r == FLAGS_RUN ? finish(o, &raw, err, errlen) : r;
}
