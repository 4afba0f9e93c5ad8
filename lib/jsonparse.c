/*
 * jsonparse.c -- a fast path for jansson's json_loadb()
 *
 * jansson's lexer reads a byte at a time through a stream callback, saves
 * every byte of a token into a growing buffer and copies it again into the
 * value: about 160 instructions per byte of an AdmissionReview, three
 * quarters of a webhook request's CPU. This parser does the same job in one
 * pass: strings are scanned with a table (copied once, straight from the
 * input when they hold no escape), keys go into the object without a
 * temporary, numbers are converted in place.
 *
 * It accepts a strict subset of what jansson accepts and builds the same
 * tree; for anything else it returns NULL and jsonparse_load() asks jansson,
 * so errors (and their texts) stay jansson's. Every rule below mirrors
 * jansson 2.14's load.c:
 *
 *  - whitespace is space, tab, LF and CR; the document is one object or
 *    array with only whitespace after it (no JSON_DECODE_ANY, EOF checked);
 *  - strings: bytes below 0x20 are errors, bytes from 0x80 must form
 *    well-formed UTF-8 (no overlongs, surrogates or code points past
 *    U+10FFFF), escapes are \" \\ \/ \b \f \n \r \t and \uXXXX with
 *    surrogate pairs; \u0000 needs JSON_ALLOW_NUL (we give up);
 *  - numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; without a
 *    fraction or exponent an integer (json_int_t), else a real via strtod,
 *    an overflow to infinity being an error;
 *  - literals true, false, null;
 *  - objects keep their keys in document order; a repeated key is an error
 *    under JSON_REJECT_DUPLICATES and "last one wins" otherwise (we give up
 *    either way).
 */
#include "jsonparse.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quote.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define MAX_DEPTH 64		/* jansson allows 2048; deeper documents go to it */
#define MAX_INT_DIGITS 18	/* always fits json_int_t (int64) */
#define MAX_REAL_LEN 64

struct parser {
	const unsigned char *p, *end;
	int depth;
};

/* 0: an ordinary string byte; 1: '"'; 2: '\\'; 3: a control byte; 4: >= 0x80 */
static const unsigned char string_class[256] = {
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static void
skip_space(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' ||
	    *ps->p == '\r' || *ps->p == '\t'))
		ps->p++;
}

