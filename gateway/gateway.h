/* Portcullis - MIT licence. See LICENSE.
 *
 * gateway.h: the gateway's shared types.
 *
 * A request walks these stages, one file each, in this order:
 *
 *   route.c     GW_STAGE_ROUTE    longest-prefix match over the routes table
 *   extract.c   GW_STAGE_EXTRACT  find the credential the route accepts and
 *                                 reject bad shapes and signatures, no I/O
 *   l1cache.c   GW_STAGE_L1       in-process cache shared by all workers
 *   l2redis.c   GW_STAGE_L2       Redis (async hiredis), written by authsvc
 *   pgstore.c   GW_STAGE_PG       PostgreSQL (async libpq), one query per
 *                                 credential however many wait for it
 *   verify.c    GW_STAGE_VERIFY   JWTs instead of L2/PG: signature against
 *                                 the issuer's JWKS (jwks.c), claims
 *   decide.c    GW_STAGE_DECIDE   expiry, enabled, permissions, revoked
 *                                 sessions -> verdict
 *   limit.c     GW_STAGE_LIMIT    API-key rate limit and quota (Redis)
 *   mint.c                        a JWT for the upstream, on routes that ask
 *   proxy.c     GW_STAGE_PROXY    forward upstream with the identity, stream
 *                                 the answer back (forward.c answers /_auth)
 *
 * Before them, client.c is the HTTP/1.1 front (accept, read, parse with
 * lib/http.c, write answers) and server.c takes a parsed request in
 * (gw_intake: request id, local routes). request.c drives the stages
 * (gw_advance); server.c also owns the worker threads; revocation.c listens
 * on Redis pub/sub and drops revoked entries from L1 for every worker at
 * once.
 *
 * Threads: GATEWAY_WORKERS event loops, each with its own listener
 * (SO_REUSEPORT), Redis connection, PostgreSQL pool and upstream pools; one
 * revocation thread. Only L1 and the in-flight table are shared (locked).
 */
#ifndef GW_GATEWAY_H
#define GW_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include "../lib/util.h"
#include "../lib/crypto.h"
#include "../lib/redis.h"

struct event_base;
struct event;
struct gw_worker;
struct gw_request;
struct gw_client;
struct pc_http_head;
struct pc_buf;

/* ---- configuration (config.c) ---- */

enum gw_cred_kind {
    GW_CRED_NONE = 0,
    GW_CRED_SESSION,
    GW_CRED_API_KEY,
    GW_CRED_JWT,
    GW_CRED_KIND_COUNT
};

#define GW_ACCEPT(kind) (1u << (kind))

struct gw_upstream {
    char *url;              /* as configured */
    char host[256];         /* connect host */
    int port;               /* connect port */
    char *base_path;        /* path prefix added upstream ("" or "/x") */
    char host_header[300];  /* Host sent upstream */
    unsigned index;         /* position in gw_cfg.upstreams */
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
};

struct gw_route {
    char *prefix;           /* as configured, e.g. "/opencode/:apiKey/" */
    char *match;            /* the part before ":apiKey" (the whole prefix otherwise) */
    bool key_in_path;       /* prefix holds an :apiKey segment */
    unsigned accept;        /* GW_ACCEPT(...) bits; 0 with allow_anonymous for "none" */
    bool anonymous;         /* "none": no credential needed */
    struct gw_upstream *upstream;
    unsigned upstream_index;    /* into gw_cfg.upstreams (stable while loading) */
    struct gw_perm *perms;  /* required API-key permissions */
    size_t nperms;
    bool forward_cookies;   /* pass the Cookie header (minus our cookies) upstream */
    enum gw_upstream_jwt upstream_jwt;  /* hand the upstream a JWT we sign */
};

