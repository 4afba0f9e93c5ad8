/* membership.c -- every admission rule of a ContactGroupMembership and a …Removal */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "rules.h"
#include "validate.h"

/*
 * Milo's API server sets these userInfo.extra keys on requests made through
 * a user's personal control plane (/apis/iam.miloapis.com/v1alpha1/users/
 * {user}/control-plane/...); iamv1alpha1.ParentNameExtraKey upstream.
 */
#define EXTRA_PARENT_NAME "iam.miloapis.com/parent-name"
#define EXTRA_PARENT_TYPE "iam.miloapis.com/parent-type"

static void
check_ref(const struct object_ref *ref, const char *path, struct field_list *errs)
{
	char p[64];

	if (!ref) {
		field_required(errs, path, NULL);
		return;
	}
	snprintf(p, sizeof(p), "%s.name", path);
	if (!ref->name || !ref->name[0])
		field_required(errs, p, NULL);
	else
		validate_subdomain(errs, p, ref->name);
	snprintf(p, sizeof(p), "%s.namespace", path);
	if (!ref->namespace || !ref->namespace[0])
		field_required(errs, p, NULL);
	else
		validate_label(errs, p, ref->namespace);
}

/* The whole spec is immutable; metadata (labels, finalizers) may change. */
static void
check_immutable(const struct resource *obj, const struct resource *old,
    struct field_list *errs)
{
	const struct membership_spec *a = &obj->spec.membership;
	const struct membership_spec *b = &old->spec.membership;
	json_t *spec;
	char *text;

	if (validate_ref_equal(a->contact_ref, b->contact_ref) &&
	    validate_ref_equal(a->group_ref, b->group_ref))
		return;
	spec = codec_encode_spec(obj);
	text = spec ? codec_go_json(spec) : NULL;
	if (!text)
		errs->oom = 1;
	else
		field_invalid_json(errs, "spec", text, "field is immutable");
	free(text);
	json_decref(spec);
}

static void
validate(const struct resource *obj, const struct resource *old, struct field_list *errs)
{
	if (!obj->has_spec) {
		field_required(errs, "spec", NULL);
		return;
	}
	check_ref(obj->spec.membership.contact_ref, "spec.contactRef", errs);
	check_ref(obj->spec.membership.group_ref, "spec.contactGroupRef", errs);
	if (old && old->has_spec)
		check_immutable(obj, old, errs);
}

/* ---- the cluster ---- */

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
owned_by(const struct rules_ref *contact, const struct admission_user *user)
{
	return (contact->state == REF_PRESENT || contact->state == REF_DELETING) &&
	    contact->subject == SUBJECT_USER && contact->subject_name[0] &&
	    user->uid && strcmp(contact->subject_name, user->uid) == 0;
}

static bool
complete(const struct object_ref *ref)
{
	return ref && ref->name && ref->name[0] && ref->namespace && ref->namespace[0];
}

/*
 * A membership or removal is checked on create (its spec is immutable):
 * under a user's control plane, the Contact is the user's own (else 403
 * and nothing else); references into other namespaces readable by the
 * user; Contact and group there and not being deleted; a removal only
 * from a public group; no duplicate; a membership not blocked by an
 * opt-out (a removal of the same pair).
 */
static void
state(const struct admission_env *env, const struct admission_user *user,
    const struct resource *obj, const struct resource *old, struct field_list *errs,
    struct admission_notes *notes)
{
	const struct object_ref *c = obj->spec.membership.contact_ref;
	const struct object_ref *g = obj->spec.membership.group_ref;
	const char *ns = obj->meta.namespace ? obj->meta.namespace : "";
	bool removal = obj->kind == KIND_REMOVAL;
	char *other_ns = NULL, *other = NULL, who[256];
	struct rules_ref contact = { .state = REF_UNKNOWN }, group;
	bool c_ok, g_ok;
	int rc;

