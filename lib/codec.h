/* codec.h -- JSON (jansson) decoding and encoding of the four resources */
#ifndef MILO_CODEC_H
#define MILO_CODEC_H

#include <jansson.h>

#include "field.h"
#include "resource.h"

/*
 * Decodes obj as a resource of the given kind into out (zeroed first).
 * Every problem is appended to errs as a field error with its path: a
 * field of the wrong JSON type ("spec.email in body must be of type
 * string"), an unknown enum value (Unsupported value). Unknown fields are
 * ignored; null counts as absent. Required fields are not checked here:
 * that is the validators' job. The top-level "kind" and "apiVersion" are
 * not checked either (the caller knows what it asked for).
 *
 * Returns 0 when out holds what could be decoded (check errs->len), or
 * -ENOMEM (out is freed). out must always be released with resource_free().
 */
int resource_decode(const json_t *obj, enum resource_kind kind,
    struct resource *out, struct field_list *errs);

/*
 * Encodes r as the API would serve it: apiVersion, kind, metadata, spec,
 * status, in the Go types' field order, absent fields omitted. New
 * reference, or NULL on ENOMEM. decode(encode(r)) reproduces r.
 */
json_t *resource_encode(const struct resource *r);

/* Parts, for callers that build patches and status bodies. New references. */
json_t *codec_encode_spec(const struct resource *r);
json_t *codec_encode_status(const struct resource_status *s, enum resource_kind kind);
json_t *codec_encode_object_ref(const struct object_ref *ref);

/* The JSON type name Kubernetes' schema errors use: "string", "integer"... */
const char *codec_json_type(const json_t *v);


/*
 * v rendered as Go's encoding/json would marshal the matching Go value
 * (compact, keys in struct order, HTML-safe escapes): the form apimachinery
 * shows for a struct in "Invalid value: {…}". malloc'd; NULL on ENOMEM.
 */
char *codec_go_json(const json_t *v);

#endif
