/* Portcullis - MIT licence. See LICENSE.
 *
 * types.h: the gateway's shared types, and the first file to read.
 *
 * The configuration (config.c fills gw_cfg once, before the workers start,
 * and nothing writes it after, but for routes_file.c's registries and the
 * current routes table, which a SIGHUP replaces whole), the principal a credential resolves to,
 * the request that walks the stages, and the worker that owns it. Every
 * other header adds the functions of one module on top of these.
 *
 * A request walks these stages (request.c picks each next one):
 *
 *   intake.c    (before the stages) request id, path check, local routes
 *   route.c     GW_STAGE_ROUTE    the most specific route (host, prefix, method)
 *   extract.c   GW_STAGE_EXTRACT  find the credential the route accepts and
 *                                 reject bad shapes and signatures, no I/O
 *   request.c   GW_STAGE_L1       the in-process cache (l1cache.c), shared
 *                                 by all workers
 *   l2redis.c   GW_STAGE_L2       Redis, written by authsvc
 *   pgstore.c   GW_STAGE_PG       PostgreSQL, one query per credential
 *                                 however many wait for it (flight.c), on
 *                                 the worker's pool (pgpool.c)
 *   verify.c    GW_STAGE_VERIFY   JWTs instead of L2/PG: signature against
 *                                 the issuer's JWKS (jwks.c), claims
 *   decide.c    GW_STAGE_DECIDE   expiry, enabled, permissions, revoked
 *                                 sessions -> verdict
 *   mint.c      GW_STAGE_MINT     a JWT for the upstream, on routes that ask
 *                                 (signed with signer.c's key)
 *   limit.c     GW_STAGE_LIMIT    API-key rate limit and quota (Redis);
 *                                 usage.c writes the counts back
 *   proxy.c     GW_STAGE_ANSWER   forward upstream (upstream.c's pools and
 *                                 targets, resolve.c's addresses) with the
 *                                 identity (identity.c), stream the answer
 *                                 back; forward.c answers GET /_auth
 *
 * Around them: front.c is the HTTP/1.1 front (accept, read, parse with
 * lib/http.c, write answers), over TLS with tls_front.c, and h2_front.c
 * makes each HTTP/2 stream a request on such a connection; worker.c owns the threads, listeners and the
 * start and stop order; revocation.c listens on Redis pub/sub and drops
 * revoked entries from L1 for every worker at once; metrics.c counts.
 *
 * Threads: GATEWAY_WORKERS event loops, each with its own listener
 * (SO_REUSEPORT), Redis connection, PostgreSQL pool, upstream pools and
 * resolver; the revocation, JWKS and usage threads. Only L1, the in-flight
 * table, the key sets, the counters and the routes' target state
 * (round-robin counters, failed-until times, atomics) are shared.
 */
#ifndef GW_TYPES_H
#define GW_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include "../lib/util.h"
#include "../lib/ba_secrets.h"
#include "../lib/crypto.h"
#include "../lib/redis.h"
#include "../lib/url.h"

struct event_base;
struct event;
struct evdns_base;
struct gw_streams;
struct ssl_ctx_st;          /* OpenSSL's SSL_CTX, for https:// upstreams (upstream.c) */
struct gw_worker;
struct gw_request;
struct gw_client;
struct gw_h2_stream;
struct pc_http_head;
struct pc_ra;

/* ---- configuration (config.c) ---- */

enum gw_cred_kind {
    GW_CRED_NONE = 0,
    GW_CRED_SESSION,
    GW_CRED_API_KEY,
    GW_CRED_JWT,
    GW_CRED_KIND_COUNT
};

#define GW_ACCEPT(kind) (1u << (kind))
#define GW_TARGETS_MAX 16       /* upstream targets of one route */
#define GW_UPSTREAMS_MAX 1024   /* distinct upstreams over the process's life (reloads add) */
#define GW_ISSUERS_MAX 64       /* distinct JWT issuers over the process's life */
#define GW_ROUTE_SLOTS_MAX 1024 /* distinct route prefixes the metrics count by */

