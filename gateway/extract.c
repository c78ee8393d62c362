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
 * The credential's SHA-256 becomes the cache and revocation key. Decide
 * also asks here whether the request holds Better Auth's dont_remember
 * cookie (gw_dont_remember).
 */
#include "stages.h"
#include "../lib/bearer.h"
#include "../lib/cookie.h"
#include "../lib/http.h"
#include "../lib/jws.h"

#include <stdlib.h>
#include <string.h>

#define API_KEY_BODY PC_BEARER_API_KEY_BODY

/* prefix [A-Za-z0-9_-]{0,32} followed by exactly 64 letters and, with
 * API_KEY_PREFIXES set, a prefix from that list */
static bool api_key_shape(const char *k, size_t n)
{
    if (!pc_bearer_api_key_shape(k, n))
        return false;
    if (gw_cfg.nprefixes == 0)
        return true;
    size_t plen = n - API_KEY_BODY;
    for (size_t i = 0; i < gw_cfg.nprefixes; i++)
        if (strlen(gw_cfg.prefixes[i]) == plen && memcmp(gw_cfg.prefixes[i], k, plen) == 0)
            return true;
    return false;
}

static void set_cred(struct gw_request *r, enum gw_cred_kind kind, enum gw_cred_src src,
                     const char *v, size_t n)
{
    r->kind = kind;
    r->src = src;
    gw_cred_set(r, v, n);
}

static void hash_cred(struct gw_request *r)
{
    pc_sha256(r->cred, r->cred_len, r->hash);
    pc_b64url_encode(r->hash, sizeof r->hash, r->hash_b64);
}

static enum gw_extract_result reject(struct gw_refusal *why, const char *code, const char *msg)
{
    why->status = 401;
    why->code = code;
    why->msg = msg;
    why->expired = false;
    return GW_EXTRACT_ANSWERED;
}

/* Accepts a session token from a signed value ("token.sig") or a raw token. */
static bool session_from_value(struct gw_request *r, const char *v, size_t n,
                               enum pc_sig_mode mode, enum gw_cred_src src)
{
    if (memchr(v, '.', n) == NULL) {
        if (src != GW_SRC_BEARER || !pc_bearer_session_token_shape(v, n))
            return false;
        set_cred(r, GW_CRED_SESSION, src, v, n);
        return true;
    }
    char *dec = memchr(v, '%', n) ? pc_url_decode(v, n) : pc_xstrndup(v, n);
    char tok[128];
    bool ok = dec && pc_verify_signed(gw_cfg.secret, dec, strlen(dec), mode, tok, sizeof tok) &&
              pc_bearer_session_token_shape(tok, strlen(tok));
    free(dec);
    if (ok)
        set_cred(r, GW_CRED_SESSION, src, tok, strlen(tok));
    pc_wipe(tok, sizeof tok);
    return ok;
}

/* The raw (still percent-encoded) value of cookie name, from every Cookie
 * line in order, as if joined (heap), or NULL. */
static char *cookie_raw(const struct gw_request *r, const char *name)
{
    const char *lines[PC_HTTP_MAX_HEADERS];
    size_t nlines = gw_header_all(r, "Cookie", lines, PC_ARRAY_LEN(lines));
    if (nlines > PC_ARRAY_LEN(lines))
        nlines = PC_ARRAY_LEN(lines);
    return nlines ? pc_cookie_get_lines(lines, nlines, name) : NULL;
}

bool gw_dont_remember(const struct gw_request *r)
{
    char *raw = cookie_raw(r, gw_cfg.cookie_dont_remember);
    if (raw == NULL)
        return false;
    char v[16]; /* "true", as Better Auth and authsvc sign it */
    bool ok = pc_cookie_verify(gw_cfg.secret, raw, v, sizeof v);
    free(raw);
    return ok;
}

