/* field.h -- Kubernetes field errors and the Status objects that carry them */
#ifndef MILO_FIELD_H
#define MILO_FIELD_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"

/* apimachinery's field.ErrorType, in the order of its String() table. */
enum field_type {
	FIELD_NOT_FOUND,	/* FieldValueNotFound: "Not found" */
	FIELD_REQUIRED,		/* FieldValueRequired: "Required value" */
	FIELD_DUPLICATE,	/* FieldValueDuplicate: "Duplicate value" */
	FIELD_INVALID,		/* FieldValueInvalid: "Invalid value" */
	FIELD_NOT_SUPPORTED,	/* FieldValueNotSupported: "Unsupported value" */
	FIELD_FORBIDDEN,	/* FieldValueForbidden: "Forbidden" */
	FIELD_TOO_LONG,		/* FieldValueTooLong: "Too long" */
	FIELD_TYPE_INVALID,	/* FieldValueTypeInvalid: "Invalid value" */
	FIELD_INTERNAL,		/* InternalError: "Internal error" */
};

/* How the bad value is shown, following ErrorBody's type switch. */
enum field_value {
	FV_OMIT,	/* no value shown */
	FV_STRING,	/* a Go string: shown with %q */
	FV_LITERAL,	/* a number, bool or JSON text: shown as is */
};

struct field_error {
	enum field_type type;
	char *field;		/* "spec.subject.userRef.name" */
	enum field_value vkind;
	char *value;
	char *detail;		/* NULL or "" for none */
};

/*
 * An ordered list of field errors. Adding never fails visibly: on ENOMEM
 * the list is marked (oom) and callers answer 500 instead of a verdict.
 */
struct field_list {
	struct field_error *v;
	size_t len, cap;
	int oom;
};

void field_list_init(struct field_list *l);
void field_list_free(struct field_list *l);
/* True when an error is on path or below it ("spec.subject" covers "spec.subject.userRef.name"). */
int field_list_has(const struct field_list *l, const char *path);

const char *field_type_reason(enum field_type t);	/* "FieldValueInvalid" */
const char *field_type_string(enum field_type t);	/* "Invalid value" */

/* The constructors of apimachinery's field package. detail is printf-style. */
void field_required(struct field_list *l, const char *path, const char *detail, ...)
	__attribute__((format(printf, 3, 4)));
void field_forbidden(struct field_list *l, const char *path, const char *detail, ...)
	__attribute__((format(printf, 3, 4)));
void field_invalid(struct field_list *l, const char *path, const char *value,
    const char *detail, ...) __attribute__((format(printf, 4, 5)));
/* Invalid with a JSON-rendered value (an object, a number) instead of a string. */
void field_invalid_json(struct field_list *l, const char *path, const char *json,
    const char *detail, ...) __attribute__((format(printf, 4, 5)));
void field_type_invalid(struct field_list *l, const char *path, const char *value,
    const char *detail, ...) __attribute__((format(printf, 4, 5)));
void field_duplicate(struct field_list *l, const char *path, const char *value);
/* Duplicate with a detail saying what it duplicates (apimachinery allows one). */
void field_duplicate_detail(struct field_list *l, const char *path, const char *value,
    const char *detail, ...) __attribute__((format(printf, 4, 5)));
void field_not_found(struct field_list *l, const char *path, const char *value);
/* valid is a NULL-terminated list: detail "supported values: \"a\", \"b\"". */
void field_not_supported(struct field_list *l, const char *path, const char *value,
    const char *const *valid);
/* TooLongCharacters: "Too long: may not be more than N characters". */
void field_too_long(struct field_list *l, const char *path, long max_chars);

/* Appends ErrorBody(): "Invalid value: \"x\": detail". */
int field_error_body(struct buf *out, const struct field_error *e);
/* Appends Error(): "<field>: <body>". */
int field_error_string(struct buf *out, const struct field_error *e);

/*
 * Appends ToAggregate()'s text: the single message, or "[e1, e2]" with
 * duplicate messages dropped.
 */
int field_list_aggregate(struct buf *out, const struct field_list *l);

/*
 * errors.NewInvalid: a metav1.Status with code 422, reason Invalid, the
 * message "<Kind>.<group> \"<name>\" is invalid: <aggregate>" and
 * details {name, group, kind, causes}. New reference; NULL on ENOMEM.
 */
json_t *field_status_invalid(const char *group, const char *kind,
    const char *name, const struct field_list *l);

/*
 * errors.NewForbidden: a metav1.Status with code 403, reason Forbidden,
 * the message "<resource>.<group> \"<name>\" is forbidden: <why>" (without
 * the quoted name when name is empty) and details {name, group, kind:
 * <resource>}; resource is the plural, as a GroupResource names it. New
 * reference; NULL on ENOMEM.
 */
json_t *field_status_forbidden(const char *group, const char *resource,
    const char *name, const char *why);

/*
 * A plain failure Status (BadRequest 400, Forbidden 403, InternalError
 * 500, ...). New reference; NULL on ENOMEM.
 */
json_t *field_status_new(int code, const char *reason, const char *message);

#endif
