/* testutil.c -- small helpers shared by the Check suites */
#include "testutil.h"

#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base64.h"
#include "kube.h"
#include "kubeconfig.h"

const char *
tu_path(const char *rel)
{
	static char path[4096];
	const char *top = getenv("MILO_TOP");

	snprintf(path, sizeof(path), "%s/%s", top ? top : ".", rel);
	return path;
}

const char *
tu_write_file(const char *dir, const char *name, const char *text)
{
	static char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
	return path;
}

char *
tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	data = malloc((size_t)n + 1);
	if (!data)
		goto out;
	if (fread(data, 1, (size_t)n, f) != (size_t)n) {
		free(data);
		data = NULL;
		goto out;
	}
	data[n] = '\0';
	if (len)
		*len = (size_t)n;
out:
	fclose(f);
	return data;
}

json_t *
tu_load_json(const char *rel)
{
	json_error_t err;
	json_t *j = json_load_file(tu_path(rel), JSON_REJECT_DUPLICATES, &err);

	ck_assert_msg(j != NULL, "%s: %s (line %d)", rel, err.text, err.line);
	return j;
}

int
tu_under_valgrind(void)
{
	return getenv("MILO_UNDER_VALGRIND") != NULL;
}

void
tu_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

double
tu_slack(double bound)
{
	return tu_under_valgrind() ? bound * TU_VALGRIND_SLACK : bound;
}

TCase *
tu_tcase(Suite *s, const char *name, const struct tu_fixtures *f, int timeout_s)
{
	TCase *tc = tcase_create(name);

	if (f->start || f->stop)
		tcase_add_unchecked_fixture(tc, f->start, f->stop);
	if (f->setup || f->teardown)
		tcase_add_checked_fixture(tc, f->setup, f->teardown);
	tcase_set_timeout(tc, tu_under_valgrind() ? TU_VALGRIND_TIMEOUT_S : timeout_s);
	suite_add_tcase(s, tc);
	return tc;
}

/* ---- admission rule fixtures ---- */

#define RULES_DIR "test/fixtures/rules"

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **
tu_rule_names(size_t *n)
{
	DIR *d = opendir(tu_path(RULES_DIR));
	struct dirent *e;
	char **names = NULL;
	size_t len = 0, cap = 0;

	*n = 0;
	if (!d)
		return NULL;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);

		if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
			continue;
		if (len == cap) {
			char **grown;

			cap = cap ? cap * 2 : 64;
			grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				break;
			names = grown;
		}
		names[len] = strdup(e->d_name);
		if (names[len])
			len++;
	}
	closedir(d);
	if (len)
		qsort(names, len, sizeof(*names), cmp_names);
	*n = len;
	return names;
}

void
tu_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

json_t *
tu_rule_load(const char *name)
{
	char rel[512];

	snprintf(rel, sizeof(rel), "%s/%s", RULES_DIR, name);
	return tu_load_json(rel);
}

void
tu_merge_patch(json_t *target, const json_t *patch)
{
	const char *key;
	json_t *value;

	json_object_foreach((json_t *)(uintptr_t)patch, key, value) {
		json_t *have = json_object_get(target, key);

		if (json_is_null(value))
			json_object_del(target, key);
		else if (json_is_object(value) && json_is_object(have))
			tu_merge_patch(have, value);
		else if (json_is_object(value)) {
			json_t *fresh = json_object();

			tu_merge_patch(fresh, value);
			json_object_set_new(target, key, fresh);
		} else
			json_object_set(target, key, value);
	}
}

/* {"base": "<objects/file>", "set": {merge patch}} -> the object, or null. */
json_t *
tu_rule_object(const json_t *spec)
{
	const char *base = json_string_value(json_object_get(spec, "base"));
	char rel[512];
	json_t *obj;

	if (!base)
		return json_null();
	snprintf(rel, sizeof(rel), "test/fixtures/objects/%s", base);
	obj = tu_load_json(rel);
	if (json_object_get(spec, "set"))
		tu_merge_patch(obj, json_object_get(spec, "set"));
	return obj;
}

const char *
tu_rule_endpoint(const json_t *rule)
{
	return json_string_value(json_object_get(rule, "endpoint"));
}

