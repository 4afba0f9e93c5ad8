/* main.c -- contact-reconciler: flags, wiring, workers, leader election, signals */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "authn.h"
#include "cache.h"
#include "httpd.h"
#include "kube.h"
#include "kubeconfig.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "procmetrics.h"
#include "reconciler.h"
#include "resend.h"
#include "signals.h"
#include "svix.h"
#include "tls.h"
#include "workqueue.h"

#ifndef MILO_VERSION
#define MILO_VERSION "0.1.0"
#endif
#define MAX_WORKERS 32
#define SECRET_FILE_MAX 4096

struct options {
	const char *kubeconfig;
	const char *bind_address;
	unsigned int port;
	const char *cert_dir;
	const char *cert_file, *key_file;
	enum tls_min_version tls_min_version;
	bool leader_elect;
	const char *lease_namespace;
	const char *lease_name;
	unsigned int lease_duration_s, renew_deadline_s, retry_period_s;
	const char *api_key_file;
	const char *base_url;
	double rate;
	const char *webhook_secret_file;
	const char *provider_ca_file;
	unsigned int workers;
	unsigned long resync_ms;
	const char *log_level;
	bool metrics_auth;
};

static void
usage(FILE *out)
{
	fprintf(out,
"Usage: " RECONCILER_PROGRAM " [flags]\n"
"\n"
"Keeps an email provider (Resend) in step with the Milo notification\n"
"contacts: ContactGroups become segments, Contacts provider contacts,\n"
"ContactGroupMemberships put contacts into segments, removals take them out.\n"
"Status conditions (Ready, ProviderSynced) and Events record what happened.\n"
"Serves /healthz, /readyz, /metrics and the provider's signed webhooks at\n"
"POST /webhooks/resend over HTTPS.\n"
"\n"
"Flags:\n"
"  --kubeconfig file                  kubeconfig; default $KUBECONFIG, else in-cluster\n"
"  --secure-port int                  HTTPS port (default %d)\n"
"  --bind-address ip                  address to listen on (default 0.0.0.0; :: for IPv6)\n"
"  --cert-dir dir                     directory with tls.crt and tls.key\n"
"                                     (default /tmp/k8s-webhook-server/serving-certs)\n"
"  --tls-cert-file file               PEM serving certificate (with --tls-private-key-file)\n"
"  --tls-private-key-file file        PEM private key\n"
"  --tls-min-version version          VersionTLS12 or VersionTLS13 (default VersionTLS12)\n"
"  --leader-elect bool                elect a leader through a Lease (default true);\n"
"                                     --leader-elect=false for a single instance\n"
"  --leader-election-namespace ns     the Lease's namespace (default: the pod's, else\n"
"                                     milo-contacts)\n"
"  --leader-election-id name          the Lease's name (default contact-reconciler)\n"
"  --leader-elect-lease-duration d    how long a Lease is valid without renewal (default 15s)\n"
"  --leader-elect-renew-deadline d    how long the leader keeps trying to renew before it\n"
"                                     stops acting (default 10s)\n"
"  --leader-elect-retry-period d      between acquire and renew attempts (default 2s);\n"
"                                     whole seconds; 1.2 x retry < renew deadline < lease\n"
"  --resend-api-key-file file         the Resend API key; default $RESEND_API_KEY\n"
"  --resend-base-url url              the Resend API (default " RESEND_DEFAULT_BASE_URL ")\n"
"  --resend-rate-limit float          provider requests per second (default %.0f)\n"
"  --resend-ca-file file              extra CA for the provider URL (tests)\n"
"  --resend-webhook-secret-file file  the whsec_... signing secret of the provider's\n"
"                                     webhooks; without it /webhooks/resend answers 404\n"
"  --workers int                      concurrent reconciles (default %d)\n"
"  --resync-period duration           how often unsettled objects are looked at again,\n"
"                                     e.g. 10m, 30s (default 10m)\n"
"  --log-level level                  debug, info, warn or error (default info)\n"
"  --metrics-auth bool                /metrics only for bearer tokens whose user may get\n"
"                                     the non-resource URL /metrics (TokenReview and\n"
"                                     SubjectAccessReview; default true)\n"
"  -h, --help                         print this help and exit\n"
"      --version                      print the version and exit\n",
	    RECONCILER_DEFAULT_PORT, RESEND_DEFAULT_RATE, RECONCILER_DEFAULT_WORKERS);
}

