/* Portcullis - MIT licence. See LICENSE.
 *
 * test_jose_vectors.c: standard vectors for the JOSE code, read from the
 * data files in tests/vectors/jose/ (README.md there names every source):
 *
 *   RFC 7515 appendix A   A.2 RS256 and A.3 ES256 verify; A.1 HS256, A.4
 *                         ES512 and A.5 none are refused; every token is
 *                         also tried against every other example key
 *   RFC 7517 appendix     example keys and key sets: what is imported, what
 *                         is refused (enc keys, oct keys), what a set keeps
 *   RFC 7520 (cookbook)   §3 keys and §4 signatures: RS256 verifies,
 *                         PS384, ES512 and HS256 are refused
 *   RFC 8037 A.4          Ed25519 (from the cookbook's curve25519 file)
 *   Wycheproof            ECDSA P-256 SHA-256 (P1363 r||s, and the DER file,
 *                         which ES256 must refuse whole), RSA PKCS#1 v1.5
 *                         2048 SHA-256, Ed25519
 *
 * Tokens whose payload is a JSON object go through pc_jwt_parse and
 * pc_jwt_verify. Everything else (Wycheproof signs arbitrary msg bytes, and
 * the cookbook's payload is text) goes through pc_jws_verify_sig, the
 * primitive under pc_jwt_verify, and through pc_jwt_verify with the token
 * fields filled in by hand; the two must agree. Keys always go through
 * pc_jwk_from_json: the file's JWK when it has one, and a JWK built from the
 * raw key material, which must give the same key.
 *
 * Run from the repository root (scripts/run-unit.sh does): the data files
 * are opened by relative path. The counts are printed at the end.
 */
#include "../../lib/crypto.h"
#include "../../lib/json.h"
#include "../../lib/jws.h"
#include "../../lib/util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#define VEC "tests/vectors/jose/"

/* ---- counts ---- */

enum { T_7515, T_7517, T_7520, T_8037, T_WP_P1363, T_WP_DER, T_WP_RSA, T_WP_ED, T_N };

struct tally {
    const char *name;
    unsigned total, passed, failed; /* vectors and extra checks */
    unsigned vectors, vec_passed;   /* the sources' own cases */
    unsigned vec_ok, vec_refused;   /* ... expected accepted / refused */
};

enum kind { VECTOR, CHECK }; /* a source's case, or one derived from it */

static struct tally tallies[T_N] = {
    [T_7515] = {"RFC 7515 appendix A"},
    [T_7517] = {"RFC 7517 appendix keys/sets"},
    [T_7520] = {"RFC 7520 cookbook"},
    [T_8037] = {"RFC 8037 A.4 Ed25519"},
    [T_WP_P1363] = {"Wycheproof ECDSA P-256 P1363"},
    [T_WP_DER] = {"Wycheproof ECDSA P-256 DER (ES256 refuses)"},
    [T_WP_RSA] = {"Wycheproof RSA PKCS#1 2048 SHA-256"},
    [T_WP_ED] = {"Wycheproof Ed25519"},
};

/* One outcome: want is the expected one (true: accepted/verified). */
static void record(int src, enum kind kind, const char *id, bool want, bool got, const char *why)
{
    struct tally *t = &tallies[src];
    t->total++;
    if (kind == VECTOR) {
        t->vectors++;
        t->vec_passed += want == got;
        if (want)
            t->vec_ok++;
        else
            t->vec_refused++;
    }
    if (want == got) {
        t->passed++;
        return;
    }
    t->failed++;
    fprintf(stderr, "  FAIL %s %s: expected %s, got %s (%s)\n", t->name, id,
            want ? "accepted" : "refused", got ? "accepted" : "refused", why ? why : "");
}

/* ---- files and encodings ---- */

static yajl_val load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s (run from the repository root)", path);
    struct pc_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        pc_buf_append(&b, chunk, got);
    fclose(f);
    yajl_val v = pc_json_parse(b.data, b.len);
    pc_buf_free(&b);
    if (v == NULL)
        fail_msg("%s is not JSON", path);
    return v;
}

static const char *str(yajl_val obj, const char *key)
{
    yajl_val v = pc_json_get(obj, key);
    return YAJL_IS_STRING(v) ? v->u.string : NULL;
}