struct gw_upstream {
    char *url;              /* as configured */
    char host[256];         /* connect host */
    int port;               /* connect port */
    char *base_path;        /* path prefix added upstream ("" or "/x") */
    char host_header[300];  /* Host sent upstream */
    unsigned index;         /* position in gw_cfg.upstreams (never moves: reloads append) */
    char *ca_file;          /* https: the route's ca_file, else UPSTREAM_CA_FILE; NULL: the
                             * system store (one upstream per URL and CA file) */
    struct ssl_ctx_st *tls; /* https: the context for ca_file (gw_cfg.tls_ctxs owns it);
                             * NULL: plain http */
    bool host_is_ip;        /* https to an address: verified against the certificate's IP
                             * names, no SNI */
    bool numeric;           /* host is an IP address: addr, never resolved; otherwise a
                             * name each worker resolves (resolve.c) */
    struct sockaddr_storage addr;   /* numeric: where to connect */
    socklen_t addrlen;
    _Atomic int64_t down_until_us;  /* passive health (upstream.c): a connect to it failed;
                                     * routes skip it until then (monotonic; all workers) */
};

/** One TLS client context per distinct CA configuration (upstream.c
 * gw_tls_ctx_new), made at start, shared by every worker. */
struct gw_tls_ctx {
    char *ca_file;          /* NULL: the system store */
    struct ssl_ctx_st *ctx;
};

struct gw_perm {
    char *resource;         /* e.g. "files" */
    char **actions;         /* every one must be granted */
    size_t nactions;
};

enum gw_upstream_jwt {
    GW_UPJWT_NONE = 0,
    GW_UPJWT_AUTHORIZATION,     /* Authorization: Bearer <jwt> */
    GW_UPJWT_HEADER,            /* X-Auth-JWT: <jwt> */
};

/** An issuer whose JWTs the gateway accepts (routes file "jwt_issuers", or
 * the default: our authsvc). */
struct gw_issuer {
    char *issuer;           /* iss must equal it */
    char *jwks_uri;         /* NULL: discovered from issuer + /.well-known/openid-configuration */
    char **audiences;       /* aud must hold one of them */
    size_t naudiences;
    struct gw_iss_state *st;    /* jwks.c: keys, fetch state, waiters */
    unsigned index;         /* position in gw_cfg.issuers (never moves: reloads append) */
};

/** One header rule of a route's request_headers or response_headers: a
 * header of this name (any case) is dropped, and with a value one line
 * "name: value" is added in its place. */
struct gw_hdr_rule {
    char *name;             /* as configured */
    size_t nlen;
    char *value;            /* set: the value; NULL: remove */
};

/** A route's request_headers or response_headers; n == 0: none (the
 * proxy then does no work for them). */
struct gw_hdr_rules {
    struct gw_hdr_rule *r;  /* "set" ones first, then "remove" ones */
    size_t n;
};

/** A route's "cors" (routes_file.c parses it, cors.c applies it). */
struct gw_cors {
    char **origins;         /* serialized origins ("https://app.example.com[:port]") */
    size_t norigins;
    bool any_origin;        /* ["*"]: every origin (never with credentials) */
    char **headers;         /* request headers a preflight may ask for */
    size_t nheaders;
    char *methods_s;        /* "GET, POST", as Access-Control-Allow-Methods says */
    char *headers_s;        /* "Authorization, Content-Type" ("" when none) */
    char *expose_s;         /* Access-Control-Expose-Headers, or NULL */
    char **methods;
    size_t nmethods;
    bool credentials;       /* Access-Control-Allow-Credentials: true */
    int max_age;            /* Access-Control-Max-Age seconds; -1: not sent */
};

/** A route's "allow" rules (decide.c): the caller's verified email must
 * be in one of the domains or be one of the emails. Lower case. */
struct gw_allow {
    char **domains;         /* "example.com": the part after the '@', exactly */
    size_t ndomains;
    char **emails;          /* "ops@example.com" */
    size_t nemails;
};

