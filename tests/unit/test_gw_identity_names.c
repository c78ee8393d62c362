/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_identity_names.c: IDENTITY_HEADER_NAMES (docs/gateway.md
 * "Identity headers"), as identity.c's gw_identity_names_parse reads and
 * refuses it, and what identity.c then sends and drops: the identity lines
 * for a principal under their configured names, and a client's line of any
 * name, old or new, counted as the gateway's (so proxy.c drops it). What
 * reaches an upstream and nginx is checked end to end in
 * tests/e2e/gateway/test_gw_identity_names.py.
 */
#include "test_gw.h"

static const char routes_json[] = "{\"routes\": [" GWT_E2E_ROUTES "]}";

static const struct bad_case {
    const char *spec;
    const char *want; /* a part of the error */
} bad_cases[] = {
    {"X-User-Id", "\"X-User-Id\": must be Name=NewName"},
    {"X-User-Id=A,", "\"\": must be Name=NewName"},
    {"X-Nobody=A", "\"X-Nobody\" is not an identity header"},
    {"X-Request-Id=A", "\"X-Request-Id\" is not an identity header"},
    {"X-User-Id=A,x-user-id=B", "X-User-Id is renamed twice"},
    {"X-User-Id=A B", "X-User-Id: \"A B\" is not a header name"},
    {"X-User-Id=A:B", "is not a header name"},
    {"X-User-Id=A\r\nX-Evil: 1", "is not a header name"},
    {"X-User-Id=" "A123456789012345678901234567890123456789012345678901234567890123456",
     "is not a header name ([A-Za-z0-9_-], at most 64)"},
    {"X-User-Id=Host", "X-User-Id: Host is not the identity's to take"},
    {"X-User-Id=authorization", "authorization is not the identity's to take"},
    {"X-User-Id=Cookie", "not the identity's to take"},
    {"X-User-Id=X-Api-Key", "not the identity's to take"},
    {"X-User-Id=X-Forwarded-User", "not the identity's to take"},
    {"X-User-Id=Transfer-Encoding", "not the identity's to take"},
    {"X-User-Id=X-Request-Id", "not the identity's to take"},
    /* two identities under one name, however it comes about */
    {"X-User-Id=X-User-Email", "X-User-Id and X-User-Email would both be sent as X-User-Email"},
    {"X-User-Id=X-Remote-User,X-User-Email=x-remote-user",
     "X-User-Id and X-User-Email would both be sent as X-Remote-User"},
    {"X-Auth-Request-User=X-User-Id",
     "X-User-Id and X-Auth-Request-User would both be sent as X-User-Id"},
};

static void test_bad_specs_are_named(void **state)
{
    (void)state;
    for (size_t i = 0; i < PC_ARRAY_LEN(bad_cases); i++) {
        struct gw_idnames n;
        char err[600] = "";
        int rc = gw_identity_names_parse(bad_cases[i].spec, &n, err, sizeof err);
        if (rc != -1 || strstr(err, bad_cases[i].want) == NULL)
            fail_msg("\"%s\": rc %d, error \"%s\", want \"%s\"", bad_cases[i].spec, rc, err,
                     bad_cases[i].want);
    }
}

static void test_good_specs(void **state)
{
    (void)state;
    struct gw_idnames n;
    char err[600] = "";
    assert_int_equal(gw_identity_names_parse("", &n, err, sizeof err), 0);
    assert_false(n.renamed);
    for (int i = 0; i < GW_IDH_COUNT; i++)
        assert_string_equal(n.name[i], gw_idh_default[i]);

    /* spaces around items and names; case of the old name does not count */
    assert_int_equal(gw_identity_names_parse(" x-user-id = X-Remote-User ,X-Auth-Request-Email=",
                                             &n, err, sizeof err),
                     0);
    assert_true(n.renamed);
    assert_string_equal(n.name[GW_IDH_USER_ID], "X-Remote-User");
    assert_string_equal(n.name[GW_IDH_AR_EMAIL], "");
    assert_string_equal(n.name[GW_IDH_EMAIL], "X-User-Email");

    /* a swap is no clash: both are renamed */
    assert_int_equal(gw_identity_names_parse("X-User-Id=X-User-Email,X-User-Email=X-User-Id", &n,
                                             err, sizeof err),
                     0);
    assert_string_equal(n.name[GW_IDH_USER_ID], "X-User-Email");
    assert_string_equal(n.name[GW_IDH_EMAIL], "X-User-Id");

    /* a dropped name is free for another */
    assert_int_equal(gw_identity_names_parse("X-Auth-Request-User=,X-User-Id=X-Auth-Request-User",
                                             &n, err, sizeof err),
                     0);
    assert_string_equal(n.name[GW_IDH_USER_ID], "X-Auth-Request-User");
    assert_string_equal(n.name[GW_IDH_AR_USER], "");
}

/* The identity lines for an API-key principal, under the loaded names. */
static char *identity_lines(void)
{
    struct gwt_req *q = gwt_req_new("/k/x", NULL);
    assert_non_null(gw_route_find(&q->r));
    q->r.kind = GW_CRED_API_KEY;
    snprintf(q->r.p.user_id, sizeof q->r.p.user_id, "u1");
    snprintf(q->r.p.email, sizeof q->r.p.email, "a@example.com");
    snprintf(q->r.p.cred_id, sizeof q->r.p.cred_id, "k1");
    struct pc_buf b = {0};
    gw_identity_headers(&q->r, &b);
    pc_buf_append(&b, "", 1);
    gwt_req_free(q);
    return b.data;
}

static void test_sent_and_dropped(void **state)
{
    (void)state;
    gwt_load(routes_json, NULL);
    char *s = identity_lines();
    assert_string_equal(s, "X-User-Id: u1\r\nX-Auth-Request-User: u1\r\n"
                           "X-User-Email: a@example.com\r\nX-Auth-Request-Email: a@example.com\r\n"
                           "X-Auth-Method: api_key\r\nX-Api-Key-Id: k1\r\n");
    free(s);
    assert_true(gw_identity_header("x-auth-request-user", 19));
    assert_false(gw_identity_header("X-Remote-User", 13));
    gwt_unload();

    static const char *const env[] = {
        "IDENTITY_HEADER_NAMES=X-User-Id=X-Remote-User,X-Auth-Request-Email=", NULL};
    gwt_load(routes_json, env);
    s = identity_lines();
    assert_string_equal(s, "X-Remote-User: u1\r\nX-Auth-Request-User: u1\r\n"
                           "X-User-Email: a@example.com\r\n"
                           "X-Auth-Method: api_key\r\nX-Api-Key-Id: k1\r\n");
    free(s);
    /* the new name and both old ones are the gateway's: a client's is dropped */
    assert_true(gw_identity_header("x-remote-user", 13));
    assert_true(gw_identity_header("X-User-Id", 9));
    assert_true(gw_identity_header("X-Auth-Request-Email", 20));
    assert_false(gw_identity_header("X-Remote-Email", 14));
    gwt_unload();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs_are_named),
        cmocka_unit_test(test_good_specs),
        cmocka_unit_test(test_sent_and_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
