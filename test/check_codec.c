/* check_codec.c -- decoding and encoding the four resources */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "codec.h"
#include "testutil.h"
#include "validate.h"

Suite *codec_suite(void);

static const struct {
	const char *file;
	enum resource_kind kind;
} examples[] = {
	{ "test/fixtures/objects/contact-user.json", KIND_CONTACT },
	{ "test/fixtures/objects/contact-organization.json", KIND_CONTACT },
	{ "test/fixtures/objects/contact-project.json", KIND_CONTACT },
	{ "test/fixtures/objects/contact-full.json", KIND_CONTACT },
	{ "test/fixtures/objects/contactgroup.json", KIND_CONTACT_GROUP },
	{ "test/fixtures/objects/contactgroupmembership.json", KIND_MEMBERSHIP },
	{ "test/fixtures/objects/contactgroupmembershipremoval.json", KIND_REMOVAL },
};

static char *
dump(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

/* The examples decode and validate clean, and encode back to themselves. */
START_TEST(test_examples_round_trip)
{
	json_t *in = tu_load_json(examples[_i].file), *out, *again;
	struct resource r, r2;
	struct field_list errs;
	char *a, *b;

	field_list_init(&errs);
	ck_assert_int_eq(resource_decode(in, examples[_i].kind, &r, &errs), 0);
	ck_assert_uint_eq(errs.len, 0);
	admission_validate_object(&r, NULL, &errs);
	ck_assert_msg(errs.len == 0, "%s: %s", examples[_i].file, errs.len ? errs.v[0].field : "");
	out = resource_encode(&r);
	ck_assert_ptr_nonnull(out);
	a = dump(in);
	b = dump(out);
	ck_assert_str_eq(b, a);
	free(b);
	/* decode -> encode -> decode is the identity */
	ck_assert_int_eq(resource_decode(out, examples[_i].kind, &r2, &errs), 0);
	ck_assert_uint_eq(errs.len, 0);
	again = resource_encode(&r2);
	b = dump(again);
	ck_assert_str_eq(b, a);
	free(a);
	free(b);
	json_decref(again);
	resource_free(&r2);
	json_decref(out);
	resource_free(&r);
	field_list_free(&errs);
	json_decref(in);
}
END_TEST

START_TEST(test_fields_decoded)
{
	json_t *in = tu_load_json("test/fixtures/objects/contact-full.json");
	struct resource r;
	struct field_list errs;

	field_list_init(&errs);
	ck_assert_int_eq(resource_decode(in, KIND_CONTACT, &r, &errs), 0);
	ck_assert_str_eq(r.meta.name, "john-doe");
	ck_assert_str_eq(r.meta.namespace, "org-xyz");
	ck_assert_str_eq(r.meta.resource_version, "4711");
	ck_assert_int_eq(r.meta.generation, 3);
	ck_assert_str_eq(r.meta.deletion_timestamp, "2026-11-25T10:00:00Z");
	ck_assert_uint_eq(r.meta.n_labels, 2);
	ck_assert_uint_eq(r.meta.n_finalizers, 1);
	ck_assert_str_eq(r.meta.finalizers[0], "notification.miloapis.com/contact");
	ck_assert_uint_eq(r.meta.n_owner_refs, 1);
	ck_assert(r.meta.owner_refs[0].block_owner_deletion);
	ck_assert(r.meta.owner_refs[0].has_controller && !r.meta.owner_refs[0].controller);
	ck_assert_str_eq(r.spec.contact.email, "john.doe@company.com");
	ck_assert_str_eq(r.spec.contact.subject->user_ref->name, "332926980888461588");
	ck_assert_ptr_null(r.spec.contact.subject->organization_ref);
	ck_assert_int_eq(r.status.observed_generation, 3);
	ck_assert_uint_eq(r.status.n_conditions, 2);
	ck_assert_str_eq(r.status.conditions[1].type, "ProviderSynced");
	ck_assert_str_eq(r.status.provider_id, "479e3145-dd38-476b-932c-529ceb705947");
	resource_free(&r);
	field_list_free(&errs);
	json_decref(in);
}
END_TEST

/* A ContactGroup's description decodes, encodes back, and is optional. */
START_TEST(test_group_description)
{
	static const char *with =
	    "{\"apiVersion\":\"notification.miloapis.com/v1alpha1\",\"kind\":\"ContactGroup\","
	    "\"metadata\":{\"name\":\"news\",\"namespace\":\"org\"},"
	    "\"spec\":{\"description\":\"Weekly news.\\nOpt out any time.\","
	    "\"displayName\":\"News\",\"visibility\":\"public\"}}";
	json_error_t jerr;
	json_t *in = json_loads(with, 0, &jerr), *out, *spec;
	struct resource r;
	struct field_list errs;
	char *a, *b;

	ck_assert_ptr_nonnull(in);
	field_list_init(&errs);
	ck_assert_int_eq(resource_decode(in, KIND_CONTACT_GROUP, &r, &errs), 0);
	ck_assert_uint_eq(errs.len, 0);
	ck_assert_str_eq(r.spec.group.description, "Weekly news.\nOpt out any time.");
	out = resource_encode(&r);
	a = dump(in);
	b = dump(out);
	ck_assert_str_eq(b, a);
	free(a);
	free(b);
	json_decref(out);
	resource_free(&r);
	/* without one, none is encoded */
	spec = json_object_get(in, "spec");
	json_object_del(spec, "description");
	ck_assert_int_eq(resource_decode(in, KIND_CONTACT_GROUP, &r, &errs), 0);
	ck_assert_ptr_null(r.spec.group.description);
	out = resource_encode(&r);
	ck_assert_ptr_null(json_object_get(json_object_get(out, "spec"), "description"));
	json_decref(out);
	resource_free(&r);
	field_list_free(&errs);
	json_decref(in);
}
END_TEST

struct bad_case {
	enum resource_kind kind;
	const char *json;
	const char *field;
	const char *message;
};

/* Wrong JSON types and unknown enum values are field errors with a path. */
static const struct bad_case bad[] = {
	{ KIND_CONTACT, "{\"spec\":{\"email\":1}}", "spec.email",
	  "Invalid value: \"integer\": spec.email in body must be of type string: \"integer\"" },
	{ KIND_CONTACT, "{\"spec\":[]}", "spec",
	  "Invalid value: \"array\": spec in body must be of type object: \"array\"" },
	{ KIND_CONTACT, "{\"spec\":{\"subject\":\"u\"}}", "spec.subject",
	  "Invalid value: \"string\": spec.subject in body must be of type object: \"string\"" },
	{ KIND_CONTACT, "{\"spec\":{\"subject\":{\"userRef\":{\"name\":true}}}}",
	  "spec.subject.userRef.name",
	  "Invalid value: \"boolean\": spec.subject.userRef.name in body must be of type string: \"boolean\"" },
	{ KIND_CONTACT, "{\"metadata\":{\"labels\":{\"a\":1}}}", "metadata.labels.a",
	  "Invalid value: \"integer\": metadata.labels.a in body must be of type string: \"integer\"" },
	{ KIND_CONTACT, "{\"metadata\":{\"finalizers\":[\"a\",2.5]}}", "metadata.finalizers[1]",
	  "Invalid value: \"number\": metadata.finalizers[1] in body must be of type string: \"number\"" },
	{ KIND_CONTACT, "{\"metadata\":{\"ownerReferences\":[\"x\"]}}", "metadata.ownerReferences[0]",
	  "Invalid value: \"string\": metadata.ownerReferences[0] in body must be of type object: \"string\"" },
	{ KIND_CONTACT, "{\"metadata\":{\"generation\":\"3\"}}", "metadata.generation",
	  "Invalid value: \"string\": metadata.generation in body must be of type integer: \"string\"" },
	{ KIND_CONTACT, "{\"metadata\":[]}", "metadata",
	  "Invalid value: \"array\": metadata in body must be of type object: \"array\"" },
	{ KIND_CONTACT, "{\"status\":{\"conditions\":{}}}", "status.conditions",
	  "Invalid value: \"object\": status.conditions in body must be of type array: \"object\"" },
	{ KIND_CONTACT_GROUP, "{\"spec\":{\"visibility\":\"Public\"}}", "spec.visibility",
	  "Unsupported value: \"Public\": supported values: \"private\", \"public\"" },
	{ KIND_CONTACT_GROUP, "{\"spec\":{\"displayName\":{}}}", "spec.displayName",
	  "Invalid value: \"object\": spec.displayName in body must be of type string: \"object\"" },
	{ KIND_CONTACT_GROUP, "{\"spec\":{\"description\":[\"a\"]}}", "spec.description",
	  "Invalid value: \"array\": spec.description in body must be of type string: \"array\"" },
	{ KIND_MEMBERSHIP, "{\"spec\":{\"contactRef\":\"john\"}}", "spec.contactRef",
	  "Invalid value: \"string\": spec.contactRef in body must be of type object: \"string\"" },
	{ KIND_REMOVAL, "{\"spec\":{\"contactGroupRef\":{\"namespace\":7}}}",
	  "spec.contactGroupRef.namespace",
	  "Invalid value: \"integer\": spec.contactGroupRef.namespace in body must be of type string: \"integer\"" },
	{ KIND_CONTACT, "[1,2]", "<root>", "Invalid value: \"array\": must be of type object: \"array\"" },
};

START_TEST(test_bad_types)
{
	const struct bad_case *c = &bad[_i];
	json_t *in = json_loads(c->json, JSON_DECODE_ANY, NULL);
	struct resource r;
	struct field_list errs;
	struct buf b;

	ck_assert_ptr_nonnull(in);
	field_list_init(&errs);
	ck_assert_int_eq(resource_decode(in, c->kind, &r, &errs), 0);
	ck_assert_uint_eq(errs.len, 1);
	ck_assert_str_eq(errs.v[0].field, c->field);
	buf_init(&b, 4096);
	ck_assert_int_eq(field_error_body(&b, &errs.v[0]), 0);
	ck_assert_str_eq(buf_str(&b), c->message);
	buf_free(&b);
	resource_free(&r);
	field_list_free(&errs);
	json_decref(in);
}
END_TEST

START_TEST(test_null_and_unknown)
{
	json_t *in = json_loads("{\"spec\":{\"email\":null,\"givenName\":\"J\",\"x\":[1]},"
	    "\"metadata\":{\"name\":\"a\",\"managedFields\":[{}]},\"status\":null,\"z\":1}", 0, NULL);
	struct resource r;
	struct field_list errs;

	field_list_init(&errs);
	ck_assert_int_eq(resource_decode(in, KIND_CONTACT, &r, &errs), 0);
	ck_assert_uint_eq(errs.len, 0);
	ck_assert_ptr_null(r.spec.contact.email);
	ck_assert_str_eq(r.spec.contact.given_name, "J");
	ck_assert(!r.has_status);
	resource_free(&r);
	field_list_free(&errs);
	json_decref(in);
}
END_TEST

START_TEST(test_go_json)
{
	json_t *v = json_loads("{\"b\":\"<&>\",\"a\":[1,true,null,\"\\u2028\"]}", 0, NULL);
	char *s = codec_go_json(v);

	/* Keys keep their order, as a Go struct's fields do; HTML-safe escapes. */
	ck_assert_str_eq(s, "{\"b\":\"\\u003c\\u0026\\u003e\",\"a\":[1,true,null,\"\\u2028\"]}");
	free(s);
	s = codec_go_json(NULL);
	ck_assert_str_eq(s, "null");
	free(s);
	json_decref(v);
}
END_TEST

START_TEST(test_deep_and_wide)
{
	/* Thousands of labels and finalizers decode without trouble. */
	json_t *labels = json_object(), *fins = json_array(), *in;
	struct resource r;
	struct field_list errs;
	char key[32];

	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		json_object_set_new(labels, key, json_string("v"));
		json_array_append_new(fins, json_string(key));
	}
	in = json_pack("{s:{s:o, s:o}}", "metadata", "labels", labels, "finalizers", fins);
	field_list_init(&errs);
	ck_assert_int_eq(resource_decode(in, KIND_MEMBERSHIP, &r, &errs), 0);
	ck_assert_uint_eq(r.meta.n_labels, 5000);
	ck_assert_uint_eq(r.meta.n_finalizers, 5000);
	resource_free(&r);
	field_list_free(&errs);
	json_decref(in);
}
END_TEST

Suite *
codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_loop_test(core, test_examples_round_trip, 0,
	    sizeof(examples) / sizeof(examples[0]));
	tcase_add_test(core, test_fields_decoded);
	tcase_add_test(core, test_group_description);
	tcase_add_test(core, test_go_json);
	tcase_add_loop_test(limits, test_bad_types, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_test(limits, test_null_and_unknown);
	tcase_add_test(limits, test_deep_and_wide);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
