/* state.c -- what the cluster-state rules share: lookups, access reviews, notes */
#include "rules.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "kube.h"

#define WARNING_MAX_BYTES 1024	/* kube-apiserver keeps 256 runes; we stay near that */

void
admission_notes_free(struct admission_notes *n)
{
	json_decref(n->warnings);
	free(n->unreachable);
	free(n->forbidden);
	memset(n, 0, sizeof(*n));
}

void
rules_unreachable(struct admission_notes *n, const char *fmt, ...)
{
	va_list ap;

	if (n->unreachable)
		return;
	va_start(ap, fmt);
	if (vasprintf(&n->unreachable, fmt, ap) < 0) {
		n->unreachable = NULL;
		n->oom = 1;
	}
	va_end(ap);
}

void
rules_warn(struct admission_notes *n, const char *fmt, ...)
{
	char text[WARNING_MAX_BYTES];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	if (!n->warnings)
		n->warnings = json_array();
	if (!n->warnings || json_array_append_new(n->warnings, json_string(text)) != 0)
		n->oom = 1;
}

void
rules_patch(json_t *patch, const char *op, const char *path, json_t *value, int *oom)
{
	json_t *o = json_pack("{s:s, s:s, s:o}", "op", op, "path", path, "value", value);

	if (!o || json_array_append_new(patch, o) != 0)
		*oom = 1;
}

const char *
rules_ref_ns(const struct object_ref *ref, const char *own_ns)
{
	return ref && ref->namespace && ref->namespace[0] ? ref->namespace :
	    own_ns ? own_ns : "";
}

/* A contact's subject into info; a name too long to be valid is left empty. */
static void
set_subject(struct rules_ref *info, enum subject_kind kind, const char *name)
{
	info->subject = kind;
	if (name && strlen(name) < sizeof(info->subject_name))
		memcpy(info->subject_name, name, strlen(name) + 1);
}

struct rules_ref
rules_lookup(const struct admission_env *env, enum resource_kind kind, const char *ns,
    const char *name, struct admission_notes *notes)
{
	struct rules_ref info = { .state = REF_UNKNOWN, .visibility = VISIBILITY_UNSET };
	struct kube_response resp;
	struct cache_found f;
	char path[KUBE_PATH_MAX];
	int rc;

	if (env->cache) {
		rc = cache_get(env->cache, kind, ns, name, &f);
		if (rc == 1) {
			info.state = f.deleting ? REF_DELETING : REF_PRESENT;
			info.visibility = f.visibility;
			set_subject(&info, f.subject, f.subject_name);
			cache_found_free(&f);
			return info;
		}
		if (rc < 0) {
			notes->oom = 1;
			return info;
		}
	}
	if (!env->client) {
		info.state = REF_MISSING;
		return info;
	}
	if (kube_path(path, sizeof(path), RESOURCE_GROUP, RESOURCE_VERSION, ns,
	    kind_info(kind)->plural, name, NULL) != 0) {
		info.state = REF_MISSING;
		return info;
	}
	rc = kube_get(env->client, path, &resp);
	if (rc == 0) {
		struct cache_item *it = cache_item_from_json(kind, resp.body);

		info.state = it && it->deleting ? REF_DELETING : REF_PRESENT;
		if (it && kind == KIND_CONTACT_GROUP)
			info.visibility = it->u.group.visibility;
		if (it && kind == KIND_CONTACT)
			set_subject(&info, it->u.contact.subject, it->u.contact.subject_name);
		free(it);
	} else if (rc == -EIO && kube_is_not_found(&resp)) {
		info.state = REF_MISSING;
	} else {
		rules_unreachable(notes, "cannot verify %s %s/%s: the Kubernetes API server "
		    "could not be reached (%s)", kind_info(kind)->kind, ns, name,
		    resp.message ? resp.message : "no answer");
	}
	kube_response_free(&resp);
	return info;
}

void
rules_check_ref(enum resource_kind kind, const struct object_ref *ref,
    const struct rules_ref *info, const char *path, struct field_list *errs)
{
	char p[64];

	snprintf(p, sizeof(p), "%s.name", path);
	if (info->state == REF_MISSING)
		field_not_found(errs, p, ref->name);
	else if (info->state == REF_DELETING)
		field_invalid(errs, p, ref->name, "the %s is being deleted",
		    kind_info(kind)->kind);
}

void
rules_check_access(const struct admission_env *env, const struct admission_user *user,
    const char *own_ns, enum resource_kind kind, const struct object_ref *ref,
    const char *path, struct field_list *errs, struct admission_notes *notes)
{
	struct kube_access a = {
		.user = user->username, .uid = user->uid, .groups = user->groups,
		.extra = user->extra, .verb = "get", .group = RESOURCE_GROUP,
		.resource = kind_info(kind)->plural, .namespace = ref->namespace,
		.name = ref->name,
	};
	struct kube_response resp;
	bool allowed = false;
	int rc;

	if (!env->client || !ref->namespace || strcmp(ref->namespace, own_ns) == 0)
		return;
	rc = kube_access_review(env->client, &a, &allowed, NULL, &resp);
	if (rc != 0)
		rules_unreachable(notes, "cannot check access to %s %s/%s: the Kubernetes API "
		    "server could not be reached (%s)", kind_info(kind)->kind, ref->namespace,
		    ref->name, resp.message ? resp.message : "no answer");
	else if (!allowed)
		field_forbidden(errs, path, "user \"%s\" may not get %s in namespace \"%s\"",
		    user->username ? user->username : "", kind_info(kind)->plural,
		    ref->namespace);
	kube_response_free(&resp);
}

void
rules_describe(char *out, size_t len, enum resource_kind kind, const char *own_ns,
    const char *other_ns, const char *other_name)
{
	if (!other_ns || strcmp(other_ns, own_ns) == 0)
		snprintf(out, len, "%s \"%s\"", kind_info(kind)->kind, other_name);
	else
		snprintf(out, len, "a %s in another namespace", kind_info(kind)->kind);
}
