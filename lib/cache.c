/* cache.c -- list+watch of the four kinds, with the indexes the admission rules need */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "codec.h"
#include "hmap.h"
#include "kube.h"
#include "log.h"

#define CACHE_RV_MAX 64			/* resourceVersion text we keep */
#define CACHE_WATCH_MIN_S 300		/* watch timeouts are random in [5, 10] minutes */
#define CACHE_WATCH_MAX_S 600
#define CACHE_BACKOFF_MAX_MS 30000	/* client-go's reflector backoff: 800 ms to 30 s */

struct informer {
	struct cache *cache;
	enum resource_kind kind;
	char rv[CACHE_RV_MAX];
	unsigned int seed;
};

struct cache {
	struct kube_client *client;
	pthread_rwlock_t lock;		/* guards the maps and counts */
	struct hmap by_name[KIND__COUNT];
	struct hmap by_email, by_subject, by_display;
	struct hmap by_pair[2];		/* memberships, removals: by (contact, group) */
	struct hmap by_contact[2];	/* memberships, removals: refsets by their Contact */
	struct hmap by_group[2];	/* memberships, removals: refsets by their ContactGroup */
	size_t counts[KIND__COUNT];
	atomic_bool synced[KIND__COUNT];

	cache_change_fn on_change;
	void *on_change_arg;

	unsigned int backoff_min_ms;	/* first wait after a failed list or watch */
	struct informer informers[KIND__COUNT];
	pthread_t threads[KIND__COUNT];
	bool started;
	atomic_bool stop;		/* read by the informers, set by cache_stop() */
	pthread_mutex_t sleep_lock;
	pthread_cond_t wake;
};

static const char *const subject_names[] = { "", "User", "Organization", "Project" };

/* ---- records ---- */

static size_t
slen(const char *s)
{
	return s ? strlen(s) + 1 : 1;
}

/* Copies s into the record's string area at *p; returns where it went. */
static const char *
put(char **p, const char *s, bool fold)
{
	char *dst = *p;
	size_t n = s ? strlen(s) : 0;

	for (size_t i = 0; i < n; i++)
		dst[i] = fold && s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
	dst[n] = '\0';
	*p += n + 1;
	return dst;
}

static const struct object_ref *
subject_ref(const struct subject *s, enum subject_kind *kind)
{
	*kind = SUBJECT_NONE;
	if (!s)
		return NULL;
	if (s->user_ref)
		*kind = SUBJECT_USER;
	else if (s->organization_ref)
		*kind = SUBJECT_ORGANIZATION;
	else if (s->project_ref)
		*kind = SUBJECT_PROJECT;
	return s->user_ref ? s->user_ref : s->organization_ref ? s->organization_ref :
	    s->project_ref;
}

static bool
has_finalizer(const struct resource *r, const char *finalizer)
{
	for (size_t i = 0; i < r->meta.n_finalizers; i++)
		if (strcmp(r->meta.finalizers[i], finalizer) == 0)
			return true;
	return false;
}

/* The condition of this type in r's status, or NULL. */
static const struct condition *
condition_find(const struct resource *r, const char *type)
{
	for (size_t i = 0; i < r->status.n_conditions; i++)
		if (r->status.conditions[i].type &&
		    strcmp(r->status.conditions[i].type, type) == 0)
			return &r->status.conditions[i];
	return NULL;
}

static bool
condition_true(const struct condition *c)
{
	return c && c->status && strcmp(c->status, "True") == 0;
}

/*
 * Settled: the reconciler finished this generation and needs to do nothing
 * until it changes. Its status observed the current generation with a
 * final Ready condition (True, or False for a rejected removal or a
 * request the provider refused), and the
 * finalizer is on. A resync skips settled objects without an API call.
 */
static bool
settled(const struct resource *r)
{
	const char *fin = kind_info(r->kind)->finalizer;
	const struct condition *c = condition_find(r, "Ready");

	if (r->meta.deletion_timestamp || !r->meta.generation ||
	    r->status.observed_generation != r->meta.generation ||
	    (fin && !has_finalizer(r, fin)) || !c ||
	    (c->observed_generation && c->observed_generation != r->meta.generation))
		return false;
	/* Rejected: a private group's removal; ProviderRejected: a 4xx for this generation. */
	return condition_true(c) || (c->reason && (strcmp(c->reason, "Rejected") == 0 ||
	    strcmp(c->reason, "ProviderRejected") == 0));
}

