/* flags.c -- contact-webhook's command line, with Kubernetes components' flag names */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "log.h"
#include "webhook.h"

void
webhook_usage(FILE *out)
{
	fprintf(out,
"Usage: " WEBHOOK_PROGRAM " [flags]\n"
"\n"
"Kubernetes validating and mutating admission webhook for the Milo\n"
"notification.miloapis.com/v1alpha1 contact resources, served over HTTPS:\n"
"/validate-notification-miloapis-com-v1alpha1-<kind> and /mutate-... for\n"
"contact, contactgroup, contactgroupmembership and\n"
"contactgroupmembershipremoval; /healthz, /readyz and /metrics.\n"
"\n"
"Flags:\n"
"  --secure-port int             HTTPS port (default %d)\n"
"  --bind-address ip             address to listen on; :: listens on IPv6 and\n"
"                                IPv4 (default " WEBHOOK_DEFAULT_BIND ")\n"
"  --cert-dir dir                directory with tls.crt and tls.key, the\n"
"                                Secret layout; ignored with --tls-cert-file\n"
"                                (default " WEBHOOK_DEFAULT_CERT_DIR ")\n"
"  --tls-cert-file file          PEM serving certificate, leaf first, then\n"
"                                intermediates; needs --tls-private-key-file\n"
"  --tls-private-key-file file   PEM private key (ECDSA or RSA) for\n"
"                                --tls-cert-file\n"
"  --tls-min-version version     VersionTLS12 or VersionTLS13 (default\n"
"                                VersionTLS12); only AEAD ciphers either way\n"
"  --client-ca-file file         PEM CA bundle; when set, the admission\n"
"                                endpoints answer only clients presenting a\n"
"                                certificate it signed for client\n"
"                                authentication (403 otherwise); /healthz,\n"
"                                /readyz and /metrics need none\n"
"  --shutdown-delay duration     after SIGTERM, how long to keep serving with\n"
"                                readiness false before finishing the requests\n"
"                                in flight and exiting, e.g. 5s, 500ms\n"
"                                (default " WEBHOOK_DEFAULT_SHUTDOWN_DELAY ")\n"
"  --read-header-timeout duration\n"
"                                a new connection's TLS handshake and first\n"
"                                request header, or a later request's header\n"
"                                from its request line, must arrive within\n"
"                                this; trickling bytes does not extend it; 0:\n"
"                                no limit (default " WEBHOOK_DEFAULT_READ_HEADER_TIMEOUT ")\n"
"  --read-timeout duration       the whole request, body included, from the\n"
"                                same instant (default " WEBHOOK_DEFAULT_READ_TIMEOUT ")\n"
"  --write-timeout duration      the answer, from the end of the request\n"
"                                header (default " WEBHOOK_DEFAULT_WRITE_TIMEOUT ")\n"
"  --idle-timeout duration       a keep-alive connection's wait for its next\n"
"                                request (default " WEBHOOK_DEFAULT_IDLE_TIMEOUT ")\n"
"  --max-connections int         open connections at most (default %d)\n"
"  --max-connections-per-ip int  open connections from one client address at\n"
"                                most (default %d)\n"
"  --max-body-bytes-inflight quantity\n"
"                                request body bytes held at once across all\n"
"                                connections, e.g. 24Mi; past it a request\n"
"                                gets 503 with Retry-After (default " WEBHOOK_DEFAULT_BODY_INFLIGHT ")\n"
"  --log-level level             debug (adds a line per allowed review), info\n"
"                                (denials, at most %d lines a second), warn\n"
"                                or error (default info)\n"
"  --log-flush-frequency duration\n"
"                                longest time a debug or info line waits to\n"
"                                be written together with others; warn and\n"
"                                error lines go out at once; 0 writes every\n"
"                                line as it comes (default " WEBHOOK_DEFAULT_LOG_FLUSH ")\n"
"  --kubeconfig file             kubeconfig for the cluster-state rules\n"
"                                (duplicates, references, subjects); default\n"
"                                $KUBECONFIG, else the in-cluster service\n"
"                                account; with none of them only the rules\n"
"                                that need no cluster state run\n"
"  --verify-subjects bool        check that a Contact's User, Organization or\n"
"                                Project exists (default true); false for\n"
"                                clusters without Milo's IAM types\n"
"  --metrics-auth bool           /metrics only for bearer tokens whose user may\n"
"                                get the non-resource URL /metrics\n"
"                                (TokenReview and SubjectAccessReview, as\n"
"                                controller-runtime's filter); on by default\n"
"                                when an API server is configured\n"
"  --threads int                 threads serving HTTPS, 1-64 (default: one per\n"
"                                CPU the process may use, capped by its\n"
"                                cgroup's CPU limit and at 4)\n"
"  -h, --help                    print this help and exit\n"
"      --version                 print the version and exit\n"
"\n"
"The certificate and key are re-read when their contents change (Kubernetes'\n"
"..data symlink swap included) and on SIGHUP; new connections get the new\n"
"certificate. SIGTERM: /readyz fails, serving goes on for --shutdown-delay,\n"
"then the requests in flight finish and the process exits 0; a second\n"
"SIGTERM or SIGINT skips the rest of the delay.\n"
"\n"
"Environment:\n"
"  " WEBHOOK_CERT_POLL_ENV "       how often to compare the certificate\n"
"                                files, a duration; 0: only on SIGHUP\n"
"                                (default 5s)\n"
"\n"
"Logs are JSON lines on stderr.\n",
	    WEBHOOK_DEFAULT_PORT, HTTPD_CONN_LIMIT, HTTPD_PER_IP_LIMIT,
	    WEBHOOK_DENIAL_LOG_PER_S);
}

