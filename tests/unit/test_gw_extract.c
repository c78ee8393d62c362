/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_extract.c: the extract stage (gw_extract_cred) as a decision
 * table: route + header set -> the credential (kind, where it was found, the
 * value whose SHA-256 becomes the cache key), no credential needed (a public
 * route), or a 401 refusal and its code.
 *
 * Each request goes through the route stage first (gw_route_find, routes
 * from gwlib.make_routes), as in the gateway. Expectations:
 *   - which kinds each route lets in: test_gw_auth_matrix.py (ACCEPTS, the
 *     :apiKey tests, the bearer scheme, key prefixes), test_gw_jwt.py
 *     (CREDENTIAL_NOT_ACCEPTED, JWT_TOO_LARGE over 8 KiB),
 *     test_gw_sec_headers.py and test_gw_key_prefixes.py (the two settings)
 *   - the order (docs/gateway.md, extract row): :apiKey segment, x-api-key,
 *     Authorization: Bearer, the session cookie (every Cookie line, as if
 *     joined); a bad shape or signature is refused, not passed over
 *   - codes the e2e tests do not assert (they check 401 only) are marked
 *     "code: extract.c": docs/gateway.md names none of them.
 * Signed values are lib/cookie's Python-computed vectors (test_gw.h).
 */
#include "test_gw.h"

#define KEY "pc_" GWT_L64
#define KEY_DIGIT "pc_" "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijk1"
#define SIGNED GWT_TOK1 "." GWT_SIG1
#define FORGED_SIG "yoggXqalwlracZy2yf4Z833SSNtU6th13A/wH8huacE="
#define JWT "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6NDEwMjQ0NDgwMH0.c2ln"

#define COOKIE "Cookie: better-auth.session_token=" GWT_TOK1 "." GWT_SIG1_ENC
#define B_SIGNED "Authorization: Bearer " SIGNED
#define B_RAW "Authorization: Bearer " GWT_TOK1
#define XKEY "x-api-key: " KEY
#define B_KEY "Authorization: Bearer " KEY
#define B_JWT "Authorization: Bearer " JWT

enum want { WANT_CRED, WANT_ANON, WANT_REFUSED };

struct extract_case {
    const char *target;
    const char *headers;        /* '\n'-separated lines, or NULL */
    enum want want;
    enum gw_cred_kind kind;     /* WANT_CRED */
    enum gw_cred_src src;       /* WANT_CRED */
    const char *cred;           /* WANT_CRED: the value that is hashed */
    const char *code;           /* WANT_REFUSED (status 401) */
    const char *source;
    const char *finding;        /* a known departure (test_gw.h GWT_CHECK) */
};

#define OK(t, h, k, s, cred, src) {t, h, WANT_CRED, GW_CRED_##k, GW_SRC_##s, cred, NULL, src, NULL}
#define ANON(t, h, src) {t, h, WANT_ANON, GW_CRED_NONE, GW_SRC_NONE, NULL, NULL, src, NULL}
#define NO(t, h, code, src) {t, h, WANT_REFUSED, GW_CRED_NONE, GW_SRC_NONE, NULL, code, src, NULL}
#define NO_F(t, h, code, src, finding)                                                   \
    {t, h, WANT_REFUSED, GW_CRED_NONE, GW_SRC_NONE, NULL, code, src, finding}

#define MATRIX "test_valid_credential_on_route_kind"
#define NOT_ACC "test_jwt_on_a_route_without_jwt"
#define CODE_SRC " (401; code: extract.c)"

