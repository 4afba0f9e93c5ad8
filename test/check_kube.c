/* check_kube.c -- the Kubernetes API client against the stand-in, over real sockets */
#include <check.h>
#include <stdatomic.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "kube.h"
#include "kubeconfig.h"
#include "testutil.h"

Suite *kube_suite(void);

#define GROUP "notification.miloapis.com"
#define VERSION "v1alpha1"
#define NS "default"
#define WAIT_MS 20000		/* bound on waiting for something the stand-in does */

static struct kube_client *kc;		/* one per test, from the stand-in's kubeconfig */
static char contacts[256];		/* the Contact collection in NS */

/* ---- fixtures and helpers ---- */

static void
setup(void)
{
	tu_kube_ready();
	kc = tu_kube_client(tu_kube.kubeconfig);
	ck_assert_int_eq(kube_path(contacts, sizeof(contacts), GROUP, VERSION, NS,
	    "contacts", NULL, NULL), 0);
}

static void
teardown(void)
{
	kube_client_free(kc);
	kc = NULL;
}

static long
elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* The path of a Contact (and a subresource) in NS. Static buffer. */
static const char *
contact_path(const char *name, const char *sub)
{
	static char path[256];

	ck_assert_int_eq(kube_path(path, sizeof(path), GROUP, VERSION, NS, "contacts",
	    name, sub), 0);
	return path;
}

static json_t *
contact_new(const char *name, const char *email)
{
	json_t *c = json_pack("{s:s, s:s, s:{s:s}, s:{s:s, s:s, s:{s:s, s:s}}}",
	    "apiVersion", GROUP "/" VERSION, "kind", "Contact",
	    "metadata", "name", name,
	    "spec", "email", email, "givenName", "Ada",
	    "subject", "kind", "User", "name", name);

	ck_assert_ptr_nonnull(c);
	return c;
}

/* Creates a Contact; returns the stored object (new reference). */
static json_t *
create_contact(const char *name)
{
	struct kube_response r;
	char email[128];
	json_t *c, *stored;
	int rc;

	snprintf(email, sizeof(email), "%s@example.com", name);
	c = contact_new(name, email);
	rc = kube_create(kc, contacts, c, &r);
	ck_assert_msg(rc == 0, "create %s: %d, HTTP %ld, %s", name, rc, r.status,
	    r.message ? r.message : "");
	stored = json_incref(r.body);
	kube_response_free(&r);
	json_decref(c);
	return stored;
}

static const char *
meta_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

static long long
rv_num(const char *rv)
{
	ck_assert_ptr_nonnull(rv);
	return strtoll(rv, NULL, 10);
}

/* The collection's current resourceVersion, as a list reports it. */
static void
list_rv(char *out, size_t len)
{
	struct kube_response r;

	ck_assert_int_eq(kube_list_page(kc, contacts, 1, NULL, &r), 0);
	ck_assert_ptr_nonnull(meta_str(r.body, "resourceVersion"));
	snprintf(out, len, "%s", meta_str(r.body, "resourceVersion"));
	kube_response_free(&r);
}

/* The stand-in's request log from sequence number since on (new reference). */
static json_t *
requests_since(json_int_t since)
{
	char action[64];
	json_t *log, *items;

	snprintf(action, sizeof(action), "requests?since=%" JSON_INTEGER_FORMAT, since);
	log = tu_standin_control(&tu_kube, "GET", action, NULL);
	items = json_incref(json_object_get(log, "items"));
	json_decref(log);
	ck_assert(json_is_array(items));
	return items;
}

static json_int_t
request_seq(void)
{
	json_t *log = tu_standin_control(&tu_kube, "GET", "requests?since=9223372036854775807",
	    NULL);
	json_int_t seq = json_integer_value(json_object_get(log, "next"));

	json_decref(log);
	return seq;
}

static const char *
req_header(const json_t *req, const char *name)
{
	return json_string_value(json_object_get(json_object_get(req, "headers"), name));
}

static const char *
req_query(const json_t *req, const char *name)
{
	return json_string_value(json_object_get(json_object_get(req, "query"), name));
}

static void
write_text(const char *path, const char *text)
{
	char tmp[512];
	FILE *f;

	/* Replaced atomically, as the kubelet swaps a projected volume. */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, path), 0);
}

/* A watch callback that only counts. */
static int
count_event(const char *type, json_t *obj, void *arg)
{
	(void)type, (void)obj;
	(*(int *)arg)++;
	return 0;
}

/* ---- core: the verbs ---- */

START_TEST(test_path)
{
	char p[128];

	ck_assert_int_eq(kube_path(p, sizeof(p), "", "v1", "ns1", "configmaps", "cm", NULL), 0);
	ck_assert_str_eq(p, "/api/v1/namespaces/ns1/configmaps/cm");
	ck_assert_int_eq(kube_path(p, sizeof(p), "iam.miloapis.com", "v1alpha1", NULL, "users",
	    "u1", NULL), 0);
	ck_assert_str_eq(p, "/apis/iam.miloapis.com/v1alpha1/users/u1");
	ck_assert_int_eq(kube_path(p, sizeof(p), GROUP, VERSION, "a", "contacts", "c", "status"),
	    0);
	ck_assert_str_eq(p, "/apis/" GROUP "/" VERSION "/namespaces/a/contacts/c/status");
	/* A subresource needs a name. */
	ck_assert_int_eq(kube_path(p, sizeof(p), "", "v1", NULL, "namespaces", NULL, "status"),
	    0);
	ck_assert_str_eq(p, "/api/v1/namespaces");
	ck_assert_int_eq(kube_path(p, 20, GROUP, VERSION, "a", "contacts", "c", NULL),
	    -ENAMETOOLONG);
}
END_TEST

START_TEST(test_crud)
{
	struct kube_response r;
	json_t *obj, *patch;
	char rv1[32], rv2[32];

	obj = create_contact("alice");
	ck_assert_ptr_nonnull(meta_str(obj, "uid"));
	snprintf(rv1, sizeof(rv1), "%s", meta_str(obj, "resourceVersion"));
	json_decref(obj);

	ck_assert_int_eq(kube_get(kc, contact_path("alice", NULL), &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "email")), "alice@example.com");
	ck_assert_str_eq(meta_str(r.body, "resourceVersion"), rv1);

	/* PUT the object we read, changed. */
	obj = json_incref(r.body);
	kube_response_free(&r);
	json_object_set_new(json_object_get(obj, "spec"), "givenName", json_string("Alice"));
	ck_assert_int_eq(kube_update(kc, contact_path("alice", NULL), obj, &r), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "givenName")), "Alice");
	snprintf(rv2, sizeof(rv2), "%s", meta_str(r.body, "resourceVersion"));
	ck_assert_int_gt(rv_num(rv2), rv_num(rv1));
	kube_response_free(&r);
	json_decref(obj);

	/* A merge patch sets one field and deletes another. */
	patch = json_pack("{s:{s:s, s:n}}", "spec", "familyName", "Lovelace", "givenName");
	ck_assert_int_eq(kube_merge_patch(kc, contact_path("alice", NULL), patch, &r), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "familyName")), "Lovelace");
	ck_assert_ptr_null(json_object_get(json_object_get(r.body, "spec"), "givenName"));
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "email")), "alice@example.com");
	kube_response_free(&r);
	json_decref(patch);

	/* A JSON patch: test, replace and add. */
	patch = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}, {s:s, s:s, s:{s:s}}]",
	    "op", "test", "path", "/spec/familyName", "value", "Lovelace",
	    "op", "replace", "path", "/spec/email", "value", "ada@example.com",
	    "op", "add", "path", "/metadata/labels", "value", "team", "a");
	ck_assert_int_eq(kube_json_patch(kc, contact_path("alice", NULL), patch, &r), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "email")), "ada@example.com");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(
	    r.body, "metadata"), "labels"), "team")), "a");
	kube_response_free(&r);
	json_decref(patch);

	/* A failing JSON patch test is the server's 422, not a client error. */
	patch = json_pack("[{s:s, s:s, s:s}]", "op", "test", "path", "/spec/email",
	    "value", "someone@else.example");
	ck_assert_int_eq(kube_json_patch(kc, contact_path("alice", NULL), patch, &r), -EIO);
	ck_assert_int_ge(r.status, 400);
	ck_assert_int_lt(r.status, 500);
	kube_response_free(&r);
	json_decref(patch);

	ck_assert_int_eq(kube_delete(kc, contact_path("alice", NULL), &r), 0);
	ck_assert_str_eq(json_string_value(json_object_get(r.body, "status")), "Success");
	kube_response_free(&r);

	ck_assert_int_eq(kube_get(kc, contact_path("alice", NULL), &r), -EIO);
	ck_assert_int_eq(r.status, 404);
	ck_assert(kube_is_not_found(&r));
	ck_assert_str_eq(r.reason, "NotFound");
	ck_assert_str_eq(r.message, "contacts." GROUP " \"alice\" not found");
	ck_assert(!kube_is_conflict(&r) && !kube_is_unreachable(&r) && !kube_is_gone(&r));
	kube_response_free(&r);

	ck_assert_int_eq(kube_delete(kc, contact_path("alice", NULL), &r), -EIO);
	ck_assert(kube_is_not_found(&r));
	kube_response_free(&r);
}
END_TEST

