/* hmap.c -- a chained hash multimap of pointers keyed by a 64-bit hash */
#include "hmap.h"

#include <errno.h>
#include <stdlib.h>

#define HMAP_MIN_BUCKETS 4	/* small: the cache nests one map per group and contact */

void
hmap_init(struct hmap *m)
{
	m->buckets = NULL;
	m->n_buckets = 0;
	m->count = 0;
}

void
hmap_free(struct hmap *m)
{
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct hmap_node *n = m->buckets[i];

		while (n) {
			struct hmap_node *next = n->next;

			free(n);
			n = next;
		}
	}
	free(m->buckets);
	hmap_init(m);
}

/* Doubles the table when the load passes one; a failed grow is harmless. */
static void
grow(struct hmap *m)
{
	size_t nb = m->n_buckets ? m->n_buckets * 2 : HMAP_MIN_BUCKETS;
	struct hmap_node **b;

	if (m->n_buckets && m->count < m->n_buckets)
		return;
	b = calloc(nb, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < m->n_buckets; i++) {
		struct hmap_node *n = m->buckets[i];

		while (n) {
			struct hmap_node *next = n->next;
			size_t j = n->hash & (nb - 1);

			n->next = b[j];
			b[j] = n;
			n = next;
		}
	}
	free(m->buckets);
	m->buckets = b;
	m->n_buckets = nb;
}

int
hmap_insert(struct hmap *m, uint64_t hash, void *value)
{
	struct hmap_node *n;
	size_t i;

	grow(m);
	if (!m->n_buckets)
		return -ENOMEM;
	n = malloc(sizeof(*n));
	if (!n)
		return -ENOMEM;
	i = hash & (m->n_buckets - 1);
	n->hash = hash;
	n->value = value;
	n->next = m->buckets[i];
	m->buckets[i] = n;
	m->count++;
	return 0;
}

int
hmap_remove(struct hmap *m, uint64_t hash, const void *value)
{
	struct hmap_node **p;

	if (!m->n_buckets)
		return -ENOENT;
	for (p = &m->buckets[hash & (m->n_buckets - 1)]; *p; p = &(*p)->next) {
		if ((*p)->value == value) {
			struct hmap_node *n = *p;

			*p = n->next;
			free(n);
			m->count--;
			return 0;
		}
	}
	return -ENOENT;
}

struct hmap_node *
hmap_first(const struct hmap *m, uint64_t hash)
{
	struct hmap_node *n;

	if (!m->n_buckets)
		return NULL;
	n = m->buckets[hash & (m->n_buckets - 1)];
	while (n && n->hash != hash)
		n = n->next;
	return n;
}

struct hmap_node *
hmap_next(const struct hmap_node *n, uint64_t hash)
{
	struct hmap_node *next = n->next;

	while (next && next->hash != hash)
		next = next->next;
	return next;
}

uint64_t
hmap_hash(const char *const *parts, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)(parts[i] ? parts[i] : "");
		    *p; p++) {
			h ^= *p;
			h *= 1099511628211ull;
		}
		h ^= 0x1f;	/* separator: ("ab","c") and ("a","bc") differ */
		h *= 1099511628211ull;
	}
	return h;
}
