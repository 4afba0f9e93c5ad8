/* audit.c -- the provider audit: reads what this reconciler owns at the provider, repairs drift */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache.h"
#include "clock.h"
#include "hmap.h"
#include "log.h"
#include "metrics.h"
#include "provider.h"
#include "provider_http.h"
#include "reconciler.h"
#include "workqueue.h"

/*
 * Every --provider-audit-period the leader lists the provider's groups
 * (every page, the largest the provider allows) and the members of each
 * group a ContactGroup of this cluster names in its status.providerID,
 * and compares them with the watch cache. A converged cluster costs these
 * reads and nothing else.
 *
 * Drift on an object of the cluster is not repaired here: the object's
 * status is marked (reconciler_drift_mark), which queues it, and the
 * controller's own reconcile makes the provider call, writes status and
 * records the ProviderDriftRepaired Event, exactly as for a change of the
 * object. So there is one write path, opt-outs are judged by the same
 * code, and the mark survives a crash. Only what has no object to
 * reconcile is removed here directly: a member of one of our segments
 * that no ContactGroupMembership asks for (a stranger, or a Contact that
 * is not a member).
 *
 * The audit never competes with reconciles: before every provider request
 * it waits while the work queue holds keys that are ready or being
 * worked on, and it stops when this replica stops leading.
 */

#define AUDIT_RETRY_MS 60000		/* a failed audit is tried again this soon (or after a period) */
#define AUDIT_POLL_MS 100		/* how often a paused audit looks again */
#define AUDIT_NOTE_MAX 512		/* what an Event or a mark says */
#define AUDIT_REF_MAX 256		/* a namespace or name */

/* The kinds of drift: a ProviderDrift condition's reason and the metric's kind label. */
static const struct {
	const char *reason, *label;
} drift_kinds[] = {
	{ "SegmentMissing", "segment_missing" },
	{ "SegmentRenamed", "segment_renamed" },
	{ "MemberMissing", "member_missing" },
	{ "MemberExtra", "member_extra" },
	{ "MemberOptedOut", "member_opted_out" },
	{ "ContactChanged", "contact_changed" },
	{ "ContactMissing", "contact_missing" },
	{ "ContactUnsubscribed", "contact_unsubscribed" },
};

struct audit {
	struct reconciler *r;
	struct audit_config c;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* on CLOCK_MONOTONIC */
	bool stopping;
	struct metric *m_repaired;	/* milo_provider_drift_repaired_total{kind} */
	struct metric_series *m_duration, *m_last_success;
};

/* ---- what one audit knows ---- */

/* A ContactGroup with a provider group, as the cache had it when the audit began. */
struct agroup {
	char *ns, *name, *uid, *display, *id;
	bool is_public;
	bool listed;		/* the provider listed its id */
	char *listed_name;	/* the name it listed, when it is not ours */
};

/* A Contact with a provider contact. */
struct acontact {
	char *ns, *name, *email, *given, *family, *id;
	bool unsubscribed;		/* ProviderUnsubscribed=True already */
	bool gone;			/* marked ContactMissing: its members follow it */
	unsigned int expected;		/* audited groups it should be in */
	unsigned int seen;		/* audited groups that listed it */
	bool checked;			/* its listed fields were compared */
	char *changed;			/* what differs, or NULL */
	bool unsub_seen;		/* listed with unsubscribed: true */
};

/* A membership the cache says is done: its contact should be in its group. */
struct expect {
	char *ns, *name;
	struct acontact *c;
	struct agroup *g;
	bool found;
};

/* A listed member no membership of the snapshot explains. */
struct extra {
	char *id, *email;
};

struct vec {
	void **v;
	size_t n, cap;
};

struct run {
	struct audit *a;
	struct reconciler *r;
	struct vec groups, contacts;	/* struct agroup *, struct acontact * */
	struct hmap groups_by_id, contacts_by_id, contacts_by_name;
	struct vec missing;		/* struct expect * whose member was not listed */
	struct hmap expected;		/* struct expect * of the group being read, by contact id */
	struct vec expects;		/* every struct expect made, to free */
	struct vec extras;		/* struct extra * */
	int oom;
	/* Counts for the log line. */
	unsigned long listed_groups, owned_groups, foreign_groups, orphan_groups, members;
	unsigned long marked, removed, unchanged, failed;
};

static int
vec_push(struct vec *v, void *p)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 16;
		void **grown = realloc(v->v, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		v->v = grown;
		v->cap = cap;
	}
	v->v[v->n++] = p;
	return 0;
}

static uint64_t
hash1(const char *s)
{
	return hmap_hash(&s, 1);
}

static uint64_t
hash2(const char *a, const char *b)
{
	const char *parts[] = { a, b };

	return hmap_hash(parts, 2);
}