/* "10m", "30s", "1500ms", "2h": milliseconds, or -1 when malformed. */
static long
duration_ms(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return -1;
	if (strcmp(end, "ms") == 0)
		return (long)v;
	if (strcmp(end, "s") == 0)
		return (long)(v * 1000);
	if (strcmp(end, "m") == 0)
		return (long)(v * 60000);
	if (strcmp(end, "h") == 0)
		return (long)(v * 3600000);
	return -1;
}

static int
parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* 0: run; 1: done (help/version); -1: bad flag, reason printed. */
static int
parse_flags(int argc, char **argv, struct options *o)
{
	static const char *const with_value[] = { "kubeconfig", "secure-port",
		"bind-address", "cert-dir", "tls-cert-file", "tls-private-key-file",
		"tls-min-version", "leader-election-namespace", "leader-election-id",
		"resend-api-key-file", "resend-base-url", "resend-rate-limit",
		"resend-ca-file", "resend-webhook-secret-file", "workers", "resync-period",
		"log-level", "leader-elect", "leader-elect-lease-duration",
		"leader-elect-renew-deadline", "leader-elect-retry-period", "metrics-auth",
		NULL };

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *name, *eq, *val = NULL;
		char key[64];
		bool known = false;
		char *end;

		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
			usage(stdout);
			return 1;
		}
		if (strcmp(arg, "--version") == 0) {
			printf("%s %s\n", RECONCILER_PROGRAM, MILO_VERSION);
			return 1;
		}
		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "%s: unexpected argument: %s (see --help)\n",
			    RECONCILER_PROGRAM, arg);
			return -1;
		}
		name = arg + 2;
		eq = strchr(name, '=');
		snprintf(key, sizeof(key), "%.*s", eq ? (int)(eq - name) : (int)strlen(name), name);
		for (int k = 0; with_value[k]; k++)
			known |= strcmp(key, with_value[k]) == 0;
		if (!known) {
			fprintf(stderr, "%s: unknown flag: --%s (see --help)\n",
			    RECONCILER_PROGRAM, key);
			return -1;
		}
		if (eq)
			val = eq + 1;
		else if (strcmp(key, "leader-elect") == 0 || strcmp(key, "metrics-auth") == 0)
			val = "true";
		else if (i + 1 < argc)
			val = argv[++i];
		else {
			fprintf(stderr, "%s: flag needs an argument: --%s\n", RECONCILER_PROGRAM, key);
			return -1;
		}
		errno = 0;
		if (strcmp(key, "kubeconfig") == 0)
			o->kubeconfig = val;
		else if (strcmp(key, "secure-port") == 0) {
			unsigned long p = strtoul(val, &end, 10);

			if (*end || !*val || p == 0 || p > 65535)
				goto bad_value;
			o->port = (unsigned int)p;
		} else if (strcmp(key, "bind-address") == 0)
			o->bind_address = val;
		else if (strcmp(key, "cert-dir") == 0)
			o->cert_dir = val;
		else if (strcmp(key, "tls-cert-file") == 0)
			o->cert_file = val;
		else if (strcmp(key, "tls-private-key-file") == 0)
			o->key_file = val;
		else if (strcmp(key, "tls-min-version") == 0) {
			if (tls_min_version_parse(val, &o->tls_min_version) != 0)
				goto bad_value;
		} else if (strcmp(key, "leader-elect") == 0) {
			if (parse_bool(val, &o->leader_elect) != 0)
				goto bad_value;
		} else if (strcmp(key, "metrics-auth") == 0) {
			if (parse_bool(val, &o->metrics_auth) != 0)
				goto bad_value;
		} else if (strcmp(key, "leader-elect-lease-duration") == 0 ||
		    strcmp(key, "leader-elect-renew-deadline") == 0 ||
		    strcmp(key, "leader-elect-retry-period") == 0) {
			long ms = duration_ms(val);
			unsigned int *to = strcmp(key, "leader-elect-lease-duration") == 0 ?
			    &o->lease_duration_s : strcmp(key, "leader-elect-renew-deadline") == 0 ?
			    &o->renew_deadline_s : &o->retry_period_s;

			/* The Lease counts whole seconds (leaseDurationSeconds). */
			if (ms < 1000 || ms % 1000 != 0 || ms > 3600L * 1000)
				goto bad_value;
			*to = (unsigned int)(ms / 1000);
		} else if (strcmp(key, "leader-election-namespace") == 0)
			o->lease_namespace = val;
		else if (strcmp(key, "leader-election-id") == 0)
			o->lease_name = val;
		else if (strcmp(key, "resend-api-key-file") == 0)
			o->api_key_file = val;
		else if (strcmp(key, "resend-base-url") == 0)
			o->base_url = val;
		else if (strcmp(key, "resend-rate-limit") == 0) {
			o->rate = strtod(val, &end);
			if (*end || !*val || !(o->rate > 0) || o->rate > 10000)
				goto bad_value;
		} else if (strcmp(key, "resend-ca-file") == 0)
			o->provider_ca_file = val;
		else if (strcmp(key, "resend-webhook-secret-file") == 0)
			o->webhook_secret_file = val;
		else if (strcmp(key, "workers") == 0) {
			unsigned long w = strtoul(val, &end, 10);

			if (*end || !*val || w == 0 || w > MAX_WORKERS)
				goto bad_value;
			o->workers = (unsigned int)w;
		} else if (strcmp(key, "resync-period") == 0) {
			long ms = duration_ms(val);

			if (ms < 1000)
				goto bad_value;
			o->resync_ms = (unsigned long)ms;
		} else if (strcmp(key, "log-level") == 0) {
			if (log_set_level_name(val) != 0)
				goto bad_value;
			o->log_level = val;
		}
		continue;
