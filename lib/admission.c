/* admission.c -- AdmissionReview v1 in, AdmissionReview v1 out */
#include "admission.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "cache.h"
#include "codec.h"
#include "field.h"
#include "jsonparse.h"
#include "rules/rules.h"

#define REVIEW_API_V1 "admission.k8s.io/v1"
#define REVIEW_API_V1BETA1 "admission.k8s.io/v1beta1"
#define REVIEW_KIND "AdmissionReview"
#define PATH_PREFIX_VALIDATE "/validate-notification-miloapis-com-v1alpha1-"
#define PATH_PREFIX_MUTATE "/mutate-notification-miloapis-com-v1alpha1-"

static char paths[2][KIND__COUNT][96];
static pthread_once_t paths_once = PTHREAD_ONCE_INIT;

static void
build_paths(void)
{
	for (int k = 0; k < KIND__COUNT; k++) {
		snprintf(paths[ADMISSION_VALIDATE][k], sizeof(paths[0][0]), "%s%s",
		    PATH_PREFIX_VALIDATE, kind_info((enum resource_kind)k)->singular);
		snprintf(paths[ADMISSION_MUTATE][k], sizeof(paths[0][0]), "%s%s",
		    PATH_PREFIX_MUTATE, kind_info((enum resource_kind)k)->singular);
	}
}

static void
init_paths(void)
{
	pthread_once(&paths_once, build_paths);
}

const char *
admission_path(enum resource_kind kind, enum admission_mode mode)
{
	if ((unsigned)kind >= KIND__COUNT)
		return NULL;
	init_paths();
	return paths[mode][kind];
}

int
admission_route(const char *path, enum resource_kind *kind,
    enum admission_mode *mode)
{
	init_paths();
	for (int m = 0; m < 2; m++) {
		for (int k = 0; k < KIND__COUNT; k++) {
			if (strcmp(path, paths[m][k]) == 0) {
				*kind = (enum resource_kind)k;
				*mode = (enum admission_mode)m;
				return 0;
			}
		}
	}
	return -ENOENT;
}

/* Each kind's rules (lib/rules/): the one place that maps a kind to them. */
static const struct rules_kind *const rules[KIND__COUNT] = {
	[KIND_CONTACT] = &rules_contact,
	[KIND_CONTACT_GROUP] = &rules_group,
	[KIND_MEMBERSHIP] = &rules_membership,
	[KIND_REMOVAL] = &rules_membership,
};

void
admission_validate_object(const struct resource *obj, const struct resource *old,
    struct field_list *errs)
{
	if ((unsigned)obj->kind < KIND__COUNT)
		rules[obj->kind]->validate(obj, old, errs);
}

void
admission_outcome_free(struct admission_outcome *out)
{
	free(out->body);
	free(out->uid);
	free(out->kind);
	free(out->namespace);
	free(out->name);
	free(out->operation);
	memset(out, 0, sizeof(*out));
}

/* What one call needs from the request, borrowed from the parsed review. */
struct review {
	const char *api_version;
	const char *uid;
	const char *operation;
	const char *namespace;
	const char *name;
	const char *sub_resource;
	json_t *kind;		/* {group, version, kind} */
	json_t *object;
	json_t *old_object;
	json_t *user_info;
	int dry_run;
};

/* The response under construction. */
struct verdict {
	int allowed;
	json_t *status;		/* owned; set when denied */
	json_t *patch;		/* owned JSON array of operations, or NULL */
	json_t *warnings;	/* owned JSON array, or NULL */
	int oom;
};

