/* validate_contact.c -- Contact rules that need no cluster state */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "email.h"
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

void
validate_contact(const struct resource *obj, const struct resource *old,
    struct field_list *errs)
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
