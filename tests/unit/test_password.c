/* Portcullis - MIT licence. See LICENSE.
 *
 * test_password.c: Better Auth's scrypt password format
 * (better-auth-compat.md §3) and the UTF-16 length rule. The fixed vectors
 * were computed with Python:
 *   hashlib.scrypt(unicodedata.normalize("NFKC", pw).encode(),
 *                  salt=salt_hex.encode(), n=16384, r=16, p=1, dklen=64,
 *                  maxmem=2**27).hex()
 * Each scrypt costs ~100 ms, so the number of hashing calls is kept small.
 */
#include "../../lib/password.c"
#include "../../lib/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#define SALT1 "0123456789abcdef0123456789abcdef"
#define HASH1 SALT1 ":07a3d2ed39db1d6da54757be00ac95d5e7e75c20083e7455df5776f10c5853b5" \
                    "3c9c3773e889b2a4e27bfbf51ddbddfb0b7e76de09b957ea4945e886dafc72c4"

/* "pa\u0308ssw\u00f6rd-\ufb01-\u03a9": a decomposed a+umlaut, a precomposed
 * o-umlaut, the fi ligature and Omega. NFKC gives "pässwörd-fi-Ω". */
#define PW2 "pa\xcc\x88ssw\xc3\xb6rd-\xef\xac\x81-\xce\xa9"
#define PW2_NFKC "p\xc3\xa4ssw\xc3\xb6rd-fi-\xce\xa9"
#define SALT2 "4ef9cb68a1b2c3d4e5f60718293a4b5c"
#define HASH2 SALT2 ":6add4cb74617ead4e261342281d0609940ed56a177ad68c477fc86aec6b8b3a9" \
                    "5825227d6d60ab276ed8aa81a982f0f7f0456a0d57a112fec926d23d25df7d4c"

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* ---- UTF-16 length ---- */

static size_t u16len(const char *s)
{
    return pc_utf16_length(s, strlen(s));
}

static void test_utf16_length(void **state)
{
    assert_int_equal(u16len(""), 0);
    assert_int_equal(u16len("password"), 8);
    assert_int_equal(u16len("\xc3\xa9"), 1);                 /* é: 2 bytes, 1 unit */
    assert_int_equal(u16len("\xe2\x82\xac"), 1);             /* €: 3 bytes, 1 unit */
    assert_int_equal(u16len("\xef\xac\x81"), 1);             /* ﬁ ligature */
    assert_int_equal(u16len("\xf0\x9f\x98\x80"), 2);         /* 😀: surrogate pair */
    assert_int_equal(u16len("a\xf0\x9f\x98\x80" "b\xe2\x82\xac\xc3\xa9"), 6);
    assert_int_equal(u16len(PW2), 13);                       /* Python: len(pw) */
    /* seven emoji = 14 units: passes an 8-char minimum although 7 "characters" */
    assert_int_equal(u16len("\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
                            "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"), 14);
    /* only n bytes are counted */
    assert_int_equal(pc_utf16_length("abcdef", 3), 3);
}

/* ---- fixed vectors ---- */

static void test_hash_with_salt_vector_ascii(void **state)
{
    char out[PC_PASSWORD_HASH_LEN + 1];
    memset(out, '#', sizeof out);
    assert_int_equal(pc_password_hash_with_salt("correct-horse-1", 15, SALT1, out), 0);
    assert_string_equal(out, HASH1);
}

static void test_hash_with_salt_vector_nfkc(void **state)
{
    char out[PC_PASSWORD_HASH_LEN + 1];
    assert_int_equal(pc_password_hash_with_salt(PW2, strlen(PW2), SALT2, out), 0);
    assert_string_equal(out, HASH2);
    /* the NFKC-normalised text verifies against it too */
    assert_true(pc_password_verify(PW2_NFKC, strlen(PW2_NFKC), HASH2));
}

static void test_nfkc_ligature(void **state)
{
    /* "ﬁnal-answer" (U+FB01) must hash exactly like "final-answer" */
    const char *lig = "\xef\xac\x81nal-answer";
    const char *plain = "final-answer";
    char h_lig[PC_PASSWORD_HASH_LEN + 1], h_plain[PC_PASSWORD_HASH_LEN + 1];
    assert_int_equal(pc_password_hash_with_salt(lig, strlen(lig), SALT2, h_lig), 0);
    assert_int_equal(pc_password_hash_with_salt(plain, strlen(plain), SALT2, h_plain), 0);
    assert_string_equal(h_lig, h_plain);
}

static void test_hash_with_salt_bad_salt(void **state)
{
    char out[PC_PASSWORD_HASH_LEN + 1];
    /* the salt must be the 32-char text; these fail before any scrypt work */
    assert_int_equal(pc_password_hash_with_salt("x", 1, "", out), -1);
    assert_int_equal(pc_password_hash_with_salt("x", 1, "0123456789abcdef", out), -1);
    assert_int_equal(pc_password_hash_with_salt("x", 1, SALT1 "0", out), -1);
}

/* ---- random salt, round trip ---- */

static void test_hash_format_and_roundtrip(void **state)
{
    const char *pw = "correct-horse-1";
    char out[PC_PASSWORD_HASH_LEN + 1];
    memset(out, '#', sizeof out);
    assert_int_equal(pc_password_hash(pw, strlen(pw), out), 0);
    assert_int_equal(strlen(out), PC_PASSWORD_HASH_LEN);
    assert_int_equal(out[32], ':');
    assert_true(is_lower_hex(out, 32));
    assert_true(is_lower_hex(out + 33, 128));
    assert_string_not_equal(out, HASH1); /* the salt is random */

    assert_true(pc_password_verify(pw, strlen(pw), out));
    assert_false(pc_password_verify("correct-horse-2", 15, out));
}

