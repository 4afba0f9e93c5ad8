/* rules.h -- the admission rules, one file per kind, and what they share */
#ifndef MILO_RULES_H
#define MILO_RULES_H

#include <jansson.h>
#include <stdbool.h>

#include "admission.h"
#include "cache.h"
#include "field.h"
#include "resource.h"

/*
 * Each kind's rules live in one file (contact.c, group.c, membership.c for
 * memberships and removals) and are reached through one table in
 * admission.c. A newcomer asked where the rule is that a removal blocks a
 * re-add opens membership.c. state.c holds what the cluster-state rules
 * share: lookups with their live-GET fallback, SubjectAccessReviews,
 * warnings, the fail-closed note.
 */

/* Who is asking, from the review's userInfo (borrowed). */
struct admission_user {
	const char *username;
	const char *uid;
	const json_t *groups;
	const json_t *extra;
};

/* What the cluster-state rules add beside field errors. */
struct admission_notes {
	json_t *warnings;	/* array of strings, owned; may stay NULL */
	char *unreachable;	/* set when something could not be verified (fail closed) */
	char *forbidden;	/* set when the user may not do this at all: why (403) */
	int oom;
};

void admission_notes_free(struct admission_notes *n);

/* What a mutation sees of the review (borrowed). */
struct rules_review {
	const char *operation;		/* "CREATE", "UPDATE" */
	const char *namespace;		/* the object's, or NULL */
	const json_t *object;
};

/*
 * One kind's rules. validate: what the object itself must be, every error
 * at once, in a stable order (old is NULL on a create). state: what the
 * cluster decides; env is NULL for a webhook without cluster state; obj may
 * have failed validate, so state checks what it reads. mutate (or NULL):
 * RFC 6902 operations appended to patch (a JSON array); *oom on ENOMEM.
 */
struct rules_kind {
	void (*validate)(const struct resource *obj, const struct resource *old,
	    struct field_list *errs);
	void (*state)(const struct admission_env *env, const struct admission_user *user,
	    const struct resource *obj, const struct resource *old, struct field_list *errs,
	    struct admission_notes *notes);
	void (*mutate)(const struct admission_env *env, const struct rules_review *r,
	    json_t *patch, int *oom);
};

extern const struct rules_kind rules_contact;		/* contact.c */
extern const struct rules_kind rules_group;		/* group.c */
extern const struct rules_kind rules_membership;	/* membership.c: both kinds */

/* ---- state.c: what the cluster-state rules share ---- */

enum rules_ref_state { REF_MISSING, REF_PRESENT, REF_DELETING, REF_UNKNOWN };

/* What a lookup found of an object another one refers to. */
struct rules_ref {
	enum rules_ref_state state;
	enum visibility visibility;	/* groups */
	enum subject_kind subject;	/* contacts */
	char subject_name[254];		/* contacts: "" when none or too long to be valid */
};

/*
 * Finds kind ns/name in the cache, then with a live GET (so an object made
 * a moment ago is never reported missing). REF_UNKNOWN when the API server
 * could not say; notes->unreachable then says why (the verdict fails closed).
 */
struct rules_ref rules_lookup(const struct admission_env *env, enum resource_kind kind,
    const char *ns, const char *name, struct admission_notes *notes);

/* Not found or being deleted, as field errors at <path>.name. */
void rules_check_ref(enum resource_kind kind, const struct object_ref *ref,
    const struct rules_ref *info, const char *path, struct field_list *errs);

/*
 * A reference into another namespace than own_ns needs the requester to
 * be allowed to get the object there (a SubjectAccessReview).
 */
void rules_check_access(const struct admission_env *env, const struct admission_user *user,
    const char *own_ns, enum resource_kind kind, const struct object_ref *ref,
    const char *path, struct field_list *errs, struct admission_notes *notes);

/* "ContactGroupMembership \"x\"" in own_ns, else a phrase that names no one. */
void rules_describe(char *out, size_t len, enum resource_kind kind, const char *own_ns,
    const char *other_ns, const char *other_name);

/* Records the first thing that could not be verified (fail closed). */
void rules_unreachable(struct admission_notes *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A warning for kubectl (HTTP Warning header): no control characters, kept short. */
void rules_warn(struct admission_notes *n, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends {op, path, value} to patch (takes value); *oom on ENOMEM. */
void rules_patch(json_t *patch, const char *op, const char *path, json_t *value, int *oom);

/* The namespace an empty reference namespace means: the object's own. */
const char *rules_ref_ns(const struct object_ref *ref, const char *own_ns);

#endif
