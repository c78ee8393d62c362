/* Portcullis - MIT licence. See LICENSE.
 *
 * cookie.c: sign and verify Better Auth cookie values, parse Cookie headers,
 * the URL encodings the cookie values travel in, and the one Set-Cookie
 * format both programs send (authsvc's sign-in and refresh, the gateway's
 * refresh).
 */
#include "cookie.h"
#include "crypto.h"

#include <stdlib.h>
#include <string.h>

void pc_sign_value(const char *secret, const char *value, char *out)
{
    unsigned char mac[32];
    size_t vlen = strlen(value);
    pc_hmac_sha256(secret, strlen(secret), value, vlen, mac);
    memcpy(out, value, vlen);
    out[vlen] = '.';
    pc_b64std_encode(mac, sizeof mac, out + vlen + 1);
}

bool pc_verify_signed(const char *secret, const char *v, size_t n, enum pc_sig_mode mode,
                      char *tok, size_t tokcap)
{
    const char *dot = NULL;
    for (size_t i = n; i > 0; i--) {
        if (v[i - 1] == '.') {
            dot = v + i - 1;
            break;
        }
    }
    if (dot == NULL)
        return false;
    size_t toklen = (size_t)(dot - v);
    const char *sig = dot + 1;
    size_t siglen = n - toklen - 1;
    if (toklen == 0 || toklen >= tokcap)
        return false;
    if (mode == PC_SIG_COOKIE && (siglen != PC_SIG_B64_LEN || sig[siglen - 1] != '='))
        return false;
    if (siglen < 43 || siglen > 44)
        return false;
    unsigned char got[40];
    long glen = pc_b64_decode(sig, siglen, got);
    if (glen != 32)
        return false;
    unsigned char want[32];
    pc_hmac_sha256(secret, strlen(secret), v, toklen, want);
    if (!pc_ct_eq(got, want, 32))
        return false;
    memcpy(tok, v, toklen);
    tok[toklen] = '\0';
    return true;
}

bool pc_cookie_verify(const char *secret, const char *raw, char *tok, size_t tokcap)
{
    size_t n = strlen(raw);
    char *dec = memchr(raw, '%', n) ? pc_url_decode(raw, n) : pc_xstrndup(raw, n);
    if (dec == NULL)
        return false;
    bool ok = pc_verify_signed(secret, dec, strlen(dec), PC_SIG_COOKIE, tok, tokcap);
    pc_wipe(dec, strlen(dec));
    free(dec);
    return ok;
}

char *pc_cookie_get(const char *header, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        if (end == NULL)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq != NULL) {
            const char *kend = eq;
            while (kend > p && (kend[-1] == ' ' || kend[-1] == '\t'))
                kend--;
            if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
                const char *vs = eq + 1;
                while (vs < end && (*vs == ' ' || *vs == '\t'))
                    vs++;
                const char *ve = end;
                while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                if (ve - vs >= 2 && vs[0] == '"' && ve[-1] == '"') {
                    vs++;
                    ve--;
                }
                return pc_xstrndup(vs, (size_t)(ve - vs));
            }
        }
        p = end;
    }
    return NULL;
}

char *pc_cookie_get_lines(const char *const *lines, size_t nlines, const char *name)
{
    for (size_t i = 0; i < nlines; i++) {
        char *v = lines[i] ? pc_cookie_get(lines[i], name) : NULL;
        if (v)
            return v;
    }
    return NULL;
}

char *pc_url_decode(const char *s, size_t n)
{
    char *out = pc_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = pc_hexval(s[i + 1])) < 0 || (lo = pc_hexval(s[i + 2])) < 0 ||
                (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (s[i] == '\0') {
            free(out);
            return NULL;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

void pc_url_encode_component(struct pc_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            strchr("-_.!~*'()", c) != NULL) {
            pc_buf_putc(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            pc_buf_append(b, e, 3);
        }
    }
}

void pc_set_cookie_value(struct pc_buf *b, const char *name, const char *signed_value,
                         int64_t max_age, bool secure)
{
    pc_buf_puts(b, name);
    pc_buf_putc(b, '=');
    if (signed_value)
        pc_url_encode_component(b, signed_value);
    if (max_age >= 0)
        pc_buf_printf(b, "; Max-Age=%lld", (long long)max_age);
    pc_buf_puts(b, "; Path=/; HttpOnly");
    if (secure)
        pc_buf_puts(b, "; Secure");
    pc_buf_puts(b, "; SameSite=Lax");
}
