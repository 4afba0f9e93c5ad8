/* check_log.c -- JSON-line logging */
#include <check.h>
#include <jansson.h>
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

	log_info("admission", "{s:s, s:b, s:f, s:i}", "uid", "u-1", "allowed", 0,
	    "ms", 0.25, "code", 422);
	log_warn("plain", NULL);
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
	log_info("hidden", NULL);
	log_debug("hidden", NULL);
	log_error("shown", NULL);
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
	log_info("a\"b\nc", "{s:s, s:s}", "msg", "forged", "k", "v\n{\"level\":\"error\"}");
	log_info("bad format", "{s:i", "x", 1);
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 2);
	l = json_array_get(all, 0);
	ck_assert_str_eq(json_string_value(json_object_get(l, "msg")), "a\"b\nc");
	ck_assert_str_eq(json_string_value(json_object_get(l, "k")), "v\n{\"level\":\"error\"}");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 1), "msg")),
	    "bad format");
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
	log_info("one", NULL);
	log_info("two", "{s:i}", "n", 2);
	ck_assert_uint_eq(count_lines(), 0);
	log_flush();
	ck_assert_uint_eq(count_lines(), 2);
	log_info("three", NULL);
	log_warn("four", NULL);	/* flushes "three" first */
	log_debug("hidden", NULL);
	all = lines();
	ck_assert_uint_eq(json_array_size(all), 4);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 0), "msg")), "one");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 2), "msg")), "three");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(all, 3), "msg")), "four");
	json_decref(all);
	ck_assert_int_eq(log_set_flush_interval(0), 0);	/* flushes, then unbuffered */
	log_info("five", NULL);
	ck_assert_uint_eq(count_lines(), 5);
}
END_TEST

/* The flusher thread writes a lone line within the interval. */
START_TEST(test_buffered_interval)
{
	int i;

	ck_assert_int_eq(log_set_flush_interval(50), 0);
	log_info("soon", NULL);
	for (i = 0; i < 200 && count_lines() == 0; i++)
		usleep(10 * 1000);
	ck_assert_uint_eq(count_lines(), 1);
	log_info("again", NULL);	/* the flusher waits for the next one too */
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
		log_info("line", "{s:I, s:s}", "seq", (json_int_t)i, "pad", pad);
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
		log_info("thread", "{s:I, s:I}", "t", (json_int_t)(intptr_t)arg, "seq", i);
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
		log_info("last words", NULL);
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
	tcase_add_test(limits, test_hostile_values);
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
