/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_upstream_tls.c: https:// upstreams in the routes file (issue 16),
 * as gateway/routes_file.c parses and refuses them: the scheme, the default
 * port 443, the host a certificate must name (a DNS name or an address),
 * a route's ca_file and UPSTREAM_CA_FILE, and one upstream (pool) per URL
 * and CA file with one TLS context per CA file. The handshakes themselves
 * run end to end in tests/e2e/gateway/test_gw_upstream_tls.py.
 */
#include "test_gw.h"

#define SYS_CA "/etc/ssl/certs/ca-certificates.crt" /* Debian's ca-certificates */
#define GOOD "{\"prefix\": \"/ok/\", " GWT_UP ", \"auth\": [\"none\"]}"
#define BAD(x) "{\"routes\": [" GOOD ", {\"prefix\": \"/b/\", \"auth\": [\"none\"], " x "}], " \
               "\"jwt_issuers\": []}"

static const struct gwt_bad_case bad_cases[] = {
    {BAD("\"upstream\": \"ftp://h\""), "routes[1].upstream: upstream \"ftp://h\": must be an http:// or https://"},
    {BAD("\"upstream\": \"https://\""), "routes[1].upstream: upstream \"https://\": bad host"},
    {BAD("\"upstream\": \"https:///x\""), "routes[1].upstream: upstream \"https:///x\": bad host"},
    {BAD("\"upstream\": \"https://a_b.test\""), "routes[1].upstream: upstream \"https://a_b.test\": bad host (an https"},
    {BAD("\"upstream\": \"https://a..b\""), "bad host (an https"},
    {BAD("\"upstream\": \"https://-a.test\""), "bad host (an https"},
    {BAD("\"upstream\": \"https://a-.test\""), "bad host (an https"},
    {BAD("\"upstream\": \"https://a.test.\""), "bad host (an https"},
    {BAD("\"upstream\": \"https://u@a.test\""), "bad host (an https"},
    {BAD("\"upstream\": \"https://a.test:0\""), "port must be 1-65535"},
    {BAD("\"upstream\": \"https://a.test:x\""), "port must be 1-65535"},
    {BAD("\"upstream\": \"https://[::1\""), "routes[1].upstream: "},
    {BAD("\"upstream\": \"http://127.0.0.1:9\", \"ca_file\": \"" SYS_CA "\""),
     "routes[1].ca_file: only for an https:// upstream"},
    {BAD("\"upstream\": \"https://a.test\", \"ca_file\": 5"), "routes[1].ca_file: must be the path"},
    {BAD("\"upstream\": \"https://a.test\", \"ca_file\": \"\""), "routes[1].ca_file: must be the path"},
    {BAD("\"upstream\": \"https://a.test\", \"ca_file\": \"/nonexistent/ca.pem\""),
     "routes[1].ca_file: cannot read /nonexistent/ca.pem: No such file"},
    {BAD("\"upstream\": \"https://a.test\", \"ca_file\": \"/etc/hostname\""),
     "routes[1].ca_file: /etc/hostname "},
    {BAD("\"upstream\": \"https://a.test\", \"ca_file\": \"/\""), "routes[1].ca_file: / "},
    {BAD("\"upstream\": \"https://a.test\", \"ca_file\": \"" SYS_CA "\", \"ca_file\": \"x\""),
     "routes[1].ca_file: given twice"},
    {BAD("\"upstream\": \"https://a.test\", \"tls_verify\": false"), "routes[1].tls_verify: unknown key"},
};

static void test_bad_https_upstreams_are_named(void **state)
{
    (void)state;
    assert_int_equal(gwt_refusals(bad_cases, PC_ARRAY_LEN(bad_cases)), 0);
}

static const struct gw_upstream *upstream_of(const char *prefix)
{
    return gwt_route(prefix)->targets[0];
}