enum gw_extract_result gw_extract_cred(struct gw_request *r, struct gw_refusal *why)
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
            return reject(why, "INVALID_API_KEY", "Invalid API key");
        r->kind = GW_CRED_API_KEY;
        hash_cred(r);
        return GW_EXTRACT_OK;
    }
    /* 2. x-api-key */
    const char *hk = want_key ? gw_header(r, "x-api-key") : NULL;
    if (hk) {
        size_t n = strlen(hk);
        if (!api_key_shape(hk, n))
            return reject(why, "INVALID_API_KEY", "Invalid API key");
        set_cred(r, GW_CRED_API_KEY, GW_SRC_API_HEADER, hk, n);
        hash_cred(r);
        return GW_EXTRACT_OK;
    }
    /* 3. Authorization: Bearer, told apart by lib/bearer.c as authsvc does */
    size_t n = 0;
    const char *v = pc_bearer_value(gw_header(r, "Authorization"), &n);
    if (v) {
        if (n == 0)
            return reject(why, "INVALID_TOKEN", "Malformed bearer token");
        enum pc_bearer_kind bk = pc_bearer_classify(v, n, gw_cfg.bearer_require_sig);
        if (n >= GW_CRED_MAX - 1)
            return reject(why, bk == PC_BEARER_JWT ? "JWT_TOO_LARGE" : "INVALID_TOKEN",
                          bk == PC_BEARER_JWT ? "JWT too large" : "Malformed bearer token");
        switch (bk) {
        case PC_BEARER_JWT:
            if (!want_jwt)
                return reject(why, "CREDENTIAL_NOT_ACCEPTED", "This route does not accept JWTs");
            if (n > PC_JWT_MAX)
                return reject(why, "JWT_TOO_LARGE", "JWT too large");
            set_cred(r, GW_CRED_JWT, GW_SRC_BEARER, v, n);
            hash_cred(r);
            return GW_EXTRACT_OK;
        case PC_BEARER_API_KEY:
            if (!want_key)
                return reject(why, "CREDENTIAL_NOT_ACCEPTED", "This route does not accept API keys");
            if (!api_key_shape(v, n))
                return reject(why, "INVALID_API_KEY", "Invalid API key");
            set_cred(r, GW_CRED_API_KEY, GW_SRC_BEARER, v, n);
            hash_cred(r);
            return GW_EXTRACT_OK;
        default:
            break;
        }
        if (!want_session)
            return reject(why, "CREDENTIAL_NOT_ACCEPTED", "This route does not accept sessions");
        if (bk == PC_BEARER_SESSION_UNSIGNED)
            return reject(why, "INVALID_TOKEN", "Bearer session tokens must be signed");
        if (bk == PC_BEARER_MALFORMED ||
            !session_from_value(r, v, n, PC_SIG_TOLERANT, GW_SRC_BEARER))
            return reject(why, "INVALID_TOKEN", "Invalid bearer token");
        hash_cred(r);
        return GW_EXTRACT_OK;
    }
    /* 4. the session cookie */
    char *raw = want_session ? cookie_raw(r, gw_cfg.cookie_session) : NULL;
    if (raw) {
        bool ok = session_from_value(r, raw, strlen(raw), PC_SIG_COOKIE, GW_SRC_COOKIE);
        pc_wipe(raw, strlen(raw));
        free(raw);
        if (!ok)
            return reject(why, "INVALID_SESSION", "Invalid session cookie");
        hash_cred(r);
        return GW_EXTRACT_OK;
    }
    return reject(why, "UNAUTHORIZED", "Authentication required");
}

enum gw_extract_result gw_extract(struct gw_request *r)
{
    struct gw_refusal why;
    enum gw_extract_result x = gw_extract_cred(r, &why);
    if (x == GW_EXTRACT_OK && !gw_origin_ok(r, &why))
        x = GW_EXTRACT_ANSWERED;
    if (x == GW_EXTRACT_ANSWERED)
        gw_fail(r, why.status, why.code, why.msg);
    return x;
}
