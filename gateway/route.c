/* Portcullis - MIT licence. See LICENSE.
 *
 * route.c: stage 1. The most specific route that takes the request (hosts,
 * then prefix length, then methods; docs/gateway.md "Which route a request
 * takes"); the table is sorted longest prefix first at load, so without
 * hosts or methods anywhere the first match is it. A prefix with an :apiKey
 * segment matches its part before the key, then takes the next path segment
 * as the key; the segment is removed from the path sent upstream (with
 * strip_prefix, the whole prefix is, and kept for X-Forwarded-Prefix). For forward auth (/_auth) the path
 * comes from the one header FORWARD_AUTH_URI_HEADER names (by default the
 * proxy's: X-Original-URI for nginx, X-Forwarded-Uri for Traefik) or, for
 * Envoy, from the request path after /_auth; a request where any two
 * candidate headers disagree is refused.
 */
#include "stages.h"
#include "cors.h"

#include "../lib/http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

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

/* ---- forward auth: the original request ---- */

/* Every header that some proxy uses for one fact. A request may carry any
 * of them (a proxy that passes the client's headers through also passes the
 * ones the client made up), so all of them are read: if two disagree, the
 * request is refused rather than judged by either. */
static const char *const uri_names[] = {"X-Original-URI", "X-Forwarded-Uri"};
static const char *const method_names[] = {"X-Original-Method", "X-Forwarded-Method"};
static const char *const host_names[] = {"X-Original-Host", "X-Forwarded-Host"};

static bool name_is(const struct pc_http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->nlen == n && strncasecmp(h->name, name, n) == 0;
}

enum fa_read { FA_OK = 0, FA_MISSING, FA_CONFLICT };

/* One fact of the original request: the value of header `chosen` (or, with
 * chosen NULL, `derived`, what the request itself says), checked against
 * every line of every candidate header. *conflict names the header that
 * disagreed. */
static enum fa_read fa_value(const struct gw_request *r, const char *chosen, const char *derived,
                             const char *const *cands, size_t ncands, const char **out,
                             const char **conflict)
{
    const char *v = chosen ? NULL : derived;
    const struct pc_http_head *h = r->head;
    for (size_t i = 0; i < h->nh; i++) {
        bool cand = chosen && name_is(&h->h[i], chosen);
        for (size_t k = 0; k < ncands && !cand; k++)
            cand = name_is(&h->h[i], cands[k]);
        if (!cand)
            continue;
        if (v == NULL) {
            v = h->h[i].value;
        } else if (strcmp(v, h->h[i].value) != 0) {
            *conflict = h->h[i].name;
            return FA_CONFLICT;
        }
    }
    /* the value must be the chosen header's (all candidates agree by now) */
    if (chosen && gw_header(r, chosen) == NULL)
        v = NULL;
    *out = v;
    return v ? FA_OK : FA_MISSING;
}

__attribute__((format(printf, 3, 4))) static bool fa_refuse(struct gw_refusal *why,
                                                             const char *code, const char *fmt,
                                                             ...)
{
    why->status = 400;
    why->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->text, sizeof why->text, fmt, ap);
    va_end(ap);
    why->msg = why->text;
    return false;
}

static bool method_ok(const char *m)
{
    size_t n = strlen(m);
    return n > 0 && n <= 16 && strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == n;
}

static bool host_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f || v[i] == '/')
            return false;
    return true;
}

