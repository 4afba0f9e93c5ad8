/* flags.c -- contact-reconciler's command line (lib/flags.c's table) */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "flags.h"
#include "lease.h"
#include "log.h"
#include "reconciler.h"
#include "tls.h"

#define ABOUT \
"Keeps an email provider (Resend or Mailgun) in step with the Milo\n" \
"notification contacts: ContactGroups become the provider's segments or\n" \
"mailing lists, ContactGroupMemberships put contacts into them, removals\n" \
"take them out (and keep them out). Status conditions (Ready,\n" \
"ProviderSynced) and Events record what happened. Serves /healthz, /readyz,\n" \
"/metrics and the provider's signed webhooks (POST /webhooks/<provider>)\n" \
"over HTTPS. SIGTERM and SIGINT stop it; SIGHUP rereads the certificate."

void
reconciler_options_defaults(struct reconciler_options *o)
{
	memset(o, 0, sizeof(*o));
	o->bind_address = "0.0.0.0";
	o->port = RECONCILER_DEFAULT_PORT;
	o->cert_dir = "/tmp/k8s-webhook-server/serving-certs";
	o->leader_elect = true;
	o->metrics_auth = true;
	o->lease_name = RECONCILER_PROGRAM;
	o->lease_duration_ms = LEASE_DURATION_S * 1000;
	o->renew_deadline_ms = LEASE_RENEW_DEADLINE_S * 1000;
	o->retry_period_ms = LEASE_RETRY_PERIOD_S * 1000;
	o->workers = RECONCILER_DEFAULT_WORKERS;
	o->resync_ms = RECONCILER_DEFAULT_RESYNC_S * 1000;
	o->audit_period_ms = RECONCILER_DEFAULT_AUDIT_S * 1000;
	o->provider = "resend";
	o->mailgun.bulk_window_ms = RECONCILER_MAILGUN_BULK_WINDOW_MS;
	o->log_level = "info";
}

/* Whole seconds: the Lease counts leaseDurationSeconds. */
static int
whole_seconds(uint64_t ms, const char *flag, char *err, size_t errlen)
{
	if (ms % 1000 == 0)
		return 0;
	snprintf(err, errlen, "--%s: the Lease counts whole seconds", flag);
	return -EINVAL;
}