static yajl_val arr(yajl_val obj, const char *key)
{
    yajl_val v = pc_json_get(obj, key);
    assert_true(YAJL_IS_ARRAY(v));
    return v;
}

/* Hex to a heap buffer (never NULL, so that empty messages work). */
static unsigned char *unhex(const char *hex, size_t *n)
{
    size_t l = strlen(hex);
    assert_int_equal(l % 2, 0);
    unsigned char *out = pc_xmalloc(l / 2 + 1);
    for (size_t i = 0; i < l / 2; i++) {
        int hi = pc_hexval(hex[2 * i]), lo = pc_hexval(hex[2 * i + 1]);
        assert_true(hi >= 0 && lo >= 0);
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    *n = l / 2;
    return out;
}

static unsigned char *unb64(const char *s, size_t *n)
{
    size_t l = strlen(s);
    unsigned char *out = pc_xmalloc(l * 3 / 4 + 3);
    long got = pc_b64_decode(s, l, out);
    assert_true(got >= 0);
    *n = (size_t)got;
    return out;
}

/* Writes a yajl tree back as JSON text (the key set documents). */
static void emit(struct pc_jw *w, yajl_val v)
{
    if (YAJL_IS_OBJECT(v)) {
        pc_jw_obj_begin(w);
        for (size_t i = 0; i < v->u.object.len; i++) {
            pc_jw_key(w, v->u.object.keys[i]);
            emit(w, v->u.object.values[i]);
        }
        pc_jw_obj_end(w);
    } else if (YAJL_IS_ARRAY(v)) {
        pc_jw_arr_begin(w);
        for (size_t i = 0; i < v->u.array.len; i++)
            emit(w, v->u.array.values[i]);
        pc_jw_arr_end(w);
    } else if (YAJL_IS_STRING(v)) {
        pc_jw_str(w, v->u.string);
    } else if (YAJL_IS_INTEGER(v)) {
        pc_jw_int(w, v->u.number.i);
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        pc_jw_bool(w, YAJL_IS_TRUE(v));
    } else {
        assert_true(YAJL_IS_NULL(v));
        pc_jw_null(w);
    }
}

static char *to_text(yajl_val v)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    emit(&w, v);
    char *s = pc_xstrdup(pc_buf_cstr(&b));
    pc_buf_free(&b);
    return s;
}

/* Appends "key":"base64url(raw)" to an open JWK object. */
static void put_b64url(struct pc_jw *w, const char *key, const unsigned char *raw, size_t n)
{
    char *s = pc_xmalloc(pc_b64_len(n, false) + 1);
    pc_b64url_encode(raw, n, s);
    pc_jw_key(w, key);
    pc_jw_str(w, s);
    free(s);
}

/* Big-endian hex to the JWK form: leading zero bytes dropped, then (when
 * width > 0) left-padded to width bytes, as RFC 7518 §6.2.1.2 wants for EC
 * coordinates; RSA numbers keep no leading zeros (§6.3.1.1). */
static void put_hex_num(struct pc_jw *w, const char *key, const char *hex, size_t width)
{
    size_t n;
    unsigned char *raw = unhex(hex, &n), *p = raw;
    while (n > 1 && *p == 0) {
        p++;
        n--;
    }
    if (width > 0 && n < width) {
        unsigned char *pad = pc_xcalloc(width, 1);
        memcpy(pad + width - n, p, n);
        put_b64url(w, key, pad, width);
        free(pad);
    } else {
        put_b64url(w, key, p, n);
    }
    free(raw);
}

/* ---- the checks ---- */

/* sig over msg with key as alg: through pc_jws_verify_sig and through
 * pc_jwt_verify with a token filled in by hand; they must agree. */
static bool check_sig(const struct pc_jwk *k, enum pc_jwk_alg alg, const unsigned char *msg,
                      size_t n, const unsigned char *sig, size_t sl, const char **why)
{
    const char *e1 = "", *e2 = "";
    bool a = pc_jws_verify_sig(k, alg, msg, n, sig, sl, &e1);
    struct pc_jwt t = {.alg = alg, .signing_len = n, .sig_len = sl};
    bool b = false;
    if (sl <= sizeof t.sig) { /* pc_jwt_parse refuses a larger one */
        memcpy(t.sig, sig, sl);
        b = pc_jwt_verify(&t, (const char *)msg, k, &e2);
    }
    assert_true(a == b);
    *why = a ? "verified" : e1;
    return a;
}

