/* Portcullis - MIT licence. See LICENSE.
 *
 * server.c: the gateway's workers and request intake.
 *
 * Each worker is a thread with its own event_base and its own SO_REUSEPORT
 * listener (client.c accepts and reads on it), so the kernel spreads
 * connections over the cores and no lock is taken on the request path
 * except L1's shard lock. A worker owns its Redis connection (l2redis.c),
 * PostgreSQL pool (pgstore.c) and upstream pools (proxy.c). Requests parked
 * on a lookup another worker runs come back through the worker's inbox
 * (gw_wake).
 *
 * Intake (gw_intake): request id, the path (refused when the router and an
 * upstream could read it differently), local routes: /health, /live,
 * /ready, /_stats, /metrics; GET /_auth is forward auth. Everything else
 * enters gw_advance at GW_STAGE_ROUTE.
 */
#include "gateway.h"
#include "../lib/http.h"
#include "../lib/json.h"
#include "../lib/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netdb.h>
#include <event2/event.h>

struct gw_stats gw_stats;

/* ---- answers ---- */

void gw_request_finish(struct gw_request *r)
{
    r->w->active--;
    if (!gw_stopping)
        gw_metrics_observe(r);
    gw_client_request_done(r);
    pc_wipe(r->cred, r->cred_len);
    free(r->path);
    free(r->query);
    free(r->upstream_path);
    free(r->upstream_jwt);
    free(r);
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
    if (r->outcome == NULL)
        r->outcome = code;
    struct pc_buf *h = gw_resp_begin(r, status, NULL);
    gw_hdr_append(h, "Content-Type", "application/json");
    gw_hdr_append(h, "X-Request-Id", r->request_id);
    if (status == 401)
        gw_hdr_append(h, "WWW-Authenticate", "Bearer realm=\"portcullis\"");
    if (r->retry_after > 0) {
        char secs[24];
        snprintf(secs, sizeof secs, "%d", r->retry_after);
        gw_hdr_append(h, "Retry-After", secs);
    }
    gw_resp_end_head(r, (int64_t)b.len, true);
    gw_resp_body(r, b.data, b.len);
    gw_resp_send(r);
    pc_buf_free(&b);
    gw_request_finish(r);
}

const char *gw_header(const struct gw_request *r, const char *name)
{
    return pc_http_get(r->head, name);
}

size_t gw_header_all(const struct gw_request *r, const char *name, const char **out, size_t max)
{
    const struct pc_http_head *h = r->head;
    size_t nl = strlen(name), k = 0;
    for (size_t i = 0; i < h->nh; i++) {
        if (h->h[i].nlen != nl || strncasecmp(h->h[i].name, name, nl) != 0)
            continue;
        if (k < max)
            out[k] = h->h[i].value;
        k++;
    }
    return k;
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
    gw_reply(r, status, "application/json", b->data, b->len);
    pc_buf_free(b);
    gw_request_finish(r);
}

static struct gw_worker *workers;
static size_t nworkers;

