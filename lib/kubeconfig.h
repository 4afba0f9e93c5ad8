/* kubeconfig.h -- where the Kubernetes API is and how to authenticate to it */
#ifndef MILO_KUBECONFIG_H
#define MILO_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#define KUBECONFIG_MAX_BYTES (4u << 20)	/* a kubeconfig larger than this is refused */
#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/*
 * A resolved client configuration. Strings are malloc'd or NULL. File
 * paths are absolute (relative ones in a kubeconfig are taken relative to
 * the kubeconfig's directory, as kubectl does); *_data hold PEM bytes
 * decoded from the kubeconfig's base64.
 */
struct kube_config {
	char *server;		/* "https://10.0.0.1:443", "https://[fd00::1]:443", "http://127.0.0.1:8080" */
	char *ca_file;
	char *ca_data;
	size_t ca_len;
	char *cert_file;
	char *cert_data;
	size_t cert_len;
	char *key_file;
	char *key_data;
	size_t key_len;
	char *token;		/* a static bearer token */
	char *token_file;	/* re-read periodically and after a 401 */
	bool insecure;		/* insecure-skip-tls-verify */
	char *namespace;	/* the context's namespace, or the pod's */
};

/*
 * Reads a kubeconfig file and resolves its current context (or the named
 * context when context is not NULL). Returns 0, or a negative errno-style
 * code with a one-line reason in err; out is then empty.
 */
int kubeconfig_load(const char *path, const char *context,
    struct kube_config *out, char *err, size_t errlen);

/*
 * The in-cluster configuration: KUBERNETES_SERVICE_HOST and _PORT (an IPv6
 * host is bracketed), the service-account token file and CA under sa_dir
 * (KUBE_SA_DIR in a pod). -ENOENT when not running in a cluster.
 */
int kubeconfig_in_cluster(const char *sa_dir, struct kube_config *out,
    char *err, size_t errlen);

/*
 * What a program uses: the --kubeconfig path when given, else $KUBECONFIG
 * (its first entry), else the in-cluster configuration.
 */
int kubeconfig_resolve(const char *flag_path, struct kube_config *out,
    char *err, size_t errlen);

void kube_config_free(struct kube_config *c);

#endif
