/* Portcullis - MIT licence. See LICENSE.
 *
 * routes_file.c: the routes file (GATEWAY_ROUTES) into a table (types.h
 * struct gw_table), and the tables' life: made on the main thread, at
 * start and on SIGHUP, validated whole before anything sees them;
 * published by one atomic store; handed to each request by its worker
 * (gw_table_take) and freed once the last worker has let go of it and
 * its last request has ended.
 *
 *   {"routes": [{"prefix": "/opencode/:apiKey/", "upstream": "http://127.0.0.1:4096",
 *                "auth": ["api_key"], "permissions": {"files": ["read"]},
 *                "forward_cookies": false, "upstream_jwt": "x-auth-jwt",
 *                "request_headers": {"set": {"X-Tenant": "a"}, "remove": ["Referer"]},
 *                "response_headers": {"remove": ["Server"]},
 *                "preserve_host": false, "timeout_ms": 5000,
 *                "ca_file": "/etc/ssl/internal-ca.pem"},
 *               {"prefix": "/api/auth/", "upstream": "http://127.0.0.1:3000",
 *                "auth": ["none"], "auth_passthrough": true},
 *               {"prefix": "/app/", "upstream": "http://127.0.0.1:9000", "auth": ["session"],
 *                "on_unauthenticated": "redirect", "sign_in_url": "/sign-in",
 *                "return_to_param": "callbackURL"}, ...],
 *    "jwt_issuers": [{"issuer": "https://accounts.google.com",
 *                     "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs",
 *                     "audiences": ["my-client-id"]}]}
 * or, with UPSTREAM_URL alone, one catch-all route "/" accepting sessions,
 * API keys and JWTs. Any error names the route and key (routes[2].hosts);
 * a JSON syntax error its line and column.
 *
 * Upstreams, TLS contexts, JWT issuers and the metrics' route slots are
 * registries that only grow (gw_cfg): an entry never moves, so the
 * connection pools, name lookups, passive health and key sets made for
 * it carry over a reload, and L1's JWT principals name their issuer by
 * index. A load that fails drops what it added to them.
 *
 * One file, past 1,000 lines, because it is one grammar: every key of a
 * route, read and refused in one place, so that what an error names is
 * found here.
 */
#include "config.h"
#include "proxy.h"
#include "upstream.h"
#include "cors.h"
#include "jwt.h"
#include "metrics.h"
#include "../lib/conf.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/netaddr.h"
#include "../lib/url.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- routes file ---- */

/* An https upstream's host: an IP address, or a DNS name (labels of 1 to
 * 63 letters, digits and '-', no '-' at either end), which goes out as SNI
 * and must be in the certificate. */
static bool tls_host_ok(const char *h, bool *is_ip)
{
    unsigned char a[16];
    *is_ip = inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
    if (*is_ip)
        return true;
    size_t n = strlen(h);
    if (n == 0 || n > 253)
        return false;
    for (const char *l = h; *l;) {
        size_t ln = strspn(l, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");
        if (ln == 0 || ln > 63 || l[0] == '-' || l[ln - 1] == '-' || (l[ln] != '.' && l[ln] != '\0'))
            return false;
        l += ln;
        if (*l == '.' && *++l == '\0')
            return false; /* a trailing dot */
    }
    return true;
}

static int parse_upstream(const char *url, struct gw_upstream *u, char *err, size_t errsz)
{
    bool tls = pc_starts_with(url, "https://");
    if (!tls && !pc_starts_with(url, "http://")) {
        snprintf(err, errsz, "upstream \"%s\": must be an http:// or https:// URL", url);
        return -1;
    }
    const char *h = url + (tls ? 8 : 7);
    size_t hl = strcspn(h, "/?#");
    char hostport[300];
    if (hl == 0 || hl >= sizeof hostport) {
        snprintf(err, errsz, "upstream \"%s\": bad host", url);
        return -1;
    }
    memcpy(hostport, h, hl);
    hostport[hl] = '\0';
    snprintf(u->host_header, sizeof u->host_header, "%s", hostport);
    const char *why;
    if (strchr(hostport, ':') == NULL || (hostport[0] == '[' && strstr(hostport, "]:") == NULL)) {
        char tmp[310];
        snprintf(tmp, sizeof tmp, "%s:%d", hostport, tls ? 443 : 80);
        if (pc_parse_hostport(tmp, u->host, sizeof u->host, &u->port, &why) != 0) {
            snprintf(err, errsz, "upstream \"%s\": %s", url, why);
            return -1;
        }
    } else if (pc_parse_hostport(hostport, u->host, sizeof u->host, &u->port, &why) != 0) {
        snprintf(err, errsz, "upstream \"%s\": %s", url, why);
        return -1;
    }
    if (tls && !tls_host_ok(u->host, &u->host_is_ip)) {
        snprintf(err, errsz, "upstream \"%s\": bad host (an https upstream's host is a DNS name "
                             "or an IP address: it is what the certificate must name)", url);
        return -1;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&u->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&u->addr;
    if (inet_pton(AF_INET, u->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)u->port);
        u->addrlen = sizeof *a4;
        u->numeric = true;
    } else if (inet_pton(AF_INET6, u->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)u->port);
        u->addrlen = sizeof *a6;
        u->numeric = true;
    }
    const char *path = h + hl;
    size_t pl = strcspn(path, "?#");
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    u->base_path = pc_xstrndup(path, pl);
    u->url = pc_xstrdup(url);
    return 0;
}

