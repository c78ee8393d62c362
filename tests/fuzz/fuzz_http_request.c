/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_http_request.c: a client's bytes as the front reads them
 * (gateway/front.c process()): pc_http_parse_request over the buffer, then
 * the body its framing says (Content-Length, or chunked through
 * pc_chunked_decode), then the next pipelined request, up to four. Checks:
 * fz_check_head's bounds and framing rules; an incomplete head leaves the
 * buffer as it was; a head that parsed parses the same from a copy that
 * ends right after it (no byte past the empty line was read).
 */
#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char *buf = fz_str(data, n);
    size_t at = 0;
    for (int msg = 0; msg < 4 && at < n; msg++) {
        struct pc_http_head h;
        size_t len = n - at;
        enum pc_http_result r = pc_http_parse_request(buf + at, len, &h);
        if (r == PC_HTTP_INCOMPLETE) {
            FZ_CHECK(memcmp(buf + at, data + at, len) == 0, "incomplete head modified the buffer");
            break;
        }
        if (r != PC_HTTP_OK)
            break;
        fz_check_head(&h, buf + at, len, false);
        /* the same head alone */
        char *alone = fz_str(data + at, h.head_len);
        struct pc_http_head h2;
        FZ_CHECK(pc_http_parse_request(alone, h.head_len, &h2) == PC_HTTP_OK &&
                     h2.head_len == h.head_len && h2.nh == h.nh && h2.framing == h.framing &&
                     h2.content_length == h.content_length,
                 "head reads differently without what follows it");
        free(alone);
        (void)pc_http_get(&h, "host");
        at += h.head_len;
        if (h.framing == PC_HTTP_BODY_LENGTH) {
            if (h.content_length > n - at)
                break;
            at += (size_t)h.content_length;
        } else if (h.framing == PC_HTTP_BODY_CHUNKED) {
            fz_check_chunked((const char *)data + at, n - at, (uint32_t)n);
            struct pc_chunked c;
            memset(&c, 0, sizeof c);
            size_t outn;
            bool done = false;
            ssize_t k = pc_chunked_decode(&c, buf + at, n - at, buf + at, &outn, &done);
            if (k < 0 || !done)
                break;
            at += (size_t)k;
        }
        if (!h.keep_alive)
            break;
    }
    free(buf);
    return 0;
}
