/* quote.h -- Go's %q (strconv.Quote) and encoding/json string forms */
#ifndef MILO_QUOTE_H
#define MILO_QUOTE_H

#include <stddef.h>

#include "buf.h"

/*
 * Appends s[0..len) to out quoted as Go's strconv.Quote does, which is
 * what fmt's %q prints and so what Kubernetes field errors show:
 * "\"a\\tb\"", invalid UTF-8 bytes as \xNN, non-printable runes as \uNNNN
 * or \UNNNNNNNN, printable non-ASCII kept as UTF-8. Returns buf_add's code.
 */
int quote_go(struct buf *out, const char *s, size_t len);

/*
 * Appends s quoted as Go's encoding/json marshals a string (HTML-safe:
 * <, > and & escaped, U+2028/U+2029 escaped, invalid UTF-8 as U+FFFD).
 */
int quote_json(struct buf *out, const char *s, size_t len);

/*
 * Decodes one UTF-8 sequence at s (n bytes available). Returns its length
 * and stores the rune, or returns 1 and stores -1 for an invalid byte, as
 * Go's utf8.DecodeRuneInString does (overlongs and surrogates invalid).
 */
size_t utf8_decode(const unsigned char *s, size_t n, long *rune);

/* True when every byte forms valid UTF-8. */
int utf8_valid(const char *s, size_t len);

/* Length of s in runes (invalid bytes count one each). */
size_t utf8_runes(const char *s, size_t len);

#endif