static const struct extract_case default_cases[] = {
    /* the auth matrix: ACCEPTS of test_gw_auth_matrix.py, route by route */
    OK("/s/x/y", COOKIE, SESSION, COOKIE, GWT_TOK1, MATRIX),
    OK("/s/x/y", B_SIGNED, SESSION, BEARER, GWT_TOK1, MATRIX),
    OK("/s/x/y", B_RAW, SESSION, BEARER, GWT_TOK1, MATRIX),
    NO("/s/x/y", XKEY, "UNAUTHORIZED", MATRIX CODE_SRC),
    NO("/s/x/y", B_KEY, "CREDENTIAL_NOT_ACCEPTED", MATRIX CODE_SRC),
    NO("/s/x/y", B_JWT, "CREDENTIAL_NOT_ACCEPTED", NOT_ACC),

    NO("/k/x/y", COOKIE, "UNAUTHORIZED", MATRIX CODE_SRC),
    NO("/k/x/y", B_SIGNED, "CREDENTIAL_NOT_ACCEPTED", MATRIX CODE_SRC),
    NO("/k/x/y", B_RAW, "CREDENTIAL_NOT_ACCEPTED", MATRIX CODE_SRC),
    OK("/k/x/y", XKEY, API_KEY, API_HEADER, KEY, MATRIX),
    OK("/k/x/y", B_KEY, API_KEY, BEARER, KEY, MATRIX),
    NO("/k/x/y", B_JWT, "CREDENTIAL_NOT_ACCEPTED", NOT_ACC),

    OK("/m/x/y", COOKIE, SESSION, COOKIE, GWT_TOK1, MATRIX),
    OK("/m/x/y", B_SIGNED, SESSION, BEARER, GWT_TOK1, MATRIX),
    OK("/m/x/y", B_RAW, SESSION, BEARER, GWT_TOK1, MATRIX),
    OK("/m/x/y", XKEY, API_KEY, API_HEADER, KEY, MATRIX),
    OK("/m/x/y", B_KEY, API_KEY, BEARER, KEY, MATRIX),
    NO("/m/x/y", B_JWT, "CREDENTIAL_NOT_ACCEPTED", MATRIX CODE_SRC),

    OK("/mj/x/y", COOKIE, SESSION, COOKIE, GWT_TOK1, MATRIX),
    OK("/mj/x/y", B_SIGNED, SESSION, BEARER, GWT_TOK1, MATRIX),
    OK("/mj/x/y", B_RAW, SESSION, BEARER, GWT_TOK1, MATRIX),
    OK("/mj/x/y", XKEY, API_KEY, API_HEADER, KEY, MATRIX),
    OK("/mj/x/y", B_KEY, API_KEY, BEARER, KEY, MATRIX),
    OK("/mj/x/y", B_JWT, JWT, BEARER, JWT, MATRIX " (accepted here, refused by verify)"),

    NO("/j/x/y", COOKIE, "UNAUTHORIZED", MATRIX CODE_SRC),
    NO("/j/x/y", B_SIGNED, "CREDENTIAL_NOT_ACCEPTED", MATRIX CODE_SRC),
    NO("/j/x/y", B_RAW, "CREDENTIAL_NOT_ACCEPTED", MATRIX CODE_SRC),
    NO("/j/x/y", XKEY, "UNAUTHORIZED", MATRIX CODE_SRC),
    NO("/j/x/y", B_KEY, "CREDENTIAL_NOT_ACCEPTED", MATRIX CODE_SRC),
    OK("/j/x/y", B_JWT, JWT, BEARER, JWT, MATRIX),

    ANON("/pub/x/y", COOKIE, MATRIX),
    ANON("/pub/x/y", B_SIGNED, MATRIX),
    ANON("/pub/x/y", B_RAW, MATRIX),
    ANON("/pub/x/y", XKEY, MATRIX),
    ANON("/pub/x/y", B_KEY, MATRIX),
    ANON("/pub/x/y", B_JWT, MATRIX),
    ANON("/pub/hello", NULL, "test_no_credential_on_public_route_passes"),

    /* no credential */
    NO("/s/x", NULL, "UNAUTHORIZED", "test_no_credential_is_401" CODE_SRC),
    NO("/k/x", NULL, "UNAUTHORIZED", "test_no_credential_is_401" CODE_SRC),
    NO("/j/x", NULL, "UNAUTHORIZED", "test_no_credential_is_401" CODE_SRC),
    NO("/perm/x", NULL, "UNAUTHORIZED", "test_no_credential_is_401" CODE_SRC),
    NO("/mperm/x", NULL, "UNAUTHORIZED", "test_no_credential_is_401" CODE_SRC),

    /* the Bearer scheme in any case; other schemes are not a bearer */
    OK("/m/x", "Authorization: bearer " GWT_TOK1, SESSION, BEARER, GWT_TOK1,
       "test_bearer_scheme_is_case_insensitive"),
    OK("/m/x", "Authorization: BEARER " KEY, API_KEY, BEARER, KEY,
       "test_bearer_scheme_is_case_insensitive"),
    OK("/s/x", "Authorization: Basic dTpw\n" COOKIE, SESSION, COOKIE, GWT_TOK1,
       "docs: only Authorization: Bearer"),
    NO_F("/s/x", "Authorization: Bearer ", "INVALID_TOKEN", "bearer.h: a value may be empty" CODE_SRC,
         "lib/http.c trims the value to \"Bearer\", which is no bearer at all: UNAUTHORIZED; "
         "extract.c's empty-bearer branch (INVALID_TOKEN) is not reached from a request"),

    /* API-key shapes */
    OK("/k/x", "x-api-key: " GWT_L64, API_KEY, API_HEADER, GWT_L64,
       "test_api_key_without_prefix_and_with_other_prefix"),
    OK("/k/x", "x-api-key: my-app_" GWT_L64, API_KEY, API_HEADER, "my-app_" GWT_L64,
       "test_api_key_without_prefix_and_with_other_prefix"),
    NO("/k/x", "x-api-key: " KEY_DIGIT, "INVALID_API_KEY", "docs: 64 letters"),
    NO("/k/x", "x-api-key: not-a-key", "INVALID_API_KEY", "docs: 64 letters"),
    NO_F("/k/x", "Authorization: Bearer " KEY_DIGIT, "INVALID_TOKEN",
         "docs: told apart by shape (no shape: a malformed bearer)" CODE_SRC,
         "a bearer of no known shape on a route without sessions is CREDENTIAL_NOT_ACCEPTED, "
         "\"This route does not accept sessions\": it is taken for a session token"),

    /* signed session tokens: bearer plugin (std or url alphabet, maybe
     * percent-encoded) and the cookie; a forged signature is refused */
    OK("/s/x", "Authorization: Bearer " GWT_TOK1 "." GWT_SIG1_URL, SESSION, BEARER, GWT_TOK1,
       "docs: signed session token"),
    OK("/s/x", "Authorization: Bearer " GWT_TOK1 "." GWT_SIG1_ENC, SESSION, BEARER, GWT_TOK1,
       "bearer.h: maybe percent-encoded"),
    NO("/s/x", "Authorization: Bearer " GWT_TOK1 "." FORGED_SIG, "INVALID_TOKEN",
       "docs: bad bearer signatures are refused" CODE_SRC),
    NO("/s/x", "Cookie: better-auth.session_token=" GWT_TOK1 "." FORGED_SIG, "INVALID_SESSION",
       "docs: bad cookie signatures are refused" CODE_SRC),
    NO("/s/x", "Cookie: better-auth.session_token=" GWT_TOK1, "INVALID_SESSION",
       "docs: the cookie is signed" CODE_SRC),
    OK("/s/x", "Cookie: a=1\nCookie: b=2; better-auth.session_token=" GWT_TOK1 "." GWT_SIG1_ENC,
       SESSION, COOKIE, GWT_TOK1, "docs: every Cookie line is read"),
    NO("/s/x", "Cookie: __Secure-better-auth.session_token=" GWT_TOK1 "." GWT_SIG1_ENC,
       "UNAUTHORIZED", "docs: __Secure- only with an https BETTER_AUTH_URL" CODE_SRC),

    /* the order: segment, x-api-key, bearer, cookie; a bad one is refused */
    OK("/m/x", XKEY "\n" COOKIE, API_KEY, API_HEADER, KEY, "docs: x-api-key before the cookie"),
    OK("/m/x", XKEY "\n" B_SIGNED, API_KEY, API_HEADER, KEY, "docs: x-api-key before Bearer"),
    OK("/m/x", B_SIGNED "\n" COOKIE, SESSION, BEARER, GWT_TOK1, "docs: Bearer before the cookie"),
    NO("/m/x", "x-api-key: not-a-key\n" COOKIE, "INVALID_API_KEY",
       "docs: bad shapes are refused"),
    NO("/m/x", "Authorization: Bearer " GWT_TOK1 "." FORGED_SIG "\n" COOKIE, "INVALID_TOKEN",
       "docs: bad bearer signatures are refused" CODE_SRC),

    /* the :apiKey segment */
    OK("/oc/" KEY "/session/list", NULL, API_KEY, PATH, KEY, "test_path_segment_key_allowed"),
    NO("/oc/not-a-key/x", NULL, "INVALID_API_KEY", "test_path_segment_key_denied"),
    NO("/oc/" KEY_DIGIT "/x", NULL, "INVALID_API_KEY", "test_path_segment_key_denied"),
    NO("/oc/garbage/x", XKEY, "INVALID_API_KEY", "test_path_segment_key_denied"),
    NO("/oc/garbage/x", COOKIE, "INVALID_API_KEY", "test_path_segment_key_denied"),
    NO("/oc/garbage/x", B_RAW, "INVALID_API_KEY", "test_path_segment_key_denied"),
    OK("/oc/" KEY "/x", "x-api-key: " GWT_L64, API_KEY, PATH, KEY,
       "docs: the segment comes first"),
};