/* The alg named by a base64url header (for tokens pc_jwt_parse refuses
 * because the payload is not a JSON object). */
static enum pc_jwk_alg header_alg(const char *b64, size_t n)
{
    char *raw = pc_xmalloc(n * 3 / 4 + 3);
    long got = pc_b64_decode(b64, n, (unsigned char *)raw);
    assert_true(got > 0);
    yajl_val h = pc_json_parse(raw, (size_t)got);
    free(raw);
    assert_non_null(h);
    enum pc_jwk_alg a = pc_jwk_alg_parse(str(h, "alg"));
    yajl_tree_free(h);
    return a;
}

/* A compact token with key (NULL: none could be imported). Tokens that
 * pc_jwt_parse takes go the whole way: parse, verify; the others through
 * check_sig on their signing input. */
static bool check_compact(const char *tok, const struct pc_jwk *key, const char **why)
{
    if (key == NULL) {
        *why = "no usable key";
        return false;
    }
    size_t n = strlen(tok);
    const char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');
    assert_true(d1 != NULL && d2 != NULL && d2 > d1);
    struct pc_jwt t;
    const char *err = "";
    if (pc_jwt_parse(tok, n, &t, &err) == 0) {
        bool ok = pc_jwt_verify(&t, tok, key, &err);
        /* the primitive says the same over the same bytes */
        const char *e2;
        assert_true(ok == pc_jws_verify_sig(key, t.alg, (const unsigned char *)tok, t.signing_len,
                                            t.sig, t.sig_len, &e2));
        pc_jwt_free(&t);
        *why = ok ? "verified" : err;
        return ok;
    }
    size_t sl;
    unsigned char *sig = unb64(d2 + 1, &sl);
    bool ok = check_sig(key, header_alg(tok, (size_t)(d1 - tok)), (const unsigned char *)tok,
                        (size_t)(d2 - tok), sig, sl, why);
    free(sig);
    return ok;
}

static bool import(yajl_val jwk, struct pc_jwk *out, const char **why)
{
    if (jwk == NULL || YAJL_IS_NULL(jwk)) {
        memset(out, 0, sizeof *out);
        *why = "no key";
        return false;
    }
    return pc_jwk_from_json(jwk, NULL, NULL, out, why) == 0;
}

/* ---- RFC 7515 ---- */

static void test_rfc7515(void **state)
{
    yajl_val doc = load(VEC "rfc7515_appendix_a.json");
    yajl_val vs = arr(doc, "vectors");
    size_t nv = vs->u.array.len;
    struct pc_jwk *keys = pc_xcalloc(nv, sizeof *keys);
    bool *have = pc_xcalloc(nv, sizeof *have);
    char id[128];
    for (size_t i = 0; i < nv; i++) {
        yajl_val v = vs->u.array.values[i];
        const char *sec = str(v, "section"), *expect = str(v, "expect"), *why = "";
        have[i] = import(pc_json_get(v, "jwk"), &keys[i], &why);
        bool ok = check_compact(str(v, "compact"), have[i] ? &keys[i] : NULL, &why);
        snprintf(id, sizeof id, "%s (%s)", sec, str(v, "alg"));
        record(T_7515, VECTOR, id, strcmp(expect, "verified") == 0, ok, why);
    }
    /* every token against every other example key: only its own verifies */
    for (size_t i = 0; i < nv; i++)
        for (size_t k = 0; k < nv; k++) {
            if (k == i || !have[k])
                continue;
            const char *why = "";
            yajl_val v = vs->u.array.values[i];
            bool ok = check_compact(str(v, "compact"), &keys[k], &why);
            snprintf(id, sizeof id, "%s token with the %s key", str(v, "section"),
                     str(vs->u.array.values[k], "section"));
            record(T_7515, CHECK, id, false, ok, why);
            /* and for the right reason: an alg we refuse, or not the key's */
            const char *reason = pc_jwk_alg_parse(str(v, "alg")) == PC_JWK_NONE
                                     ? "algorithm not allowed"
                                     : "token alg does not match the key";
            snprintf(id, sizeof id, "%s token with the %s key refused as \"%s\"", str(v, "section"),
                     str(vs->u.array.values[k], "section"), reason);
            record(T_7515, CHECK, id, true, !ok && strcmp(why, reason) == 0, why);
        }
    /* A.2's claims: exp 1300819380 */
    const char *a2 = str(vs->u.array.values[1], "compact"), *err;
    struct pc_jwt t;
    assert_int_equal(pc_jwt_parse(a2, strlen(a2), &t, &err), 0);
    struct pc_jwt_expect e = {.now = 1300819379, .require_exp = true};
    record(T_7515, CHECK, "A.2 claims one second before exp", true,
           pc_jwt_check_claims(&t, &e) == PC_JWT_CLAIMS_OK, "");
    e.now = 1300819380;
    record(T_7515, CHECK, "A.2 claims at exp", false,
           pc_jwt_check_claims(&t, &e) == PC_JWT_CLAIMS_OK, "");
    record(T_7515, CHECK, "A.2 iss claim", true, strcmp(pc_jwt_claim_str(&t, "iss"), "joe") == 0,
           "");
    pc_jwt_free(&t);
    for (size_t i = 0; i < nv; i++)
        if (have[i])
            pc_jwk_free(&keys[i]);
    free(keys);
    free(have);
    yajl_tree_free(doc);
    assert_int_equal(tallies[T_7515].failed, 0);
}

