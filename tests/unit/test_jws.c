/* Portcullis - MIT licence. See LICENSE.
 *
 * test_jws.c: JWK import/export, JWT parse/verify/sign for ES256, RS256 and
 * EdDSA, and the refusals (alg none, alg/key mismatch, tampering, claims);
 * keys go through Better Auth's seal on the way (its own tests are
 * test_ba_jwks.c). The Ed25519 vector is RFC 8037
 * appendix A.4.
 */
#include "../../lib/jws.c"
#include "../../lib/ba_jwks.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static const char *SECRET = "unit-test-secret-0123456789abcdef0123";

static char *public_json(const struct pc_jwk *k)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jwk_write_public(k, &w);
    pc_jw_obj_end(&w);
    char *s = pc_xstrdup(pc_buf_cstr(&b));
    pc_buf_free(&b);
    return s;
}

/* generate -> private JSON -> seal -> unseal -> import -> sign; public JSON
 * -> import -> verify; then the refusals. */
static void roundtrip(enum pc_jwk_alg alg)
{
    struct pc_jwk gen;
    assert_int_equal(pc_jwk_generate(alg, "kid-1", &gen), 0);
    char *priv = pc_jwk_private_json(&gen);
    assert_non_null(strstr(priv, "\"d\""));
    struct pc_secrets mine, theirs;
    pc_secrets_single(&mine, SECRET);
    pc_secrets_single(&theirs, "another-secret-0123456789abcdef01234");
    char *sealed = pc_seal(&mine, priv, strlen(priv));
    size_t n = 0;
    char *opened = pc_unseal(&mine, sealed, &n);
    assert_non_null(opened);
    assert_string_equal(opened, priv);
    assert_null(pc_unseal(&theirs, sealed, &n));
    pc_secrets_free(&mine);
    pc_secrets_free(&theirs);

    const char *err = NULL;
    struct pc_jwk signer, verifier;
    assert_int_equal(pc_jwk_from_text(opened, n, "kid-1", pc_jwk_alg_name(alg), &signer, &err), 0);
    assert_true(signer.private_key);
    char *pub = public_json(&gen);
    assert_null(strstr(pub, "\"d\""));
    assert_int_equal(pc_jwk_from_text(pub, strlen(pub), "kid-1", NULL, &verifier, &err), 0);
    assert_false(verifier.private_key);

    char *tok = pc_jwt_sign(&signer, "{\"sub\":\"u1\",\"exp\":4102444800,\"aud\":[\"a\",\"b\"]}");
    assert_non_null(tok);
    struct pc_jwt t;
    assert_int_equal(pc_jwt_parse(tok, strlen(tok), &t, &err), 0);
    assert_int_equal(t.alg, alg);
    assert_string_equal(t.kid, "kid-1");
    assert_true(pc_jwt_verify(&t, tok, &verifier, &err));
    assert_string_equal(pc_jwt_claim_str(&t, "sub"), "u1");
    const char *auds[] = {"b"};
    struct pc_jwt_expect e = {.audiences = auds, .naudiences = 1, .now = 1700000000,
                              .require_exp = true};
    assert_int_equal(pc_jwt_check_claims(&t, &e), PC_JWT_CLAIMS_OK);
    e.now = 4102444800 + 10;
    e.leeway = 30;
    assert_int_equal(pc_jwt_check_claims(&t, &e), PC_JWT_CLAIMS_OK);
    e.leeway = 5;
    assert_int_equal(pc_jwt_check_claims(&t, &e), PC_JWT_CLAIMS_EXPIRED);
    const char *wrong[] = {"c"};
    e = (struct pc_jwt_expect){.audiences = wrong, .naudiences = 1, .now = 1700000000};
    assert_int_equal(pc_jwt_check_claims(&t, &e), PC_JWT_CLAIMS_BAD_AUDIENCE);
    e = (struct pc_jwt_expect){.issuer = "x", .now = 1700000000};
    assert_int_equal(pc_jwt_check_claims(&t, &e), PC_JWT_CLAIMS_BAD_ISSUER);
    pc_jwt_free(&t);

    /* another payload under this signature does not verify */
    char *tok2 = pc_jwt_sign(&signer, "{\"sub\":\"admin\",\"exp\":4102444800}");
    assert_non_null(tok2);
    struct pc_buf sp = {0};
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    const char *e1 = strchr(tok2, '.'), *e2 = strrchr(tok2, '.');
    pc_buf_append(&sp, tok, (size_t)(d1 - tok));
    pc_buf_append(&sp, e1, (size_t)(e2 - e1));
    pc_buf_puts(&sp, d2);
    const char *bad = pc_buf_cstr(&sp);
    assert_int_equal(pc_jwt_parse(bad, strlen(bad), &t, &err), 0);
    assert_false(pc_jwt_verify(&t, bad, &verifier, &err));
    pc_jwt_free(&t);
    pc_buf_free(&sp);
    free(tok2);

    /* another key of the same type does not verify it */
    struct pc_jwk other;
    assert_int_equal(pc_jwk_generate(alg, "kid-1", &other), 0);
    assert_int_equal(pc_jwt_parse(tok, strlen(tok), &t, &err), 0);
    assert_false(pc_jwt_verify(&t, tok, &other, &err));
    pc_jwt_free(&t);

    pc_jwk_free(&other);
    free(tok);
    free(pub);
    pc_jwk_free(&verifier);
    pc_jwk_free(&signer);
    free(opened);
    free(sealed);
    free(priv);
    pc_jwk_free(&gen);
}

