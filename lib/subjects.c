/* subjects.c -- existence of Users, Organizations and Projects, cached with a TTL */
#include "subjects.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "hmap.h"
#include "kube.h"

struct entry {
	enum subject_kind kind;
	int exists;
	time_t expires;		/* CLOCK_MONOTONIC seconds */
	char *uid;
	char name[];
};

struct subjects {
	struct kube_client *client;
	pthread_mutex_t lock;
	struct hmap map;
	size_t calls;
};

static const struct {
	const char *group, *plural;
} apis[] = {
	[SUBJECT_USER] = { "iam.miloapis.com", "users" },
	[SUBJECT_ORGANIZATION] = { "resourcemanager.miloapis.com", "organizations" },
	[SUBJECT_PROJECT] = { "resourcemanager.miloapis.com", "projects" },
};

static uint64_t
key_hash(enum subject_kind kind, const char *name)
{
	const char *parts[] = { apis[kind].plural, name };

	return hmap_hash(parts, 2);
}

int
subjects_new(struct kube_client *client, struct subjects **out)
{
	struct subjects *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->client = client;
	pthread_mutex_init(&s->lock, NULL);
	hmap_init(&s->map);
	*out = s;
	return 0;
}

/* Drops entries; all of them, or only the expired ones. Called locked. */
static void
sweep(struct subjects *s, bool all)
{
	time_t now = (time_t)clock_mono();

	for (size_t i = 0; i < s->map.n_buckets; i++) {
		struct hmap_node **p = &s->map.buckets[i];

		while (*p) {
			struct entry *e = (*p)->value;

			if (all || e->expires <= now) {
				struct hmap_node *n = *p;

				*p = n->next;
				free(n);
				s->map.count--;
				free(e->uid);
				free(e);
			} else {
				p = &(*p)->next;
			}
		}
	}
}

void
subjects_free(struct subjects *s)
{
	if (!s)
		return;
	sweep(s, true);
	hmap_free(&s->map);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

size_t
subjects_api_calls(struct subjects *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->calls;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* A fresh cached answer: 1 or 0 with *uid copied, or -ENOENT when none. */
static int
cached(struct subjects *s, enum subject_kind kind, const char *name, char **uid)
{
	uint64_t h = key_hash(kind, name);
	time_t now = (time_t)clock_mono();

	for (struct hmap_node *n = hmap_first(&s->map, h); n; n = hmap_next(n, h)) {
		struct entry *e = n->value;

		if (e->kind != kind || strcmp(e->name, name) != 0 || e->expires <= now)
			continue;
		if (e->exists && e->uid)
			*uid = strdup(e->uid);
		return e->exists;
	}
	return -ENOENT;
}

static void
remember(struct subjects *s, enum subject_kind kind, const char *name, int exists,
    const char *uid)
{
	size_t len = strlen(name);
	struct entry *e = malloc(sizeof(*e) + len + 1);

	if (!e)
		return;
	e->kind = kind;
	e->exists = exists;
	e->expires = (time_t)clock_mono() + (exists ? SUBJECTS_POSITIVE_TTL_S : SUBJECTS_NEGATIVE_TTL_S);
	e->uid = uid ? strdup(uid) : NULL;
	memcpy(e->name, name, len + 1);
	if (s->map.count >= SUBJECTS_MAX)
		sweep(s, false);
	if (s->map.count >= SUBJECTS_MAX)
		sweep(s, true);
	if (hmap_insert(&s->map, key_hash(kind, name), e) != 0) {
		free(e->uid);
		free(e);
	}
}

int
subjects_lookup(struct subjects *s, enum subject_kind kind, const char *name,
    char **uid, char **why)
{
	struct kube_response resp;
	char path[KUBE_PATH_MAX];
	int rc;

	*uid = NULL;
	*why = NULL;
	if (kind == SUBJECT_NONE || !name)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	rc = cached(s, kind, name, uid);
	if (rc != -ENOENT) {
		pthread_mutex_unlock(&s->lock);
		return rc;
	}
	s->calls++;
	pthread_mutex_unlock(&s->lock);
	/*
	 * Two threads may ask for the same subject at once and both call the
	 * API; the answer is the same and the window short, so no single-flight.
	 */
	if (kube_path(path, sizeof(path), apis[kind].group, "v1alpha1", NULL,
	    apis[kind].plural, name, NULL) != 0)
		return -ENAMETOOLONG;
	rc = kube_get(s->client, path, &resp);
	if (rc == 0 || (rc == -EIO && kube_is_not_found(&resp))) {
		const char *u = json_string_value(json_object_get(json_object_get(resp.body,
		    "metadata"), "uid"));
		int exists = rc == 0;

		pthread_mutex_lock(&s->lock);
		remember(s, kind, name, exists, u);
		pthread_mutex_unlock(&s->lock);
		if (exists && u)
			*uid = strdup(u);
		kube_response_free(&resp);
		return exists;
	}
	*why = resp.message ? strdup(resp.message) : strdup("no answer");
	kube_response_free(&resp);
	return rc ? rc : -EIO;
}
