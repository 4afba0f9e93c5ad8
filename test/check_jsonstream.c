/* check_jsonstream.c -- framing a watch stream into whole JSON objects */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonstream.h"
#include "testutil.h"

Suite *jsonstream_suite(void);

#define MAX_VALUE 4096

/*
 * The reference stream: events joined by separators, sep[i] before
 * event[i] and sep[N_EVENTS] at the end. The events put braces, brackets
 * and escaped quotes inside strings, nest arrays, and end a string in an
 * escaped backslash, which is where a naive framer goes wrong.
 */
#define N_EVENTS 5

static const char *const event_text[N_EVENTS] = {
	"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"},"
	"\"spec\":{\"note\":\"brace } and { and ] [ inside\",\"q\":\"say \\\"hi\\\" \\\\\"}}}",
	"{\"type\":\"MODIFIED\",\"object\":{\"list\":[1,[2,[3,{}]],[]],\"s\":\"[\\\"]\","
	"\"e\":{},\"k\":\"\\\\\\\"}\"}}",
	"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12\"}}}",
	"{\"type\":\"DELETED\",\"object\":{\"u\":\"\\u00e9\\\\\",\"utf8\":\"\xc3\xa9\xe2\x80\x94\","
	"\"n\":null,\"t\":true,\"f\":-1.5e3}}",
	"{}",
};

static const char *const sep_text[N_EVENTS + 1] = { "", "\n", "  \r\n\t", "", "\n\n", "\n" };

static char stream[2048];
static size_t stream_len;
static size_t ev_start[N_EVENTS], ev_end[N_EVENTS];
static json_t *expected;	/* array of the events, parsed one by one */

static void
build_stream(void)
{
	stream_len = 0;
	for (int i = 0; i <= N_EVENTS; i++) {
		size_t n = strlen(sep_text[i]);

		ck_assert_uint_lt(stream_len + n, sizeof(stream));
		memcpy(stream + stream_len, sep_text[i], n);
		stream_len += n;
		if (i == N_EVENTS)
			break;
		n = strlen(event_text[i]);
		ck_assert_uint_lt(stream_len + n, sizeof(stream));
		ev_start[i] = stream_len;
		memcpy(stream + stream_len, event_text[i], n);
		stream_len += n;
		ev_end[i] = stream_len;
	}
	expected = json_array();
	for (int i = 0; i < N_EVENTS; i++) {
		json_error_t err;
		json_t *v = json_loads(event_text[i], 0, &err);

		ck_assert_msg(v != NULL, "event %d: %s", i, err.text);
		json_array_append_new(expected, v);
	}
}

static void
free_stream(void)
{
	json_decref(expected);
	expected = NULL;
}

/* What the callback saw; it returns stop_rc once stop_at values arrived. */
struct got {
	json_t *values;
	size_t stop_at;		/* 0: never stop */
	int stop_rc;
};

static int
collect(json_t *v, void *arg)
{
	struct got *g = arg;

	json_array_append(g->values, v);	/* keeps its own reference */
	if (g->stop_at && json_array_size(g->values) == g->stop_at)
		return g->stop_rc;
	return 0;
}

static void
got_init(struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->values = json_array();
}

/* How many events are complete, and whether one is open, after n bytes. */
static size_t
complete_after(size_t n)
{
	size_t k = 0;

	while (k < N_EVENTS && ev_end[k] <= n)
		k++;
	return k;
}

static int
open_after(size_t n)
{
	for (int k = 0; k < N_EVENTS; k++)
		if (ev_start[k] < n && n < ev_end[k])
			return 1;
	return 0;
}

static void
assert_all_events(const struct got *g, const char *how)
{
	ck_assert_msg(json_array_size(g->values) == N_EVENTS, "%s: %zu events", how,
	    json_array_size(g->values));
	for (size_t i = 0; i < N_EVENTS; i++)
		ck_assert_msg(json_equal(json_array_get(g->values, i),
		    json_array_get(expected, i)), "%s: event %zu differs", how, i);
}

/* A small deterministic generator, so a failure can be replayed. */
static uint32_t
next_rand(uint32_t *state)
{
	*state = *state * 1664525u + 1013904223u;
	return *state >> 8;
}

/* ---- core ---- */

START_TEST(test_whole_stream_in_one_feed)
{
	struct jsonstream s;
	struct got g;

	got_init(&g);
	jsonstream_init(&s, MAX_VALUE);
	ck_assert_int_eq(jsonstream_feed(&s, stream, stream_len, collect, &g), 0);
	assert_all_events(&g, "one feed");
	ck_assert(!jsonstream_partial(&s));
	jsonstream_free(&s);
	json_decref(g.values);
}
END_TEST

