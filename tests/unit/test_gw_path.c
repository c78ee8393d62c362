/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_path.c: path safety (gw_path_plain) as a decision table: a path
 * the router and an upstream could read differently is refused (400
 * BAD_PATH), any other passes.
 *
 * The cases are the e2e tables BAD_PATHS and GOOD_PATHS of
 * tests/e2e/gateway/test_gw_http.py, the other paths the e2e suite sends
 * (absolute form, forward auth, the 404s of test_gw_auth_matrix.py), and the
 * examples docs/gateway.md gives ("/public/../admin", "%2e", "//"). Each
 * input is a request target as sent: like intake, the test checks the part
 * before '?' or '#' (the query is not looked at).
 */
#include "test_gw.h"

enum { REFUSED = 0, PLAIN = 1 };

static const struct path_case {
    const char *target;
    int want;
    const char *source;
} cases[] = {
    /* test_gw_http.py BAD_PATHS */
    {"/pub/../x", REFUSED, "BAD_PATHS"},
    {"/pub/%2e%2e/x", REFUSED, "BAD_PATHS"},
    {"/pub/%2E/x", REFUSED, "BAD_PATHS"},
    {"/pub/.%2e/x", REFUSED, "BAD_PATHS"},
    {"//pub/x", REFUSED, "BAD_PATHS"},
    {"/pub//x", REFUSED, "BAD_PATHS"},
    {"/pub/x/..", REFUSED, "BAD_PATHS"},
    {"/pub/a%2fb", REFUSED, "BAD_PATHS"},
    {"/pub/a%2Fb", REFUSED, "BAD_PATHS"},
    {"/pub/a%5Cb", REFUSED, "BAD_PATHS"},
    {"/pub/a\\b", REFUSED, "BAD_PATHS"},
    {"/pub/%00", REFUSED, "BAD_PATHS"},
    /* test_gw_http.py GOOD_PATHS */
    {"/pub/a.b", PLAIN, "GOOD_PATHS"},
    {"/pub/.../x", PLAIN, "GOOD_PATHS"},
    {"/pub/..a", PLAIN, "GOOD_PATHS"},
    {"/pub/%41", PLAIN, "GOOD_PATHS"},
    {"/pub/a%2e", PLAIN, "GOOD_PATHS"},
    {"/pub/x?p=../y", PLAIN, "GOOD_PATHS"},
    /* other e2e requests */
    {"/pub/../s/abs-x", REFUSED, "test_absolute_form_routes_by_its_path"},
    {"/pub/%2e%2e/s/x", REFUSED, "test_forward_auth_refuses_bad_original_uri"},
    {"/_auth/pub/../s/x", REFUSED, "test_envoy_takes_the_request_itself"},
    {"/", PLAIN, "test_no_route_is_404_json (404, not 400)"},
    {"/nothing-here", PLAIN, "test_no_route_is_404_json"},
    {"/s", PLAIN, "test_prefix_without_trailing_slash_matches"},
    {"/pub/hello?a=1", PLAIN, "test_no_credential_on_public_route_passes"},
    {"/based/a/b?c=d", PLAIN, "test_upstream_base_path_is_prepended"},
    /* docs/gateway.md, the front row */
    {"/public/../admin", REFUSED, "docs: a dot segment"},
    {"/public/%2e%2e/admin", REFUSED, "docs: also as %2e"},
    {"/public/./admin", REFUSED, "docs: a dot segment"},
    {"/public/%2e/admin", REFUSED, "docs: also as %2e"},
    {"//admin", REFUSED, "docs: an empty segment (//)"},
    {"/admin//", REFUSED, "docs: an empty segment (//)"},
    {"/a%2F", REFUSED, "docs: an encoded /"},
    {"/a%5c", REFUSED, "docs: an encoded \\"},
    {"/a\\", REFUSED, "docs: a \\"},
    {"/a%00b", REFUSED, "docs: an encoded NUL"},
};

static void test_path_table(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        const struct path_case *c = &cases[i];
        char *path = strndup(c->target, strcspn(c->target, "?#"));
        assert_non_null(path);
        int got = gw_path_plain(path) ? PLAIN : REFUSED;
        if (got != c->want) {
            print_error("path case %zu \"%s\" (%s): got %s, want %s\n", i, c->target, c->source,
                        got ? "plain" : "refused", c->want ? "plain" : "refused");
            bad++;
        }
        free(path);
    }
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
