/* Portcullis - MIT licence. See LICENSE.
 *
 * authsvc.h: the shared types of the auth service.
 *
 * Request flow (file by file):
 *   main.c      configuration, start-up order, signals
 *   server.c    evhttp on one event loop: parse, route, CORS, hand a job to
 *               the worker pool, send its reply, access log
 *   origin.c    trusted origins, the Origin/Referer check, redirect targets
 *   ratelimit.c the client address (TRUSTED_PROXIES), per-IP sign-in/sign-up
 *               limits in Redis
 *   accounts.c  sign-up, sign-in, update-user, change-password
 *   sessions.c  session tokens, cookies, lookup, refresh, Redis cache,
 *               get-session, list-sessions, sign-out, revoke-*
 *   pwpool.c    scrypt on its own bounded thread pool
 *   oauth.c     Google / OIDC sign-in (oauth_http.c: curl multi on the loop)
 *   health.c    /health, /live, /ready (a prober thread keeps the state)
 *   migrate.c   `authsvc migrate`
 *
 * Threads: one event loop thread owns every evhttp object. A job (struct
 * as_job) carries a copy of the request to a worker thread, where handlers
 * run straight-line blocking code on that worker's own PostgreSQL and Redis
 * connections. A handler that needs a password hash hands the job to the
 * password pool with a continuation, which comes back to a worker. The reply
 * goes back to the loop through a locked list and event_active().
 */
#ifndef AS_AUTHSVC_H
#define AS_AUTHSVC_H

#include <stdbool.h>
#include <stdint.h>
#include "../lib/util.h"
#include "../lib/db.h"
#include "../lib/redis.h"
#include "../lib/json.h"
#include "../lib/password.h"
#include "../lib/netaddr.h"

struct evhttp_request;
struct as_job;
struct as_worker;

/* ---- configuration (config.c) ---- */

struct as_config {
    char *secret;               /* BETTER_AUTH_SECRET */
    char *base_url;             /* BETTER_AUTH_URL */
    char *database_url;         /* DATABASE_URL */
    char *redis_url;            /* REDIS_URL */
    char *listen;               /* AUTHSVC_LISTEN */
    char *trusted_origins;      /* TRUSTED_ORIGINS, comma list */
    bool rate_limit;            /* RATE_LIMIT_ENABLED */
    char *redis_prefix;         /* REDIS_PREFIX */
    char *revocation_channel;   /* REVOCATION_CHANNEL */
    char *log_path;             /* AUTHSVC_LOG */
    char *log_level;            /* LOG_LEVEL */
    char *ip_header;            /* IP_ADDRESS_HEADER */
    char *trusted_proxies_s;    /* TRUSTED_PROXIES, addresses/CIDRs */
    int64_t max_body;           /* AUTHSVC_MAX_BODY */
    int64_t workers;            /* AUTHSVC_WORKERS */
    int64_t job_queue;          /* AUTHSVC_QUEUE */
    int64_t max_conns;          /* AUTHSVC_MAX_CONNS; 0: from the open-file limit */
    int64_t max_conns_per_ip;   /* AUTHSVC_MAX_CONNS_PER_IP; 0: no cap */
    int64_t head_timeout_ms;    /* AUTHSVC_HEAD_TIMEOUT_MS */
    int64_t pw_workers;         /* PASSWORD_WORKERS */
    int64_t pw_queue;           /* PASSWORD_QUEUE */
    int64_t expires_in;         /* SESSION_EXPIRES_IN, seconds */
    int64_t revocation_log_keep;  /* REVOCATION_LOG_KEEP, seconds (0: derived) */
    int64_t update_age;         /* SESSION_UPDATE_AGE, seconds */
    int64_t fresh_age;          /* SESSION_FRESH_AGE, seconds */
    int64_t min_pw;             /* PASSWORD_MIN_LENGTH */
    int64_t max_pw;             /* PASSWORD_MAX_LENGTH */
    bool bearer_require_sig;    /* BEARER_REQUIRE_SIGNATURE */
    char *internal_secret;      /* INTERNAL_SERVICE_SECRET ("" = internal routes off) */
    char *apikey_prefix;        /* APIKEY_DEFAULT_PREFIX */
    int64_t apikey_rl_max;      /* APIKEY_RATE_LIMIT_MAX */
    int64_t apikey_rl_window;   /* APIKEY_RATE_LIMIT_WINDOW_MS */
    bool apikey_metadata;       /* APIKEY_ENABLE_METADATA */