static void metrics_route(struct gw_request *r)
{
    struct pc_buf b = {0};
    gw_metrics_render(workers, nworkers, &b);
    gw_reply(r, 200, "text/plain; version=0.0.4", b.data, b.len);
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
    STAT(accept_errors);
    STAT(conns_refused_max);
    STAT(conns_refused_ip);
    STAT(head_timeouts);
    STAT(conns_open);
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
static void new_request_id(const struct gw_worker *w, char out[72])
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

/* Refuses paths that the router and an upstream could read differently: a
 * dot segment ("/public/../admin"), also percent-encoded, an encoded slash
 * or backslash, a backslash, an empty segment ("//admin" is not under "/"'s
 * neighbour "/admin/" here but may be upstream), an encoded NUL. */
bool gw_path_plain(const char *p)
{
    for (const char *seg = p + 1;;) {
        size_t n = strcspn(seg, "/");
        size_t dots = 0, chars = 0;
        for (size_t i = 0; i < n; i++, chars++) {
            char ch = seg[i];
            if (ch == '\\')
                return false;
            if (ch == '%' && i + 2 < n) {
                char x = seg[i + 1], y = (char)(seg[i + 2] | 0x20);
                if (x == '2' && y == 'e') {
                    dots++;
                    i += 2;
                    continue;
                }
                if ((x == '2' && y == 'f') || (x == '5' && y == 'c') || (x == '0' && y == '0'))
                    return false;
            }
            if (ch == '.')
                dots++;
        }
        if (n > 0 && chars == dots && dots <= 2)
            return false; /* "." or ".." */
        if (seg[n] == '\0')
            return true;
        if (n == 0)
            return false; /* "//" */
        seg += n + 1;
    }
}

void gw_request_id(struct gw_request *r)
{
    const char *rid = gw_header(r, "X-Request-Id");
    if (rid && request_id_ok(rid)) {
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    } else {
        new_request_id(r->w, r->request_id);
    }
}

void gw_intake(struct gw_request *r)
{
    gw_request_id(r);
    /* origin-form, or absolute-form ("http://host/path") as proxies send */
    const char *t = r->head->target;
    if (t[0] != '/') {
        const char *s = strstr(t, "://");
        if (s == NULL || s == t || strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+-.") !=
                                       (size_t)(s - t)) {
            r->path = pc_xstrdup("/");
            gw_fail(r, 400, "BAD_REQUEST", "Request target must be an absolute path");
            return;
        }
        t = s + 3 + strcspn(s + 3, "/?#");
    }
    size_t pl = strcspn(t, "?#");
    r->path = pl ? pc_xstrndup(t, pl) : pc_xstrdup("/");
    if (t[pl] == '?') {
        size_t ql = strcspn(t + pl + 1, "#");
        r->query = pc_xstrndup(t + pl + 1, ql);
    }
    const char *path = r->path;
    if (!gw_path_plain(path)) {
        gw_fail(r, 400, "BAD_PATH",
                "The path holds a dot segment, an empty segment or an encoded separator");
        return;
    }
    if (path[1] == '_' || strcmp(path, "/health") == 0 || strcmp(path, "/live") == 0 ||
        strcmp(path, "/ready") == 0 || strcmp(path, "/metrics") == 0) {
        if (gw_forward_auth_target(path)) {
            r->forward_auth = true; /* r->path is replaced by the original URI in route.c */
            gw_advance(r);
            return;
        }
        bool stats = strcmp(path, "/_stats") == 0 || strcmp(path, "/metrics") == 0;
        if ((strcmp(r->method, "GET") == 0 || r->head_method) &&
            (strcmp(path, "/health") == 0 || strcmp(path, "/live") == 0 ||
             strcmp(path, "/ready") == 0 || (stats && gw_cfg.metrics))) {
            health_route(r, path);
            return;
        }
    }
    gw_advance(r);
}

/* ---- listeners and workers ---- */

static int listen_socket(void)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    char port[16];
    snprintf(port, sizeof port, "%d", gw_cfg.listen_port);
    if (getaddrinfo(gw_cfg.listen_host, port, &hints, &ai) != 0 || ai == NULL) {
        hints.ai_flags = AI_PASSIVE;
        if (getaddrinfo(gw_cfg.listen_host, port, &hints, &ai) != 0 || ai == NULL)
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
        freeaddrinfo(ai);
        errno = e;
        return -1;
    }
    freeaddrinfo(ai);
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

/* Every 100 ms: the access log, client and upstream timeouts. Once
 * stopping, close the listener, then leave the loop when the worker's last
 * request has been answered (or the bound is reached). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    gw_access_flush(w);
    gw_clients_tick(w, stopping);
    gw_proxy_tick(w);
    if (!stopping)
        return;
    if (w->listen_fd != -1) {
        gw_clients_stop_accepting(w);
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
    if (w->base == NULL)
        pc_fatal("libevent init failed");
    w->listen_fd = listen_socket();
    if (w->listen_fd == -1) {
        fprintf(stderr, "gateway: cannot listen on %s (GATEWAY_LISTEN): %s\n", gw_cfg.listen,
                strerror(errno));
        return -1;
    }
    gw_clients_start(w);
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
    gw_clients_init();
    size_t n = (size_t)gw_cfg.workers;
    workers = pc_xcalloc(n, sizeof *workers);
    nworkers = n;
    for (size_t i = 0; i < n; i++) {
        if (worker_init(&workers[i], (unsigned)i) != 0)
            return 1;
        struct timeval tv = {0, 100000};
        stop_timers[i % 256] = event_new(workers[i].base, -1, EV_PERSIST, on_tick, &workers[i]);
        event_add(stop_timers[i % 256], &tv);
    }
    gw_revocation_start();
    gw_jwks_start();
    gw_usage_start();
    for (size_t i = 0; i < n; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            pc_fatal("pthread_create failed");
    pc_log_info("gateway listening on %s (%zu workers, %zu routes, at most %lld connections)",
                gw_cfg.listen, n, gw_cfg.nroutes, (long long)gw_clients_max());

    int sig = 0;
    sigwait(&set, &sig);
    pc_log_info("signal %d: stopping", sig);
    stopping = 1;
    for (size_t i = 0; i < n; i++)
        pthread_join(workers[i].thread, NULL);
    /* Loops are stopped. From here every pending callback ends its request
     * without answering; gw_clients_free then closes the client connections. */
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
        gw_clients_stop_accepting(w);
        gw_clients_free(w);
        event_free(w->inbox_ev);
        gw_metrics_free(w);
        gw_mint_free(w);
        event_base_free(w->base);
        pthread_mutex_destroy(&w->inbox_mu);
    }
    free(workers);
    gw_clients_fini();
    gw_flights_free();
    gw_jwks_free();
    gw_l1_free();
    return 0;
}
