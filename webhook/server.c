/* server.c -- contact-webhook's routes: the admission endpoints, health, readiness, metrics */
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admission.h"
#include "authn.h"
#include "cache.h"
#include "clock.h"
#include "kube.h"
#include "kubeconfig.h"
#include "subjects.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "procmetrics.h"
#include "webhook.h"

#define N_ENDPOINTS (2 * KIND__COUNT)
#define N_ROUTES (N_ENDPOINTS + 3)

/* Why a review's API call was not made on a serving thread, when it could not wait elsewhere. */
#define BUSY "every thread that may wait for the API server is busy"

/* One admission endpoint and its metric series, resolved once. */
struct endpoint {
	struct webhook *w;
	enum resource_kind kind;
	enum admission_mode mode;
	const char *path;
	struct metric_series *in_flight;
	struct metric_series *latency;
	struct metric_series *code_200;
	struct metric_series *allowed;
	struct metric_series *denied;
};

struct webhook {
	struct metrics *metrics;
	/* Cluster state; all NULL when no API server is configured (stateless). */
	struct kube_client *kube;
	struct cache *cache;
	struct subjects *subjects;
	struct admission_env env;
	struct metric *cached;		/* milo_webhook_cache_objects{kind} */
	struct tls_store *tls;
	struct httpd *httpd;
	atomic_bool draining;
	struct log_limit log_limit;
	bool trim_pending;		/* a burst to give back (main thread only) */
	uint64_t last_trim_s;
	struct metric_series *too_complex;	/* reviews over WEBHOOK_MAX_REVIEW_VALUES */
	struct metric_series *deferred;	/* reviews that waited for the API server */
	struct metric *requests;	/* {webhook, code} */
	struct endpoint endpoints[N_ENDPOINTS];
	struct httpd_route routes[N_ROUTES];
	struct authn_guard metrics_guard;	/* /metrics; .authn NULL: open */
};

static double
ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/*
 * Allowed reviews are a debug line each; denials an info line, at most
 * WEBHOOK_DENIAL_LOG_PER_S a second, the next one written saying how many
 * were left out (and webhook_tick() when no next one comes).
 */
static void
log_decision(struct webhook *w, const struct endpoint *ep,
    const struct admission_outcome *out, double ms)
{
	enum log_level level = out->allowed ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO;
	unsigned long suppressed = 0;
	struct log_field f[] = {
		LOG_STR("webhook", ep->path), LOG_STR("uid", out->uid),
		LOG_STR("kind", out->kind), LOG_STR("namespace", out->namespace),
		LOG_STR("name", out->name), LOG_STR("operation", out->operation),
		LOG_BOOL("allowed", out->allowed), LOG_BOOL("dry_run", out->dry_run),
		LOG_BOOL("patched", out->patched), LOG_FLOAT("ms", ms),
		LOG_INT("suppressed", 0),	/* last: written when nonzero */
	};
	size_t n = sizeof(f) / sizeof(f[0]);

	if (!log_enabled(level) || (level == LOG_LEVEL_INFO &&
	    !log_limit_pass(&w->log_limit, &suppressed)))
		return;
	f[n - 1].v.i = (long long)suppressed;
	log_fields(level, "admission", f, suppressed ? n : n - 1);
}

static void
log_refused(struct webhook *w, const struct endpoint *ep, int status,
    const char *reason)
{
	unsigned long suppressed = 0;
	struct log_field f[] = {
		LOG_STR("webhook", ep->path), LOG_INT("status", status),
		LOG_STR("reason", reason),
		LOG_INT("suppressed", 0),	/* last: written when nonzero */
	};
	size_t n = sizeof(f) / sizeof(f[0]);

	if (!log_enabled(LOG_LEVEL_INFO) || !log_limit_pass(&w->log_limit, &suppressed))
		return;
	f[n - 1].v.i = (long long)suppressed;
	log_fields(LOG_LEVEL_INFO, "admission request refused", f, suppressed ? n : n - 1);
}

/*
 * The JSON members and array elements of text, counted from its
 * structure without parsing (a container counts for its first one, each
 * comma for another), stopping past limit.
 */