    /* OIDC sign-in (oauth.c) */
    char *google_client_id;     /* GOOGLE_CLIENT_ID ("" = Google sign-in off) */
    char *google_client_secret; /* GOOGLE_CLIENT_SECRET */
    char *google_auth_url;      /* GOOGLE_AUTH_URL */
    char *google_token_url;     /* GOOGLE_TOKEN_URL */
    char *google_userinfo_url;  /* GOOGLE_USERINFO_URL */
    char *google_jwks_url;      /* GOOGLE_JWKS_URL */
    char *google_issuer;        /* GOOGLE_ISSUER */
    char *oidc_providers;       /* OIDC_PROVIDERS, names (OIDC_<NAME>_* read by oauth.c) */
    char *allowed_domains;      /* ALLOWED_DOMAINS ("" = any domain) */
    int64_t oauth_timeout_ms;   /* OAUTH_HTTP_TIMEOUT_MS */
    int64_t jwks_cache_s;       /* OAUTH_JWKS_CACHE_SECONDS */
    char *jwt_alg;              /* JWT_ALG */
    int64_t jwt_expires;        /* JWT_EXPIRES, seconds */
    int64_t jwt_rotate_days;    /* JWT_ROTATE_DAYS */
    char *jwt_issuer;           /* JWT_ISSUER (default: base_origin) */
    char *jwt_audience;         /* JWT_AUDIENCE (default: the issuer) */
    int64_t jwks_max_age;       /* JWKS_MAX_AGE, seconds */

    /* derived at load time */
    bool secure_cookies;        /* base_url is https */
    char cookie_session[64];    /* [__Secure-]better-auth.session_token */
    char cookie_dont_remember[64];
    char cookie_session_data[64];
    char base_origin[512];      /* scheme://host[:port] of base_url */
    struct pc_cidr *proxies;    /* TRUSTED_PROXIES, parsed */
    size_t nproxies;
    struct pc_redis_addr redis_addr;
    char listen_host[256];
    int listen_port;
};

extern struct as_config as_cfg;

/** Loads and validates the environment. Returns 0, or -1 after printing the
 * offending variable to stderr. */
PC_MUSTCHECK int as_config_load(void);
void as_config_help(void);
void as_config_free(void);

/* ---- trusted origins and redirect targets (origin.c) ---- */
/** Builds the trusted list from base_origin, TRUSTED_ORIGINS and
 * BETTER_AUTH_TRUSTED_ORIGINS; -1 after naming a bad entry on stderr. */
PC_MUSTCHECK int as_origins_load(void);
void as_origins_free(void);
/** pc_conf check of a comma list of origin patterns. */
int as_origins_check_list(const char *v, const char **err);
/** True when the URL or origin (n bytes), read as a browser reads it, is an
 * http(s) origin matching a trusted pattern. */
bool as_origin_trusted(const char *origin, size_t n);
/** Loop thread: the Origin/Referer check of a state-changing request; false
 * when it answered 403. */
bool as_origin_check(struct as_job *job);
/** Loop thread: callbackURL, redirectTo, errorCallbackURL and
 * newUserCallbackURL in the query or body; false when it answered 403. */
bool as_redirects_check(struct as_job *job);

/* ---- jobs (server.c) ---- */

struct as_header {
    char *name;     /* owned */
    char *value;    /* owned */
};

/** Runs one step of a request on a worker. Returns true when the job is
 * answered (status set); false when it was handed on (password pool) and
 * must not be touched any more. */
typedef bool (*as_handler)(struct as_job *job, struct as_worker *w);

enum as_pw_op {
    AS_PW_HASH = 0,     /* pw -> pw_out */
    AS_PW_VERIFY,       /* pw vs pw_stored -> pw_match */
};

/** One request in flight. Created and destroyed on the loop thread; between
 * dispatch and completion it belongs to exactly one pool thread at a time. */