START_TEST(test_split_at_every_byte)
{
	for (size_t cut = 0; cut <= stream_len; cut++) {
		struct jsonstream s;
		struct got g;
		char how[64];

		snprintf(how, sizeof(how), "cut at %zu", cut);
		got_init(&g);
		jsonstream_init(&s, MAX_VALUE);
		ck_assert_int_eq(jsonstream_feed(&s, stream, cut, collect, &g), 0);
		ck_assert_msg(json_array_size(g.values) == complete_after(cut),
		    "%s: %zu events after the first part", how, json_array_size(g.values));
		ck_assert_msg(jsonstream_partial(&s) == open_after(cut), "%s: partial", how);
		ck_assert_int_eq(jsonstream_feed(&s, stream + cut, stream_len - cut,
		    collect, &g), 0);
		assert_all_events(&g, how);
		ck_assert(!jsonstream_partial(&s));
		jsonstream_free(&s);
		json_decref(g.values);
	}
}
END_TEST

START_TEST(test_one_byte_at_a_time)
{
	struct jsonstream s;
	struct got g;

	got_init(&g);
	jsonstream_init(&s, MAX_VALUE);
	for (size_t i = 0; i < stream_len; i++) {
		ck_assert_int_eq(jsonstream_feed(&s, stream + i, 1, collect, &g), 0);
		ck_assert_uint_eq(json_array_size(g.values), complete_after(i + 1));
		ck_assert_int_eq(jsonstream_partial(&s), open_after(i + 1));
	}
	assert_all_events(&g, "byte by byte");
	jsonstream_free(&s);
	json_decref(g.values);
}
END_TEST

START_TEST(test_random_chunks)
{
	uint32_t seed = 20240917u;
	int rounds = tu_under_valgrind() ? 40 : 400;

	for (int r = 0; r < rounds; r++) {
		struct jsonstream s;
		struct got g;
		size_t off = 0;
		char how[64];

		snprintf(how, sizeof(how), "round %d", r);
		got_init(&g);
		jsonstream_init(&s, MAX_VALUE);
		while (off < stream_len) {
			size_t n = 1 + next_rand(&seed) % (r % 3 == 0 ? 8 : 97);

			if (n > stream_len - off)
				n = stream_len - off;
			ck_assert_int_eq(jsonstream_feed(&s, stream + off, n, collect, &g), 0);
			off += n;
			ck_assert_msg(json_array_size(g.values) == complete_after(off),
			    "%s: %zu events after %zu bytes", how, json_array_size(g.values), off);
		}
		assert_all_events(&g, how);
		jsonstream_free(&s);
		json_decref(g.values);
	}
}
END_TEST

START_TEST(test_many_events_in_one_feed)
{
	char *text = malloc(1000 * 32);
	struct jsonstream s;
	struct got g;
	size_t len = 0;

	ck_assert_ptr_nonnull(text);
	for (int i = 0; i < 1000; i++)
		len += (size_t)snprintf(text + len, 32, "{\"i\":%d,\"a\":[\"}\"]}%s", i,
		    i % 2 ? "\n" : "");
	got_init(&g);
	jsonstream_init(&s, MAX_VALUE);
	ck_assert_int_eq(jsonstream_feed(&s, text, len, collect, &g), 0);
	ck_assert_uint_eq(json_array_size(g.values), 1000);
	for (size_t i = 0; i < 1000; i++)
		ck_assert_int_eq(json_integer_value(json_object_get(
		    json_array_get(g.values, i), "i")), (json_int_t)i);
	jsonstream_free(&s);
	json_decref(g.values);
	free(text);
}
END_TEST

START_TEST(test_whitespace_only)
{
	static const char ws[] = " \n\t\r\n  \n";
	struct jsonstream s;
	struct got g;

	got_init(&g);
	jsonstream_init(&s, MAX_VALUE);
	ck_assert_int_eq(jsonstream_feed(&s, ws, sizeof(ws) - 1, collect, &g), 0);
	ck_assert_int_eq(jsonstream_feed(&s, ws, 0, collect, &g), 0);
	ck_assert_uint_eq(json_array_size(g.values), 0);
	ck_assert(!jsonstream_partial(&s));
	jsonstream_free(&s);
	json_decref(g.values);
}
END_TEST

START_TEST(test_callback_stops_and_keeps_the_rest)
{
	struct jsonstream s;
	struct got g;

	got_init(&g);
	g.stop_at = 2;
	g.stop_rc = 7;
	jsonstream_init(&s, MAX_VALUE);
	ck_assert_int_eq(jsonstream_feed(&s, stream, stream_len, collect, &g), 7);
	ck_assert_uint_eq(json_array_size(g.values), 2);
	/* Feeding nothing hands over what was kept. */
	g.stop_at = 0;
	ck_assert_int_eq(jsonstream_feed(&s, NULL, 0, collect, &g), 0);
	assert_all_events(&g, "after the stop");
	jsonstream_free(&s);
	json_decref(g.values);
}
END_TEST

