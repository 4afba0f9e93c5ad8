/* testutil.c -- small helpers shared by the Check suites */
#include "testutil.h"

#include <check.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

const char *
tu_path(const char *rel)
{
	static char path[4096];
	const char *top = getenv("MILO_TOP");

	snprintf(path, sizeof(path), "%s/%s", top ? top : ".", rel);
	return path;
}

char *
tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	data = malloc((size_t)n + 1);
	if (!data)
		goto out;
	if (fread(data, 1, (size_t)n, f) != (size_t)n) {
		free(data);
		data = NULL;
		goto out;
	}
	data[n] = '\0';
	if (len)
		*len = (size_t)n;
out:
	fclose(f);
	return data;
}

json_t *
tu_load_json(const char *rel)
{
	json_error_t err;
	json_t *j = json_load_file(tu_path(rel), JSON_REJECT_DUPLICATES, &err);

	ck_assert_msg(j != NULL, "%s: %s (line %d)", rel, err.text, err.line);
	return j;
}

int
tu_under_valgrind(void)
{
	return getenv("MILO_UNDER_VALGRIND") != NULL;
}

/* ---- admission rule fixtures ---- */

#define RULES_DIR "test/fixtures/rules"

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
tu_rule_names(size_t *n)
{
	DIR *d = opendir(tu_path(RULES_DIR));
	struct dirent *e;
	char **names = NULL;
	size_t len = 0, cap = 0;

	*n = 0;
	if (!d)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);

		if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
			continue;
		if (len == cap) {
			char **grown;

			cap = cap ? cap * 2 : 64;
			grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				break;
			names = grown;
		}
		names[len] = strdup(e->d_name);
		if (names[len])
			len++;
	}
	closedir(d);
	if (len)
		qsort(names, len, sizeof(*names), cmp_names);
	*n = len;
	return names;
}

void
tu_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

json_t *
tu_rule_load(const char *name)
{
	char rel[512];

	snprintf(rel, sizeof(rel), "%s/%s", RULES_DIR, name);
	return tu_load_json(rel);
}

void
tu_merge_patch(json_t *target, const json_t *patch)
{
	const char *key;
	json_t *value;

	json_object_foreach((json_t *)(uintptr_t)patch, key, value) {
		json_t *have = json_object_get(target, key);

		if (json_is_null(value))
			json_object_del(target, key);
		else if (json_is_object(value) && json_is_object(have))
			tu_merge_patch(have, value);
		else if (json_is_object(value)) {
			json_t *fresh = json_object();

			tu_merge_patch(fresh, value);
			json_object_set_new(target, key, fresh);
		} else
			json_object_set(target, key, value);
	}
}

/* {"base": "<objects/file>", "set": {merge patch}} -> the object, or null. */
static json_t *
build_object(const json_t *spec)
{
	const char *base = json_string_value(json_object_get(spec, "base"));
	char rel[512];
	json_t *obj;

	if (!base)
		return json_null();
	snprintf(rel, sizeof(rel), "test/fixtures/objects/%s", base);
	obj = tu_load_json(rel);
	if (json_object_get(spec, "set"))
		tu_merge_patch(obj, json_object_get(spec, "set"));
	return obj;
}

const char *
tu_rule_endpoint(const json_t *rule)
{
	return json_string_value(json_object_get(rule, "endpoint"));
}