json_t *
tu_rule_review(const json_t *rule, const char *uid)
{
	json_t *obj = tu_rule_object(json_object_get(rule, "object"));
	json_t *old = json_object_get(rule, "oldObject") ?
	    tu_rule_object(json_object_get(rule, "oldObject")) : json_null();
	const json_t *any = json_is_object(obj) ? obj : old;
	const json_t *meta = json_object_get(any, "metadata");
	const char *kind = json_string_value(json_object_get(any, "kind"));
	const char *op = json_string_value(json_object_get(rule, "operation"));
	const char *ns = json_string_value(json_object_get(rule, "namespace"));
	const char *sub = json_string_value(json_object_get(rule, "subResource"));
	const char *name = json_string_value(json_object_get(meta, "name"));
	char plural[128];
	json_t *req, *review;

	if (!kind)
		kind = "Contact";
	snprintf(plural, sizeof(plural), "%ss", kind);
	for (char *p = plural; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
	if (!ns)
		ns = json_string_value(json_object_get(meta, "namespace"));
	req = json_pack("{s:s, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s},"
	    " s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}, s:s, s:s, s:s,"
	    " s:{s:s, s:s, s:[s, s], s:{}}, s:o, s:o, s:b, s:{s:s, s:s}}",
	    "uid", uid,
	    "kind", "group", "notification.miloapis.com", "version", "v1alpha1", "kind", kind,
	    "resource", "group", "notification.miloapis.com", "version", "v1alpha1",
	    "resource", plural,
	    "requestKind", "group", "notification.miloapis.com", "version", "v1alpha1",
	    "kind", kind,
	    "requestResource", "group", "notification.miloapis.com", "version", "v1alpha1",
	    "resource", plural,
	    "name", name ? name : "", "namespace", ns ? ns : "", "operation", op,
	    "userInfo", "username", "alice", "uid", "u-1", "groups",
	    "system:authenticated", "milo:admins", "extra",
	    "object", obj, "oldObject", old,
	    "dryRun", json_is_true(json_object_get(rule, "dryRun")),
	    "options", "apiVersion", "meta.k8s.io/v1",
	    "kind", strcmp(op, "UPDATE") == 0 ? "UpdateOptions" :
	    strcmp(op, "DELETE") == 0 ? "DeleteOptions" : "CreateOptions");
	ck_assert_ptr_nonnull(req);
	if (sub)
		json_object_set_new(req, "subResource", json_string(sub));
	/* A fixture may ask as somebody else (Milo's user control plane, say). */
	if (json_object_get(rule, "userInfo"))
		json_object_set(req, "userInfo", json_object_get(rule, "userInfo"));
	review = json_pack("{s:s, s:s, s:o}", "apiVersion", "admission.k8s.io/v1",
	    "kind", "AdmissionReview", "request", req);
	ck_assert_ptr_nonnull(review);
	return review;
}

static void
assert_json_equal(const json_t *want, const json_t *got, const char *what)
{
	char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
	char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);

	ck_assert_msg(json_equal(want, got), "%s:\n want %s\n  got %s", what, w, g);
	free(w);
	free(g);
}