START_TEST(test_stop_with_a_partial_event_behind)
{
	size_t cut = ev_start[3] + 9;	/* inside the fourth event */
	struct jsonstream s;
	struct got g;

	got_init(&g);
	g.stop_at = 1;
	g.stop_rc = -ECANCELED;
	jsonstream_init(&s, MAX_VALUE);
	ck_assert_int_eq(jsonstream_feed(&s, stream, cut, collect, &g), -ECANCELED);
	ck_assert_uint_eq(json_array_size(g.values), 1);
	g.stop_at = 0;
	ck_assert_int_eq(jsonstream_feed(&s, NULL, 0, collect, &g), 0);
	ck_assert_uint_eq(json_array_size(g.values), 3);
	ck_assert(jsonstream_partial(&s));
	ck_assert_int_eq(jsonstream_feed(&s, stream + cut, stream_len - cut, collect, &g), 0);
	assert_all_events(&g, "resumed");
	jsonstream_free(&s);
	json_decref(g.values);
}
END_TEST

START_TEST(test_cut_mid_object)
{
	static const char *const cuts[] = {
		"{",
		"{\"type\":\"ADDED\",\"obj",
		"{\"a\":\"}",			/* the brace is inside a string */
		"{\"a\":\"\\\"}",		/* and so is this one, after an escaped quote */
		"{\"a\":[[{}]",
		"\n\n{\"a\":1}\n{\"b\":",
	};

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		struct jsonstream s;
		struct got g;

		got_init(&g);
		jsonstream_init(&s, MAX_VALUE);
		ck_assert_int_eq(jsonstream_feed(&s, cuts[i], strlen(cuts[i]), collect, &g), 0);
		ck_assert_msg(jsonstream_partial(&s), "cut %zu: not partial", i);
		ck_assert_uint_eq(json_array_size(g.values), i == 5 ? 1 : 0);
		jsonstream_free(&s);	/* drops the partial value without a leak */
		json_decref(g.values);
	}
}
END_TEST

START_TEST(test_string_brace_then_close)
{
	static const char part1[] = "{\"a\":\"}{\\\\\",\"b\":\"\\\"}";
	static const char part2[] = "\"}";
	struct jsonstream s;
	struct got g;

	got_init(&g);
	jsonstream_init(&s, MAX_VALUE);
	ck_assert_int_eq(jsonstream_feed(&s, part1, sizeof(part1) - 1, collect, &g), 0);
	ck_assert(jsonstream_partial(&s));
	ck_assert_int_eq(jsonstream_feed(&s, part2, sizeof(part2) - 1, collect, &g), 0);
	ck_assert_uint_eq(json_array_size(g.values), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(g.values, 0), "a")),
	    "}{\\");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(g.values, 0), "b")),
	    "\"}");
	jsonstream_free(&s);
	json_decref(g.values);
}
END_TEST

/* ---- limits ---- */

/* {"p":"xxx…"} exactly n bytes long (n >= 8). */
static char *
value_of_size(size_t n)
{
	char *v = malloc(n + 1);

	ck_assert_ptr_nonnull(v);
	memcpy(v, "{\"p\":\"", 6);
	memset(v + 6, 'x', n - 8);
	memcpy(v + n - 2, "\"}", 3);
	return v;
}

START_TEST(test_value_at_the_limit)
{
	char *v = value_of_size(64);
	struct jsonstream s;
	struct got g;

	got_init(&g);
	jsonstream_init(&s, 64);
	ck_assert_int_eq(jsonstream_feed(&s, v, 64, collect, &g), 0);
	ck_assert_uint_eq(json_array_size(g.values), 1);
	jsonstream_free(&s);
	json_decref(g.values);
	free(v);
}
END_TEST

START_TEST(test_value_too_big_in_one_feed)
{
	static const char small[] = "{\"ok\":1}\n";
	char *v = value_of_size(65);
	struct jsonstream s;
	struct got g;

	got_init(&g);
	jsonstream_init(&s, 64);
	ck_assert_int_eq(jsonstream_feed(&s, small, sizeof(small) - 1, collect, &g), 0);
	ck_assert_int_eq(jsonstream_feed(&s, v, 65, collect, &g), -E2BIG);
	ck_assert_uint_eq(json_array_size(g.values), 1);
	ck_assert(!jsonstream_partial(&s));
	/* The stream is empty again and frames what comes next. */
	ck_assert_int_eq(jsonstream_feed(&s, small, sizeof(small) - 1, collect, &g), 0);
	ck_assert_uint_eq(json_array_size(g.values), 2);
	jsonstream_free(&s);
	json_decref(g.values);
	free(v);
}
END_TEST

