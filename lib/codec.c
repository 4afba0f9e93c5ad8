/* codec.c -- JSON (jansson) decoding and encoding of the four resources */
#include "codec.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quote.h"

#define CODEC_PATH_MAX 512	/* longest field path we render; deeper keys are cut */

/* Decoding state: where we are and where problems go. */
struct dec {
	struct field_list *errs;
	int oom;
};

const char *
codec_json_type(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "object";
	case JSON_ARRAY: return "array";
	case JSON_STRING: return "string";
	case JSON_INTEGER: return "integer";
	case JSON_REAL: return "number";
	case JSON_TRUE:
	case JSON_FALSE: return "boolean";
	default: return "null";
	}
}

/* base.key into out; a path too deep to show whole is cut, never overrun. */
static void
join(char *out, const char *base, const char *key)
{
	int n;

	if (base && base[0])
		n = snprintf(out, CODEC_PATH_MAX, "%s.%s", base, key);
	else
		n = snprintf(out, CODEC_PATH_MAX, "%s", key);
	if (n < 0)
		out[0] = '\0';
}

/* The schema error kube-apiserver gives for a wrong JSON type. */
static void
wrong_type(struct dec *d, const char *path, const json_t *v, const char *want)
{
	field_type_invalid(d->errs, path, codec_json_type(v),
	    "%s in body must be of type %s: \"%s\"", path, want, codec_json_type(v));
}

/* Looks key up in obj; NULL when absent or null. */
static json_t *
member(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_null(v) ? NULL : v;
}

static void
get_string(struct dec *d, const json_t *obj, const char *base, const char *key,
    char **out)
{
	json_t *v = member(obj, key);
	char path[CODEC_PATH_MAX];

	if (!v)
		return;
	if (!json_is_string(v)) {
		join(path, base, key);
		wrong_type(d, path, v, "string");
		return;
	}
	*out = strndup(json_string_value(v), json_string_length(v));
	if (!*out)
		d->oom = 1;
}

static void
get_int(struct dec *d, const json_t *obj, const char *base, const char *key,
    int64_t *out)
{
	json_t *v = member(obj, key);
	char path[CODEC_PATH_MAX];

	if (!v)
		return;
	if (!json_is_integer(v)) {
		join(path, base, key);
		wrong_type(d, path, v, "integer");
		return;
	}
	*out = json_integer_value(v);
}

static void
get_bool(struct dec *d, const json_t *obj, const char *base, const char *key,
    bool *out, bool *has)
{
	json_t *v = member(obj, key);
	char path[CODEC_PATH_MAX];

	if (!v)
		return;
	if (!json_is_boolean(v)) {
		join(path, base, key);
		wrong_type(d, path, v, "boolean");
		return;
	}
	*out = json_is_true(v);
	*has = true;
}

/* The object at key, or NULL (absent, or wrong type: reported). */
static json_t *
get_object(struct dec *d, const json_t *obj, const char *base, const char *key)
{
	json_t *v = member(obj, key);
	char path[CODEC_PATH_MAX];

	if (v && !json_is_object(v)) {
		join(path, base, key);
		wrong_type(d, path, v, "object");
		return NULL;
	}
	return v;
}

static json_t *
get_array(struct dec *d, const json_t *obj, const char *base, const char *key)
{
	json_t *v = member(obj, key);
	char path[CODEC_PATH_MAX];

	if (v && !json_is_array(v)) {
		join(path, base, key);
		wrong_type(d, path, v, "array");
		return NULL;
	}
	return v;
}

static void
get_map(struct dec *d, const json_t *obj, const char *base, const char *key,
    struct key_value **out, size_t *n)
{
	json_t *m = get_object(d, obj, base, key);
	char path[CODEC_PATH_MAX], item[CODEC_PATH_MAX];
	const char *k;
	json_t *v;

	if (!m || json_object_size(m) == 0)
		return;
	*out = calloc(json_object_size(m), sizeof(**out));
	if (!*out) {
		d->oom = 1;
		return;
	}
	join(path, base, key);
	json_object_foreach(m, k, v) {
		if (!json_is_string(v)) {
			join(item, path, k);
			wrong_type(d, item, v, "string");
			continue;
		}
		(*out)[*n].key = strdup(k);
		(*out)[*n].value = strdup(json_string_value(v));
		if (!(*out)[*n].key || !(*out)[*n].value)
			d->oom = 1;
		(*n)++;
	}
}