/* Go's duration units, longest first where one is a prefix of another. */
static const struct {
	const char *name;
	uint64_t ns;
} units[] = {
	{ "ns", 1 },
	{ "us", 1000 },
	{ "\xc2\xb5s", 1000 },		/* U+00B5 micro sign */
	{ "\xce\xbcs", 1000 },		/* U+03BC Greek mu */
	{ "ms", 1000000 },
	{ "s", 1000000000ULL },
	{ "m", 60 * 1000000000ULL },
	{ "h", 3600 * 1000000000ULL },
};

static int
parse_unit(const char **p, uint64_t *ns)
{
	size_t best = 0, i, n;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		n = strlen(units[i].name);
		if (n > best && strncmp(*p, units[i].name, n) == 0) {
			best = n;
			*ns = units[i].ns;
		}
	}
	if (!best)
		return -EINVAL;
	*p += best;
	return 0;
}

/* One "<digits>[.<digits>]<unit>" term, in nanoseconds. */
static int
parse_term(const char **p, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, scale = 1, unit, v;
	bool digits = false;

	for (; **p >= '0' && **p <= '9'; (*p)++, digits = true) {
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(**p - '0'), &whole))
			return -ERANGE;
	}
	if (**p == '.') {
		for ((*p)++; **p >= '0' && **p <= '9'; (*p)++, digits = true) {
			if (scale < 1000000000ULL) {	/* nanoseconds at most */
				frac = frac * 10 + (uint64_t)(**p - '0');
				scale *= 10;
			}
		}
	}
	if (!digits || parse_unit(p, &unit) != 0)
		return -EINVAL;
	if (__builtin_mul_overflow(whole, unit, &v) ||
	    __builtin_add_overflow(v, frac * unit / scale, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

int
webhook_parse_duration_ms(const char *s, uint64_t *ms)
{
	uint64_t total = 0, term;
	int rc;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '+')
		s++;
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	while (*s) {
		rc = parse_term(&s, &term);
		if (rc)
			return rc;
		if (__builtin_add_overflow(total, term, &total))
			return -ERANGE;
	}
	*ms = total / 1000000;
	return 0;
}

int
webhook_parse_bytes(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *suffix;
		uint64_t scale;
	} suffixes[] = {
		{ "", 1 }, { "Ki", 1ULL << 10 }, { "Mi", 1ULL << 20 },
		{ "Gi", 1ULL << 30 }, { "k", 1000 }, { "M", 1000000 },
		{ "G", 1000000000 },
	};
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (strcmp(end, suffixes[i].suffix) != 0)
			continue;
		if (__builtin_mul_overflow((uint64_t)v, suffixes[i].scale, bytes))
			return -ERANGE;
		return 0;
	}
	return -EINVAL;
}