struct gw_route {
    char *prefix;           /* as configured, e.g. "/opencode/:apiKey/" */
    unsigned slot;          /* metrics.c: its prefix's counters (gw_cfg.route_slots) */
    char *match;            /* the part before ":apiKey" (the whole prefix otherwise) */
    char *after_key;        /* the part after ":apiKey" ("/sub/" of "/v/:apiKey/sub/"), or NULL */
    bool key_in_path;       /* prefix holds an :apiKey segment */
    unsigned accept;        /* GW_ACCEPT(...) bits; 0 with allow_anonymous for "none" */
    bool anonymous;         /* "none": no credential needed */
    struct gw_upstream **targets;   /* "upstream": 1 to GW_TARGETS_MAX, round-robin */
    unsigned *target_index;     /* into gw_cfg.upstreams */
    size_t ntargets;
    atomic_uint *rr;            /* the next target to try (heap: every worker turns it) */
    struct gw_perm *perms;  /* required API-key permissions */
    size_t nperms;
    bool forward_cookies;   /* pass the Cookie header (minus our cookies) upstream */
    bool auth_passthrough;  /* "none" routes to authsvc / Better Auth: the Cookie header
                             * whole, Better Auth's cookies included */
    enum gw_upstream_jwt upstream_jwt;  /* hand the upstream a JWT we sign */
    bool strip_prefix;      /* send only what follows the prefix (X-Forwarded-Prefix: the rest) */
    char **hosts;           /* "api.example.com" or ".example.com" (from "*.example.com"),
                             * lower case; none: any host */
    size_t nhosts;
    char **methods;         /* "GET", ...; none: any method */
    size_t nmethods;
    struct gw_hdr_rules req_hdrs;   /* request_headers: on what goes upstream */
    struct gw_hdr_rules resp_hdrs;  /* response_headers: on the answer relayed back */
    bool preserve_host;     /* send the client's Host upstream, not the upstream's */
    int64_t tunnel_idle_ms; /* tunnel_idle_timeout_ms: a tunnel silent both ways is closed */
    int64_t tunnel_lifetime_s;  /* tunnel_max_lifetime_s: 0 = none */
    int64_t hsts_max_age_s;     /* "hsts_max_age_s": Strict-Transport-Security on answers
                                 * sent over TLS (0: none) */
    bool websocket;         /* "websocket": upgrade requests are tunnelled (default true) */
    int64_t timeout_ms;     /* connect (TLS handshake included) and between-reads timeout;
                             * 0: UPSTREAM_TIMEOUT_SECONDS */
    char *signin_url;       /* on_unauthenticated "redirect": where a browser without a
                             * valid credential goes (signin.c); NULL: 401 for all */
    char *return_to_param;  /* the sign-in URL's query parameter for the way back */
    struct gw_cors *cors;   /* "cors", or NULL: no CORS headers, preflights go to auth */
    struct gw_allow *allow; /* "allow" (sessions and JWTs), or NULL: every principal */
    bool origin_check;      /* "origin_check" (default true): a cookie-authenticated
                             * POST, PUT, PATCH or DELETE needs a trusted Origin (origin.c) */
    struct pc_origin_list trusted;  /* "trusted_origins": this route's own, beside
                                     * TRUSTED_ORIGINS */
};

/** Which forward-auth proxy the gateway answers /_auth for (route.c). */
enum gw_fa_proxy {
    GW_FA_NGINX = 0,    /* auth_request: X-Original-URI, -Method, -Host */
    GW_FA_TRAEFIK,      /* ForwardAuth: X-Forwarded-Uri, -Method, -Host */
    GW_FA_ENVOY,        /* ext_authz HTTP, path_prefix /_auth: the request itself */
};

/** The identity headers the gateway adds (identity.c), by what each
 * carries. IDENTITY_HEADER_NAMES may rename or drop each (config.c);
 * gw_idh_default holds the names they have unless renamed. */
enum gw_idh {
    GW_IDH_USER_ID,     /* X-User-Id */
    GW_IDH_EMAIL,       /* X-User-Email */
    GW_IDH_METHOD,      /* X-Auth-Method: session, jwt or api_key */
    GW_IDH_SESSION_ID,  /* X-Session-Id */
    GW_IDH_API_KEY_ID,  /* X-Api-Key-Id */
    GW_IDH_ISSUER,      /* X-Auth-Issuer (JWTs) */
    GW_IDH_JWT,         /* X-Auth-JWT (upstream_jwt: "header") */
    GW_IDH_AR_USER,     /* X-Auth-Request-User, oauth2-proxy's name: the user id */
    GW_IDH_AR_EMAIL,    /* X-Auth-Request-Email, oauth2-proxy's name */
    GW_IDH_COUNT
};
#define GW_HDR_NAME_MAX 64

