/* cache.h -- list+watch of the four kinds, with the indexes the admission rules need */
#ifndef MILO_CACHE_H
#define MILO_CACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "resource.h"

struct kube_client;
struct cache;

/*
 * What the cache keeps of an object: only what the rules read, in one
 * allocation (strings inline). Records are replaced, never edited, so a
 * reader that copied one out under the lock holds a consistent view.
 */
enum subject_kind { SUBJECT_NONE, SUBJECT_USER, SUBJECT_ORGANIZATION, SUBJECT_PROJECT };

struct cache_item {
	enum resource_kind kind;
	bool deleting;		/* deletionTimestamp set */
	bool settled;		/* status says this generation is done (see cache.c) */
	bool ready;		/* settled with Ready=True: the provider has it (the audit's view) */
	const char *namespace;
	const char *name;
	const char *uid;
	union {
		struct {
			const char *email_folded;	/* ASCII lower case */
			enum subject_kind subject;
			const char *subject_namespace;	/* "" for a User */
			const char *subject_name;
			const char *given_name, *family_name;	/* "" when absent */
			const char *provider_id;	/* status.providerID, or "" */
			bool unsubscribed;	/* condition ProviderUnsubscribed=True */
		} contact;
		struct {
			const char *display_name;
			enum visibility visibility;
			const char *provider_id;	/* status.providerID, or "" */
		} group;
		struct {		/* membership and removal */
			const char *contact_namespace;
			const char *contact_name;
			const char *group_namespace;
			const char *group_name;
		} pair;
	} u;
};

/*
 * Tells fn about every change: after an upsert or delete, and for every
 * object a relist stored. Called without the cache lock, from the informer
 * threads; fn must be quick (enqueue a key). Set before cache_start().
 */
typedef void (*cache_change_fn)(enum resource_kind kind, const char *namespace,
    const char *name, bool settled, void *arg);
void cache_on_change(struct cache *c, cache_change_fn fn, void *arg);

/*
 * Calls fn for every cached object of kind, under the read lock: fn must
 * not call into the cache. For resyncs.
 */
void cache_foreach(struct cache *c, enum resource_kind kind,
    void (*fn)(const struct cache_item *it, void *arg), void *arg);

/* Builds the compact record of an API object (malloc'd, one block); NULL if it does not decode. */
struct cache_item *cache_item_from_json(enum resource_kind kind, const json_t *obj);
/* A copy of a record, one block to free(); NULL on ENOMEM. */
struct cache_item *cache_item_dup(const struct cache_item *it);

/*
 * A cache over client (borrowed; must outlive the cache). Lists and
 * watches start with cache_start(), one thread per kind.
 */
int cache_new(struct kube_client *client, struct cache **out);

/*
 * The first wait after a failed list or watch, doubled per failure (with
 * jitter) up to 30 s: CACHE_BACKOFF_MIN_MS, client-go's reflector's,
 * unless set (tests set a few milliseconds). Before cache_start().
 */
#define CACHE_BACKOFF_MIN_MS 800
void cache_set_backoff(struct cache *c, unsigned int min_ms);
int cache_start(struct cache *c);
void cache_stop(struct cache *c);	/* joins the threads; idempotent */
void cache_free(struct cache *c);	/* stops first */

/* True once the first list of every kind has been stored. */
bool cache_synced(struct cache *c);
/* The plural of the first kind whose first list is not stored yet; NULL once synced. */
const char *cache_unsynced(struct cache *c);
size_t cache_count(struct cache *c, enum resource_kind kind);

/* Store operations (the informers use them; tests may too). Return 0 or -ENOMEM. */
int cache_upsert(struct cache *c, struct cache_item *item);	/* takes item */
void cache_delete(struct cache *c, enum resource_kind kind, const char *namespace,
    const char *name);
/*
 * Replaces every object of kind with items[0..n) (takes them), as a relist
 * does, and marks the kind synced.
 */
int cache_replace(struct cache *c, enum resource_kind kind, struct cache_item **items,
    size_t n);

/*
 * Lookups copy what they report out under the read lock. Names written to
 * *other are malloc'd "namespace/name"-free plain names (free them); the
 * object being admitted (self_namespace/self_name) is never reported.
 * Each returns 1 when something was found, 0 when not, -ENOMEM.
 */
struct cache_found {
	bool deleting;
	enum visibility visibility;	/* groups */
	enum subject_kind subject;	/* contacts */
	char *subject_name;		/* contacts with a subject: malloc'd, else NULL */
	char *provider_id;		/* groups with a status.providerID: malloc'd, else NULL */
	char *uid;			/* malloc'd */
};
int cache_get(struct cache *c, enum resource_kind kind, const char *namespace,
    const char *name, struct cache_found *found);
void cache_found_free(struct cache_found *f);

/* Another Contact with this email (case-insensitive): its namespace and name. */
int cache_contact_by_email(struct cache *c, const char *email,
    const char *self_namespace, const char *self_name, char **other_namespace,
    char **other_name);
/* Another Contact in namespace with the same subject. */
int cache_contact_by_subject(struct cache *c, const char *namespace,
    enum subject_kind subject, const char *subject_namespace,
    const char *subject_name, const char *self_name, char **other_name);
/* Another ContactGroup in namespace with this displayName and visibility. */
int cache_group_by_display(struct cache *c, const char *namespace,
    const char *display_name, enum visibility visibility, const char *self_name,
    char **other_name);
/* Another membership (kind KIND_MEMBERSHIP) or removal (KIND_REMOVAL) for the pair. */
int cache_pair(struct cache *c, enum resource_kind kind, const char *contact_namespace,
    const char *contact_name, const char *group_namespace, const char *group_name,
    const char *self_namespace, const char *self_name, char **other_namespace,
    char **other_name);

/*
 * Calls fn (when not NULL) for every membership (kind KIND_MEMBERSHIP) or
 * removal (KIND_REMOVAL) of exactly this pair, under the read lock: fn must
 * not call into the cache. Returns how many there are.
 */
size_t cache_pair_foreach(struct cache *c, enum resource_kind kind,
    const char *contact_namespace, const char *contact_name,
    const char *group_namespace, const char *group_name,
    void (*fn)(const struct cache_item *it, void *arg), void *arg);

/* The same for every membership or removal naming one Contact or one ContactGroup. */
enum cache_ref { CACHE_BY_CONTACT, CACHE_BY_GROUP };
size_t cache_refs_foreach(struct cache *c, enum resource_kind kind, enum cache_ref by,
    const char *namespace, const char *name,
    void (*fn)(const struct cache_item *it, void *arg), void *arg);

#endif
