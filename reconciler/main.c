/* main.c -- contact-reconciler: wiring, workers, leader election, signals */
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
#include "clock.h"
#include "httpd.h"
#include "kube.h"
#include "kubeconfig.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "procmetrics.h"
#include "provider_http.h"
#include "provider.h"
#include "reconciler.h"
#include "signals.h"
#include "svix.h"
#include "tls.h"
#include "workqueue.h"

#define SECRET_FILE_MAX 4096
#define QUEUE_NAME "contact-reconciler"	/* the work queue metrics' name label */

struct app {
	struct reconciler_options o;
	struct reconciler r;
	struct kube_client *kube;
	struct cache *cache;
	struct workqueue *queue;
	struct provider *provider;
	struct lease *lease;
	struct metrics *metrics;
	struct tls_store *tls;
	struct httpd *httpd;
	struct provider_events *events;
	struct audit *audit;			/* --provider-audit-period */
	char events_path[64];			/* POST /webhooks/<provider> */
	struct authn_guard metrics_guard;	/* /metrics; .authn NULL: open */
	pthread_t workers[RECONCILER_MAX_WORKERS];
	unsigned int n_workers;
	pthread_t resyncer;
	bool resyncer_started;
	char *lease_namespace;		/* owned when taken from the kubeconfig */
	atomic_bool stopping, draining;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* on CLOCK_MONOTONIC */
	struct metric *m_leader;
	struct metric_series *m_resyncs;	/* milo_reconciler_resyncs_total */
	struct metric *m_reconciles;	/* controller_runtime_reconcile_total{controller,result} */
	struct metric *m_errors;	/* controller_runtime_reconcile_errors_total{controller} */
	struct metric *m_time;		/* controller_runtime_reconcile_time_seconds{controller} */
	char identity[256];
};

static bool
leading(struct app *a)
{
	return !a->lease || lease_leading(a->lease);
}

static bool
audit_leading(void *arg)
{
	return leading(arg) && !atomic_load(&((struct app *)arg)->stopping);
}

/* The provider's writes stop the moment the lease is no longer ours. */
static long
write_budget(void *arg)
{
	struct app *a = arg;

	return a->lease ? lease_remaining_ms(a->lease) : PROVIDER_HTTP_TIMEOUT_MS;
}

