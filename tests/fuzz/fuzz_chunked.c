/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_chunked.c: pc_chunked_decode (lib/http.c), the request bodies the
 * front decodes in place and the answers proxy.c relays. The first four
 * bytes choose how the rest is split into reads; whole, split and in-place
 * decoding must read the same body, end at the same byte, refuse alike.
 */
#include "fuzz_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    uint32_t seed = 0;
    if (n >= 4) {
        memcpy(&seed, data, 4);
        data += 4;
        n -= 4;
    }
    fz_check_chunked((const char *)data, n, seed);
    return 0;
}
