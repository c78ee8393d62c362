/* Portcullis - MIT licence. See LICENSE.
 *
 * server.c: authsvc's HTTP front. Runs on the single event loop thread:
 *
 *   on_request  copy the request into a job (job.c); answer /health, /live
 *               and /ready (after AUTHSVC_HEALTH_PREFIX); look its route up
 *               (routes.c); answer on the loop what needs no I/O (health,
 *               CORS preflight, 404/405/413, origin check: origin.c);
 *               otherwise push the job to the worker pool (full: 503)
 *   worker_run  (pool thread) run the route handler on that thread's
 *               PostgreSQL/Redis connections; when answered, post the job
 *               back to the loop
 *   on_done     (loop) send each finished job's reply, log it, free it
 *
 *   admin       AUTHSVC_ADMIN_LISTEN, an evhttp of its own on the same loop:
 *               /metrics and the health checks, 404 for anything else
 *
 * evhttp objects are touched on the loop thread only. If the client goes
 * away while a job is out, libevent 2.1 detaches the request and frees it
 * when we reply, so every job is answered exactly once.
 */
#include "authsvc.h"
#include "server.h"
#include "routes.h"
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

static struct event_base *base;
static struct evhttp *http;
static struct evhttp_bound_socket *listener;
static struct evhttp *admin_http;       /* NULL: AUTHSVC_ADMIN_LISTEN=off */
static struct evhttp_bound_socket *admin_listener;
static struct pc_workq *workers;
static struct event *done_ev;
static pthread_mutex_t done_mu = PTHREAD_MUTEX_INITIALIZER;
static struct as_job *done_head;        /* finished jobs, LIFO is fine */
static size_t inflight;                 /* jobs out on pools (loop thread) */
static bool draining;                   /* SIGTERM seen: refuse new work */

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
    as_multi_session_after(job, w);     /* the plugin's after-hook (multi_session.c) */
    if (job->status == 0)
        as_error(job, 500, "INTERNAL_SERVER_ERROR", "handler gave no answer");
    post_done(job);
}

void as_server_to_loop(struct as_job *job, void (*fn)(struct as_job *))
{
    job->hop.fn = fn;
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

#define LOG_UA_MAX 256 /* bytes of a User-Agent the access log keeps (as the gateway) */

/* The answer's bytes as they go out: status line, headers, body. */
static uint64_t bytes_out(const struct as_job *job)
{
    uint64_t n = 17 + 2; /* "HTTP/1.1 200 OK\r\n" about, and the blank line */
    const struct evkeyvalq *oh = evhttp_request_get_output_headers(job->req);
    for (const struct evkeyval *h = oh->tqh_first; h; h = h->next.tqe_next)
        n += strlen(h->key) + 2 + strlen(h->value) + 2;
    return n + (job->out_empty ? 0 : job->out.len);
}

/* The request's bytes: its line, headers and body as evhttp parsed them. */
static uint64_t bytes_in(const struct as_job *job)
{
    const char *uri = evhttp_request_get_uri(job->req);
    uint64_t n = 8 + (uri ? strlen(uri) : 0) + 11 + 2; /* "METHOD " uri " HTTP/1.1\r\n" */
    for (size_t i = 0; i < job->nhdrs; i++)
        n += strlen(job->hdrs[i].name) + 2 + strlen(job->hdrs[i].value) + 2;
    return n + job->body_len;
}

/* One line per request; bin and bout counted before the reply went (evhttp
 * may free the request inside evhttp_send_reply). */
static void access_log(const struct as_job *job, uint64_t bin, uint64_t bout)
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
    pc_jw_key(&w, "event");
    pc_jw_str(&w, "access");
    pc_jw_key(&w, "req_id");
    pc_jw_str(&w, job->request_id);
    pc_jw_key(&w, "client_ip");
    pc_jw_str(&w, job->ip);
    pc_jw_key(&w, "method");
    pc_jw_str(&w, m);
    pc_jw_key(&w, "path");
    /* a reset link's token is a credential: never logged */
    pc_jw_str(&w, pc_starts_with(job->path, "/api/auth/reset-password/")
                      ? "/api/auth/reset-password/:token" : job->path);
    pc_jw_key(&w, "status");
    pc_jw_int(&w, job->status);
    if (job->user_id[0]) {
        pc_jw_key(&w, "user_id");
        pc_jw_str(&w, job->user_id);
    }
    if (job->cred_id[0]) {
        pc_jw_key(&w, "cred_id");
        pc_jw_str(&w, job->cred_id);
    }
    const char *ua = as_header(job, "User-Agent");
    if (ua) {
        pc_jw_key(&w, "user_agent");
        pc_jw_strn(&w, ua, strnlen(ua, LOG_UA_MAX));
    }
    pc_jw_key(&w, "bytes_in");
    pc_jw_int(&w, (int64_t)bin);
    pc_jw_key(&w, "bytes_out");
    pc_jw_int(&w, (int64_t)bout);
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
    as_cors_add(oh, job); /* origin.c */
    for (size_t i = 0; i < job->nrhdrs; i++)
        evhttp_add_header(oh, job->rhdrs[i].name, job->rhdrs[i].value);
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL)
        pc_fatal("out of memory");
    if (!job->out_empty && job->out.len)
        evbuffer_add(buf, job->out.data, job->out.len);
    as_conns_request_end(job->req);
    uint64_t bin = bytes_in(job), bout = bytes_out(job);
    evhttp_send_reply(job->req, job->status, NULL, buf);
    evbuffer_free(buf);
    as_metrics_observe(job->route, job->status, pc_mono_us() - job->start_us);
    access_log(job, bin, bout);
    job_free(job);
}