static char *
dup0(const char *s)
{
	return strdup(s ? s : "");
}

/* ---- metrics ---- */

static const char *
drift_label(const char *reason)
{
	for (size_t i = 0; i < sizeof(drift_kinds) / sizeof(drift_kinds[0]); i++)
		if (strcmp(drift_kinds[i].reason, reason) == 0)
			return drift_kinds[i].label;
	return "other";
}

void
audit_count_repair(struct reconciler *r, const char *reason)
{
	if (r && r->audit)
		metric_inc(metric_get(r->audit->m_repaired,
		    (const char *const[]){ drift_label(reason) }));
}

/* ---- pacing: reconciles first ---- */

/* Waits up to ms or until stopped; true when stopping. */
static bool
audit_nap(struct audit *a, unsigned long ms)
{
	bool stop;

	pthread_mutex_lock(&a->lock);
	if (!a->stopping)
		clock_cond_wait(&a->wake, &a->lock, ms);
	stop = a->stopping;
	pthread_mutex_unlock(&a->lock);
	return stop;
}

static bool
leading(struct audit *a)
{
	return !a->c.leading || a->c.leading(a->c.arg);
}

/*
 * Before a provider request: waits while reconciles are queued or running
 * (they share the provider's rate and go first). -ECANCELED when this
 * replica stopped leading or is stopping.
 */
static int
yield_to_work(struct audit *a)
{
	for (;;) {
		if (!leading(a))
			return -ECANCELED;
		if (!a->r->queue || workqueue_active(a->r->queue) == 0)
			return 0;
		if (audit_nap(a, AUDIT_POLL_MS))
			return -ECANCELED;
	}
}

/* ---- the cluster's side, from the cache ---- */

static void
snap_group(const struct cache_item *it, void *arg)
{
	struct run *run = arg;
	struct agroup *g;

	if (!it->ready || it->deleting || !it->u.group.provider_id[0])
		return;
	g = calloc(1, sizeof(*g));
	if (!g || !(g->ns = strdup(it->namespace)) || !(g->name = strdup(it->name)) ||
	    !(g->uid = dup0(it->uid)) || !(g->display = dup0(it->u.group.display_name)) ||
	    !(g->id = strdup(it->u.group.provider_id)) || vec_push(&run->groups, g) != 0) {
		if (g) {
			free(g->ns);
			free(g->name);
			free(g->uid);
			free(g->display);
			free(g->id);
		}
		free(g);
		run->oom = 1;
		return;
	}
	g->is_public = it->u.group.visibility == VISIBILITY_PUBLIC;
}

static void
acontact_free(struct acontact *c)
{
	if (!c)
		return;
	free(c->ns);
	free(c->name);
	free(c->email);
	free(c->given);
	free(c->family);
	free(c->id);
	free(c->changed);
	free(c);
}

static void
snap_contact(const struct cache_item *it, void *arg)
{
	struct run *run = arg;
	struct acontact *c;

	if (!it->ready || it->deleting || !it->u.contact.provider_id[0])
		return;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->ns = strdup(it->namespace)) || !(c->name = strdup(it->name)) ||
	    !(c->email = dup0(it->u.contact.email_folded)) ||
	    !(c->given = dup0(it->u.contact.given_name)) ||
	    !(c->family = dup0(it->u.contact.family_name)) ||
	    !(c->id = strdup(it->u.contact.provider_id)) || vec_push(&run->contacts, c) != 0) {
		acontact_free(c);
		run->oom = 1;
		return;
	}
	c->unsubscribed = it->u.contact.unsubscribed;
}

static struct agroup *
group_by_id(struct run *run, const char *id)
{
	uint64_t h = hash1(id);

	for (struct hmap_node *n = hmap_first(&run->groups_by_id, h); n; n = hmap_next(n, h))
		if (strcmp(((struct agroup *)n->value)->id, id) == 0)
			return n->value;
	return NULL;
}

static struct acontact *
contact_by_id(struct run *run, const char *id)
{
	uint64_t h = hash1(id);

	for (struct hmap_node *n = hmap_first(&run->contacts_by_id, h); n; n = hmap_next(n, h))
		if (strcmp(((struct acontact *)n->value)->id, id) == 0)
			return n->value;
	return NULL;
}

static struct acontact *
contact_by_name(struct run *run, const char *ns, const char *name)
{
	uint64_t h = hash2(ns, name);

	for (struct hmap_node *n = hmap_first(&run->contacts_by_name, h); n;
	    n = hmap_next(n, h)) {
		struct acontact *c = n->value;

		if (strcmp(c->ns, ns) == 0 && strcmp(c->name, name) == 0)
			return c;
	}
	return NULL;
}

