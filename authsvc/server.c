/* Portcullis - MIT licence. See LICENSE.
 *
 * server.c: authsvc's HTTP front. Runs on the single event loop thread:
 *
 *   on_request  copy the request into a job; answer on the loop what needs
 *               no I/O (health, CORS preflight, 404/405/413, origin check);
 *               otherwise push the job to the worker pool (full: 503)
 *   worker_run  (pool thread) run the route handler on that thread's
 *               PostgreSQL/Redis connections; when answered, post the job
 *               back to the loop
 *   on_done     (loop) send each finished job's reply, log it, free it
 *
 * evhttp objects are touched on the loop thread only. If the client goes
 * away while a job is out, libevent 2.1 detaches the request and frees it
 * when we reply, so every job is answered exactly once.
 */
#include "authsvc.h"
#include "oauth.h"
#include "../lib/crypto.h"
#include "../lib/log.h"
#include "../lib/workq.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

/* Route flags */
#define R_LOOP 0x1u         /* answered on the loop thread, no I/O */
#define R_LIMITED 0x2u      /* subject to the sign-in/sign-up rate limit */
#define R_PREFIX 0x4u       /* path is a prefix: /api/auth/callback/<provider> */

enum r_loop_kind { LOOP_NONE = 0, LOOP_OK, LOOP_HEALTH, LOOP_LIVE, LOOP_READY, LOOP_METRICS };

struct route {
    int method;             /* EVHTTP_REQ_GET / _POST */
    const char *path;       /* exact path */
    as_handler handler;     /* worker handler, or NULL for loop routes */
    unsigned flags;
    enum r_loop_kind loop;
};

static const struct route routes[] = {
    {EVHTTP_REQ_POST, "/api/auth/sign-up/email", as_route_sign_up, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/sign-in/email", as_route_sign_in, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/sign-out", as_route_sign_out, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/get-session", as_route_get_session, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/list-sessions", as_route_list_sessions, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/revoke-session", as_route_revoke_session, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/revoke-sessions", as_route_revoke_sessions, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/revoke-other-sessions", as_route_revoke_other_sessions, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/update-user", as_route_update_user, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/change-password", as_route_change_password, R_LIMITED,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/api-key/create", as_route_apikey_create, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/api-key/get", as_route_apikey_get, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/api-key/update", as_route_apikey_update, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/api-key/delete", as_route_apikey_delete, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/api-key/list", as_route_apikey_list, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/internal/api-key/create", as_route_internal_apikey_create, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/internal/api-key/update", as_route_internal_apikey_update, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/internal/validate", as_route_internal_validate, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/token", as_route_token, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/jwks", as_route_jwks, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/.well-known/jwks.json", as_route_jwks, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/sign-in/social", as_route_sign_in_social, R_LIMITED,
     LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/callback/", as_route_oauth_callback, R_PREFIX, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/callback/", as_route_oauth_callback, R_PREFIX, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/error", as_route_oauth_error_page, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/ok", NULL, R_LOOP, LOOP_OK},
    {EVHTTP_REQ_GET, "/health", NULL, R_LOOP, LOOP_HEALTH},
    {EVHTTP_REQ_GET, "/live", NULL, R_LOOP, LOOP_LIVE},
    {EVHTTP_REQ_GET, "/ready", NULL, R_LOOP, LOOP_READY},
    {EVHTTP_REQ_GET, "/metrics", NULL, R_LOOP, LOOP_METRICS},
};

static struct event_base *base;
static struct evhttp *http;
static struct evhttp_bound_socket *listener;
static struct pc_workq *workers;
static struct event *done_ev;
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static struct as_job *done_head;        /* finished jobs, LIFO is fine */
static size_t inflight;                 /* jobs out on pools (loop thread) */
static bool draining;                   /* SIGTERM seen: refuse new work */

/* ---- job helpers (any thread) ---- */

const char *as_header(const struct as_job *job, const char *name)
{
    for (size_t i = 0; i < job->nhdrs; i++)
        if (pc_strieq(job->hdrs[i].name, name))
            return job->hdrs[i].value;
    return NULL;
}

