/* Portcullis - MIT licence. See LICENSE.
 *
 * server.c: the gateway's workers and HTTP front.
 *
 * Each worker is a thread with its own event_base and evhttp on its own
 * SO_REUSEPORT listener, so the kernel spreads connections over the cores
 * and no lock is taken on the request path except L1's shard lock. A worker
 * owns its Redis connection (l2redis.c), PostgreSQL pool (pgstore.c) and
 * upstream pools (proxy.c). Requests parked on a lookup another worker runs
 * come back through the worker's inbox (gw_wake).
 *
 * Local routes: /health, /live, /ready, /_stats; GET /_auth is forward auth.
 * Everything else enters gw_advance at GW_STAGE_ROUTE.
 */
#include "gateway.h"
#include "../lib/json.h"
#include "../lib/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

struct gw_stats gw_stats;

/* ---- answers ---- */

void gw_request_finish(struct gw_request *r)
{
    r->w->active--;
    if (!gw_stopping)
        gw_metrics_observe(r);
    pc_wipe(r->cred, r->cred_len);
    free(r->path);
    free(r->query);
    free(r->upstream_path);
    free(r->upstream_jwt);
    free(r);
}

static void reply_json(struct gw_request *r, int status, const char *body, size_t n)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(oh, "Content-Type", "application/json");
    evhttp_add_header(oh, "X-Request-Id", r->request_id);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        pc_fatal("out of memory");
    evbuffer_add(b, body, n);
    r->status = status;
    evhttp_send_reply(r->req, status, NULL, b);
    evbuffer_free(b);
}

void gw_fail(struct gw_request *r, int status, const char *code, const char *msg)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "message");
    pc_jw_str(&w, msg);
    pc_jw_key(&w, "code");
    pc_jw_str(&w, code);
    pc_jw_key(&w, "requestId");
    pc_jw_str(&w, r->request_id);
    pc_jw_obj_end(&w);
    if (status == 401) {
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "WWW-Authenticate",
                          "Bearer realm=\"portcullis\"");
    }
    if (r->outcome == NULL)
        r->outcome = code;
    reply_json(r, status, b.data, b.len);
    pc_buf_free(&b);
    gw_request_finish(r);
}

/* ---- cross-thread wake-ups ---- */

void gw_wake(struct gw_request *r)
{
    struct gw_worker *w = r->w;
    pthread_mutex_lock(&w->inbox_mu);
    r->next_wake = w->inbox;
    w->inbox = r;
    pthread_mutex_unlock(&w->inbox_mu);
    event_active(w->inbox_ev, EV_READ, 0);
}

static void on_inbox(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    pthread_mutex_lock(&w->inbox_mu);
    struct gw_request *list = w->inbox;
    w->inbox = NULL;
    pthread_mutex_unlock(&w->inbox_mu);
    while (list) {
        struct gw_request *r = list;
        list = r->next_wake;
        w->parked--;
        gw_advance(r);
    }
}

/* ---- local routes ---- */

static void local_reply(struct gw_request *r, int status, struct pc_buf *b)
{
    reply_json(r, status, b->data, b->len);
    pc_buf_free(b);
    gw_request_finish(r);
}

static struct gw_worker *workers;
static size_t nworkers;

static void metrics_route(struct gw_request *r)
{
    struct pc_buf b = {0};
    gw_metrics_render(workers, nworkers, &b);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    evhttp_add_header(oh, "Content-Type", "text/plain; version=0.0.4");
    struct evbuffer *out = evbuffer_new();
    if (out == NULL)
        pc_fatal("out of memory");
    evbuffer_add(out, b.data, b.len);
    r->status = 200;
    evhttp_send_reply(r->req, 200, "OK", out);
    evbuffer_free(out);
    pc_buf_free(&b);
    gw_request_finish(r);
}

