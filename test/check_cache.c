/* check_cache.c -- the watch cache's store and indexes (no API server) */
#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "testutil.h"

Suite *cache_suite(void);

static struct cache *c;

static void
setup(void)
{
	ck_assert_int_eq(cache_new(NULL, &c), 0);
}

static void
teardown(void)
{
	cache_free(c);
	c = NULL;
}

static struct cache_item *
item(const char *json)
{
	json_t *obj = json_loads(json, 0, NULL);
	enum resource_kind kind;
	struct cache_item *it;

	ck_assert_ptr_nonnull(obj);
	ck_assert_int_eq(kind_from_name(json_string_value(json_object_get(obj, "kind")), &kind), 0);
	it = cache_item_from_json(kind, obj);
	json_decref(obj);
	return it;
}

static struct cache_item *
contact(const char *ns, const char *name, const char *email, const char *user)
{
	char json[1024];

	snprintf(json, sizeof(json), "{\"kind\":\"Contact\",\"metadata\":{\"name\":\"%s\","
	    "\"namespace\":\"%s\",\"uid\":\"u-%s\"},\"spec\":{\"email\":\"%s\","
	    "\"subject\":{\"userRef\":{\"name\":\"%s\"}}}}", name, ns, name, email, user);
	return item(json);
}

static struct cache_item *
pair(const char *kind, const char *ns, const char *name, const char *cname,
    const char *gname)
{
	char json[1024];

	snprintf(json, sizeof(json), "{\"kind\":\"%s\",\"metadata\":{\"name\":\"%s\","
	    "\"namespace\":\"%s\"},\"spec\":{\"contactRef\":{\"name\":\"%s\"},"
	    "\"contactGroupRef\":{\"name\":\"%s\",\"namespace\":\"groups\"}}}",
	    kind, name, ns, cname, gname);
	return item(json);
}

START_TEST(test_item_from_json)
{
	struct cache_item *it = contact("ns", "john", "John.Doe@Example.COM", "42");

	ck_assert_int_eq(it->kind, KIND_CONTACT);
	ck_assert_str_eq(it->u.contact.email_folded, "john.doe@example.com");
	ck_assert_int_eq(it->u.contact.subject, SUBJECT_USER);
	ck_assert_str_eq(it->u.contact.subject_name, "42");
	ck_assert_str_eq(it->u.contact.subject_namespace, "");
	ck_assert_str_eq(it->uid, "u-john");
	free(it);
	/* A missing reference namespace is the object's own, as the mutating webhook sets. */
	it = pair("ContactGroupMembership", "team", "m", "john", "admins");
	ck_assert_str_eq(it->u.pair.contact_namespace, "team");
	ck_assert_str_eq(it->u.pair.group_namespace, "groups");
	free(it);
	it = item("{\"kind\":\"ContactGroup\",\"metadata\":{\"name\":\"g\",\"namespace\":\"n\","
	    "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"},\"spec\":{\"displayName\":\"G\","
	    "\"visibility\":\"private\"}}");
	ck_assert(it->deleting);
	ck_assert_int_eq(it->u.group.visibility, VISIBILITY_PRIVATE);
	free(it);
	/* Without a name there is nothing to key it by. */
	ck_assert_ptr_null(item("{\"kind\":\"Contact\",\"metadata\":{}}"));
}
END_TEST

START_TEST(test_get_upsert_delete)
{
	struct cache_found f;

	ck_assert_int_eq(cache_get(c, KIND_CONTACT, "ns", "john", &f), 0);
	ck_assert_int_eq(cache_upsert(c, contact("ns", "john", "j@x.io", "1")), 0);
	ck_assert_int_eq(cache_get(c, KIND_CONTACT, "ns", "john", &f), 1);
	ck_assert_str_eq(f.uid, "u-john");
	cache_found_free(&f);
	ck_assert_int_eq(cache_get(c, KIND_CONTACT, "other", "john", &f), 0);
	ck_assert_int_eq(cache_get(c, KIND_CONTACT_GROUP, "ns", "john", &f), 0);
	/* An update replaces the record and its index entries. */
	ck_assert_int_eq(cache_upsert(c, contact("ns", "john", "new@x.io", "1")), 0);
	ck_assert_uint_eq(cache_count(c, KIND_CONTACT), 1);
	cache_delete(c, KIND_CONTACT, "ns", "john");
	cache_delete(c, KIND_CONTACT, "ns", "john");
	ck_assert_uint_eq(cache_count(c, KIND_CONTACT), 0);
	ck_assert_int_eq(cache_get(c, KIND_CONTACT, "ns", "john", &f), 0);
}
END_TEST