bad_value:
		fprintf(stderr, "%s: invalid value \"%s\" for --%s\n", RECONCILER_PROGRAM, val, key);
		return -1;
	}
	if (!(o->retry_period_s * 12 < o->renew_deadline_s * 10 &&
	    o->renew_deadline_s < o->lease_duration_s)) {
		/* client-go's rule: a leader gives up before its lease runs out. */
		fprintf(stderr, "%s: need 1.2 x --leader-elect-retry-period (%us) < "
		    "--leader-elect-renew-deadline (%us) < --leader-elect-lease-duration (%us)\n",
		    RECONCILER_PROGRAM, o->retry_period_s, o->renew_deadline_s,
		    o->lease_duration_s);
		return -1;
	}
	return 0;
}

/* ---- runtime ---- */

struct app {
	struct options o;
	struct reconciler r;
	struct kube_client *kube;
	struct cache *cache;
	struct workqueue *queue;
	struct resend *resend;
	struct lease *lease;
	struct metrics *metrics;
	struct tls_store *tls;
	struct httpd *httpd;
	struct provider_events *events;
	struct authn_guard metrics_guard;	/* /metrics; .authn NULL: open */
	pthread_t workers[MAX_WORKERS];
	unsigned int n_workers;
	pthread_t resyncer;
	bool resyncer_started;
	char *lease_namespace;		/* owned when taken from the kubeconfig */
	atomic_bool stopping, draining;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct metric *m_leader;
	char identity[256];
};

static bool
leading(struct app *a)
{
	return !a->lease || lease_leading(a->lease);
}

/* Unsettled objects are queued; settled ones need nothing (steady state: no calls). */
static void
on_change(enum resource_kind kind, const char *ns, const char *name, bool settled, void *arg)
{
	struct app *a = arg;
	char key[400];

	if (settled || reconciler_key(key, sizeof(key), kind, ns, name) != 0)
		return;
	workqueue_add(a->queue, key);
}

static void
enqueue_unsettled(const struct cache_item *it, void *arg)
{
	on_change(it->kind, it->namespace, it->name, it->settled, arg);
}

/* Settled removals, copied out so their pairs can be looked up after the scan. */
struct settled_removals {
	struct cache_item **v;
	size_t n, cap;
};

static void
collect_settled_removal(const struct cache_item *it, void *arg)
{
	struct settled_removals *s = arg;
	struct cache_item **grown;

	if (!it->settled)
		return;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		grown = realloc(s->v, s->cap * sizeof(*grown));
		if (!grown)
			return;
		s->v = grown;
	}
	if ((s->v[s->n] = cache_item_dup(it)) != NULL)
		s->n++;
}