static void health_route(struct gw_request *r, const char *path)
{
    struct pc_buf b = {0};
    if (strcmp(path, "/metrics") == 0) {
        metrics_route(r);
        return;
    }
    if (strcmp(path, "/health") == 0 || strcmp(path, "/live") == 0) {
        pc_buf_puts(&b, "{\"status\":\"ok\"}");
        local_reply(r, 200, &b);
        return;
    }
    if (strcmp(path, "/ready") == 0) {
        bool pg = gw_pg_up(r->w), rd = gw_l2_up(r->w), feed = gw_revocation_up();
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
    pc_jw_obj_begin(&jw);
#define STAT(name)                                                          \
    pc_jw_key(&jw, #name);                                                  \
    pc_jw_int(&jw, (int64_t)__atomic_load_n(&gw_stats.name, __ATOMIC_RELAXED))
    STAT(requests);
    STAT(l1_hits);
    STAT(l1_negative_hits);
    STAT(l2_hits);
    STAT(pg_queries);
    STAT(pg_errors);
    STAT(redis_errors);
    STAT(revocations);
    STAT(l1_flushes);
    STAT(upstream_errors);
    STAT(upstream_timeouts);
    STAT(upstream_cancels);
    STAT(rate_limited);
    STAT(usage_exceeded);
    STAT(usage_flushes);
#undef STAT
    pc_jw_key(&jw, "l1_entries");
    pc_jw_int(&jw, (int64_t)gw_l1_count());
    pc_jw_obj_end(&jw);
    local_reply(r, 200, &b);
}

/* ---- intake ---- */

static bool request_id_ok(const char *s)
{
    return pc_token_chars(s, 64, "-_.");
}

/* A new request id: 16 random bytes fixed per worker, then a counter, as
 * 32 hex characters. Unique without a syscall or a lock per request. */
static void new_request_id(struct gw_worker *w, char out[72])
{
    static __thread unsigned char seed[8];
    static __thread uint64_t counter;
    if (counter == 0)
        pc_random_bytes(seed, sizeof seed);
    counter++;
    unsigned char id[16];
    memcpy(id, seed, 8);
    for (int i = 0; i < 8; i++)
        id[15 - i] = (unsigned char)(counter >> (8 * i));
    pc_hex_encode(id, sizeof id, out);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct gw_worker *w = arg;
    w->active++;
    /* Zero the small fields only: cred and p are written before use. */
    struct gw_request *r = pc_xmalloc(sizeof *r);
    memset(r, 0, offsetof(struct gw_request, p));
    r->p.found = false;
    r->cred[0] = '\0';
    r->w = w;
    r->req = req;
    r->start_us = pc_mono_us();
    GW_STAT_INC(requests);

    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    const char *rid = evhttp_find_header(ih, "X-Request-Id");
    if (rid && request_id_ok(rid)) {
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    } else {
        new_request_id(w, r->request_id);
    }
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
    snprintf(r->client_ip, sizeof r->client_ip, "%s", addr ? addr : "");

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || path[0] != '/') {
        r->path = pc_xstrdup("/");
        gw_fail(r, 400, "BAD_REQUEST", "Request target must be an absolute path");
        return;
    }
    const char *q = evhttp_uri_get_query(uri);
    r->query = q ? pc_xstrdup(q) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);

    if (path[1] == '_' || strcmp(path, "/health") == 0 || strcmp(path, "/live") == 0 ||
        strcmp(path, "/ready") == 0 || strcmp(path, "/metrics") == 0) {
        if (strcmp(path, "/_auth") == 0) {
            r->forward_auth = true;
            r->path = pc_xstrdup(path); /* replaced by the original URI in route.c */
            gw_advance(r);
            return;
        }
        bool stats = strcmp(path, "/_stats") == 0 || strcmp(path, "/metrics") == 0;
        if (m == EVHTTP_REQ_GET && (strcmp(path, "/health") == 0 || strcmp(path, "/live") == 0 ||
                                    strcmp(path, "/ready") == 0 || (stats && gw_cfg.metrics))) {
            r->path = pc_xstrdup(path);
            health_route(r, path);
            return;
        }
    }
    r->path = pc_xstrdup(path);
    size_t hdr_bytes = 0;
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next)
        hdr_bytes += strlen(kv->key) + strlen(kv->value) + 4;
    if ((int64_t)hdr_bytes > gw_cfg.max_headers) {
        gw_fail(r, 431, "HEADERS_TOO_LARGE", "Request headers are too large");
        return;
    }
    if ((int64_t)evbuffer_get_length(evhttp_request_get_input_buffer(req)) > gw_cfg.max_body) {
        gw_fail(r, 413, "PAYLOAD_TOO_LARGE", "Request body is too large");
        return;
    }
    gw_advance(r);
}

/* ---- listeners and workers ---- */

static int listen_socket(void)
{
    struct evutil_addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICHOST;
    char port[16];
    snprintf(port, sizeof port, "%d", gw_cfg.listen_port);
    if (evutil_getaddrinfo(gw_cfg.listen_host, port, &hints, &ai) != 0 || ai == NULL) {
        hints.ai_flags = EVUTIL_AI_PASSIVE;
        if (evutil_getaddrinfo(gw_cfg.listen_host, port, &hints, &ai) != 0 || ai == NULL)
            return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == -1 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 || listen(fd, 1024) == -1) {
        int e = errno;
        if (fd != -1)
            close(fd);
        evutil_freeaddrinfo(ai);
        errno = e;
        return -1;
    }
    evutil_freeaddrinfo(ai);
    return fd;
}

static volatile sig_atomic_t stopping;