START_TEST(test_email_index)
{
	char *ns = NULL, *name = NULL;

	ck_assert_int_eq(cache_upsert(c, contact("a", "john", "John@X.io", "1")), 0);
	ck_assert_int_eq(cache_contact_by_email(c, "JOHN@x.IO", "b", "jane", &ns, &name), 1);
	ck_assert_str_eq(ns, "a");
	ck_assert_str_eq(name, "john");
	free(ns);
	free(name);
	/* Itself is never a duplicate. */
	ck_assert_int_eq(cache_contact_by_email(c, "john@x.io", "a", "john", &ns, &name), 0);
	/* After an email change the old address is free again. */
	ck_assert_int_eq(cache_upsert(c, contact("a", "john", "johnny@x.io", "1")), 0);
	ck_assert_int_eq(cache_contact_by_email(c, "john@x.io", "b", "jane", &ns, &name), 0);
	ck_assert_int_eq(cache_contact_by_email(c, "johnny@x.io", "b", "jane", &ns, &name), 1);
	free(ns);
	free(name);
}
END_TEST

START_TEST(test_subject_and_group_index)
{
	char *name = NULL;

	ck_assert_int_eq(cache_upsert(c, contact("a", "john", "j@x.io", "42")), 0);
	ck_assert_int_eq(cache_contact_by_subject(c, "a", SUBJECT_USER, "", "42", "jane", &name), 1);
	ck_assert_str_eq(name, "john");
	free(name);
	ck_assert_int_eq(cache_contact_by_subject(c, "b", SUBJECT_USER, "", "42", "jane", &name), 0);
	ck_assert_int_eq(cache_contact_by_subject(c, "a", SUBJECT_PROJECT, "", "42", "jane", &name), 0);
	ck_assert_int_eq(cache_upsert(c, item("{\"kind\":\"ContactGroup\",\"metadata\":{\"name\":"
	    "\"g\",\"namespace\":\"n\"},\"spec\":{\"displayName\":\"Admins\",\"visibility\":\"public\"}}")), 0);
	ck_assert_int_eq(cache_group_by_display(c, "n", "Admins", VISIBILITY_PUBLIC, "h", &name), 1);
	ck_assert_str_eq(name, "g");
	free(name);
	ck_assert_int_eq(cache_group_by_display(c, "n", "Admins", VISIBILITY_PRIVATE, "h", &name), 0);
	ck_assert_int_eq(cache_group_by_display(c, "n", "admins", VISIBILITY_PUBLIC, "h", &name), 0);
	ck_assert_int_eq(cache_group_by_display(c, "n", "Admins", VISIBILITY_PUBLIC, "g", &name), 0);
}
END_TEST

START_TEST(test_pair_index)
{
	char *ns = NULL, *name = NULL;

	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembership", "t", "m1", "john", "g")), 0);
	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembershipRemoval", "t", "r1", "jane", "g")), 0);
	ck_assert_int_eq(cache_pair(c, KIND_MEMBERSHIP, "t", "john", "groups", "g", "t", "m2",
	    &ns, &name), 1);
	ck_assert_str_eq(name, "m1");
	free(ns);
	free(name);
	ck_assert_int_eq(cache_pair(c, KIND_REMOVAL, "t", "john", "groups", "g", NULL, NULL,
	    &ns, &name), 0);
	ck_assert_int_eq(cache_pair(c, KIND_REMOVAL, "t", "jane", "groups", "g", NULL, NULL,
	    &ns, &name), 1);
	free(ns);
	free(name);
	ck_assert_int_eq(cache_pair(c, KIND_MEMBERSHIP, "t", "john", "groups", "g", "t", "m1",
	    &ns, &name), 0);
}
END_TEST

/* Collects "ns/name" of what a foreach reports, in a fixed buffer. */
struct seen {
	char names[512];
};

static void
note(const struct cache_item *it, void *arg)
{
	struct seen *s = arg;
	size_t n = strlen(s->names);

	snprintf(s->names + n, sizeof(s->names) - n, "%s%s/%s", n ? " " : "", it->namespace,
	    it->name);
}

