/* check_jsonparse.c -- the fast parser builds exactly jansson's tree, or gives up */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonparse.h"
#include "testutil.h"

Suite *jsonparse_suite(void);

/* The compact dump keeps key order and tells integers from reals. */
static char *
dump(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	ck_assert_ptr_nonnull(s);
	return s;
}

/*
 * The contract for one input: when the fast path returns a tree, jansson
 * accepts the input too and builds the same tree (same dump). Returns
 * whether the fast path took it.
 */
static int
same_as_jansson(const char *in, size_t len, size_t flags)
{
	json_error_t err;
	json_t *fast = jsonparse_fast(in, len);
	json_t *ref = json_loadb(in, len, flags, &err);
	json_t *load = jsonparse_load(in, len, flags, &err);

	if (fast) {
		char *a = dump(fast), *b;

		ck_assert_msg(ref != NULL, "fast path took what jansson refuses: %.*s (%s)",
		    (int)(len > 200 ? 200 : len), in, err.text);
		b = dump(ref);
		ck_assert_str_eq(a, b);
		free(a);
		free(b);
	}
	/* jsonparse_load answers as jansson does, fast path or not */
	ck_assert_int_eq(load != NULL, ref != NULL);
	if (load) {
		char *a = dump(load), *b = dump(ref);

		ck_assert_str_eq(a, b);
		free(a);
		free(b);
	}
	json_decref(fast);
	json_decref(ref);
	json_decref(load);
	return fast != NULL;
}

/* Inputs the fast path must take (the common shapes). */
static const char *const taken[] = {
	"{}", "[]", " \t\r\n{ } \n", "[1,2,3]", "{\"a\":1}",
	"{\"a\":{\"b\":[true,false,null,\"x\",-0,0,12,-12]}}",
	"[\"\"]", "{\"\":\"\"}",
	"[\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t end\"]",
	"[\"\\u00e9\\u20ac\\ud83d\\ude00\\uFFFF\\u0001\"]",
	"{\"k\\u00e9y\":\"v\",\"k\\\"\":2}",
	"[\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xed\x9f\xbf \xee\x80\x80\"]",
	"[1.5,-0.0,1e10,1E-10,1e+2,2.5e-3,123456789.123456789,1e-400,0.1]",
	"[999999999999999999,-999999999999999999]",
	"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\","
	"\"request\":{\"uid\":\"u\",\"object\":{\"metadata\":{\"name\":\"n\"}},\"oldObject\":null}}",
	"{\"b\":1,\"a\":2,\"c\":{\"z\":1,\"y\":2}}",
};

/* Inputs jansson refuses: the fast path must give up on each. */
static const char *const refused[] = {
	"", " ", "1", "\"s\"", "true", "null", "{", "[", "}", "]", "{]", "[}",
	"[1,]", "{\"a\":1,}", "[,1]", "{,}", "{\"a\"}", "{\"a\" 1}", "{a:1}",
	"{'a':1}", "[01]", "[-]", "[-a]", "[1.]", "[.5]", "[1e]", "[1e+]",
	"[+1]", "[0x10]", "[1.5.3]", "[NaN]", "[Infinity]", "[1e400]",
	"[-1e400]", "[tru]", "[truex]", "[nul]", "[True]", "[\"\\x\"]",
	"[\"\\u12\"]", "[\"\\u12g4\"]", "[\"\\ud800\"]", "[\"\\udc00\"]",
	"[\"\\ud800\\u0041\"]", "[\"\\ud800x\"]", "[\"\\u0000\"]",
	"{\"\\u0000\":1}", "[\"tab\there\"]", "[\"nl\nhere\"]", "[\"unterminated]",
	"[\"\xc0\xaf\"]", "[\"\xc3\"]", "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]",
	"[\"\xf5\x80\x80\x80\"]", "[\"\x80\"]", "[\"\xe2\x82\"]", "{} {}", "{}x",
	"[1 2]", "{\"a\":1 \"b\":2}", "\xef\xbb\xbf{}", "[1]\x00",
	"{\"a\":1,\"a\":2}", "[\"\\\"]", "[\"a\\",
};

START_TEST(test_common_shapes_are_taken)
{
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
		ck_assert_msg(same_as_jansson(taken[i], strlen(taken[i]), JSON_REJECT_DUPLICATES),
		    "fast path gave up on %s", taken[i]);
}
END_TEST

START_TEST(test_refused_inputs_are_not_taken)
{
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		size_t len = strlen(refused[i]);

		if (strcmp(refused[i], "[1]") == 0)
			len = 4;	/* the NUL after it */
		ck_assert_msg(!same_as_jansson(refused[i], len, JSON_REJECT_DUPLICATES),
		    "fast path took %s", refused[i]);
	}
	ck_assert_ptr_null(jsonparse_fast(NULL, 0));
	ck_assert_ptr_null(jsonparse_fast("[1]\0", 4));
}
END_TEST

#define SAME(s) same_as_jansson((s), strlen(s), 0)