static void
decode_finalizers(struct dec *d, const json_t *meta, struct object_meta *m)
{
	json_t *a = get_array(d, meta, "metadata", "finalizers");
	char path[CODEC_PATH_MAX];
	size_t i;
	json_t *v;

	if (!a || json_array_size(a) == 0)
		return;
	m->finalizers = calloc(json_array_size(a), sizeof(char *));
	if (!m->finalizers) {
		d->oom = 1;
		return;
	}
	json_array_foreach(a, i, v) {
		if (!json_is_string(v)) {
			snprintf(path, sizeof(path), "metadata.finalizers[%zu]", i);
			wrong_type(d, path, v, "string");
			continue;
		}
		m->finalizers[m->n_finalizers] = strdup(json_string_value(v));
		if (!m->finalizers[m->n_finalizers++])
			d->oom = 1;
	}
}

static void
decode_owner_refs(struct dec *d, const json_t *meta, struct object_meta *m)
{
	json_t *a = get_array(d, meta, "metadata", "ownerReferences");
	char path[CODEC_PATH_MAX];
	size_t i;
	json_t *v;

	if (!a || json_array_size(a) == 0)
		return;
	m->owner_refs = calloc(json_array_size(a), sizeof(*m->owner_refs));
	if (!m->owner_refs) {
		d->oom = 1;
		return;
	}
	json_array_foreach(a, i, v) {
		struct owner_ref *o = &m->owner_refs[m->n_owner_refs];

		snprintf(path, sizeof(path), "metadata.ownerReferences[%zu]", i);
		if (!json_is_object(v)) {
			wrong_type(d, path, v, "object");
			continue;
		}
		m->n_owner_refs++;
		get_string(d, v, path, "apiVersion", &o->api_version);
		get_string(d, v, path, "kind", &o->kind);
		get_string(d, v, path, "name", &o->name);
		get_string(d, v, path, "uid", &o->uid);
		get_bool(d, v, path, "controller", &o->controller, &o->has_controller);
		get_bool(d, v, path, "blockOwnerDeletion", &o->block_owner_deletion,
		    &o->has_block_owner_deletion);
	}
}

static void
decode_meta(struct dec *d, const json_t *obj, struct object_meta *m)
{
	json_t *meta = get_object(d, obj, "", "metadata");

	if (!meta)
		return;
	get_string(d, meta, "metadata", "name", &m->name);
	get_string(d, meta, "metadata", "generateName", &m->generate_name);
	get_string(d, meta, "metadata", "namespace", &m->namespace);
	get_string(d, meta, "metadata", "uid", &m->uid);
	get_string(d, meta, "metadata", "resourceVersion", &m->resource_version);
	get_int(d, meta, "metadata", "generation", &m->generation);
	get_string(d, meta, "metadata", "creationTimestamp", &m->creation_timestamp);
	get_string(d, meta, "metadata", "deletionTimestamp", &m->deletion_timestamp);
	get_map(d, meta, "metadata", "labels", &m->labels, &m->n_labels);
	get_map(d, meta, "metadata", "annotations", &m->annotations, &m->n_annotations);
	decode_finalizers(d, meta, m);
	decode_owner_refs(d, meta, m);
}

static struct object_ref *
decode_ref(struct dec *d, const json_t *obj, const char *base, const char *key)
{
	json_t *v = get_object(d, obj, base, key);
	char path[CODEC_PATH_MAX];
	struct object_ref *ref;

	if (!v)
		return NULL;
	ref = calloc(1, sizeof(*ref));
	if (!ref) {
		d->oom = 1;
		return NULL;
	}
	join(path, base, key);
	get_string(d, v, path, "name", &ref->name);
	get_string(d, v, path, "namespace", &ref->namespace);
	return ref;
}

