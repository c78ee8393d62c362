/* Portcullis - MIT licence. See LICENSE.
 *
 * test_crypto.c: SHA-256 and HMAC known answers (FIPS 180-2, RFC 4231),
 * base64 in both alphabets, the credential hash, hex and random ids.
 * Expected values were computed independently with Python hashlib/hmac/base64.
 */
#include "../../lib/crypto.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    pc_hex_encode(d, n, out);
}

/* ---- SHA-256 / HMAC ---- */

static void check_sha(const void *msg, size_t n, const char *want_hex)
{
    unsigned char d[PC_SHA256_LEN];
    char hex[2 * PC_SHA256_LEN + 1];
    pc_sha256(msg, n, d);
    hex_of(d, sizeof d, hex);
    assert_string_equal(hex, want_hex);
}

static void test_sha256_vectors(void **state)
{
    check_sha("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_sha("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha(m, strlen(m), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *a = malloc(1000000);
    assert_non_null(a);
    memset(a, 'a', 1000000);
    check_sha(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
}

static void check_hmac(const void *key, size_t klen, const char *msg, const char *want_hex)
{
    unsigned char d[PC_SHA256_LEN];
    char hex[2 * PC_SHA256_LEN + 1];
    memset(d, 0, sizeof d);
    pc_hmac_sha256(key, klen, msg, strlen(msg), d);
    hex_of(d, sizeof d, hex);
    assert_string_equal(hex, want_hex);
}

static void test_hmac_rfc4231(void **state)
{
    unsigned char k1[20], k6[131];
    memset(k1, 0x0b, sizeof k1);
    memset(k6, 0xaa, sizeof k6);
    /* RFC 4231 test cases 1, 2 and 6 (key longer than the block size) */
    check_hmac(k1, sizeof k1, "Hi There",
               "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    check_hmac("Jefe", 4, "what do ya want for nothing?",
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    check_hmac(k6, sizeof k6, "Test Using Larger Than Block-Size Key - Hash Key First",
               "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

/* ---- base64 encode ---- */

static void test_b64_encode_edges(void **state)
{
    /* bytes chosen so that every output uses the two alphabet-specific symbols */
    static const unsigned char in[5] = {0xfb, 0xff, 0xbf, 0x00, 0x3e};
    static const char *const want_std[6] = {"", "+w==", "+/8=", "+/+/", "+/+/AA==", "+/+/AD4="};
    static const char *const want_url[6] = {"", "-w", "-_8", "-_-_", "-_-_AA", "-_-_AD4"};
    for (size_t n = 0; n <= 5; n++) {
        char out[16];
        memset(out, '#', sizeof out);
        size_t len = pc_b64std_encode(in, n, out);
        assert_string_equal(out, want_std[n]);
        assert_int_equal(len, strlen(want_std[n]));
        assert_int_equal(pc_b64_len(n, true), strlen(want_std[n]));

        memset(out, '#', sizeof out);
        len = pc_b64url_encode(in, n, out);
        assert_string_equal(out, want_url[n]);
        assert_int_equal(len, strlen(want_url[n]));
        assert_int_equal(pc_b64_len(n, false), strlen(want_url[n]));
    }
    assert_int_equal(pc_b64_len(32, true), 44);
    assert_int_equal(pc_b64_len(32, false), 43);

    char out[16];
    pc_b64std_encode((const unsigned char *)"Man is", 6, out);
    assert_string_equal(out, "TWFuIGlz");
}

/* ---- tolerant decode ---- */

static void check_dec(const char *in, const unsigned char *want, long wantlen)
{
    unsigned char out[64];
    memset(out, 0xee, sizeof out);
    long n = pc_b64_decode(in, strlen(in), out);
    assert_int_equal(n, wantlen);
    if (wantlen > 0)
        assert_memory_equal(out, want, (size_t)wantlen);
}

static void test_b64_decode_tolerant(void **state)
{
    static const unsigned char in[5] = {0xfb, 0xff, 0xbf, 0x00, 0x3e};
    /* std with and without padding */
    check_dec("", in, 0);
    check_dec("+w==", in, 1);
    check_dec("+w", in, 1);
    check_dec("+/8=", in, 2);
    check_dec("+/8", in, 2);
    check_dec("+/+/", in, 3);
    check_dec("+/+/AA==", in, 4);
    check_dec("+/+/AD4=", in, 5);
    check_dec("+/+/AD4", in, 5);
    /* url with and without padding */
    check_dec("-w", in, 1);
    check_dec("-w==", in, 1);
    check_dec("-_8", in, 2);
    check_dec("-_8=", in, 2);
    check_dec("-_-_AD4", in, 5);
    check_dec("-_-_AD4=", in, 5);
    /* the alphabets may even be mixed */
    check_dec("+_-/AD4", in, 5);
}

static void test_b64_decode_rejects(void **state)
{
    unsigned char out[64];
    static const char *const bad[] = {
        "A",            /* 1 symbol cannot encode a byte */
        "AAAAA",        /* 4n+1 symbols */
        "A===",
        "+w=x",         /* '=' inside */
        "+w=w",
        "=+w=",
        "+w*=",         /* junk symbols */
        "+w w",
        "+w\n",
        "AB.C",
        "\xc3\xa4" "AA",
        "====",         /* only padding... decodes to nothing at most */
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        long n = pc_b64_decode(bad[i], strlen(bad[i]), out);
        if (i == PC_ARRAY_LEN(bad) - 1) {
            assert_true(n <= 0); /* all-padding: empty or refused, never bytes */
            continue;
        }
        if (n != -1)
            fail_msg("pc_b64_decode accepted \"%s\" (returned %ld)", bad[i], n);
    }
    /* an embedded NUL within n is junk too */
    assert_int_equal(pc_b64_decode("AA\0A", 4, out), -1);
}

static void test_b64_roundtrip(void **state)
{
    unsigned char in[100], dec[100 * 3 / 4 + 3 + 40];
    char enc[200];
    for (size_t n = 0; n <= sizeof in; n++) {
        pc_random_bytes(in, n);
        size_t el = pc_b64std_encode(in, n, enc);
        assert_int_equal(el, pc_b64_len(n, true));
        assert_int_equal(pc_b64_decode(enc, el, dec), (long)n);
        assert_memory_equal(dec, in, n);
        el = pc_b64url_encode(in, n, enc);
        assert_int_equal(el, pc_b64_len(n, false));
        assert_null(strchr(enc, '='));
        assert_null(strchr(enc, '+'));
        assert_null(strchr(enc, '/'));
        assert_int_equal(pc_b64_decode(enc, el, dec), (long)n);
        assert_memory_equal(dec, in, n);
    }
}

/* ---- credential hash (better-auth-compat.md §4.1) ---- */

static void test_cred_hash(void **state)
{
    char out[PC_HASH_B64_LEN + 1];
    /* The doc's example key is elided ("pmjtHh…wfO"), so this vector is our
     * own: base64url-nopad(sha256(key)) computed with Python. 64 letters after
     * a "pk_" prefix, as the api-key plugin generates. */
    const char *key = "pk_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGhIjKl";
    memset(out, '#', sizeof out);
    pc_cred_hash(key, strlen(key), out);
    assert_string_equal(out, "Yi0BTpD4xwKlrLtBIngO-HUFd-iRp-ghs9imfiECwTw");
    assert_int_equal(strlen(out), PC_HASH_B64_LEN);

    pc_cred_hash("", 0, out);
    assert_string_equal(out, "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");

    /* only the first n bytes count */
    pc_cred_hash("abcdef", 3, out);
    char out2[PC_HASH_B64_LEN + 1];
    pc_cred_hash("abc", 3, out2);
    assert_string_equal(out, out2);
}

/* ---- hex, ct_eq ---- */

static void test_hex_and_ct_eq(void **state)
{
    static const unsigned char in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof in + 1];
    pc_hex_encode(in, sizeof in, out);
    assert_string_equal(out, "00017f80abff");
    pc_hex_encode(in, 0, out);
    assert_string_equal(out, "");

    assert_true(pc_ct_eq("abcdef", "abcdef", 6));
    assert_false(pc_ct_eq("abcdef", "abcdeg", 6));
    assert_false(pc_ct_eq("xbcdef", "abcdef", 6));
    assert_true(pc_ct_eq("abcX", "abcY", 3));
    assert_true(pc_ct_eq("a", "b", 0));
}

/* ---- random ---- */

static bool is_alnum_c(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static void test_random_alnum(void **state)
{
    static const size_t lens[] = {0, 1, 31, 32, 63, 64, 65, 200};
    for (size_t i = 0; i < PC_ARRAY_LEN(lens); i++) {
        char out[256];
        memset(out, '#', sizeof out);
        pc_random_alnum(out, lens[i]);
        assert_int_equal(strlen(out), lens[i]);
        for (size_t j = 0; j < lens[i]; j++)
            assert_true(is_alnum_c(out[j]));
    }

    /* all 62 symbols show up, none dominates, and ids do not repeat */
    enum { N = 62 * 400 };
    char *big = malloc(N + 1);
    assert_non_null(big);
    pc_random_alnum(big, N);
    int count[256] = {0};
    for (size_t j = 0; j < N; j++)
        count[(unsigned char)big[j]]++;
    int seen = 0;
    for (int c = 0; c < 256; c++) {
        if (count[c] == 0)
            continue;
        assert_true(is_alnum_c((char)c));
        seen++;
        /* expected 400 each; 4-sigma is about +-80 */
        assert_in_range(count[c], 250, 550);
    }
    assert_int_equal(seen, 62);
    free(big);

    char a[33], b[33];
    pc_random_alnum(a, 32);
    pc_random_alnum(b, 32);
    assert_string_not_equal(a, b);
}

static void test_random_bytes(void **state)
{
    unsigned char a[32], b[32];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    pc_random_bytes(a, sizeof a);
    pc_random_bytes(b, sizeof b);
    assert_memory_not_equal(a, b, sizeof a);
    pc_random_bytes(a, 0); /* no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_b64_encode_edges),
        cmocka_unit_test(test_b64_decode_tolerant),
        cmocka_unit_test(test_b64_decode_rejects),
        cmocka_unit_test(test_b64_roundtrip),
        cmocka_unit_test(test_cred_hash),
        cmocka_unit_test(test_hex_and_ct_eq),
        cmocka_unit_test(test_random_alnum),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