struct cache_item *
cache_item_from_json(enum resource_kind kind, const json_t *obj)
{
	struct resource r;
	struct field_list errs;
	const struct object_ref *sref = NULL, *cref = NULL, *gref = NULL;
	const char *cns = NULL, *gns = NULL;
	enum subject_kind sk = SUBJECT_NONE;
	struct cache_item *it = NULL;
	size_t size;
	char *p;

	field_list_init(&errs);
	/* Field errors are tolerated: the API server stored it, we keep what decodes. */
	if (resource_decode(obj, kind, &r, &errs) != 0 || !r.meta.name) {
		resource_free(&r);
		field_list_free(&errs);
		return NULL;
	}
	size = sizeof(*it) + slen(r.meta.namespace) + slen(r.meta.name) + slen(r.meta.uid);
	if (kind == KIND_CONTACT) {
		sref = subject_ref(r.spec.contact.subject, &sk);
		size += slen(r.spec.contact.email) + slen(sref ? sref->namespace : NULL) +
		    slen(sref ? sref->name : NULL) + slen(r.spec.contact.given_name) +
		    slen(r.spec.contact.family_name) + slen(r.status.provider_id);
	} else if (kind == KIND_CONTACT_GROUP) {
		size += slen(r.spec.group.display_name) + slen(r.status.provider_id);
	} else {
		/* An empty reference namespace means the object's own (the webhook's default). */
		cref = r.spec.membership.contact_ref;
		gref = r.spec.membership.group_ref;
		cns = cref && cref->namespace && cref->namespace[0] ? cref->namespace :
		    r.meta.namespace;
		gns = gref && gref->namespace && gref->namespace[0] ? gref->namespace :
		    r.meta.namespace;
		size += slen(cns) + slen(cref ? cref->name : NULL) + slen(gns) +
		    slen(gref ? gref->name : NULL);
	}
	it = calloc(1, size);
	if (!it)
		goto out;
	p = (char *)(it + 1);
	it->kind = kind;
	it->deleting = r.meta.deletion_timestamp != NULL;
	it->settled = settled(&r);
	it->ready = it->settled && condition_true(condition_find(&r, "Ready"));
	it->namespace = put(&p, r.meta.namespace, false);
	it->name = put(&p, r.meta.name, false);
	it->uid = put(&p, r.meta.uid, false);
	if (kind == KIND_CONTACT) {
		it->u.contact.email_folded = put(&p, r.spec.contact.email, true);
		it->u.contact.subject = sk;
		it->u.contact.subject_namespace = put(&p, sref ? sref->namespace : NULL, false);
		it->u.contact.subject_name = put(&p, sref ? sref->name : NULL, false);
		it->u.contact.given_name = put(&p, r.spec.contact.given_name, false);
		it->u.contact.family_name = put(&p, r.spec.contact.family_name, false);
		it->u.contact.provider_id = put(&p, r.status.provider_id, false);
		/* Whatever generation it was written for: a spec change does not resubscribe. */
		it->u.contact.unsubscribed = condition_true(condition_find(&r,
		    "ProviderUnsubscribed"));
	} else if (kind == KIND_CONTACT_GROUP) {
		it->u.group.display_name = put(&p, r.spec.group.display_name, false);
		it->u.group.visibility = r.spec.group.visibility;
		it->u.group.provider_id = put(&p, r.status.provider_id, false);
	} else {
		it->u.pair.contact_namespace = put(&p, cns, false);
		it->u.pair.contact_name = put(&p, cref ? cref->name : NULL, false);
		it->u.pair.group_namespace = put(&p, gns, false);
		it->u.pair.group_name = put(&p, gref ? gref->name : NULL, false);
	}
out:
	resource_free(&r);
	field_list_free(&errs);
	return it;
}

/* The string members of a record of its kind; returns how many. */
#define CACHE_ITEM_STRINGS 9	/* the most string members a record has (a Contact's) */

static size_t
item_strings(struct cache_item *it, const char **fields[CACHE_ITEM_STRINGS])
{
	size_t n = 0;

	fields[n++] = &it->namespace;
	fields[n++] = &it->name;
	fields[n++] = &it->uid;
	if (it->kind == KIND_CONTACT) {
		fields[n++] = &it->u.contact.email_folded;
		fields[n++] = &it->u.contact.subject_namespace;
		fields[n++] = &it->u.contact.subject_name;
		fields[n++] = &it->u.contact.given_name;
		fields[n++] = &it->u.contact.family_name;
		fields[n++] = &it->u.contact.provider_id;
	} else if (it->kind == KIND_CONTACT_GROUP) {
		fields[n++] = &it->u.group.display_name;
		fields[n++] = &it->u.group.provider_id;
	} else {
		fields[n++] = &it->u.pair.contact_namespace;
		fields[n++] = &it->u.pair.contact_name;
		fields[n++] = &it->u.pair.group_namespace;
		fields[n++] = &it->u.pair.group_name;
	}
	return n;
}

