/* hmap.h -- an intrusive-free chained hash multimap of pointers keyed by a 64-bit hash */
#ifndef MILO_HMAP_H
#define MILO_HMAP_H

#include <stddef.h>
#include <stdint.h>

/*
 * Values are stored by hash only; the caller compares the real key on
 * lookup, so several values may share a key (a multimap) or a hash.
 * Not thread-safe: the owner locks.
 */
struct hmap_node {
	struct hmap_node *next;
	uint64_t hash;
	void *value;
};

struct hmap {
	struct hmap_node **buckets;
	size_t n_buckets;	/* a power of two, or 0 before the first insert */
	size_t count;
};

void hmap_init(struct hmap *m);
void hmap_free(struct hmap *m);		/* frees nodes, not values */

/* Returns 0 or -ENOMEM (nothing changed). */
int hmap_insert(struct hmap *m, uint64_t hash, void *value);
/* Removes the node holding exactly this value; -ENOENT if absent. */
int hmap_remove(struct hmap *m, uint64_t hash, const void *value);

/* The first node with this hash, then the next one; NULL at the end. */
struct hmap_node *hmap_first(const struct hmap *m, uint64_t hash);
struct hmap_node *hmap_next(const struct hmap_node *n, uint64_t hash);

/* FNV-1a over several strings, each followed by a separator byte. */
uint64_t hmap_hash(const char *const *parts, size_t n);

#endif