static int
snapshot(struct run *run)
{
	struct cache *cache = run->r->cache;

	cache_foreach(cache, KIND_CONTACT_GROUP, snap_group, run);
	cache_foreach(cache, KIND_CONTACT, snap_contact, run);
	if (run->oom)
		return -ENOMEM;
	for (size_t i = 0; i < run->groups.n; i++) {
		struct agroup *g = run->groups.v[i];

		if (hmap_insert(&run->groups_by_id, hash1(g->id), g) != 0)
			return -ENOMEM;
	}
	for (size_t i = 0; i < run->contacts.n; i++) {
		struct acontact *c = run->contacts.v[i];

		if (hmap_insert(&run->contacts_by_id, hash1(c->id), c) != 0 ||
		    hmap_insert(&run->contacts_by_name, hash2(c->ns, c->name), c) != 0)
			return -ENOMEM;
	}
	return 0;
}

/* ---- marks and direct repairs ---- */

static int
mark(struct run *run, enum resource_kind kind, const char *ns, const char *name,
    const char *reason, bool forget_id, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/*
 * Marks an object of the cluster as drifted: its controller repairs it
 * (see the top). 1 when marked, else 0.
 */
static int
mark(struct run *run, enum resource_kind kind, const char *ns, const char *name,
    const char *reason, bool forget_id, const char *fmt, ...)
{
	char found[AUDIT_NOTE_MAX];
	va_list ap;
	int rc;

	if (!leading(run->a))
		return 0;	/* the new leader's audit sees it */
	va_start(ap, fmt);
	vsnprintf(found, sizeof(found), fmt, ap);
	va_end(ap);
	rc = reconciler_drift_mark(run->r, kind, ns, name, reason, forget_id, found);
	if (rc > 0)
		run->marked++;
	else if (rc == 0)
		run->unchanged++;	/* gone or changed since: its reconcile sees to it */
	else
		run->failed++;		/* the next audit finds it again */
	return rc > 0;
}

struct first_key {
	char ns[AUDIT_REF_MAX], name[AUDIT_REF_MAX];
	bool found;
};

static void
first_key(const struct cache_item *it, void *arg)
{
	struct first_key *k = arg;

	if (k->found)
		return;
	snprintf(k->ns, sizeof(k->ns), "%s", it->namespace);
	snprintf(k->name, sizeof(k->name), "%s", it->name);
	k->found = true;
}

/* A membership the cache holds: its name and its Contact's (one block to free). */
struct mkey {
	const char *ns, *name, *c_ns, *c_name;
};

static const char *
put_str(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *at = *p;

	memcpy(at, s, n);
	*p += n;
	return at;
}

/* Collects the memberships that are done (Ready=True for their generation). */
static void
each_ready_membership(const struct cache_item *it, void *arg)
{
	struct vec *v = arg;
	struct mkey *k;
	char *p;

	if (!it->ready || it->deleting)
		return;
	k = malloc(sizeof(*k) + strlen(it->namespace) + strlen(it->name) +
	    strlen(it->u.pair.contact_namespace) + strlen(it->u.pair.contact_name) + 4);
	if (!k)
		return;
	p = (char *)(k + 1);
	k->ns = put_str(&p, it->namespace);
	k->name = put_str(&p, it->name);
	k->c_ns = put_str(&p, it->u.pair.contact_namespace);
	k->c_name = put_str(&p, it->u.pair.contact_name);
	if (vec_push(v, k) != 0)
		free(k);
}

static void
free_all(struct vec *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->v[i]);
	free(v->v);
	memset(v, 0, sizeof(*v));
}

/*
 * A group whose provider group is gone: the group forgets the id (its
 * reconcile makes a new one), then its members are marked so that they are
 * put back once it exists (they wait for the new id).
 */
static void
group_gone(struct run *run, struct agroup *g)
{
	struct vec keys = { 0 };

	/*
	 * Unless the group took the mark, its members are left alone: marked
	 * now, they would be added to the group that is gone, refused, and
	 * wait for a change. The next audit sees them again.
	 */
	if (!mark(run, KIND_CONTACT_GROUP, g->ns, g->name, "SegmentMissing", true,
	    "the provider group %s of this ContactGroup is gone", g->id))
		return;
	cache_refs_foreach(run->r->cache, KIND_MEMBERSHIP, CACHE_BY_GROUP, g->ns, g->name,
	    each_ready_membership, &keys);
	for (size_t i = 0; i < keys.n; i++) {
		const struct mkey *k = keys.v[i];

		mark(run, KIND_MEMBERSHIP, k->ns, k->name, "MemberMissing", false,
		    "the provider group %s of ContactGroup %s/%s is gone, and this member "
		    "with it", g->id, g->ns, g->name);
	}
	free_all(&keys);
}

