/* Portcullis - MIT licence. See LICENSE.
 *
 * jws.c: JWKs and JWT parsing/verification/signing. See jws.h for the
 * rules; the short version is that the key decides the algorithm, and a
 * token's header can only agree with it. Better Auth's jwks rows and seal
 * are ba_jwks.c.
 */
#include "jws.h"
#include "crypto.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#define EC_COORD 32     /* P-256 coordinate and scalar bytes */
#define ED_KEY 32       /* Ed25519 public and private key bytes */
#define RSA_MIN_BITS 2048

enum pc_jwk_alg pc_jwk_alg_parse(const char *s)
{
    if (s == NULL)
        return PC_JWK_NONE;
    if (strcmp(s, "ES256") == 0)
        return PC_JWK_ES256;
    if (strcmp(s, "RS256") == 0)
        return PC_JWK_RS256;
    if (strcmp(s, "EdDSA") == 0)
        return PC_JWK_EDDSA;
    return PC_JWK_NONE;
}

const char *pc_jwk_alg_name(enum pc_jwk_alg a)
{
    switch (a) {
    case PC_JWK_ES256:
        return "ES256";
    case PC_JWK_RS256:
        return "RS256";
    case PC_JWK_EDDSA:
        return "EdDSA";
    default:
        return "none";
    }
}

/* ---- base64url members ---- */

/* Decodes the base64url string member name of obj into a heap buffer. */
static unsigned char *member_b64(yajl_val obj, const char *name, size_t *len)
{
    yajl_val v = pc_json_get(obj, name);
    if (!YAJL_IS_STRING(v))
        return NULL;
    size_t n = strlen(v->u.string);
    if (n == 0 || n > 2048)
        return NULL;
    for (size_t i = 0; i < n; i++)     /* base64url only: no '+', '/', '=' */
        if (v->u.string[i] == '+' || v->u.string[i] == '/' || v->u.string[i] == '=')
            return NULL;
    unsigned char *out = pc_xmalloc(n * 3 / 4 + 3);
    long got = pc_b64_decode(v->u.string, n, out);
    if (got <= 0) {
        free(out);
        return NULL;
    }
    *len = (size_t)got;
    return out;
}

static BIGNUM *member_bn(yajl_val obj, const char *name)
{
    size_t n;
    unsigned char *raw = member_b64(obj, name, &n);
    if (raw == NULL)
        return NULL;
    BIGNUM *bn = BN_bin2bn(raw, (int)n, NULL);
    OPENSSL_cleanse(raw, n);
    free(raw);
    return bn;
}

static void put_b64(struct pc_jw *w, const char *key, const unsigned char *raw, size_t n)
{
    char *s = pc_xmalloc(pc_b64_len(n, false) + 1);
    pc_b64url_encode(raw, n, s);
    pc_jw_key(w, key);
    pc_jw_str(w, s);
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static void put_bn(struct pc_jw *w, const EVP_PKEY *pk, const char *param, const char *key,
                   int pad)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pk, param, &bn))
        return;
    int n = pad > 0 ? pad : BN_num_bytes(bn);
    unsigned char *raw = pc_xmalloc((size_t)n + 1);
    if (BN_bn2binpad(bn, raw, n) == n)
        put_b64(w, key, raw, (size_t)n);
    OPENSSL_cleanse(raw, (size_t)n);
    free(raw);
    BN_clear_free(bn);
}

/* ---- keys from JWK ---- */

static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, bool private_key)
{
    EVP_PKEY *pk = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0)
        (void)EVP_PKEY_fromdata(ctx, &pk, private_key ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY,
                                params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *ec_from_jwk(yajl_val obj, bool *private_key, const char **err)
{
    yajl_val crv = pc_json_get(obj, "crv");
    if (!YAJL_IS_STRING(crv) || strcmp(crv->u.string, "P-256") != 0) {
        *err = "EC key is not on P-256";
        return NULL;
    }
    size_t xl = 0, yl = 0, dl = 0;
    unsigned char *x = member_b64(obj, "x", &xl), *y = member_b64(obj, "y", &yl);
    unsigned char *d = member_b64(obj, "d", &dl);
    EVP_PKEY *pk = NULL;
    *err = "bad EC key members";
    /* RFC 7518 wants all 32 bytes, but some libraries (PyJWT before 2.7)
     * write the numbers without their leading zero bytes: about one key in
     * 64 then has a shorter x or y. The value is the same; pad it. */
    if (x && y && xl >= 1 && xl <= EC_COORD && yl >= 1 && yl <= EC_COORD &&
        (d == NULL || (dl >= 1 && dl <= EC_COORD))) {
        unsigned char pt[1 + 2 * EC_COORD] = {0};
        pt[0] = 0x04;
        memcpy(pt + 1 + EC_COORD - xl, x, xl);
        memcpy(pt + 1 + 2 * EC_COORD - yl, y, yl);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        BIGNUM *dbn = d ? BN_bin2bn(d, (int)dl, NULL) : NULL;
        if (bld &&
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt) &&
            (dbn == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, dbn)))
            pk = pkey_fromdata("EC", bld, d != NULL);
        OSSL_PARAM_BLD_free(bld);
        BN_clear_free(dbn);
        *private_key = d != NULL;
    }
    if (d)
        OPENSSL_cleanse(d, dl);
    free(x);
    free(y);
    free(d);
    return pk;
}

