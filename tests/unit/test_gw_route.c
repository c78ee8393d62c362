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
 *   - strip_prefix, hosts and methods, and which route is the most specific
 *     (docs/gateway.md "Routes file")
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
    assert_string_equal(rt->targets[0]->base_path, "/base");
    assert_string_equal(q->r.upstream_path, "/based/a/b");
    gwt_req_free(q);
}

/* ---- strip_prefix, hosts and methods (docs/gateway.md "Routes file") ----
 * Each route has its own upstream port, so a row can name the route it
 * expects even where prefixes repeat. */
#define UPN(n) "\"upstream\": \"http://127.0.0.1:" #n "\""
static const char select_json[] =
    "{\"routes\": ["
    "{\"prefix\": \"/opencode/:apiKey/\", " UPN(9001) ", \"auth\": [\"api_key\"],"
    " \"strip_prefix\": true},"
    "{\"prefix\": \"/app/\", \"upstream\": \"http://127.0.0.1:9002/app\", \"auth\": [\"none\"],"
    " \"strip_prefix\": true},"
    "{\"prefix\": \"/v/:apiKey/sub/\", " UPN(9003) ", \"auth\": [\"api_key\"], \"strip_prefix\": true},"
    "{\"prefix\": \"/\", " UPN(9004) ", \"auth\": [\"none\"], \"hosts\": [\"API.example.com\"]},"
    "{\"prefix\": \"/admin/\", " UPN(9005) ", \"auth\": [\"none\"]},"
    "{\"prefix\": \"/admin/\", " UPN(9006) ", \"auth\": [\"none\"], \"hosts\": [\"*.example.com\"]},"
    "{\"prefix\": \"/admin/\", " UPN(9007) ", \"auth\": [\"none\"], \"hosts\": [\"*.eu.example.com\"]},"
    "{\"prefix\": \"/admin/\", " UPN(9008) ", \"auth\": [\"none\"], \"methods\": [\"POST\", \"PUT\"]},"
    "{\"prefix\": \"/x/\", " UPN(9009) ", \"auth\": [\"none\"], \"hosts\": [\"*.example.com\"],"
    " \"methods\": [\"GET\"]}"
    "]}";

static const struct select_case {
    const char *method, *host, *path;
    int want_port;              /* 0: no route */
    const char *want_up;        /* path sent upstream (before the base path) */
    const char *want_prefix;    /* X-Forwarded-Prefix; NULL: none */
    const char *want_key;
} select_cases[] = {
    /* strip_prefix: what follows the prefix, from its '/' on */
    {"GET", "unit", "/opencode/" KEY "/session/list", 9001, "/session/list", "/opencode/" KEY, KEY},
    {"GET", "unit", "/opencode/" KEY "/", 9001, "/", "/opencode/" KEY, KEY},
    {"GET", "unit", "/opencode/" KEY, 9001, "/", "/opencode/" KEY, KEY},
    {"GET", "unit", "/app/foo/bar", 9002, "/foo/bar", "/app", NULL},
    {"GET", "unit", "/app", 9002, "/", "/app", NULL},
    {"GET", "unit", "/v/" KEY "/sub/x", 9003, "/x", "/v/" KEY "/sub", KEY},
    /* hosts: exact beats wildcard beats none, before the prefix's length */
    {"GET", "api.example.com", "/anything", 9004, "/anything", NULL, NULL},
    {"GET", "API.Example.COM:8080", "/admin/x", 9004, "/admin/x", NULL, NULL},
    {"GET", "api.example.com.", "/q", 9004, "/q", NULL, NULL},
    {"GET", "b.example.com", "/admin/x", 9006, "/admin/x", NULL, NULL},
    {"GET", "eu.example.com", "/admin/x", 9006, "/admin/x", NULL, NULL},
    {"GET", "a.eu.example.com", "/admin/x", 9007, "/admin/x", NULL, NULL},
    {"GET", "other.test", "/admin/x", 9005, "/admin/x", NULL, NULL},
    {"GET", "example.com", "/admin/x", 9005, "/admin/x", NULL, NULL},
    {"GET", "evil-example.com", "/admin/x", 9005, "/admin/x", NULL, NULL},
    /* methods: a route that lists the method beats one that lists none */
    {"POST", "other.test", "/admin/x", 9008, "/admin/x", NULL, NULL},
    {"DELETE", "other.test", "/admin/x", 9005, "/admin/x", NULL, NULL},
    {"POST", "b.example.com", "/admin/x", 9006, "/admin/x", NULL, NULL},
    {"GET", "a.example.com", "/x/1", 9009, "/x/1", NULL, NULL},
    {"POST", "a.example.com", "/x/1", 0, NULL, NULL, NULL},
    {"GET", "example.com", "/x/1", 0, NULL, NULL, NULL},
    {"GET", "unit", "/x/1", 0, NULL, NULL, NULL},
};

static void test_route_select(void **state)
{
    (void)state;
    gwt_unload();
    gwt_load(select_json, NULL);
    int bad = 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(select_cases); i++) {
        const struct select_case *c = &select_cases[i];
        char hdr[300];
        snprintf(hdr, sizeof hdr, "Host: %s", c->host);
        struct gwt_req *q = gwt_req_new(c->path, hdr);
        q->r.method = c->method;
        const struct gw_route *rt = gw_route_find(&q->r);
        int port = rt ? rt->targets[0]->port : 0;
        const char *key = q->r.src == GW_SRC_PATH ? q->r.cred : NULL;
        bool ok = port == c->want_port &&
                  (rt == NULL || (str_is(q->r.upstream_path, c->want_up) &&
                                  str_is(q->r.forwarded_prefix, c->want_prefix) &&
                                  str_is(key, c->want_key)));
        if (!ok) {
            print_error("select case %zu %s %s %s: got port %d up %s prefix %s key %s\n", i,
                        c->method, c->host, c->path, port,
                        q->r.upstream_path ? q->r.upstream_path : "-",
                        q->r.forwarded_prefix ? q->r.forwarded_prefix : "-", key ? key : "-");
            bad++;
        }
        gwt_req_free(q);
    }
    gwt_unload();
    gwt_load(routes_json, NULL);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_table),
        cmocka_unit_test(test_route_upstream_base),
        cmocka_unit_test(test_route_select),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
