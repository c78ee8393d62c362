/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_route_opts.c: the routes file's exchange options (issue 16):
 * request_headers, response_headers, preserve_host and timeout_ms, as
 * gateway/routes_file.c parses and refuses them, and the two header-rule
 * helpers proxy.c applies them with (identity.c gw_hdr_ruled,
 * gw_hdr_rules_set). What reaches the upstream and the client is checked
 * end to end in tests/e2e/gateway/test_gw_route_exchange.py.
 *
 * Every refusal must name the place (routes[1].request_headers.set.Host),
 * as docs/gateway.md "Strict file" says; routes[0] is a good route, so the
 * index is seen to be the bad route's.
 */
#include "test_gw.h"

#define GOOD "{\"prefix\": \"/ok/\", " GWT_UP ", \"auth\": [\"none\"]}"
#define BAD(x) "{\"routes\": [" GOOD ", {\"prefix\": \"/b/\", " GWT_UP ", \"auth\": [\"session\"], " x "}]}"

static const struct gwt_bad_case bad_cases[] = {
    {BAD("\"request_headers\": \"X-A\""), "routes[1].request_headers: must be {"},
    {BAD("\"request_headers\": {\"add\": {}}"), "routes[1].request_headers.add: unknown key"},
    {BAD("\"request_headers\": {\"set\": []}"), "routes[1].request_headers.set: must be an object"},
    {BAD("\"request_headers\": {\"remove\": \"X-A\"}"),
     "routes[1].request_headers.remove: must be an array"},
    {BAD("\"request_headers\": {\"set\": {}, \"set\": {}}"), "routes[1].request_headers.set: given twice"},
    /* the identity the gateway adds, in any case */
    {BAD("\"request_headers\": {\"set\": {\"X-User-Id\": \"admin\"}}"),
     "routes[1].request_headers.set.X-User-Id: X-User-Id cannot be changed here"},
    {BAD("\"request_headers\": {\"set\": {\"x-user-email\": \"a@b\"}}"),
     "routes[1].request_headers.set.x-user-email: "},
    {BAD("\"request_headers\": {\"remove\": [\"X-Auth-Method\"]}"), "request_headers.remove[0]: X-Auth-Method"},
    {BAD("\"request_headers\": {\"remove\": [\"X-Session-Id\"]}"), "request_headers.remove[0]: X-Session-Id"},
    {BAD("\"request_headers\": {\"remove\": [\"X-Api-Key-Id\"]}"), "request_headers.remove[0]: X-Api-Key-Id"},
    {BAD("\"request_headers\": {\"remove\": [\"X-Auth-Issuer\"]}"), "request_headers.remove[0]: X-Auth-Issuer"},
    {BAD("\"request_headers\": {\"remove\": [\"X-Auth-JWT\"]}"), "request_headers.remove[0]: X-Auth-JWT"},
    {BAD("\"request_headers\": {\"remove\": [\"x-request-id\"]}"), "request_headers.remove[0]: x-request-id"},
    {BAD("\"request_headers\": {\"remove\": [\"X-Forwarded-For\"]}"), "request_headers.remove[0]: X-Forwarded-For"},
    {BAD("\"request_headers\": {\"set\": {\"X-Forwarded-Host\": \"h\"}}"), "request_headers.set.X-Forwarded-Host: "},
    {BAD("\"request_headers\": {\"set\": {\"X-Forwarded-Proto\": \"https\"}}"), "request_headers.set.X-Forwarded-Proto: "},
    {BAD("\"request_headers\": {\"set\": {\"X-Forwarded-Port\": \"1\"}}"), "request_headers.set.X-Forwarded-Port: "},
    /* framing and hop-by-hop; Host has its own option */
    {BAD("\"request_headers\": {\"set\": {\"Host\": \"h\"}}"), "request_headers.set.Host: Host cannot be changed here: Host is the upstream's; preserve_host"},
    {BAD("\"request_headers\": {\"set\": {\"Content-Length\": \"0\"}}"), "request_headers.set.Content-Length: "},
    {BAD("\"request_headers\": {\"remove\": [\"Transfer-Encoding\"]}"), "request_headers.remove[0]: Transfer-Encoding"},
    {BAD("\"request_headers\": {\"remove\": [\"connection\"]}"), "request_headers.remove[0]: connection"},
    {BAD("\"request_headers\": {\"remove\": [\"Upgrade\"]}"), "request_headers.remove[0]: Upgrade"},
    {BAD("\"request_headers\": {\"remove\": [\"TE\"]}"), "request_headers.remove[0]: TE"},
    {BAD("\"request_headers\": {\"remove\": [\"Trailer\"]}"), "request_headers.remove[0]: Trailer"},
    /* names and values */
    {BAD("\"request_headers\": {\"set\": {\"Bad Name\": \"v\"}}"), "request_headers.set.Bad Name: must be a header name"},
    {BAD("\"request_headers\": {\"set\": {\"X-A:\": \"v\"}}"), "request_headers.set.X-A:: must be a header name"},
    {BAD("\"request_headers\": {\"set\": {\"\": \"v\"}}"), "request_headers.set.: must be a header name"},
    {BAD("\"request_headers\": {\"remove\": [\"\"]}"), "request_headers.remove[0]: must be a header name"},
    {BAD("\"request_headers\": {\"remove\": [\"X-A\", 5]}"), "request_headers.remove[1]: must be a header name"},
    {BAD("\"request_headers\": {\"remove\": [\"X-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"]}"),
     "request_headers.remove[0]: must be a header name"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": \"a\\r\\nX-B: b\"}}"), "request_headers.set.X-A: must be a string"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": \"a\\nb\"}}"), "request_headers.set.X-A: must be a string"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": \"a\\u0001\"}}"), "request_headers.set.X-A: must be a string"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": \"a\\u0000b\"}}"), "a \\u0000 escape"}, /* lib/json.c */
    {BAD("\"request_headers\": {\"set\": {\"X-A\": \" a\"}}"), "request_headers.set.X-A: must be a string"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": 5}}"), "request_headers.set.X-A: must be a string"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": null}}"), "request_headers.set.X-A: must be a string"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": \"1\"}, \"remove\": [\"x-a\"]}"),
     "request_headers.remove[0]: x-a is named twice"},
    {BAD("\"request_headers\": {\"set\": {\"X-A\": \"1\", \"x-A\": \"2\"}}"), "request_headers.set.x-A: x-A is named twice"},
    {BAD("\"upstream_jwt\": \"authorization\", \"request_headers\": {\"remove\": [\"authorization\"]}"),
     "routes[1].request_headers: Authorization carries the upstream_jwt"},
    /* the answer */
    {BAD("\"response_headers\": []"), "routes[1].response_headers: must be {"},
    {BAD("\"response_headers\": {\"remove\": [\"Content-Length\"]}"), "routes[1].response_headers.remove[0]: Content-Length"},
    {BAD("\"response_headers\": {\"set\": {\"Transfer-Encoding\": \"chunked\"}}"),
     "routes[1].response_headers.set.Transfer-Encoding: "},
    {BAD("\"response_headers\": {\"remove\": [\"Connection\"]}"), "routes[1].response_headers.remove[0]: Connection"},
    {BAD("\"response_headers\": {\"set\": {\"X-Request-Id\": \"x\"}}"), "routes[1].response_headers.set.X-Request-Id: "},
    {BAD("\"response_headers\": {\"set\": {\"X-A\": \"a\\rb\"}}"), "routes[1].response_headers.set.X-A: must be a string"},
    /* preserve_host, timeout_ms */
    {BAD("\"preserve_host\": \"yes\""), "routes[1].preserve_host: must be true or false"},
    {BAD("\"preserve_host\": 1"), "routes[1].preserve_host: must be true or false"},
    {BAD("\"timeout_ms\": 0"), "routes[1].timeout_ms: must be an integer from 1 to 3600000"},
    {BAD("\"hsts_max_age_s\": -1"), "routes[1].hsts_max_age_s: must be an integer from 0 to 63072000"},
    {BAD("\"hsts_max_age_s\": \"1y\""), "routes[1].hsts_max_age_s: must be an integer"},
    {BAD("\"timeout_ms\": 3600001"), "routes[1].timeout_ms: must be an integer"},
    {BAD("\"timeout_ms\": -5"), "routes[1].timeout_ms: must be an integer"},
    {BAD("\"timeout_ms\": 1.5"), "routes[1].timeout_ms: must be an integer"},
    {BAD("\"timeout_ms\": \"500\""), "routes[1].timeout_ms: must be an integer"},
    {BAD("\"timeout_ms\": 99999999999999999999"), "routes[1].timeout_ms: must be an integer"},
    {BAD("\"timeout_ms\": 5, \"timeout_ms\": 6"), "routes[1].timeout_ms: given twice"},
};