static const char *
str_member(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static void
deny(struct verdict *v, json_t *status)
{
	v->allowed = 0;
	json_decref(v->status);
	v->status = status;
	if (!status)
		v->oom = 1;
}

static void
deny_bad_request(struct verdict *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
deny_bad_request(struct verdict *v, const char *fmt, ...)
{
	va_list ap;
	char *msg = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		v->oom = 1;
		return;
	}
	deny(v, field_status_new(400, "BadRequest", msg));
	free(msg);
}

/* The request's kind and the object's own kind must name the endpoint's. */
static int
check_kind(const struct review *r, enum resource_kind kind, struct verdict *v)
{
	const char *want = kind_info(kind)->kind;
	const char *group, *version, *k, *api;

	if (r->kind) {
		group = str_member(r->kind, "group");
		version = str_member(r->kind, "version");
		k = str_member(r->kind, "kind");
		if (!group || !version || !k || strcmp(group, RESOURCE_GROUP) != 0 ||
		    strcmp(version, RESOURCE_VERSION) != 0 || strcmp(k, want) != 0) {
			deny_bad_request(v, "this endpoint admits %s %s objects, "
			    "but the request is for %s/%s %s", RESOURCE_API_VERSION, want,
			    group ? group : "", version ? version : "", k ? k : "");
			return -1;
		}
	}
	if (!json_is_object(r->object)) {
		deny_bad_request(v, "the request has no object to admit");
		return -1;
	}
	k = str_member(r->object, "kind");
	api = str_member(r->object, "apiVersion");
	if ((k && strcmp(k, want) != 0) || (api && strcmp(api, RESOURCE_API_VERSION) != 0)) {
		deny_bad_request(v, "this endpoint admits %s %s objects, "
		    "but the object is %s %s", RESOURCE_API_VERSION, want,
		    api ? api : "", k ? k : "");
		return -1;
	}
	return 0;
}

static const char *
object_name(const struct review *r, const struct resource *obj)
{
	if (obj->meta.name)
		return obj->meta.name;
	return r->name ? r->name : "";
}

/*
 * Adds the cluster-state verdict to v: the kind's state rules (env NULL
 * for a webhook without cluster state, which fails closed where a rule
 * cannot do without it).
 */
static void
validate_state(const struct admission_env *env, const struct review *r,
    const struct resource *obj, const struct resource *old, struct field_list *errs,
    struct verdict *v)
{
	struct admission_user user = {
		.username = str_member(r->user_info, "username"),
		.uid = str_member(r->user_info, "uid"),
		.groups = json_object_get(r->user_info, "groups"),
		.extra = json_object_get(r->user_info, "extra"),
	};
	struct admission_notes notes = { 0 };

	if (env && env->cache && !cache_synced(env->cache)) {
		deny(v, field_status_new(503, "ServiceUnavailable", "the webhook has not "
		    "loaded the cluster state yet; try again in a moment"));
		return;
	}
	rules[obj->kind]->state(env, &user, obj, old, errs, &notes);
	if (notes.oom) {
		v->oom = 1;
	} else if (notes.forbidden) {
		/* errors.NewForbidden, as Milo's webhook answers: no field errors beside it. */
		deny(v, field_status_forbidden(RESOURCE_GROUP, kind_info(obj->kind)->plural,
		    object_name(r, obj), notes.forbidden));
		field_list_free(errs);
		field_list_init(errs);
	} else if (notes.unreachable) {
		/* Fail closed: what could not be verified is not admitted. */
		deny(v, field_status_new(503, "ServiceUnavailable", notes.unreachable));
	}
	if (notes.warnings) {
		v->warnings = notes.warnings;
		notes.warnings = NULL;
	}
	admission_notes_free(&notes);
}

static void
validate(const struct admission_env *env, const struct review *r,
    enum resource_kind kind, struct verdict *v)
{
	struct resource obj, old;
	struct field_list errs, old_errs;
	int have_old = 0;

	field_list_init(&errs);
	field_list_init(&old_errs);
	if (resource_decode(r->object, kind, &obj, &errs) != 0) {
		v->oom = 1;
		goto out_lists;
	}
	/*
	 * The old object is what the API server stored; if it does not decode
	 * cleanly the update rules that compare with it are skipped rather
	 * than blaming the user for it.
	 */
	if (strcmp(r->operation, "UPDATE") == 0 && json_is_object(r->old_object)) {
		if (resource_decode(r->old_object, kind, &old, &old_errs) != 0) {
			v->oom = 1;
			goto out_obj;
		}
		have_old = old_errs.len == 0;
		if (!have_old)
			resource_free(&old);
	}
	/*
	 * Every field error at once: what the object itself gets wrong, then
	 * what the cluster says, unless the object did not even decode.
	 */
	if (errs.len == 0) {
		rules[kind]->validate(&obj, have_old ? &old : NULL, &errs);
		validate_state(env, r, &obj, have_old ? &old : NULL, &errs, v);
	}
	if (errs.oom)
		v->oom = 1;
	else if (errs.len)
		deny(v, field_status_invalid(RESOURCE_GROUP, kind_info(kind)->kind,
		    object_name(r, &obj), &errs));
	if (have_old)
		resource_free(&old);
out_obj:
	resource_free(&obj);
out_lists:
	field_list_free(&errs);
	field_list_free(&old_errs);
}

/* The namespace the object lives in: the request's, else its metadata's. */
static const char *
object_namespace(const struct review *r)
{
	const char *ns = r->namespace;

	if (!ns || !ns[0])
		ns = str_member(json_object_get(r->object, "metadata"), "namespace");
	return ns && ns[0] ? ns : NULL;
}

static void
mutate(const struct admission_env *env, const struct review *r,
    enum resource_kind kind, struct verdict *v)
{
	struct rules_review rr = { .operation = r->operation,
	    .namespace = object_namespace(r), .object = r->object };

	if (!rules[kind]->mutate)
		return;
	if (!v->patch && !(v->patch = json_array())) {
		v->oom = 1;
		return;
	}
	rules[kind]->mutate(env, &rr, v->patch, &v->oom);
}

static void
decide(const struct admission_env *env, const struct review *r,
    enum resource_kind kind, enum admission_mode mode, struct verdict *v)
{
	v->allowed = 1;
	if (strcmp(r->operation, "DELETE") == 0 || strcmp(r->operation, "CONNECT") == 0)
		return;
	if (strcmp(r->operation, "CREATE") != 0 && strcmp(r->operation, "UPDATE") != 0) {
		deny_bad_request(v, "unsupported operation %s: expected CREATE, UPDATE, "
		    "DELETE or CONNECT", r->operation);
		return;
	}
	/* Status writes carry no spec change; the reconciler owns them. */
	if (r->sub_resource && r->sub_resource[0])
		return;
	if (check_kind(r, kind, v) != 0)
		return;
	if (mode == ADMISSION_VALIDATE)
		validate(env, r, kind, v);
	else
		mutate(env, r, kind, v);
}

static json_t *
build_response(const struct review *r, struct verdict *v)
{
	json_t *resp = json_pack("{s:s, s:b}", "uid", r->uid, "allowed", v->allowed);
	json_t *review;

	if (!resp)
		return NULL;
	if (!v->allowed && v->status)
		json_object_set(resp, "status", v->status);
	if (v->allowed && v->patch && json_array_size(v->patch)) {
		char *ops = json_dumps(v->patch, JSON_COMPACT);
		char *b64 = ops ? base64_encode(ops, strlen(ops), NULL) : NULL;

		free(ops);
		if (!b64 || json_object_set_new(resp, "patch", json_string(b64)) != 0 ||
		    json_object_set_new(resp, "patchType", json_string("JSONPatch")) != 0) {
			free(b64);
			json_decref(resp);
			return NULL;
		}
		free(b64);
	}
	if (v->warnings)
		json_object_set(resp, "warnings", v->warnings);
	review = json_pack("{s:s, s:s, s:o}", "apiVersion", r->api_version,
	    "kind", REVIEW_KIND, "response", resp);
	return review;
}

/* True when jansson would write s between quotes unchanged (plain ASCII). */
static int
plain_ascii(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
			return 0;
	return 1;
}

/*
 * The most common answer, an allowed review with no patch and no warnings,
 * written directly: the same bytes json_dumps(build_response(), JSON_COMPACT)
 * gives. NULL for any other answer, or when a string would need escaping;
 * the caller then builds it with jansson.
 */
static char *
plain_allowed(const struct review *r, const struct verdict *v, size_t *len)
{
	char *body = NULL;
	int n;

	if (!v->allowed || v->warnings || (v->patch && json_array_size(v->patch)) ||
	    !plain_ascii(r->uid) || !plain_ascii(r->api_version))
		return NULL;
	n = asprintf(&body, "{\"apiVersion\":\"%s\",\"kind\":\"" REVIEW_KIND "\","
	    "\"response\":{\"uid\":\"%s\",\"allowed\":true}}", r->api_version, r->uid);
	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return body;
}

static char *
dup_opt(const char *s, int *failed)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*failed = 1;
	return d;
}