START_TEST(test_already_exists_and_conflict)
{
	struct kube_response r;
	json_t *c = contact_new("bob", "bob@example.com"), *stale, *patch;

	json_decref(create_contact("bob"));
	ck_assert_int_eq(kube_create(kc, contacts, c, &r), -EIO);
	ck_assert_int_eq(r.status, 409);
	ck_assert(kube_is_already_exists(&r));
	ck_assert(!kube_is_conflict(&r));
	ck_assert_str_eq(r.message, "contacts." GROUP " \"bob\" already exists");
	kube_response_free(&r);
	json_decref(c);

	ck_assert_int_eq(kube_get(kc, contact_path("bob", NULL), &r), 0);
	stale = json_incref(r.body);
	kube_response_free(&r);

	/* Someone else writes in between. */
	patch = json_pack("{s:{s:s}}", "spec", "familyName", "Other");
	ck_assert_int_eq(kube_merge_patch(kc, contact_path("bob", NULL), patch, &r), 0);
	kube_response_free(&r);
	json_decref(patch);

	json_object_set_new(json_object_get(stale, "spec"), "givenName", json_string("Bobby"));
	ck_assert_int_eq(kube_update(kc, contact_path("bob", NULL), stale, &r), -EIO);
	ck_assert_int_eq(r.status, 409);
	ck_assert(kube_is_conflict(&r));
	ck_assert(!kube_is_already_exists(&r));
	ck_assert_ptr_nonnull(strstr(r.message, "the object has been modified"));
	kube_response_free(&r);

	/* A merge patch carrying the stale resourceVersion is conditional too. */
	patch = json_pack("{s:{s:s}, s:{s:s}}", "metadata", "resourceVersion",
	    meta_str(stale, "resourceVersion"), "spec", "givenName", "Bobby");
	ck_assert_int_eq(kube_merge_patch(kc, contact_path("bob", NULL), patch, &r), -EIO);
	ck_assert(kube_is_conflict(&r));
	kube_response_free(&r);
	json_decref(patch);
	json_decref(stale);
}
END_TEST

/* Re-reads the Contact and sets its email; a "concurrent writer" interferes. */
struct retry_ctx {
	const char *name;
	int calls;
	int interfere;		/* this many calls see another write in between */
};

static int
set_email(void *arg, struct kube_response *out)
{
	struct retry_ctx *x = arg;
	struct kube_response r;
	json_t *obj;
	int rc;

	x->calls++;
	rc = kube_get(kc, contact_path(x->name, NULL), out);
	if (rc)
		return rc;
	obj = json_incref(out->body);
	kube_response_free(out);
	if (x->interfere > 0) {
		char label[32];
		json_t *patch;

		/* Differs from the last call's, so the write does change the object. */
		snprintf(label, sizeof(label), "w%d", x->calls);
		patch = json_pack("{s:{s:{s:s}}}", "metadata", "labels", "writer", label);
		x->interfere--;
		ck_assert_int_eq(kube_merge_patch(kc, contact_path(x->name, NULL), patch, &r), 0);
		kube_response_free(&r);
		json_decref(patch);
	}
	json_object_set_new(json_object_get(obj, "spec"), "email",
	    json_string("retried@example.com"));
	rc = kube_update(kc, contact_path(x->name, NULL), obj, out);
	json_decref(obj);
	return rc;
}

START_TEST(test_retry_on_conflict)
{
	struct retry_ctx x = { "carol", 0, 2 };
	struct kube_response r;

	json_decref(create_contact("carol"));
	ck_assert_int_eq(kube_retry_on_conflict(set_email, &x, &r), 0);
	ck_assert_int_eq(x.calls, 3);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "email")), "retried@example.com");
	kube_response_free(&r);

	/* A writer that always wins: five tries, then the conflict comes back. */
	x.calls = 0;
	x.interfere = 100;
	ck_assert_int_eq(kube_retry_on_conflict(set_email, &x, &r), -EIO);
	ck_assert_int_eq(x.calls, 5);
	ck_assert(kube_is_conflict(&r));
	kube_response_free(&r);

	/* Anything but a conflict is not retried. */
	x.name = "nobody";
	x.calls = 0;
	x.interfere = 0;
	ck_assert_int_eq(kube_retry_on_conflict(set_email, &x, &r), -EIO);
	ck_assert_int_eq(x.calls, 1);
	ck_assert(kube_is_not_found(&r));
	kube_response_free(&r);
}
END_TEST

START_TEST(test_status_subresource)
{
	struct kube_response r;
	json_t *c = contact_new("dave", "dave@example.com"), *obj, *st;
	json_int_t gen;

	/* Status in a create is dropped. */
	json_object_set_new(c, "status", json_pack("{s:i}", "observedGeneration", 9));
	ck_assert_int_eq(kube_create(kc, contacts, c, &r), 0);
	ck_assert_ptr_null(json_object_get(r.body, "status"));
	gen = json_integer_value(json_object_get(json_object_get(r.body, "metadata"),
	    "generation"));
	obj = json_incref(r.body);
	kube_response_free(&r);
	json_decref(c);

	/* PUT …/status changes the status and nothing else. */
	st = json_pack("{s:[{s:s, s:s, s:s}], s:I}", "conditions", "type", "Ready",
	    "status", "True", "reason", "Synced", "observedGeneration", gen);
	json_object_set(obj, "status", st);
	json_object_set_new(json_object_get(obj, "spec"), "email", json_string("x@example.com"));
	ck_assert_int_eq(kube_update(kc, contact_path("dave", "status"), obj, &r), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "email")), "dave@example.com");
	ck_assert(json_equal(json_object_get(r.body, "status"), st));
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r.body, "metadata"),
	    "generation")), gen);
	kube_response_free(&r);
	json_decref(obj);

	/* PUT on the object itself ignores the status. */
	ck_assert_int_eq(kube_get(kc, contact_path("dave", NULL), &r), 0);
	obj = json_incref(r.body);
	kube_response_free(&r);
	json_object_set_new(obj, "status", json_pack("{s:[]}", "conditions"));
	json_object_set_new(json_object_get(obj, "spec"), "email", json_string("d@example.com"));
	ck_assert_int_eq(kube_update(kc, contact_path("dave", NULL), obj, &r), 0);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "email")), "d@example.com");
	ck_assert(json_equal(json_object_get(r.body, "status"), st));
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r.body, "metadata"),
	    "generation")), gen + 1);
	kube_response_free(&r);
	json_decref(obj);

	/* A merge patch on the status subresource. */
	obj = json_pack("{s:{s:I}}", "status", "observedGeneration", gen + 1);
	ck_assert_int_eq(kube_merge_patch(kc, contact_path("dave", "status"), obj, &r), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r.body, "status"),
	    "observedGeneration")), gen + 1);
	ck_assert_int_eq(json_array_size(json_object_get(json_object_get(r.body, "status"),
	    "conditions")), 1);
	kube_response_free(&r);
	json_decref(obj);
	json_decref(st);
}
END_TEST