static void
decode_contact(struct dec *d, const json_t *spec, struct contact_spec *c)
{
	json_t *subject;

	get_string(d, spec, "spec", "email", &c->email);
	get_string(d, spec, "spec", "givenName", &c->given_name);
	get_string(d, spec, "spec", "familyName", &c->family_name);
	subject = get_object(d, spec, "spec", "subject");
	if (!subject)
		return;
	c->subject = calloc(1, sizeof(*c->subject));
	if (!c->subject) {
		d->oom = 1;
		return;
	}
	c->subject->user_ref = decode_ref(d, subject, "spec.subject", "userRef");
	c->subject->organization_ref = decode_ref(d, subject, "spec.subject",
	    "organizationRef");
	c->subject->project_ref = decode_ref(d, subject, "spec.subject", "projectRef");
}

static void
decode_group(struct dec *d, const json_t *spec, struct group_spec *g)
{
	static const char *const supported[] = { "private", "public", NULL };
	char *vis = NULL;

	get_string(d, spec, "spec", "displayName", &g->display_name);
	get_string(d, spec, "spec", "visibility", &vis);
	get_string(d, spec, "spec", "description", &g->description);
	if (!vis)
		return;
	if (strcmp(vis, "public") == 0)
		g->visibility = VISIBILITY_PUBLIC;
	else if (strcmp(vis, "private") == 0)
		g->visibility = VISIBILITY_PRIVATE;
	else {
		g->visibility = VISIBILITY_UNKNOWN;
		field_not_supported(d->errs, "spec.visibility", vis, supported);
	}
	free(vis);
}

static void
decode_membership(struct dec *d, const json_t *spec, struct membership_spec *m)
{
	m->contact_ref = decode_ref(d, spec, "spec", "contactRef");
	m->group_ref = decode_ref(d, spec, "spec", "contactGroupRef");
}

static void
decode_conditions(struct dec *d, const json_t *status, struct resource_status *s)
{
	json_t *a = get_array(d, status, "status", "conditions");
	char path[CODEC_PATH_MAX];
	size_t i;
	json_t *v;

	if (!a || json_array_size(a) == 0)
		return;
	s->conditions = calloc(json_array_size(a), sizeof(*s->conditions));
	if (!s->conditions) {
		d->oom = 1;
		return;
	}
	json_array_foreach(a, i, v) {
		struct condition *c = &s->conditions[s->n_conditions];

		snprintf(path, sizeof(path), "status.conditions[%zu]", i);
		if (!json_is_object(v)) {
			wrong_type(d, path, v, "object");
			continue;
		}
		s->n_conditions++;
		get_string(d, v, path, "type", &c->type);
		get_string(d, v, path, "status", &c->status);
		get_int(d, v, path, "observedGeneration", &c->observed_generation);
		get_string(d, v, path, "lastTransitionTime", &c->last_transition_time);
		get_string(d, v, path, "reason", &c->reason);
		get_string(d, v, path, "message", &c->message);
	}
}

static void
decode_status(struct dec *d, const json_t *obj, struct resource *r)
{
	json_t *status = get_object(d, obj, "", "status");

	if (!status)
		return;
	r->has_status = true;
	get_int(d, status, "status", "observedGeneration", &r->status.observed_generation);
	decode_conditions(d, status, &r->status);
	if (r->kind != KIND_REMOVAL)
		get_string(d, status, "status", "providerID", &r->status.provider_id);
}

int
resource_decode(const json_t *obj, enum resource_kind kind, struct resource *out,
    struct field_list *errs)
{
	struct dec d = { .errs = errs };
	json_t *spec;

	memset(out, 0, sizeof(*out));
	out->kind = kind;
	if (!json_is_object(obj)) {
		field_type_invalid(errs, "<root>", codec_json_type(obj),
		    "must be of type object: \"%s\"", codec_json_type(obj));
		return errs->oom ? -ENOMEM : 0;
	}
	decode_meta(&d, obj, &out->meta);
	spec = get_object(&d, obj, "", "spec");
	if (spec) {
		out->has_spec = true;
		if (kind == KIND_CONTACT)
			decode_contact(&d, spec, &out->spec.contact);
		else if (kind == KIND_CONTACT_GROUP)
			decode_group(&d, spec, &out->spec.group);
		else
			decode_membership(&d, spec, &out->spec.membership);
	}
	decode_status(&d, obj, out);
	if (d.oom || errs->oom) {
		resource_free(out);
		return -ENOMEM;
	}
	return 0;
}

/* ---- encoding ---- */

