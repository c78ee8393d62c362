/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_refresh_cookie.c: the session cookie a sliding refresh sends
 * again (identity.c gw_refresh_cookie_header), when an upstream's answer
 * sets that cookie itself (gw_sets_session_cookie), and Better Auth's
 * dont_remember cookie, which stops the refresh (extract.c
 * gw_dont_remember).
 *
 * Each request goes through the route and extract stages first, so the
 * token is the one extract found in the cookie. The expected lines are
 * Better Auth 1.7.25's (tests/e2e/interop/FACTS.md, get-session when it slid
 * the expiry) for lib/cookie's vectors (test_gw.h); the e2e side is
 * tests/e2e/gateway/test_gw_refresh_cookie.py.
 */
#include "test_gw.h"

#define COOKIE_ENC "better-auth.session_token=" GWT_TOK1 "." GWT_SIG1_ENC
#define SET_COOKIE_LINE(name, attrs) \
    "Set-Cookie: " name "=" GWT_TOK1 "." GWT_SIG1_ENC attrs "\r\n"
/* "true" signed with GWT_SECRET (test_cookie.c) */
#define DONT_REMEMBER_ENC "true.2Q7qxj%2F11DldXW8be7RmiJCA7bM%2BY0L1gL5sny1v%2FJ8%3D"

static const char routes_json[] = "{\"routes\": [" GWT_E2E_ROUTES "]}";

/* A request for target with headers, through route and extract. */
static struct gwt_req *extracted(const char *target, const char *headers)
{
    struct gwt_req *q = gwt_req_new(target, headers);
    assert_non_null(gw_route_find(&q->r));
    struct gw_refusal why = {0};
    if (gw_extract_cred(&q->r, &why) != GW_EXTRACT_OK)
        fail_msg("%s [%s] refused: %s", target, headers, why.code);
    return q;
}

/* What gw_refresh_cookie_header appends for r with the flag set to flag. */
static void check_header(struct gw_request *r, bool flag, const char *want)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, "X-Before: 1\r\n");
    r->refresh_cookie = flag;
    gw_refresh_cookie_header(r, &b);
    char full[512];
    snprintf(full, sizeof full, "X-Before: 1\r\n%s", want);
    assert_string_equal(pc_buf_cstr(&b), full);
    assert_false(r->refresh_cookie);
    pc_buf_free(&b);
}

static void test_refresh_cookie_default(void **state)
{
    (void)state;
    gwt_load(routes_json, NULL);
    static const char *const sent[] = {
        "Cookie: " COOKIE_ENC,
        /* not encoded, or with lower-case escapes: the answer has the canonical form */
        "Cookie: better-auth.session_token=" GWT_TOK1 "." GWT_SIG1,
        "Cookie: a=b; better-auth.session_token=" GWT_TOK1
        ".xoggXqalwlracZy2yf4Z833SSNtU6th13A%2fwH8huacE%3d; c=d",
        /* on a second Cookie line */
        "Cookie: a=b\nCookie: " COOKIE_ENC,
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(sent); i++) {
        struct gwt_req *q = extracted("/s/x", sent[i]);
        assert_int_equal(q->r.src, GW_SRC_COOKIE);
        check_header(&q->r, true, SET_COOKIE_LINE("better-auth.session_token",
                                                  "; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax"));
        /* once: the flag is spent, a second call adds nothing */
        check_header(&q->r, false, "");
        gwt_req_free(q);
    }
    /* no refresh, no line; a Bearer session never has the flag set by
     * decide.c, and an API key never is a session */
    struct gwt_req *q = extracted("/s/x", "Authorization: Bearer " GWT_TOK1 "." GWT_SIG1);
    check_header(&q->r, false, "");
    gwt_req_free(q);
    q = extracted("/k/x", "x-api-key: pc_" GWT_L64);
    check_header(&q->r, true, "");
    gwt_req_free(q);
    gwt_unload();
}

