/* check_flags.c -- the command-line parser both programs use */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "flags.h"
#include "testutil.h"

Suite *flags_suite(void);

static const char *name, *level;
static bool on;
static long count;
static double rate;
static uint64_t period_ms, bytes;
static const char *addr;

static int
parse_level(const char *v, void *out, char *why, size_t whylen)
{
	if (strcmp(v, "low") && strcmp(v, "high")) {
		snprintf(why, whylen, "%s is not low or high", v);
		return -EINVAL;
	}
	*(const char **)out = v;
	return 0;
}

static const struct flag table[] = {
	{ .name = "name", .type = FLAG_STRING, .out = &name, .arg = "text", .help = "a name" },
	{ .name = "on", .type = FLAG_BOOL, .out = &on, .help = "a switch", .def = "false" },
	{ .name = "count", .type = FLAG_INT, .out = &count, .arg = "int", .help = "how many",
	  .min = 1, .max = 32 },
	{ .name = "rate", .type = FLAG_DOUBLE, .out = &rate, .arg = "float", .help = "how fast",
	  .min = 0.5, .max = 100 },
	{ .name = "period", .type = FLAG_DURATION, .out = &period_ms, .arg = "duration",
	  .help = "how often, a duration such as 1m30s; long help text that has to wrap "
	  "around the eightieth column to stay readable in a terminal", .def = "10m",
	  .min = 1000, .max = 86400000 },
	{ .name = "level", .type = FLAG_FUNC, .out = &level, .arg = "level", .help = "low or high",
	  .parse = parse_level },
	{ .name = "budget", .type = FLAG_BYTES, .out = &bytes, .arg = "quantity",
	  .help = "bytes at once", .min = 1024, .max = 64.0 * (1 << 30) },
	{ .name = "addr", .type = FLAG_FUNC, .out = &addr, .arg = "ip", .help = "an address",
	  .parse = flags_ip },
};

static enum flags_result
parse(char *err, size_t errlen, ...)
{
	char *argv[16] = { "prog" };
	int argc = 1;
	va_list ap;
	char *a;

	name = level = NULL;
	on = false;
	count = 0;
	rate = 0;
	period_ms = bytes = 0;
	addr = NULL;
	va_start(ap, errlen);
	while ((a = va_arg(ap, char *)) != NULL && argc < 15)
		argv[argc++] = a;
	va_end(ap);
	err[0] = '\0';
	return flags_parse(table, sizeof(table) / sizeof(table[0]), argc, argv, "prog", "1.0",
	    "About prog.", err, errlen);
}

START_TEST(test_forms)
{
	char err[256];

	ck_assert_int_eq(parse(err, sizeof(err), "--name", "x", "--on", "--count=3",
	    "--rate", "2.5", "--period=1m30s", "--level", "high", NULL), FLAGS_RUN);
	ck_assert_str_eq(name, "x");
	ck_assert(on);
	ck_assert_int_eq(count, 3);
	ck_assert(rate == 2.5);
	ck_assert_uint_eq(period_ms, 90000);
	ck_assert_str_eq(level, "high");
	ck_assert_int_eq(parse(err, sizeof(err), "--on=false", "--period", "2h", NULL),
	    FLAGS_RUN);
	ck_assert(!on);
	ck_assert_uint_eq(period_ms, 7200000);
	ck_assert_int_eq(parse(err, sizeof(err), "--budget=24Mi", "--addr", "::1", NULL),
	    FLAGS_RUN);
	ck_assert_uint_eq(bytes, 24u << 20);
	ck_assert_str_eq(addr, "::1");
	ck_assert_int_eq(parse(err, sizeof(err), "--budget", "2k", NULL), FLAGS_RUN);
	ck_assert_uint_eq(bytes, 2000);
}
END_TEST

