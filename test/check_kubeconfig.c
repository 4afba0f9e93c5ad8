/* check_kubeconfig.c -- kubeconfig files and the in-cluster configuration */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kubeconfig.h"
#include "testutil.h"

Suite *kubeconfig_suite(void);

static char dir[64];

static void
make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/milo-kc-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
}

static const char *
write_file(const char *name, const char *text)
{
	return tu_write_file(dir, name, text);
}

/* "-----BEGIN CERTIFICATE-----\n" in base64, standing in for PEM data. */
#define PEM_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="

static const char *const full =
	"apiVersion: v1\n"
	"kind: Config\n"
	"current-context: dev\n"
	"clusters:\n"
	"- name: other\n"
	"  cluster: {server: https://other.example:6443}\n"
	"- name: dev-cluster\n"
	"  cluster:\n"
	"    server: https://[fd00::1]:6443\n"
	"    certificate-authority-data: " PEM_B64 "\n"
	"contexts:\n"
	"- name: dev\n"
	"  context: {cluster: dev-cluster, user: dev-user, namespace: team-a}\n"
	"- name: files\n"
	"  context: {cluster: other, user: file-user}\n"
	"users:\n"
	"- name: dev-user\n"
	"  user:\n"
	"    client-certificate-data: " PEM_B64 "\n"
	"    client-key-data: |\n"
	"      LS0tLS1CRUdJTiBDRVJUSUZJ\n"
	"      Q0FURS0tLS0tCg==\n"
	"- name: file-user\n"
	"  user:\n"
	"    token: abc.def\n"
	"    tokenFile: secrets/token\n"
	"    client-certificate: certs/client.crt\n"
	"    client-key: /abs/client.key\n";

