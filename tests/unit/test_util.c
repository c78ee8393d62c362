/* Portcullis - MIT licence. See LICENSE.
 *
 * test_util.c: buffers, ISO-8601 time, integer and host:port parsing, string
 * helpers. Expected dates come from Python's datetime, not from this code.
 */
#include "../../lib/util.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* ---- pc_buf ---- */

static void test_buf_empty(void **state)
{
    struct pc_buf b = {0};
    assert_string_equal(pc_buf_cstr(&b), "");
    assert_int_equal(b.len, 0);
    pc_buf_reset(&b); /* no storage yet: must not crash */
    assert_string_equal(pc_buf_cstr(&b), "");
    pc_buf_free(&b);
    assert_null(b.data);
}

static void test_buf_growth(void **state)
{
    struct pc_buf b = {0};
    char want[5000];
    for (size_t i = 0; i < sizeof want - 1; i++) {
        char c = (char)('a' + i % 26);
        pc_buf_putc(&b, c);
        want[i] = c;
        assert_int_equal(b.len, i + 1);
        assert_true(b.cap > b.len);        /* room for the NUL */
        assert_int_equal(b.data[b.len], '\0');
    }
    want[sizeof want - 1] = '\0';
    assert_string_equal(pc_buf_cstr(&b), want);

    /* one append far larger than the current capacity */
    size_t before = b.len;
    static char big[100000];
    memset(big, 'x', sizeof big);
    pc_buf_append(&b, big, sizeof big);
    assert_int_equal(b.len, before + sizeof big);
    assert_true(b.cap > b.len);
    assert_memory_equal(b.data + before, big, sizeof big);
    assert_int_equal(b.data[b.len], '\0');
    pc_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_buf_puts_printf_reset(void **state)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, "ab");
    pc_buf_printf(&b, "-%d-%s-", 42, "x");
    pc_buf_putc(&b, 'z');
    assert_string_equal(pc_buf_cstr(&b), "ab-42-x-z");
    assert_int_equal(b.len, 9);

    /* printf output longer than the first 64-byte block */
    char long_s[300];
    memset(long_s, 'q', sizeof long_s - 1);
    long_s[sizeof long_s - 1] = '\0';
    pc_buf_printf(&b, "[%s]", long_s);
    assert_int_equal(b.len, 9 + 2 + 299);
    assert_int_equal(b.data[9], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');

    /* embedded NUL via append is kept in len */
    pc_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(pc_buf_cstr(&b), "");
    pc_buf_append(&b, "a\0b", 3);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b", 4);
    pc_buf_free(&b);
}

/* ---- allocation ---- */

static void test_xstrndup(void **state)
{
    char *p = pc_xstrndup("hello world", 5);
    assert_string_equal(p, "hello");
    free(p);
    p = pc_xstrdup("");
    assert_string_equal(p, "");
    free(p);
    p = pc_xmalloc(0); /* never NULL, even for 0 */
    assert_non_null(p);
    free(p);
    p = pc_xcalloc(0, 0);
    assert_non_null(p);
    free(p);
}

/* ---- time ---- */

static void check_iso(int64_t ms, const char *want)
{
    char out[32];
    memset(out, 0x7f, sizeof out);
    pc_iso8601(ms, out);
    assert_string_equal(out, want);
}

static void test_iso8601(void **state)
{
    /* expected values: Python datetime(1970,1,1) + timedelta(milliseconds=ms) */
    check_iso(0, "1970-01-01T00:00:00.000Z");
    check_iso(1, "1970-01-01T00:00:00.001Z");
    check_iso(1700000000123, "2023-11-14T22:13:20.123Z");
    check_iso(951782400000, "2000-02-29T00:00:00.000Z");
    check_iso(253402300799999, "9999-12-31T23:59:59.999Z");
    /* negative milliseconds round toward -infinity, not toward zero */
    check_iso(-1, "1969-12-31T23:59:59.999Z");
    check_iso(-1000, "1969-12-31T23:59:59.000Z");
    check_iso(-1001, "1969-12-31T23:59:58.999Z");
    check_iso(-86400000, "1969-12-31T00:00:00.000Z");
}

static void test_clocks(void **state)
{
    int64_t now = pc_now_ms();
    assert_true(now > 1700000000000); /* after Nov 2023 */
    int64_t a = pc_mono_us();
    int64_t b = pc_mono_us();
    assert_true(b >= a);
}

/* ---- strings ---- */

