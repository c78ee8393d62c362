/* Portcullis - MIT licence. See LICENSE.
 *
 * test_conf_common.c: the rows authsvc and the gateway both read: one
 * validator for REDIS_PREFIX and REVOCATION_CHANNEL, the defaults and
 * bounds of every shared row (golden), and the derived cookie names and
 * JWT issuer/audience.
 */
#include "../../lib/conf_common.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* A config struct with the usual field names, as both programs have. */
static struct {
    char *secret, *base_url, *database_url, *redis_url, *redis_prefix, *revocation_channel,
        *log_level, *jwt_issuer, *jwt_audience;
    int64_t expires_in, update_age;
    bool bearer_require_sig;
} cfg;

static const struct pc_conf_item table[] = {PC_CONF_COMMON_ROWS(cfg)};

static const char *const names[] = {
    "BETTER_AUTH_SECRET", "BETTER_AUTH_URL", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX",
    "REVOCATION_CHANNEL", "LOG_LEVEL", "SESSION_EXPIRES_IN_SECONDS", "SESSION_UPDATE_AGE_SECONDS",
    "JWT_ISSUER", "JWT_AUDIENCE", "BEARER_REQUIRE_SIGNATURE",
};

static int setup(void **state)
{
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++) {
        unsetenv(names[i]);
        if (pc_conf_old_name(names[i]))
            unsetenv(pc_conf_old_name(names[i]));
    }
    setenv("BETTER_AUTH_SECRET", "0123456789abcdef0123456789abcdef", 1);
    setenv("DATABASE_URL", "postgres://u@127.0.0.1/db", 1);
    return 0;
}

static int teardown(void **state)
{
    pc_conf_free(table, PC_ARRAY_LEN(table));
    return 0;
}

static void test_rows_and_defaults(void **state)
{
    assert_int_equal(PC_ARRAY_LEN(table), PC_CONF_COMMON_NROWS);
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++)
        assert_string_equal(table[i].name, names[i]);
    char err[256] = "";
    assert_int_equal(pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err), 0);
    assert_string_equal(cfg.base_url, "http://localhost:3000");
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(cfg.redis_prefix, "pc:");
    assert_string_equal(cfg.revocation_channel, "pc:revoked");
    assert_string_equal(cfg.log_level, "info");
    assert_int_equal(cfg.expires_in, 604800);
    assert_int_equal(cfg.update_age, 86400);
    assert_string_equal(cfg.jwt_issuer, "");
    assert_string_equal(cfg.jwt_audience, "");
    assert_false(cfg.bearer_require_sig);
    /* required and secret as before */
    assert_false(table[0].flags & PC_CONF_REQUIRED); /* or BETTER_AUTH_SECRETS */
    assert_true(table[0].flags & PC_CONF_SECRET);
    assert_true(table[2].flags & PC_CONF_REQUIRED);
    assert_true(table[3].flags & PC_CONF_SECRET);
    assert_int_equal(table[7].min, 60);
    assert_int_equal(table[7].max, 31536000);
    assert_int_equal(table[8].min, 0);
    assert_int_equal(table[8].max, 31536000);
}

static void expect_refused(const char *name, const char *value, const char *why)
{
    const char *was = getenv(name);
    char *old = was ? pc_xstrdup(was) : NULL;
    setenv(name, value, 1);
    char err[256] = "";
    assert_int_equal(pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err), -1);
    if (strstr(err, name) != err || strstr(err, why) == NULL)
        fail_msg("%s=%s: \"%s\"", name, value, err);
    if (old)
        setenv(name, old, 1);
    else
        unsetenv(name);
    free(old);
}

