/* testutil.h -- small helpers shared by the Check suites */
#ifndef MILO_TESTUTIL_H
#define MILO_TESTUTIL_H

#include <check.h>
#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct kube_client;

/* $MILO_TOP/<rel>, or ./<rel> when unset. Static buffer, not thread-safe. */
const char *tu_path(const char *rel);

/* Reads a whole file; NULL on error. free() the result. */
char *tu_read_file(const char *path, size_t *len);

/* Writes text to dir/name; fails the test on error. Returns the path (static). */
const char *tu_write_file(const char *dir, const char *name, const char *text);

/* Loads JSON from a path relative to the top; fails the test on error. */
json_t *tu_load_json(const char *rel);

/* True when the suites run under valgrind (slow paths may shrink). */
int tu_under_valgrind(void);

/* Sleeps ms milliseconds, all of them (a signal does not cut the sleep short). */
void tu_sleep_ms(long ms);

#define TU_VALGRIND_SLACK 4	/* how much slower a test may be under valgrind */

/*
 * A loose upper bound (in any unit), stretched TU_VALGRIND_SLACK times
 * under valgrind.
 */
double tu_slack(double bound);

/* The fixtures of a TCase; any may be NULL. */
struct tu_fixtures {
	void (*start)(void);		/* unchecked: once for the TCase (a stand-in) */
	void (*stop)(void);
	void (*setup)(void);		/* checked: around each test */
	void (*teardown)(void);
};

#define TU_VALGRIND_TIMEOUT_S 300	/* a TCase's timeout under valgrind */

/*
 * Creates the TCase `name` with fixtures f and a timeout of timeout_s
 * seconds (TU_VALGRIND_TIMEOUT_S under valgrind), and adds it to s.
 */
TCase *tu_tcase(Suite *s, const char *name, const struct tu_fixtures *f, int timeout_s);


/* ---- admission rule fixtures (one JSON file each under test/fixtures/rules) ---- */

/* Sorted file names (no directory) of the rule fixtures; free with tu_names_free. */
char **tu_rule_names(size_t *n);
void tu_names_free(char **names, size_t n);

/* Loads test/fixtures/rules/<name>. */
json_t *tu_rule_load(const char *name);

/* RFC 7386 merge patch of patch onto target (modified in place). */
void tu_merge_patch(json_t *target, const json_t *patch);

/*
 * Builds the AdmissionReview v1 a kube-apiserver would send for a rule
 * fixture, with the given uid; the requester is alice (uid u-1) unless the
 * fixture gives its own "userInfo". New reference.
 */
json_t *tu_rule_review(const json_t *rule, const char *uid);

/*
 * An object described as {"base": "<file under test/fixtures/objects>",
 * "set": {merge patch}}; JSON null when there is no base. New reference.
 */
json_t *tu_rule_object(const json_t *spec);

/* The endpoint path of a rule fixture. Borrowed from rule. */
const char *tu_rule_endpoint(const json_t *rule);

/*
 * Asserts (Check) that an HTTP status and body answer the rule as its
 * "expect" says, and that the response keeps the AdmissionReview
 * contract: HTTP 200, apiVersion/kind, the uid echoed, no patch from a
 * validating endpoint, patch and patchType together.
 */
void tu_rule_assert(const json_t *rule, const char *uid, long http_status,
    const char *body, size_t len);


/* ---- the Kubernetes API stand-in (test/py/kube_standin.py) ---- */

#define TU_STANDIN_START_MS 20000	/* how long a start may take on a loaded machine */
#define TU_STANDIN_STOP_MS 10000	/* SIGTERM, then SIGKILL after this */

/*
 * One stand-in process, listening on 127.0.0.1 over plain HTTP. Its state
 * lives in the process: start one per TCase (an unchecked fixture) and
 * call tu_standin_reset() where a test needs a clean store.
 */
struct tu_standin {
	pid_t pid;		/* 0 when not running */
	int port;
	char url[64];		/* "http://127.0.0.1:<port>" */
	char dir[64];		/* private scratch directory; tests may add files */
	char kubeconfig[128];	/* <dir>/kubeconfig: the http:// server, token "standin-token" */
	char log[128];		/* <dir>/standin.log: the stand-in's stdout and stderr */
};

