/* validate.h -- the field checks the admission rules share, and their limits */
#ifndef MILO_VALIDATE_H
#define MILO_VALIDATE_H

#include "field.h"
#include "resource.h"

#define VALIDATE_NAME_MAX 256		/* givenName, familyName: characters */
#define VALIDATE_DISPLAY_NAME_MAX 256	/* ContactGroup displayName: characters */
/*
 * ContactGroup description: characters. A paragraph or two for a provider's
 * opt-in page; the CRD's maxLength says the same, so the API server refuses
 * longer ones before the webhook sees them.
 */
#define VALIDATE_DESCRIPTION_MAX 1024
#define VALIDATE_SUBDOMAIN_MAX 253	/* object names (RFC 1123 subdomain) */
#define VALIDATE_LABEL_MAX 63		/* namespaces (RFC 1123 label) */

/* apimachinery's IsDNS1123Subdomain / IsDNS1123Label, as Invalid errors at path. */
void validate_subdomain(struct field_list *errs, const char *path, const char *value);
void validate_label(struct field_list *errs, const char *path, const char *value);

/* Too long (in characters) and control characters, for free text fields. */
void validate_text(struct field_list *errs, const char *path, const char *value,
    long max_chars);

/* The same, allowing line feeds (multi-line text such as a description). */
void validate_paragraphs(struct field_list *errs, const char *path, const char *value,
    long max_chars);

/* True when a and b are both absent or hold the same name and namespace. */
int validate_ref_equal(const struct object_ref *a, const struct object_ref *b);

#endif
