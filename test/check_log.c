/* check_log.c -- JSON-line logging */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"

Suite *log_suite(void);

static FILE *tmp;

static void
capture(void)
{
	tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	log_set_fd(fileno(tmp));
	log_set_level(LOG_LEVEL_INFO);
}

static void
release(void)
{
	log_set_fd(-1);
	log_set_level(LOG_LEVEL_INFO);
	if (tmp)
		fclose(tmp);
	tmp = NULL;
}

/*
 * Every line written so far, as JSON values in an array. Read with pread:
 * the flusher thread may write while this reads, and a shared file offset
 * (rewind, then read) would send its write to the start of the file.
 */
static json_t *
lines(void)
{
	json_t *all = json_array();
	char *text = NULL, *p, *nl;
	size_t len = 0, cap = 0;
	ssize_t n;

	do {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 131072;
			text = realloc(text, cap + 1);
			ck_assert_ptr_nonnull(text);
		}
		n = pread(fileno(tmp), text + len, cap - len, (off_t)len);
		ck_assert_int_ge(n, 0);
		len += (size_t)n;
	} while (n > 0);
	text[len] = '\0';
	for (p = text; *p; p = nl + 1) {
		json_t *j;

		nl = strchr(p, '\n');
		ck_assert_msg(nl != NULL, "line not terminated: %s", p);
		*nl = '\0';
		j = json_loads(p, 0, NULL);
		ck_assert_msg(j != NULL, "not JSON: %s", p);
		json_array_append_new(all, j);
	}
	free(text);
	return all;
}

START_TEST(test_line_shape)
{
	json_t *all, *l;

	log_info("admission", LOG_STR("uid", "u-1"), LOG_BOOL("allowed", 0),
	    LOG_FLOAT("ms", 0.25), LOG_INT("code", 422));
	log_warn("plain");
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 2);
	l = json_array_get(all, 0);
	ck_assert_str_eq(json_string_value(json_object_get(l, "level")), "info");
	ck_assert_str_eq(json_string_value(json_object_get(l, "msg")), "admission");
	ck_assert_str_eq(json_string_value(json_object_get(l, "uid")), "u-1");
	ck_assert(json_is_false(json_object_get(l, "allowed")));
	ck_assert_int_eq(json_integer_value(json_object_get(l, "code")), 422);
	/* 2026-11-25T17:05:23.123Z */
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(l, "time"))), 24);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 1), "level")), "warn");
	json_decref(all);
}
END_TEST

START_TEST(test_levels)
{
	json_t *all;

	ck_assert_int_eq(log_set_level_name("warn"), 0);
	log_info("hidden");
	log_debug("hidden");
	log_error("shown");
	ck_assert_int_ne(log_set_level_name("loud"), 0);
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_WARN);
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 1);
	json_decref(all);
}
END_TEST

START_TEST(test_hostile_values)
{
	json_t *all, *l;

	/* Quotes, newlines and a reserved key cannot break or forge a line. */
	log_info("a\"b\nc", LOG_STR("msg", "forged"),
	    LOG_STR("k", "v\n{\"level\":\"error\"}"));
	/* A field jansson would refuse (not UTF-8) leaves the message alone, not lost. */
	log_info("bad field", LOG_STR("x", "\xff"), LOG_INT("n", 1));
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 2);
	l = json_array_get(all, 0);
	ck_assert_str_eq(json_string_value(json_object_get(l, "msg")), "a\"b\nc");
	ck_assert_str_eq(json_string_value(json_object_get(l, "k")), "v\n{\"level\":\"error\"}");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 1), "msg")),
	    "bad field");
	ck_assert_uint_eq(json_object_size(json_array_get(all, 1)), 3);
	json_decref(all);
}
END_TEST

/* Everything of the line after its time, as written. */
static char *
raw_tail(size_t i)
{
	static char text[16384];
	ssize_t n = pread(fileno(tmp), text, sizeof(text) - 1, 0);
	char *p = text, *tail;

	ck_assert_int_ge(n, 0);
	text[n] = '\0';
	while (i--) {
		p = strchr(p, '\n');
		ck_assert_ptr_nonnull(p);
		p++;
	}
	tail = strstr(p, "\",\"level\"");
	ck_assert_ptr_nonnull(tail);
	*strchr(tail, '\n') = '\0';
	return tail;
}