/** What the routes file makes (routes_file.c): the routes and the issuers
 * they accept, validated whole, replaced whole on SIGHUP. A request holds
 * the table it started on (r->table) until it ends, so a reload never
 * changes a request's route under it; a table is freed once no worker
 * hands it out and no request holds it (routes_file.c's reference count:
 * one per worker, each worker counting its own requests). Upstreams and
 * issuers are not the table's: they live in gw_cfg's append-only
 * registries, shared by every table, so that their connection pools,
 * name lookups, health and key sets carry over a reload. */
struct gw_table {
    uint64_t gen;               /* 1 for the first table, then one more per reload */
    struct gw_route *routes;    /* sorted by match length, longest first */
    size_t nroutes;
    bool routes_select;         /* some route lists hosts or methods: score every match */
    bool jwt_used;              /* some route accepts JWTs */
    bool mint_used;             /* some route has upstream_jwt */
    struct gw_issuer **issuers; /* the JWT issuers this table accepts (in gw_cfg.issuers) */
    size_t nissuers;
    size_t nupstreams;          /* gw_cfg.upstreams[0..n) exist for it */
    struct gw_table *_Atomic newer; /* the table published after it (workers walk it) */
    struct gw_table *next_live; /* routes_file.c's list of tables not yet freed */
    _Atomic long holders;       /* the main thread's hold while current, and one per
                                 * worker until it has let go (routes_file.c) */
    struct gw_table_use {       /* per worker: its requests on this table (only that
                                 * worker writes it) */
        int64_t n;
        bool left;              /* the worker hands out a newer table */
        char pad[48];
    } *use;
    size_t nuse;
};

/** The name each identity header is sent under; "" is not sent. */
struct gw_idnames {
    char name[GW_IDH_COUNT][GW_HDR_NAME_MAX + 1];
    unsigned char len[GW_IDH_COUNT]; /* strlen of each: compared per client header */
    bool renamed;               /* some name is not its default */
};