START_TEST(test_list_paging)
{
	static const char *const names[] = { "p0", "p1", "p2", "p3", "p4" };
	struct kube_response r;
	char *cont = NULL;
	size_t seen = 0, pages = 0;
	json_int_t seq;
	json_t *tokens = json_array();	/* each page's continue token */

	for (size_t i = 0; i < 5; i++)
		json_decref(create_contact(names[i]));
	seq = request_seq();
	do {
		json_t *items;
		const char *next;

		ck_assert_int_eq(kube_list_page(kc, contacts, 2, cont, &r), 0);
		ck_assert_str_eq(json_string_value(json_object_get(r.body, "kind")),
		    "ContactList");
		items = json_object_get(r.body, "items");
		ck_assert_uint_eq(json_array_size(items), pages < 2 ? 2 : 1);
		if (pages == 0)
			ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r.body,
			    "metadata"), "remainingItemCount")), 3);
		for (size_t i = 0; i < json_array_size(items); i++, seen++) {
			ck_assert_uint_lt(seen, 5);
			ck_assert_str_eq(meta_str(json_array_get(items, i), "name"), names[seen]);
		}
		free(cont);
		next = meta_str(r.body, "continue");
		cont = next && next[0] ? strdup(next) : NULL;
		if (cont)
			json_array_append_new(tokens, json_string(cont));
		kube_response_free(&r);
		pages++;
		ck_assert_uint_le(pages, 3);
	} while (cont);
	ck_assert_uint_eq(seen, 5);
	ck_assert_uint_eq(pages, 3);

	/* What went over the wire: limit=2, then the tokens, URL-escaped intact. */
	{
		json_t *reqs = requests_since(seq);

		ck_assert_uint_eq(json_array_size(reqs), 3);
		for (size_t i = 0; i < 3; i++) {
			const json_t *req = json_array_get(reqs, i);

			ck_assert_str_eq(req_query(req, "limit"), "2");
			if (i == 0)
				ck_assert_ptr_null(req_query(req, "continue"));
			else
				ck_assert_str_eq(req_query(req, "continue"),
				    json_string_value(json_array_get(tokens, i - 1)));
		}
		json_decref(reqs);
	}
	json_decref(tokens);

	/* No limit: the default page holds them all. */
	ck_assert_int_eq(kube_list_page(kc, contacts, 0, NULL, &r), 0);
	ck_assert_uint_eq(json_array_size(json_object_get(r.body, "items")), 5);
	ck_assert_ptr_null(meta_str(r.body, "continue"));
	kube_response_free(&r);
}
END_TEST

START_TEST(test_delete_with_finalizers)
{
	struct kube_response r;
	json_t *c = contact_new("erin", "erin@example.com"), *patch;

	json_object_set_new(json_object_get(c, "metadata"), "finalizers",
	    json_pack("[s]", "notification.miloapis.com/provider-sync"));
	ck_assert_int_eq(kube_create(kc, contacts, c, &r), 0);
	kube_response_free(&r);
	json_decref(c);

	ck_assert_int_eq(kube_delete(kc, contact_path("erin", NULL), &r), 0);
	ck_assert_ptr_nonnull(meta_str(r.body, "deletionTimestamp"));
	kube_response_free(&r);
	ck_assert_int_eq(kube_get(kc, contact_path("erin", NULL), &r), 0);
	ck_assert_ptr_nonnull(meta_str(r.body, "deletionTimestamp"));
	kube_response_free(&r);

	/* Removing the last finalizer lets it go. */
	patch = json_pack("{s:{s:n}}", "metadata", "finalizers");
	ck_assert_int_eq(kube_merge_patch(kc, contact_path("erin", NULL), patch, &r), 0);
	kube_response_free(&r);
	json_decref(patch);
	ck_assert_int_eq(kube_get(kc, contact_path("erin", NULL), &r), -EIO);
	ck_assert(kube_is_not_found(&r));
	kube_response_free(&r);
}
END_TEST

START_TEST(test_access_review)
{
	static const struct {
		const char *user, *group, *verb, *ns;
		bool allowed;
		const char *reason;
	} cases[] = {
		{ "alice", NULL, "get", "prod", true, NULL },
		{ "alice", NULL, "delete", "prod", false, "not in prod" },
		{ "alice", NULL, "delete", "dev", true, NULL },
		{ "mallory", NULL, "get", "dev", false, "mallory is blocked" },
		{ "bob", "milo:viewers", "create", "dev", false, "viewers only read" },
		{ "bob", "milo:viewers", "list", "dev", true, NULL },
	};
	json_t *extra = json_pack("{s:[s]}", "scopes", "contacts");

	tu_standin_post(&tu_kube, "sar-policy", "{\"default\": true, \"rules\": ["
	    "{\"user\": \"mallory\", \"allowed\": false, \"reason\": \"mallory is blocked\"},"
	    "{\"group\": \"milo:viewers\", \"verb\": [\"create\", \"update\", \"delete\"],"
	    " \"allowed\": false, \"reason\": \"viewers only read\"},"
	    "{\"user\": \"alice\", \"verb\": \"delete\", \"resource\": \"contacts\","
	    " \"namespace\": \"prod\", \"allowed\": false, \"reason\": \"not in prod\"}]}");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *groups = cases[i].group ? json_pack("[s, s]", cases[i].group,
		    "system:authenticated") : NULL;
		struct kube_access a = {
			.user = cases[i].user, .uid = "uid-1", .groups = groups, .extra = extra,
			.verb = cases[i].verb, .group = GROUP, .resource = "contacts",
			.namespace = cases[i].ns, .name = "c1",
		};
		struct kube_response r;
		char *reason = NULL;
		bool allowed = !cases[i].allowed;

		ck_assert_int_eq(kube_access_review(kc, &a, &allowed, &reason, &r), 0);
		ck_assert_msg(allowed == cases[i].allowed, "case %zu: allowed %d", i, allowed);
		if (cases[i].reason)
			ck_assert_str_eq(reason, cases[i].reason);
		else
			ck_assert_ptr_null(reason);
		/* The review carried the whole user. */
		{
			json_t *spec = json_object_get(r.body, "spec");

			ck_assert_str_eq(json_string_value(json_object_get(spec, "user")),
			    cases[i].user);
			ck_assert_str_eq(json_string_value(json_object_get(spec, "uid")), "uid-1");
			ck_assert(json_equal(json_object_get(spec, "extra"), extra));
			if (groups)
				ck_assert(json_equal(json_object_get(spec, "groups"), groups));
			ck_assert_str_eq(json_string_value(json_object_get(json_object_get(spec,
			    "resourceAttributes"), "name")), "c1");
		}
		free(reason);
		kube_response_free(&r);
		json_decref(groups);
	}
	json_decref(extra);

	/* A deny-by-default policy. */
	tu_standin_post(&tu_kube, "sar-policy", "{\"default\": false, \"rules\": []}");
	{
		struct kube_access a = { .user = "zed", .verb = "get", .resource = "contacts",
		    .group = GROUP, .namespace = "dev" };
		struct kube_response r;
		bool allowed = true;

		ck_assert_int_eq(kube_access_review(kc, &a, &allowed, NULL, &r), 0);
		ck_assert(!allowed);
		kube_response_free(&r);
	}
}
END_TEST

/* nonResourceAttributes: the path and the verb, nothing of a resource. */
START_TEST(test_access_review_non_resource)
{
	struct kube_access a = { .user = "prom", .verb = "get", .path = "/metrics",
	    .resource = "ignored" };
	struct kube_response r;
	char *reason = NULL;
	bool allowed = false;
	json_t *spec, *want;

	tu_standin_post(&tu_kube, "sar-policy", "{\"default\": false, \"rules\": ["
	    "{\"user\": \"prom\", \"path\": \"/metrics\", \"verb\": \"get\","
	    " \"reason\": \"metrics reader\"}]}");
	ck_assert_int_eq(kube_access_review(kc, &a, &allowed, &reason, &r), 0);
	ck_assert(allowed);
	ck_assert_str_eq(reason, "metrics reader");
	spec = json_object_get(r.body, "spec");
	want = json_pack("{s:s, s:s}", "path", "/metrics", "verb", "get");
	ck_assert(json_equal(json_object_get(spec, "nonResourceAttributes"), want));
	json_decref(want);
	ck_assert_ptr_null(json_object_get(spec, "resourceAttributes"));
	free(reason);
	kube_response_free(&r);
	a.path = "/healthz";
	ck_assert_int_eq(kube_access_review(kc, &a, &allowed, NULL, &r), 0);
	ck_assert(!allowed);
	kube_response_free(&r);
}
END_TEST

START_TEST(test_token_review)
{
	struct kube_response r;
	json_t *user = NULL;
	char *error = NULL;
	bool ok = false;

	tu_standin_post(&tu_kube, "users", "{\"tokens\": {\"prom-token\": {\"username\":"
	    " \"system:serviceaccount:monitoring:prometheus\", \"uid\": \"u-7\","
	    " \"groups\": [\"system:serviceaccounts\", \"system:authenticated\"]}}}");
	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"standin-token\", \"prom-token\"]}");
	ck_assert_int_eq(kube_token_review(kc, "prom-token", &ok, &user, &error, &r), 0);
	ck_assert(ok);
	ck_assert_ptr_null(error);
	ck_assert_str_eq(json_string_value(json_object_get(user, "username")),
	    "system:serviceaccount:monitoring:prometheus");
	ck_assert_str_eq(json_string_value(json_object_get(user, "uid")), "u-7");
	ck_assert_int_eq(json_array_size(json_object_get(user, "groups")), 2);
	/* What was sent: a TokenReview with the token and no audiences. */
	ck_assert_str_eq(json_string_value(json_object_get(r.body, "kind")), "TokenReview");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r.body, "spec"),
	    "token")), "prom-token");
	json_decref(user);
	kube_response_free(&r);

	ck_assert_int_eq(kube_token_review(kc, "stolen", &ok, &user, &error, &r), 0);
	ck_assert(!ok);
	ck_assert_ptr_null(user);
	ck_assert_str_eq(error, "invalid bearer token");
	free(error);
	kube_response_free(&r);

	/* The API server failing is the call's error. */
	tu_standin_post(&tu_kube, "fail", "{\"count\": 1, \"code\": 503}");
	ck_assert_int_eq(kube_token_review(kc, "prom-token", &ok, &user, &error, &r), -EIO);
	ck_assert_int_eq(r.status, 503);
	ck_assert(!ok);
	ck_assert_ptr_null(user);
	kube_response_free(&r);
	tu_standin_post(&tu_kube, "token", "{\"tokens\": null}");
}
END_TEST

