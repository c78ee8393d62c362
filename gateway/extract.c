/* Portcullis - MIT licence. See LICENSE.
 *
 * extract.c: stages 2 and 3. Finds the credential the route accepts and
 * rejects malformed or forged ones before any I/O:
 *
 *   :apiKey path segment, then x-api-key, then Authorization: Bearer (told
 *   apart by shape: a JWT has three base64url parts and starts "eyJ"; a
 *   signed session token is "token.sig"; a raw session token is 32
 *   alphanumerics; an API key is an optional prefix and 64 letters), then
 *   the Better Auth session cookie, whose HMAC must verify.
 *
 * The credential's SHA-256 becomes the cache and revocation key.
 */
#include "gateway.h"
#include "../lib/cookie.h"
#include "../lib/jws.h"

#include <stdlib.h>
#include <string.h>

#define API_KEY_BODY 64     /* Better Auth: 64 letters after the prefix */
#define API_PREFIX_MAX 32
#define SESSION_TOKEN_LEN 32

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
    return is_letter(c) || (c >= '0' && c <= '9');
}

/* prefix [A-Za-z0-9_-]{0,32} followed by exactly 64 letters */
static bool api_key_structure(const char *k, size_t n)
{
    if (n < API_KEY_BODY || n > API_KEY_BODY + API_PREFIX_MAX)
        return false;
    size_t plen = n - API_KEY_BODY;
    for (size_t i = 0; i < plen; i++)
        if (!is_alnum(k[i]) && k[i] != '_' && k[i] != '-')
            return false;
    for (size_t i = plen; i < n; i++)
        if (!is_letter(k[i]))
            return false;
    return true;
}

/* ... and, with API_KEY_PREFIXES set, a prefix from that list */
static bool api_key_shape(const char *k, size_t n)
{
    if (!api_key_structure(k, n))
        return false;
    if (gw_cfg.nprefixes == 0)
        return true;
    size_t plen = n - API_KEY_BODY;
    for (size_t i = 0; i < gw_cfg.nprefixes; i++)
        if (strlen(gw_cfg.prefixes[i]) == plen && memcmp(gw_cfg.prefixes[i], k, plen) == 0)
            return true;
    return false;
}

static bool session_token_shape(const char *t, size_t n)
{
    if (n != SESSION_TOKEN_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(t[i]))
            return false;
    return true;
}

/* Looks like a JWT: a base64url JSON header ("eyJ") and a dot, and not a
 * signed session token (32 alphanumerics, a dot, the HMAC). verify.c
 * judges the rest, so a broken JWT is refused as one. */
static bool jwt_shape(const char *t, size_t n)
{
    const char *dot = n >= 4 && strncmp(t, "eyJ", 3) == 0 ? memchr(t, '.', n) : NULL;
    if (dot == NULL)
        return false;
    return !((size_t)(dot - t) == SESSION_TOKEN_LEN && session_token_shape(t, SESSION_TOKEN_LEN));
}

static void set_cred(struct gw_request *r, enum gw_cred_kind kind, enum gw_cred_src src,
                     const char *v, size_t n)
{
    r->kind = kind;
    r->src = src;
    memcpy(r->cred, v, n);
    r->cred[n] = '\0';
    r->cred_len = n;
}

static void hash_cred(struct gw_request *r)
{
    pc_sha256(r->cred, r->cred_len, r->hash);
    pc_b64url_encode(r->hash, sizeof r->hash, r->hash_b64);
}

static enum gw_extract_result reject(struct gw_request *r, const char *code, const char *msg)
{
    gw_fail(r, 401, code, msg);
    return GW_EXTRACT_ANSWERED;
}

/* Accepts a session token from a signed value ("token.sig") or a raw token. */
static bool session_from_value(struct gw_request *r, const char *v, size_t n,
                               enum pc_sig_mode mode, enum gw_cred_src src)
{
    if (memchr(v, '.', n) == NULL) {
        if (src != GW_SRC_BEARER || !session_token_shape(v, n))
            return false;
        set_cred(r, GW_CRED_SESSION, src, v, n);
        return true;
    }
    char *dec = memchr(v, '%', n) ? pc_url_decode(v, n) : pc_xstrndup(v, n);
    char tok[128];
    bool ok = dec && pc_verify_signed(gw_cfg.secret, dec, strlen(dec), mode, tok, sizeof tok) &&
              session_token_shape(tok, strlen(tok));
    free(dec);
    if (ok)
        set_cred(r, GW_CRED_SESSION, src, tok, strlen(tok));
    pc_wipe(tok, sizeof tok);
    return ok;
}