	if (old)
		return;
	if (!env) {
		/* Ownership cannot be judged without the Contact: fail closed. */
		if (user_context(user))
			rules_unreachable(notes, "cannot verify that the Contact belongs to the "
			    "requesting user: the webhook runs without cluster state");
		return;
	}
	/*
	 * A reference validate() found incomplete or refused is not looked
	 * up; the other one still is, so every error comes back at once.
	 */
	c_ok = complete(c) && !field_list_has(errs, "spec.contactRef");
	g_ok = complete(g) && !field_list_has(errs, "spec.contactGroupRef");
	if (c_ok)
		contact = rules_lookup(env, KIND_CONTACT, c->namespace, c->name, notes);
	if (c_ok && user_context(user) && !owned_by(&contact, user)) {
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
	if (c_ok) {
		rules_check_access(env, user, ns, KIND_CONTACT, c, "spec.contactRef", errs, notes);
		rules_check_ref(KIND_CONTACT, c, &contact, "spec.contactRef", errs);
	}
	if (!g_ok)
		return;
	rules_check_access(env, user, ns, KIND_CONTACT_GROUP, g, "spec.contactGroupRef", errs,
	    notes);
	group = rules_lookup(env, KIND_CONTACT_GROUP, g->namespace, g->name, notes);
	rules_check_ref(KIND_CONTACT_GROUP, g, &group, "spec.contactGroupRef", errs);
	if (removal && group.state == REF_PRESENT && group.visibility == VISIBILITY_PRIVATE)
		field_forbidden(errs, "spec.contactGroupRef", "ContactGroup \"%s\" is private; "
		    "contacts can opt out of public groups only", g->name);
	if (!env->cache || !c_ok)
		return;
	rc = cache_pair(env->cache, obj->kind, c->namespace, c->name, g->namespace, g->name,
	    ns, obj->meta.name, &other_ns, &other);
	if (rc < 0)
		notes->oom = 1;
	if (rc == 1) {
		rules_describe(who, sizeof(who), obj->kind, ns, other_ns, other);
		field_duplicate_detail(errs, "spec.contactRef.name", c->name, "%s already %s "
		    "this Contact %s ContactGroup \"%s\"", who, removal ? "removes" : "adds",
		    removal ? "from" : "to", g->name);
	}
	free(other_ns);
	free(other);
	other_ns = other = NULL;
	rc = removal ? 0 : cache_pair(env->cache, KIND_REMOVAL, c->namespace, c->name,
	    g->namespace, g->name, NULL, NULL, &other_ns, &other);
	if (rc < 0)
		notes->oom = 1;
	if (rc == 1) {
		rules_describe(who, sizeof(who), KIND_REMOVAL, ns, other_ns, other);
		field_invalid(errs, "spec.contactRef.name", c->name, "the Contact opted out of "
		    "ContactGroup \"%s\" (%s); delete the removal before adding it again",
		    g->name, who);
	}
	if (removal && cache_pair(env->cache, KIND_MEMBERSHIP, c->namespace, c->name,
	    g->namespace, g->name, NULL, NULL, &other_ns, &other) == 0)
		rules_warn(notes, "Contact %s/%s is not a member of ContactGroup %s/%s; the removal "
		    "still blocks later memberships", c->namespace, c->name, g->namespace,
		    g->name);
	free(other_ns);
	free(other);
}

/* contactRef.namespace and contactGroupRef.namespace default to the object's. */
static void
mutate(const struct admission_env *env, const struct rules_review *r, json_t *patch,
    int *oom)
{
	static const char *const refs[] = { "contactRef", "contactGroupRef" };
	const json_t *spec = json_object_get(r->object, "spec");
	char path[64];

	(void)env;
	if (!json_is_object(spec) || !r->namespace)
		return;
	for (size_t i = 0; i < 2; i++) {
		const json_t *ref = json_object_get(spec, refs[i]);
		const char *have;

		if (!json_is_object(ref))
			continue;
		have = json_string_value(json_object_get(ref, "namespace"));
		if (have && have[0])
			continue;
		/* RFC 6902 "add" replaces a member that exists (an empty string). */
		snprintf(path, sizeof(path), "/spec/%s/namespace", refs[i]);
		rules_patch(patch, "add", path, json_string(r->namespace), oom);
	}
}

const struct rules_kind rules_membership = { validate, state, mutate };
