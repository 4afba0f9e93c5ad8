/* jsonstream.h -- frames a byte stream of concatenated JSON objects */
#ifndef MILO_JSONSTREAM_H
#define MILO_JSONSTREAM_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"

/*
 * A watch response is a stream of JSON objects with arbitrary whitespace
 * between them, cut into chunks and reads at arbitrary places. Bytes are
 * fed in as they arrive; each complete top-level object is parsed and
 * handed to the callback. A partial object waits for more bytes.
 */
struct jsonstream {
	struct buf in;		/* bytes not yet consumed */
	size_t scan;		/* how far in has been scanned */
	size_t start;		/* where the current value began */
	int depth;
	int in_string, escape;
	size_t max_value;	/* largest single value accepted */
};

typedef int (*jsonstream_fn)(json_t *value, void *arg);

void jsonstream_init(struct jsonstream *s, size_t max_value);
void jsonstream_free(struct jsonstream *s);

/*
 * Feeds len bytes. Returns 0; -EINVAL when the stream is not a sequence of
 * JSON objects; -E2BIG when one value outgrows max_value; -ENOMEM; or the
 * first non-zero value fn returned (then the rest of the input is kept
 * unconsumed: feeding 0 bytes goes on with it). After -EINVAL, -E2BIG or
 * -ENOMEM everything buffered is dropped and the stream is empty again.
 * fn's value is borrowed: json_incref it to keep it past the call.
 */
int jsonstream_feed(struct jsonstream *s, const char *data, size_t len,
    jsonstream_fn fn, void *arg);

/* True when a partial value is buffered (a stream cut mid-object). */
int jsonstream_partial(const struct jsonstream *s);

#endif