static EVP_PKEY *rsa_from_jwk(yajl_val obj, bool *private_key, const char **err)
{
    static const struct {
        const char *jwk, *param;
    } priv[] = {
        {"d", OSSL_PKEY_PARAM_RSA_D},
        {"p", OSSL_PKEY_PARAM_RSA_FACTOR1},
        {"q", OSSL_PKEY_PARAM_RSA_FACTOR2},
        {"dp", OSSL_PKEY_PARAM_RSA_EXPONENT1},
        {"dq", OSSL_PKEY_PARAM_RSA_EXPONENT2},
        {"qi", OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
    };
    BIGNUM *bn[2 + PC_ARRAY_LEN(priv)] = {0};
    EVP_PKEY *pk = NULL;
    *err = "bad RSA key members";
    bn[0] = member_bn(obj, "n");
    bn[1] = member_bn(obj, "e");
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    bool ok = bld && bn[0] && bn[1] && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn[0]) &&
              OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn[1]);
    size_t have = 0;
    for (size_t i = 0; ok && i < PC_ARRAY_LEN(priv); i++) {
        bn[2 + i] = member_bn(obj, priv[i].jwk);
        if (bn[2 + i]) {
            have++;
            ok = OSSL_PARAM_BLD_push_BN(bld, priv[i].param, bn[2 + i]);
        }
    }
    /* A private RSA JWK must carry all of it (RFC 7518 §6.3.2). */
    if (ok && (have == 0 || have == PC_ARRAY_LEN(priv))) {
        pk = pkey_fromdata("RSA", bld, have > 0);
        *private_key = have > 0;
    }
    if (pk && EVP_PKEY_get_bits(pk) < RSA_MIN_BITS) {
        *err = "RSA key shorter than 2048 bits";
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    OSSL_PARAM_BLD_free(bld);
    for (size_t i = 0; i < PC_ARRAY_LEN(bn); i++)
        BN_clear_free(bn[i]);
    return pk;
}

static EVP_PKEY *okp_from_jwk(yajl_val obj, bool *private_key, const char **err)
{
    yajl_val crv = pc_json_get(obj, "crv");
    if (!YAJL_IS_STRING(crv) || strcmp(crv->u.string, "Ed25519") != 0) {
        *err = "OKP key is not Ed25519";
        return NULL;
    }
    size_t xl = 0, dl = 0;
    unsigned char *x = member_b64(obj, "x", &xl), *d = member_b64(obj, "d", &dl);
    EVP_PKEY *pk = NULL;
    *err = "bad Ed25519 key members";
    if (x && xl == ED_KEY && (d == NULL || dl == ED_KEY)) {
        if (d)
            pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, d, dl);
        else
            pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, xl);
        *private_key = d != NULL;
        /* a private JWK whose x does not belong to d is refused */
        unsigned char pub[ED_KEY];
        size_t pl = sizeof pub;
        if (pk && d && (!EVP_PKEY_get_raw_public_key(pk, pub, &pl) || pl != ED_KEY ||
                        memcmp(pub, x, ED_KEY) != 0)) {
            EVP_PKEY_free(pk);
            pk = NULL;
        }
    }
    if (d)
        OPENSSL_cleanse(d, dl);
    free(x);
    free(d);
    return pk;
}

