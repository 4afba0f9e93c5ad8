/* kube.c -- a small Kubernetes API client on libcurl */
#include "kube.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "jsonparse.h"
#include "jsonstream.h"
#include "log.h"

#define KUBE_USER_AGENT "milo-contacts/0.1.0"
#define KUBE_POOL_MAX 16		/* idle easy handles (and their connections) kept */
#define KUBE_WATCH_EVENT_MAX (16u << 20)	/* one watch event */
#define KUBE_TOKEN_MAX (64u << 10)
#define KUBE_EVENT_NOTE_MAX 1024	/* bytes; events.k8s.io refuses a longer note */

struct kube_client {
	char *server;
	char *ca_file, *cert_file, *key_file;
	char *tmp_files[3];	/* PEM data from a kubeconfig, written out for libcurl */
	bool insecure;
	char *token_file;

	pthread_mutex_t lock;	/* guards everything below */
	char *token;
	time_t token_read;	/* when token_file was last read; 0: never */
	CURL *pool[KUBE_POOL_MAX];
	size_t n_pool;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

/* This thread's limits on its calls (kube_thread_deadline(), kube_thread_forbid()). */
static _Thread_local struct {
	uint64_t deadline_ms;	/* 0: none */
	const char *forbid;	/* why calls are refused, or NULL */
	unsigned int refused;
} limits;

void
kube_thread_deadline(uint64_t deadline_ms)
{
	limits.deadline_ms = deadline_ms;
}

void
kube_thread_forbid(const char *why)
{
	limits.forbid = why;
	limits.refused = 0;
}

unsigned int
kube_thread_refused(void)
{
	return limits.refused;
}

static void
curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

void
kube_response_free(struct kube_response *r)
{
	json_decref(r->body);
	free(r->reason);
	free(r->message);
	memset(r, 0, sizeof(*r));
}

const char *
kube_client_server(const struct kube_client *c)
{
	return c->server;
}

/*
 * libcurl's GnuTLS backend takes certificates and keys only as files, so
 * PEM data from a kubeconfig is written to a private temporary file that
 * lives as long as the client.
 */
static char *
write_temp(const char *data, size_t len)
{
	const char *dir = getenv("TMPDIR");
	char *path = NULL;
	int fd;

	if (asprintf(&path, "%s/milo-kube-XXXXXX", dir && dir[0] ? dir : "/tmp") < 0)
		return NULL;
	fd = mkstemp(path);
	if (fd < 0) {
		free(path);
		return NULL;
	}
	if (write(fd, data, len) != (ssize_t)len) {
		close(fd);
		unlink(path);
		free(path);
		return NULL;
	}
	close(fd);
	return path;
}

void
kube_client_free(struct kube_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	for (size_t i = 0; i < 3; i++) {
		if (c->tmp_files[i])
			unlink(c->tmp_files[i]);
		free(c->tmp_files[i]);
	}
	free(c->server);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->token_file);
	free(c->token);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* A file path from the config, or the config's data written to a temp file. */
static int
file_or_data(struct kube_client *c, int slot, const char *file, const char *data,
    size_t len, char **out)
{
	if (data && len) {
		c->tmp_files[slot] = write_temp(data, len);
		if (!c->tmp_files[slot])
			return -errno ? -errno : -EIO;
		*out = strdup(c->tmp_files[slot]);
	} else if (file) {
		*out = strdup(file);
	} else {
		return 0;
	}
	return *out ? 0 : -ENOMEM;
}

int
kube_client_new(const struct kube_config *cfg, struct kube_client **out,
    char *err, size_t errlen)
{
	struct kube_client *c;
	int rc;

	*out = NULL;
	pthread_once(&curl_once, curl_init_once);
	if (!cfg->server) {
		snprintf(err, errlen, "no API server configured");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->insecure = cfg->insecure;
	c->server = strdup(cfg->server);
	/* A trailing slash would double up with our paths. */
	if (c->server && c->server[0] && c->server[strlen(c->server) - 1] == '/')
		c->server[strlen(c->server) - 1] = '\0';
	c->token = cfg->token ? strdup(cfg->token) : NULL;
	c->token_file = cfg->token_file ? strdup(cfg->token_file) : NULL;
	rc = file_or_data(c, 0, cfg->ca_file, cfg->ca_data, cfg->ca_len, &c->ca_file);
	if (rc == 0)
		rc = file_or_data(c, 1, cfg->cert_file, cfg->cert_data, cfg->cert_len,
		    &c->cert_file);
	if (rc == 0)
		rc = file_or_data(c, 2, cfg->key_file, cfg->key_data, cfg->key_len,
		    &c->key_file);
	if (rc == 0 && (!c->server || (cfg->token && !c->token) ||
	    (cfg->token_file && !c->token_file)))
		rc = -ENOMEM;
	if (rc) {
		snprintf(err, errlen, "cannot set up the API client: %s", strerror(-rc));
		kube_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- token ---- */

static char *
read_token(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *t;
	size_t n;

	if (!f)
		return NULL;
	t = malloc(KUBE_TOKEN_MAX + 1);
	if (!t) {
		fclose(f);
		return NULL;
	}
	n = fread(t, 1, KUBE_TOKEN_MAX, f);
	fclose(f);
	while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
		n--;
	t[n] = '\0';
	return t;
}

/*
 * The Authorization header value, malloc'd, or NULL without credentials.
 * A token file is re-read when older than KUBE_TOKEN_REREAD_S or when
 * force is set (after a 401): projected tokens rotate under us.
 */
static char *
auth_header(struct kube_client *c, bool force)
{
	char *h = NULL;
	time_t now = time(NULL);

	pthread_mutex_lock(&c->lock);
	if (c->token_file && (force || c->token_read == 0 ||
	    now - c->token_read >= KUBE_TOKEN_REREAD_S)) {
		char *t = read_token(c->token_file);

		if (t) {
			free(c->token);
			c->token = t;
		} else {
			log_warn("cannot read the API token file",
			    LOG_STR("path", c->token_file));
		}
		c->token_read = now;
	}
	if (c->token && c->token[0] && asprintf(&h, "Authorization: Bearer %s", c->token) < 0)
		h = NULL;
	pthread_mutex_unlock(&c->lock);
	return h;
}

/* ---- handles ---- */

static CURL *
take_handle(struct kube_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->n_pool)
		h = c->pool[--c->n_pool];
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_reset(h);	/* keeps the connection cache */
	else
		h = curl_easy_init();
	return h;
}

static void
give_handle(struct kube_client *c, CURL *h)
{
	pthread_mutex_lock(&c->lock);
	if (c->n_pool < KUBE_POOL_MAX) {
		c->pool[c->n_pool++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	if (h)
		curl_easy_cleanup(h);
}

static void
setup_tls(struct kube_client *c, CURL *h)
{
	if (c->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	if (c->cert_file && c->key_file) {
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
	}
	if (c->insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
}

/*
 * What every call to the API server sets on its handle: the URL, Accept
 * and the credentials (and extra, a header line, when not NULL), the user
 * agent, the connect timeout, the error text, the protocols and TLS. The
 * header list is the caller's to free after the transfer.
 */
static struct curl_slist *
setup_call(struct kube_client *c, CURL *h, const char *url, const char *auth,
    const char *extra, long connect_ms, char *errbuf)
{
	struct curl_slist *hdrs = curl_slist_append(NULL, "Accept: application/json");

	if (auth)
		hdrs = curl_slist_append(hdrs, auth);
	if (extra)
		hdrs = curl_slist_append(hdrs, extra);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_USERAGENT, KUBE_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	setup_tls(c, h);
	return hdrs;
}

static size_t
collect(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	if (buf_add(b, data, size * n) != 0)
		return 0;	/* makes libcurl fail with CURLE_WRITE_ERROR */
	return size * n;
}

static int
curl_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return -ECONNREFUSED;
	case CURLE_WRITE_ERROR:
		return -EFBIG;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EPROTO;
	}
}

static void
set_message(struct kube_response *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
set_message(struct kube_response *out, const char *fmt, ...)
{
	va_list ap;

	free(out->message);
	va_start(ap, fmt);
	if (vasprintf(&out->message, fmt, ap) < 0)
		out->message = NULL;
	va_end(ap);
}

/* Parses the answer; for a failure, pulls reason and message out of its Status. */
static void
read_answer(struct kube_response *out, const struct buf *b)
{
	json_t *st;

	if (b->len)
		out->body = jsonparse_load(b->ptr, b->len, 0, NULL);
	if (out->status >= 200 && out->status < 300)
		return;
	st = out->body;
	if (json_is_object(st) && json_string_value(json_object_get(st, "reason")))
		out->reason = strdup(json_string_value(json_object_get(st, "reason")));
	if (json_is_object(st) && json_string_value(json_object_get(st, "message")))
		set_message(out, "%s", json_string_value(json_object_get(st, "message")));
	else
		set_message(out, "HTTP %ld", out->status);
}

/*
 * The total and connect timeouts of one call under this thread's limits,
 * or the error of a call that is not made (out->message says why).
 */
static int
call_budget(const char *method, const char *path, long *total_ms,
    long *connect_ms, struct kube_response *out)
{
	uint64_t now, left;

	*total_ms = KUBE_TIMEOUT_MS;
	*connect_ms = KUBE_CONNECT_TIMEOUT_MS;
	if (limits.forbid) {
		limits.refused++;
		set_message(out, "%s %s: not attempted: %s", method, path,
		    limits.forbid);
		return -EWOULDBLOCK;
	}
	if (!limits.deadline_ms)
		return 0;
	now = clock_mono_ms();
	if (now >= limits.deadline_ms) {
		set_message(out, "%s %s: not attempted: no time left before "
		    "the deadline", method, path);
		return -ETIMEDOUT;
	}
	left = limits.deadline_ms - now;
	if (left < (uint64_t)*total_ms)
		*total_ms = (long)left;
	if (left < (uint64_t)*connect_ms)
		*connect_ms = (long)left;
	return 0;
}

static int
perform(struct kube_client *c, const char *method, const char *path,
    const char *content_type, const char *body, bool force_token,
    struct kube_response *out)
{
	CURL *h;
	struct curl_slist *hdrs = NULL;
	char *url = NULL, *auth, ctype[128], errbuf[CURL_ERROR_SIZE] = "";
	long total_ms, connect_ms;
	struct buf b;
	CURLcode cc;
	int rc;

	rc = call_budget(method, path, &total_ms, &connect_ms, out);
	if (rc)
		return rc;
	h = take_handle(c);
	if (!h || asprintf(&url, "%s%s", c->server, path) < 0) {
		if (h)
			give_handle(c, h);
		return -ENOMEM;
	}
	buf_init(&b, KUBE_RESPONSE_MAX);
	auth = auth_header(c, force_token);
	if (body)
		snprintf(ctype, sizeof(ctype), "Content-Type: %s",
		    content_type ? content_type : "application/json");
	hdrs = setup_call(c, h, url, auth, body ? ctype : NULL, connect_ms, errbuf);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, total_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	cc = curl_easy_perform(h);
	if (cc != CURLE_OK) {
		rc = curl_errno(cc);
		set_message(out, "%s %s: %s", method, path, errbuf[0] ? errbuf :
		    curl_easy_strerror(cc));
	} else {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
		read_answer(out, &b);
		if (out->status < 200 || out->status >= 300)
			rc = -EIO;
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(hdrs);
	give_handle(c, h);
	buf_free(&b);
	free(auth);
	free(url);
	return rc;
}

int
kube_request(struct kube_client *c, const char *method, const char *path,
    const char *content_type, const json_t *body, struct kube_response *out)
{
	char *text = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text)
			return -ENOMEM;
	}
	rc = perform(c, method, path, content_type, text, false, out);
	if (rc == -EIO && out->status == 401 && c->token_file) {
		/* The token may have rotated since we last read it. */
		kube_response_free(out);
		rc = perform(c, method, path, content_type, text, true, out);
	}
	free(text);
	return rc;
}

static bool
reason_is(const struct kube_response *r, const char *reason)
{
	return r->reason && strcmp(r->reason, reason) == 0;
}

bool
kube_is_not_found(const struct kube_response *r)
{
	return r->status == 404;
}

bool
kube_is_conflict(const struct kube_response *r)
{
	return r->status == 409 && (reason_is(r, "Conflict") || !r->reason);
}

bool
kube_is_already_exists(const struct kube_response *r)
{
	return r->status == 409 && reason_is(r, "AlreadyExists");
}

bool
kube_is_gone(const struct kube_response *r)
{
	return r->status == 410 || reason_is(r, "Expired") || reason_is(r, "Gone");
}

bool
kube_is_unreachable(const struct kube_response *r)
{
	return r->status == 0 || r->status >= 500;
}

int
kube_path(char *out, size_t len, const char *group, const char *version,
    const char *namespace, const char *plural, const char *name,
    const char *subresource)
{
	struct buf b;
	int rc;

	buf_init(&b, len ? len - 1 : 0);
	if (group && group[0])
		rc = buf_printf(&b, "/apis/%s/%s", group, version);
	else
		rc = buf_printf(&b, "/api/%s", version);
	if (rc == 0 && namespace && namespace[0])
		rc = buf_printf(&b, "/namespaces/%s", namespace);
	if (rc == 0)
		rc = buf_printf(&b, "/%s", plural);
	if (rc == 0 && name && name[0])
		rc = buf_printf(&b, "/%s", name);
	if (rc == 0 && name && name[0] && subresource && subresource[0])
		rc = buf_printf(&b, "/%s", subresource);
	if (rc == 0 && len)
		memcpy(out, buf_str(&b), b.len + 1);
	buf_free(&b);
	return rc ? -ENAMETOOLONG : 0;
}

int
kube_get(struct kube_client *c, const char *path, struct kube_response *out)
{
	return kube_request(c, "GET", path, NULL, NULL, out);
}

int
kube_create(struct kube_client *c, const char *collection, const json_t *obj,
    struct kube_response *out)
{
	return kube_request(c, "POST", collection, NULL, obj, out);
}

int
kube_update(struct kube_client *c, const char *path, const json_t *obj,
    struct kube_response *out)
{
	return kube_request(c, "PUT", path, NULL, obj, out);
}

int
kube_merge_patch(struct kube_client *c, const char *path, const json_t *patch,
    struct kube_response *out)
{
	return kube_request(c, "PATCH", path, "application/merge-patch+json", patch, out);
}

int
kube_json_patch(struct kube_client *c, const char *path, const json_t *ops,
    struct kube_response *out)
{
	return kube_request(c, "PATCH", path, "application/json-patch+json", ops, out);
}

int
kube_delete(struct kube_client *c, const char *path, struct kube_response *out)
{
	return kube_request(c, "DELETE", path, NULL, NULL, out);
}

int
kube_list_page(struct kube_client *c, const char *collection, unsigned int limit,
    const char *cont, struct kube_response *out)
{
	char *path = NULL, *esc = NULL;
	int rc;

	memset(out, 0, sizeof(*out));	/* freeable whatever happens below */
	if (cont && cont[0]) {
		esc = curl_easy_escape(NULL, cont, 0);
		if (!esc)
			return -ENOMEM;
	}
	rc = asprintf(&path, "%s%slimit=%u%s%s", collection,
	    strchr(collection, '?') ? "&" : "?", limit ? limit : KUBE_LIST_PAGE,
	    esc ? "&continue=" : "", esc ? esc : "");
	curl_free(esc);
	if (rc < 0)
		return -ENOMEM;
	rc = kube_get(c, path, out);
	free(path);
	return rc;
}

int
kube_retry_on_conflict(int (*fn)(void *arg, struct kube_response *out), void *arg,
    struct kube_response *out)
{
	int rc = 0;

	for (int attempt = 0; attempt < 5; attempt++) {
		if (attempt) {
			struct timespec ts = { 0, (10 + rand() % 2) * 1000000L };

			kube_response_free(out);
			nanosleep(&ts, NULL);
		}
		memset(out, 0, sizeof(*out));
		rc = fn(arg, out);
		if (rc != -EIO || !kube_is_conflict(out))
			return rc;
	}
	return rc;
}

int
kube_access_review(struct kube_client *c, const struct kube_access *a,
    bool *allowed, char **reason, struct kube_response *out)
{
	json_t *attrs, *spec, *sar;
	int rc;

	memset(out, 0, sizeof(*out));	/* freeable whatever happens below */
	*allowed = false;
	if (reason)
		*reason = NULL;
	if (a->path)
		attrs = json_pack("{s:s, s:s}", "path", a->path, "verb", a->verb);
	else
		attrs = json_pack("{s:s, s:s, s:s, s:s*, s:s*}", "verb", a->verb,
		    "group", a->group ? a->group : "", "resource", a->resource,
		    "namespace", a->namespace, "name", a->name);
	spec = json_pack("{s:s, s:o}", "user", a->user ? a->user : "",
	    a->path ? "nonResourceAttributes" : "resourceAttributes", attrs);
	if (spec && a->uid)
		json_object_set_new(spec, "uid", json_string(a->uid));
	if (spec && json_is_array(a->groups))
		json_object_set(spec, "groups", (json_t *)(uintptr_t)a->groups);
	if (spec && json_is_object(a->extra))
		json_object_set(spec, "extra", (json_t *)(uintptr_t)a->extra);
	sar = json_pack("{s:s, s:s, s:o}", "apiVersion", "authorization.k8s.io/v1",
	    "kind", "SubjectAccessReview", "spec", spec);
	if (!sar)
		return -ENOMEM;
	rc = kube_create(c, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar, out);
	json_decref(sar);
	if (rc == 0) {
		json_t *st = json_object_get(out->body, "status");

		*allowed = json_is_true(json_object_get(st, "allowed"));
		if (reason && json_string_value(json_object_get(st, "reason")))
			*reason = strdup(json_string_value(json_object_get(st, "reason")));
	}
	return rc;
}

int
kube_token_review(struct kube_client *c, const char *token,
    bool *authenticated, json_t **user, char **error, struct kube_response *out)
{
	json_t *review, *st;
	int rc;

	memset(out, 0, sizeof(*out));	/* freeable whatever happens below */
	*authenticated = false;
	*user = NULL;
	*error = NULL;
	review = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion",
	    "authentication.k8s.io/v1", "kind", "TokenReview", "spec", "token",
	    token ? token : "");
	if (!review)
		return -ENOMEM;
	rc = kube_create(c, "/apis/authentication.k8s.io/v1/tokenreviews", review, out);
	json_decref(review);
	if (rc)
		return rc;
	st = json_object_get(out->body, "status");
	if (json_string_value(json_object_get(st, "error")))
		*error = strdup(json_string_value(json_object_get(st, "error")));
	if (json_is_true(json_object_get(st, "authenticated")) &&
	    json_is_object(json_object_get(st, "user"))) {
		*authenticated = true;
		*user = json_incref(json_object_get(st, "user"));
	}
	return 0;
}

/*
 * Copies s into out (len bytes, terminator included), cut if need be at
 * a UTF-8 character boundary: half a character is not valid JSON text.
 */
static void
copy_utf8(char *out, size_t len, const char *s)
{
	size_t n = strlen(s);

	if (n >= len) {
		n = len - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;	/* s[n] continues a character that would be cut */
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

int
kube_event_create(struct kube_client *c, const struct kube_event *e,
    struct kube_response *out)
{
	char when[40], note[KUBE_EVENT_NOTE_MAX + 1], path[512], prefix[300];
	json_t *ev;
	int rc;

	memset(out, 0, sizeof(*out));	/* freeable whatever happens below */
	/* client-go names Events "<object>.<suffix>". */
	snprintf(prefix, sizeof(prefix), "%.250s.", e->regarding_name ? e->regarding_name : "milo");
	clock_rfc3339(when, sizeof(when), 6);	/* MicroTime */
	copy_utf8(note, sizeof(note), e->note ? e->note : "");
	ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:s, s:s, s:s, s:s, s:s, s:s, s:s,"
	    " s:{s:s, s:s, s:s, s:s, s:s*}}",
	    "apiVersion", "events.k8s.io/v1", "kind", "Event",
	    "metadata", "generateName", prefix,
	    "namespace", e->namespace,
	    "eventTime", when, "type", e->type, "reason", e->reason, "action", e->action,
	    "note", note, "reportingController", e->reporting_controller,
	    "reportingInstance", e->reporting_instance,
	    "regarding", "apiVersion", e->regarding_api_version, "kind", e->regarding_kind,
	    "name", e->regarding_name, "namespace", e->namespace, "uid", e->regarding_uid);
	if (!ev)
		return -ENOMEM;
	kube_path(path, sizeof(path), "events.k8s.io", "v1", e->namespace, "events",
	    NULL, NULL);
	rc = kube_create(c, path, ev, out);
	json_decref(ev);
	return rc;
}

/* ---- watch ---- */

struct watch_state {
	struct jsonstream stream;
	struct buf error_body;	/* the answer when it is not a 200 stream */
	CURL *h;
	kube_watch_fn fn;
	void *arg;
	const atomic_bool *stop;
	struct kube_response *out;
	int rc;			/* why we stopped early */
};

/*
 * An ERROR event carries a Status (410 Expired when the watch fell out of
 * the history window): its reason and message go to the caller as a
 * failed request's would, the Status itself as the body.
 */
static int
watch_error(struct watch_state *w, json_t *st)
{
	const char *reason = json_string_value(json_object_get(st, "reason"));
	const char *message = json_string_value(json_object_get(st, "message"));
	json_int_t code = json_integer_value(json_object_get(st, "code"));

	free(w->out->reason);
	w->out->reason = reason ? strdup(reason) : NULL;
	set_message(w->out, "%s", message ? message : "watch ERROR event");
	json_decref(w->out->body);
	w->out->body = json_incref(st);
	return code == 410 || kube_is_gone(w->out) ? -EXDEV : -EIO;
}

static int
on_event(json_t *ev, void *arg)
{
	struct watch_state *w = arg;
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");

	if (!type || !json_is_object(obj))
		return -EPROTO;
	if (strcmp(type, "ERROR") == 0)
		return watch_error(w, obj);
	return w->fn(type, obj, w->arg);
}

static size_t
watch_write(char *data, size_t size, size_t n, void *arg)
{
	struct watch_state *w = arg;
	long status = 0;
	int rc;

	curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return buf_add(&w->error_body, data, size * n) == 0 ? size * n : 0;
	rc = jsonstream_feed(&w->stream, data, size * n, on_event, w);
	if (rc) {
		w->rc = rc;
		return 0;
	}
	return size * n;
}

static int
watch_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct watch_state *w = arg;

	(void)a, (void)b, (void)c, (void)d;
	return w->stop && atomic_load(w->stop);
}

int
kube_watch(struct kube_client *c, const char *collection,
    const char *resource_version, unsigned int timeout_s, kube_watch_fn fn,
    void *arg, const atomic_bool *stop, struct kube_response *out)
{
	struct watch_state w = { .fn = fn, .arg = arg, .stop = stop, .out = out };
	struct curl_slist *hdrs = NULL;
	char *url = NULL, *auth, errbuf[CURL_ERROR_SIZE] = "";
	CURLcode cc;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (timeout_s == 0)
		return -EINVAL;	/* kube-apiserver would read 0 as its own default */
	w.h = curl_easy_init();
	if (!w.h || asprintf(&url, "%s%s%swatch=1&allowWatchBookmarks=true"
	    "&timeoutSeconds=%u%s%s", c->server, collection,
	    strchr(collection, '?') ? "&" : "?", timeout_s,
	    resource_version ? "&resourceVersion=" : "",
	    resource_version ? resource_version : "") < 0) {
		curl_easy_cleanup(w.h);
		return -ENOMEM;
	}
	jsonstream_init(&w.stream, KUBE_WATCH_EVENT_MAX);
	buf_init(&w.error_body, 1u << 20);
	auth = auth_header(c, false);
	hdrs = setup_call(c, w.h, url, auth, NULL, (long)KUBE_CONNECT_TIMEOUT_MS, errbuf);
	/* The server ends the watch at timeoutSeconds; this bounds a dead peer. */
	curl_easy_setopt(w.h, CURLOPT_TIMEOUT, (long)timeout_s + 30);
	curl_easy_setopt(w.h, CURLOPT_WRITEFUNCTION, watch_write);
	curl_easy_setopt(w.h, CURLOPT_WRITEDATA, &w);
	curl_easy_setopt(w.h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(w.h, CURLOPT_XFERINFOFUNCTION, watch_progress);
	curl_easy_setopt(w.h, CURLOPT_XFERINFODATA, &w);
	cc = curl_easy_perform(w.h);
	curl_easy_getinfo(w.h, CURLINFO_RESPONSE_CODE, &out->status);
	if (w.rc) {
		rc = w.rc;
	} else if (cc == CURLE_ABORTED_BY_CALLBACK) {
		rc = 0;		/* asked to stop */
	} else if (out->status != 200 && out->status != 0) {
		read_answer(out, &w.error_body);
		rc = kube_is_gone(out) ? -EXDEV : -EIO;
		if (out->status == 401)
			free(auth_header(c, true));	/* re-read the token for the next try */
	} else if (cc != CURLE_OK && !(cc == CURLE_OPERATION_TIMEDOUT && out->status == 200)) {
		rc = curl_errno(cc);
		set_message(out, "watch %s: %s", collection, errbuf[0] ? errbuf :
		    curl_easy_strerror(cc));
	}
	/*
	 * A stream cut mid-event (jsonstream_partial) ends like any other:
	 * the caller resumes from the last resourceVersion it saw.
	 */
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(w.h);
	jsonstream_free(&w.stream);
	buf_free(&w.error_body);
	free(auth);
	free(url);
	return rc;
}