START_TEST(test_pair_and_ref_foreach)
{
	struct seen s = { "" };

	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembership", "t", "m1", "john", "g")), 0);
	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembership", "u", "m2", "john", "g")), 0);
	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembership", "t", "m3", "john", "h")), 0);
	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembership", "t", "m4", "jane", "g")), 0);
	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembershipRemoval", "t", "r1", "john", "g")), 0);
	/* Every membership of exactly one pair (john in t, groups/g): one, not the others. */
	ck_assert_uint_eq(cache_pair_foreach(c, KIND_MEMBERSHIP, "t", "john", "groups", "g",
	    note, &s), 1);
	ck_assert_str_eq(s.names, "t/m1");
	ck_assert_uint_eq(cache_pair_foreach(c, KIND_REMOVAL, "t", "john", "groups", "g",
	    NULL, NULL), 1);
	ck_assert_uint_eq(cache_pair_foreach(c, KIND_REMOVAL, "t", "jane", "groups", "g",
	    NULL, NULL), 0);
	/* By group: m1, m2 (another namespace's contact), m4; by contact t/john: m1, m3. */
	s.names[0] = '\0';
	ck_assert_uint_eq(cache_refs_foreach(c, KIND_MEMBERSHIP, CACHE_BY_GROUP, "groups", "g",
	    note, &s), 3);
	ck_assert_ptr_nonnull(strstr(s.names, "t/m1"));
	ck_assert_ptr_nonnull(strstr(s.names, "u/m2"));
	ck_assert_ptr_nonnull(strstr(s.names, "t/m4"));
	s.names[0] = '\0';
	ck_assert_uint_eq(cache_refs_foreach(c, KIND_MEMBERSHIP, CACHE_BY_CONTACT, "t", "john",
	    note, &s), 2);
	ck_assert_ptr_nonnull(strstr(s.names, "t/m1"));
	ck_assert_ptr_nonnull(strstr(s.names, "t/m3"));
	ck_assert_uint_eq(cache_refs_foreach(c, KIND_REMOVAL, CACHE_BY_GROUP, "groups", "g",
	    NULL, NULL), 1);
	/* An update that moves a record leaves no stale index entry behind. */
	ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembership", "t", "m1", "jane", "h")), 0);
	ck_assert_uint_eq(cache_refs_foreach(c, KIND_MEMBERSHIP, CACHE_BY_CONTACT, "t", "john",
	    NULL, NULL), 1);
	ck_assert_uint_eq(cache_pair_foreach(c, KIND_MEMBERSHIP, "t", "john", "groups", "g",
	    NULL, NULL), 0);
	cache_delete(c, KIND_MEMBERSHIP, "t", "m4");
	ck_assert_uint_eq(cache_refs_foreach(c, KIND_MEMBERSHIP, CACHE_BY_GROUP, "groups", "g",
	    NULL, NULL), 1);
}
END_TEST

START_TEST(test_item_dup_and_get_subject)
{
	struct cache_item *it = contact("ns", "john", "J@x.io", "42"), *copy;
	struct cache_found f;

	copy = cache_item_dup(it);
	ck_assert_ptr_nonnull(copy);
	ck_assert_str_eq(copy->u.contact.email_folded, "j@x.io");
	ck_assert_str_eq(copy->u.contact.subject_name, "42");
	ck_assert_str_eq(copy->name, "john");
	/* The copy stands alone: its strings live in its own block. */
	ck_assert_ptr_ne(copy->name, it->name);
	ck_assert_int_eq(cache_upsert(c, it), 0);
	free(copy);
	ck_assert_int_eq(cache_get(c, KIND_CONTACT, "ns", "john", &f), 1);
	ck_assert_int_eq(f.subject, SUBJECT_USER);
	ck_assert_str_eq(f.subject_name, "42");
	cache_found_free(&f);
	it = pair("ContactGroupMembership", "t", "m1", "john", "g");
	copy = cache_item_dup(it);
	free(it);
	ck_assert_str_eq(copy->u.pair.group_namespace, "groups");
	free(copy);
}
END_TEST

START_TEST(test_unsynced_names_the_kind)
{
	ck_assert_str_eq(cache_unsynced(c), "contacts");
	for (int k = 0; k < KIND__COUNT; k++) {
		if (k == KIND_MEMBERSHIP)
			continue;
		ck_assert_int_eq(cache_replace(c, (enum resource_kind)k, NULL, 0), 0);
	}
	ck_assert_str_eq(cache_unsynced(c), "contactgroupmemberships");
	ck_assert(!cache_synced(c));
	ck_assert_int_eq(cache_replace(c, KIND_MEMBERSHIP, NULL, 0), 0);
	ck_assert_ptr_null(cache_unsynced(c));
	ck_assert(cache_synced(c));
}
END_TEST