int pc_jwk_from_json(yajl_val obj, const char *kid_override, const char *alg_hint,
                     struct pc_jwk *out, const char **err)
{
    memset(out, 0, sizeof *out);
    *err = "not a JWK object";
    if (!YAJL_IS_OBJECT(obj))
        return -1;
    yajl_val kty = pc_json_get(obj, "kty");
    yajl_val alg = pc_json_get(obj, "alg");
    yajl_val kid = pc_json_get(obj, "kid");
    if (!YAJL_IS_STRING(kty)) {
        *err = "JWK without kty";
        return -1;
    }
    const char *want = YAJL_IS_STRING(alg) ? alg->u.string : alg_hint;
    bool priv = false;
    if (strcmp(kty->u.string, "EC") == 0) {
        out->alg = PC_JWK_ES256;
        out->pkey = ec_from_jwk(obj, &priv, err);
    } else if (strcmp(kty->u.string, "RSA") == 0) {
        out->alg = PC_JWK_RS256;
        out->pkey = rsa_from_jwk(obj, &priv, err);
    } else if (strcmp(kty->u.string, "OKP") == 0) {
        out->alg = PC_JWK_EDDSA;
        out->pkey = okp_from_jwk(obj, &priv, err);
    } else {
        *err = "unsupported kty";
        return -1;
    }
    if (out->pkey == NULL)
        return -1;
    /* A declared alg must name this key type's algorithm (no PS256 on an
     * RSA key we would then verify as RS256, no ES384 on P-256...). */
    if (want && *want && pc_jwk_alg_parse(want) != out->alg) {
        *err = "JWK alg does not match its key type";
        pc_jwk_free(out);
        return -1;
    }
    yajl_val use = pc_json_get(obj, "use");
    if (YAJL_IS_STRING(use) && strcmp(use->u.string, "sig") != 0) {
        *err = "JWK is not for signatures";
        pc_jwk_free(out);
        return -1;
    }
    const char *k = kid_override ? kid_override : YAJL_IS_STRING(kid) ? kid->u.string : "";
    if (strlen(k) >= sizeof out->kid) {
        *err = "kid too long";
        pc_jwk_free(out);
        return -1;
    }
    strcpy(out->kid, k);
    out->private_key = priv;
    return 0;
}

int pc_jwk_from_text(const char *json, size_t n, const char *kid_override, const char *alg_hint,
                     struct pc_jwk *out, const char **err)
{
    yajl_val v = pc_json_parse(json, n);
    if (v == NULL) {
        memset(out, 0, sizeof *out);
        *err = "JWK is not JSON";
        return -1;
    }
    int rc = pc_jwk_from_json(v, kid_override, alg_hint, out, err);
    yajl_tree_free(v);
    return rc;
}

int pc_jwk_generate(enum pc_jwk_alg alg, const char *kid, struct pc_jwk *out)
{
    memset(out, 0, sizeof *out);
    if (strlen(kid) >= sizeof out->kid)
        return -1;
    EVP_PKEY *pk = NULL;
    switch (alg) {
    case PC_JWK_ES256:
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "prime256v1");
        break;
    case PC_JWK_RS256:
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)RSA_MIN_BITS);
        break;
    case PC_JWK_EDDSA:
        pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        break;
    default:
        return -1;
    }
    if (pk == NULL)
        return -1;
    out->pkey = pk;
    out->alg = alg;
    out->private_key = true;
    strcpy(out->kid, kid);
    return 0;
}

void pc_jwk_free(struct pc_jwk *k)
{
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof *k);
}

/* Members in the order Better Auth's jose export writes them. */
static void write_members(const struct pc_jwk *k, struct pc_jw *w, bool with_private)
{
    switch (k->alg) {
    case PC_JWK_ES256: {
        pc_jw_key(w, "kty");
        pc_jw_str(w, "EC");
        pc_jw_key(w, "crv");
        pc_jw_str(w, "P-256");
        put_bn(w, k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, "x", EC_COORD);
        put_bn(w, k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, "y", EC_COORD);
        if (with_private)
            put_bn(w, k->pkey, OSSL_PKEY_PARAM_PRIV_KEY, "d", EC_COORD);
        break;
    }
    case PC_JWK_RS256:
        pc_jw_key(w, "kty");
        pc_jw_str(w, "RSA");
        put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_N, "n", 0);
        put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_E, "e", 0);
        if (with_private) {
            put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_D, "d", 0);
            put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_FACTOR1, "p", 0);
            put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_FACTOR2, "q", 0);
            put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_EXPONENT1, "dp", 0);
            put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_EXPONENT2, "dq", 0);
            put_bn(w, k->pkey, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, "qi", 0);
        }
        break;
    case PC_JWK_EDDSA: {
        unsigned char raw[ED_KEY];
        size_t n = sizeof raw;
        pc_jw_key(w, "crv");
        pc_jw_str(w, "Ed25519");
        if (with_private && EVP_PKEY_get_raw_private_key(k->pkey, raw, &n) && n == ED_KEY)
            put_b64(w, "d", raw, n);
        n = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &n) && n == ED_KEY)
            put_b64(w, "x", raw, n);
        OPENSSL_cleanse(raw, sizeof raw);
        pc_jw_key(w, "kty");
        pc_jw_str(w, "OKP");
        break;
    }
    default:
        break;
    }
}