bool gw_forward_auth_read(struct gw_request *r, struct gw_refusal *why)
{
    char *derived = NULL;
    if (gw_cfg.fa_mode == GW_FA_ENVOY) {
        const char *rest = r->path + 6; /* after "/_auth" */
        struct pc_buf b = {0};
        pc_buf_puts(&b, rest[0] ? rest : "/");
        if (r->query) {
            pc_buf_putc(&b, '?');
            pc_buf_puts(&b, r->query);
        }
        derived = b.data;
    }
#define AMBIGUOUS "The original %s is given more than once with different values (%.60s); refused"
    const char *uri = NULL, *method = NULL, *host = NULL, *bad = NULL;
    enum fa_read u = fa_value(r, gw_cfg.fa_uri_name, derived, uri_names,
                              PC_ARRAY_LEN(uri_names), &uri, &bad);
    bool ok = false;
    if (u == FA_CONFLICT) {
        fa_refuse(why, "AMBIGUOUS_FORWARD_AUTH", AMBIGUOUS, "URI", bad);
        goto out;
    }
    if (u == FA_MISSING || uri[0] != '/') {
        fa_refuse(why, "MISSING_ORIGINAL_URI",
                  "Forward auth needs the original URI, an absolute path, in %s",
                  gw_cfg.fa_uri_name ? gw_cfg.fa_uri_name : "the /_auth/ path");
        goto out;
    }
    enum fa_read m = fa_value(r, gw_cfg.fa_method_name, r->method, method_names,
                              PC_ARRAY_LEN(method_names), &method, &bad);
    if (m == FA_CONFLICT) {
        fa_refuse(why, "AMBIGUOUS_FORWARD_AUTH", AMBIGUOUS, "method", bad);
        goto out;
    }
    enum fa_read hr = fa_value(r, gw_cfg.fa_host_name, gw_header(r, "Host"), host_names,
                               PC_ARRAY_LEN(host_names), &host, &bad);
    if (hr == FA_CONFLICT) {
        fa_refuse(why, "AMBIGUOUS_FORWARD_AUTH", AMBIGUOUS, "host", bad);
        goto out;
    }
    if ((method && !method_ok(method)) || (host && !host_ok(host))) {
        fa_refuse(why, "BAD_FORWARD_AUTH", "The original method or host is malformed");
        goto out;
    }
    size_t n = strcspn(uri, "?#");
    free(r->path);
    r->path = pc_xstrndup(uri, n);
    free(r->fa_uri);
    r->fa_uri = pc_xstrndup(uri, strcspn(uri, "#")); /* the way back after a sign-in */
    if (method)
        snprintf(r->fa_method, sizeof r->fa_method, "%s", method);
    if (host)
        snprintf(r->fa_host, sizeof r->fa_host, "%s", host);
    if (!gw_path_plain(r->path)) {
        fa_refuse(why, "BAD_PATH",
                  "The original URI holds a dot segment, an empty segment or an encoded "
                  "separator");
        goto out;
    }
    ok = true;
out:
    free(derived);
    return ok;
}
#undef AMBIGUOUS

bool gw_forward_auth_target(const char *path)
{
    if (strcmp(path, "/_auth") == 0)
        return true;
    return gw_cfg.fa_mode == GW_FA_ENVOY && strncmp(path, "/_auth/", 7) == 0;
}

/* ---- matching ---- */

/* How many bytes of path a matching prefix p takes away with strip_prefix:
 * all of it, but a trailing '/' stays, as the first byte of what is left. */
static size_t strip_len(const char *p)
{
    size_t n = strlen(p);
    return n - (p[n - 1] == '/');
}

/* One route's claim on a request, made without touching the request. */
struct claim {
    unsigned host;      /* 0 no hosts listed; 1 + suffix length for *.x; GW_HOST_EXACT */
    size_t plen;        /* the prefix's length before any :apiKey */
    bool method;        /* the route lists the method */
    bool key;           /* the prefix has an :apiKey segment */
    size_t seg, seglen; /* the :apiKey segment in the path */
    size_t strip;       /* what strip_prefix removes from the path */
};
#define GW_HOST_EXACT 100000u

/* The request's host as routing reads it: the original request's for
 * forward auth, else Host; port, trailing dot and case dropped. */
static void routing_host(const struct gw_request *r, char *out, size_t outsz)
{
    const char *h = r->fa_host[0] ? r->fa_host : gw_header(r, "Host");
    size_t n = 0;
    if (h) {
        n = h[0] == '[' ? strcspn(h, "]") + (strchr(h, ']') != NULL) : strcspn(h, ":");
        if (n > 0 && h[n - 1] == '.')
            n--;
    }
    if (n >= outsz)
        n = 0;  /* longer than a host name: matches no hosts list */
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)h[i]);
    out[n] = '\0';
}