static void drained_exit(void)
{
    if (draining && inflight == 0) {
        /* Let the last replies reach their sockets before the loop ends. */
        struct timeval tv = {0, 200000};
        event_base_loopexit(base, &tv);
    }
}

static void on_floor(evutil_socket_t fd, short what, void *arg);

/* The job's answer: now, or at its floor (as_answer_floor). libevent times
 * from the time its loop turn began, so a timer may fire a little early:
 * on_floor comes back here until the floor has passed. */
static void answer(struct as_job *job)
{
    int64_t wait = job->not_before_us - pc_mono_us();
    if (wait > 0) {
        struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
        if (event_base_once(base, -1, EV_TIMEOUT, on_floor, job, &tv) == 0)
            return;
    }
    inflight--;
    send_job(job);
}

static void on_floor(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    answer(arg);
    drained_exit();
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
            void (*fn)(struct as_job *) = list->hop.fn;
            if (fn) {
                /* not an answer: the job continues on the loop (oauth_flow.c) */
                list->hop.fn = NULL;
                fn(list);
            } else {
                answer(list);
            }
            list = next;
        }
    }
    drained_exit();
}

/* ---- request intake (loop thread) ---- */

static void send_now(struct as_job *job)
{
    send_job(job);
}

static void loop_route(struct as_job *job, enum as_loop_kind kind)
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

/* The loop's answer to a local path. */
static enum as_loop_kind local_kind(enum as_local l)
{
    switch (l) {
    case AS_LOCAL_HEALTH: return LOOP_HEALTH;
    case AS_LOCAL_LIVE: return LOOP_LIVE;
    case AS_LOCAL_READY: return LOOP_READY;
    case AS_LOCAL_METRICS: return LOOP_METRICS;
    default: return LOOP_NONE;
    }
}

/* The admin listener: the local answers, nothing routed, no origin check
 * (nothing here reads a cookie or changes state). */