/* ---- RFC 7517 ---- */

static void test_rfc7517(void **state)
{
    yajl_val doc = load(VEC "rfc7517_appendix.json");
    yajl_val ks = arr(doc, "keys");
    char id[160];
    for (size_t i = 0; i < ks->u.array.len; i++) {
        yajl_val v = ks->u.array.values[i];
        struct pc_jwk k;
        const char *why = "imported";
        bool ok = import(pc_json_get(v, "jwk"), &k, &why);
        bool want = strcmp(str(v, "expect"), "accepted") == 0;
        if (ok && want) {
            /* the alg and the private flag are what the RFC says */
            yajl_val priv = pc_json_get(v, "private");
            if (k.alg != pc_jwk_alg_parse(str(v, "alg")) || YAJL_IS_TRUE(priv) != k.private_key) {
                why = "wrong alg or private flag";
                ok = false;
            }
        }
        snprintf(id, sizeof id, "%s %s", str(v, "section"), str(v, "what"));
        record(T_7517, VECTOR, id, want, ok, why);
        if (k.pkey)
            pc_jwk_free(&k);
    }
    yajl_val sets = arr(doc, "sets");
    for (size_t i = 0; i < sets->u.array.len; i++) {
        yajl_val v = sets->u.array.values[i];
        char *text = to_text(pc_json_get(v, "jwks"));
        struct pc_jwks s;
        bool ok = pc_jwks_parse(text, strlen(text), &s) == 0;
        yajl_val kids = arr(v, "expect_kids");
        ok = ok && s.n == kids->u.array.len;
        for (size_t j = 0; ok && j < s.n; j++)
            ok = strcmp(s.keys[j].kid, kids->u.array.values[j]->u.string) == 0;
        snprintf(id, sizeof id, "%s key set keeps the expected keys", str(v, "section"));
        record(T_7517, CHECK, id, true, ok, str(v, "why"));
        pc_jwks_free(&s);
        free(text);
    }
    yajl_tree_free(doc);
    assert_int_equal(tallies[T_7517].failed, 0);
}

/* ---- RFC 7520 (the JOSE cookbook's machine-readable files) ---- */

static const struct {
    const char *file;
    bool accepted;
} cookbook_keys[] = {
    {"3_1.ec_public_key.json", false},  /* P-521 */
    {"3_2.ec_private_key.json", false}, /* P-521 */
    {"3_3.rsa_public_key.json", true},
    {"3_4.rsa_private_key.json", true},
    {"3_5.symmetric_key_mac_computation.json", false}, /* oct */
    {"3_6.symmetric_key_encryption.json", false},      /* oct, enc */
};

