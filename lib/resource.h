/* resource.h -- the four notification.miloapis.com/v1alpha1 resources */
#ifndef MILO_RESOURCE_H
#define MILO_RESOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESOURCE_GROUP "notification.miloapis.com"
#define RESOURCE_VERSION "v1alpha1"
#define RESOURCE_API_VERSION RESOURCE_GROUP "/" RESOURCE_VERSION

enum resource_kind {
	KIND_CONTACT,
	KIND_CONTACT_GROUP,
	KIND_MEMBERSHIP,
	KIND_REMOVAL,
	KIND__COUNT
};

struct kind_info {
	const char *kind;	/* "ContactGroupMembership" */
	const char *plural;	/* "contactgroupmemberships" */
	const char *singular;	/* "contactgroupmembership", the endpoint suffix */
	const char *finalizer;	/* reconciler finalizer, NULL for removals */
};

const struct kind_info *kind_info(enum resource_kind kind);
/* Looks a kind up by its Kind name; -ENOENT when it is none of ours. */
int kind_from_name(const char *kind, enum resource_kind *out);
int kind_from_plural(const char *plural, enum resource_kind *out);

struct key_value {
	char *key;
	char *value;
};

struct owner_ref {
	char *api_version;
	char *kind;
	char *name;
	char *uid;
	bool controller, has_controller;
	bool block_owner_deletion, has_block_owner_deletion;
};

/* The part of ObjectMeta the programs use. NULL strings are absent. */
struct object_meta {
	char *name;
	char *generate_name;
	char *namespace;
	char *uid;
	char *resource_version;
	int64_t generation;	/* 0 when absent */
	char *creation_timestamp;
	char *deletion_timestamp;
	struct key_value *labels;
	size_t n_labels;
	struct key_value *annotations;
	size_t n_annotations;
	char **finalizers;
	size_t n_finalizers;
	struct owner_ref *owner_refs;
	size_t n_owner_refs;
};

/* metav1.Condition */
struct condition {
	char *type;
	char *status;		/* "True", "False", "Unknown" */
	char *reason;
	char *message;
	char *last_transition_time;
	int64_t observed_generation;
};

struct resource_status {
	int64_t observed_generation;
	struct condition *conditions;
	size_t n_conditions;
	char *provider_id;	/* Contact, ContactGroup, Membership */
};

struct object_ref {
	char *name;
	char *namespace;
};

/* A Contact's subject: exactly one ref should be set; decoding keeps all. */
struct subject {
	struct object_ref *user_ref;		/* cluster-scoped User */
	struct object_ref *organization_ref;
	struct object_ref *project_ref;
};

struct contact_spec {
	char *email;
	char *given_name;
	char *family_name;
	struct subject *subject;	/* NULL when absent */
};

enum visibility {
	VISIBILITY_UNSET,
	VISIBILITY_PUBLIC,
	VISIBILITY_PRIVATE,
	VISIBILITY_UNKNOWN,	/* a value we do not know; already reported */
};

struct group_spec {
	char *display_name;
	enum visibility visibility;
	char *description;	/* optional; may hold newlines */
};

/* ContactGroupMembership and ContactGroupMembershipRemoval share a shape. */
struct membership_spec {
	struct object_ref *contact_ref;
	struct object_ref *group_ref;
};

struct resource {
	enum resource_kind kind;
	struct object_meta meta;
	bool has_spec;
	union {
		struct contact_spec contact;
		struct group_spec group;
		struct membership_spec membership;	/* and removal */
	} spec;
	bool has_status;
	struct resource_status status;
};

const char *visibility_name(enum visibility v);	/* NULL for UNSET */

/* Frees everything the resource owns and zeroes it; the struct itself stays. */
void resource_free(struct resource *r);
void object_ref_free(struct object_ref *r);	/* frees the struct too */

#endif
