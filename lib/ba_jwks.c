/* Portcullis - MIT licence. See LICENSE.
 *
 * ba_jwks.c: Better Auth's jwks rows, the choice of our signing key, and
 * symmetricEncrypt (see ba_jwks.h). Moved out of jws.c.
 */
#include "ba_jwks.h"
#include "crypto.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <openssl/crypto.h>

/* ---- rows of Better Auth's jwks table ---- */

const char *pc_jwk_row_alg(const char *alg_col, yajl_val pub)
{
    if (alg_col && *alg_col)
        return alg_col;
    yajl_val kty = pc_json_get(pub, "kty"), crv = pc_json_get(pub, "crv");
    const char *t = YAJL_IS_STRING(kty) ? kty->u.string : "";
    const char *c = YAJL_IS_STRING(crv) ? crv->u.string : "";
    if (strcmp(t, "OKP") == 0 && strcmp(c, "Ed25519") == 0)
        return "EdDSA";
    if (strcmp(t, "EC") == 0 && strcmp(c, "P-256") == 0)
        return "ES256";
    if (strcmp(t, "RSA") == 0)
        return "RS256";
    return NULL;
}

int pc_jwk_open_row(const struct pc_secrets *secrets, const char *kid, const char *alg,
                    const char *private_col, struct pc_jwk *out)
{
    memset(out, 0, sizeof *out);
    size_t n = 0;
    char *plain = pc_unseal(secrets, private_col, &n);
    if (plain == NULL) {
        if (private_col[0] != '{')
            return -1;
        plain = pc_xstrdup(private_col);
        n = strlen(plain);
    }
    const char *err;
    int rc = pc_jwk_from_text(plain, n, kid, alg, out, &err);
    OPENSSL_cleanse(plain, n);
    free(plain);
    if (rc == 0 && !out->private_key) {
        pc_jwk_free(out);
        rc = -1;
    }
    return rc;
}

/* ---- which row signs ---- */

bool pc_jwks_row_current(const struct pc_jwks_row *row, int64_t rotate_days, int64_t now_ms,
                         int64_t *retire_at)
{
    int64_t retire;
    if (row->expires_at != 0)
        retire = row->expires_at;
    else if (rotate_days > 0)
        retire = row->created_at + rotate_days * 86400000LL;
    else
        retire = INT64_MAX;
    if (retire_at)
        *retire_at = retire;
    return retire > now_ms;
}

int pc_jwks_pick_signer(const struct pc_jwks_row *rows, size_t n, const char *alg,
                        int64_t rotate_days, const struct pc_secrets *secrets, int64_t now_ms,
                        struct pc_jwk *out, int64_t *retire_at)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        const struct pc_jwks_row *r = &rows[i];
        int64_t retire;
        if (!pc_jwks_row_current(r, rotate_days, now_ms, &retire))
            continue;
        /* a row whose public key is not a JWK object is not published
         * (authsvc's jwks document), so it must not sign either */
        yajl_val pub = r->public_key ? pc_json_parse(r->public_key, strlen(r->public_key)) : NULL;
        const char *ralg = YAJL_IS_OBJECT(pub) ? pc_jwk_row_alg(r->alg, pub) : NULL;
        bool fits = ralg && pc_jwk_alg_parse(ralg) != PC_JWK_NONE &&
                    (alg == NULL || strcmp(ralg, alg) == 0);
        int rc = fits ? pc_jwk_open_row(secrets, r->kid, ralg, r->private_key, out) : -1;
        if (pub)
            yajl_tree_free(pub);
        if (rc == 0) {
            if (retire_at)
                *retire_at = retire;
            return (int)i;
        }
    }
    return -1;
}

/* ---- Better Auth's symmetricEncrypt / symmetricDecrypt ---- */

#define SEAL_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define SEAL_TAG crypto_aead_xchacha20poly1305_ietf_ABYTES

static void seal_key(const char *secret, unsigned char key[32])
{
    pc_sha256(secret, strlen(secret), key);
}

char *pc_seal(const struct pc_secrets *secrets, const void *plain, size_t n)
{
    if (sodium_init() < 0)
        pc_fatal("libsodium cannot start");
    const char *secret = secrets->n > 0 ? secrets->value[0] : secrets->legacy;
    if (secret == NULL)
        pc_fatal("pc_seal: no secret");
    unsigned char key[32];
    seal_key(secret, key);
    size_t total = SEAL_NONCE + n + SEAL_TAG;
    unsigned char *buf = pc_xmalloc(total);
    pc_random_bytes(buf, SEAL_NONCE);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(buf + SEAL_NONCE, &clen, plain, n, NULL, 0, NULL,
                                               buf, key);
    sodium_memzero(key, sizeof key);
    char env[32] = "";
    if (secrets->n > 0)
        snprintf(env, sizeof env, "$ba$%ld$", secrets->version[0]);
    size_t en = strlen(env);
    char *hex = pc_xmalloc(en + 2 * total + 1);
    memcpy(hex, env, en);
    pc_hex_encode(buf, total, hex + en);
    free(buf);
    return hex;
}

char *pc_unseal(const struct pc_secrets *secrets, const char *hex, size_t *outlen)
{
    const char *secret = secrets->legacy;
    if (sodium_init() < 0)
        pc_fatal("libsodium cannot start");
    size_t n = strlen(hex);
    if (n >= 2 && hex[0] == '"' && hex[n - 1] == '"') {   /* JSON-quoted (jwks.privateKey) */
        hex++;
        n -= 2;
    }
    if (n > 4 && strncmp(hex, "$ba$", 4) == 0) {   /* $ba$<version>$<hex> */
        const char *d = memchr(hex + 4, '$', n - 4);
        if (d == NULL)
            return NULL;
        if (secrets->n > 0) {   /* the version it names, and no other */
            long v = 0;
            for (const char *p = hex + 4; p < d; p++) {
                if (*p < '0' || *p > '9' || v > 100000000)
                    return NULL;
                v = v * 10 + (*p - '0');
            }
            if (d == hex + 4 || (secret = pc_secrets_version(secrets, v)) == NULL)
                return NULL;
        }
        n -= (size_t)(d + 1 - hex);
        hex = d + 1;
    }
    if (secret == NULL || n % 2 != 0 || n / 2 < SEAL_NONCE + SEAL_TAG)
        return NULL;
    size_t total = n / 2;
    unsigned char *buf = pc_xmalloc(total);
    for (size_t i = 0; i < total; i++) {
        int hi = pc_hexval(hex[2 * i]), lo = pc_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(buf);
            return NULL;
        }
        buf[i] = (unsigned char)(hi << 4 | lo);
    }
    unsigned char key[32];
    seal_key(secret, key);
    char *plain = pc_xmalloc(total - SEAL_NONCE - SEAL_TAG + 1);
    unsigned long long plen = 0;
    int rc = crypto_aead_xchacha20poly1305_ietf_decrypt((unsigned char *)plain, &plen, NULL,
                                                        buf + SEAL_NONCE, total - SEAL_NONCE, NULL,
                                                        0, buf, key);
    sodium_memzero(key, sizeof key);
    free(buf);
    if (rc != 0) {
        free(plain);
        return NULL;
    }
    plain[plen] = '\0';
    *outlen = (size_t)plen;
    return plain;
}
