/* testutil.h -- small helpers shared by the Check suites */
#ifndef MILO_TESTUTIL_H
#define MILO_TESTUTIL_H

#include <jansson.h>
#include <stddef.h>

/* $MILO_TOP/<rel>, or ./<rel> when unset. Static buffer, not thread-safe. */
const char *tu_path(const char *rel);

/* Reads a whole file; NULL on error. free() the result. */
char *tu_read_file(const char *path, size_t *len);

/* Loads JSON from a path relative to the top; fails the test on error. */
json_t *tu_load_json(const char *rel);

/* True when the suites run under valgrind (slow paths may shrink). */
int tu_under_valgrind(void);


/* ---- admission rule fixtures (one JSON file each under test/fixtures/rules) ---- */

/* Sorted file names (no directory) of the rule fixtures; free with tu_names_free. */
char **tu_rule_names(size_t *n);
void tu_names_free(char **names, size_t n);

/* Loads test/fixtures/rules/<name>. */
json_t *tu_rule_load(const char *name);

/* RFC 7386 merge patch of patch onto target (modified in place). */
void tu_merge_patch(json_t *target, const json_t *patch);

/*
 * Builds the AdmissionReview v1 a kube-apiserver would send for a rule
 * fixture, with the given uid. New reference.
 */
json_t *tu_rule_review(const json_t *rule, const char *uid);

/* The endpoint path of a rule fixture. Borrowed from rule. */
const char *tu_rule_endpoint(const json_t *rule);

/*
 * Asserts (Check) that an HTTP status and body answer the rule as its
 * "expect" says, and that the response keeps the AdmissionReview
 * contract: HTTP 200, apiVersion/kind, the uid echoed, no patch from a
 * validating endpoint, patch and patchType together.
 */
void tu_rule_assert(const json_t *rule, const char *uid, long http_status,
    const char *body, size_t len);

#endif
