/* Portcullis - MIT licence. See LICENSE.
 *
 * test_url.c: the origin of a URL as a browser reads it, safe relative
 * paths, trusted-origin patterns. The expected origins are what Node's
 * WHATWG `new URL(s).origin` printed for the same input; rows marked STRICT
 * are ones a browser would accept and we refuse on purpose (trailing dots,
 * empty labels, non-ASCII hosts).
 */
#include "../../lib/url.c"
#include "../../lib/util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define OK PC_URL_OK
#define NOSCH PC_URL_NO_SCHEME
#define SCH PC_URL_SCHEME
#define BAD PC_URL_BAD

static const struct {
    const char *in;
    enum pc_url_rc rc;
    const char *origin; /* when OK */
    bool userinfo;
} parse_cases[] = {
    /* plain */
    {"https://app.example.com", OK, "https://app.example.com", false},
    {"https://app.example.com/x?y#z", OK, "https://app.example.com", false},
    {"http://app.example.com:8080/", OK, "http://app.example.com:8080", false},
    /* backslash is a path separator in special schemes */
    {"https://evil.test\\.example.com/", OK, "https://evil.test", false},
    {"https://evil.test\\@x.example.com/", OK, "https://evil.test", false},
    {"https:/\\/\\evil.test", OK, "https://evil.test", false},
    {"https:\\\\evil.test", OK, "https://evil.test", false},
    {"https:evil.test", OK, "https://evil.test", false},
    {"https:///evil.test", OK, "https://evil.test", false},
    /* userinfo: the host follows the last '@' */
    {"https://u:p@a.example.com", OK, "https://a.example.com", true},
    {"https://a.example.com@evil.test/", OK, "https://evil.test", true},
    {"https://a@b@evil.test", OK, "https://evil.test", true},
    {"https://a.example.com%40evil.test/", BAD, NULL, false}, /* '@' decoded: forbidden */
    {"https://user@/", BAD, NULL, false},
    /* percent-encoded host characters */
    {"https://a%2eexample.com", OK, "https://a.example.com", false},
    {"https://%41.example.com", OK, "https://a.example.com", false},
    {"https://a%2fexample.com", BAD, NULL, false},
    {"https://evil.test%5c.example.com", BAD, NULL, false},
    {"https://a%zz.example.com", BAD, NULL, false},
    {"https://a%25.example.com", BAD, NULL, false},
    /* tabs and newlines vanish; C0 and spaces are trimmed at the ends */
    {"https://ev\til.example.com", OK, "https://evil.example.com", false},
    {"ht\ntps://a.example.com", OK, "https://a.example.com", false},
    {"https://a.example.com\r\n", OK, "https://a.example.com", false},
    {" \thttps://a.example.com/ ", OK, "https://a.example.com", false},
    {"https://a.exa mple.com", BAD, NULL, false},
    /* case */
    {"HTTPS://A.EXAMPLE.COM:443/x", OK, "https://a.example.com", false},
    {"hTtP://App.Example.Com", OK, "http://app.example.com", false},
    /* ports */
    {"http://a.example.com:80", OK, "http://a.example.com", false},
    {"https://a.example.com:80", OK, "https://a.example.com:80", false},
    {"http://a.example.com:0443", OK, "http://a.example.com:443", false},
    {"https://a.example.com:", OK, "https://a.example.com", false},
    {"https://a.example.com:65535", OK, "https://a.example.com:65535", false},
    {"https://a.example.com:65536", BAD, NULL, false},
    {"https://a.example.com:8x", BAD, NULL, false},
    {"https://:443/", BAD, NULL, false},
    /* IPv4 in every WHATWG spelling */
    {"http://127.0.0.1:3000", OK, "http://127.0.0.1:3000", false},
    {"http://0x7f.1:80/", OK, "http://127.0.0.1", false},
    {"http://2130706433/", OK, "http://127.0.0.1", false},
    {"http://0300.0250.0.1", OK, "http://192.168.0.1", false},
    {"http://256.0.0.1", BAD, NULL, false},
    {"http://1.16777216", BAD, NULL, false},
    {"http://1.2.3.4.5", BAD, NULL, false},
    {"http://evil.123", BAD, NULL, false},
    {"http://08.1.1.1", BAD, NULL, false},
    /* IPv6 literals */
    {"http://[::1]:3000/", OK, "http://[::1]:3000", false},
    {"http://[0:0:0:0:0:ffff:7f00:1]/", OK, "http://[::ffff:7f00:1]", false},
    {"http://[::FFFF:127.0.0.1]:8080", OK, "http://[::ffff:7f00:1]:8080", false},
    {"http://[2001:DB8:0:0:1:0:0:1]", OK, "http://[2001:db8::1:0:0:1]", false},
    {"http://[::1]x/", BAD, NULL, false},
    {"http://[::1", BAD, NULL, false},
    {"http://[::1%25eth0]/", BAD, NULL, false},
    {"https://[::1]:65536", BAD, NULL, false},
    /* hosts */
    {"https://a_b.example.com", OK, "https://a_b.example.com", false},
    {"https://xn--bcher-kva.example.com", OK, "https://xn--bcher-kva.example.com", false},
    {"https://b\xc3\xbc" "cher.example.com", BAD, NULL, false}, /* STRICT: no IDNA */
    {"https://a.example.com.", BAD, NULL, false},               /* STRICT */
    {"https://a..example.com", BAD, NULL, false},               /* STRICT */
    {"https://*.example.com", BAD, NULL, false},                /* STRICT */
    {"https://a<b.example.com", BAD, NULL, false},
    /* not http(s) */
    {"javascript://x.example.com/%0aalert(1)", SCH, NULL, false},
    {"JavaScript:alert(1)", SCH, NULL, false},
    {"java\tscript:alert(1)", SCH, NULL, false},
    {"data:text/html,<script>alert(1)</script>", SCH, NULL, false},
    {"vbscript:msgbox(1)", SCH, NULL, false},
    {"file:///etc/passwd", SCH, NULL, false},
    {"ftp://x.example.com/", SCH, NULL, false},
    {"ws://x.example.com/", SCH, NULL, false},
    {"wss://x.example.com/", SCH, NULL, false},
    {"blob:https://x.example.com/1", SCH, NULL, false},
    {"httpx://x.example.com/", SCH, NULL, false},
    {"myapp://x.example.com/", SCH, NULL, false},
    /* relative or nothing */
    {"//evil.test", NOSCH, NULL, false},
    {"/\\evil.test", NOSCH, NULL, false},
    {"\\\\evil.test", NOSCH, NULL, false},
    {"evil.test/x", NOSCH, NULL, false},
    {"", NOSCH, NULL, false},
    {":foo", NOSCH, NULL, false},
};

