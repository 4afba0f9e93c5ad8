/* form.h -- application/x-www-form-urlencoded bodies and query strings (the HTML form rules) */
#ifndef MILO_FORM_H
#define MILO_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/*
 * Name=value pairs joined by "&", each side encoded as the WHATWG URL
 * standard's application/x-www-form-urlencoded serializer does: ASCII
 * letters, digits and "*-._" stay, a space becomes "+", every other byte
 * (UTF-8 included) is "%XX" with upper-case hex. Mailgun reads its request
 * fields this way (and from query strings, which share the syntax).
 */

#define FORM_BODY_MAX (4u << 20)	/* Mailgun answers 413 past 4 MiB; so do we, first */

struct form {
	struct buf b;
};

/* An empty form that refuses to grow past max bytes. */
void form_init(struct form *f, size_t max);
void form_free(struct form *f);

/*
 * Appends name=value. Returns 0, -E2BIG past the cap or -ENOMEM; on either
 * error the form is emptied (lib/buf.h), so a half-built body is never sent.
 */
int form_add(struct form *f, const char *name, const char *value);
/* Appends name=yes or name=no (Mailgun's booleans, mailgun-go's yesNo()). */
int form_add_bool(struct form *f, const char *name, bool value);

/* The encoded text so far ("" when empty; borrowed) and its length. */
const char *form_text(const struct form *f);
size_t form_len(const struct form *f);

/*
 * Encodes one name or value into out (NUL-terminated). Returns the length
 * it needs, excluding the terminator, like snprintf: out is complete only
 * when that is < len. Pure.
 */
size_t form_escape(const char *s, char *out, size_t len);

#endif