/*
 * Every unsettled object is queued. A removal is a standing rule, so a
 * settled one is queued too when a membership of its pair exists (one
 * index lookup each): an opt-out always wins, whatever came first.
 */
static void
resync(struct app *a)
{
	struct settled_removals s = { 0 };

	for (int k = 0; k < KIND__COUNT; k++)
		cache_foreach(a->cache, (enum resource_kind)k, enqueue_unsettled, a);
	cache_foreach(a->cache, KIND_REMOVAL, collect_settled_removal, &s);
	for (size_t i = 0; i < s.n; i++) {
		const struct cache_item *it = s.v[i];
		char key[400];

		if (cache_pair_foreach(a->cache, KIND_MEMBERSHIP, it->u.pair.contact_namespace,
		    it->u.pair.contact_name, it->u.pair.group_namespace, it->u.pair.group_name,
		    NULL, NULL) && reconciler_key(key, sizeof(key), KIND_REMOVAL, it->namespace,
		    it->name) == 0)
			workqueue_add(a->queue, key);
		free(s.v[i]);
	}
	free(s.v);
}

static void
on_leadership(bool is_leader, void *arg)
{
	struct app *a = arg;

	metric_set(metric_get(a->m_leader, (const char *const[]){ a->o.lease_name }),
	    is_leader ? 1 : 0);
	if (is_leader)
		resync(a);	/* pick up whatever the previous leader left */
}

/* Waits ms or until stopping; true when stopping. */
static bool
nap(struct app *a, long ms)
{
	struct timespec until;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&a->lock);
	while (!atomic_load(&a->stopping) &&
	    pthread_cond_timedwait(&a->wake, &a->lock, &until) == 0)
		;
	stop = atomic_load(&a->stopping);
	pthread_mutex_unlock(&a->lock);
	return stop;
}

static void *
worker(void *arg)
{
	struct app *a = arg;

	while (!atomic_load(&a->stopping)) {
		char *key;
		long next;
		const char *result;
		char kind[64];

		/*
		 * Only the leader writes; the others keep their cache warm and
		 * wait. Nothing is reconciled before every kind has listed
		 * (controller-runtime's WaitForCacheSync): a removal judged
		 * before the memberships arrived would miss them.
		 */
		if (!leading(a) || !cache_synced(a->cache)) {
			nap(a, 100);
			continue;
		}
		key = workqueue_get(a->queue, 1000);
		if (!key)
			continue;
		next = reconciler_run(&a->r, key);
		if (next < 0) {
			unsigned long delay;

			workqueue_add_backoff(a->queue, key, &delay);
			result = "error";
			log_limited(LOG_INFO, "reconcile failed; retrying", "s:s, s:i", "key", key,
			    "retryInMs", (int)delay);
		} else {
			workqueue_forget(a->queue, key);
			if (next > 0)
				workqueue_add_after(a->queue, key, (unsigned long)next);
			result = next > 0 ? "requeue" : "success";
		}
		snprintf(kind, sizeof(kind), "%.*s", (int)strcspn(key, "/"), key);
		metric_inc(metric_get(a->r.m_reconciles, (const char *const[]){ kind, result }));
		workqueue_done(a->queue, key);
		free(key);
		metric_set(metric_get(a->r.m_depth, NULL), (double)workqueue_len(a->queue));
	}
	return NULL;
}

static void *
resyncer(void *arg)
{
	struct app *a = arg;

	/* Once every kind has listed, a full pass sees all of them at once. */
	while (!cache_synced(a->cache))
		if (nap(a, 100))
			return NULL;
	log_info("caches synced", "{s:i, s:i, s:i, s:i}",
	    "contacts", (int)cache_count(a->cache, KIND_CONTACT),
	    "contactgroups", (int)cache_count(a->cache, KIND_CONTACT_GROUP),
	    "contactgroupmemberships", (int)cache_count(a->cache, KIND_MEMBERSHIP),
	    "contactgroupmembershipremovals", (int)cache_count(a->cache, KIND_REMOVAL));
	if (leading(a))
		resync(a);
	while (!nap(a, (long)a->o.resync_ms))
		if (leading(a))
			resync(a);
	return NULL;
}