/*
 * Runs `$PYTHON (default python3) $MILO_TOP/test/py/kube_standin.py
 * --port 0 --port-file <dir>/port --kubeconfig-out <dir>/kubeconfig
 * [extra_args...]` in a new scratch directory and waits, at most
 * TU_STANDIN_START_MS, until it listens. extra_args is a NULL-terminated
 * list or NULL. The child gets SIGTERM when the calling thread exits, so
 * start it from the main thread. Does not use Check's assertions (it is
 * meant for unchecked fixtures): returns 0, or a negative errno-style code
 * with the stand-in's log copied to stderr and s left stopped.
 */
int tu_standin_start(struct tu_standin *s, const char *const *extra_args);

/*
 * Stops the stand-in (SIGTERM, SIGKILL after TU_STANDIN_STOP_MS), copies
 * its log to stderr when it reported an internal error, and removes the
 * scratch directory with the files in it (not subdirectories). Safe on a
 * stand-in that never started or was already stopped.
 */
void tu_standin_stop(struct tu_standin *s);

/*
 * One control call, METHOD /_standin/<action> with an optional JSON body
 * text. Fails the running test unless the stand-in is up and answers 200.
 * Returns the parsed answer (a new reference), or NULL for a non-JSON
 * answer such as healthz's.
 */
json_t *tu_standin_control(const struct tu_standin *s, const char *method,
    const char *action, const char *body);

/* POST /_standin/<action> with a printf-formatted JSON body; the answer is dropped. */
void tu_standin_post(const struct tu_standin *s, const char *action, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Objects, history, logs and config back to defaults; open watches are cut. */
void tu_standin_reset(const struct tu_standin *s);

/* A port on 127.0.0.1 that nothing listens on (bound, then closed), or 0. */
int tu_closed_port(void);

/*
 * One kube stand-in for the suites that run it as a TCase's unchecked
 * fixture (Check runs one TCase at a time): tu_kube_start and
 * tu_kube_stop as the fixture, tu_kube_ready() first in the checked
 * setup. A fixture that needs arguments calls tu_kube_start_args(); one
 * that fails before it can start reports it with tu_kube_start_failed().
 */
extern struct tu_standin tu_kube;

void tu_kube_start(void);
void tu_kube_start_args(const char *const *extra_args);
void tu_kube_start_failed(int rc);	/* rc: a negative errno */
void tu_kube_stop(void);

/* Fails the running test unless tu_kube started; resets its store. */
void tu_kube_ready(void);

/* A client from a kubeconfig file; fails the running test on error. kube_client_free() it. */
struct kube_client *tu_kube_client(const char *kubeconfig);


/* ---- the Resend API stand-in (test/py/resend_standin.py) ---- */

/*
 * Runs `$PYTHON (default python3) $MILO_TOP/test/py/resend_standin.py
 * --port 0 --port-file <dir>/port [extra_args...]` in a new scratch
 * directory, as tu_standin_start() does for the kube stand-in (same
 * struct; kubeconfig stays empty; same limits, same failure handling).
 * It accepts the API key TU_RESEND_KEY unless told otherwise.
 */
#define TU_RESEND_KEY "re_standin_key"

int tu_resend_start(struct tu_standin *s, const char *const *extra_args);

/* The same as tu_standin_stop(), tu_standin_control() and tu_standin_post(). */
void tu_resend_stop(struct tu_standin *s);
json_t *tu_resend_control(const struct tu_standin *s, const char *method,
    const char *action, const char *body);
void tu_resend_post(const struct tu_standin *s, const char *action, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* POST /_standin/reset: objects, calls, faults and config back to the start. */
void tu_resend_reset(const struct tu_standin *s);

/*
 * How many API calls the stand-in answered with status for route ("GET
 * /segments"; NULL: every route), from GET /_standin/counts.
 */
long tu_resend_count(const struct tu_standin *s, const char *route, int status);

#endif