static const struct extract_case prefix_cases[] = {
    OK("/k/x", XKEY, API_KEY, API_HEADER, KEY, "test_unlisted_prefix_refused_before_any_lookup"),
    OK("/k/x", B_KEY, API_KEY, BEARER, KEY, "test_unlisted_prefix_refused_before_any_lookup"),
    OK("/k/x", "x-api-key: oc_" GWT_L64, API_KEY, API_HEADER, "oc_" GWT_L64, "listed prefix"),
    NO("/k/x", "x-api-key: xx_" GWT_L64, "INVALID_API_KEY", "test_unlisted_prefix_refused"),
    NO("/k/x", "x-api-key: p_" GWT_L64, "INVALID_API_KEY", "test_unlisted_prefix_refused"),
    NO("/k/x", "x-api-key: pc" GWT_L64, "INVALID_API_KEY", "test_unlisted_prefix_refused"),
    NO("/k/x", "x-api-key: " GWT_L64, "INVALID_API_KEY", "test_unlisted_prefix_refused"),
    NO("/k/x", "Authorization: Bearer xx_" GWT_L64, "INVALID_API_KEY",
       "test_unlisted_prefix_refused"),
    NO("/k/x", "Authorization: Bearer p_" GWT_L64, "INVALID_API_KEY",
       "test_unlisted_prefix_refused"),
    NO("/k/x", "Authorization: Bearer pc" GWT_L64, "INVALID_API_KEY",
       "test_unlisted_prefix_refused"),
    NO("/k/x", "Authorization: Bearer " GWT_L64, "INVALID_API_KEY",
       "test_unlisted_prefix_refused"),
    NO("/oc/xx_" GWT_L64 "/x", NULL, "INVALID_API_KEY", "docs: any other prefix is refused here"),
};