/* ---- HTTP ---- */

static int
serve_healthz(const struct httpd_request *req, struct httpd_reply *reply, void *arg)
{
	(void)req;
	(void)arg;
	return httpd_reply_text(reply, 200, "ok");
}

static int
serve_readyz(const struct httpd_request *req, struct httpd_reply *reply, void *arg)
{
	struct app *a = arg;

	(void)req;
	if (atomic_load(&a->draining))
		return httpd_reply_text(reply, 500, "not ready: shutting down");
	if (cache_unsynced(a->cache)) {
		char why[128];

		snprintf(why, sizeof(why), "not ready: waiting for the %s cache to sync",
		    cache_unsynced(a->cache));
		return httpd_reply_text(reply, 500, why);
	}
	return httpd_reply_text(reply, 200, "ok");
}

static int
serve_provider_webhook(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct app *a = arg;
	const char *why = "";
	int status;

	status = provider_events_handle(a->events, httpd_header(req, "svix-id"),
	    httpd_header(req, "svix-timestamp"), httpd_header(req, "svix-signature"),
	    req->body, req->body_len, &why);
	if (status != 200)
		log_warn("provider webhook refused", "{s:i, s:s, s:s?}", "status", status,
		    "reason", why, "svixId", httpd_header(req, "svix-id"));
	return httpd_reply_text(reply, status, why);
}

static char *
read_secret(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char *s;
	size_t n;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	s = calloc(1, SECRET_FILE_MAX + 1);
	n = s ? fread(s, 1, SECRET_FILE_MAX, f) : 0;
	fclose(f);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
	if (!n) {
		snprintf(err, errlen, "%s: empty", path);
		free(s);
		return NULL;
	}
	return s;
}