static size_t
json_values(const char *text, size_t len, size_t limit)
{
	const char *p = text, *end = text + len;
	size_t n = 0;

	for (; p < end && n <= limit; p++) {
		if (*p == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
		} else if (*p == ',' || *p == '[' || *p == '{') {
			n++;
		}
	}
	return n;
}

/*
 * The instant by which the review is answered: kube-apiserver's
 * ?timeout= from when its header came in, less the margin.
 */
static uint64_t
review_deadline(const struct httpd_request *req)
{
	const char *t = httpd_query(req, "timeout");
	uint64_t ms = WEBHOOK_REVIEW_TIMEOUT_MS, margin;

	if (t && (flags_duration_ms(t, &ms) != 0 || ms == 0))
		ms = WEBHOOK_REVIEW_TIMEOUT_MS;
	if (ms > WEBHOOK_MAX_REVIEW_TIMEOUT_MS)
		ms = WEBHOOK_MAX_REVIEW_TIMEOUT_MS;
	margin = ms / 5 < WEBHOOK_ANSWER_MARGIN_MS ? ms / 5 :
	    WEBHOOK_ANSWER_MARGIN_MS;
	return req->received_ms + ms - margin;
}

static int
refuse_complex(struct endpoint *ep, struct httpd_reply *reply)
{
	char text[200];

	metric_inc(ep->w->too_complex);
	snprintf(text, sizeof(text), "request body too complex: an "
	    "AdmissionReview may hold at most %d JSON members and array "
	    "elements\n", WEBHOOK_MAX_REVIEW_VALUES);
	log_refused(ep->w, ep, 413, "more JSON values than a review may hold");
	return httpd_reply_text(reply, 413, text);
}

/*
 * Runs the review. On a serving thread the API server may not be called
 * (the cache answers most reviews): a review that needs it is handed to
 * a thread that may wait, up to the review's deadline, and only when no
 * such thread is free is it answered here, with the fail-closed 503 that
 * says what could not be verified.
 */
static int
review(struct endpoint *ep, const struct httpd_request *req,
    struct admission_outcome *out, bool *defer)
{
	struct webhook *w = ep->w;
	int rc;

	*defer = false;
	if (!w->kube)
		return admission_handle(NULL, ep->kind, ep->mode, req->body,
		    req->body_len, out);
	kube_thread_deadline(review_deadline(req));
	kube_thread_forbid(req->may_block ? NULL : BUSY);
	rc = admission_handle(&w->env, ep->kind, ep->mode, req->body,
	    req->body_len, out);
	*defer = !req->may_block && kube_thread_refused() > 0;
	kube_thread_forbid(NULL);
	kube_thread_deadline(0);
	if (rc == 0 && *defer && httpd_defer(req)) {
		admission_outcome_free(out);
		metric_inc(w->deferred);
		return HTTPD_DEFER;
	}
	*defer = false;
	return rc;
}

static int
serve_admission(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct endpoint *ep = arg;
	struct admission_outcome out;
	struct timespec t0;
	bool deferred;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (req->body_len > 2 * (size_t)WEBHOOK_MAX_REVIEW_VALUES &&
	    json_values(req->body, req->body_len, WEBHOOK_MAX_REVIEW_VALUES) >
	    WEBHOOK_MAX_REVIEW_VALUES)
		return refuse_complex(ep, reply);
	rc = review(ep, req, &out, &deferred);
	if (rc)
		return rc;
	reply->status = out.http_status;
	reply->content_type = out.content_type;
	reply->body = out.body;
	reply->body_len = out.body_len;
	out.body = NULL;
	if (out.http_status == 200) {
		metric_inc(out.allowed ? ep->allowed : ep->denied);
		log_decision(ep->w, ep, &out, ms_since(&t0));
	} else {
		log_refused(ep->w, ep, out.http_status, out.reason);
	}
	admission_outcome_free(&out);
	return 0;
}

static int
serve_healthz(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	(void)req;
	(void)arg;
	return httpd_reply_text(reply, 200, "ok");
}

