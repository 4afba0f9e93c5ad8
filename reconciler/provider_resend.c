/* provider_resend.c -- Resend: segments, contacts, contact segments, Svix-signed events */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsonparse.h"
#include "provider.h"
#include "provider_http.h"
#include "svix.h"

#define RESEND_DEFAULT_BASE_URL "https://api.resend.com"
/*
 * Requests per second: Resend's documented default team limit ("rate limit
 * of 2 requests per second by default", resend.com/changelog/api-rate-limit;
 * shared/reference/resend-and-svix.md 1.8). A higher limit is learned from
 * ratelimit-limit, up to --resend-rate-limit.
 */
#define RESEND_DEFAULT_RATE 2.0
#define RESEND_PAGE 100			/* list page size: the API's maximum */
#define RESEND_LIST_PAGES_MAX 1000	/* 100,000 segments: a bound on a runaway listing */
#define RESEND_PATH_MAX 700

struct resend {
	struct provider base;
	unsigned char *webhook_key;	/* the whsec_ secret's key, or NULL */
	size_t webhook_key_len;
};

static struct provider_http *
http(struct provider *p)
{
	return p->http;
}

/* One call whose answer carries nothing we need; a DELETE of what is gone succeeds. */
static int
simple_call(struct provider *p, const char *method, const char *path, const json_t *body,
    struct provider_error *e)
{
	struct provider_http_result res;
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc;

	if (body && !text)
		return -ENOMEM;
	rc = provider_http_call(http(p), method, path, text ? "application/json" : NULL, text,
	    text ? strlen(text) : 0, &res);
	free(text);
	if (rc == -EIO && res.status == 404 && strcmp(method, "DELETE") == 0)
		rc = 0;
	if (rc)
		return provider_fail(rc, &res, e);
	provider_http_result_free(&res);
	return 0;
}

/* A call whose answer we read: *res is kept on success (free it). */
static int
read_call(struct provider *p, const char *method, const char *path, const json_t *body,
    struct provider_http_result *res, struct provider_error *e)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc;

	if (body && !text)
		return -ENOMEM;
	rc = provider_http_call(http(p), method, path, text ? "application/json" : NULL, text,
	    text ? strlen(text) : 0, res);
	free(text);
	if (rc && !(rc == -EIO && res->status == 404))
		return provider_fail(rc, res, e);
	return rc;
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Looks through the segments (pages of 100) for the one that belongs to ns/name. */
static int
find_segment(struct provider *p, const char *ns, const char *name, char **id, char **have,
    struct provider_error *e)
{
	char suffix[600], path[RESEND_PATH_MAX], *after = NULL;
	int rc = 0;

	snprintf(suffix, sizeof(suffix), " [%s/%s]", ns, name);
	*id = *have = NULL;
	for (int page = 0; page < RESEND_LIST_PAGES_MAX && !*id; page++) {
		struct provider_http_result res;
		json_t *data, *seg;
		size_t i;
		bool more;

		snprintf(path, sizeof(path), "/segments?limit=%d%s%s", RESEND_PAGE,
		    after ? "&after=" : "", after ? after : "");
		free(after);
		after = NULL;
		if ((rc = read_call(p, "GET", path, NULL, &res, e)) != 0) {
			if (rc == -EIO)
				rc = provider_fail(rc, &res, e);
			return rc;
		}
		data = json_object_get(res.body, "data");
		json_array_foreach(data, i, seg) {
			const char *n = json_string_value(json_object_get(seg, "name"));
			const char *sid = json_string_value(json_object_get(seg, "id"));

			if (n && sid && ends_with(n, suffix) && !*id) {
				*id = strdup(sid);
				*have = strdup(n);
			}
			if (sid && i + 1 == json_array_size(data))
				after = strdup(sid);
		}
		more = json_is_true(json_object_get(res.body, "has_more"));
		provider_http_result_free(&res);
		if (!more || !after)
			break;
	}
	free(after);
	return 0;
}

/* One listed item: its JSON object (borrowed) for the caller's callback. */
typedef int (*page_item_fn)(json_t *item, void *arg);

/*
 * Walks a Resend list with its largest page (limit=100) and the after
 * cursor (the last id of a page) while has_more says so; fn sees every
 * item, and a nonzero return stops the walk (returned). path already
 * holds the query's start ("/segments?" or "/contacts?segment_id=X&").
 * A 404 is -ENOENT.
 */