/** Which forward-auth proxy the gateway answers /_auth for (route.c). */
enum gw_fa_proxy {
    GW_FA_NGINX = 0,    /* auth_request: X-Original-URI, -Method, -Host */
    GW_FA_TRAEFIK,      /* ForwardAuth: X-Forwarded-Uri, -Method, -Host */
    GW_FA_ENVOY,        /* ext_authz HTTP, path_prefix /_auth: the request itself */
};

struct gw_config {
    char *listen;
    int64_t workers;
    char *routes_file;
    char *upstream_url;
    char *database_url;
    char *redis_url;
    char *redis_prefix;
    char *revocation_channel;
    char *secret;
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
    int64_t pg_timeout_ms;
    int64_t redis_timeout_ms;
    int64_t redis_deadline_ms;  /* GATEWAY_REDIS_DEADLINE_MS: a hung Redis */
    int64_t upstream_pool;
    int64_t read_timeout;       /* seconds: connect, and between reads */
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
    char *jwt_issuer;           /* JWT_ISSUER: default issuer, and iss of minted JWTs */
    char *jwt_jwks_url;         /* JWT_JWKS_URL: the default issuer's JWKS */
    char *jwt_audience;         /* JWT_AUDIENCE */
    int64_t jwt_leeway;         /* JWT_LEEWAY, seconds */
    int64_t jwt_refetch_ms;     /* JWKS_REFETCH_MS: least time between fetches of one issuer */
    int64_t max_conns;          /* GATEWAY_MAX_CONNS; 0: half the open-file limit */
    int64_t max_conns_per_ip;   /* GATEWAY_MAX_CONNS_PER_IP; 0: no cap */
    int64_t head_timeout_ms;    /* GATEWAY_HEAD_TIMEOUT_MS: a whole request head, from its first byte */

    /* derived */
    char listen_host[256];
    int listen_port;
    struct pc_redis_addr redis_addr;
    char cookie_session[64];
    struct gw_upstream *upstreams;
    size_t nupstreams;
    struct gw_route *routes;    /* sorted by match length, longest first */
    size_t nroutes;
    struct gw_issuer *issuers;  /* JWT issuers */
    size_t nissuers;
    bool jwt_used;              /* some route accepts JWTs */
    bool mint_used;             /* some route has upstream_jwt */
    enum gw_fa_proxy fa_mode;   /* from FORWARD_AUTH_PROXY */
    const char *fa_uri_name;    /* the one header each comes from (NULL with envoy: the */
    const char *fa_method_name; /* request line and Host of /_auth/<original path>) */
    const char *fa_host_name;
};

extern struct gw_config gw_cfg;

PC_MUSTCHECK int gw_config_load(void);
void gw_config_help(void);
void gw_config_free(void);

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
    char cred_id[64];           /* session id or API key id */
    char permissions[1024];     /* API key permissions JSON, "" if none */
    uint16_t issuer;            /* JWTs: index in gw_cfg.issuers */
    bool perm_cached;           /* perm_bits is filled (set when L1 stores it) */
    uint64_t perm_bits;         /* bit i: routes[i]'s permissions are granted (i < 64) */
};

/* ---- L1 (l1cache.c) ---- */

void gw_l1_init(size_t max_entries);
void gw_l1_free(void);
/** Copies the entry for hash into *p if present and fresh. */
bool gw_l1_get(const unsigned char hash[32], struct gw_principal *p);
/** Stores p for hash for ttl_ms (capped while the revocation feed is down). */
void gw_l1_put(const unsigned char hash[32], const struct gw_principal *p, int64_t ttl_ms);
/** Drops hash from L1. */
void gw_l1_delete(const unsigned char hash[32]);
/** Drops everything. */
void gw_l1_flush(void);
size_t gw_l1_count(void);
/** Set by the revocation thread: while true, new entries live at most
 * l1_degraded_ttl and older ones are treated as expired past it. */
void gw_l1_set_degraded(bool degraded);

/* ---- in-flight lookups shared by all workers (pgstore.c) ---- */