/* Ready: the certificate is loaded (it is, once serving) and not draining. */
static int
serve_readyz(const struct httpd_request *req, struct httpd_reply *reply,
    void *arg)
{
	struct webhook *w = arg;

	(void)req;
	if (atomic_load(&w->draining))
		return httpd_reply_text(reply, 503, "not ready: shutting down");
	if (tls_store_generation(w->tls) == 0)
		return httpd_reply_text(reply, 503, "not ready: no certificate loaded");
	if (w->cache && !cache_synced(w->cache))
		return httpd_reply_text(reply, 503, "not ready: caches not synced");
	return httpd_reply_text(reply, 200, "ok");
}

/* /metrics, with the cache sizes read at scrape time. */
static int
serve_metrics(const struct httpd_request *req, struct httpd_reply *reply, void *arg)
{
	struct webhook *w = arg;

	for (int k = 0; w->cache && k < KIND__COUNT; k++)
		metric_set(metric_get(w->cached, (const char *const[]){
		    kind_info((enum resource_kind)k)->kind }),
		    (double)cache_count(w->cache, (enum resource_kind)k));
	return httpd_serve_metrics(req, reply, w->metrics);
}

static void
on_begin(const struct httpd_route *route, void *arg)
{
	struct endpoint *ep = route->arg;

	(void)arg;
	metric_inc(ep->in_flight);
}

static void
on_end(const struct httpd_route *route, int status, double seconds, void *arg)
{
	struct endpoint *ep = route->arg;
	struct webhook *w = arg;
	char code[16];

	metric_dec(ep->in_flight);
	if (status == 0)
		return;		/* the client went away before an answer */
	metric_observe(ep->latency, seconds);
	if (status == 200) {
		metric_inc(ep->code_200);
	} else {
		snprintf(code, sizeof(code), "%d", status);
		metric_inc(metric_get(w->requests,
		    (const char *const[]){ ep->path, code }));
	}
}

/*
 * controller-runtime's webhook metrics, so existing dashboards work, with
 * the 200 and 500 series present from the start as there.
 */
static int
register_metrics(struct webhook *w)
{
	static const char *const by_webhook[] = { "webhook", NULL };
	static const char *const by_code[] = { "webhook", "code", NULL };
	static const char *const by_allowed[] = { "webhook", "allowed", NULL };
	struct metric *latency, *in_flight, *decisions;

	w->requests = metrics_counter(w->metrics,
	    "controller_runtime_webhook_requests_total",
	    "Total number of admission requests by HTTP status code.", by_code);
	latency = metrics_histogram(w->metrics,
	    "controller_runtime_webhook_latency_seconds",
	    "Histogram of the latency of processing admission requests.",
	    by_webhook, metrics_latency_buckets, metrics_latency_buckets_len);
	in_flight = metrics_gauge(w->metrics,
	    "controller_runtime_webhook_requests_in_flight",
	    "Current number of admission requests being served.", by_webhook);
	decisions = metrics_counter(w->metrics,
	    "milo_webhook_admission_decisions_total",
	    "Admission reviews answered, by whether the request was allowed.",
	    by_allowed);
	w->too_complex = metric_get(metrics_counter(w->metrics,
	    "milo_webhook_reviews_too_complex_total",
	    "Reviews refused unparsed (413) for holding more JSON values than "
	    "a review may.", NULL), NULL);
	w->deferred = metric_get(metrics_counter(w->metrics,
	    "milo_webhook_reviews_waited_total",
	    "Reviews the watch cache could not answer, answered on a thread "
	    "that waits for the API server.", NULL), NULL);
	if (!w->requests || !latency || !in_flight || !decisions ||
	    !w->too_complex || !w->deferred || procmetrics_register(w->metrics, NULL) != 0)
		return -ENOMEM;
	for (int i = 0; i < N_ENDPOINTS; i++) {
		struct endpoint *ep = &w->endpoints[i];
		const char *p = ep->path;

		ep->code_200 = metric_get(w->requests,
		    (const char *const[]){ p, "200" });
		(void)metric_get(w->requests, (const char *const[]){ p, "500" });
		ep->latency = metric_get(latency, (const char *const[]){ p });
		ep->in_flight = metric_get(in_flight, (const char *const[]){ p });
		ep->allowed = metric_get(decisions,
		    (const char *const[]){ p, "true" });
		ep->denied = metric_get(decisions,
		    (const char *const[]){ p, "false" });
		if (!ep->code_200 || !ep->latency || !ep->in_flight ||
		    !ep->allowed || !ep->denied)
			return -ENOMEM;
	}
	return 0;
}