static int
hex4(const unsigned char *s, long *out)
{
	long v = 0;

	for (int i = 0; i < 4; i++) {
		unsigned c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t
put_utf8(unsigned char *o, long r)
{
	if (r < 0x80) {
		o[0] = (unsigned char)r;
		return 1;
	}
	if (r < 0x800) {
		o[0] = (unsigned char)(0xc0 | (r >> 6));
		o[1] = (unsigned char)(0x80 | (r & 0x3f));
		return 2;
	}
	if (r < 0x10000) {
		o[0] = (unsigned char)(0xe0 | (r >> 12));
		o[1] = (unsigned char)(0x80 | ((r >> 6) & 0x3f));
		o[2] = (unsigned char)(0x80 | (r & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | (r >> 18));
	o[1] = (unsigned char)(0x80 | ((r >> 12) & 0x3f));
	o[2] = (unsigned char)(0x80 | ((r >> 6) & 0x3f));
	o[3] = (unsigned char)(0x80 | (r & 0x3f));
	return 4;
}

/*
 * Decodes the escaped string s[0..n) (the bytes between the quotes, already
 * checked for control bytes and UTF-8) into out, which has room for n bytes:
 * no escape grows. Returns the decoded length, or -1.
 */
static long
unescape(const unsigned char *s, size_t n, unsigned char *out)
{
	const unsigned char *end = s + n;
	unsigned char *o = out;

	while (s < end) {
		long r, lo;

		if (*s != '\\') {
			*o++ = *s++;
			continue;
		}
		if (end - s < 2)
			return -1;
		switch (s[1]) {
		case '"': case '\\': case '/':
			*o++ = s[1];
			s += 2;
			continue;
		case 'b': *o++ = '\b'; s += 2; continue;
		case 'f': *o++ = '\f'; s += 2; continue;
		case 'n': *o++ = '\n'; s += 2; continue;
		case 'r': *o++ = '\r'; s += 2; continue;
		case 't': *o++ = '\t'; s += 2; continue;
		case 'u':
			break;
		default:
			return -1;
		}
		if (end - s < 6 || hex4(s + 2, &r) != 0 || r == 0)
			return -1;
		s += 6;
		if (r >= 0xdc00 && r <= 0xdfff)
			return -1;	/* a low surrogate first */
		if (r >= 0xd800 && r <= 0xdbff) {
			if (end - s < 6 || s[0] != '\\' || s[1] != 'u' ||
			    hex4(s + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
				return -1;
			s += 6;
			r = 0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00);
		}
		o += put_utf8(o, r);
	}
	return (long)(o - out);
}

/*
 * Scans the string whose opening quote is at ps->p. Sets *s and *n to its
 * raw bytes and *escaped when it holds a backslash; ps->p ends past the
 * closing quote. Returns -1 when jansson would refuse it (or we give up).
 */
static int
scan_string(struct parser *ps, const unsigned char **s, size_t *n, int *escaped)
{
	const unsigned char *p = ps->p + 1, *end = ps->end;

	*s = p;
	*escaped = 0;
	for (;;) {
		while (p < end && string_class[*p] == 0)
			p++;
		if (p >= end)
			return -1;
		switch (string_class[*p]) {
		case 1:
			*n = (size_t)(p - *s);
			ps->p = p + 1;
			return 0;
		case 2:
			/* the escaped byte is checked by unescape(); skipping
			 * it keeps \" from ending the string */
			*escaped = 1;
			if (end - p < 2 || p[1] < 0x20 || p[1] >= 0x80)
				return -1;
			p += 2;
			break;
		case 3:
			return -1;
		default: {
			long r;

			p += utf8_decode(p, (size_t)(end - p), &r);
			if (r < 0)
				return -1;
		}
		}
	}
}

/*
 * Calls fn(s, n, arg) with the decoded bytes of the string at ps->p: the
 * input itself when there is no escape, a decoded copy otherwise.
 */
typedef int (*string_fn)(const char *s, size_t n, void *arg);

static int
with_string(struct parser *ps, string_fn fn, void *arg)
{
	const unsigned char *s;
	size_t n;
	int escaped, rc;
	unsigned char small[256], *tmp;
	long m;

	if (scan_string(ps, &s, &n, &escaped) != 0)
		return -1;
	if (!escaped)
		return fn((const char *)s, n, arg);
	tmp = n <= sizeof(small) ? small : malloc(n);
	if (!tmp)
		return -1;
	m = unescape(s, n, tmp);
	rc = m < 0 ? -1 : fn((const char *)tmp, (size_t)m, arg);
	if (tmp != small)
		free(tmp);
	return rc;
}

static int
make_string(const char *s, size_t n, void *arg)
{
	json_t **out = arg;

	*out = json_stringn_nocheck(s, n);
	return *out ? 0 : -1;
}

static int
decimal_point_is_dot(void)
{
	const char *dp = localeconv()->decimal_point;

	return dp[0] == '.' && dp[1] == '\0';
}

static json_t *
parse_number(struct parser *ps)
{
	const unsigned char *start = ps->p, *p = ps->p, *end = ps->end;
	int negative = 0, real = 0;
	size_t digits = 0;
	json_int_t v = 0;

	if (*p == '-') {
		negative = 1;
		p++;
	}
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	if (*p == '0') {
		p++;
		if (p < end && *p >= '0' && *p <= '9')
			return NULL;	/* a leading zero */
	} else {
		while (p < end && *p >= '0' && *p <= '9') {
			if (++digits > MAX_INT_DIGITS)
				return NULL;
			v = v * 10 + (*p++ - '0');
		}
	}
	if (p < end && *p == '.') {
		real = 1;
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		real = 1;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	ps->p = p;
	if (!real)
		return json_integer(negative ? -v : v);

	char text[MAX_REAL_LEN];
	size_t len = (size_t)(p - start);
	double d;

	if (len >= sizeof(text) || !decimal_point_is_dot())
		return NULL;
	memcpy(text, start, len);
	text[len] = '\0';
	d = strtod(text, NULL);
	if (isinf(d))
		return NULL;	/* jansson: "real number overflow" */
	return json_real(d);
}

static json_t *parse_value(struct parser *ps);

struct member {
	json_t *object;
	struct parser *ps;
};

/*
 * Parses ": value" after a key and sets it. A repeated key gives up: the
 * object does not grow when set replaces a value, which spares a lookup
 * before every insertion (the tree is thrown away then).
 */
static int
add_member(const char *key, size_t n, void *arg)
{
	struct member *m = arg;
	size_t size = json_object_size(m->object);
	json_t *v;

	skip_space(m->ps);
	if (m->ps->p >= m->ps->end || *m->ps->p != ':')
		return -1;
	m->ps->p++;
	skip_space(m->ps);
	v = parse_value(m->ps);
	if (!v)
		return -1;
	if (json_object_setn_new_nocheck(m->object, key, n, v) != 0)
		return -1;
	return json_object_size(m->object) > size ? 0 : -1;
}

/*
 * The members or elements of the object or array opening at ps->p, up to
 * the closing bracket. 0 or -1.
 */
static int
parse_container(struct parser *ps, json_t *c, unsigned char close)
{
	struct member m = { c, ps };

	ps->p++;
	skip_space(ps);
	if (ps->p < ps->end && *ps->p == close) {
		ps->p++;
		return 0;
	}
	for (;;) {
		if (ps->p >= ps->end)
			return -1;
		if (close == '}') {
			if (*ps->p != '"' || with_string(ps, add_member, &m) != 0)
				return -1;
		} else {
			json_t *v = parse_value(ps);

			if (!v || json_array_append_new(c, v) != 0)
				return -1;
		}
		skip_space(ps);
		if (ps->p >= ps->end)
			return -1;
		if (*ps->p == close) {
			ps->p++;
			return 0;
		}
		if (*ps->p != ',')
			return -1;
		ps->p++;
		skip_space(ps);
	}
}

static json_t *
literal(struct parser *ps, const char *word, size_t n, json_t *value)
{
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return NULL;
	ps->p += n;
	return value;
}

static json_t *
parse_value(struct parser *ps)
{
	json_t *v = NULL;

	if (ps->p >= ps->end)
		return NULL;
	switch (*ps->p) {
	case '"':
		if (with_string(ps, make_string, &v) != 0)
			return NULL;
		return v;
	case '{':
	case '[':
		if (++ps->depth > MAX_DEPTH)
			return NULL;
		v = *ps->p == '{' ? json_object() : json_array();
		if (!v || parse_container(ps, v, *ps->p == '{' ? '}' : ']') != 0) {
			json_decref(v);
			return NULL;
		}
		ps->depth--;
		return v;
	case 't':
		return literal(ps, "true", 4, json_true());
	case 'f':
		return literal(ps, "false", 5, json_false());
	case 'n':
		return literal(ps, "null", 4, json_null());
	default:
		return parse_number(ps);
	}
}

/*
 * The scoped arena. A review's tree is a few hundred small allocations that
 * all die together at the end of the request; from malloc they cost about
 * a fifth of the webhook's CPU (glibc's per-size caches overflow, and the
 * next large allocation consolidates the fast bins). jansson's allocator
 * hooks are process-wide, so they are installed once, at start: they take
 * memory from this thread's arena while a scoped parse runs and from
 * malloc otherwise, and free() whatever is not inside this thread's arena.
 * An arena allocation's free is a no-op; jsonparse_scope_end() reclaims the
 * lot. Memory from malloc is therefore freed with free() as before (what
 * json_dumps returns, say).
 */
#define CHUNK_MIN ((size_t)32 * 1024)
#define ARENA_ALIGN 16

struct chunk {
	struct chunk *next;
	size_t size, used;
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

static __thread struct {
	struct chunk *head;	/* the newest chunk; the first one is kept */
	int active;
} arena;

/* At a thread's exit its arena goes with it. */
static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void
free_chunks(void *head)
{
	struct chunk *c = head;

	/* runs on the exiting thread: later frees must not walk these */
	arena.head = NULL;

	while (c) {
		struct chunk *next = c->next;

		UNPOISON(c->data, c->size);
		free(c);
		c = next;
	}
}

static void
make_key(void)
{
	if (pthread_key_create(&arena_key, free_chunks) != 0)
		abort();
}

static void *
arena_alloc(size_t n)
{
	struct chunk *c = arena.head;
	size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);

	if (need < n)
		return NULL;
	if (!c || c->size - c->used < need) {
		size_t size = c ? c->size * 2 : CHUNK_MIN;

		if (size < need)
			size = need;
		if (size > SIZE_MAX - sizeof(*c) || !(c = malloc(sizeof(*c) + size)))
			return NULL;
		c->next = arena.head;
		c->size = size;
		c->used = 0;
		POISON(c->data, size);
		arena.head = c;
		pthread_once(&arena_once, make_key);
		pthread_setspecific(arena_key, c);
	}
	c->used += need;
	UNPOISON(c->data + c->used - need, n);
	return c->data + c->used - need;
}

static int
in_arena(const void *p)
{
	for (const struct chunk *c = arena.head; c; c = c->next)
		if ((uintptr_t)p - (uintptr_t)c->data < c->size)
			return 1;
	return 0;
}

static void *
json_alloc(size_t n)
{
	if (arena.active) {
		void *p = arena_alloc(n);

		if (p)
			return p;
	}
	return malloc(n);
}

static void
json_release(void *p)
{
	if (p && !in_arena(p))
		free(p);
}

static atomic_bool installed;

void
jsonparse_init(void)
{
	json_set_alloc_funcs(json_alloc, json_release);
	atomic_store(&installed, true);
}

void
jsonparse_scope_end(void)
{
	struct chunk *c = arena.head;

	if (!c)
		return;
	while (c->next) {
		struct chunk *next = c->next;

		UNPOISON(c->data, c->size);
		free(c);
		c = next;
	}
	c->used = 0;
	POISON(c->data, c->size);
	arena.head = c;
	pthread_setspecific(arena_key, c);
}

size_t
jsonparse_arena_bytes(void)
{
	size_t n = 0;

	for (const struct chunk *c = arena.head; c; c = c->next)
		n += c->size;
	return n;
}

json_t *
jsonparse_fast(const char *buf, size_t len)
{
	struct parser ps = {
		.p = (const unsigned char *)buf,
		.end = (const unsigned char *)buf + len,
	};
	json_t *v;

	if (!buf)
		return NULL;
	skip_space(&ps);
	if (ps.p >= ps.end || (*ps.p != '{' && *ps.p != '['))
		return NULL;
	v = parse_value(&ps);
	if (!v)
		return NULL;
	skip_space(&ps);
	if (ps.p != ps.end) {
		json_decref(v);
		return NULL;
	}
	return v;
}

json_t *
jsonparse_load(const char *buf, size_t len, size_t flags, json_error_t *err)
{
	if ((flags & ~(size_t)JSON_REJECT_DUPLICATES) == 0) {
		json_t *v = jsonparse_fast(buf, len);

		if (v)
			return v;
	}
	return json_loadb(buf, len, flags, err);
}

json_t *
jsonparse_load_scoped(const char *buf, size_t len, size_t flags,
    json_error_t *err)
{
	json_t *v = NULL;

	if ((flags & ~(size_t)JSON_REJECT_DUPLICATES) == 0 && atomic_load(&installed)) {
		arena.active = 1;
		v = jsonparse_fast(buf, len);
		arena.active = 0;
	}
	return v ? v : json_loadb(buf, len, flags, err);
}
