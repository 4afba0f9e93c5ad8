/* kubeconfig.c -- where the Kubernetes API is and how to authenticate to it */
#include "kubeconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "base64.h"

static int
fail(char *err, size_t errlen, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

void
kube_config_free(struct kube_config *c)
{
	free(c->server);
	free(c->ca_file);
	free(c->ca_data);
	free(c->cert_file);
	free(c->cert_data);
	free(c->key_file);
	free(c->key_data);
	free(c->token);
	free(c->token_file);
	free(c->namespace);
	memset(c, 0, sizeof(*c));
}

/* ---- YAML document navigation ---- */

static yaml_node_t *
map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
	    p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k && k->type == YAML_SCALAR_NODE &&
		    strlen(key) == k->data.scalar.length &&
		    memcmp(k->data.scalar.value, key, k->data.scalar.length) == 0)
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

/* The scalar at key as a new string, NULL when absent or not a scalar. */
static char *
map_str(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	yaml_node_t *v = map_get(doc, map, key);

	if (!v || v->type != YAML_SCALAR_NODE || v->data.scalar.length == 0)
		return NULL;
	return strndup((const char *)v->data.scalar.value, v->data.scalar.length);
}

/*
 * In a list of {name: …, <field>: {…}} entries (clusters, users,
 * contexts), the <field> mapping of the entry called name.
 */
static yaml_node_t *
named(yaml_document_t *doc, yaml_node_t *root, const char *list,
    const char *field, const char *name)
{
	yaml_node_t *seq = map_get(doc, root, list);

	if (!seq || seq->type != YAML_SEQUENCE_NODE || !name)
		return NULL;
	for (yaml_node_item_t *i = seq->data.sequence.items.start;
	    i < seq->data.sequence.items.top; i++) {
		yaml_node_t *entry = yaml_document_get_node(doc, *i);
		char *n = map_str(doc, entry, "name");
		int match = n && strcmp(n, name) == 0;

		free(n);
		if (match)
			return map_get(doc, entry, field);
	}
	return NULL;
}

/* ---- values ---- */

/* A path from the kubeconfig, made absolute against its directory. */
static char *
resolve_path(const char *dir, char *path)
{
	char *abs = NULL;

	if (!path || path[0] == '/' || !dir)
		return path;
	if (asprintf(&abs, "%s/%s", dir, path) < 0)
		abs = NULL;
	free(path);
	return abs;
}

/* base64 PEM data from the kubeconfig; whitespace inside is ignored. */
static int
decode_data(char *text, char **out, size_t *len)
{
	size_t o = 0;

	if (!text)
		return 0;
	for (size_t i = 0; text[i]; i++)
		if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t')
			text[o++] = text[i];
	text[o] = '\0';
	*out = (char *)base64_decode(text, o, len);
	free(text);
	return *out ? 0 : -EINVAL;
}

static int
read_file(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *data;
	size_t n;

	if (!f)
		return -errno;
	data = malloc(max + 1);
	if (!data) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(data, 1, max + 1, f);
	fclose(f);
	if (n > max) {
		free(data);
		return -EFBIG;
	}
	data[n] = '\0';
	*out = data;
	*len = n;
	return 0;
}

static int
load_doc(const char *path, yaml_document_t *doc, char *err, size_t errlen)
{
	yaml_parser_t parser;
	char *text;
	size_t len;
	int rc = read_file(path, KUBECONFIG_MAX_BYTES, &text, &len);

	if (rc)
		return fail(err, errlen, rc, "kubeconfig %s: %s", path,
		    rc == -EFBIG ? "larger than 4 MiB" : strerror(-rc));
	if (!yaml_parser_initialize(&parser)) {
		free(text);
		return fail(err, errlen, -ENOMEM, "kubeconfig %s: out of memory", path);
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, doc)) {
		rc = fail(err, errlen, -EINVAL, "kubeconfig %s: line %zu: %s", path,
		    parser.problem_mark.line + 1, parser.problem ? parser.problem : "invalid YAML");
	} else if (!yaml_document_get_root_node(doc)) {
		yaml_document_delete(doc);
		rc = fail(err, errlen, -EINVAL, "kubeconfig %s: empty", path);
	}
	yaml_parser_delete(&parser);
	free(text);
	return rc;
}