enum gw_extract_result gw_extract(struct gw_request *r)
{
    const struct gw_route *rt = r->route;
    if (rt->anonymous)
        return GW_EXTRACT_ANONYMOUS;
    bool want_key = rt->accept & GW_ACCEPT(GW_CRED_API_KEY);
    bool want_session = rt->accept & GW_ACCEPT(GW_CRED_SESSION);
    bool want_jwt = rt->accept & GW_ACCEPT(GW_CRED_JWT);

    /* 1. the path segment (route.c copied it) */
    if (r->src == GW_SRC_PATH) {
        if (!api_key_shape(r->cred, r->cred_len))
            return reject(r, "INVALID_API_KEY", "Invalid API key");
        r->kind = GW_CRED_API_KEY;
        hash_cred(r);
        return GW_EXTRACT_OK;
    }
    /* 2. x-api-key */
    const char *hk = want_key ? gw_header(r, "x-api-key") : NULL;
    if (hk) {
        size_t n = strlen(hk);
        if (!api_key_shape(hk, n))
            return reject(r, "INVALID_API_KEY", "Invalid API key");
        set_cred(r, GW_CRED_API_KEY, GW_SRC_API_HEADER, hk, n);
        hash_cred(r);
        return GW_EXTRACT_OK;
    }
    /* 3. Authorization: Bearer */
    const char *auth = gw_header(r, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        const char *v = auth + 7;
        while (*v == ' ')
            v++;
        size_t n = strlen(v);
        while (n > 0 && v[n - 1] == ' ')
            n--;
        if (n == 0)
            return reject(r, "INVALID_TOKEN", "Malformed bearer token");
        if (n >= GW_CRED_MAX - 1)
            return reject(r, jwt_shape(v, n) ? "JWT_TOO_LARGE" : "INVALID_TOKEN",
                          jwt_shape(v, n) ? "JWT too large" : "Malformed bearer token");
        if (jwt_shape(v, n)) {
            if (!want_jwt)
                return reject(r, "CREDENTIAL_NOT_ACCEPTED", "This route does not accept JWTs");
            if (n > PC_JWT_MAX)
                return reject(r, "JWT_TOO_LARGE", "JWT too large");
            set_cred(r, GW_CRED_JWT, GW_SRC_BEARER, v, n);
            hash_cred(r);
            return GW_EXTRACT_OK;
        }
        if (api_key_structure(v, n)) {
            if (!want_key)
                return reject(r, "CREDENTIAL_NOT_ACCEPTED", "This route does not accept API keys");
            if (!api_key_shape(v, n))
                return reject(r, "INVALID_API_KEY", "Invalid API key");
            set_cred(r, GW_CRED_API_KEY, GW_SRC_BEARER, v, n);
            hash_cred(r);
            return GW_EXTRACT_OK;
        }
        if (!want_session)
            return reject(r, "CREDENTIAL_NOT_ACCEPTED", "This route does not accept sessions");
        if (!session_from_value(r, v, n, PC_SIG_TOLERANT, GW_SRC_BEARER))
            return reject(r, "INVALID_TOKEN", "Invalid bearer token");
        hash_cred(r);
        return GW_EXTRACT_OK;
    }
    /* 4. the session cookie */
    const char *cookie = want_session ? gw_header(r, "Cookie") : NULL;
    if (cookie) {
        char *raw = pc_cookie_get(cookie, gw_cfg.cookie_session);
        if (raw) {
            bool ok = session_from_value(r, raw, strlen(raw), PC_SIG_COOKIE, GW_SRC_COOKIE);
            pc_wipe(raw, strlen(raw));
            free(raw);
            if (!ok)
                return reject(r, "INVALID_SESSION", "Invalid session cookie");
            hash_cred(r);
            return GW_EXTRACT_OK;
        }
    }
    return reject(r, "UNAUTHORIZED", "Authentication required");
}
