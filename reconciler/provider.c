/* provider.c -- the Resend side of each kind: segments, contacts, contact segments */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reconciler.h"
#include "resend.h"

#define PROVIDER_LIST_PAGES_MAX 1000	/* 100,000 segments: a bound on a runaway listing */

/* "HTTP 422 validation_error: <message>" or the transport error. */
static char *
why_of(int rc, const struct resend_result *res)
{
	char *s = NULL;

	if (rc == -EIO) {
		if (asprintf(&s, "HTTP %ld %s: %s", res->status,
		    res->error_name ? res->error_name : "error",
		    res->message ? res->message : "") < 0)
			s = NULL;
	} else if (asprintf(&s, "%s", res->message ? res->message : strerror(-rc)) < 0) {
		s = NULL;
	}
	return s;
}

static bool
refusal(long status)
{
	return status >= 400 && status < 500 && status != 429 && status != 409;
}

/* The reason in *why; a refusal (see reconciler.h) told apart from what may pass. */
static int
fail(int rc, struct resend_result *res, char **why)
{
	if (why)
		*why = why_of(rc, res);
	if (rc == -EIO && refusal(res->status))
		rc = res->status == 401 || res->status == 403 ? PROVIDER_UNAUTHORIZED :
		    PROVIDER_REFUSED;
	resend_result_free(res);
	return rc;
}

/*
 * One call whose answer carries nothing we need. A DELETE of what the
 * provider does not have succeeds: the provider is already as we want it.
 */
static int
simple_call(struct resend *p, const char *method, const char *path, const json_t *body,
    char **why)
{
	struct resend_result res;
	int rc = resend_call(p, method, path, body, &res);

	if (rc == -EIO && res.status == 404 && strcmp(method, "DELETE") == 0)
		rc = 0;
	if (rc)
		return fail(rc, &res, why);
	resend_result_free(&res);
	return 0;
}

bool
provider_error_is_permanent(int rc, long status)
{
	return rc == PROVIDER_REFUSED || rc == PROVIDER_UNAUTHORIZED ||
	    (rc == -EIO && refusal(status));
}