static int
list_pages(struct provider *p, const char *path, page_item_fn fn, void *arg,
    struct provider_error *e)
{
	char url[RESEND_PATH_MAX], *after = NULL;
	int rc = 0, page;
	bool more = true;

	for (page = 0; more && rc == 0 && page < RESEND_LIST_PAGES_MAX; page++) {
		struct provider_http_result res;
		json_t *data, *item;
		const char *last = NULL;
		size_t i;

		if (snprintf(url, sizeof(url), "%slimit=%d%s%s", path, RESEND_PAGE,
		    after ? "&after=" : "", after ? after : "") >= (int)sizeof(url)) {
			rc = -ENAMETOOLONG;
			break;
		}
		free(after);
		after = NULL;
		if ((rc = read_call(p, "GET", url, NULL, &res, e)) != 0) {
			if (rc == -EIO) {	/* a 404: the list's owner is gone */
				provider_http_result_free(&res);
				rc = -ENOENT;
			}
			break;
		}
		data = json_object_get(res.body, "data");
		json_array_foreach(data, i, item) {
			const char *id = json_string_value(json_object_get(item, "id"));

			if (rc == 0 && json_is_object(item) && id)
				rc = fn(item, arg);
			last = id;
		}
		more = json_is_true(json_object_get(res.body, "has_more"));
		/* The next page starts after this one's last item (1.5 of the reference). */
		if (rc == 0 && more && !(last && (after = provider_http_escape(last))))
			rc = last ? -ENOMEM : -EPROTO;
		provider_http_result_free(&res);
	}
	free(after);
	if (rc == 0 && more)
		rc = -EOVERFLOW;	/* past RESEND_LIST_PAGES_MAX pages: not the whole list */
	return rc;
}

struct list_ctx {
	provider_group_fn group_fn;
	provider_member_fn member_fn;
	void *arg;
};

static int
group_item(json_t *item, void *arg)
{
	struct list_ctx *c = arg;
	struct provider_group_info g = {
		.id = json_string_value(json_object_get(item, "id")),
		.name = json_string_value(json_object_get(item, "name")),
	};

	if (!g.name)
		g.name = "";
	return c->group_fn(&g, c->arg);
}

/* GET /segments?limit=100[&after=…]: every segment of the account, ours or not. */
static int
list_groups(struct provider *p, provider_group_fn fn, void *arg, struct provider_error *e)
{
	struct list_ctx c = { .group_fn = fn, .arg = arg };

	return list_pages(p, "/segments?", group_item, &c, e);
}

static int
member_item(json_t *item, void *arg)
{
	struct list_ctx *c = arg;
	json_t *unsub = json_object_get(item, "unsubscribed");
	struct provider_member_info m = {
		.contact_id = json_string_value(json_object_get(item, "id")),
		.email = json_string_value(json_object_get(item, "email")),
		.given_name = json_string_value(json_object_get(item, "first_name")),
		.family_name = json_string_value(json_object_get(item, "last_name")),
		.unsubscribed = json_is_boolean(unsub) ? json_is_true(unsub) : -1,
	};

	if (!m.email)
		m.email = "";
	return c->member_fn(&m, c->arg);
}

/* GET /contacts?segment_id=X&limit=100[&after=…] (1.5 of the reference). */
static int
list_members(struct provider *p, const char *group_id, provider_member_fn fn, void *arg,
    struct provider_error *e)
{
	struct list_ctx c = { .member_fn = fn, .arg = arg };
	char path[RESEND_PATH_MAX], *esc = provider_http_escape(group_id);
	int rc;

	if (!esc)
		return -ENOMEM;
	rc = snprintf(path, sizeof(path), "/contacts?segment_id=%s&", esc) >= (int)sizeof(path) ?
	    -ENAMETOOLONG : list_pages(p, path, member_item, &c, e);
	free(esc);
	return rc;
}

/*
 * "<display name> [<namespace>/<name>]": the suffix provider_owned_name()
 * puts on every segment this reconciler makes. Namespaces and names are
 * DNS labels and subdomains, so neither holds a space, "/" or "]".
 */
static int
group_owner(struct provider *p, const struct provider_group_info *g, char *ns, size_t ns_len,
    char *name, size_t name_len)
{
	const char *s = g->name, *open, *slash;
	size_t len = s ? strlen(s) : 0, a, b;

	(void)p;
	if (len < 6 || s[len - 1] != ']' || !(open = strrchr(s, '[')) || open == s ||
	    open[-1] != ' ' || !(slash = memchr(open, '/', (size_t)(s + len - open))))
		return 0;
	a = (size_t)(slash - open - 1);
	b = (size_t)(s + len - 1 - slash - 1);
	if (!a || !b || a >= ns_len || b >= name_len || memchr(slash + 1, '/', b) ||
	    memchr(open + 1, ' ', a) || memchr(slash + 1, ' ', b))
		return 0;
	memcpy(ns, open + 1, a);
	ns[a] = '\0';
	memcpy(name, slash + 1, b);
	name[b] = '\0';
	return 1;
}

