/*
 * cache_bench.c -- memory per cached object and lookup cost of the watch
 * cache (lib/cache.c + lib/hmap.c), in process, no API server.
 *
 *   build/default/cache_bench [-n 100000] [-k membership|contact|group]
 *                             [-m upsert|replace] [-r rounds]
 *
 * Fills a cache made with cache_new(NULL, ...) with n objects of one kind,
 * each built the way the informer builds it (an API-server-shaped JSON
 * object -> cache_item_from_json -> cache_upsert, as a watch event does,
 * or -> cache_replace of all of them, as a relist does), and reports the
 * growth of the heap (mallinfo2: bytes in allocated chunks, malloc's own
 * headers included) and of the process's RSS, per object. Then times the
 * lookups the admission rules make (cache_get, cache_pair hit and miss)
 * against that cache and against one holding 10 objects, in the same run.
 *
 * A benchmark, not a test: it prints numbers (one "key value" per line
 * after the table, for scripts) and fails only when something does not run.
 */
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "resource.h"

#define NAMESPACES 10
#define GROUPS 10

static long
rss_kib(const char *field)
{
	char line[256];
	long v = -1;
	size_t flen = strlen(field);
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, flen) == 0 && line[flen] == ':')
			v = strtol(line + flen + 1, NULL, 10);
	fclose(f);
	return v;
}

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The names object i gets; the same formulas are used for lookups. */
static void
names(size_t i, char *ns, char *contact, char *group, char *name, size_t len)
{
	size_t c = i / GROUPS, g = i % GROUPS;

	snprintf(ns, len, "org-%02zu", c % NAMESPACES);
	snprintf(contact, len, "contact-%06zu", c);
	snprintf(group, len, "group-%02zu", g);
	snprintf(name, len, "contact-%06zu-group-%02zu", c, g);
}

/*
 * Object i as the API server stores it after the reconciler has synced it:
 * uid, resourceVersion, generation, creationTimestamp, the finalizer and a
 * Ready condition. Only what the cache keeps survives; the rest is decoded
 * and dropped, as in the webhook.
 */
static json_t *
object(enum resource_kind kind, size_t i)
{
	char ns[64], contact[64], group[64], name[64], uid[40], rv[24], email[96];
	json_t *spec, *meta, *status;

	names(i, ns, contact, group, name, sizeof(ns));
	snprintf(uid, sizeof(uid), "%08zx-6393-11e8-b7cc-%012zx", i, i * 2654435761u);
	snprintf(rv, sizeof(rv), "%zu", 1000 + i);
	switch (kind) {
	case KIND_CONTACT:
		snprintf(name, sizeof(name), "contact-%06zu", i);
		snprintf(email, sizeof(email), "Person.%06zu@Example.com", i);
		spec = json_pack("{s:s, s:s, s:s, s:{s:{s:s}}}", "email", email,
		    "givenName", "Given", "familyName", "Family", "subject", "userRef",
		    "name", uid);
		break;
	case KIND_CONTACT_GROUP:
		snprintf(name, sizeof(name), "group-%06zu", i);
		spec = json_pack("{s:s, s:s}", "displayName", name, "visibility",
		    i % 2 ? "public" : "private");
		break;
	default:
		spec = json_pack("{s:{s:s, s:s}, s:{s:s, s:s}}", "contactRef", "name",
		    contact, "namespace", ns, "contactGroupRef", "name", group,
		    "namespace", ns);
		break;
	}
	meta = json_pack("{s:s, s:s, s:s, s:s, s:i, s:s, s:[s]}", "name", name,
	    "namespace", ns, "uid", uid, "resourceVersion", rv, "generation", 1,
	    "creationTimestamp", "2025-11-25T17:05:23Z", "finalizers",
	    kind_info(kind)->finalizer ? kind_info(kind)->finalizer : "x/y");
	status = json_pack("{s:i, s:[{s:s, s:s, s:i, s:s, s:s, s:s}]}",
	    "observedGeneration", 1, "conditions", "type", "Ready", "status", "True",
	    "observedGeneration", 1, "lastTransitionTime", "2025-11-25T17:05:24Z",
	    "reason", "Added", "message", "the contact is in the provider segment");
	return json_pack("{s:s, s:s, s:o, s:o, s:o}", "apiVersion", RESOURCE_API_VERSION,
	    "kind", kind_info(kind)->kind, "metadata", meta, "spec", spec, "status", status);
}

