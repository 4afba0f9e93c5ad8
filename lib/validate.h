/* validate.h -- the admission rules that need no cluster state */
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

/*
 * Each validator checks obj (and, for an update, old; NULL on create) and
 * appends what is wrong to errs in a stable order, all errors at once.
 * obj must have been decoded without errors of its own.
 */
void validate_contact(const struct resource *obj, const struct resource *old,
    struct field_list *errs);
void validate_group(const struct resource *obj, const struct resource *old,
    struct field_list *errs);
/* ContactGroupMembership and ContactGroupMembershipRemoval. */
void validate_membership(const struct resource *obj, const struct resource *old,
    struct field_list *errs);

/* Dispatches on obj->kind. */
void validate_object(const struct resource *obj, const struct resource *old,
    struct field_list *errs);

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