static int
bad_request(struct admission_outcome *out, const char *reason)
{
	char *body = NULL;
	int n = asprintf(&body, "%s\n", reason);

	if (n < 0)
		return -ENOMEM;
	out->http_status = 400;
	out->reason = reason;
	out->body = body;
	out->body_len = (size_t)n;
	out->content_type = "text/plain; charset=utf-8";
	return 0;
}

/* Reads the review's envelope; a static reason when it is not a review. */
static const char *
parse_review(json_t *doc, struct review *r)
{
	json_t *req, *dry;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(doc))
		return "the body is not a JSON object";
	r->api_version = str_member(doc, "apiVersion");
	if (!r->api_version || (strcmp(r->api_version, REVIEW_API_V1) != 0 &&
	    strcmp(r->api_version, REVIEW_API_V1BETA1) != 0))
		return "apiVersion must be admission.k8s.io/v1";
	if (!str_member(doc, "kind") || strcmp(str_member(doc, "kind"), REVIEW_KIND) != 0)
		return "kind must be AdmissionReview";
	req = json_object_get(doc, "request");
	if (!json_is_object(req))
		return "the AdmissionReview has no request";
	r->uid = str_member(req, "uid");
	if (!r->uid || !r->uid[0])
		return "request.uid is required";
	r->operation = str_member(req, "operation");
	if (!r->operation)
		return "request.operation is required";
	r->namespace = str_member(req, "namespace");
	r->name = str_member(req, "name");
	r->sub_resource = str_member(req, "subResource");
	r->kind = json_object_get(req, "kind");
	if (r->kind && !json_is_object(r->kind))
		return "request.kind must be an object";
	r->object = json_object_get(req, "object");
	r->old_object = json_object_get(req, "oldObject");
	r->user_info = json_object_get(req, "userInfo");
	dry = json_object_get(req, "dryRun");
	r->dry_run = json_is_true(dry);
	return NULL;
}