/* Both NULL, or the same text. */
static bool same_ca(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The TLS context for ca_file (NULL: the system store), made once and
 * shared by every upstream with that CA file. NULL with err set, naming
 * where (the route key or UPSTREAM_CA_FILE), when the file is no use. */
static struct ssl_ctx_st *tls_ctx_for(const char *ca_file, const char *where, char *err,
                                      size_t errsz)
{
    for (size_t i = 0; i < gw_cfg.ntls_ctxs; i++)
        if (same_ca(gw_cfg.tls_ctxs[i].ca_file, ca_file))
            return gw_cfg.tls_ctxs[i].ctx;
    char why[400];
    struct ssl_ctx_st *ctx = gw_tls_ctx_new(ca_file, why, sizeof why);
    if (ctx == NULL) {
        snprintf(err, errsz, "%s: %s", where, why);
        return NULL;
    }
    gw_cfg.tls_ctxs = pc_xrealloc(gw_cfg.tls_ctxs, (gw_cfg.ntls_ctxs + 1) * sizeof *gw_cfg.tls_ctxs);
    gw_cfg.tls_ctxs[gw_cfg.ntls_ctxs].ca_file = ca_file ? pc_xstrdup(ca_file) : NULL;
    gw_cfg.tls_ctxs[gw_cfg.ntls_ctxs++].ctx = ctx;
    return ctx;
}

/* The upstream of url with the CA file ca_file (https only), or NULL. */
static struct gw_upstream *upstream_for(const char *url, const char *ca_file)
{
    for (size_t i = 0; i < gw_cfg.nupstreams; i++)
        if (strcmp(gw_cfg.upstreams[i]->url, url) == 0 &&
            same_ca(gw_cfg.upstreams[i]->ca_file, ca_file))
            return gw_cfg.upstreams[i];
    return NULL;
}

/* The index of the upstream for url (and, https, ca_file and its context
 * tls), added when new; -1 with err set when url is no upstream URL. */
static long add_upstream(const char *url, const char *ca_file, struct ssl_ctx_st *tls, char *err,
                         size_t errsz)
{
    struct gw_upstream *have = upstream_for(url, ca_file);
    if (have)
        return have->index;
    if (gw_cfg.nupstreams == GW_UPSTREAMS_MAX) {
        snprintf(err, errsz, "upstream \"%s\": more than %d different upstreams since the "
                             "gateway started (reloads add theirs): restart it", url,
                 GW_UPSTREAMS_MAX);
        return -1;
    }
    struct gw_upstream *u = pc_xcalloc(1, sizeof *u);
    if (parse_upstream(url, u, err, errsz) != 0) {
        free(u->base_path);
        free(u);
        return -1;
    }
    u->ca_file = ca_file ? pc_xstrdup(ca_file) : NULL;
    u->tls = tls;
    if (gw_cfg.upstreams == NULL)
        gw_cfg.upstreams = pc_xcalloc(GW_UPSTREAMS_MAX, sizeof *gw_cfg.upstreams);
    u->index = (unsigned)gw_cfg.nupstreams;
    gw_cfg.upstreams[gw_cfg.nupstreams++] = u;
    return u->index;
}

/* Every key of object o must be one of known (NULL-terminated) and appear
 * once: a typo or a key given twice is a start-up error, not a silent
 * default. where is "routes[3]" or "jwt_issuers[0]" ("" for the top). */
static int check_keys(yajl_val o, const char *const *known, const char *where, char *err,
                      size_t errsz)
{
    const char *dot = where[0] ? "." : "";
    for (size_t k = 0; k < o->u.object.len; k++) {
        const char *key = o->u.object.keys[k];
        size_t j = 0;
        while (known[j] && strcmp(known[j], key) != 0)
            j++;
        if (known[j] == NULL) {
            snprintf(err, errsz, "%s%s%.80s: unknown key", where, dot, key);
            return -1;
        }
        for (size_t m = 0; m < k; m++)
            if (strcmp(o->u.object.keys[m], key) == 0) {
                snprintf(err, errsz, "%s%s%s: given twice", where, dot, key);
                return -1;
            }
    }
    return 0;
}

/* A route's "hosts": exact names or "*.example.com", stored lower case,
 * the wildcard as its suffix ".example.com". */
static int parse_hosts(yajl_val v, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0) {
        snprintf(err, errsz, "routes[%zu].hosts: must be a non-empty array of host names", i);
        return -1;
    }
    out->hosts = pc_xcalloc(v->u.array.len, sizeof *out->hosts);
    for (size_t k = 0; k < v->u.array.len; k++) {
        yajl_val h = v->u.array.values[k];
        const char *s = YAJL_IS_STRING(h) ? h->u.string : "";
        const char *name = pc_starts_with(s, "*.") ? s + 1 : s;
        size_t n = strlen(name);
        bool ok = n > 0 && n < 254 && name[n - 1] != '.' && (name[0] != '.' || n > 1);
        for (size_t c = name[0] == '.'; ok && c < n; c++) {
            unsigned char ch = (unsigned char)name[c];
            ok = ch == '.' || ch == '-' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                 (ch >= 'A' && ch <= 'Z');
        }
        if (!ok) {
            snprintf(err, errsz, "routes[%zu].hosts[%zu]: must be a host name (letters, digits, "
                                 "'-', '.') or \"*.\" and one; no port", i, k);
            return -1;
        }
        out->hosts[k] = pc_xstrdup(name);
        for (char *c = out->hosts[k]; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        out->nhosts++;
    }
    return 0;
}

/* A route's "methods": upper-case tokens such as "GET". */
static int parse_methods(yajl_val v, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0) {
        snprintf(err, errsz, "routes[%zu].methods: must be a non-empty array such as [\"GET\"]", i);
        return -1;
    }
    out->methods = pc_xcalloc(v->u.array.len, sizeof *out->methods);
    for (size_t k = 0; k < v->u.array.len; k++) {
        yajl_val m = v->u.array.values[k];
        const char *s = YAJL_IS_STRING(m) ? m->u.string : "";
        size_t n = strlen(s);
        if (n == 0 || n > 16 || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != n) {
            snprintf(err, errsz, "routes[%zu].methods[%zu]: must be an upper-case method such "
                                 "as \"GET\"", i, k);
            return -1;
        }
        out->methods[k] = pc_xstrdup(s);
        out->nmethods++;
    }
    return 0;
}

static int parse_bool(yajl_val v, size_t i, const char *key, bool *out, char *err, size_t errsz)
{
    if (v != NULL && !YAJL_IS_TRUE(v) && !YAJL_IS_FALSE(v)) {
        snprintf(err, errsz, "routes[%zu].%s: must be true or false", i, key);
        return -1;
    }
    *out = YAJL_IS_TRUE(v);
    return 0;
}

/* ---- request_headers and response_headers ---- */

#define GW_HDR_RULES_MAX 32     /* set and remove together, per list */
#define GW_HDR_NAME_MAX 64
#define GW_HDR_VALUE_MAX 4096

/* An HTTP token (RFC 9110 5.6.2), the shape of a header name. */
static bool is_token(const char *s, size_t n)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    return n > 0 && strspn(s, tchar) == n;
}

/* A field value (RFC 9110 5.5): visible characters, spaces and tabs, none
 * of them CR, LF or NUL, no space at either end. */
static bool is_field_value(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return n == 0 || (s[0] != ' ' && s[0] != '\t' && s[n - 1] != ' ' && s[n - 1] != '\t');
}

/* Headers a route may not touch upstream: the identity and X-Forwarded-*
 * the gateway sets (identity.c), hop-by-hop and framing headers. */
static const char *refused_upstream(const char *h, size_t n)
{
    if (n == 4 && strncasecmp(h, "Host", 4) == 0)
        return "Host is the upstream's; preserve_host: true sends the client's";
    if (gw_identity_header(h, n) || (n >= 12 && strncasecmp(h, "X-Forwarded-", 12) == 0))
        return "the gateway sets it (identity and X-Forwarded-* headers)";
    if (gw_hop_by_hop(h, n))
        return "a hop-by-hop or framing header";
    return NULL;
}

/* Headers a route may not touch in the answer: framing, hop-by-hop, and
 * the X-Request-Id the gateway answers with. */
static const char *refused_answer(const char *h, size_t n)
{
    if (gw_hop_by_hop(h, n) || (n == 14 && strncasecmp(h, "Content-Length", 14) == 0))
        return "a hop-by-hop or framing header";
    if (n == 12 && strncasecmp(h, "X-Request-Id", 12) == 0)
        return "the gateway sets it";
    return NULL;
}

/* A route's "request_headers" or "response_headers" (key):
 * {"set": {"Name": "value", ...}, "remove": ["Name", ...]}, each name once
 * in any case, none that refused names. Fills out (freed by
 * gw_routes_free, also after an error). */
static int parse_hdr_rules(yajl_val v, size_t i, const char *key,
                           const char *(*refused)(const char *, size_t),
                           struct gw_hdr_rules *out, char *err, size_t errsz)
{
    char where[48];
    snprintf(where, sizeof where, "routes[%zu].%s", i, key);
    static const char *const keys[] = {"set", "remove", NULL};
    if (!YAJL_IS_OBJECT(v)) {
        snprintf(err, errsz, "%s: must be {\"set\": {\"Name\": \"value\"}, \"remove\": "
                             "[\"Name\"]}", where);
        return -1;
    }
    if (check_keys(v, keys, where, err, errsz) != 0)
        return -1;
    yajl_val set = pc_json_get(v, "set"), rm = pc_json_get(v, "remove");
    if (set != NULL && !YAJL_IS_OBJECT(set)) {
        snprintf(err, errsz, "%s.set: must be an object {\"Name\": \"value\"}", where);
        return -1;
    }
    if (rm != NULL && !YAJL_IS_ARRAY(rm)) {
        snprintf(err, errsz, "%s.remove: must be an array of header names", where);
        return -1;
    }
    size_t nset = set ? set->u.object.len : 0, total = nset + (rm ? rm->u.array.len : 0);
    if (total > GW_HDR_RULES_MAX) {
        snprintf(err, errsz, "%s: at most %d headers in set and remove together", where,
                 GW_HDR_RULES_MAX);
        return -1;
    }
    out->r = pc_xcalloc(total ? total : 1, sizeof *out->r);
    for (size_t k = 0; k < total; k++) {
        char at[160];
        const char *name = NULL;
        yajl_val val = NULL;
        if (k < nset) {
            name = set->u.object.keys[k];
            val = set->u.object.values[k];
            snprintf(at, sizeof at, "%s.set.%.80s", where, name);
        } else {
            yajl_val e = rm->u.array.values[k - nset];
            name = YAJL_IS_STRING(e) ? e->u.string : "";
            snprintf(at, sizeof at, "%s.remove[%zu]", where, k - nset);
        }
        size_t n = strlen(name);
        const char *why;
        if (!is_token(name, n) || n > GW_HDR_NAME_MAX) {
            snprintf(err, errsz, "%s: must be a header name (letters, digits and "
                                 "!#$%%&'*+-.^_`|~, at most %d)", at, GW_HDR_NAME_MAX);
            return -1;
        }
        if ((why = refused(name, n)) != NULL) {
            snprintf(err, errsz, "%s: %s cannot be changed here: %s", at, name, why);
            return -1;
        }
        for (size_t j = 0; j < k; j++)
            if (out->r[j].nlen == n && strcasecmp(out->r[j].name, name) == 0) {
                snprintf(err, errsz, "%s: %s is named twice (names are matched in any case)",
                         at, name);
                return -1;
            }
        if (k < nset && (!YAJL_IS_STRING(val) || strlen(val->u.string) > GW_HDR_VALUE_MAX ||
                         !is_field_value(val->u.string, strlen(val->u.string)))) {
            snprintf(err, errsz, "%s: must be a string of at most %d bytes, no control "
                                 "characters (CR, LF, NUL, ...), no space at either end", at,
                     GW_HDR_VALUE_MAX);
            return -1;
        }
        out->r[k].name = pc_xstrdup(name);
        out->r[k].nlen = n;
        out->r[k].value = k < nset ? pc_xstrdup(val->u.string) : NULL;
        out->n++;
    }
    return 0;
}

