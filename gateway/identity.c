/* Portcullis - MIT licence. See LICENSE.
 *
 * identity.c: the header policy between a client and an upstream
 * (proxy.h), the part a security review reads first:
 *
 *   hop-by-hop   Connection, Keep-Alive, TE, Upgrade, ... and whatever the
 *                Connection header names: never relayed, either way
 *   identity     X-User-Id, X-User-Email, X-Auth-Method, X-Session-Id,
 *                X-Api-Key-Id, X-Auth-JWT, X-Auth-Issuer, oauth2-proxy's
 *                X-Auth-Request-User and -Email (and the names
 *                IDENTITY_HEADER_NAMES gives them), X-Request-Id,
 *                X-Forwarded-Proto, -Host, -Prefix, Host, Content-Length,
 *                Expect: only the gateway sets them; a client's are dropped
 *                (proxy.c keeps a trusted proxy's X-Forwarded-*)
 *   cookies      on routes with forward_cookies, the Cookie header minus
 *                Better Auth's own cookies; on auth_passthrough routes
 *                ("none" routes to authsvc or Better Auth) the Cookie header
 *                whole; otherwise none. The upstream's Set-Cookie lines
 *                always reach the client
 *   ours         gw_identity_headers: the identity of the principal, for
 *                proxy.c's request upstream and forward.c's 200
 *   names        IDENTITY_HEADER_NAMES (gw_identity_names_parse, at start):
 *                what each identity header is called, and the names none
 *                may take
 *   refresh      gw_refresh_cookie_header: after a sliding refresh of a
 *                cookie session (decide.c), the session cookie once more
 *                with the new Max-Age, on the answer to the client (proxied,
 *                forward auth's 200, or one of ours), as Better Auth re-sends
 *                it; an upstream's own Set-Cookie of that cookie wins
 *   the route's  request_headers and response_headers (gw_hdr_rules):
 *                lines of a name they list are dropped, their "set" lines
 *                added; routes_file.c refuses the names above (identity,
 *                X-Forwarded-*, hop-by-hop, framing) so that a route cannot
 *                undo this policy
 */
#include "proxy.h"
#include "request.h"
#include "../lib/cookie.h"
#include "../lib/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hname {
    const char *s;
    size_t n;
};
#define HN(s) {s, sizeof s - 1}

/* Is the header h (n bytes) one of list? Lengths first: most headers are
 * told apart without comparing a byte. */
static bool name_in(const char *h, size_t n, const struct hname *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (list[i].n == n && strncasecmp(h, list[i].s, n) == 0)
            return true;
    return false;
}

bool gw_hop_by_hop(const char *h, size_t n)
{
    static const struct hname names[] = {
        HN("Connection"), HN("Keep-Alive"), HN("Proxy-Authenticate"), HN("Proxy-Authorization"),
        HN("TE"), HN("Trailer"), HN("Transfer-Encoding"), HN("Upgrade"), HN("Proxy-Connection")};
    return name_in(h, n, names, PC_ARRAY_LEN(names));
}

const char *const gw_idh_default[GW_IDH_COUNT] = {
    [GW_IDH_USER_ID] = "X-User-Id",       [GW_IDH_EMAIL] = "X-User-Email",
    [GW_IDH_METHOD] = "X-Auth-Method",    [GW_IDH_SESSION_ID] = "X-Session-Id",
    [GW_IDH_API_KEY_ID] = "X-Api-Key-Id", [GW_IDH_ISSUER] = "X-Auth-Issuer",
    [GW_IDH_JWT] = "X-Auth-JWT",          [GW_IDH_AR_USER] = "X-Auth-Request-User",
    [GW_IDH_AR_EMAIL] = "X-Auth-Request-Email",
};

/* Headers only the gateway may set: the identity under its default names
 * (renamed or not) and under the names IDENTITY_HEADER_NAMES gave it.
 * Expect was answered here (front.c): the upstream gets the whole body at
 * once. */
bool gw_identity_header(const char *h, size_t n)
{
    static const struct hname names[] = {
        HN("X-User-Id"), HN("X-User-Email"), HN("X-Auth-Method"), HN("X-Session-Id"),
        HN("X-Api-Key-Id"), HN("X-Request-Id"), HN("X-Auth-JWT"), HN("X-Auth-Issuer"),
        HN("X-Auth-Request-User"), HN("X-Auth-Request-Email"),
        HN("X-Forwarded-Proto"), HN("X-Forwarded-Host"), HN("X-Forwarded-Prefix"), HN("Host"),
        HN("Content-Length"), HN("Expect")};
    if (name_in(h, n, names, PC_ARRAY_LEN(names)))
        return true;
    if (!gw_cfg.idh.renamed)
        return false;
    for (int i = 0; i < GW_IDH_COUNT; i++)
        if (gw_cfg.idh.len[i] == n && n > 0 && strncasecmp(h, gw_cfg.idh.name[i], n) == 0)
            return true;
    return false;
}