char *as_query_param(const struct as_job *job, const char *name)
{
    if (job->query == NULL)
        return NULL;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(job->query, &q) != 0) {
        evhttp_clear_headers(&q);
        return NULL;
    }
    const char *v = evhttp_find_header(&q, name);
    /* %FF and the like decode as URLSearchParams decodes them: U+FFFD */
    char *out = v ? pc_utf8_fix(v, strlen(v)) : NULL;
    evhttp_clear_headers(&q);
    return out;
}

void as_add_header(struct as_job *job, const char *name, const char *value)
{
    job->rhdrs = pc_xrealloc(job->rhdrs, (job->nrhdrs + 1) * sizeof *job->rhdrs);
    job->rhdrs[job->nrhdrs].name = pc_xstrdup(name);
    job->rhdrs[job->nrhdrs].value = pc_xstrdup(value);
    job->nrhdrs++;
}

bool as_reply(struct as_job *job, int status, struct pc_buf *buf)
{
    job->status = status;
    pc_buf_free(&job->out);
    job->out = *buf;
    memset(buf, 0, sizeof *buf);
    return true;
}

bool as_error(struct as_job *job, int status, const char *code, const char *msg)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "message");
    pc_jw_str(&w, msg);
    pc_jw_key(&w, "code");
    pc_jw_str(&w, code);
    pc_jw_obj_end(&w);
    job->err_code = code;
    return as_reply(job, status, &b);
}

static void job_free(struct as_job *job)
{
    free(job->path);
    free(job->query);
    for (size_t i = 0; i < job->nhdrs; i++) {
        free(job->hdrs[i].name);
        free(job->hdrs[i].value);
    }
    free(job->hdrs);
    if (job->body) {
        pc_wipe(job->body, job->body_len);
        free(job->body);
    }
    if (job->pw) {
        pc_wipe(job->pw, job->pw_len);
        free(job->pw);
    }
    pc_wipe(job->pw_stored, sizeof job->pw_stored);
    pc_wipe(job->pw_out, sizeof job->pw_out);
    if (job->state_free)
        job->state_free(job->state);
    /* answers can hold a plaintext API key or a session token */
    if (job->out.data)
        pc_wipe(job->out.data, job->out.cap);
    pc_buf_free(&job->out);
    for (size_t i = 0; i < job->nrhdrs; i++) {
        free(job->rhdrs[i].name);
        free(job->rhdrs[i].value);
    }
    free(job->rhdrs);
    free(job);
}

/* ---- completion: pool threads -> loop ---- */

static void post_done(struct as_job *job)
{
    pthread_mutex_lock(&done_mu);
    job->next_done = done_head;
    done_head = job;
    pthread_mutex_unlock(&done_mu);
    event_active(done_ev, EV_READ, 0);
}

/* Pool thread: run the job's current step. */
static void worker_run(void *item, void *tctx)
{
    struct as_job *job = item;
    struct as_worker *w = tctx;
    as_handler h = job->handler;
    job->handler = NULL;
    if (!h(job, w))
        return; /* handed to the password pool: no longer ours */
    if (job->status == 0)
        as_error(job, 500, "INTERNAL_SERVER_ERROR", "handler gave no answer");
    post_done(job);
}

void as_server_to_loop(struct as_job *job, void (*fn)(struct as_job *))
{
    job->loop_fn = fn;
    post_done(job);
}

void as_server_finish(struct as_job *job)
{
    post_done(job);
}

void as_server_resume(struct as_job *job)
{
    pc_workq_push_force(workers, job);
}

static void *worker_init(void *arg)
{
    struct as_worker *w = pc_xcalloc(1, sizeof *w);
    pc_db_init(&w->db, as_cfg.database_url);
    pc_redis_init(&w->redis, &as_cfg.redis_addr, 250);
    return w;
}

static void worker_fini(void *tctx)
{
    struct as_worker *w = tctx;
    pc_db_close(&w->db);
    pc_redis_close(&w->redis);
    free(w);
}

/* ---- replies (loop thread) ---- */

