/* Portcullis - MIT licence. See LICENSE.
 *
 * identity.c: the header policy between a client and an upstream
 * (proxy.h), the part a security review reads first:
 *
 *   hop-by-hop   Connection, Keep-Alive, TE, Upgrade, ... and whatever the
 *                Connection header names: never relayed, either way
 *   identity     X-User-Id, X-User-Email, X-Auth-Method, X-Session-Id,
 *                X-Api-Key-Id, X-Auth-JWT, X-Auth-Issuer, X-Request-Id,
 *                X-Forwarded-Proto, -Host, -Prefix, Host, Content-Length,
 *                Expect: only the gateway sets them; a client's are dropped
 *                (proxy.c keeps a trusted proxy's X-Forwarded-*)
 *   cookies      on routes with forward_cookies, the Cookie header minus
 *                Better Auth's own cookies; otherwise none
 *   ours         gw_identity_headers: the identity of the principal, for
 *                proxy.c's request upstream and forward.c's 200
 *   refresh      gw_refresh_cookie_header: after a sliding refresh of a
 *                cookie session (decide.c), the session cookie once more
 *                with the new Max-Age, on the answer to the client (proxied,
 *                forward auth's 200, or one of ours), as Better Auth re-sends
 *                it; an upstream's own Set-Cookie of that cookie wins
 *   the route's  request_headers and response_headers (gw_hdr_rules):
 *                lines of a name they list are dropped, their "set" lines
 *                added; config.c refuses the names above (identity,
 *                X-Forwarded-*, hop-by-hop, framing) so that a route cannot
 *                undo this policy
 */
#include "proxy.h"
#include "request.h"
#include "../lib/cookie.h"
#include "../lib/http.h"

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

/* Headers only the gateway may set. Expect was answered here (front.c):
 * the upstream gets the whole body at once. */
bool gw_identity_header(const char *h, size_t n)
{
    static const struct hname names[] = {
        HN("X-User-Id"), HN("X-User-Email"), HN("X-Auth-Method"), HN("X-Session-Id"),
        HN("X-Api-Key-Id"), HN("X-Request-Id"), HN("X-Auth-JWT"), HN("X-Auth-Issuer"),
        HN("X-Forwarded-Proto"), HN("X-Forwarded-Host"), HN("X-Forwarded-Prefix"), HN("Host"),
        HN("Content-Length"), HN("Expect")};
    return name_in(h, n, names, PC_ARRAY_LEN(names));
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

void gw_identity_headers(struct gw_request *r, struct pc_buf *b)
{
    if (r->route->anonymous)
        return;
    const struct gw_principal *p = &r->p;
    gw_hdr_append(b, "X-User-Id", p->user_id);
    if (p->email[0])
        gw_hdr_append(b, "X-User-Email", p->email);
    if (r->kind == GW_CRED_SESSION) {
        gw_hdr_append(b, "X-Auth-Method", "session");
        gw_hdr_append(b, "X-Session-Id", p->cred_id);
    } else if (r->kind == GW_CRED_JWT) {
        gw_hdr_append(b, "X-Auth-Method", "jwt");
        if (p->issuer < gw_cfg.nissuers) /* whose sub X-User-Id is */
            gw_hdr_append(b, "X-Auth-Issuer", gw_cfg.issuers[p->issuer].issuer);
        if (p->cred_id[0])
            gw_hdr_append(b, "X-Session-Id", p->cred_id);
    } else {
        gw_hdr_append(b, "X-Auth-Method", "api_key");
        gw_hdr_append(b, "X-Api-Key-Id", p->cred_id);
    }
    if (r->upstream_jwt && r->route->upstream_jwt == GW_UPJWT_HEADER) {
        gw_hdr_append(b, "X-Auth-JWT", r->upstream_jwt);
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
