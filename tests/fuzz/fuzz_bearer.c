/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_bearer.c: Authorization header values (lib/bearer.c), one rule for
 * authsvc and the gateway. Checks: the value lies inside the header; a kind
 * agrees with the shape functions (an API key has the API key shape, a raw
 * session token the session shape); requiring signatures changes a raw
 * session into "unsigned" and nothing else; a signed session value that
 * verifies does not once its MAC is changed.
 */
#include "fuzz.h"
#include "../../lib/bearer.h"
#include "../../lib/cookie.h"

#include <stdbool.h>

#define SECRET "better-auth-secret-12345678901234567890"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char *auth = fz_str(data, n);
    size_t vn = 0;
    const char *v = pc_bearer_value(auth, &vn);
    if (v != NULL) {
        FZ_CHECK(v >= auth && v + vn <= auth + strlen(auth), "value outside the header");
        enum pc_bearer_kind k = pc_bearer_classify(v, vn, false);
        enum pc_bearer_kind ks = pc_bearer_classify(v, vn, true);
        FZ_CHECK(pc_bearer_kind_name(k) != NULL, "kind without a name");
        if (k == PC_BEARER_SESSION_RAW)
            FZ_CHECK(ks == PC_BEARER_SESSION_UNSIGNED && pc_bearer_session_token_shape(v, vn),
                     "raw session");
        else
            FZ_CHECK(ks == k, "require_signature changed kind %d to %d", (int)k, (int)ks);
        if (k == PC_BEARER_API_KEY)
            FZ_CHECK(pc_bearer_api_key_shape(v, vn), "API key without its shape");
        if (k == PC_BEARER_JWT)
            FZ_CHECK(vn >= 3 && memcmp(v, "eyJ", 3) == 0, "JWT without its header");
        if (k == PC_BEARER_SESSION_SIGNED) {
            char *dec = pc_url_decode(v, vn);
            char tok[256];
            if (dec && pc_verify_signed(SECRET, dec, strlen(dec), PC_SIG_TOLERANT, tok, sizeof tok)) {
                /* verified (the unit tests' vectors do): with its MAC changed it must not */
                char *mac = strrchr(dec, '.') + 1;
                *mac = (char)(*mac == 'A' ? 'B' : 'A');
                FZ_CHECK(!pc_verify_signed(SECRET, dec, strlen(dec), PC_SIG_TOLERANT, tok,
                                           sizeof tok),
                         "a changed MAC verified");
            }
            free(dec);
        }
    }
    free(auth);
    return 0;
}