static void add_cors(struct evkeyvalq *oh, const struct as_job *job)
{
    const char *origin = as_header(job, "Origin");
    if (origin == NULL || !as_origin_trusted(origin, strlen(origin)))
        return;
    evhttp_add_header(oh, "Access-Control-Allow-Origin", origin);
    evhttp_add_header(oh, "Access-Control-Allow-Credentials", "true");
    evhttp_add_header(oh, "Vary", "Origin");
}

static void access_log(const struct as_job *job)
{
    static const char *const names[] = {"GET", "POST", "HEAD", "PUT", "DELETE",
                                        "OPTIONS", "TRACE", "CONNECT", "PATCH"};
    const char *m = "OTHER";
    for (unsigned i = 0; i < PC_ARRAY_LEN(names); i++)
        if (job->method == (1 << i))
            m = names[i];
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "ts");
    pc_jw_date(&w, pc_now_ms());
    pc_jw_key(&w, "level");
    pc_jw_str(&w, "info");
    pc_jw_key(&w, "prog");
    pc_jw_str(&w, "authsvc");
    pc_jw_key(&w, "req_id");
    pc_jw_str(&w, job->request_id);
    pc_jw_key(&w, "method");
    pc_jw_str(&w, m);
    pc_jw_key(&w, "path");
    pc_jw_str(&w, job->path);
    pc_jw_key(&w, "status");
    pc_jw_int(&w, job->status);
    pc_jw_key(&w, "ip");
    pc_jw_str(&w, job->ip);
    if (job->user_id[0]) {
        pc_jw_key(&w, "user_id");
        pc_jw_str(&w, job->user_id);
    }
    if (job->err_code) {
        pc_jw_key(&w, "code");
        pc_jw_str(&w, job->err_code);
    }
    pc_jw_key(&w, "latency_us");
    pc_jw_int(&w, pc_mono_us() - job->start_us);
    pc_jw_obj_end(&w);
    pc_log_line(b.data, b.len);
    pc_buf_free(&b);
}

static void send_job(struct as_job *job)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(job->req);
    if (!job->out_empty) {
        evhttp_add_header(oh, "Content-Type",
                          job->content_type ? job->content_type : "application/json");
        bool own_cache = false;     /* the JWKS says how long it may be cached */
        for (size_t i = 0; i < job->nrhdrs; i++)
            own_cache = own_cache || strcasecmp(job->rhdrs[i].name, "Cache-Control") == 0;
        if (!own_cache)
            evhttp_add_header(oh, "Cache-Control", "no-store");
    }
    evhttp_add_header(oh, "X-Request-Id", job->request_id);
    add_cors(oh, job);
    for (size_t i = 0; i < job->nrhdrs; i++)
        evhttp_add_header(oh, job->rhdrs[i].name, job->rhdrs[i].value);
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL)
        pc_fatal("out of memory");
    if (!job->out_empty && job->out.len)
        evbuffer_add(buf, job->out.data, job->out.len);
    as_conns_request_end(job->req);
    evhttp_send_reply(job->req, job->status, NULL, buf);
    evbuffer_free(buf);
    as_metrics_observe(job->route, job->status, pc_mono_us() - job->start_us);
    access_log(job);
    job_free(job);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    for (;;) {
        pthread_mutex_lock(&done_mu);
        struct as_job *list = done_head;
        done_head = NULL;
        pthread_mutex_unlock(&done_mu);
        if (list == NULL)
            break;
        while (list) {
            struct as_job *next = list->next_done;
            void (*fn)(struct as_job *) = list->loop_fn;
            if (fn) {
                /* not an answer: the job continues on the loop (oauth.c) */
                list->loop_fn = NULL;
                fn(list);
            } else {
                inflight--;
                send_job(list);
            }
            list = next;
        }
    }
    if (draining && inflight == 0) {
        /* Let the last replies reach their sockets before the loop ends. */
        struct timeval tv = {0, 200000};
        event_base_loopexit(base, &tv);
    }
}

/* ---- request intake (loop thread) ---- */

static bool request_id_ok(const char *s)
{
    return pc_token_chars(s, 64, "-_.");
}

static void job_client_ip(struct as_job *job)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(job->req), &addr, &port);
    as_client_ip(job, addr ? addr : ""); /* ratelimit.c */
}