struct gw_config {
    char *listen;
    char *admin_listen;         /* GATEWAY_ADMIN_LISTEN ("off": none) */
    char *health_prefix;        /* GATEWAY_HEALTH_PREFIX: "" or "/x" before /health, ... */
    int64_t workers;
    char *routes_file;
    char *upstream_url;
    char *database_url;
    char *read_urls_s;              /* DATABASE_READ_URL, as given */
    char **read_urls;               /* ... split at spaces */
    size_t nread_urls;
    int64_t read_max_lag_ms;        /* READ_MAX_LAG_MS */
    char *redis_url;
    char *redis_sentinels;          /* REDIS_SENTINELS ("": none) */
    char *redis_sentinel_master;    /* REDIS_SENTINEL_MASTER */
    char *redis_sentinel_password;  /* REDIS_SENTINEL_PASSWORD */
    char *redis_prefix;
    char *revocation_channel;
    char *secret;               /* the HMAC secret (BETTER_AUTH_SECRETS' current one) */
    char *secrets_s;            /* BETTER_AUTH_SECRETS, as given */
    struct pc_secrets secrets;  /* ... parsed (lib/ba_secrets.h): opens the jwks keys */
    char *base_url;
    char *log_path;
    char *log_level;
    int64_t l1_max;             /* L1_MAX_ENTRIES; 0: L1 off */
    int64_t l1_ttl;             /* seconds */
    int64_t l1_negative_ttl;    /* seconds */
    int64_t l1_degraded_ttl;    /* seconds, while the revocation feed is down */
    int64_t l2_ttl;             /* seconds an API key stays in Redis */
    bool l2_enabled;            /* L2_ENABLED: read and fill credentials in Redis */
    int64_t pg_pool;
    int64_t pg_batch_max;       /* lookups one PostgreSQL round trip may carry */
    int64_t pg_timeout_ms;
    int64_t redis_timeout_ms;
    int64_t redis_deadline_ms;  /* GATEWAY_REDIS_DEADLINE_MS: a hung Redis */
    int64_t upstream_pool;
    int64_t fail_timeout_ms;    /* UPSTREAM_FAIL_TIMEOUT_MS: a target that failed is skipped */
    char *resolver;             /* GATEWAY_RESOLVER: name servers ("": /etc/resolv.conf) */
    int64_t read_timeout;       /* seconds: connect, and between reads */
    char *upstream_ca_file;     /* UPSTREAM_CA_FILE: https upstreams' CA bundle ("": system) */
    char *tls_cert;             /* GATEWAY_TLS_CERT: the listener's PEM chain ("": plain HTTP) */
    char *tls_key;              /* GATEWAY_TLS_KEY */
    int64_t tls_ticket_rotate_s;    /* GATEWAY_TLS_TICKET_ROTATE_SECONDS */
    bool http2;                     /* GATEWAY_HTTP2: ALPN offers h2 over TLS */
    int64_t h2_max_streams;         /* GATEWAY_HTTP2_MAX_STREAMS */
    bool tls_ocsp;              /* GATEWAY_TLS_OCSP: staple OCSP responses (ocsp_staple.c) */
    int64_t tls_ocsp_refresh_s; /* GATEWAY_TLS_OCSP_REFRESH_SECONDS: most time between fetches */
    char *http_listen;          /* GATEWAY_HTTP_LISTEN: plain HTTP beside TLS, answering
                                 * 308 to https ("off": none) */
    int64_t max_body;
    int64_t max_headers;
    int64_t expires_in;         /* session life, seconds */
    int64_t update_age;         /* sliding refresh, seconds */
    int64_t pending_max;        /* requests waiting on Redis/PG per worker */
    bool access_log;            /* GATEWAY_ACCESS_LOG */
    char *key_prefixes;         /* API_KEY_PREFIXES, comma list, "" = any */
    char **prefixes;            /* derived: the list */
    size_t nprefixes;
    bool metrics;               /* GATEWAY_METRICS: serve /metrics and /_stats */
    bool bearer_require_sig;    /* BEARER_REQUIRE_SIGNATURE (lib/bearer.h), as authsvc */
    char *fa_proxy;             /* FORWARD_AUTH_PROXY: nginx, traefik or envoy */
    char *fa_uri_header;        /* FORWARD_AUTH_URI_HEADER ("": the proxy's) */
    char *fa_method_header;     /* FORWARD_AUTH_METHOD_HEADER */
    char *fa_host_header;       /* FORWARD_AUTH_HOST_HEADER */
    char *fa_refusal;           /* FORWARD_AUTH_REFUSAL: status or 403 */
    char *identity_names_s;     /* IDENTITY_HEADER_NAMES, as given */
    char *trusted_origins_s;    /* TRUSTED_ORIGINS, as given */
    struct pc_origin_list trusted;  /* ... parsed, with BETTER_AUTH_URL's origin (origin.c) */
    char *trusted_proxies_s;    /* TRUSTED_PROXIES, as given */
    struct pc_cidr *proxies;    /* ... parsed (lib/netaddr.h) */
    size_t nproxies;
    char *jwt_issuer;           /* JWT_ISSUER: default issuer, and iss of minted JWTs */
    char *jwt_jwks_url;         /* JWT_JWKS_URL: the default issuer's JWKS */
    char *jwt_audience;         /* JWT_AUDIENCE */
    int64_t jwt_leeway;         /* JWT_LEEWAY_SECONDS, seconds */
    int64_t jwt_refetch_ms;     /* JWKS_REFETCH_MS: max-age floor, first retry after a failure */
    int64_t jwt_kid_refetch_ms; /* JWKS_KID_REFETCH_MS: least time between the fetches of one
                                   issuer that unknown kids ask for */
    int64_t max_conns;          /* GATEWAY_MAX_CONNS; 0: half the open-file limit */
    int64_t max_conns_per_ip;   /* GATEWAY_MAX_CONNS_PER_IP; 0: no cap */
    int64_t max_tunnels;        /* GATEWAY_MAX_TUNNELS: open tunnels per worker */
    int64_t max_tunnels_per_user;   /* GATEWAY_MAX_TUNNELS_PER_USER; 0: no cap */
    int64_t head_timeout_ms;    /* GATEWAY_HEAD_TIMEOUT_MS: a whole request head, from its first byte */
    int64_t client_idle_s;      /* GATEWAY_CLIENT_IDLE_SECONDS: silence, or a stalled body */