static void
event_path(char *out, size_t len, const char *name)
{
	ck_assert_int_eq(kube_path(out, len, "events.k8s.io", "v1", NS, "events", name, NULL), 0);
}

/* Creates an Event with the given note and reads it back (new reference). */
static json_t *
event_round_trip(const char *note)
{
	struct kube_event e = {
		.namespace = NS, .regarding_api_version = GROUP "/" VERSION,
		.regarding_kind = "Contact", .regarding_name = "frank",
		.regarding_uid = "0b5e4c1a-uid", .type = "Warning", .reason = "SyncFailed",
		.action = "Sync", .note = note,
		.reporting_controller = "notification.miloapis.com/contact-reconciler",
		.reporting_instance = "reconciler-0",
	};
	struct kube_response r;
	char path[256];
	json_t *ev;
	int rc;

	rc = kube_event_create(kc, &e, &r);
	ck_assert_msg(rc == 0, "event create: %d, HTTP %ld, %s", rc, r.status,
	    r.message ? r.message : "");
	ck_assert_ptr_nonnull(meta_str(r.body, "name"));
	event_path(path, sizeof(path), meta_str(r.body, "name"));
	kube_response_free(&r);
	ck_assert_int_eq(kube_get(kc, path, &r), 0);
	ev = json_incref(r.body);
	kube_response_free(&r);
	return ev;
}

START_TEST(test_event)
{
	json_t *ev = event_round_trip("the provider answered 503"), *reg;
	const char *t;

	ck_assert_str_eq(json_string_value(json_object_get(ev, "apiVersion")), "events.k8s.io/v1");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "type")), "Warning");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "reason")), "SyncFailed");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "action")), "Sync");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "note")),
	    "the provider answered 503");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "reportingController")),
	    "notification.miloapis.com/contact-reconciler");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "reportingInstance")),
	    "reconciler-0");
	reg = json_object_get(ev, "regarding");
	ck_assert_str_eq(json_string_value(json_object_get(reg, "kind")), "Contact");
	ck_assert_str_eq(json_string_value(json_object_get(reg, "name")), "frank");
	ck_assert_str_eq(json_string_value(json_object_get(reg, "uid")), "0b5e4c1a-uid");
	ck_assert_str_eq(json_string_value(json_object_get(reg, "apiVersion")),
	    GROUP "/" VERSION);
	ck_assert_str_eq(meta_str(ev, "namespace"), NS);
	/* MicroTime: 2006-01-02T15:04:05.000000Z */
	t = json_string_value(json_object_get(ev, "eventTime"));
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(strlen(t), 27);
	ck_assert(t[4] == '-' && t[7] == '-' && t[10] == 'T' && t[13] == ':' && t[16] == ':' &&
	    t[19] == '.' && t[26] == 'Z');
	json_decref(ev);
}
END_TEST

START_TEST(test_event_long_note)
{
	char ascii[2001], utf8[1401];
	const char *got;
	json_t *ev;

	/* A note over 1 kB is cut to fit... */
	memset(ascii, 'n', 2000);
	ascii[2000] = '\0';
	ev = event_round_trip(ascii);
	got = json_string_value(json_object_get(ev, "note"));
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_le(strlen(got), 1024);
	ck_assert_uint_ge(strlen(got), 1000);
	ck_assert_int_eq(strncmp(got, ascii, strlen(got)), 0);
	json_decref(ev);

	/* ...and never inside a UTF-8 sequence, which JSON could not carry. */
	for (size_t i = 0; i < 1400; i += 2)
		memcpy(utf8 + i, "\xc3\xa9", 2);
	utf8[1400] = '\0';
	ev = event_round_trip(utf8);
	got = json_string_value(json_object_get(ev, "note"));
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_le(strlen(got), 1024);
	ck_assert_uint_ge(strlen(got), 1000);
	ck_assert_int_eq(strlen(got) % 2, 0);
	ck_assert_int_eq(strncmp(got, utf8, strlen(got)), 0);
	json_decref(ev);
}
END_TEST

START_TEST(test_http_kubeconfig)
{
	struct kube_response r;
	json_t *reqs, *req;
	json_int_t seq = request_seq();

	ck_assert_str_eq(kube_client_server(kc), tu_kube.url);
	ck_assert_int_eq(strncmp(kube_client_server(kc), "http://", 7), 0);
	ck_assert_int_eq(kube_get(kc, "/version", &r), 0);
	ck_assert_ptr_nonnull(json_string_value(json_object_get(r.body, "gitVersion")));
	kube_response_free(&r);
	/* A 2xx answer that is not JSON is fine, with no body. */
	ck_assert_int_eq(kube_get(kc, "/healthz", &r), 0);
	ck_assert_int_eq(r.status, 200);
	ck_assert_ptr_null(r.body);
	kube_response_free(&r);

	reqs = requests_since(seq);
	ck_assert_uint_eq(json_array_size(reqs), 2);
	req = json_array_get(reqs, 0);
	ck_assert_str_eq(req_header(req, "Authorization"), "Bearer standin-token");
	ck_assert_str_eq(req_header(req, "Accept"), "application/json");
	ck_assert_int_eq(strncmp(req_header(req, "User-Agent"), "milo-contacts/", 14), 0);
	json_decref(reqs);
}
END_TEST

START_TEST(test_token_file_rotation)
{
	char token[256], config[256], text[1024];
	struct kube_client *c;
	struct kube_response r;
	json_t *reqs;
	json_int_t seq;

	snprintf(token, sizeof(token), "%s/token", tu_kube.dir);
	snprintf(config, sizeof(config), "%s/kubeconfig-tokenfile", tu_kube.dir);
	write_text(token, "token-a\n");
	snprintf(text, sizeof(text),
	    "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
	    "clusters:\n- name: s\n  cluster:\n    server: %s\n"
	    /* The token file's path is relative to the kubeconfig. */
	    "users:\n- name: u\n  user:\n    tokenFile: token\n"
	    "contexts:\n- name: c\n  context:\n    cluster: s\n    user: u\n"
	    "    namespace: default\n", tu_kube.url);
	write_text(config, text);
	c = tu_kube_client(config);
	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"token-a\"]}");

	seq = request_seq();
	ck_assert_int_eq(kube_get(c, contacts, &r), 0);
	kube_response_free(&r);

	/* The token rotates: the file first, then the server. */
	write_text(token, "token-b\n");
	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"token-b\"]}");
	ck_assert_int_eq(kube_get(c, contacts, &r), 0);
	kube_response_free(&r);

	reqs = requests_since(seq);
	ck_assert_uint_eq(json_array_size(reqs), 3);
	ck_assert_str_eq(req_header(json_array_get(reqs, 0), "Authorization"), "Bearer token-a");
	ck_assert_str_eq(req_header(json_array_get(reqs, 1), "Authorization"), "Bearer token-a");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(reqs, 1), "code")),
	    401);
	ck_assert_str_eq(req_header(json_array_get(reqs, 2), "Authorization"), "Bearer token-b");
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(reqs, 2), "code")),
	    200);
	json_decref(reqs);

	/* A token the server never takes: one re-read and retry, then the 401. */
	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"token-c\"]}");
	seq = request_seq();
	ck_assert_int_eq(kube_get(c, contacts, &r), -EIO);
	ck_assert_int_eq(r.status, 401);
	ck_assert_str_eq(r.reason, "Unauthorized");
	ck_assert(!kube_is_unreachable(&r));
	kube_response_free(&r);
	reqs = requests_since(seq);
	ck_assert_uint_eq(json_array_size(reqs), 2);
	json_decref(reqs);

	/*
	 * A watch that meets a 401 re-reads the file, so the next watch (if
	 * not this one) gets in with the new token.
	 */
	write_text(token, "token-d\n");
	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"token-d\"]}");
	{
		int events = 0, rc = kube_watch(c, contacts, NULL, 1, count_event, &events, NULL,
		    &r);

		if (rc != 0) {
			ck_assert_int_eq(rc, -EIO);
			ck_assert_int_eq(r.status, 401);
			kube_response_free(&r);
			rc = kube_watch(c, contacts, NULL, 1, count_event, &events, NULL, &r);
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(r.status, 200);
		kube_response_free(&r);
	}
	kube_client_free(c);
}
END_TEST

