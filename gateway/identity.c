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
 *                Better Auth's own cookies; otherwise none
 *   ours         gw_identity_headers: the identity of the principal, for
 *                proxy.c's request upstream and forward.c's 200
 *   the route's  request_headers and response_headers (gw_hdr_rules):
 *                lines of a name they list are dropped, their "set" lines
 *                added; config.c refuses the names above (identity,
 *                X-Forwarded-*, hop-by-hop, framing) so that a route cannot
 *                undo this policy
 */
#include "proxy.h"
#include "request.h"
#include "../lib/http.h"

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
    for (int i = 0; i < GW_IDH_COUNT; i++) {
        const char *c = gw_cfg.idh.name[i];
        if (c[0] && strlen(c) == n && strncasecmp(h, c, n) == 0)
            return true;
    }
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
        if (p->issuer < gw_cfg.nissuers) /* whose sub the user id is */
            idh(b, GW_IDH_ISSUER, gw_cfg.issuers[p->issuer].issuer);
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