void pc_jwk_write_public(const struct pc_jwk *k, struct pc_jw *w)
{
    write_members(k, w, false);
}

char *pc_jwk_private_json(const struct pc_jwk *k)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    write_members(k, &w, true);
    pc_jw_obj_end(&w);
    char *s = pc_xstrdup(pc_buf_cstr(&b));
    OPENSSL_cleanse(b.data, b.cap);
    pc_buf_free(&b);
    return s;
}

int pc_jwks_parse(const char *json, size_t n, struct pc_jwks *out)
{
    memset(out, 0, sizeof *out);
    yajl_val v = pc_json_parse(json, n);
    yajl_val keys = v ? pc_json_get(v, "keys") : NULL;
    if (!YAJL_IS_ARRAY(keys)) {
        yajl_tree_free(v);
        return -1;
    }
    out->keys = pc_xcalloc(keys->u.array.len + 1, sizeof *out->keys);
    for (size_t i = 0; i < keys->u.array.len; i++) {
        const char *err;
        struct pc_jwk k;
        if (pc_jwk_from_json(keys->u.array.values[i], NULL, NULL, &k, &err) != 0)
            continue;
        if (k.private_key) {    /* a published private key is not used */
            pc_jwk_free(&k);
            continue;
        }
        out->keys[out->n++] = k;
    }
    yajl_tree_free(v);
    return 0;
}

const struct pc_jwk *pc_jwks_find(const struct pc_jwks *s, const char *kid)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->keys[i].kid, kid) == 0)
            return &s->keys[i];
    return NULL;
}

void pc_jwks_free(struct pc_jwks *s)
{
    for (size_t i = 0; i < s->n; i++)
        pc_jwk_free(&s->keys[i]);
    free(s->keys);
    memset(s, 0, sizeof *s);
}

/* ---- tokens ---- */

static bool b64url_part(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static yajl_val decode_object(const char *s, size_t n)
{
    char *raw = pc_xmalloc(n * 3 / 4 + 4);
    long got = pc_b64_decode(s, n, (unsigned char *)raw);
    yajl_val v = got > 0 ? pc_json_parse(raw, (size_t)got) : NULL;
    free(raw);
    if (v && !YAJL_IS_OBJECT(v)) {
        yajl_tree_free(v);
        v = NULL;
    }
    return v;
}

int pc_jwt_parse(const char *tok, size_t n, struct pc_jwt *out, const char **err)
{
    memset(out, 0, sizeof *out);
    if (n > PC_JWT_MAX) {
        *err = "token too large";
        return -1;
    }
    const char *d1 = memchr(tok, '.', n);
    const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - tok)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - tok)) != NULL) {
        *err = "a JWT has three parts";
        return -1;
    }
    size_t hl = (size_t)(d1 - tok), pl = (size_t)(d2 - d1 - 1), sl = n - (size_t)(d2 + 1 - tok);
    if (hl == 0 || pl == 0 || !b64url_part(tok, hl) ||
        !b64url_part(d1 + 1, pl) || !b64url_part(d2 + 1, sl)) {
        *err = "JWT parts are not base64url";
        return -1;
    }
    if (sl * 3 / 4 > sizeof out->sig) {
        *err = "signature too large";
        return -1;
    }
    out->header = decode_object(tok, hl);
    out->claims = out->header ? decode_object(d1 + 1, pl) : NULL;
    if (out->claims == NULL) {
        *err = "JWT header or payload is not a JSON object";
        pc_jwt_free(out);
        return -1;
    }
    long sg = sl ? pc_b64_decode(d2 + 1, sl, out->sig) : 0;
    if (sg < 0) {
        *err = "bad signature encoding";
        pc_jwt_free(out);
        return -1;
    }
    out->sig_len = (size_t)sg;
    out->signing_len = (size_t)(d2 - tok);
    yajl_val alg = pc_json_get(out->header, "alg");
    yajl_val kid = pc_json_get(out->header, "kid");
    if (!YAJL_IS_STRING(alg) || strlen(alg->u.string) >= sizeof out->alg_name ||
        (kid && (!YAJL_IS_STRING(kid) || strlen(kid->u.string) >= sizeof out->kid))) {
        *err = "JWT header needs a string alg (and kid)";
        pc_jwt_free(out);
        return -1;
    }
    strcpy(out->alg_name, alg->u.string);
    out->alg = pc_jwk_alg_parse(alg->u.string);
    if (kid)
        strcpy(out->kid, kid->u.string);
    /* "crit" names extensions we would have to understand: we understand none */
    if (pc_json_get(out->header, "crit") != NULL) {
        *err = "JWT header has crit";
        pc_jwt_free(out);
        return -1;
    }
    return 0;
}

