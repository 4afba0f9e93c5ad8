/* subjects.h -- existence of Users, Organizations and Projects, cached with a TTL */
#ifndef MILO_SUBJECTS_H
#define MILO_SUBJECTS_H

#include <stddef.h>

#include "cache.h"

#define SUBJECTS_POSITIVE_TTL_S 30	/* how long "it exists" is believed */
#define SUBJECTS_NEGATIVE_TTL_S 5	/* how long "it does not" is believed */
#define SUBJECTS_MAX 10000		/* entries kept; then the expired are dropped */

struct kube_client;
struct subjects;

/*
 * Subjects are not watched (they live in other API groups and can be
 * many); a burst of Contact creates for one subject becomes one GET.
 */
int subjects_new(struct kube_client *client, struct subjects **out);
void subjects_free(struct subjects *s);

/*
 * Looks the subject up: returns 1 when it exists (*uid set, malloc'd, may
 * be NULL), 0 when the API server says it does not, or a negative code
 * when it could not be asked (*why describes it, malloc'd).
 */
int subjects_lookup(struct subjects *s, enum subject_kind kind, const char *name,
    char **uid, char **why);

/* Counters, for metrics and tests. */
size_t subjects_api_calls(struct subjects *s);

#endif
