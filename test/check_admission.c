/* check_admission.c -- the AdmissionReview contract, in process */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "testutil.h"

Suite *admission_suite(void);

static void
handle(enum resource_kind kind, enum admission_mode mode, const char *body,
    struct admission_outcome *out)
{
	ck_assert_int_eq(admission_handle(NULL, kind, mode, body, strlen(body), out), 0);
}

START_TEST(test_routes)
{
	enum resource_kind k;
	enum admission_mode m;

	ck_assert_int_eq(admission_route(
	    "/validate-notification-miloapis-com-v1alpha1-contactgroupmembership", &k, &m), 0);
	ck_assert_int_eq(k, KIND_MEMBERSHIP);
	ck_assert_int_eq(m, ADMISSION_VALIDATE);
	ck_assert_int_eq(admission_route(
	    "/mutate-notification-miloapis-com-v1alpha1-contactgroupmembershipremoval", &k, &m), 0);
	ck_assert_int_eq(k, KIND_REMOVAL);
	ck_assert_int_eq(m, ADMISSION_MUTATE);
	ck_assert_int_ne(admission_route("/validate-notification-miloapis-com-v1alpha1-", &k, &m), 0);
	ck_assert_int_ne(admission_route("/validate-notification-miloapis-com-v1alpha1-contacts", &k, &m), 0);
	ck_assert_int_ne(admission_route("/healthz", &k, &m), 0);
	ck_assert_str_eq(admission_path(KIND_CONTACT_GROUP, ADMISSION_MUTATE),
	    "/mutate-notification-miloapis-com-v1alpha1-contactgroup");
	for (int i = 0; i < KIND__COUNT; i++)
		for (int j = 0; j < 2; j++) {
			ck_assert_int_eq(admission_route(admission_path((enum resource_kind)i,
			    (enum admission_mode)j), &k, &m), 0);
			ck_assert_int_eq(k, i);
			ck_assert_int_eq(m, j);
		}
}
END_TEST

/* Bodies that are not reviews: 400 with a reason, never a crash. */
static const char *const not_reviews[] = {
	"",
	"{",
	"null",
	"[]",
	"\"AdmissionReview\"",
	"{}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":null}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":[]}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{}}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":7}}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"\",\"operation\":\"CREATE\"}}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\"}}",
	"{\"apiVersion\":\"admission.k8s.io/v2\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"operation\":\"CREATE\"}}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"Review\",\"request\":{\"uid\":\"u\",\"operation\":\"CREATE\"}}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"uid\":\"v\",\"operation\":\"CREATE\"}}",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"u\",\"operation\":\"CREATE\",\"kind\":\"Contact\"}}",
};

START_TEST(test_not_a_review)
{
	struct admission_outcome out;

	handle(KIND_CONTACT, ADMISSION_VALIDATE, not_reviews[_i], &out);
	ck_assert_int_eq(out.http_status, 400);
	ck_assert_ptr_nonnull(out.reason);
	ck_assert_ptr_nonnull(out.body);
	ck_assert_uint_gt(out.body_len, 0);
	admission_outcome_free(&out);
}
END_TEST

static json_t *
response_of(const struct admission_outcome *out)
{
	json_t *doc = json_loadb(out->body, out->body_len, 0, NULL);

	ck_assert_ptr_nonnull(doc);
	return doc;
}

/* The kubernetes/api golden fixture: placeholders make it a denial, well formed. */
START_TEST(test_golden_fixture)
{
	char *body = tu_read_file(tu_path("test/fixtures/kubernetes/admission.k8s.io.v1.AdmissionReview.json"), NULL);
	struct admission_outcome out;
	json_t *doc, *resp;

	ck_assert_ptr_nonnull(body);
	for (int i = 0; i < KIND__COUNT; i++) {
		for (int m = 0; m < 2; m++) {
			handle((enum resource_kind)i, (enum admission_mode)m, body, &out);
			ck_assert_int_eq(out.http_status, 200);
			doc = response_of(&out);
			ck_assert_str_eq(json_string_value(json_object_get(doc, "apiVersion")),
			    "admission.k8s.io/v1");
			ck_assert_str_eq(json_string_value(json_object_get(doc, "kind")),
			    "AdmissionReview");
			resp = json_object_get(doc, "response");
			ck_assert_str_eq(json_string_value(json_object_get(resp, "uid")), "uidValue");
			ck_assert(json_is_false(json_object_get(resp, "allowed")));
			ck_assert_ptr_null(json_object_get(resp, "patch"));
			ck_assert_int_ge(json_integer_value(json_object_get(
			    json_object_get(resp, "status"), "code")), 400);
			json_decref(doc);
			admission_outcome_free(&out);
		}
	}
	free(body);
}
END_TEST

START_TEST(test_v1beta1_echoed)
{
	const char *body = "{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\","
	    "\"request\":{\"uid\":\"b1\",\"operation\":\"DELETE\",\"object\":null}}";
	struct admission_outcome out;
	json_t *doc;

	handle(KIND_CONTACT, ADMISSION_VALIDATE, body, &out);
	doc = response_of(&out);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "apiVersion")),
	    "admission.k8s.io/v1beta1");
	ck_assert(json_is_true(json_object_get(json_object_get(doc, "response"), "allowed")));
	json_decref(doc);
	admission_outcome_free(&out);
}
END_TEST

