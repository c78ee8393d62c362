/* Portcullis - MIT licence. See LICENSE.
 *
 * test_conf.c: the environment-driven configuration table: defaults,
 * required variables, integer bounds, booleans, validators and help output.
 * Every variable used here is prefixed PCT_ so the real environment cannot
 * interfere.
 */
#include "../../lib/conf.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

static void clear_env(void)
{
    static const char *const names[] = {
        "PCT_STR", "PCT_REQ", "PCT_INT", "PCT_BOOL", "PCT_HP", "PCT_PG", "PCT_URL",
        "PCT_REDIS", "PCT_SECRET_INT", "PCT_A", "PCT_B",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++)
        unsetenv(names[i]);
}

static int setup(void **state)
{
    clear_env();
    return 0;
}

/* ---- defaults and required ---- */

static void test_defaults(void **state)
{
    char *s = NULL, *empty = NULL;
    int64_t n = -1;
    bool b = false;
    const struct pc_conf_item t[] = {
        {"PCT_STR", PC_CONF_STR, &s, "hello", 0, 0, 0, NULL, "a string"},
        {"PCT_A", PC_CONF_STR, &empty, NULL, 0, 0, 0, NULL, "unset string"},
        {"PCT_INT", PC_CONF_INT, &n, "42", 0, 100, 0, NULL, "an int"},
        {"PCT_BOOL", PC_CONF_BOOL, &b, "yes", 0, 0, 0, NULL, "a bool"},
    };
    char err[128] = "";
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), 0);
    assert_string_equal(s, "hello");
    assert_non_null(empty);
    assert_string_equal(empty, "");
    assert_int_equal(n, 42);
    assert_true(b);

    /* the environment overrides the defaults; "" counts as unset */
    setenv("PCT_STR", "world", 1);
    setenv("PCT_A", "set", 1);
    setenv("PCT_INT", "7", 1);
    setenv("PCT_BOOL", "", 1);
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), 0);
    assert_string_equal(s, "world");    /* the old copy was freed, not leaked */
    assert_string_equal(empty, "set");
    assert_int_equal(n, 7);
    assert_true(b);

    pc_conf_free(t, PC_ARRAY_LEN(t));
    assert_null(s);
    assert_null(empty);
}

static void test_required(void **state)
{
    char *req = NULL, *other = NULL;
    const struct pc_conf_item t[] = {
        {"PCT_STR", PC_CONF_STR, &other, "x", 0, 0, 0, NULL, "first"},
        {"PCT_REQ", PC_CONF_STR, &req, NULL, 0, 0, PC_CONF_REQUIRED, NULL, "required"},
    };
    char err[128] = "";
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), -1);
    assert_non_null(strstr(err, "PCT_REQ"));
    assert_non_null(strstr(err, "required"));
    assert_null(req);

    setenv("PCT_REQ", "", 1);   /* empty is not set */
    err[0] = '\0';
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), -1);
    assert_non_null(strstr(err, "PCT_REQ"));

    setenv("PCT_REQ", "value", 1);
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), 0);
    assert_string_equal(req, "value");
    pc_conf_free(t, PC_ARRAY_LEN(t));
}

/* ---- integers ---- */

static void test_int_bounds(void **state)
{
    int64_t n = -1;
    const struct pc_conf_item t[] = {
        {"PCT_INT", PC_CONF_INT, &n, "10", 1, 65535, 0, NULL, "a port"},
    };
    char err[160];
    static const struct { const char *v; int64_t want; } ok[] = {
        {"1", 1}, {"65535", 65535}, {"8080", 8080},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(ok); i++) {
        setenv("PCT_INT", ok[i].v, 1);
        assert_int_equal(pc_conf_load(t, 1, err, sizeof err), 0);
        assert_int_equal(n, ok[i].want);
    }
    static const char *const bad[] = {"0", "65536", "-1", "abc", "12x", "1.5", "0x10",
                                      "99999999999999999999"};
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        n = 12345;
        err[0] = '\0';
        setenv("PCT_INT", bad[i], 1);
        if (pc_conf_load(t, 1, err, sizeof err) != -1)
            fail_msg("PCT_INT=%s was accepted", bad[i]);
        assert_non_null(strstr(err, "PCT_INT"));
        assert_non_null(strstr(err, "1 to 65535"));
        assert_int_equal(n, 12345);     /* untouched */
    }

    /* a default outside the bounds is an error too */
    unsetenv("PCT_INT");
    const struct pc_conf_item t2[] = {
        {"PCT_INT", PC_CONF_INT, &n, "0", 1, 10, 0, NULL, "bad default"},
    };
    assert_int_equal(pc_conf_load(t2, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "PCT_INT"));

    /* an optional int with no default and no value cannot be parsed */
    const struct pc_conf_item t3[] = {
        {"PCT_INT", PC_CONF_INT, &n, NULL, 0, 10, 0, NULL, "no default"},
    };
    assert_int_equal(pc_conf_load(t3, 1, err, sizeof err), -1);
}