    /* derived */
    char listen_host[256];
    int listen_port;
    char admin_host[256];       /* admin_port 0: no admin listener */
    int admin_port;
    char http_host[256];        /* http_port 0: no plain listener beside TLS */
    int http_port;
    struct pc_redis_addr redis_addr;
    char cookie_session[64];    /* [__Secure-]better-auth.session_token */
    char cookie_dont_remember[64];  /* [__Secure-]better-auth.dont_remember */
    bool secure_cookies;        /* BETTER_AUTH_URL is https://: the Secure attribute */
    /* the registries (main thread appends; each entry is fixed once a
     * table that names it is published) */
    struct gw_upstream **upstreams;     /* GW_UPSTREAMS_MAX slots */
    size_t nupstreams;
    struct gw_tls_ctx *tls_ctxs;    /* one per distinct CA file among https upstreams */
    size_t ntls_ctxs;
    struct gw_issuer **issuers;         /* GW_ISSUERS_MAX slots: every JWT issuer */
    size_t nissuers;
    _Atomic size_t issuers_published;   /* the jwks thread's: issuers[0..n) are in use */
    char **route_slots;                 /* GW_ROUTE_SLOTS_MAX: a prefix per metrics slot */
    _Atomic size_t nroute_slots;
    struct gw_table *_Atomic table;     /* the current table (routes_file.c) */
    _Atomic bool jwt_used;              /* some table has accepted JWTs */
    _Atomic bool mint_used;             /* some table has had upstream_jwt */
    enum gw_fa_proxy fa_mode;   /* from FORWARD_AUTH_PROXY */
    const char *fa_uri_name;    /* the one header each comes from (NULL with envoy: the */
    const char *fa_method_name; /* request line and Host of /_auth/<original path>) */
    const char *fa_host_name;
    bool fa_refuse_403;         /* FORWARD_AUTH_REFUSAL=403: refusals but 401 are 403 */
    struct gw_idnames idh;      /* from IDENTITY_HEADER_NAMES */
};

extern struct gw_config gw_cfg;

/** Set once shutdown starts (worker.c, defined in request.c), the loops
 * stopped: stages stop, requests are dropped, pools stop reconnecting. */
extern volatile int gw_stopping;

/* ---- the principal: what a credential resolves to ---- */

/** Fixed-size so that L1, the in-flight table and requests copy it without
 * allocating. */
struct gw_principal {
    enum gw_cred_kind kind;     /* SESSION or API_KEY */
    bool found;                 /* false: a negative entry (unknown credential) */
    bool enabled;               /* API key enabled */
    int64_t expires_at;         /* ms since epoch; 0 = never */
    int64_t updated_at;         /* ms; sessions: last refresh */
    struct gw_key_limits {      /* API keys: usage rules (better-auth-compat §4.2) */
        int64_t remaining;      /* requests left, -1 = unlimited */
        int64_t refill_interval;/* ms, 0 = none */
        int64_t refill_amount;  /* -1 = none */
        int64_t last_refill_at; /* ms, 0 = never (then createdAt counts) */
        int64_t created_at;     /* ms */
        bool rl_enabled;        /* rateLimitEnabled */
        int64_t rl_window;      /* ms, 0 = no limit */
        int64_t rl_max;         /* 0 = no limit */
    } lim;
    char user_id[64];
    char email[321];
    bool email_verified;        /* sessions: user.emailVerified; JWTs: the
                                 * emailVerified or email_verified claim */
    char cred_id[64];           /* session id or API key id */
    char permissions[1024];     /* API key permissions JSON, "" if none */
    uint16_t issuer;            /* JWTs: index in gw_cfg.issuers */
    uint64_t perm_gen;          /* perm_bits is for the table of this gen (0: not filled;
                                 * L1 fills it when it stores a key) */
    uint64_t perm_bits;         /* bit i: routes[i]'s permissions are granted (i < 64) */
};

/* ---- what a lookup found (L1, L2, PG, VERIFY) ---- */

enum gw_lookup {
    GW_LOOKUP_FOUND = 0,        /* principal filled */
    GW_LOOKUP_UNKNOWN,          /* no such credential */
    GW_LOOKUP_UNAVAILABLE,      /* store down: answer 503 */
    GW_LOOKUP_MISS,             /* not in this layer (yet): ask the next one */
};