/*
 * An allowed answer is written without jansson when its strings need no
 * escaping; either way its bytes are what json_dumps() gives.
 */
START_TEST(test_allowed_answer_bytes)
{
	static const char *const api[] = { "admission.k8s.io/v1", "admission.k8s.io/v1beta1" };
	/* as JSON text in the request, then as the decoded uid */
	static const char *const uid_json[] = { "705ab4f5-6393", "q\\\"uote", "tab\\there",
		"caf\\u00e9", "sl/ash", "del\\u007f", "ctl\\u0001" };
	static const char *const uid[] = { "705ab4f5-6393", "q\"uote", "tab\there",
		"caf\xc3\xa9", "sl/ash", "del\x7f", "ctl\x01" };

	for (size_t a = 0; a < 2; a++)
		for (size_t u = 0; u < sizeof(uid) / sizeof(uid[0]); u++) {
			struct admission_outcome out;
			char body[512];
			json_t *want = json_pack("{s:s, s:s, s:{s:s, s:b}}", "apiVersion", api[a],
			    "kind", "AdmissionReview", "response", "uid", uid[u], "allowed", 1);
			char *want_text = json_dumps(want, JSON_COMPACT);

			snprintf(body, sizeof(body), "{\"apiVersion\":\"%s\",\"kind\":"
			    "\"AdmissionReview\",\"request\":{\"uid\":\"%s\","
			    "\"operation\":\"DELETE\",\"object\":null}}", api[a], uid_json[u]);
			handle(KIND_CONTACT, ADMISSION_VALIDATE, body, &out);
			ck_assert_int_eq(out.http_status, 200);
			ck_assert_int_eq(out.allowed, 1);
			ck_assert_int_eq(out.patched, 0);
			ck_assert_str_eq(out.uid, uid[u]);
			ck_assert_uint_eq(out.body_len, strlen(want_text));
			ck_assert_str_eq(out.body, want_text);
			admission_outcome_free(&out);
			free(want_text);
			json_decref(want);
		}
}
END_TEST

START_TEST(test_outcome_fields)
{
	json_t *rule = tu_rule_load("contact-email-no-domain.json");
	json_t *review = tu_rule_review(rule, "uid-42");
	char *body = json_dumps(review, JSON_COMPACT);
	struct admission_outcome out;

	handle(KIND_CONTACT, ADMISSION_VALIDATE, body, &out);
	ck_assert_int_eq(out.http_status, 200);
	ck_assert_str_eq(out.content_type, "application/json");
	ck_assert_int_eq(out.allowed, 0);
	ck_assert_str_eq(out.uid, "uid-42");
	ck_assert_str_eq(out.kind, "Contact");
	ck_assert_str_eq(out.namespace, "org-xyz");
	ck_assert_str_eq(out.name, "john-doe");
	ck_assert_str_eq(out.operation, "CREATE");
	admission_outcome_free(&out);
	free(body);
	json_decref(review);
	json_decref(rule);
}
END_TEST

START_TEST(test_object_missing_on_create)
{
	const char *body = "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
	    "\"request\":{\"uid\":\"c1\",\"operation\":\"CREATE\",\"object\":null}}";
	struct admission_outcome out;
	json_t *doc, *st;

	handle(KIND_CONTACT, ADMISSION_VALIDATE, body, &out);
	doc = response_of(&out);
	st = json_object_get(json_object_get(doc, "response"), "status");
	ck_assert_int_eq(json_integer_value(json_object_get(st, "code")), 400);
	ck_assert_str_eq(json_string_value(json_object_get(st, "message")),
	    "the request has no object to admit");
	json_decref(doc);
	admission_outcome_free(&out);
}
END_TEST

START_TEST(test_deep_nesting)
{
	/* jansson caps nesting depth; a hostile body is a 400, not a stack overflow. */
	size_t depth = 100000;
	char *body = malloc(depth * 2 + 1);
	struct admission_outcome out;

	memset(body, '[', depth);
	memset(body + depth, ']', depth);
	body[depth * 2] = '\0';
	handle(KIND_CONTACT, ADMISSION_VALIDATE, body, &out);
	ck_assert_int_eq(out.http_status, 400);
	admission_outcome_free(&out);
	free(body);
}
END_TEST

Suite *
admission_suite(void)
{
	Suite *s = suite_create("admission");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_routes);
	tcase_add_test(core, test_golden_fixture);
	tcase_add_test(core, test_v1beta1_echoed);
	tcase_add_test(core, test_outcome_fields);
	tcase_add_test(core, test_allowed_answer_bytes);
	tcase_add_test(core, test_object_missing_on_create);
	tcase_add_loop_test(limits, test_not_a_review, 0,
	    sizeof(not_reviews) / sizeof(not_reviews[0]));
	tcase_add_test(limits, test_deep_nesting);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