/* Takes a member out of one of our groups: nothing in the cluster asks for it. */
static int
remove_extra(struct run *run, struct agroup *g, const struct extra *x, const char *who)
{
	struct provider *p = run->r->provider;
	struct provider_error e = { NULL, -1 };
	struct provider_contact c = { .namespace = "", .name = "", .email = x->email,
	    .id = x->id };
	struct cache_found f;
	char found[AUDIT_NOTE_MAX], done[AUDIT_NOTE_MAX], note[2 * AUDIT_NOTE_MAX];
	bool same;
	int rc;

	/* The group may have changed while the audit listed it: then leave it. */
	rc = cache_get(run->r->cache, KIND_CONTACT_GROUP, g->ns, g->name, &f);
	same = rc == 1 && !f.deleting && f.provider_id && strcmp(f.provider_id, g->id) == 0;
	cache_found_free(&f);
	if (!same)
		return 0;
	rc = p->ops->member_remove(p, g->id, &c, &e);
	if (rc) {
		log_warn("provider audit: cannot remove a member",
		    LOG_STR("namespace", g->ns), LOG_STR("name", g->name),
		    LOG_STR("group", g->id), LOG_STR("contact", x->id),
		    LOG_STR("error", e.message ? e.message :
		    strerror(rc < 0 && rc > -4000 ? -rc : EIO)));
		provider_error_free(&e);
		run->failed++;
		return rc == -ECANCELED ? rc : 0;
	}
	if (snprintf(found, sizeof(found), "found provider contact %s (%s, %s) in provider "
	    "group %s, which no ContactGroupMembership asks for", x->id, x->email, who,
	    g->id) < 0 || snprintf(done, sizeof(done), "removed it from the group") < 0 ||
	    snprintf(note, sizeof(note), "%s; repaired: %s", found, done) < 0)
		return -ENOMEM;
	reconciler_event(run->r, KIND_CONTACT_GROUP, g->ns, g->name, g->uid, "Warning",
	    "ProviderDriftRepaired", "RepairDrift", note);
	log_info("provider drift repaired", LOG_STR("kind", "ContactGroup"),
	    LOG_STR("namespace", g->ns), LOG_STR("name", g->name),
	    LOG_STR("drift", "MemberExtra"), LOG_STR("found", found),
	    LOG_STR("done", done));
	audit_count_repair(run->r, "MemberExtra");
	run->removed++;
	return 0;
}

/*
 * A member no membership of the snapshot explains. An opt-out of a public
 * group: the removal is marked (its reconcile takes the contact out again).
 * A membership being reconciled: left to it. Else it goes.
 */
static int
judge_extra(struct run *run, struct agroup *g, const struct extra *x)
{
	struct acontact *c = contact_by_id(run, x->id);
	char *ns = NULL, *name = NULL, who[2 * AUDIT_REF_MAX + 16];
	struct first_key removal = { .found = false };
	int rc;

	/* Judged after any reconcile queued meanwhile, on what the cache holds then. */
	if ((rc = yield_to_work(run->a)) != 0)
		return rc;
	if (c) {
		ns = strdup(c->ns);
		name = strdup(c->name);
		if (!ns || !name)
			rc = -ENOMEM;
	} else if (x->email[0]) {
		/* Not a provider id we know: a Contact with this address is ours all the same. */
		rc = cache_contact_by_email(run->r->cache, x->email, NULL, NULL, &ns, &name);
		rc = rc < 0 ? rc : 0;
	}
	if (rc)
		goto out;
	if (ns && name) {
		if (g->is_public)
			cache_pair_foreach(run->r->cache, KIND_REMOVAL, ns, name, g->ns, g->name,
			    first_key, &removal);
		if (removal.found) {
			mark(run, KIND_REMOVAL, removal.ns, removal.name, "MemberOptedOut", false,
			    "provider contact %s (%s) is in provider group %s of ContactGroup "
			    "%s/%s although this opt-out exists", x->id, x->email, g->id, g->ns,
			    g->name);
			goto out;
		}
		if (cache_pair_foreach(run->r->cache, KIND_MEMBERSHIP, ns, name, g->ns, g->name,
		    NULL, NULL))
			goto out;	/* a membership of the pair exists: its reconcile decides */
		snprintf(who, sizeof(who), "Contact %s/%s", ns, name);
	} else {
		snprintf(who, sizeof(who), "not a Contact of this cluster");
	}
	rc = remove_extra(run, g, x, who);
out:
	free(ns);
	free(name);
	return rc;
}

/* ---- the provider's side ---- */