START_TEST(test_static_token_401_not_retried)
{
	struct kube_response r;
	json_t *reqs;
	json_int_t seq;

	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"something-else\"]}");
	seq = request_seq();
	ck_assert_int_eq(kube_get(kc, contacts, &r), -EIO);
	ck_assert_int_eq(r.status, 401);
	kube_response_free(&r);
	reqs = requests_since(seq);
	ck_assert_uint_eq(json_array_size(reqs), 1);	/* no token file to re-read */
	json_decref(reqs);
}
END_TEST

/* ---- limits: failures of the server and of the network ---- */

static struct kube_client *
client_for(const char *server)
{
	struct kube_config cfg = { 0 };
	struct kube_client *c;
	char err[256];

	cfg.server = (char *)(uintptr_t)server;
	ck_assert_msg(kube_client_new(&cfg, &c, err, sizeof(err)) == 0, "%s", err);
	return c;
}

START_TEST(test_server_down)
{
	char url[64];
	struct kube_client *c;
	struct kube_response r;
	struct timespec t0;
	int port = tu_closed_port(), events = 0;

	ck_assert_int_gt(port, 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	c = client_for(url);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(kube_get(c, contacts, &r), -ECONNREFUSED);
	/* Refused at once, not after the connect timeout. */
	ck_assert_int_lt(elapsed_ms(&t0), KUBE_CONNECT_TIMEOUT_MS);
	ck_assert_int_eq(r.status, 0);
	ck_assert(kube_is_unreachable(&r));
	ck_assert(!kube_is_not_found(&r) && !kube_is_conflict(&r));
	ck_assert_ptr_nonnull(r.message);
	kube_response_free(&r);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(kube_watch(c, contacts, NULL, 30, count_event, &events, NULL, &r),
	    -ECONNREFUSED);
	ck_assert_int_lt(elapsed_ms(&t0), KUBE_CONNECT_TIMEOUT_MS);
	ck_assert(kube_is_unreachable(&r));
	ck_assert_int_eq(events, 0);
	kube_response_free(&r);
	kube_client_free(c);
}
END_TEST

START_TEST(test_server_errors)
{
	struct kube_response r;

	tu_standin_post(&tu_kube, "fail", "{\"count\": 1, \"code\": 500, \"pathPrefix\": \"%s\"}",
	    contacts);
	ck_assert_int_eq(kube_get(kc, contacts, &r), -EIO);
	ck_assert_int_eq(r.status, 500);
	ck_assert_str_eq(r.reason, "InternalError");
	ck_assert_ptr_nonnull(strstr(r.message, "injected fault"));
	ck_assert(kube_is_unreachable(&r));
	kube_response_free(&r);
	/* The fault was for one request only. */
	ck_assert_int_eq(kube_get(kc, contacts, &r), 0);
	kube_response_free(&r);

	tu_standin_post(&tu_kube, "fail", "{\"count\": 1, \"code\": 503, \"retryAfter\": 1,"
	    " \"method\": \"POST\"}");
	{
		json_t *c = contact_new("gina", "gina@example.com");

		ck_assert_int_eq(kube_create(kc, contacts, c, &r), -EIO);
		ck_assert_int_eq(r.status, 503);
		ck_assert(kube_is_unreachable(&r));
		kube_response_free(&r);
		json_decref(c);
	}

	/*
	 * The connection closed without an answer. Count 2: libcurl resends
	 * once by itself when a reused connection dies before answering.
	 */
	tu_standin_post(&tu_kube, "fail", "{\"count\": 2, \"drop\": true, \"pathPrefix\": \"%s\"}",
	    contacts);
	ck_assert_int_eq(kube_get(kc, contacts, &r), -EPROTO);
	ck_assert_int_eq(r.status, 0);
	ck_assert(kube_is_unreachable(&r));
	kube_response_free(&r);
	tu_standin_post(&tu_kube, "fail", "{\"clear\": true}");
	ck_assert_int_eq(kube_get(kc, contacts, &r), 0);
	kube_response_free(&r);
}
END_TEST

START_TEST(test_status_predicates)
{
	static const struct {
		long status;
		const char *reason;
		bool not_found, conflict, exists, gone, unreachable;
	} cases[] = {
		{ 0, NULL, false, false, false, false, true },
		{ 200, NULL, false, false, false, false, false },
		{ 404, "NotFound", true, false, false, false, false },
		{ 409, "Conflict", false, true, false, false, false },
		{ 409, NULL, false, true, false, false, false },
		{ 409, "AlreadyExists", false, false, true, false, false },
		{ 410, "Expired", false, false, false, true, false },
		{ 410, "Gone", false, false, false, true, false },
		{ 410, NULL, false, false, false, true, false },
		{ 429, "TooManyRequests", false, false, false, false, false },
		{ 500, "InternalError", false, false, false, false, true },
		{ 504, "Timeout", false, false, false, false, true },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct kube_response r = { .status = cases[i].status,
		    .reason = (char *)(uintptr_t)cases[i].reason };

		ck_assert_msg(kube_is_not_found(&r) == cases[i].not_found, "case %zu", i);
		ck_assert_msg(kube_is_conflict(&r) == cases[i].conflict, "case %zu", i);
		ck_assert_msg(kube_is_already_exists(&r) == cases[i].exists, "case %zu", i);
		ck_assert_msg(kube_is_gone(&r) == cases[i].gone, "case %zu", i);
		ck_assert_msg(kube_is_unreachable(&r) == cases[i].unreachable, "case %zu", i);
	}
}
END_TEST

START_TEST(test_response_too_large)
{
	/* Enough 3 MB objects (the API's request limit) to list more than the cap. */
	size_t note_len = 3000000, n = KUBE_RESPONSE_MAX / note_len + 2;
	char *note;
	struct kube_response r;
	struct timespec t0;

	if (tu_under_valgrind())
		return;		/* 70 MB through valgrind takes minutes */
	note = malloc(note_len + 1);
	ck_assert_ptr_nonnull(note);
	memset(note, 'z', note_len);
	note[note_len] = '\0';
	for (size_t i = 0; i < n; i++) {
		char name[32];
		json_t *c;

		snprintf(name, sizeof(name), "big%zu", i);
		c = contact_new(name, "big@example.com");
		json_object_set_new(json_object_get(c, "metadata"), "annotations",
		    json_pack("{s:s}", "example.com/padding", note));
		ck_assert_int_eq(kube_create(kc, contacts, c, &r), 0);
		kube_response_free(&r);
		json_decref(c);
	}
	free(note);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(kube_list_page(kc, contacts, 0, NULL, &r), -EFBIG);
	ck_assert_ptr_null(r.body);
	ck_assert_ptr_nonnull(r.message);
	kube_response_free(&r);
	ck_assert_int_lt(elapsed_ms(&t0), KUBE_TIMEOUT_MS);
	/* The client is still usable. */
	ck_assert_int_eq(kube_get(kc, contact_path("big0", NULL), &r), 0);
	kube_response_free(&r);
}
END_TEST

START_TEST(test_watch_event_too_large)
{
	/* One object over the watch event cap; the API's body limit raised for it. */
	size_t note_len = (16u << 20) + 1024;
	char *note, rv0[32];
	struct kube_response r;
	json_t *c;
	int events = 0;

	if (tu_under_valgrind())
		return;
	tu_standin_post(&tu_kube, "config", "{\"maxBody\": %zu}", note_len + (1u << 20));
	note = malloc(note_len + 1);
	ck_assert_ptr_nonnull(note);
	memset(note, 'z', note_len);
	note[note_len] = '\0';
	list_rv(rv0, sizeof(rv0));
	json_decref(create_contact("small"));
	c = contact_new("huge", "huge@example.com");
	json_object_set_new(json_object_get(c, "metadata"), "annotations",
	    json_pack("{s:s}", "example.com/padding", note));
	free(note);
	ck_assert_int_eq(kube_create(kc, contacts, c, &r), 0);
	kube_response_free(&r);
	json_decref(c);
	/* The event before it arrives; the big one is refused, not buffered on. */
	ck_assert_int_eq(kube_watch(kc, contacts, rv0, 30, count_event, &events, NULL, &r),
	    -E2BIG);
	ck_assert_int_eq(events, 1);
	kube_response_free(&r);
}
END_TEST

/* ---- watch ---- */

/* What a watch callback saw, shared with the test's thread. */
struct seen {
	pthread_mutex_t lock;
	json_t *events;		/* [{type, name, rv, object}], bookmarks left out */
	size_t bookmarks;
	char last_rv[32];	/* from any event, bookmarks included */
	size_t stop_after;	/* return 1 after this many events (0: never) */
	size_t stop_after_bookmarks;
};

static void
seen_init(struct seen *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->events = json_array();
}

static void
seen_free(struct seen *s)
{
	json_decref(s->events);
	pthread_mutex_destroy(&s->lock);
}

static size_t
seen_count(struct seen *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = json_array_size(s->events);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static int
on_watch(const char *type, json_t *obj, void *arg)
{
	struct seen *s = arg;
	const char *rv = meta_str(obj, "resourceVersion");
	int stop = 0;

	pthread_mutex_lock(&s->lock);
	if (rv)
		snprintf(s->last_rv, sizeof(s->last_rv), "%s", rv);
	if (strcmp(type, "BOOKMARK") == 0) {
		s->bookmarks++;
		stop = s->stop_after_bookmarks && s->bookmarks >= s->stop_after_bookmarks;
	} else {
		json_array_append_new(s->events, json_pack("{s:s, s:s?, s:s?, s:O}",
		    "type", type, "name", meta_str(obj, "name"), "rv", rv, "object", obj));
		stop = s->stop_after && json_array_size(s->events) >= s->stop_after;
	}
	pthread_mutex_unlock(&s->lock);
	return stop;
}

static const char *
ev_str(const struct seen *s, size_t i, const char *key)
{
	return json_string_value(json_object_get(json_array_get(s->events, i), key));
}

/* Waits (bounded) until the watch has seen n events. */
static void
wait_events(struct seen *s, size_t n)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (seen_count(s) < n) {
		ck_assert_msg(elapsed_ms(&t0) < tu_slack(WAIT_MS), "waited for %zu events, saw %zu",
		    n, seen_count(s));
		tu_sleep_ms(10);
	}
}

/*
 * A watch loop on its own thread, resuming from the last resourceVersion
 * after every end, as an informer does, until stop or 410.
 */
#define WATCHER_MAX_CALLS 64

struct watcher {
	pthread_t tid;
	struct seen seen;
	char from_rv[32];
	unsigned int timeout_s;
	bool resume;
	atomic_bool stop;
	int calls;
	int rcs[WATCHER_MAX_CALLS];
	struct kube_response out;	/* of the last call */
};

static void *
watcher_main(void *arg)
{
	struct watcher *w = arg;
	char rv[32];

	snprintf(rv, sizeof(rv), "%s", w->from_rv);
	for (;;) {
		int rc = kube_watch(kc, contacts, rv[0] ? rv : NULL, w->timeout_s, on_watch,
		    &w->seen, &w->stop, &w->out);

		pthread_mutex_lock(&w->seen.lock);
		if (w->calls < WATCHER_MAX_CALLS)
			w->rcs[w->calls] = rc;
		w->calls++;
		if (w->seen.last_rv[0])
			snprintf(rv, sizeof(rv), "%s", w->seen.last_rv);
		pthread_mutex_unlock(&w->seen.lock);
		if (!w->resume || atomic_load(&w->stop) || rc == -EXDEV || rc > 0 ||
		    w->calls >= WATCHER_MAX_CALLS)
			break;
		kube_response_free(&w->out);
		tu_sleep_ms(50);	/* an informer backs off; any pause will do */
	}
	return NULL;
}

static void
watcher_start(struct watcher *w, const char *from_rv, unsigned int timeout_s, bool resume)
{
	memset(w, 0, sizeof(*w));
	seen_init(&w->seen);
	snprintf(w->from_rv, sizeof(w->from_rv), "%s", from_rv ? from_rv : "");
	w->timeout_s = timeout_s;
	w->resume = resume;
	ck_assert_int_eq(pthread_create(&w->tid, NULL, watcher_main, w), 0);
}

static void
watcher_join(struct watcher *w)
{
	ck_assert_int_eq(pthread_join(w->tid, NULL), 0);
}

static void
watcher_free(struct watcher *w)
{
	kube_response_free(&w->out);
	seen_free(&w->seen);
}

START_TEST(test_watch_events_in_order)
{
	struct kube_response r;
	struct seen s;
	char rv0[32];
	json_t *patch, *reqs, *req;
	json_int_t seq;

	list_rv(rv0, sizeof(rv0));
	json_decref(create_contact("w1"));
	patch = json_pack("{s:{s:s}}", "spec", "familyName", "Watched");
	ck_assert_int_eq(kube_merge_patch(kc, contact_path("w1", NULL), patch, &r), 0);
	kube_response_free(&r);
	json_decref(patch);
	ck_assert_int_eq(kube_delete(kc, contact_path("w1", NULL), &r), 0);
	kube_response_free(&r);
	json_decref(create_contact("w2"));

	seen_init(&s);
	s.stop_after = 4;
	seq = request_seq();
	ck_assert_int_eq(kube_watch(kc, contacts, rv0, 30, on_watch, &s, NULL, &r), 1);
	ck_assert_int_eq(r.status, 200);
	kube_response_free(&r);
	ck_assert_uint_eq(json_array_size(s.events), 4);
	ck_assert_str_eq(ev_str(&s, 0, "type"), "ADDED");
	ck_assert_str_eq(ev_str(&s, 1, "type"), "MODIFIED");
	ck_assert_str_eq(ev_str(&s, 2, "type"), "DELETED");
	ck_assert_str_eq(ev_str(&s, 3, "type"), "ADDED");
	ck_assert_str_eq(ev_str(&s, 0, "name"), "w1");
	ck_assert_str_eq(ev_str(&s, 2, "name"), "w1");
	ck_assert_str_eq(ev_str(&s, 3, "name"), "w2");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(json_object_get(
	    json_array_get(s.events, 1), "object"), "spec"), "familyName")), "Watched");
	ck_assert_int_gt(rv_num(ev_str(&s, 0, "rv")), rv_num(rv0));
	for (size_t i = 1; i < 4; i++)
		ck_assert_int_gt(rv_num(ev_str(&s, i, "rv")), rv_num(ev_str(&s, i - 1, "rv")));
	seen_free(&s);

	reqs = requests_since(seq);
	ck_assert_uint_eq(json_array_size(reqs), 1);
	req = json_array_get(reqs, 0);
	ck_assert_str_eq(json_string_value(json_object_get(req, "path")), contacts);
	ck_assert_str_eq(req_query(req, "watch"), "1");
	ck_assert_str_eq(req_query(req, "allowWatchBookmarks"), "true");
	ck_assert_str_eq(req_query(req, "resourceVersion"), rv0);
	ck_assert_str_eq(req_query(req, "timeoutSeconds"), "30");
	ck_assert_str_eq(req_header(req, "Authorization"), "Bearer standin-token");
	json_decref(reqs);
}
END_TEST