static struct as_job *job_new(struct evhttp_request *req)
{
    struct as_job *job = pc_xcalloc(1, sizeof *job);
    job->req = req;
    job->route = -1;
    job->start_us = pc_mono_us();
    job->method = (int)evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    job->path = pc_xstrdup(path && *path ? path : "/");
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    job->query = q ? pc_xstrdup(q) : NULL;

    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next)
        job->nhdrs++;
    job->hdrs = pc_xcalloc(job->nhdrs, sizeof *job->hdrs);
    size_t i = 0;
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next, i++) {
        job->hdrs[i].name = pc_xstrdup(kv->key);
        job->hdrs[i].value = pc_xstrdup(kv->value);
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    job->body_len = evbuffer_get_length(in);
    job->body = pc_xmalloc(job->body_len + 1);
    if (job->body_len)
        evbuffer_copyout(in, job->body, job->body_len);
    job->body[job->body_len] = '\0';

    const char *rid = as_header(job, "X-Request-Id");
    if (rid && request_id_ok(rid)) {
        snprintf(job->request_id, sizeof job->request_id, "%s", rid);
    } else {
        unsigned char r[16];
        pc_random_bytes(r, sizeof r);
        pc_hex_encode(r, sizeof r, job->request_id);
    }
    job_client_ip(job);
    return job;
}

static void send_now(struct as_job *job)
{
    send_job(job);
}

static void loop_route(struct as_job *job, enum r_loop_kind kind)
{
    struct pc_buf b = {0};
    switch (kind) {
    case LOOP_OK:
        pc_buf_puts(&b, "{\"ok\":true}");
        as_reply(job, 200, &b);
        break;
    case LOOP_HEALTH:
        pc_buf_puts(&b, "{\"status\":\"ok\"}");
        as_reply(job, 200, &b);
        break;
    case LOOP_LIVE:
        pc_buf_puts(&b, "{\"status\":\"live\"}");
        as_reply(job, 200, &b);
        break;
    case LOOP_READY: {
        bool pg = as_health_pg_ok(), rd = as_health_redis_ok();
        pc_buf_printf(&b, "{\"status\":\"%s\",\"postgres\":\"%s\",\"redis\":\"%s\"}",
                      pg && rd ? "ready" : "unavailable", pg ? "ok" : "down",
                      rd ? "ok" : "down");
        as_reply(job, pg && rd ? 200 : 503, &b);
        break;
    }
    case LOOP_METRICS:
        as_metrics_render(&b);
        job->content_type = "text/plain; version=0.0.4";
        as_reply(job, 200, &b);
        break;
    default:
        pc_fatal("loop_route: bad kind");
    }
    send_now(job);
}