static int
setup(struct app *a, char *err, size_t errlen)
{
	static const char *const by_kind_result[] = { "kind", "result", NULL };
	static const char *const by_name[] = { "name", NULL };
	struct resend_config rc = { 0 };
	struct kube_config kc;
	char cert[4096], key[4096], *api_key = NULL, host[128];
	int rc_;

	a->metrics = metrics_new();
	if (!a->metrics)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	a->r.m_reconciles = metrics_counter(a->metrics, "controller_runtime_reconcile_total",
	    "Reconciles by kind and result (success, requeue, error).", by_kind_result);
	a->r.m_depth = metrics_gauge(a->metrics, "workqueue_depth",
	    "Keys waiting in the work queue.", NULL);
	a->m_leader = metrics_gauge(a->metrics, "leader_election_master_status",
	    "1 while this replica holds the Lease.", by_name);
	if (procmetrics_register(a->metrics, NULL) != 0)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	if ((rc_ = kubeconfig_resolve(a->o.kubeconfig, &kc, err, errlen)) != 0)
		return rc_;
	rc_ = kube_client_new(&kc, &a->kube, err, errlen);
	if (!a->o.lease_namespace && kc.namespace)
		a->o.lease_namespace = a->lease_namespace = strdup(kc.namespace);
	if (!a->o.lease_namespace)
		a->o.lease_namespace = "milo-contacts";
	kube_config_free(&kc);
	if (rc_)
		return rc_;
	a->metrics_guard = (struct authn_guard){ .handler = httpd_serve_metrics,
	    .arg = a->metrics };
	if (a->o.metrics_auth && authn_new(&(struct authn_config){ .client = a->kube,
	    .metrics = a->metrics }, &a->metrics_guard.authn) != 0)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	if (a->o.api_key_file) {
		api_key = read_secret(a->o.api_key_file, err, errlen);
		if (!api_key)
			return -EINVAL;
	} else if (getenv("RESEND_API_KEY")) {
		api_key = strdup(getenv("RESEND_API_KEY"));
	}
	rc.base_url = a->o.base_url;
	rc.api_key = api_key;
	rc.rate = a->o.rate;
	rc.ca_file = a->o.provider_ca_file;
	rc.metrics = a->metrics;
	rc.user_agent = RECONCILER_PROGRAM "/" MILO_VERSION;
	rc_ = resend_new(&rc, &a->resend, err, errlen);
	if (api_key)
		explicit_bzero(api_key, strlen(api_key));
	free(api_key);
	if (rc_) {
		if (rc_ == -EINVAL)
			snprintf(err, errlen, "no Resend API key: set RESEND_API_KEY or "
			    "--resend-api-key-file");
		return rc_;
	}
	/*
	 * The secret is optional: the Deployment mounts the key with
	 * optional: true, so a missing file turns provider events off.
	 */
	if (a->o.webhook_secret_file && access(a->o.webhook_secret_file, F_OK) != 0 &&
	    errno == ENOENT) {
		log_warn("provider events off: the webhook signing secret file does not "
		    "exist; POST /webhooks/resend answers 404", "{s:s}", "file",
		    a->o.webhook_secret_file);
	} else if (!a->o.webhook_secret_file) {
		log_info("provider events off: no --resend-webhook-secret-file; "
		    "POST /webhooks/resend answers 404", NULL);
	} else {
		char *secret = read_secret(a->o.webhook_secret_file, err, errlen);
		unsigned char *k = NULL;
		size_t klen = 0;

		if (!secret)
			return -EINVAL;
		rc_ = svix_secret_parse(secret, &k, &klen);
		explicit_bzero(secret, strlen(secret));
		free(secret);
		if (rc_ != SVIX_OK)
			return snprintf(err, errlen, "%s: %s", a->o.webhook_secret_file,
			    svix_strerror(rc_)), -EINVAL;
		rc_ = provider_events_new(&a->r, k, klen, &a->events);
		svix_key_free(k, klen);
		if (rc_)
			return snprintf(err, errlen, "out of memory"), rc_;
	}
	snprintf(cert, sizeof(cert), "%s/tls.crt", a->o.cert_dir);
	snprintf(key, sizeof(key), "%s/tls.key", a->o.cert_dir);
	{
		struct tls_config tc = {
			.cert_file = a->o.cert_file ? a->o.cert_file : cert,
			.key_file = a->o.key_file ? a->o.key_file : key,
			.min_version = a->o.tls_min_version, .metrics = a->metrics,
		};

		if ((rc_ = tls_store_open(&tc, &a->tls, err, errlen)) != 0)
			return rc_;
		tls_store_watch(a->tls, 0);
	}
	if (cache_new(a->kube, &a->cache) != 0 || workqueue_new(&a->queue) != 0)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	a->r.kube = a->kube;
	a->r.cache = a->cache;
	a->r.resend = a->resend;
	a->r.queue = a->queue;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "reconciler");
	host[sizeof(host) - 1] = '\0';
	srand((unsigned int)time(NULL) ^ (unsigned int)getpid());
	snprintf(a->identity, sizeof(a->identity), "%s_%08x", host, (unsigned int)rand());
	a->r.instance = a->identity;
	return 0;
}

static int
start(struct app *a, char *err, size_t errlen)
{
	static struct httpd_route routes[4];
	struct httpd_config hc = { 0 };
	int n = 0, rc;

	routes[n++] = (struct httpd_route){ .path = "/healthz", .methods = HTTPD_GET,
	    .handler = serve_healthz, .arg = a };
	routes[n++] = (struct httpd_route){ .path = "/readyz", .methods = HTTPD_GET,
	    .handler = serve_readyz, .arg = a };
	routes[n++] = (struct httpd_route){ .path = "/metrics", .methods = HTTPD_GET,
	    .handler = authn_guard_serve, .arg = &a->metrics_guard };
	if (a->events)
		routes[n++] = (struct httpd_route){ .path = "/webhooks/resend",
		    .methods = HTTPD_POST, .content_type = "application/json",
		    .max_body = RECONCILER_EVENT_BODY_MAX, .handler = serve_provider_webhook,
		    .arg = a };
	hc.bind_address = a->o.bind_address;
	hc.port = (uint16_t)a->o.port;
	hc.tls = a->tls;
	hc.threads = 2;
	hc.routes = routes;
	hc.n_routes = (size_t)n;
	cache_on_change(a->cache, on_change, a);
	if ((rc = cache_start(a->cache)) != 0)
		return snprintf(err, errlen, "cannot start the cache"), rc;
	if ((rc = httpd_start(&hc, &a->httpd, err, errlen)) != 0)
		return rc;
	if (a->o.leader_elect) {
		struct lease_config lc = {
			.client = a->kube, .namespace = a->o.lease_namespace,
			.name = a->o.lease_name, .identity = a->identity,
			.duration_s = a->o.lease_duration_s,
			.renew_deadline_s = a->o.renew_deadline_s,
			.retry_period_s = a->o.retry_period_s,
			.on_change = on_leadership, .arg = a,
		};

		if ((rc = lease_start(&lc, &a->lease)) != 0)
			return snprintf(err, errlen, "cannot start leader election"), rc;
	} else {
		on_leadership(true, a);
	}
	for (; a->n_workers < a->o.workers; a->n_workers++)
		if (pthread_create(&a->workers[a->n_workers], NULL, worker, a) != 0)
			return snprintf(err, errlen, "cannot start workers"), -EAGAIN;
	if (pthread_create(&a->resyncer, NULL, resyncer, a) != 0)
		return snprintf(err, errlen, "cannot start the resync"), -EAGAIN;
	a->resyncer_started = true;
	log_info("contact-reconciler started", "{s:s, s:i, s:b, s:s, s:i}", "apiServer",
	    kube_client_server(a->kube), "port", (int)httpd_port(a->httpd), "leaderElect",
	    a->o.leader_elect, "identity", a->identity, "workers", (int)a->o.workers);
	return 0;
}

