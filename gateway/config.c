/* Portcullis - MIT licence. See LICENSE.
 *
 * config.c: the gateway's environment table and its routes file.
 *
 * Routes come from GATEWAY_ROUTES, a JSON file:
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
 * API keys and JWTs. The file is parsed and validated whole at start; any
 * error names the route and key and stops the program.
 *
 * One file, past 700 lines, because it is one idea: every setting, read and
 * refused in one place, so that what a start-up error names is found here.
 * The longest part, the routes file, is the candidate to move out first
 * (routes_file.c) when SIGHUP reload (issue 17) makes it its own lifecycle.
 * The identity headers' names are identity.c's to parse (IDENTITY_HEADER_NAMES).
 */
#include "config.h"
#include "proxy.h"
#include "upstream.h"
#include "cors.h"
#include "../lib/conf_common.h"
#include "../lib/bearer.h"
#include "../lib/conf.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/netaddr.h"
#include "../lib/url.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct gw_config gw_cfg;

static int check_prefixes(const char *v, const char **err)
{
    for (const char *p = v; *p; p++) {
        char c = *p;
        if (!(c == ',' || c == '_' || c == '-' || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
            *err = "prefixes are [A-Za-z0-9_-], comma separated";
            return -1;
        }
    }
    return 0;
}

/* L1_MAX_ENTRIES: 0 (L1 off) or 16 and more (64 shards need a few each). */
static int check_l1_max(const char *v, const char **err)
{
    int64_t x;
    if (pc_parse_int64(v, 1, 15, &x) == 0) {
        *err = "must be 0 (L1 off) or at least 16";
        return -1;
    }
    return 0;
}

/* FORWARD_AUTH_PROXY */
static int check_fa_mode(const char *v, const char **err)
{
    if (strcmp(v, "nginx") != 0 && strcmp(v, "traefik") != 0 && strcmp(v, "envoy") != 0) {
        *err = "must be nginx, traefik or envoy";
        return -1;
    }
    return 0;
}

/* FORWARD_AUTH_REFUSAL */
static int check_fa_refusal(const char *v, const char **err)
{
    if (strcmp(v, "status") != 0 && strcmp(v, "403") != 0) {
        *err = "must be status or 403";
        return -1;
    }
    return 0;
}

/* FORWARD_AUTH_*_HEADER: empty, or a header name */
static int check_header_name(const char *v, const char **err)
{
    size_t n = strlen(v);
    if (n > 64 || (n > 0 && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789-_") != n)) {
        *err = "must be empty or a header name ([A-Za-z0-9_-], at most 64)";
        return -1;
    }
    return 0;
}

/* GATEWAY_RESOLVER: "" or a comma-separated list of numeric IP[:port]. */
static int check_resolver(const char *v, const char **err)
{
    char one[80];
    for (const char *p = v; *p;) {
        size_t n = strcspn(p, ",");
        struct sockaddr_storage ss;
        int len = sizeof ss;
        if (n == 0 || n >= sizeof one) {
            *err = "must be IP[:port] entries separated by commas";
            return -1;
        }
        memcpy(one, p, n);
        one[n] = '\0';
        if (evutil_parse_sockaddr_port(one, (struct sockaddr *)&ss, &len) != 0) {
            *err = "each entry must be a numeric IP address, with an optional :port "
                   "([addr]:port for IPv6)";
            return -1;
        }
        p += n + (p[n] == ',');
    }
    return 0;
}

#define INT_ITEM(n, var, def, lo, hi, help) \
    {n, PC_CONF_INT, &gw_cfg.var, def, lo, hi, 0, NULL, help}

static const struct pc_conf_item table[] = {
    {"GATEWAY_LISTEN", PC_CONF_STR, &gw_cfg.listen, "127.0.0.1:8080", 0, 0, 0,
     pc_conf_check_hostport, "address to listen on (host:port)"},
    {"GATEWAY_ADMIN_LISTEN", PC_CONF_STR, &gw_cfg.admin_listen, "127.0.0.1:9090", 0, 0, 0,
     pc_conf_check_admin_listen,
     "the operators' listener (host:port, or off): /metrics, /_stats and the health checks; "
     "the public listener does not answer /metrics or /_stats"},
    {"GATEWAY_HEALTH_PREFIX", PC_CONF_STR, &gw_cfg.health_prefix, "", 0, 0, 0,
     pc_conf_check_path_prefix,
     "path before /health, /live and /ready on the public listener (e.g. /_gateway); the "
     "admin listener answers them with and without it"},
    INT_ITEM("GATEWAY_WORKERS", workers, "0", 0, 256, "event loop threads (0: one per core)"),
    {"GATEWAY_ROUTES", PC_CONF_STR, &gw_cfg.routes_file, "", 0, 0, 0, NULL,
     "JSON routes file (see docs/gateway.md)"},
    {"UPSTREAM_URL", PC_CONF_STR, &gw_cfg.upstream_url, "", 0, 0, 0, pc_conf_check_http_url,
     "without GATEWAY_ROUTES: one catch-all route to this upstream"},
    PC_CONF_ROW_DATABASE_URL(&gw_cfg.database_url),
    PC_CONF_ROW_REDIS_URL(&gw_cfg.redis_url),
    PC_CONF_ROW_REDIS_PREFIX(&gw_cfg.redis_prefix),
    PC_CONF_ROW_REVOCATION_CHANNEL(&gw_cfg.revocation_channel),
    PC_CONF_ROW_BETTER_AUTH_SECRET(&gw_cfg.secret),
    PC_CONF_ROW_BETTER_AUTH_URL(&gw_cfg.base_url),
    PC_CONF_ROW_TRUSTED_ORIGINS(&gw_cfg.trusted_origins_s),
    {"GATEWAY_LOG", PC_CONF_STR, &gw_cfg.log_path, "", 0, 0, 0, NULL,
     "JSON log file; empty: stderr"},
    PC_CONF_ROW_LOG_LEVEL(&gw_cfg.log_level),
    {"L1_MAX_ENTRIES", PC_CONF_INT, &gw_cfg.l1_max, "100000", 0, 100000000, 0, check_l1_max,
     "in-process cache size, entries (0: L1 off, every lookup goes to Redis/PostgreSQL; "
     "otherwise at least 16)"},
    INT_ITEM("L1_TTL", l1_ttl, "60", 1, 86400, "seconds a resolved credential stays in L1"),
    INT_ITEM("L1_NEGATIVE_TTL", l1_negative_ttl, "5", 0, 3600,
             "seconds an unknown credential stays known as unknown"),
    INT_ITEM("L1_DEGRADED_TTL", l1_degraded_ttl, "3", 1, 60,
             "cap on L1 life while the revocation feed is down, seconds"),
    INT_ITEM("L2_TTL", l2_ttl, "3600", 1, 604800,
             "seconds an API key resolved from PostgreSQL stays in Redis (revocations delete it)"),
    {"L2_ENABLED", PC_CONF_BOOL, &gw_cfg.l2_enabled, "true", 0, 0, 0, NULL,
     "look credentials up in Redis and write PostgreSQL fills there; false: every L1 miss "
     "asks PostgreSQL (Redis still carries revocations, rate limits and quotas)"},
    INT_ITEM("GATEWAY_PG_POOL", pg_pool, "2", 1, 64, "PostgreSQL connections per worker"),
    INT_ITEM("GATEWAY_PG_BATCH_MAX", pg_batch_max, "64", 1, 1000,
             "lookups of one kind that queued together and share one PostgreSQL round trip "
             "(1: one query each)"),
    INT_ITEM("GATEWAY_PG_TIMEOUT_MS", pg_timeout_ms, "2000", 10, 60000,
             "PostgreSQL query timeout"),
    INT_ITEM("GATEWAY_REDIS_TIMEOUT_MS", redis_timeout_ms, "200", 5, 10000,
             "Redis lookup budget before falling back to PostgreSQL"),
    INT_ITEM("GATEWAY_REDIS_DEADLINE_MS", redis_deadline_ms, "2000", 100, 60000,
             "a Redis connection that leaves a PING (the revocation feed: its heartbeat) "
             "unanswered this long is dropped and made again; the feed counts as lost"),
    INT_ITEM("UPSTREAM_POOL", upstream_pool, "1024", 1, 100000,
             "keep-alive connections per upstream per worker"),
    INT_ITEM("UPSTREAM_FAIL_TIMEOUT_MS", fail_timeout_ms, "10000", 0, 3600000,
             "a route's upstream target that refused a connection, did not connect in time or "
             "whose name does not resolve is skipped this long (0: never skipped)"),
    {"GATEWAY_RESOLVER", PC_CONF_STR, &gw_cfg.resolver, "", 0, 0, 0, check_resolver,
     "name servers for upstream host names, comma separated IP[:port] (IPv6 as [addr]:port); "
     "empty: those of /etc/resolv.conf. /etc/hosts is read first either way"},
    INT_ITEM("UPSTREAM_TIMEOUT", read_timeout, "30", 1, 3600,
             "seconds to connect (TLS handshake included), or between bytes of the answer "
             "(504 after)"),
    {"UPSTREAM_CA_FILE", PC_CONF_STR, &gw_cfg.upstream_ca_file, "", 0, 0, 0, NULL,
     "PEM bundle of the CA certificates https:// upstreams' certificates must chain to "
     "(a route's ca_file instead, for its upstream); empty: the system's store"},
    INT_ITEM("GATEWAY_MAX_BODY", max_body, "10485760", 0, 1099511627776,
             "request body bytes (413); streamed, so memory is not the bound"),
    INT_ITEM("GATEWAY_MAX_HEADERS", max_headers, "16384", 1024, 1048576,
             "request header bytes (431)"),
    PC_CONF_ROW_SESSION_EXPIRES_IN(&gw_cfg.expires_in),
    PC_CONF_ROW_SESSION_UPDATE_AGE(&gw_cfg.update_age),
    {"API_KEY_PREFIXES", PC_CONF_STR, &gw_cfg.key_prefixes, "", 0, 0, 0, check_prefixes,
     "API-key prefixes to accept, comma separated (e.g. oc_); others are refused before "
     "any lookup. Empty: any"},
    PC_CONF_ROW_BEARER_REQUIRE_SIGNATURE(&gw_cfg.bearer_require_sig),
    {"FORWARD_AUTH_PROXY", PC_CONF_STR, &gw_cfg.fa_proxy, "nginx", 0, 0, 0, check_fa_mode,
     "the proxy that asks GET /_auth: nginx (auth_request), traefik (ForwardAuth) or envoy "
     "(ext_authz, path_prefix /_auth); sets the three headers below"},
    {"FORWARD_AUTH_URI_HEADER", PC_CONF_STR, &gw_cfg.fa_uri_header, "", 0, 0, 0,
     check_header_name,
     "the one header the original URI is read from; empty: nginx X-Original-URI, traefik "
     "X-Forwarded-Uri (envoy: the request path after /_auth)"},
    {"FORWARD_AUTH_METHOD_HEADER", PC_CONF_STR, &gw_cfg.fa_method_header, "", 0, 0, 0,
     check_header_name,
     "the original method's header; empty: nginx X-Original-Method, traefik "
     "X-Forwarded-Method (envoy: the request method)"},
    {"FORWARD_AUTH_HOST_HEADER", PC_CONF_STR, &gw_cfg.fa_host_header, "", 0, 0, 0,
     check_header_name,
     "the original host's header; empty: nginx X-Original-Host, traefik X-Forwarded-Host "
     "(envoy: Host)"},
    {"FORWARD_AUTH_REFUSAL", PC_CONF_STR, &gw_cfg.fa_refusal, "status", 0, 0, 0,
     check_fa_refusal,
     "how /_auth refuses: status (401, 403, 429, 503, ... as a proxied request; Traefik and "
     "Envoy relay them) or 403 (every refusal but 401 is 403, for nginx's auth_request); "
     "X-Auth-Status always carries the real status"},
    {"IDENTITY_HEADER_NAMES", PC_CONF_STR, &gw_cfg.identity_names_s, "", 0, 0, 0, NULL,
     "renames identity headers: X-User-Id=X-Remote-User,X-Auth-Request-Email= (empty: not "
     "sent); every name, old or new, is the gateway's alone"},
    {"TRUSTED_PROXIES", PC_CONF_STR, &gw_cfg.trusted_proxies_s, "", 0, 0, 0,
     pc_conf_check_cidr_list,
     "addresses or networks (10.0.0.0/8, fd00::/8) of proxies in front of the gateway: from "
     "them X-Forwarded-For is appended to and X-Forwarded-Proto/-Host/-Prefix kept; from "
     "anyone else they are replaced. Empty: nobody"},
    {"GATEWAY_ACCESS_LOG", PC_CONF_BOOL, &gw_cfg.access_log, "true", 0, 0, 0, NULL,
     "one JSON line per request in GATEWAY_LOG (written in batches)"},
    {"GATEWAY_METRICS", PC_CONF_BOOL, &gw_cfg.metrics, "true", 0, 0, 0, NULL,
     "serve GET /metrics (Prometheus) and /_stats on GATEWAY_ADMIN_LISTEN"},
    PC_CONF_ROW_JWT_ISSUER(&gw_cfg.jwt_issuer),
    {"JWT_JWKS_URL", PC_CONF_STR, &gw_cfg.jwt_jwks_url, "", 0, 0, 0, NULL,
     "JWKS of the default issuer; empty: BETTER_AUTH_URL + /api/auth/jwks"},
    PC_CONF_ROW_JWT_AUDIENCE(&gw_cfg.jwt_audience),
    INT_ITEM("JWT_LEEWAY", jwt_leeway, "30", 0, 300, "clock skew allowed on exp/nbf, seconds"),
    INT_ITEM("JWKS_REFETCH_MS", jwt_refetch_ms, "5000", 100, 3600000,
             "least time a fetched JWKS is kept (a shorter max-age counts as this), and the "
             "first retry after a failed fetch that no token waits for (doubling, up to a "
             "minute), milliseconds"),
    INT_ITEM("JWKS_KID_REFETCH_MS", jwt_kid_refetch_ms, "1000", 100, 3600000,
             "least time between two JWKS fetches of one issuer that tokens with an unknown kid "
             "ask for, failed or not (it never grows), milliseconds"),
    INT_ITEM("GATEWAY_PENDING_MAX", pending_max, "4096", 1, 10000000,
             "requests per worker waiting on Redis, PostgreSQL or a JWKS fetch before 503"),
    INT_ITEM("GATEWAY_MAX_CONNS", max_conns, "0", 0, 10000000,
             "client connections open at once; over it a connection may ask /health, /live "
             "or /ready, anything else is 503 (0: half the open-file limit)"),
    INT_ITEM("GATEWAY_MAX_CONNS_PER_IP", max_conns_per_ip, "0", 0, 10000000,
             "client connections open at once from one TCP peer address (0: no cap; leave 0 "
             "behind a load balancer, whose address every connection has)"),
    INT_ITEM("GATEWAY_MAX_TUNNELS", max_tunnels, "10000", 1, 10000000,
             "open WebSocket tunnels per worker; a handshake over it is 429 TOO_MANY_TUNNELS"),
    INT_ITEM("GATEWAY_MAX_TUNNELS_PER_USER", max_tunnels_per_user, "100", 0, 10000000,
             "open WebSocket tunnels per user across the process (0: no cap); a handshake "
             "over it is 429 TOO_MANY_TUNNELS"),
    INT_ITEM("GATEWAY_HEAD_TIMEOUT_MS", head_timeout_ms, "10000", 100, 600000,
             "a request head must arrive whole within this long of the connection or of its "
             "first byte (408 after)"),
};

void gw_config_help(void)
{
    printf("usage: gateway [--help]\n\nConfiguration comes from the environment:\n\n");
    pc_conf_help(table, PC_ARRAY_LEN(table), stdout);
}

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
        if (strcmp(gw_cfg.upstreams[i].url, url) == 0 &&
            same_ca(gw_cfg.upstreams[i].ca_file, ca_file))
            return &gw_cfg.upstreams[i];
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
    struct gw_upstream u = {0};
    if (parse_upstream(url, &u, err, errsz) != 0) {
        free(u.base_path);
        return -1;
    }
    u.ca_file = ca_file ? pc_xstrdup(ca_file) : NULL;
    u.tls = tls;
    gw_cfg.upstreams = pc_xrealloc(gw_cfg.upstreams, (gw_cfg.nupstreams + 1) * sizeof u);
    u.index = (unsigned)gw_cfg.nupstreams;
    gw_cfg.upstreams[gw_cfg.nupstreams++] = u;
    return u.index;
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

/* A route's "preserve_host", "timeout_ms", "request_headers" and
 * "response_headers": how its exchange with the upstream differs. */
static int parse_exchange(yajl_val r, size_t i, struct gw_route *out, char *err, size_t errsz)
{
    if (parse_bool(pc_json_get(r, "preserve_host"), i, "preserve_host", &out->preserve_host,
                   err, errsz) != 0)
        return -1;
    yajl_val t = pc_json_get(r, "timeout_ms");
    if (t != NULL) {
        if (!YAJL_IS_INTEGER(t) || YAJL_GET_INTEGER(t) < 1 || YAJL_GET_INTEGER(t) > 3600000) {
            snprintf(err, errsz, "routes[%zu].timeout_ms: must be an integer from 1 to 3600000 "
                                 "(milliseconds)", i);
            return -1;
        }
        out->timeout_ms = YAJL_GET_INTEGER(t);
    }
    out->websocket = true;
    out->tunnel_idle_ms = 600000;
    yajl_val ws = pc_json_get(r, "websocket");
    if (ws && parse_bool(ws, i, "websocket", &out->websocket, err, errsz) != 0)
        return -1;
    yajl_val ti = pc_json_get(r, "tunnel_idle_timeout_ms");
    if (ti != NULL) {
        if (!YAJL_IS_INTEGER(ti) || YAJL_GET_INTEGER(ti) < 100 ||
            YAJL_GET_INTEGER(ti) > 86400000) {
            snprintf(err, errsz, "routes[%zu].tunnel_idle_timeout_ms: must be an integer from 100 "
                                 "to 86400000 (milliseconds)", i);
            return -1;
        }
        out->tunnel_idle_ms = YAJL_GET_INTEGER(ti);
    }
    yajl_val tl = pc_json_get(r, "tunnel_max_lifetime_s");
    if (tl != NULL) {
        if (!YAJL_IS_INTEGER(tl) || YAJL_GET_INTEGER(tl) < 1 ||
            YAJL_GET_INTEGER(tl) > 31536000) {
            snprintf(err, errsz, "routes[%zu].tunnel_max_lifetime_s: must be an integer from 1 "
                                 "to 31536000 (seconds)", i);
            return -1;
        }
        out->tunnel_lifetime_s = YAJL_GET_INTEGER(tl);
    }
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
                                       "tunnel_idle_timeout_ms", "tunnel_max_lifetime_s", NULL};
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

/* scheme://host[:port] of a URL */
static void add_issuer(const char *iss, const char *jwks_uri, char **auds, size_t naud)
{
    gw_cfg.issuers = pc_xrealloc(gw_cfg.issuers, (gw_cfg.nissuers + 1) * sizeof *gw_cfg.issuers);
    struct gw_issuer *x = &gw_cfg.issuers[gw_cfg.nissuers++];
    memset(x, 0, sizeof *x);
    x->issuer = pc_xstrdup(iss);
    x->jwks_uri = jwks_uri ? pc_xstrdup(jwks_uri) : NULL;
    x->audiences = auds;
    x->naudiences = naud;
}

/* "jwt_issuers": [{"issuer", "jwks_uri"?, "audiences"?}]; absent: authsvc. */
static int parse_issuers(yajl_val doc, char *err, size_t errsz)
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
        add_issuer(iss, pc_buf_cstr(&u), auds, 1);
        pc_buf_free(&u);
        return 0;
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
        add_issuer(iss->u.string, ju ? ju->u.string : NULL, auds, naud);
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
static bool duplicate_route(char *err, size_t errsz)
{
    for (size_t j = 1; j < gw_cfg.nroutes; j++) {
        const struct gw_route *b = &gw_cfg.routes[j];
        for (size_t i = 0; i < j; i++) {
            const struct gw_route *a = &gw_cfg.routes[i];
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

int gw_routes_load_text(const char *text, size_t len, const char *where, char *err,
                        size_t errsz)
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
    if (!YAJL_IS_OBJECT(doc) || check_keys(doc, top_keys, "", why, sizeof why) != 0) {
        snprintf(err, errsz, "GATEWAY_ROUTES: %s", YAJL_IS_OBJECT(doc) ? why : "must be an object");
        yajl_tree_free(doc);
        return -1;
    }
    yajl_val routes = pc_json_get(doc, "routes");
    if (!YAJL_IS_ARRAY(routes) || routes->u.array.len == 0) {
        snprintf(err, errsz, "GATEWAY_ROUTES: must be JSON {\"routes\": [ ... ]} with at least "
                             "one route");
        yajl_tree_free(doc);
        return -1;
    }
    gw_cfg.nroutes = routes->u.array.len;
    gw_cfg.routes = pc_xcalloc(gw_cfg.nroutes, sizeof *gw_cfg.routes);
    for (size_t i = 0; i < gw_cfg.nroutes; i++) {
        if (parse_route(routes->u.array.values[i], i, &gw_cfg.routes[i], why, sizeof why) != 0) {
            snprintf(err, errsz, "GATEWAY_ROUTES: %s", why);
            yajl_tree_free(doc);
            return -1;
        }
    }
    if (duplicate_route(why, sizeof why)) {
        snprintf(err, errsz, "GATEWAY_ROUTES: %s", why);
        yajl_tree_free(doc);
        return -1;
    }
    if (parse_issuers(doc, err, errsz) != 0) {
        yajl_tree_free(doc);
        return -1;
    }
    yajl_tree_free(doc);
    for (size_t i = 0; i < gw_cfg.nroutes; i++) {
        gw_cfg.routes_select |= gw_cfg.routes[i].nhosts || gw_cfg.routes[i].nmethods;
        gw_cfg.jwt_used |= (gw_cfg.routes[i].accept & GW_ACCEPT(GW_CRED_JWT)) != 0;
        gw_cfg.mint_used |= gw_cfg.routes[i].upstream_jwt != GW_UPJWT_NONE;
    }
    /* upstream pointers are fixed once every upstream has been added */
    for (size_t i = 0; i < gw_cfg.nroutes; i++)
        for (size_t k = 0; k < gw_cfg.routes[i].ntargets; k++)
            gw_cfg.routes[i].targets[k] = &gw_cfg.upstreams[gw_cfg.routes[i].target_index[k]];
    qsort(gw_cfg.routes, gw_cfg.nroutes, sizeof *gw_cfg.routes, cmp_routes);
    return 0;
}


static int load_routes(char *err, size_t errsz)
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

/* FORWARD_AUTH_*: the proxy's convention, then the operator's names. */
static int forward_auth_config(void)
{
    static const char *const names[][3] = {
        [GW_FA_NGINX] = {"X-Original-URI", "X-Original-Method", "X-Original-Host"},
        [GW_FA_TRAEFIK] = {"X-Forwarded-Uri", "X-Forwarded-Method", "X-Forwarded-Host"},
        [GW_FA_ENVOY] = {NULL, NULL, NULL},
    };
    gw_cfg.fa_mode = strcmp(gw_cfg.fa_proxy, "traefik") == 0 ? GW_FA_TRAEFIK
                     : strcmp(gw_cfg.fa_proxy, "envoy") == 0 ? GW_FA_ENVOY
                                                             : GW_FA_NGINX;
    const char *set[3] = {gw_cfg.fa_uri_header, gw_cfg.fa_method_header, gw_cfg.fa_host_header};
    static const char *const vars[3] = {"FORWARD_AUTH_URI_HEADER", "FORWARD_AUTH_METHOD_HEADER",
                                        "FORWARD_AUTH_HOST_HEADER"};
    const char **out[3] = {&gw_cfg.fa_uri_name, &gw_cfg.fa_method_name, &gw_cfg.fa_host_name};
    for (int i = 0; i < 3; i++) {
        if (set[i][0] && gw_cfg.fa_mode == GW_FA_ENVOY) {
            fprintf(stderr,
                    "gateway: configuration error: %s: not used with FORWARD_AUTH_PROXY=envoy "
                    "(ext_authz sends the original request itself to /_auth/...)\n",
                    vars[i]);
            return -1;
        }
        *out[i] = set[i][0] ? set[i] : names[gw_cfg.fa_mode][i];
    }
    gw_cfg.fa_refuse_403 = strcmp(gw_cfg.fa_refusal, "403") == 0;
    return 0;
}

int gw_config_load(void)
{
    char err[600];
    if (pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        return -1;
    }
    const char *why;
    gw_cfg.admin_port = 0;
    if (strcmp(gw_cfg.admin_listen, "off") != 0 &&
        pc_parse_hostport(gw_cfg.admin_listen, gw_cfg.admin_host, sizeof gw_cfg.admin_host,
                          &gw_cfg.admin_port, &why) != 0)
        pc_fatal("validated config failed to parse");
    if (pc_parse_hostport(gw_cfg.listen, gw_cfg.listen_host, sizeof gw_cfg.listen_host,
                          &gw_cfg.listen_port, &why) != 0 ||
        pc_redis_parse_url(gw_cfg.redis_url, &gw_cfg.redis_addr, &why) != 0)
        pc_fatal("validated config failed to parse");
    if (gw_cfg.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        gw_cfg.workers = n > 0 ? n : 1;
    }
    if (!pc_conf_cookie_name(gw_cfg.cookie_session, sizeof gw_cfg.cookie_session, gw_cfg.base_url,
                             "session_token") ||
        !pc_conf_cookie_name(gw_cfg.cookie_dont_remember, sizeof gw_cfg.cookie_dont_remember,
                             gw_cfg.base_url, "dont_remember"))
        pc_fatal("cookie name does not fit");
    gw_cfg.secure_cookies = pc_conf_secure_cookies(gw_cfg.base_url);
    for (const char *p = gw_cfg.key_prefixes; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0 && n <= 32) {
            gw_cfg.prefixes = pc_xrealloc(gw_cfg.prefixes,
                                          (gw_cfg.nprefixes + 1) * sizeof *gw_cfg.prefixes);
            gw_cfg.prefixes[gw_cfg.nprefixes++] = pc_xstrndup(p, n);
        } else if (n > 32) {
            fprintf(stderr, "gateway: configuration error: API_KEY_PREFIXES: a prefix is at "
                            "most 32 characters\n");
            return -1;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (forward_auth_config() != 0)
        return -1;
    if (gw_identity_names_parse(gw_cfg.identity_names_s, &gw_cfg.idh, err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        return -1;
    }
    if (pc_cidr_list_parse(gw_cfg.trusted_proxies_s, &gw_cfg.proxies, &gw_cfg.nproxies, &why) != 0)
        return -1; /* the row's validator has said why */
    char base_origin[320];
    pc_conf_url_origin(gw_cfg.base_url, base_origin, sizeof base_origin);
    /* as authsvc reads them (authsvc/origin.c); the validator checked the first */
    if (pc_origin_list_add(&gw_cfg.trusted, base_origin, err, sizeof err) != 0 ||
        pc_origin_list_add(&gw_cfg.trusted, gw_cfg.trusted_origins_s, err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: TRUSTED_ORIGINS: %s\n", err);
        return -1;
    }
    if (pc_origin_list_add(&gw_cfg.trusted, getenv("BETTER_AUTH_TRUSTED_ORIGINS"), err,
                           sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: BETTER_AUTH_TRUSTED_ORIGINS: %s\n", err);
        return -1;
    }
    pc_conf_jwt_defaults(&gw_cfg.jwt_issuer, &gw_cfg.jwt_audience, gw_cfg.base_url);
    /* checked even when no upstream is https: a typo fails now, not later */
    if (gw_cfg.upstream_ca_file[0] &&
        tls_ctx_for(gw_cfg.upstream_ca_file, "UPSTREAM_CA_FILE", err, sizeof err) == NULL) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        return -1;
    }
    if (load_routes(err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        return -1;
    }
    return 0;
}

static void hdr_rules_free(struct gw_hdr_rules *h)
{
    for (size_t k = 0; k < h->n; k++) {
        free(h->r[k].name);
        free(h->r[k].value);
    }
    free(h->r);
}

void gw_routes_free(void)
{
    for (size_t i = 0; i < gw_cfg.nroutes; i++) {
        struct gw_route *r = &gw_cfg.routes[i];
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
    free(gw_cfg.routes);
    for (size_t i = 0; i < gw_cfg.nupstreams; i++) {
        free(gw_cfg.upstreams[i].url);
        free(gw_cfg.upstreams[i].base_path);
        free(gw_cfg.upstreams[i].ca_file);
    }
    free(gw_cfg.upstreams);
    for (size_t i = 0; i < gw_cfg.ntls_ctxs; i++) {
        free(gw_cfg.tls_ctxs[i].ca_file);
        gw_tls_ctx_free(gw_cfg.tls_ctxs[i].ctx);
    }
    free(gw_cfg.tls_ctxs);
    gw_cfg.tls_ctxs = NULL;
    gw_cfg.ntls_ctxs = 0;
    for (size_t i = 0; i < gw_cfg.nissuers; i++) {
        struct gw_issuer *x = &gw_cfg.issuers[i];
        free(x->issuer);
        free(x->jwks_uri);
        for (size_t k = 0; k < x->naudiences; k++)
            free(x->audiences[k]);
        free(x->audiences);
    }
    free(gw_cfg.issuers);
    gw_cfg.routes = NULL;
    gw_cfg.upstreams = NULL;
    gw_cfg.issuers = NULL;
    gw_cfg.nroutes = gw_cfg.nupstreams = gw_cfg.nissuers = 0;
    gw_cfg.routes_select = gw_cfg.jwt_used = gw_cfg.mint_used = false;
}

void gw_config_free(void)
{
    gw_routes_free();
    for (size_t i = 0; i < gw_cfg.nprefixes; i++)
        free(gw_cfg.prefixes[i]);
    free(gw_cfg.prefixes);
    free(gw_cfg.proxies);
    pc_origin_list_free(&gw_cfg.trusted);
    pc_conf_free(table, PC_ARRAY_LEN(table));
    memset(&gw_cfg, 0, sizeof gw_cfg); /* a later gw_config_load starts clean */
}