struct cache_item *
cache_item_dup(const struct cache_item *it)
{
	struct cache_item tmp = *it, *copy;
	const char **fields[CACHE_ITEM_STRINGS];
	size_t n = item_strings(&tmp, fields), size = sizeof(*it);
	char *p;

	for (size_t i = 0; i < n; i++)
		size += slen(*fields[i]);
	copy = malloc(size);
	if (!copy)
		return NULL;
	*copy = *it;
	p = (char *)(copy + 1);
	n = item_strings(copy, fields);
	for (size_t i = 0; i < n; i++)
		*fields[i] = put(&p, *fields[i], false);
	return copy;
}

/* ---- index keys ---- */

static uint64_t
name_hash(const char *ns, const char *name)
{
	const char *parts[] = { ns, name };

	return hmap_hash(parts, 2);
}

static uint64_t
email_hash(const char *folded)
{
	return hmap_hash(&folded, 1);
}

static uint64_t
subject_hash(const char *ns, enum subject_kind k, const char *sns, const char *sname)
{
	const char *parts[] = { ns, subject_names[k], sns, sname };

	return hmap_hash(parts, 4);
}

static uint64_t
display_hash(const char *ns, const char *display, enum visibility v)
{
	const char *parts[] = { ns, display, visibility_name(v) };

	return hmap_hash(parts, 3);
}

static uint64_t
pair_hash(const char *cns, const char *cname, const char *gns, const char *gname)
{
	const char *parts[] = { cns, cname, gns, gname };

	return hmap_hash(parts, 4);
}

static int
pair_slot(enum resource_kind kind)
{
	return kind == KIND_REMOVAL;
}

#define CACHE_INDEXES_MAX 3	/* the most hash indexes one record is in */

/*
 * A key many records share (every membership of one group): the records
 * in a map of their own, keyed by their names, so adding and dropping one
 * costs the same for a group of ten or of a hundred thousand.
 */
struct refset {
	char *namespace, *name;		/* the key: a Contact or ContactGroup */
	struct hmap members;		/* records, by name_hash of their own name */
};

static struct refset *
refset_find(const struct hmap *idx, uint64_t h, const char *ns, const char *name)
{
	for (struct hmap_node *p = hmap_first(idx, h); p; p = hmap_next(p, h)) {
		struct refset *set = p->value;

		if (strcmp(set->namespace, ns) == 0 && strcmp(set->name, name) == 0)
			return set;
	}
	return NULL;
}

static void
refset_free(struct refset *set)
{
	hmap_free(&set->members);
	free(set->namespace);
	free(set->name);
	free(set);
}

/* Adds or drops it under the key ns/name of idx. 0 or -ENOMEM (nothing changed). */
static int
refs_index(struct hmap *idx, const char *ns, const char *name, struct cache_item *it,
    bool add)
{
	uint64_t h = name_hash(ns, name), own = name_hash(it->namespace, it->name);
	struct refset *set = refset_find(idx, h, ns, name);

	if (!add) {
		if (set && hmap_remove(&set->members, own, it) == 0 && !set->members.count) {
			hmap_remove(idx, h, set);
			refset_free(set);
		}
		return 0;
	}
	if (!set) {
		set = calloc(1, sizeof(*set));
		if (!set || !(set->namespace = strdup(ns)) || !(set->name = strdup(name)) ||
		    hmap_insert(idx, h, set) != 0) {
			if (set)
				refset_free(set);
			return -ENOMEM;
		}
		hmap_init(&set->members);
	}
	if (hmap_insert(&set->members, own, it) != 0) {
		if (!set->members.count) {
			hmap_remove(idx, h, set);
			refset_free(set);
		}
		return -ENOMEM;
	}
	return 0;
}

/* The hash index entries of one record: which map, under which hash. */
static size_t
index_entries(struct cache *c, const struct cache_item *it,
    struct hmap *maps[CACHE_INDEXES_MAX], uint64_t hashes[CACHE_INDEXES_MAX])
{
	size_t n = 0;

	maps[n] = &c->by_name[it->kind];
	hashes[n++] = name_hash(it->namespace, it->name);
	switch (it->kind) {
	case KIND_CONTACT:
		maps[n] = &c->by_email;
		hashes[n++] = email_hash(it->u.contact.email_folded);
		if (it->u.contact.subject != SUBJECT_NONE) {
			maps[n] = &c->by_subject;
			hashes[n++] = subject_hash(it->namespace, it->u.contact.subject,
			    it->u.contact.subject_namespace, it->u.contact.subject_name);
		}
		break;
	case KIND_CONTACT_GROUP:
		maps[n] = &c->by_display;
		hashes[n++] = display_hash(it->namespace, it->u.group.display_name,
		    it->u.group.visibility);
		break;
	default:
		maps[n] = &c->by_pair[pair_slot(it->kind)];
		hashes[n++] = pair_hash(it->u.pair.contact_namespace, it->u.pair.contact_name,
		    it->u.pair.group_namespace, it->u.pair.group_name);
		break;
	}
	return n;
}