/* Sets key to a copy of s when s is set; a failure poisons *ok. */
static void
put_string(json_t *obj, const char *key, const char *s, int *ok)
{
	if (s && json_object_set_new(obj, key, json_string(s)) != 0)
		*ok = 0;
}

static void
put_new(json_t *obj, const char *key, json_t *v, int *ok)
{
	if (!v || json_object_set_new(obj, key, v) != 0)
		*ok = 0;
}

static json_t *
encode_map(const struct key_value *kv, size_t n, int *ok)
{
	json_t *m = json_object();

	if (!m)
		*ok = 0;
	for (size_t i = 0; m && i < n; i++)
		put_string(m, kv[i].key, kv[i].value, ok);
	return m;
}

static json_t *
encode_owner_refs(const struct object_meta *m, int *ok)
{
	json_t *a = json_array();

	if (!a)
		*ok = 0;
	for (size_t i = 0; a && i < m->n_owner_refs; i++) {
		const struct owner_ref *o = &m->owner_refs[i];
		json_t *j = json_object();

		if (!j || json_array_append_new(a, j) != 0) {
			*ok = 0;
			break;
		}
		put_string(j, "apiVersion", o->api_version, ok);
		put_string(j, "kind", o->kind, ok);
		put_string(j, "name", o->name, ok);
		put_string(j, "uid", o->uid, ok);
		if (o->has_controller)
			put_new(j, "controller", json_boolean(o->controller), ok);
		if (o->has_block_owner_deletion)
			put_new(j, "blockOwnerDeletion",
			    json_boolean(o->block_owner_deletion), ok);
	}
	return a;
}

static json_t *
encode_meta(const struct object_meta *m, int *ok)
{
	json_t *j = json_object();

	if (!j) {
		*ok = 0;
		return NULL;
	}
	put_string(j, "name", m->name, ok);
	put_string(j, "generateName", m->generate_name, ok);
	put_string(j, "namespace", m->namespace, ok);
	put_string(j, "uid", m->uid, ok);
	put_string(j, "resourceVersion", m->resource_version, ok);
	if (m->generation)
		put_new(j, "generation", json_integer(m->generation), ok);
	put_string(j, "creationTimestamp", m->creation_timestamp, ok);
	put_string(j, "deletionTimestamp", m->deletion_timestamp, ok);
	if (m->n_labels)
		put_new(j, "labels", encode_map(m->labels, m->n_labels, ok), ok);
	if (m->n_annotations)
		put_new(j, "annotations",
		    encode_map(m->annotations, m->n_annotations, ok), ok);
	if (m->n_owner_refs)
		put_new(j, "ownerReferences", encode_owner_refs(m, ok), ok);
	if (m->n_finalizers) {
		json_t *a = json_array();

		for (size_t i = 0; a && i < m->n_finalizers; i++)
			if (json_array_append_new(a, json_string(m->finalizers[i])) != 0)
				*ok = 0;
		put_new(j, "finalizers", a, ok);
	}
	return j;
}