static void preflight(struct as_job *job)
{
    job->status = 204;
    job->out_empty = true;
    const char *origin = as_header(job, "Origin");
    if (origin && as_origin_trusted(origin, strlen(origin))) {
        as_add_header(job, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        const char *rh = as_header(job, "Access-Control-Request-Headers");
        as_add_header(job, "Access-Control-Allow-Headers",
                      rh ? rh : "Content-Type, Authorization");
        as_add_header(job, "Access-Control-Max-Age", "600");
    }
    send_now(job);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    as_conns_request_begin(req);
    struct as_job *job = job_new(req);
    if (job->method == EVHTTP_REQ_HEAD)
        job->method = EVHTTP_REQ_GET;

    if (job->method == EVHTTP_REQ_OPTIONS) {
        preflight(job);
        return;
    }
    const struct route *r = NULL;
    bool path_known = false;
    job->route = -1;
    for (size_t i = 0; i < PC_ARRAY_LEN(routes); i++) {
        size_t plen = strlen(routes[i].path);
        bool match = (routes[i].flags & R_PREFIX)
                         ? strncmp(routes[i].path, job->path, plen) == 0 && job->path[plen] &&
                               strchr(job->path + plen, '/') == NULL
                         : strcmp(routes[i].path, job->path) == 0;
        if (!match)
            continue;
        path_known = true;
        job->route = (int)i;
        if (routes[i].method == job->method)
            r = &routes[i];
    }
    if (r == NULL) {
        if (path_known) {
            as_error(job, 405, "METHOD_NOT_ALLOWED", "Method not allowed");
        } else {
            as_error(job, 404, "NOT_FOUND", "Not found");
        }
        send_now(job);
        return;
    }
    if (r->flags & R_LOOP) {
        loop_route(job, r->loop);
        return;
    }
    if (draining) {
        as_error(job, 503, "SHUTTING_DOWN", "Server is shutting down");
        send_now(job);
        return;
    }
    if ((int64_t)job->body_len > as_cfg.max_body) {
        as_error(job, 413, "PAYLOAD_TOO_LARGE", "Request body is too large");
        send_now(job);
        return;
    }
    if (!as_origin_check(job) || !as_redirects_check(job)) { /* origin.c */
        send_now(job);
        return;
    }
    job->handler = r->handler;
    job->rate_limited = (r->flags & R_LIMITED) != 0;
    if (pc_workq_push(workers, job) != 0) {
        as_error(job, 503, "SERVER_BUSY", "Too many requests in progress, try again");
        send_now(job);
        return;
    }
    inflight++;
}

/* Worker entry for rate-limited routes: check the limit, then run the route. */
static void worker_dispatch(void *item, void *tctx)
{
    struct as_job *job = item;
    if (job->rate_limited) {
        /* The limit needs Redis, so it runs here, before the route. */
        job->rate_limited = false;
        if (!as_ratelimit_check(job, tctx)) {
            post_done(job);
            return;
        }
    }
    worker_run(job, tctx);
}

/* ---- start and stop ---- */

static struct event *sig_term, *sig_int;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    if (draining) {
        event_base_loopbreak(base);
        return;
    }
    pc_log_info("signal %d: draining %zu request(s) in flight", (int)sig, inflight);
    draining = true;
    if (listener) {
        as_conns_stop_accepting();
        evhttp_del_accept_socket(http, listener);
        listener = NULL;
    }
    if (inflight == 0)
        event_base_loopbreak(base);
    else {
        struct timeval tv = {10, 0}; /* bound on the drain */
        event_base_loopexit(base, &tv);
    }
}

int as_server_run(void)
{
    if (evthread_use_pthreads() != 0)
        pc_fatal("evthread_use_pthreads failed");
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    if (base == NULL)
        pc_fatal("event_base_new failed");
    http = evhttp_new(base);
    if (http == NULL)
        pc_fatal("evhttp_new failed");
    /* evhttp's own limit sits above ours so that most oversized bodies get
     * our JSON 413; beyond it evhttp answers 413 and closes. */
    evhttp_set_max_body_size(http, (ev_ssize_t)(as_cfg.max_body + 1024 * 1024));
    evhttp_set_max_headers_size(http, 64 * 1024);
    evhttp_set_timeout(http, 60);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                         EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(http, on_request, NULL);
    listener = evhttp_bind_socket_with_handle(http, as_cfg.listen_host,
                                              (ev_uint16_t)as_cfg.listen_port);
    if (listener == NULL) {
        pc_log_error("cannot listen on %s", as_cfg.listen);
        fprintf(stderr, "authsvc: cannot listen on %s (AUTHSVC_LISTEN)\n", as_cfg.listen);
        evhttp_free(http);
        event_base_free(base);
        return 1;
    }
    as_conns_start(base, http, listener);
    for (size_t i = 0; i < PC_ARRAY_LEN(routes); i++)
        as_metrics_route_name(i, routes[i].path);
    done_ev = event_new(base, -1, EV_PERSIST, on_done, NULL);
    sig_term = evsignal_new(base, SIGTERM, on_signal, NULL);
    sig_int = evsignal_new(base, SIGINT, on_signal, NULL);
    event_add(sig_term, NULL);
    event_add(sig_int, NULL);

    /* Start-up order: health prober (so /ready is right from the start),
     * password pool, request workers; then serve. */
    as_health_start();
    as_listener_start();
    struct pc_db jdb;
    pc_db_init(&jdb, as_cfg.database_url);
    if (as_jwt_init(&jdb) != 0)
        pc_log_warn("jwt: no signing key yet (database unavailable); will retry on use");
    pc_db_close(&jdb);
    as_oauth_start(base);
    as_pwpool_start();
    workers = pc_workq_new("as-worker", (int)as_cfg.workers, (size_t)as_cfg.job_queue,
                           worker_dispatch, worker_init, worker_fini, NULL);
    pc_log_info("authsvc listening on %s (workers %lld, base URL %s, at most %lld connections)",
                as_cfg.listen, (long long)as_cfg.workers, as_cfg.base_url,
                (long long)as_conns_max());

    event_base_dispatch(base);

    /* Shutdown: pools finish what they hold, then answer what came back. */
    pc_log_info("authsvc stopping");
    as_pwpool_stop();
    pc_workq_free(workers);
    as_oauth_stop();    /* after the workers: answers what waits on providers */
    on_done(-1, 0, NULL);
    as_listener_stop();
    as_health_stop();
    as_jwt_free();
    event_free(sig_term);
    event_free(sig_int);
    event_free(done_ev);
    evhttp_free(http);
    as_conns_free();
    event_base_free(base);
    libevent_global_shutdown();
    return 0;
}