START_TEST(test_durations_as_go)
{
	static const struct { const char *in; uint64_t ms; int rc; } cases[] = {
		{ "0", 0, 0 }, { "1s", 1000, 0 }, { "1m30s", 90000, 0 }, { "1.5h", 5400000, 0 },
		{ "300ms", 300, 0 }, { "1500us", 1, 0 }, { "2h45m", 9900000, 0 },
		{ "+5s", 5000, 0 }, { "", 0, -EINVAL }, { "5", 0, -EINVAL }, { "s", 0, -EINVAL },
		{ "-1s", 0, -EINVAL }, { "1d", 0, -EINVAL }, { "99999999999999999999h", 0, -ERANGE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 12345;
		int rc = flags_duration_ms(cases[i].in, &ms);

		ck_assert_msg(rc == cases[i].rc, "%s: rc %d", cases[i].in, rc);
		if (rc == 0)
			ck_assert_msg(ms == cases[i].ms, "%s: %llu ms", cases[i].in,
			    (unsigned long long)ms);
	}
}
END_TEST

START_TEST(test_errors)
{
	static const struct { const char *a, *b, *want; } cases[] = {
		{ "--nope", NULL, "unknown flag --nope (see --help)" },
		{ "--na", NULL, "unknown flag --na (see --help)" },
		{ "stray", NULL, "unexpected argument stray (see --help)" },
		{ "--count", NULL, "--count needs a value" },
		{ "--count", "0", "--count: 0 is not a whole number from 1 to 32" },
		{ "--count", "3x", "--count: 3x is not a whole number from 1 to 32" },
		{ "--rate", "nan", "--rate: nan is not a number from 0.5 to 100" },
		{ "--on=yes", NULL, "--on: yes is not true or false" },
		{ "--period", "1d", "--period: 1d is not a duration such as 30s, 1m30s or 500ms "
		  "from 1s to 24h" },
		{ "--period", "500ms", "--period: 500ms is not a duration such as 30s, 1m30s or "
		  "500ms from 1s to 24h" },
		{ "--level", "mid", "--level: mid is not low or high" },
		{ "--budget", "1000", "--budget: 1000 is not a byte count such as 24Mi or 512Ki "
		  "from 1Ki to 64Gi" },
		{ "--budget", "24MB", "--budget: 24MB is not a byte count such as 24Mi or 512Ki "
		  "from 1Ki to 64Gi" },
		{ "--budget", "-1Mi", "--budget: -1Mi is not a byte count such as 24Mi or 512Ki "
		  "from 1Ki to 64Gi" },
		{ "--addr", "localhost", "--addr: localhost is not an IP address" },
		{ "--help=yes", NULL, "--help takes no value" },
		{ "--version=2", NULL, "--version takes no value" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(parse(err, sizeof(err), cases[i].a, cases[i].b, NULL) == FLAGS_BAD,
		    "%s %s: accepted", cases[i].a, cases[i].b ? cases[i].b : "");
		ck_assert_str_eq(err, cases[i].want);
	}
}
END_TEST

START_TEST(test_help_from_the_table)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	flags_usage(f, "prog", "About prog.", table, sizeof(table) / sizeof(table[0]));
	fclose(f);
	ck_assert_ptr_nonnull(strstr(text, "Usage: prog [flags]\n\nAbout prog.\n\nFlags:\n"));
	ck_assert_ptr_nonnull(strstr(text, "  --count int"));
	ck_assert_ptr_nonnull(strstr(text, "(default 10m)"));
	ck_assert_ptr_nonnull(strstr(text, "  -h, --help"));
	for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 :
	    NULL)
		ck_assert_msg(strcspn(line, "\n") <= 80, "a help line over 80 columns: %.*s",
		    (int)strcspn(line, "\n"), line);
	free(text);
}
END_TEST

Suite *
flags_suite(void)
{
	Suite *s = suite_create("flags");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_forms);
	tcase_add_test(core, test_durations_as_go);
	tcase_add_test(core, test_help_from_the_table);
	tcase_add_test(limits, test_errors);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