START_TEST(test_replace)
{
	struct cache_item **items = calloc(3, sizeof(*items));
	struct cache_found f;
	char *ns = NULL, *name = NULL;

	ck_assert(!cache_synced(c));
	ck_assert_int_eq(cache_upsert(c, contact("a", "gone", "gone@x.io", "9")), 0);
	items[0] = contact("a", "one", "one@x.io", "1");
	items[1] = contact("a", "two", "two@x.io", "2");
	items[2] = contact("a", "one", "uno@x.io", "1");	/* a later duplicate wins */
	ck_assert_int_eq(cache_replace(c, KIND_CONTACT, items, 3), 0);
	free(items);
	ck_assert_uint_eq(cache_count(c, KIND_CONTACT), 2);
	ck_assert_int_eq(cache_get(c, KIND_CONTACT, "a", "gone", &f), 0);
	ck_assert_int_eq(cache_contact_by_email(c, "gone@x.io", "", NULL, &ns, &name), 0);
	ck_assert_int_eq(cache_contact_by_email(c, "one@x.io", "", NULL, &ns, &name), 0);
	ck_assert_int_eq(cache_contact_by_email(c, "uno@x.io", "", NULL, &ns, &name), 1);
	free(ns);
	free(name);
	for (int k = 1; k < KIND__COUNT; k++)
		ck_assert_int_eq(cache_replace(c, (enum resource_kind)k, NULL, 0), 0);
	ck_assert(cache_synced(c));
}
END_TEST

struct reader_arg {
	atomic_bool *stop;
	long lookups, found, torn;	/* torn: a name that is not the email's */
};

static void *
reader(void *p)
{
	struct reader_arg *a = p;
	char *ns, *name, email[64], want[32];

	while (!atomic_load(a->stop)) {
		long k = a->lookups % 500;

		snprintf(email, sizeof(email), "c%ld@x.io", k);
		snprintf(want, sizeof(want), "c%ld", k);
		ns = name = NULL;
		if (cache_contact_by_email(c, email, "other", "x", &ns, &name) == 1) {
			a->found++;
			/* A record is replaced whole, never edited: no mixed view. */
			if (strcmp(ns, "ns") != 0 || strcmp(name, want) != 0)
				a->torn++;
			free(ns);
			free(name);
		}
		a->lookups++;
		/* Valgrind runs one thread at a time: give the writer its turn. */
		if (tu_under_valgrind())
			sched_yield();
	}
	return NULL;
}

/* Readers on several threads while the store changes under them. */
START_TEST(test_concurrent_readers)
{
	atomic_bool stop = false;
	struct reader_arg args[3];
	pthread_t threads[3];
	int rounds = tu_under_valgrind() ? 500 : 20000;
	char name[32], email[64];
	long lookups = 0, found = 0;

	for (int i = 0; i < 3; i++) {
		args[i] = (struct reader_arg){ .stop = &stop };
		ck_assert_int_eq(pthread_create(&threads[i], NULL, reader, &args[i]), 0);
	}
	for (int i = 0; i < rounds; i++) {
		snprintf(name, sizeof(name), "c%d", i % 500);
		snprintf(email, sizeof(email), "c%d@x.io", i % 500);
		if (i % 3 == 2)
			cache_delete(c, KIND_CONTACT, "ns", name);
		else
			ck_assert_int_eq(cache_upsert(c, contact("ns", name, email, name)), 0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 3; i++) {
		pthread_join(threads[i], NULL);
		ck_assert_int_eq(args[i].torn, 0);
		lookups += args[i].lookups;
		found += args[i].found;
	}
	ck_assert_int_gt(lookups, 0);
	ck_assert_int_gt(found, 0);
	ck_assert_uint_le(cache_count(c, KIND_CONTACT), 500);
}
END_TEST

START_TEST(test_many_objects)
{
	int n = tu_under_valgrind() ? 5000 : 100000;
	char name[32], *ns = NULL, *other = NULL;
	struct cache_found f;

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		ck_assert_int_eq(cache_upsert(c, pair("ContactGroupMembership", "t", name, name, "g")), 0);
	}
	ck_assert_uint_eq(cache_count(c, KIND_MEMBERSHIP), (size_t)n);
	ck_assert_int_eq(cache_get(c, KIND_MEMBERSHIP, "t", "m77", &f), 1);
	cache_found_free(&f);
	ck_assert_int_eq(cache_pair(c, KIND_MEMBERSHIP, "t", "m4999", "groups", "g", NULL, NULL,
	    &ns, &other), 1);
	ck_assert_str_eq(other, "m4999");
	free(ns);
	free(other);
	ck_assert_int_eq(cache_replace(c, KIND_MEMBERSHIP, NULL, 0), 0);
	ck_assert_uint_eq(cache_count(c, KIND_MEMBERSHIP), 0);
}
END_TEST