/* A sign-in URL: absolute http(s), or a path on this host ("/sign-in", not
 * "//evil"); printable ASCII, at most 2048 bytes. */
static bool signin_url_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 2048)
        return false;
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] >= 0x7f || s[k] == '#')
            return false;
    if (s[0] == '/')
        return pc_url_relative_ok(s, n);
    struct pc_url u;
    return pc_url_parse(s, n, &u) == PC_URL_OK && !u.userinfo;
}

/* A route's "on_unauthenticated", "sign_in_url" and "return_to_param": what
 * a browser without a valid credential gets (signin.c). */
static int parse_signin(yajl_val r, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    yajl_val mode = pc_json_get(r, "on_unauthenticated"), url = pc_json_get(r, "sign_in_url");
    yajl_val param = pc_json_get(r, "return_to_param");
    bool redirect = false;
    if (mode != NULL) {
        const char *m = YAJL_IS_STRING(mode) ? mode->u.string : "";
        if (strcmp(m, "redirect") == 0)
            redirect = true;
        else if (strcmp(m, "401") != 0) {
            snprintf(err, errsz, "routes[%zu].on_unauthenticated: must be \"401\" or "
                                 "\"redirect\"", i);
            return -1;
        }
    }
    if (!redirect) {
        if (url || param) {
            snprintf(err, errsz, "routes[%zu].%s: only with \"on_unauthenticated\": "
                                 "\"redirect\"", i, url ? "sign_in_url" : "return_to_param");
            return -1;
        }
        return 0;
    }
    if (!YAJL_IS_STRING(url) || !signin_url_ok(url->u.string)) {
        snprintf(err, errsz, "routes[%zu].sign_in_url: must be an http(s) URL without "
                             "credentials or a path starting with one /, printable, without "
                             "#, at most 2048 bytes", i);
        return -1;
    }
    if (out->anonymous || out->key_in_path) {
        snprintf(err, errsz, "routes[%zu].on_unauthenticated: %s", i,
                 out->anonymous ? "a route with \"auth\": [\"none\"] has nobody to sign in"
                                : "an :apiKey path would carry the key to the sign-in page");
        return -1;
    }
    const char *p = "callbackURL";
    if (param != NULL) {
        p = YAJL_IS_STRING(param) ? param->u.string : "";
        size_t n = strlen(p);
        if (n == 0 || n > 64 ||
            strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != n) {
            snprintf(err, errsz, "routes[%zu].return_to_param: must be 1 to 64 letters, digits, "
                                 "'_', '-' or '.'", i);
            return -1;
        }
    }
    out->signin_url = pc_xstrdup(url->u.string);
    out->return_to_param = pc_xstrdup(p);
    return 0;
}

/* A list of HTTP tokens (method or header names) at routes[i].cors.<key>, at
 * most 32 of at most 64 bytes each; upper: methods (upper case only). Fills
 * list/n and the ", "-joined form. */
static int cors_tokens(yajl_val v, size_t i, const char *key, bool upper, char ***list,
                       size_t *n, char **joined, char *err, size_t errsz)
{
    if (!YAJL_IS_ARRAY(v) || v->u.array.len > 32) {
        snprintf(err, errsz, "routes[%zu].cors.%s: must be an array of at most 32 names", i, key);
        return -1;
    }
    struct pc_buf b = {0};
    *list = pc_xcalloc(v->u.array.len + 1, sizeof **list);
    for (size_t k = 0; k < v->u.array.len; k++) {
        yajl_val t = v->u.array.values[k];
        const char *s = YAJL_IS_STRING(t) ? t->u.string : "";
        size_t len = strlen(s);
        if (len == 0 || len > 64 || !is_token(s, len) ||
            (upper && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != len)) {
            snprintf(err, errsz, "routes[%zu].cors.%s[%zu]: must be %s", i, key, k,
                     upper ? "an upper-case method such as \"GET\"" : "a header name");
            pc_buf_free(&b);
            return -1;
        }
        (*list)[(*n)++] = pc_xstrdup(s);
        if (b.len)
            pc_buf_append(&b, ", ", 2);
        pc_buf_puts(&b, s);
    }
    pc_buf_putc(&b, '\0');
    *joined = b.data;
    return 0;
}

static void cors_default(const char *const *names, size_t count, char ***list, size_t *n,
                         char **joined)
{
    struct pc_buf b = {0};
    *list = pc_xcalloc(count, sizeof **list);
    for (size_t k = 0; k < count; k++) {
        (*list)[(*n)++] = pc_xstrdup(names[k]);
        pc_buf_puts(&b, k ? ", " : "");
        pc_buf_puts(&b, names[k]);
    }
    pc_buf_putc(&b, '\0');
    *joined = b.data;
}

/* A route's "cors": {"origins", "methods", "headers", "expose_headers",
 * "credentials", "max_age"} (cors.c answers with it). */
