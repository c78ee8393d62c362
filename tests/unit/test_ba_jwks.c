/* Portcullis - MIT licence. See LICENSE.
 *
 * test_ba_jwks.c: Better Auth's jwks rows: the alg of a row, opening its
 * private key (sealed with symmetricEncrypt, or plain), the seal's accepted
 * forms, and the one rule for which row is our signing key, which authsvc
 * and the gateway both follow.
 */
#include "../../lib/ba_jwks.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

static const char *SECRET_S = "unit-test-secret-0123456789abcdef0123";
static const char *OTHER_S = "another-secret-0123456789abcdef01234";
/* one secret each (no BETTER_AUTH_SECRETS), as most deployments run */
static struct pc_secrets S_SECRET, S_OTHER;

static void test_unseal_forms(void **state)
{
    char *hex = pc_seal(&S_SECRET, "hello", 5);
    size_t n;
    struct pc_buf b = {0};
    pc_buf_printf(&b, "\"%s\"", hex);        /* jwks.privateKey: JSON-quoted */
    char *p = pc_unseal(&S_SECRET, pc_buf_cstr(&b), &n);
    assert_non_null(p);
    assert_string_equal(p, "hello");
    free(p);
    pc_buf_reset(&b);
    pc_buf_printf(&b, "$ba$2$%s", hex);        /* versioned secrets */
    p = pc_unseal(&S_SECRET, pc_buf_cstr(&b), &n);
    assert_non_null(p);
    free(p);
    hex[60] = hex[60] == '0' ? '1' : '0';       /* tampered ciphertext */
    assert_null(pc_unseal(&S_SECRET, hex, &n));
    assert_null(pc_unseal(&S_SECRET, "zz", &n));
    pc_buf_free(&b);
    free(hex);
}

/* jwks rows: the alg from the column or the key; the private key sealed,
 * stored plain (disablePrivateKeyEncryption), or not ours */
static void test_rows(void **state)
{
    const char *t_okp = "{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}";
    const char *t_ec = "{\"kty\":\"EC\",\"crv\":\"P-256\"}", *t_oct = "{\"kty\":\"oct\"}";
    yajl_val okp = pc_json_parse(t_okp, strlen(t_okp));
    yajl_val ec = pc_json_parse(t_ec, strlen(t_ec));
    yajl_val oct = pc_json_parse(t_oct, strlen(t_oct));
    assert_non_null(okp);
    assert_non_null(ec);
    assert_non_null(oct);
    assert_string_equal(pc_jwk_row_alg(NULL, okp), "EdDSA");
    assert_string_equal(pc_jwk_row_alg("", ec), "ES256");
    assert_string_equal(pc_jwk_row_alg("RS256", okp), "RS256");
    assert_null(pc_jwk_row_alg(NULL, oct));
    yajl_tree_free(okp);
    yajl_tree_free(ec);
    yajl_tree_free(oct);

    struct pc_jwk gen, k;
    assert_int_equal(pc_jwk_generate(PC_JWK_ES256, "r1", &gen), 0);
    char *priv = pc_jwk_private_json(&gen);
    char *hex = pc_seal(&S_SECRET, priv, strlen(priv));
    struct pc_buf quoted = {0};
    pc_buf_printf(&quoted, "\"%s\"", hex);
    assert_int_equal(pc_jwk_open_row(&S_SECRET, "r1", "ES256", pc_buf_cstr(&quoted), &k), 0);
    assert_true(k.private_key);
    assert_string_equal(k.kid, "r1");
    pc_jwk_free(&k);
    assert_int_equal(pc_jwk_open_row(&S_SECRET, "r1", "ES256", priv, &k), 0);    /* plain JWK */
    pc_jwk_free(&k);
    assert_int_equal(pc_jwk_open_row(&S_OTHER, "r1", "ES256",
                                     pc_buf_cstr(&quoted), &k), -1);
    assert_int_equal(pc_jwk_open_row(&S_SECRET, "r1", "EdDSA", pc_buf_cstr(&quoted), &k), -1);
    pc_buf_free(&quoted);
    free(hex);
    free(priv);
    pc_jwk_free(&gen);
}


/* A generated key as a row: public JSON, private JSON sealed under secret
 * (JSON-quoted, as authsvc stores it). */