json_t *
codec_encode_object_ref(const struct object_ref *ref)
{
	json_t *j = json_object();
	int ok = 1;

	if (!j)
		return NULL;
	put_string(j, "name", ref->name, &ok);
	put_string(j, "namespace", ref->namespace, &ok);
	if (!ok) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static void
put_ref(json_t *obj, const char *key, const struct object_ref *ref, int *ok)
{
	if (ref)
		put_new(obj, key, codec_encode_object_ref(ref), ok);
}

json_t *
codec_encode_spec(const struct resource *r)
{
	json_t *j = json_object();
	int ok = 1;

	if (!j)
		return NULL;
	switch (r->kind) {
	case KIND_CONTACT: {
		const struct contact_spec *c = &r->spec.contact;

		put_string(j, "email", c->email, &ok);
		put_string(j, "givenName", c->given_name, &ok);
		put_string(j, "familyName", c->family_name, &ok);
		if (c->subject) {
			json_t *s = json_object();

			put_new(j, "subject", s, &ok);
			if (s) {
				put_ref(s, "userRef", c->subject->user_ref, &ok);
				put_ref(s, "organizationRef", c->subject->organization_ref, &ok);
				put_ref(s, "projectRef", c->subject->project_ref, &ok);
			}
		}
		break;
	}
	case KIND_CONTACT_GROUP:
		put_string(j, "displayName", r->spec.group.display_name, &ok);
		put_string(j, "visibility", visibility_name(r->spec.group.visibility), &ok);
		put_string(j, "description", r->spec.group.description, &ok);
		break;
	default:
		put_ref(j, "contactRef", r->spec.membership.contact_ref, &ok);
		put_ref(j, "contactGroupRef", r->spec.membership.group_ref, &ok);
		break;
	}
	if (!ok) {
		json_decref(j);
		return NULL;
	}
	return j;
}

json_t *
codec_encode_status(const struct resource_status *s, enum resource_kind kind)
{
	json_t *j = json_object();
	int ok = 1;

	if (!j)
		return NULL;
	if (s->observed_generation)
		put_new(j, "observedGeneration", json_integer(s->observed_generation), &ok);
	if (s->n_conditions) {
		json_t *a = json_array();

		put_new(j, "conditions", a, &ok);
		for (size_t i = 0; a && i < s->n_conditions; i++) {
			const struct condition *c = &s->conditions[i];
			json_t *cj = json_object();

			if (!cj || json_array_append_new(a, cj) != 0) {
				ok = 0;
				break;
			}
			put_string(cj, "type", c->type, &ok);
			put_string(cj, "status", c->status, &ok);
			if (c->observed_generation)
				put_new(cj, "observedGeneration",
				    json_integer(c->observed_generation), &ok);
			put_string(cj, "lastTransitionTime", c->last_transition_time, &ok);
			put_string(cj, "reason", c->reason, &ok);
			put_string(cj, "message", c->message, &ok);
		}
	}
	if (kind != KIND_REMOVAL)
		put_string(j, "providerID", s->provider_id, &ok);
	if (!ok) {
		json_decref(j);
		return NULL;
	}
	return j;
}

json_t *
resource_encode(const struct resource *r)
{
	const struct kind_info *ki = kind_info(r->kind);
	json_t *j = json_object();
	int ok = 1;

	if (!j || !ki) {
		json_decref(j);
		return NULL;
	}
	put_string(j, "apiVersion", RESOURCE_API_VERSION, &ok);
	put_string(j, "kind", ki->kind, &ok);
	put_new(j, "metadata", encode_meta(&r->meta, &ok), &ok);
	if (r->has_spec)
		put_new(j, "spec", codec_encode_spec(r), &ok);
	if (r->has_status)
		put_new(j, "status", codec_encode_status(&r->status, r->kind), &ok);
	if (!ok) {
		json_decref(j);
		return NULL;
	}
	return j;
}

#define CODEC_GO_JSON_MAX (1u << 20)

static int
go_json(struct buf *b, const json_t *v)
{
	const char *key;
	json_t *item;
	size_t i, n = 0;
	int rc = 0;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		rc = buf_addc(b, '{');
		json_object_foreach((json_t *)(uintptr_t)v, key, item) {
			if (rc == 0 && n++)
				rc = buf_addc(b, ',');
			if (rc == 0)
				rc = quote_json(b, key, strlen(key));
			if (rc == 0)
				rc = buf_addc(b, ':');
			if (rc == 0)
				rc = go_json(b, item);
		}
		return rc ? rc : buf_addc(b, '}');
	case JSON_ARRAY:
		rc = buf_addc(b, '[');
		json_array_foreach(v, i, item) {
			if (rc == 0 && i)
				rc = buf_addc(b, ',');
			if (rc == 0)
				rc = go_json(b, item);
		}
		return rc ? rc : buf_addc(b, ']');
	case JSON_STRING:
		return quote_json(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	case JSON_REAL:
		return buf_printf(b, "%.17g", json_real_value(v));
	case JSON_TRUE:
		return buf_addstr(b, "true");
	case JSON_FALSE:
		return buf_addstr(b, "false");
	default:
		return buf_addstr(b, "null");
	}
}

char *
codec_go_json(const json_t *v)
{
	struct buf b;

	buf_init(&b, CODEC_GO_JSON_MAX);
	if (!v)
		return strdup("null");
	if (go_json(&b, v) != 0)
		return NULL;
	return buf_steal(&b, NULL);
}
