/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_http_response.c: an upstream's answer as proxy.c reads it:
 * pc_http_parse_response (the first byte says whether the request was
 * HEAD), then a chunked body through pc_chunked_decode. HTTP/1.0 answers
 * included: Transfer-Encoding in one is refused (RFC 9112 6.1), checked by
 * fz_check_head with the other framing rules.
 */
#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n < 1)
        return 0;
    bool head_request = data[0] & 1;
    data++;
    n--;
    char *buf = fz_str(data, n);
    struct pc_http_head h;
    enum pc_http_result r = pc_http_parse_response(buf, n, head_request, &h);
    if (r == PC_HTTP_INCOMPLETE)
        FZ_CHECK(memcmp(buf, data, n) == 0, "incomplete head modified the buffer");
    if (r == PC_HTTP_OK) {
        fz_check_head(&h, buf, n, true);
        if (head_request)
            FZ_CHECK(h.framing == PC_HTTP_BODY_NONE, "an answer to HEAD with a body");
        if (h.framing == PC_HTTP_BODY_CHUNKED)
            fz_check_chunked(buf + h.head_len, n - h.head_len, (uint32_t)n);
        (void)pc_http_get(&h, "connection");
    }
    free(buf);
    return 0;
}
