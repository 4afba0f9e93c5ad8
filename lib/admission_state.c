/* admission_state.c -- the admission rules that read cluster state */
#include "admission_state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache.h"
#include "kube.h"
#include "subjects.h"
#include "validate.h"

#define WARNING_MAX_BYTES 1024	/* kube-apiserver keeps 256 runes; we stay near that */

/*
 * Milo's API server sets these userInfo.extra keys on requests made through
 * a user's personal control plane (/apis/iam.miloapis.com/v1alpha1/users/
 * {user}/control-plane/...); iamv1alpha1.ParentNameExtraKey upstream.
 */
#define EXTRA_PARENT_NAME "iam.miloapis.com/parent-name"
#define EXTRA_PARENT_TYPE "iam.miloapis.com/parent-type"

void
admission_notes_free(struct admission_notes *n)
{
	json_decref(n->warnings);
	free(n->unreachable);
	free(n->forbidden);
	memset(n, 0, sizeof(*n));
}

static void
unreachable(struct admission_notes *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Records the first thing that could not be verified; the verdict fails closed. */
static void
unreachable(struct admission_notes *n, const char *fmt, ...)
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

static void
warn(struct admission_notes *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Warnings become HTTP Warning headers: no control characters, kept short. */
static void
warn(struct admission_notes *n, const char *fmt, ...)
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

/* ---- references ---- */

enum ref_state { REF_MISSING, REF_PRESENT, REF_DELETING, REF_UNKNOWN };

struct ref_info {
	enum ref_state state;
	enum visibility visibility;	/* groups */
	enum subject_kind subject;	/* contacts */
	char subject_name[VALIDATE_SUBDOMAIN_MAX + 1]; /* "" when none or too long */
};

/* A contact's subject into info; a name too long to be valid is left empty. */
static void
set_subject(struct ref_info *info, enum subject_kind kind, const char *name)
{
	info->subject = kind;
	if (name && strlen(name) < sizeof(info->subject_name))
		memcpy(info->subject_name, name, strlen(name) + 1);
}

/*
 * Finds kind ns/name: in the cache first, then with a live GET, so that an
 * object created a moment ago is never reported missing.
 */
static struct ref_info
lookup(const struct admission_env *env, enum resource_kind kind, const char *ns,
    const char *name, struct admission_notes *notes)
{
	struct ref_info info = { .state = REF_UNKNOWN, .visibility = VISIBILITY_UNSET };
	struct kube_response resp;
	struct cache_found f;
	char path[600];
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
		unreachable(notes, "cannot verify %s %s/%s: the Kubernetes API server could "
		    "not be reached (%s)", kind_info(kind)->kind, ns, name,
		    resp.message ? resp.message : "no answer");
	}
	kube_response_free(&resp);
	return info;
}

/* A reference must name an object that exists and is not being deleted. */
static void
check_ref(enum resource_kind kind, const struct object_ref *ref,
    const struct ref_info *info, const char *path, struct field_list *errs)
{
	char p[64];

	snprintf(p, sizeof(p), "%s.name", path);
	if (info->state == REF_MISSING)
		field_not_found(errs, p, ref->name);
	else if (info->state == REF_DELETING)
		field_invalid(errs, p, ref->name, "the %s is being deleted",
		    kind_info(kind)->kind);
}

/* True when extra[key] (an array of strings) holds value. */
static bool
extra_has(const json_t *extra, const char *key, const char *value)
{
	const json_t *values = json_object_get(extra, key), *v;
	size_t i;

	json_array_foreach(values, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), value) == 0)
			return true;
	return false;
}

/*
 * A request through a user's control plane: parent-name is set, and
 * parent-type, when it names a type at all, names User. A parent-type we
 * cannot read does not switch the rule off.
 */
static bool
user_context(const struct admission_user *user)
{
	const json_t *type;

	if (!json_is_object(user->extra) ||
	    !json_object_get(user->extra, EXTRA_PARENT_NAME))
		return false;
	type = json_object_get(user->extra, EXTRA_PARENT_TYPE);
	if (!json_is_array(type) || json_array_size(type) == 0)
		return true;
	return extra_has(user->extra, EXTRA_PARENT_TYPE, "User");
}

/*
 * Under a user's control plane a user subscribes and opts out only
 * themselves: the Contact's subject must be a userRef naming the request's
 * uid (Milo's ValidateContactOwnership). A missing Contact or one of an
 * organization or project gets the same answer, so the reply never says
 * whether somebody else's Contact exists.
 */
static bool
owned_by(const struct ref_info *contact, const struct admission_user *user)
{
	return (contact->state == REF_PRESENT || contact->state == REF_DELETING) &&
	    contact->subject == SUBJECT_USER && contact->subject_name[0] &&
	    user->uid && strcmp(contact->subject_name, user->uid) == 0;
}

/*
 * A reference into another namespace needs the requester to be allowed to
 * get the object there (a SubjectAccessReview on the request's user).
 */
