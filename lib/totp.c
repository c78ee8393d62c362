/* Portcullis - MIT licence. See LICENSE.
 *
 * totp.c: HOTP/TOTP and base32 as @better-auth/utils' otp.mjs and
 * base32.mjs compute them (see totp.h). HMAC-SHA-1 is OpenSSL's one-shot
 * HMAC(); a TOTP check is three HOTPs, so no context is cached.
 */
#include "totp.h"
#include "cookie.h"
#include "crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

char *pc_base32_encode(const void *in, size_t n)
{
    const unsigned char *p = in;
    char *out = pc_xmalloc((n * 8 + 4) / 5 + 1);
    size_t o = 0;
    unsigned buffer = 0;
    int shift = 0;
    for (size_t i = 0; i < n; i++) {
        buffer = (buffer << 8 | p[i]) & 0xffffu;
        shift += 8;
        while (shift >= 5) {
            shift -= 5;
            out[o++] = b32_alphabet[(buffer >> shift) & 31];
        }
    }
    if (shift > 0)
        out[o++] = b32_alphabet[(buffer << (5 - shift)) & 31];
    out[o] = '\0';
    return out;
}

unsigned char *pc_base32_decode(const char *in, size_t *outlen)
{
    size_t n = strlen(in);
    unsigned char *out = pc_xmalloc(n * 5 / 8 + 1);
    size_t o = 0;
    unsigned buffer = 0;
    int bits = 0;
    for (size_t i = 0; i < n && in[i] != '='; i++) {
        const char *at = strchr(b32_alphabet, in[i]);
        if (in[i] == '\0' || at == NULL) {
            free(out);
            return NULL;
        }
        buffer = (buffer << 5 | (unsigned)(at - b32_alphabet)) & 0xffffu;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(buffer >> bits);
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

void pc_hotp(const void *key, size_t keylen, uint64_t counter, int digits, char *out)
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    if (HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof msg, mac, &maclen) == NULL || maclen < 20)
        pc_fatal("HMAC-SHA-1 failed");
    int off = mac[maclen - 1] & 15;
    uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
                   (uint32_t)mac[off + 2] << 8 | mac[off + 3];
    uint32_t mod = 1;
    for (int i = 0; i < digits; i++)
        mod *= 10;
    snprintf(out, (size_t)digits + 1, "%0*u", digits, (unsigned)(bin % mod));
    pc_wipe(mac, sizeof mac);
}

bool pc_totp_verify(const void *key, size_t keylen, const char *code, int64_t now_ms,
                    int period, int digits, int window, uint64_t *matched)
{
    if (digits < 1 || digits > 8 || period <= 0 || now_ms < 0)
        return false;
    uint64_t counter = (uint64_t)(now_ms / ((int64_t)period * 1000));
    size_t clen = strlen(code);
    bool any = false;
    for (int i = -window; i <= window; i++) {
        if (i < 0 && counter < (uint64_t)-i)
            continue;
        char want[9];
        uint64_t c = counter + (uint64_t)(int64_t)i;
        pc_hotp(key, keylen, c, digits, want);
        /* Better Auth's constantTimeEqualOTP: the length difference, then
         * every expected character against the input's (or 0 past its end) */
        unsigned diff = (unsigned)(clen ^ (size_t)digits);
        for (int j = 0; j < digits; j++)
            diff |= (unsigned)((size_t)j < clen ? (unsigned char)code[j] : 0) ^ (unsigned char)want[j];
        if (diff == 0) {
            if (!any && matched)
                *matched = c;
            any = true;
        }
        pc_wipe(want, sizeof want);
    }
    return any;
}

/* URLSearchParams' serializer (application/x-www-form-urlencoded). */
static void form_encode(struct pc_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("*-._", *p) != NULL)
            pc_buf_putc(b, (char)*p);
        else if (*p == ' ')
            pc_buf_putc(b, '+');
        else
            pc_buf_printf(b, "%%%02X", *p);
    }
}

char *pc_totp_uri(const char *issuer, const char *account, const void *key, size_t keylen,
                  int digits, int period)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, "otpauth://totp/");
    pc_url_encode_component(&b, issuer);
    pc_buf_putc(&b, ':');
    pc_url_encode_component(&b, account);
    char *secret = pc_base32_encode(key, keylen);
    pc_buf_puts(&b, "?secret=");
    form_encode(&b, secret);
    pc_wipe(secret, strlen(secret));
    free(secret);
    pc_buf_puts(&b, "&issuer=");
    form_encode(&b, issuer);
    pc_buf_printf(&b, "&digits=%d&period=%d", digits, period);
    char *out = pc_xstrdup(pc_buf_cstr(&b));
    pc_wipe(b.data, b.len);
    pc_buf_free(&b);
    return out;
}
