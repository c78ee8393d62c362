/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_decide.c: the verdict (gw_verdict_of) as a decision table:
 * credential kind x lookup outcome x principal x route -> verdict, status,
 * code, and whether the entry is dropped from L1. It is the table in
 * decide.c's header, made executable:
 *
 *   store unavailable          503 (never ALLOW)
 *   unknown credential         401
 *   expired                    401 (and dropped from L1)
 *   API key disabled           401
 *   missing permission         403 (API keys: every required action must be
 *                              granted; route permissions are an API-key
 *                              property and do not apply to sessions or JWTs)
 *   JWT expired, or its        401 JWT_EXPIRED / JWT_REVOKED (checked on every
 *   session (sid) revoked      request, L1 hit or not)
 *
 * with the codes from docs/gateway.md (503 AUTH_UNAVAILABLE, the JWT
 * refusals) and the e2e tests (test_gw_limits.py: KEY_DISABLED, KEY_EXPIRED,
 * INSUFFICIENT_PERMISSIONS, INVALID_API_KEY; test_gw_auth_matrix.py
 * test_route_permissions and test_permissions_do_not_apply_to_sessions).
 * The session codes INVALID_SESSION and SESSION_EXPIRED are named by no doc
 * or e2e test ("code: decide.c"). Every API-key row runs twice: permissions
 * parsed from the JSON (L1 miss) and from the bits L1 keeps (gw_perm_bits).
 */
#include "test_gw.h"

#define NOW 1700000000000LL
#define NEVER INT64_MIN         /* expires_at = 0: never expires */
#define HOUR 3600000LL

#define REQUIRED "{\"files\":[\"read\",\"write\"],\"projects\":[\"list\"]}"

enum { ALLOW = GW_ALLOW, DENY = GW_DENY, UNAVAIL = GW_UNAVAILABLE };
enum { S = GW_CRED_SESSION, K = GW_CRED_API_KEY, J = GW_CRED_JWT };
enum { FOUND = GW_LOOKUP_FOUND, UNKNOWN = GW_LOOKUP_UNKNOWN, DOWN = GW_LOOKUP_UNAVAILABLE };

