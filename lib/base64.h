/* base64.h -- RFC 4648 base64 (standard alphabet, padded) */
#ifndef MILO_BASE64_H
#define MILO_BASE64_H

#include <stddef.h>

/* Encodes; malloc'd NUL-terminated text, NULL on ENOMEM. */
char *base64_encode(const void *data, size_t len, size_t *out_len);

/*
 * Decodes padded standard base64; returns a malloc'd buffer (NUL-terminated
 * for convenience) and its length, or NULL when the input is not base64
 * or on ENOMEM.
 */
unsigned char *base64_decode(const char *text, size_t len, size_t *out_len);

#endif