static void test_parse_table(void **state)
{
    for (size_t i = 0; i < PC_ARRAY_LEN(parse_cases); i++) {
        struct pc_url u;
        const char *in = parse_cases[i].in;
        enum pc_url_rc rc = pc_url_parse(in, strlen(in), &u);
        if (rc != parse_cases[i].rc)
            fail_msg("%s: rc %d, want %d", in, rc, parse_cases[i].rc);
        if (rc != PC_URL_OK)
            continue;
        char o[300];
        pc_url_origin(&u, o, sizeof o);
        if (strcmp(o, parse_cases[i].origin) != 0)
            fail_msg("%s: origin %s, want %s", in, o, parse_cases[i].origin);
        if (u.userinfo != parse_cases[i].userinfo)
            fail_msg("%s: userinfo %d", in, u.userinfo);
    }
}

static void test_parse_is_bounded(void **state)
{
    /* a very long authority is refused, not copied past its buffer */
    static char big[8192];
    memcpy(big, "https://", 8);
    memset(big + 8, 'a', sizeof big - 9);
    struct pc_url u;
    assert_int_equal(pc_url_parse(big, sizeof big - 1, &u), PC_URL_BAD);
    /* embedded NUL is a forbidden host code point */
    assert_int_equal(pc_url_parse("https://a\0b.com", 15, &u), PC_URL_BAD);
}

static const struct {
    const char *in;
    bool ok;
} rel_cases[] = {
    {"/", true},
    {"/dashboard", true},
    {"/a/b?x=1", true},
    {"/a/b/", true},
    {"/a?next=//evil.test", true},       /* the query is not a path */
    {"/a#//evil.test", true},
    {"/a%20b", true},
    {"/caf%C3%A9", true},
    {"//evil.test", false},              /* protocol-relative */
    {"/\\evil.test", false},             /* browsers read /\ as // */
    {"\\\\evil.test", false},
    {"\\/evil.test", false},
    {"/a\\b", false},
    {"/%2f%2fevil.test", false},
    {"/%2F/evil.test", false},
    {"/%5cevil.test", false},
    {"/a/%2fb", false},
    {"/a//b", false},
    {"/.//evil.test", false},            /* dot segments resolve to //evil.test */
    {"/a/..//evil.test", false},
    {"/%2e/x", false},
    {"/.%2E/x", false},
    {"/a/.", false},
    {"/...", true},                      /* not a dot segment */
    {"/\tevil", false},
    {"/\n/evil.test", false},
    {"/a b", false},
    {"/caf\xc3\xa9", false},
    {"/a\x7f", false},
    {"", false},
    {"dashboard", false},
    {"?x=1", false},
    {"https://app.example.com/", false},
};

static void test_relative_table(void **state)
{
    for (size_t i = 0; i < PC_ARRAY_LEN(rel_cases); i++) {
        const char *in = rel_cases[i].in;
        if (pc_url_relative_ok(in, strlen(in)) != rel_cases[i].ok)
            fail_msg("%s: want %s", in, rel_cases[i].ok ? "ok" : "refused");
    }
}

/* ---- patterns ---- */