struct as_job {
    struct evhttp_request *req; /* loop thread only */
    int method;                 /* enum evhttp_cmd_type */
    char *path;                 /* decoded path, no query */
    char *query;                /* raw query string or NULL */
    struct as_header *hdrs;     /* request headers (copied) */
    size_t nhdrs;
    char *body;                 /* request body, NUL-terminated */
    size_t body_len;
    char ip[64];                /* client address for logs and limits */
    char request_id[72];        /* X-Request-Id or generated */
    int64_t start_us;           /* monotonic arrival time */

    as_handler handler;         /* what the worker runs next */
    bool rate_limited;          /* check the rate limit before handler */
    void *state;                /* handler-private state */
    void (*state_free)(void *); /* frees state (or NULL) */

    /* password work (pwpool.c) */
    enum as_pw_op pw_op;
    char *pw;                   /* the password; wiped and freed after use */
    size_t pw_len;
    char pw_stored[PC_PASSWORD_HASH_LEN + 64]; /* hash to verify against */
    char pw_out[PC_PASSWORD_HASH_LEN + 1];     /* new hash */
    bool pw_match;              /* verify result */
    bool pw_failed;             /* hashing itself failed */

    /* response, filled by handlers */
    int status;                 /* 0 until answered */
    struct pc_buf out;          /* body */
    bool out_empty;             /* no body at all (404 for unknown routes) */
    struct as_header *rhdrs;    /* extra response headers */
    size_t nrhdrs;
    char user_id[64];           /* principal for the access log */
    const char *err_code;       /* error code for the access log */
    int route;                  /* index in the routes table, -1 if none */
    const char *content_type;   /* of the answer; NULL: application/json */

    struct as_job *next_done;   /* completion list link */
    void (*loop_fn)(struct as_job *); /* set: run on the loop instead of replying (oauth) */
};

/** The first request header named name (case-insensitive), or NULL. */
const char *as_header(const struct as_job *job, const char *name);
/** The value of query parameter name (decoded, heap) or NULL. */
char *as_query_param(const struct as_job *job, const char *name);
/** Adds a response header (copied). */
void as_add_header(struct as_job *job, const char *name, const char *value);
/** Answers with a JSON body taken from buf (buf is moved into the job). */
bool as_reply(struct as_job *job, int status, struct pc_buf *buf);
/** Answers with {"message": msg, "code": code}. */
bool as_error(struct as_job *job, int status, const char *code, const char *msg);
/** Parses the body (JSON, or a form turned into a JSON object of strings).
 * An empty body is {} unless required. On an unsupported Content-Type (415),
 * bad JSON or a non-object (400) it answers and returns NULL. Free the tree
 * with yajl_tree_free. */
yajl_val as_body(struct as_job *job, bool required);
/** zod's name for a JSON value's type ("undefined" for NULL). */
const char *as_json_type_name(yajl_val v);
/** Worker: hands the job to the loop thread, where fn(job) runs (OIDC
 * sign-in's HTTP calls). Like as_pw_submit, the caller's handler returns
 * false and must not touch the job again. */
void as_server_to_loop(struct as_job *job, void (*fn)(struct as_job *));
/** Loop: the job is answered; send it. */
void as_server_finish(struct as_job *job);
/** Hands the job to the password pool; `then` runs on a worker afterwards.
 * Returns 0, or -1 when the pool's queue is full (the caller answers 503).
 * On 0 the job owns pw (a heap copy of n bytes); on -1 the caller still
 * does and must wipe and free it. */
PC_MUSTCHECK int as_pw_submit(struct as_job *job, enum as_pw_op op, char *pw, size_t n,
                              as_handler then);

/* ---- worker context ---- */

struct as_worker {
    struct pc_db db;        /* this thread's PostgreSQL connection */
    struct pc_redis redis;  /* this thread's Redis connection */
};

/* ---- password pool (pwpool.c) ---- */
void as_pwpool_start(void);
void as_pwpool_stop(void);
size_t as_pwpool_depth(void);
/** True when a new hash would be refused: lets a route answer 503 before
 * doing any database work for it. */
bool as_pwpool_full(void);
/** Called by the pool when a job's password work is done. */
void as_server_resume(struct as_job *job);

