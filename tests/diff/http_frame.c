/* Portcullis - MIT licence. See LICENSE.
 *
 * http_frame.c: the gateway front's framing decisions on a byte string, for
 * the differential test against python3-h11
 * (tests/e2e/gateway/test_h11_differential.py, docs/http-framing.md).
 *
 * Reads cases from stdin (each a 4-byte big-endian length and that many
 * bytes) and prints one line per case:
 *
 *   {"msgs": [["<method hex>", "<target hex>", "<body hex>", <end offset>], ...],
 *    "end": "eof" | "incomplete" | "close" | "refuse <status>", "body_pending": 0 | 1}
 *
 * body_pending: the input is incomplete after a whole head whose body has
 * not all come. The front runs such a request on its head (its body is
 * streamed), so it is answered, and its connection closes, before the body
 * ends.
 *
 * The decisions are front.c process()'s, in its order, with the default
 * limits (GATEWAY_MAX_HEADER_BYTES 16384, REQUEST_LINE_MAX 8192, GATEWAY_MAX_BODY_BYTES
 * 10 MiB): pc_http_parse_request (431 too many or too large, 505 version,
 * 400 framing or malformed), the header byte count (431), the method list
 * (405), the Host rule (pc_http_host_ok, 400), then a Content-Length body
 * or a chunked body through pc_chunked_decode (400), then the next
 * pipelined request unless the message ends the connection ("close"). A target intake.c refuses (not
 * origin-form or absolute-form) is a whole message answered 400 on a
 * connection that goes on, so it counts here as a message like any other.
 */
#include "../../lib/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADERS 16384
#define REQUEST_LINE_MAX 8192
#define MAX_BODY (10 * 1024 * 1024)

static void hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%02x", (unsigned char)s[i]);
}

static int method_ok(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(m, ok[i]) == 0)
            return 1;
    return 0;
}

static int body_pending;

static const char *frame(char *buf, size_t n)
{
    static char end[32];
    size_t at = 0;
    int first = 1;
    printf("{\"msgs\": [");
    for (;;) {
        if (at == n)
            return "eof";
        struct pc_http_head h;
        char *m = buf + at;
        size_t len = n - at;
        enum pc_http_result r = pc_http_parse_request(m, len, &h);
        switch (r) {
        case PC_HTTP_OK:
            break;
        case PC_HTTP_INCOMPLETE:
            return len > MAX_HEADERS + REQUEST_LINE_MAX ? "refuse 431" : "incomplete";
        case PC_HTTP_TOO_MANY:
            return "refuse 431";
        case PC_HTTP_BAD_VERSION:
            return "refuse 505";
        default:
            return "refuse 400";
        }
        size_t hdr_bytes = 0;
        for (size_t i = 0; i < h.nh; i++)
            hdr_bytes += h.h[i].nlen + h.h[i].vlen + 4;
        if (hdr_bytes > MAX_HEADERS || h.head_len > MAX_HEADERS + REQUEST_LINE_MAX)
            return "refuse 431";
        if (!method_ok(h.method))
            return "refuse 405";
        if (!pc_http_host_ok(&h))
            return "refuse 400";
        size_t body_at = at + h.head_len, body_n = 0, used = h.head_len;
        if (h.framing == PC_HTTP_BODY_LENGTH) {
            if (h.content_length > MAX_BODY)
                return "refuse 413";
            if (h.content_length > len - h.head_len) {
                body_pending = 1;
                return "incomplete";
            }
            body_n = (size_t)h.content_length;
            used += body_n;
        } else if (h.framing == PC_HTTP_BODY_CHUNKED) {
            struct pc_chunked c;
            memset(&c, 0, sizeof c);
            bool done = false;
            ssize_t k = pc_chunked_decode(&c, buf + body_at, n - body_at, buf + body_at, &body_n,
                                          &done);
            if (k < 0)
                return "refuse 400";
            if (!done) {
                body_pending = 1;
                return "incomplete";
            }
            used += (size_t)k;
        }
        printf("%s[\"", first ? "" : ", ");
        first = 0;
        hex(h.method, strlen(h.method));
        printf("\", \"");
        hex(h.target, strlen(h.target));
        printf("\", \"");
        hex(buf + body_at, body_n);
        printf("\", %zu]", at + used);
        at += used;
        if (!h.keep_alive) {
            snprintf(end, sizeof end, "%s", at == n ? "eof" : "close");
            return end;
        }
    }
}

int main(void)
{
    unsigned char lenb[4];
    while (fread(lenb, 1, 4, stdin) == 4) {
        size_t n = (size_t)lenb[0] << 24 | (size_t)lenb[1] << 16 | (size_t)lenb[2] << 8 | lenb[3];
        char *buf = malloc(n + 1);
        if (buf == NULL || fread(buf, 1, n, stdin) != n)
            return 1;
        buf[n] = '\0';
        body_pending = 0;
        const char *end = frame(buf, n);
        printf("], \"end\": \"%s\", \"body_pending\": %d}\n", end, body_pending);
        free(buf);
    }
    return 0;
}