const char *as_json_type_name(yajl_val v)
{
    if (v == NULL)
        return "undefined";
    switch (v->type) {
    case yajl_t_string: return "string";
    case yajl_t_number: return "number";
    case yajl_t_object: return "object";
    case yajl_t_array: return "array";
    case yajl_t_true:
    case yajl_t_false: return "boolean";
    default: return "null";
    }
}

/* Turns an application/x-www-form-urlencoded body into a JSON object of
 * strings, so routes see one shape whatever the client sent. */
static char *form_to_json(const char *body)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(body, &q) != 0) {
        evhttp_clear_headers(&q);
        return NULL;
    }
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
        /* bytes that are not UTF-8 read as U+FFFD, as URLSearchParams reads them */
        char *k = pc_utf8_fix(kv->key, strlen(kv->key));
        char *v = pc_utf8_fix(kv->value, strlen(kv->value));
        pc_jw_key(&w, k);
        pc_jw_str(&w, v);
        pc_wipe(kv->value, strlen(kv->value));
        pc_wipe(v, strlen(v));
        free(k);
        free(v);
    }
    pc_jw_obj_end(&w);
    evhttp_clear_headers(&q);
    return b.data ? b.data : pc_xstrdup("{}");
}

yajl_val as_body(struct as_job *job, bool required)
{
    const char *ct = as_header(job, "Content-Type");
    bool form = false;
    if (ct != NULL) {
        size_t n = strcspn(ct, ";");
        while (n > 0 && ct[n - 1] == ' ')
            n--;
        form = n == 33 && pc_strnieq(ct, "application/x-www-form-urlencoded", 33);
        if (!form && !(n == 16 && pc_strnieq(ct, "application/json", 16))) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "Content-Type \"%.*s\" is not allowed. Allowed types: "
                     "application/x-www-form-urlencoded, application/json",
                     (int)(n > 100 ? 100 : n), ct);
            as_error(job, 415, "UNSUPPORTED_MEDIA_TYPE", msg);
            return NULL;
        }
    }
    const char *p = job->body;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p == '\0') {
        if (required) {
            as_error(job, 400, "VALIDATION_ERROR",
                     "[body] Invalid input: expected object, received undefined");
            return NULL;
        }
        return pc_json_parse("{}", 2);
    }
    yajl_val v;
    if (form) {
        char *json = form_to_json(job->body);
        v = json ? pc_json_parse(json, strlen(json)) : NULL;
        if (json) {
            pc_wipe(json, strlen(json));
            free(json);
        }
    } else {
        v = pc_json_parse(job->body, job->body_len);
    }
    if (v == NULL) {
        as_error(job, 400, "BAD_REQUEST", "Invalid JSON in request body");
        return NULL;
    }
    if (!YAJL_IS_OBJECT(v)) {
        char msg[128];
        snprintf(msg, sizeof msg, "[body] Invalid input: expected object, received %s",
                 as_json_type_name(v));
        yajl_tree_free(v);
        as_error(job, 400, "VALIDATION_ERROR", msg);
        return NULL;
    }
    return v;
}
