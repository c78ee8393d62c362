/* Portcullis - MIT licence. See LICENSE.
 *
 * cors.c: CORS for routes with "cors" (routes_file.c parsed it; cors.h says who
 * calls what). The Origin a browser sends is compared whole with the
 * route's serialized origins; an origin that is not listed gets no
 * Access-Control-Allow-* line at all, so the browser keeps the answer from
 * the page. A preflight carries no credential, so it is answered here,
 * before extract; the real request is then authenticated as any other.
 *
 * Reads r, its headers and its route; writes only the buffer it is given,
 * or (gw_cors_preflight) the answer.
 */
#include "cors.h"
#include "request.h"
#include "../lib/util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *allowed_origin(const struct gw_request *r)
{
    const struct gw_cors *c = r->route ? r->route->cors : NULL;
    const char *o = c ? gw_header(r, "Origin") : NULL;
    if (o == NULL || o[0] == '\0')
        return NULL;
    if (c->any_origin)
        return "*";
    for (size_t i = 0; i < c->norigins; i++)
        if (strcasecmp(c->origins[i], o) == 0)
            return o;
    return NULL;
}

static bool listed(char *const *list, size_t n, const char *s, size_t len, bool nocase)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len &&
            (nocase ? strncasecmp(list[i], s, len) : strncmp(list[i], s, len)) == 0)
            return true;
    return false;
}

/* Every name in Access-Control-Request-Headers (a comma list) is allowed? */
static bool headers_allowed(const struct gw_cors *c, const char *asked)
{
    for (const char *p = asked; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t t = n;
        while (t > 0 && (p[t - 1] == ' ' || p[t - 1] == '\t'))
            t--;
        if (t && !listed(c->headers, c->nheaders, p, t, true))
            return false;
        p += n;
    }
    return true;
}

bool gw_cors_preflight(struct gw_request *r)
{
    const struct gw_cors *c = r->route ? r->route->cors : NULL;
    if (c == NULL || r->forward_auth || strcmp(r->method, "OPTIONS") != 0)
        return false;
    const char *want = gw_header(r, "Access-Control-Request-Method");
    if (want == NULL || gw_header(r, "Origin") == NULL)
        return false; /* a plain OPTIONS: authenticated and proxied as any request */
    const char *origin = allowed_origin(r);
    bool ok = origin && listed(c->methods, c->nmethods, want, strlen(want), false) &&
              headers_allowed(c, gw_header(r, "Access-Control-Request-Headers"));
    r->outcome = ok ? "CORS_PREFLIGHT" : "CORS_REFUSED";
    struct pc_buf *b = gw_resp_begin(r, 204, NULL);
    if (ok) {
        gw_hdr_append(b, "Access-Control-Allow-Methods", c->methods_s);
        if (c->headers_s[0])
            gw_hdr_append(b, "Access-Control-Allow-Headers", c->headers_s);
        if (c->max_age >= 0) {
            pc_buf_puts(b, "Access-Control-Max-Age: ");
            pc_buf_putu(b, (uint64_t)c->max_age);
            pc_buf_append(b, "\r\n", 2);
        }
    }
    gw_hdr_append(b, "X-Request-Id", r->request_id);
    /* gw_resp_end_head adds Allow-Origin (+ Credentials) and Vary */
    gw_resp_end_head(r, GW_LEN_OMIT, true);
    gw_resp_send(r);
    gw_request_end(r);
    return true;
}

void gw_cors_headers(const struct gw_request *r, struct pc_buf *b)
{
    const struct gw_cors *c = r->route ? r->route->cors : NULL;
    if (c == NULL || r->forward_auth)
        return;
    const char *origin = allowed_origin(r);
    bool preflight = r->outcome && strcmp(r->outcome, "CORS_REFUSED") == 0;
    if (origin && !preflight) {
        gw_hdr_append(b, "Access-Control-Allow-Origin", origin);
        if (c->credentials)
            gw_hdr_append(b, "Access-Control-Allow-Credentials", "true");
        if (c->expose_s && strcmp(r->method, "OPTIONS") != 0)
            gw_hdr_append(b, "Access-Control-Expose-Headers", c->expose_s);
    }
    if (!c->any_origin)
        gw_hdr_append(b, "Vary", "Origin");
}

bool gw_cors_header_name(const char *name, size_t n)
{
    return n > 15 && strncasecmp(name, "Access-Control-", 15) == 0;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

void gw_cors_free(struct gw_cors *c)
{
    if (c == NULL)
        return;
    free_list(c->origins, c->norigins);
    free_list(c->headers, c->nheaders);
    free_list(c->methods, c->nmethods);
    free(c->methods_s);
    free(c->headers_s);
    free(c->expose_s);
    free(c);
}
