/* Portcullis - MIT licence. See LICENSE.
 *
 * config.c: the gateway's environment table and its routes file.
 *
 * The routes file (GATEWAY_ROUTES) is routes_file.c's: read at start
 * (gw_routes_load) and again on SIGHUP.
 *
 * One file because it is one idea: every setting, read and refused in one
 * place, so that what a start-up error names is found here.
 * The identity headers' names are identity.c's to parse (IDENTITY_HEADER_NAMES).
 */
#include "config.h"
#include "proxy.h"
#include "upstream.h"
#include "cors.h"
#include "tls_front.h"
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

/* DATABASE_READ_URL: libpq URLs separated by spaces (a URL may hold commas:
 * several hosts). */
static char **split_urls(const char *v, size_t *n)
{
    char **out = NULL;
    *n = 0;
    for (const char *p = v; *p;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, " ");
        if (len == 0)
            break;
        out = pc_xrealloc(out, (*n + 1) * sizeof *out);
        out[(*n)++] = pc_xstrndup(p, len);
        p += len;
    }
    return out;
}

static int check_read_urls(const char *v, const char **err)
{
    size_t n;
    char **urls = split_urls(v, &n);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && pc_conf_check_pg_url(urls[i], err) != 0)
            rc = -1;
        free(urls[i]);
    }
    free(urls);
    if (rc == 0 && n > 16) {
        *err = "at most 16 replicas";
        rc = -1;
    }
    return rc;
}

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
     "JSON routes file (see docs/gateway.md); read again on SIGHUP"},
    {"UPSTREAM_URL", PC_CONF_STR, &gw_cfg.upstream_url, "", 0, 0, 0, pc_conf_check_http_url,
     "without GATEWAY_ROUTES: one catch-all route to this upstream"},
    PC_CONF_ROW_DATABASE_URL(&gw_cfg.database_url),
    {"DATABASE_READ_URL", PC_CONF_STR, &gw_cfg.read_urls_s, "", 0, 0, PC_CONF_SECRET,
     check_read_urls,
     "PostgreSQL streaming replicas for lookups, space separated; a credential a replica "
     "does not find is asked of the primary, and so is every lookup while no replica is "
     "within READ_MAX_LAG_MS; writes always go to DATABASE_URL. Empty: the primary only"},
    INT_ITEM("READ_MAX_LAG_MS", read_max_lag_ms, "1000", 0, 60000,
             "a replica further behind than this takes no lookups (and for this long, plus "
             "1.5 s, after a revocation the gateway asks the primary about that credential)"),
    PC_CONF_ROW_REDIS_URL(&gw_cfg.redis_url),
    PC_CONF_ROW_REDIS_SENTINELS(&gw_cfg.redis_sentinels),
    PC_CONF_ROW_REDIS_SENTINEL_MASTER(&gw_cfg.redis_sentinel_master),
    PC_CONF_ROW_REDIS_SENTINEL_PASSWORD(&gw_cfg.redis_sentinel_password),
    PC_CONF_ROW_REDIS_PREFIX(&gw_cfg.redis_prefix),
    PC_CONF_ROW_REVOCATION_CHANNEL(&gw_cfg.revocation_channel),
    PC_CONF_ROW_BETTER_AUTH_SECRET(&gw_cfg.secret),
    PC_CONF_ROW_BETTER_AUTH_SECRETS(&gw_cfg.secrets_s),
    PC_CONF_ROW_BETTER_AUTH_URL(&gw_cfg.base_url),
    PC_CONF_ROW_TRUSTED_ORIGINS(&gw_cfg.trusted_origins_s),
    {"GATEWAY_LOG", PC_CONF_STR, &gw_cfg.log_path, "", 0, 0, 0, NULL,
     "JSON log file; empty: stderr"},
    PC_CONF_ROW_LOG_LEVEL(&gw_cfg.log_level),
    {"L1_MAX_ENTRIES", PC_CONF_INT, &gw_cfg.l1_max, "100000", 0, 100000000, 0, check_l1_max,
     "in-process cache size, entries (0: L1 off, every lookup goes to Redis/PostgreSQL; "
     "otherwise at least 16)"},
    INT_ITEM("L1_TTL_SECONDS", l1_ttl, "60", 1, 86400, "seconds a resolved credential stays in L1"),
    INT_ITEM("L1_NEGATIVE_TTL_SECONDS", l1_negative_ttl, "5", 0, 3600,
             "seconds an unknown credential stays known as unknown"),
    INT_ITEM("L1_DEGRADED_TTL_SECONDS", l1_degraded_ttl, "3", 1, 60,
             "cap on L1 life while the revocation feed is down, seconds"),
    INT_ITEM("L2_TTL_SECONDS", l2_ttl, "3600", 1, 604800,
             "seconds an API key resolved from PostgreSQL stays in Redis (revocations delete it)"),
    {"L2_ENABLED", PC_CONF_BOOL, &gw_cfg.l2_enabled, "true", 0, 0, 0, NULL,
     "look credentials up in Redis and write PostgreSQL fills there; false: every L1 miss "
     "asks PostgreSQL (Redis still carries revocations, rate limits and quotas)"},
    INT_ITEM("GATEWAY_PG_POOL", pg_pool, "2", 1, 64, "PostgreSQL connections per worker"),
    INT_ITEM("GATEWAY_PG_BATCH_MAX", pg_batch_max, "64", 1, 1000,
             "lookups of one kind that queued together and share one PostgreSQL round trip "
             "(1: one query each)"),
    INT_ITEM("GATEWAY_PG_TIMEOUT_MS", pg_timeout_ms, "2000", 10, 60000,
             "PostgreSQL query timeout, and the longest a lookup waits in a worker's queue for a connection"),
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
    INT_ITEM("UPSTREAM_TIMEOUT_SECONDS", read_timeout, "30", 1, 3600,
             "seconds to connect (TLS handshake included), or between bytes of the answer "
             "(504 after)"),
    {"UPSTREAM_CA_FILE", PC_CONF_STR, &gw_cfg.upstream_ca_file, "", 0, 0, 0, NULL,
     "PEM bundle of the CA certificates https:// upstreams' certificates must chain to "
     "(a route's ca_file instead, for its upstream); empty: the system's store"},
    {"GATEWAY_TLS_CERT", PC_CONF_STR, &gw_cfg.tls_cert, "", 0, 0, 0, NULL,
     "PEM certificate chain (leaf first) for TLS on GATEWAY_LISTEN (TLS 1.2 and 1.3), or "
     "several, comma separated, picked by the client's SNI (the first by default); empty: "
     "plain HTTP. Read again on SIGHUP"},
    {"GATEWAY_TLS_KEY", PC_CONF_STR, &gw_cfg.tls_key, "", 0, 0, 0, NULL,
     "PEM private key of GATEWAY_TLS_CERT (one per certificate, in its order)"},
    INT_ITEM("GATEWAY_TLS_TICKET_ROTATE_SECONDS", tls_ticket_rotate_s, "3600", 1, 86400,
             "a new TLS session-ticket key this often; tickets under the two before it are "
             "still taken (and renewed), older ones mean a full handshake"),
    {"GATEWAY_HTTP2", PC_CONF_BOOL, &gw_cfg.http2, "on", 0, 0, 0, NULL,
     "over TLS, offer HTTP/2 (ALPN h2, then http/1.1); off: HTTP/1.1 only"},
    INT_ITEM("GATEWAY_HTTP2_MAX_STREAMS", h2_max_streams, "100", 1, 1000,
             "HTTP/2 streams at once per connection, a reset one counted until its request "
             "ends"),
    {"GATEWAY_TLS_OCSP", PC_CONF_BOOL, &gw_cfg.tls_ocsp, "true", 0, 0, 0, NULL,
     "OCSP stapling: a certificate that names an http:// OCSP responder and whose file holds "
     "its issuer after it gets the responder's answer in handshakes, while that verifies, "
     "says good and is not past its nextUpdate"},
    INT_ITEM("GATEWAY_TLS_OCSP_REFRESH_SECONDS", tls_ocsp_refresh_s, "3600", 1, 86400,
             "most time between two OCSP fetches for a certificate (sooner: half the time left "
             "before the response's nextUpdate); a failed one is retried after 30 s, doubling "
             "up to 10 minutes, never more than this apart"),
    {"GATEWAY_HTTP_LISTEN", PC_CONF_STR, &gw_cfg.http_listen, "off", 0, 0, 0,
     pc_conf_check_admin_listen,
     "with TLS: a plain HTTP listener (host:port, or off) that answers /health, /live and "
     "/ready and redirects everything else to https (308)"},
    INT_ITEM("GATEWAY_MAX_BODY_BYTES", max_body, "10485760", 0, 1099511627776,
             "request body bytes (413); streamed, so memory is not the bound"),
    INT_ITEM("GATEWAY_MAX_HEADER_BYTES", max_headers, "16384", 1024, 1048576,
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
    INT_ITEM("JWT_LEEWAY_SECONDS", jwt_leeway, "30", 0, 300,
             "clock skew allowed on exp/nbf, seconds"),
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
    INT_ITEM("GATEWAY_CLIENT_IDLE_SECONDS", client_idle_s, "120", 1, 86400,
             "a client connection with no byte read or written for this long is closed; so is "
             "one whose request body stops coming while it is wanted (HTTP/2: that stream is "
             "reset, CANCEL, the connection goes on)"),
    INT_ITEM("GATEWAY_HEAD_TIMEOUT_MS", head_timeout_ms, "10000", 100, 600000,
             "a request head must arrive whole within this long of the connection or of its "
             "first byte (408 after)"),
};