void
tu_rule_assert(const json_t *rule, const char *uid, long http_status,
    const char *body, size_t len)
{
	const json_t *expect = json_object_get(rule, "expect");
	const char *endpoint = tu_rule_endpoint(rule);
	json_error_t err;
	json_t *doc, *resp, *status, *patch;
	int validating = strncmp(endpoint, "/validate-", 10) == 0;

	ck_assert_int_eq(http_status, 200);
	doc = json_loadb(body, len, 0, &err);
	ck_assert_msg(doc != NULL, "response is not JSON: %s", err.text);
	ck_assert_str_eq(json_string_value(json_object_get(doc, "apiVersion")),
	    "admission.k8s.io/v1");
	ck_assert_str_eq(json_string_value(json_object_get(doc, "kind")), "AdmissionReview");
	resp = json_object_get(doc, "response");
	ck_assert_ptr_nonnull(resp);
	ck_assert_str_eq(json_string_value(json_object_get(resp, "uid")), uid);
	ck_assert_msg(json_is_boolean(json_object_get(resp, "allowed")), "allowed missing");
	ck_assert_msg(json_is_true(json_object_get(resp, "allowed")) ==
	    json_is_true(json_object_get(expect, "allowed")),
	    "allowed: want %d, response %.*s", json_is_true(json_object_get(expect, "allowed")),
	    (int)len, body);
	patch = json_object_get(resp, "patch");
	ck_assert_msg((patch == NULL) == (json_object_get(resp, "patchType") == NULL),
	    "patch and patchType must come together");
	if (validating)
		ck_assert_msg(patch == NULL, "a validating endpoint returned a patch");
	status = json_object_get(resp, "status");
	if (json_object_get(expect, "code")) {
		ck_assert_ptr_nonnull(status);
		ck_assert_int_eq(json_integer_value(json_object_get(status, "code")),
		    json_integer_value(json_object_get(expect, "code")));
		ck_assert_str_eq(json_string_value(json_object_get(status, "reason")),
		    json_string_value(json_object_get(expect, "reason")));
		ck_assert_str_eq(json_string_value(json_object_get(status, "message")),
		    json_string_value(json_object_get(expect, "message")));
	}
	if (json_object_get(expect, "details"))
		assert_json_equal(json_object_get(expect, "details"),
		    json_object_get(status, "details"), "details");
	if (json_object_get(expect, "causes"))
		assert_json_equal(json_object_get(expect, "causes"),
		    json_object_get(json_object_get(status, "details"), "causes"), "causes");
	if (json_object_get(expect, "warnings")) {
		const json_t *want = json_object_get(expect, "warnings");

		if (json_is_null(want))
			ck_assert_msg(json_object_get(resp, "warnings") == NULL, "unexpected warnings");
		else
			assert_json_equal(want, json_object_get(resp, "warnings"), "warnings");
	}
	if (json_object_get(expect, "patch")) {
		const json_t *want = json_object_get(expect, "patch");

		if (json_is_null(want)) {
			ck_assert_msg(patch == NULL, "unexpected patch");
		} else {
			const char *b64 = json_string_value(patch);
			size_t n;
			unsigned char *ops;
			json_t *got;

			ck_assert_msg(b64 != NULL, "expected a patch");
			ck_assert_str_eq(json_string_value(json_object_get(resp, "patchType")),
			    "JSONPatch");
			ops = base64_decode(b64, strlen(b64), &n);
			ck_assert_ptr_nonnull(ops);
			got = json_loadb((const char *)ops, n, 0, &err);
			free(ops);
			assert_json_equal(want, got, "patch");
			json_decref(got);
		}
	}
	json_decref(doc);
}

/* ---- the Kubernetes API stand-in ---- */

#define STANDIN_SCRIPT "test/py/kube_standin.py"
#define STANDIN_MAX_ARGS 32
#define STANDIN_ANSWER_MAX (16u << 20)	/* a control answer (the request log) */

/* Copies a file to stderr, for a stand-in that failed or misbehaved. */
static void
dump_log(const char *path, const char *why)
{
	char *text = tu_read_file(path, NULL);

	fprintf(stderr, "kube stand-in %s; its log (%s):\n%s\n", why, path,
	    text ? text : "(unreadable)");
	free(text);
}

/* Removes the files in dir, then dir. */
static void
remove_dir_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[512];

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/* The child side of the fork: only async-signal-safe calls until exec. */
static void
exec_standin(char *const argv[], const char *log)
{
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (fd >= 0) {
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
	}
	if (null >= 0)
		dup2(null, STDIN_FILENO);
	execvp(argv[0], argv);
	_exit(127);
}

/* Reads the port file once it exists; 0 while it does not. */
static int
read_port(const char *path)
{
	char *text = tu_read_file(path, NULL), *end;
	long port;

	if (!text)
		return 0;
	errno = 0;
	port = strtol(text, &end, 10);
	if (errno || end == text || port <= 0 || port > 65535)
		port = 0;
	free(text);
	return (int)port;
}

/*
 * Starts `python3 <script> --port 0 --port-file <dir>/port [--kubeconfig-out
 * <dir>/kubeconfig] [extra_args...]` in a new scratch directory named after
 * tag, and waits until it listens. Both stand-ins start this way.
 */