struct keyrow {
    char kid[16];
    char *pub, *priv;
};

static void make_row(struct keyrow *kr, enum pc_jwk_alg alg, const char *kid,
                     const struct pc_secrets *secret)
{
    struct pc_jwk k;
    snprintf(kr->kid, sizeof kr->kid, "%s", kid);
    assert_int_equal(pc_jwk_generate(alg, kid, &k), 0);
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jwk_write_public(&k, &w);
    pc_jw_obj_end(&w);
    kr->pub = pc_xstrdup(pc_buf_cstr(&b));
    pc_buf_reset(&b);
    char *plain = pc_jwk_private_json(&k);
    char *hex = pc_seal(secret, plain, strlen(plain));
    pc_buf_printf(&b, "\"%s\"", hex);
    kr->priv = pc_xstrdup(pc_buf_cstr(&b));
    free(hex);
    free(plain);
    pc_buf_free(&b);
    pc_jwk_free(&k);
}

static void free_row(struct keyrow *kr)
{
    free(kr->pub);
    free(kr->priv);
}

#define NOW 1700000000000LL
#define DAY 86400000LL

static void test_row_current(void **state)
{
    struct pc_jwks_row r = {.kid = "a", .created_at = NOW - 31 * DAY, .expires_at = 0};
    int64_t retire = 0;
    assert_false(pc_jwks_row_current(&r, 30, NOW, &retire));   /* past rotation */
    assert_int_equal(retire, NOW - DAY);
    assert_true(pc_jwks_row_current(&r, 32, NOW, &retire));
    assert_int_equal(retire, NOW + DAY);
    assert_true(pc_jwks_row_current(&r, 0, NOW, &retire));     /* 0: never rotates */
    assert_true(retire == INT64_MAX);
    r.expires_at = NOW;                                         /* expiresAt wins */
    assert_false(pc_jwks_row_current(&r, 0, NOW, &retire));
    r.expires_at = NOW + 1;
    assert_true(pc_jwks_row_current(&r, 1, NOW, &retire));
    assert_int_equal(retire, NOW + 1);
}

