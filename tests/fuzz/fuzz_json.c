/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_json.c: JSON text (lib/json.c over yajl), the path every request
 * body, routes file and JWKS goes through. Checks: pc_json_explain says
 * something for every text pc_json_parse refuses; a string written by
 * pc_json_quote parses back to the same bytes when they are UTF-8.
 */
#include "fuzz.h"
#include "../../lib/json.h"
#include "../../lib/util.h"

#include <stdbool.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const char *s = (const char *)data;
    yajl_val v = pc_json_parse(s, n);
    if (v == NULL) {
        char why[160];
        why[0] = '\0';
        pc_json_explain(s, n, why, sizeof why);
        FZ_CHECK(why[0] != '\0', "refused without a reason");
    } else {
        (void)pc_json_get(v, "a");
        yajl_tree_free(v);
    }
    if (pc_utf8_valid(s, n) && memchr(s, 0, n) == NULL) {
        struct pc_buf b = {0};
        pc_json_quote(&b, s, n);
        yajl_val q = pc_json_parse(b.data, b.len);
        FZ_CHECK(q != NULL && YAJL_IS_STRING(q) && strlen(q->u.string) == n &&
                     memcmp(q->u.string, s, n) == 0,
                 "a quoted string did not read back");
        yajl_tree_free(q);
        pc_buf_free(&b);
    }
    return 0;
}
