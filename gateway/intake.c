/* Portcullis - MIT licence. See LICENSE.
 *
 * intake.c: a parsed request's way in, before the stages (intake.h).
 *
 *   target    origin-form, or absolute-form ("http://host/path") as proxies
 *             send it; anything else is 400
 *   path      refused (400 BAD_PATH) when the router and an upstream could
 *             read it differently (gw_path_plain)
 *   local     /health, /live, /ready (after GATEWAY_HEALTH_PREFIX) on
 *             both listeners; on the admin listener also the plain names,
 *             and /_stats and /metrics with GATEWAY_METRICS; answered here,
 *             no stage runs. The public listener routes every other path,
 *             /metrics included (an upstream's own); the admin listener
 *             answers anything else 404 and runs no stage at all
 *   /_auth    forward auth: the stages run on the original URI (route.c)
 *
 * Everything else starts the stages at ROUTE (gw_request_start).
 */
#include "intake.h"
#include "front.h"
#include "worker.h"
#include "request.h"
#include "stages.h"
#include "cache.h"
#include "store.h"
#include "feed.h"
#include "metrics.h"
#include "../lib/http.h"
#include "../lib/json.h"
#include "../lib/redis_async.h"

#include <stdlib.h>
#include <string.h>

/* ---- local routes ---- */

static void local_reply(struct gw_request *r, int status, struct pc_buf *b)
{
    gw_reply(r, status, "application/json", b->data, b->len);
    pc_buf_free(b);
    gw_request_end(r);
}

static void metrics_route(struct gw_request *r)
{
    struct pc_buf b = {0};
    size_t n = 0;
    struct gw_worker *all = gw_workers(&n);
    gw_metrics_render(all, n, gw_front_max_conns(), gw_front_addresses(), &b);
    gw_reply(r, 200, "text/plain; version=0.0.4", b.data, b.len);
    pc_buf_free(&b);
    gw_request_end(r);
}

enum gw_local gw_local_path(const char *path, bool admin)
{
    static const struct {
        const char *name;
        enum gw_local what;
    } names[] = {{"/health", GW_LOCAL_HEALTH}, {"/live", GW_LOCAL_LIVE},
                 {"/ready", GW_LOCAL_READY},   {"/metrics", GW_LOCAL_METRICS},
                 {"/_stats", GW_LOCAL_STATS}};
    const char *pre = gw_cfg.health_prefix ? gw_cfg.health_prefix : "";
    size_t pn = strlen(pre);
    bool prefixed = strncmp(path, pre, pn) == 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++) {
        bool health = names[i].what <= GW_LOCAL_READY;
        if (!health && (!admin || !gw_cfg.metrics))
            continue;
        if ((health && prefixed && strcmp(path + pn, names[i].name) == 0) ||
            ((admin || pn == 0) && strcmp(path, names[i].name) == 0))
            return names[i].what;
    }
    return GW_LOCAL_NONE;
}

static void local_route(struct gw_request *r, enum gw_local what)
{
    struct pc_buf b = {0};
    if (what == GW_LOCAL_METRICS) {
        metrics_route(r);
        return;
    }
    if (what == GW_LOCAL_HEALTH || what == GW_LOCAL_LIVE) {
        pc_buf_puts(&b, "{\"status\":\"ok\"}");
        local_reply(r, 200, &b);
        return;
    }
    if (what == GW_LOCAL_READY) {
        bool pg = gw_pg_up(r->w), rd = pc_ra_up(r->w->redis), feed = gw_revocation_up();
        /* Ready while a decision can still be made: PostgreSQL answers, or
         * Redis can carry on (not when it holds no credentials). */
        bool ready = pg || (rd && gw_cfg.l2_enabled);
        pc_buf_printf(&b, "{\"status\":\"%s\",\"postgres\":\"%s\",\"redis\":\"%s\","
                          "\"revocations\":\"%s\"}",
                      ready ? "ready" : "unavailable", pg ? "ok" : "down", rd ? "ok" : "down",
                      feed ? "subscribed" : "down");
        local_reply(r, ready ? 200 : 503, &b);
        return;
    }
    /* /_stats: counters for tests and operators */
    struct pc_jw jw = {.b = &b};
    size_t n = 0;
    struct gw_worker *all = gw_workers(&n);
    pc_jw_obj_begin(&jw);
    gw_stats_json(all, n, &jw);
    pc_jw_obj_end(&jw);
    local_reply(r, 200, &b);
}

/* ---- intake ---- */

/* Refuses paths that the router and an upstream could read differently: a
 * dot segment ("/public/../admin"), also percent-encoded, an encoded slash
 * or backslash, a backslash, an empty segment ("//admin" is not under "/"'s
 * neighbour "/admin/" here but may be upstream), an encoded NUL. */