static void test_pick_signer(void **state)
{
    struct keyrow ed, es1, es2, foreign;
    make_row(&ed, PC_JWK_EDDSA, "ed", &S_SECRET);
    make_row(&es1, PC_JWK_ES256, "es1", &S_SECRET);
    make_row(&es2, PC_JWK_ES256, "es2", &S_SECRET);
    make_row(&foreign, PC_JWK_ES256, "foreign", &S_OTHER);
    /* newest first, as PC_BA_SQL_JWKS_ROWS orders them */
    struct pc_jwks_row rows[] = {
        {"foreign", "ES256", foreign.pub, foreign.priv, NOW - 1 * DAY, NOW + 29 * DAY},
        {"ed", "EdDSA", ed.pub, ed.priv, NOW - 2 * DAY, NOW + 28 * DAY},
        {"es1", "ES256", es1.pub, es1.priv, NOW - 3 * DAY, NOW + 27 * DAY},
        {"es2", "ES256", es2.pub, es2.priv, NOW - 4 * DAY, NOW + 26 * DAY},
    };
    struct pc_jwk k;
    int64_t retire = 0;
    /* authsvc: the newest current row of JWT_ALG that opens with our secret */
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "ES256", 30, &S_SECRET, NOW, &k, &retire), 2);
    assert_string_equal(k.kid, "es1");
    assert_true(k.private_key);
    assert_int_equal(k.alg, PC_JWK_ES256);
    assert_int_equal(retire, NOW + 27 * DAY);
    pc_jwk_free(&k);
    /* the gateway: the newest current row of any alg that opens */
    assert_int_equal(pc_jwks_pick_signer(rows, 4, NULL, 0, &S_SECRET, NOW, &k, &retire), 1);
    assert_string_equal(k.kid, "ed");
    assert_int_equal(k.alg, PC_JWK_EDDSA);
    pc_jwk_free(&k);
    /* the other secret's row is the one for a replica holding that secret */
    assert_int_equal(pc_jwks_pick_signer(rows, 4, NULL, 0, &S_OTHER, NOW, &k, &retire), 0);
    pc_jwk_free(&k);
    /* expired rows do not sign */
    rows[2].expires_at = NOW;
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "ES256", 30, &S_SECRET, NOW, &k, &retire), 3);
    pc_jwk_free(&k);
    rows[3].expires_at = NOW - 1;
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "ES256", 30, &S_SECRET, NOW, &k, &retire), -1);
    /* a row without expiresAt: current for rotate_days after createdAt */
    rows[3].expires_at = 0;
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "ES256", 3, &S_SECRET, NOW, &k, &retire), -1);
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "ES256", 5, &S_SECRET, NOW, &k, &retire), 3);
    assert_int_equal(retire, NOW + DAY);
    pc_jwk_free(&k);
    /* no alg column (Better Auth before 1.7): the public key says */
    rows[1].alg = NULL;
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "EdDSA", 30, &S_SECRET, NOW, &k, &retire), 1);
    pc_jwk_free(&k);
    rows[1].alg = "";
    rows[1].public_key = "{\"kty\":\"oct\"}";      /* says nothing we sign with */
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "EdDSA", 30, &S_SECRET, NOW, &k, &retire), -1);
    rows[1].public_key = NULL;
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "EdDSA", 30, &S_SECRET, NOW, &k, &retire), -1);
    /* with an alg column, a publicKey that is not a JWK object (not published) */
    rows[1].alg = "EdDSA";
    rows[1].public_key = "not json";
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "EdDSA", 30, &S_SECRET, NOW, &k, &retire), -1);
    rows[1].public_key = ed.pub;
    assert_int_equal(pc_jwks_pick_signer(rows, 4, "EdDSA", 30, &S_SECRET, NOW, &k, &retire), 1);
    pc_jwk_free(&k);
    /* an alg we cannot sign with, even for "any" */
    rows[1].alg = "ES512";
    rows[3].expires_at = NOW - 1;
    assert_int_equal(pc_jwks_pick_signer(rows + 1, 3, NULL, 0, &S_SECRET, NOW, &k, &retire), -1);
    /* an alg column that does not fit the key is not used */
    rows[1].alg = "ES256";
    assert_int_equal(pc_jwks_pick_signer(rows + 1, 3, NULL, 0, &S_SECRET, NOW, &k, &retire), -1);
    assert_int_equal(pc_jwks_pick_signer(rows, 0, NULL, 0, &S_SECRET, NOW, &k, &retire), -1);
    free_row(&ed);
    free_row(&es1);
    free_row(&es2);
    free_row(&foreign);
}

/* BETTER_AUTH_SECRETS: sealed under the current version in Better Auth's
 * envelope, opened by the version it names (a retired one: no), bare hex
 * by the legacy secret; the list's format as Better Auth parses it. */