/* A membership's or removal's place in the by-contact and by-group refsets. */
static int
index_refs(struct cache *c, struct cache_item *it, bool add)
{
	int slot = pair_slot(it->kind);

	if (it->kind != KIND_MEMBERSHIP && it->kind != KIND_REMOVAL)
		return 0;
	if (!add) {
		refs_index(&c->by_contact[slot], it->u.pair.contact_namespace,
		    it->u.pair.contact_name, it, false);
		refs_index(&c->by_group[slot], it->u.pair.group_namespace,
		    it->u.pair.group_name, it, false);
		return 0;
	}
	if (refs_index(&c->by_contact[slot], it->u.pair.contact_namespace,
	    it->u.pair.contact_name, it, true) != 0)
		return -ENOMEM;
	if (refs_index(&c->by_group[slot], it->u.pair.group_namespace, it->u.pair.group_name,
	    it, true) != 0) {
		refs_index(&c->by_contact[slot], it->u.pair.contact_namespace,
		    it->u.pair.contact_name, it, false);
		return -ENOMEM;
	}
	return 0;
}

/* Adds or drops it in every index it belongs to. Called with the write lock. */
static int
index_item(struct cache *c, struct cache_item *it, bool add)
{
	struct hmap *maps[CACHE_INDEXES_MAX];
	uint64_t hashes[CACHE_INDEXES_MAX];
	size_t n = index_entries(c, it, maps, hashes);

	for (size_t i = 0; i < n; i++) {
		if (add && hmap_insert(maps[i], hashes[i], it) != 0) {
			/* Undo the part already done so the indexes stay consistent. */
			for (size_t j = 0; j < i; j++)
				hmap_remove(maps[j], hashes[j], it);
			return -ENOMEM;
		}
		if (!add)
			hmap_remove(maps[i], hashes[i], it);
	}
	if (index_refs(c, it, add) != 0) {
		for (size_t j = 0; j < n; j++)
			hmap_remove(maps[j], hashes[j], it);
		return -ENOMEM;
	}
	c->counts[it->kind] += add ? 1 : (size_t)-1;
	return 0;
}

static struct cache_item *
find_locked(struct cache *c, enum resource_kind kind, const char *ns, const char *name)
{
	uint64_t h = name_hash(ns, name);

	for (struct hmap_node *n = hmap_first(&c->by_name[kind], h); n; n = hmap_next(n, h)) {
		struct cache_item *it = n->value;

		if (strcmp(it->namespace, ns ? ns : "") == 0 && strcmp(it->name, name) == 0)
			return it;
	}
	return NULL;
}

void
cache_on_change(struct cache *c, cache_change_fn fn, void *arg)
{
	c->on_change = fn;
	c->on_change_arg = arg;
}

int
cache_upsert(struct cache *c, struct cache_item *item)
{
	struct cache_item *old;
	char ns[256], name[256];
	enum resource_kind kind = item->kind;
	bool is_settled = item->settled;
	int rc;

	snprintf(ns, sizeof(ns), "%s", item->namespace);
	snprintf(name, sizeof(name), "%s", item->name);
	pthread_rwlock_wrlock(&c->lock);
	old = find_locked(c, item->kind, item->namespace, item->name);
	if (old) {
		index_item(c, old, false);
		free(old);
	}
	rc = index_item(c, item, true);
	pthread_rwlock_unlock(&c->lock);
	if (rc)
		free(item);
	else if (c->on_change)
		c->on_change(kind, ns, name, is_settled, c->on_change_arg);
	return rc;
}

void
cache_delete(struct cache *c, enum resource_kind kind, const char *namespace,
    const char *name)
{
	struct cache_item *old;

	pthread_rwlock_wrlock(&c->lock);
	old = find_locked(c, kind, namespace, name);
	if (old)
		index_item(c, old, false);
	pthread_rwlock_unlock(&c->lock);
	free(old);
	if (old && c->on_change)
		c->on_change(kind, namespace, name, false, c->on_change_arg);
}

/* Drops every record of kind. Called with the write lock. */
static void
clear_kind(struct cache *c, enum resource_kind kind)
{
	struct hmap *m = &c->by_name[kind];

	for (size_t i = 0; i < m->n_buckets; i++) {
		/* index_item() unlinks the head node, so the bucket drains. */
		while (m->buckets[i]) {
			struct cache_item *it = m->buckets[i]->value;

			index_item(c, it, false);
			free(it);
		}
	}
}

/*
 * After a relist every object is announced, under the read lock: the
 * handler only enqueues, which never calls back into the cache.
 */
static void
notify_one(const struct cache_item *it, void *arg)
{
	struct cache *c = arg;

	c->on_change(it->kind, it->namespace, it->name, it->settled, c->on_change_arg);
}

