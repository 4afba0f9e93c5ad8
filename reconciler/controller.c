/* controller.c -- one reconcile per key: finalizers, provider calls, status, Events */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "codec.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "provider.h"
#include "reconciler.h"
#include "validate.h"
#include "workqueue.h"

/*
 * A membership waiting for its contact or group is woken when they sync
 * (enqueue_refs); this is only the safety net.
 */
#define WAIT_FOR_DEPENDENCY_MS 30000
#define WAIT_FOR_DEPENDENTS_MS 1000	/* a contact or group waiting for its memberships */
#define REPORT_AFTER_FAILURES 3		/* a provider blip goes into status on the 3rd in a row */
#define WAIT_FOR_BULK_MS 1000		/* a member queued for a bulk request, when it says no more */

/* One object being reconciled: its latest JSON and what we decoded of it. */
struct obj {
	enum resource_kind kind;
	char ns[VALIDATE_LABEL_MAX + 1], name[VALIDATE_SUBDOMAIN_MAX + 1];
	char path[KUBE_PATH_MAX];
	json_t *json;		/* the latest version we have (owned) */
	struct resource res;
	json_t *status_extra;	/* status fields set beside the conditions (owned), or NULL */
	bool refused;		/* the provider refused this generation: an error, not retried */
	long retry_after_ms;	/* the provider asked for this delay, or -1 */
	unsigned int failures;	/* the key's failures in a row before this reconcile */
	char did[512];		/* the last change made at the provider, for a drift repair */
};

static void
obj_free(struct obj *o)
{
	json_decref(o->json);
	json_decref(o->status_extra);
	resource_free(&o->res);
}

/* Sets status.<key> on the next status write. Takes value. */
static void
obj_status_set(struct obj *o, const char *key, json_t *value)
{
	if (!o->status_extra)
		o->status_extra = json_object();
	if (o->status_extra)
		json_object_set_new(o->status_extra, key, value);
	else
		json_decref(value);
}

/* Replaces the JSON and decoded form with a newer version of the object. */
static int
obj_set(struct obj *o, json_t *json)
{
	struct field_list errs;
	int rc;

	json_decref(o->json);
	resource_free(&o->res);
	o->json = json;
	field_list_init(&errs);
	rc = resource_decode(json, o->kind, &o->res, &errs);
	field_list_free(&errs);
	return rc;
}