static int
start_standin(struct tu_standin *s, const char *tag, const char *rel_script,
    bool kubeconfig, const char *const *extra_args)
{
	const char *python = getenv("PYTHON");
	char script[4096], port_file[128], what[64];
	char *argv[STANDIN_MAX_ARGS];
	size_t n = 0;
	int status;

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/milo-%s-XXXXXX", tag);
	if (!mkdtemp(s->dir)) {
		s->dir[0] = '\0';
		return -errno;
	}
	snprintf(script, sizeof(script), "%s", tu_path(rel_script));
	snprintf(port_file, sizeof(port_file), "%s/port", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/standin.log", s->dir);
	argv[n++] = (char *)(uintptr_t)(python && python[0] ? python : "python3");
	argv[n++] = script;
	argv[n++] = (char *)(uintptr_t)"--port";
	argv[n++] = (char *)(uintptr_t)"0";
	argv[n++] = (char *)(uintptr_t)"--port-file";
	argv[n++] = port_file;
	if (kubeconfig) {
		snprintf(s->kubeconfig, sizeof(s->kubeconfig), "%s/kubeconfig", s->dir);
		argv[n++] = (char *)(uintptr_t)"--kubeconfig-out";
		argv[n++] = s->kubeconfig;
	}
	for (size_t i = 0; extra_args && extra_args[i]; i++) {
		if (n == STANDIN_MAX_ARGS - 1) {
			remove_dir_files(s->dir);
			memset(s, 0, sizeof(*s));
			return -E2BIG;
		}
		argv[n++] = (char *)(uintptr_t)extra_args[i];
	}
	argv[n] = NULL;

	fflush(NULL);
	s->pid = fork();
	if (s->pid < 0) {
		s->pid = 0;
		remove_dir_files(s->dir);
		memset(s, 0, sizeof(*s));
		return -errno;
	}
	if (s->pid == 0)
		exec_standin(argv, s->log);

	for (int waited = 0; waited < TU_STANDIN_START_MS; waited += 20) {
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			snprintf(what, sizeof(what), "(%s) exited before listening", tag);
			dump_log(s->log, what);
			tu_standin_stop(s);
			return -ECHILD;
		}
		s->port = read_port(port_file);
		if (s->port) {
			snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
			return 0;
		}
		tu_sleep_ms(20);
	}
	snprintf(what, sizeof(what), "(%s) did not start in time", tag);
	dump_log(s->log, what);
	tu_standin_stop(s);
	return -ETIMEDOUT;
}

int
tu_standin_start(struct tu_standin *s, const char *const *extra_args)
{
	return start_standin(s, "standin", STANDIN_SCRIPT, true, extra_args);
}

static size_t
count_substr(const char *text, const char *what)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

/*
 * True when the log shows a stand-in bug: it answered 500 for itself, or a
 * handler died with a traceback. Python's socketserver also prints one for
 * a client that resets a kept-alive connection, which is no bug.
 */
static int
log_has_internal_error(const char *path)
{
	char *text = tu_read_file(path, NULL);
	int bad = 0;

	if (text) {
		size_t tracebacks = count_substr(text, "Traceback (most recent call last)");
		size_t resets = count_substr(text, "\nConnectionResetError") +
		    count_substr(text, "\nBrokenPipeError");

		bad = strstr(text, "internal error on ") != NULL || tracebacks > resets;
	}
	free(text);
	return bad;
}

void
tu_standin_stop(struct tu_standin *s)
{
	int status;

	if (s->pid > 0) {
		int waited = 0;

		kill(s->pid, SIGTERM);
		while (waitpid(s->pid, &status, WNOHANG) == 0) {
			if (waited >= TU_STANDIN_STOP_MS) {
				kill(s->pid, SIGKILL);
				waitpid(s->pid, &status, 0);
				break;
			}
			tu_sleep_ms(20);
			waited += 20;
		}
		s->pid = 0;
	}
	if (s->log[0] && log_has_internal_error(s->log))
		dump_log(s->log, "reported an internal error");
	if (s->dir[0])
		remove_dir_files(s->dir);
	memset(s, 0, sizeof(*s));
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

/* curl_easy_init() would do it too, but not safely from several threads. */
static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t
collect_answer(char *data, size_t size, size_t n, void *arg)
{
	struct { char *p; size_t len; } *a = arg;
	char *grown;

	if (a->len + size * n > STANDIN_ANSWER_MAX)
		return 0;
	grown = realloc(a->p, a->len + size * n + 1);
	if (!grown)
		return 0;
	a->p = grown;
	memcpy(a->p + a->len, data, size * n);
	a->len += size * n;
	a->p[a->len] = '\0';
	return size * n;
}

json_t *
tu_standin_control(const struct tu_standin *s, const char *method,
    const char *action, const char *body)
{
	struct { char *p; size_t len; } answer = { NULL, 0 };
	struct curl_slist *hdrs = NULL;
	char url[256];
	long code = 0;
	CURLcode cc;
	CURL *h;
	json_t *j;

	ck_assert_msg(s->pid > 0, "the kube stand-in is not running");
	snprintf(url, sizeof(url), "%s/_standin/%s", s->url, action);
	pthread_once(&curl_once, curl_init_once);
	h = curl_easy_init();
	ck_assert_ptr_nonnull(h);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_answer);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);
	curl_slist_free_all(hdrs);
	if (cc != CURLE_OK || code != 200) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s %s: %s, HTTP %ld: %.200s", method, url,
		    curl_easy_strerror(cc), code, answer.p ? answer.p : "");
		free(answer.p);
		ck_abort_msg("kube stand-in control call failed: %s", msg);
	}
	j = answer.p ? json_loadb(answer.p, answer.len, 0, NULL) : NULL;
	free(answer.p);
	return j;
}

