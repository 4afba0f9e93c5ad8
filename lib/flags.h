/* flags.h -- one table-driven command-line parser for both programs */
#ifndef MILO_FLAGS_H
#define MILO_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Kubernetes components' flag syntax (spf13/pflag): --name value,
 * --name=value, booleans as --name or --name=true|false; names exactly as
 * listed (no abbreviations, so a typo never means another flag); -h and
 * --help print the help generated from the table, --version the version.
 * Durations use Go's time.ParseDuration grammar ("1m30s", "500ms", "2h",
 * "0"), as Kubernetes components do.
 */

enum flag_type {
	FLAG_STRING,	/* out: const char ** (borrowed from argv) */
	FLAG_BOOL,	/* out: bool * */
	FLAG_INT,	/* out: long *, within [min, max] */
	FLAG_DOUBLE,	/* out: double *, within [min, max] */
	FLAG_DURATION,	/* out: uint64_t * milliseconds, within [min, max] */
	FLAG_BYTES,	/* out: uint64_t * bytes, a quantity ("24Mi"), within [min, max] */
	FLAG_FUNC,	/* parse(value, out, why, whylen): 0 or a reason */
};

struct flag {
	const char *name;		/* without the dashes */
	enum flag_type type;
	void *out;
	const char *arg;		/* the value's name in the help: "file", "duration" */
	const char *help;		/* one sentence or two; the help wraps it */
	const char *def;		/* the default as the help shows it, or NULL */
	double min, max;		/* FLAG_INT, FLAG_DOUBLE, FLAG_DURATION (ms); 0, 0: any */
	int (*parse)(const char *value, void *out, char *why, size_t whylen);
};

enum flags_result { FLAGS_RUN, FLAGS_DONE, FLAGS_BAD };

/*
 * Parses argv against the table; outs keep their defaults when a flag is
 * absent. FLAGS_DONE after --help or --version (printed on stdout);
 * FLAGS_BAD with the reason in err ("--workers: 0 is not within 1 to 32").
 */
enum flags_result flags_parse(const struct flag *table, size_t n, int argc, char **argv,
    const char *program, const char *version, const char *about, char *err,
    size_t errlen);

/* The help: about, then one entry per flag, then -h and --version. */
void flags_usage(FILE *out, const char *program, const char *about,
    const struct flag *table, size_t n);

/*
 * Go's time.ParseDuration for non-negative durations, to milliseconds
 * (rounded down): "1h2m3.5s", "300ms", "1.5us", "0". 0, -EINVAL or -ERANGE.
 */
int flags_duration_ms(const char *s, uint64_t *ms);

/*
 * A byte count as a Kubernetes quantity: "25165824", "24Mi", "512Ki",
 * "1Gi" (binary suffixes), "24M", "1G" (decimal). 0, -EINVAL or -ERANGE.
 */
int flags_bytes(const char *s, uint64_t *bytes);

/* FLAG_FUNC parsers both programs use: an IP address (out: const char **). */
int flags_ip(const char *value, void *out, char *why, size_t whylen);

#endif