json_t *
tu_rule_review(const json_t *rule, const char *uid)
{
	json_t *obj = build_object(json_object_get(rule, "object"));
	json_t *old = json_object_get(rule, "oldObject") ?
	    build_object(json_object_get(rule, "oldObject")) : json_null();
	const json_t *any = json_is_object(obj) ? obj : old;
	const json_t *meta = json_object_get(any, "metadata");
	const char *kind = json_string_value(json_object_get(any, "kind"));
	const char *op = json_string_value(json_object_get(rule, "operation"));
	const char *ns = json_string_value(json_object_get(rule, "namespace"));
	const char *sub = json_string_value(json_object_get(rule, "subResource"));
	const char *name = json_string_value(json_object_get(meta, "name"));
	char plural[128];
	json_t *req, *review;

	if (!kind)
		kind = "Contact";
	snprintf(plural, sizeof(plural), "%ss", kind);
	for (char *p = plural; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	if (!ns)
		ns = json_string_value(json_object_get(meta, "namespace"));
	req = json_pack("{s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s},"
	    " s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}, s:s, s:s, s:s,"
	    " s:{s:s, s:s, s:[s, s], s:{}}, s:o, s:o, s:b, s:{s:s, s:s}}",
	    "uid", uid,
	    "kind", "group", "notification.miloapis.com", "version", "v1alpha1", "kind", kind,
	    "resource", "group", "notification.miloapis.com", "version", "v1alpha1",
	    "resource", plural,
	    "requestKind", "group", "notification.miloapis.com", "version", "v1alpha1",
	    "kind", kind,
	    "requestResource", "group", "notification.miloapis.com", "version", "v1alpha1",
	    "resource", plural,
	    "name", name ? name : "", "namespace", ns ? ns : "", "operation", op,
	    "userInfo", "username", "alice", "uid", "u-1", "groups",
	    "system:authenticated", "milo:admins", "extra",
	    "object", obj, "oldObject", old,
	    "dryRun", json_is_true(json_object_get(rule, "dryRun")),
	    "options", "apiVersion", "meta.k8s.io/v1",
	    "kind", strcmp(op, "UPDATE") == 0 ? "UpdateOptions" :
	    strcmp(op, "DELETE") == 0 ? "DeleteOptions" : "CreateOptions");
	ck_assert_ptr_nonnull(req);
	if (sub)
		json_object_set_new(req, "subResource", json_string(sub));
	review = json_pack("{s:s, s:s, s:o}", "apiVersion", "admission.k8s.io/v1",
	    "kind", "AdmissionReview", "request", req);
	ck_assert_ptr_nonnull(review);
	return review;
}

static void
assert_json_equal(const json_t *want, const json_t *got, const char *what)
{
	char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
	char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);

	ck_assert_msg(json_equal(want, got), "%s:\n want %s\n  got %s", what, w, g);
	free(w);
	free(g);
}

void
tu_rule_assert(const json_t *rule, const char *uid, long http_status,
    const char *body, size_t len)
{
	const json_t *expect = json_object_get(rule, "expect");
	const char *endpoint = tu_rule_endpoint(rule);
	json_error_t err;
	json_t *doc, *resp, *status, *patch;
	int validating = strncmp(endpoint, "/validate-", 10) == 0;

	ck_assert_int_eq(http_status, 200);
	doc = json_loadb(body, len, 0, &err);
	ck_assert_msg(doc != NULL, "response is not JSON: %s", err.text);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "apiVersion")),
	    "admission.k8s.io/v1");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "kind")), "AdmissionReview");
	resp = json_object_get(doc, "response");
	ck_assert_ptr_nonnull(resp);
	ck_assert_str_eq(json_string_value(json_object_get(resp, "uid")), uid);
	ck_assert_msg(json_is_boolean(json_object_get(resp, "allowed")), "allowed missing");
	ck_assert_msg(json_is_true(json_object_get(resp, "allowed")) ==
	    json_is_true(json_object_get(expect, "allowed")),
	    "allowed: want %d, response %.*s", json_is_true(json_object_get(expect, "allowed")),
	    (int)len, body);
	patch = json_object_get(resp, "patch");
	ck_assert_msg((patch == NULL) == (json_object_get(resp, "patchType") == NULL),
	    "patch and patchType must come together");
	if (validating)
		ck_assert_msg(patch == NULL, "a validating endpoint returned a patch");
	status = json_object_get(resp, "status");
	if (json_object_get(expect, "code")) {
		ck_assert_ptr_nonnull(status);
		ck_assert_int_eq(json_integer_value(json_object_get(status, "code")),
		    json_integer_value(json_object_get(expect, "code")));
		ck_assert_str_eq(json_string_value(json_object_get(status, "reason")),
		    json_string_value(json_object_get(expect, "reason")));
		ck_assert_str_eq(json_string_value(json_object_get(status, "message")),
		    json_string_value(json_object_get(expect, "message")));
	}
	if (json_object_get(expect, "causes"))
		assert_json_equal(json_object_get(expect, "causes"),
		    json_object_get(json_object_get(status, "details"), "causes"), "causes");
	if (json_object_get(expect, "patch")) {
		const json_t *want = json_object_get(expect, "patch");

		if (json_is_null(want)) {
			ck_assert_msg(patch == NULL, "unexpected patch");
		} else {
			const char *b64 = json_string_value(patch);
			size_t n;
			unsigned char *ops;
			json_t *got;

			ck_assert_msg(b64 != NULL, "expected a patch");
			ck_assert_str_eq(json_string_value(json_object_get(resp, "patchType")),
			    "JSONPatch");
			ops = base64_decode(b64, strlen(b64), &n);
			ck_assert_ptr_nonnull(ops);
			got = json_loadb((const char *)ops, n, 0, &err);
			free(ops);
			assert_json_equal(want, got, "patch");
			json_decref(got);
		}
	}
	json_decref(doc);
}