static void test_secret_not_echoed(void **state)
{
    int64_t n = 0;
    const struct pc_conf_item t[] = {
        {"PCT_SECRET_INT", PC_CONF_INT, &n, NULL, 0, 10, PC_CONF_SECRET, NULL, "secret"},
    };
    char err[160];
    setenv("PCT_SECRET_INT", "hunter2", 1);
    assert_int_equal(pc_conf_load(t, 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "PCT_SECRET_INT"));
    assert_null(strstr(err, "hunter2"));

    /* --help shows the table's defaults, never the environment's values */
    char *s = NULL;
    const struct pc_conf_item t2[] = {
        {"PCT_STR", PC_CONF_STR, &s, NULL, 0, 0, PC_CONF_SECRET, NULL, "secret"},
    };
    setenv("PCT_STR", "dev-secret-value", 1);
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    assert_non_null(f);
    pc_conf_help(t2, 1, f);
    fclose(f);
    assert_non_null(strstr(out, "PCT_STR"));
    assert_null(strstr(out, "dev-secret-value"));
    free(out);
}

/* ---- booleans ---- */

static void test_bool_forms(void **state)
{
    bool b;
    const struct pc_conf_item t[] = {
        {"PCT_BOOL", PC_CONF_BOOL, &b, "false", 0, 0, 0, NULL, "a bool"},
    };
    char err[128];
    static const char *const yes[] = {"true", "1", "yes", "on", "TRUE", "Yes", "ON"};
    static const char *const no[] = {"false", "0", "no", "off", "FALSE", "No", "Off"};
    for (size_t i = 0; i < PC_ARRAY_LEN(yes); i++) {
        b = false;
        setenv("PCT_BOOL", yes[i], 1);
        assert_int_equal(pc_conf_load(t, 1, err, sizeof err), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < PC_ARRAY_LEN(no); i++) {
        b = true;
        setenv("PCT_BOOL", no[i], 1);
        assert_int_equal(pc_conf_load(t, 1, err, sizeof err), 0);
        assert_false(b);
    }
    static const char *const bad[] = {"2", "maybe", "y", "t", "enabled", " true", "truex"};
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        setenv("PCT_BOOL", bad[i], 1);
        err[0] = '\0';
        if (pc_conf_load(t, 1, err, sizeof err) != -1)
            fail_msg("PCT_BOOL=%s was accepted", bad[i]);
        assert_non_null(strstr(err, "PCT_BOOL"));
    }
}

/* ---- validators ---- */

static void test_validators_direct(void **state)
{
    const char *why;
    static const char *const hp_ok[] = {"127.0.0.1:8080", "[::1]:80", "localhost:1"};
    static const char *const hp_bad[] = {"8080", "host:", "host:0", "host:99999", "[::1]"};
    static const char *const http_ok[] = {"http://localhost:3000", "https://auth.example.com",
                                          "https://a.b/path?x=1"};
    static const char *const http_bad[] = {"ftp://x", "http://", "https://", "http:///path",
                                           "localhost:3000", "//x", "http:/x"};
    static const char *const pg_ok[] = {"postgres://u:p@localhost:5432/db",
                                        "postgresql://localhost/db"};
    static const char *const pg_bad[] = {"mysql://x", "host=localhost dbname=x", "postgres:/x",
                                         "http://x"};
    static const char *const redis_ok[] = {"redis://localhost:6379/0", "unix:///tmp/r.sock"};
    static const char *const redis_bad[] = {"http://x", "localhost:6379", "redis:/x"};

    for (size_t i = 0; i < PC_ARRAY_LEN(hp_ok); i++)
        assert_int_equal(pc_conf_check_hostport(hp_ok[i], &why), 0);
    for (size_t i = 0; i < PC_ARRAY_LEN(hp_bad); i++) {
        why = NULL;
        if (pc_conf_check_hostport(hp_bad[i], &why) != -1)
            fail_msg("hostport accepted %s", hp_bad[i]);
        assert_non_null(why);
    }
    for (size_t i = 0; i < PC_ARRAY_LEN(http_ok); i++)
        assert_int_equal(pc_conf_check_http_url(http_ok[i], &why), 0);
    for (size_t i = 0; i < PC_ARRAY_LEN(http_bad); i++) {
        why = NULL;
        if (pc_conf_check_http_url(http_bad[i], &why) != -1)
            fail_msg("http url accepted %s", http_bad[i]);
        assert_non_null(why);
    }
    for (size_t i = 0; i < PC_ARRAY_LEN(pg_ok); i++)
        assert_int_equal(pc_conf_check_pg_url(pg_ok[i], &why), 0);
    for (size_t i = 0; i < PC_ARRAY_LEN(pg_bad); i++) {
        why = NULL;
        if (pc_conf_check_pg_url(pg_bad[i], &why) != -1)
            fail_msg("pg url accepted %s", pg_bad[i]);
        assert_non_null(why);
    }
    for (size_t i = 0; i < PC_ARRAY_LEN(redis_ok); i++)
        assert_int_equal(pc_conf_check_redis_url(redis_ok[i], &why), 0);
    for (size_t i = 0; i < PC_ARRAY_LEN(redis_bad); i++) {
        why = NULL;
        if (pc_conf_check_redis_url(redis_bad[i], &why) != -1)
            fail_msg("redis url accepted %s", redis_bad[i]);
        assert_non_null(why);
    }
}

