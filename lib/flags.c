/* flags.c -- one table-driven command-line parser for both programs */
#include "flags.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FLAGS_HELP_COLUMN 36	/* where the help text starts */
#define FLAGS_HELP_WIDTH 80

/* Go's duration units, longest first where one is a prefix of another. */
static const struct {
	const char *name;
	uint64_t ns;
} units[] = {
	{ "ns", 1 },
	{ "us", 1000 },
	{ "\xc2\xb5s", 1000 },		/* U+00B5 micro sign */
	{ "\xce\xbcs", 1000 },		/* U+03BC Greek mu */
	{ "ms", 1000000 },
	{ "s", 1000000000ULL },
	{ "m", 60 * 1000000000ULL },
	{ "h", 3600 * 1000000000ULL },
};

static int
parse_unit(const char **p, uint64_t *ns)
{
	size_t best = 0, n;

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		n = strlen(units[i].name);
		if (n > best && strncmp(*p, units[i].name, n) == 0) {
			best = n;
			*ns = units[i].ns;
		}
	}
	if (!best)
		return -EINVAL;
	*p += best;
	return 0;
}

/* One "<digits>[.<digits>]<unit>" term, in nanoseconds. */
static int
parse_term(const char **p, uint64_t *out)
{
	uint64_t whole = 0, frac = 0, scale = 1, unit, v;
	bool digits = false;

	for (; **p >= '0' && **p <= '9'; (*p)++, digits = true) {
		if (__builtin_mul_overflow(whole, 10, &whole) ||
		    __builtin_add_overflow(whole, (uint64_t)(**p - '0'), &whole))
			return -ERANGE;
	}
	if (**p == '.') {
		for ((*p)++; **p >= '0' && **p <= '9'; (*p)++, digits = true) {
			if (scale < 1000000000ULL) {	/* nanoseconds at most */
				frac = frac * 10 + (uint64_t)(**p - '0');
				scale *= 10;
			}
		}
	}
	if (!digits || parse_unit(p, &unit) != 0)
		return -EINVAL;
	if (__builtin_mul_overflow(whole, unit, &v) ||
	    __builtin_add_overflow(v, frac * unit / scale, &v))
		return -ERANGE;
	*out = v;
	return 0;
}

int
flags_duration_ms(const char *s, uint64_t *ms)
{
	uint64_t total = 0, term;
	int rc;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '+')
		s++;
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	while (*s) {
		rc = parse_term(&s, &term);
		if (rc)
			return rc;
		if (__builtin_add_overflow(total, term, &total))
			return -ERANGE;
	}
	*ms = total / 1000000;
	return 0;
}

int
flags_bytes(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *suffix;
		uint64_t scale;
	} suffixes[] = {
		{ "", 1 }, { "Ki", 1ULL << 10 }, { "Mi", 1ULL << 20 }, { "Gi", 1ULL << 30 },
		{ "k", 1000 }, { "M", 1000000 }, { "G", 1000000000 },
	};
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (strcmp(end, suffixes[i].suffix) != 0)
			continue;
		if (__builtin_mul_overflow((uint64_t)v, suffixes[i].scale, bytes))
			return -ERANGE;
		return 0;
	}
	return -EINVAL;
}

int
flags_ip(const char *value, void *out, char *why, size_t whylen)
{
	unsigned char addr[16];

	if (inet_pton(AF_INET, value, addr) == 1 || inet_pton(AF_INET6, value, addr) == 1) {
		*(const char **)out = value;
		return 0;
	}
	snprintf(why, whylen, "%s is not an IP address", value);
	return -EINVAL;
}

static bool
in_range(const struct flag *f, double v)
{
	return (f->min == 0 && f->max == 0) || (v >= f->min && v <= f->max);
}

/* A bound in milliseconds as a duration in its largest exact unit: "1s", "24h". */
static void
duration_text(double ms, char *out, size_t len)
{
	static const struct { const char *unit; uint64_t ms; } u[] = {
		{ "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 },
	};
	uint64_t v = (uint64_t)ms;

	if (v == 0) {
		snprintf(out, len, "0");
		return;
	}
	for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
		if (v % u[i].ms == 0 || u[i].ms == 1) {
			snprintf(out, len, "%llu%s", (unsigned long long)(v / u[i].ms), u[i].unit);
			return;
		}
	}
}

/* A bound in bytes as a quantity in its largest exact binary unit: "64Gi". */
static void
bytes_text(double bytes, char *out, size_t len)
{
	static const char *const unit[] = { "Gi", "Mi", "Ki" };
	uint64_t v = (uint64_t)bytes;

	for (int i = 0; i < 3; i++) {
		uint64_t scale = 1ULL << (10 * (3 - i));

		if (v && v % scale == 0) {
			snprintf(out, len, "%llu%s", (unsigned long long)(v / scale), unit[i]);
			return;
		}
	}
	snprintf(out, len, "%llu", (unsigned long long)v);
}

static void
range_error(const struct flag *f, const char *v, const char *what, char *err, size_t errlen)
{
	char lo[32], hi[32];

	if (f->min == 0 && f->max == 0) {
		snprintf(err, errlen, "--%s: %s is not %s", f->name, v, what);
	} else if (f->type == FLAG_DURATION) {
		duration_text(f->min, lo, sizeof(lo));
		duration_text(f->max, hi, sizeof(hi));
		snprintf(err, errlen, "--%s: %s is not %s from %s to %s", f->name, v, what, lo,
		    hi);
	} else if (f->type == FLAG_BYTES) {
		bytes_text(f->min, lo, sizeof(lo));
		bytes_text(f->max, hi, sizeof(hi));
		snprintf(err, errlen, "--%s: %s is not %s from %s to %s", f->name, v, what, lo,
		    hi);
	} else
		snprintf(err, errlen, "--%s: %s is not %s from %g to %g", f->name, v, what,
		    f->min, f->max);
}