static void test_versioned_secrets(void **state)
{
    (void)state;
    char *secret = pc_xstrdup(OTHER_S); /* BETTER_AUTH_SECRET: the legacy one */
    struct pc_secrets v;
    char err[200];
    char list[200];
    snprintf(list, sizeof list, " 2:%s , 1:%s", "v2-secret-0123456789abcdef0123456789", SECRET_S);
    assert_int_equal(pc_secrets_load(list, &secret, &v, err, sizeof err), 0);
    assert_string_equal(secret, "v2-secret-0123456789abcdef0123456789"); /* HMAC: current */
    assert_int_equal(v.n, 2);
    char *sealed = pc_seal(&v, "hello", 5);
    assert_true(strncmp(sealed, "$ba$2$", 6) == 0);
    size_t n;
    char *p = pc_unseal(&v, sealed, &n);
    assert_non_null(p);
    assert_string_equal(p, "hello");
    free(p);
    /* what version 1 sealed (our single-secret seal under SECRET_S, enveloped) */
    char *old = pc_seal(&S_SECRET, "old", 3);
    struct pc_buf b = {0};
    pc_buf_printf(&b, "$ba$1$%s", old);
    p = pc_unseal(&v, pc_buf_cstr(&b), &n);
    assert_non_null(p);
    assert_string_equal(p, "old");
    free(p);
    pc_buf_reset(&b);
    pc_buf_printf(&b, "$ba$3$%s", old);           /* a version not listed */
    assert_null(pc_unseal(&v, pc_buf_cstr(&b), &n));
    pc_buf_reset(&b);
    pc_buf_printf(&b, "$ba$2$%s", old);           /* listed, but not its secret */
    assert_null(pc_unseal(&v, pc_buf_cstr(&b), &n));
    assert_null(pc_unseal(&v, old, &n));          /* bare hex: the legacy secret only */
    char *legacy = pc_seal(&S_OTHER, "legacy", 6);
    p = pc_unseal(&v, legacy, &n);
    assert_non_null(p);
    assert_string_equal(p, "legacy");
    free(p);
    pc_secrets_free(&v);
    free(secret);
    /* without BETTER_AUTH_SECRET, bare hex opens with nothing */
    secret = pc_xstrdup("");
    assert_int_equal(pc_secrets_load(list, &secret, &v, err, sizeof err), 0);
    assert_null(pc_unseal(&v, legacy, &n));
    pc_secrets_free(&v);
    free(secret);
    secret = pc_xstrdup("");
    assert_int_equal(pc_secrets_load("", &secret, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "BETTER_AUTH_SECRET: is required"));
    free(secret);
    pc_buf_free(&b);
    free(sealed);
    free(old);
    free(legacy);
    /* the list's format */
    static const struct {
        const char *list, *why;
    } bad[] = {
        {"nocolon0123456789abcdef0123456789abcdef", "<version>:<secret>"},
        {"x:0123456789abcdef0123456789abcdef", "non-negative integer"},
        {"-1:0123456789abcdef0123456789abcdef", "non-negative integer"},
        {"1:short", "at least 32"},
        {"1:0123456789abcdef0123456789abcdef,1:0123456789abcdef0123456789abcdeX", "twice"},
        {"1:0123456789abcdef0123456789abcdef,", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *why = NULL;
        int rc = pc_conf_check_secrets(bad[i].list, &why);
        if (bad[i].why == NULL) {
            assert_int_equal(rc, 0); /* a trailing comma: nothing after it */
            continue;
        }
        assert_int_equal(rc, -1);
        if (strstr(why, bad[i].why) == NULL)
            fail_msg("%s: \"%s\"", bad[i].list, why);
    }
}

static int group_setup(void **state)
{
    (void)state;
    pc_secrets_single(&S_SECRET, SECRET_S);
    pc_secrets_single(&S_OTHER, OTHER_S);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    pc_secrets_free(&S_SECRET);
    pc_secrets_free(&S_OTHER);
    return 0;
}

/* derivePurposeKey and a value Better Auth 1.7.25 sealed with it (node:
 * symmetricEncrypt({key: derivePurposeKey(s, "oauth-link-session-token"),
 * data: "tok123"})); and RFC 5869's first HKDF vector. */
static void test_purpose_key(void **state)
{
    (void)state;
    struct pc_secrets one, derived;
    pc_secrets_single(&one, "0123456789abcdef0123456789abcdef-test-secret");
    pc_secrets_purpose(&one, "oauth-link-session-token", &derived);
    assert_int_equal(derived.n, 0);
    assert_string_equal(derived.legacy,
                        "fa670a514331daa5d7a2a8158b951b39678256b105e24878b1eaf10dea18076c");
    size_t n;
    char *p = pc_unseal(&derived,
                        "d053a9acbdb3bd427c92fb2d62550548ece775564fc61fd6f70e10cad1506ee02de5fc"
                        "532b3306d6f59f55f21949",
                        &n);
    assert_non_null(p);
    assert_string_equal(p, "tok123");
    free(p);
    pc_secrets_free(&derived);
    pc_secrets_free(&one);

    unsigned char ikm[22], salt[13], info[10], okm[42];
    memset(ikm, 0x0b, sizeof ikm);
    for (size_t i = 0; i < sizeof salt; i++)
        salt[i] = (unsigned char)i;
    for (size_t i = 0; i < sizeof info; i++)
        info[i] = (unsigned char)(0xf0 + i);
    pc_hkdf_sha256(ikm, sizeof ikm, salt, sizeof salt, info, sizeof info, okm, sizeof okm);
    char hex[2 * sizeof okm + 1];
    pc_hex_encode(okm, sizeof okm, hex);
    assert_string_equal(hex, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                             "34007208d5b887185865");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unseal_forms),
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_row_current),
        cmocka_unit_test(test_pick_signer),
        cmocka_unit_test(test_versioned_secrets),
        cmocka_unit_test(test_purpose_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