static struct cache_item *
item(enum resource_kind kind, size_t i)
{
	json_t *o = object(kind, i);
	struct cache_item *it = o ? cache_item_from_json(kind, o) : NULL;

	json_decref(o);
	if (!it) {
		fprintf(stderr, "cache_bench: object %zu does not decode\n", i);
		exit(1);
	}
	return it;
}

static struct cache *
fill(enum resource_kind kind, size_t n, int replace)
{
	struct cache *c;

	if (cache_new(NULL, &c) != 0)
		exit(1);
	if (replace) {
		struct cache_item **items = malloc((n ? n : 1) * sizeof(*items));

		if (!items)
			exit(1);
		for (size_t i = 0; i < n; i++)
			items[i] = item(kind, i);
		if (cache_replace(c, kind, items, n) != 0)
			exit(1);
		free(items);
	} else {
		for (size_t i = 0; i < n; i++)
			if (cache_upsert(c, item(kind, i)) != 0)
				exit(1);
	}
	if (cache_count(c, kind) != n) {
		fprintf(stderr, "cache_bench: %zu cached, expected %zu\n",
		    cache_count(c, kind), n);
		exit(1);
	}
	return c;
}

static volatile int sink;

/* Nanoseconds per lookup of the kind the admission rules make, over n objects. */
static void
lookups(struct cache *c, size_t n, size_t iters, double *get_ns, double *hit_ns,
    double *miss_ns)
{
	char ns[64], contact[64], group[64], name[64];
	struct cache_found f;
	char *ons, *oname;
	double t0, base;

	/* What making the names costs, taken off every figure below. */
	t0 = now_s();
	for (size_t k = 0; k < iters; k++) {
		names((k * 7919) % n, ns, contact, group, name, sizeof(ns));
		sink += name[k % 8];
	}
	base = (now_s() - t0) * 1e9 / (double)iters;
	t0 = now_s();
	for (size_t k = 0; k < iters; k++) {
		/* A membership's references: its Contact and its ContactGroup. */
		names((k * 7919) % n, ns, contact, group, name, sizeof(ns));
		sink += cache_get(c, KIND_MEMBERSHIP, ns, name, &f);
		cache_found_free(&f);
	}
	*get_ns = (now_s() - t0) * 1e9 / (double)iters - base;
	t0 = now_s();
	for (size_t k = 0; k < iters; k++) {
		names((k * 7919) % n, ns, contact, group, name, sizeof(ns));
		if (cache_pair(c, KIND_MEMBERSHIP, ns, contact, ns, group, ns, "new-one",
		    &ons, &oname) == 1) {
			free(ons);
			free(oname);
			sink++;
		}
	}
	*hit_ns = (now_s() - t0) * 1e9 / (double)iters - base;
	t0 = now_s();
	for (size_t k = 0; k < iters; k++) {
		/* A pair no one has: the usual case for a new membership. */
		names(n + k, ns, contact, group, name, sizeof(ns));
		sink += cache_pair(c, KIND_MEMBERSHIP, ns, contact, ns, group, ns, "new-one",
		    &ons, &oname);
	}
	*miss_ns = (now_s() - t0) * 1e9 / (double)iters - base;
}