static int
on_group(const struct provider_group_info *info, void *arg)
{
	struct run *run = arg;
	struct provider *p = run->r->provider;
	char ns[AUDIT_REF_MAX], name[AUDIT_REF_MAX];
	struct agroup *g = info->id ? group_by_id(run, info->id) : NULL;
	int owned;

	run->listed_groups++;
	owned = p->ops->group_owner(p, info, ns, sizeof(ns), name, sizeof(name));
	if (g) {
		char *want = provider_owned_name(g->display[0] ? g->display : NULL, g->ns,
		    g->name);

		if (!want)
			return -ENOMEM;
		g->listed = true;
		run->owned_groups++;
		if (strcmp(want, info->name) != 0 && !(g->listed_name = strdup(info->name))) {
			free(want);
			return -ENOMEM;
		}
		free(want);
	} else if (owned) {
		/* Our suffix, but no ContactGroup here names it: not ours to touch. */
		run->orphan_groups++;
		log_debug("provider audit: a group with our name suffix that no ContactGroup "
		    "names", LOG_STR("id", info->id ? info->id : ""),
		    LOG_STR("name", info->name));
	} else {
		run->foreign_groups++;
	}
	return yield_to_work(run->a);
}

static void
compare_fields(struct acontact *c, const struct provider_member_info *m)
{
	const char *given = m->given_name ? m->given_name : "";
	const char *family = m->family_name ? m->family_name : "";

	c->checked = true;
	/* Addresses compare case-insensitively (the webhook's uniqueness does too). */
	if (strcasecmp(c->email, m->email) == 0 && strcmp(c->given, given) == 0 &&
	    strcmp(c->family, family) == 0)
		return;
	if (asprintf(&c->changed, "provider contact %s has email \"%s\", first name \"%s\" "
	    "and last name \"%s\"; this Contact says \"%s\", \"%s\", \"%s\"", c->id, m->email,
	    given, family, c->email, c->given, c->family) < 0)
		c->changed = NULL;
}

static int
on_member(const struct provider_member_info *m, void *arg)
{
	struct run *run = arg;
	struct acontact *c;
	struct extra *x;
	uint64_t h;

	if (!m->contact_id)
		return 0;
	run->members++;
	if ((c = contact_by_id(run, m->contact_id)) != NULL) {
		c->seen++;
		if (!c->checked)
			compare_fields(c, m);
		if (m->unsubscribed == 1 && !c->unsubscribed)
			c->unsub_seen = true;
	}
	h = hash1(m->contact_id);
	for (struct hmap_node *n = hmap_first(&run->expected, h); n; n = hmap_next(n, h)) {
		struct expect *e = n->value;

		if (strcmp(e->c->id, m->contact_id) == 0) {
			e->found = true;
			return yield_to_work(run->a);
		}
	}
	x = calloc(1, sizeof(*x));
	if (!x || !(x->id = strdup(m->contact_id)) || !(x->email = dup0(m->email)) ||
	    vec_push(&run->extras, x) != 0) {
		if (x) {
			free(x->id);
			free(x->email);
		}
		free(x);
		return -ENOMEM;
	}
	return yield_to_work(run->a);
}

static void
expect_free(struct expect *e)
{
	if (!e)
		return;
	free(e->ns);
	free(e->name);
	free(e);
}

/*
 * The memberships of g the cache says are done (taken before the listing,
 * so one made while it runs is never called missing), less those of a pair
 * with a public opt-out: by their Contact's provider id.
 */
static int
expect_members(struct run *run, struct agroup *g)
{
	struct vec keys = { 0 };
	int rc = 0;

	cache_refs_foreach(run->r->cache, KIND_MEMBERSHIP, CACHE_BY_GROUP, g->ns, g->name,
	    each_ready_membership, &keys);
	for (size_t i = 0; i < keys.n && rc == 0; i++) {
		const struct mkey *k = keys.v[i];
		struct acontact *c = contact_by_name(run, k->c_ns, k->c_name);
		struct expect *e;

		if (!c)
			continue;	/* its Contact is not done: nothing to expect yet */
		if (g->is_public && cache_pair_foreach(run->r->cache, KIND_REMOVAL, k->c_ns,
		    k->c_name, g->ns, g->name, NULL, NULL))
			continue;	/* an opt-out: the member must not be there */
		e = calloc(1, sizeof(*e));
		if (!e || !(e->ns = strdup(k->ns)) || !(e->name = strdup(k->name)) ||
		    vec_push(&run->expects, e) != 0) {
			expect_free(e);
			rc = -ENOMEM;
			break;
		}
		e->c = c;
		e->g = g;
		if (hmap_insert(&run->expected, hash1(c->id), e) != 0)
			rc = -ENOMEM;
	}
	free_all(&keys);
	return rc;
}

static void
extra_free(struct extra *x)
{
	if (!x)
		return;
	free(x->id);
	free(x->email);
	free(x);
}