int
cache_replace(struct cache *c, enum resource_kind kind, struct cache_item **items,
    size_t n)
{
	int rc = 0;

	pthread_rwlock_wrlock(&c->lock);
	clear_kind(c, kind);
	for (size_t i = 0; i < n; i++) {
		struct cache_item *old = find_locked(c, kind, items[i]->namespace, items[i]->name);

		if (old) {
			index_item(c, old, false);
			free(old);
		}
		if (rc == 0 && index_item(c, items[i], true) != 0)
			rc = -ENOMEM;
		if (rc)
			free(items[i]);
	}
	pthread_rwlock_unlock(&c->lock);
	/* A complete list is stored: the kind has synced. */
	if (rc == 0)
		atomic_store(&c->synced[kind], true);
	if (rc == 0 && c->on_change)
		cache_foreach(c, kind, notify_one, c);
	return rc;
}

void
cache_foreach(struct cache *c, enum resource_kind kind,
    void (*fn)(const struct cache_item *it, void *arg), void *arg)
{
	struct hmap *m = &c->by_name[kind];

	pthread_rwlock_rdlock(&c->lock);
	for (size_t i = 0; i < m->n_buckets; i++)
		for (struct hmap_node *n = m->buckets[i]; n; n = n->next)
			fn(n->value, arg);
	pthread_rwlock_unlock(&c->lock);
}

/* ---- lookups ---- */

bool
cache_synced(struct cache *c)
{
	for (int k = 0; k < KIND__COUNT; k++)
		if (!atomic_load(&c->synced[k]))
			return false;
	return true;
}

const char *
cache_unsynced(struct cache *c)
{
	for (int k = 0; k < KIND__COUNT; k++)
		if (!atomic_load(&c->synced[k]))
			return kind_info((enum resource_kind)k)->plural;
	return NULL;
}

size_t
cache_count(struct cache *c, enum resource_kind kind)
{
	size_t n;

	pthread_rwlock_rdlock(&c->lock);
	n = c->counts[kind];
	pthread_rwlock_unlock(&c->lock);
	return n;
}

void
cache_found_free(struct cache_found *f)
{
	free(f->uid);
	free(f->subject_name);
	free(f->provider_id);
	memset(f, 0, sizeof(*f));
}