int
reconciler_key(char *out, size_t len, enum resource_kind kind, const char *ns,
    const char *name)
{
	int n = snprintf(out, len, "%s/%s/%s", kind_info(kind)->kind, ns, name);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int
parse_key(const char *key, enum resource_kind *kind, char *ns, size_t nslen, char *name,
    size_t namelen)
{
	const char *a = strchr(key, '/'), *b = a ? strchr(a + 1, '/') : NULL;
	char kname[64];

	if (!a || !b || (size_t)(a - key) >= sizeof(kname) || (size_t)(b - a - 1) >= nslen ||
	    strlen(b + 1) >= namelen)
		return -EINVAL;
	memcpy(kname, key, (size_t)(a - key));
	kname[a - key] = '\0';
	memcpy(ns, a + 1, (size_t)(b - a - 1));
	ns[b - a - 1] = '\0';
	snprintf(name, namelen, "%s", b + 1);
	return kind_from_name(kname, kind);
}

/* GETs kind ns/name. 1: found (o filled), 0: gone, < 0: error. */
static int
fetch(struct reconciler *r, enum resource_kind kind, const char *ns, const char *name,
    struct obj *o)
{
	struct kube_response resp;
	int rc;

	memset(o, 0, sizeof(*o));
	o->kind = kind;
	snprintf(o->ns, sizeof(o->ns), "%s", ns);
	snprintf(o->name, sizeof(o->name), "%s", name);
	if (kube_path(o->path, sizeof(o->path), RESOURCE_GROUP, RESOURCE_VERSION, ns,
	    kind_info(kind)->plural, name, NULL) != 0)
		return -ENAMETOOLONG;
	rc = kube_get(r->kube, o->path, &resp);
	if (rc == -EIO && kube_is_not_found(&resp)) {
		kube_response_free(&resp);
		return 0;
	}
	if (rc) {
		log_limited(LOG_LEVEL_WARN, "reconcile: cannot read the object",
		    LOG_STR("path", o->path),
		    LOG_STR("error", resp.message ? resp.message : ""));
		kube_response_free(&resp);
		return rc;
	}
	rc = obj_set(o, json_incref(resp.body));
	kube_response_free(&resp);
	return rc ? rc : 1;
}

/* ---- finalizers ---- */

static bool
has_finalizer(const struct obj *o)
{
	const char *fin = kind_info(o->kind)->finalizer;

	for (size_t i = 0; fin && i < o->res.meta.n_finalizers; i++)
		if (strcmp(o->res.meta.finalizers[i], fin) == 0)
			return true;
	return false;
}

/*
 * Adds or removes our finalizer with an update carrying the resourceVersion
 * we read: a concurrent change makes it fail (409) and the key is retried.
 */
static int
set_finalizer(struct reconciler *r, struct obj *o, bool on)
{
	const char *fin = kind_info(o->kind)->finalizer;
	json_t *meta = json_object_get(o->json, "metadata"), *list = json_array(), *body;
	json_t *old = json_object_get(meta, "finalizers");
	struct kube_response resp;
	size_t i;
	json_t *f;
	int rc;

	if (!list)
		return -ENOMEM;
	json_array_foreach(old, i, f)
		if (!json_is_string(f) || strcmp(json_string_value(f), fin) != 0)
			json_array_append(list, f);
	if (on)
		json_array_append_new(list, json_string(fin));
	body = json_deep_copy(o->json);
	if (!body) {
		json_decref(list);
		return -ENOMEM;
	}
	json_object_set_new(json_object_get(body, "metadata"), "finalizers", list);
	rc = kube_update(r->kube, o->path, body, &resp);
	json_decref(body);
	if (rc == 0 && resp.body)
		rc = obj_set(o, json_incref(resp.body));
	else if (rc)
		log_limited(LOG_LEVEL_INFO,
		    "reconcile: finalizer update failed; will retry",
		    LOG_STR("path", o->path),
		    LOG_STR("error", resp.message ? resp.message : ""));
	kube_response_free(&resp);
	return rc;
}

/* ---- status ---- */

struct cond {
	const char *type, *status, *reason;
	char message[512];
};

static void
micro_now(char *out, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Sets one condition, keeping lastTransitionTime when its status did not change. */
static void
put_condition(json_t *conds, const struct cond *c, json_int_t generation)
{
	json_t *have = NULL, *fresh;
	size_t at = json_array_size(conds);
	const char *was;
	char now[32];

	for (size_t i = 0; i < json_array_size(conds); i++) {
		const char *t = json_string_value(json_object_get(json_array_get(conds, i), "type"));

		if (t && strcmp(t, c->type) == 0) {
			have = json_array_get(conds, i);
			at = i;
			break;
		}
	}
	micro_now(now, sizeof(now));
	was = json_string_value(json_object_get(have, "status"));
	if (was && strcmp(was, c->status) == 0 &&
	    json_string_value(json_object_get(have, "lastTransitionTime")))
		snprintf(now, sizeof(now), "%s",
		    json_string_value(json_object_get(have, "lastTransitionTime")));
	fresh = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "type", c->type, "status",
	    c->status, "observedGeneration", generation, "lastTransitionTime", now,
	    "reason", c->reason, "message", c->message);
	if (have)
		json_array_set_new(conds, at, fresh);
	else
		json_array_append_new(conds, fresh);
}

static void drift_closing(const struct obj *o, const struct cond *conds, size_t n,
    char *reason, size_t reason_len, char *found, size_t found_len);
static void drift_repaired(struct reconciler *r, struct obj *o, const char *reason,
    const char *found);

/*
 * Writes status through the status subresource: providerID (when given),
 * observedGeneration and the conditions, the others kept. A drift repair
 * the audit asked for is closed by the write that makes Ready True again.
 */
static int
write_status(struct reconciler *r, struct obj *o, const char *provider_id,
    const struct cond *conds, size_t n)
{
	json_t *body = json_deep_copy(o->json), *status, *list;
	json_int_t gen = o->res.meta.generation;
	struct kube_response resp;
	char path[KUBE_PATH_MAX + sizeof("/status")], drift[64] = "", found[512] = "";
	int rc;

	if (!body)
		return -ENOMEM;
	status = json_object_get(body, "status");
	if (!json_is_object(status)) {
		status = json_object();
		json_object_set_new(body, "status", status);
	}
	list = json_object_get(status, "conditions");
	if (!json_is_array(list)) {
		list = json_array();
		json_object_set_new(status, "conditions", list);
	}
	for (size_t i = 0; i < n; i++)
		put_condition(list, &conds[i], gen);
	drift_closing(o, conds, n, drift, sizeof(drift), found, sizeof(found));
	if (drift[0]) {
		struct cond closed = { .type = "ProviderDrift", .status = "False",
		    .reason = "Repaired" };

		if (snprintf(closed.message, sizeof(closed.message), "repaired: %s",
		    o->did[0] ? o->did : "the provider matches again") < 0)
			closed.message[0] = '\0';
		put_condition(list, &closed, gen);
	}
	json_object_set_new(status, "observedGeneration", json_integer(gen));
	if (provider_id)
		json_object_set_new(status, "providerID", json_string(provider_id));
	if (o->status_extra)
		json_object_update(status, o->status_extra);
	if (json_equal(status, json_object_get(o->json, "status"))) {
		json_decref(body);
		return 0;	/* nothing new to say */
	}
	snprintf(path, sizeof(path), "%s/status", o->path);
	rc = kube_update(r->kube, path, body, &resp);
	json_decref(body);
	if (rc == 0 && resp.body)
		rc = obj_set(o, json_incref(resp.body));
	else if (rc)
		log_limited(LOG_LEVEL_INFO, "reconcile: status update failed; will retry",
		    LOG_STR("path", o->path),
		    LOG_STR("error", resp.message ? resp.message : ""));
	kube_response_free(&resp);
	if (rc == 0 && drift[0])
		drift_repaired(r, o, drift, found);
	return rc;
}

static void
cond_set(struct cond *c, const char *type, bool ok, const char *reason,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
cond_set(struct cond *c, const char *type, bool ok, const char *reason, const char *fmt, ...)
{
	va_list ap;

	c->type = type;
	c->status = ok ? "True" : "False";
	c->reason = reason;
	va_start(ap, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, ap);
	va_end(ap);
}

/* Ready and ProviderSynced together, the usual pair. */
static int
report(struct reconciler *r, struct obj *o, const char *provider_id, bool ok,
    const char *reason, const char *message)
{
	struct cond c[2];

	cond_set(&c[0], "Ready", ok, reason, "%s", message);
	cond_set(&c[1], "ProviderSynced", ok, reason, "%s", message);
	return write_status(r, o, provider_id, c, 2);
}

/* ---- events ---- */

static void
record(struct reconciler *r, const struct obj *o, const char *type, const char *reason,
    const char *action, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

void
reconciler_event(struct reconciler *r, enum resource_kind kind, const char *ns,
    const char *name, const char *uid, const char *type, const char *reason,
    const char *action, const char *note)
{
	struct kube_event e = {
		.namespace = ns, .regarding_api_version = RESOURCE_API_VERSION,
		.regarding_kind = kind_info(kind)->kind, .regarding_name = name,
		.regarding_uid = uid, .type = type, .reason = reason,
		.action = action, .reporting_controller = RECONCILER_CONTROLLER,
		.reporting_instance = r->instance, .note = note,
	};
	struct kube_response resp;

	if (kube_event_create(r->kube, &e, &resp) != 0)
		log_limited(LOG_LEVEL_WARN, "reconcile: cannot record an Event",
		    LOG_STR("reason", reason),
		    LOG_STR("error", resp.message ? resp.message : ""));
	kube_response_free(&resp);
}

/* An events.k8s.io/v1 Event on the object: the activity log. Best effort. */
static void
record(struct reconciler *r, const struct obj *o, const char *type, const char *reason,
    const char *action, const char *fmt, ...)
{
	char note[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	reconciler_event(r, o->kind, o->ns, o->name, o->res.meta.uid, type, reason, action,
	    note);
}

/*
 * After a provider failure: say so in the log, status and an Event, and
 * decide how to go on. A refusal of this object's request (400, 404,
 * 422…) is final for this generation: reason ProviderRejected, which the
 * cache counts as settled, so neither the queue nor a resync sends it
 * again until the object changes; it still counts as a reconcile error.
 * Anything else (a refused key included) is retried with backoff, after
 * the provider's retry-after at least; a passing blip (429, 5xx, no
 * answer, a key being rotated) goes into status and one Event only once
 * it failed REPORT_AFTER_FAILURES times in a row, so it costs no API
 * writes and leaves no noise. A replica that lost its lease wrote nothing and says
 * nothing: the new leader takes over.
 */
static long
provider_failed(struct reconciler *r, struct obj *o, int rc, const char *call,
    struct provider_error *e)
{
	const char *reason = rc == PROVIDER_REFUSED ? "ProviderRejected" : "ProviderError";
	const char *why = e->message ? e->message : strerror(rc < 0 && rc > -4000 ? -rc : EIO);
	long next = rc == PROVIDER_REFUSED ? 0 : -EIO;

	if (rc == -ECANCELED) {
		provider_error_free(e);
		return -ECANCELED;
	}
	if (rc == PROVIDER_PENDING) {	/* in a bulk request: nothing failed, ask again */
		next = e->retry_after_ms > 0 ? e->retry_after_ms : WAIT_FOR_BULK_MS;
		provider_error_free(e);
		return next;
	}
	/* A refused key is logged by the provider client, once a minute. */
	if (rc != PROVIDER_UNAUTHORIZED)
		log_warn("provider call failed",
		    LOG_STR("provider", r->provider->ops->name),
		    LOG_STR("kind", kind_info(o->kind)->kind), LOG_STR("namespace", o->ns),
		    LOG_STR("name", o->name), LOG_STR("call", call), LOG_STR("error", why),
		    LOG_INT("failuresInARow", o->failures + 1));
	/* One Warning Event when a failure turns out to last, not one per retry. */
	if (rc == PROVIDER_REFUSED || o->failures + 1 >= REPORT_AFTER_FAILURES)
		report(r, o, NULL, false, reason, why);
	if (rc == PROVIDER_REFUSED || o->failures + 1 == REPORT_AFTER_FAILURES)
		record(r, o, "Warning", reason, call, "%s", why);
	o->refused = rc == PROVIDER_REFUSED;
	o->retry_after_ms = e->retry_after_ms;
	provider_error_free(e);
	return next;
}

/* An Event and an info line for a change made at the provider. */
static void
changed(struct reconciler *r, struct obj *o, const char *reason, const char *action,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
changed(struct reconciler *r, struct obj *o, const char *reason, const char *action,
    const char *fmt, ...)
{
	char note[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	if (snprintf(o->did, sizeof(o->did), "%s", note) >= (int)sizeof(o->did))
		o->did[sizeof(o->did) - 1] = '\0';	/* cut short: the Event note holds it all */
	log_info("provider changed", LOG_STR("provider", r->provider->ops->name),
	    LOG_STR("kind", kind_info(o->kind)->kind), LOG_STR("namespace", o->ns),
	    LOG_STR("name", o->name), LOG_STR("reason", reason), LOG_STR("note", note));
	record(r, o, "Normal", reason, action, "%s", note);
}

/*
 * changed() for what an ensure call did to a provider object of a noun
 * ("Group", "Contact"): reason <noun>Created|Adopted|Updated, action
 * Create|Adopt|Update<noun>.
 */
static void
ensured(struct reconciler *r, struct obj *o, enum provider_change did, const char *noun,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
ensured(struct reconciler *r, struct obj *o, enum provider_change did, const char *noun,
    const char *fmt, ...)
{
	const char *verb = did == PROVIDER_CREATED ? "Create" : did == PROVIDER_ADOPTED ?
	    "Adopt" : "Update";
	char reason[64], action[64], note[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	/* Create -> Created, Adopt -> Adopted, Update -> Updated */
	snprintf(reason, sizeof(reason), "%s%s%s", noun, verb, did == PROVIDER_ADOPTED ? "ed" :
	    "d");
	snprintf(action, sizeof(action), "%s%s", verb, noun);
	changed(r, o, reason, action, "%s", note);
}

static long
status_of(int rc)
{
	return rc ? -EAGAIN : 0;
}

static bool
is_settled(const struct obj *o)
{
	struct cache_item *it = cache_item_from_json(o->kind, o->json);
	bool s = it && it->settled;

	free(it);
	return s;
}

/* ---- kinds ---- */

/* Keys ("ns/name") of cached memberships or removals, copied out under the cache's lock. */
struct keys {
	char **v;
	size_t n, cap;
	bool skip_deleting;	/* leave out objects already being deleted */
	int oom;
};

static void
collect_key(const struct cache_item *it, void *arg)
{
	struct keys *k = arg;
	char **grown;

	if (k->skip_deleting && it->deleting)
		return;
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 8;

		grown = realloc(k->v, cap * sizeof(*grown));
		if (!grown) {
			k->oom = 1;
			return;
		}
		k->v = grown;
		k->cap = cap;
	}
	if (asprintf(&k->v[k->n], "%s/%s", it->namespace, it->name) >= 0)
		k->n++;
	else
		k->oom = 1;
}

static void
keys_free(struct keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	free(k->v);
	memset(k, 0, sizeof(*k));
}

/* Splits a collected "ns/name" in place. */
static const char *
key_split(char *key)
{
	char *slash = strchr(key, '/');

	*slash = '\0';
	return slash + 1;
}

/* Queues kind ns/name for a reconcile (another kind's change affects it). */
static void
enqueue(struct reconciler *r, enum resource_kind kind, const char *ns, const char *name)
{
	char key[RECONCILER_KEY_MAX];

	if (r->queue && reconciler_key(key, sizeof(key), kind, ns, name) == 0)
		workqueue_add(r->queue, key);
}

/*
 * Queues the memberships and removals that name one Contact or one
 * ContactGroup (found through the cache's indexes, not a scan): they wait
 * on its provider id, its deletion or its visibility.
 */
static void
enqueue_refs(struct reconciler *r, enum cache_ref by, const char *ns, const char *name)
{
	static const enum resource_kind kinds[] = { KIND_MEMBERSHIP, KIND_REMOVAL };

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct keys k = { 0 };

		cache_refs_foreach(r->cache, kinds[i], by, ns, name, collect_key, &k);
		for (size_t j = 0; j < k.n; j++) {
			const char *n = key_split(k.v[j]);

			enqueue(r, kinds[i], k.v[j], n);
		}
		keys_free(&k);
	}
}

/* DELETE kind ns/name. 1: deleted (or being deleted), 0: already gone, < 0: error. */
static int
delete_object(struct reconciler *r, enum resource_kind kind, const char *ns,
    const char *name)
{
	struct kube_response resp;
	char path[KUBE_PATH_MAX];
	int rc;

	if (kube_path(path, sizeof(path), RESOURCE_GROUP, RESOURCE_VERSION, ns,
	    kind_info(kind)->plural, name, NULL) != 0)
		return -ENAMETOOLONG;
	rc = kube_delete(r->kube, path, &resp);
	if (rc == 0)
		rc = 1;
	else if (kube_is_not_found(&resp))
		rc = 0;
	else
		log_limited(LOG_LEVEL_WARN, "reconcile: cannot delete",
		    LOG_STR("path", path),
		    LOG_STR("error", resp.message ? resp.message : ""));
	kube_response_free(&resp);
	return rc;
}

/*
 * Deletes the objects of kind named by k ("ns/name" keys; freed here);
 * *deleted counts those the API server took (gone once their finalizers
 * are done). 0, -ENOMEM when k is incomplete, -EIO when a delete failed.
 */
static int
delete_keys(struct reconciler *r, enum resource_kind kind, struct keys *k, size_t *deleted)
{
	int rc = k->oom ? -ENOMEM : 0;

	for (size_t i = 0; i < k->n && rc == 0; i++) {
		const char *name = key_split(k->v[i]);
		int d = delete_object(r, kind, k->v[i], name);

		if (d > 0)
			(*deleted)++;
		else if (d < 0)
			rc = -EIO;
	}
	keys_free(k);
	return rc;
}

/*
 * Before a Contact or ContactGroup lets go of its provider object: deletes
 * the memberships and removals that name it (Milo's controllers do the
 * same), so each membership's own finalizer takes the contact out of the
 * segment while both provider ids are still known. *left: how many still
 * exist; the caller waits for 0. Returns 0 or a negative errno.
 */
static int
delete_dependents(struct reconciler *r, const struct obj *o, enum cache_ref by, size_t *left)
{
	static const enum resource_kind kinds[] = { KIND_MEMBERSHIP, KIND_REMOVAL };
	int rc = 0;

	*left = 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && rc == 0; i++) {
		struct keys k = { 0 };

		cache_refs_foreach(r->cache, kinds[i], by, o->ns, o->name, collect_key, &k);
		rc = delete_keys(r, kinds[i], &k, left);	/* gone once their finalizers are done */
	}
	return rc;
}

static void
group_of(const struct obj *o, struct provider_group *g)
{
	*g = (struct provider_group){ .namespace = o->ns, .name = o->name,
	    .display_name = o->res.spec.group.display_name,
	    .description = o->res.spec.group.description,
	    .id = o->res.status.provider_id };
}

static long
reconcile_group(struct reconciler *r, struct obj *o)
{
	struct provider_error e = { NULL, -1 };
	struct provider_group g;
	enum provider_change did;
	char *id = NULL;
	int rc;

	if (o->res.meta.deletion_timestamp) {
		size_t left;

		if (!has_finalizer(o))
			return 0;
		if (delete_dependents(r, o, CACHE_BY_GROUP, &left) != 0)
			return -EIO;
		if (left)
			return WAIT_FOR_DEPENDENTS_MS;
		group_of(o, &g);
		if ((rc = r->provider->ops->group_delete(r->provider, &g, &e)) != 0) {
			long next = provider_failed(r, o, rc, "DeleteGroup", &e);

			return next ? next : -EIO;
		}
		if (g.id)
			changed(r, o, "GroupDeleted", "DeleteGroup", "deleted provider group %s",
			    g.id);
		return status_of(set_finalizer(r, o, false));
	}
	if (!has_finalizer(o) && (rc = set_finalizer(r, o, true)) != 0)
		return -EAGAIN;
	if (is_settled(o))
		return 0;
	group_of(o, &g);
	rc = r->provider->ops->group_ensure(r->provider, &g, &id, &did, &e);
	if (rc)
		return provider_failed(r, o, rc, "SyncGroup", &e);
	ensured(r, o, did, "Group", "%s provider group %s for \"%s\"",
	    provider_change_name(did), id, g.display_name ? g.display_name : o->name);
	rc = report(r, o, id, true, did == PROVIDER_CREATED ? "GroupCreated" : "Synced",
	    "the provider group matches this ContactGroup");
	free(id);
	/* Memberships wait on the group id; removals on the visibility. */
	enqueue_refs(r, CACHE_BY_GROUP, o->ns, o->name);
	return status_of(rc);
}

/* The provider ids of the groups a Contact is a member of (its memberships' groups). */
struct group_ids {
	const char **v;
	size_t n;
	struct keys groups;	/* "ns/name" of the groups, then their ids */
};

static void
collect_group(const struct cache_item *it, void *arg)
{
	struct keys *k = arg;
	struct cache_item g = { .namespace = it->u.pair.group_namespace,
	    .name = it->u.pair.group_name };

	collect_key(&g, k);
}

static int
contact_groups(struct reconciler *r, const struct obj *o, struct group_ids *out)
{
	memset(out, 0, sizeof(*out));
	cache_refs_foreach(r->cache, KIND_MEMBERSHIP, CACHE_BY_CONTACT, o->ns, o->name,
	    collect_group, &out->groups);
	if (out->groups.oom)
		return -ENOMEM;
	out->v = calloc(out->groups.n + 1, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	for (size_t i = 0; i < out->groups.n; i++) {
		char *key = out->groups.v[i];
		const char *name = key_split(key);
		struct cache_found f;
		int rc = cache_get(r->cache, KIND_CONTACT_GROUP, key, name, &f);

		if (rc < 0)
			return rc;
		if (rc == 1 && f.provider_id) {
			/* The key's storage now holds the id: one allocation to free. */
			free(out->groups.v[i]);
			out->groups.v[i] = f.provider_id;
			f.provider_id = NULL;
			out->v[out->n++] = out->groups.v[i];
		}
		cache_found_free(&f);
	}
	return 0;
}

static void
group_ids_free(struct group_ids *g)
{
	free(g->v);
	keys_free(&g->groups);
}

static void
contact_of(const struct obj *o, struct provider_contact *c)
{
	*c = (struct provider_contact){ .namespace = o->ns, .name = o->name,
	    .email = o->res.spec.contact.email, .given_name = o->res.spec.contact.given_name,
	    .family_name = o->res.spec.contact.family_name,
	    .id = o->res.status.provider_id };
}

/*
 * Another Contact, not being deleted, with this one's email (compared as
 * the webhook compares them): the provider keys its contact by the
 * address, so both are one provider contact, which must outlive this one.
 * *who gets "ns/name" (free it). 1, 0, or -ENOMEM.
 */
static int
email_shared(struct reconciler *r, const struct obj *o, char **who)
{
	char *ns = NULL, *name = NULL;
	struct cache_found f;
	int rc;

	*who = NULL;
	if (!o->res.spec.contact.email)
		return 0;
	rc = cache_contact_by_email(r->cache, o->res.spec.contact.email, o->ns, o->name, &ns,
	    &name);
	if (rc == 1) {
		rc = cache_get(r->cache, KIND_CONTACT, ns, name, &f);
		if (rc == 1 && f.deleting)
			rc = 0;		/* both going: each deletes, the second finds it gone */
		cache_found_free(&f);
		if (rc == 1 && asprintf(who, "%s/%s", ns, name) < 0)
			rc = -ENOMEM;
	}
	free(ns);
	free(name);
	return rc;
}

static long
reconcile_contact(struct reconciler *r, struct obj *o)
{
	struct provider_error e = { NULL, -1 };
	struct provider_contact c;
	struct group_ids groups;
	enum provider_change did;
	char *id = NULL, *other;
	long next;
	int rc;

	if (o->res.meta.deletion_timestamp) {
		size_t left;

		if (!has_finalizer(o))
			return 0;
		if (delete_dependents(r, o, CACHE_BY_CONTACT, &left) != 0)
			return -EIO;
		if (left)
			return WAIT_FOR_DEPENDENTS_MS;
		contact_of(o, &c);
		if ((rc = email_shared(r, o, &other)) < 0)
			return rc;
		if (rc == 1) {
			/*
			 * Deleting it would take the other Contact's memberships
			 * and any unsubscribe made at the provider with it.
			 */
			record(r, o, "Normal", "ProviderContactKept", "DeleteContact",
			    "provider contact %s kept: Contact %s has the same email",
			    c.id ? c.id : c.email, other);
			log_info("provider contact kept", LOG_STR("namespace", o->ns),
			    LOG_STR("name", o->name), LOG_STR("id", c.id), LOG_STR("shared_with", other));
			free(other);
			return status_of(set_finalizer(r, o, false));
		}
		if ((rc = r->provider->ops->contact_delete(r->provider, &c, NULL, 0, &e)) != 0) {
			next = provider_failed(r, o, rc, "DeleteContact", &e);
			return next ? next : -EIO;
		}
		if (c.id)
			changed(r, o, "ContactDeleted", "DeleteContact", "deleted provider contact %s",
			    c.id);
		return status_of(set_finalizer(r, o, false));
	}
	if (!has_finalizer(o) && set_finalizer(r, o, true) != 0)
		return -EAGAIN;
	if (is_settled(o) || !o->res.spec.contact.email)
		return 0;
	contact_of(o, &c);
	if (contact_groups(r, o, &groups) != 0) {
		group_ids_free(&groups);
		return -ENOMEM;
	}
	rc = r->provider->ops->contact_ensure(r->provider, &c, groups.v, groups.n, &id, &did, &e);
	group_ids_free(&groups);
	if (rc)
		return provider_failed(r, o, rc, "SyncContact", &e);
	if (did != PROVIDER_UNCHANGED)	/* Mailgun: a contact is only its list entries */
		ensured(r, o, did, "Contact", "%s provider contact %s for %s",
		    provider_change_name(did), id, c.email);
	rc = report(r, o, id, true, did == PROVIDER_CREATED ? "ContactCreated" : "Synced",
	    "the provider contact matches this Contact");
	free(id);
	/* Memberships wait on the contact id (and a provider may key members by email). */
	enqueue_refs(r, CACHE_BY_CONTACT, o->ns, o->name);
	return status_of(rc);
}

/* What a membership or removal needs to know of its contact and group. */
struct pair_ids {
	char *contact_id, *segment_id;	/* provider ids; NULL while unknown */
	char *username;			/* the Contact's userRef name, or NULL */
	char *email, *given_name, *family_name;	/* the Contact's, for the provider */
	char contact_ns[VALIDATE_LABEL_MAX + 1], contact_name[VALIDATE_SUBDOMAIN_MAX + 1];
	bool group_private, group_found, contact_found;
	bool contact_deleting, group_deleting;
};

static void
pair_ids_free(struct pair_ids *p)
{
	free(p->contact_id);
	free(p->segment_id);
	free(p->username);
	free(p->email);
	free(p->given_name);
	free(p->family_name);
}

static char *
dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* The Contact as the provider needs it to add or remove a member. */
static void
pair_contact(const struct pair_ids *p, struct provider_contact *c)
{
	*c = (struct provider_contact){ .namespace = p->contact_ns, .name = p->contact_name,
	    .email = p->email, .given_name = p->given_name, .family_name = p->family_name,
	    .id = p->contact_id };
}

static const char *
ref_ns(const struct object_ref *ref, const struct obj *o)
{
	return ref->namespace && ref->namespace[0] ? ref->namespace : o->ns;
}

/*
 * Reads the Contact and ContactGroup a membership or removal names (live,
 * so the provider ids are current) and sets status.username from the
 * Contact's subject, as Milo's controllers do for its field selectors.
 */
static int
pair_ids(struct reconciler *r, struct obj *o, struct pair_ids *p)
{
	const struct object_ref *cref = o->res.spec.membership.contact_ref;
	const struct object_ref *gref = o->res.spec.membership.group_ref;
	const struct subject *subj;
	struct obj c, g;
	int rc;

	memset(p, 0, sizeof(*p));
	if (!cref || !gref || !cref->name || !gref->name)
		return 0;
	rc = fetch(r, KIND_CONTACT, ref_ns(cref, o), cref->name, &c);
	if (rc < 0) {
		obj_free(&c);
		return rc;
	}
	if (rc == 1) {
		p->contact_found = true;
		p->contact_deleting = c.res.meta.deletion_timestamp != NULL;
		p->contact_id = dup_opt(c.res.status.provider_id);
		p->email = dup_opt(c.res.spec.contact.email);
		p->given_name = dup_opt(c.res.spec.contact.given_name);
		p->family_name = dup_opt(c.res.spec.contact.family_name);
		snprintf(p->contact_ns, sizeof(p->contact_ns), "%s", c.ns);
		snprintf(p->contact_name, sizeof(p->contact_name), "%s", c.name);
		subj = c.res.spec.contact.subject;
		if (subj && subj->user_ref && subj->user_ref->name)
			p->username = strdup(subj->user_ref->name);
	}
	obj_free(&c);
	/* Organization and project subjects have no user: the field is empty. */
	if (p->contact_found)
		obj_status_set(o, "username", json_string(p->username ? p->username : ""));
	rc = fetch(r, KIND_CONTACT_GROUP, ref_ns(gref, o), gref->name, &g);
	if (rc < 0) {
		obj_free(&g);
		return rc;
	}
	if (rc == 1) {
		p->group_found = true;
		p->group_deleting = g.res.meta.deletion_timestamp != NULL;
		p->group_private = g.res.spec.group.visibility == VISIBILITY_PRIVATE;
		if (g.res.status.provider_id)
			p->segment_id = strdup(g.res.status.provider_id);
	}
	obj_free(&g);
	return 0;
}

/*
 * The removals of a membership's pair, from the synced cache. An opt-out
 * from a public group is a standing rule: while one exists the contact is
 * never added, whatever arrived first.
 */
static size_t
pair_removals(struct reconciler *r, const struct obj *o, struct keys *k)
{
	const struct object_ref *c = o->res.spec.membership.contact_ref;
	const struct object_ref *g = o->res.spec.membership.group_ref;

	if (!c || !g || !c->name || !g->name)
		return 0;
	cache_pair_foreach(r->cache, KIND_REMOVAL, ref_ns(c, o), c->name, ref_ns(g, o),
	    g->name, collect_key, k);
	return k->n;
}

static long
membership_delete(struct reconciler *r, struct obj *o, const struct pair_ids *p)
{
	struct provider_error e = { NULL, -1 };
	struct provider_contact c;
	long next;
	int rc;

	/* A contact or group already gone took the membership with it. */
	if (p->contact_id && p->segment_id) {
		pair_contact(p, &c);
		rc = r->provider->ops->member_remove(r->provider, p->segment_id, &c, &e);
		if (rc) {
			next = provider_failed(r, o, rc, "RemoveMember", &e);
			return next ? next : -EIO;
		}
		changed(r, o, "RemovedFromGroup", "RemoveMember",
		    "removed provider contact %s from group %s", p->contact_id, p->segment_id);
	}
	return status_of(set_finalizer(r, o, false));
}

/* Why a membership cannot be added yet, or NULL when it can. */
static const char *
membership_blocked(const struct pair_ids *p)
{
	if (!p->contact_found)
		return "the Contact does not exist";
	if (!p->group_found)
		return "the ContactGroup does not exist";
	if (p->contact_deleting)
		return "the Contact is being deleted";
	if (p->group_deleting)
		return "the ContactGroup is being deleted";
	if (!p->contact_id)
		return "the Contact has no provider contact yet";
	if (!p->segment_id)
		return "the ContactGroup has no provider segment yet";
	return NULL;
}

static long
reconcile_membership(struct reconciler *r, struct obj *o)
{
	struct provider_error e = { NULL, -1 };
	struct keys removals = { 0 };
	struct provider_contact c;
	struct pair_ids p;
	const char *blocked;
	char pid[RECONCILER_PROVIDER_ID_MAX];
	long next = 0;
	int rc;

	if (o->res.meta.deletion_timestamp && !has_finalizer(o))
		return 0;
	if (!o->res.meta.deletion_timestamp && !has_finalizer(o) && set_finalizer(r, o, true) != 0)
		return -EAGAIN;
	if (!o->res.meta.deletion_timestamp && is_settled(o) && !pair_removals(r, o, &removals)) {
		keys_free(&removals);
		return 0;
	}
	if (pair_ids(r, o, &p) != 0) {
		keys_free(&removals);
		return -EIO;
	}
	if (o->res.meta.deletion_timestamp) {
		next = membership_delete(r, o, &p);
	} else if (!p.group_private && (removals.n || pair_removals(r, o, &removals))) {
		/* The removal's reconcile deletes this membership and counts it. */
		for (size_t i = 0; i < removals.n; i++) {
			const char *rname = key_split(removals.v[i]);

			enqueue(r, KIND_REMOVAL, removals.v[i], rname);
		}
		report(r, o, NULL, false, "OptedOut", "the contact opted out of this group "
		    "(a ContactGroupMembershipRemoval exists); it is not added and this "
		    "membership will be deleted");
	} else if ((blocked = membership_blocked(&p)) != NULL) {
		report(r, o, NULL, false, "Waiting", blocked);
		next = WAIT_FOR_DEPENDENCY_MS;
	} else if (is_settled(o)) {
		/* Settled, beside refused removals only (a private group): nothing to add. */
	} else if (pair_contact(&p, &c),
	    (rc = r->provider->ops->member_add(r->provider, p.segment_id, &c, &e)) != 0) {
		next = provider_failed(r, o, rc, "AddMember", &e);
	} else {
		changed(r, o, "AddedToGroup", "AddMember", "added provider contact %s to group %s",
		    p.contact_id, p.segment_id);
		snprintf(pid, sizeof(pid), "%s/%s", p.contact_id, p.segment_id);
		next = status_of(report(r, o, pid, true, "Added",
		    "the contact is in the provider group"));
	}
	keys_free(&removals);
	pair_ids_free(&p);
	return next;
}

/*
 * Deletes every membership of the removal's pair that is not already
 * going; their finalizers take the contact out of the segment. *deleted:
 * how many this call deleted. Returns 0 or a negative errno.
 */
static int
delete_memberships(struct reconciler *r, const struct obj *o, size_t *deleted)
{
	const struct object_ref *c = o->res.spec.membership.contact_ref;
	const struct object_ref *g = o->res.spec.membership.group_ref;
	struct keys k = { .skip_deleting = true };

	*deleted = 0;
	cache_pair_foreach(r->cache, KIND_MEMBERSHIP, ref_ns(c, o), c->name, ref_ns(g, o),
	    g->name, collect_key, &k);
	return delete_keys(r, KIND_MEMBERSHIP, &k, deleted);
}

/* status.membershipsRemoved so far: what this removal deleted over its life. */
static json_int_t
removed_so_far(const struct obj *o)
{
	return json_integer_value(json_object_get(json_object_get(o->json, "status"),
	    "membershipsRemoved"));
}

/*
 * An opt-out. From a public group it is a standing rule: every reconcile
 * deletes the memberships of the pair that exist now (the membership
 * controller enqueues the removal when one appears), and the contact is
 * taken out of the segment. From a private group it is refused.
 */
static long
reconcile_removal(struct reconciler *r, struct obj *o)
{
	const struct object_ref *cref = o->res.spec.membership.contact_ref;
	const struct object_ref *gref = o->res.spec.membership.group_ref;
	struct provider_error e = { NULL, -1 };
	struct provider_contact c;
	struct pair_ids p;
	size_t deleted = 0;
	int rc;
	json_int_t total;
	bool settled;
	long next = 0;

	if (o->res.meta.deletion_timestamp || !o->res.has_spec || !cref || !gref ||
	    !cref->name || !gref->name)
		return 0;
	settled = is_settled(o);
	if (settled && !cache_pair_foreach(r->cache, KIND_MEMBERSHIP, ref_ns(cref, o),
	    cref->name, ref_ns(gref, o), gref->name, NULL, NULL))
		return 0;	/* nothing to take out: no call at all */
	if (pair_ids(r, o, &p) != 0)
		return -EIO;
	if (!p.group_found) {
		report(r, o, NULL, false, "Waiting", "the ContactGroup does not exist");
		next = WAIT_FOR_DEPENDENCY_MS;
	} else if (p.group_private) {
		/* Only possible when the webhook was bypassed: refuse, change nothing. */
		if (!settled)
			record(r, o, "Warning", "Rejected", "RejectRemoval",
			    "opt-out from private ContactGroup %s refused", gref->name);
		report(r, o, NULL, false, "Rejected",
		    "the ContactGroup is private; contacts can opt out of public groups only");
	} else if ((rc = delete_memberships(r, o, &deleted)) != 0) {
		next = -EIO;
	} else if ((deleted || !settled) && p.contact_id && p.segment_id &&
	    (pair_contact(&p, &c),
	    rc = r->provider->ops->member_remove(r->provider, p.segment_id, &c, &e)) != 0) {
		next = provider_failed(r, o, rc, "RemoveMember", &e);
	} else {
		if ((deleted || !settled) && p.contact_id && p.segment_id)
			snprintf(o->did, sizeof(o->did), "removed provider contact %s from group %s",
			    p.contact_id, p.segment_id);
		total = removed_so_far(o) + (json_int_t)deleted;
		obj_status_set(o, "membershipsRemoved", json_integer(total));
		if (deleted || !settled)
			record(r, o, "Normal", "Removed", "RemoveFromSegment",
			    "the contact opted out: %zu membership(s) deleted now, %lld in all; "
			    "the contact is out of the provider group", deleted,
			    (long long)total);
		next = status_of(report(r, o, NULL, true, "Removed",
		    "the contact is out of the group and will not be added again"));
	}
	pair_ids_free(&p);
	return next;
}

const char *
reconciler_controller(const char *key)
{
	enum resource_kind kind;
	char name[64];

	snprintf(name, sizeof(name), "%.*s", (int)strcspn(key, "/"), key);
	if (kind_from_name(name, &kind) != 0)
		return "unknown";
	return kind_info(kind)->singular;
}

void
reconciler_run(struct reconciler *r, const char *key, struct reconcile_result *out)
{
	enum resource_kind kind;
	char ns[VALIDATE_LABEL_MAX + 1], name[VALIDATE_SUBDOMAIN_MAX + 1];
	struct obj o;
	long next;
	int rc;

	*out = (struct reconcile_result){ .result = "success" };
	if (parse_key(key, &kind, ns, sizeof(ns), name, sizeof(name)) != 0)
		return;
	rc = fetch(r, kind, ns, name, &o);
	o.retry_after_ms = -1;
	o.failures = r->queue ? workqueue_failures(r->queue, key) : 0;
	if (rc <= 0) {
		obj_free(&o);
		if (rc < 0)
			*out = (struct reconcile_result){ .result = "error", .backoff = true };
		return;		/* gone: nothing left to do */
	}
	switch (kind) {
	case KIND_CONTACT_GROUP:
		next = reconcile_group(r, &o);
		break;
	case KIND_CONTACT:
		next = reconcile_contact(r, &o);
		break;
	case KIND_MEMBERSHIP:
		next = reconcile_membership(r, &o);
		break;
	default:
		next = reconcile_removal(r, &o);
		break;
	}
	if (next == -ECANCELED)
		*out = (struct reconcile_result){ .result = "requeue" };	/* lost the lease */
	else if (next < 0)
		*out = (struct reconcile_result){ .result = "error", .backoff = true,
		    .after_ms = o.retry_after_ms > 0 ? (unsigned long)o.retry_after_ms : 0 };
	else if (next > 0)
		*out = (struct reconcile_result){ .result = "requeue_after",
		    .after_ms = (unsigned long)next };
	else if (o.refused)
		out->result = "error";	/* the provider refused it: not retried until it changes */
	obj_free(&o);
}

/* "2026-12-04T20:31:02.123Z" for Unix milliseconds. */
static void
ms_rfc3339(long long ms, char *out, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char base[32];

	gmtime_r(&t, &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03lldZ", base, ms % 1000);
}

static long long
rfc3339_ms(const char *s)
{
	struct tm tm = { 0 };
	const char *rest;
	long long ms = 0;
	int digits = 0;

	if (!s || !(rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return 0;
	if (*rest == '.')
		for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*rest - '0');
	for (; digits < 3; digits++)
		ms *= 10;
	return (long long)timegm(&tm) * 1000 + ms;
}

static bool
has_string(const json_t *array, const char *s)
{
	size_t i;
	json_t *v;

	json_array_foreach(array, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	return false;
}

int
reconciler_provider_event(struct reconciler *r, const char *ns, const char *name,
    const struct provider_event *ev, const char *type, const char *reason, const char *note)
{
	json_t *was = NULL, *ids, *pe;
	const char *last;
	char when[40];
	struct obj o;
	struct cond c;
	size_t n;
	int rc = fetch(r, KIND_CONTACT, ns, name, &o);

	if (rc <= 0) {
		obj_free(&o);
		return rc ? rc : -ENOENT;
	}
	was = json_object_get(json_object_get(o.json, "status"), "providerEvents");
	ids = json_object_get(was, "recentIDs");
	last = json_string_value(json_object_get(was, "lastChangeTime"));
	if (has_string(ids, ev->id) || (ev->unsubscribed >= 0 && ev->time_ms && last &&
	    ev->time_ms < rfc3339_ms(last))) {
		obj_free(&o);
		return -EALREADY;
	}
	record(r, &o, type, reason, "ProviderEvent", "%s", note);
	/* The newest RECONCILER_EVENT_IDS ids, oldest first. */
	pe = json_pack("{s:[]}", "recentIDs");
	n = json_array_size(ids);
	for (size_t i = n >= RECONCILER_EVENT_IDS ? n - RECONCILER_EVENT_IDS + 1 : 0; i < n; i++)
		json_array_append(json_object_get(pe, "recentIDs"), json_array_get(ids, i));
	json_array_append_new(json_object_get(pe, "recentIDs"), json_string(ev->id));
	if (last)
		json_object_set_new(pe, "lastChangeTime", json_string(last));
	if (ev->unsubscribed >= 0 && ev->time_ms) {
		ms_rfc3339(ev->time_ms, when, sizeof(when));
		json_object_set_new(pe, "lastChangeTime", json_string(when));
	}
	obj_status_set(&o, "providerEvents", pe);
	/* Keep the generation the status already observed: this is not a spec sync. */
	o.res.meta.generation = o.res.status.observed_generation;
	if (ev->unsubscribed >= 0) {
		cond_set(&c, "ProviderUnsubscribed", ev->unsubscribed, ev->unsubscribed ?
		    "Unsubscribed" : "Subscribed", "%s", ev->unsubscribed ?
		    "the recipient unsubscribed at the provider; no email will reach them" :
		    "the recipient is subscribed at the provider");
		rc = write_status(r, &o, NULL, &c, 1);
	} else {
		rc = write_status(r, &o, NULL, NULL, 0);
	}
	obj_free(&o);
	return rc;
}

static bool
in_segments(const json_t *segment_ids, const char *segment)
{
	size_t i;
	json_t *v;

	json_array_foreach(segment_ids, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), segment) == 0)
			return true;
	return false;
}

int
reconciler_membership_events(struct reconciler *r, const char *ns, const char *name,
    const json_t *group_ids, const char *type, const char *reason, const char *note)
{
	struct keys m = { 0 };
	int recorded = 0;

	if (!json_is_array(group_ids) || !json_array_size(group_ids))
		return 0;
	cache_refs_foreach(r->cache, KIND_MEMBERSHIP, CACHE_BY_CONTACT, ns, name, collect_key,
	    &m);
	for (size_t i = 0; i < m.n; i++) {
		const char *mname = key_split(m.v[i]), *pid, *segment;
		struct obj o;

		if (fetch(r, KIND_MEMBERSHIP, m.v[i], mname, &o) == 1) {
			/* A membership's providerID is "<contact id>/<group id>". */
			pid = o.res.status.provider_id;
			segment = pid ? strrchr(pid, '/') : NULL;
			if (segment && in_segments(group_ids, segment + 1)) {
				record(r, &o, type, reason, "ProviderEvent", "%s", note);
				recorded++;
			}
		}
		obj_free(&o);
	}
	keys_free(&m);
	return recorded;
}

/* ---- drift the provider audit found (audit.c) ---- */

/* The open ProviderDrift condition of o's status (True), or NULL. */
static const json_t *
drift_condition(const struct obj *o)
{
	const json_t *conds = json_object_get(json_object_get(o->json, "status"), "conditions");
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *st = json_string_value(json_object_get(c, "status"));

		if (t && strcmp(t, "ProviderDrift") == 0)
			return st && strcmp(st, "True") == 0 ? c : NULL;
	}
	return NULL;
}

/*
 * When this status write makes Ready True and a drift repair is open:
 * its reason and what was found (copied out: the write replaces o->json).
 */
static void
drift_closing(const struct obj *o, const struct cond *conds, size_t n, char *reason,
    size_t reason_len, char *found, size_t found_len)
{
	const char *r_text, *m_text;
	const json_t *drift;
	bool ready = false;

	for (size_t i = 0; i < n; i++)
		if (strcmp(conds[i].type, "Ready") == 0 && strcmp(conds[i].status, "True") == 0)
			ready = true;
	if (!ready || !(drift = drift_condition(o)))
		return;
	r_text = json_string_value(json_object_get(drift, "reason"));
	m_text = json_string_value(json_object_get(drift, "message"));
	snprintf(reason, reason_len, "%s", r_text ? r_text : "Drift");
	snprintf(found, found_len, "%s", m_text ? m_text : "drift at the provider");
}

static void
drift_repaired(struct reconciler *r, struct obj *o, const char *reason, const char *found)
{
	const char *did = o->did[0] ? o->did : "the provider matches again";

	log_info("provider drift repaired", LOG_STR("kind", kind_info(o->kind)->kind),
	    LOG_STR("namespace", o->ns), LOG_STR("name", o->name),
	    LOG_STR("drift", reason), LOG_STR("found", found), LOG_STR("done", did));
	record(r, o, "Warning", "ProviderDriftRepaired", "RepairDrift", "%s; repaired: %s",
	    found, did);
	audit_count_repair(r, reason);
}

int
reconciler_drift_mark(struct reconciler *r, enum resource_kind kind, const char *ns,
    const char *name, const char *reason, bool forget_id, const char *found)
{
	struct cache_item *it;
	struct cond c[3];
	struct obj o;
	bool ready;
	int rc = fetch(r, kind, ns, name, &o);

	if (rc <= 0) {
		obj_free(&o);
		return rc;
	}
	/* Anything not done and said so is being reconciled already. */
	it = cache_item_from_json(kind, o.json);
	ready = it && it->ready;
	free(it);
	if (!ready) {
		obj_free(&o);
		return 0;
	}
	if (forget_id)
		json_object_del(json_object_get(o.json, "status"), "providerID");
	cond_set(&c[0], "Ready", false, "ProviderDrift", "%s", found);
	cond_set(&c[1], "ProviderSynced", false, "ProviderDrift", "%s", found);
	cond_set(&c[2], "ProviderDrift", true, reason, "%s", found);
	rc = write_status(r, &o, NULL, c, 3);
	if (rc == 0)
		log_info("provider drift found", LOG_STR("kind", kind_info(kind)->kind),
		    LOG_STR("namespace", ns), LOG_STR("name", name),
		    LOG_STR("drift", reason), LOG_STR("found", found));
	obj_free(&o);
	return rc ? rc : 1;
}