START_TEST(test_current_context)
{
	struct kube_config c;
	char err[256];

	ck_assert_int_eq(kubeconfig_load(write_file("kc", full), NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.server, "https://[fd00::1]:6443");
	ck_assert_str_eq(c.namespace, "team-a");
	ck_assert_uint_eq(c.ca_len, 28);
	ck_assert_int_eq(memcmp(c.ca_data, "-----BEGIN CERTIFICATE-----\n", 28), 0);
	ck_assert_uint_eq(c.cert_len, 28);
	ck_assert_uint_eq(c.key_len, 28);
	ck_assert_ptr_null(c.token);
	ck_assert(!c.insecure);
	kube_config_free(&c);
}
END_TEST

START_TEST(test_named_context_and_relative_paths)
{
	struct kube_config c;
	char err[256], want[256];

	ck_assert_int_eq(kubeconfig_load(write_file("kc", full), "files", &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.server, "https://other.example:6443");
	ck_assert_str_eq(c.token, "abc.def");
	snprintf(want, sizeof(want), "%s/secrets/token", dir);
	ck_assert_str_eq(c.token_file, want);
	snprintf(want, sizeof(want), "%s/certs/client.crt", dir);
	ck_assert_str_eq(c.cert_file, want);
	ck_assert_str_eq(c.key_file, "/abs/client.key");
	ck_assert_ptr_null(c.namespace);
	kube_config_free(&c);
}
END_TEST

START_TEST(test_http_standin_and_insecure)
{
	struct kube_config c;
	char err[256];
	const char *p = write_file("kc",
	    "current-context: local\n"
	    "clusters: [{name: s, cluster: {server: 'http://127.0.0.1:8080', insecure-skip-tls-verify: true}}]\n"
	    "contexts: [{name: local, context: {cluster: s}}]\n");

	ck_assert_int_eq(kubeconfig_load(p, NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.server, "http://127.0.0.1:8080");
	ck_assert(c.insecure);
	kube_config_free(&c);
}
END_TEST

static void
assert_fails(const char *text, const char *context, int code, const char *reason)
{
	struct kube_config c;
	char err[256] = "";

	ck_assert_int_eq(kubeconfig_load(write_file("bad", text), context, &c, err,
	    sizeof(err)), code);
	ck_assert_msg(strstr(err, reason) != NULL, "reason \"%s\" lacks \"%s\"", err, reason);
	ck_assert_ptr_null(c.server);
}

START_TEST(test_errors)
{
	struct kube_config c;
	char err[256];

	assert_fails(full, "nope", -EINVAL, "context \"nope\" not found");
	assert_fails("clusters: []\n", NULL, -EINVAL, "no current-context");
	assert_fails("current-context: a\ncontexts: [{name: a, context: {cluster: x}}]\n",
	    NULL, -EINVAL, "cluster \"x\" not found");
	assert_fails("current-context: a\ncontexts: [{name: a, context: {cluster: x, user: u}}]\n"
	    "clusters: [{name: x, cluster: {server: 'https://h'}}]\n", NULL, -EINVAL,
	    "user \"u\" not found");
	assert_fails("current-context: a\ncontexts: [{name: a, context: {cluster: x}}]\n"
	    "clusters: [{name: x, cluster: {}}]\n", NULL, -EINVAL, "has no server");
	assert_fails("current-context: a\ncontexts: [{name: a, context: {cluster: x}}]\n"
	    "clusters: [{name: x, cluster: {server: 'https://h', certificate-authority-data: '%%%'}}]\n",
	    NULL, -EINVAL, "not base64");
	assert_fails("current-context: a\ncontexts: [{name: a, context: {cluster: x, user: u}}]\n"
	    "clusters: [{name: x, cluster: {server: 'https://h'}}]\n"
	    "users: [{name: u, user: {client-certificate: c.crt}}]\n", NULL, -EINVAL, "needs its key");
	assert_fails("a: [b\n", NULL, -EINVAL, "line");
	assert_fails("", NULL, -EINVAL, "empty");
	ck_assert_int_eq(kubeconfig_load("/nonexistent/kc", NULL, &c, err, sizeof(err)), -ENOENT);
}
END_TEST

START_TEST(test_in_cluster)
{
	struct kube_config c;
	char err[256], sa[128];

	snprintf(sa, sizeof(sa), "%s", dir);
	write_file("namespace", "milo-contacts\n");
	ck_assert_int_eq(kubeconfig_in_cluster(sa, &c, err, sizeof(err)), -ENOENT);
	ck_assert(strstr(err, "KUBERNETES_SERVICE_HOST") != NULL);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	ck_assert_int_eq(kubeconfig_in_cluster(sa, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.server, "https://10.96.0.1:443");
	ck_assert_str_eq(c.namespace, "milo-contacts");
	ck_assert(strstr(c.token_file, "/token") != NULL);
	ck_assert(strstr(c.ca_file, "/ca.crt") != NULL);
	kube_config_free(&c);
	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	ck_assert_int_eq(kubeconfig_in_cluster(sa, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.server, "https://[fd00:10:96::1]:443");
	kube_config_free(&c);
}
END_TEST

START_TEST(test_resolve_order)
{
	struct kube_config c;
	char err[256], env[512];
	const char *p = write_file("kc", full);

	snprintf(env, sizeof(env), "%s:/nonexistent", p);
	setenv("KUBECONFIG", env, 1);
	ck_assert_int_eq(kubeconfig_resolve(NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c.server, "https://[fd00::1]:6443");
	kube_config_free(&c);
	/* The flag wins over the environment. */
	ck_assert_int_ne(kubeconfig_resolve("/nonexistent/kc", &c, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_too_large)
{
	struct kube_config c;
	char err[256], path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/huge", dir);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	for (unsigned i = 0; i < KUBECONFIG_MAX_BYTES / 16 + 1; i++)
		fputs("# padding......\n", f);
	fclose(f);
	ck_assert_int_eq(kubeconfig_load(path, NULL, &c, err, sizeof(err)), -EFBIG);
}
END_TEST

Suite *
kubeconfig_suite(void)
{
	Suite *s = suite_create("kubeconfig");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_checked_fixture(core, make_dir, remove_dir);
	tcase_add_checked_fixture(limits, make_dir, remove_dir);
	tcase_add_test(core, test_current_context);
	tcase_add_test(core, test_named_context_and_relative_paths);
	tcase_add_test(core, test_http_standin_and_insecure);
	tcase_add_test(core, test_in_cluster);
	tcase_add_test(core, test_resolve_order);
	tcase_add_test(limits, test_errors);
	tcase_add_test(limits, test_too_large);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}