static void test_es256(void **state)
{
    roundtrip(PC_JWK_ES256);
}

static void test_rs256(void **state)
{
    roundtrip(PC_JWK_RS256);
}

static void test_eddsa(void **state)
{
    roundtrip(PC_JWK_EDDSA);
}

/* RFC 8037 A.4: the Ed25519 signature over "eyJhbGciOiJFZERTQSJ9.RXhh..." */
static void test_rfc8037_vector(void **state)
{
    const char *jwk = "{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                      "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}";
    const char *tok = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
                      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvp"
                      "Ar_MuM0KAg";
    const char *err;
    struct pc_jwk k;
    assert_int_equal(pc_jwk_from_text(jwk, strlen(jwk), "k", NULL, &k, &err), 0);
    /* The payload is not a JSON object, so build the parsed form by hand. */
    struct pc_jwt t = {.alg = PC_JWK_EDDSA};
    const char *d2 = strrchr(tok, '.');
    t.signing_len = (size_t)(d2 - tok);
    long n = pc_b64_decode(d2 + 1, strlen(d2 + 1), t.sig);
    assert_int_equal(n, 64);
    t.sig_len = (size_t)n;
    assert_true(pc_jwt_verify(&t, tok, &k, &err));
    t.sig[0] ^= 1;
    assert_false(pc_jwt_verify(&t, tok, &k, &err));
    pc_jwk_free(&k);
}

/* alg none, HS256 and an alg that does not fit the key are all refused */
static void test_alg_confusion(void **state)
{
    struct pc_jwk ec, rsa;
    assert_int_equal(pc_jwk_generate(PC_JWK_ES256, "k", &ec), 0);
    assert_int_equal(pc_jwk_generate(PC_JWK_RS256, "k", &rsa), 0);
    const char *err;
    struct pc_jwt t;
    /* {"alg":"none"}.{"sub":"x"}. */
    const char *none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    assert_int_equal(pc_jwt_parse(none, strlen(none), &t, &err), 0);
    assert_int_equal(t.alg, PC_JWK_NONE);
    assert_false(pc_jwt_verify(&t, none, &ec, &err));
    pc_jwt_free(&t);
    /* {"alg":"HS256"} */
    const char *hs = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    assert_int_equal(pc_jwt_parse(hs, strlen(hs), &t, &err), 0);
    assert_false(pc_jwt_verify(&t, hs, &rsa, &err));
    pc_jwt_free(&t);
    /* an RS256 token checked against an EC key */
    char *tok = pc_jwt_sign(&rsa, "{\"sub\":\"x\"}");
    assert_int_equal(pc_jwt_parse(tok, strlen(tok), &t, &err), 0);
    assert_false(pc_jwt_verify(&t, tok, &ec, &err));
    assert_true(pc_jwt_verify(&t, tok, &rsa, &err));
    pc_jwt_free(&t);
    free(tok);
    pc_jwk_free(&ec);
    pc_jwk_free(&rsa);
}

