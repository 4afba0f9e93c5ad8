/* check_field.c -- field errors rendered byte for byte as apimachinery does */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "field.h"
#include "testutil.h"

Suite *field_suite(void);

static char *
body_of(const struct field_list *l, size_t i)
{
	struct buf b;

	buf_init(&b, 1 << 16);
	ck_assert_int_eq(field_error_string(&b, &l->v[i]), 0);
	return buf_steal(&b, NULL);
}

static void
assert_one(const struct field_list *l, size_t i, const char *want)
{
	char *got = body_of(l, i);

	ck_assert_str_eq(got, want);
	free(got);
}

START_TEST(test_each_type)
{
	static const char *const vis[] = { "private", "public", NULL };
	struct field_list l;

	field_list_init(&l);
	field_required(&l, "spec.email", NULL);
	field_required(&l, "spec.subject", "exactly one of %s", "a or b");
	field_invalid(&l, "spec.email", "john@", "the domain after the @ must not be empty");
	field_invalid(&l, "spec.x", "", NULL);
	field_invalid_json(&l, "spec", "{\"a\":\"b\"}", "field is immutable");
	field_type_invalid(&l, "spec.email", "integer", "must be of type string");
	field_duplicate(&l, "spec.email", "j@x.io");
	field_not_found(&l, "spec.contactRef.name", "john-doe");
	field_not_supported(&l, "spec.visibility", "secret", vis);
	field_not_supported(&l, "spec.visibility", "secret", NULL);
	field_forbidden(&l, "spec.subject.userRef.namespace", "User is cluster-scoped");
	field_forbidden(&l, "spec.y", NULL);
	field_too_long(&l, "spec.givenName", 256);
	field_too_long(&l, "spec.z", 1);
	ck_assert_int_eq(l.oom, 0);
	ck_assert_uint_eq(l.len, 14);
	assert_one(&l, 0, "spec.email: Required value");
	assert_one(&l, 1, "spec.subject: Required value: exactly one of a or b");
	assert_one(&l, 2, "spec.email: Invalid value: \"john@\": the domain after the @ must not be empty");
	assert_one(&l, 3, "spec.x: Invalid value: \"\"");
	assert_one(&l, 4, "spec: Invalid value: {\"a\":\"b\"}: field is immutable");
	assert_one(&l, 5, "spec.email: Invalid value: \"integer\": must be of type string");
	assert_one(&l, 6, "spec.email: Duplicate value: \"j@x.io\"");
	assert_one(&l, 7, "spec.contactRef.name: Not found: \"john-doe\"");
	assert_one(&l, 8, "spec.visibility: Unsupported value: \"secret\": supported values: \"private\", \"public\"");
	assert_one(&l, 9, "spec.visibility: Unsupported value: \"secret\"");
	assert_one(&l, 10, "spec.subject.userRef.namespace: Forbidden: User is cluster-scoped");
	assert_one(&l, 11, "spec.y: Forbidden");
	assert_one(&l, 12, "spec.givenName: Too long: may not be more than 256 characters");
	assert_one(&l, 13, "spec.z: Too long: may not be more than 1 character");
	field_list_free(&l);
}
END_TEST

START_TEST(test_reasons)
{
	ck_assert_str_eq(field_type_reason(FIELD_REQUIRED), "FieldValueRequired");
	ck_assert_str_eq(field_type_reason(FIELD_INVALID), "FieldValueInvalid");
	ck_assert_str_eq(field_type_reason(FIELD_NOT_SUPPORTED), "FieldValueNotSupported");
	ck_assert_str_eq(field_type_reason(FIELD_DUPLICATE), "FieldValueDuplicate");
	ck_assert_str_eq(field_type_reason(FIELD_NOT_FOUND), "FieldValueNotFound");
	ck_assert_str_eq(field_type_reason(FIELD_FORBIDDEN), "FieldValueForbidden");
	ck_assert_str_eq(field_type_reason(FIELD_TOO_LONG), "FieldValueTooLong");
	ck_assert_str_eq(field_type_reason(FIELD_TYPE_INVALID), "FieldValueTypeInvalid");
	ck_assert_str_eq(field_type_string(FIELD_TYPE_INVALID), "Invalid value");
}
END_TEST