static void test_string_helpers(void **state)
{
    assert_true(pc_strieq("Bearer", "bEARER"));
    assert_false(pc_strieq("Bearer", "Bearer "));
    assert_true(pc_strnieq("Content-Type: x", "content-type", 12));
    assert_false(pc_strnieq("Content-Typo", "content-type", 12));
    assert_true(pc_starts_with("redis://x", "redis://"));
    assert_true(pc_starts_with("abc", ""));
    assert_false(pc_starts_with("red", "redis://"));

    unsigned char secret[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    pc_wipe(secret, sizeof secret);
    for (size_t i = 0; i < sizeof secret; i++)
        assert_int_equal(secret[i], 0);
}

static void test_parse_int64(void **state)
{
    int64_t v = -7;
    assert_int_equal(pc_parse_int64("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(pc_parse_int64("10", 0, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(pc_parse_int64("-5", -5, 5, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(pc_parse_int64("9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(pc_parse_int64("-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
    assert_true(v == INT64_MIN);

    v = 123;
    assert_int_equal(pc_parse_int64("11", 0, 10, &v), -1);   /* above max */
    assert_int_equal(pc_parse_int64("-6", -5, 5, &v), -1);   /* below min */
    assert_int_equal(pc_parse_int64("", 0, 10, &v), -1);
    assert_int_equal(pc_parse_int64(NULL, 0, 10, &v), -1);
    assert_int_equal(pc_parse_int64("5x", 0, 10, &v), -1);
    assert_int_equal(pc_parse_int64("0x5", 0, 10, &v), -1);
    assert_int_equal(pc_parse_int64("5 ", 0, 10, &v), -1);
    assert_int_equal(pc_parse_int64("1.5", 0, 10, &v), -1);
    assert_int_equal(pc_parse_int64("9223372036854775808", INT64_MIN, INT64_MAX, &v), -1);
    assert_int_equal(pc_parse_int64("-9223372036854775809", INT64_MIN, INT64_MAX, &v), -1);
    assert_int_equal(v, 123); /* untouched on failure */
}

/* ---- host:port ---- */

static void check_hp_ok(const char *s, const char *want_host, int want_port)
{
    char host[64];
    int port = -1;
    const char *err = NULL;
    assert_int_equal(pc_parse_hostport(s, host, sizeof host, &port, &err), 0);
    assert_string_equal(host, want_host);
    assert_int_equal(port, want_port);
}

static void check_hp_bad(const char *s, size_t hostsz)
{
    char host[64];
    int port = -1;
    const char *err = NULL;
    assert_true(hostsz <= sizeof host);
    assert_int_equal(pc_parse_hostport(s, host, hostsz, &port, &err), -1);
    assert_non_null(err);
    assert_true(err[0] != '\0');
    assert_int_equal(port, -1);
}

static void test_parse_hostport(void **state)
{
    check_hp_ok("127.0.0.1:8080", "127.0.0.1", 8080);
    check_hp_ok("localhost:1", "localhost", 1);
    check_hp_ok("0.0.0.0:65535", "0.0.0.0", 65535);
    check_hp_ok("[::1]:80", "::1", 80);
    check_hp_ok("[fe80::1%eth0]:443", "fe80::1%eth0", 443);

    check_hp_bad("localhost", 64);          /* no port */
    check_hp_bad("localhost:", 64);         /* empty port */
    check_hp_bad(":8080", 64);              /* empty host */
    check_hp_bad("host:0", 64);
    check_hp_bad("host:65536", 64);
    check_hp_bad("host:-1", 64);
    check_hp_bad("host:80x", 64);
    check_hp_bad("host:http", 64);
    check_hp_bad("[::1]", 64);              /* v6 without port */
    check_hp_bad("[::1]80", 64);
    check_hp_bad("[::1:80", 64);            /* unclosed bracket */
    check_hp_bad("[]:80", 64);
    check_hp_bad("abcdefgh:80", 8);         /* host does not fit (needs 9 bytes) */
    check_hp_bad("[abcdefgh]:80", 8);
    check_hp_ok("abcdefg:80", "abcdefg", 80);
}

/* ---- pc_utf8_fix (expected bytes from Python's decode('utf-8', 'replace'),
 * which follows the same maximal-subpart rule as the WHATWG decoder) ---- */

static void fix_is(const char *in, size_t n, const char *want)
{
    char *got = pc_utf8_fix(in, n);
    assert_string_equal(got, want);
    assert_true(pc_utf8_valid(got, strlen(got)));
    free(got);
}

#define FIX(lit, want) fix_is((lit), sizeof(lit) - 1, (want))

static void test_utf8_fix(void **state)
{
    FIX("", "");
    FIX("plain", "plain");
    FIX("J\xc3\xbcrgen", "J\xc3\xbcrgen");
    FIX("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");
    FIX("\xff", "\xef\xbf\xbd");
    FIX("a\xff" "b", "a\xef\xbf\xbd" "b");
    FIX("\xed\xb0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");   /* an encoded surrogate */
    FIX("\xe0\x80", "\xef\xbf\xbd\xef\xbf\xbd");
    FIX("\xf0\x9f\x98", "\xef\xbf\xbd");                            /* truncated: one */
    FIX("\xf0\x9f\x98x", "\xef\xbf\xbdx");
    FIX("\xc3", "\xef\xbf\xbd");
    FIX("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");                    /* overlong */
    FIX("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    FIX("\xe2\x82\xac\x80\xe2\x82\xac", "\xe2\x82\xac\xef\xbf\xbd\xe2\x82\xac");
    /* only n bytes are read */
    char *got = pc_utf8_fix("ab\xff", 2);
    assert_string_equal(got, "ab");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_empty),
        cmocka_unit_test(test_buf_growth),
        cmocka_unit_test(test_buf_puts_printf_reset),
        cmocka_unit_test(test_xstrndup),
        cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_string_helpers),
        cmocka_unit_test(test_parse_int64),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_utf8_fix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