/* Inputs jansson accepts that the fast path leaves to it: same answer. */
START_TEST(test_give_ups_still_answer)
{
	char deep[300];
	json_error_t err;
	json_t *v;

	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	deep[200] = '\0';
	ck_assert(!same_as_jansson(deep, 200, 0));
	ck_assert(!SAME("[9223372036854775807]"));
	ck_assert(!SAME("[-9223372036854775808]"));
	ck_assert(!SAME("[1234567890123456789]"));
	ck_assert(!SAME("[9223372036854775808]"));
	ck_assert(!SAME("[0.000000000000000000000000000000000000000000000000"
	    "000000000000000000001]"));
	/* a repeated key: jansson's last-wins without the flag */
	v = jsonparse_load("{\"a\":1,\"a\":2}", 13, 0, &err);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "a")), 2);
	json_decref(v);
	ck_assert_ptr_null(jsonparse_load("{\"a\":1,\"a\":2}", 13, JSON_REJECT_DUPLICATES, &err));
	ck_assert_ptr_nonnull(strstr(err.text, "duplicate"));
	/* other flags go straight to jansson */
	v = jsonparse_load("1", 1, JSON_DECODE_ANY, &err);
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(json_integer_value(v), 1);
	json_decref(v);
}
END_TEST

START_TEST(test_escaped_strings_long_and_short)
{
	/* escapes in strings below and above the on-stack buffer */
	static const size_t sizes[] = { 1, 255, 256, 257, 4096, 70000 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i], len = 0;
		char *doc = malloc(n * 8 + 64);

		ck_assert_ptr_nonnull(doc);
		len += (size_t)sprintf(doc, "{\"");
		for (size_t k = 0; k < n; k++)
			len += (size_t)sprintf(doc + len, k % 3 ? "\\u00e9" : "\\n");
		len += (size_t)sprintf(doc + len, "\":\"");
		for (size_t k = 0; k < n; k++)
			doc[len++] = k % 2 ? 'x' : '\\', doc[len++] = k % 2 ? 'y' : 't';
		len += (size_t)sprintf(doc + len, "\"}");
		ck_assert(same_as_jansson(doc, len, JSON_REJECT_DUPLICATES));
		free(doc);
	}
}
END_TEST

/* Every JSON file under dir: same answer as jansson; counts the taken ones. */
static void
compare_dir(const char *dir, size_t *files, size_t *fast)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[1024];
		size_t len;
		char *text;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR) {
			compare_dir(path, files, fast);
			continue;
		}
		len = strlen(e->d_name);
		if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		text = tu_read_file(path, &len);
		ck_assert_ptr_nonnull(text);
		(*files)++;
		*fast += (size_t)same_as_jansson(text, len, JSON_REJECT_DUPLICATES);
		free(text);
	}
	closedir(d);
}

START_TEST(test_every_fixture)
{
	size_t files = 0, fast = 0;

	compare_dir(tu_path("test/fixtures"), &files, &fast);
	ck_assert_uint_gt(files, 50);
	/* the fixtures are ordinary JSON: the fast path takes nearly all */
	ck_assert_msg(fast * 10 >= files * 9, "fast path took %zu of %zu", fast, files);
}
END_TEST

/* xorshift: the same sequence on every run */
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t
next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/*
 * Mutations of real documents: bytes replaced by the characters that
 * matter to a JSON lexer, inserted, deleted, or the document cut short.
 * Whatever comes out, the fast path and jansson must agree.
 */
START_TEST(test_mutations_agree)
{
	static const char alphabet[] = "{}[]\",:\\/ \t\n0123456789-+.eEutrfalsn\x80\xc3\xa9\xed\xf4\x01";
	static const char *const seeds[] = {
		"test/fixtures/sample-review.json",
		"bench/membership-review.json",
	};
	size_t taken_n = 0, total = 0;
	int rounds = tu_under_valgrind() ? 300 : 20000;

	for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		size_t len;
		char *orig = tu_read_file(tu_path(seeds[s]), &len);

		ck_assert_ptr_nonnull(orig);
		for (int i = 0; i < rounds; i++) {
			char *m = malloc(len + 8);
			size_t mlen = len;
			int edits = 1 + (int)(next_rand() % 3);

			ck_assert_ptr_nonnull(m);
			memcpy(m, orig, len);
			for (int k = 0; k < edits && mlen > 0; k++) {
				size_t at = (size_t)(next_rand() % mlen);
				char c = alphabet[next_rand() % (sizeof(alphabet) - 1)];

				switch (next_rand() % 4) {
				case 0:
					m[at] = c;
					break;
				case 1:
					memmove(m + at + 1, m + at, mlen - at);
					m[at] = c;
					mlen++;
					break;
				case 2:
					memmove(m + at, m + at + 1, mlen - at - 1);
					mlen--;
					break;
				default:
					mlen = at;
				}
			}
			taken_n += (size_t)same_as_jansson(m, mlen, JSON_REJECT_DUPLICATES);
			total++;
			free(m);
		}
		free(orig);
	}
	/* some mutations stay valid (inside strings, whitespace) */
	ck_assert_uint_gt(taken_n, total / 20);
}
END_TEST

