/* base64.c -- RFC 4648 base64 (standard alphabet, padded), GnuTLS's codec */
#include "base64.h"

#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * GnuTLS's datums are allocated with gnutls_malloc; the callers free with
 * free(), so the result is copied (the inputs here are small: a patch, a
 * key, a certificate).
 */
static void *
copy_out(const gnutls_datum_t *d, size_t *out_len)
{
	unsigned char *p = malloc((size_t)d->size + 1);

	if (p) {
		if (d->size)
			memcpy(p, d->data, d->size);
		p[d->size] = '\0';
		if (out_len)
			*out_len = d->size;
	}
	gnutls_free(d->data);
	return p;
}

char *
base64_encode(const void *data, size_t len, size_t *out_len)
{
	gnutls_datum_t in = { (unsigned char *)(uintptr_t)data, (unsigned int)len };
	gnutls_datum_t out = { NULL, 0 };

	if (len > UINT32_MAX / 2)
		return NULL;
	if (len == 0)
		return copy_out(&out, out_len);
	if (gnutls_base64_encode2(&in, &out) != 0)
		return NULL;
	return copy_out(&out, out_len);
}

/* Padded standard base64 only: GnuTLS would also take line breaks. */
static int
canonical(const char *text, size_t len)
{
	if (len % 4)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (c == '=' ? i + 2 < len || (i + 1 < len && text[i + 1] != '=') :
		    !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return 0;
	}
	return 1;
}

unsigned char *
base64_decode(const char *text, size_t len, size_t *out_len)
{
	gnutls_datum_t in = { (unsigned char *)(uintptr_t)text, (unsigned int)len };
	gnutls_datum_t out = { NULL, 0 };

	if (len > UINT32_MAX || !canonical(text, len))
		return NULL;
	if (len == 0)
		return copy_out(&out, out_len);	/* GnuTLS refuses nothing to decode */
	if (gnutls_base64_decode2(&in, &out) != 0)
		return NULL;
	return copy_out(&out, out_len);
}