static void test_parse_refusals(void **state)
{
    const char *err;
    struct pc_jwt t;
    const char *bad[] = {
        "", "a.b", "a.b.c.d", ".eyJzdWIiOiJ4In0.", "eyJhbGciOiJFUzI1NiJ9..",
        "eyJhbGciOiJFUzI1NiJ9.e30+.", "W10.e30.",                /* header [] */
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.",                      /* "not json" */
        "eyJhbGciOjF9.e30.",                                      /* alg 1 */
        "eyJhbGciOiJFUzI1NiIsImNyaXQiOlsiYiJdfQ.e30.",            /* crit */
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++)
        assert_int_equal(pc_jwt_parse(bad[i], strlen(bad[i]), &t, &err), -1);
    char *big = malloc(PC_JWT_MAX + 2);
    memset(big, 'a', PC_JWT_MAX + 1);
    big[10] = big[20] = '.';
    big[PC_JWT_MAX + 1] = '\0';
    assert_int_equal(pc_jwt_parse(big, strlen(big), &t, &err), -1);
    free(big);
}

/* PyJWT before 2.7 writes EC coordinates without leading zero bytes: the
 * same key, read alike (x below 2^248 here: 31 bytes unpadded). */
static void test_ec_short_coordinate(void **state)
{
    const char *padded = "{\"kty\":\"EC\",\"crv\":\"P-256\","
                         "\"x\":\"ANjRxtnVenB8FflTyGPiaWNtu_POVB9OgJdz94iPayo\","
                         "\"y\":\"t-k-HF-s3feVWv9QD3iMS8c74XE3bBemIUEayCI7z98\"}";
    const char *shorter = "{\"kty\":\"EC\",\"crv\":\"P-256\","
                          "\"x\":\"2NHG2dV6cHwV-VPIY-JpY227885UH06Al3P3iI9rKg\","
                          "\"y\":\"t-k-HF-s3feVWv9QD3iMS8c74XE3bBemIUEayCI7z98\"}";
    const char *err;
    struct pc_jwk a, b;
    assert_int_equal(pc_jwk_from_text(padded, strlen(padded), "k", NULL, &a, &err), 0);
    assert_int_equal(pc_jwk_from_text(shorter, strlen(shorter), "k", NULL, &b, &err), 0);
    assert_int_equal(EVP_PKEY_eq(a.pkey, b.pkey), 1);
    /* written back in full */
    struct pc_buf out = {0};
    struct pc_jw w = {.b = &out};
    pc_jwk_write_public(&b, &w);
    assert_non_null(strstr(pc_buf_cstr(&out), "ANjRxtnVenB8FflTyGPiaWNtu_POVB9OgJdz94iPayo"));
    pc_buf_free(&out);
    pc_jwk_free(&a);
    pc_jwk_free(&b);
}

static void test_jwk_refusals(void **state)
{
    const char *err;
    struct pc_jwk k;
    const char *bad[] = {
        "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
        "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"ES256\","
        "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"use\":\"enc\","
        "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
        "{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",     /* far too short */
        "[]",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++)
        assert_int_equal(pc_jwk_from_text(bad[i], strlen(bad[i]), NULL, NULL, &k, &err), -1);
    /* a JWKS skips what it cannot use and keeps the rest */
    const char *set = "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AAAA\"},{\"kid\":\"e\",\"kty\":\"OKP\","
                      "\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}]}";
    struct pc_jwks s;
    assert_int_equal(pc_jwks_parse(set, strlen(set), &s), 0);
    assert_int_equal(s.n, 1);
    assert_non_null(pc_jwks_find(&s, "e"));
    assert_null(pc_jwks_find(&s, "x"));
    pc_jwks_free(&s);
    assert_int_equal(pc_jwks_parse("{}", 2, &s), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_es256),          cmocka_unit_test(test_rs256),
        cmocka_unit_test(test_eddsa),          cmocka_unit_test(test_rfc8037_vector),
        cmocka_unit_test(test_alg_confusion),  cmocka_unit_test(test_parse_refusals),
        cmocka_unit_test(test_jwk_refusals), cmocka_unit_test(test_ec_short_coordinate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