bool gw_path_plain(const char *p)
{
    for (const char *seg = p + 1;;) {
        size_t n = strcspn(seg, "/");
        size_t dots = 0, chars = 0;
        for (size_t i = 0; i < n; i++, chars++) {
            char ch = seg[i];
            if (ch == '\\')
                return false;
            if (ch == '%' && i + 2 < n) {
                char x = seg[i + 1], y = (char)(seg[i + 2] | 0x20);
                if (x == '2' && y == 'e') {
                    dots++;
                    i += 2;
                    continue;
                }
                if ((x == '2' && y == 'f') || (x == '5' && y == 'c') || (x == '0' && y == '0'))
                    return false;
            }
            if (ch == '.')
                dots++;
        }
        if (n > 0 && chars == dots && dots <= 2)
            return false; /* "." or ".." */
        if (seg[n] == '\0')
            return true;
        if (n == 0)
            return false; /* "//" */
        seg += n + 1;
    }
}

int gw_target_split(const char *t, char **path, char **query)
{
    *path = *query = NULL;
    /* origin-form, or absolute-form ("http://host/path") as proxies send */
    if (t[0] != '/') {
        const char *s = strstr(t, "://");
        if (s == NULL || s == t || strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+-.") !=
                                       (size_t)(s - t))
            return -1;
        t = s + 3 + strcspn(s + 3, "/?#");
    }
    size_t pl = strcspn(t, "?#");
    *path = pl ? pc_xstrndup(t, pl) : pc_xstrdup("/");
    if (t[pl] == '?') {
        size_t ql = strcspn(t + pl + 1, "#");
        *query = pc_xstrndup(t + pl + 1, ql);
    }
    return 0;
}

/* GATEWAY_HTTP_LISTEN: the same target on the TLS listener, its port
 * named unless 443; 308 keeps the method and body (RFC 9110 15.4.9). */
static void to_https(struct gw_request *r)
{
    const char *host = gw_header(r, "Host");
    size_t hn = host ? strlen(host) : 0;
    if (hn > 0 && host[0] == '[') {
        const char *e = memchr(host, ']', hn);
        hn = e ? (size_t)(e - host) + 1 : hn;
    } else if (hn > 0) {
        const char *colon = memchr(host, ':', hn);
        hn = colon ? (size_t)(colon - host) : hn;
    }
    if (hn == 0 || hn > 255) {
        gw_fail(r, 400, "BAD_HOST", "A redirect to https needs the request's Host");
        return;
    }
    struct pc_buf loc = {0};
    pc_buf_printf(&loc, "https://%.*s", (int)hn, host);
    if (gw_cfg.listen_port != 443)
        pc_buf_printf(&loc, ":%d", gw_cfg.listen_port);
    pc_buf_puts(&loc, r->path); /* origin-form, also for an absolute-form target */
    if (r->query)
        pc_buf_printf(&loc, "?%s", r->query);
    r->outcome = "to_https";
    struct pc_buf *b = gw_resp_begin(r, 308, NULL);
    gw_hdr_append(b, "Location", pc_buf_cstr(&loc));
    gw_hdr_append(b, "X-Request-Id", r->request_id);
    gw_resp_end_head(r, 0, true);
    gw_resp_send(r);
    pc_buf_free(&loc);
    gw_request_end(r);
}

void gw_intake(struct gw_request *r)
{
    gw_request_id(r);
    if (gw_target_split(r->head->target, &r->path, &r->query) != 0) {
        r->path = pc_xstrdup("/");
        gw_fail(r, 400, "BAD_REQUEST", "Request target must be an absolute path");
        return;
    }
    const char *path = r->path;
    if (!gw_path_plain(path)) {
        gw_fail(r, 400, "BAD_PATH",
                "The path holds a dot segment, an empty segment or an encoded separator");
        return;
    }
    enum gw_local what = gw_local_path(path, r->admin);
    bool get = strcmp(r->method, "GET") == 0 || r->head_method;
    if (r->admin) {
        /* operators' port: the local answers, and nothing is routed */
        if (what == GW_LOCAL_NONE) {
            gw_fail(r, 404, "NOT_FOUND", "The admin listener serves /health, /live, /ready, "
                                         "/metrics and /_stats");
        } else if (!get) {
            gw_fail(r, 405, "METHOD_NOT_ALLOWED", "Only GET and HEAD are answered here");
        } else {
            local_route(r, what);
        }
        return;
    }
    if (r->to_https && !(what >= GW_LOCAL_HEALTH && what <= GW_LOCAL_READY && get)) {
        to_https(r);
        return;
    }
    if (path[1] == '_' && gw_forward_auth_target(path)) {
        r->forward_auth = true; /* r->path is replaced by the original URI in route.c */
        gw_request_start(r);
        return;
    }
    if (what != GW_LOCAL_NONE && get) {
        local_route(r, what);
        return;
    }
    gw_request_start(r);
}