static void
check_access(const struct admission_env *env, const struct admission_user *user,
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

	if (!env->client || strcmp(ref->namespace, own_ns) == 0)
		return;
	rc = kube_access_review(env->client, &a, &allowed, NULL, &resp);
	if (rc != 0)
		unreachable(notes, "cannot check access to %s %s/%s: the Kubernetes API "
		    "server could not be reached (%s)", kind_info(kind)->kind, ref->namespace,
		    ref->name, resp.message ? resp.message : "no answer");
	else if (!allowed)
		field_forbidden(errs, path, "user \"%s\" may not get %s in namespace \"%s\"",
		    user->username ? user->username : "", kind_info(kind)->plural,
		    ref->namespace);
	kube_response_free(&resp);
}

/* "ContactGroupMembership \"x\"" when in ns, else a phrase that names no one. */
static void
describe(char *out, size_t len, enum resource_kind kind, const char *own_ns,
    const char *other_ns, const char *other_name)
{
	if (!other_ns || strcmp(other_ns, own_ns) == 0)
		snprintf(out, len, "%s \"%s\"", kind_info(kind)->kind, other_name);
	else
		snprintf(out, len, "a %s in another namespace", kind_info(kind)->kind);
}

/* ---- per kind ---- */

static const struct object_ref *
subject_of(const struct resource *r, enum subject_kind *kind, const char **path)
{
	const struct subject *s = r->spec.contact.subject;

	*kind = SUBJECT_NONE;
	if (!s)
		return NULL;
	if (s->user_ref) {
		*kind = SUBJECT_USER;
		*path = "spec.subject.userRef";
		return s->user_ref;
	}
	if (s->organization_ref) {
		*kind = SUBJECT_ORGANIZATION;
		*path = "spec.subject.organizationRef";
		return s->organization_ref;
	}
	if (s->project_ref) {
		*kind = SUBJECT_PROJECT;
		*path = "spec.subject.projectRef";
		return s->project_ref;
	}
	return NULL;
}

static int
same_email(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}

static void
contact_subject_exists(const struct admission_env *env, const struct object_ref *ref,
    enum subject_kind sk, const char *path, struct field_list *errs,
    struct admission_notes *notes)
{
	static const char *const kinds[] = { "", "User", "Organization", "Project" };
	char *uid = NULL, *why = NULL, p[64];
	int rc = subjects_lookup(env->subjects, sk, ref->name, &uid, &why);

	snprintf(p, sizeof(p), "%s.name", path);
	if (rc == 0)
		field_not_found(errs, p, ref->name);
	else if (rc < 0)
		unreachable(notes, "cannot verify that %s \"%s\" exists: the Kubernetes API "
		    "server could not be reached (%s)", kinds[sk], ref->name, why ? why : "");
	free(uid);
	free(why);
}

static void
contact_rules(const struct admission_env *env, const struct resource *obj,
    const struct resource *old, struct field_list *errs, struct admission_notes *notes)
{
	const char *ns = obj->meta.namespace ? obj->meta.namespace : "";
	const char *spath = NULL, *email = obj->spec.contact.email;
	char *other_ns = NULL, *other = NULL;
	enum subject_kind sk, old_sk = SUBJECT_NONE;
	const struct object_ref *ref = subject_of(obj, &sk, &spath);
	const char *ignored;
	int rc;

	if (old)
		subject_of(old, &old_sk, &ignored);
	if (env->cache && (!old || !same_email(email, old->spec.contact.email))) {
		rc = cache_contact_by_email(env->cache, email, ns, obj->meta.name, &other_ns,
		    &other);
		if (rc == 1 && strcmp(other_ns, ns) == 0)
			field_duplicate_detail(errs, "spec.email", email,
			    "Contact \"%s\" in this namespace already has this email address", other);
		else if (rc == 1)
			field_duplicate_detail(errs, "spec.email", email,
			    "another Contact already has this email address");
		else if (rc < 0)
			notes->oom = 1;
		free(other_ns);
		free(other);
		other = NULL;
	}
	/* Existence: on create, and when an update sets the subject. */
	if (ref && env->verify_subjects && env->subjects && (!old || old_sk == SUBJECT_NONE))
		contact_subject_exists(env, ref, sk, spath, errs, notes);
	if (ref && env->cache) {
		rc = cache_contact_by_subject(env->cache, ns, sk, ref->namespace, ref->name,
		    obj->meta.name, &other);
		if (rc == 1) {
			char p[64];

			snprintf(p, sizeof(p), "%s.name", spath);
			field_duplicate_detail(errs, p, ref->name, "Contact \"%s\" in this "
			    "namespace already belongs to this subject; one Contact per subject "
			    "per namespace", other);
		}
		free(other);
	}
}

static void
group_rules(const struct admission_env *env, const struct resource *obj,
    struct field_list *errs)
{
	const char *ns = obj->meta.namespace ? obj->meta.namespace : "";
	char *other = NULL;

	if (!env->cache)
		return;
	if (cache_group_by_display(env->cache, ns, obj->spec.group.display_name,
	    obj->spec.group.visibility, obj->meta.name, &other) == 1)
		field_duplicate_detail(errs, "spec.displayName", obj->spec.group.display_name,
		    "ContactGroup \"%s\" in this namespace has the same displayName and "
		    "visibility", other);
	free(other);
}

