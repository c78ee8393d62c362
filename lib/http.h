/* Portcullis - MIT licence. See LICENSE.
 *
 * http.h: HTTP/1.x message heads and chunked bodies, parsed in place.
 *
 * The gateway reads requests and upstream answers into its own buffers and
 * parses them here, with no allocation and no copy: names and values are
 * NUL-terminated where they lie (the ':' and the line end are overwritten).
 * Parsing is strict where leniency lets two parties read one message two
 * ways (request smuggling): bare CR, obs-fold, whitespace before ':', a
 * Transfer-Encoding other than "chunked", Transfer-Encoding in an HTTP/1.0
 * message, Content-Length together with Transfer-Encoding, or two different
 * Content-Lengths are all refused; so is a chunked line (size, after the
 * data, trailer) that ends in a bare LF instead of CRLF (RFC 9112 7.1).
 */
#ifndef PC_HTTP_H
#define PC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PC_HTTP_MAX_HEADERS 128

struct pc_http_header {
    const char *name;       /* NUL-terminated, as sent */
    const char *value;      /* NUL-terminated, surrounding whitespace removed */
    size_t nlen, vlen;
};

enum pc_http_framing {
    PC_HTTP_BODY_NONE = 0,  /* no body (or a Content-Length of 0) */
    PC_HTTP_BODY_LENGTH,    /* content_length bytes */
    PC_HTTP_BODY_CHUNKED,   /* Transfer-Encoding: chunked */
    PC_HTTP_BODY_CLOSE,     /* answers only: until the connection closes */
};

struct pc_http_head {
    /* request line */
    const char *method;     /* NUL-terminated */
    char *target;           /* NUL-terminated request target, as sent */
    /* status line */
    int status;
    const char *reason;     /* NUL-terminated, may be "" */
    int minor;              /* HTTP/1.<minor>: 0 or 1 */
    struct pc_http_header h[PC_HTTP_MAX_HEADERS];
    size_t nh;
    size_t head_len;        /* bytes of the head, final empty line included */
    /* derived from the headers */
    enum pc_http_framing framing;
    uint64_t content_length;
    bool keep_alive;        /* the connection may carry another message */
    bool expect_continue;   /* Expect: 100-continue */
};

enum pc_http_result {
    PC_HTTP_OK = 0,
    PC_HTTP_INCOMPLETE,     /* no end of the head yet: read more */
    PC_HTTP_BAD,            /* malformed: 400 (or 502 for an answer) */
    PC_HTTP_TOO_MANY,       /* more than PC_HTTP_MAX_HEADERS headers */
    PC_HTTP_BAD_VERSION,    /* not HTTP/1.0 or HTTP/1.1 */
    PC_HTTP_BAD_FRAMING,    /* conflicting or unknown body framing */
};

/** Parses a request head at buf[0..len). On PC_HTTP_OK, h points into buf
 * (which it has modified); on PC_HTTP_INCOMPLETE buf is untouched. */
enum pc_http_result pc_http_parse_request(char *buf, size_t len, struct pc_http_head *h);

/** Parses an answer's head. head_request: the request was HEAD, so the
 * answer has no body whatever its headers say. */
enum pc_http_result pc_http_parse_response(char *buf, size_t len, bool head_request,
                                           struct pc_http_head *h);

/** The first header called name (any case), or NULL. */
const char *pc_http_get(const struct pc_http_head *h, const char *name);
/** RFC 9112 3.2 on a parsed request: HTTP/1.1 has exactly one Host,
 * HTTP/1.0 at most one, and its value is an authority (RFC 3986 3.2: a
 * reg-name, IPv4 or [IP-literal], then an optional :port), or empty. */
bool pc_http_host_ok(const struct pc_http_head *h);

/** Does a comma-separated header value hold token (any case)? */
bool pc_http_list_has(const char *value, const char *token, size_t tlen);

/* ---- chunked bodies ---- */

struct pc_chunked {
    int state;
    uint64_t left;          /* bytes left in the current chunk */
    unsigned digits;
};

/** Decodes chunked data: reads in[0..n) and writes the payload bytes to
 * out (which may be in itself, or before it: bytes move as with memmove),
 * setting *outn to their number. Returns the bytes consumed: all of n
 * unless the body ended (then *done is set and what follows belongs to the
 * next message), or -1 on malformed framing. Trailers are read and dropped. */
ssize_t pc_chunked_decode(struct pc_chunked *c, const char *in, size_t n, char *out, size_t *outn,
                          bool *done);

#endif
