/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_route.c: the route stage (gw_route_find) as a decision table:
 * path -> the route it falls under (or none: 404 NO_ROUTE), the path sent
 * upstream, and the :apiKey segment taken out of it.
 *
 * The routes are the e2e suite's (gwlib.make_routes) plus the examples of
 * docs/gateway.md and route.c's header, loaded through gw_config_load from a
 * routes file as the gateway loads its own. Expectations come from the e2e
 * tests named in each row and from those docs:
 *   - longest prefix wins; "/s/" also covers "/s" (never "/sx");
 *     "/sse" covers "/sse" and "/sse/x", never "/ssex" (route.c header)
 *   - an :apiKey segment is taken out of the path sent upstream
 *     (test_gw_identity.py), an empty one is no match (404)
 *   - a prefix is a prefix (docs/gateway.md "Routes file"): what follows
 *     :apiKey in it must be in the path too
 */
#include "test_gw.h"

#define KEY "pc_" GWT_L64

static const char routes_json[] =
    "{\"routes\": [" GWT_E2E_ROUTES ","
    "{\"prefix\": \"/opencode/:apiKey/\", " GWT_UP ", \"auth\": [\"api_key\"]},"
    "{\"prefix\": \"/api\", " GWT_UP ", \"auth\": [\"session\"]},"
    "{\"prefix\": \"/api/v2/\", " GWT_UP ", \"auth\": [\"api_key\"]},"
    "{\"prefix\": \"/v/:apiKey/sub/\", " GWT_UP ", \"auth\": [\"api_key\"]}"
    "]}";

static const struct route_case {
    const char *path;
    const char *want_route;     /* prefix as configured; NULL: no route (404) */
    const char *want_up;        /* path sent upstream (before the upstream's base) */
    const char *want_up_alt;    /* another acceptable one, or NULL */
    const char *want_key;       /* the :apiKey segment; NULL: none */
    const char *source;
    const char *finding;        /* a known departure from want (see test_gw.h GWT_CHECK) */
} cases[] = {
    /* test_gw_auth_matrix.py test_valid_credential_on_route_kind: route + "x/y" */
    {"/s/x/y", "/s/", "/s/x/y", NULL, NULL, "auth matrix"},
    {"/k/x/y", "/k/", "/k/x/y", NULL, NULL, "auth matrix"},
    {"/m/x/y", "/m/", "/m/x/y", NULL, NULL, "auth matrix"},
    {"/mj/x/y", "/mj/", "/mj/x/y", NULL, NULL, "auth matrix"},
    {"/j/x/y", "/j/", "/j/x/y", NULL, NULL, "auth matrix"},
    {"/pub/x/y", "/pub/", "/pub/x/y", NULL, NULL, "auth matrix"},
    {"/pub/hello", "/pub/", "/pub/hello", NULL, NULL, "test_no_credential_on_public_route_passes"},
    {"/perm/x", "/perm/", "/perm/x", NULL, NULL, "test_route_permissions"},
    /* routing */
    {"/nothing-here", NULL, NULL, NULL, NULL, "test_no_route_is_404_json"},
    {"/sx", NULL, NULL, NULL, NULL, "test_no_route_is_404_json"},
    {"/perms/x", NULL, NULL, NULL, NULL, "test_no_route_is_404_json"},
    {"/", NULL, NULL, NULL, NULL, "test_no_route_is_404_json"},
    {"/s", "/s/", "/s", NULL, NULL, "test_prefix_without_trailing_slash_matches"},
    {"/mperm/x", "/mperm/", "/mperm/x", NULL, NULL, "test_longest_prefix_wins"},
    {"/m/perm/x", "/m/", "/m/perm/x", NULL, NULL, "test_longest_prefix_wins"},
    {"/based/a/b", "/based/", "/based/a/b", NULL, NULL, "test_upstream_base_path_is_prepended"},
    {"/status/200", "/status/", "/status/200", NULL, NULL, "make_routes /status/"},
    /* a prefix without a trailing slash (route.c header) */
    {"/sse", "/sse", "/sse", NULL, NULL, "route.c: \"/api\" matches \"/api\""},
    {"/sse/x", "/sse", "/sse/x", NULL, NULL, "route.c: \"/api\" matches \"/api/x\""},
    {"/ssex", NULL, NULL, NULL, NULL, "route.c: not \"/apix\""},
    {"/api", "/api", "/api", NULL, NULL, "route.c header"},
    {"/api/x", "/api", "/api/x", NULL, NULL, "route.c header"},
    {"/apix", NULL, NULL, NULL, NULL, "route.c header"},
    {"/api/v2/x", "/api/v2/", "/api/v2/x", NULL, NULL, "longest prefix"},
    {"/api/v2", "/api/v2/", "/api/v2", NULL, NULL, "\"/api/\" also covers \"/api\""},
    {"/api/v3/x", "/api", "/api/v3/x", NULL, NULL, "longest prefix"},
    /* the :apiKey segment */
    {"/oc/" KEY "/session/list", "/oc/:apiKey/", "/oc/session/list", NULL, KEY,
     "test_path_segment_key_allowed"},
    {"/oc/" KEY "/a/b", "/oc/:apiKey/", "/oc/a/b", NULL, KEY, "test_api_key_identity_headers"},
    {"/oc/" KEY "/who", "/oc/:apiKey/", "/oc/who", NULL, KEY, "test_gw_limits.py"},
    {"/oc/" KEY "/session/x%20y/", "/oc/:apiKey/", "/oc/session/x%20y/", NULL, KEY,
     "test_path_segment_removed_keeps_rest_and_query"},
    {"/oc/" KEY, "/oc/:apiKey/", "/oc", "/oc/", KEY,
     "test_path_segment_removed_keeps_rest_and_query"},
    {"/oc/not-a-key/x", "/oc/:apiKey/", "/oc/x", NULL, "not-a-key",
     "test_path_segment_key_denied (401 from extract, not 404)"},
    {"/oc/garbage/x", "/oc/:apiKey/", "/oc/x", NULL, "garbage", "test_path_segment_key_denied"},
    {"/oc/", NULL, NULL, NULL, NULL, "test_path_segment_route_without_segment_is_404"},
    {"/opencode/" KEY "/x", "/opencode/:apiKey/", "/opencode/x", NULL, KEY,
     "docs/gateway.md routes file"},
    {"/v/" KEY "/sub/x", "/v/:apiKey/sub/", "/v/sub/x", NULL, KEY, "docs: prefix with :apiKey"},
    {"/v/" KEY "/other/x", NULL, NULL, NULL, NULL,
     "docs: \"prefix: path prefix\": /v/<key>/other is not under /v/:apiKey/sub/"},
};

