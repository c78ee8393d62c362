/* Portcullis - MIT licence. See LICENSE.
 *
 * test_cookie.c: Better Auth signed values (better-auth-compat.md §2.2, §6),
 * Cookie header parsing and the URL encodings. Signatures were computed with
 * Python: base64.b64encode(hmac.new(secret, token, sha256).digest()); the
 * encodeURIComponent expectation with urllib.parse.quote(s, safe="-_.!~*'()").
 * The Set-Cookie lines are those a Better Auth 1.7.25 server sent
 * (tests/e2e/interop/FACTS.md), and better-call 1.4.5's serializeCookieValue
 * order for the Secure one.
 */
#include "../../lib/cookie.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#define SECRET "better-auth-secret-12345678901234567890"
#define TOK1 "iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3y"
#define SIG1 "xoggXqalwlracZy2yf4Z833SSNtU6th13A/wH8huacE="     /* has '/' */
#define SIG1_URL "xoggXqalwlracZy2yf4Z833SSNtU6th13A_wH8huacE="
#define TOK2 "tok4ABCDEFGHIJKLMNOPQRSTUVWXYZab"
#define SIG2 "Uw+Q7aInRJe0hEeMvVbQG2ntdJ5v2K8/2L6pcLkUmBg="     /* has '+' and '/' */
#define SIG2_URL "Uw-Q7aInRJe0hEeMvVbQG2ntdJ5v2K8_2L6pcLkUmBg="

/* ---- signing ---- */

static void test_sign_value(void **state)
{
    char out[128];
    memset(out, '#', sizeof out);
    pc_sign_value(SECRET, TOK1, out);
    assert_string_equal(out, TOK1 "." SIG1);
    assert_int_equal(strlen(out), 32 + 1 + PC_SIG_B64_LEN);

    pc_sign_value(SECRET, TOK2, out);
    assert_string_equal(out, TOK2 "." SIG2);

    /* dont_remember cookie value (§2.3) and a token containing dots */
    pc_sign_value(SECRET, "true", out);
    assert_string_equal(out, "true.2Q7qxj/11DldXW8be7RmiJCA7bM+Y0L1gL5sny1v/J8=");
    pc_sign_value(SECRET, "a.b.c", out);
    assert_string_equal(out, "a.b.c.epRC6mq1REz1bnowJkVc60oUbO4y1aZaENouSgz2/HA=");

    /* the key is the secret's bytes: another secret gives another MAC */
    pc_sign_value("other-secret", TOK1, out);
    assert_string_equal(out, TOK1 ".951DCyU6LK+nehyUJ/bJuFZKH4EKGG2KvYvb9vwiolE=");
}

/* ---- verification ---- */

static bool verify(const char *v, enum pc_sig_mode mode, char *tok, size_t cap)
{
    return pc_verify_signed(SECRET, v, strlen(v), mode, tok, cap);
}

static void test_verify_good(void **state)
{
    char tok[64];
    memset(tok, '#', sizeof tok);
    assert_true(verify(TOK1 "." SIG1, PC_SIG_COOKIE, tok, sizeof tok));
    assert_string_equal(tok, TOK1);
    memset(tok, '#', sizeof tok);
    assert_true(verify(TOK2 "." SIG2, PC_SIG_COOKIE, tok, sizeof tok));
    assert_string_equal(tok, TOK2);
    assert_true(verify(TOK2 "." SIG2, PC_SIG_TOLERANT, tok, sizeof tok));
    assert_string_equal(tok, TOK2);

    /* split at the LAST dot */
    assert_true(verify("a.b.c.epRC6mq1REz1bnowJkVc60oUbO4y1aZaENouSgz2/HA=", PC_SIG_COOKIE,
                       tok, sizeof tok));
    assert_string_equal(tok, "a.b.c");

    /* n bounds the input: trailing bytes beyond n are not looked at */
    const char *longer = TOK1 "." SIG1 "garbage";
    assert_true(pc_verify_signed(SECRET, longer, strlen(TOK1 "." SIG1), PC_SIG_COOKIE, tok,
                                 sizeof tok));
    assert_string_equal(tok, TOK1);

    /* tokcap: exactly enough, then one short */
    char small[33];
    assert_true(verify(TOK1 "." SIG1, PC_SIG_COOKIE, small, sizeof small));
    assert_string_equal(small, TOK1);
    assert_false(verify(TOK1 "." SIG1, PC_SIG_COOKIE, small, sizeof small - 1));
}