/* ---- routes ---- */
bool as_route_sign_up(struct as_job *job, struct as_worker *w);
bool as_route_sign_in(struct as_job *job, struct as_worker *w);
bool as_route_update_user(struct as_job *job, struct as_worker *w);
bool as_route_change_password(struct as_job *job, struct as_worker *w);
bool as_route_get_session(struct as_job *job, struct as_worker *w);
bool as_route_list_sessions(struct as_job *job, struct as_worker *w);
bool as_route_sign_out(struct as_job *job, struct as_worker *w);
bool as_route_revoke_session(struct as_job *job, struct as_worker *w);
bool as_route_revoke_sessions(struct as_job *job, struct as_worker *w);
bool as_route_revoke_other_sessions(struct as_job *job, struct as_worker *w);
bool as_route_apikey_create(struct as_job *job, struct as_worker *w);
bool as_route_apikey_get(struct as_job *job, struct as_worker *w);
bool as_route_apikey_update(struct as_job *job, struct as_worker *w);
bool as_route_apikey_delete(struct as_job *job, struct as_worker *w);
bool as_route_apikey_list(struct as_job *job, struct as_worker *w);
bool as_route_internal_apikey_create(struct as_job *job, struct as_worker *w);
bool as_route_internal_apikey_update(struct as_job *job, struct as_worker *w);
bool as_route_internal_validate(struct as_job *job, struct as_worker *w);
bool as_route_sign_in_social(struct as_job *job, struct as_worker *w);
bool as_route_oauth_callback(struct as_job *job, struct as_worker *w);
bool as_route_oauth_error_page(struct as_job *job, struct as_worker *w);

/* ---- sessions (sessions.c) ---- */

struct as_user {
    char *id, *name, *email, *image;    /* owned; image may be NULL */
    bool email_verified;
    int64_t created_at, updated_at;     /* epoch ms */
};

struct as_session {
    char *id, *token, *user_id;         /* owned */
    char *ip, *ua;                      /* owned, may be NULL */
    int64_t expires_at, created_at, updated_at; /* epoch ms */
};

enum as_lookup {
    AS_LOOKUP_OK = 0,       /* a live session */
    AS_LOOKUP_NONE,         /* no (valid) session */
    AS_LOOKUP_UNAVAILABLE,  /* PostgreSQL unreachable: answer 503 */
};

void as_user_free(struct as_user *u);
void as_session_free(struct as_session *s);
/** Fills u from row `row` of res, columns starting at col (see USER_COLS). */
void as_user_from_row(struct as_user *u, const struct pg_result *res, int row, int col);
void as_jw_user(struct pc_jw *w, const struct as_user *u);
/** The user's members alone, into an open object (JWT claims). */
void as_jw_user_fields(struct pc_jw *w, const struct as_user *u);
void as_jw_session(struct pc_jw *w, const struct as_session *s);

/** Resolves the caller's session from the cookie or Authorization header,
 * with Better Auth's expiry and sliding refresh (which may add Set-Cookie).
 * On AS_LOOKUP_OK s and u are filled (free them). */
enum as_lookup as_session_resolve(struct as_job *job, struct as_worker *w,
                                  struct as_session *s, struct as_user *u);
/** Resolves or answers 401/503 itself; returns true when a session is there. */
bool as_require_session(struct as_job *job, struct as_worker *w, struct as_session *s,
                        struct as_user *u);

/** Inserts a session row for user_id. Returns 0, or -1 (database down). */
PC_MUSTCHECK int as_session_create(struct as_job *job, struct as_worker *w, const char *user_id,
                                   bool remember, struct as_session *s);
/** Writes the session through to Redis (best effort). */
void as_session_cache_put(struct as_worker *w, const struct as_session *s, const struct as_user *u);
/** Reads the value of signed cookie name (Better Auth's "value.sig", maybe
 * URL-encoded). True, with tok filled, when present and correctly signed. */
bool as_signed_cookie(const struct as_job *job, const char *name, char *tok, size_t cap);
/** Sets the session cookie(s), set-auth-token and the expose header. */
void as_session_set_cookie(struct as_job *job, const char *token, bool remember);
/** Expires the session cookies (sign-out, dead session). */
void as_session_clear_cookies(struct as_job *job);
/** For each token: DEL its Redis entry and PUBLISH its hash. Call after the
 * PostgreSQL change has committed. */
void as_revoke_tokens(struct as_worker *w, char **tokens, size_t n);
/** Deletes sessions of user_id (all, or all but keep_token) in PostgreSQL
 * and revokes them. Returns 0 or -1. */
