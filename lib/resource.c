/* resource.c -- the kind table and freeing of the four resources */
#include "resource.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct kind_info kinds[KIND__COUNT] = {
	[KIND_CONTACT] = { "Contact", "contacts", "contact",
	    RESOURCE_GROUP "/contact" },
	[KIND_CONTACT_GROUP] = { "ContactGroup", "contactgroups", "contactgroup",
	    RESOURCE_GROUP "/contactgroup" },
	[KIND_MEMBERSHIP] = { "ContactGroupMembership", "contactgroupmemberships",
	    "contactgroupmembership", RESOURCE_GROUP "/contactgroupmembership" },
	[KIND_REMOVAL] = { "ContactGroupMembershipRemoval",
	    "contactgroupmembershipremovals", "contactgroupmembershipremoval",
	    NULL },
};

const struct kind_info *
kind_info(enum resource_kind kind)
{
	return (unsigned)kind < KIND__COUNT ? &kinds[kind] : NULL;
}

int
kind_from_name(const char *kind, enum resource_kind *out)
{
	for (int i = 0; i < KIND__COUNT; i++) {
		if (kind && strcmp(kind, kinds[i].kind) == 0) {
			*out = (enum resource_kind)i;
			return 0;
		}
	}
	return -ENOENT;
}

int
kind_from_plural(const char *plural, enum resource_kind *out)
{
	for (int i = 0; i < KIND__COUNT; i++) {
		if (plural && strcmp(plural, kinds[i].plural) == 0) {
			*out = (enum resource_kind)i;
			return 0;
		}
	}
	return -ENOENT;
}

const char *
visibility_name(enum visibility v)
{
	switch (v) {
	case VISIBILITY_PUBLIC:
		return "public";
	case VISIBILITY_PRIVATE:
		return "private";
	default:
		return NULL;
	}
}

static void
free_kvs(struct key_value *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

static void
free_meta(struct object_meta *m)
{
	free(m->name);
	free(m->generate_name);
	free(m->namespace);
	free(m->uid);
	free(m->resource_version);
	free(m->creation_timestamp);
	free(m->deletion_timestamp);
	free_kvs(m->labels, m->n_labels);
	free_kvs(m->annotations, m->n_annotations);
	for (size_t i = 0; i < m->n_finalizers; i++)
		free(m->finalizers[i]);
	free(m->finalizers);
	for (size_t i = 0; i < m->n_owner_refs; i++) {
		free(m->owner_refs[i].api_version);
		free(m->owner_refs[i].kind);
		free(m->owner_refs[i].name);
		free(m->owner_refs[i].uid);
	}
	free(m->owner_refs);
}

void
object_ref_free(struct object_ref *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->namespace);
	free(r);
}

static void
free_status(struct resource_status *s)
{
	for (size_t i = 0; i < s->n_conditions; i++) {
		struct condition *c = &s->conditions[i];

		free(c->type);
		free(c->status);
		free(c->reason);
		free(c->message);
		free(c->last_transition_time);
	}
	free(s->conditions);
	free(s->provider_id);
}

static void
free_spec(struct resource *r)
{
	switch (r->kind) {
	case KIND_CONTACT:
		free(r->spec.contact.email);
		free(r->spec.contact.given_name);
		free(r->spec.contact.family_name);
		if (r->spec.contact.subject) {
			object_ref_free(r->spec.contact.subject->user_ref);
			object_ref_free(r->spec.contact.subject->organization_ref);
			object_ref_free(r->spec.contact.subject->project_ref);
			free(r->spec.contact.subject);
		}
		break;
	case KIND_CONTACT_GROUP:
		free(r->spec.group.display_name);
		free(r->spec.group.description);
		break;
	case KIND_MEMBERSHIP:
	case KIND_REMOVAL:
		object_ref_free(r->spec.membership.contact_ref);
		object_ref_free(r->spec.membership.group_ref);
		break;
	default:
		break;
	}
}

void
resource_free(struct resource *r)
{
	enum resource_kind kind = r->kind;

	free_meta(&r->meta);
	free_spec(r);
	free_status(&r->status);
	memset(r, 0, sizeof(*r));
	r->kind = kind;
}