/*
 * Scoped trees: the same tree from the arena, heap values attached to it
 * freed as usual, the arena reclaimed at the end of the scope, whatever
 * the document (valid, refused, too big for one chunk).
 */
START_TEST(test_scoped_arena)
{
	char *text;
	size_t len, big_len = 0;
	json_t *v, *ref;
	char *a, *b, *big;
	json_error_t err;

	text = tu_read_file(tu_path("test/fixtures/sample-review.json"), &len);
	ck_assert_ptr_nonnull(text);
	ref = json_loadb(text, len, 0, NULL);
	for (int round = 0; round < 3; round++) {
		v = jsonparse_load_scoped(text, len, JSON_REJECT_DUPLICATES, &err);
		ck_assert_ptr_nonnull(v);
		a = dump(v);
		b = dump(ref);
		ck_assert_str_eq(a, b);
		free(a);	/* json_dumps' memory is the heap's, even in scope */
		free(b);
		/* a heap value inside the arena tree, and an arena value kept past a decref */
		ck_assert_int_eq(json_object_set_new(v, "added", json_string("heap")), 0);
		ck_assert_int_eq(json_object_del(v, "kind"), 0);
		json_decref(v);
		ck_assert_uint_gt(jsonparse_arena_bytes(), 0);
		jsonparse_scope_end();
		ck_assert_uint_eq(jsonparse_arena_bytes(), 32 * 1024);
	}
	json_decref(ref);
	free(text);

	/* a document several chunks big: only the first chunk is kept */
	big = malloc(200000 * 12 + 16);
	ck_assert_ptr_nonnull(big);
	big[big_len++] = '[';
	for (int i = 0; i < 200000; i++)
		big_len += (size_t)sprintf(big + big_len, "%s\"v%d\"", i ? "," : "", i % 1000);
	big[big_len++] = ']';
	v = jsonparse_load_scoped(big, big_len, 0, &err);
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(json_array_size(v), 200000);
	ck_assert_str_eq(json_string_value(json_array_get(v, 199999)), "v999");
	ck_assert_uint_gt(jsonparse_arena_bytes(), 1024 * 1024);
	json_decref(v);
	jsonparse_scope_end();
	ck_assert_uint_eq(jsonparse_arena_bytes(), 32 * 1024);

	/* given up half way (the last byte): jansson's error, arena reclaimed */
	big[big_len - 1] = ',';
	ck_assert_ptr_null(jsonparse_load_scoped(big, big_len, 0, &err));
	ck_assert_uint_gt(strlen(err.text), 0);
	jsonparse_scope_end();
	ck_assert_uint_eq(jsonparse_arena_bytes(), 32 * 1024);
	free(big);

	/* a repeated key: the fallback's tree is heap memory, valid after the scope */
	v = jsonparse_load_scoped("{\"a\":1,\"a\":2}", 13, 0, &err);
	jsonparse_scope_end();
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "a")), 2);
	json_decref(v);
}
END_TEST

static void *
scoped_in_thread(void *arg)
{
	static const char doc[] = "{\"a\":[1,2,{\"b\":\"c\"}]}";
	json_error_t err;
	json_t *v = jsonparse_load_scoped(doc, sizeof(doc) - 1, 0, &err);
	int ok = v && json_array_size(json_object_get(v, "a")) == 3;

	json_decref(v);
	jsonparse_scope_end();
	/* exits with its arena (and one left in use): the key's destructor frees both */
	v = jsonparse_load_scoped("[\"left\"]", 8, 0, &err);
	(void)arg;
	return (void *)(intptr_t)(ok && v);
}

/* Threads that used the arena leave nothing behind (valgrind, ASan leak check). */
START_TEST(test_arena_freed_at_thread_exit)
{
	for (int i = 0; i < 4; i++) {
		pthread_t t;
		void *ok;

		ck_assert_int_eq(pthread_create(&t, NULL, scoped_in_thread, NULL), 0);
		ck_assert_int_eq(pthread_join(t, &ok), 0);
		ck_assert(ok != NULL);
	}
}
END_TEST

Suite *
jsonparse_suite(void)
{
	Suite *s = suite_create("jsonparse");
	TCase *core = tcase_create("core");

	tcase_set_timeout(core, 120);
	tcase_add_test(core, test_common_shapes_are_taken);
	tcase_add_test(core, test_refused_inputs_are_not_taken);
	tcase_add_test(core, test_give_ups_still_answer);
	tcase_add_test(core, test_escaped_strings_long_and_short);
	tcase_add_test(core, test_every_fixture);
	tcase_add_test(core, test_mutations_agree);
	tcase_add_test(core, test_scoped_arena);
	tcase_add_test(core, test_arena_freed_at_thread_exit);
	suite_add_tcase(s, core);
	return s;
}