void pc_jwt_free(struct pc_jwt *t)
{
    yajl_tree_free(t->header);
    yajl_tree_free(t->claims);
    t->header = t->claims = NULL;
}

/* JOSE ES256 signatures are r || s; OpenSSL wants DER. */
static unsigned char *es256_der(const unsigned char *sig, size_t n, size_t *der_len)
{
    if (n != 2 * EC_COORD)
        return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, EC_COORD, NULL), *s = BN_bin2bn(sig + EC_COORD, EC_COORD, NULL);
    unsigned char *der = NULL;
    if (es && r && s && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL;   /* owned by es now */
        int len = i2d_ECDSA_SIG(es, &der);
        if (len > 0)
            *der_len = (size_t)len;
        else
            der = NULL;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return der;
}

bool pc_jws_verify_sig(const struct pc_jwk *key, enum pc_jwk_alg alg, const unsigned char *msg,
                       size_t msg_len, const unsigned char *sig, size_t sig_len, const char **err)
{
    if (alg == PC_JWK_NONE || key->pkey == NULL) {
        *err = "algorithm not allowed";
        return false;
    }
    if (alg != key->alg) {
        *err = "token alg does not match the key";
        return false;
    }
    unsigned char *der = NULL;
    if (alg == PC_JWK_ES256) {
        der = es256_der(sig, sig_len, &sig_len);
        if (der == NULL) {
            *err = "bad signature";
            return false;
        }
        sig = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const char *md = alg == PC_JWK_EDDSA ? NULL : "SHA256";
    bool ok = ctx && EVP_DigestVerifyInit_ex(ctx, NULL, md, NULL, NULL, key->pkey, NULL) == 1 &&
              EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    if (!ok)
        *err = "bad signature";
    return ok;
}

bool pc_jwt_verify(const struct pc_jwt *t, const char *tok, const struct pc_jwk *key,
                   const char **err)
{
    return pc_jws_verify_sig(key, t->alg, (const unsigned char *)tok, t->signing_len, t->sig,
                             t->sig_len, err);
}

bool pc_jwt_claim_num(const struct pc_jwt *t, const char *name, int64_t *out)
{
    yajl_val v = pc_json_get(t->claims, name);
    if (v == NULL || !YAJL_IS_NUMBER(v))
        return false;
    if (YAJL_IS_INTEGER(v))
        *out = v->u.number.i;
    else if (v->u.number.d > -9e15 && v->u.number.d < 9e15)
        *out = (int64_t)v->u.number.d;
    else
        return false;
    return true;
}

const char *pc_jwt_claim_str(const struct pc_jwt *t, const char *name)
{
    yajl_val v = pc_json_get(t->claims, name);
    return YAJL_IS_STRING(v) ? v->u.string : NULL;
}

static bool aud_ok(const struct pc_jwt *t, const struct pc_jwt_expect *e)
{
    yajl_val aud = pc_json_get(t->claims, "aud");
    size_t n = 0;
    yajl_val *vals = NULL;
    if (YAJL_IS_STRING(aud)) {
        vals = &aud;
        n = 1;
    } else if (YAJL_IS_ARRAY(aud)) {
        vals = aud->u.array.values;
        n = aud->u.array.len;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; YAJL_IS_STRING(vals[i]) && j < e->naudiences; j++)
            if (strcmp(vals[i]->u.string, e->audiences[j]) == 0)
                return true;
    return false;
}

enum pc_jwt_claims_result pc_jwt_check_claims(const struct pc_jwt *t,
                                              const struct pc_jwt_expect *e)
{
    int64_t exp = 0, nbf = 0, iat = 0;
    bool has_exp = pc_jwt_claim_num(t, "exp", &exp);
    if ((pc_json_get(t->claims, "exp") && !has_exp) || (e->require_exp && !has_exp))
        return PC_JWT_CLAIMS_MALFORMED;
    bool has_nbf = pc_jwt_claim_num(t, "nbf", &nbf);
    if (pc_json_get(t->claims, "nbf") && !has_nbf)
        return PC_JWT_CLAIMS_MALFORMED;
    if (pc_json_get(t->claims, "iat") && !pc_jwt_claim_num(t, "iat", &iat))
        return PC_JWT_CLAIMS_MALFORMED;
    if (has_exp && exp + e->leeway <= e->now)
        return PC_JWT_CLAIMS_EXPIRED;
    if (has_nbf && nbf > e->now + e->leeway)
        return PC_JWT_CLAIMS_NOT_YET_VALID;
    if (e->issuer) {
        const char *iss = pc_jwt_claim_str(t, "iss");
        if (iss == NULL || strcmp(iss, e->issuer) != 0)
            return PC_JWT_CLAIMS_BAD_ISSUER;
    }
    if (e->naudiences > 0 && !aud_ok(t, e))
        return PC_JWT_CLAIMS_BAD_AUDIENCE;
    return PC_JWT_CLAIMS_OK;
}

/* ---- signing ---- */

/* ES256: OpenSSL's DER ECDSA-Sig-Value to JWS's fixed 64 bytes, r || s. */
static bool ecdsa_der_to_raw(const unsigned char *der, size_t dl, unsigned char raw[64])
{
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &der, (long)dl);
    if (es == NULL)
        return false;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    bool ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(es);
    return ok;
}