static int parse_cors(yajl_val v, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    static const char *const keys[] = {"origins", "methods", "headers", "expose_headers",
                                       "credentials", "max_age", NULL};
    if (v == NULL)
        return 0;
    char where[40];
    snprintf(where, sizeof where, "routes[%zu].cors", i);
    if (!YAJL_IS_OBJECT(v)) {
        snprintf(err, errsz, "%s: must be an object", where);
        return -1;
    }
    if (check_keys(v, keys, where, err, errsz) != 0)
        return -1;
    for (size_t k = 0; k < out->resp_hdrs.n; k++)
        if (gw_cors_header_name(out->resp_hdrs.r[k].name, out->resp_hdrs.r[k].nlen)) {
            snprintf(err, errsz, "routes[%zu].response_headers: %s is the cors policy's on this "
                                 "route", i, out->resp_hdrs.r[k].name);
            return -1;
        }
    struct gw_cors *c = out->cors = pc_xcalloc(1, sizeof *c);
    c->max_age = -1;
    yajl_val o = pc_json_get(v, "origins");
    if (!YAJL_IS_ARRAY(o) || o->u.array.len == 0 || o->u.array.len > 64) {
        snprintf(err, errsz, "%s.origins: must be a list of 1 to 64 origins, or [\"*\"]", where);
        return -1;
    }
    c->origins = pc_xcalloc(o->u.array.len, sizeof *c->origins);
    for (size_t k = 0; k < o->u.array.len; k++) {
        yajl_val e = o->u.array.values[k];
        const char *s = YAJL_IS_STRING(e) ? e->u.string : "";
        if (strcmp(s, "*") == 0 && o->u.array.len == 1) {
            c->any_origin = true;
            continue;
        }
        struct pc_url u;
        size_t n = strlen(s);
        if (pc_url_parse(s, n, &u) != PC_URL_OK || u.userinfo ||
            (s[u.tail] != '\0' && strcmp(s + u.tail, "/") != 0)) {
            snprintf(err, errsz, "%s.origins[%zu]: must be an origin such as "
                                 "\"https://app.example.com\" (or [\"*\"] alone)", where, k);
            return -1;
        }
        char origin[320];
        pc_url_origin(&u, origin, sizeof origin);
        c->origins[c->norigins++] = pc_xstrdup(origin);
    }
    if (parse_bool(pc_json_get(v, "credentials"), i, "cors.credentials", &c->credentials, err,
                   errsz) != 0)
        return -1;
    if (c->any_origin && c->credentials) {
        snprintf(err, errsz, "%s: \"*\" cannot be combined with credentials (browsers refuse "
                             "it; list the origins)", where);
        return -1;
    }
    yajl_val m = pc_json_get(v, "methods"), h = pc_json_get(v, "headers");
    yajl_val x = pc_json_get(v, "expose_headers"), age = pc_json_get(v, "max_age");
    static const char *const dm[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    static const char *const dh[] = {"Authorization", "Content-Type"};
    if (m ? cors_tokens(m, i, "methods", true, &c->methods, &c->nmethods, &c->methods_s, err,
                        errsz) != 0
          : (cors_default(dm, PC_ARRAY_LEN(dm), &c->methods, &c->nmethods, &c->methods_s), 0))
        return -1;
    if (h ? cors_tokens(h, i, "headers", false, &c->headers, &c->nheaders, &c->headers_s, err,
                        errsz) != 0
          : (cors_default(dh, PC_ARRAY_LEN(dh), &c->headers, &c->nheaders, &c->headers_s), 0))
        return -1;
    if (x) {
        char **xl = NULL;
        size_t xn = 0;
        int rc = cors_tokens(x, i, "expose_headers", false, &xl, &xn, &c->expose_s, err, errsz);
        for (size_t k = 0; k < xn; k++)
            free(xl[k]);
        free(xl);
        if (rc != 0)
            return -1;
    }
    if (age) {
        if (!YAJL_IS_INTEGER(age) || YAJL_GET_INTEGER(age) < 0 || YAJL_GET_INTEGER(age) > 86400) {
            snprintf(err, errsz, "%s.max_age: must be an integer from 0 to 86400 (seconds)", where);
            return -1;
        }
        c->max_age = (int)YAJL_GET_INTEGER(age);
    }
    return 0;
}

/* routes[i].key, an integer from lo to hi (unit names it in the error),
 * into *out when present (else *out stays). */
static int route_int(yajl_val r, size_t i, const char *key, int64_t lo, int64_t hi,
                     const char *unit, int64_t *out, char *err, size_t errsz)
{
    yajl_val v = pc_json_get(r, key);
    if (v == NULL)
        return 0;
    if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < lo || YAJL_GET_INTEGER(v) > hi) {
        snprintf(err, errsz, "routes[%zu].%s: must be an integer from %lld to %lld (%s)", i, key,
                 (long long)lo, (long long)hi, unit);
        return -1;
    }
    *out = YAJL_GET_INTEGER(v);
    return 0;
}

/* A route's "preserve_host", "timeout_ms", "request_headers",
 * "response_headers", its tunnels' bounds and "hsts_max_age_s": how its
 * exchanges differ. */
static int parse_exchange(yajl_val r, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    if (parse_bool(pc_json_get(r, "preserve_host"), i, "preserve_host", &out->preserve_host,
                   err, errsz) != 0)
        return -1;
    out->websocket = true;
    out->tunnel_idle_ms = 600000;
    yajl_val ws = pc_json_get(r, "websocket");
    if (ws && parse_bool(ws, i, "websocket", &out->websocket, err, errsz) != 0)
        return -1;
    if (route_int(r, i, "timeout_ms", 1, 3600000, "milliseconds", &out->timeout_ms, err,
                  errsz) != 0 ||
        route_int(r, i, "tunnel_idle_timeout_ms", 100, 86400000, "milliseconds",
                  &out->tunnel_idle_ms, err, errsz) != 0 ||
        route_int(r, i, "tunnel_max_lifetime_s", 1, 31536000, "seconds",
                  &out->tunnel_lifetime_s, err, errsz) != 0 ||
        route_int(r, i, "hsts_max_age_s", 0, 63072000, "seconds", &out->hsts_max_age_s, err,
                  errsz) != 0)
        return -1;
    yajl_val rq = pc_json_get(r, "request_headers"), rs = pc_json_get(r, "response_headers");
    if ((rq && parse_hdr_rules(rq, i, "request_headers", refused_upstream, &out->req_hdrs, err,
                               errsz) != 0) ||
        (rs && parse_hdr_rules(rs, i, "response_headers", refused_answer, &out->resp_hdrs, err,
                               errsz) != 0))
        return -1;
    for (size_t k = 0; k < out->req_hdrs.n; k++)
        if (out->upstream_jwt == GW_UPJWT_AUTHORIZATION &&
            strcasecmp(out->req_hdrs.r[k].name, "Authorization") == 0) {
            snprintf(err, errsz, "routes[%zu].request_headers: Authorization carries the "
                                 "upstream_jwt on this route", i);
            return -1;
        }
    return 0;
}

/* One target of a route: the upstream for url with the route's "ca_file"
 * (https only; else UPSTREAM_CA_FILE or the system store), added when new;
 * its index, or -1 with err set. */
static long route_target(yajl_val ca, const char *url, size_t i, char *err, size_t errsz)
{
    bool https = pc_starts_with(url, "https://");
    const char *env = gw_cfg.upstream_ca_file && gw_cfg.upstream_ca_file[0] ? gw_cfg.upstream_ca_file
                                                                             : NULL;
    const char *ca_file = !https ? NULL : ca ? ca->u.string : env;
    char why[300], where[40];
    snprintf(where, sizeof where, ca ? "routes[%zu].ca_file" : "UPSTREAM_CA_FILE", i);
    struct ssl_ctx_st *tls = NULL;
    if (https && (tls = tls_ctx_for(ca_file, where, err, errsz)) == NULL)
        return -1;
    long idx = add_upstream(url, ca_file, tls, why, sizeof why);
    if (idx < 0)
        snprintf(err, errsz, "routes[%zu].upstream: %s", i, why);
    return idx;
}

/* A route's "upstream" (one URL, or an array of 1 to GW_TARGETS_MAX
 * different ones: its targets, balanced round-robin) and "ca_file". */
static int route_upstream(yajl_val r, yajl_val up, size_t i, struct gw_route *out, char *err,
                          size_t errsz)
{
    yajl_val ca = pc_json_get(r, "ca_file");
    size_t n = YAJL_IS_ARRAY(up) ? up->u.array.len : 1;
    yajl_val *urls = YAJL_IS_ARRAY(up) ? up->u.array.values : &up;
    if (n == 0 || n > GW_TARGETS_MAX) {
        snprintf(err, errsz, "routes[%zu].upstream: an array of 1 to %d upstream URLs", i,
                 GW_TARGETS_MAX);
        return -1;
    }
    if (ca != NULL && (!YAJL_IS_STRING(ca) || ca->u.string[0] == '\0')) {
        snprintf(err, errsz, "routes[%zu].ca_file: must be the path of a PEM file of CA "
                             "certificates", i);
        return -1;
    }
    bool any_https = false;
    for (size_t k = 0; k < n; k++) {
        if (!YAJL_IS_STRING(urls[k])) {
            snprintf(err, errsz, "routes[%zu].upstream[%zu]: must be an http:// or https:// URL",
                     i, k);
            return -1;
        }
        any_https |= pc_starts_with(urls[k]->u.string, "https://");
        for (size_t j = 0; j < k; j++) {
            if (strcmp(urls[j]->u.string, urls[k]->u.string) == 0) {
                snprintf(err, errsz, "routes[%zu].upstream[%zu]: \"%s\" is listed twice", i, k,
                         urls[k]->u.string);
                return -1;
            }
        }
    }
    if (ca != NULL && !any_https) {
        snprintf(err, errsz, "routes[%zu].ca_file: only for an https:// upstream", i);
        return -1;
    }
    out->target_index = pc_xcalloc(n, sizeof *out->target_index);
    out->targets = pc_xcalloc(n, sizeof *out->targets);
    out->rr = pc_xcalloc(1, sizeof *out->rr);
    out->ntargets = n;
    for (size_t k = 0; k < n; k++) {
        long idx = route_target(ca, urls[k]->u.string, i, err, errsz);
        if (idx < 0)
            return -1;
        out->target_index[k] = (unsigned)idx;
    }
    return 0;
}

/* One list of "allow": 1 to 256 strings, each an email (one '@' with
 * something either side) or a domain (letters, digits, '-', '.'), at most
 * 320 bytes; stored lower case. */