/* What the rate limit and quota (limit.c) recorded for the request. */
enum gw_limit {
    GW_LIMIT_NONE = 0,          /* not asked yet */
    GW_LIMIT_PASS,              /* go on */
    GW_LIMIT_UNCOUNTED,         /* Redis could not count a key with a quota: 503 */
    GW_LIMIT_RATE,              /* rate limited: 429, r->retry_after set */
    GW_LIMIT_SPENT,             /* quota spent: 429 */
};

/* ---- the request (request.c drives it) ---- */

enum gw_stage {
    GW_STAGE_ROUTE = 0,
    GW_STAGE_EXTRACT,
    GW_STAGE_L1,
    GW_STAGE_L2,
    GW_STAGE_PG,
    GW_STAGE_VERIFY,
    GW_STAGE_DECIDE,
    GW_STAGE_MINT,
    GW_STAGE_LIMIT,
    GW_STAGE_ANSWER,        /* proxy.c, or forward.c for GET /_auth */
    GW_STAGE_COUNT
};

enum gw_cred_src {
    GW_SRC_NONE = 0,
    GW_SRC_PATH,        /* /prefix/:apiKey/... */
    GW_SRC_API_HEADER,  /* x-api-key */
    GW_SRC_BEARER,      /* Authorization: Bearer */
    GW_SRC_COOKIE,      /* the Better Auth session cookie */
};

/* Room for the largest JWT we accept (PC_JWT_MAX) and one byte more, so
 * that a larger one is seen and refused as too large. */
#define GW_CRED_MAX (8192 + 2)
#define GW_CRED_INLINE 256          /* a credential this long or shorter needs no allocation */
#define GW_LOG_UA_MAX 256           /* bytes of a User-Agent the access log keeps */

/** One client request, owned by its worker's loop (request.h). */
struct gw_request {
    struct gw_worker *w;            /* the worker whose loop owns it */
    struct gw_client *c;            /* the connection it came on (front.c) */
    struct gw_h2_stream *h2s;       /* its HTTP/2 stream on c (h2_front.c), or NULL */
    const struct pc_http_head *head;    /* its parsed head (in c's buffer) */
    const char *method;             /* "GET", ... */
    const char *body;               /* the whole body (de-chunked), in c's buffer */
    size_t body_len;
    bool body_stream;               /* the body is still arriving: read it with
                                     * gw_front_body_peek (body/body_len unused) */
    int64_t body_size;              /* a streamed body's Content-Length, -1 chunked */
    bool head_method;               /* HEAD: the answer has no body */
    bool resp_started;              /* the answer's head has been queued */
    int retry_after;                /* seconds, for a 429 (0: none) */
    enum gw_stage stage;            /* the stage running (written by request.c only) */
    bool parked;                    /* counted in w->parked (gw_park .. gw_resume) */
    enum gw_limit limit;            /* limit.c's outcome */
    bool forward_auth;              /* GET /_auth: answer instead of proxying */
    bool admin;                     /* it came on the admin listener */
    bool tls;                       /* it came over TLS (tls_front.c) */
    bool to_https;                  /* it came on GATEWAY_HTTP_LISTEN: 308 to https */
    struct gw_table *table;         /* the routes it is served by (held until it ends) */
    const struct gw_route *route;   /* matched route (in table) */
    char *path;                     /* path used for routing (no query) */
    char *query;                    /* raw query or NULL */
    char *upstream_path;            /* path sent upstream (key segment removed) */
    char *forwarded_prefix;         /* strip_prefix: what was removed (X-Forwarded-Prefix) */
    enum gw_cred_kind kind;         /* what the credential is */
    enum gw_cred_src src;           /* where it was found */
    size_t cred_len;                /* length of cred */
    unsigned char hash[32];         /* SHA-256(cred): cache and revocation key */
    char hash_b64[PC_HASH_B64_LEN + 1];
    enum gw_lookup lookup;          /* outcome of L1/L2/PG/VERIFY */
    uint64_t l1_epoch;              /* request.c: gw_l1_epoch() before L1 was asked; what
                                     * the lookup finds is cached only if no revocation
                                     * came since */
    char request_id[72];            /* X-Request-Id (client's if well-formed) */
    char client_ip[64];             /* peer address */
    int64_t start_us;               /* monotonic arrival */
    int status;                     /* answered status (for the log) */
    const char *outcome;            /* short verdict for the log */
    struct gw_request *next_wake;   /* worker inbox link */
    struct gw_proxy *proxy;         /* proxy.c state while forwarding */
    bool jwks_waited;               /* verify.c: already waited for a JWKS fetch */
    char *upstream_jwt;             /* mint.c: the JWT handed upstream (heap) */
    char fa_method[17];             /* forward auth: the original method ("": unknown) */
    bool upgrade;                   /* front.c: a WebSocket handshake (GET, Connection:
                                     * Upgrade, Upgrade: websocket) */
    bool tunnel;                    /* streams.c: it became a tunnel (for the log) */
    const char *closed_by;          /* streams.c: a tunnel's or stream's end ("client", ...) */
    uint64_t bytes_up, bytes_down;  /* a tunnel's bytes client -> upstream, and back */
    char fa_host[256];              /* forward auth: the original host ("": unknown) */
    char *fa_uri;                   /* forward auth: the original path and query (heap) */
    bool refresh_cookie;            /* decide.c: the answer re-sends the session cookie
                                     * (a sliding refresh of a cookie session) */
    /* for the access log */
    uint64_t bytes_in;              /* front.c: read from the client: head, body, tunnel */
    uint64_t bytes_out;             /* front.c: queued for the client: head, body, tunnel */
    size_t out_mark;                /* front.c: where the answer's head began in the output */
    const char *upstream_url;       /* proxy.c: the target last tried (config's string) */
    char *user_agent;               /* front.c: a tunnel's User-Agent, kept past its head
                                     * (heap; NULL: read the head) */
    /* Large members last: gw_request_new zeroes only what comes before. */
    struct gw_principal p;          /* resolved identity */
    char *cred;                     /* token or key (never logged): cred_inline, or the
                                     * heap past GW_CRED_INLINE (gw_cred_set); shorter
                                     * than GW_CRED_MAX */
    char cred_inline[GW_CRED_INLINE];
};