int
cache_get(struct cache *c, enum resource_kind kind, const char *namespace,
    const char *name, struct cache_found *found)
{
	struct cache_item *it;
	int rc = 0;

	memset(found, 0, sizeof(*found));
	pthread_rwlock_rdlock(&c->lock);
	it = find_locked(c, kind, namespace, name);
	if (it) {
		found->deleting = it->deleting;
		if (kind == KIND_CONTACT_GROUP)
			found->visibility = it->u.group.visibility;
		found->uid = strdup(it->uid);
		rc = found->uid ? 1 : -ENOMEM;
		if (rc == 1 && kind == KIND_CONTACT_GROUP && it->u.group.provider_id[0] &&
		    !(found->provider_id = strdup(it->u.group.provider_id)))
			rc = -ENOMEM;
		if (rc == 1 && kind == KIND_CONTACT && it->u.contact.subject != SUBJECT_NONE) {
			found->subject = it->u.contact.subject;
			found->subject_name = strdup(it->u.contact.subject_name);
			if (!found->subject_name)
				rc = -ENOMEM;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	if (rc < 0)
		cache_found_free(found);
	return rc;
}

static bool
is_self(const struct cache_item *it, const char *self_ns, const char *self_name)
{
	return self_name && strcmp(it->name, self_name) == 0 &&
	    strcmp(it->namespace, self_ns ? self_ns : "") == 0;
}

/* Copies the namespace and name of it out; 1, or -ENOMEM. */
static int
report(const struct cache_item *it, char **ns, char **name)
{
	if (ns && !(*ns = strdup(it->namespace)))
		return -ENOMEM;
	*name = strdup(it->name);
	if (!*name) {
		if (ns) {
			free(*ns);
			*ns = NULL;
		}
		return -ENOMEM;
	}
	return 1;
}

int
cache_contact_by_email(struct cache *c, const char *email, const char *self_namespace,
    const char *self_name, char **other_namespace, char **other_name)
{
	char folded[512];
	uint64_t h;
	int rc = 0;
	size_t n = strlen(email);

	if (n >= sizeof(folded))
		return 0;	/* longer than any valid address: nothing can match */
	for (size_t i = 0; i <= n; i++)
		folded[i] = email[i] >= 'A' && email[i] <= 'Z' ? (char)(email[i] - 'A' + 'a') :
		    email[i];
	h = email_hash(folded);
	pthread_rwlock_rdlock(&c->lock);
	for (struct hmap_node *p = hmap_first(&c->by_email, h); p && !rc; p = hmap_next(p, h)) {
		struct cache_item *it = p->value;

		if (strcmp(it->u.contact.email_folded, folded) == 0 &&
		    !is_self(it, self_namespace, self_name))
			rc = report(it, other_namespace, other_name);
	}
	pthread_rwlock_unlock(&c->lock);
	return rc;
}

int
cache_contact_by_subject(struct cache *c, const char *namespace, enum subject_kind subject,
    const char *subject_namespace, const char *subject_name, const char *self_name,
    char **other_name)
{
	const char *sns = subject_namespace ? subject_namespace : "";
	uint64_t h = subject_hash(namespace, subject, sns, subject_name);
	int rc = 0;

	pthread_rwlock_rdlock(&c->lock);
	for (struct hmap_node *p = hmap_first(&c->by_subject, h); p && !rc; p = hmap_next(p, h)) {
		struct cache_item *it = p->value;

		if (it->u.contact.subject == subject && strcmp(it->namespace, namespace) == 0 &&
		    strcmp(it->u.contact.subject_namespace, sns) == 0 &&
		    strcmp(it->u.contact.subject_name, subject_name) == 0 &&
		    !is_self(it, namespace, self_name))
			rc = report(it, NULL, other_name);
	}
	pthread_rwlock_unlock(&c->lock);
	return rc;
}

int
cache_group_by_display(struct cache *c, const char *namespace, const char *display_name,
    enum visibility visibility, const char *self_name, char **other_name)
{
	uint64_t h = display_hash(namespace, display_name, visibility);
	int rc = 0;

	pthread_rwlock_rdlock(&c->lock);
	for (struct hmap_node *p = hmap_first(&c->by_display, h); p && !rc; p = hmap_next(p, h)) {
		struct cache_item *it = p->value;

		if (it->u.group.visibility == visibility && strcmp(it->namespace, namespace) == 0 &&
		    strcmp(it->u.group.display_name, display_name) == 0 &&
		    !is_self(it, namespace, self_name))
			rc = report(it, NULL, other_name);
	}
	pthread_rwlock_unlock(&c->lock);
	return rc;
}

int
cache_pair(struct cache *c, enum resource_kind kind, const char *contact_namespace,
    const char *contact_name, const char *group_namespace, const char *group_name,
    const char *self_namespace, const char *self_name, char **other_namespace,
    char **other_name)
{
	uint64_t h = pair_hash(contact_namespace, contact_name, group_namespace, group_name);
	struct hmap *m = &c->by_pair[pair_slot(kind)];
	int rc = 0;

	pthread_rwlock_rdlock(&c->lock);
	for (struct hmap_node *p = hmap_first(m, h); p && !rc; p = hmap_next(p, h)) {
		struct cache_item *it = p->value;

		if (strcmp(it->u.pair.contact_namespace, contact_namespace) == 0 &&
		    strcmp(it->u.pair.contact_name, contact_name) == 0 &&
		    strcmp(it->u.pair.group_namespace, group_namespace) == 0 &&
		    strcmp(it->u.pair.group_name, group_name) == 0 &&
		    !is_self(it, self_namespace, self_name))
			rc = report(it, other_namespace, other_name);
	}
	pthread_rwlock_unlock(&c->lock);
	return rc;
}

static bool
same_pair(const struct cache_item *it, const char *cns, const char *cname,
    const char *gns, const char *gname)
{
	return strcmp(it->u.pair.contact_namespace, cns) == 0 &&
	    strcmp(it->u.pair.contact_name, cname) == 0 &&
	    strcmp(it->u.pair.group_namespace, gns) == 0 &&
	    strcmp(it->u.pair.group_name, gname) == 0;
}

size_t
cache_pair_foreach(struct cache *c, enum resource_kind kind, const char *contact_namespace,
    const char *contact_name, const char *group_namespace, const char *group_name,
    void (*fn)(const struct cache_item *it, void *arg), void *arg)
{
	uint64_t h = pair_hash(contact_namespace, contact_name, group_namespace, group_name);
	const struct hmap *m = &c->by_pair[pair_slot(kind)];
	size_t n = 0;

	pthread_rwlock_rdlock(&c->lock);
	for (struct hmap_node *p = hmap_first(m, h); p; p = hmap_next(p, h)) {
		if (same_pair(p->value, contact_namespace, contact_name, group_namespace,
		    group_name)) {
			n++;
			if (fn)
				fn(p->value, arg);
		}
	}
	pthread_rwlock_unlock(&c->lock);
	return n;
}

size_t
cache_refs_foreach(struct cache *c, enum resource_kind kind, enum cache_ref by,
    const char *namespace, const char *name,
    void (*fn)(const struct cache_item *it, void *arg), void *arg)
{
	const struct hmap *idx = by == CACHE_BY_GROUP ? &c->by_group[pair_slot(kind)] :
	    &c->by_contact[pair_slot(kind)];
	const struct refset *set;
	size_t n = 0;

	pthread_rwlock_rdlock(&c->lock);
	set = refset_find(idx, name_hash(namespace, name), namespace, name);
	for (size_t i = 0; set && i < set->members.n_buckets; i++) {
		for (struct hmap_node *p = set->members.buckets[i]; p; p = p->next) {
			n++;
			if (fn)
				fn(p->value, arg);
		}
	}
	pthread_rwlock_unlock(&c->lock);
	return n;
}

/* ---- lifecycle ---- */

int
cache_new(struct kube_client *client, struct cache **out)
{
	struct cache *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->client = client;
	c->backoff_min_ms = CACHE_BACKOFF_MIN_MS;
	{
		/*
		 * Writers first: glibc's default prefers readers, and a steady
		 * stream of admission lookups would starve the watch's updates.
		 */
		pthread_rwlockattr_t attr;

		pthread_rwlockattr_init(&attr);
		pthread_rwlockattr_setkind_np(&attr,
		    PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&c->lock, &attr);
		pthread_rwlockattr_destroy(&attr);
	}
	pthread_mutex_init(&c->sleep_lock, NULL);
	clock_cond_init(&c->wake);
	for (int k = 0; k < KIND__COUNT; k++) {
		hmap_init(&c->by_name[k]);
		atomic_init(&c->synced[k], false);
		c->informers[k].cache = c;
		c->informers[k].kind = (enum resource_kind)k;
		c->informers[k].seed = (unsigned int)time(NULL) ^ (unsigned int)(k * 7919);
	}
	hmap_init(&c->by_email);
	hmap_init(&c->by_subject);
	hmap_init(&c->by_display);
	for (int i = 0; i < 2; i++) {
		hmap_init(&c->by_pair[i]);
		hmap_init(&c->by_contact[i]);
		hmap_init(&c->by_group[i]);
	}
	*out = c;
	return 0;
}

/* Sleeps ms unless the cache is stopping; returns true when it is. */
static bool
nap(struct cache *c, unsigned int ms)
{
	uint64_t end = clock_mono_ms() + ms, now;
	bool stopping;

	pthread_mutex_lock(&c->sleep_lock);
	while (!atomic_load(&c->stop) && (now = clock_mono_ms()) < end)
		clock_cond_wait(&c->wake, &c->sleep_lock, (unsigned long)(end - now));
	stopping = atomic_load(&c->stop);
	pthread_mutex_unlock(&c->sleep_lock);
	return stopping;
}

static const char *
object_rv(const json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"),
	    "resourceVersion"));
}

