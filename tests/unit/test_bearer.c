/* Portcullis - MIT licence. See LICENSE.
 *
 * test_bearer.c: the one rule for Authorization: Bearer values that authsvc
 * and the gateway share (lib/bearer.c), on golden values, and the
 * BEARER_REQUIRE_SIGNATURE row both programs load.
 */
#include "../../lib/bearer.c"
#include "../../lib/conf.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#define TOK "iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3y"                  /* 32 alphanumerics */
#define SIG "xoggXqalwlracZy2yf4Z833SSNtU6th13A/wH8huacE="      /* HMAC of TOK */
#define KEY64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl"
#define JWT "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJ1In0.c2ln"

struct golden {
    const char *v;
    enum pc_bearer_kind lax;        /* BEARER_REQUIRE_SIGNATURE=false */
    enum pc_bearer_kind strict;     /* =true */
};

static const struct golden goldens[] = {
    {TOK, PC_BEARER_SESSION_RAW, PC_BEARER_SESSION_UNSIGNED},
    {TOK "." SIG, PC_BEARER_SESSION_SIGNED, PC_BEARER_SESSION_SIGNED},
    {TOK ".xoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE%3D", PC_BEARER_SESSION_SIGNED,
     PC_BEARER_SESSION_SIGNED},
    /* a session token that happens to start "eyJ" is still a signed session */
    {"eyJ4ABCDEFGHIJKLMNOPQRSTUVWXYZab." SIG, PC_BEARER_SESSION_SIGNED,
     PC_BEARER_SESSION_SIGNED},
    {JWT, PC_BEARER_JWT, PC_BEARER_JWT},
    {"eyJ.x", PC_BEARER_JWT, PC_BEARER_JWT},
    {KEY64, PC_BEARER_API_KEY, PC_BEARER_API_KEY},
    {"oc_" KEY64, PC_BEARER_API_KEY, PC_BEARER_API_KEY},
    {"a-b_c" KEY64, PC_BEARER_API_KEY, PC_BEARER_API_KEY},
    /* 33 prefix characters: too long for an API key, no dot, not 32 chars */
    {"abcdefghijklmnopqrstuvwxyz0123456" KEY64, PC_BEARER_MALFORMED, PC_BEARER_MALFORMED},
    /* a digit among the 64 letters */
    {"oc_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij1l",
     PC_BEARER_MALFORMED, PC_BEARER_MALFORMED},
    {"iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3", PC_BEARER_MALFORMED, PC_BEARER_MALFORMED},  /* 31 */
    {"iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3yZ", PC_BEARER_MALFORMED, PC_BEARER_MALFORMED}, /* 33 */
    {"iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3-", PC_BEARER_MALFORMED, PC_BEARER_MALFORMED},
    {"anything.else", PC_BEARER_SESSION_SIGNED, PC_BEARER_SESSION_SIGNED},
    {".", PC_BEARER_SESSION_SIGNED, PC_BEARER_SESSION_SIGNED},
    {"", PC_BEARER_MALFORMED, PC_BEARER_MALFORMED},
};

static void test_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) {
        const struct golden *g = &goldens[i];
        enum pc_bearer_kind lax = pc_bearer_classify(g->v, strlen(g->v), false);
        enum pc_bearer_kind strict = pc_bearer_classify(g->v, strlen(g->v), true);
        if (lax != g->lax || strict != g->strict)
            fail_msg("%s: got %s/%s, want %s/%s", g->v, pc_bearer_kind_name(lax),
                     pc_bearer_kind_name(strict), pc_bearer_kind_name(g->lax),
                     pc_bearer_kind_name(g->strict));
    }
}

static void test_length_is_the_callers(void **state)
{
    (void)state;
    /* only v[0..n) is read: a raw token followed by more bytes */
    assert_int_equal(pc_bearer_classify(TOK "." SIG, 32, false), PC_BEARER_SESSION_RAW);
    assert_int_equal(pc_bearer_classify(TOK "." SIG, 32, true), PC_BEARER_SESSION_UNSIGNED);
}

static void test_value(void **state)
{
    (void)state;
    size_t n = 99;
    const char *v = pc_bearer_value("Bearer  " TOK "  ", &n);
    assert_non_null(v);
    assert_int_equal(n, 32);
    assert_memory_equal(v, TOK, 32);
    v = pc_bearer_value("bEaReR x", &n);
    assert_non_null(v);
    assert_int_equal(n, 1);
    v = pc_bearer_value("Bearer ", &n);
    assert_non_null(v);
    assert_int_equal(n, 0);
    assert_null(pc_bearer_value("Basic dXNlcjpwdw==", &n));
    assert_null(pc_bearer_value("Bearer", &n));
    assert_null(pc_bearer_value("BearerX y", &n));
    assert_null(pc_bearer_value(NULL, &n));
}

static bool require_sig;
static const struct pc_conf_item row[] = {PC_BEARER_REQUIRE_SIGNATURE_ROW(&require_sig)};

static void test_conf_row(void **state)
{
    (void)state;
    char err[256];
    unsetenv("BEARER_REQUIRE_SIGNATURE");
    require_sig = true;
    assert_int_equal(pc_conf_load(row, 1, err, sizeof err), 0);
    assert_false(require_sig);          /* the default both programs share */
    setenv("BEARER_REQUIRE_SIGNATURE", "true", 1);
    assert_int_equal(pc_conf_load(row, 1, err, sizeof err), 0);
    assert_true(require_sig);
    setenv("BEARER_REQUIRE_SIGNATURE", "maybe", 1);
    assert_int_equal(pc_conf_load(row, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "BEARER_REQUIRE_SIGNATURE"));
    unsetenv("BEARER_REQUIRE_SIGNATURE");
    pc_conf_free(row, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_length_is_the_callers),
        cmocka_unit_test(test_value),
        cmocka_unit_test(test_conf_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