static void test_redis_names(void **state)
{
    /* one rule for both programs (the gateway checked nothing before) */
    expect_refused("REDIS_PREFIX", "pc prefix:", "printable ASCII without spaces");
    expect_refused("REDIS_PREFIX", "pc:\t", "printable ASCII without spaces");
    expect_refused("REDIS_PREFIX", "pc:\xc3\xa9", "printable ASCII without spaces");
    expect_refused("REVOCATION_CHANNEL", "pc: revoked", "printable ASCII without spaces");
    char longp[PC_REDIS_PREFIX_MAX + 2], longc[PC_REDIS_CHANNEL_MAX + 2];
    memset(longp, 'p', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    memset(longc, 'c', sizeof longc - 1);
    longc[sizeof longc - 1] = '\0';
    expect_refused("REDIS_PREFIX", longp, "at most 64 characters");
    expect_refused("REVOCATION_CHANNEL", longc, "at most 128 characters");
    /* the longest allowed, and the forms the tests use */
    const char *err = NULL;
    longp[PC_REDIS_PREFIX_MAX] = '\0';
    longc[PC_REDIS_CHANNEL_MAX] = '\0';
    assert_int_equal(pc_conf_check_redis_prefix(longp, &err), 0);
    assert_int_equal(pc_conf_check_redis_channel(longc, &err), 0);
    assert_int_equal(pc_conf_check_redis_prefix("rlog:", &err), 0);
    assert_int_equal(pc_conf_check_redis_prefix("", &err), 0);
    assert_int_equal(pc_conf_check_redis_channel("rlog:revoked", &err), 0);
}

static void test_other_validators(void **state)
{
    expect_refused("BETTER_AUTH_SECRET", "short", "at least 32");
    expect_refused("BETTER_AUTH_URL", "ftp://x", "http://");
    expect_refused("DATABASE_URL", "mysql://x", "postgres");
    expect_refused("LOG_LEVEL", "loud", "debug, info");
    expect_refused("SESSION_EXPIRES_IN_SECONDS", "59", "SESSION_EXPIRES_IN_SECONDS");
    expect_refused("BEARER_REQUIRE_SIGNATURE", "maybe", "BEARER_REQUIRE_SIGNATURE");
}

/* A variable renamed to say its unit is still read under its old name
 * (with a warning on stderr); both names set is refused, naming both. */
static void test_old_names(void **state)
{
    (void)state;
    assert_string_equal(pc_conf_old_name("SESSION_UPDATE_AGE_SECONDS"), "SESSION_UPDATE_AGE");
    assert_null(pc_conf_old_name("REDIS_URL"));
    setenv("SESSION_UPDATE_AGE", "120", 1);
    char err[256] = "";
    assert_int_equal(pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err), 0);
    assert_int_equal(cfg.update_age, 120);
    setenv("SESSION_UPDATE_AGE_SECONDS", "240", 1);
    assert_int_equal(pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err), -1);
    assert_non_null(strstr(err, "SESSION_UPDATE_AGE_SECONDS: set, and so is SESSION_UPDATE_AGE"));
    unsetenv("SESSION_UPDATE_AGE");
    assert_int_equal(pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err), 0);
    assert_int_equal(cfg.update_age, 240);
    unsetenv("SESSION_UPDATE_AGE_SECONDS");
    /* a bad value under the old name is named by the new one */
    setenv("SESSION_EXPIRES_IN", "1", 1);
    assert_int_equal(pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err), -1);
    assert_non_null(strstr(err, "SESSION_EXPIRES_IN_SECONDS: must be an integer"));
    unsetenv("SESSION_EXPIRES_IN");
}

static void test_derived(void **state)
{
    char c[64];
    assert_true(pc_conf_cookie_name(c, sizeof c, "http://a", "session_token"));
    assert_string_equal(c, "better-auth.session_token");
    assert_true(pc_conf_cookie_name(c, sizeof c, "https://a", "session_token"));
    assert_string_equal(c, "__Secure-better-auth.session_token");
    assert_false(pc_conf_cookie_name(c, 10, "https://a", "session_token"));
    assert_true(pc_conf_secure_cookies("https://x"));
    assert_false(pc_conf_secure_cookies("http://x"));

    char o[64];
    pc_conf_url_origin("HTTPS://Auth.Example.COM:8443/api/auth?x#y", o, sizeof o);
    assert_string_equal(o, "https://auth.example.com:8443");
    pc_conf_url_origin("http://localhost:3000", o, sizeof o);
    assert_string_equal(o, "http://localhost:3000");

    char *iss = pc_xstrdup(""), *aud = pc_xstrdup("");
    pc_conf_jwt_defaults(&iss, &aud, "https://Auth.example.com/base/");
    assert_string_equal(iss, "https://auth.example.com");
    assert_string_equal(aud, "https://auth.example.com");
    free(aud);
    aud = pc_xstrdup("");
    free(iss);
    iss = pc_xstrdup("https://issuer");
    pc_conf_jwt_defaults(&iss, &aud, "http://ignored");
    assert_string_equal(iss, "https://issuer");
    assert_string_equal(aud, "https://issuer");
    free(aud);
    aud = pc_xstrdup("svc");
    pc_conf_jwt_defaults(&iss, &aud, "http://ignored");
    assert_string_equal(aud, "svc");
    free(iss);
    free(aud);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rows_and_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redis_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_validators, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_names, setup, teardown),
        cmocka_unit_test(test_derived),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