void gw_config_help(void)
{
    printf("usage: gateway [--help]\n\nConfiguration comes from the environment:\n\n");
    pc_conf_help(table, PC_ARRAY_LEN(table), stdout);
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
    if (pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err) != 0 ||
        pc_secrets_load(gw_cfg.secrets_s, &gw_cfg.secret, &gw_cfg.secrets, err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        return -1;
    }
    const char *why;
    gw_cfg.admin_port = 0;
    if (strcmp(gw_cfg.admin_listen, "off") != 0 &&
        pc_parse_hostport(gw_cfg.admin_listen, gw_cfg.admin_host, sizeof gw_cfg.admin_host,
                          &gw_cfg.admin_port, &why) != 0)
        pc_fatal("validated config failed to parse");
    gw_cfg.http_port = 0;
    if (strcmp(gw_cfg.http_listen, "off") != 0) {
        if (!gw_cfg.tls_cert[0]) {
            fprintf(stderr, "gateway: configuration error: GATEWAY_HTTP_LISTEN: only with "
                            "GATEWAY_TLS_CERT (without it GATEWAY_LISTEN is plain HTTP)\n");
            return -1;
        }
        if (pc_parse_hostport(gw_cfg.http_listen, gw_cfg.http_host, sizeof gw_cfg.http_host,
                              &gw_cfg.http_port, &why) != 0)
            pc_fatal("validated config failed to parse");
    }
    if (pc_parse_hostport(gw_cfg.listen, gw_cfg.listen_host, sizeof gw_cfg.listen_host,
                          &gw_cfg.listen_port, &why) != 0 ||
        pc_redis_parse_url(gw_cfg.redis_url, &gw_cfg.redis_addr, &why) != 0)
        pc_fatal("validated config failed to parse");
    gw_cfg.read_urls = split_urls(gw_cfg.read_urls_s, &gw_cfg.nread_urls);
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
        gw_ca_file_check(gw_cfg.upstream_ca_file, err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        return -1;
    }
    if (gw_routes_load(err, sizeof err) != 0 || gw_tls_front_load(err, sizeof err) != 0) {
        fprintf(stderr, "gateway: configuration error: %s\n", err);
        return -1;
    }
    return 0;
}

void gw_config_free(void)
{
    for (size_t i = 0; i < gw_cfg.nread_urls; i++)
        free(gw_cfg.read_urls[i]);
    free(gw_cfg.read_urls);
    gw_tls_front_free();
    gw_routes_free();
    for (size_t i = 0; i < gw_cfg.nprefixes; i++)
        free(gw_cfg.prefixes[i]);
    free(gw_cfg.prefixes);
    free(gw_cfg.proxies);
    pc_origin_list_free(&gw_cfg.trusted);
    pc_secrets_free(&gw_cfg.secrets);
    pc_conf_free(table, PC_ARRAY_LEN(table));
    memset(&gw_cfg, 0, sizeof gw_cfg); /* a later gw_config_load starts clean */
}