/* per signature of each file, in order: does it verify */
static const struct {
    const char *file;
    bool verified[3];
} cookbook_sigs[] = {
    {"4_1.rsa_v15_signature.json", {true}},                  /* RS256 */
    {"4_2.rsa-pss_signature.json", {false}},                 /* PS384: not implemented */
    {"4_3.ecdsa_signature.json", {false}},                   /* ES512: not implemented */
    {"4_4.hmac-sha2_integrity_protection.json", {false}},    /* HS256: refused */
    {"4_5.signature_with_detached_content.json", {false}},   /* HS256 */
    {"4_6.protecting_specific_header_fields.json", {false}}, /* HS256 */
    {"4_7.protecting_content_only.json", {false}},           /* HS256, alg unprotected */
    {"4_8.multiple_signatures.json", {true, false, false}},  /* RS256, ES512, HS256 */
};

static void test_rfc7520(void **state)
{
    char path[256], id[200];
    for (size_t i = 0; i < PC_ARRAY_LEN(cookbook_keys); i++) {
        snprintf(path, sizeof path, VEC "rfc7520/%s", cookbook_keys[i].file);
        yajl_val doc = load(path);
        struct pc_jwk k;
        const char *why = "imported";
        bool ok = import(doc, &k, &why);
        snprintf(id, sizeof id, "§3 %s", cookbook_keys[i].file);
        record(T_7520, VECTOR, id, cookbook_keys[i].accepted, ok, why);
        if (ok)
            pc_jwk_free(&k);
        yajl_tree_free(doc);
    }
    /* the §3.3 public key, for the RSA signatures too */
    yajl_val pubdoc = load(VEC "rfc7520/3_3.rsa_public_key.json");
    struct pc_jwk rsa_pub;
    const char *err;
    assert_int_equal(pc_jwk_from_json(pubdoc, NULL, NULL, &rsa_pub, &err), 0);
    yajl_tree_free(pubdoc);
    for (size_t i = 0; i < PC_ARRAY_LEN(cookbook_sigs); i++) {
        snprintf(path, sizeof path, VEC "rfc7520/%s", cookbook_sigs[i].file);
        yajl_val doc = load(path);
        yajl_val input = pc_json_get(doc, "input"), signing = pc_json_get(doc, "signing");
        yajl_val key = pc_json_get(input, "key");
        size_t ns = YAJL_IS_ARRAY(signing) ? signing->u.array.len : 1;
        assert_true(ns <= 3);
        for (size_t s = 0; s < ns; s++) {
            yajl_val sg = YAJL_IS_ARRAY(signing) ? signing->u.array.values[s] : signing;
            yajl_val kj = YAJL_IS_ARRAY(key) ? key->u.array.values[s] : key;
            /* alg from the protected header, else the unprotected one */
            const char *alg = str(pc_json_get(sg, "protected"), "alg");
            if (alg == NULL)
                alg = str(pc_json_get(sg, "unprotected"), "alg");
            const char *in = str(sg, "sig-input"), *why = "";
            size_t sl;
            unsigned char *sig = unb64(str(sg, "sig"), &sl);
            struct pc_jwk k;
            bool ok = import(kj, &k, &why) &&
                      check_sig(&k, pc_jwk_alg_parse(alg), (const unsigned char *)in, strlen(in),
                                sig, sl, &why);
            snprintf(id, sizeof id, "§4 %s signature %zu (%s)", cookbook_sigs[i].file, s + 1, alg);
            record(T_7520, VECTOR, id, cookbook_sigs[i].verified[s], ok, why);
            if (k.pkey)
                pc_jwk_free(&k);
            /* the same signature with the published public key */
            bool pub = check_sig(&rsa_pub, pc_jwk_alg_parse(alg), (const unsigned char *)in,
                                 strlen(in), sig, sl, &why);
            snprintf(id, sizeof id, "§4 %s signature %zu (%s) with the §3.3 public key",
                     cookbook_sigs[i].file, s + 1, alg);
            record(T_7520, CHECK, id, cookbook_sigs[i].verified[s], pub, why);
            free(sig);
        }
        /* the compact form, where there is one, through the token path */
        const char *compact = str(pc_json_get(doc, "output"), "compact");
        if (compact != NULL && ns == 1 && str(signing, "protected_b64u")) {
            struct pc_jwk k;
            const char *why = "";
            bool ok = import(key, &k, &why) && check_compact(compact, &k, &why);
            snprintf(id, sizeof id, "§4 %s compact", cookbook_sigs[i].file);
            record(T_7520, CHECK, id, cookbook_sigs[i].verified[0], ok, why);
            if (k.pkey)
                pc_jwk_free(&k);
        }
        yajl_tree_free(doc);
    }
    pc_jwk_free(&rsa_pub);
    assert_int_equal(tallies[T_7520].failed, 0);
}

