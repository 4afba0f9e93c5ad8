/* validate_membership.c -- ContactGroupMembership and …Removal rules that need no cluster state */
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "validate.h"

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

void
validate_membership(const struct resource *obj, const struct resource *old,
    struct field_list *errs)
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

void
validate_object(const struct resource *obj, const struct resource *old,
    struct field_list *errs)
{
	switch (obj->kind) {
	case KIND_CONTACT:
		validate_contact(obj, old, errs);
		break;
	case KIND_CONTACT_GROUP:
		validate_group(obj, old, errs);
		break;
	case KIND_MEMBERSHIP:
	case KIND_REMOVAL:
		validate_membership(obj, old, errs);
		break;
	default:
		break;
	}
}
