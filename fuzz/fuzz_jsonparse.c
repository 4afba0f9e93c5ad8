/*
 * fuzz_jsonparse.c -- libFuzzer target: lib/jsonparse.c against jansson.
 *
 * For any input, a tree from the fast path must be the tree json_loadb()
 * builds (same compact dump: key order, integer or real, every byte of
 * every string), and jansson must accept what the fast path accepted.
 * Giving up is always allowed. Aborts on any disagreement.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonparse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	json_t *fast = jsonparse_fast(in, size);
	json_t *ref;
	char *a, *b;

	if (!fast)
		return 0;
	ref = json_loadb(in, size, JSON_REJECT_DUPLICATES, NULL);
	if (!ref)
		abort();
	a = json_dumps(fast, JSON_COMPACT | JSON_ENCODE_ANY);
	b = json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY);
	if (!a || !b || strcmp(a, b) != 0)
		abort();
	free(a);
	free(b);
	json_decref(fast);
	json_decref(ref);
	return 0;
}