/* header.payload.signature with the parsed key (no PEM per token). */
static char *sign_openssl(const struct pc_jwk *key, const char *payload_json)
{
    static const char *const names[] = {[PC_JWK_ES256] = "ES256", [PC_JWK_RS256] = "RS256",
                                        [PC_JWK_EDDSA] = "EdDSA"};
    struct pc_buf h = {0};
    struct pc_jw w = {.b = &h};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "alg");
    pc_jw_str(&w, names[key->alg]);
    pc_jw_key(&w, "kid");
    pc_jw_str(&w, key->kid);
    pc_jw_key(&w, "typ");
    pc_jw_str(&w, "JWT");
    pc_jw_obj_end(&w);
    size_t hn = h.len, pn = strlen(payload_json);
    struct pc_buf out = {0};
    char *tmp = pc_xmalloc(pc_b64_len(hn > pn ? hn : pn, false) + 1);
    pc_b64url_encode((const unsigned char *)pc_buf_cstr(&h), hn, tmp);
    pc_buf_puts(&out, tmp);
    pc_buf_putc(&out, '.');
    pc_b64url_encode((const unsigned char *)payload_json, pn, tmp);
    pc_buf_puts(&out, tmp);
    free(tmp);
    pc_buf_free(&h);
    /* EdDSA signs the message itself; the others SHA-256 of it */
    const char *md = key->alg == PC_JWK_EDDSA ? NULL : "SHA256";
    size_t sl = (size_t)EVP_PKEY_get_size(key->pkey);
    unsigned char *sig = pc_xmalloc(sl + 1);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestSignInit_ex(ctx, NULL, md, NULL, NULL, key->pkey, NULL) == 1 &&
              EVP_DigestSign(ctx, sig, &sl, (const unsigned char *)pc_buf_cstr(&out), out.len) == 1;
    EVP_MD_CTX_free(ctx);
    unsigned char raw[64];
    if (ok && key->alg == PC_JWK_ES256) {
        ok = ecdsa_der_to_raw(sig, sl, raw);
        memcpy(sig, raw, sizeof raw);
        sl = sizeof raw;
    }
    char *res = NULL;
    if (ok) {
        char *s64 = pc_xmalloc(pc_b64_len(sl, false) + 1);
        pc_b64url_encode(sig, sl, s64);
        pc_buf_putc(&out, '.');
        pc_buf_puts(&out, s64);
        free(s64);
        res = pc_xstrdup(pc_buf_cstr(&out));
    }
    free(sig);
    pc_buf_free(&out);
    return res;
}

char *pc_jwt_sign(const struct pc_jwk *key, const char *payload_json)
{
    if (!key->private_key || key->pkey == NULL || key->alg == PC_JWK_NONE)
        return NULL;
    return sign_openssl(key, payload_json);
}