enum gw_lookup {
    GW_LOOKUP_FOUND = 0,        /* principal filled */
    GW_LOOKUP_UNKNOWN,          /* no such credential */
    GW_LOOKUP_UNAVAILABLE,      /* store down: answer 503 */
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
    GW_STAGE_LIMIT,
    GW_STAGE_PROXY,
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

/** One client request, owned by its worker; freed by gw_request_finish. */
struct gw_request {
    struct gw_worker *w;            /* the worker whose loop owns it */
    struct gw_client *c;            /* the connection it came on (client.c) */
    const struct pc_http_head *head;    /* its parsed head (in c's buffer) */
    const char *method;             /* "GET", ... */
    const char *body;               /* the whole body (de-chunked), in c's buffer */
    size_t body_len;
    bool head_method;               /* HEAD: the answer has no body */
    bool resp_started;              /* the answer's head has been queued */
    int retry_after;                /* seconds, for a 429 (0: none) */
    enum gw_stage stage;            /* where gw_advance resumes */
    bool forward_auth;              /* GET /_auth: answer instead of proxying */
    const struct gw_route *route;   /* matched route */
    char *path;                     /* path used for routing (no query) */
    char *query;                    /* raw query or NULL */
    char *upstream_path;            /* path sent upstream (key segment removed) */
    enum gw_cred_kind kind;         /* what the credential is */
    enum gw_cred_src src;           /* where it was found */
    size_t cred_len;                /* length of cred */
    unsigned char hash[32];         /* SHA-256(cred): cache and revocation key */
    char hash_b64[PC_HASH_B64_LEN + 1];
    enum gw_lookup lookup;          /* outcome of L2/PG */
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
    char fa_host[256];              /* forward auth: the original host ("": unknown) */
    /* Large members last: gw_request_new zeroes only what comes before. */
    struct gw_principal p;          /* resolved identity */
    char cred[GW_CRED_MAX];         /* token or key (never logged) */
};

/** Runs the request's stages from r->stage until one goes async or it is
 * answered. */
void gw_advance(struct gw_request *r);
/** Set once shutdown starts: stages stop and requests are dropped. */
extern volatile int gw_stopping;
/** Answers {"message","code","requestId"} with status and frees r. */
void gw_fail(struct gw_request *r, int status, const char *code, const char *msg);
/** Frees r (after its reply has been sent). */
void gw_request_finish(struct gw_request *r);
/** Hands r to its own worker's loop (from any thread). */
void gw_wake(struct gw_request *r);

/** A refusal decided but not yet answered: what the pure halves of the
 * stages below (gw_route_find, gw_extract_cred, gw_verdict_of) hand their
 * stage, which answers it with gw_fail (and the unit tests read). */
struct gw_refusal {
    int status;
    const char *code;
    const char *msg;        /* NULL for a JWT code: gw_jwt_refuse words it */
    bool expired;           /* decide: the principal has expired (drop it from L1) */
};

/* stage entry points, in flow order */
bool gw_route_match(struct gw_request *r);          /* false: answered 404 */
/** Route stage without its answer (no forward auth, no I/O; never ends r):
 * the route r->path falls under, also set in r->route with r->upstream_path
 * (heap) and an :apiKey segment in r->cred/r->src; NULL: no route (404). */
const struct gw_route *gw_route_find(struct gw_request *r);
enum gw_extract_result { GW_EXTRACT_OK = 0, GW_EXTRACT_ANONYMOUS, GW_EXTRACT_ANSWERED };
enum gw_extract_result gw_extract(struct gw_request *r);
/** Extract stage without its answer (no I/O; never ends r): fills r's
 * kind, src, cred and hash; GW_EXTRACT_ANSWERED means refused, *why says
 * how, and nothing has been sent yet (gw_extract sends it). */
enum gw_extract_result gw_extract_cred(struct gw_request *r, struct gw_refusal *why);
/** Starts a Redis lookup. Returns true when gw_advance will be called back;
 * false when Redis cannot be used now (go straight to PostgreSQL). */
bool gw_l2_lookup(struct gw_request *r);
/** Writes a resolved principal to Redis for the other replicas (async). */
void gw_l2_store(struct gw_worker *w, const char *hash_b64, const struct gw_principal *p,
                 int64_t ttl_ms);
/** Joins or starts the PostgreSQL lookup of r's credential; r is woken
 * with r->lookup set. */
void gw_pg_lookup(struct gw_request *r);
/** Fire-and-forget sliding refresh of a session (at most once per
 * updateAge: the caller checks). */
void gw_pg_refresh_session(struct gw_worker *w, const char *session_id, int64_t new_exp_ms,
                           int64_t now_ms);
enum gw_verdict { GW_ALLOW = 0, GW_DENY, GW_UNAVAILABLE };
/** Which of the first 64 routes' required permissions perms_json grants
 * (one parse, when a key enters L1, instead of one per request). */
uint64_t gw_perm_bits(const char *perms_json);
/** Applies the policy; on anything but ALLOW the request has been answered. */
enum gw_verdict gw_decide(struct gw_request *r);
/** The policy alone (any thread; never ends r, writes nothing, reads the
 * revoked-sid set): the verdict on r's kind, lookup and principal at now_ms;
 * on anything but ALLOW *why is the answer gw_decide gives. */
enum gw_verdict gw_verdict_of(const struct gw_request *r, int64_t now_ms, struct gw_refusal *why);
/** Stage 7b (limit.c): API-key quota and rate limit in Redis. Returns true
 * when it went async (gw_advance is called back), false to go on at once;
 * a refusal has been answered when r->status is set. */
bool gw_limit_check(struct gw_request *r);
/** Runs a Redis command on the worker's connection with a callback.
 * Returns false when Redis is not connected. */
struct redisAsyncContext;
typedef void gw_redis_cb(struct redisAsyncContext *ac, void *reply, void *priv);
bool gw_l2_command(struct gw_worker *w, gw_redis_cb *cb, void *priv, int argc, const char **argv,
                   const size_t *lens);
/** Usage write-back (usage.c): remembers a key whose counters changed. */
void gw_usage_touch(const struct gw_request *r);
void gw_usage_start(void);
/** Flushes every pending counter to PostgreSQL and stops. */
void gw_usage_stop(void);
void gw_proxy_start(struct gw_request *r);
/** The client can take more of a streamed answer. */
void gw_proxy_resume(struct gw_request *r);
/** The client has gone: cancel the exchange (from the loop, later). */
void gw_proxy_client_gone(struct gw_request *r);
/** Every 100 ms: upstream connect and read timeouts. */
void gw_proxy_tick(struct gw_worker *w);
/** Appends X-User-Id, X-User-Email, X-Auth-Method and X-Session-Id or
 * X-Api-Key-Id for r's principal (nothing on anonymous routes) as header
 * lines to b. */
void gw_set_identity_headers(struct gw_request *r, struct pc_buf *b);
void gw_forward_auth_reply(struct gw_request *r);
/** Is path the forward-auth endpoint (/_auth; with Envoy also /_auth/...)? */
bool gw_forward_auth_target(const char *path);

/* ---- the HTTP front (client.c) ---- */

/** A parsed request with its body: request id, local routes, then the
 * stages (server.c). */
void gw_intake(struct gw_request *r);
/** Is the path one the router and an upstream read alike (no dot segment,
 * empty segment or encoded separator)? */
bool gw_path_plain(const char *path);
/** Sets r->request_id: the client's X-Request-Id if well-formed, else new. */
void gw_request_id(struct gw_request *r);
/** The request's first header called name (any case), or NULL. */
const char *gw_header(const struct gw_request *r, const char *name);
/** Every header line called name (any case), in order: up to max values
 * into out; returns how many there are (which may be more than max). */
size_t gw_header_all(const struct gw_request *r, const char *name, const char **out, size_t max);
/** Appends "name: value\r\n", dropping control bytes from value. */
void gw_hdr_append(struct pc_buf *b, const char *name, const char *value);
/** Starts the answer with its status line; returns the buffer to append
 * header lines to (gw_hdr_append). reason NULL: the standard one. */
struct pc_buf *gw_resp_begin(struct gw_request *r, int status, const char *reason);
#define GW_LEN_STREAM (-1)  /* body of unknown length follows: chunked (or close for HTTP/1.0) */
#define GW_LEN_OMIT (-2)    /* no body and no framing header (204, 304, HEAD without a length) */
/** Ends the head: Content-Length body_len (>= 0) or as above; own: an
 * answer of ours (adds Date), not a relayed one. */
void gw_resp_end_head(struct gw_request *r, int64_t body_len, bool own);
/** Queues body bytes (framed as a chunk when streaming). */
void gw_resp_body(struct gw_request *r, const void *data, size_t n);
/** Ends a streamed body. */
void gw_resp_end(struct gw_request *r);
/** Writes what is queued. */
void gw_resp_send(struct gw_request *r);
/** A streamed answer that cannot be finished: close the connection. */
void gw_resp_abort(struct gw_request *r);
/** A whole answer of ours: status, Content-Type, X-Request-Id, body. */
void gw_reply(struct gw_request *r, int status, const char *ctype, const char *body, size_t n);
/** Enough queued that a stream should wait (gw_proxy_resume follows). */
bool gw_client_backlog_full(const struct gw_request *r);
/** From gw_request_finish: the connection goes on to its next request. */
void gw_client_request_done(struct gw_request *r);
/** Adds (on) or deletes ev unless *active already says so. */
void gw_watch(struct event *ev, bool *active, bool on);
void gw_clients_start(struct gw_worker *w);
void gw_clients_stop_accepting(struct gw_worker *w);
/** Every 100 ms: idle and lingering connections; when stopping, closes
 * the connections that are between requests. */
void gw_clients_tick(struct gw_worker *w, bool stopping);
void gw_clients_free(struct gw_worker *w);
/** Sets the connection caps (server.c, before the workers start). */
void gw_clients_init(void);
void gw_clients_fini(void);
/** The effective GATEWAY_MAX_CONNS. */
int64_t gw_clients_max(void);
size_t gw_clients_addresses(void);

/* ---- workers (server.c) ---- */

struct gw_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    int listen_fd;                  /* -1 once draining */
    struct event *accept_ev;        /* client.c */
    struct event *reap_ev;          /* frees closed connections */
    struct gw_client *clients;      /* open connections */
    struct gw_client *dead;         /* closed, not yet freed */
    size_t nclients;
    size_t active;                  /* requests not yet finished */
    int64_t drain_deadline;         /* monotonic us */
    struct gw_l2 *l2;               /* l2redis.c */
    struct gw_pg *pg;               /* pgstore.c */
    struct gw_uppool *pools;        /* proxy.c, one per upstream */
    pthread_mutex_t inbox_mu;       /* guards inbox */
    struct gw_request *inbox;       /* requests woken from other threads */
    struct event *inbox_ev;
    size_t parked;                  /* requests waiting on Redis/PostgreSQL */
    struct gw_wmetrics *m;          /* metrics.c: this worker's counters */
    struct gw_mintcache *mint;      /* mint.c: upstream JWTs by credential */
    int reserve_fd;                 /* client.c: spare descriptor for answering at EMFILE */
    size_t noverflow;               /* connections over a cap, answered and closed */
    bool accept_paused;             /* accept_ev deleted until accept_resume_us */
    int64_t accept_resume_us;
};