START_TEST(test_watch_bookmarks)
{
	struct kube_response r;
	struct seen s;
	char rv0[32];
	json_t *obj;

	list_rv(rv0, sizeof(rv0));
	obj = create_contact("b1");
	tu_standin_post(&tu_kube, "bookmarks", "{\"interval\": 0.2}");
	seen_init(&s);
	s.stop_after_bookmarks = 2;
	ck_assert_int_eq(kube_watch(kc, contacts, rv0, 30, on_watch, &s, NULL, &r), 1);
	kube_response_free(&r);
	ck_assert_uint_eq(json_array_size(s.events), 1);
	ck_assert_uint_eq(s.bookmarks, 2);
	/* A bookmark carries the resourceVersion to resume from. */
	ck_assert_int_ge(rv_num(s.last_rv), rv_num(meta_str(obj, "resourceVersion")));
	seen_free(&s);
	json_decref(obj);
}
END_TEST

START_TEST(test_watch_resume_after_cut)
{
	static const char *const cut_mode[] = { "clean", "abort", "abort" };
	struct watcher w;
	char rv0[32], name[32];
	size_t total = 0;

	list_rv(rv0, sizeof(rv0));
	watcher_start(&w, rv0, 60, true);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 3; i++) {
			snprintf(name, sizeof(name), "r%d-%d", round, i);
			json_decref(create_contact(name));
		}
		total += 3;
		wait_events(&w.seen, round == 2 ? total - 2 : total);
		/*
		 * The watch resumed after this cut sends slowly, in pieces, so the
		 * next cut lands inside an event.
		 */
		if (round == 1)
			tu_standin_post(&tu_kube, "watch-mode", "{\"chunking\": \"split\","
			    " \"chunkSize\": 16, \"chunkDelay\": 0.01}");
		tu_standin_post(&tu_kube, "cut-watches", "{\"mode\": \"%s\"}", cut_mode[round]);
	}
	wait_events(&w.seen, total);
	atomic_store(&w.stop, true);
	watcher_join(&w);

	ck_assert_uint_eq(json_array_size(w.seen.events), total);
	for (size_t i = 0; i < total; i++) {
		snprintf(name, sizeof(name), "r%zu-%zu", i / 3, i % 3);
		ck_assert_str_eq(ev_str(&w.seen, i, "type"), "ADDED");
		ck_assert_str_eq(ev_str(&w.seen, i, "name"), name);
		if (i)
			ck_assert_int_gt(rv_num(ev_str(&w.seen, i, "rv")),
			    rv_num(ev_str(&w.seen, i - 1, "rv")));
	}
	/* A clean end is 0, a connection cut short -EPROTO; the stop flag ends the last. */
	ck_assert_int_eq(w.calls, 4);
	ck_assert_int_eq(w.rcs[0], 0);
	ck_assert_int_eq(w.rcs[1], -EPROTO);
	ck_assert_int_eq(w.rcs[2], -EPROTO);
	ck_assert_int_eq(w.rcs[3], 0);
	watcher_free(&w);
}
END_TEST