static void test_verify_alphabets_by_mode(void **state)
{
    char tok[64];
    /* std alphabet, no padding (43 chars): bearer tolerant only */
    char nopad[128];
    snprintf(nopad, sizeof nopad, "%s.%.43s", TOK2, SIG2);
    assert_false(verify(nopad, PC_SIG_COOKIE, tok, sizeof tok));
    assert_true(verify(nopad, PC_SIG_TOLERANT, tok, sizeof tok));
    assert_string_equal(tok, TOK2);

    /* url alphabet, no padding: tolerant only */
    snprintf(nopad, sizeof nopad, "%s.%.43s", TOK2, SIG2_URL);
    assert_false(verify(nopad, PC_SIG_COOKIE, tok, sizeof tok));
    assert_true(verify(nopad, PC_SIG_TOLERANT, tok, sizeof tok));
    assert_string_equal(tok, TOK2);
    snprintf(nopad, sizeof nopad, "%s.%.43s", TOK1, SIG1_URL);
    assert_false(verify(nopad, PC_SIG_COOKIE, tok, sizeof tok));
    assert_true(verify(nopad, PC_SIG_TOLERANT, tok, sizeof tok));

    /* url alphabet with padding: tolerant accepts */
    assert_true(verify(TOK2 "." SIG2_URL, PC_SIG_TOLERANT, tok, sizeof tok));
    assert_true(verify(TOK1 "." SIG1_URL, PC_SIG_TOLERANT, tok, sizeof tok));
}

static void test_verify_rejects(void **state)
{
    char tok[64];
    static const char *const bad[] = {
        /* tampered token */
        "iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3z." SIG1,
        "FyoN4aCvxqZ8XUUYsFb9xyc8h09PA3y." SIG1,
        TOK1 "x." SIG1,
        /* tampered signature (one symbol in the middle, and the last data symbol) */
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13B/wH8huacE=",
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A/wH8huacM=",
        /* another token's valid signature */
        TOK1 "." SIG2,
        /* wrong length: 45, 42, 0 */
        TOK1 "." SIG1 "=",
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A/wH8huac=",
        TOK1 ".",
        /* 44 chars not ending in '=' */
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A/wH8huacEA",
        /* no dot at all, empty token, empty input */
        TOK1,
        TOK1 SIG1,
        "." SIG1,
        "",
        /* junk symbols in the signature */
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A*wH8huacE=",
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A wH8huacE=",
        /* the signature of the whole value, not of the token */
        TOK1 "." SIG1 "." SIG1,
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        for (int mode = PC_SIG_COOKIE; mode <= PC_SIG_TOLERANT; mode++) {
            memset(tok, '#', sizeof tok);
            tok[sizeof tok - 1] = '\0';
            if (verify(bad[i], (enum pc_sig_mode)mode, tok, sizeof tok))
                fail_msg("accepted bad[%zu] \"%s\" in mode %d", i, bad[i], mode);
        }
    }

    /* the right value under the wrong secret */
    assert_false(pc_verify_signed("other-secret", TOK1 "." SIG1, strlen(TOK1 "." SIG1),
                                  PC_SIG_COOKIE, tok, sizeof tok));
    /* n cutting the signature short */
    assert_false(pc_verify_signed(SECRET, TOK1 "." SIG1, strlen(TOK1 "." SIG1) - 1,
                                  PC_SIG_COOKIE, tok, sizeof tok));
    /* (dropping only the '=' leaves the valid unpadded form, so cut into the data) */
    assert_false(pc_verify_signed(SECRET, TOK1 "." SIG1, strlen(TOK1 "." SIG1) - 2,
                                  PC_SIG_TOLERANT, tok, sizeof tok));
}