static void
stop(struct app *a)
{
	atomic_store(&a->draining, true);
	atomic_store(&a->stopping, true);
	pthread_mutex_lock(&a->lock);
	pthread_cond_broadcast(&a->wake);
	pthread_mutex_unlock(&a->lock);
	if (a->queue)
		workqueue_shutdown(a->queue);
	for (unsigned int i = 0; i < a->n_workers; i++)
		pthread_join(a->workers[i], NULL);
	if (a->resyncer_started)
		pthread_join(a->resyncer, NULL);
	lease_stop(a->lease);	/* a leader hands the Lease back */
	if (a->httpd)
		httpd_stop(a->httpd, HTTPD_STOP_TIMEOUT_MS);
	cache_free(a->cache);
	workqueue_free(a->queue);
	provider_events_free(a->events);
	resend_free(a->resend);
	tls_store_free(a->tls);
	authn_free(a->metrics_guard.authn);
	kube_client_free(a->kube);
	metrics_free(a->metrics);
	free(a->lease_namespace);
}

/* SIGHUP: the serving certificate is read again now (it is also polled). */
static void
reload(void *arg)
{
	struct app *a = arg;

	log_info("SIGHUP: reading the serving certificate again", NULL);
	tls_store_reload(a->tls, "SIGHUP");
}

int
main(int argc, char **argv)
{
	struct app a = { 0 };
	char err[512] = "";
	sigset_t sigs;
	int rc, sig;

	a.o.bind_address = "0.0.0.0";
	a.o.port = RECONCILER_DEFAULT_PORT;
	a.o.cert_dir = "/tmp/k8s-webhook-server/serving-certs";
	a.o.leader_elect = true;
	a.o.metrics_auth = true;
	a.o.lease_name = RECONCILER_PROGRAM;
	a.o.lease_duration_s = LEASE_DURATION_S;
	a.o.renew_deadline_s = LEASE_RENEW_DEADLINE_S;
	a.o.retry_period_s = LEASE_RETRY_PERIOD_S;
	a.o.workers = RECONCILER_DEFAULT_WORKERS;
	a.o.resync_ms = RECONCILER_DEFAULT_RESYNC_S * 1000UL;
	rc = parse_flags(argc, argv, &a.o);
	if (rc)
		return rc > 0 ? 0 : 2;
	signals_block(&sigs);
	pthread_mutex_init(&a.lock, NULL);
	pthread_cond_init(&a.wake, NULL);
	if (setup(&a, err, sizeof(err)) != 0 || start(&a, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", RECONCILER_PROGRAM, err);
		stop(&a);
		return 1;
	}
	sig = signals_wait(&sigs, -1, reload, &a);
	log_info("stopping", "{s:s}", "signal", signals_name(sig));
	stop(&a);
	pthread_mutex_destroy(&a.lock);
	pthread_cond_destroy(&a.wake);
	return 0;
}