START_TEST(test_quoting_in_values)
{
	struct field_list l;

	field_list_init(&l);
	field_invalid(&l, "spec.familyName", "Doe\t\"Jr\"\x01\xff", "bad");
	assert_one(&l, 0, "spec.familyName: Invalid value: \"Doe\\t\\\"Jr\\\"\\x01\\xff\": bad");
	field_list_free(&l);
}
END_TEST

static char *
aggregate(const struct field_list *l)
{
	struct buf b;

	buf_init(&b, 1 << 22);
	ck_assert_int_eq(field_list_aggregate(&b, l), 0);
	return buf_steal(&b, NULL);
}

START_TEST(test_aggregate)
{
	struct field_list l;
	char *s;

	field_list_init(&l);
	s = aggregate(&l);
	ck_assert_str_eq(s, "");
	free(s);
	field_required(&l, "spec.email", NULL);
	s = aggregate(&l);
	ck_assert_str_eq(s, "spec.email: Required value");
	free(s);
	/* ToAggregate drops repeated messages; one distinct message has no brackets. */
	field_required(&l, "spec.email", NULL);
	s = aggregate(&l);
	ck_assert_str_eq(s, "spec.email: Required value");
	free(s);
	field_forbidden(&l, "spec.b", "no");
	field_required(&l, "spec.email", NULL);
	s = aggregate(&l);
	ck_assert_str_eq(s, "[spec.email: Required value, spec.b: Forbidden: no]");
	free(s);
	field_list_free(&l);
}
END_TEST

START_TEST(test_status_invalid)
{
	struct field_list l;
	json_t *st, *want;

	field_list_init(&l);
	field_invalid(&l, "spec.email", "john@", "why");
	field_required(&l, "spec.subject", NULL);
	st = field_status_invalid("notification.miloapis.com", "Contact", "john-doe", &l);
	want = json_pack("{s:s, s:{}, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}]}, s:i}",
	    "kind", "Status", "metadata", "status", "Failure",
	    "message", "Contact.notification.miloapis.com \"john-doe\" is invalid: "
	    "[spec.email: Invalid value: \"john@\": why, spec.subject: Required value]",
	    "reason", "Invalid", "details", "name", "john-doe",
	    "group", "notification.miloapis.com", "kind", "Contact", "causes",
	    "reason", "FieldValueInvalid", "message", "Invalid value: \"john@\": why",
	    "field", "spec.email",
	    "reason", "FieldValueRequired", "message", "Required value", "field", "spec.subject",
	    "code", 422);
	ck_assert(json_equal(st, want));
	json_decref(st);
	json_decref(want);
	field_list_free(&l);
}
END_TEST

START_TEST(test_status_invalid_name_quoting)
{
	struct field_list l;
	json_t *st;

	field_list_init(&l);
	st = field_status_invalid("g", "K", "we\"ird", &l);
	ck_assert_str_eq(json_string_value(json_object_get(st, "message")),
	    "K.g \"we\\\"ird\" is invalid");
	json_decref(st);
	field_list_free(&l);
}
END_TEST

START_TEST(test_many_errors)
{
	struct field_list l;
	char *s;

	field_list_init(&l);
	for (int i = 0; i < 5000; i++)
		field_invalid(&l, "spec.email", "x", "error %d", i);
	ck_assert_uint_eq(l.len, 5000);
	s = aggregate(&l);
	ck_assert(s[0] == '[');
	free(s);
	field_list_free(&l);
}
END_TEST

Suite *
field_suite(void)
{
	Suite *s = suite_create("field");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_each_type);
	tcase_add_test(core, test_reasons);
	tcase_add_test(core, test_quoting_in_values);
	tcase_add_test(core, test_aggregate);
	tcase_add_test(core, test_status_invalid);
	tcase_add_test(limits, test_status_invalid_name_quoting);
	tcase_add_test(limits, test_many_errors);
	tcase_set_timeout(limits, 60);	/* 5,000 errors under the sanitizers */
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
