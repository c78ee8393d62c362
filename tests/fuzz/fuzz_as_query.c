/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_as_query.c: query strings as authsvc's routes read them
 * (authsvc/job.c as_query_param; apikey_input.c ak_query_parse and
 * ak_query_get, which keep every value of a repeated name). Checks: every
 * value read is UTF-8 (bytes that are not read as U+FFFD, as
 * URLSearchParams does); the first value as_query_param gives is the one
 * ak_query_get gives.
 */
#include "fuzz.h"
#include "../../authsvc/job.h"
#include "../../authsvc/apikey_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    struct as_job job;
    memset(&job, 0, sizeof job);
    job.query = fz_str(data, n);
    static const char *const names[] = {"id", "token", "callbackURL", "limit", "", "a b"};
    struct query q;
    ak_query_parse(&job, &q);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *v = as_query_param(&job, names[i]);
        int count = 0;
        const char *w = ak_query_get(&q, names[i], &count);
        if (v) {
            FZ_CHECK(pc_utf8_valid(v, strlen(v)), "value not UTF-8");
            FZ_CHECK(w != NULL && count >= 1 && strcmp(v, w) == 0,
                     "as_query_param and ak_query_get disagree");
            free(v);
        }
        if (w)
            FZ_CHECK(pc_utf8_valid(w, strlen(w)), "value not UTF-8");
    }
    ak_query_free(&q);
    free(job.query);
    return 0;
}