/* A decimal integer in [min, max], nothing around it. */
static int
parse_range(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int
parse_port(const char *s, uint16_t *port)
{
	long v;

	if (parse_range(s, 1, 65535, &v) != 0)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static bool
is_ip(const char *s)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, s, addr) == 1 ||
	    inet_pton(AF_INET6, s, addr) == 1;
}

enum flag_id {
	F_SECURE_PORT, F_BIND_ADDRESS, F_CERT_DIR, F_TLS_CERT_FILE,
	F_TLS_KEY_FILE, F_TLS_MIN_VERSION, F_CLIENT_CA_FILE,
	F_SHUTDOWN_DELAY, F_LOG_LEVEL, F_LOG_FLUSH, F_KUBECONFIG, F_VERIFY_SUBJECTS,
	F_THREADS, F_READ_HEADER_TIMEOUT, F_READ_TIMEOUT, F_WRITE_TIMEOUT,
	F_IDLE_TIMEOUT, F_MAX_CONNECTIONS, F_MAX_CONNECTIONS_PER_IP,
	F_MAX_BODY_INFLIGHT, F_HELP, F_VERSION, F_METRICS_AUTH,
};

/* arg: takes a value; boolean: takes an optional =true/=false. */
static const struct {
	const char *name;
	enum flag_id id;
	bool arg;
	bool boolean;
} flags[] = {
	{ "secure-port", F_SECURE_PORT, true, false },
	{ "bind-address", F_BIND_ADDRESS, true, false },
	{ "cert-dir", F_CERT_DIR, true, false },
	{ "tls-cert-file", F_TLS_CERT_FILE, true, false },
	{ "tls-private-key-file", F_TLS_KEY_FILE, true, false },
	{ "tls-min-version", F_TLS_MIN_VERSION, true, false },
	{ "client-ca-file", F_CLIENT_CA_FILE, true, false },
	{ "shutdown-delay", F_SHUTDOWN_DELAY, true, false },
	{ "log-level", F_LOG_LEVEL, true, false },
	{ "log-flush-frequency", F_LOG_FLUSH, true, false },
	{ "kubeconfig", F_KUBECONFIG, true, false },
	{ "verify-subjects", F_VERIFY_SUBJECTS, false, true },
	{ "metrics-auth", F_METRICS_AUTH, false, true },
	{ "threads", F_THREADS, true, false },
	{ "read-header-timeout", F_READ_HEADER_TIMEOUT, true, false },
	{ "read-timeout", F_READ_TIMEOUT, true, false },
	{ "write-timeout", F_WRITE_TIMEOUT, true, false },
	{ "idle-timeout", F_IDLE_TIMEOUT, true, false },
	{ "max-connections", F_MAX_CONNECTIONS, true, false },
	{ "max-connections-per-ip", F_MAX_CONNECTIONS_PER_IP, true, false },
	{ "max-body-bytes-inflight", F_MAX_BODY_INFLIGHT, true, false },
	{ "help", F_HELP, false, false },
	{ "version", F_VERSION, false, false },
};

struct raw_flags {
	const char *cert_file;
	const char *key_file;
	const char *shutdown_delay;
	const char *log_flush;
	const char *budgets[4];		/* read header, read, write, idle */
	const char *body_inflight;
};

static const char *const budget_flags[4] = {
	"read-header-timeout", "read-timeout", "write-timeout", "idle-timeout",
};