PC_MUSTCHECK int as_revoke_user_sessions(struct as_worker *w, const char *user_id,
                                         const char *keep_token);

/** Relays <kind>:<hash> to Redis at once ('s' session, 'k' API key, 'i' a
 * session id whose JWTs die; lib/revmsg.h has the format). Call after the
 * PostgreSQL change committed: its trigger logged the same tag, so what
 * Redis does not take now the listener relays later. */
void as_revoke_hash(struct pc_redis *r, char kind, const char *hash);
/** One tag's DEL/SET + INCR + PUBLISH (pc_rev_relay with authsvc's
 * settings). Returns false when Redis did not take it. */
PC_MUSTCHECK bool as_revoke_relay(struct pc_redis *r, const char *tag);
/** The LISTEN thread (listener.c): relays the revocation log (migration
 * 0005) at start, on every reconnect and on every pc_revoked notice. */
void as_listener_start(void);
void as_listener_stop(void);
bool as_listener_up(void);

/* ---- JWTs and the JWKS (jwt.c) ---- */
bool as_route_token(struct as_job *job, struct as_worker *w);
bool as_route_jwks(struct as_job *job, struct as_worker *w);
/** Makes sure a current signing key exists (creates one); at start. */
PC_MUSTCHECK int as_jwt_init(struct pc_db *db);
void as_jwt_free(void);
/** A JWT for the session's user (heap), or NULL when no key can be had. */
char *as_jwt_mint(struct as_worker *w, const struct as_session *s, const struct as_user *u);

/* ---- rate limiting (ratelimit.c) ---- */
/** Applies Better Auth's default rules to the job's path. Returns true when
 * the request may go on; otherwise the 429 has been written into the job. */
bool as_ratelimit_check(struct as_job *job, struct as_worker *w);
/** Loop thread: sets job->ip from the TCP peer, or from IP_ADDRESS_HEADER
 * when the peer is one of TRUSTED_PROXIES (canonical text, IPv4-mapped
 * IPv6 as IPv4). */
void as_client_ip(struct as_job *job, const char *peer);

/* ---- health (health.c) ---- */
void as_health_start(void);
void as_health_stop(void);
bool as_health_pg_ok(void);
bool as_health_redis_ok(void);
/** Records an outcome seen by a worker, so /ready reacts before the prober. */
void as_health_note_pg(bool ok);
void as_health_note_redis(bool ok);

/* ---- metrics.c ---- */
/** Names route i (its path) in the exported counters. */
void as_metrics_route_name(size_t i, const char *path);
/** Loop thread: counts an answered request (route -1: none). */
void as_metrics_observe(int route, int status, int64_t us);
/** Any thread: counts a PostgreSQL (pg) or Redis failure. */
void as_metrics_note_failure(bool pg);
/** Loop thread: appends the Prometheus text to b. */
void as_metrics_render(struct pc_buf *b);

/* ---- conns.c: connection caps, request deadline, EMFILE, JSON error pages ---- */
struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
void as_conns_start(struct event_base *base, struct evhttp *http,
                    struct evhttp_bound_socket *bound);
/** Before evhttp_del_accept_socket (drain). */
void as_conns_stop_accepting(void);
/** After evhttp_free. */
void as_conns_free(void);
/** A request reached on_request / is being answered (loop thread). */
void as_conns_request_begin(struct evhttp_request *req);
void as_conns_request_end(struct evhttp_request *req);
int64_t as_conns_max(void);
void as_conns_render(struct pc_buf *b);

/* ---- server.c ---- */
/** Serves until SIGTERM/SIGINT, then drains. Returns the exit code. */
int as_server_run(void);

/* ---- migrate.c ---- */
int as_migrate_run(const char *database_url);

/* ---- validation helpers (accounts.c) ---- */
bool as_email_valid(const char *s);
/** Checks callbackURL-like values (origin.c): a safe root-relative path, or
 * an http(s) URL without userinfo whose origin is trusted. */
bool as_redirect_allowed(const char *url);

#define USER_COLS "u.\"id\", u.\"name\", u.\"email\", u.\"emailVerified\", u.\"image\", " \
    "(extract(epoch from u.\"createdAt\")*1000)::bigint, " \
    "(extract(epoch from u.\"updatedAt\")*1000)::bigint"
#define USER_NCOLS 7

#endif