static void
set_rv(struct informer *inf, const char *rv)
{
	if (rv && strlen(rv) < sizeof(inf->rv))
		memcpy(inf->rv, rv, strlen(rv) + 1);
}

static void
free_items(struct cache_item **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/* Lists every page of the kind and replaces the store with it. */
static int
relist(struct informer *inf, const char *collection)
{
	struct cache_item **items = NULL;
	size_t n = 0, cap = 0;
	char *cont = NULL;
	int rc;

	do {
		struct kube_response resp;
		json_t *list, *obj;
		size_t i;

		rc = kube_list_page(inf->cache->client, collection, 0, cont, &resp);
		free(cont);
		cont = NULL;
		if (rc) {
			log_warn("cache: list failed",
			    LOG_STR("resource", kind_info(inf->kind)->plural),
			    LOG_INT("status", resp.status),
			    LOG_STR("error", resp.message ? resp.message : ""));
			kube_response_free(&resp);
			break;
		}
		list = json_object_get(resp.body, "items");
		json_array_foreach(list, i, obj) {
			struct cache_item *it = cache_item_from_json(inf->kind, obj);

			if (!it)
				continue;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 256;
				struct cache_item **grown = realloc(items, ncap * sizeof(*items));

				if (!grown) {
					free(it);
					rc = -ENOMEM;
					break;
				}
				items = grown;
				cap = ncap;
			}
			items[n++] = it;
		}
		set_rv(inf, json_string_value(json_object_get(json_object_get(resp.body,
		    "metadata"), "resourceVersion")));
		if (json_string_value(json_object_get(json_object_get(resp.body, "metadata"),
		    "continue")) && json_string_length(json_object_get(json_object_get(
		    resp.body, "metadata"), "continue")))
			cont = strdup(json_string_value(json_object_get(json_object_get(resp.body,
			    "metadata"), "continue")));
		kube_response_free(&resp);
	} while (rc == 0 && cont && !atomic_load(&inf->cache->stop));
	free(cont);
	if (rc) {
		free_items(items, n);
		return rc;
	}
	rc = cache_replace(inf->cache, inf->kind, items, n);
	free(items);
	if (rc == 0) {
		log_info("cache: listed",
		    LOG_STR("resource", kind_info(inf->kind)->plural), LOG_INT("count", n),
		    LOG_STR("resourceVersion", inf->rv));
	}
	return rc;
}