/* Each field type as json_dumps() writes it; NULL values are null. */
START_TEST(test_field_types)
{
	json_t *j = json_pack("{s:[i, s], s:{}}", "a", 1, "b/c", "caf\xc3\xa9\n");

	log_info("types", LOG_STR("s", "x\"y\x01"), LOG_STR("none", NULL),
	    LOG_INT("min", LLONG_MIN), LOG_FLOAT("f", 0.1), LOG_FLOAT("e", 1e21),
	    LOG_BOOL("t", 2), LOG_BOOL("no", false), LOG_JSON("j", j), LOG_JSON("nj", NULL));
	log_error("bare");
	ck_assert_str_eq(raw_tail(0), "\",\"level\":\"info\",\"msg\":\"types\","
	    "\"s\":\"x\\\"y\\u0001\",\"none\":null,\"min\":-9223372036854775808,"
	    "\"f\":0.10000000000000001,\"e\":1e21,\"t\":true,\"no\":false,"
	    "\"j\":{\"a\":[1,\"b/c\"],\"caf\xc3\xa9\\n\":{}},\"nj\":null}");
	ck_assert_str_eq(raw_tail(1), "\",\"level\":\"error\",\"msg\":\"bare\"}");
	json_decref(j);
}
END_TEST

/* A line longer than the stack buffer comes out whole. */
START_TEST(test_long_line)
{
	char big[10000];
	json_t *all, *l;

	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	log_warn("long", LOG_STR("big", big), LOG_INT("after", 7));
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 1);
	l = json_array_get(all, 0);
	ck_assert_str_eq(json_string_value(json_object_get(l, "big")), big);
	ck_assert_int_eq(json_integer_value(json_object_get(l, "after")), 7);
	json_decref(all);
}
END_TEST

static void
limited_site(int i)
{
	log_limited_every(300, LOG_LEVEL_WARN, "limited", LOG_INT("i", i));
}

/* log_limited(): one line per interval and call site, then the count left out. */
START_TEST(test_limited_fields)
{
	json_t *all, *l;

	for (int i = 0; i < 4; i++)
		limited_site(i);
	usleep(350 * 1000);
	limited_site(4);
	log_limited(LOG_LEVEL_ERROR, "no fields");
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 3);
	l = json_array_get(all, 0);
	ck_assert_int_eq(json_integer_value(json_object_get(l, "i")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(l, "suppressed")), 0);
	l = json_array_get(all, 1);
	ck_assert_int_eq(json_integer_value(json_object_get(l, "i")), 4);
	ck_assert_int_eq(json_integer_value(json_object_get(l, "suppressed")), 3);
	l = json_array_get(all, 2);
	ck_assert_str_eq(json_string_value(json_object_get(l, "msg")), "no fields");
	ck_assert_int_eq(json_integer_value(json_object_get(l, "suppressed")), 0);
	json_decref(all);
}
END_TEST

/* Buffered output (log_set_flush_interval) ------------------------------ */

static size_t
count_lines(void)
{
	json_t *all = lines();
	size_t n = json_array_size(all);

	json_decref(all);
	return n;
}

/* Lines wait for a flush, keep their order, and warn lines go at once. */
START_TEST(test_buffered_order)
{
	json_t *all;

	ck_assert_int_eq(log_set_flush_interval(60000), 0);
	log_info("one");
	log_info("two", LOG_INT("n", 2));
	ck_assert_uint_eq(count_lines(), 0);
	log_flush();
	ck_assert_uint_eq(count_lines(), 2);
	log_info("three");
	log_warn("four");	/* flushes "three" first */
	log_debug("hidden");
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 4);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 0), "msg")), "one");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 2), "msg")), "three");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 3), "msg")), "four");
	json_decref(all);
	ck_assert_int_eq(log_set_flush_interval(0), 0);	/* flushes, then unbuffered */
	log_info("five");
	ck_assert_uint_eq(count_lines(), 5);
}
END_TEST

/* The flusher thread writes a lone line within the interval. */
START_TEST(test_buffered_interval)
{
	int i;

	ck_assert_int_eq(log_set_flush_interval(50), 0);
	log_info("soon");
	for (i = 0; i < 200 && count_lines() == 0; i++)
		usleep(10 * 1000);
	ck_assert_uint_eq(count_lines(), 1);
	log_info("again");	/* the flusher waits for the next one too */
	for (i = 0; i < 200 && count_lines() == 1; i++)
		usleep(10 * 1000);
	ck_assert_uint_eq(count_lines(), 2);
	ck_assert_int_eq(log_set_flush_interval(0), 0);
}
END_TEST