static int setup(void **state)
{
    (void)state;
    gwt_load(routes_json, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gwt_unload();
    return 0;
}

static bool str_is(const char *got, const char *want)
{
    return got == want || (got && want && strcmp(got, want) == 0);
}

static void test_route_table(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        const struct route_case *c = &cases[i];
        struct gwt_req *q = gwt_req_new(c->path, NULL);
        struct gw_request *r = &q->r;
        const struct gw_route *rt = gw_route_find(r);
        const char *got_route = rt ? rt->prefix : NULL;
        const char *got_key = r->src == GW_SRC_PATH ? r->cred : NULL;
        const char *got_up = rt ? r->upstream_path : NULL;
        bool ok = str_is(got_route, c->want_route) && str_is(got_key, c->want_key) &&
                  (str_is(got_up, c->want_up) || (c->want_up_alt && str_is(got_up, c->want_up_alt)));
        ok = ok && (rt == NULL || r->route == rt);
        if (!GWT_CHECK(ok, c->finding, "route case %zu %s (%s):\n  got  route %s up %s key %s\n"
                                       "  want route %s up %s key %s",
                       i, c->path, c->source, got_route ? got_route : "(none)",
                       got_up ? got_up : "-", got_key ? got_key : "-",
                       c->want_route ? c->want_route : "(none)", c->want_up ? c->want_up : "-",
                       c->want_key ? c->want_key : "-"))
            bad++;
        gwt_req_free(q);
    }
    assert_int_equal(bad, 0);
}

/* The base path of "http://host/base" is the upstream's, put in front later
 * (test_upstream_base_path_is_prepended: /based/a/b -> /base/based/a/b). */
static void test_route_upstream_base(void **state)
{
    (void)state;
    struct gwt_req *q = gwt_req_new("/based/a/b", NULL);
    const struct gw_route *rt = gw_route_find(&q->r);
    assert_non_null(rt);
    assert_string_equal(rt->upstream->base_path, "/base");
    assert_string_equal(q->r.upstream_path, "/based/a/b");
    gwt_req_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_route_upstream_base),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