static const struct decide_case {
    const char *path;           /* picks the route */
    int kind;                   /* r->kind: what extract found */
    int lookup;                 /* r->lookup (L1, L2, PG; unused for JWTs) */
    bool found;                 /* the principal */
    int pkind;
    bool enabled;
    int64_t exp;                /* expires_at - NOW, or NEVER */
    const char *perms;          /* API-key permissions JSON */
    const char *cred_id;        /* session id (JWTs: sid) or a negative JWT entry's code */
    int verdict;
    int status;                 /* 0 with ALLOW */
    const char *code;
    bool drop;                  /* dropped from L1 */
    const char *source;
} cases[] = {
    /* allowed */
    {"/s/x", S, FOUND, true, S, false, HOUR, "", "sess1", ALLOW, 0, NULL, false, "valid session"},
    {"/k/x", K, FOUND, true, K, true, NEVER, "", "key1", ALLOW, 0, NULL, false, "valid key, no expiry"},
    {"/k/x", K, FOUND, true, K, true, HOUR, "", "key1", ALLOW, 0, NULL, false, "valid key"},
    {"/m/x", S, FOUND, true, S, false, NEVER, "", "sess1", ALLOW, 0, NULL, false,
     "enabled is an API-key property"},
    /* store unavailable: 503, never ALLOW, whatever else is known */
    {"/s/x", S, DOWN, false, 0, false, 0, "", "", UNAVAIL, 503, "AUTH_UNAVAILABLE", false,
     "docs: PostgreSQL down"},
    {"/k/x", K, DOWN, false, 0, false, 0, "", "", UNAVAIL, 503, "AUTH_UNAVAILABLE", false,
     "docs: PostgreSQL down"},
    {"/k/x", K, DOWN, true, K, true, HOUR, "", "key1", UNAVAIL, 503, "AUTH_UNAVAILABLE", false,
     "decide.c: never ALLOW"},
    /* unknown */
    {"/s/x", S, UNKNOWN, false, 0, false, 0, "", "", DENY, 401, "INVALID_SESSION", false,
     "test_unknown_session_is_401 (code: decide.c)"},
    {"/k/x", K, UNKNOWN, false, 0, false, 0, "", "", DENY, 401, "INVALID_API_KEY", false,
     "test_unknown_api_key_is_401, test_gw_limits.py"},
    {"/k/x", K, FOUND, false, K, false, 0, "", "", DENY, 401, "INVALID_API_KEY", false,
     "a negative L1 entry"},
    {"/s/x", S, FOUND, false, S, false, 0, "", "", DENY, 401, "INVALID_SESSION", false,
     "a negative L1 entry (code: decide.c)"},
    {"/m/x", K, FOUND, true, S, false, HOUR, "", "sess1", DENY, 401, "INVALID_API_KEY", false,
     "a principal of another kind is unknown"},
    {"/m/x", S, FOUND, true, K, true, HOUR, "", "key1", DENY, 401, "INVALID_SESSION", false,
     "a principal of another kind is unknown (code: decide.c)"},
    /* expired, and dropped from L1 */
    {"/s/x", S, FOUND, true, S, false, -1, "", "sess1", DENY, 401, "SESSION_EXPIRED", true,
     "test_gw_expiry.py (code: decide.c)"},
    {"/s/x", S, FOUND, true, S, false, 0, "", "sess1", DENY, 401, "SESSION_EXPIRED", true,
     "expiring now is expired"},
    {"/k/x", K, FOUND, true, K, true, -1, "", "key1", DENY, 401, "KEY_EXPIRED", true,
     "test_gw_limits.py"},
    {"/k/x", K, FOUND, true, K, false, -HOUR, "", "key1", DENY, 401, "KEY_EXPIRED", true,
     "expiry before enabled"},
    /* disabled */
    {"/k/x", K, FOUND, true, K, false, HOUR, "", "key1", DENY, 401, "KEY_DISABLED", false,
     "test_gw_limits.py"},
    {"/perm/x", K, FOUND, true, K, false, NEVER, REQUIRED, "key1", DENY, 401, "KEY_DISABLED", false,
     "disabled before permissions"},
    /* permissions: test_route_permissions on /perm/ */
    {"/perm/x", K, FOUND, true, K, true, NEVER, REQUIRED, "key1", ALLOW, 0, NULL, false, "exact"},
    {"/perm/x", K, FOUND, true, K, true, NEVER,
     "{\"files\":[\"delete\",\"write\",\"read\"],\"projects\":[\"create\",\"list\"],\"other\":[\"x\"]}",
     "key1", ALLOW, 0, NULL, false, "superset"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "{\"files\":[\"read\"],\"projects\":[\"list\"]}",
     "key1", DENY, 403, "INSUFFICIENT_PERMISSIONS", false, "missing-action"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "{\"files\":[\"read\",\"write\"]}", "key1", DENY,
     403, "INSUFFICIENT_PERMISSIONS", false, "missing-resource"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "{\"files\":[\"read\",\"write\"],\"projects\":[]}",
     "key1", DENY, 403, "INSUFFICIENT_PERMISSIONS", false, "empty-actions"},
    {"/perm/x", K, FOUND, true, K, true, NEVER,
     "{\"files\":\"read,write\",\"projects\":[\"list\"]}", "key1", DENY, 403,
     "INSUFFICIENT_PERMISSIONS", false, "wrong-type"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "{}", "key1", DENY, 403, "INSUFFICIENT_PERMISSIONS",
     false, "empty-object"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "", "key1", DENY, 403, "INSUFFICIENT_PERMISSIONS",
     false, "null"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "null", "key1", DENY, 403,
     "INSUFFICIENT_PERMISSIONS", false, "null (as JSON)"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "\"not json\"", "key1", DENY, 403,
     "INSUFFICIENT_PERMISSIONS", false, "garbage"},
    {"/perm/x", K, FOUND, true, K, true, NEVER, "not json", "key1", DENY, 403,
     "INSUFFICIENT_PERMISSIONS", false, "garbage (not JSON at all)"},
    /* test_permissions_do_not_apply_to_sessions on /mperm/ (files: read) */
    {"/mperm/x", S, FOUND, true, S, false, HOUR, "", "sess1", ALLOW, 0, NULL, false,
     "sessions have no permissions to check"},
    {"/mperm/x", K, FOUND, true, K, true, NEVER, "", "key1", DENY, 403, "INSUFFICIENT_PERMISSIONS",
     false, "a key without permissions"},
    {"/mperm/x", K, FOUND, true, K, true, NEVER, "{\"files\":[\"read\"]}", "key1", ALLOW, 0, NULL,
     false, "a key with files: read"},
    {"/k/x", K, FOUND, true, K, true, NEVER, "{\"files\":[\"read\"]}", "key1", ALLOW, 0, NULL, false,
     "a route without permissions"},
    {"/m/perm/x", K, FOUND, true, K, true, NEVER, "", "key1", ALLOW, 0, NULL, false,
     "test_longest_prefix_wins: /m/ has no permissions"},
    /* JWTs: expiry and sid on every request; no route permissions */
    {"/j/x", J, FOUND, true, J, false, HOUR, "", "sid-live", ALLOW, 0, NULL, false, "valid JWT"},
    {"/j/x", J, UNKNOWN, true, J, false, HOUR, "", "", ALLOW, 0, NULL, false,
     "a JWT without sid (the lookup is not a JWT's)"},
    {"/j/x", J, FOUND, true, J, false, -1, "", "sid-live", DENY, 401, "JWT_EXPIRED", true,
     "docs: JWT_EXPIRED"},
    {"/j/x", J, FOUND, true, J, false, 0, "", "sid-live", DENY, 401, "JWT_EXPIRED", true,
     "expiring now is expired"},
    {"/j/x", J, FOUND, true, J, false, HOUR, "", "sid-revoked", DENY, 401, "JWT_REVOKED", false,
     "docs: a JWT dies with its session"},
    {"/j/x", J, FOUND, false, J, false, 0, "", "JWT_BAD_SIGNATURE", DENY, 401, "JWT_BAD_SIGNATURE",
     false, "docs: a refused token is remembered in L1 with its code"},
    {"/j/x", J, FOUND, false, J, false, 0, "", "JWT_BAD_AUDIENCE", DENY, 401, "JWT_BAD_AUDIENCE",
     false, "docs: a refused token is remembered in L1 with its code"},
    {"/j/x", J, FOUND, false, J, false, 0, "", "", DENY, 401, "JWT_MALFORMED", false,
     "a negative entry without a code"},
    {"/j/x", J, FOUND, true, S, false, HOUR, "", "sess1", DENY, 401, "JWT_MALFORMED", false,
     "a principal of another kind"},
    {"/mj/x", J, FOUND, true, J, false, HOUR, "", "sid-live", ALLOW, 0, NULL, false, "mixed route"},
};