START_TEST(test_watch_gone_http)
{
	static const char *const reasons[] = { "Expired", "Gone" };

	for (size_t i = 0; i < 2; i++) {
		struct kube_response r;
		struct seen s;
		char rv0[32], name[16];

		tu_standin_post(&tu_kube, "watch-mode", "{\"goneReason\": \"%s\"}", reasons[i]);
		list_rv(rv0, sizeof(rv0));
		snprintf(name, sizeof(name), "g%zu", i);
		json_decref(create_contact(name));
		json_decref(tu_standin_control(&tu_kube, "POST", "compact", "{}"));
		seen_init(&s);
		ck_assert_int_eq(kube_watch(kc, contacts, rv0, 30, on_watch, &s, NULL, &r),
		    -EXDEV);
		ck_assert_int_eq(r.status, 410);
		ck_assert_str_eq(r.reason, reasons[i]);
		ck_assert(kube_is_gone(&r));
		ck_assert_ptr_nonnull(strstr(r.message, "too old resource version"));
		ck_assert_uint_eq(json_array_size(s.events), 0);
		kube_response_free(&r);
		seen_free(&s);
	}
}
END_TEST

START_TEST(test_watch_gone_event)
{
	struct kube_response r;
	struct seen s;
	char rv0[32];

	/* As the watch cache does it: HTTP 200, then an ERROR event. */
	tu_standin_post(&tu_kube, "watch-mode", "{\"goneMode\": \"event\"}");
	list_rv(rv0, sizeof(rv0));
	json_decref(create_contact("h1"));
	json_decref(tu_standin_control(&tu_kube, "POST", "compact", "{}"));
	seen_init(&s);
	ck_assert_int_eq(kube_watch(kc, contacts, rv0, 30, on_watch, &s, NULL, &r), -EXDEV);
	ck_assert_int_eq(r.status, 200);
	ck_assert(kube_is_gone(&r));
	ck_assert_str_eq(r.reason, "Expired");
	ck_assert_uint_eq(json_array_size(s.events), 0);
	kube_response_free(&r);
	seen_free(&s);
}
END_TEST

START_TEST(test_watch_gone_mid_stream)
{
	struct watcher w;
	char rv0[32];

	list_rv(rv0, sizeof(rv0));
	watcher_start(&w, rv0, 60, true);
	json_decref(create_contact("m1"));
	wait_events(&w.seen, 1);
	tu_standin_post(&tu_kube, "cut-watches", "{\"mode\": \"expire\"}");
	watcher_join(&w);	/* a 410 ends the loop: the caller must relist */
	ck_assert_int_eq(w.calls, 1);
	ck_assert_int_eq(w.rcs[0], -EXDEV);
	ck_assert(kube_is_gone(&w.out));
	ck_assert_uint_eq(json_array_size(w.seen.events), 1);
	watcher_free(&w);
}
END_TEST

START_TEST(test_watch_stop_flag)
{
	struct watcher w;
	struct timespec t0;
	char rv0[32];

	/* Once the one event is in, the stream is open and idle. */
	list_rv(rv0, sizeof(rv0));
	json_decref(create_contact("idle"));
	watcher_start(&w, rv0, 120, false);
	wait_events(&w.seen, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	atomic_store(&w.stop, true);
	watcher_join(&w);
	ck_assert_msg(elapsed_ms(&t0) < tu_slack(2500), "stopping took %ld ms", elapsed_ms(&t0));
	ck_assert_int_eq(w.calls, 1);
	ck_assert_int_eq(w.rcs[0], 0);
	watcher_free(&w);
}
END_TEST

START_TEST(test_watch_server_timeout)
{
	struct kube_response r;
	struct timespec t0;
	struct seen s;
	char rv0[32];

	list_rv(rv0, sizeof(rv0));
	seen_init(&s);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(kube_watch(kc, contacts, rv0, 1, on_watch, &s, NULL, &r), 0);
	ck_assert_int_lt(elapsed_ms(&t0), tu_slack(15000));
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(json_array_size(s.events), 0);
	kube_response_free(&r);
	seen_free(&s);
}
END_TEST

START_TEST(test_watch_chunking)
{
	static const char *const modes[] = {
		"{\"chunking\": \"split\", \"chunkSize\": 7}",
		"{\"chunking\": \"mixed\", \"chunkSize\": 5}",
		"{\"chunking\": \"mixed\", \"chunkSize\": 1}",
		"{\"chunking\": \"pack\"}",
		"{\"chunking\": \"event\"}",
	};
	json_t *created = json_array();
	char rv0[32];

	list_rv(rv0, sizeof(rv0));
	for (int i = 0; i < 3; i++) {
		struct kube_response r;
		char name[16];
		json_t *c;

		snprintf(name, sizeof(name), "s%d", i);
		c = contact_new(name, "s@example.com");
		/* Strings the framer must not mistake for structure. */
		json_object_set_new(json_object_get(c, "spec"), "givenName",
		    json_string("}{\"]["));
		json_object_set_new(json_object_get(c, "spec"), "familyName",
		    json_string("back\\slash\\"));
		ck_assert_int_eq(kube_create(kc, contacts, c, &r), 0);
		json_array_append(created, r.body);
		kube_response_free(&r);
		json_decref(c);
	}
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		struct kube_response r;
		struct seen s;

		tu_standin_post(&tu_kube, "watch-mode", "%s", modes[m]);
		seen_init(&s);
		s.stop_after = 3;
		ck_assert_int_eq(kube_watch(kc, contacts, rv0, 30, on_watch, &s, NULL, &r), 1);
		kube_response_free(&r);
		for (size_t i = 0; i < 3; i++)
			ck_assert_msg(json_equal(json_object_get(json_array_get(s.events, i),
			    "object"), json_array_get(created, i)), "mode %zu, event %zu", m, i);
		seen_free(&s);
	}
	json_decref(created);
}
END_TEST

START_TEST(test_watch_errors)
{
	struct kube_response r;
	struct seen s;

	seen_init(&s);
	tu_standin_post(&tu_kube, "fail", "{\"count\": 1, \"code\": 500, \"pathPrefix\": \"%s\"}",
	    contacts);
	ck_assert_int_eq(kube_watch(kc, contacts, NULL, 30, on_watch, &s, NULL, &r), -EIO);
	ck_assert_int_eq(r.status, 500);
	ck_assert_str_eq(r.reason, "InternalError");
	ck_assert(kube_is_unreachable(&r));
	kube_response_free(&r);

	tu_standin_post(&tu_kube, "token", "{\"tokens\": [\"another\"]}");
	ck_assert_int_eq(kube_watch(kc, contacts, NULL, 30, on_watch, &s, NULL, &r), -EIO);
	ck_assert_int_eq(r.status, 401);
	kube_response_free(&r);

	/* A 404 for a collection that does not exist. */
	tu_standin_post(&tu_kube, "token", "{\"tokens\": null}");
	ck_assert_int_eq(kube_watch(kc, "/apis/" GROUP "/" VERSION "/namespaces/default/nothings",
	    NULL, 30, on_watch, &s, NULL, &r), -EIO);
	ck_assert(kube_is_not_found(&r));
	kube_response_free(&r);
	ck_assert_uint_eq(json_array_size(s.events), 0);
	seen_free(&s);
}
END_TEST