bool gw_hdr_ruled(const struct gw_hdr_rules *rules, const char *h, size_t n)
{
    for (size_t i = 0; i < rules->n; i++)
        if (rules->r[i].nlen == n && strncasecmp(h, rules->r[i].name, n) == 0)
            return true;
    return false;
}

void gw_hdr_rules_set(const struct gw_hdr_rules *rules, struct pc_buf *b)
{
    for (size_t i = 0; i < rules->n; i++)
        if (rules->r[i].value)
            gw_hdr_append(b, rules->r[i].name, rules->r[i].value);
}

/* Is h named in the request's Connection header (so hop-by-hop too)? */
bool gw_named_in_connection(const char *conn, const char *h)
{
    return conn != NULL && pc_http_list_has(conn, h, strlen(h));
}

/* The Cookie header minus Better Auth's own cookies, or NULL if none left. */
char *gw_filter_cookies(const char *cookie)
{
    struct pc_buf b = {0};
    const char *p = cookie;
    while (*p) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t l = strcspn(p, ";");
        if (l == 0)
            break;
        const char *name = p;
        size_t nl = strcspn(name, "=");
        if (nl > l)
            nl = l;
        bool ours = (nl >= 11 && (memmem(name, nl, "better-auth.", 12) != NULL));
        if (!ours) {
            if (b.len)
                pc_buf_puts(&b, "; ");
            pc_buf_append(&b, p, l);
        }
        p += l;
    }
    return b.data; /* NULL when empty */
}

/* A name IDENTITY_HEADER_NAMES may not give an identity header: the
 * request's framing, routing and credentials, and what the gateway sets
 * besides the identity. */
static bool reserved_name(const char *h, size_t n)
{
    static const char *const names[] = {"Host",   "Content-Length", "Expect",   "X-Request-Id",
                                        "Cookie", "Authorization",  "X-Api-Key", "Set-Cookie"};
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == n && strncasecmp(h, names[i], n) == 0)
            return true;
    return gw_hop_by_hop(h, n) || (n >= 12 && strncasecmp(h, "X-Forwarded-", 12) == 0);
}

static const char *trim(const char *a, const char **end)
{
    while (a < *end && (*a == ' ' || *a == '\t'))
        a++;
    while (*end > a && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
    return a;
}

int gw_identity_names_parse(const char *spec, struct gw_idnames *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < GW_IDH_COUNT; i++)
        snprintf(out->name[i], sizeof out->name[i], "%s", gw_idh_default[i]);
    bool given[GW_IDH_COUNT] = {false};
    for (const char *p = spec, *next; *spec && p; p = next) {
        size_t l = strcspn(p, ",");
        next = p[l] == ',' ? p + l + 1 : NULL; /* "A=B," ends with an empty item */
        const char *end = p + l, *a = trim(p, &end);
        const char *eq = memchr(a, '=', (size_t)(end - a));
        if (eq == NULL) {
            snprintf(err, errsz, "IDENTITY_HEADER_NAMES: \"%.*s\": must be Name=NewName, or "
                                 "Name= for not sent", (int)(end - a), a);
            return -1;
        }
        const char *oend = eq, *old = trim(a, &oend), *nend = end, *nw = trim(eq + 1, &nend);
        size_t ol = (size_t)(oend - old), nl = (size_t)(nend - nw);
        int k = 0;
        while (k < GW_IDH_COUNT &&
               (strlen(gw_idh_default[k]) != ol || strncasecmp(old, gw_idh_default[k], ol) != 0))
            k++;
        if (k == GW_IDH_COUNT) {
            snprintf(err, errsz, "IDENTITY_HEADER_NAMES: \"%.*s\" is not an identity header "
                                 "(X-User-Id, X-User-Email, X-Auth-Method, X-Session-Id, "
                                 "X-Api-Key-Id, X-Auth-Issuer, X-Auth-JWT, X-Auth-Request-User, "
                                 "X-Auth-Request-Email)", (int)ol, old);
            return -1;
        }
        if (given[k]) {
            snprintf(err, errsz, "IDENTITY_HEADER_NAMES: %s is renamed twice", gw_idh_default[k]);
            return -1;
        }
        given[k] = true;
        if (nl > GW_HDR_NAME_MAX || strspn(nw, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                               "0123456789-_") < nl) {
            snprintf(err, errsz, "IDENTITY_HEADER_NAMES: %s: \"%.*s\" is not a header name "
                                 "([A-Za-z0-9_-], at most %d)", gw_idh_default[k], (int)nl, nw,
                     GW_HDR_NAME_MAX);
            return -1;
        }
        if (nl > 0 && reserved_name(nw, nl)) {
            snprintf(err, errsz, "IDENTITY_HEADER_NAMES: %s: %.*s is not the identity's to take "
                                 "(framing, routing, credential and X-Forwarded-* headers)",
                     gw_idh_default[k], (int)nl, nw);
            return -1;
        }
        memcpy(out->name[k], nw, nl);
        out->name[k][nl] = '\0';
    }
    for (int i = 0; i < GW_IDH_COUNT; i++)
        out->len[i] = (unsigned char)strlen(out->name[i]);
    for (int i = 0; i < GW_IDH_COUNT; i++) {
        if (strcmp(out->name[i], gw_idh_default[i]) != 0)
            out->renamed = true;
        for (int j = i + 1; j < GW_IDH_COUNT; j++)
            if (out->name[i][0] && strcasecmp(out->name[i], out->name[j]) == 0) {
                snprintf(err, errsz, "IDENTITY_HEADER_NAMES: %s and %s would both be sent as %s "
                                     "(rename or drop the other too)",
                         gw_idh_default[i], gw_idh_default[j], out->name[i]);
                return -1;
            }
    }
    return 0;
}

