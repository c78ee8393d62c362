/* Portcullis - MIT licence. See LICENSE.
 *
 * signin.c: where a browser without a valid credential goes, on a route with
 * "on_unauthenticated": "redirect" (routes_file.c checked its sign_in_url). Only a
 * navigation is sent there: a GET or HEAD (for forward auth, the original
 * method) whose Accept names text/html; API calls keep their 401 JSON. The
 * way back is the original request's URL, percent-encoded whole into the
 * route's return_to_param. It is only a hint: whoever reads it (authsvc's
 * callbackURL, a Better Auth server) checks it against its trusted origins
 * before sending a browser there, so a lying Host makes no open redirect.
 *
 * Reads r and the configuration; writes only the buffer it is given.
 */
#include "request.h"
#include "../lib/util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool navigation(const struct gw_request *r)
{
    const char *m = r->forward_auth && r->fa_method[0] ? r->fa_method : r->method;
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0)
        return false;
    const char *accept = gw_header(r, "Accept");
    return accept && strcasestr(accept, "text/html") != NULL;
}

/* Appends s with every byte but the unreserved ones (RFC 3986 2.3) as %XX. */
static void pct_encode(struct pc_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            pc_buf_putc(b, (char)*p);
            continue;
        }
        char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        pc_buf_append(b, e, 3);
    }
}

bool gw_signin_location(const struct gw_request *r, struct pc_buf *out)
{
    const struct gw_route *rt = r->route;
    if (rt == NULL || rt->signin_url == NULL || !navigation(r))
        return false;
    bool trusted = gw_peer_trusted(r);
    const char *proto = trusted ? gw_header(r, "X-Forwarded-Proto") : NULL;
    if (proto == NULL || (strcasecmp(proto, "http") != 0 && strcasecmp(proto, "https") != 0))
        proto = "http";
    const char *host = trusted ? gw_header(r, "X-Forwarded-Host") : NULL;
    if (host == NULL && r->forward_auth && r->fa_host[0])
        host = r->fa_host;
    if (host == NULL)
        host = gw_header(r, "Host");
    if (host == NULL || host[0] == '\0')
        return false; /* no way back to name: a plain 401 */

    struct pc_buf back = {0};
    pc_buf_puts(&back, strcasecmp(proto, "https") == 0 ? "https://" : "http://");
    pc_buf_puts(&back, host);
    if (r->forward_auth && r->fa_uri) {
        pc_buf_puts(&back, r->fa_uri);
    } else {
        pc_buf_puts(&back, r->path);
        if (r->query) {
            pc_buf_putc(&back, '?');
            pc_buf_puts(&back, r->query);
        }
    }
    pc_buf_putc(&back, '\0');

    pc_buf_puts(out, rt->signin_url);
    pc_buf_putc(out, strchr(rt->signin_url, '?') ? '&' : '?');
    pc_buf_puts(out, rt->return_to_param);
    pc_buf_putc(out, '=');
    pct_encode(out, back.data);
    pc_buf_putc(out, '\0');
    pc_buf_free(&back);
    return true;
}