char *
provider_segment_name(const char *display_name, const char *ns, const char *name)
{
	char *s = NULL;

	if (asprintf(&s, "%s [%s/%s]", display_name ? display_name : name, ns, name) < 0)
		return NULL;
	return s;
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Looks through the segments for one that belongs to ns/name. */
static int
find_segment(struct resend *p, const char *ns, const char *name, char **id, char **have,
    char **why)
{
	char suffix[600], path[300], *after = NULL;
	int rc = 0;

	snprintf(suffix, sizeof(suffix), " [%s/%s]", ns, name);
	*id = *have = NULL;
	for (int page = 0; page < PROVIDER_LIST_PAGES_MAX && !*id; page++) {
		struct resend_result res;
		json_t *data, *seg;
		size_t i;
		bool more;

		snprintf(path, sizeof(path), "/segments?limit=%d%s%s", RESEND_PAGE,
		    after ? "&after=" : "", after ? after : "");
		rc = resend_call(p, "GET", path, NULL, &res);
		free(after);
		after = NULL;
		if (rc)
			return fail(rc, &res, why);
		data = json_object_get(res.body, "data");
		json_array_foreach(data, i, seg) {
			const char *n = json_string_value(json_object_get(seg, "name"));
			const char *sid = json_string_value(json_object_get(seg, "id"));

			if (n && sid && ends_with(n, suffix) && !*id) {
				*id = strdup(sid);
				*have = strdup(n);
			}
			if (sid && i + 1 == json_array_size(data)) {
				free(after);
				after = strdup(sid);
			}
		}
		more = json_is_true(json_object_get(res.body, "has_more"));
		resend_result_free(&res);
		if (!more || !after)
			break;
	}
	free(after);
	return 0;
}

int
provider_segment_ensure(struct resend *p, const char *want_name, const char *ns,
    const char *name, char **id, bool *created, char **why)
{
	struct resend_result res;
	char *have = NULL;
	json_t *body;
	int rc;

	*created = false;
	rc = find_segment(p, ns, name, id, &have, why);
	if (rc)
		return rc;
	if (*id) {
		/* Adopted (a crash between create and the status write). */
		if (strcmp(have, want_name) != 0)
			rc = provider_segment_rename(p, *id, want_name, why);
		free(have);
		return rc;
	}
	body = json_pack("{s:s}", "name", want_name);
	/*
	 * Not retried blindly: a lost reply may hide a segment made all the
	 * same, and a second POST would make a duplicate. The reconcile is
	 * retried instead, and find_segment() above adopts what was made.
	 */
	rc = body ? resend_call_flags(p, "POST", "/segments", body, RESEND_NOT_IDEMPOTENT,
	    &res) : -ENOMEM;
	json_decref(body);
	if (rc)
		return fail(rc, &res, why);
	if (!json_string_value(json_object_get(res.body, "id"))) {
		resend_result_free(&res);
		*why = strdup("the provider created a segment but returned no id");
		return -EPROTO;
	}
	*id = strdup(json_string_value(json_object_get(res.body, "id")));
	*created = true;
	resend_result_free(&res);
	return *id ? 0 : -ENOMEM;
}

int
provider_segment_rename(struct resend *p, const char *id, const char *want_name, char **why)
{
	char path[300];
	json_t *body = json_pack("{s:s}", "name", want_name);
	int rc;

	snprintf(path, sizeof(path), "/segments/%s", id);
	rc = body ? simple_call(p, "PATCH", path, body, why) : -ENOMEM;
	json_decref(body);
	return rc;
}

int
provider_segment_delete(struct resend *p, const char *id, char **why)
{
	char path[300];

	snprintf(path, sizeof(path), "/segments/%s", id);
	return simple_call(p, "DELETE", path, NULL, why);
}

static json_t *
contact_body(const char *email, const char *given, const char *family)
{
	return json_pack("{s:s, s:s?, s:s?}", "email", email, "first_name", given,
	    "last_name", family);
}

static bool
same_text(const json_t *have, const char *want)
{
	const char *h = json_string_value(have);

	return strcmp(h ? h : "", want ? want : "") == 0;
}

/* PATCH /contacts/{id}; *gone when the provider no longer has it. */
static int
contact_patch(struct resend *p, const char *id, const char *email, const char *given,
    const char *family, bool *gone, char **why)
{
	struct resend_result res;
	char path[300];
	json_t *body = contact_body(email, given, family);
	int rc;

	*gone = false;
	snprintf(path, sizeof(path), "/contacts/%s", id);
	rc = body ? resend_call(p, "PATCH", path, body, &res) : -ENOMEM;
	json_decref(body);
	if (rc == -EIO && res.status == 404) {
		*gone = true;
		resend_result_free(&res);
		return 0;
	}
	if (rc)
		return fail(rc, &res, why);
	resend_result_free(&res);
	return 0;
}

int
provider_contact_ensure(struct resend *p, const char *known_id, const char *email,
    const char *given, const char *family, char **id, bool *created, char **why)
{
	struct resend_result res;
	char path[600], *esc;
	json_t *body;
	bool gone = true;
	int rc;

	*created = false;
	*id = NULL;
	/* Known: update in place, the email included, so segment memberships stay. */
	if (known_id) {
		rc = contact_patch(p, known_id, email, given, family, &gone, why);
		if (rc)
			return rc;
		if (!gone) {
			*id = strdup(known_id);
			return *id ? 0 : -ENOMEM;
		}
	}
	esc = resend_escape(email);
	if (!esc)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/contacts/%s", esc);
	free(esc);
	rc = resend_call(p, "GET", path, NULL, &res);
	if (rc == 0 && json_string_value(json_object_get(res.body, "id"))) {
		/* The provider already knows this address: adopt it, fix the names. */
		*id = strdup(json_string_value(json_object_get(res.body, "id")));
		if (*id && (!same_text(json_object_get(res.body, "first_name"), given) ||
		    !same_text(json_object_get(res.body, "last_name"), family))) {
			resend_result_free(&res);
			rc = contact_patch(p, *id, email, given, family, &gone, why);
			return rc;
		}
		resend_result_free(&res);
		return *id ? 0 : -ENOMEM;
	}
	if (!(rc == -EIO && res.status == 404))
		return fail(rc ? rc : -EPROTO, &res, why);
	resend_result_free(&res);
	body = contact_body(email, given, family);
	rc = body ? resend_call(p, "POST", "/contacts", body, &res) : -ENOMEM;
	json_decref(body);
	if (rc)
		return fail(rc, &res, why);
	if (json_string_value(json_object_get(res.body, "id")))
		*id = strdup(json_string_value(json_object_get(res.body, "id")));
	resend_result_free(&res);
	if (!*id) {
		*why = strdup("the provider created a contact but returned no id");
		return -EPROTO;
	}
	*created = true;
	return 0;
}

int
provider_contact_delete(struct resend *p, const char *id, char **why)
{
	char path[300];

	snprintf(path, sizeof(path), "/contacts/%s", id);
	return simple_call(p, "DELETE", path, NULL, why);
}

static int
contact_segment(struct resend *p, const char *method, const char *contact_id,
    const char *segment_id, char **why)
{
	char path[600];

	snprintf(path, sizeof(path), "/contacts/%s/segments/%s", contact_id, segment_id);
	return simple_call(p, method, path, NULL, why);
}

int
provider_membership_add(struct resend *p, const char *contact_id, const char *segment_id,
    char **why)
{
	return contact_segment(p, "POST", contact_id, segment_id, why);
}

int
provider_membership_remove(struct resend *p, const char *contact_id,
    const char *segment_id, char **why)
{
	return contact_segment(p, "DELETE", contact_id, segment_id, why);
}
