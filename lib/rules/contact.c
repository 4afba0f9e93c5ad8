/* contact.c -- every admission rule of a Contact: the object, the cluster, the mutation */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "email.h"
#include "rules.h"
#include "subjects.h"
#include "validate.h"

static int
empty(const char *s)
{
	return !s || !s[0];
}

static void
check_email(const struct contact_spec *c, struct field_list *errs)
{
	const char *why;

	if (empty(c->email)) {
		field_required(errs, "spec.email", NULL);
		return;
	}
	why = email_check(c->email, strlen(c->email));
	if (why)
		field_invalid(errs, "spec.email", c->email, "%s", why);
}

/* One reference of the subject: name always, namespace as the kind needs. */
static void
check_ref(const struct object_ref *ref, const char *path, int namespaced,
    const char *kind, struct field_list *errs)
{
	char p[128];

	snprintf(p, sizeof(p), "%s.name", path);
	if (empty(ref->name))
		field_required(errs, p, NULL);
	else
		validate_subdomain(errs, p, ref->name);
	snprintf(p, sizeof(p), "%s.namespace", path);
	if (!namespaced) {
		if (!empty(ref->namespace))
			field_forbidden(errs, p, "%s is cluster-scoped; namespace must not be set",
			    kind);
	} else if (empty(ref->namespace)) {
		field_required(errs, p, NULL);
	} else {
		validate_label(errs, p, ref->namespace);
	}
}

static void
check_subject(const struct subject *s, struct field_list *errs)
{
	static const char *const names[] = { "userRef", "organizationRef", "projectRef" };
	const struct object_ref *refs[3];
	const char *first = NULL;
	char path[64];

	if (!s) {
		field_required(errs, "spec.subject", NULL);
		return;
	}
	refs[0] = s->user_ref;
	refs[1] = s->organization_ref;
	refs[2] = s->project_ref;
	for (int i = 0; i < 3; i++) {
		if (!refs[i])
			continue;
		snprintf(path, sizeof(path), "spec.subject.%s", names[i]);
		if (first) {
			field_forbidden(errs, path, "may not be set when %s is set; "
			    "exactly one of userRef, organizationRef or projectRef is allowed",
			    first);
			continue;
		}
		first = names[i];
		check_ref(refs[i], path, i != 0,
		    i == 0 ? "User" : i == 1 ? "Organization" : "Project", errs);
	}
	if (!first)
		field_required(errs, "spec.subject",
		    "exactly one of userRef, organizationRef or projectRef must be set");
}

/* spec.subject may be set once; after that it never changes. */
static void
check_subject_immutable(const struct resource *obj, const struct resource *old,
    struct field_list *errs)
{
	const struct subject *a = obj->spec.contact.subject;
	const struct subject *b = old->spec.contact.subject;
	json_t *now;
	char *text;

	if (!b || (!b->user_ref && !b->organization_ref && !b->project_ref))
		return;
	if (a && validate_ref_equal(a->user_ref, b->user_ref) &&
	    validate_ref_equal(a->organization_ref, b->organization_ref) &&
	    validate_ref_equal(a->project_ref, b->project_ref))
		return;
	now = codec_encode_spec(obj);
	text = codec_go_json(json_object_get(now, "subject"));
	field_invalid_json(errs, "spec.subject", text ? text : "null",
	    "field is immutable");
	if (!text)
		errs->oom = 1;
	free(text);
	json_decref(now);
}

static void
validate(const struct resource *obj, const struct resource *old, struct field_list *errs)
{
	const struct contact_spec *c = &obj->spec.contact;

	if (!obj->has_spec) {
		field_required(errs, "spec", NULL);
		return;
	}
	check_email(c, errs);
	if (c->given_name)
		validate_text(errs, "spec.givenName", c->given_name, VALIDATE_NAME_MAX);
	if (c->family_name)
		validate_text(errs, "spec.familyName", c->family_name, VALIDATE_NAME_MAX);
	check_subject(c->subject, errs);
	if (old && old->has_spec)
		check_subject_immutable(obj, old, errs);
}