/* Stores one value; err gets the reason when it is bad. */
static int
apply(const struct flag *f, const char *v, char *err, size_t errlen)
{
	char *end, why[256] = "";
	uint64_t ms;
	double d;
	long l;

	switch (f->type) {
	case FLAG_STRING:
		*(const char **)f->out = v;
		return 0;
	case FLAG_BOOL:
		if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
			snprintf(err, errlen, "--%s: %s is not true or false", f->name, v);
			return -EINVAL;
		}
		*(bool *)f->out = strcmp(v, "true") == 0;
		return 0;
	case FLAG_INT:
		errno = 0;
		l = strtol(v, &end, 10);
		if (errno || end == v || *end || !in_range(f, (double)l)) {
			range_error(f, v, "a whole number", err, errlen);
			return -EINVAL;
		}
		*(long *)f->out = l;
		return 0;
	case FLAG_DOUBLE:
		errno = 0;
		d = strtod(v, &end);
		if (errno || end == v || *end || !isfinite(d) || !in_range(f, d)) {
			range_error(f, v, "a number", err, errlen);
			return -EINVAL;
		}
		*(double *)f->out = d;
		return 0;
	case FLAG_DURATION:
		if (flags_duration_ms(v, &ms) != 0 || !in_range(f, (double)ms)) {
			range_error(f, v, "a duration such as 30s, 1m30s or 500ms", err, errlen);
			return -EINVAL;
		}
		*(uint64_t *)f->out = ms;
		return 0;
	case FLAG_BYTES:
		if (flags_bytes(v, &ms) != 0 || !in_range(f, (double)ms)) {
			range_error(f, v, "a byte count such as 24Mi or 512Ki", err, errlen);
			return -EINVAL;
		}
		*(uint64_t *)f->out = ms;
		return 0;
	case FLAG_FUNC:
		if (f->parse(v, f->out, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "--%s: %s", f->name, why[0] ? why : "invalid value");
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

/* Writes text wrapped at FLAGS_HELP_WIDTH, every line from column col. */
static void
wrap(FILE *out, const char *text, size_t col, size_t at)
{
	const char *p = text;

	while (*p) {
		size_t word = strcspn(p, " ");

		if (at > col && at + 1 + word > FLAGS_HELP_WIDTH) {
			fprintf(out, "\n%*s", (int)col, "");
			at = col;
		} else if (at > col) {
			fputc(' ', out);
			at++;
		}
		fprintf(out, "%.*s", (int)word, p);
		at += word;
		p += word;
		while (*p == ' ')
			p++;
	}
	fputc('\n', out);
}

void
flags_usage(FILE *out, const char *program, const char *about, const struct flag *table,
    size_t n)
{
	fprintf(out, "Usage: %s [flags]\n\n%s\n\nFlags:\n", program, about);
	for (size_t i = 0; i < n; i++) {
		const struct flag *f = &table[i];
		char head[128], text[1024];
		int len = snprintf(head, sizeof(head), "  --%s%s%s", f->name, f->arg ? " " : "",
		    f->arg ? f->arg : f->type == FLAG_BOOL ? "" : "");

		snprintf(text, sizeof(text), "%s%s%s%s", f->help, f->def ? " (default " : "",
		    f->def ? f->def : "", f->def ? ")" : "");
		if (len + 1 >= FLAGS_HELP_COLUMN) {
			fprintf(out, "%s\n%*s", head, FLAGS_HELP_COLUMN, "");
		} else {
			fprintf(out, "%-*s", FLAGS_HELP_COLUMN, head);
		}
		wrap(out, text, FLAGS_HELP_COLUMN, FLAGS_HELP_COLUMN);
	}
	fprintf(out, "%-*s%s\n", FLAGS_HELP_COLUMN, "  -h, --help", "print this help and exit");
	fprintf(out, "%-*s%s\n", FLAGS_HELP_COLUMN, "      --version",
	    "print the version and exit");
}

static const struct flag *
find(const struct flag *table, size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(table[i].name) == len && strncmp(table[i].name, name, len) == 0)
			return &table[i];
	return NULL;
}

enum flags_result
flags_parse(const struct flag *table, size_t n, int argc, char **argv, const char *program,
    const char *version, const char *about, char *err, size_t errlen)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq, *v;
		const struct flag *f;
		size_t len;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			flags_usage(stdout, program, about, table, n);
			return FLAGS_DONE;
		}
		if (strcmp(a, "--version") == 0) {
			printf("%s %s\n", program, version);
			return FLAGS_DONE;
		}
		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			snprintf(err, errlen, "unexpected argument %s (see --help)", a);
			return FLAGS_BAD;
		}
		name = a + 2;
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		if (eq && ((len == 4 && strncmp(name, "help", 4) == 0) ||
		    (len == 7 && strncmp(name, "version", 7) == 0))) {
			snprintf(err, errlen, "--%.*s takes no value", (int)len, name);
			return FLAGS_BAD;
		}
		if (!(f = find(table, n, name, len))) {
			snprintf(err, errlen, "unknown flag --%.*s (see --help)", (int)len, name);
			return FLAGS_BAD;
		}
		if (eq)
			v = eq + 1;
		else if (f->type == FLAG_BOOL)
			v = "true";
		else if (i + 1 < argc)
			v = argv[++i];
		else {
			snprintf(err, errlen, "--%s needs a value", f->name);
			return FLAGS_BAD;
		}
		if (apply(f, v, err, errlen) != 0)
			return FLAGS_BAD;
	}
	return FLAGS_RUN;
}