START_TEST(test_value_too_big_in_pieces)
{
	static const char small[] = "{\"ok\":1}";
	char *v = value_of_size(200);
	struct jsonstream s;
	struct got g;
	size_t off = 0;
	int rc = 0;

	got_init(&g);
	jsonstream_init(&s, 64);
	while (off < 200 && rc == 0) {
		rc = jsonstream_feed(&s, v + off, 10, collect, &g);
		off += 10;
	}
	ck_assert_int_eq(rc, -E2BIG);
	ck_assert_uint_le(off, 80);	/* refused as soon as it outgrew the limit */
	ck_assert_uint_eq(json_array_size(g.values), 0);
	ck_assert_int_eq(jsonstream_feed(&s, small, sizeof(small) - 1, collect, &g), 0);
	ck_assert_uint_eq(json_array_size(g.values), 1);
	jsonstream_free(&s);
	json_decref(g.values);
	free(v);
}
END_TEST

START_TEST(test_garbage)
{
	static const struct {
		const char *text;
		size_t before;	/* values delivered before the error */
	} cases[] = {
		{ "x", 0 },
		{ "[1,2]", 0 },
		{ "\"str\"", 0 },
		{ "42", 0 },
		{ "{\"a\":1}]", 1 },
		{ "{\"a\":1}}", 1 },
		{ "{\"a\":1} , {\"b\":2}", 1 },
		{ "{\"a\" 1}", 0 },
		{ "{\"a\":tru}", 0 },
		{ "{\"a\":[}]}", 0 },
		{ "{\"a\":1,}", 0 },
	};
	static const char good[] = "{\"good\":true}";

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct jsonstream s;
		struct got g;

		got_init(&g);
		jsonstream_init(&s, MAX_VALUE);
		ck_assert_msg(jsonstream_feed(&s, cases[i].text, strlen(cases[i].text),
		    collect, &g) == -EINVAL, "case %zu (%s) not refused", i, cases[i].text);
		ck_assert_uint_eq(json_array_size(g.values), cases[i].before);
		ck_assert(!jsonstream_partial(&s));
		ck_assert_int_eq(jsonstream_feed(&s, good, sizeof(good) - 1, collect, &g), 0);
		ck_assert_uint_eq(json_array_size(g.values), cases[i].before + 1);
		jsonstream_free(&s);
		json_decref(g.values);
	}
}
END_TEST

START_TEST(test_deep_nesting)
{
	enum { DEPTH = 5000 };
	char *v = malloc(2 * DEPTH + 16);
	struct jsonstream s;
	struct got g;
	size_t n = 0;

	ck_assert_ptr_nonnull(v);
	memcpy(v, "{\"a\":", 5);
	n = 5;
	memset(v + n, '[', DEPTH);
	n += DEPTH;
	memset(v + n, ']', DEPTH);
	n += DEPTH;
	v[n++] = '}';
	got_init(&g);
	jsonstream_init(&s, 4 * DEPTH);
	/* jansson refuses it (its depth limit); the framer must not crash. */
	ck_assert_int_eq(jsonstream_feed(&s, v, n, collect, &g), -EINVAL);
	ck_assert_uint_eq(json_array_size(g.values), 0);
	jsonstream_free(&s);
	json_decref(g.values);
	free(v);
}
END_TEST

Suite *
jsonstream_suite(void)
{
	Suite *s = suite_create("jsonstream");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_checked_fixture(core, build_stream, free_stream);
	tcase_add_checked_fixture(limits, build_stream, free_stream);
	tcase_set_timeout(core, 60);
	tcase_set_timeout(limits, 60);
	tcase_add_test(core, test_whole_stream_in_one_feed);
	tcase_add_test(core, test_split_at_every_byte);
	tcase_add_test(core, test_one_byte_at_a_time);
	tcase_add_test(core, test_random_chunks);
	tcase_add_test(core, test_many_events_in_one_feed);
	tcase_add_test(core, test_whitespace_only);
	tcase_add_test(core, test_callback_stops_and_keeps_the_rest);
	tcase_add_test(core, test_stop_with_a_partial_event_behind);
	tcase_add_test(core, test_cut_mid_object);
	tcase_add_test(core, test_string_brace_then_close);
	tcase_add_test(limits, test_value_at_the_limit);
	tcase_add_test(limits, test_value_too_big_in_one_feed);
	tcase_add_test(limits, test_value_too_big_in_pieces);
	tcase_add_test(limits, test_garbage);
	tcase_add_test(limits, test_deep_nesting);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