static void
build_routes(struct webhook *w)
{
	int i = 0;

	for (int m = 0; m < 2; m++) {
		for (int k = 0; k < KIND__COUNT; k++, i++) {
			struct endpoint *ep = &w->endpoints[i];

			ep->w = w;
			ep->kind = (enum resource_kind)k;
			ep->mode = m ? ADMISSION_MUTATE : ADMISSION_VALIDATE;
			ep->path = admission_path(ep->kind, ep->mode);
			w->routes[i] = (struct httpd_route){
				.path = ep->path,
				.methods = HTTPD_POST,
				.content_type = "application/json",
				.max_body = WEBHOOK_MAX_BODY,
				.handler = serve_admission,
				.arg = ep,
				.observe = true,
				.client_cert = true,
			};
		}
	}
	w->routes[i++] = (struct httpd_route){ .path = "/healthz",
	    .methods = HTTPD_GET, .handler = serve_healthz, .arg = w };
	w->routes[i++] = (struct httpd_route){ .path = "/readyz",
	    .methods = HTTPD_GET, .handler = serve_readyz, .arg = w };
	w->metrics_guard = (struct authn_guard){ .handler = serve_metrics, .arg = w };
	w->routes[i++] = (struct httpd_route){ .path = "/metrics",
	    .methods = HTTPD_GET, .handler = authn_guard_serve,
	    .arg = &w->metrics_guard };
}

static void
webhook_free(struct webhook *w)
{
	authn_free(w->metrics_guard.authn);
	pthread_mutex_destroy(&w->log_limit.lock);
	cache_free(w->cache);
	subjects_free(w->subjects);
	kube_client_free(w->kube);
	tls_store_free(w->tls);
	metrics_free(w->metrics);
	free(w);
}

/*
 * The cluster-state rules need the API server: --kubeconfig, $KUBECONFIG
 * or the in-cluster service account. With none of them the webhook runs
 * the stateless rules only, and says so.
 */
