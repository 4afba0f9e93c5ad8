/* check_procmetrics.c -- process_* metrics from a /proc tree: a made-up one, then the real one */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "metrics.h"
#include "procmetrics.h"
#include "testutil.h"

Suite *procmetrics_suite(void);

/* The value of the line "name value" in the registry's text (which must hold it). */
static double
value_of(struct metrics *m, const char *name)
{
	struct buf b;
	char *text, *line;
	double v = -1;
	size_t n = strlen(name);
	int found = 0;

	buf_init(&b, 1 << 20);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	text = buf_steal(&b, NULL);
	ck_assert_ptr_nonnull(text);
	for (line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (strncmp(line, name, n) == 0 && line[n] == ' ') {
			v = strtod(line + n + 1, NULL);
			found = 1;
			break;
		}
	}
	free(text);
	ck_assert_msg(found, "%s is not in the output", name);
	return v;
}

/* A /proc tree: self/stat, self/limits, self/fd with n_fds entries, stat. */
static char *
fake_proc(const char *stat, const char *limits, int n_fds)
{
	static char dir[64];
	char path[128];

	snprintf(dir, sizeof(dir), "/tmp/milo-check-proc-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/self", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/self/fd", dir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	for (int i = 0; i < n_fds; i++) {
		char name[16];

		snprintf(name, sizeof(name), "%d", i);
		tu_write_file(path, name, "");
	}
	snprintf(path, sizeof(path), "%s/self", dir);
	tu_write_file(path, "stat", stat);
	tu_write_file(path, "limits", limits);
	tu_write_file(dir, "stat", "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5 6 7\n"
	    "ctxt 99\nbtime 1700000000\nprocesses 7\n");
	return dir;
}

static const char limits_text[] =
    "Limit                     Soft Limit           Hard Limit           Units     \n"
    "Max cpu time              unlimited            unlimited            seconds   \n"
    "Max open files            1024                 524288               files     \n"
    "Max address space         unlimited            unlimited            bytes     \n";

/*
 * A command name with spaces and parentheses; utime 250 and stime 150
 * ticks, starttime 4200 ticks, vsize 123456789, rss 1000 pages.
 */
static const char stat_text[] =
    "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 "
    "3 0 4200 123456789 1000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 "
    "0 0 0 0 0 0\n";

START_TEST(test_made_up_tree)
{
	char *dir = fake_proc(stat_text, limits_text, 5);
	struct metrics *m = metrics_new();
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);

	ck_assert_int_eq(procmetrics_register(m, dir), 0);
	ck_assert_double_eq_tol(value_of(m, "process_cpu_seconds_total"),
	    400.0 / (double)tck, 1e-9);
	ck_assert_double_eq(value_of(m, "process_virtual_memory_bytes"), 123456789.0);
	ck_assert_double_eq(value_of(m, "process_resident_memory_bytes"),
	    1000.0 * (double)page);
	ck_assert_double_eq(value_of(m, "process_open_fds"), 5.0);
	ck_assert_double_eq(value_of(m, "process_max_fds"), 1024.0);
	ck_assert_double_eq(value_of(m, "process_virtual_memory_max_bytes"),
	    18446744073709551615.0);
	ck_assert_double_eq_tol(value_of(m, "process_start_time_seconds"),
	    1700000000.0 + 4200.0 / (double)tck, 1e-6);

	/* The counter follows the file; it never goes back. */
	{
		char self[128], *s = strdup(stat_text), *p = strstr(s, " 250 150 ");

		memcpy(p, " 350 150 ", 9);
		snprintf(self, sizeof(self), "%s/self", dir);
		tu_write_file(self, "stat", s);
		ck_assert_double_eq_tol(value_of(m, "process_cpu_seconds_total"),
		    500.0 / (double)tck, 1e-9);
		memcpy(p, " 050 150 ", 9);
		tu_write_file(self, "stat", s);
		ck_assert_double_eq_tol(value_of(m, "process_cpu_seconds_total"),
		    500.0 / (double)tck, 1e-9);
		free(s);
	}
	metrics_free(m);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		ck_assert_int_eq(system(cmd), 0);
	}
}
END_TEST