enum flags_result
reconciler_parse_flags(int argc, char **argv, struct reconciler_options *o, char *err,
    size_t errlen)
{
	const struct flag table[] = {
		{ .name = "kubeconfig", .type = FLAG_STRING, .out = &o->kubeconfig,
		  .arg = "file",
		  .help = "kubeconfig; else $KUBECONFIG, else the in-cluster service "
		      "account" },
		{ .name = "secure-port", .type = FLAG_INT, .out = &o->port,
		  .arg = "int", .help = "HTTPS port", .def = "9444", .min = 1,
		  .max = 65535 },
		{ .name = "bind-address", .type = FLAG_FUNC, .out = &o->bind_address,
		  .arg = "ip", .parse = flags_ip, .help = "address to listen on; :: for IPv6 and IPv4",
		  .def = "0.0.0.0" },
		{ .name = "cert-dir", .type = FLAG_STRING, .out = &o->cert_dir,
		  .arg = "dir", .help = "directory with tls.crt and tls.key",
		  .def = "/tmp/k8s-webhook-server/serving-certs" },
		{ .name = "tls-cert-file", .type = FLAG_STRING, .out = &o->cert_file,
		  .arg = "file",
		  .help = "PEM serving certificate (with --tls-private-key-file)" },
		{ .name = "tls-private-key-file", .type = FLAG_STRING,
		  .out = &o->key_file, .arg = "file", .help = "PEM private key" },
		{ .name = "tls-min-version", .type = FLAG_FUNC,
		  .out = &o->tls_min_version, .arg = "version",
		  .help = "VersionTLS12 or VersionTLS13", .def = "VersionTLS12",
		  .parse = tls_min_version_flag },
		{ .name = "leader-elect", .type = FLAG_BOOL, .out = &o->leader_elect,
		  .help = "elect a leader through a Lease; --leader-elect=false for "
		      "one instance",
		  .def = "true" },
		{ .name = "leader-election-namespace", .type = FLAG_STRING,
		  .out = &o->lease_namespace, .arg = "ns",
		  .help = "the Lease's namespace",
		  .def = "the pod's, else milo-contacts" },
		{ .name = "leader-election-id", .type = FLAG_STRING,
		  .out = &o->lease_name, .arg = "name", .help = "the Lease's name",
		  .def = RECONCILER_PROGRAM },
		{ .name = "leader-elect-lease-duration", .type = FLAG_DURATION,
		  .out = &o->lease_duration_ms, .arg = "duration",
		  .help = "how long a Lease is valid without renewal", .def = "15s",
		  .min = 1000, .max = 3600000 },
		{ .name = "leader-elect-renew-deadline", .type = FLAG_DURATION,
		  .out = &o->renew_deadline_ms, .arg = "duration",
		  .help = "how long the leader keeps trying to renew before it stops "
		      "acting",
		  .def = "10s", .min = 1000, .max = 3600000 },
		{ .name = "leader-elect-retry-period", .type = FLAG_DURATION,
		  .out = &o->retry_period_ms, .arg = "duration",
		  .help = "between acquire and renew attempts; 1.2 x retry < renew "
		      "deadline < lease",
		  .def = "2s", .min = 1000, .max = 3600000 },
		{ .name = "provider", .type = FLAG_STRING, .out = &o->provider,
		  .arg = "name", .help = "the email provider: resend or mailgun",
		  .def = "resend" },
		{ .name = "resend-api-key-file", .type = FLAG_STRING,
		  .out = &o->resend.api_key_file, .arg = "file",
		  .help = "the Resend API key; else $RESEND_API_KEY; never logged" },
		{ .name = "resend-base-url", .type = FLAG_STRING,
		  .out = &o->resend.base_url, .arg = "url", .help = "the Resend API",
		  .def = "https://api.resend.com" },
		{ .name = "resend-rate-limit", .type = FLAG_DOUBLE,
		  .out = &o->resend.rate, .arg = "float",
		  .help = "Resend requests per second at most (a lower quota the "
		      "provider states or " "enforces is learned)",
		  .def = "2", .min = 0.01, .max = 10000 },
		{ .name = "resend-ca-file", .type = FLAG_STRING,
		  .out = &o->resend.ca_file, .arg = "file",
		  .help = "extra CA for the Resend URL (tests)" },
		{ .name = "resend-webhook-secret-file", .type = FLAG_STRING,
		  .out = &o->resend.webhook_secret_file, .arg = "file",
		  .help = "the whsec_... signing secret of Resend's webhooks; "
		      "enables POST " "/webhooks/resend (a missing file leaves "
		      "it off)" },
		{ .name = "mailgun-api-key-file", .type = FLAG_STRING,
		  .out = &o->mailgun.api_key_file, .arg = "file",
		  .help = "the Mailgun API key; else $MAILGUN_API_KEY; never logged" },
		{ .name = "mailgun-base-url", .type = FLAG_STRING,
		  .out = &o->mailgun.base_url, .arg = "url",
		  .help = "the Mailgun API; https://api.eu.mailgun.net for the EU "
		      "region",
		  .def = "https://api.mailgun.net" },
		{ .name = "mailgun-domain", .type = FLAG_STRING,
		  .out = &o->mailgun.domain, .arg = "domain",
		  .help = "the domain mailing-list addresses are made under "
		      "(required with " "--provider mailgun)" },
		{ .name = "mailgun-rate-limit", .type = FLAG_DOUBLE,
		  .out = &o->mailgun.rate, .arg = "float",
		  .help = "Mailgun requests per second at most (Mailgun publishes no "
		      "figure; a lower limit it enforces with 429s is learned)",
		  .def = "5", .min = 0.01, .max = 10000 },
		{ .name = "mailgun-bulk-window", .type = FLAG_DURATION,
		  .out = &o->mailgun.bulk_window_ms, .arg = "duration",
		  .help = "members added closer than this to each other go to their "
		      "lists in bulk requests (members.json, up to 100 each, 5 s "
		      "of waiting at most); a lone add never waits; 0 sends each "
		      "alone",
		  .def = "250ms", .min = 0, .max = 60000 },
		{ .name = "mailgun-ca-file", .type = FLAG_STRING,
		  .out = &o->mailgun.ca_file, .arg = "file",
		  .help = "extra CA for the Mailgun URL (tests)" },
		{ .name = "mailgun-webhook-signing-key-file", .type = FLAG_STRING,
		  .out = &o->mailgun.webhook_secret_file, .arg = "file",
		  .help = "Mailgun's webhook signing key; " "enables POST "
		      "/webhooks/mailgun (a missing file leaves it off)" },
		{ .name = "workers", .type = FLAG_INT, .out = &o->workers, .arg = "int",
		  .help = "concurrent reconciles", .def = "2", .min = 1,
		  .max = RECONCILER_MAX_WORKERS },
		{ .name = "resync-period", .type = FLAG_DURATION, .out = &o->resync_ms,
		  .arg = "duration",
		  .help = "how often unsettled objects are looked at again, e.g. "
		      "10m, 1m30s",
		  .def = "10m", .min = 1000, .max = 86400000 },
		{ .name = "provider-audit-period", .type = FLAG_DURATION,
		  .out = &o->audit_period_ms, .arg = "duration",
		  .help = "how often the leader reads what it owns at the provider and "
		      "repairs drift (list calls only when nothing drifted); 0 turns "
		      "audits off",
		  .def = "1h", .min = 0, .max = 7 * 86400000.0 },
		{ .name = "log-level", .type = FLAG_FUNC, .out = &o->log_level,
		  .arg = "level", .help = "debug, info, warn or error", .def = "info",
		  .parse = log_level_flag },
		{ .name = "metrics-auth", .type = FLAG_BOOL, .out = &o->metrics_auth,
		  .help = "/metrics only for bearer tokens whose user may get the "
		      "non-resource URL " "/metrics (TokenReview and "
		      "SubjectAccessReview)",
		  .def = "true" },
	};
	enum flags_result r;

	r = flags_parse(table, sizeof(table) / sizeof(table[0]), argc, argv,
	    RECONCILER_PROGRAM, RECONCILER_VERSION, ABOUT, err, errlen);
	if (r != FLAGS_RUN)
		return r;
	if (whole_seconds(o->lease_duration_ms, "leader-elect-lease-duration", err, errlen) ||
	    whole_seconds(o->renew_deadline_ms, "leader-elect-renew-deadline", err, errlen) ||
	    whole_seconds(o->retry_period_ms, "leader-elect-retry-period", err, errlen))
		return FLAGS_BAD;
	if (!(o->retry_period_ms * 12 < o->renew_deadline_ms * 10 &&
	    o->renew_deadline_ms < o->lease_duration_ms)) {
		/* client-go's rule: a leader gives up before its lease runs out. */
		snprintf(err, errlen, "need 1.2 x --leader-elect-retry-period (%llus) < "
		    "--leader-elect-renew-deadline (%llus) < --leader-elect-lease-duration "
		    "(%llus)", (unsigned long long)o->retry_period_ms / 1000,
		    (unsigned long long)o->renew_deadline_ms / 1000,
		    (unsigned long long)o->lease_duration_ms / 1000);
		return FLAGS_BAD;
	}
	if (strcmp(o->provider, "mailgun") == 0 && (!o->mailgun.domain || !o->mailgun.domain[0])) {
		snprintf(err, errlen, "--provider mailgun needs --mailgun-domain, the domain its "
		    "mailing-list addresses are made under (such as lists.example.com)");
		return FLAGS_BAD;
	}
	if (!o->cert_file != !o->key_file) {
		snprintf(err, errlen, "--tls-cert-file and --tls-private-key-file must be "
		    "given together");
		return FLAGS_BAD;
	}
	return FLAGS_RUN;
}