/* Forgets what the audit of the current group collected. */
static void
group_done(struct run *run)
{
	hmap_free(&run->expected);
	hmap_init(&run->expected);
	for (size_t i = 0; i < run->extras.n; i++)
		extra_free(run->extras.v[i]);
	run->extras.n = 0;
}

/*
 * One of our groups: its members as listed against the memberships that
 * are done. A member missing is kept for the end (its Contact may be gone
 * altogether); an extra one is judged now.
 */
static int
audit_group(struct run *run, struct agroup *g)
{
	struct provider *p = run->r->provider;
	struct provider_error e = { NULL, -1 };
	size_t first = run->expects.n;
	int rc;

	if ((rc = expect_members(run, g)) != 0)
		goto out;
	if ((rc = yield_to_work(run->a)) != 0)
		goto out;
	rc = p->ops->list_members(p, g->id, on_member, run, &e);
	if (rc == -ENOENT) {
		/* Gone since the groups were listed. */
		rc = 0;
		for (size_t i = first; i < run->expects.n; i++)
			((struct expect *)run->expects.v[i])->found = true;
		group_gone(run, g);
		goto out;
	}
	if (rc) {
		if (rc != -ECANCELED)
			log_warn("provider audit: cannot list a group's members",
			    LOG_STR("namespace", g->ns), LOG_STR("name", g->name),
			    LOG_STR("group", g->id),
			    LOG_STR("error", e.message ? e.message :
			    strerror(rc < 0 && rc > -4000 ? -rc : EIO)));
		/* Nothing is concluded from a partial listing. */
		for (size_t i = first; i < run->expects.n; i++)
			((struct expect *)run->expects.v[i])->found = true;
		goto out;
	}
	for (size_t i = first; i < run->expects.n; i++) {
		struct expect *x = run->expects.v[i];

		x->c->expected++;
		if (!x->found && vec_push(&run->missing, x) != 0)
			rc = -ENOMEM;
	}
	for (size_t i = 0; i < run->extras.n && rc == 0; i++)
		rc = judge_extra(run, g, run->extras.v[i]);
out:
	provider_error_free(&e);
	group_done(run);
	return rc;
}

/*
 * Listed with unsubscribed: true while the Contact does not say so: not
 * overridden (the recipient's choice at the provider stands); recorded as
 * a provider event would be, ProviderUnsubscribed=True and a Warning Event.
 */
static void
unsubscribed(struct run *run, struct acontact *c)
{
	struct provider_event ev = { .type = (char *)"contact.audit", .unsubscribed = 1 };
	char id[AUDIT_REF_MAX + 32], note[AUDIT_NOTE_MAX];
	struct timespec now;
	int rc;

	clock_gettime(CLOCK_REALTIME, &now);
	ev.time_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	snprintf(id, sizeof(id), "audit-%s-%lld", c->id, ev.time_ms);
	ev.id = id;
	ev.email = c->email;
	ev.object_id = c->id;
	snprintf(note, sizeof(note), "found provider contact %s (%s) unsubscribed at the "
	    "provider; not overridden: ProviderUnsubscribed=True, no email reaches them",
	    c->id, c->email);
	rc = reconciler_provider_event(run->r, c->ns, c->name, &ev, "Warning",
	    "ProviderDriftRepaired", note);
	if (rc == 0) {
		log_info("provider drift repaired", LOG_STR("kind", "Contact"),
		    LOG_STR("namespace", c->ns), LOG_STR("name", c->name),
		    LOG_STR("drift", "ContactUnsubscribed"), LOG_STR("found", note),
		    LOG_STR("done", "recorded ProviderUnsubscribed=True"));
		audit_count_repair(run->r, "ContactUnsubscribed");
		run->marked++;
	} else if (rc != -EALREADY && rc != -ENOENT) {
		run->failed++;
	}
}

/*
 * After every group: a Contact listed in none of the groups it should be
 * in lost its provider contact (or was taken out of all of them): it makes
 * or adopts one again, and its memberships are put back once it has. The
 * other missing members are put back; contacts whose fields differ are
 * patched back; an unsubscribe is recorded, never overridden.
 */