static void test_bad_options_are_named(void **state)
{
    (void)state;
    assert_int_equal(gwt_refusals(bad_cases, PC_ARRAY_LEN(bad_cases)), 0);
}

/* 33 rules, one over the bound. */
static void test_too_many_header_rules(void **state)
{
    (void)state;
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"routes\": [{\"prefix\": \"/b/\", " GWT_UP ", \"auth\": [\"none\"], "
                    "\"response_headers\": {\"remove\": [");
    for (int k = 0; k < 33; k++)
        pc_buf_printf(&b, "%s\"X-H%d\"", k ? ", " : "", k);
    pc_buf_puts(&b, "]}}], \"jwt_issuers\": []}"); /* no environment to default from */
    char err[600] = "";
    assert_int_not_equal(gw_routes_load_text(b.data, b.len, "unit", err, sizeof err), 0);
    assert_non_null(strstr(err, "routes[0].response_headers: at most 32 headers"));
    gw_routes_free();
    /* 32 are fine */
    char *last = strstr(b.data, ", \"X-H32\"");
    assert_non_null(last);
    memmove(last, last + strlen(", \"X-H32\""), strlen(last + strlen(", \"X-H32\"")) + 1);
    assert_int_equal(gw_routes_load_text(b.data, strlen(b.data), "unit", err, sizeof err), 0);
    assert_int_equal(gw_cfg.table->routes[0].resp_hdrs.n, 32);
    gw_routes_free();
    pc_buf_free(&b);
}