static int
connect_cluster(struct webhook *w, const struct webhook_options *o, char *err,
    size_t errlen)
{
	static const char *const by_kind[] = { "kind", NULL };
	struct kube_config kc;
	int rc = kubeconfig_resolve(o->kubeconfig, &kc, err, errlen);

	if (rc == -ENOENT && !o->kubeconfig) {
		log_warn("no Kubernetes API configured: only the rules that need no "
		    "cluster state run, and /metrics is open", LOG_STR("reason", err));
		err[0] = '\0';
		return 0;
	}
	if (rc)
		return rc;
	rc = kube_client_new(&kc, &w->kube, err, errlen);
	kube_config_free(&kc);
	if (rc)
		return rc;
	w->cached = metrics_gauge(w->metrics, "milo_webhook_cache_objects",
	    "Objects in the watch cache, by kind.", by_kind);
	if (cache_new(w->kube, &w->cache) == 0 && o->watch_backoff_ms)
		cache_set_backoff(w->cache, (unsigned int)o->watch_backoff_ms);
	if (!w->cache || subjects_new(w->kube, &w->subjects) != 0 ||
	    cache_start(w->cache) != 0) {
		snprintf(err, errlen, "cannot start the watch cache");
		return -ENOMEM;
	}
	w->env = (struct admission_env){ .cache = w->cache, .client = w->kube,
	    .subjects = w->subjects, .verify_subjects = o->verify_subjects };
	if (o->metrics_auth && authn_new(&(struct authn_config){ .client = w->kube,
	    .metrics = w->metrics }, &w->metrics_guard.authn) != 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	log_info("cluster-state rules on",
	    LOG_STR("apiServer", kube_client_server(w->kube)),
	    LOG_BOOL("verifySubjects", o->verify_subjects),
	    LOG_BOOL("metricsAuth", o->metrics_auth));
	return 0;
}

int
webhook_start(const struct webhook_options *o, struct webhook **out,
    char *err, size_t errlen)
{
	struct webhook *w = calloc(1, sizeof(*w));
	struct tls_config tc;
	struct httpd_config hc;
	int rc;

	*out = NULL;
	if (!w || !(w->metrics = metrics_new())) {
		free(w);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	atomic_init(&w->draining, false);
	log_limit_init(&w->log_limit, 1000, WEBHOOK_DENIAL_LOG_PER_S);
	w->last_trim_s = clock_mono_ms() / 1000;
	build_routes(w);
	rc = register_metrics(w);
	if (rc) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	tc = (struct tls_config){
		.cert_file = o->cert_file,
		.key_file = o->key_file,
		.client_ca_file = o->client_ca_file,
		.min_version = o->tls_min_version,
		.metrics = w->metrics,
	};
	rc = tls_store_open(&tc, &w->tls, err, errlen);
	if (rc)
		goto fail;
	rc = connect_cluster(w, o, err, errlen);
	if (rc)
		goto fail;
	if (o->cert_poll_ms) {
		rc = tls_store_watch(w->tls, (unsigned int)(o->cert_poll_ms >
		    86400000 ? 86400000 : o->cert_poll_ms));
		if (rc) {
			snprintf(err, errlen, "cannot start the certificate "
			    "watcher: %s", strerror(-rc));
			goto fail;
		}
	}
	hc = (struct httpd_config){
		.bind_address = o->bind_address,
		.port = o->port,
		.threads = o->threads,
		.tls = w->tls,
		.routes = w->routes,
		.n_routes = N_ROUTES,
		.conn_limit = o->max_connections,
		.per_ip_limit = o->max_connections_per_ip,
		.read_header_timeout_ms = o->read_header_timeout_ms,
		.read_timeout_ms = o->read_timeout_ms,
		.write_timeout_ms = o->write_timeout_ms,
		.idle_timeout_ms = o->idle_timeout_ms,
		.body_budget = (size_t)o->max_body_inflight,
		.metrics = w->metrics,
		.begin = on_begin,
		.end = on_end,
		.hook_arg = w,
	};
	rc = httpd_start(&hc, &w->httpd, err, errlen);
	if (rc)
		goto fail;
	*out = w;
	return 0;
fail:
	webhook_free(w);
	return rc;
}

void
webhook_drain(struct webhook *w)
{
	atomic_store(&w->draining, true);
}

void
webhook_tick(struct webhook *w)
{
	uint64_t now_s = clock_mono_ms() / 1000;
	unsigned long suppressed = log_limit_drain(&w->log_limit);
	struct httpd_load load;

	if (suppressed)
		log_info("admission lines not logged (rate limit)",
		    LOG_INT("suppressed", suppressed),
		    LOG_INT("per_second", WEBHOOK_DENIAL_LOG_PER_S));
	/*
	 * Request bodies and their trees are freed at the end of each
	 * request, but glibc keeps freed heap for reuse: after a burst (and
	 * now and then anyway) it goes back to the system.
	 */
	httpd_load(w->httpd, &load);
	if (load.body_bytes_peak >= WEBHOOK_TRIM_AFTER_BYTES ||
	    load.connections_peak >= load.connections +
	    WEBHOOK_TRIM_AFTER_CONNECTIONS)
		w->trim_pending = true;
	if ((w->trim_pending && load.body_bytes < WEBHOOK_TRIM_AFTER_BYTES) ||
	    now_s - w->last_trim_s >= WEBHOOK_TRIM_PERIOD_S) {
		(void)malloc_trim(0);
		w->trim_pending = false;
		w->last_trim_s = now_s;
	}
}

void
webhook_reload(struct webhook *w)
{
	(void)tls_store_reload(w->tls, "SIGHUP");
}

int
webhook_stop(struct webhook *w)
{
	int rc;

	webhook_drain(w);
	httpd_set_draining(w->httpd, true);
	rc = httpd_stop(w->httpd, HTTPD_STOP_TIMEOUT_MS);
	if (rc == -ETIMEDOUT)
		log_warn("stopped with requests still in flight",
		    LOG_INT("timeout_ms", HTTPD_STOP_TIMEOUT_MS));
	webhook_free(w);
	return rc;
}
