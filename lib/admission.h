/* admission.h -- AdmissionReview v1 in, AdmissionReview v1 out */
#ifndef MILO_ADMISSION_H
#define MILO_ADMISSION_H

#include <stddef.h>

#include "resource.h"

enum admission_mode { ADMISSION_VALIDATE, ADMISSION_MUTATE };

struct cache;
struct kube_client;
struct subjects;

/*
 * Cluster state the rules may consult. A NULL env means "stateless": only
 * the rules that need no cluster state run. All members are borrowed.
 */
struct admission_env {
	struct cache *cache;		/* the watch cache of the four kinds */
	struct kube_client *client;	/* live GETs on a miss, SubjectAccessReviews */
	struct subjects *subjects;	/* User/Organization/Project lookups */
	int verify_subjects;		/* check that a Contact's subject exists */
};

/*
 * What one admission call produced. Every pointer is malloc'd or NULL and
 * released by admission_outcome_free().
 */
struct admission_outcome {
	int http_status;	/* 200 for any well-formed review, else 400 */
	char *body;		/* the response body, always set on success */
	size_t body_len;
	const char *content_type; /* static */
	int allowed;		/* meaningful when http_status is 200 */
	int patched;		/* a JSON patch was returned */
	int dry_run;
	char *uid, *kind, *namespace, *name, *operation; /* for the log line */
	const char *reason;	/* static: why a 400, or NULL */
};

/*
 * Maps a request path (without the query string) to the endpoint it names:
 * /validate-notification-miloapis-com-v1alpha1-<kind> or /mutate-…
 * Returns 0 and fills kind and mode on a match, -ENOENT otherwise.
 */
int admission_route(const char *path, enum resource_kind *kind,
    enum admission_mode *mode);

/* The canonical path of an endpoint, e.g. for metrics labels. Static. */
const char *admission_path(enum resource_kind kind, enum admission_mode mode);

/*
 * Answers one AdmissionReview body for the endpoint (kind, mode). Never
 * fails for bad input: a body that is not a review gets http_status 400
 * and a plain-text reason, anything else an HTTP 200 review whose response
 * allows or denies. Returns 0, or -ENOMEM when the answer could not be
 * built (the caller answers 500); out is then cleared.
 */
int admission_handle(const struct admission_env *env, enum resource_kind kind,
    enum admission_mode mode, const char *body, size_t len,
    struct admission_outcome *out);

void admission_outcome_free(struct admission_outcome *out);

/*
 * The rules that need no cluster state, for obj of its kind (old on an
 * update, else NULL): every field error appended to errs, in a stable
 * order (lib/rules/). For tools and tests; admission_handle() runs them.
 */
struct field_list;
void admission_validate_object(const struct resource *obj, const struct resource *old,
    struct field_list *errs);

#endif
