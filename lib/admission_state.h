/* admission_state.h -- the admission rules that read cluster state */
#ifndef MILO_ADMISSION_STATE_H
#define MILO_ADMISSION_STATE_H

#include <jansson.h>

#include "admission.h"
#include "field.h"
#include "resource.h"

/* Who is asking, from the review's userInfo (borrowed). */
struct admission_user {
	const char *username;
	const char *uid;
	const json_t *groups;
	const json_t *extra;
};

/* What the state rules add beside field errors. */
struct admission_notes {
	json_t *warnings;	/* array of strings, owned; may stay NULL */
	char *unreachable;	/* set when something could not be verified (fail closed) */
	char *forbidden;	/* set when the user may not do this at all: why (403) */
	int oom;
};

void admission_notes_free(struct admission_notes *n);

/*
 * Runs the cluster-state rules for a CREATE or UPDATE of obj (old for an
 * update, else NULL) and appends field errors to errs. obj passed the
 * stateless rules.
 */
void admission_state_validate(const struct admission_env *env,
    const struct admission_user *user, const struct resource *obj,
    const struct resource *old, struct field_list *errs, struct admission_notes *notes);

/*
 * The ownerReference a new Contact should get: its subject User, when the
 * User exists. Returns a new JSON object {apiVersion, kind, name, uid},
 * or NULL when there is none to add.
 */
json_t *admission_state_owner(const struct admission_env *env, const struct resource *obj);

#endif
