/* provider.c -- the table of providers and what their implementations share */
#include "provider.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider_http.h"


static const struct {
	const char *name;
	int (*make)(const struct provider_options *o, struct provider **out, char *err,
	    size_t errlen);
} providers[] = {
	{ "resend", provider_resend_new },
	{ "mailgun", provider_mailgun_new },
};

const char *
provider_names(void)
{
	return "resend, mailgun";
}

int
provider_new(const char *name, const struct provider_options *o, struct provider **out,
    char *err, size_t errlen)
{
	*out = NULL;
	for (size_t i = 0; i < sizeof(providers) / sizeof(providers[0]); i++)
		if (strcmp(name, providers[i].name) == 0)
			return providers[i].make(o, out, err, errlen);
	snprintf(err, errlen, "unknown provider \"%s\": choose one of %s", name,
	    provider_names());
	return -ENOENT;
}

void
provider_free(struct provider *p)
{
	if (p)
		p->ops->free(p);
}

const char *
provider_change_name(enum provider_change c)
{
	static const char *const names[] = { "unchanged", "created", "adopted", "updated" };

	return (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "changed";
}

void
provider_error_free(struct provider_error *e)
{
	free(e->message);
	e->message = NULL;
	e->retry_after_ms = -1;
}

void
provider_event_free(struct provider_event *ev)
{
	free(ev->id);
	free(ev->type);
	free(ev->email);
	json_decref(ev->group_ids);
	free(ev->object_id);
	memset(ev, 0, sizeof(*ev));
	ev->unsubscribed = -1;
}

/* 409 "resource_locked" (Resend) and 429 say nothing was done: try again. */
static bool
transient(const struct provider_http_result *res)
{
	return res->status == 429 || res->status == 409 || res->status >= 500;
}

int
provider_fail(int rc, struct provider_http_result *res, struct provider_error *e)
{
	free(e->message);
	if (rc == -EIO) {
		if (asprintf(&e->message, "HTTP %ld %s: %s", res->status,
		    res->error_name ? res->error_name : "error",
		    res->message ? res->message : "") < 0)
			e->message = NULL;
	} else if (asprintf(&e->message, "%s", res->message ? res->message :
	    strerror(-rc)) < 0) {
		e->message = NULL;
	}
	e->retry_after_ms = res->retry_after_s >= 0 ? (long)(res->retry_after_s * 1000) : -1;
	if (rc == -EIO && (res->status == 401 || res->status == 403))
		rc = PROVIDER_UNAUTHORIZED;
	else if (rc == -EIO && !transient(res))
		rc = PROVIDER_REFUSED;
	else if (rc == -EIO || rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -EPROTO)
		rc = PROVIDER_RETRY;
	provider_http_result_free(res);
	return rc;
}

char *
provider_owned_name(const char *display_name, const char *ns, const char *name)
{
	char *s = NULL;

	if (asprintf(&s, "%s [%s/%s]", display_name ? display_name : name, ns, name) < 0)
		return NULL;
	return s;
}
