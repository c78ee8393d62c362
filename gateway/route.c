/* Portcullis - MIT licence. See LICENSE.
 *
 * route.c: stage 1. Longest-prefix match over the routes table (sorted
 * longest first at load). A prefix with an :apiKey segment matches its part
 * before the key, then takes the next path segment as the key; the segment
 * is removed from the path sent upstream. For forward auth (/_auth) the path
 * comes from X-Original-URI or X-Forwarded-Uri.
 */
#include "gateway.h"

#include <stdlib.h>
#include <string.h>

/* Does path fall under prefix p? "/api/" matches "/api/x" and "/api";
 * "/api" matches "/api" and "/api/x" but not "/apix". */
static bool prefix_matches(const char *p, const char *path)
{
    size_t n = strlen(p);
    if (strncmp(path, p, n) == 0)
        return p[n - 1] == '/' || path[n] == '\0' || path[n] == '/' || path[n] == '?';
    /* "/api/" also covers "/api" itself */
    return n > 1 && p[n - 1] == '/' && strlen(path) == n - 1 && strncmp(path, p, n - 1) == 0;
}

/* For /_auth: the original request's path from the proxy's headers. */
static bool forward_auth_path(struct gw_request *r)
{
    const char *uri = gw_header(r, "X-Original-URI");
    if (uri == NULL)
        uri = gw_header(r, "X-Forwarded-Uri");
    if (uri == NULL || uri[0] != '/') {
        gw_fail(r, 400, "MISSING_ORIGINAL_URI",
                "Forward auth needs X-Original-URI or X-Forwarded-Uri");
        return false;
    }
    size_t n = strcspn(uri, "?#");
    free(r->path);
    r->path = pc_xstrndup(uri, n);
    if (!gw_path_plain(r->path)) {
        gw_fail(r, 400, "BAD_PATH",
                "The original URI holds a dot segment, an empty segment or an encoded separator");
        return false;
    }
    return true;
}

bool gw_route_match(struct gw_request *r)
{
    if (r->forward_auth && !forward_auth_path(r))
        return false;
    for (size_t i = 0; i < gw_cfg.nroutes; i++) {
        const struct gw_route *rt = &gw_cfg.routes[i];
        if (rt->key_in_path) {
            size_t n = strlen(rt->match);
            if (strncmp(r->path, rt->match, n) != 0)
                continue;
            const char *seg = r->path + n;
            size_t sl = strcspn(seg, "/");
            if (sl == 0)
                continue;
            r->route = rt;
            /* upstream path: the part before the key + what follows it */
            const char *rest = seg + sl;
            size_t before = n > 1 ? n - 1 : 0; /* drop the '/' before the key */
            char *up = pc_xmalloc(before + strlen(rest) + 2);
            memcpy(up, r->path, before);
            strcpy(up + before, rest);
            if (up[0] == '\0')
                strcpy(up, "/");
            r->upstream_path = up;
            if (sl < GW_CRED_MAX) {
                memcpy(r->cred, seg, sl);
                r->cred[sl] = '\0';
                r->cred_len = sl;
                r->src = GW_SRC_PATH;
            }
            return true;
        }
        if (prefix_matches(rt->match, r->path)) {
            r->route = rt;
            r->upstream_path = pc_xstrdup(r->path);
            return true;
        }
    }
    gw_fail(r, 404, "NO_ROUTE", "No route for this path");
    return false;
}
