/* Portcullis - MIT licence. See LICENSE.
 *
 * test_totp.c: HOTP (RFC 4226 appendix D), TOTP with SHA-1 (RFC 6238
 * appendix B), base32 (RFC 4648 section 10) and the otpauth URI, whose
 * expected text and the two HOTPs of a Better Auth-style secret were
 * printed by @better-auth/utils 0.5.1's createOTP (node).
 */
#include "../../lib/totp.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static const char rfc_key[] = "12345678901234567890";

static void test_hotp_rfc4226(void **state)
{
    static const char *const want[] = {"755224", "287082", "359152", "969429", "338314",
                                       "254676", "287922", "162583", "399871", "520489"};
    char out[9];
    for (uint64_t c = 0; c < 10; c++) {
        pc_hotp(rfc_key, 20, c, 6, out);
        assert_string_equal(out, want[c]);
    }
}

static void test_totp_rfc6238(void **state)
{
    static const struct { int64_t t; const char *code; } v[] = {
        {59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"},
        {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint64_t m = 0;
        assert_true(pc_totp_verify(rfc_key, 20, v[i].code, v[i].t * 1000, 30, 8, 0, &m));
        assert_int_equal(m, (uint64_t)(v[i].t / 30));
    }
    /* window 1: the previous and next periods count, two away do not */
    char prev[9], far[9];
    pc_hotp(rfc_key, 20, 1111111109 / 30 - 1, 6, prev);
    pc_hotp(rfc_key, 20, 1111111109 / 30 - 2, 6, far);
    uint64_t m = 0;
    assert_true(pc_totp_verify(rfc_key, 20, prev, 1111111109000LL, 30, 6, 1, &m));
    assert_int_equal(m, 1111111109 / 30 - 1);
    assert_false(pc_totp_verify(rfc_key, 20, far, 1111111109000LL, 30, 6, 1, NULL));
    assert_false(pc_totp_verify(rfc_key, 20, "", 1111111109000LL, 30, 6, 1, NULL));
    char longer[16];
    snprintf(longer, sizeof longer, "%s0", prev);
    assert_false(pc_totp_verify(rfc_key, 20, longer, 1111111109000LL, 30, 6, 1, NULL));
}

static void test_base32(void **state)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"", "MY", "MZXQ", "MZXW6", "MZXW6YQ", "MZXW6YTB",
                                      "MZXW6YTBOI"};
    for (size_t i = 0; i < 7; i++) {
        char *e = pc_base32_encode(plain[i], strlen(plain[i]));
        assert_string_equal(e, enc[i]);
        size_t n = 0;
        unsigned char *d = pc_base32_decode(e, &n);
        assert_non_null(d);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(d, plain[i], n);
        free(d);
        free(e);
    }
    size_t n = 0;
    unsigned char *d = pc_base32_decode("MZXW6===", &n);
    assert_non_null(d);
    assert_int_equal(n, 3);
    free(d);
    assert_null(pc_base32_decode("mzxw6", &n));
    assert_null(pc_base32_decode("MZ1W", &n));
}

static void test_uri_and_ba_secret(void **state)
{
    const char *secret = "abcdefghijABCDEFGHIJ0123456789-_";
    char *uri = pc_totp_uri("My App & Co/\xc3\xa9", "a+b@x.test", secret, strlen(secret), 6, 30);
    assert_string_equal(uri, "otpauth://totp/My%20App%20%26%20Co%2F%C3%A9:a%2Bb%40x.test"
                             "?secret=MFRGGZDFMZTWQ2LKIFBEGRCFIZDUQSKKGAYTEMZUGU3DOOBZFVPQ"
                             "&issuer=My+App+%26+Co%2F%C3%A9&digits=6&period=30");
    free(uri);
    char out[9];
    pc_hotp(secret, strlen(secret), 0, 6, out);
    assert_string_equal(out, "209114");
    pc_hotp(secret, strlen(secret), 123456789, 6, out);
    assert_string_equal(out, "113688");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hotp_rfc4226),
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_base32),
        cmocka_unit_test(test_uri_and_ba_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