/*
 * PATCH path with body (taken); *gone when the provider no longer has the
 * object (404), which the caller then makes again.
 */
static int
patch_call(struct provider *p, const char *path, json_t *body, bool *gone,
    struct provider_error *e)
{
	struct provider_http_result res;
	int rc;

	*gone = false;
	if (!body)
		return -ENOMEM;
	rc = read_call(p, "PATCH", path, body, &res, e);
	json_decref(body);
	if (rc == -EIO)
		*gone = true;
	if (rc == -EIO || rc == 0)
		provider_http_result_free(&res);
	return rc == -EIO ? 0 : rc;
}

/* PATCH /segments/{id} {name}. */
static int
segment_rename(struct provider *p, const char *id, const char *want, bool *gone,
    struct provider_error *e)
{
	char path[RESEND_PATH_MAX];

	snprintf(path, sizeof(path), "/segments/%s", id);
	return patch_call(p, path, json_pack("{s:s}", "name", want), gone, e);
}

static int
group_ensure(struct provider *p, const struct provider_group *g, char **id,
    enum provider_change *did, struct provider_error *e)
{
	struct provider_http_result res;
	char *want = provider_owned_name(g->display_name, g->namespace, g->name), *have = NULL;
	json_t *body;
	bool gone = true;
	int rc;

	*id = NULL;
	*did = PROVIDER_UNCHANGED;
	if (!want)
		return -ENOMEM;
	if (g->id) {
		rc = segment_rename(p, g->id, want, &gone, e);
		if (rc || !gone) {
			*did = PROVIDER_UPDATED;
			*id = rc ? NULL : strdup(g->id);
			free(want);
			return rc ? rc : *id ? 0 : -ENOMEM;
		}
	}
	rc = find_segment(p, g->namespace, g->name, id, &have, e);
	if (rc == 0 && *id) {
		/* Adopted: an earlier attempt made it and crashed before the status write. */
		*did = PROVIDER_ADOPTED;
		if (strcmp(have, want) != 0)
			rc = segment_rename(p, *id, want, &gone, e);
	} else if (rc == 0) {
		/*
		 * Sent once: a lost reply may hide a segment made all the same,
		 * and the next attempt's find_segment() adopts it instead of
		 * making a second.
		 */
		body = json_pack("{s:s}", "name", want);
		rc = body ? read_call(p, "POST", "/segments", body, &res, e) : -ENOMEM;
		json_decref(body);
		if (rc == -EIO)
			rc = provider_fail(rc, &res, e);
		if (rc == 0) {
			const char *sid = json_string_value(json_object_get(res.body, "id"));

			*id = sid ? strdup(sid) : NULL;
			*did = PROVIDER_CREATED;
			provider_http_result_free(&res);
			if (!sid) {
				free(e->message);
				e->message = strdup("the provider made a segment but sent no id");
				rc = PROVIDER_RETRY;
			}
		}
	}
	free(have);
	free(want);
	if (rc) {
		free(*id);
		*id = NULL;
	}
	return rc;
}

static int
group_delete(struct provider *p, const struct provider_group *g, struct provider_error *e)
{
	char path[RESEND_PATH_MAX];

	if (!g->id)
		return 0;
	snprintf(path, sizeof(path), "/segments/%s", g->id);
	return simple_call(p, "DELETE", path, NULL, e);
}

/*
 * A contact's fields, each only when it has a value: Resend types the
 * names as strings, so an absent one is left out on a create and sent as
 * "" (cleared) on an update, never as JSON null.
 */
static json_t *
contact_body(const struct provider_contact *c, bool update)
{
	json_t *body = json_pack("{s:s}", "email", c->email);

	if (!body)
		return NULL;
	if (c->given_name || update)
		json_object_set_new(body, "first_name", json_string(c->given_name ?
		    c->given_name : ""));
	if (c->family_name || update)
		json_object_set_new(body, "last_name", json_string(c->family_name ?
		    c->family_name : ""));
	return body;
}