void
tu_standin_post(const struct tu_standin *s, const char *action, const char *fmt, ...)
{
	va_list ap;
	char *body = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	json_decref(tu_standin_control(s, "POST", action, body));
	free(body);
}

void
tu_standin_reset(const struct tu_standin *s)
{
	json_decref(tu_standin_control(s, "POST", "reset", "{}"));
}

int
tu_closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

	if (fd < 0)
		return 0;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* ---- the kube stand-in as a TCase fixture ---- */

struct tu_standin tu_kube;
static int tu_kube_rc;		/* how its start went: 0 or a negative errno */

void
tu_kube_start(void)
{
	tu_kube_start_args(NULL);
}

void
tu_kube_start_args(const char *const *extra_args)
{
	tu_kube_rc = tu_standin_start(&tu_kube, extra_args);
}

void
tu_kube_start_failed(int rc)
{
	tu_kube_rc = rc;
}

void
tu_kube_stop(void)
{
	tu_standin_stop(&tu_kube);
}

void
tu_kube_ready(void)
{
	ck_assert_msg(tu_kube_rc == 0, "the kube stand-in did not start: %s",
	    strerror(-tu_kube_rc));
	tu_standin_reset(&tu_kube);
}

struct kube_client *
tu_kube_client(const char *kubeconfig)
{
	struct kube_config cfg;
	struct kube_client *c;
	char err[256];

	ck_assert_msg(kubeconfig_load(kubeconfig, NULL, &cfg, err, sizeof(err)) == 0,
	    "%s", err);
	ck_assert_msg(kube_client_new(&cfg, &c, err, sizeof(err)) == 0, "%s", err);
	kube_config_free(&cfg);
	return c;
}

/* ---- the Resend API stand-in ---- */

#define RESEND_SCRIPT "test/py/resend_standin.py"

int
tu_resend_start(struct tu_standin *s, const char *const *extra_args)
{
	return start_standin(s, "resend", RESEND_SCRIPT, false, extra_args);
}

void
tu_resend_stop(struct tu_standin *s)
{
	tu_standin_stop(s);
}

json_t *
tu_resend_control(const struct tu_standin *s, const char *method, const char *action,
    const char *body)
{
	return tu_standin_control(s, method, action, body);
}

void
tu_resend_post(const struct tu_standin *s, const char *action, const char *fmt, ...)
{
	va_list ap;
	char *body = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&body, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	json_decref(tu_standin_control(s, "POST", action, body));
	free(body);
}

void
tu_resend_reset(const struct tu_standin *s)
{
	json_decref(tu_standin_control(s, "POST", "reset", "{}"));
}

long
tu_resend_count(const struct tu_standin *s, const char *route, int status)
{
	json_t *counts = tu_standin_control(s, "GET", "counts", NULL);
	json_t *by_status = json_object_get(counts, "countsByStatus"), *codes;
	const char *key;
	char code[16];
	long n = 0;

	snprintf(code, sizeof(code), "%d", status);
	json_object_foreach(by_status, key, codes) {
		if (!route || strcmp(route, key) == 0)
			n += (long)json_integer_value(json_object_get(codes, code));
	}
	json_decref(counts);
	return n;
}