static void
usage(void)
{
	fprintf(stderr, "usage: cache_bench [-n objects] [-k membership|contact|group] "
	    "[-m upsert|replace] [-r rounds]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	enum resource_kind kind = KIND_MEMBERSHIP;
	size_t n = 100000, iters = 1000000;
	int replace = 0, rounds = 3, opt;
	const char *mode = "upsert";

	while ((opt = getopt(argc, argv, "n:k:m:r:")) != -1) {
		switch (opt) {
		case 'n':
			n = strtoul(optarg, NULL, 10);
			break;
		case 'k':
			if (strcmp(optarg, "membership") == 0)
				kind = KIND_MEMBERSHIP;
			else if (strcmp(optarg, "contact") == 0)
				kind = KIND_CONTACT;
			else if (strcmp(optarg, "group") == 0)
				kind = KIND_CONTACT_GROUP;
			else
				usage();
			break;
		case 'm':
			mode = optarg;
			if (strcmp(mode, "upsert") == 0)
				replace = 0;
			else if (strcmp(mode, "replace") == 0)
				replace = 1;
			else
				usage();
			break;
		case 'r':
			rounds = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (n < 10 || rounds < 1)
		usage();
	/* No arenas per thread, no trimming surprises: one heap, measured. */
	mallopt(M_ARENA_MAX, 1);

	/* Warm jansson and the allocator so the first fill does not pay for them. */
	cache_free(fill(kind, 10, replace));
	malloc_trim(0);

	struct mallinfo2 m0 = mallinfo2();
	long rss0 = rss_kib("VmRSS"), anon0 = rss_kib("RssAnon");
	double t0 = now_s();
	struct cache *big = fill(kind, n, replace);
	double fill_s = now_s() - t0;
	struct mallinfo2 m1 = mallinfo2();
	long rss1 = rss_kib("VmRSS"), anon1 = rss_kib("RssAnon");
	double heap = (double)(m1.uordblks + m1.hblkhd) - (double)(m0.uordblks + m0.hblkhd);
	double per_heap = heap / (double)n;
	double per_rss = (double)(rss1 - rss0) * 1024.0 / (double)n;
	double per_anon = (double)(anon1 - anon0) * 1024.0 / (double)n;

	/* The lookups, alternating big and small so drift hits both alike. */
	struct cache *small = fill(kind, 10, replace);
	double g_big[16], h_big[16], m_big[16], g_small[16], h_small[16], m_small[16];
	if (rounds > 16)
		rounds = 16;
	if (kind == KIND_MEMBERSHIP) {
		for (int r = 0; r < rounds; r++) {
			lookups(small, 10, iters, &g_small[r], &h_small[r], &m_small[r]);
			lookups(big, n, iters, &g_big[r], &h_big[r], &m_big[r]);
		}
	}

	printf("cache_bench: %zu %s objects by %s in %.2f s (%.0f objects/s)\n", n,
	    kind_info(kind)->kind, mode, fill_s, (double)n / fill_s);
	printf("| measure | bytes per object |\n|---|---:|\n");
	printf("| heap in use (mallinfo2 uordblks+hblkhd) | %.0f |\n", per_heap);
	printf("| RSS delta (VmRSS) | %.0f |\n", per_rss);
	printf("| anonymous RSS delta (RssAnon) | %.0f |\n", per_anon);
	printf("sizeof(struct cache_item) = %zu\n", sizeof(struct cache_item));

	if (kind == KIND_MEMBERSHIP) {
		/* Medians of the rounds. */
		double *all[6] = { g_small, h_small, m_small, g_big, h_big, m_big };
		for (int a = 0; a < 6; a++)
			for (int i = 1; i < rounds; i++)
				for (int j = i; j > 0 && all[a][j - 1] > all[a][j]; j--) {
					double t = all[a][j];
					all[a][j] = all[a][j - 1];
					all[a][j - 1] = t;
				}
		int mid = rounds / 2;
		printf("\nlookup ns, key formatting subtracted (median of %d rounds of %zu "
		    "random keys, same run):\n", rounds, iters);
		printf("| lookup | 10 cached | %zu cached | ratio |\n|---|---:|---:|---:|\n", n);
		printf("| cache_get (hit) | %.0f | %.0f | %.2f |\n", g_small[mid], g_big[mid],
		    g_big[mid] / g_small[mid]);
		printf("| cache_pair (hit) | %.0f | %.0f | %.2f |\n", h_small[mid], h_big[mid],
		    h_big[mid] / h_small[mid]);
		printf("| cache_pair (miss) | %.0f | %.0f | %.2f |\n", m_small[mid], m_big[mid],
		    m_big[mid] / m_small[mid]);
	}
	printf("\nobjects %zu\nheap_bytes_per_object %.0f\nrss_bytes_per_object %.0f\n"
	    "anon_bytes_per_object %.0f\n", n, per_heap, per_rss, per_anon);
	cache_free(small);
	cache_free(big);
	return sink == -1;
}