/* ---- Cookie header ---- */

/* A raw cookie value, as pc_cookie_get returns it: decoded only when it
 * holds a '%', then verified as a cookie signature. */
static void test_cookie_verify(void **state)
{
    char tok[64];
    memset(tok, '#', sizeof tok);
    assert_true(pc_cookie_verify(SECRET, TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE%3D",
                                 tok, sizeof tok));
    assert_string_equal(tok, TOK1);
    /* the same value not encoded (some clients send it so), lower-case escapes */
    memset(tok, '#', sizeof tok);
    assert_true(pc_cookie_verify(SECRET, TOK1 "." SIG1, tok, sizeof tok));
    assert_string_equal(tok, TOK1);
    assert_true(pc_cookie_verify(SECRET, TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A%2fwH8huacE%3d",
                                 tok, sizeof tok));
    /* dont_remember's "true" */
    assert_true(pc_cookie_verify(SECRET, "true.2Q7qxj%2F11DldXW8be7RmiJCA7bM%2BY0L1gL5sny1v%2FJ8%3D",
                                 tok, 16));
    assert_string_equal(tok, "true");
    static const char *const bad[] = {
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE",       /* no padding */
        TOK1 ".yoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE%3D",    /* forged */
        TOK1 ".xoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE%3",     /* bad escape */
        TOK1 "%00.xoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE%3D", /* NUL */
        TOK1,
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (pc_cookie_verify(SECRET, bad[i], tok, sizeof tok))
            fail_msg("accepted %s", bad[i]);
    /* too long for the caller's buffer */
    assert_false(pc_cookie_verify(SECRET, TOK1 "." SIG1, tok, 32));
}

static void check_cookie(const char *header, const char *name, const char *want)
{
    char *v = pc_cookie_get(header, name);
    if (want == NULL) {
        if (v != NULL)
            fail_msg("cookie %s in \"%s\": got \"%s\", want none", name, header, v);
        return;
    }
    if (v == NULL)
        fail_msg("cookie %s in \"%s\": got none, want \"%s\"", name, header, want);
    assert_string_equal(v, want);
    free(v);
}

static void test_cookie_get(void **state)
{
    const char *n = "better-auth.session_token";
    check_cookie("a=1; b=2; c=3", "a", "1");
    check_cookie("a=1; b=2; c=3", "b", "2");
    check_cookie("a=1; b=2; c=3", "c", "3");
    check_cookie("a=1; b=2; c=3", "d", NULL);
    check_cookie("", "a", NULL);
    check_cookie(";;; ", "a", NULL);

    /* whitespace around pairs, names and values; tabs too */
    check_cookie("  a=1 ;  b = 2  ;c=3", "b", "2");
    check_cookie("a=1;\tb=\t2\t", "b", "2");
    check_cookie("a=1;b=2", "b", "2");

    /* quoted values lose their quotes; a lone quote is kept */
    check_cookie("a=\"quoted value\"; b=2", "a", "quoted value");
    check_cookie("a=\"\"", "a", "");
    check_cookie("a=\"", "a", "\"");

    /* empty value is present, not absent */
    check_cookie("a=; b=2", "a", "");

    /* names that are prefixes/suffixes of each other */
    check_cookie("better-auth.session_token_x=bad; better-auth.session_token=good", n, "good");
    check_cookie("xbetter-auth.session_token=bad; better-auth.session_token=good", n, "good");
    check_cookie("__Secure-better-auth.session_token=sec; better-auth.session_token=plain", n,
                 "plain");
    check_cookie("better-auth.session_token=plain; __Secure-better-auth.session_token=sec",
                 "__Secure-better-auth.session_token", "sec");
    check_cookie("better-auth.session_tokenx=bad", n, NULL);
    check_cookie("better-auth.session_toke=bad", n, NULL);
    check_cookie("better-auth.session_data=x", n, NULL);
    /* the name must match exactly, case-sensitively */
    check_cookie("Better-Auth.Session_Token=bad", n, NULL);

    /* '=' inside the value; a pair without '='; duplicates: first wins */
    check_cookie("a=b=c==", "a", "b=c==");
    check_cookie("flag; a=1", "a", "1");
    check_cookie("a", "a", NULL);
    check_cookie("a=first; a=second", "a", "first");

    /* the raw (still percent-encoded) value is returned */
    check_cookie("better-auth.session_token=" TOK2 ".Uw%2BQ7aInRJe0hEeMvVbQG2ntdJ5v2K8%2F2L6pcL"
                 "kUmBg%3D; better-auth.dont_remember=x",
                 n, TOK2 ".Uw%2BQ7aInRJe0hEeMvVbQG2ntdJ5v2K8%2F2L6pcLkUmBg%3D");
}

/* ---- URL decoding ---- */

static void check_dec(const char *in, size_t n, const char *want)
{
    char *v = pc_url_decode(in, n);
    if (want == NULL) {
        if (v != NULL)
            fail_msg("pc_url_decode(\"%.*s\") = \"%s\", want NULL", (int)n, in, v);
        return;
    }
    if (v == NULL)
        fail_msg("pc_url_decode(\"%.*s\") = NULL, want \"%s\"", (int)n, in, want);
    assert_string_equal(v, want);
    free(v);
}

#define DEC(s, want) check_dec((s), strlen(s), (want))

static void test_url_decode(void **state)
{
    DEC("", "");
    DEC("plain", "plain");
    DEC("%2B%2F%3D", "+/=");
    DEC("%2b%2f%3d", "+/=");
    DEC("a+b", "a+b");              /* '+' is not a space in decodeURIComponent */
    DEC("%20", " ");
    DEC("%25", "%");
    DEC("%2525", "%25");            /* one level only */
    DEC("%C3%A4", "\xc3\xa4");
    DEC("%01", "\x01");
    DEC(TOK2 ".Uw%2BQ7aInRJe0hEeMvVbQG2ntdJ5v2K8%2F2L6pcLkUmBg%3D", TOK2 "." SIG2);

    /* malformed escapes */
    DEC("%", NULL);
    DEC("%2", NULL);
    DEC("abc%", NULL);
    DEC("abc%4", NULL);
    DEC("%G0", NULL);
    DEC("%0G", NULL);
    DEC("%%41", NULL);
    DEC("% 41", NULL);
    DEC("%-1", NULL);
    /* NUL, encoded or literal */
    DEC("%00", NULL);
    DEC("abc%00def", NULL);
    check_dec("ab\0cd", 5, NULL);

    /* only n bytes are read */
    check_dec("%41%42", 3, "A");
    check_dec("%41%42", 4, NULL);   /* "%4" is cut */
}

/* ---- encodeURIComponent ---- */

static void test_url_encode_component(void **state)
{
    struct pc_buf b = {0};
    pc_url_encode_component(&b, "aZ09-_.!~*'() \"#$%&+,/:;<=>?@[\\]^`{|}\x01\x7f"
                                "\xc3\xa4\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_string_equal(pc_buf_cstr(&b),
                        "aZ09-_.!~*'()%20%22%23%24%25%26%2B%2C%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D"
                        "%5E%60%7B%7C%7D%01%7F%C3%A4%E2%82%AC%F0%9F%98%80");

    /* the Set-Cookie form of a signed value (§2.2) */
    pc_buf_reset(&b);
    pc_url_encode_component(&b, TOK2 "." SIG2);
    assert_string_equal(pc_buf_cstr(&b),
                        TOK2 ".Uw%2BQ7aInRJe0hEeMvVbQG2ntdJ5v2K8%2F2L6pcLkUmBg%3D");

    /* appends, and round-trips through pc_url_decode */
    pc_buf_reset(&b);
    pc_buf_puts(&b, "x=");
    pc_url_encode_component(&b, "");
    pc_url_encode_component(&b, "a b/c");
    assert_string_equal(pc_buf_cstr(&b), "x=a%20b%2Fc");
    char *back = pc_url_decode(b.data + 2, b.len - 2);
    assert_non_null(back);
    assert_string_equal(back, "a b/c");
    free(back);
    pc_buf_free(&b);
}

/* ---- Set-Cookie ---- */

static void check_set_cookie(const char *name, const char *sv, int64_t max_age, bool secure,
                             const char *want)
{
    struct pc_buf b = {0};
    pc_set_cookie_value(&b, name, sv, max_age, secure);
    assert_string_equal(pc_buf_cstr(&b), want);
    pc_buf_free(&b);
}

static void test_set_cookie_value(void **state)
{
    /* sign-in and a sliding refresh (better-auth-compat.md §2.1, observed) */
    check_set_cookie("better-auth.session_token",
                     "iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3y.cURQ/KefX48sjrhUvruRjF71kL7BLELRQl9UJm/mSSs=",
                     604800, false,
                     "better-auth.session_token=iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3y."
                     "cURQ%2FKefX48sjrhUvruRjF71kL7BLELRQl9UJm%2FmSSs%3D; Max-Age=604800; "
                     "Path=/; HttpOnly; SameSite=Lax");
    /* rememberMe:false: no Max-Age, and the dont_remember cookie beside it */
    check_set_cookie("better-auth.session_token",
                     "sP0lcrfTZuvLQvMhMAU5cMWdOI9b3sft.us0wMWhxSI+x+0m5/VrHDZfzCUQhzlwY7up+9UARozE=",
                     -1, false,
                     "better-auth.session_token=sP0lcrfTZuvLQvMhMAU5cMWdOI9b3sft."
                     "us0wMWhxSI%2Bx%2B0m5%2FVrHDZfzCUQhzlwY7up%2B9UARozE%3D; Path=/; HttpOnly; "
                     "SameSite=Lax");
    check_set_cookie("better-auth.dont_remember",
                     "true.1D5vrFRqwxnE3jjpLOMIvmfq51N+ywAPgEVzLJigzD8=", -1, false,
                     "better-auth.dont_remember=true.1D5vrFRqwxnE3jjpLOMIvmfq51N%2BywAPgEVzLJigzD8%3D;"
                     " Path=/; HttpOnly; SameSite=Lax");
    /* the deletion sign-out sends */
    check_set_cookie("better-auth.session_data", NULL, 0, false,
                     "better-auth.session_data=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax");
    /* https:// BETTER_AUTH_URL: the prefix and Secure, between HttpOnly and SameSite */
    check_set_cookie("__Secure-better-auth.session_token", TOK1 "." SIG1, 86400, true,
                     "__Secure-better-auth.session_token=" TOK1
                     ".xoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE%3D; Max-Age=86400; Path=/; "
                     "HttpOnly; Secure; SameSite=Lax");

    /* what a refresh sends: the token signed again is the value the client holds */
    char sv[32 + 1 + PC_SIG_B64_LEN + 1];
    pc_sign_value(SECRET, TOK2, sv);
    struct pc_buf b = {0};
    pc_buf_puts(&b, "kept; ");
    pc_set_cookie_value(&b, "better-auth.session_token", sv, 604800, false);
    assert_string_equal(pc_buf_cstr(&b),
                        "kept; better-auth.session_token=" TOK2
                        ".Uw%2BQ7aInRJe0hEeMvVbQG2ntdJ5v2K8%2F2L6pcLkUmBg%3D; Max-Age=604800; "
                        "Path=/; HttpOnly; SameSite=Lax");
    pc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_value),
        cmocka_unit_test(test_verify_good),
        cmocka_unit_test(test_verify_alphabets_by_mode),
        cmocka_unit_test(test_verify_rejects),
        cmocka_unit_test(test_cookie_verify),
        cmocka_unit_test(test_cookie_get),
        cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_url_encode_component),
        cmocka_unit_test(test_set_cookie_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