int
admission_handle(const struct admission_env *env, enum resource_kind kind,
    enum admission_mode mode, const char *body, size_t len,
    struct admission_outcome *out)
{
	struct verdict v = { 0 };
	struct review r;
	json_error_t jerr;
	json_t *doc, *answer = NULL;
	const char *why;
	int failed = 0, rc = 0;

	memset(out, 0, sizeof(*out));
	doc = jsonparse_load_scoped(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		jsonparse_scope_end();	/* a fast parse that gave up used it */
		return bad_request(out, "the body is not valid JSON");
	}
	why = parse_review(doc, &r);
	if (why) {
		rc = bad_request(out, why);
		goto out;
	}
	decide(env, &r, kind, mode, &v);
	if (v.oom) {
		rc = -ENOMEM;
		goto out;
	}
	out->body = plain_allowed(&r, &v, &out->body_len);
	if (!out->body) {
		answer = build_response(&r, &v);
		out->body = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
		if (!out->body) {
			rc = -ENOMEM;
			goto out;
		}
		out->body_len = strlen(out->body);
		out->patched = json_object_get(json_object_get(answer, "response"),
		    "patch") != NULL;
	}
	out->http_status = 200;
	out->content_type = "application/json";
	out->allowed = v.allowed;
	out->dry_run = r.dry_run;
	out->uid = dup_opt(r.uid, &failed);
	out->kind = dup_opt(kind_info(kind)->kind, &failed);
	out->namespace = dup_opt(object_namespace(&r), &failed);
	out->name = dup_opt(r.name ? r.name : str_member(json_object_get(r.object,
	    "metadata"), "name"), &failed);
	out->operation = dup_opt(r.operation, &failed);
	if (failed)
		rc = -ENOMEM;
out:
	if (rc == -ENOMEM)
		admission_outcome_free(out);
	json_decref(answer);
	json_decref(v.status);
	json_decref(v.patch);
	json_decref(v.warnings);
	json_decref(doc);
	jsonparse_scope_end();
	return rc;
}
