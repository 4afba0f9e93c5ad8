/* email.h -- e-mail address syntax (RFC 5321 dot-atom addr-spec) */
#ifndef MILO_EMAIL_H
#define MILO_EMAIL_H

#include <stddef.h>

/* Limits from RFC 5321 section 4.5.3.1 and RFC 3696 erratum 1690. */
#define EMAIL_LOCAL_MAX 64	/* octets in the local part */
#define EMAIL_TOTAL_MAX 254	/* octets in the whole address */
#define EMAIL_LABEL_MAX 63	/* octets in one domain label */

/*
 * Checks that s[0..len) is an address Milo accepts in Contact.spec.email:
 * local@domain, the local part a dot-atom, the domain two or more LDH
 * labels, ASCII only. Returns NULL when it is valid, otherwise a static,
 * human-readable reason suitable as the detail of a Kubernetes "Invalid
 * value" field error (lower case, no trailing period), e.g. "the local part
 * must not end with a dot". Only the first problem found, in the fixed
 * order documented in email.c, is reported. s need not be NUL-terminated
 * and may be NULL when len is 0; NUL bytes inside it make it invalid.
 * Pure: no allocation, no locale, O(len), nothing past len is read.
 */
const char *email_check(const char *s, size_t len);

#endif