/* ---- metrics and access log (metrics.c) ---- */
void gw_metrics_init(struct gw_worker *w);
void gw_metrics_free(struct gw_worker *w);
/** Counts a finished request and appends its access-log line. */
void gw_metrics_observe(struct gw_request *r);
/** Writes the buffered access-log lines. */
void gw_access_flush(struct gw_worker *w);
/** Appends the Prometheus text of all workers' counters to b. */
void gw_metrics_render(struct gw_worker *all, size_t nworkers, struct pc_buf *b);

void gw_l2_start(struct gw_worker *w);
void gw_l2_stop(struct gw_worker *w);
bool gw_l2_up(struct gw_worker *w);
void gw_pg_start(struct gw_worker *w);
void gw_pg_stop(struct gw_worker *w);
bool gw_pg_up(struct gw_worker *w);
void gw_flights_init(void);
void gw_flights_free(void);
void gw_proxy_init(struct gw_worker *w);
void gw_proxy_stop(struct gw_worker *w);

/** Starts everything, serves until SIGTERM/SIGINT, stops. Exit code. */
int gw_server_run(void);

/* ---- JWTs (verify.c, jwks.c, mint.c) ---- */

struct gw_keyset;
struct gw_signer;
struct pc_jwk;
enum gw_key_result {
    GW_KEY_FOUND = 0,       /* *key is in *set (release the set after use) */
    GW_KEY_WAIT,            /* r is parked until a fetch; it will be woken */
    GW_KEY_UNKNOWN,         /* no such kid, even after a fetch */
    GW_KEY_UNAVAILABLE,     /* no keys could be fetched from this issuer */
};
/** Stage VERIFY: true to go on to DECIDE; false when answered or parked. */
bool gw_jwt_verify(struct gw_request *r);
/** Answers 401 with a JWT_* code. */
void gw_jwt_refuse(struct gw_request *r, const char *code);
enum gw_key_result gw_jwks_key(struct gw_issuer *iss, const char *kid, struct gw_request *r,
                               struct gw_keyset **set, const struct pc_jwk **key);