/* Applies one flag; err gets the reason when the value is bad. */
static enum webhook_flags_result
apply(struct webhook_options *o, struct raw_flags *raw, enum flag_id id,
    const char *name, const char *v, char *err, size_t errlen)
{
	switch (id) {
	case F_SECURE_PORT:
		if (parse_port(v, &o->port) == 0)
			return WEBHOOK_FLAGS_RUN;
		snprintf(err, errlen, "--%s: %s is not a port (1-65535)", name, v);
		return WEBHOOK_FLAGS_BAD;
	case F_BIND_ADDRESS:
		if (is_ip(v)) {
			o->bind_address = v;
			return WEBHOOK_FLAGS_RUN;
		}
		snprintf(err, errlen, "--%s: %s is not an IP address", name, v);
		return WEBHOOK_FLAGS_BAD;
	case F_CERT_DIR:
		o->cert_dir = v;
		return WEBHOOK_FLAGS_RUN;
	case F_TLS_CERT_FILE:
		raw->cert_file = v;
		return WEBHOOK_FLAGS_RUN;
	case F_TLS_KEY_FILE:
		raw->key_file = v;
		return WEBHOOK_FLAGS_RUN;
	case F_TLS_MIN_VERSION:
		if (tls_min_version_parse(v, &o->tls_min_version) == 0)
			return WEBHOOK_FLAGS_RUN;
		snprintf(err, errlen, "--%s: %s is not supported; use "
		    "VersionTLS12 or VersionTLS13", name, v);
		return WEBHOOK_FLAGS_BAD;
	case F_CLIENT_CA_FILE:
		o->client_ca_file = *v ? v : NULL;
		return WEBHOOK_FLAGS_RUN;
	case F_SHUTDOWN_DELAY:
		raw->shutdown_delay = v;
		return WEBHOOK_FLAGS_RUN;
	case F_LOG_LEVEL:
		if (log_set_level_name(v) == 0) {
			o->log_level = v;
			return WEBHOOK_FLAGS_RUN;
		}
		snprintf(err, errlen, "--%s: %s is not debug, info, warn or error",
		    name, v);
		return WEBHOOK_FLAGS_BAD;
	case F_LOG_FLUSH:
		raw->log_flush = v;
		return WEBHOOK_FLAGS_RUN;
	case F_KUBECONFIG:
		o->kubeconfig = v;
		return WEBHOOK_FLAGS_RUN;
	case F_VERIFY_SUBJECTS:
	case F_METRICS_AUTH:
		if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) {
			*(id == F_METRICS_AUTH ? &o->metrics_auth :
			    &o->verify_subjects) = strcmp(v, "true") == 0;
			return WEBHOOK_FLAGS_RUN;
		}
		snprintf(err, errlen, "--%s: %s is not true or false", name, v);
		return WEBHOOK_FLAGS_BAD;
	case F_THREADS: {
		long n;

		if (parse_range(v, 1, HTTPD_MAX_THREADS, &n) == 0) {
			o->threads = (unsigned int)n;
			return WEBHOOK_FLAGS_RUN;
		}
		snprintf(err, errlen, "--%s: %s is not a thread count (1-%d)",
		    name, v, HTTPD_MAX_THREADS);
		return WEBHOOK_FLAGS_BAD;
	}
	case F_READ_HEADER_TIMEOUT:
	case F_READ_TIMEOUT:
	case F_WRITE_TIMEOUT:
	case F_IDLE_TIMEOUT:
		raw->budgets[id - F_READ_HEADER_TIMEOUT] = v;
		return WEBHOOK_FLAGS_RUN;
	case F_MAX_CONNECTIONS:
	case F_MAX_CONNECTIONS_PER_IP: {
		long n;

		if (parse_range(v, 1, WEBHOOK_MAX_CONNECTIONS, &n) == 0) {
			*(id == F_MAX_CONNECTIONS ? &o->max_connections :
			    &o->max_connections_per_ip) = (unsigned int)n;
			return WEBHOOK_FLAGS_RUN;
		}
		snprintf(err, errlen, "--%s: %s is not a connection count (1-%d)",
		    name, v, WEBHOOK_MAX_CONNECTIONS);
		return WEBHOOK_FLAGS_BAD;
	}
	case F_MAX_BODY_INFLIGHT:
		raw->body_inflight = v;
		return WEBHOOK_FLAGS_RUN;
	case F_HELP:
		webhook_usage(stdout);
		return WEBHOOK_FLAGS_DONE;
	case F_VERSION:
		printf("%s %s\n", WEBHOOK_PROGRAM, MILO_VERSION);
		return WEBHOOK_FLAGS_DONE;
	}
	return WEBHOOK_FLAGS_BAD;
}

