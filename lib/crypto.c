/* Portcullis - MIT licence. See LICENSE.
 *
 * crypto.c: SHA-256, HMAC, base64 in both alphabets, random ids. The id and
 * token alphabet and the rejection sampling follow Better Auth's generateId
 * (better-auth-compat.md §1.3) so ids look the same whoever wrote the row.
 */
#include "crypto.h"

#include <pthread.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

/* OpenSSL 3's one-shot SHA256() and HMAC() look the algorithm up on every
 * call, which costs more than hashing a token. These fetch it once and keep
 * one digest context per thread. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t ctx_key;           /* frees a thread's context at exit */
static __thread EVP_MD_CTX *tl_ctx;

static void ctx_destroy(void *p)
{
    EVP_MD_CTX_free(p);
}

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL || pthread_key_create(&ctx_key, ctx_destroy) != 0)
        pc_fatal("SHA-256 is not available");
}

static EVP_MD_CTX *digest_begin(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    if (tl_ctx == NULL) {
        if ((tl_ctx = EVP_MD_CTX_new()) == NULL)
            pc_fatal("out of memory");
        pthread_setspecific(ctx_key, tl_ctx);
    }
    if (EVP_DigestInit_ex(tl_ctx, sha256_md, NULL) != 1)
        pc_fatal("SHA-256 init failed");
    return tl_ctx;
}

static void digest_end(EVP_MD_CTX *c, unsigned char out[PC_SHA256_LEN])
{
    if (EVP_DigestFinal_ex(c, out, NULL) != 1)
        pc_fatal("SHA-256 failed");
}

void pc_crypto_thread_cleanup(void)
{
    if (tl_ctx == NULL)
        return;
    pthread_setspecific(ctx_key, NULL);
    EVP_MD_CTX_free(tl_ctx);
    tl_ctx = NULL;
}

void pc_sha256(const void *data, size_t n, unsigned char out[PC_SHA256_LEN])
{
    EVP_MD_CTX *c = digest_begin();
    EVP_DigestUpdate(c, data, n);
    digest_end(c, out);
}

/* HMAC-SHA256 (RFC 2104) from two digests on the cached context. */
void pc_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t n,
                    unsigned char out[PC_SHA256_LEN])
{
    unsigned char k[64] = {0}, pad[64], inner[PC_SHA256_LEN];
    if (keylen > sizeof k)
        pc_sha256(key, keylen, k);
    else
        memcpy(k, key, keylen);
    for (size_t i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    EVP_MD_CTX *c = digest_begin();
    EVP_DigestUpdate(c, pad, 64);
    EVP_DigestUpdate(c, msg, n);
    digest_end(c, inner);
    for (size_t i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    c = digest_begin();
    EVP_DigestUpdate(c, pad, 64);
    EVP_DigestUpdate(c, inner, sizeof inner);
    digest_end(c, out);
    pc_wipe(k, sizeof k);
    pc_wipe(pad, sizeof pad);
}

void pc_hkdf_sha256(const void *ikm, size_t ikmlen, const void *salt, size_t saltlen,
                    const void *info, size_t infolen, unsigned char *out, size_t n)
{
    unsigned char prk[PC_SHA256_LEN], t[PC_SHA256_LEN];
    if (n > 255 * PC_SHA256_LEN)
        pc_fatal("pc_hkdf_sha256: %zu bytes asked", n);
    pc_hmac_sha256(salt, saltlen, ikm, ikmlen, prk);     /* extract */
    unsigned char *msg = pc_xmalloc(PC_SHA256_LEN + infolen + 1);
    size_t tlen = 0;
    for (unsigned i = 1; n > 0; i++) {                  /* expand */
        memcpy(msg, t, tlen);
        memcpy(msg + tlen, info, infolen);
        msg[tlen + infolen] = (unsigned char)i;
        pc_hmac_sha256(prk, sizeof prk, msg, tlen + infolen + 1, t);
        tlen = PC_SHA256_LEN;
        size_t k = n < tlen ? n : tlen;
        memcpy(out, t, k);
        out += k;
        n -= k;
    }
    pc_wipe(msg, PC_SHA256_LEN + infolen + 1);
    free(msg);
    pc_wipe(prk, sizeof prk);
    pc_wipe(t, sizeof t);
}

size_t pc_b64_len(size_t n, bool pad)
{
    if (pad)
        return (n + 2) / 3 * 4;
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

static size_t b64_encode(const unsigned char *in, size_t n, char *out,
                         const char *alphabet, bool pad)
{
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = alphabet[(v >> 6) & 63];
        else if (pad)
            out[o++] = '=';
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

size_t pc_b64std_encode(const unsigned char *in, size_t n, char *out)
{
    return b64_encode(in, n, out,
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", true);
}

size_t pc_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    return b64_encode(in, n, out,
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", false);
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

long pc_b64_decode(const char *in, size_t n, unsigned char *out)
{
    while (n > 0 && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

void pc_cred_hash(const char *s, size_t n, char out[PC_HASH_B64_LEN + 1])
{
    unsigned char d[PC_SHA256_LEN];
    pc_sha256(s, n, d);
    pc_b64url_encode(d, sizeof d, out);
}

void pc_hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void pc_random_bytes(void *out, size_t n)
{
    if (RAND_bytes(out, (int)n) != 1)
        pc_fatal("RAND_bytes failed");
}

void pc_random_string(char *out, size_t n, const char *alphabet)
{
    size_t len = strlen(alphabet);
    if (len == 0 || len > 256)
        pc_fatal("pc_random_string: bad alphabet");
    /* bytes at or above the largest multiple of len are rejected, so every
     * symbol is equally likely (Better Auth does the same) */
    unsigned limit = 256 / (unsigned)len * (unsigned)len;
    unsigned char pool[64];
    size_t have = 0, used = 0, o = 0;
    while (o < n) {
        if (used == have) {
            pc_random_bytes(pool, sizeof pool);
            have = sizeof pool;
            used = 0;
        }
        unsigned char b = pool[used++];
        if (b >= limit)
            continue;
        out[o++] = alphabet[b % len];
    }
    out[n] = '\0';
    pc_wipe(pool, sizeof pool);
}

void pc_random_alnum(char *out, size_t n)
{
    pc_random_string(out, n, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
}

bool pc_ct_eq(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
