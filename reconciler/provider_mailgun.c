/* provider_mailgun.c -- Mailgun: mailing lists and their members, bulk uploads, signed events */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base64.h"
#include "batch.h"
#include "buf.h"
#include "form.h"
#include "jsonparse.h"
#include "log.h"
#include "mailgun.h"
#include "metrics.h"
#include "provider.h"
#include "provider_http.h"

#define MAILGUN_DEFAULT_BASE_URL "https://api.mailgun.net"
/*
 * Requests per second. Mailgun publishes no figure for the mailing-list
 * endpoints: its docs say only that limits exist and a 429 says when to
 * retry (documentation.mailgun.com, "API Response Codes"), and the one
 * figure quoted from its docs is 300 requests a minute for a part of the
 * domains API (laracasts.com, "Does mailgun driver handle rate limiting").
 * 5/s is that figure; a lower limit Mailgun enforces is learned from its
 * 429s, and --mailgun-rate-limit sets another.
 */
#define MAILGUN_DEFAULT_RATE 5.0
#define MAILGUN_PAGE 100		/* list pages: Mailgun's maximum ("Max is 100") */
#define MAILGUN_LIST_PAGES_MAX 1000	/* 100,000 lists or members: a bound on a runaway listing */
/*
 * Members per members.json request. Mailgun takes up to 1000, but "if the
 * request includes more than 100 entries, the mailing list will be updated
 * asynchronously" and the answer then says nothing of the entries. Up to
 * 100 are applied before it answers, so its 200 is each member's outcome.
 */
#define MAILGUN_BULK_MAX 100
/*
 * The longest a member waits for its list's bulk request while adds keep
 * coming (--mailgun-bulk-window apart or closer): long enough to fill a
 * request during an initial sync, short beside what 100 single calls take
 * at the default rate (20 s).
 */
#define MAILGUN_BULK_MAX_WAIT_MS 5000
#define MAILGUN_PATH_MAX 1200
#define MAILGUN_VARS_KEY "contact"	/* vars: which Contact a member is, "<ns>/<name>" */

struct mailgun {
	struct provider base;
	char *domain;
	unsigned char *webhook_key;	/* the signing key as given, or NULL */
	size_t webhook_key_len;
	struct batch *batch;		/* gathers adds into members.json requests; NULL: off */
	struct metric_series *m_bulk;	/* milo_provider_bulk_members_total{provider} */
};

static struct mailgun *
mg(struct provider *p)
{
	return (struct mailgun *)p;
}