/* A full buffer is written by the line that does not fit; nothing is cut. */
START_TEST(test_buffered_full)
{
	json_t *all;
	size_t n = 2000, i;
	char pad[100];

	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	ck_assert_int_eq(log_set_flush_interval(60000), 0);
	for (i = 0; i < n; i++)	/* ~180 bytes a line, ~360 KiB in all */
		log_info("line", LOG_INT("seq", i), LOG_STR("pad", pad));
	ck_assert_uint_gt(count_lines(), 0);
	ck_assert_uint_lt(count_lines(), n);
	log_flush();
	all = lines();
	ck_assert_uint_eq(json_array_size(all), n);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(all, i),
		    "seq")), (json_int_t)i);
	json_decref(all);
	ck_assert_int_eq(log_set_flush_interval(0), 0);
}
END_TEST

static void *
log_many(void *arg)
{
	for (json_int_t i = 0; i < 2000; i++)
		log_info("thread", LOG_INT("t", (intptr_t)arg), LOG_INT("seq", i));
	return NULL;
}

/* Lines from several threads stay whole, and each thread's in order. */
START_TEST(test_buffered_threads)
{
	pthread_t t[4];
	json_int_t next[4] = { 0 };
	json_t *all, *line;
	size_t i;

	ck_assert_int_eq(log_set_flush_interval(5), 0);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, log_many, (void *)(intptr_t)i), 0);
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	log_flush();
	all = lines();	/* asserts every line is whole JSON */
	ck_assert_uint_eq(json_array_size(all), 8000);
	json_array_foreach(all, i, line) {
		json_int_t k = json_integer_value(json_object_get(line, "t"));

		ck_assert_int_eq(json_integer_value(json_object_get(line, "seq")), next[k]++);
	}
	json_decref(all);
	ck_assert_int_eq(log_set_flush_interval(0), 0);
}
END_TEST

/* What is buffered at exit() is written. */
START_TEST(test_buffered_exit)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (log_set_flush_interval(60000) != 0)
			_exit(3);
		log_info("last words");
		exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	/* under valgrind the child's exit status is valgrind's verdict on the
	 * test process it copied (leaks of the suite's state), not ours */
	ck_assert(WIFEXITED(status));
	ck_assert(WEXITSTATUS(status) == 0 || tu_under_valgrind());
	ck_assert_uint_eq(count_lines(), 1);
}
END_TEST

/* A call site's limit: a burst of lines per interval, then a count of what it left out. */
START_TEST(test_limit_burst_then_count)
{
	static struct log_limit lim = LOG_LIMIT_INIT_BURST(300, 3);
	unsigned long n = 99;

	for (int i = 0; i < 3; i++) {
		ck_assert(log_limit_pass(&lim, &n));
		ck_assert_uint_eq(n, 0);
	}
	ck_assert(!log_limit_pass(&lim, &n));
	ck_assert(!log_limit_pass(&lim, &n));
	usleep(350 * 1000);
	ck_assert(log_limit_pass(&lim, &n));
	ck_assert_uint_eq(n, 2);
	ck_assert(log_limit_pass(&lim, &n));
	ck_assert_uint_eq(n, 0);
}
END_TEST

Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *buffered = tcase_create("buffered");

	tcase_add_checked_fixture(core, capture, release);
	tcase_add_checked_fixture(limits, capture, release);
	tcase_add_test(core, test_limit_burst_then_count);
	tcase_add_test(core, test_line_shape);
	tcase_add_test(core, test_levels);
	tcase_add_test(core, test_field_types);
	tcase_add_test(core, test_limited_fields);
	tcase_add_test(limits, test_hostile_values);
	tcase_add_test(limits, test_long_line);
	tcase_add_checked_fixture(buffered, capture, release);
	tcase_set_timeout(buffered, 60);
	tcase_add_test(buffered, test_buffered_order);
	tcase_add_test(buffered, test_buffered_interval);
	tcase_add_test(buffered, test_buffered_full);
	tcase_add_test(buffered, test_buffered_threads);
	tcase_add_test(buffered, test_buffered_exit);
	suite_add_tcase(s, buffered);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
