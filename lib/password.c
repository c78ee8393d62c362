/* Portcullis - MIT licence. See LICENSE.
 *
 * password.c: scrypt password hashes byte-for-byte compatible with Better
 * Auth. NFKC normalisation comes from libunistring (ASCII input skips it: it
 * is already in NFKC).
 */
#include "password.h"
#include "crypto.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <uninorm.h>

#define SCRYPT_N 16384
#define SCRYPT_R 16
#define SCRYPT_P 1
#define SCRYPT_KEYLEN 64
#define SCRYPT_MAXMEM (128ULL * SCRYPT_N * SCRYPT_R * 2)

size_t pc_utf16_length(const char *s, size_t n)
{
    size_t units = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) == 0x80)
            continue;           /* continuation byte */
        units += (c >= 0xF0) ? 2 : 1; /* 4-byte sequences are surrogate pairs */
    }
    return units;
}

static bool is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* Derives the hex key for (password, salt text). out_hex holds 129 bytes. */
static int derive(const char *pw, size_t n, const char *salt, char out_hex[2 * SCRYPT_KEYLEN + 1])
{
    uint8_t *norm = NULL;
    size_t normlen = 0;
    const unsigned char *in = (const unsigned char *)pw;
    size_t inlen = n;

    if (!is_ascii(pw, n)) {
        if (!pc_utf8_valid(pw, n))
            return -1;
        norm = u8_normalize(UNINORM_NFKC, (const uint8_t *)pw, n, NULL, &normlen);
        if (norm == NULL)
            return -1;
        in = norm;
        inlen = normlen;
    }
    unsigned char key[SCRYPT_KEYLEN];
    int ok = EVP_PBE_scrypt((const char *)in, inlen, (const unsigned char *)salt,
                            strlen(salt), SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_MAXMEM,
                            key, sizeof key);
    if (norm) {
        pc_wipe(norm, normlen);
        free(norm);
    }
    if (ok != 1)
        return -1;
    pc_hex_encode(key, sizeof key, out_hex);
    pc_wipe(key, sizeof key);
    return 0;
}

int pc_password_hash_with_salt(const char *pw, size_t n, const char *salt_hex,
                               char out[PC_PASSWORD_HASH_LEN + 1])
{
    char keyhex[2 * SCRYPT_KEYLEN + 1];
    if (strlen(salt_hex) != 32)
        return -1;
    if (derive(pw, n, salt_hex, keyhex) != 0)
        return -1;
    memcpy(out, salt_hex, 32);
    out[32] = ':';
    memcpy(out + 33, keyhex, 2 * SCRYPT_KEYLEN);
    out[PC_PASSWORD_HASH_LEN] = '\0';
    return 0;
}

int pc_password_hash(const char *pw, size_t n, char out[PC_PASSWORD_HASH_LEN + 1])
{
    unsigned char salt[16];
    char salt_hex[33];
    pc_random_bytes(salt, sizeof salt);
    pc_hex_encode(salt, sizeof salt, salt_hex);
    return pc_password_hash_with_salt(pw, n, salt_hex, out);
}

bool pc_password_verify(const char *pw, size_t n, const char *stored)
{
    const char *colon = strchr(stored, ':');
    if (colon == NULL || strchr(colon + 1, ':') != NULL)
        return false;
    size_t saltlen = (size_t)(colon - stored);
    const char *keyhex = colon + 1;
    if (saltlen == 0 || saltlen > 256 || strlen(keyhex) != 2 * SCRYPT_KEYLEN)
        return false;
    char salt[257];
    memcpy(salt, stored, saltlen);
    salt[saltlen] = '\0';
    char got[2 * SCRYPT_KEYLEN + 1];
    if (derive(pw, n, salt, got) != 0)
        return false;
    bool eq = pc_ct_eq(got, keyhex, 2 * SCRYPT_KEYLEN);
    pc_wipe(got, sizeof got);
    return eq;
}