/* ---- RFC 8037 A.4 ---- */

static void test_rfc8037(void **state)
{
    yajl_val doc = load(VEC "rfc8037/a4_ed25519_signing.json");
    yajl_val input = pc_json_get(doc, "input"), signing = pc_json_get(doc, "signing");
    yajl_val key = pc_json_get(input, "key");
    const char *why = "";
    /* the private JWK (A.1), and the public one built from its x (A.2) */
    struct pc_jwk priv, pub;
    bool okp = import(key, &priv, &why);
    record(T_8037, VECTOR, "A.1 private key", true, okp && priv.private_key, why);
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "kty");
    pc_jw_str(&w, str(key, "kty"));
    pc_jw_key(&w, "crv");
    pc_jw_str(&w, str(key, "crv"));
    pc_jw_key(&w, "x");
    pc_jw_str(&w, str(key, "x"));
    pc_jw_obj_end(&w);
    bool okq = pc_jwk_from_text(b.data, b.len, NULL, NULL, &pub, &why) == 0;
    pc_buf_free(&b);
    record(T_8037, VECTOR, "A.2 public key", true, okq && !pub.private_key, why);
    const char *compact = str(pc_json_get(doc, "output"), "compact");
    bool ok = okq && check_compact(compact, &pub, &why);
    record(T_8037, VECTOR, "A.4/A.5 signature with the public key", true, ok, why);
    ok = okp && check_compact(compact, &priv, &why);
    record(T_8037, CHECK, "A.4/A.5 signature with the private key", true, ok, why);
    /* the same bytes signed as the file says (sig-input, sig) */
    const char *in = str(signing, "sig-input");
    size_t sl;
    unsigned char *sig = unb64(str(signing, "sig"), &sl);
    ok = okq && check_sig(&pub, PC_JWK_EDDSA, (const unsigned char *)in, strlen(in), sig, sl, &why);
    record(T_8037, CHECK, "A.4 sig-input", true, ok, why);
    free(sig);
    if (okp)
        pc_jwk_free(&priv);
    if (okq)
        pc_jwk_free(&pub);
    yajl_tree_free(doc);
    assert_int_equal(tallies[T_8037].failed, 0);
}

/* ---- Wycheproof ---- */

/* "acceptable" results: what we decided per flag (README.md). */
static const struct {
    const char *flag;
    bool accept;
} acceptable_policy[] = {
    /* DigestInfo without the NULL parameters: RFC 8017 §9.2 encodes the
     * NULL, OpenSSL compares the whole encoding, we take only that. */
    {"MissingNull", false},
};

static bool want_of(yajl_val tc, const char **policy_flag)
{
    const char *res = str(tc, "result");
    *policy_flag = NULL;
    if (strcmp(res, "valid") == 0)
        return true;
    if (strcmp(res, "invalid") == 0)
        return false;
    assert_string_equal(res, "acceptable");
    yajl_val flags = arr(tc, "flags");
    for (size_t i = 0; i < flags->u.array.len; i++)
        for (size_t j = 0; j < PC_ARRAY_LEN(acceptable_policy); j++)
            if (strcmp(flags->u.array.values[i]->u.string, acceptable_policy[j].flag) == 0) {
                *policy_flag = acceptable_policy[j].flag;
                return acceptable_policy[j].accept;
            }
    fail_msg("tcId %lld is acceptable with no decision for its flags",
             (long long)pc_json_get(tc, "tcId")->u.number.i);
    return false;
}

/* The group's key, through pc_jwk_from_json: from its JWK when the file
 * has one, and from the raw material as a JWK built here; both must give
 * the same key. Returns false when no key could be imported. */