START_TEST(test_settled)
{
	struct cache_item *it;

	/* Generation observed, Ready True, finalizer on: settled. */
	it = item("{\"kind\":\"ContactGroup\",\"metadata\":{\"name\":\"g\",\"namespace\":\"n\","
	    "\"generation\":2,\"finalizers\":[\"notification.miloapis.com/contactgroup\"]},"
	    "\"spec\":{\"displayName\":\"G\",\"visibility\":\"public\"},\"status\":{"
	    "\"observedGeneration\":2,\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
	    "\"observedGeneration\":2,\"reason\":\"Synced\"}]}}");
	ck_assert(it->settled);
	free(it);
	/* A newer generation than the status observed: work to do. */
	it = item("{\"kind\":\"ContactGroup\",\"metadata\":{\"name\":\"g\",\"namespace\":\"n\","
	    "\"generation\":3,\"finalizers\":[\"notification.miloapis.com/contactgroup\"]},"
	    "\"status\":{\"observedGeneration\":2,\"conditions\":[{\"type\":\"Ready\","
	    "\"status\":\"True\"}]}}");
	ck_assert(!it->settled);
	free(it);
	/* No finalizer yet: not settled. */
	it = item("{\"kind\":\"Contact\",\"metadata\":{\"name\":\"c\",\"namespace\":\"n\","
	    "\"generation\":1},\"status\":{\"observedGeneration\":1,\"conditions\":[{\"type\":"
	    "\"Ready\",\"status\":\"True\"}]}}");
	ck_assert(!it->settled);
	free(it);
	/* A rejected removal (no finalizer for removals) is final too. */
	it = item("{\"kind\":\"ContactGroupMembershipRemoval\",\"metadata\":{\"name\":\"r\","
	    "\"namespace\":\"n\",\"generation\":1},\"status\":{\"observedGeneration\":1,"
	    "\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":\"Rejected\"}]}}");
	ck_assert(it->settled);
	free(it);
	/* Being deleted is never settled. */
	it = item("{\"kind\":\"ContactGroupMembershipRemoval\",\"metadata\":{\"name\":\"r\","
	    "\"namespace\":\"n\",\"generation\":1,\"deletionTimestamp\":\"2026-01-01T00:00:00Z\"},"
	    "\"status\":{\"observedGeneration\":1,\"conditions\":[{\"type\":\"Ready\","
	    "\"status\":\"True\"}]}}");
	ck_assert(!it->settled);
	free(it);
}
END_TEST