/* ---- tls: the same stand-in behind HTTPS, with certs/dev-cert.sh certificates ---- */

static char tls_dir[64];
static char *tls_saved_tmpdir;	/* TMPDIR before the case; a test may change it */

static void
start_tls_standin(void)
{
	char cmd[512], cert[128], key[128], ca[128], port[128], kubeconfig[128];
	const char *args[] = { "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca,
	    "--tls-port-file", port, "--tls-kubeconfig-out", kubeconfig, NULL };

	free(tls_saved_tmpdir);
	tls_saved_tmpdir = getenv("TMPDIR") ? strdup(getenv("TMPDIR")) : NULL;
	snprintf(tls_dir, sizeof(tls_dir), "/tmp/milo-kube-tls-XXXXXX");
	if (!mkdtemp(tls_dir)) {
		tls_dir[0] = '\0';
		tu_kube_start_failed(-errno);
		return;
	}
	snprintf(cmd, sizeof(cmd), "'%s' '%s'", tu_path("certs/dev-cert.sh"), tls_dir);
	if (system(cmd) != 0) {
		tu_kube_start_failed(-ENOENT);
		return;
	}
	snprintf(cert, sizeof(cert), "%s/tls.crt", tls_dir);
	snprintf(key, sizeof(key), "%s/tls.key", tls_dir);
	snprintf(ca, sizeof(ca), "%s/ca.crt", tls_dir);
	snprintf(port, sizeof(port), "%s/tls-port", tls_dir);
	snprintf(kubeconfig, sizeof(kubeconfig), "%s/tls-kubeconfig", tls_dir);
	tu_kube_start_args(args);
}

static void
stop_tls_standin(void)
{
	char cmd[128];

	tu_kube_stop();
	/* Restored here, so a failed test (CK_FORK=no) leaves no TMPDIR behind. */
	if (tls_saved_tmpdir)
		setenv("TMPDIR", tls_saved_tmpdir, 1);
	else
		unsetenv("TMPDIR");
	free(tls_saved_tmpdir);
	tls_saved_tmpdir = NULL;
	if (tls_dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tls_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tls_dir);
	}
}

static const char *
tls_file(const char *name)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/%s", tls_dir, name);
	return path;
}

/* A kubeconfig for the HTTPS listener; cluster_extra: lines under "cluster:". */
static const char *
write_tls_kubeconfig(const char *cluster_extra)
{
	char *port = tu_read_file(tls_file("tls-port"), NULL), text[8192];
	static char path[128];

	ck_assert_ptr_nonnull(port);
	port[strcspn(port, "\n")] = '\0';
	snprintf(text, sizeof(text),
	    "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
	    "clusters:\n- name: s\n  cluster:\n    server: https://127.0.0.1:%s\n%s"
	    "users:\n- name: u\n  user:\n    token: standin-token\n"
	    "contexts:\n- name: c\n  context:\n    cluster: s\n    user: u\n", port,
	    cluster_extra);
	free(port);
	snprintf(path, sizeof(path), "%s/kubeconfig-custom", tls_dir);
	write_text(path, text);
	return path;
}

START_TEST(test_tls_ca_file)
{
	struct kube_client *c = tu_kube_client(tls_file("tls-kubeconfig"));
	struct kube_response r;
	char rv0[32];
	int events = 0;

	ck_assert_int_eq(strncmp(kube_client_server(c), "https://", 8), 0);
	list_rv(rv0, sizeof(rv0));
	json_decref(create_contact("tls1"));
	ck_assert_int_eq(kube_get(c, contact_path("tls1", NULL), &r), 0);
	ck_assert_str_eq(meta_str(r.body, "name"), "tls1");
	kube_response_free(&r);
	/* A watch over TLS, ended by the server's timeout. */
	ck_assert_int_eq(kube_watch(c, contacts, rv0, 1, count_event, &events, NULL, &r), 0);
	ck_assert_int_eq(events, 1);
	kube_response_free(&r);
	kube_client_free(c);
}
END_TEST

/* How many of the client's temporary PEM files are in dir. */
static int
count_temp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "milo-kube-", 10) == 0;
	closedir(d);
	return n;
}

START_TEST(test_tls_ca_data)
{
	char *pem, *b64, extra[8192], tmp[128];
	struct kube_client *c;
	struct kube_response r;
	size_t len;

	pem = tu_read_file(tls_file("ca.crt"), &len);
	ck_assert_ptr_nonnull(pem);
	b64 = base64_encode(pem, len, NULL);
	ck_assert_ptr_nonnull(b64);
	snprintf(extra, sizeof(extra), "    certificate-authority-data: %s\n", b64);
	free(pem);
	free(b64);

	/* The PEM goes to a private file for libcurl, removed with the client. */
	snprintf(tmp, sizeof(tmp), "%s/tmp", tls_dir);
	ck_assert(mkdir(tmp, 0700) == 0 || errno == EEXIST);
	setenv("TMPDIR", tmp, 1);
	c = tu_kube_client(write_tls_kubeconfig(extra));
	ck_assert_int_eq(count_temp_files(tmp), 1);
	ck_assert_int_eq(kube_get(c, contacts, &r), 0);
	kube_response_free(&r);
	kube_client_free(c);
	ck_assert_int_eq(count_temp_files(tmp), 0);
	/* stop_tls_standin() puts TMPDIR back. */
}
END_TEST

START_TEST(test_tls_unverified)
{
	struct kube_client *c;
	struct kube_response r;

	/* No CA: the system roots do not know the development CA. */
	c = tu_kube_client(write_tls_kubeconfig(""));
	ck_assert_int_eq(kube_get(c, contacts, &r), -EPROTO);
	ck_assert_int_eq(r.status, 0);
	ck_assert(kube_is_unreachable(&r));
	ck_assert_ptr_nonnull(r.message);
	kube_response_free(&r);
	kube_client_free(c);

	c = tu_kube_client(write_tls_kubeconfig("    insecure-skip-tls-verify: true\n"));
	ck_assert_int_eq(kube_get(c, contacts, &r), 0);
	kube_response_free(&r);
	kube_client_free(c);
}
END_TEST

Suite *
kube_suite(void)
{
	static const struct tu_fixtures plain = { tu_kube_start, tu_kube_stop, setup, teardown };
	static const struct tu_fixtures https = { start_tls_standin, stop_tls_standin, setup,
	    teardown };
	Suite *s = suite_create("kube");
	TCase *core = tu_tcase(s, "core", &plain, 90);
	TCase *limits = tu_tcase(s, "limits", &plain, 90);
	TCase *watch = tu_tcase(s, "watch", &plain, 90);
	TCase *tls = tu_tcase(s, "tls", &https, 90);

	tcase_add_test(core, test_path);
	tcase_add_test(core, test_crud);
	tcase_add_test(core, test_already_exists_and_conflict);
	tcase_add_test(core, test_retry_on_conflict);
	tcase_add_test(core, test_status_subresource);
	tcase_add_test(core, test_list_paging);
	tcase_add_test(core, test_delete_with_finalizers);
	tcase_add_test(core, test_access_review);
	tcase_add_test(core, test_access_review_non_resource);
	tcase_add_test(core, test_token_review);
	tcase_add_test(core, test_event);
	tcase_add_test(core, test_http_kubeconfig);
	tcase_add_test(core, test_token_file_rotation);
	tcase_add_test(core, test_static_token_401_not_retried);
	tcase_add_test(limits, test_event_long_note);
	tcase_add_test(limits, test_server_down);
	tcase_add_test(limits, test_server_errors);
	tcase_add_test(limits, test_status_predicates);
	tcase_add_test(limits, test_response_too_large);
	tcase_add_test(limits, test_watch_event_too_large);
	tcase_add_test(watch, test_watch_events_in_order);
	tcase_add_test(watch, test_watch_bookmarks);
	tcase_add_test(watch, test_watch_resume_after_cut);
	tcase_add_test(watch, test_watch_gone_http);
	tcase_add_test(watch, test_watch_gone_event);
	tcase_add_test(watch, test_watch_gone_mid_stream);
	tcase_add_test(watch, test_watch_stop_flag);
	tcase_add_test(watch, test_watch_server_timeout);
	tcase_add_test(watch, test_watch_chunking);
	tcase_add_test(watch, test_watch_errors);
	tcase_add_test(tls, test_tls_ca_file);
	tcase_add_test(tls, test_tls_ca_data);
	tcase_add_test(tls, test_tls_unverified);
	return s;
}