static bool wp_key(int src, yajl_val g, enum pc_jwk_alg alg, size_t gi, struct pc_jwk *out)
{
    yajl_val jwk = pc_json_get(g, "publicKeyJwk");
    if (jwk == NULL)
        jwk = pc_json_get(g, "keyJwk");
    yajl_val pk = pc_json_get(g, "publicKey");
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    if (alg == PC_JWK_ES256) {
        pc_jw_key(&w, "kty");
        pc_jw_str(&w, "EC");
        pc_jw_key(&w, "crv");
        pc_jw_str(&w, "P-256");
        put_hex_num(&w, "x", str(pk, "wx"), 32);
        put_hex_num(&w, "y", str(pk, "wy"), 32);
    } else if (alg == PC_JWK_RS256) {
        pc_jw_key(&w, "kty");
        pc_jw_str(&w, "RSA");
        put_hex_num(&w, "n", str(pk, "modulus"), 0);
        put_hex_num(&w, "e", str(pk, "publicExponent"), 0);
    } else {
        size_t n;
        unsigned char *raw = unhex(str(pk, "pk"), &n);
        pc_jw_key(&w, "kty");
        pc_jw_str(&w, "OKP");
        pc_jw_key(&w, "crv");
        pc_jw_str(&w, "Ed25519");
        put_b64url(&w, "x", raw, n);
        free(raw);
    }
    pc_jw_obj_end(&w);
    const char *err = "";
    struct pc_jwk from_raw;
    bool raw_ok = pc_jwk_from_text(b.data, b.len, NULL, NULL, &from_raw, &err) == 0;
    pc_buf_free(&b);
    if (jwk == NULL) {
        if (!raw_ok)
            fprintf(stderr, "  group %zu: raw key refused: %s\n", gi, err);
        *out = from_raw;
        return raw_ok;
    }
    struct pc_jwk from_jwk;
    bool jwk_ok = pc_jwk_from_json(jwk, NULL, NULL, &from_jwk, &err) == 0;
    char id[64];
    snprintf(id, sizeof id, "group %zu key: JWK and raw agree", gi);
    record(src, CHECK, id, true,
           jwk_ok == raw_ok && (!jwk_ok || EVP_PKEY_eq(from_jwk.pkey, from_raw.pkey) == 1), err);
    if (raw_ok)
        pc_jwk_free(&from_raw);
    *out = from_jwk;
    return jwk_ok;
}

/* ES256 takes exactly 64 bytes, r || s. From each valid P1363 case: the
 * same signature with a byte appended, and with r and s each written on 33
 * bytes (a leading zero), must be refused. From each valid case of the DER
 * file: the same (r, s) as r || s must verify, so that the DER file's
 * refusals are the encoding's and not the key's or the message's. */
static void es256_length_checks(int src, const struct pc_jwk *k, long long tcid, bool der,
                                bool want, const unsigned char *msg, size_t ml,
                                const unsigned char *sig, size_t sl)
{
    char id[128];
    const char *why = "";
    if (!der && want && sl == 64) {
        unsigned char longer[66] = {0};
        memcpy(longer, sig, 64);
        snprintf(id, sizeof id, "tcId %lld + one byte (65 bytes)", tcid);
        bool ok = check_sig(k, PC_JWK_ES256, msg, ml, longer, 65, &why);
        record(src, CHECK, id, false, ok, why);
        memset(longer, 0, sizeof longer);
        memcpy(longer + 1, sig, 32);
        memcpy(longer + 34, sig + 32, 32);
        snprintf(id, sizeof id, "tcId %lld as 33-byte r and s (66 bytes)", tcid);
        ok = check_sig(k, PC_JWK_ES256, msg, ml, longer, 66, &why);
        record(src, CHECK, id, false, ok, why);
        snprintf(id, sizeof id, "tcId %lld without its last byte (63 bytes)", tcid);
        ok = check_sig(k, PC_JWK_ES256, msg, ml, sig, 63, &why);
        record(src, CHECK, id, false, ok, why);
    }
    if (der) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sl);
        const BIGNUM *r, *s;
        unsigned char raw[64];
        if (es == NULL || p != sig + sl)
            goto out;
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
            goto out;
        /* only for the cases the DER file calls valid: the others are
         * about their encoding, some of which r || s cannot show */
        if (want) {
            snprintf(id, sizeof id, "tcId %lld as r || s", tcid);
            bool ok = check_sig(k, PC_JWK_ES256, msg, ml, raw, 64, &why);
            record(src, CHECK, id, true, ok, why);
        }
    out:
        ECDSA_SIG_free(es);
    }
}