/* ---- workers (worker.c) ---- */

struct gw_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    int listen_fd;                  /* -1 once draining */
    int admin_fd;                   /* worker 0: the admin listener; else, or none, -1 */
    int http_fd;                    /* GATEWAY_HTTP_LISTEN (every worker), or -1 */
    struct event *http_ev;          /* front.c */
    struct event *admin_ev;         /* front.c */
    struct event *accept_ev;        /* front.c */
    struct event *reap_ev;          /* frees closed connections */
    struct gw_client *clients;      /* open connections */
    struct gw_client *dead;         /* closed, not yet freed */
    struct gw_client *tunnels;      /* front.c: tunnel connections out of the tick's walk */
    size_t nclients;
    size_t active;                  /* requests not yet finished */
    int64_t drain_deadline;         /* monotonic us */
    struct pc_ra *redis;            /* worker.c: its Redis connection (lib/redis_async.h) */
    struct gw_pg *pg;               /* pgpool.c: the primary */
    struct gw_pg *pg_read;          /* pgpool.c: the replicas (NULL: none) */
    struct gw_uppool *pools;        /* upstream.c: GW_UPSTREAMS_MAX slots, one per upstream */
    size_t npools;                  /* pools[0..n) are set up (a reload's table may add) */
    struct gw_table *table;         /* routes_file.c: the table w hands to new requests */
    struct evdns_base *dns;         /* resolve.c: upstream names (NULL: all are addresses) */
    struct gw_streams *streams;     /* streams.c: open tunnels and streams by credential */
    pthread_mutex_t inbox_mu;       /* guards inbox */
    struct gw_request *inbox;       /* request.c: requests woken from other threads */
    struct event *inbox_ev;
    struct event *tick_ev;          /* worker.c: every 100 ms */
    struct event *reload_ev;        /* worker.c: the main thread published a table */
    size_t parked;                  /* request.c: requests parked (gw_park), one writer: the loop */
    struct gw_wmetrics *m;          /* metrics.c: this worker's counters */
    struct gw_mintcache *mint;      /* mint.c: upstream JWTs by credential */
    int reserve_fd;                 /* front.c: spare descriptor for answering at EMFILE */
    size_t noverflow;               /* connections over a cap, answered and closed */
    bool accept_paused;             /* accept_ev deleted until accept_resume_us */
    int64_t accept_resume_us;
};

#endif