static const struct extract_case strict_cases[] = {
    NO("/s/x", B_RAW, "INVALID_TOKEN", "test_gateway_honours_bearer_require_signature"),
    NO("/m/x", B_RAW, "INVALID_TOKEN", "docs: a raw session token is refused: 401 INVALID_TOKEN"),
    OK("/s/x", B_SIGNED, SESSION, BEARER, GWT_TOK1,
       "test_gateway_honours_bearer_require_signature"),
    OK("/s/x", COOKIE, SESSION, COOKIE, GWT_TOK1, "test_gateway_honours_bearer_require_signature"),
};

static const char routes_json[] = "{\"routes\": [" GWT_E2E_ROUTES "]}";

static const char *result_name(enum want w)
{
    return w == WANT_CRED ? "credential" : w == WANT_ANON ? "anonymous" : "refused";
}

/* Runs one request through route and extract; returns whether the row holds. */
static bool run_case(size_t i, const struct extract_case *c)
{
    struct gwt_req *q = gwt_req_new(c->target, c->headers);
    struct gw_request *r = &q->r;
    bool ok = false;
    char got[256];
    if (gw_route_find(r) == NULL) {
        snprintf(got, sizeof got, "no route");
    } else {
        struct gw_refusal why = {0};
        enum gw_extract_result x = gw_extract_cred(r, &why);
        enum want w = x == GW_EXTRACT_OK ? WANT_CRED : x == GW_EXTRACT_ANONYMOUS ? WANT_ANON : WANT_REFUSED;
        if (w == WANT_REFUSED) {
            snprintf(got, sizeof got, "refused %d %s", why.status, why.code);
            ok = c->want == WANT_REFUSED && why.status == 401 && strcmp(why.code, c->code) == 0;
        } else if (w == WANT_CRED) {
            unsigned char h[32];
            pc_sha256(r->cred, r->cred_len, h);
            snprintf(got, sizeof got, "%s from %s, cred %.40s%s", gwt_kind_name(r->kind),
                     gwt_src_name(r->src), r->cred, r->cred_len > 40 ? "..." : "");
            ok = c->want == WANT_CRED && r->kind == c->kind && r->src == c->src &&
                 strcmp(r->cred, c->cred) == 0 && r->cred_len == strlen(c->cred) &&
                 memcmp(h, r->hash, sizeof h) == 0;
        } else {
            snprintf(got, sizeof got, "anonymous");
            ok = c->want == WANT_ANON;
        }
    }
    char want[256];
    if (c->want == WANT_CRED)
        snprintf(want, sizeof want, "%s from %s, cred %.40s%s", gwt_kind_name(c->kind),
                 gwt_src_name(c->src), c->cred, strlen(c->cred) > 40 ? "..." : "");
    else if (c->want == WANT_REFUSED)
        snprintf(want, sizeof want, "refused 401 %s", c->code);
    else
        snprintf(want, sizeof want, "%s", result_name(c->want));
    bool held = GWT_CHECK(ok, c->finding, "extract case %zu %.60s [%s] (%s):\n  got  %s\n  want %s",
                          i, c->target, c->headers ? c->headers : "", c->source, got, want);
    gwt_req_free(q);
    return held;
}

