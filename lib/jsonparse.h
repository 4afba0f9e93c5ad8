/* jsonparse.h -- a fast path for jansson's json_loadb() */
#ifndef MILO_JSONPARSE_H
#define MILO_JSONPARSE_H

#include <stddef.h>

#include <jansson.h>

/*
 * Parses buf[0..len) into the jansson tree json_loadb(buf, len, flags, err)
 * would build, in one pass over the bytes: strings are scanned in runs and
 * copied once, keys are inserted without a second copy. Whenever the input
 * is anything this parser is not sure about (an error of any kind, a
 * duplicate key, nesting deeper than 64, an integer over 18 digits, a real
 * that overflows, flags other than JSON_REJECT_DUPLICATES), it gives up and
 * calls json_loadb(), so every answer, error text included, is jansson's.
 *
 * On success err is left as it was; it is only written on failure.
 */
json_t *jsonparse_load(const char *buf, size_t len, size_t flags,
    json_error_t *err);

/*
 * jsonparse_load(), with the tree's memory taken from this thread's arena
 * (one bump allocation per value instead of malloc and free). The scope
 * lasts until jsonparse_scope_end() on the same thread, which must come
 * after the last json_decref() of the tree and of anything still pointing
 * into it; values created later and attached to the tree (json_object_set
 * and friends) come from malloc as usual and are freed as usual. A tree
 * jansson had to build (the fallback) is ordinary heap memory.
 */
json_t *jsonparse_load_scoped(const char *buf, size_t len, size_t flags,
    json_error_t *err);

/*
 * Installs this module's allocator in jansson (json_set_alloc_funcs) so
 * that jsonparse_load_scoped() can take a tree's memory from a per-thread
 * arena. Call once at start, before the threads that parse (the webhook's
 * main does). Values allocated before it are freed as usual. Without it,
 * jsonparse_load_scoped() allocates as jsonparse_load() does.
 */
void jsonparse_init(void);

/* Reclaims this thread's arena; keeps its first 32 KiB chunk for reuse. */
void jsonparse_scope_end(void);

/* Bytes this thread's arena holds (for tests and benchmarks). */
size_t jsonparse_arena_bytes(void);

/*
 * The fast path alone: the tree, or NULL when jsonparse_load() would fall
 * back to json_loadb() (for tests and benchmarks: a tree returned here is
 * always the one json_loadb would return, key order included).
 */
json_t *jsonparse_fast(const char *buf, size_t len);

#endif