static const char good_json[] =
    "{\"routes\": [" GOOD ","
    "{\"prefix\": \"/a/\", \"upstream\": \"https://API.example.com/base/\", \"auth\": [\"none\"]},"
    "{\"prefix\": \"/b/\", \"upstream\": \"https://api.example.com:8443\", \"auth\": [\"none\"]},"
    "{\"prefix\": \"/c/\", \"upstream\": \"https://127.0.0.1:9443\", \"auth\": [\"none\"],"
    " \"ca_file\": \"" SYS_CA "\"},"
    "{\"prefix\": \"/d/\", \"upstream\": \"https://[::1]:9443\", \"auth\": [\"none\"],"
    " \"ca_file\": \"" SYS_CA "\"},"
    /* the same URL as /c/ without ca_file: another CA, so another pool */
    "{\"prefix\": \"/e/\", \"upstream\": \"https://127.0.0.1:9443\", \"auth\": [\"none\"]},"
    "{\"prefix\": \"/f/\", \"upstream\": \"https://127.0.0.1:9443\", \"auth\": [\"none\"],"
    " \"ca_file\": \"" SYS_CA "\"}"
    "]}";

static void test_good_https_upstreams(void **state)
{
    (void)state;
    gwt_load(good_json, NULL);
    const struct gw_upstream *ok = upstream_of("/ok/"), *a = upstream_of("/a/");
    const struct gw_upstream *b = upstream_of("/b/"), *c = upstream_of("/c/");
    const struct gw_upstream *d = upstream_of("/d/"), *e = upstream_of("/e/");
    const struct gw_upstream *f = upstream_of("/f/");
    /* plain http: no TLS at all */
    assert_null(ok->tls);
    assert_null(ok->ca_file);
    assert_int_equal(ok->port, 9);
    /* the default port, SNI and the name to verify */
    assert_non_null(a->tls);
    assert_int_equal(a->port, 443);
    assert_string_equal(a->host, "API.example.com");
    assert_string_equal(a->host_header, "API.example.com");
    assert_string_equal(a->base_path, "/base");
    assert_false(a->host_is_ip);
    assert_null(a->ca_file);
    assert_int_equal(b->port, 8443);
    assert_string_equal(b->host_header, "api.example.com:8443");
    assert_true(c->host_is_ip);
    assert_string_equal(c->ca_file, SYS_CA);
    assert_true(d->host_is_ip);
    assert_string_equal(d->host, "::1");
    /* one upstream per URL and CA file, one context per CA file */
    assert_ptr_not_equal(c, e);
    assert_ptr_equal(c, f);
    assert_ptr_equal(a->tls, b->tls);
    assert_ptr_equal(a->tls, e->tls);
    assert_ptr_equal(c->tls, d->tls);
    assert_ptr_not_equal(a->tls, c->tls);
    assert_int_equal(gw_cfg.ntls_ctxs, 2);
    assert_int_equal(gw_cfg.nupstreams, 6);
    gwt_unload();
}

/* UPSTREAM_CA_FILE is every https upstream's CA unless a route says
 * otherwise, and is checked at start even with no https upstream. */
static void test_upstream_ca_file(void **state)
{
    (void)state;
    static const char *const env[] = {"UPSTREAM_CA_FILE=" SYS_CA, NULL};
    gwt_load("{\"routes\": [" GOOD ","
             "{\"prefix\": \"/a/\", \"upstream\": \"https://a.test\", \"auth\": [\"none\"]}]}",
             env);
    assert_string_equal(upstream_of("/a/")->ca_file, SYS_CA);
    assert_null(upstream_of("/ok/")->ca_file);
    assert_int_equal(gw_cfg.ntls_ctxs, 1);
    gwt_unload();
    gwt_load("{\"routes\": [" GOOD "]}", env);
    assert_int_equal(gw_cfg.ntls_ctxs, 1);
    gwt_unload();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_https_upstreams_are_named),
        cmocka_unit_test(test_good_https_upstreams),
        cmocka_unit_test(test_upstream_ca_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