/* PATCH /contacts/{id} with the contact's fields. */
static int
contact_patch(struct provider *p, const char *id, const struct provider_contact *c,
    bool *gone, struct provider_error *e)
{
	char path[RESEND_PATH_MAX];

	snprintf(path, sizeof(path), "/contacts/%s", id);
	return patch_call(p, path, contact_body(c, true), gone, e);
}

static bool
same_text(const json_t *have, const char *want)
{
	const char *h = json_string_value(have);

	return strcmp(h ? h : "", want ? want : "") == 0;
}

static int
contact_ensure(struct provider *p, const struct provider_contact *c,
    const char *const *group_ids, size_t n_groups, char **id, enum provider_change *did,
    struct provider_error *e)
{
	struct provider_http_result res;
	char path[RESEND_PATH_MAX], *esc;
	json_t *body;
	bool gone = true;
	int rc;

	(void)group_ids;	/* Resend's segments hold the contact by id */
	(void)n_groups;
	*id = NULL;
	*did = PROVIDER_UNCHANGED;
	/* Known: updated in place, the email included, so its segments stay. */
	if (c->id) {
		rc = contact_patch(p, c->id, c, &gone, e);
		if (rc)
			return rc;
		if (!gone) {
			*did = PROVIDER_UPDATED;
			*id = strdup(c->id);
			return *id ? 0 : -ENOMEM;
		}
	}
	if (!(esc = provider_http_escape(c->email)))
		return -ENOMEM;
	snprintf(path, sizeof(path), "/contacts/%s", esc);
	free(esc);
	rc = read_call(p, "GET", path, NULL, &res, e);
	if (rc == 0) {
		const char *cid = json_string_value(json_object_get(res.body, "id"));

		/* The provider knows this address already: adopt it, fix the names. */
		*id = cid ? strdup(cid) : NULL;
		*did = PROVIDER_ADOPTED;
		if (*id && (!same_text(json_object_get(res.body, "first_name"), c->given_name) ||
		    !same_text(json_object_get(res.body, "last_name"), c->family_name)))
			rc = contact_patch(p, *id, c, &gone, e);
		provider_http_result_free(&res);
		if (!cid)
			rc = PROVIDER_RETRY;
		goto out;
	}
	if (rc != -EIO)
		return rc;
	provider_http_result_free(&res);
	body = contact_body(c, false);
	rc = body ? read_call(p, "POST", "/contacts", body, &res, e) : -ENOMEM;
	json_decref(body);
	if (rc == -EIO)
		rc = provider_fail(rc, &res, e);
	if (rc == 0) {
		const char *cid = json_string_value(json_object_get(res.body, "id"));

		*id = cid ? strdup(cid) : NULL;
		*did = PROVIDER_CREATED;
		provider_http_result_free(&res);
		if (!cid) {
			free(e->message);
			e->message = strdup("the provider made a contact but sent no id");
			rc = PROVIDER_RETRY;
		}
	}
out:
	if (rc) {
		free(*id);
		*id = NULL;
	}
	return rc;
}

static int
contact_delete(struct provider *p, const struct provider_contact *c,
    const char *const *group_ids, size_t n_groups, struct provider_error *e)
{
	char path[RESEND_PATH_MAX];

	(void)group_ids;
	(void)n_groups;
	if (!c->id)
		return 0;
	snprintf(path, sizeof(path), "/contacts/%s", c->id);
	return simple_call(p, "DELETE", path, NULL, e);
}

static int
contact_segment(struct provider *p, const char *method, const char *group_id,
    const struct provider_contact *c, struct provider_error *e)
{
	char path[RESEND_PATH_MAX];

	if (!c->id || !group_id)
		return -EINVAL;
	snprintf(path, sizeof(path), "/contacts/%s/segments/%s", c->id, group_id);
	return simple_call(p, method, path, NULL, e);
}

static int
member_add(struct provider *p, const char *group_id, const struct provider_contact *c,
    struct provider_error *e)
{
	return contact_segment(p, "POST", group_id, c, e);
}

static int
member_remove(struct provider *p, const char *group_id, const struct provider_contact *c,
    struct provider_error *e)
{
	return contact_segment(p, "DELETE", group_id, c, e);
}