static void test_refresh_cookie_secure(void **state)
{
    (void)state;
    static const char *const env[] = {"BETTER_AUTH_URL=https://auth.example.com",
                                      "SESSION_EXPIRES_IN_SECONDS=3600", NULL};
    gwt_load(routes_json, env);
    struct gwt_req *q = extracted("/s/x", "Cookie: __Secure-" COOKIE_ENC);
    check_header(&q->r, true,
                 SET_COOKIE_LINE("__Secure-better-auth.session_token",
                                 "; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Lax"));
    gwt_req_free(q);
    gwt_unload();
}

static void test_sets_session_cookie(void **state)
{
    (void)state;
    gwt_load(routes_json, NULL);
    static const struct {
        const char *v;
        bool sets;
    } cases[] = {
        {COOKIE_ENC "; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax", true},
        {"better-auth.session_token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax", true},
        {"  better-auth.session_token =x", true},
        {"better-auth.session_token", false},
        {"better-auth.session_tokens=x", false},
        {"better-auth.session_data=; Max-Age=0", false},
        {"Better-Auth.Session_Token=x", false},     /* cookie names are case-sensitive */
        {"__Secure-better-auth.session_token=x", false},
        {"app=1; better-auth.session_token=x", false},
        {"", false},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++)
        if (gw_sets_session_cookie(cases[i].v, strlen(cases[i].v)) != cases[i].sets)
            fail_msg("gw_sets_session_cookie(\"%s\") is not %d", cases[i].v, cases[i].sets);
    /* only the n bytes given count */
    static const char cut[] = "better-auth.session_token=x";
    assert_false(gw_sets_session_cookie(cut, sizeof cut - 3));
    assert_true(gw_sets_session_cookie(cut, sizeof cut - 2));
    gwt_unload();
}

static void test_dont_remember(void **state)
{
    (void)state;
    gwt_load(routes_json, NULL);
    static const struct {
        const char *headers;
        bool dont;
    } cases[] = {
        {"Cookie: " COOKIE_ENC "; better-auth.dont_remember=" DONT_REMEMBER_ENC, true},
        {"Cookie: better-auth.dont_remember=true.2Q7qxj/11DldXW8be7RmiJCA7bM+Y0L1gL5sny1v/J8=; "
         COOKIE_ENC, true},
        {"Cookie: " COOKIE_ENC "\nCookie: better-auth.dont_remember=" DONT_REMEMBER_ENC, true},
        {"Cookie: " COOKIE_ENC, false},
        /* forged, unsigned, or the value without its signature */
        {"Cookie: " COOKIE_ENC "; better-auth.dont_remember="
         "true.3Q7qxj%2F11DldXW8be7RmiJCA7bM%2BY0L1gL5sny1v%2FJ8%3D", false},
        {"Cookie: " COOKIE_ENC "; better-auth.dont_remember=true", false},
        {"Cookie: " COOKIE_ENC "; better-auth.dont_remember=", false},
        /* another cookie's name */
        {"Cookie: " COOKIE_ENC "; __Secure-better-auth.dont_remember=" DONT_REMEMBER_ENC, false},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        struct gwt_req *q = extracted("/s/x", cases[i].headers);
        if (gw_dont_remember(&q->r) != cases[i].dont)
            fail_msg("gw_dont_remember [%s] is not %d", cases[i].headers, cases[i].dont);
        gwt_req_free(q);
    }
    gwt_unload();

    /* https://: only the __Secure- name counts */
    static const char *const env[] = {"BETTER_AUTH_URL=https://auth.example.com", NULL};
    gwt_load(routes_json, env);
    struct gwt_req *q = extracted("/s/x", "Cookie: __Secure-" COOKIE_ENC
                                          "; better-auth.dont_remember=" DONT_REMEMBER_ENC);
    assert_false(gw_dont_remember(&q->r));
    gwt_req_free(q);
    q = extracted("/s/x", "Cookie: __Secure-" COOKIE_ENC
                          "; __Secure-better-auth.dont_remember=" DONT_REMEMBER_ENC);
    assert_true(gw_dont_remember(&q->r));
    gwt_req_free(q);
    gwt_unload();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refresh_cookie_default),
        cmocka_unit_test(test_refresh_cookie_secure),
        cmocka_unit_test(test_sets_session_cookie),
        cmocka_unit_test(test_dont_remember),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
