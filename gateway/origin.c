/* Portcullis - MIT licence. See LICENSE.
 *
 * origin.c: part of stage 3 (extract). A request authenticated by the
 * session cookie with an unsafe method (anything but GET, HEAD, OPTIONS)
 * may have been sent by another site's page: a browser attaches the cookie
 * to a cross-site form post. As authsvc does for its own routes
 * (better-auth-compat.md §5), such a request needs an Origin, or without
 * one a Referer, that is
 *
 *   - trusted: the origin of BETTER_AUTH_URL, TRUSTED_ORIGINS, the route's
 *     "trusted_origins", or an origin its "cors" lists; or
 *   - the request's own: the Origin's host and port are those the request
 *     was sent to (Host; from a trusted proxy X-Forwarded-Host; for
 *     forward auth the original host), as a browser on a page of this
 *     site sends it.
 *
 * Otherwise 403 MISSING_OR_NULL_ORIGIN or INVALID_ORIGIN, Better Auth's
 * codes. API keys, Bearer tokens and JWTs are not sent by a browser on its
 * own, so they are exempt; a route may turn the check off with
 * "origin_check": false. No I/O; reads r, writes only *why.
 */
#include "stages.h"
#include "../lib/url.h"

#include <stdio.h>
#include <string.h>

static bool safe_method(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0;
}

/* The host (and port) the request was sent to, as the browser named it. */
static const char *request_host(const struct gw_request *r)
{
    const char *h = gw_peer_trusted(r) ? gw_header(r, "X-Forwarded-Host") : NULL;
    if (h == NULL && r->forward_auth && r->fa_host[0])
        h = r->fa_host;
    return h ? h : gw_header(r, "Host");
}

/* Is u (an Origin as parsed) the origin of the request itself? The Host is
 * read as a URL of the Origin's scheme, so case and default ports agree. */
static bool same_host(const struct gw_request *r, const struct pc_url *u)
{
    const char *h = request_host(r);
    if (h == NULL || h[0] == '\0' || strlen(h) > 255 || strpbrk(h, "/?#@\\"))
        return false;
    if (r->tls && !u->https)
        return false; /* it came over our TLS: its own origin is https:// */
    char url[300];
    snprintf(url, sizeof url, "%s://%s", u->https ? "https" : "http", h);
    struct pc_url hu;
    if (pc_url_parse(url, strlen(url), &hu) != PC_URL_OK || hu.userinfo)
        return false;
    char a[320], b[320];
    pc_url_origin(u, a, sizeof a);
    pc_url_origin(&hu, b, sizeof b);
    return strcmp(a, b) == 0;
}

static bool cors_lists(const struct gw_cors *c, const struct pc_url *u)
{
    if (c == NULL || c->any_origin)
        return false;
    char o[320];
    pc_url_origin(u, o, sizeof o);
    for (size_t i = 0; i < c->norigins; i++)
        if (strcmp(c->origins[i], o) == 0)
            return true;
    return false;
}

static bool refuse(struct gw_refusal *why, const char *code, const char *msg)
{
    why->status = 403;
    why->code = code;
    why->msg = msg;
    return false;
}

bool gw_origin_ok(const struct gw_request *r, struct gw_refusal *why)
{
    const struct gw_route *rt = r->route;
    if (rt == NULL || !rt->origin_check || r->src != GW_SRC_COOKIE)
        return true;
    const char *m = r->forward_auth && r->fa_method[0] ? r->fa_method : r->method;
    if (safe_method(m))
        return true;
    const char *src = gw_header(r, "Origin");
    if (src == NULL)
        src = gw_header(r, "Referer");
    if (src == NULL || src[0] == '\0' || strcmp(src, "null") == 0)
        return refuse(why, "MISSING_OR_NULL_ORIGIN", "Missing or null Origin");
    struct pc_url u;
    if (pc_url_parse(src, strlen(src), &u) != PC_URL_OK || u.userinfo)
        return refuse(why, "INVALID_ORIGIN", "Invalid origin");
    if (pc_origin_list_match(&gw_cfg.trusted, &u) || pc_origin_list_match(&rt->trusted, &u) ||
        cors_lists(rt->cors, &u) || same_host(r, &u))
        return true;
    return refuse(why, "INVALID_ORIGIN", "Invalid origin");
}