static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static int
fill_from_doc(yaml_document_t *doc, const char *path, const char *want_ctx,
    struct kube_config *c, char *err, size_t errlen)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);
	yaml_node_t *ctx, *cluster, *user;
	char *ctx_name = want_ctx ? strdup(want_ctx) : map_str(doc, root, "current-context");
	char *cluster_name = NULL, *user_name = NULL, *insecure = NULL, *dir = NULL;
	int rc = 0;

	if (!ctx_name) {
		rc = fail(err, errlen, -EINVAL, "kubeconfig %s: no current-context", path);
		goto out;
	}
	ctx = named(doc, root, "contexts", "context", ctx_name);
	if (!ctx) {
		rc = fail(err, errlen, -EINVAL, "kubeconfig %s: context \"%s\" not found",
		    path, ctx_name);
		goto out;
	}
	cluster_name = map_str(doc, ctx, "cluster");
	user_name = map_str(doc, ctx, "user");
	c->namespace = map_str(doc, ctx, "namespace");
	cluster = named(doc, root, "clusters", "cluster", cluster_name);
	if (!cluster) {
		rc = fail(err, errlen, -EINVAL, "kubeconfig %s: cluster \"%s\" not found",
		    path, cluster_name ? cluster_name : "");
		goto out;
	}
	dir = dir_of(path);
	c->server = map_str(doc, cluster, "server");
	if (!c->server) {
		rc = fail(err, errlen, -EINVAL, "kubeconfig %s: cluster \"%s\" has no server",
		    path, cluster_name);
		goto out;
	}
	c->ca_file = resolve_path(dir, map_str(doc, cluster, "certificate-authority"));
	insecure = map_str(doc, cluster, "insecure-skip-tls-verify");
	c->insecure = insecure && strcmp(insecure, "true") == 0;
	if (decode_data(map_str(doc, cluster, "certificate-authority-data"),
	    &c->ca_data, &c->ca_len) != 0) {
		rc = fail(err, errlen, -EINVAL,
		    "kubeconfig %s: certificate-authority-data is not base64", path);
		goto out;
	}
	/* A context may name no user (an http:// stand-in); that is fine. */
	user = named(doc, root, "users", "user", user_name);
	if (user) {
		c->cert_file = resolve_path(dir, map_str(doc, user, "client-certificate"));
		c->key_file = resolve_path(dir, map_str(doc, user, "client-key"));
		c->token = map_str(doc, user, "token");
		c->token_file = resolve_path(dir, map_str(doc, user, "tokenFile"));
		if (decode_data(map_str(doc, user, "client-certificate-data"),
		    &c->cert_data, &c->cert_len) != 0 ||
		    decode_data(map_str(doc, user, "client-key-data"),
		    &c->key_data, &c->key_len) != 0) {
			rc = fail(err, errlen, -EINVAL,
			    "kubeconfig %s: client certificate or key data is not base64", path);
			goto out;
		}
	} else if (user_name) {
		rc = fail(err, errlen, -EINVAL, "kubeconfig %s: user \"%s\" not found",
		    path, user_name);
		goto out;
	}
	if ((c->cert_file || c->cert_data) != (c->key_file || c->key_data))
		rc = fail(err, errlen, -EINVAL,
		    "kubeconfig %s: a client certificate needs its key and a key its certificate", path);
out:
	free(ctx_name);
	free(cluster_name);
	free(user_name);
	free(insecure);
	free(dir);
	return rc;
}

int
kubeconfig_load(const char *path, const char *context, struct kube_config *out,
    char *err, size_t errlen)
{
	yaml_document_t doc;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = load_doc(path, &doc, err, errlen);
	if (rc)
		return rc;
	rc = fill_from_doc(&doc, path, context, out, err, errlen);
	yaml_document_delete(&doc);
	if (rc)
		kube_config_free(out);
	return rc;
}

/* The first line of a small file, trimmed; NULL when unreadable. */
static char *
read_trimmed(const char *path)
{
	char *data = NULL;
	size_t len;

	if (read_file(path, 64 * 1024, &data, &len) != 0)
		return NULL;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' ||
	    data[len - 1] == ' '))
		data[--len] = '\0';
	return data;
}

int
kubeconfig_in_cluster(const char *sa_dir, struct kube_config *out, char *err,
    size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *ns_path = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!host || !host[0] || !port || !port[0])
		return fail(err, errlen, -ENOENT, "not running in a cluster: "
		    "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; "
		    "give --kubeconfig or set KUBECONFIG");
	/* net.JoinHostPort: an IPv6 literal is bracketed. */
	if (strchr(host, ':'))
		rc = asprintf(&out->server, "https://[%s]:%s", host, port);
	else
		rc = asprintf(&out->server, "https://%s:%s", host, port);
	if (rc < 0 || asprintf(&out->token_file, "%s/token", sa_dir) < 0 ||
	    asprintf(&out->ca_file, "%s/ca.crt", sa_dir) < 0 ||
	    asprintf(&ns_path, "%s/namespace", sa_dir) < 0) {
		out->server = rc < 0 ? NULL : out->server;
		kube_config_free(out);
		free(ns_path);
		return fail(err, errlen, -ENOMEM, "out of memory");
	}
	out->namespace = read_trimmed(ns_path);
	free(ns_path);
	return 0;
}

int
kubeconfig_resolve(const char *flag_path, struct kube_config *out, char *err,
    size_t errlen)
{
	const char *env = getenv("KUBECONFIG");
	char *first;
	int rc;

	if (flag_path && flag_path[0])
		return kubeconfig_load(flag_path, NULL, out, err, errlen);
	if (env && env[0]) {
		/* Only the first entry of a KUBECONFIG list is read; no merging. */
		first = strndup(env, strcspn(env, ":"));
		if (!first)
			return fail(err, errlen, -ENOMEM, "out of memory");
		rc = kubeconfig_load(first, NULL, out, err, errlen);
		free(first);
		return rc;
	}
	return kubeconfig_in_cluster(KUBE_SA_DIR, out, err, errlen);
}