static void test_validators_in_table(void **state)
{
    char *hp = NULL, *pg = NULL, *url = NULL;
    const struct pc_conf_item t[] = {
        {"PCT_HP", PC_CONF_STR, &hp, "0.0.0.0:3000", 0, 0, 0, pc_conf_check_hostport, "listen"},
        {"PCT_PG", PC_CONF_STR, &pg, NULL, 0, 0, PC_CONF_REQUIRED, pc_conf_check_pg_url, "db"},
        {"PCT_URL", PC_CONF_STR, &url, NULL, 0, 0, 0, pc_conf_check_http_url, "optional url"},
    };
    char err[160];
    setenv("PCT_PG", "postgres://localhost/db", 1);
    /* an optional empty value skips its validator */
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), 0);
    assert_string_equal(hp, "0.0.0.0:3000");
    assert_string_equal(pg, "postgres://localhost/db");
    assert_string_equal(url, "");

    /* a bad value: "NAME: reason" with the validator's reason */
    setenv("PCT_URL", "ftp://x", 1);
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), -1);
    assert_true(pc_starts_with(err, "PCT_URL: "));
    assert_non_null(strstr(err, "http://"));

    /* the first bad row is the one reported */
    setenv("PCT_HP", "nope", 1);
    setenv("PCT_PG", "mysql://x", 1);
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), -1);
    assert_true(pc_starts_with(err, "PCT_HP: "));
    unsetenv("PCT_HP");
    assert_int_equal(pc_conf_load(t, PC_ARRAY_LEN(t), err, sizeof err), -1);
    assert_true(pc_starts_with(err, "PCT_PG: "));

    /* a default is validated like a value */
    unsetenv("PCT_URL");
    setenv("PCT_PG", "postgres://localhost/db", 1);
    const struct pc_conf_item t2[] = {
        {"PCT_HP", PC_CONF_STR, &hp, "no-port", 0, 0, 0, pc_conf_check_hostport, "listen"},
    };
    assert_int_equal(pc_conf_load(t2, 1, err, sizeof err), -1);
    assert_true(pc_starts_with(err, "PCT_HP: "));

    /* a tiny error buffer is truncated but terminated */
    char small[8];
    memset(small, 'x', sizeof small);
    assert_int_equal(pc_conf_load(t2, 1, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, "PCT_HP:", 7);
    pc_conf_free(t, PC_ARRAY_LEN(t));
}

/* ---- help ---- */

static void test_help(void **state)
{
    char *a = NULL, *b = NULL;
    int64_t n = 0;
    const struct pc_conf_item t[] = {
        {"PCT_A", PC_CONF_STR, &a, NULL, 0, 0, PC_CONF_REQUIRED, NULL, "the required one"},
        {"PCT_B", PC_CONF_STR, &b, NULL, 0, 0, 0, NULL, "the optional one"},
        {"PCT_INT", PC_CONF_INT, &n, "3000", 1, 65535, 0, NULL, "a number"},
    };
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    assert_non_null(f);
    pc_conf_help(t, PC_ARRAY_LEN(t), f);
    fclose(f);
    /* one line per row, in table order */
    const char *la = strstr(out, "PCT_A");
    const char *lb = strstr(out, "PCT_B");
    const char *li = strstr(out, "PCT_INT");
    assert_non_null(la);
    assert_non_null(lb);
    assert_non_null(li);
    assert_true(la < lb && lb < li);
    const char *nl = strchr(la, '\n');
    assert_non_null(nl);
    assert_true(strstr(la, "(required)") < nl);
    assert_true(strstr(la, "the required one") < nl);
    assert_true(strstr(lb, "(unset)") < strchr(lb, '\n'));
    assert_true(strstr(li, "3000") < strchr(li, '\n'));
    int lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_required, setup),
        cmocka_unit_test_setup(test_int_bounds, setup),
        cmocka_unit_test_setup(test_secret_not_echoed, setup),
        cmocka_unit_test_setup(test_bool_forms, setup),
        cmocka_unit_test_setup(test_validators_direct, setup),
        cmocka_unit_test_setup(test_validators_in_table, setup),
        cmocka_unit_test_setup(test_help, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