/* The families have client_golang's names, help texts and types. */
START_TEST(test_exposition)
{
	struct metrics *m = metrics_new();
	struct buf b;
	char *text;
	static const char *const want[] = {
		"# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
		"# TYPE process_cpu_seconds_total counter\n",
		"# HELP process_open_fds Number of open file descriptors.\n"
		"# TYPE process_open_fds gauge\n",
		"# HELP process_max_fds Maximum number of open file descriptors.\n"
		"# TYPE process_max_fds gauge\n",
		"# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
		"# TYPE process_virtual_memory_bytes gauge\n",
		"# HELP process_virtual_memory_max_bytes Maximum amount of virtual memory available in bytes.\n"
		"# TYPE process_virtual_memory_max_bytes gauge\n",
		"# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
		"# TYPE process_resident_memory_bytes gauge\n",
		"# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
		"# TYPE process_start_time_seconds gauge\n",
	};

	ck_assert_int_eq(procmetrics_register(m, NULL), 0);
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(metrics_render(m, &b), 0);
	text = buf_steal(&b, NULL);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(text, want[i]), "missing: %s", want[i]);
	free(text);
	metrics_free(m);
}
END_TEST

/* This process, read from the real /proc. */
START_TEST(test_live)
{
	struct metrics *m = metrics_new();
	struct rlimit rl;
	double fds, cpu0, start, rss;
	int extra[3];
	volatile double sink = 0;

	ck_assert_int_eq(procmetrics_register(m, NULL), 0);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	/* valgrind keeps a few descriptors for itself and reports a lower limit */
	if (tu_under_valgrind())
		ck_assert(value_of(m, "process_max_fds") >= (double)rl.rlim_cur);
	else
		ck_assert_double_eq(value_of(m, "process_max_fds"), (double)rl.rlim_cur);

	/* Three more descriptors are three more in the gauge. */
	fds = value_of(m, "process_open_fds");
	for (int i = 0; i < 3; i++)
		ck_assert_int_ge(extra[i] = open("/dev/null", O_RDONLY | O_CLOEXEC), 0);
	ck_assert_double_eq(value_of(m, "process_open_fds"), fds + 3);
	for (int i = 0; i < 3; i++)
		close(extra[i]);
	ck_assert_double_eq(value_of(m, "process_open_fds"), fds);

	rss = value_of(m, "process_resident_memory_bytes");
	ck_assert(rss > 0);
	ck_assert(rss <= value_of(m, "process_virtual_memory_bytes"));

	/* Started in the past. */
	start = value_of(m, "process_start_time_seconds");
	ck_assert(start <= (double)time(NULL) + 1);
	ck_assert(start > 1e9);

	/* CPU spent shows up (spin until a tick lands; bounded by Check's timeout). */
	cpu0 = value_of(m, "process_cpu_seconds_total");
	while (value_of(m, "process_cpu_seconds_total") <= cpu0) {
		for (int i = 0; i < 1000000; i++)
			sink += i;
	}
	metrics_free(m);
}
END_TEST

START_TEST(test_names_taken)
{
	struct metrics *m = metrics_new();

	ck_assert_int_eq(procmetrics_register(m, NULL), 0);
	ck_assert_int_eq(procmetrics_register(m, NULL), -EEXIST);
	metrics_free(m);
}
END_TEST

/* A tree without the files: registration works, values stay at zero. */
START_TEST(test_missing_files)
{
	struct metrics *m = metrics_new();

	ck_assert_int_eq(procmetrics_register(m, "/nonexistent-proc"), 0);
	ck_assert_double_eq(value_of(m, "process_open_fds"), 0);
	ck_assert_double_eq(value_of(m, "process_cpu_seconds_total"), 0);
	metrics_free(m);
}
END_TEST

START_TEST(test_bad_stat)
{
	char *dir = fake_proc("4242 no parenthesis 1 2 3\n", "garbage\n", 0);
	struct metrics *m = metrics_new();
	char cmd[128];

	ck_assert_int_eq(procmetrics_register(m, dir), 0);
	ck_assert_double_eq(value_of(m, "process_virtual_memory_bytes"), 0);
	ck_assert_double_eq(value_of(m, "process_max_fds"), 0);
	ck_assert_double_eq(value_of(m, "process_open_fds"), 0);
	metrics_free(m);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *
procmetrics_suite(void)
{
	Suite *s = suite_create("procmetrics");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_made_up_tree);
	tcase_add_test(core, test_exposition);
	tcase_add_test(core, test_live);
	tcase_add_test(limits, test_names_taken);
	tcase_add_test(limits, test_missing_files);
	tcase_add_test(limits, test_bad_stat);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