/* "/v3/lists/<list><rest>", the list address escaped as a path segment. */
static int
list_path(char *out, size_t len, const char *list, const char *rest)
{
	char *esc = provider_http_escape(list);
	int n;

	if (!esc)
		return -ENOMEM;
	n = snprintf(out, len, "/v3/lists/%s%s", esc, rest ? rest : "");
	free(esc);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int
member_path(char *out, size_t len, const char *list, const char *member)
{
	char *esc = provider_http_escape(member), rest[MAILGUN_PATH_MAX];
	int n;

	if (!esc)
		return -ENOMEM;
	n = snprintf(rest, sizeof(rest), "/members/%s", esc);
	free(esc);
	if (n < 0 || (size_t)n >= sizeof(rest))
		return -ENAMETOOLONG;
	return list_path(out, len, list, rest);
}

/*
 * One request with a form body (or none). Returns what provider_http_call
 * returns; *res is always filled (free it).
 */
static int
call(struct provider *p, const char *method, const char *path, const struct form *f,
    struct provider_http_result *res)
{
	return provider_http_call(p->http, method, path,
	    f ? "application/x-www-form-urlencoded" : NULL, f ? form_text(f) : NULL,
	    f ? form_len(f) : 0, res);
}

/*
 * A call whose answer we do not read. 0, 1 for a 404 (the list or member
 * is not there), or a failure through provider_fail().
 */
static int
write_call(struct provider *p, const char *method, const char *path, const struct form *f,
    struct provider_error *e)
{
	struct provider_http_result res;
	int rc = call(p, method, path, f, &res);

	if (rc == -EIO && res.status == 404) {
		provider_http_result_free(&res);
		return 1;
	}
	if (rc)
		return provider_fail(rc, &res, e);
	provider_http_result_free(&res);
	return 0;
}

static int
form_failed(int rc, struct provider_error *e)
{
	free(e->message);
	e->message = strdup(rc == -E2BIG ? "the request is larger than Mailgun accepts" :
	    "out of memory");
	return rc == -E2BIG ? PROVIDER_REFUSED : -ENOMEM;
}

/* ---- groups: mailing lists ---- */

/* name, description and access level of g's list (the address is the caller's). */
static int
list_form(const struct provider_group *g, struct form *f)
{
	char *desc = mailgun_list_description(g->description, g->namespace, g->name);
	int rc;

	if (!desc)
		return -ENOMEM;
	rc = form_add(f, "name", g->display_name ? g->display_name : g->name);
	if (rc == 0)
		rc = form_add(f, "description", desc);
	if (rc == 0)
		rc = form_add(f, "access_level", "readonly");
	free(desc);
	return rc;
}

/* PUT /v3/lists/{address}: 0 updated, 1 no such list, or a failure. */
static int
list_update(struct provider *p, const struct provider_group *g, const char *address,
    struct provider_error *e)
{
	char path[MAILGUN_PATH_MAX];
	struct form f;
	int rc;

	if ((rc = list_path(path, sizeof(path), address, NULL)) != 0)
		return rc;
	form_init(&f, FORM_BODY_MAX);
	rc = list_form(g, &f);
	rc = rc ? form_failed(rc, e) : write_call(p, "PUT", path, &f, e);
	form_free(&f);
	return rc;
}

/* POST /v3/lists: 0 made, or a failure (a 400 when the address is taken). */
static int
list_create(struct provider *p, const struct provider_group *g, const char *address,
    struct provider_error *e)
{
	struct form f;
	int rc;

	form_init(&f, FORM_BODY_MAX);
	rc = form_add(&f, "address", address);
	if (rc == 0)
		rc = list_form(g, &f);
	rc = rc ? form_failed(rc, e) : write_call(p, "POST", "/v3/lists", &f, e);
	form_free(&f);
	return rc == 1 ? PROVIDER_REFUSED : rc;
}

static int
derived_address(struct provider *p, const char *ns, const char *name, char *out,
    size_t len, struct provider_error *e)
{
	int rc = mailgun_list_address(ns, name, mg(p)->domain, out, len);

	if (rc) {
		free(e->message);
		e->message = strdup("no mailing-list address can be made for this group");
		return PROVIDER_REFUSED;
	}
	return 0;
}

/*
 * The list's address is derived from namespace/name, so a create that
 * finds it taken (a crash before the status write, a lost reply) adopts
 * the list by updating it: one call in the common case, two on adoption.
 */
static int
group_ensure(struct provider *p, const struct provider_group *g, char **id,
    enum provider_change *did, struct provider_error *e)
{
	char address[MAILGUN_ADDRESS_MAX + 1];
	int rc;

	*id = NULL;
	*did = PROVIDER_UNCHANGED;
	if (g->id) {
		rc = list_update(p, g, g->id, e);
		if (rc == 0) {
			*did = PROVIDER_UPDATED;
			*id = strdup(g->id);
			return *id ? 0 : -ENOMEM;
		}
		if (rc != 1)
			return rc;
		/* The list is gone at Mailgun: made again below. */
	}
	if ((rc = derived_address(p, g->namespace, g->name, address, sizeof(address), e)) != 0)
		return rc;
	rc = list_create(p, g, address, e);
	if (rc == 0) {
		*did = PROVIDER_CREATED;
	} else if (rc == PROVIDER_REFUSED) {
		struct provider_error why = *e;
		int up;

		e->message = NULL;
		up = list_update(p, g, address, e);
		if (up == 0) {
			*did = PROVIDER_ADOPTED;
			rc = 0;
		} else if (up == 1) {
			free(e->message);	/* not taken after all: the create's refusal stands */
			e->message = why.message;
			why.message = NULL;
		} else {
			rc = up;
		}
		provider_error_free(&why);
	}
	if (rc)
		return rc;
	*id = strdup(address);
	return *id ? 0 : -ENOMEM;
}

/*
 * Whether the list at address is one we made for g (its description's
 * "[ns/name]"): 1 yes, 0 no or no such list, or a failure.
 */
static int
list_is_ours(struct provider *p, const struct provider_group *g, const char *address,
    struct provider_error *e)
{
	struct provider_http_result res;
	char path[MAILGUN_PATH_MAX], ns[MAILGUN_NAMESPACE_MAX + 1], name[MAILGUN_NAME_MAX + 1];
	const char *desc;
	int rc;

	if ((rc = list_path(path, sizeof(path), address, NULL)) != 0)
		return rc;
	rc = call(p, "GET", path, NULL, &res);
	if (rc == -EIO && res.status == 404) {
		provider_http_result_free(&res);
		return 0;
	}
	if (rc)
		return provider_fail(rc, &res, e);
	desc = json_string_value(json_object_get(json_object_get(res.body, "list"),
	    "description"));
	rc = mailgun_list_owner(address, desc, mg(p)->domain, ns, sizeof(ns), name,
	    sizeof(name)) && strcmp(ns, g->namespace) == 0 && strcmp(name, g->name) == 0;
	provider_http_result_free(&res);
	return rc;
}

static int
group_delete(struct provider *p, const struct provider_group *g, struct provider_error *e)
{
	char address[MAILGUN_ADDRESS_MAX + 1], path[MAILGUN_PATH_MAX];
	const char *list = g->id;
	int rc;

	/*
	 * No id in status: a crash may still have left our list behind under
	 * the derived address. It is deleted only when its description says
	 * it is this group's.
	 */
	if (!list) {
		if (mailgun_list_address(g->namespace, g->name, mg(p)->domain, address,
		    sizeof(address)) != 0)
			return 0;
		if ((rc = list_is_ours(p, g, address, e)) <= 0)
			return rc;
		list = address;
	}
	if (mg(p)->batch)
		batch_forget_group(mg(p)->batch, list);
	if ((rc = list_path(path, sizeof(path), list, NULL)) != 0)
		return rc;
	rc = write_call(p, "DELETE", path, NULL, e);
	return rc == 1 ? 0 : rc;
}

/* ---- contacts: member entries ---- */

/* "Given Family", either alone, or "" (malloc'd). */
static char *
member_name(const struct provider_contact *c)
{
	const char *g = c->given_name && *c->given_name ? c->given_name : NULL;
	const char *f = c->family_name && *c->family_name ? c->family_name : NULL;
	char *s = NULL;

	if (asprintf(&s, "%s%s%s", g ? g : "", g && f ? " " : "", f ? f : "") < 0)
		return NULL;
	return s;
}

/*
 * The member's vars: which Contact it is, and its names as given (so a
 * template can use %recipient.givenName% and the audit can tell the two
 * names apart). New reference.
 */
static json_t *
member_vars(const struct provider_contact *c)
{
	json_t *v = json_object();
	char *who = NULL;

	if (!v || asprintf(&who, "%s/%s", c->namespace, c->name) < 0) {
		json_decref(v);
		return NULL;
	}
	json_object_set_new(v, MAILGUN_VARS_KEY, json_string(who));
	if (c->given_name && *c->given_name)
		json_object_set_new(v, "givenName", json_string(c->given_name));
	if (c->family_name && *c->family_name)
		json_object_set_new(v, "familyName", json_string(c->family_name));
	free(who);
	return v;
}

/* name and vars as form fields, and address when set. */
static int
member_form(const struct provider_contact *c, const char *address, struct form *f)
{
	json_t *vars = member_vars(c);
	char *name = member_name(c), *vtext = vars ? json_dumps(vars, JSON_COMPACT |
	    JSON_SORT_KEYS) : NULL;
	int rc = name && vtext ? 0 : -ENOMEM;

	if (rc == 0 && address)
		rc = form_add(f, "address", address);
	if (rc == 0)
		rc = form_add(f, "name", name);
	if (rc == 0)
		rc = form_add(f, "vars", vtext);
	free(name);
	free(vtext);
	json_decref(vars);
	return rc;
}

/*
 * PUT /v3/lists/{list}/members/{member}: name and vars, and the address
 * when rename_to is given. 0, 1 when no such member, or a failure.
 */
static int
member_update(struct provider *p, const char *list, const char *member,
    const struct provider_contact *c, const char *rename_to, struct provider_error *e)
{
	char path[MAILGUN_PATH_MAX];
	struct form f;
	int rc;

	if ((rc = member_path(path, sizeof(path), list, member)) != 0)
		return rc;
	form_init(&f, FORM_BODY_MAX);
	rc = member_form(c, rename_to, &f);
	rc = rc ? form_failed(rc, e) : write_call(p, "PUT", path, &f, e);
	form_free(&f);
	return rc;
}

static int
member_delete(struct provider *p, const char *list, const char *member,
    struct provider_error *e)
{
	char path[MAILGUN_PATH_MAX];
	int rc;

	if ((rc = member_path(path, sizeof(path), list, member)) != 0)
		return rc;
	rc = write_call(p, "DELETE", path, NULL, e);
	return rc == 1 ? 0 : rc;
}

/* An address as the batch keys it: Mailgun compares addresses without regard to case. */
static char *
lower(const char *s)
{
	char *l = strdup(s);

	for (char *q = l; q && *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	return l;
}

/* Drops what waits in a batch for this address, after a request carrying it. */
static void
forget(struct provider *p, const char *list, const char *address)
{
	char *key;

	if (!mg(p)->batch || !(key = lower(address)))
		return;
	batch_forget(mg(p)->batch, list, key);
	free(key);
}

/*
 * The contact's entry in one list, brought up to date: renamed from the
 * old address when the email changed, names and vars rewritten. A list
 * without the entry is left alone (its membership adds it; adding here
 * could put back a contact that opted out), except that a rename an
 * earlier attempt made is finished.
 */
static int
entry_sync(struct provider *p, const char *list, const struct provider_contact *c,
    struct provider_error *e)
{
	bool renamed = strcasecmp(c->id, c->email) != 0;
	struct provider_error why;
	int rc;

	forget(p, list, c->id);
	if (renamed)
		forget(p, list, c->email);
	rc = member_update(p, list, c->id, c, renamed ? c->email : NULL, e);
	if (!renamed || (rc != 1 && rc != PROVIDER_REFUSED))
		return rc == 1 ? 0 : rc;
	if (rc == 1)	/* the old address is not there: an earlier rename, or no entry */
		return (rc = member_update(p, list, c->email, c, NULL, e)) == 1 ? 0 : rc;
	/* Refused: the new address may be there already, beside the old one. */
	why = *e;
	e->message = NULL;
	rc = member_update(p, list, c->email, c, NULL, e);
	if (rc == 1) {
		free(e->message);	/* it is not: the rename's refusal stands */
		*e = why;
		return PROVIDER_REFUSED;
	}
	provider_error_free(&why);
	return rc ? rc : member_delete(p, list, c->id, e);
}

/*
 * Mailgun has no account-wide contact: a Contact is its member entries,
 * and its provider id is its address. A change of email or names updates
 * the entry in every list it is in (group_ids: its memberships' lists).
 */
static int
contact_ensure(struct provider *p, const struct provider_contact *c,
    const char *const *group_ids, size_t n_groups, char **id, enum provider_change *did,
    struct provider_error *e)
{
	int rc = 0;

	*did = PROVIDER_UNCHANGED;
	*id = NULL;
	/* Not known yet: no membership can have added it anywhere. */
	if (c->id) {
		for (size_t i = 0; i < n_groups && rc == 0; i++)
			rc = entry_sync(p, group_ids[i], c, e);
		if (rc)
			return rc;
		if (n_groups || strcmp(c->id, c->email) != 0)
			*did = PROVIDER_UPDATED;
	}
	*id = strdup(c->email);
	return *id ? 0 : -ENOMEM;
}

static int
contact_delete(struct provider *p, const struct provider_contact *c,
    const char *const *group_ids, size_t n_groups, struct provider_error *e)
{
	int rc = 0;

	for (size_t i = 0; i < n_groups && rc == 0; i++) {
		forget(p, group_ids[i], c->email);
		rc = member_delete(p, group_ids[i], c->email, e);
		if (rc == 0 && c->id && strcasecmp(c->id, c->email) != 0) {
			forget(p, group_ids[i], c->id);
			rc = member_delete(p, group_ids[i], c->id, e);
		}
	}
	return rc;
}

/* ---- membership: one member, or many through members.json ---- */

/* The members.json entry for c, which is also what the batch compares (malloc'd). */
static char *
member_entry(const struct provider_contact *c)
{
	json_t *o = json_object(), *vars = member_vars(c);
	char *name = member_name(c), *text = NULL;

	if (o && vars && name) {
		json_object_set_new(o, "address", json_string(c->email));
		json_object_set_new(o, "name", json_string(name));
		json_object_set(o, "vars", vars);
		json_object_set_new(o, "subscribed", json_true());
		text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	}
	json_decref(o);
	json_decref(vars);
	free(name);
	return text;
}

/*
 * POST /v3/lists/{list}/members without upsert: a new member is made,
 * subscribed; one that is there already is left exactly as it is. An
 * upsert would set subscribed=yes again on someone who unsubscribed from
 * the list at Mailgun (its unsubscribe link is per list): an opt-out must
 * never be undone by a membership being reconciled again. Names and
 * address follow the Contact through contact_ensure's updates, which
 * leave the subscription alone.
 */
static int
member_create(struct provider *p, const char *list, const struct provider_contact *c,
    struct provider_error *e)
{
	struct provider_http_result res;
	char path[MAILGUN_PATH_MAX];
	struct form f;
	int rc;

	if ((rc = list_path(path, sizeof(path), list, "/members")) != 0)
		return rc;
	form_init(&f, FORM_BODY_MAX);
	rc = member_form(c, c->email, &f);
	if (rc == 0)
		rc = form_add_bool(&f, "subscribed", true);
	if (rc) {
		rc = form_failed(rc, e);
		form_free(&f);
		return rc;
	}
	rc = call(p, "POST", path, &f, &res);
	form_free(&f);
	/* "Address already exists 'x'": a member already, as wanted, subscription kept. */
	if (rc == -EIO && res.status == 400 && res.message &&
	    strstr(res.message, "already exists"))
		rc = 0;
	if (rc)
		return provider_fail(rc, &res, e);
	provider_http_result_free(&res);
	return 0;
}

static int
member_add(struct provider *p, const char *group_id, const struct provider_contact *c,
    struct provider_error *e)
{
	struct batch_result r;
	enum batch_verdict v = BATCH_ALONE;
	char *entry, *key;

	if (!group_id || !c->email)
		return -EINVAL;
	if (mg(p)->batch) {
		entry = member_entry(c);
		key = lower(c->email);
		if (!entry || !key) {
			free(entry);
			free(key);
			return -ENOMEM;
		}
		v = batch_add(mg(p)->batch, group_id, key, entry, &r);
		free(entry);
		free(key);
	}
	if (v == BATCH_WAIT) {
		free(e->message);
		if (asprintf(&e->message, "queued for a bulk upload to %s", group_id) < 0)
			e->message = NULL;
		e->retry_after_ms = (long)r.wait_ms;
		return PROVIDER_PENDING;
	}
	if (v == BATCH_DONE) {
		if (r.rc) {
			free(e->message);
			e->message = r.message;
			e->retry_after_ms = r.retry_after_ms;
			return r.rc;
		}
		free(r.message);
		return 0;
	}
	return member_create(p, group_id, c, e);
}

static int
member_remove(struct provider *p, const char *group_id, const struct provider_contact *c,
    struct provider_error *e)
{
	if (!group_id || !c->email)
		return -EINVAL;
	forget(p, group_id, c->email);
	return member_delete(p, group_id, c->email, e);
}

/*
 * The batch's sender: one members.json request (at most MAILGUN_BULK_MAX
 * entries, so Mailgun applies them before it answers) without upsert:
 * members already in the list, unsubscribed ones included, are left as
 * they are (see member_create).
 */
static void
bulk_send(void *arg, const char *list, const struct batch_item *items, size_t n,
    struct batch_outcome *out)
{
	struct provider *p = arg;
	struct provider_error e = { NULL, -1 };
	char path[MAILGUN_PATH_MAX];
	struct form f;
	struct buf members;
	int rc;

	buf_init(&members, FORM_BODY_MAX);
	rc = buf_addc(&members, '[');
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = buf_printf(&members, "%s%s", i ? "," : "", items[i].payload);
	if (rc == 0)
		rc = buf_addc(&members, ']');
	form_init(&f, FORM_BODY_MAX);
	if (rc == 0)
		rc = form_add(&f, "members", buf_str(&members));
	if (rc == 0)
		rc = form_add_bool(&f, "upsert", false);
	if (rc)
		rc = form_failed(rc, &e);
	else if ((rc = list_path(path, sizeof(path), list, "/members.json")) == 0)
		rc = write_call(p, "POST", path, &f, &e);
	if (rc == 1)
		rc = PROVIDER_REFUSED;	/* the list is gone */
	form_free(&f);
	buf_free(&members);
	if (rc == 0)
		metric_add(mg(p)->m_bulk, (double)n);
	if (rc == 0)
		log_info("provider bulk upload", LOG_STR("provider", "mailgun"),
		    LOG_STR("list", list), LOG_INT("members", n));
	else
		log_warn("provider bulk upload failed", LOG_STR("provider", "mailgun"),
		    LOG_STR("list", list), LOG_INT("members", n),
		    LOG_STR("error", e.message ? e.message :
		    strerror(rc < 0 && rc > -4000 ? -rc : EIO)));
	out->rc = rc;
	out->message = e.message;
	out->retry_after_ms = e.retry_after_ms;
}

/* ---- the audit's reads ---- */

/*
 * GETs pages of path, 100 at a time in address order,
 * each next page pivoting on the last address seen, and calls each(item).
 * A 404 is -ENOENT.
 */
static int
pages(struct provider *p, const char *path, int (*each)(const json_t *item, void *arg),
    void *arg, struct provider_error *e)
{
	char url[MAILGUN_PATH_MAX + 400], pivot[MAILGUN_ADDRESS_MAX * 3 + 1] = "";
	int rc = 0;

	for (int page = 0; page < MAILGUN_LIST_PAGES_MAX; page++) {
		struct provider_http_result res;
		const char *last = NULL;
		json_t *items, *it;
		size_t i, count;

		if (snprintf(url, sizeof(url), "%s?limit=%d%s%s", path, MAILGUN_PAGE,
		    page ? "&page=next&address=" : "", page ? pivot : "") >= (int)sizeof(url))
			return -ENAMETOOLONG;
		rc = call(p, "GET", url, NULL, &res);
		if (rc == -EIO && res.status == 404) {
			provider_http_result_free(&res);
			return -ENOENT;
		}
		if (rc)
			return provider_fail(rc, &res, e);
		items = json_object_get(res.body, "items");
		count = json_array_size(items);
		json_array_foreach(items, i, it) {
			if (rc == 0)
				rc = each(it, arg);
			if (json_is_string(json_object_get(it, "address")))
				last = json_string_value(json_object_get(it, "address"));
		}
		if (last)
			form_escape(last, pivot, sizeof(pivot));
		provider_http_result_free(&res);
		if (rc || count < MAILGUN_PAGE || !last)
			return rc;
	}
	return rc;
}

struct list_walk {
	provider_group_fn group_fn;
	provider_member_fn member_fn;
	void *arg;
};

static int
each_list(const json_t *it, void *arg)
{
	struct list_walk *w = arg;
	struct provider_group_info g = {
		.id = json_string_value(json_object_get(it, "address")),
		.name = json_string_value(json_object_get(it, "name")),
		.description = json_string_value(json_object_get(it, "description")),
	};

	return g.id ? w->group_fn(&g, w->arg) : 0;
}

static int
list_groups(struct provider *p, provider_group_fn fn, void *arg, struct provider_error *e)
{
	struct list_walk w = { .group_fn = fn, .arg = arg };
	int rc = pages(p, "/v3/lists/pages", each_list, &w, e);

	return rc == -ENOENT ? 0 : rc;
}

/*
 * A member as the audit compares it: the names from our vars when the
 * member's name is still the one we made of them, else the whole name as
 * the given name (a name changed at Mailgun then differs, and is repaired).
 */
static int
each_member(const json_t *it, void *arg)
{
	struct list_walk *w = arg;
	const json_t *vars = json_object_get(it, "vars"), *sub = json_object_get(it, "subscribed");
	const char *name = json_string_value(json_object_get(it, "name"));
	struct provider_member_info m = {
		.contact_id = json_string_value(json_object_get(it, "address")),
		.unsubscribed = json_is_boolean(sub) ? !json_is_true(sub) : -1,
	};
	struct provider_contact c = {
		.given_name = json_string_value(json_object_get(vars, "givenName")),
		.family_name = json_string_value(json_object_get(vars, "familyName")),
	};
	char *made = member_name(&c);
	int rc;

	if (!made)
		return -ENOMEM;
	m.email = m.contact_id;
	if (strcmp(made, name ? name : "") == 0) {
		m.given_name = c.given_name;
		m.family_name = c.family_name;
	} else {
		m.given_name = name && *name ? name : NULL;
	}
	rc = m.email ? w->member_fn(&m, w->arg) : 0;
	free(made);
	return rc;
}

static int
list_members(struct provider *p, const char *group_id, provider_member_fn fn, void *arg,
    struct provider_error *e)
{
	struct list_walk w = { .member_fn = fn, .arg = arg };
	char path[MAILGUN_PATH_MAX];
	int rc;

	if ((rc = list_path(path, sizeof(path), group_id, "/members/pages")) != 0)
		return rc;
	return pages(p, path, each_member, &w, e);
}

static int
group_owner(struct provider *p, const struct provider_group_info *g, char *ns, size_t ns_len,
    char *name, size_t name_len)
{
	return mailgun_list_owner(g->id, g->description, mg(p)->domain, ns, ns_len, name,
	    name_len);
}

/* ---- events ---- */

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* signature.timestamp as text: Mailgun sends a string; a number is accepted too. */
static const char *
timestamp_text(const json_t *v, char *buf, size_t len)
{
	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
		return buf;
	}
	return NULL;
}

/*
 * A Mailgun webhook: {"signature": {timestamp, token, signature},
 * "event-data": {event, recipient, timestamp, "mailing-list": {address}}},
 * signed with hex(HMAC-SHA256(key, timestamp + token)). The token is the
 * delivery's id; event-data's timestamp (float seconds) is when it happened.
 */
static int
event_parse(struct provider *p, provider_header_fn header, const void *arg, const char *body,
    size_t len, struct provider_event *ev, const char **why)
{
	struct mailgun *m = mg(p);
	json_t *doc = jsonparse_load(body, len, 0, NULL), *sig, *data, *when, *list;
	const char *token, *type;
	char tsbuf[32];
	int rc;

	(void)header;
	(void)arg;
	memset(ev, 0, sizeof(*ev));
	ev->unsubscribed = -1;
	if (!json_is_object(doc)) {
		json_decref(doc);
		*why = "not a Mailgun event: the body is not a JSON object";
		return 400;
	}
	sig = json_object_get(doc, "signature");
	token = json_string_value(json_object_get(sig, "token"));
	rc = mailgun_verify(m->webhook_key, m->webhook_key_len,
	    timestamp_text(json_object_get(sig, "timestamp"), tsbuf, sizeof(tsbuf)), token,
	    json_string_value(json_object_get(sig, "signature")), time(NULL),
	    MAILGUN_TOLERANCE_S);
	if (rc != MAILGUN_OK) {
		json_decref(doc);
		*why = mailgun_strerror(rc);
		return 401;
	}
	data = json_object_get(doc, "event-data");
	type = json_string_value(json_object_get(data, "event"));
	if (!type || !*type) {
		json_decref(doc);
		*why = "not a Mailgun event: no event-data.event";
		return 400;
	}
	ev->id = strdup(token);
	ev->type = strdup(type);
	ev->email = dup_or_null(json_string_value(json_object_get(data, "recipient")));
	ev->object_id = dup_or_null(json_string_value(json_object_get(data, "id")));
	when = json_object_get(data, "timestamp");
	if (json_is_number(when) && json_number_value(when) > 0)
		ev->time_ms = (long long)(json_number_value(when) * 1000.0);
	list = json_object_get(json_object_get(data, "mailing-list"), "address");
	if (json_is_string(list))
		ev->group_ids = json_pack("[O]", list);
	if (strcmp(type, "unsubscribed") == 0)
		ev->unsubscribed = 1;
	rc = !ev->id || !ev->type || (json_object_get(data, "recipient") && !ev->email) ||
	    (json_is_string(list) && !ev->group_ids);
	json_decref(doc);
	if (rc) {
		provider_event_free(ev);
		*why = "out of memory";
		return 500;
	}
	*why = "verified";
	return 200;
}

/* ---- making one ---- */

static void
mailgun_free(struct provider *p)
{
	struct mailgun *m = mg(p);

	batch_free(m->batch);	/* first: its thread sends through p->http */
	provider_http_free(p->http);
	if (m->webhook_key)
		explicit_bzero(m->webhook_key, m->webhook_key_len);
	free(m->webhook_key);
	free(m->domain);
	free(m);
}

static const struct provider_ops mailgun_ops = {
	.name = "mailgun",
	.group_ensure = group_ensure,
	.group_delete = group_delete,
	.contact_ensure = contact_ensure,
	.contact_delete = contact_delete,
	.member_add = member_add,
	.member_remove = member_remove,
	.list_groups = list_groups,
	.list_members = list_members,
	.group_owner = group_owner,
	.event_parse = event_parse,
	.free = mailgun_free,
};

/* "Authorization: Basic base64(api:<key>)" (malloc'd; wipe it). */
static char *
basic_auth(const char *key)
{
	char *plain = NULL, *b64, *line = NULL;

	if (asprintf(&plain, "api:%s", key) < 0)
		return NULL;
	b64 = base64_encode(plain, strlen(plain), NULL);
	explicit_bzero(plain, strlen(plain));
	free(plain);
	if (b64 && asprintf(&line, "Authorization: Basic %s", b64) < 0)
		line = NULL;
	if (b64)
		explicit_bzero(b64, strlen(b64));
	free(b64);
	return line;
}

static int
settings_check(const struct provider_options *o, char *err, size_t errlen)
{
	const char *why;

	if (!o->api_key || !o->api_key[0]) {
		snprintf(err, errlen, "no Mailgun API key: set MAILGUN_API_KEY or "
		    "--mailgun-api-key-file");
		return -EINVAL;
	}
	if (!o->domain || !o->domain[0]) {
		snprintf(err, errlen, "--provider mailgun needs --mailgun-domain, the domain "
		    "its mailing-list addresses are made under (such as lists.example.com)");
		return -EINVAL;
	}
	if ((why = mailgun_domain_check(o->domain)) != NULL) {
		snprintf(err, errlen, "--mailgun-domain %s: %s", o->domain, why);
		return -EINVAL;
	}
	return 0;
}

static int
start_batch(struct mailgun *m, const struct provider_options *o, double rate)
{
	struct batch_config bc = {
		.window_ms = (unsigned long)o->bulk_window_ms, .max_items = MAILGUN_BULK_MAX,
		.max_wait_ms = MAILGUN_BULK_MAX_WAIT_MS,
		.request_ms = (unsigned long)(1000.0 / rate) + 1, .send = bulk_send,
		.arg = &m->base,
	};
	static const char *const by_provider[] = { "provider", NULL };

	if (o->metrics)
		m->m_bulk = metric_get(metrics_counter(o->metrics,
		    "milo_provider_bulk_members_total", "Members sent in bulk requests "
		    "(Mailgun members.json) that the provider accepted.", by_provider),
		    (const char *const[]){ "mailgun" });
	return o->bulk_window_ms > 0 ? batch_new(&bc, &m->batch) : 0;
}

int
provider_mailgun_new(const struct provider_options *o, struct provider **out, char *err,
    size_t errlen)
{
	double rate = o->rate > 0 ? o->rate : MAILGUN_DEFAULT_RATE;
	struct provider_http_config hc = {
		.provider = "mailgun",
		.base_url = o->base_url ? o->base_url : MAILGUN_DEFAULT_BASE_URL,
		.user_agent = o->user_agent, .ca_file = o->ca_file, .rate = rate,
		.metrics = o->metrics, .write_budget_ms = o->write_budget_ms,
		.write_budget_arg = o->write_budget_arg,
	};
	struct mailgun *m;
	char *auth;
	int rc;

	*out = NULL;
	if ((rc = settings_check(o, err, errlen)) != 0)
		return rc;
	m = calloc(1, sizeof(*m));
	auth = basic_auth(o->api_key);
	if (!m || !auth || !(m->domain = lower(o->domain))) {
		if (auth)
			explicit_bzero(auth, strlen(auth));
		free(auth);
		free(m);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->base.ops = &mailgun_ops;
	hc.auth_header = auth;
	rc = provider_http_new(&hc, &m->base.http, err, errlen);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	if (rc == 0 && o->webhook_key) {
		if ((m->webhook_key = malloc(o->webhook_key_len ? o->webhook_key_len : 1))) {
			memcpy(m->webhook_key, o->webhook_key, o->webhook_key_len);
			m->webhook_key_len = o->webhook_key_len;
		} else {
			rc = -ENOMEM;
		}
	}
	if (rc == 0 && (rc = start_batch(m, o, rate)) != 0)
		snprintf(err, errlen, "cannot start the bulk sender: %s", strerror(-rc));
	if (rc) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		mailgun_free(&m->base);
		return rc;
	}
	*out = &m->base;
	return 0;
}