/* The time budgets and the body budget. */
static enum webhook_flags_result
finish_limits(struct webhook_options *o, const struct raw_flags *raw,
    char *err, size_t errlen)
{
	uint32_t *out[4] = { &o->read_header_timeout_ms, &o->read_timeout_ms,
	    &o->write_timeout_ms, &o->idle_timeout_ms };
	uint64_t ms;

	for (int i = 0; i < 4; i++) {
		if (webhook_parse_duration_ms(raw->budgets[i], &ms) != 0 ||
		    ms > WEBHOOK_MAX_BUDGET_MS) {
			snprintf(err, errlen, "--%s: %s is not a duration such as "
			    "10s or 1m30s (at most 24h; 0: no limit)",
			    budget_flags[i], raw->budgets[i]);
			return WEBHOOK_FLAGS_BAD;
		}
		/* Go's http.Server: zero means no timeout. */
		*out[i] = ms ? (uint32_t)ms : HTTPD_NO_TIMEOUT;
	}
	if (webhook_parse_bytes(raw->body_inflight, &o->max_body_inflight) != 0 ||
	    o->max_body_inflight < WEBHOOK_MAX_BODY + 1 ||
	    o->max_body_inflight > WEBHOOK_MAX_BODY_INFLIGHT) {
		snprintf(err, errlen, "--max-body-bytes-inflight: %s is not a "
		    "byte count such as 24Mi, from %d bytes (one largest review) "
		    "to 64Gi", raw->body_inflight, WEBHOOK_MAX_BODY + 1);
		return WEBHOOK_FLAGS_BAD;
	}
	return WEBHOOK_FLAGS_RUN;
}

/* Checks what only makes sense once every flag is known. */
static enum webhook_flags_result
finish(struct webhook_options *o, const struct raw_flags *raw, char *err,
    size_t errlen)
{
	const char *poll = getenv(WEBHOOK_CERT_POLL_ENV);
	int n1, n2;

	if (webhook_parse_duration_ms(raw->shutdown_delay,
	    &o->shutdown_delay_ms) != 0) {
		snprintf(err, errlen, "--shutdown-delay: %s is not a duration "
		    "such as 10s or 500ms", raw->shutdown_delay);
		return WEBHOOK_FLAGS_BAD;
	}
	if (webhook_parse_duration_ms(raw->log_flush, &o->log_flush_ms) != 0 ||
	    o->log_flush_ms > UINT32_MAX) {
		snprintf(err, errlen, "--log-flush-frequency: %s is not a duration "
		    "such as 100ms or 0", raw->log_flush);
		return WEBHOOK_FLAGS_BAD;
	}
	if (finish_limits(o, raw, err, errlen) != WEBHOOK_FLAGS_RUN)
		return WEBHOOK_FLAGS_BAD;
	if (poll && webhook_parse_duration_ms(poll, &o->cert_poll_ms) != 0) {
		snprintf(err, errlen, "%s: %s is not a duration such as 5s",
		    WEBHOOK_CERT_POLL_ENV, poll);
		return WEBHOOK_FLAGS_BAD;
	}
	if (!raw->cert_file != !raw->key_file) {
		snprintf(err, errlen, "--tls-cert-file and --tls-private-key-file "
		    "must be given together");
		return WEBHOOK_FLAGS_BAD;
	}
	if (raw->cert_file) {
		n1 = snprintf(o->cert_file, sizeof(o->cert_file), "%s",
		    raw->cert_file);
		n2 = snprintf(o->key_file, sizeof(o->key_file), "%s",
		    raw->key_file);
	} else {
		n1 = snprintf(o->cert_file, sizeof(o->cert_file), "%s/tls.crt",
		    o->cert_dir);
		n2 = snprintf(o->key_file, sizeof(o->key_file), "%s/tls.key",
		    o->cert_dir);
	}
	if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(o->cert_file) ||
	    (size_t)n2 >= sizeof(o->key_file)) {
		snprintf(err, errlen, "certificate path too long");
		return WEBHOOK_FLAGS_BAD;
	}
	return WEBHOOK_FLAGS_RUN;
}