/* One identity header under its configured name; none when dropped. */
static void idh(struct pc_buf *b, enum gw_idh which, const char *value)
{
    if (gw_cfg.idh.name[which][0])
        gw_hdr_append(b, gw_cfg.idh.name[which], value);
}

void gw_identity_headers(struct gw_request *r, struct pc_buf *b)
{
    if (r->route->anonymous)
        return;
    const struct gw_principal *p = &r->p;
    idh(b, GW_IDH_USER_ID, p->user_id);
    idh(b, GW_IDH_AR_USER, p->user_id);
    if (p->email[0]) {
        idh(b, GW_IDH_EMAIL, p->email);
        idh(b, GW_IDH_AR_EMAIL, p->email);
    }
    if (r->kind == GW_CRED_SESSION) {
        idh(b, GW_IDH_METHOD, "session");
        idh(b, GW_IDH_SESSION_ID, p->cred_id);
    } else if (r->kind == GW_CRED_JWT) {
        idh(b, GW_IDH_METHOD, "jwt");
        if (p->issuer < atomic_load(&gw_cfg.issuers_published)) /* whose sub the user id is */
            idh(b, GW_IDH_ISSUER, gw_cfg.issuers[p->issuer]->issuer);
        if (p->cred_id[0])
            idh(b, GW_IDH_SESSION_ID, p->cred_id);
    } else {
        idh(b, GW_IDH_METHOD, "api_key");
        idh(b, GW_IDH_API_KEY_ID, p->cred_id);
    }
    if (r->upstream_jwt && r->route->upstream_jwt == GW_UPJWT_HEADER) {
        idh(b, GW_IDH_JWT, r->upstream_jwt);
    } else if (r->upstream_jwt) {
        pc_buf_puts(b, "Authorization: Bearer ");
        pc_buf_puts(b, r->upstream_jwt);
        pc_buf_append(b, "\r\n", 2);
    }
}

void gw_refresh_cookie_header(struct gw_request *r, struct pc_buf *b)
{
    bool send = r->refresh_cookie && r->kind == GW_CRED_SESSION;
    r->refresh_cookie = false; /* once: on the answer to the request that refreshed */
    if (!send)
        return;
    /* HMAC is deterministic: the token signed again is the value the
     * client sent (in its canonical encoding, as Better Auth writes it) */
    size_t cap = r->cred_len + 1 + PC_SIG_B64_LEN + 1;
    char *sv = pc_xmalloc(cap);
    pc_sign_value(gw_cfg.secret, r->cred, sv);
    struct pc_buf v = {0};
    pc_set_cookie_value(&v, gw_cfg.cookie_session, sv, gw_cfg.expires_in, gw_cfg.secure_cookies);
    gw_hdr_append(b, "Set-Cookie", v.data);
    pc_wipe(v.data, v.len);
    pc_buf_free(&v);
    pc_wipe(sv, cap);
    free(sv);
}

bool gw_sets_session_cookie(const char *v, size_t n)
{
    /* RFC 6265 5.2: the name is what precedes the first '=', trimmed */
    size_t i = 0;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    size_t nl = strlen(gw_cfg.cookie_session);
    if (n - i < nl || memcmp(v + i, gw_cfg.cookie_session, nl) != 0)
        return false;
    for (i += nl; i < n && (v[i] == ' ' || v[i] == '\t'); i++)
        ;
    return i < n && v[i] == '=';
}