static void
contacts_done(struct run *run)
{
	for (size_t i = 0; i < run->contacts.n; i++) {
		struct acontact *c = run->contacts.v[i];

		if (c->expected && !c->seen)
			c->gone = mark(run, KIND_CONTACT, c->ns, c->name, "ContactMissing", true,
			    "provider contact %s (%s) is in none of the %u provider group(s) it "
			    "belongs in: deleted at the provider, or taken out of all of them",
			    c->id, c->email, c->expected);
	}
	for (size_t i = 0; i < run->missing.n; i++) {
		struct expect *x = run->missing.v[i];

		/* As for a group that is gone: members follow a contact that took its mark. */
		if (x->c->expected && !x->c->seen && !x->c->gone)
			continue;
		if (x->c->gone)
			mark(run, KIND_MEMBERSHIP, x->ns, x->name, "MemberMissing", false,
			    "provider contact %s of Contact %s/%s is gone from provider group %s "
			    "of ContactGroup %s/%s with its contact", x->c->id, x->c->ns,
			    x->c->name, x->g->id, x->g->ns, x->g->name);
		else
			mark(run, KIND_MEMBERSHIP, x->ns, x->name, "MemberMissing", false,
			    "provider contact %s of Contact %s/%s is not in provider group %s of "
			    "ContactGroup %s/%s", x->c->id, x->c->ns, x->c->name, x->g->id,
			    x->g->ns, x->g->name);
	}
	for (size_t i = 0; i < run->contacts.n; i++) {
		struct acontact *c = run->contacts.v[i];

		if (c->changed && c->seen)
			mark(run, KIND_CONTACT, c->ns, c->name, "ContactChanged", false, "%s",
			    c->changed);
		if (c->unsub_seen)
			unsubscribed(run, c);
	}
}

/* ---- one audit ---- */

static void
run_free(struct run *run)
{
	for (size_t i = 0; i < run->groups.n; i++) {
		struct agroup *g = run->groups.v[i];

		free(g->ns);
		free(g->name);
		free(g->uid);
		free(g->display);
		free(g->id);
		free(g->listed_name);
		free(g);
	}
	free(run->groups.v);
	for (size_t i = 0; i < run->contacts.n; i++)
		acontact_free(run->contacts.v[i]);
	free(run->contacts.v);
	for (size_t i = 0; i < run->expects.n; i++)
		expect_free(run->expects.v[i]);
	free(run->expects.v);
	for (size_t i = 0; i < run->extras.n; i++)
		extra_free(run->extras.v[i]);
	free(run->extras.v);
	free(run->missing.v);
	hmap_free(&run->groups_by_id);
	hmap_free(&run->contacts_by_id);
	hmap_free(&run->contacts_by_name);
	hmap_free(&run->expected);
}

/*
 * One audit. 0 when every group was read and judged; -ECANCELED when this
 * replica stopped leading or is stopping; another error when a listing
 * failed (what was read is judged all the same, nothing is concluded from
 * what was not).
 */
static int
audit_run(struct audit *a)
{
	struct provider *p = a->r->provider;
	struct provider_error e = { NULL, -1 };
	struct run run = { .a = a, .r = a->r };
	unsigned long calls = provider_http_calls(p->http);
	double started = clock_mono();
	int rc, failed_groups = 0;

	hmap_init(&run.groups_by_id);
	hmap_init(&run.contacts_by_id);
	hmap_init(&run.contacts_by_name);
	hmap_init(&run.expected);
	if ((rc = snapshot(&run)) != 0)
		goto out;
	log_info("provider audit started", LOG_STR("provider", p->ops->name),
	    LOG_INT("contactgroups", run.groups.n), LOG_INT("contacts", run.contacts.n));
	if ((rc = yield_to_work(a)) != 0)
		goto out;
	rc = p->ops->list_groups(p, on_group, &run, &e);
	if (rc) {
		if (rc != -ECANCELED)
			log_warn("provider audit: cannot list the provider's groups",
			    LOG_STR("error", e.message ? e.message :
			    strerror(rc < 0 && rc > -4000 ? -rc : EIO)));
		goto out;
	}
	for (size_t i = 0; i < run.groups.n; i++) {
		struct agroup *g = run.groups.v[i];

		if (!g->listed)
			group_gone(&run, g);
		else if (g->listed_name)
			mark(&run, KIND_CONTACT_GROUP, g->ns, g->name, "SegmentRenamed", false,
			    "provider group %s is named \"%s\" at the provider", g->id,
			    g->listed_name);
	}
	for (size_t i = 0; i < run.groups.n; i++) {
		struct agroup *g = run.groups.v[i];

		if (!g->listed)
			continue;
		rc = audit_group(&run, g);
		if (rc == -ECANCELED || rc == -ENOMEM)
			goto out;
		if (rc)
			failed_groups++;
		rc = 0;
	}
	contacts_done(&run);
	if (failed_groups)
		rc = -EIO;
out:
	provider_error_free(&e);
	if (rc == 0 || rc == -EIO) {
		double seconds = clock_mono() - started;

		log_info(rc ? "provider audit finished with errors" : "provider audit finished",
		    LOG_FLOAT("seconds", seconds),
		    LOG_INT("providerRequests", provider_http_calls(p->http) - calls),
		    LOG_INT("groupsListed", run.listed_groups),
		    LOG_INT("groupsOwned", run.owned_groups),
		    LOG_INT("groupsForeign", run.foreign_groups),
		    LOG_INT("groupsOrphaned", run.orphan_groups),
		    LOG_INT("membersRead", run.members),
		    LOG_INT("driftMarked", run.marked),
		    LOG_INT("membersRemoved", run.removed),
		    LOG_INT("unchangedSince", run.unchanged),
		    LOG_INT("failures", run.failed),
		    LOG_INT("groupsUnread", failed_groups));
		if (rc == 0) {
			struct timespec now;

			clock_gettime(CLOCK_REALTIME, &now);
			metric_observe(a->m_duration, seconds);
			metric_set(a->m_last_success, (double)now.tv_sec);
		}
	} else if (rc == -ECANCELED) {
		log_info("provider audit stopped: no longer leading, or stopping");
	} else {
		log_warn("provider audit failed", LOG_STR("error", strerror(-rc)));
	}
	run_free(&run);
	return rc;
}