static void on_admin_request(struct evhttp_request *req, void *arg)
{
    struct as_job *job = job_new(req);
    if (job->method == EVHTTP_REQ_HEAD)
        job->method = EVHTTP_REQ_GET;
    enum as_loop_kind kind = local_kind(as_local_path(job->path, strlen(job->path), true));
    if (kind == LOOP_NONE) {
        as_error(job, 404, "NOT_FOUND",
                 "The admin listener serves /health, /live, /ready and /metrics");
    } else if (job->method != EVHTTP_REQ_GET) {
        as_error(job, 405, "METHOD_NOT_ALLOWED", "Only GET and HEAD are answered here");
    } else {
        loop_route(job, kind);
        return;
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
        as_cors_preflight(job); /* origin.c */
        send_now(job);
        return;
    }
    enum as_loop_kind local = local_kind(as_local_path(job->path, strlen(job->path), false));
    if (local != LOOP_NONE && job->method == EVHTTP_REQ_GET) {
        loop_route(job, local);
        return;
    }
    const struct as_route *r = as_route_match(job->method, job->path, &job->route);
    if (r == NULL) {
        if (job->route >= 0) {
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
    if (admin_listener) {
        evhttp_del_accept_socket(admin_http, admin_listener);
        admin_listener = NULL;
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
    if (as_cfg.admin_port != 0) {
        admin_http = evhttp_new(base);
        if (admin_http == NULL)
            pc_fatal("evhttp_new failed");
        evhttp_set_max_body_size(admin_http, 4096);
        evhttp_set_max_headers_size(admin_http, 16 * 1024);
        evhttp_set_timeout(admin_http, 10);
        evhttp_set_allowed_methods(admin_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
                                               EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                               EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
                                               EVHTTP_REQ_OPTIONS);
        evhttp_set_gencb(admin_http, on_admin_request, NULL);
        admin_listener = evhttp_bind_socket_with_handle(admin_http, as_cfg.admin_host,
                                                        (ev_uint16_t)as_cfg.admin_port);
        if (admin_listener == NULL) {
            fprintf(stderr, "authsvc: cannot listen on %s (AUTHSVC_ADMIN_LISTEN)\n",
                    as_cfg.admin_listen);
            evhttp_free(admin_http);
            evhttp_free(http);
            event_base_free(base);
            return 1;
        }
    }
    as_conns_start(base, http, listener);
    for (size_t i = 0; i < as_nroutes; i++)
        as_metrics_route_name(i, as_routes[i].path);
    done_ev = event_new(base, -1, EV_PERSIST, on_done, NULL);
    sig_term = evsignal_new(base, SIGTERM, on_signal, NULL);
    sig_int = evsignal_new(base, SIGINT, on_signal, NULL);
    event_add(sig_term, NULL);
    event_add(sig_int, NULL);

    /* Start-up order: health prober (so /ready is right from the start),
     * password pool, request workers; then serve. */
    as_health_start();
    as_listener_start();
    as_mailer_start();
    struct pc_db jdb;
    pc_db_init(&jdb, as_cfg.database_url);
    if (as_jwt_init(&jdb) != 0)
        pc_log_warn("jwt: no signing key yet (database unavailable); will retry on use");
    pc_db_close(&jdb);
    as_oauth_start(base);
    as_pwpool_start();
    workers = pc_workq_new("as-worker", (int)as_cfg.workers, (size_t)as_cfg.job_queue,
                           worker_dispatch, worker_init, worker_fini, NULL);
    pc_log_info("authsvc listening on %s (workers %lld, base URL %s, at most %lld connections), "
                "admin on %s", as_cfg.listen, (long long)as_cfg.workers, as_cfg.base_url,
                (long long)as_conns_max(), as_cfg.admin_port ? as_cfg.admin_listen : "no listener");

    event_base_dispatch(base);

    /* Shutdown: pools finish what they hold, then answer what came back. */
    pc_log_info("authsvc stopping");
    as_pwpool_stop();
    pc_workq_free(workers);
    as_oauth_stop();    /* after the workers: answers what waits on providers */
    on_done(-1, 0, NULL);
    as_listener_stop();
    as_mailer_stop();
    as_health_stop();
    as_jwt_free();
    event_free(sig_term);
    event_free(sig_int);
    event_free(done_ev);
    evhttp_free(http);
    if (admin_http)
        evhttp_free(admin_http);
    as_conns_free();
    event_base_free(base);
    libevent_global_shutdown();
    return 0;
}