/* Unsettled objects are queued; settled ones need nothing (steady state: no calls). */
static void
on_change(enum resource_kind kind, const char *ns, const char *name, bool settled, void *arg)
{
	struct app *a = arg;
	char key[RECONCILER_KEY_MAX];

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
	size_t standing = 0;

	for (int k = 0; k < KIND__COUNT; k++)
		cache_foreach(a->cache, (enum resource_kind)k, enqueue_unsettled, a);
	cache_foreach(a->cache, KIND_REMOVAL, collect_settled_removal, &s);
	for (size_t i = 0; i < s.n; i++) {
		const struct cache_item *it = s.v[i];
		char key[RECONCILER_KEY_MAX];

		if (cache_pair_foreach(a->cache, KIND_MEMBERSHIP, it->u.pair.contact_namespace,
		    it->u.pair.contact_name, it->u.pair.group_namespace, it->u.pair.group_name,
		    NULL, NULL) && reconciler_key(key, sizeof(key), KIND_REMOVAL, it->namespace,
		    it->name) == 0) {
			workqueue_add(a->queue, key);
			standing++;
		}
		free(s.v[i]);
	}
	free(s.v);
	metric_inc(a->m_resyncs);
	log_debug("resync", LOG_INT("queue", workqueue_len(a->queue)),
	    LOG_INT("standing_removals", standing));
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
nap(struct app *a, unsigned long ms)
{
	bool stop;

	pthread_mutex_lock(&a->lock);
	if (!atomic_load(&a->stopping))
		clock_cond_wait(&a->wake, &a->lock, ms);
	stop = atomic_load(&a->stopping);
	pthread_mutex_unlock(&a->lock);
	return stop;
}

/* Puts a key back as its reconcile asked, and counts how it went. */
static void
finish(struct app *a, const char *key, const struct reconcile_result *res, double seconds)
{
	const char *controller = reconciler_controller(key);
	unsigned long delay = 0;

	if (res->backoff) {
		workqueue_add_backoff(a->queue, key, &delay);
		/* The provider's retry-after, when longer than the backoff. */
		if (res->after_ms > delay)
			workqueue_add_after(a->queue, key, res->after_ms);
		log_limited(LOG_LEVEL_INFO, "reconcile failed; retrying",
		    LOG_STR("key", key),
		    LOG_INT("retryInMs", res->after_ms > delay ? res->after_ms : delay));
	} else {
		workqueue_forget(a->queue, key);
		if (strcmp(res->result, "requeue") == 0)
			workqueue_add(a->queue, key);
		else if (res->after_ms)
			workqueue_add_after(a->queue, key, res->after_ms);
	}
	metric_inc(metric_get(a->m_reconciles,
	    (const char *const[]){ controller, res->result }));
	if (strcmp(res->result, "error") == 0)
		metric_inc(metric_get(a->m_errors, (const char *const[]){ controller }));
	metric_observe(metric_get(a->m_time, (const char *const[]){ controller }), seconds);
}

static void *
worker(void *arg)
{
	struct app *a = arg;

	while (!atomic_load(&a->stopping)) {
		struct reconcile_result res;
		double started;
		char *key;

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
		started = clock_mono();
		reconciler_run(&a->r, key, &res);
		finish(a, key, &res, clock_mono() - started);
		workqueue_done(a->queue, key);
		free(key);
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
	log_info("caches synced", LOG_INT("contacts", cache_count(a->cache, KIND_CONTACT)),
	    LOG_INT("contactgroups", cache_count(a->cache, KIND_CONTACT_GROUP)),
	    LOG_INT("contactgroupmemberships", cache_count(a->cache, KIND_MEMBERSHIP)),
	    LOG_INT("contactgroupmembershipremovals", cache_count(a->cache, KIND_REMOVAL)));
	if (leading(a))
		resync(a);
	while (!nap(a, a->o.resync_ms))
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

static const char *
request_header(const void *arg, const char *name)
{
	return httpd_header(arg, name);
}

static int
serve_provider_webhook(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct app *a = arg;
	const char *why = "";
	int status;

	status = provider_events_handle(a->events, request_header, req, req->body,
	    req->body_len, &why);
	if (status != 200)
		log_warn("provider webhook refused",
		    LOG_STR("provider", a->provider->ops->name), LOG_INT("status", status),
		    LOG_STR("reason", why));
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

static void
wipe(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

/*
 * The webhook signing key: Resend's whsec_ secret (its base64 key) or
 * Mailgun's key as it is. The file is optional (the Deployment mounts it
 * with optional: true): a missing one turns provider events off.
 */
static int
webhook_key(struct app *a, const struct reconciler_provider_flags *pf, unsigned char **key,
    size_t *len, char *err, size_t errlen)
{
	char *secret;
	int rc;

	*key = NULL;
	*len = 0;
	if (!pf->webhook_secret_file || (access(pf->webhook_secret_file, F_OK) != 0 &&
	    errno == ENOENT)) {
		log_info("provider events off: no webhook signing secret",
		    LOG_STR("provider", a->o.provider),
		    LOG_STR("file", pf->webhook_secret_file));
		return 0;
	}
	if (!(secret = read_secret(pf->webhook_secret_file, err, errlen)))
		return -EINVAL;
	if (strcmp(a->o.provider, "resend") == 0) {
		rc = svix_secret_parse(secret, key, len);
		if (rc != SVIX_OK)
			snprintf(err, errlen, "%s: %s", pf->webhook_secret_file, svix_strerror(rc));
		rc = rc == SVIX_OK ? 0 : -EINVAL;
	} else {
		*len = strlen(secret);
		*key = (unsigned char *)strdup(secret);
		rc = *key ? 0 : -ENOMEM;
	}
	wipe(secret);
	return rc;
}

static int
setup_provider(struct app *a, char *err, size_t errlen)
{
	const struct reconciler_provider_flags *pf = strcmp(a->o.provider, "mailgun") == 0 ?
	    &a->o.mailgun : &a->o.resend;
	const char *env = strcmp(a->o.provider, "mailgun") == 0 ? "MAILGUN_API_KEY" :
	    "RESEND_API_KEY";
	struct provider_options po = {
		.base_url = pf->base_url, .rate = pf->rate, .ca_file = pf->ca_file,
		.domain = pf->domain, .bulk_window_ms = (unsigned long)pf->bulk_window_ms,
		.user_agent = RECONCILER_PROGRAM "/" RECONCILER_VERSION,
		.metrics = a->metrics, .write_budget_ms = write_budget, .write_budget_arg = a,
	};
	char *api_key = NULL;
	unsigned char *key = NULL;
	size_t key_len = 0;
	int rc;

	if (pf->api_key_file) {
		if (!(api_key = read_secret(pf->api_key_file, err, errlen)))
			return -EINVAL;
	} else if (getenv(env)) {
		api_key = strdup(getenv(env));
	}
	if ((rc = webhook_key(a, pf, &key, &key_len, err, errlen)) != 0) {
		wipe(api_key);
		return rc;
	}
	po.api_key = api_key;
	po.webhook_key = key;
	po.webhook_key_len = key_len;
	rc = provider_new(a->o.provider, &po, &a->provider, err, errlen);
	wipe(api_key);
	if (key)
		explicit_bzero(key, key_len);
	free(key);
	if (rc)
		return rc;
	if (po.webhook_key) {
		if ((rc = provider_events_new(&a->r, &a->events)) != 0)
			return snprintf(err, errlen, "out of memory"), rc;
		snprintf(a->events_path, sizeof(a->events_path), "/webhooks/%s",
		    a->provider->ops->name);
	}
	return 0;
}

static int
setup_metrics(struct app *a, char *err, size_t errlen)
{
	static const char *const by_controller_result[] = { "controller", "result", NULL };
	static const char *const by_controller[] = { "controller", NULL };
	static const char *const by_name[] = { "name", NULL };

	a->metrics = metrics_new();
	if (!a->metrics)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	a->m_reconciles = metrics_counter(a->metrics, "controller_runtime_reconcile_total",
	    "Reconciles per controller and result (success, error, requeue, requeue_after).",
	    by_controller_result);
	a->m_errors = metrics_counter(a->metrics, "controller_runtime_reconcile_errors_total",
	    "Reconciles that ended in an error, per controller.", by_controller);
	a->m_time = metrics_histogram(a->metrics, "controller_runtime_reconcile_time_seconds",
	    "How long reconciles took, per controller.", by_controller,
	    metrics_latency_buckets, metrics_latency_buckets_len);
	a->m_leader = metrics_gauge(a->metrics, "leader_election_master_status",
	    "1 while this replica holds the Lease.", by_name);
	a->m_resyncs = metric_get(metrics_counter(a->metrics, "milo_reconciler_resyncs_total",
	    "Resyncs done: unsettled objects and standing removals queued again (on "
	    "leading, then every --resync-period).", NULL), NULL);
	if (!a->m_reconciles || !a->m_errors || !a->m_time || !a->m_leader || !a->m_resyncs ||
	    procmetrics_register(a->metrics, NULL) != 0)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	/* Every series at zero from the start, as controller-runtime does, so rates work. */
	for (int k = 0; k < KIND__COUNT; k++) {
		static const char *const results[] = { "success", "error", "requeue",
			"requeue_after" };
		const char *c = kind_info((enum resource_kind)k)->singular;

		for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
			metric_get(a->m_reconciles, (const char *const[]){ c, results[i] });
		metric_get(a->m_errors, (const char *const[]){ c });
		metric_get(a->m_time, (const char *const[]){ c });
	}
	return 0;
}

static int
setup(struct app *a, char *err, size_t errlen)
{
	struct kube_config kc;
	char cert[4096], key[4096], host[128];
	int rc;

	if ((rc = setup_metrics(a, err, errlen)) != 0)
		return rc;
	if ((rc = kubeconfig_resolve(a->o.kubeconfig, &kc, err, errlen)) != 0)
		return rc;
	rc = kube_client_new(&kc, &a->kube, err, errlen);
	if (!a->o.lease_namespace && kc.namespace)
		a->o.lease_namespace = a->lease_namespace = strdup(kc.namespace);
	if (!a->o.lease_namespace)
		a->o.lease_namespace = "milo-contacts";
	kube_config_free(&kc);
	if (rc)
		return rc;
	a->metrics_guard = (struct authn_guard){ .handler = httpd_serve_metrics,
	    .arg = a->metrics };
	if (a->o.metrics_auth && authn_new(&(struct authn_config){ .client = a->kube,
	    .metrics = a->metrics }, &a->metrics_guard.authn) != 0)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	if ((rc = setup_provider(a, err, errlen)) != 0)
		return rc;
	snprintf(cert, sizeof(cert), "%s/tls.crt", a->o.cert_dir);
	snprintf(key, sizeof(key), "%s/tls.key", a->o.cert_dir);
	{
		struct tls_config tc = {
			.cert_file = a->o.cert_file ? a->o.cert_file : cert,
			.key_file = a->o.key_file ? a->o.key_file : key,
			.min_version = a->o.tls_min_version, .metrics = a->metrics,
		};

		if ((rc = tls_store_open(&tc, &a->tls, err, errlen)) != 0)
			return rc;
		tls_store_watch(a->tls, 0);
	}
	if (cache_new(a->kube, &a->cache) != 0 || workqueue_new(&a->queue) != 0 ||
	    workqueue_instrument(a->queue, a->metrics, QUEUE_NAME) != 0)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
	a->r.kube = a->kube;
	a->r.cache = a->cache;
	a->r.provider = a->provider;
	a->r.queue = a->queue;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "reconciler");
	host[sizeof(host) - 1] = '\0';
	srand((unsigned int)time(NULL) ^ (unsigned int)getpid());
	snprintf(a->identity, sizeof(a->identity), "%s_%08x", host, (unsigned int)rand());
	a->r.instance = a->identity;
	if (audit_new(&a->r, &(struct audit_config){ .period_ms = a->o.audit_period_ms,
	    .leading = audit_leading, .arg = a, .metrics = a->metrics }, &a->audit) != 0)
		return snprintf(err, errlen, "out of memory"), -ENOMEM;
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
		routes[n++] = (struct httpd_route){ .path = a->events_path,
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
			.duration_s = (unsigned int)(a->o.lease_duration_ms / 1000),
			.renew_deadline_s = (unsigned int)(a->o.renew_deadline_ms / 1000),
			.retry_period_s = (unsigned int)(a->o.retry_period_ms / 1000),
			.on_change = on_leadership, .arg = a,
		};

		if ((rc = lease_start(&lc, &a->lease)) != 0)
			return snprintf(err, errlen, "cannot start leader election"), rc;
	} else {
		on_leadership(true, a);
	}
	for (; a->n_workers < (unsigned int)a->o.workers; a->n_workers++)
		if (pthread_create(&a->workers[a->n_workers], NULL, worker, a) != 0)
			return snprintf(err, errlen, "cannot start workers"), -EAGAIN;
	if (pthread_create(&a->resyncer, NULL, resyncer, a) != 0)
		return snprintf(err, errlen, "cannot start the resync"), -EAGAIN;
	a->resyncer_started = true;
	if (audit_start(a->audit) != 0)
		return snprintf(err, errlen, "cannot start the provider audit"), -EAGAIN;
	log_info("contact-reconciler started",
	    LOG_STR("apiServer", kube_client_server(a->kube)),
	    LOG_STR("provider", a->provider->ops->name),
	    LOG_INT("port", httpd_port(a->httpd)),
	    LOG_BOOL("leaderElect", a->o.leader_elect), LOG_STR("identity", a->identity),
	    LOG_INT("workers", a->o.workers));
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
	audit_free(a->audit);
	lease_stop(a->lease);	/* a leader hands the Lease back */
	if (a->httpd)
		httpd_stop(a->httpd, HTTPD_STOP_TIMEOUT_MS);
	cache_free(a->cache);
	workqueue_free(a->queue);
	provider_events_free(a->events);
	provider_free(a->provider);
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

	log_info("SIGHUP: reading the serving certificate again");
	tls_store_reload(a->tls, "SIGHUP");
}

int
main(int argc, char **argv)
{
	struct app a = { 0 };
	char err[512] = "";
	sigset_t sigs;
	int sig;

	reconciler_options_defaults(&a.o);
	switch (reconciler_parse_flags(argc, argv, &a.o, err, sizeof(err))) {
	case FLAGS_DONE:
		return 0;
	case FLAGS_BAD:
		fprintf(stderr, "%s: %s\n", RECONCILER_PROGRAM, err);
		return 2;
	case FLAGS_RUN:
		break;
	}
	signals_block(&sigs);
	pthread_mutex_init(&a.lock, NULL);
	clock_cond_init(&a.wake);
	if (setup(&a, err, sizeof(err)) != 0 || start(&a, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", RECONCILER_PROGRAM, err);
		stop(&a);
		return 1;
	}
	sig = signals_wait(&sigs, -1, reload, &a);
	log_info("stopping", LOG_STR("signal", signals_name(sig)));
	stop(&a);
	pthread_mutex_destroy(&a.lock);
	pthread_cond_destroy(&a.wake);
	return 0;
}
