/* Portcullis - MIT licence. See LICENSE.
 *
 * util.h: the few helpers every module needs: allocation that aborts on
 * out-of-memory (one OOM policy for the whole project, as redis zmalloc and
 * h2o_mem_alloc decide it), a growable byte buffer, clocks and ISO-8601 time,
 * and small string helpers.
 */
#ifndef PC_UTIL_H
#define PC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define PC_MUSTCHECK __attribute__((warn_unused_result))
#define PC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define PC_NORETURN __attribute__((noreturn))
#define PC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/** Growable byte buffer. Always NUL-terminated when len > 0 or after
 * pc_buf_cstr(). Owned by whoever holds the struct; release with pc_buf_free(). */
struct pc_buf {
    char *data;     /* heap storage, NULL until the first append */
    size_t len;     /* bytes used, excluding the NUL */
    size_t cap;     /* bytes allocated */
};

/** Print "fatal: <msg>" to stderr and abort. For broken invariants and OOM. */
PC_NORETURN void pc_fatal(const char *fmt, ...) PC_PRINTF(1, 2);

/** malloc/calloc/realloc/strdup that abort on failure: never return NULL. */
void *pc_xmalloc(size_t n);
void *pc_xcalloc(size_t n, size_t size);
void *pc_xrealloc(void *p, size_t n);
char *pc_xstrdup(const char *s);
char *pc_xstrndup(const char *s, size_t n);
/** A copy of s with A-Z lowered (emails, domains). */
char *pc_xstrdup_lower(const char *s);

void pc_buf_append(struct pc_buf *b, const void *data, size_t n);
void pc_buf_puts(struct pc_buf *b, const char *s);
void pc_buf_putc(struct pc_buf *b, char c);
/** Appends v in decimal (no printf on hot paths). */
void pc_buf_putu(struct pc_buf *b, uint64_t v);
void pc_buf_printf(struct pc_buf *b, const char *fmt, ...) PC_PRINTF(2, 3);
/** Returns the buffer as a C string ("" when empty). Valid until the next append. */
const char *pc_buf_cstr(struct pc_buf *b);
void pc_buf_reset(struct pc_buf *b);
void pc_buf_free(struct pc_buf *b);

/** A bound on what is appended to buf (a fetched body): buf is the caller's. */
struct pc_buf_capped {
    struct pc_buf *buf;     /* appended to */
    size_t max;             /* most bytes buf may hold */
    bool over;              /* set once an append would have passed max */
};
/** fwrite-shaped, for CURLOPT_WRITEFUNCTION with a struct pc_buf_capped as
 * its data: appends size * n bytes and returns that, or appends nothing,
 * sets over and returns 0 (the transfer stops) when they would pass max. */
size_t pc_buf_capped_write(char *p, size_t size, size_t n, void *capped);

/** Wall clock in milliseconds since the epoch. */
int64_t pc_now_ms(void);
/** Monotonic clock in microseconds (for latencies). */
int64_t pc_mono_us(void);

/** Formats epoch milliseconds as "2026-11-23T17:01:02.345Z" into out (>= 25 bytes). */
void pc_iso8601(int64_t ms, char out[32]);

/** Case-insensitive ASCII comparisons. */
bool pc_strieq(const char *a, const char *b);
bool pc_strnieq(const char *a, const char *b, size_t n);
bool pc_starts_with(const char *s, const char *prefix);
/** The value of hex digit c, or -1. */
int pc_hexval(char c);
/** s is 1..max characters of [A-Za-z0-9] and of extra (e.g. "-_"): the
 * shape of ids and request ids we accept from outside. */
bool pc_token_chars(const char *s, size_t max, const char *extra);

/** Parses a base-10 integer in [min,max] that fills the whole string. */
PC_MUSTCHECK int pc_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/** Splits "host:port" or "[v6]:port" into host (without brackets) and port.
 * Returns 0, or -1 with *err set to a static message. */
PC_MUSTCHECK int pc_parse_hostport(const char *s, char *host, size_t hostsz,
                                   int *port, const char **err);

/** True when s[0..n) is well-formed UTF-8: no overlong forms, no encoded
 * surrogates, nothing above U+10FFFF (what JSON.parse and PostgreSQL take). */
bool pc_utf8_valid(const char *s, size_t n);
/** A heap copy of s[0..n) (NUL-terminated) in which every ill-formed
 * sequence is replaced by U+FFFD, one per maximal subpart, as the WHATWG
 * decoder (URLSearchParams, TextDecoder) does; valid text is copied as is.
 * For text from outside that is not refused: query values, form fields,
 * header values stored as text. NUL bytes are kept (the caller's rule). */
char *pc_utf8_fix(const char *s, size_t n);

/** Overwrites n bytes so the compiler cannot elide it (secrets). */
void pc_wipe(void *p, size_t n);

/** Appends the portcullis_build_info gauge (value 1, labels program and
 * version), named alike in both programs' /metrics. */
void pc_build_info_metric(struct pc_buf *b, const char *program);

#endif