static void *worker_main(void *arg)
{
    struct gw_worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

#define DRAIN_MS 10000 /* bound on finishing in-flight requests at shutdown */

/* Every 100 ms: once stopping, close the listener, then leave the loop when
 * the worker's last request has been answered (or the bound is reached). */
static void on_stop_check(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    gw_access_flush(w);
    if (!stopping)
        return;
    if (w->listener) {
        evhttp_del_accept_socket(w->http, w->listener); /* closes the socket */
        w->listener = NULL;
        w->drain_deadline = pc_mono_us() + DRAIN_MS * 1000LL;
    }
    if (w->active == 0 || pc_mono_us() >= w->drain_deadline) {
        if (w->active)
            pc_log_warn("worker %u: %zu request(s) cut at shutdown", w->id, w->active);
        event_base_loopexit(w->base, NULL);
    }
}

static int worker_init(struct gw_worker *w, unsigned id)
{
    w->id = id;
    pthread_mutex_init(&w->inbox_mu, NULL);
    /* The changelist folds the many add/remove calls libevent makes per
     * request into one epoll_ctl per fd per loop iteration. */
    struct event_config *ec = event_config_new();
    if (ec == NULL)
        pc_fatal("out of memory");
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    w->http = w->base ? evhttp_new(w->base) : NULL;
    if (w->http == NULL)
        pc_fatal("libevent init failed");
    /* libevent's own limits sit above ours so that most oversized requests
     * get our JSON 413/431; beyond them libevent answers 400/413 itself. */
    evhttp_set_max_body_size(w->http, (ev_ssize_t)(gw_cfg.max_body + 1024 * 1024));
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)(gw_cfg.max_headers + 256 * 1024));
    evhttp_set_timeout(w->http, 120);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(w->http, on_request, w);
    w->listen_fd = listen_socket();
    if (w->listen_fd == -1) {
        fprintf(stderr, "gateway: cannot listen on %s (GATEWAY_LISTEN): %s\n", gw_cfg.listen,
                strerror(errno));
        return -1;
    }
    w->listener = evhttp_accept_socket_with_handle(w->http, w->listen_fd);
    if (w->listener == NULL)
        pc_fatal("evhttp_accept_socket failed");
    w->inbox_ev = event_new(w->base, -1, EV_PERSIST, on_inbox, w);
    gw_metrics_init(w);
    gw_l2_start(w);
    gw_pg_start(w);
    gw_proxy_init(w);
    return 0;
}

static struct event *stop_timers[256];

int gw_server_run(void)
{
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Workers never see the signals; main waits for them below. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    gw_l1_init((size_t)gw_cfg.l1_max);
    gw_flights_init();
    size_t n = (size_t)gw_cfg.workers;
    workers = pc_xcalloc(n, sizeof *workers);
    nworkers = n;
    for (size_t i = 0; i < n; i++) {
        if (worker_init(&workers[i], (unsigned)i) != 0)
            return 1;
        struct timeval tv = {0, 100000};
        stop_timers[i % 256] = event_new(workers[i].base, -1, EV_PERSIST, on_stop_check,
                                         &workers[i]);
        event_add(stop_timers[i % 256], &tv);
    }
    gw_revocation_start();
    gw_jwks_start();
    gw_usage_start();
    for (size_t i = 0; i < n; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            pc_fatal("pthread_create failed");
    pc_log_info("gateway listening on %s (%zu workers, %zu routes)", gw_cfg.listen, n,
                gw_cfg.nroutes);

    int sig = 0;
    sigwait(&set, &sig);
    pc_log_info("signal %d: stopping", sig);
    stopping = 1;
    for (size_t i = 0; i < n; i++)
        pthread_join(workers[i].thread, NULL);
    /* Loops are stopped. From here every pending callback ends its request
     * without answering; evhttp_free then closes the client connections. */
    gw_stopping = 1;
    gw_jwks_stop();                  /* requests parked on a JWKS fetch go to inboxes */
    gw_revocation_stop();
    gw_usage_stop();
    for (size_t i = 0; i < n; i++)
        gw_proxy_stop(&workers[i]);
    for (size_t i = 0; i < n; i++)
        gw_pg_stop(&workers[i]);     /* lands every flight: waiters go to inboxes */
    for (size_t i = 0; i < n; i++)
        gw_l2_stop(&workers[i]);     /* pending GETs call back with NULL */
    for (size_t i = 0; i < n; i++) {
        struct gw_worker *w = &workers[i];
        while (w->inbox) {
            struct gw_request *r = w->inbox;
            w->inbox = r->next_wake;
            gw_request_finish(r);
        }
        event_free(stop_timers[i % 256]);
        evhttp_free(w->http); /* closes the listener if still open */
        event_free(w->inbox_ev);
        gw_metrics_free(w);
        gw_mint_free(w);
        event_base_free(w->base);
        pthread_mutex_destroy(&w->inbox_mu);
    }
    free(workers);
    gw_flights_free();
    gw_jwks_free();
    gw_l1_free();
    return 0;
}