static void
pair_rules(const struct admission_env *env, const struct admission_user *user,
    const struct resource *obj, struct field_list *errs, struct admission_notes *notes)
{
	const struct object_ref *c = obj->spec.membership.contact_ref;
	const struct object_ref *g = obj->spec.membership.group_ref;
	const char *ns = obj->meta.namespace ? obj->meta.namespace : "";
	bool removal = obj->kind == KIND_REMOVAL;
	char *other_ns = NULL, *other = NULL, who[256];
	struct ref_info contact, group;

	contact = lookup(env, KIND_CONTACT, c->namespace, c->name, notes);
	if (user_context(user) && !owned_by(&contact, user)) {
		/*
		 * Nothing else is checked: any other answer could tell what
		 * exists. A Contact that could not be read fails closed (503).
		 */
		if (contact.state != REF_UNKNOWN && !(notes->forbidden = strdup(removal ?
		    "you do not have permission to create membership removal for this contact" :
		    "you do not have permission to create membership for this contact")))
			notes->oom = 1;
		return;
	}
	check_access(env, user, ns, KIND_CONTACT, c, "spec.contactRef", errs, notes);
	check_access(env, user, ns, KIND_CONTACT_GROUP, g, "spec.contactGroupRef", errs, notes);
	check_ref(KIND_CONTACT, c, &contact, "spec.contactRef", errs);
	group = lookup(env, KIND_CONTACT_GROUP, g->namespace, g->name, notes);
	check_ref(KIND_CONTACT_GROUP, g, &group, "spec.contactGroupRef", errs);
	if (removal && group.state == REF_PRESENT && group.visibility == VISIBILITY_PRIVATE)
		field_forbidden(errs, "spec.contactGroupRef", "ContactGroup \"%s\" is private; "
		    "contacts can opt out of public groups only", g->name);
	if (!env->cache)
		return;
	if (cache_pair(env->cache, obj->kind, c->namespace, c->name, g->namespace, g->name,
	    ns, obj->meta.name, &other_ns, &other) == 1) {
		describe(who, sizeof(who), obj->kind, ns, other_ns, other);
		field_duplicate_detail(errs, "spec.contactRef.name", c->name, "%s already %s "
		    "this Contact %s ContactGroup \"%s\"", who, removal ? "removes" : "adds",
		    removal ? "from" : "to", g->name);
	}
	free(other_ns);
	free(other);
	other_ns = other = NULL;
	if (!removal && cache_pair(env->cache, KIND_REMOVAL, c->namespace, c->name,
	    g->namespace, g->name, NULL, NULL, &other_ns, &other) == 1) {
		describe(who, sizeof(who), KIND_REMOVAL, ns, other_ns, other);
		field_invalid(errs, "spec.contactRef.name", c->name, "the Contact opted out of "
		    "ContactGroup \"%s\" (%s); delete the removal before adding it again",
		    g->name, who);
	}
	if (removal && cache_pair(env->cache, KIND_MEMBERSHIP, c->namespace, c->name,
	    g->namespace, g->name, NULL, NULL, &other_ns, &other) == 0)
		warn(notes, "Contact %s/%s is not a member of ContactGroup %s/%s; the removal "
		    "still blocks later memberships", c->namespace, c->name, g->namespace,
		    g->name);
	free(other_ns);
	free(other);
}

void
admission_state_validate(const struct admission_env *env,
    const struct admission_user *user, const struct resource *obj,
    const struct resource *old, struct field_list *errs, struct admission_notes *notes)
{
	if (!env) {
		/* Ownership cannot be judged without the Contact: fail closed. */
		if (!old && (obj->kind == KIND_MEMBERSHIP || obj->kind == KIND_REMOVAL) &&
		    user_context(user))
			unreachable(notes, "cannot verify that the Contact belongs to the "
			    "requesting user: the webhook runs without cluster state");
		return;
	}
	switch (obj->kind) {
	case KIND_CONTACT:
		contact_rules(env, obj, old, errs, notes);
		break;
	case KIND_CONTACT_GROUP:
		group_rules(env, obj, errs);
		break;
	default:
		/* Membership and removal specs are immutable: only a create is checked. */
		if (!old)
			pair_rules(env, user, obj, errs, notes);
		break;
	}
}

json_t *
admission_state_owner(const struct admission_env *env, const struct resource *obj)
{
	const struct subject *s = obj->spec.contact.subject;
	char *uid = NULL, *why = NULL;
	json_t *ref = NULL;

	if (!env || !env->subjects || !obj->has_spec || !s || !s->user_ref ||
	    !s->user_ref->name)
		return NULL;
	if (subjects_lookup(env->subjects, SUBJECT_USER, s->user_ref->name, &uid, &why) == 1 &&
	    uid)
		ref = json_pack("{s:s, s:s, s:s, s:s}", "apiVersion", "iam.miloapis.com/v1alpha1",
		    "kind", "User", "name", s->user_ref->name, "uid", uid);
	free(uid);
	free(why);
	return ref;
}
