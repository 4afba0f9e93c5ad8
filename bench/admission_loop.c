/*
 * admission_loop.c -- what contact-webhook does per admission request
 * outside HTTP and TLS, in a loop, for profilers (valgrind --tool=callgrind,
 * perf) and a quick in-process timing.
 *
 *   build/default/admission_loop [-n 20000] [-q] [-k contact|membership] [FILE]
 *
 * Each iteration is webhook/server.c's serve_admission() without the
 * server: admission_handle() on the review in FILE (default
 * test/fixtures/sample-review.json, a valid Contact CREATE; the endpoint
 * is /validate-...-<kind>), then the JSON log line of log_decision() (same
 * format, same fields) written to /dev/null, then admission_outcome_free().
 * -q skips the log line. Stateless, as bench/webhook.sh runs the webhook.
 * Prints the time per iteration (a 2-core shared machine is noisy: compare
 * within one run, or use callgrind's instruction counts).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admission.h"
#include "jsonparse.h"
#include "log.h"

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		perror(path);
		exit(1);
	}
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(1);
	}
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *file = "test/fixtures/sample-review.json";
	enum resource_kind kind = KIND_CONTACT;
	long n = 20000;
	int quiet = 0, opt, allowed = 0;
	size_t len;
	char *body;
	double t0, dt;

	jsonparse_init();
	while ((opt = getopt(argc, argv, "n:qk:")) != -1) {
		switch (opt) {
		case 'n':
			n = atol(optarg);
			break;
		case 'q':
			quiet = 1;
			break;
		case 'k':
			kind = strcmp(optarg, "membership") == 0 ? KIND_MEMBERSHIP : KIND_CONTACT;
			break;
		default:
			fprintf(stderr, "usage: admission_loop [-n N] [-q] [-k contact|membership] "
			    "[FILE]\n");
			return 2;
		}
	}
	if (optind < argc)
		file = argv[optind];
	body = slurp(file, &len);
	log_set_fd(open("/dev/null", O_WRONLY));
	log_set_level(LOG_LEVEL_INFO);
	const char *path = admission_path(kind, ADMISSION_VALIDATE);

	t0 = now_s();
	for (long i = 0; i < n; i++) {
		struct admission_outcome out;
		struct timespec t;

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (admission_handle(NULL, kind, ADMISSION_VALIDATE, body, len, &out) != 0 ||
		    out.http_status != 200) {
			fprintf(stderr, "admission_loop: the review was not answered with 200\n");
			return 1;
		}
		allowed += out.allowed;
		/* webhook/server.c log_decision(), field for field. */
		if (!quiet && log_enabled(LOG_LEVEL_INFO))
			log_info("admission", LOG_STR("webhook", path),
			    LOG_STR("uid", out.uid), LOG_STR("kind", out.kind),
			    LOG_STR("namespace", out.namespace), LOG_STR("name", out.name),
			    LOG_STR("operation", out.operation),
			    LOG_BOOL("allowed", out.allowed),
			    LOG_BOOL("dry_run", out.dry_run),
			    LOG_BOOL("patched", out.patched), LOG_FLOAT("ms", 0.042));
		admission_outcome_free(&out);
	}
	dt = now_s() - t0;
	printf("admission_loop: %ld iterations, %.2f us each (%s, %s)\n", n, dt * 1e6 / (double)n,
	    allowed == n ? "allowed" : "denied", quiet ? "no log line" : "with the log line");
	free(body);
	return 0;
}