static int allow_list(yajl_val v, size_t i, const char *key, bool emails, char ***out,
                      size_t *n, char *err, size_t errsz)
{
    if (v == NULL)
        return 0;
    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0 || v->u.array.len > 256) {
        snprintf(err, errsz, "routes[%zu].allow.%s: must be a list of 1 to 256 %s", i, key,
                 emails ? "email addresses" : "domains");
        return -1;
    }
    *out = pc_xcalloc(v->u.array.len, sizeof **out);
    for (size_t k = 0; k < v->u.array.len; k++) {
        yajl_val s = v->u.array.values[k];
        const char *str = YAJL_IS_STRING(s) ? s->u.string : "";
        size_t len = strlen(str);
        const char *at = strchr(str, '@');
        bool ok = len > 0 && len <= 320;
        if (emails)
            ok = ok && at && at > str && at[1] && !strchr(at + 1, '@');
        else
            ok = ok && str[0] != '.' && str[len - 1] != '.' &&
                 strspn(str, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") ==
                     len;
        for (size_t c = 0; ok && c < len; c++)
            ok = (unsigned char)str[c] > 0x20 && (unsigned char)str[c] < 0x7f;
        if (!ok) {
            snprintf(err, errsz, "routes[%zu].allow.%s[%zu]: must be %s", i, key, k,
                     emails ? "an email address (name@domain)"
                            : "a domain such as example.com (no '@', no '*')");
            return -1;
        }
        char *d = pc_xstrdup(str);
        for (char *c = d; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        (*out)[(*n)++] = d;
    }
    return 0;
}

/* A route's "allow": {"email_domains": [...], "emails": [...]}, for the
 * sessions and JWTs a route accepts; an API key has no email to judge
 * (its "permissions" are its rules), so a route with "allow" may not
 * accept one. */
static int parse_allow(yajl_val v, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    static const char *const keys[] = {"email_domains", "emails", NULL};
    if (v == NULL)
        return 0;
    char where[48];
    snprintf(where, sizeof where, "routes[%zu].allow", i);
    if (!YAJL_IS_OBJECT(v)) {
        snprintf(err, errsz, "%s: must be {\"email_domains\": [...], \"emails\": [...]}", where);
        return -1;
    }
    if (check_keys(v, keys, where, err, errsz) != 0)
        return -1;
    struct gw_allow *a = out->allow = pc_xcalloc(1, sizeof *a);
    if (allow_list(pc_json_get(v, "email_domains"), i, "email_domains", false, &a->domains,
                   &a->ndomains, err, errsz) != 0 ||
        allow_list(pc_json_get(v, "emails"), i, "emails", true, &a->emails, &a->nemails, err,
                   errsz) != 0)
        return -1;
    if (a->ndomains + a->nemails == 0) {
        snprintf(err, errsz, "%s: needs \"email_domains\" or \"emails\"", where);
        return -1;
    }
    if (out->anonymous || (out->accept & GW_ACCEPT(GW_CRED_API_KEY))) {
        snprintf(err, errsz, "%s: only on routes whose auth is \"session\" and/or \"jwt\" "
                             "(an API key has no email to judge; use \"permissions\")", where);
        return -1;
    }
    return 0;
}

/* A route's "origin_check" (default true) and "trusted_origins" (patterns
 * as in TRUSTED_ORIGINS, added to it for this route). */
static int parse_origin_check(yajl_val r, size_t i, struct gw_route *out, char *err,
                              size_t errsz)
{
    yajl_val oc = pc_json_get(r, "origin_check"), to = pc_json_get(r, "trusted_origins");
    if (parse_bool(oc, i, "origin_check", &out->origin_check, err, errsz) != 0)
        return -1;
    if (oc == NULL)
        out->origin_check = true;
    if (to == NULL)
        return 0;
    if (!YAJL_IS_ARRAY(to) || to->u.array.len == 0 || to->u.array.len > 64) {
        snprintf(err, errsz, "routes[%zu].trusted_origins: must be a list of 1 to 64 origins",
                 i);
        return -1;
    }
    for (size_t k = 0; k < to->u.array.len; k++) {
        yajl_val o = to->u.array.values[k];
        const char *why = "must be a string";
        if (!YAJL_IS_STRING(o) ||
            pc_origin_list_add1(&out->trusted, o->u.string, strlen(o->u.string), &why) != 0) {
            snprintf(err, errsz, "routes[%zu].trusted_origins[%zu]: %s", i, k, why);
            return -1;
        }
    }
    return 0;
}

static int parse_route(yajl_val r, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    static const char *const keys[] = {"prefix", "upstream", "auth", "permissions",
                                       "forward_cookies", "upstream_jwt", "strip_prefix",
                                       "hosts", "methods", "request_headers",
                                       "response_headers", "preserve_host", "timeout_ms",
                                       "ca_file", "auth_passthrough", "on_unauthenticated",
                                       "sign_in_url", "return_to_param", "cors",
                                       "origin_check", "trusted_origins", "allow", "websocket",
                                       "tunnel_idle_timeout_ms", "tunnel_max_lifetime_s",
                                       "hsts_max_age_s", NULL};
    yajl_val prefix = pc_json_get(r, "prefix");
    yajl_val up = pc_json_get(r, "upstream");
    yajl_val auth = pc_json_get(r, "auth");
    yajl_val perms = pc_json_get(r, "permissions");
    yajl_val fc = pc_json_get(r, "forward_cookies");
    if (!YAJL_IS_OBJECT(r)) {
        snprintf(err, errsz, "routes[%zu]: must be an object", i);
        return -1;
    }
    char where[32];
    snprintf(where, sizeof where, "routes[%zu]", i);
    if (check_keys(r, keys, where, err, errsz) != 0)
        return -1;
    if (!YAJL_IS_STRING(prefix) || prefix->u.string[0] != '/') {
        snprintf(err, errsz, "routes[%zu].prefix: must be a path starting with /", i);
        return -1;
    }
    if (!YAJL_IS_STRING(up) && !YAJL_IS_ARRAY(up)) {
        snprintf(err, errsz, "routes[%zu].upstream: must be an http:// or https:// URL, or an "
                             "array of them", i);
        return -1;
    }
    if (!YAJL_IS_ARRAY(auth) || auth->u.array.len == 0) {
        snprintf(err, errsz, "routes[%zu].auth: must be a non-empty array of "
                             "\"session\", \"api_key\", \"jwt\" or \"none\"", i);
        return -1;
    }
    out->prefix = pc_xstrdup(prefix->u.string);
    const char *ks = strstr(out->prefix, ":apiKey");
    if (ks) {
        if (ks[-1] != '/' || (ks[7] != '/' && ks[7] != '\0') || strstr(ks + 1, ":apiKey")) {
            snprintf(err, errsz, "routes[%zu].prefix: :apiKey must be a whole path segment", i);
            return -1;
        }
        out->key_in_path = true;
        out->match = pc_xstrndup(out->prefix, (size_t)(ks - out->prefix));
        if (ks[7] == '/' && ks[8] != '\0')
            out->after_key = pc_xstrdup(ks + 7);
    } else {
        out->match = pc_xstrdup(out->prefix);
    }
    for (size_t k = 0; k < auth->u.array.len; k++) {
        yajl_val a = auth->u.array.values[k];
        const char *s = YAJL_IS_STRING(a) ? a->u.string : "";
        if (strcmp(s, "session") == 0)
            out->accept |= GW_ACCEPT(GW_CRED_SESSION);
        else if (strcmp(s, "api_key") == 0)
            out->accept |= GW_ACCEPT(GW_CRED_API_KEY);
        else if (strcmp(s, "jwt") == 0)
            out->accept |= GW_ACCEPT(GW_CRED_JWT);
        else if (strcmp(s, "none") == 0)
            out->anonymous = true;
        else {
            snprintf(err, errsz, "routes[%zu].auth[%zu]: unknown kind \"%s\"", i, k, s);
            return -1;
        }
    }
    if (out->anonymous && out->accept) {
        snprintf(err, errsz, "routes[%zu].auth: \"none\" cannot be combined with other kinds", i);
        return -1;
    }
    if (out->key_in_path && !(out->accept & GW_ACCEPT(GW_CRED_API_KEY))) {
        snprintf(err, errsz, "routes[%zu]: an :apiKey prefix needs \"api_key\" in auth", i);
        return -1;
    }
    if (perms != NULL) {
        if (!YAJL_IS_OBJECT(perms)) {
            snprintf(err, errsz, "routes[%zu].permissions: must be {\"resource\": [\"action\"]}", i);
            return -1;
        }
        out->nperms = perms->u.object.len;
        out->perms = pc_xcalloc(out->nperms, sizeof *out->perms);
        for (size_t k = 0; k < out->nperms; k++) {
            yajl_val acts = perms->u.object.values[k];
            out->perms[k].resource = pc_xstrdup(perms->u.object.keys[k]);
            if (!YAJL_IS_ARRAY(acts) || acts->u.array.len == 0) {
                snprintf(err, errsz, "routes[%zu].permissions.%s: must be a non-empty array", i,
                         perms->u.object.keys[k]);
                return -1;
            }
            out->perms[k].nactions = acts->u.array.len;
            out->perms[k].actions = pc_xcalloc(acts->u.array.len, sizeof(char *));
            for (size_t a = 0; a < acts->u.array.len; a++) {
                if (!YAJL_IS_STRING(acts->u.array.values[a])) {
                    snprintf(err, errsz, "routes[%zu].permissions.%s: actions must be strings", i,
                             perms->u.object.keys[k]);
                    return -1;
                }
                out->perms[k].actions[a] = pc_xstrdup(acts->u.array.values[a]->u.string);
            }
        }
    }
    if (parse_bool(fc, i, "forward_cookies", &out->forward_cookies, err, errsz) != 0 ||
        parse_bool(pc_json_get(r, "strip_prefix"), i, "strip_prefix", &out->strip_prefix, err,
                   errsz) != 0 ||
        parse_bool(pc_json_get(r, "auth_passthrough"), i, "auth_passthrough",
                   &out->auth_passthrough, err, errsz) != 0)
        return -1;
    /* The upstream (authsvc, a Better Auth server) judges the credentials
     * it gets whole; on a route where the gateway judged them first, they
     * would reach a service that was told who the caller is already. */
    if (out->auth_passthrough && !out->anonymous) {
        snprintf(err, errsz, "routes[%zu].auth_passthrough: only on a route with \"auth\": "
                             "[\"none\"] (the upstream checks the credentials itself)", i);
        return -1;
    }
    yajl_val hosts = pc_json_get(r, "hosts"), methods = pc_json_get(r, "methods");
    if ((hosts && parse_hosts(hosts, i, out, err, errsz) != 0) ||
        (methods && parse_methods(methods, i, out, err, errsz) != 0))
        return -1;
    yajl_val uj = pc_json_get(r, "upstream_jwt");
    if (uj != NULL) {
        const char *m = YAJL_IS_STRING(uj) ? uj->u.string : "";
        if (strcmp(m, "authorization") == 0)
            out->upstream_jwt = GW_UPJWT_AUTHORIZATION;
        else if (strcmp(m, "x-auth-jwt") == 0)
            out->upstream_jwt = GW_UPJWT_HEADER;
        else {
            snprintf(err, errsz, "routes[%zu].upstream_jwt: must be \"authorization\" or "
                                 "\"x-auth-jwt\"", i);
            return -1;
        }
        if (out->anonymous) {
            snprintf(err, errsz, "routes[%zu].upstream_jwt: an anonymous route has nobody to "
                                 "sign for", i);
            return -1;
        }
    }
    if (parse_exchange(r, i, out, err, errsz) != 0 || parse_signin(r, i, out, err, errsz) != 0 ||
        parse_cors(pc_json_get(r, "cors"), i, out, err, errsz) != 0 ||
        parse_origin_check(r, i, out, err, errsz) != 0 ||
        parse_allow(pc_json_get(r, "allow"), i, out, err, errsz) != 0)
        return -1;
    return route_upstream(r, up, i, out, err, errsz);
}

static bool same_set(char *const *a, size_t na, char *const *b, size_t nb);

static void strings_free(char **v, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(v[k]);
    free(v);
}

static void issuer_free(struct gw_issuer *x)
{
    gw_jwks_issuer_free(x);
    free(x->issuer);
    free(x->jwks_uri);
    strings_free(x->audiences, x->naudiences);
    free(x);
}

/* t accepts the issuer iss (its JWKS at jwks_uri, NULL: discovered) for the
 * audiences auds (taken): the registry's issuer that is the same in all
 * three, else a new one (its key state made now). -1 with err set. */
static int add_issuer(struct gw_table *t, const char *iss, const char *jwks_uri, char **auds,
                      size_t naud, char *err, size_t errsz)
{
    struct gw_issuer *x = NULL;
    for (size_t i = 0; i < gw_cfg.nissuers && x == NULL; i++) {
        struct gw_issuer *h = gw_cfg.issuers[i];
        if (strcmp(h->issuer, iss) == 0 && same_ca(h->jwks_uri, jwks_uri) &&
            same_set(h->audiences, h->naudiences, auds, naud))
            x = h;
    }
    if (x != NULL) {
        strings_free(auds, naud);
    } else if (gw_cfg.nissuers == GW_ISSUERS_MAX) {
        strings_free(auds, naud);
        snprintf(err, errsz, "jwt_issuers: more than %d different issuers since the gateway "
                             "started (reloads add theirs): restart it", GW_ISSUERS_MAX);
        return -1;
    } else {
        if (gw_cfg.issuers == NULL)
            gw_cfg.issuers = pc_xcalloc(GW_ISSUERS_MAX, sizeof *gw_cfg.issuers);
        x = pc_xcalloc(1, sizeof *x);
        x->issuer = pc_xstrdup(iss);
        x->jwks_uri = jwks_uri ? pc_xstrdup(jwks_uri) : NULL;
        x->audiences = auds;
        x->naudiences = naud;
        x->index = (unsigned)gw_cfg.nissuers;
        gw_jwks_issuer_init(x);
        gw_cfg.issuers[gw_cfg.nissuers++] = x;
    }
    t->issuers = pc_xrealloc(t->issuers, (t->nissuers + 1) * sizeof *t->issuers);
    t->issuers[t->nissuers++] = x;
    return 0;
}

/* "jwt_issuers": [{"issuer", "jwks_uri"?, "audiences"?}]; absent: authsvc. */
static int parse_issuers(struct gw_table *t, yajl_val doc, char *err, size_t errsz)
{
    yajl_val list = pc_json_get(doc, "jwt_issuers");
    if (list == NULL) {
        const char *iss = gw_cfg.jwt_issuer;
        struct pc_buf u = {0};
        if (gw_cfg.jwt_jwks_url[0])
            pc_buf_puts(&u, gw_cfg.jwt_jwks_url);
        else
            pc_buf_printf(&u, "%.*s/api/auth/jwks", (int)strcspn(gw_cfg.base_url, "?#"),
                          gw_cfg.base_url);
        char **auds = pc_xcalloc(1, sizeof *auds);
        auds[0] = pc_xstrdup(gw_cfg.jwt_audience);
        int rc = add_issuer(t, iss, pc_buf_cstr(&u), auds, 1, err, errsz);
        pc_buf_free(&u);
        return rc;
    }
    if (!YAJL_IS_ARRAY(list)) {
        snprintf(err, errsz, "jwt_issuers: must be an array of {\"issuer\", \"jwks_uri\", "
                             "\"audiences\"}");
        return -1;
    }
    for (size_t i = 0; i < list->u.array.len; i++) {
        yajl_val o = list->u.array.values[i];
        static const char *const keys[] = {"issuer", "jwks_uri", "audiences", NULL};
        char where[40];
        snprintf(where, sizeof where, "jwt_issuers[%zu]", i);
        if (!YAJL_IS_OBJECT(o)) {
            snprintf(err, errsz, "%s: must be an object", where);
            return -1;
        }
        if (check_keys(o, keys, where, err, errsz) != 0)
            return -1;
        yajl_val iss = pc_json_get(o, "issuer"), ju = pc_json_get(o, "jwks_uri");
        yajl_val aud = pc_json_get(o, "audiences");
        const char *why;
        if (!YAJL_IS_STRING(iss) || iss->u.string[0] == '\0') {
            snprintf(err, errsz, "jwt_issuers[%zu].issuer: must be a non-empty string", i);
            return -1;
        }
        if (ju != NULL && (!YAJL_IS_STRING(ju) || pc_conf_check_http_url(ju->u.string, &why) != 0)) {
            snprintf(err, errsz, "jwt_issuers[%zu].jwks_uri: must be an http(s) URL", i);
            return -1;
        }
        if (ju == NULL && pc_conf_check_http_url(iss->u.string, &why) != 0) {
            snprintf(err, errsz, "jwt_issuers[%zu]: without jwks_uri the issuer must be an "
                                 "http(s) URL (for discovery)", i);
            return -1;
        }
        if (aud != NULL && (!YAJL_IS_ARRAY(aud) || aud->u.array.len == 0)) {
            snprintf(err, errsz, "jwt_issuers[%zu].audiences: must be a non-empty array", i);
            return -1;
        }
        size_t naud = aud ? aud->u.array.len : 1;
        char **auds = pc_xcalloc(naud, sizeof *auds);
        for (size_t k = 0; k < naud; k++) {
            yajl_val a = aud ? aud->u.array.values[k] : iss;
            if (!YAJL_IS_STRING(a)) {
                for (size_t j = 0; j < k; j++)
                    free(auds[j]);
                free(auds);
                snprintf(err, errsz, "jwt_issuers[%zu].audiences: must be strings", i);
                return -1;
            }
            auds[k] = pc_xstrdup(a->u.string);
        }
        if (add_issuer(t, iss->u.string, ju ? ju->u.string : NULL, auds, naud, err, errsz) != 0)
            return -1;
    }
    return 0;
}

/* Do lists a and b (na, nb strings) hold the same strings? */
static bool same_set(char *const *a, size_t na, char *const *b, size_t nb)
{
    for (size_t i = 0; i < na; i++) {
        size_t j = 0;
        while (j < nb && strcmp(a[i], b[j]) != 0)
            j++;
        if (j == nb)
            return false;
    }
    for (size_t j = 0; j < nb; j++) {
        size_t i = 0;
        while (i < na && strcmp(a[i], b[j]) != 0)
            i++;
        if (i == na)
            return false;
    }
    return true;
}

/* "/api" and "/api/" cover the same paths ("/api", "/api/..."): one prefix. */
static bool same_prefix(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    na -= na > 1 && a[na - 1] == '/';
    nb -= nb > 1 && b[nb - 1] == '/';
    return na == nb && strncmp(a, b, na) == 0;
}

/* Two routes with one prefix, one hosts list and one methods list: the
 * second could never be chosen. (Before sorting: i is the file's order.) */
static bool duplicate_route(const struct gw_table *t, char *err, size_t errsz)
{
    for (size_t j = 1; j < t->nroutes; j++) {
        const struct gw_route *b = &t->routes[j];
        for (size_t i = 0; i < j; i++) {
            const struct gw_route *a = &t->routes[i];
            if (same_prefix(a->prefix, b->prefix) &&
                same_set(a->hosts, a->nhosts, b->hosts, b->nhosts) &&
                same_set(a->methods, a->nmethods, b->methods, b->nmethods)) {
                snprintf(err, errsz, "routes[%zu].prefix: routes[%zu] covers the same paths, "
                                     "hosts and methods, so this route would never be chosen", j, i);
                return true;
            }
        }
    }
    return false;
}

static int cmp_routes(const void *a, const void *b)
{
    const struct gw_route *x = a, *y = b;
    size_t lx = strlen(x->match), ly = strlen(y->match);
    if (lx != ly)
        return lx > ly ? -1 : 1;
    return (int)y->key_in_path - (int)x->key_in_path;
}

/* ---- tables ---- */

/* Every table not yet freed (guarded by tables_mu: the last worker to let
 * go of one frees it on its own thread), so that gw_routes_free finds the
 * ones a stopped worker still counted. */
static pthread_mutex_t tables_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gw_table *tables;
static size_t slots_made; /* main thread: gw_cfg.route_slots[0..n) hold a prefix */

static void hdr_rules_free(struct gw_hdr_rules *h)
{
    for (size_t k = 0; k < h->n; k++) {
        free(h->r[k].name);
        free(h->r[k].value);
    }
    free(h->r);
}

static void table_free(struct gw_table *t)
{
    for (size_t i = 0; i < t->nroutes; i++) {
        struct gw_route *r = &t->routes[i];
        free(r->prefix);
        gw_cors_free(r->cors);
        pc_origin_list_free(&r->trusted);
        if (r->allow) {
            for (size_t k = 0; k < r->allow->ndomains; k++)
                free(r->allow->domains[k]);
            for (size_t k = 0; k < r->allow->nemails; k++)
                free(r->allow->emails[k]);
            free(r->allow->domains);
            free(r->allow->emails);
            free(r->allow);
        }
        free(r->targets);
        free(r->target_index);
        free(r->rr);
        free(r->signin_url);
        free(r->return_to_param);
        free(r->match);
        free(r->after_key);
        for (size_t k = 0; k < r->nperms; k++) {
            free(r->perms[k].resource);
            for (size_t a = 0; a < r->perms[k].nactions; a++)
                free(r->perms[k].actions[a]);
            free(r->perms[k].actions);
        }
        free(r->perms);
        for (size_t k = 0; k < r->nhosts; k++)
            free(r->hosts[k]);
        free(r->hosts);
        for (size_t k = 0; k < r->nmethods; k++)
            free(r->methods[k]);
        free(r->methods);
        hdr_rules_free(&r->req_hdrs);
        hdr_rules_free(&r->resp_hdrs);
    }
    free(t->routes);
    free(t->issuers);
    free(t->use);
    free(t);
}

static void table_unlist_free(struct gw_table *t)
{
    __atomic_sub_fetch(&gw_stats.route_tables, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&tables_mu);
    struct gw_table **pp = &tables;
    while (*pp && *pp != t)
        pp = &(*pp)->next_live;
    if (*pp)
        *pp = t->next_live;
    pthread_mutex_unlock(&tables_mu);
    table_free(t);
}

/* One holder of t lets go; the last frees it. */
static void let_go(struct gw_table *t)
{
    if (atomic_fetch_sub(&t->holders, 1) == 1)
        table_unlist_free(t);
}

/* The metrics slot of prefix: the registry's, else a new one; when they
 * are all taken, the last (counted as "other"). */
static unsigned slot_for(const char *prefix)
{
    for (size_t i = 0; i < slots_made; i++)
        if (strcmp(gw_cfg.route_slots[i], prefix) == 0)
            return (unsigned)i;
    if (gw_cfg.route_slots == NULL)
        gw_cfg.route_slots = pc_xcalloc(GW_ROUTE_SLOTS_MAX, sizeof *gw_cfg.route_slots);
    if (slots_made == GW_ROUTE_SLOTS_MAX - 1)
        return GW_ROUTE_SLOTS_MAX - 1;
    gw_cfg.route_slots[slots_made] = pc_xstrdup(prefix);
    return (unsigned)slots_made++;
}

/* A load failed: the registry entries it added are dropped again (no
 * published table names them). */
static void registries_back_to(size_t nup, size_t niss, size_t ntls)
{
    while (gw_cfg.nupstreams > nup) {
        struct gw_upstream *u = gw_cfg.upstreams[--gw_cfg.nupstreams];
        free(u->url);
        free(u->base_path);
        free(u->ca_file);
        free(u);
        gw_cfg.upstreams[gw_cfg.nupstreams] = NULL;
    }
    while (gw_cfg.nissuers > niss) {
        issuer_free(gw_cfg.issuers[--gw_cfg.nissuers]);
        gw_cfg.issuers[gw_cfg.nissuers] = NULL;
    }
    while (gw_cfg.ntls_ctxs > ntls) {
        struct gw_tls_ctx *c = &gw_cfg.tls_ctxs[--gw_cfg.ntls_ctxs];
        free(c->ca_file);
        gw_tls_ctx_free(c->ctx);
    }
    size_t published = atomic_load(&gw_cfg.nroute_slots);
    while (slots_made > published) {
        free(gw_cfg.route_slots[--slots_made]);
        gw_cfg.route_slots[slots_made] = NULL;
    }
}

/* The routes file's text into t (routes, issuers; registries added to). */
static int table_fill(struct gw_table *t, const char *text, size_t len, const char *where,
                      char *err, size_t errsz)
{
    yajl_val doc = pc_json_parse(text, len);
    if (doc == NULL) {
        char why[160];
        pc_json_explain(text, len, why, sizeof why);
        snprintf(err, errsz, "GATEWAY_ROUTES: %s: %s", where, why);
        return -1;
    }
    static const char *const top_keys[] = {"routes", "jwt_issuers", NULL};
    char why[400];
    int rc = -1;
    yajl_val routes = pc_json_get(doc, "routes");
    if (!YAJL_IS_OBJECT(doc) || check_keys(doc, top_keys, "", why, sizeof why) != 0) {
        snprintf(err, errsz, "GATEWAY_ROUTES: %s", YAJL_IS_OBJECT(doc) ? why : "must be an object");
        goto out;
    }
    if (!YAJL_IS_ARRAY(routes) || routes->u.array.len == 0) {
        snprintf(err, errsz, "GATEWAY_ROUTES: must be JSON {\"routes\": [ ... ]} with at least "
                             "one route");
        goto out;
    }
    t->nroutes = routes->u.array.len;
    t->routes = pc_xcalloc(t->nroutes, sizeof *t->routes);
    for (size_t i = 0; i < t->nroutes; i++) {
        if (parse_route(routes->u.array.values[i], i, &t->routes[i], why, sizeof why) != 0) {
            snprintf(err, errsz, "GATEWAY_ROUTES: %s", why);
            goto out;
        }
    }
    if (duplicate_route(t, why, sizeof why)) {
        snprintf(err, errsz, "GATEWAY_ROUTES: %s", why);
        goto out;
    }
    if (parse_issuers(t, doc, err, errsz) != 0)
        goto out;
    for (size_t i = 0; i < t->nroutes; i++) {
        struct gw_route *r = &t->routes[i];
        t->routes_select |= r->nhosts || r->nmethods;
        t->jwt_used |= (r->accept & GW_ACCEPT(GW_CRED_JWT)) != 0;
        t->mint_used |= r->upstream_jwt != GW_UPJWT_NONE;
        for (size_t k = 0; k < r->ntargets; k++)
            r->targets[k] = gw_cfg.upstreams[r->target_index[k]];
        r->slot = slot_for(r->prefix);
    }
    qsort(t->routes, t->nroutes, sizeof *t->routes, cmp_routes);
    t->nupstreams = gw_cfg.nupstreams;
    rc = 0;
out:
    yajl_tree_free(doc);
    return rc;
}

/* t becomes the current table: every worker and the main thread hold it
 * until each lets go; the table it replaces loses the main thread's hold. */
static void table_publish(struct gw_table *t)
{
    struct gw_table *old = atomic_load(&gw_cfg.table);
    t->gen = old ? old->gen + 1 : 1;
    t->nuse = gw_cfg.workers > 0 ? (size_t)gw_cfg.workers : 1;
    t->use = pc_xcalloc(t->nuse, sizeof *t->use);
    atomic_store(&t->holders, (long)t->nuse + 1);
    pthread_mutex_lock(&tables_mu);
    t->next_live = tables;
    tables = t;
    pthread_mutex_unlock(&tables_mu);
    GW_STAT_INC(route_tables);
    if (t->jwt_used)
        atomic_store(&gw_cfg.jwt_used, true);
    if (t->mint_used)
        atomic_store(&gw_cfg.mint_used, true);
    atomic_store(&gw_cfg.issuers_published, gw_cfg.nissuers);
    atomic_store(&gw_cfg.nroute_slots, slots_made);
    if (old)
        atomic_store_explicit(&old->newer, t, memory_order_release);
    atomic_store_explicit(&gw_cfg.table, t, memory_order_release);
    if (old)
        let_go(old);
}

int gw_routes_load_text(const char *text, size_t len, const char *where, char *err,
                        size_t errsz)
{
    size_t nup = gw_cfg.nupstreams, niss = gw_cfg.nissuers, ntls = gw_cfg.ntls_ctxs;
    struct gw_table *t = pc_xcalloc(1, sizeof *t);
    if (table_fill(t, text, len, where, err, errsz) != 0) {
        table_free(t);
        registries_back_to(nup, niss, ntls);
        return -1;
    }
    table_publish(t);
    return 0;
}

int gw_routes_load(char *err, size_t errsz)
{
    char *text = NULL;
    size_t len = 0;
    if (gw_cfg.routes_file[0]) {
        FILE *f = fopen(gw_cfg.routes_file, "r");
        if (f == NULL) {
            snprintf(err, errsz, "GATEWAY_ROUTES: cannot read %s", gw_cfg.routes_file);
            return -1;
        }
        struct pc_buf b = {0};
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
            pc_buf_append(&b, chunk, n);
        fclose(f);
        text = b.data ? b.data : pc_xstrdup("");
        len = b.len;
    } else if (gw_cfg.upstream_url[0]) {
        struct pc_buf b = {0};
        pc_buf_puts(&b, "{\"routes\":[{\"prefix\":\"/\",\"upstream\":");
        pc_json_quote(&b, gw_cfg.upstream_url, strlen(gw_cfg.upstream_url));
        pc_buf_puts(&b, ",\"auth\":[\"session\",\"api_key\",\"jwt\"]}]}");
        text = b.data;
        len = b.len;
    } else {
        snprintf(err, errsz, "GATEWAY_ROUTES: set it to a routes file, or set UPSTREAM_URL");
        return -1;
    }
    int rc = gw_routes_load_text(text, len, gw_cfg.routes_file, err, errsz);
    free(text);
    return rc;
}

int gw_ca_file_check(const char *ca_file, char *err, size_t errsz)
{
    return tls_ctx_for(ca_file, "UPSTREAM_CA_FILE", err, errsz) ? 0 : -1;
}

/* ---- the workers' side ---- */

struct gw_table *gw_table_adopt(struct gw_worker *w)
{
    struct gw_table *cur = atomic_load_explicit(&gw_cfg.table, memory_order_acquire);
    while (w->table != cur) {
        /* let go of every table between the one w handed out and now */
        struct gw_table *old = w->table;
        struct gw_table *next = atomic_load_explicit(&old->newer, memory_order_acquire);
        old->use[w->id].left = true;
        if (old->use[w->id].n == 0)
            let_go(old);
        w->table = next;
    }
    return cur;
}

struct gw_table *gw_table_take(struct gw_worker *w)
{
    struct gw_table *t = gw_table_adopt(w);
    t->use[w->id].n++;
    return t;
}

void gw_table_drop(struct gw_worker *w, struct gw_table *t)
{
    if (--t->use[w->id].n == 0 && t->use[w->id].left)
        let_go(t);
}

void gw_table_worker_start(struct gw_worker *w)
{
    w->table = atomic_load(&gw_cfg.table);
}

void gw_table_worker_stop(struct gw_worker *w)
{
    struct gw_table *cur = atomic_load(&gw_cfg.table);
    while (w->table && w->table != cur) {
        struct gw_table *old = w->table;
        w->table = atomic_load(&old->newer);
        old->use[w->id].left = true;
        if (old->use[w->id].n == 0)
            let_go(old);
    }
    if (cur && w->table == cur && cur->use[w->id].n == 0) {
        cur->use[w->id].left = true;
        let_go(cur);
    }
    w->table = NULL;
}

void gw_routes_free(void)
{
    /* after the workers: whatever is left, held or not, goes */
    pthread_mutex_lock(&tables_mu);
    struct gw_table *list = tables;
    tables = NULL;
    pthread_mutex_unlock(&tables_mu);
    while (list) {
        struct gw_table *next = list->next_live;
        table_free(list);
        __atomic_sub_fetch(&gw_stats.route_tables, 1, __ATOMIC_RELAXED);
        list = next;
    }
    atomic_store(&gw_cfg.table, NULL);
    atomic_store(&gw_cfg.nroute_slots, 0);
    registries_back_to(0, 0, 0);
    free(gw_cfg.upstreams);
    free(gw_cfg.tls_ctxs);
    free(gw_cfg.issuers);
    free(gw_cfg.route_slots);
    gw_cfg.upstreams = NULL;
    gw_cfg.tls_ctxs = NULL;
    gw_cfg.issuers = NULL;
    gw_cfg.route_slots = NULL;
    atomic_store(&gw_cfg.issuers_published, 0);
    atomic_store(&gw_cfg.jwt_used, false);
    atomic_store(&gw_cfg.mint_used, false);
}