/* Runs one Wycheproof file. all_refused: the expected outcome is "refused"
 * for every case (DER signatures are not JWS ES256 signatures). */
static void wycheproof(int src, const char *file, enum pc_jwk_alg alg, bool all_refused)
{
    yajl_val doc = load(file);
    yajl_val groups = arr(doc, "testGroups");
    long long declared = pc_json_get(doc, "numberOfTests")->u.number.i, seen = 0;
    char id[256];
    for (size_t gi = 0; gi < groups->u.array.len; gi++) {
        yajl_val g = groups->u.array.values[gi];
        struct pc_jwk k;
        bool have = wp_key(src, g, alg, gi, &k);
        yajl_val tests = arr(g, "tests");
        for (size_t i = 0; i < tests->u.array.len; i++) {
            yajl_val tc = tests->u.array.values[i];
            const char *flag = NULL, *why = "no key";
            bool file_want = want_of(tc, &flag);
            bool want = all_refused ? false : file_want;
            size_t ml, sl;
            unsigned char *msg = unhex(str(tc, "msg"), &ml), *sig = unhex(str(tc, "sig"), &sl);
            bool ok = have && check_sig(&k, alg, msg, ml, sig, sl, &why);
            long long tcid = (long long)pc_json_get(tc, "tcId")->u.number.i;
            snprintf(id, sizeof id, "tcId %lld (%s%s%s; %s)", tcid, str(tc, "result"),
                     flag ? ", decided by flag " : "", flag ? flag : "", str(tc, "comment"));
            record(src, VECTOR, id, want, ok, why);
            if (have && alg == PC_JWK_ES256)
                es256_length_checks(src, &k, tcid, all_refused, file_want, msg, ml, sig, sl);
            free(msg);
            free(sig);
            seen++;
        }
        if (have)
            pc_jwk_free(&k);
    }
    assert_int_equal(seen, declared); /* every case of the file ran */
    yajl_tree_free(doc);
    assert_int_equal(tallies[src].failed, 0);
}

static void test_wycheproof_ecdsa_p1363(void **state)
{
    wycheproof(T_WP_P1363, VEC "wycheproof/ecdsa_secp256r1_sha256_p1363_test.json", PC_JWK_ES256,
               false);
}

static void test_wycheproof_ecdsa_der(void **state)
{
    wycheproof(T_WP_DER, VEC "wycheproof/ecdsa_secp256r1_sha256_test.json", PC_JWK_ES256, true);
}

static void test_wycheproof_rsa(void **state)
{
    wycheproof(T_WP_RSA, VEC "wycheproof/rsa_signature_2048_sha256_test.json", PC_JWK_RS256, false);
}

static void test_wycheproof_ed25519(void **state)
{
    wycheproof(T_WP_ED, VEC "wycheproof/ed25519_test.json", PC_JWK_EDDSA, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7515),
        cmocka_unit_test(test_rfc7517),
        cmocka_unit_test(test_rfc7520),
        cmocka_unit_test(test_rfc8037),
        cmocka_unit_test(test_wycheproof_ecdsa_p1363),
        cmocka_unit_test(test_wycheproof_ecdsa_der),
        cmocka_unit_test(test_wycheproof_rsa),
        cmocka_unit_test(test_wycheproof_ed25519),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unsigned vec = 0, vec_passed = 0, total = 0, passed = 0;
    printf("JOSE vectors: the sources' own cases (expected accepted / refused), and all checks "
           "(with the derived ones: key forms agree, tokens against other keys, claims)\n");
    for (size_t i = 0; i < T_N; i++) {
        const struct tally *t = &tallies[i];
        printf("  %-44s vectors %4u (%3u accepted, %3u refused): %4u passed, %u failed; "
               "all checks %4u: %4u passed\n",
               t->name, t->vectors, t->vec_ok, t->vec_refused, t->vec_passed,
               t->vectors - t->vec_passed, t->total, t->passed);
        vec += t->vectors;
        vec_passed += t->vec_passed;
        total += t->total;
        passed += t->passed;
    }
    printf("  %-44s vectors %4u: %4u passed, %u failed; all checks %4u: %4u passed, %u failed\n",
           "total", vec, vec_passed, vec - vec_passed, total, passed, total - passed);
    return rc;
}