/* ---- the cluster ---- */

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
		rules_unreachable(notes, "cannot verify that %s \"%s\" exists: the Kubernetes API "
		    "server could not be reached (%s)", kinds[sk], ref->name, why ? why : "");
	free(uid);
	free(why);
}

/*
 * The email unique in the cluster (case-insensitive; the other Contact
 * named only in this namespace), the subject existing (on create, and when
 * an update sets it), one Contact per subject per namespace.
 */
static void
state(const struct admission_env *env, const struct admission_user *user,
    const struct resource *obj, const struct resource *old, struct field_list *errs,
    struct admission_notes *notes)
{
	const char *ns = obj->meta.namespace ? obj->meta.namespace : "";
	const char *spath = NULL, *email = obj->spec.contact.email;
	char *other_ns = NULL, *other = NULL;
	enum subject_kind sk, old_sk = SUBJECT_NONE;
	const struct object_ref *ref = subject_of(obj, &sk, &spath);
	const char *ignored;
	int rc;

	(void)user;
	if (!env || !obj->has_spec)
		return;
	if (old)
		subject_of(old, &old_sk, &ignored);
	/* A field validate() refused is not looked up: its lookup could only add noise. */
	if (field_list_has(errs, "spec.subject"))
		ref = NULL;
	if (env->cache && email && !field_list_has(errs, "spec.email") &&
	    (!old || !same_email(email, old->spec.contact.email))) {
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
	if (ref && ref->name && env->verify_subjects && env->subjects &&
	    (!old || old_sk == SUBJECT_NONE))
		contact_subject_exists(env, ref, sk, spath, errs, notes);
	if (ref && ref->name && env->cache) {
		rc = cache_contact_by_subject(env->cache, ns, sk, ref->namespace, ref->name,
		    obj->meta.name, &other);
		if (rc < 0)
			notes->oom = 1;
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

/* ---- the mutating endpoint ---- */

/* The ownerReference of a new Contact: its subject User, when the User exists. */
static json_t *
user_owner(const struct admission_env *env, const struct resource *obj)
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

/* True when the object already names this owner (by uid). */
static int
has_owner(const json_t *object, const char *uid)
{
	const json_t *refs = json_object_get(json_object_get(object, "metadata"),
	    "ownerReferences");
	size_t i;
	json_t *ref;

	json_array_foreach(refs, i, ref) {
		const char *u = json_string_value(json_object_get(ref, "uid"));

		if (u && strcmp(u, uid) == 0)
			return 1;
	}
	return 0;
}

/*
 * A new Contact is owned by its subject User when the User exists, so
 * deleting the User garbage-collects the Contact. Neither controller nor
 * blockOwnerDeletion is set: the Contact does not hold the User up.
 */
static void
mutate(const struct admission_env *env, const struct rules_review *r, json_t *patch,
    int *oom)
{
	const json_t *meta = json_object_get(r->object, "metadata");
	struct resource obj;
	struct field_list errs;
	json_t *owner;

	if (!env || strcmp(r->operation, "CREATE") != 0)
		return;
	field_list_init(&errs);
	if (resource_decode(r->object, KIND_CONTACT, &obj, &errs) != 0) {
		*oom = 1;
		field_list_free(&errs);
		return;
	}
	owner = errs.len ? NULL : user_owner(env, &obj);
	if (owner && !has_owner(r->object, json_string_value(json_object_get(owner, "uid")))) {
		if (json_is_array(json_object_get(meta, "ownerReferences")))
			rules_patch(patch, "add", "/metadata/ownerReferences/-", owner, oom);
		else if (json_is_object(meta))
			rules_patch(patch, "add", "/metadata/ownerReferences",
			    json_pack("[o]", owner), oom);
		else
			json_decref(owner);
	} else {
		json_decref(owner);
	}
	resource_free(&obj);
	field_list_free(&errs);
}

const struct rules_kind rules_contact = { validate, state, mutate };