/* Does route rt take the request? Fills *c when it does. */
static bool route_claims(const struct gw_route *rt, const char *path, const char *host,
                         const char *method, struct claim *c)
{
    memset(c, 0, sizeof *c);
    if (rt->nhosts) {
        size_t hl = strlen(host);
        for (size_t i = 0; i < rt->nhosts; i++) {
            const char *want = rt->hosts[i];
            size_t wl = strlen(want);
            unsigned rank = 0;
            if (want[0] != '.' && strcmp(want, host) == 0)
                rank = GW_HOST_EXACT;
            else if (want[0] == '.' && hl > wl && strcmp(host + hl - wl, want) == 0)
                rank = 1 + (unsigned)wl;    /* *.example.com: one label or more before it */
            if (rank > c->host)
                c->host = rank;
        }
        if (c->host == 0)
            return false;
    }
    if (rt->nmethods) {
        for (size_t i = 0; i < rt->nmethods && !c->method; i++)
            c->method = strcmp(rt->methods[i], method) == 0;
        if (!c->method)
            return false;
    }
    c->plen = strlen(rt->match);
    if (!rt->key_in_path) {
        if (!prefix_matches(rt->match, path))
            return false;
        c->strip = strip_len(rt->match);
        return true;
    }
    if (strncmp(path, rt->match, c->plen) != 0)
        return false;
    c->key = true;
    c->seg = c->plen;
    c->seglen = strcspn(path + c->seg, "/");
    if (c->seglen == 0)
        return false;
    /* the rest of the prefix ("/sub/" of "/v/:apiKey/sub/") must follow
     * the key like any prefix */
    const char *rest = path + c->seg + c->seglen;
    if (rt->after_key && !prefix_matches(rt->after_key, rest))
        return false;
    c->strip = c->seg + c->seglen + (rt->after_key ? strip_len(rt->after_key) : 0);
    return true;
}

/* Is claim a more specific than b? Host first (exact, then the longest
 * wildcard, then none), then the longer prefix, then a listed method, then
 * an :apiKey prefix over a plain one of the same length. */
static bool claim_beats(const struct claim *a, const struct claim *b)
{
    if (a->host != b->host)
        return a->host > b->host;
    if (a->plen != b->plen)
        return a->plen > b->plen;
    if (a->method != b->method)
        return a->method;
    return a->key && !b->key;
}

/* Sets what the route stage hands on: r->route, the upstream path, the
 * :apiKey segment, and what strip_prefix removed. */
static void route_take(struct gw_request *r, const struct gw_route *rt, const struct claim *c)
{
    const char *path = r->path;
    r->route = rt;
    if (rt->strip_prefix) {
        const char *rest = path + c->strip;
        r->upstream_path = pc_xstrdup(rest[0] ? rest : "/");
        if (c->strip > 0)
            r->forwarded_prefix = pc_xstrndup(path, c->strip);
    } else if (c->key) {
        /* the part before the key + what follows it */
        const char *rest = path + c->seg + c->seglen;
        size_t before = c->seg > 1 ? c->seg - 1 : 0; /* drop the '/' before the key */
        char *up = pc_xmalloc(before + strlen(rest) + 2);
        memcpy(up, path, before);
        strcpy(up + before, rest);
        if (up[0] == '\0')
            strcpy(up, "/");
        r->upstream_path = up;
    } else {
        r->upstream_path = pc_xstrdup(path);
    }
    if (!c->key)
        return;
    /* A segment too long to be a key is still the route's key, and refused
     * as one: no other credential stands in for it. */
    r->src = GW_SRC_PATH;
    gw_cred_set(r, path + c->seg, c->seglen < GW_CRED_MAX ? c->seglen : 0);
}

const struct gw_route *gw_route_find(struct gw_request *r)
{
    char host[256] = "";
    const char *method = r->fa_method[0] ? r->fa_method : r->method;
    const struct gw_table *t = r->table;
    if (t->routes_select)
        routing_host(r, host, sizeof host);
    const struct gw_route *best = NULL;
    struct claim bc = {0}, c;
    /* Sorted longest prefix first: without hosts or methods anywhere, the
     * first claim is the most specific. */
    for (size_t i = 0; i < t->nroutes; i++) {
        const struct gw_route *rt = &t->routes[i];
        if (!route_claims(rt, r->path, host, method ? method : "", &c))
            continue;
        if (best == NULL || claim_beats(&c, &bc)) {
            best = rt;
            bc = c;
        }
        if (!t->routes_select)
            break;
    }
    if (best)
        route_take(r, best, &bc);
    return best;
}

bool gw_route_match(struct gw_request *r)
{
    struct gw_refusal why = {0};
    if (r->forward_auth && !gw_forward_auth_read(r, &why)) {
        gw_fail(r, why.status, why.code, why.msg);
        return false;
    }
    if (gw_route_find(r))
        return !gw_cors_preflight(r); /* a preflight is answered here, before auth */
    gw_fail(r, 404, "NO_ROUTE", "No route for this path");
    return false;
}