static const char routes_json[] =
    "{\"routes\": [" GWT_E2E_ROUTES ","
    "{\"prefix\": \"/jperm/\", " GWT_UP ", \"auth\": [\"jwt\", \"api_key\"],"
    " \"permissions\": {\"files\": [\"read\"]}}"
    "]}";

static int setup(void **state)
{
    (void)state;
    gwt_load(routes_json, NULL);
    gw_sid_revoke("sid-revoked");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gwt_unload();
    return 0;
}

static bool run_case(size_t i, const struct decide_case *c, bool cached, const char *finding)
{
    struct gwt_req *q = gwt_req_new(c->path, NULL);
    struct gw_request *r = &q->r;
    if (gw_route_find(r) == NULL)
        fail_msg("decide case %zu: no route for %s", i, c->path);
    r->kind = (enum gw_cred_kind)c->kind;
    r->lookup = (enum gw_lookup)c->lookup;
    struct gw_principal *p = &r->p;
    p->found = c->found;
    p->kind = (enum gw_cred_kind)c->pkind;
    p->enabled = c->enabled;
    p->expires_at = c->exp == NEVER ? 0 : NOW + c->exp;
    snprintf(p->permissions, sizeof p->permissions, "%s", c->perms);
    snprintf(p->cred_id, sizeof p->cred_id, "%s", c->cred_id);
    snprintf(p->user_id, sizeof p->user_id, "user1");
    if (cached) {
        p->perm_bits = gw_perm_bits(r->table, p->permissions);
        p->perm_gen = r->table->gen;
    }
    struct gw_refusal why = {0};
    enum gw_verdict v = gw_verdict_of(r, NOW, &why);
    bool ok = (int)v == c->verdict;
    if (ok && v != GW_ALLOW)
        ok = why.status == c->status && strcmp(why.code, c->code) == 0 && why.expired == c->drop;
    static const char *const vn[] = {"ALLOW", "DENY", "UNAVAILABLE"};
    bool held = GWT_CHECK(ok, finding,
                          "decide case %zu %s (%s)%s:\n  got  %s %d %s%s\n  want %s %d %s%s", i,
                          c->path, c->source, cached ? ", permissions from L1's bits" : "",
                          vn[v], v == GW_ALLOW ? 0 : why.status, v == GW_ALLOW ? "" : why.code,
                          v != GW_ALLOW && why.expired ? " (drop)" : "", vn[c->verdict],
                          c->status, c->code ? c->code : "", c->drop ? " (drop)" : "");
    gwt_req_free(q);
    return held;
}

static void test_decide_table(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        bad += !run_case(i, &cases[i], false, NULL);
        if (cases[i].kind == K)
            bad += !run_case(i, &cases[i], true, NULL);
    }
    assert_int_equal(bad, 0);
}

/* "route permissions are an API-key property and do not apply to sessions
 * or JWTs": a JWT on a route with permissions. */
static void test_decide_jwt_ignores_route_permissions(void **state)
{
    (void)state;
    static const struct decide_case c = {
        "/jperm/x", J, FOUND, true, J, false, HOUR, "", "sid-live", ALLOW, 0, NULL, false,
        "decide.c: permissions do not apply to JWTs"};
    static const struct decide_case k = {
        "/jperm/x", K, FOUND, true, K, true, NEVER, "", "key1", DENY, 403,
        "INSUFFICIENT_PERMISSIONS", false, "the same route, a key without permissions"};
    assert_true(run_case(0, &c, false, NULL));
    assert_true(run_case(1, &k, false, NULL));
    assert_true(run_case(1, &k, true, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decide_table),
        cmocka_unit_test(test_decide_jwt_ignores_route_permissions),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
