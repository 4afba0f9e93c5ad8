/* events.c -- POST /webhooks/<provider>: verified provider events become Kubernetes Events */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "log.h"
#include "provider.h"
#include "reconciler.h"

struct provider_events {
	struct reconciler *r;
	pthread_mutex_t lock;
	/*
	 * The last RECONCILER_SEEN_IDS delivery ids, a ring: a redelivery
	 * while this process runs is dropped without an API call. Across
	 * restarts the Contact's status.providerEvents keeps the newest ones.
	 */
	char *seen[RECONCILER_SEEN_IDS];
	size_t next;
};

int
provider_events_new(struct reconciler *r, struct provider_events **out)
{
	struct provider_events *e = calloc(1, sizeof(*e));

	*out = NULL;
	if (!e)
		return -ENOMEM;
	e->r = r;
	pthread_mutex_init(&e->lock, NULL);
	*out = e;
	return 0;
}

void
provider_events_free(struct provider_events *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < RECONCILER_SEEN_IDS; i++)
		free(e->seen[i]);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

/*
 * True when id was seen before; remembers it otherwise. A linear scan of a
 * few thousand short strings per delivery is cheap beside the HMAC.
 */
static bool
seen_before(struct provider_events *e, const char *id)
{
	bool seen = false;

	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < RECONCILER_SEEN_IDS && !seen; i++)
		seen = e->seen[i] && strcmp(e->seen[i], id) == 0;
	if (!seen) {
		free(e->seen[e->next]);
		e->seen[e->next] = strdup(id);
		e->next = (e->next + 1) % RECONCILER_SEEN_IDS;
	}
	pthread_mutex_unlock(&e->lock);
	return seen;
}

/* Forgets id again: a delivery we could not use must be accepted when it comes back. */
static void
forget(struct provider_events *e, const char *id)
{
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < RECONCILER_SEEN_IDS; i++) {
		if (e->seen[i] && strcmp(e->seen[i], id) == 0) {
			free(e->seen[i]);
			e->seen[i] = NULL;
		}
	}
	pthread_mutex_unlock(&e->lock);
}

/* "contact.updated" -> "ProviderContactUpdated"; "unsubscribed" -> "ProviderUnsubscribed". */
static void
event_reason(const char *type, char *out, size_t len)
{
	size_t o = 0;
	bool upper = true;

	o = (size_t)snprintf(out, len, "Provider");
	for (const char *p = type; *p && o + 1 < len; p++) {
		if (*p == '.' || *p == '_' || *p == '-') {
			upper = true;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9')))
			continue;
		out[o++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
		upper = false;
	}
	out[o] = '\0';
}

/*
 * The Contact with this address gets the Event, and so do its memberships
 * in the groups the event names. 1: recorded, 0: no such Contact, 2: the
 * Contact's status says it is a repeat or older than what it holds, < 0:
 * the API server failed us (the provider should deliver it again).
 */
static int
record_for_email(struct provider_events *e, const struct provider_event *ev,
    const char *type, const char *reason, const char *note)
{
	char *ns = NULL, *name = NULL;
	int found = 0, rc;

	/* Emails are unique cluster-wide (the webhook sees to it): one match at most. */
	rc = cache_contact_by_email(e->r->cache, ev->email, NULL, NULL, &ns, &name);
	if (rc == 1) {
		rc = reconciler_provider_event(e->r, ns, name, ev, type, reason, note);
		if (rc == 0) {
			found = 1;
			reconciler_membership_events(e->r, ns, name, ev->group_ids, type, reason,
			    note);
		} else if (rc == -EALREADY) {
			found = 2;
		} else if (rc != -ENOENT) {
			found = -1;
		}
	} else if (rc < 0) {
		found = -1;
	}
	free(ns);
	free(name);
	return found;
}

int
provider_events_handle(struct provider_events *e, provider_header_fn header, const void *arg,
    const char *body, size_t len, const char **why)
{
	struct provider *p = e->r->provider;
	struct provider_event ev;
	char reason[128], note[1024];
	int status, found;

	status = p->ops->event_parse(p, header, arg, body, len, &ev, why);
	if (status != 200)
		return status;
	if (seen_before(e, ev.id)) {
		provider_event_free(&ev);
		*why = "already received";
		return 200;
	}
	event_reason(ev.type, reason, sizeof(reason));
	snprintf(note, sizeof(note), "%s from %s%s%s%s", ev.type, p->ops->name,
	    ev.unsubscribed == 1 ? ": the recipient unsubscribed" : "",
	    ev.object_id ? ", provider id " : "", ev.object_id ? ev.object_id : "");
	found = ev.email ? record_for_email(e, &ev, ev.unsubscribed == 1 ? "Warning" : "Normal",
	    reason, note) : 0;
	if (found < 0) {
		/* Not recorded: accept the redelivery, and ask for one. */
		forget(e, ev.id);
		provider_event_free(&ev);
		*why = "the event could not be recorded now; deliver it again";
		return 503;
	}
	if (found == 0)
		log_info("provider event for no known Contact",
		    LOG_STR("provider", p->ops->name), LOG_STR("id", ev.id),
		    LOG_STR("type", ev.type), LOG_STR("email", ev.email));
	else if (found == 2)
		log_info("provider event ignored: already recorded or older than the last one",
		    LOG_STR("provider", p->ops->name), LOG_STR("id", ev.id),
		    LOG_STR("type", ev.type));
	*why = found == 2 ? "already received" : "recorded";
	provider_event_free(&ev);
	return 200;
}
