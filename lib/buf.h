/* buf.h -- size-capped growable byte buffer (in the spirit of curl's dynbuf) */
#ifndef MILO_BUF_H
#define MILO_BUF_H

#include <stdarg.h>
#include <stddef.h>

/*
 * A buffer that grows on demand up to a hard cap given at init. The content
 * is always NUL-terminated (the terminator is not counted in len), so text
 * can be used directly as a C string.
 *
 * Past the cap an append fails with -E2BIG and the buffer is freed and left
 * empty, exactly like curl's dynbuf: a caller that ignores the error cannot
 * keep appending to a half-written value. On allocation failure an append
 * returns -ENOMEM and the buffer is likewise freed.
 */
struct buf {
	char *ptr;	/* NULL until the first append */
	size_t len;	/* bytes used, terminator excluded */
	size_t cap;	/* bytes allocated */
	size_t max;	/* hard cap on len */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);	/* keeps the allocation, empties it */

int buf_add(struct buf *b, const void *data, size_t len);
int buf_addstr(struct buf *b, const char *s);
int buf_addc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* The text so far; "" (never NULL) for an empty buffer. Borrowed. */
const char *buf_str(const struct buf *b);

/*
 * Hands the allocation to the caller (free() it) and leaves the buffer
 * empty. Returns a malloc'd "" for an empty buffer, NULL only on ENOMEM.
 */
char *buf_steal(struct buf *b, size_t *len);

#endif
