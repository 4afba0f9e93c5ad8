/* events.c -- POST /webhooks/resend: verified provider events become Kubernetes Events */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "jsonparse.h"
#include "log.h"
#include "reconciler.h"
#include "svix.h"

struct provider_events {
	struct reconciler *r;
	unsigned char *key;
	size_t key_len;
	pthread_mutex_t lock;
	/* The last RECONCILER_SEEN_IDS svix-ids, a ring: a redelivery is dropped. */
	char *seen[RECONCILER_SEEN_IDS];
	size_t next;
};

int
provider_events_new(struct reconciler *r, const unsigned char *secret, size_t secret_len,
    struct provider_events **out)
{
	struct provider_events *e = calloc(1, sizeof(*e));

	*out = NULL;
	if (!e)
		return -ENOMEM;
	e->r = r;
	e->key = malloc(secret_len);
	if (!e->key) {
		free(e);
		return -ENOMEM;
	}
	memcpy(e->key, secret, secret_len);
	e->key_len = secret_len;
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
	svix_key_free(e->key, e->key_len);
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

/* "contact.updated" -> "ProviderContactUpdated"; "email.delivered" -> "ProviderEmailDelivered". */
static void
event_reason(const char *type, char *out, size_t len)
{
	size_t o = 0;
	bool upper = true;

	o = (size_t)snprintf(out, len, "Provider");
	for (const char *p = type; *p && o + 1 < len; p++) {
		if (*p == '.' || *p == '_') {
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
 * in the segments the event names.
 */
static int
record_for_email(struct provider_events *e, const char *email, const json_t *segment_ids,
    const char *type, const char *reason, const char *note, int unsubscribed)
{
	char *ns = NULL, *name = NULL;
	int found = 0, rc;

	/* Emails are unique cluster-wide (the webhook sees to it): one match at most. */
	rc = cache_contact_by_email(e->r->cache, email, NULL, NULL, &ns, &name);
	if (rc == 1 &&
	    reconciler_contact_event(e->r, ns, name, type, reason, note, unsubscribed) == 0) {
		found = 1;
		reconciler_membership_events(e->r, ns, name, segment_ids, type, reason, note);
	}
	free(ns);
	free(name);
	return found;
}

int
provider_events_handle(struct provider_events *e, const char *id, const char *timestamp,
    const char *signature, const char *body, size_t len, const char **why)
{
	json_t *doc, *data;
	const char *type, *email;
	char reason[128], note[1024];
	int unsubscribed = -1, rc;

	rc = svix_verify(e->key, e->key_len, id, timestamp, signature, body, len, time(NULL),
	    SVIX_TOLERANCE_S);
	if (rc != SVIX_OK) {
		*why = svix_strerror(rc);
		return 401;
	}
	if (seen_before(e, id)) {
		*why = "already received";
		return 200;
	}
	doc = jsonparse_load(body, len, 0, NULL);
	type = json_string_value(json_object_get(doc, "type"));
	data = json_object_get(doc, "data");
	if (!type || !json_is_object(data)) {
		json_decref(doc);
		*why = "not a Resend event";
		forget(e, id);
		return 400;
	}
	event_reason(type, reason, sizeof(reason));
	email = json_string_value(json_object_get(data, "email"));
	if (!email && json_is_array(json_object_get(data, "to")))
		email = json_string_value(json_array_get(json_object_get(data, "to"), 0));
	if (strncmp(type, "contact.", 8) == 0 && strcmp(type, "contact.deleted") != 0 &&
	    json_is_boolean(json_object_get(data, "unsubscribed")))
		unsubscribed = json_is_true(json_object_get(data, "unsubscribed"));
	snprintf(note, sizeof(note), "%s from the provider%s%s%s", type,
	    unsubscribed == 1 ? ": the recipient unsubscribed" : "",
	    json_string_value(json_object_get(data, "id")) ? ", provider id " : "",
	    json_string_value(json_object_get(data, "id")) ?
	    json_string_value(json_object_get(data, "id")) : "");
	if (!email || !record_for_email(e, email, json_object_get(data, "segment_ids"),
	    unsubscribed == 1 ? "Warning" : "Normal",
	    reason, note, unsubscribed == 1 ? 1 : unsubscribed == 0 ? 0 : -1))
		log_info("provider event for no known Contact", "{s:s, s:s, s:s?}", "svixId", id,
		    "type", type, "email", email);
	json_decref(doc);
	*why = "recorded";
	return 200;
}