static void test_verify_fixed_vector(void **state)
{
    assert_true(pc_password_verify("correct-horse-1", 15, HASH1));
}

/* ---- malformed input ---- */

static void test_verify_rejects_malformed(void **state)
{
    const char *pw = "correct-horse-1";
    size_t n = strlen(pw);
    char buf[600];
    static const char *const bad[] = {
        "",
        ":",
        SALT1,                                  /* no colon */
        ":" "07a3d2ed39db1d6da54757be00ac95d5e7e75c20083e7455df5776f10c5853b5"
            "3c9c3773e889b2a4e27bfbf51ddbddfb0b7e76de09b957ea4945e886dafc72c4", /* empty salt */
        SALT1 ":",                              /* empty key */
        SALT1 ":07a3d2ed",                      /* short key */
        HASH1 "0",                              /* key one char too long */
        HASH1 ":",                              /* second colon */
        SALT1 "::07a3d2ed39db1d6da54757be00ac95d5e7e75c20083e7455df5776f10c5853b5"
              "3c9c3773e889b2a4e27bfbf51ddbddfb0b7e76de09b957ea4945e886dafc72c4",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++)
        if (pc_password_verify(pw, n, bad[i]))
            fail_msg("verify accepted malformed stored value #%zu \"%s\"", i, bad[i]);

    /* an over-long salt is refused without overflowing anything */
    memset(buf, 'a', 400);
    snprintf(buf + 400, sizeof buf - 400, ":%s", HASH1 + 33);
    assert_false(pc_password_verify(pw, n, buf));
}

static void test_hash_rejects_invalid_utf8(void **state)
{
    /* password.h: "Returns ... -1 if the input is not valid UTF-8" */
    char out[PC_PASSWORD_HASH_LEN + 1];
    static const char *const bad[] = {
        "pass\xffword",             /* 0xFF is never valid */
        "pass\xc3word",             /* truncated 2-byte sequence */
        "pass\xc0\xafword",         /* overlong '/' */
        "pass\xed\xa0\x80word",     /* UTF-16 surrogate D800 */
    };
    int accepted = 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        int rc = pc_password_hash_with_salt(bad[i], strlen(bad[i]), SALT1, out);
        if (rc != -1) {
            print_error("invalid UTF-8 #%zu was hashed (rc=%d): %s\n", i, rc, out);
            accepted++;
        }
    }
    /* If they are hashed, they must at least not collide with a valid
     * password: U+FFFD is what a silent replacement would produce. */
    const char *fffd = "pass\xef\xbf\xbdword";
    char want[PC_PASSWORD_HASH_LEN + 1];
    assert_int_equal(pc_password_hash_with_salt(fffd, strlen(fffd), SALT1, want), 0);
    assert_false(pc_password_verify(bad[0], strlen(bad[0]), want));
    assert_int_equal(accepted, 0);
}

/* A lone surrogate in a JSON password (issue #13): Better Auth hashes
 * TextEncoder(password.normalize("NFKC")), and TextEncoder writes a lone
 * surrogate as U+FFFD (EF BF BD). The vector came from Node 18:
 *   crypto.scryptSync(new TextEncoder().encode("Lone-\ud800-surrogate"
 *       .normalize("NFKC")), "0123456789abcdef0123456789abcdef", 64,
 *       {N: 16384, r: 16, p: 1, maxmem: 2 ** 27})
 * The password goes through the JSON parser, as a request body does. */
#define LONE_SALT "0123456789abcdef0123456789abcdef"
#define LONE_HASH LONE_SALT ":06df3c20b064756290228823b4163ff530b3dabc39c70f196df934a0" \
    "af4cd2e9d99d0ac941d9e64c806ad339eb1c38e6d3bd1748c9c6e030a86ef27af99a2ea2"

static void test_lone_surrogate_hashes_as_node(void **state)
{
    const char *body = "{\"password\":\"Lone-\\ud800-surrogate\"}";
    yajl_val v = pc_json_parse(body, strlen(body));
    assert_non_null(v);
    yajl_val pw = pc_json_get(v, "password");
    assert_true(YAJL_IS_STRING(pw));
    assert_string_equal(pw->u.string, "Lone-\xef\xbf\xbd-surrogate");
    assert_int_equal(pc_utf16_length(pw->u.string, strlen(pw->u.string)), 16); /* as JS .length */
    char out[PC_PASSWORD_HASH_LEN + 1];
    assert_int_equal(pc_password_hash_with_salt(pw->u.string, strlen(pw->u.string), LONE_SALT, out),
                     0);
    assert_string_equal(out, LONE_HASH);
    yajl_tree_free(v);
    /* a lone low half in another body verifies against the same hash */
    body = "{\"password\":\"Lone-\\udfff-surrogate\"}";
    v = pc_json_parse(body, strlen(body));
    assert_non_null(v);
    pw = pc_json_get(v, "password");
    assert_true(pc_password_verify(pw->u.string, strlen(pw->u.string), LONE_HASH));
    yajl_tree_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf16_length),
        cmocka_unit_test(test_hash_with_salt_vector_ascii),
        cmocka_unit_test(test_hash_with_salt_vector_nfkc),
        cmocka_unit_test(test_nfkc_ligature),
        cmocka_unit_test(test_lone_surrogate_hashes_as_node),
        cmocka_unit_test(test_hash_with_salt_bad_salt),
        cmocka_unit_test(test_hash_format_and_roundtrip),
        cmocka_unit_test(test_verify_fixed_vector),
        cmocka_unit_test(test_verify_rejects_malformed),
        cmocka_unit_test(test_hash_rejects_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