START_TEST(test_ready_and_contact_provider_fields)
{
	struct cache_item *it, *copy;

	/* Done and Ready: ready; the provider id, names and unsubscribe are kept. */
	it = item("{\"kind\":\"Contact\",\"metadata\":{\"name\":\"c\",\"namespace\":\"n\","
	    "\"generation\":3,\"finalizers\":[\"notification.miloapis.com/contact\"]},"
	    "\"spec\":{\"email\":\"Ada@X.io\",\"givenName\":\"Ada\",\"familyName\":"
	    "\"Lovelace\",\"subject\":{\"userRef\":{\"name\":\"u\"}}},\"status\":{"
	    "\"observedGeneration\":3,\"providerID\":\"pid-1\",\"conditions\":[{\"type\":"
	    "\"Ready\",\"status\":\"True\",\"observedGeneration\":3,\"reason\":\"Synced\"},"
	    "{\"type\":\"ProviderUnsubscribed\",\"status\":\"True\",\"observedGeneration\":1,"
	    "\"reason\":\"Unsubscribed\"}]}}");
	ck_assert(it->settled && it->ready);
	ck_assert_str_eq(it->u.contact.provider_id, "pid-1");
	ck_assert_str_eq(it->u.contact.given_name, "Ada");
	ck_assert_str_eq(it->u.contact.family_name, "Lovelace");
	ck_assert_str_eq(it->u.contact.email_folded, "ada@x.io");
	/* An unsubscribe written for an older generation still holds. */
	ck_assert(it->u.contact.unsubscribed);
	copy = cache_item_dup(it);
	ck_assert_ptr_nonnull(copy);
	ck_assert_str_eq(copy->u.contact.provider_id, "pid-1");
	ck_assert_str_eq(copy->u.contact.family_name, "Lovelace");
	ck_assert_ptr_ne(copy->u.contact.provider_id, it->u.contact.provider_id);
	ck_assert(copy->ready && copy->u.contact.unsubscribed);
	free(copy);
	free(it);
	/* Absent fields are empty strings; a refused request is settled, not ready. */
	it = item("{\"kind\":\"Contact\",\"metadata\":{\"name\":\"c\",\"namespace\":\"n\","
	    "\"generation\":1,\"finalizers\":[\"notification.miloapis.com/contact\"]},"
	    "\"spec\":{\"email\":\"a@x.io\"},\"status\":{\"observedGeneration\":1,"
	    "\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
	    "\"ProviderRejected\"}]}}");
	ck_assert(it->settled && !it->ready);
	ck_assert_str_eq(it->u.contact.provider_id, "");
	ck_assert_str_eq(it->u.contact.given_name, "");
	ck_assert(!it->u.contact.unsubscribed);
	free(it);
	/* A drift the audit marked: neither settled nor ready until repaired. */
	it = item("{\"kind\":\"ContactGroup\",\"metadata\":{\"name\":\"g\",\"namespace\":"
	    "\"n\",\"generation\":1,\"finalizers\":[\"notification.miloapis.com/contactgroup\"]},"
	    "\"spec\":{\"displayName\":\"G\",\"visibility\":\"public\"},\"status\":{"
	    "\"observedGeneration\":1,\"conditions\":[{\"type\":\"Ready\",\"status\":"
	    "\"False\",\"reason\":\"ProviderDrift\"},{\"type\":\"ProviderDrift\",\"status\":"
	    "\"True\",\"reason\":\"SegmentMissing\"}]}}");
	ck_assert(!it->settled && !it->ready);
	free(it);
}
END_TEST

static int changes;
static char last_change[256];

static void
count_change(enum resource_kind kind, const char *ns, const char *name, bool is_settled,
    void *arg)
{
	(void)arg;
	(void)is_settled;
	changes++;
	snprintf(last_change, sizeof(last_change), "%d/%s/%s", (int)kind, ns, name);
}

START_TEST(test_change_handler)
{
	struct cache_item **items = calloc(2, sizeof(*items));

	changes = 0;
	cache_on_change(c, count_change, NULL);
	cache_upsert(c, contact("ns", "a", "a@x.io", "1"));
	ck_assert_int_eq(changes, 1);
	ck_assert_str_eq(last_change, "0/ns/a");
	cache_delete(c, KIND_CONTACT, "ns", "a");
	ck_assert_int_eq(changes, 2);
	/* Deleting what is not there is no change. */
	cache_delete(c, KIND_CONTACT, "ns", "a");
	ck_assert_int_eq(changes, 2);
	items[0] = contact("ns", "b", "b@x.io", "2");
	items[1] = contact("ns", "c", "c@x.io", "3");
	cache_replace(c, KIND_CONTACT, items, 2);
	free(items);
	ck_assert_int_eq(changes, 4);
}
END_TEST

Suite *
cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_checked_fixture(core, setup, teardown);
	tcase_add_checked_fixture(limits, setup, teardown);
	tcase_add_test(core, test_item_from_json);
	tcase_add_test(core, test_get_upsert_delete);
	tcase_add_test(core, test_email_index);
	tcase_add_test(core, test_subject_and_group_index);
	tcase_add_test(core, test_pair_index);
	tcase_add_test(core, test_pair_and_ref_foreach);
	tcase_add_test(core, test_item_dup_and_get_subject);
	tcase_add_test(core, test_unsynced_names_the_kind);
	tcase_add_test(core, test_replace);
	tcase_add_test(core, test_settled);
	tcase_add_test(core, test_ready_and_contact_provider_fields);
	tcase_add_test(core, test_change_handler);
	tcase_add_test(limits, test_concurrent_readers);
	tcase_add_test(limits, test_many_objects);
	tcase_set_timeout(limits, 120);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