void gw_keyset_release(struct gw_keyset *s);
/** Our signing key (authsvc's current row), referenced; NULL when none yet. */
struct gw_signer *gw_signer_get(const struct pc_jwk **key);
void gw_signer_release(struct gw_signer *s);
/** Changes whenever the signing key does: a token minted under the same
 * generation was signed by the current key. */
unsigned gw_signer_gen(void);
void gw_jwks_start(void);
/** Stops fetching and wakes every parked request. */
void gw_jwks_stop(void);
void gw_jwks_free(void);
/** Every issuer has keys (or no route takes JWTs). */
bool gw_jwks_ready(void);
/** Sets r->upstream_jwt on routes with upstream_jwt; false when answered 503. */
bool gw_mint(struct gw_request *r);
void gw_mint_free(struct gw_worker *w);

/* ---- revocation feed (revocation.c) ---- */
/** Session ids whose JWTs are refused (sid claim). */
void gw_sid_revoke(const char *id);
bool gw_sid_revoked(const char *id);
void gw_revocation_start(void);
void gw_revocation_stop(void);
bool gw_revocation_up(void);

/* ---- counters (server.c), exported on /_stats ---- */

struct gw_stats {
    uint64_t requests;
    uint64_t l1_hits, l1_negative_hits, l2_hits, pg_queries, pg_errors;
    uint64_t redis_errors, revocations, l1_flushes;
    uint64_t upstream_errors, upstream_timeouts, upstream_cancels;
    uint64_t rate_limited, usage_exceeded, usage_flushes;
    uint64_t pg_connects, redis_connects;
    uint64_t accept_errors;         /* accept() failed for want of descriptors */
    uint64_t conns_refused_max, conns_refused_ip;   /* over GATEWAY_MAX_CONNS(_PER_IP) */
    uint64_t head_timeouts;         /* GATEWAY_HEAD_TIMEOUT_MS reached */
    uint64_t conns_open;            /* gauge: client connections within the caps */
};
extern struct gw_stats gw_stats;
#define GW_STAT_INC(f) __atomic_add_fetch(&gw_stats.f, 1, __ATOMIC_RELAXED)

#endif