static const char good_json[] =
    "{\"routes\": [" GOOD ","
    "{\"prefix\": \"/x/\", " GWT_UP ", \"auth\": [\"session\"], \"preserve_host\": true,"
    " \"timeout_ms\": 250,"
    " \"request_headers\": {\"set\": {\"X-Tenant\": \"acme\", \"Authorization\": \"Basic eA==\","
    " \"X-Empty\": \"\"}, \"remove\": [\"Referer\", \"cookie\"]},"
    " \"response_headers\": {\"set\": {\"Cache-Control\": \"no-store\"}, \"remove\": [\"Server\"]}},"
    "{\"prefix\": \"/long/\", " GWT_UP ", \"auth\": [\"none\"], \"timeout_ms\": 3600000,"
    " \"preserve_host\": false}"
    "]}";

static void test_good_options_are_kept(void **state)
{
    (void)state;
    gwt_load(good_json, NULL);
    const struct gw_route *ok = gwt_route("/ok/"), *x = gwt_route("/x/");
    const struct gw_route *lg = gwt_route("/long/");
    /* a route without them: nothing to do per request */
    assert_int_equal(ok->req_hdrs.n, 0);
    assert_int_equal(ok->resp_hdrs.n, 0);
    assert_false(ok->preserve_host);
    assert_int_equal(ok->timeout_ms, 0);
    assert_true(x->preserve_host);
    assert_int_equal(x->timeout_ms, 250);
    assert_int_equal(lg->timeout_ms, 3600000);
    assert_false(lg->preserve_host);
    /* set first, then remove; names matched in any case */
    assert_int_equal(x->req_hdrs.n, 5);
    assert_string_equal(x->req_hdrs.r[0].name, "X-Tenant");
    assert_string_equal(x->req_hdrs.r[0].value, "acme");
    assert_null(x->req_hdrs.r[3].value);
    assert_true(gw_hdr_ruled(&x->req_hdrs, "x-tenant", 8));
    assert_true(gw_hdr_ruled(&x->req_hdrs, "REFERER", 7));
    assert_true(gw_hdr_ruled(&x->req_hdrs, "Cookie", 6));
    assert_false(gw_hdr_ruled(&x->req_hdrs, "X-Tenan", 7));
    assert_false(gw_hdr_ruled(&x->req_hdrs, "X-Tenants", 9));
    assert_false(gw_hdr_ruled(&ok->req_hdrs, "X-Tenant", 8));
    struct pc_buf b = {0};
    gw_hdr_rules_set(&x->req_hdrs, &b);
    pc_buf_putc(&b, '\0');
    assert_string_equal(b.data, "X-Tenant: acme\r\nAuthorization: Basic eA==\r\nX-Empty: \r\n");
    b.len = 0;
    gw_hdr_rules_set(&x->resp_hdrs, &b);
    pc_buf_putc(&b, '\0');
    assert_string_equal(b.data, "Cache-Control: no-store\r\n");
    assert_true(gw_hdr_ruled(&x->resp_hdrs, "server", 6));
    b.len = 0;
    gw_hdr_rules_set(&ok->resp_hdrs, &b);
    assert_int_equal(b.len, 0);
    pc_buf_free(&b);
    gwt_unload();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options_are_named),
        cmocka_unit_test(test_too_many_header_rules),
        cmocka_unit_test(test_good_options_are_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