/* "2024-11-22T23:41:12.126Z" (Resend's created_at) in Unix milliseconds; 0 if unreadable. */
static long long
rfc3339_ms(const char *s)
{
	struct tm tm = { 0 };
	const char *rest;
	long long ms = 0;

	if (!s || !(rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return 0;
	if (*rest == '.') {
		int digits = 0;

		for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*rest - '0');
		for (; digits < 3; digits++)
			ms *= 10;
	}
	if (*rest != 'Z' && strncmp(rest, "+00:00", 6) != 0)
		return 0;
	return (long long)timegm(&tm) * 1000 + ms;
}

static char *
dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/*
 * A Resend webhook: Svix-signed (svix-id, svix-timestamp, svix-signature;
 * five minutes of tolerance), {type, created_at, data}. The recipient is
 * data.email (contact events) or data.to[0] (email events).
 */
static int
event_parse(struct provider *p, provider_header_fn header, const void *arg, const char *body,
    size_t len, struct provider_event *ev, const char **why)
{
	struct resend *r = (struct resend *)p;
	const char *id = header(arg, "svix-id"), *type, *email;
	json_t *doc, *data;
	int rc;

	memset(ev, 0, sizeof(*ev));
	ev->unsubscribed = -1;
	rc = svix_verify(r->webhook_key, r->webhook_key_len, id, header(arg, "svix-timestamp"),
	    header(arg, "svix-signature"), body, len, time(NULL), SVIX_TOLERANCE_S);
	if (rc != SVIX_OK) {
		*why = svix_strerror(rc);
		return 401;
	}
	doc = jsonparse_load(body, len, 0, NULL);
	type = json_string_value(json_object_get(doc, "type"));
	data = json_object_get(doc, "data");
	if (!type || !json_is_object(data)) {
		json_decref(doc);
		*why = "not a Resend event";
		return 400;
	}
	email = json_string_value(json_object_get(data, "email"));
	if (!email && json_is_array(json_object_get(data, "to")))
		email = json_string_value(json_array_get(json_object_get(data, "to"), 0));
	if (strncmp(type, "contact.", 8) == 0 && strcmp(type, "contact.deleted") != 0 &&
	    json_is_boolean(json_object_get(data, "unsubscribed")))
		ev->unsubscribed = json_is_true(json_object_get(data, "unsubscribed"));
	ev->id = strdup(id);
	ev->type = strdup(type);
	ev->email = dup_or_null(email);
	ev->object_id = dup_or_null(json_string_value(json_object_get(data, "id")));
	ev->time_ms = rfc3339_ms(json_string_value(json_object_get(doc, "created_at")));
	if (json_is_array(json_object_get(data, "segment_ids")))
		ev->group_ids = json_incref(json_object_get(data, "segment_ids"));
	json_decref(doc);
	if (!ev->id || !ev->type || (email && !ev->email)) {
		provider_event_free(ev);
		*why = "out of memory";
		return 500;
	}
	*why = "verified";
	return 200;
}

static void
resend_free(struct provider *p)
{
	struct resend *r = (struct resend *)p;

	provider_http_free(p->http);
	svix_key_free(r->webhook_key, r->webhook_key_len);
	free(r);
}

static const struct provider_ops resend_ops = {
	.name = "resend",
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
	.free = resend_free,
};

int
provider_resend_new(const struct provider_options *o, struct provider **out, char *err,
    size_t errlen)
{
	struct resend *r;
	char *auth = NULL;
	struct provider_http_config hc = {
		.provider = "resend",
		.base_url = o->base_url ? o->base_url : RESEND_DEFAULT_BASE_URL,
		.user_agent = o->user_agent, .ca_file = o->ca_file,
		.rate = o->rate > 0 ? o->rate : RESEND_DEFAULT_RATE, .metrics = o->metrics,
		.write_budget_ms = o->write_budget_ms, .write_budget_arg = o->write_budget_arg,
	};
	int rc;

	*out = NULL;
	if (!o->api_key || !o->api_key[0]) {
		snprintf(err, errlen, "no Resend API key: set RESEND_API_KEY or "
		    "--resend-api-key-file");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r || asprintf(&auth, "Authorization: Bearer %s", o->api_key) < 0) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	hc.auth_header = auth;
	rc = provider_http_new(&hc, &r->base.http, err, errlen);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	r->base.ops = &resend_ops;
	if (rc == 0 && o->webhook_key) {
		r->webhook_key = malloc(o->webhook_key_len);
		if (r->webhook_key) {
			memcpy(r->webhook_key, o->webhook_key, o->webhook_key_len);
			r->webhook_key_len = o->webhook_key_len;
		} else {
			rc = -ENOMEM;
			snprintf(err, errlen, "out of memory");
		}
	}
	if (rc) {
		resend_free(&r->base);
		return rc;
	}
	*out = &r->base;
	return 0;
}