static void run_table(const struct extract_case *cases, size_t n, const char *const *env)
{
    gwt_load(routes_json, env);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !run_case(i, &cases[i]);
    gwt_unload();
    assert_int_equal(bad, 0);
}

static void test_extract_default(void **state)
{
    (void)state;
    run_table(default_cases, PC_ARRAY_LEN(default_cases), NULL);
}

static void test_extract_key_prefixes(void **state)
{
    (void)state;
    static const char *const env[] = {"API_KEY_PREFIXES=pc_,oc_", NULL};
    run_table(prefix_cases, PC_ARRAY_LEN(prefix_cases), env);
}

static void test_extract_bearer_require_signature(void **state)
{
    (void)state;
    static const char *const env[] = {"BEARER_REQUIRE_SIGNATURE=true", NULL};
    run_table(strict_cases, PC_ARRAY_LEN(strict_cases), env);
}

/* Rows whose values are too long to write out: a JWT-shaped bearer of n
 * bytes, and a path segment longer than any credential. */
static char *jwt_of(size_t n)
{
    static const char head[] = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.";
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, head, sizeof head - 1);
    memset(s + sizeof head - 1, 'A', n - (sizeof head - 1));
    s[n] = '\0';
    return s;
}

static void test_extract_long_values(void **state)
{
    (void)state;
    gwt_load(routes_json, NULL);
    int bad = 0;
    size_t i = 0;
    /* test_too_large: over 8192 bytes (PC_JWT_MAX) is JWT_TOO_LARGE; 8192 fits */
    static const struct { size_t n; bool fits; } jwts[] = {
        {8188, true}, {8192, true}, {8193, false}, {8196, false}, {8700, false}, {20000, false},
    };
    for (size_t k = 0; k < PC_ARRAY_LEN(jwts); k++, i++) {
        char *tok = jwt_of(jwts[k].n);
        char *h = malloc(jwts[k].n + 32);
        assert_non_null(h);
        sprintf(h, "Authorization: Bearer %s", tok);
        struct extract_case c = jwts[k].fits
            ? (struct extract_case)OK("/j/x", h, JWT, BEARER, tok, "test_too_large (fits)")
            : (struct extract_case)NO("/j/x", h, "JWT_TOO_LARGE", "test_too_large");
        bad += !run_case(i, &c);
        free(h);
        free(tok);
    }
    /* A segment longer than a credential can be is still the route's key:
     * refused as malformed, and no other credential stands in for it
     * (test_path_segment_key_denied: "other credentials do not stand in
     * for the segment"). */
    size_t seg = GW_CRED_MAX + 10;
    char *path = malloc(seg + 16);
    assert_non_null(path);
    strcpy(path, "/oc/");
    memset(path + 4, 'a', seg);
    strcpy(path + 4 + seg, "/x");
    struct extract_case long_seg[] = {
        NO(path, NULL, "INVALID_API_KEY", "test_path_segment_key_denied, segment > GW_CRED_MAX"),
        NO(path, XKEY, "INVALID_API_KEY", "test_path_segment_key_denied, segment > GW_CRED_MAX"),
    };
    for (size_t k = 0; k < PC_ARRAY_LEN(long_seg); k++, i++)
        bad += !run_case(i, &long_seg[k]);
    free(path);
    gwt_unload();
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extract_default),
        cmocka_unit_test(test_extract_key_prefixes),
        cmocka_unit_test(test_extract_bearer_require_signature),
        cmocka_unit_test(test_extract_long_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