static void
set_defaults(struct webhook_options *o, struct raw_flags *raw)
{
	memset(o, 0, sizeof(*o));
	o->bind_address = WEBHOOK_DEFAULT_BIND;
	o->port = WEBHOOK_DEFAULT_PORT;
	o->cert_dir = WEBHOOK_DEFAULT_CERT_DIR;
	o->tls_min_version = TLS_MIN_VERSION_12;
	o->cert_poll_ms = TLS_POLL_INTERVAL_MS;
	o->log_level = "info";
	o->verify_subjects = true;
	o->metrics_auth = true;
	memset(raw, 0, sizeof(*raw));
	raw->shutdown_delay = WEBHOOK_DEFAULT_SHUTDOWN_DELAY;
	raw->log_flush = WEBHOOK_DEFAULT_LOG_FLUSH;
	raw->budgets[0] = WEBHOOK_DEFAULT_READ_HEADER_TIMEOUT;
	raw->budgets[1] = WEBHOOK_DEFAULT_READ_TIMEOUT;
	raw->budgets[2] = WEBHOOK_DEFAULT_WRITE_TIMEOUT;
	raw->budgets[3] = WEBHOOK_DEFAULT_IDLE_TIMEOUT;
	raw->body_inflight = WEBHOOK_DEFAULT_BODY_INFLIGHT;
	o->max_connections = HTTPD_CONN_LIMIT;
	o->max_connections_per_ip = HTTPD_PER_IP_LIMIT;
}

/*
 * --name=value or --name value, names exactly as listed (no
 * abbreviations, unlike getopt_long), so a typo never means another flag.
 */
enum webhook_flags_result
webhook_parse_flags(int argc, char **argv, struct webhook_options *o,
    char *err, size_t errlen)
{
	struct raw_flags raw;
	enum webhook_flags_result r;

	set_defaults(o, &raw);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *v;
		size_t len, f;

		if (strcmp(a, "-h") == 0)
			a = "--help";
		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			snprintf(err, errlen, "unexpected argument %s (see --help)", a);
			return WEBHOOK_FLAGS_BAD;
		}
		name = a + 2;
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		for (f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
			if (strlen(flags[f].name) == len &&
			    strncmp(flags[f].name, name, len) == 0)
				break;
		}
		if (f == sizeof(flags) / sizeof(flags[0])) {
			snprintf(err, errlen, "unknown flag --%.*s (see --help)",
			    (int)len, name);
			return WEBHOOK_FLAGS_BAD;
		}
		if (flags[f].arg && !eq && i + 1 >= argc) {
			snprintf(err, errlen, "--%s needs a value", flags[f].name);
			return WEBHOOK_FLAGS_BAD;
		}
		if (!flags[f].arg && !flags[f].boolean && eq) {
			snprintf(err, errlen, "--%s takes no value", flags[f].name);
			return WEBHOOK_FLAGS_BAD;
		}
		if (flags[f].boolean)
			v = eq ? eq + 1 : "true";
		else
			v = eq ? eq + 1 : flags[f].arg ? argv[++i] : NULL;
		r = apply(o, &raw, flags[f].id, flags[f].name, v, err, errlen);
		if (r != WEBHOOK_FLAGS_RUN)
			return r;
	}
	return finish(o, &raw, err, errlen);
}