static const char *const bad_patterns[] = {
    "*", "*.*", "https://*", "http://*:*", "*:443", "https://*.*",
    "https://*example.com", "https://pre-*.example.com", "https://a.*",
    "https://app.example.com/path", "https://app.example.com?x", "https://app.example.com#x",
    "app.example.com", "https://u@app.example.com", "https://*.example.com/x",
    "javascript://*.example.com", "myapp://", "ftp://files.example.com", "https*://x.example.com",
    "https://a.example.com?.evil", "https://*.example.com:0", "https://*.example.com:99999",
    "https://*.example.com:x", "https://app.example.com\\x", "https://app .example.com", "",
    "https://*.*.*.*.*.example.com", "1.2.*.4.5", "https://*.example..com",
};

static void test_bad_patterns(void **state)
{
    for (size_t i = 0; i < PC_ARRAY_LEN(bad_patterns); i++) {
        struct pc_origin_pat p;
        const char *err = NULL;
        const char *s = bad_patterns[i];
        if (pc_origin_pat_parse(s, strlen(s), &p, &err) == 0)
            fail_msg("pattern %s accepted", s);
        assert_non_null(err);
    }
}

static const struct {
    const char *pat, *url;
    bool match;
} match_cases[] = {
    /* exact origins */
    {"https://app.example.com", "https://app.example.com/x", true},
    {"https://app.example.com/", "https://APP.example.com", true},
    {"https://App.Example.COM", "https://app.example.com", true},
    {"https://app.example.com:443", "https://app.example.com", true},
    {"https://app.example.com", "https://app.example.com:8443", false},
    {"https://app.example.com", "http://app.example.com", false},
    {"https://app.example.com", "https://app.example.com.evil.test", false},
    {"https://app.example.com", "https://evil.test\\.app.example.com", false},
    {"https://app.example.com", "https://app.example.com@evil.test", false},
    {"https://app.example.com", "https://evil@app.example.com", false}, /* userinfo */
    {"http://127.0.0.1:3000", "http://0x7f.0.0.1:3000/cb", true},
    {"http://[::1]:3000", "http://[0:0::1]:3000", true},
    /* scheme wildcards: whole labels, one or more */
    {"https://*.example.com", "https://a.example.com", true},
    {"https://*.example.com", "https://a.b.example.com/x", true},
    {"https://*.example.com", "https://A.EXAMPLE.COM", true},
    {"https://*.example.com", "https://example.com", false},
    {"https://*.example.com", "https://evilexample.com", false},
    {"https://*.example.com", "https://a.example.com.evil.test", false},
    {"https://*.example.com", "http://a.example.com", false},
    {"https://*.example.com", "https://a.example.com:8443", false},
    {"https://*.example.com", "https://evil.test\\.example.com/", false},
    {"https://*.example.com", "https://evil.test\\@x.example.com/", false},
    {"https://*.example.com", "https://evil.test%5c.example.com/", false},
    {"https://*.example.com", "https://u@x.example.com/", false},
    {"https://*.example.com", "https://evil.test?.example.com", false},
    {"https://*.example.com", "https://evil.test#.example.com", false},
    {"https://*.example.com", "https://evil.test/.example.com", false},
    {"https://*.example.com:*", "https://a.example.com:8443", true},
    {"https://*.example.com:8443", "https://a.example.com:8443", true},
    {"https://*.example.com:443", "https://a.example.com", true},
    {"https://app.*.example.com", "https://app.eu.example.com", true},
    {"https://app.*.example.com", "https://api.eu.example.com", false},
    /* scheme-less wildcards: http or https, default port, nothing else */
    {"*.example.com", "https://x.example.com/", true},
    {"*.example.com", "http://x.example.com/", true},
    {"*.example.com", "https://x.example.com:8443/", false},
    {"*.example.com", "javascript://x.example.com/%0aalert(1)", false},
    {"*.example.com", "data://x.example.com/", false},
    {"*.example.com", "vbscript://x.example.com/", false},
    {"*.example.com", "ws://x.example.com/", false},
    {"*.example.com", "https://[::1]/", false},
    /* IPv4 patterns admit only IPv4 hosts */
    {"http://10.*", "http://10.1.2.3", true},
    {"http://10.*", "http://10.1.2.3.nip.io", false},
    {"http://192.168.*.*", "http://192.168.0.1", true},
    {"http://192.168.*.*", "http://192.168.attacker.com", false},
    {"http://192.168.*.*", "http://0300.0250.0.1", true},
};

static void test_match_table(void **state)
{
    for (size_t i = 0; i < PC_ARRAY_LEN(match_cases); i++) {
        struct pc_origin_pat p;
        const char *err = NULL;
        const char *ps = match_cases[i].pat, *us = match_cases[i].url;
        if (pc_origin_pat_parse(ps, strlen(ps), &p, &err) != 0)
            fail_msg("pattern %s refused: %s", ps, err);
        struct pc_url u;
        bool m = pc_url_parse(us, strlen(us), &u) == PC_URL_OK && pc_origin_pat_match(&p, &u);
        if (m != match_cases[i].match)
            fail_msg("%s vs %s: %s, want %s", ps, us, m ? "match" : "no match",
                     match_cases[i].match ? "match" : "no match");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_is_bounded),
        cmocka_unit_test(test_relative_table),
        cmocka_unit_test(test_bad_patterns),
        cmocka_unit_test(test_match_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