/* ---- the thread ---- */

/*
 * The first audit comes one period after this replica leads (and every
 * cache has listed), so a restart costs nothing; then one every period, or
 * AUDIT_RETRY_MS after one that failed.
 */
static void *
audit_main(void *arg)
{
	struct audit *a = arg;
	uint64_t next = 0;	/* 0: not leading */

	for (;;) {
		uint64_t now = clock_mono_ms();

		if (!leading(a) || !cache_synced(a->r->cache)) {
			next = 0;
			if (audit_nap(a, AUDIT_POLL_MS))
				break;
			continue;
		}
		if (!next)
			next = now + a->c.period_ms;
		if (now < next) {
			if (audit_nap(a, next - now < 1000 ? next - now : 1000))
				break;
			continue;
		}
		switch (audit_run(a)) {
		case 0:
			next = clock_mono_ms() + a->c.period_ms;
			break;
		case -ECANCELED:
			next = 0;
			break;
		default:
			next = clock_mono_ms() + (a->c.period_ms < AUDIT_RETRY_MS ?
			    a->c.period_ms : AUDIT_RETRY_MS);
			break;
		}
	}
	return NULL;
}

int
audit_new(struct reconciler *r, const struct audit_config *c, struct audit **out)
{
	static const char *const by_kind[] = { "kind", NULL };
	/* An audit reads about 100 provider objects per request: seconds to an hour. */
	static const double buckets[] = { 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
		3600 };
	struct audit *a = calloc(1, sizeof(*a));

	*out = NULL;
	if (!a)
		return -ENOMEM;
	a->r = r;
	a->c = *c;
	pthread_mutex_init(&a->lock, NULL);
	clock_cond_init(&a->wake);
	if (c->metrics) {
		a->m_repaired = metrics_counter(c->metrics, "milo_provider_drift_repaired_total",
		    "Drift between the cluster and the provider that the audit found and "
		    "repaired (or recorded), by kind.", by_kind);
		a->m_duration = metric_get(metrics_histogram(c->metrics,
		    "milo_provider_audit_duration_seconds",
		    "How long a completed provider audit took.", NULL, buckets,
		    sizeof(buckets) / sizeof(buckets[0])), NULL);
		a->m_last_success = metric_get(metrics_gauge(c->metrics,
		    "milo_provider_audit_last_success_timestamp_seconds",
		    "When the last provider audit completed, seconds since the epoch (0: none "
		    "yet).", NULL), NULL);
		if (!a->m_repaired || !a->m_duration || !a->m_last_success) {
			audit_free(a);
			return -ENOMEM;
		}
		for (size_t i = 0; i < sizeof(drift_kinds) / sizeof(drift_kinds[0]); i++)
			metric_get(a->m_repaired, (const char *const[]){ drift_kinds[i].label });
	}
	r->audit = a;
	*out = a;
	return 0;
}

int
audit_start(struct audit *a)
{
	const struct provider_ops *ops;

	if (!a || !a->c.period_ms || a->started)
		return 0;
	ops = a->r->provider->ops;
	if (!ops->list_groups || !ops->list_members || !ops->group_owner) {
		log_warn("provider audits off: this provider cannot list what it owns",
		    LOG_STR("provider", ops->name));
		return 0;
	}
	if (pthread_create(&a->thread, NULL, audit_main, a) != 0)
		return -EAGAIN;
	a->started = true;
	log_info("provider audits on",
	    LOG_FLOAT("periodSeconds", (double)a->c.period_ms / 1000));
	return 0;
}

void
audit_stop(struct audit *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->wake);
	pthread_mutex_unlock(&a->lock);
	if (a->started)
		pthread_join(a->thread, NULL);
	a->started = false;
}

void
audit_free(struct audit *a)
{
	if (!a)
		return;
	audit_stop(a);
	if (a->r && a->r->audit == a)
		a->r->audit = NULL;
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->wake);
	free(a);
}