static int
on_event(const char *type, json_t *obj, void *arg)
{
	struct informer *inf = arg;
	const json_t *meta = json_object_get(obj, "metadata");

	set_rv(inf, object_rv(obj));
	if (strcmp(type, "BOOKMARK") == 0)
		return 0;
	if (strcmp(type, "DELETED") == 0) {
		cache_delete(inf->cache, inf->kind,
		    json_string_value(json_object_get(meta, "namespace")),
		    json_string_value(json_object_get(meta, "name")));
		return 0;
	}
	{
		struct cache_item *it = cache_item_from_json(inf->kind, obj);

		return it ? cache_upsert(inf->cache, it) : 0;
	}
}

static unsigned int
backoff_ms(struct informer *inf, unsigned int failures)
{
	unsigned long ms = inf->cache->backoff_min_ms;

	while (failures-- > 1 && ms < CACHE_BACKOFF_MAX_MS)
		ms *= 2;
	if (ms > CACHE_BACKOFF_MAX_MS)
		ms = CACHE_BACKOFF_MAX_MS;
	/* jitter 1.0: somewhere in [d, 2d) */
	return (unsigned int)(ms + (unsigned long)rand_r(&inf->seed) % ms);
}

static void *
informer_run(void *arg)
{
	struct informer *inf = arg;
	struct cache *c = inf->cache;
	char collection[KUBE_PATH_MAX];
	unsigned int failures = 0;
	bool listed = false;

	kube_path(collection, sizeof(collection), RESOURCE_GROUP, RESOURCE_VERSION, NULL,
	    kind_info(inf->kind)->plural, NULL, NULL);
	while (!atomic_load(&c->stop)) {
		struct kube_response resp;
		unsigned int timeout;
		int rc;

		if (!listed) {
			if (relist(inf, collection) != 0) {
				if (nap(c, backoff_ms(inf, ++failures)))
					break;
				continue;
			}
			listed = true;
			failures = 0;
		}
		timeout = CACHE_WATCH_MIN_S + (unsigned int)rand_r(&inf->seed) %
		    (CACHE_WATCH_MAX_S - CACHE_WATCH_MIN_S + 1);
		rc = kube_watch(c->client, collection, inf->rv, timeout, on_event, inf,
		    &c->stop, &resp);
		if (rc == -EXDEV) {
			log_info("cache: resourceVersion expired, relisting",
			    LOG_STR("resource", kind_info(inf->kind)->plural));
			listed = false;
		} else if (rc) {
			log_warn("cache: watch failed",
			    LOG_STR("resource", kind_info(inf->kind)->plural),
			    LOG_INT("status", resp.status),
			    LOG_STR("error", resp.message ? resp.message : strerror(-rc)));
			nap(c, backoff_ms(inf, ++failures));
		} else {
			failures = 0;
		}
		kube_response_free(&resp);
	}
	return NULL;
}

void
cache_set_backoff(struct cache *c, unsigned int min_ms)
{
	c->backoff_min_ms = min_ms ? min_ms : 1;
	if (c->backoff_min_ms > CACHE_BACKOFF_MAX_MS)
		c->backoff_min_ms = CACHE_BACKOFF_MAX_MS;
}

int
cache_start(struct cache *c)
{
	for (int k = 0; k < KIND__COUNT; k++) {
		if (pthread_create(&c->threads[k], NULL, informer_run, &c->informers[k]) != 0) {
			atomic_store(&c->stop, true);
			for (int j = 0; j < k; j++)
				pthread_join(c->threads[j], NULL);
			atomic_store(&c->stop, false);
			return -EAGAIN;
		}
	}
	c->started = true;
	return 0;
}

void
cache_stop(struct cache *c)
{
	if (!c->started)
		return;
	pthread_mutex_lock(&c->sleep_lock);
	atomic_store(&c->stop, true);
	pthread_cond_broadcast(&c->wake);
	pthread_mutex_unlock(&c->sleep_lock);
	for (int k = 0; k < KIND__COUNT; k++)
		pthread_join(c->threads[k], NULL);
	c->started = false;
}

void
cache_free(struct cache *c)
{
	if (!c)
		return;
	cache_stop(c);
	for (int k = 0; k < KIND__COUNT; k++) {
		clear_kind(c, (enum resource_kind)k);
		hmap_free(&c->by_name[k]);
	}
	hmap_free(&c->by_email);
	hmap_free(&c->by_subject);
	hmap_free(&c->by_display);
	for (int i = 0; i < 2; i++) {
		hmap_free(&c->by_pair[i]);
		hmap_free(&c->by_contact[i]);
		hmap_free(&c->by_group[i]);
	}
	pthread_rwlock_destroy(&c->lock);
	pthread_mutex_destroy(&c->sleep_lock);
	pthread_cond_destroy(&c->wake);
	free(c);
}
