/*
 * curl_dl.c -- contact-webhook's libcurl, loaded only when it is needed
 *
 * The webhook talks to the API server (lib/kube.c, through libcurl) only
 * with --kubeconfig, $KUBECONFIG or the in-cluster service account. Linked
 * normally, libcurl-gnutls and its dependencies (nghttp2, ssh2 and OpenSSL's
 * libcrypto, rtmp, psl, ldap, sasl, gssapi/krb5, brotli, zstd, ...) are
 * mapped and relocated at every start: about 3.2 MiB of the stateless
 * webhook's 9 MiB idle RSS. So the webhook is linked without -lcurl and
 * these definitions stand in for the libcurl functions lib/kube.c calls:
 * the first call (curl_global_init, from kube_client_new) loads the real
 * library with dlopen and every call goes to it. The stateless webhook
 * never calls them and never maps libcurl. The reconciler and the tests
 * link libcurl as before and do not use this file. A libcurl function
 * newly called from lib/ code the webhook links needs a line here (the
 * link fails until it has one). Never link the webhook with -rdynamic:
 * these definitions must stay out of its dynamic symbol table, or
 * libcurl's own calls between its public functions would land here.
 */
#define CURL_DISABLE_TYPECHECK 1	/* plain prototypes, no checking macros */
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "webhook.h"

#ifndef WEBHOOK_CURL_SONAME
#define WEBHOOK_CURL_SONAME "libcurl-gnutls.so.4"	/* Debian's libcurl3-gnutls */
#endif

static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	void (*easy_cleanup)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_reset)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free)(void *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];
static int loaded;

static void
load(void)
{
	void *h = dlopen(WEBHOOK_CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	const char *e;

	if (!h) {
		e = dlerror();
		snprintf(load_error, sizeof(load_error), "cannot load %s: %s",
		    WEBHOOK_CURL_SONAME, e ? e : "unknown error");
		return;
	}
#define SYM(field, name) do {						\
	*(void **)&fn.field = dlsym(h, name);				\
	if (!fn.field) {						\
		snprintf(load_error, sizeof(load_error),		\
		    "%s: no symbol %s", WEBHOOK_CURL_SONAME, name);	\
		return;							\
	}								\
} while (0)
	SYM(global_init, "curl_global_init");
	SYM(easy_init, "curl_easy_init");
	SYM(easy_setopt, "curl_easy_setopt");
	SYM(easy_perform, "curl_easy_perform");
	SYM(easy_cleanup, "curl_easy_cleanup");
	SYM(easy_getinfo, "curl_easy_getinfo");
	SYM(easy_reset, "curl_easy_reset");
	SYM(easy_strerror, "curl_easy_strerror");
	SYM(easy_escape, "curl_easy_escape");
	SYM(free, "curl_free");
	SYM(slist_append, "curl_slist_append");
	SYM(slist_free_all, "curl_slist_free_all");
#undef SYM
	loaded = 1;
}

int
webhook_load_curl(char *err, size_t errlen)
{
	pthread_once(&load_once, load);
	if (loaded)
		return 0;
	snprintf(err, errlen, "%s", load_error);
	return -1;
}

/*
 * The functions below are only reached after webhook_load_curl succeeded
 * (connect_cluster calls it before kube_client_new); curl_global_init and
 * curl_easy_init check anyway, so a caller that skipped it gets a failure,
 * never a NULL call.
 */
CURLcode
curl_global_init(long flags)
{
	pthread_once(&load_once, load);
	return loaded ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

CURL *
curl_easy_init(void)
{
	pthread_once(&load_once, load);
	return loaded ? fn.easy_init() : NULL;
}

/* The argument's type follows from the option number, as in libcurl itself. */
CURLcode
curl_easy_setopt(CURL *curl, CURLoption option, ...)
{
	va_list ap;
	CURLcode rc;

	va_start(ap, option);
	if (option < CURLOPTTYPE_OBJECTPOINT)
		rc = fn.easy_setopt(curl, option, va_arg(ap, long));
	else if (option < CURLOPTTYPE_FUNCTIONPOINT)
		rc = fn.easy_setopt(curl, option, va_arg(ap, void *));
	else if (option < CURLOPTTYPE_OFF_T)
		rc = fn.easy_setopt(curl, option, va_arg(ap, void (*)(void)));
	else if (option < CURLOPTTYPE_BLOB)
		rc = fn.easy_setopt(curl, option, va_arg(ap, curl_off_t));
	else
		rc = fn.easy_setopt(curl, option, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

CURLcode
curl_easy_perform(CURL *curl)
{
	return fn.easy_perform(curl);
}

void
curl_easy_cleanup(CURL *curl)
{
	if (curl)
		fn.easy_cleanup(curl);
}

/* Every CURLINFO_* takes a pointer to where the answer goes. */
CURLcode
curl_easy_getinfo(CURL *curl, CURLINFO info, ...)
{
	va_list ap;
	void *p;

	va_start(ap, info);
	p = va_arg(ap, void *);
	va_end(ap);
	return fn.easy_getinfo(curl, info, p);
}

void
curl_easy_reset(CURL *curl)
{
	fn.easy_reset(curl);
}

const char *
curl_easy_strerror(CURLcode code)
{
	return loaded ? fn.easy_strerror(code) : "libcurl not loaded";
}

char *
curl_easy_escape(CURL *curl, const char *s, int len)
{
	return fn.easy_escape(curl, s, len);
}

void
curl_free(void *p)
{
	if (p)
		fn.free(p);
}

struct curl_slist *
curl_slist_append(struct curl_slist *list, const char *s)
{
	pthread_once(&load_once, load);
	return loaded ? fn.slist_append(list, s) : NULL;
}

void
curl_slist_free_all(struct curl_slist *list)
{
	if (list)
		fn.slist_free_all(list);
}
