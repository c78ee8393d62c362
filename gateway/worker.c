/* Portcullis - MIT licence. See LICENSE.
 *
 * worker.c: the gateway's worker threads, and the order in which
 * everything starts and stops.
 *
 * Each worker is a thread with its own event_base and its own SO_REUSEPORT
 * listener (front.c accepts and reads on it), so the kernel spreads
 * connections over the cores and no lock is taken on the request path
 * except L1's shard lock. A worker owns its Redis connection (l2redis.c),
 * PostgreSQL pool (pgpool.c) and upstream pools (upstream.c), and a tick
 * event (w->tick_ev, every 100 ms) for the access log and the timeouts.
 * Requests parked on a lookup another thread runs come back through the
 * worker's inbox (request.c).
 */
#include "worker.h"
#include "config.h"
#include "tls_front.h"
#include "ocsp_staple.h"
#include "front.h"
#include "request.h"
#include "cache.h"
#include "store.h"
#include "jwt.h"
#include "limits.h"
#include "feed.h"
#include "metrics.h"
#include "proxy.h"
#include "upstream.h"
#include "streams.h"
#include "../lib/log.h"
#include "../lib/redis_async.h"

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

static struct gw_worker *workers;
static size_t nworkers;

struct gw_worker *gw_workers(size_t *n)
{
    *n = nworkers;
    return workers;
}

/* ---- listeners and workers ---- */

/* A listening socket on host:port; reuseport: one per worker, the kernel
 * spreading connections (the admin listener is one socket, so a second
 * process on its port fails instead of sharing it). */
static int listen_socket(const char *host, int portno, bool reuseport)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    char port[16];
    snprintf(port, sizeof port, "%d", portno);
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
        hints.ai_flags = AI_PASSIVE;
        if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL)
            return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd == -1 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == -1) ||
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

/* A reload published a table: w moves to it now (its pools for new
 * upstreams too), so the old one is freed once its own requests end, even
 * if no new request comes to w. */
static void on_reload(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    struct gw_table *t = gw_table_adopt(w);
    if (t->nupstreams > w->npools)
        gw_proxy_grow(w, t->nupstreams);
}

/* Every 100 ms: the access log, client, upstream and queued-query
 * timeouts. Once stopping, close the listener, then leave the loop when the
 * worker's last request has been answered (or the bound is reached). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    gw_access_flush(w);
    gw_pg_tick(w);
    gw_front_tick(w, stopping);
    gw_proxy_tick(w);
    if (!stopping)
        return;
    if (w->listen_fd != -1) {
        gw_front_stop_accepting(w);
        gw_streams_drain(w);         /* open tunnels get close 1001 */
        w->drain_deadline = pc_mono_us() + DRAIN_MS * 1000LL;
    }
    if (w->active == 0 || pc_mono_us() >= w->drain_deadline) {
        if (w->active)
            pc_log_warn("worker %u: %zu request(s) cut at shutdown", w->id, w->active);
        event_base_loopexit(w->base, NULL);
    }
}

/* The worker's Redis connection came up, broke or hung. */
static void on_redis(void *arg, enum pc_ra_event ev)
{
    if (ev == PC_RA_CONNECTED)
        GW_STAT_INC(redis_connects);
    else
        GW_STAT_INC(redis_errors);
}

static int worker_init(struct gw_worker *w, unsigned id)
{
    w->id = id;
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
    w->listen_fd = listen_socket(gw_cfg.listen_host, gw_cfg.listen_port, true);
    if (w->listen_fd == -1) {
        fprintf(stderr, "gateway: cannot listen on %s (GATEWAY_LISTEN): %s\n", gw_cfg.listen,
                strerror(errno));
        return -1;
    }
    w->http_fd = -1;
    if (gw_cfg.http_port != 0) {
        w->http_fd = listen_socket(gw_cfg.http_host, gw_cfg.http_port, true);
        if (w->http_fd == -1) {
            fprintf(stderr, "gateway: cannot listen on %s (GATEWAY_HTTP_LISTEN): %s\n",
                    gw_cfg.http_listen, strerror(errno));
            return -1;
        }
    }
    w->admin_fd = -1;
    if (id == 0 && gw_cfg.admin_port != 0) {
        w->admin_fd = listen_socket(gw_cfg.admin_host, gw_cfg.admin_port, false);
        if (w->admin_fd == -1) {
            fprintf(stderr, "gateway: cannot listen on %s (GATEWAY_ADMIN_LISTEN): %s\n",
                    gw_cfg.admin_listen, strerror(errno));
            return -1;
        }
    }
    gw_front_start(w);
    gw_inbox_start(w);
    gw_metrics_init(w);
    struct pc_ra_opts ro = {.addr = &gw_cfg.redis_addr, .deadline_ms = gw_cfg.redis_deadline_ms,
                            .log = id == 0, .notify = on_redis, .arg = w};
    w->redis = pc_ra_new(w->base, &ro);
    gw_pg_start(w);
    gw_streams_init(w);
    gw_table_worker_start(w);
    gw_proxy_init(w);
    w->reload_ev = event_new(w->base, -1, 0, on_reload, w);
    w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    if (w->tick_ev == NULL || w->reload_ev == NULL)
        pc_fatal("event_new failed");
    struct timeval tv = {0, 100000};
    event_add(w->tick_ev, &tv);
    return 0;
}

/* SIGHUP: the routes file again. A table with any error is not used: the
 * current one stays, and the error says where. */
static void reload(void)
{
    char err[600];
    if (gw_tls_front_load(err, sizeof err) != 0) {
        GW_STAT_INC(reloads_failed);
        pc_log_error("reload: the TLS certificate in use stays: %s", err);
    } else if (gw_tls_front_on()) {
        pc_log_info("reload: TLS certificate read again from %s", gw_cfg.tls_cert);
    }
    int64_t t0 = pc_mono_us();
    uint64_t gen = gw_cfg.table->gen;
    if (gw_routes_load(err, sizeof err) != 0) {
        GW_STAT_INC(reloads_failed);
        pc_log_error("reload refused, the routes in use stay (generation %llu): %s",
                     (unsigned long long)gen, err);
        return;
    }
    GW_STAT_INC(reloads);
    gw_jwks_reloaded();
    for (size_t i = 0; i < nworkers; i++)
        event_active(workers[i].reload_ev, 0, 0); /* let go of the old table now */
    const struct gw_table *t = gw_cfg.table;
    pc_log_info("reloaded %s: %zu routes, %zu JWT issuers (generation %llu) in %lld us",
                gw_cfg.routes_file[0] ? gw_cfg.routes_file : "UPSTREAM_URL", t->nroutes,
                t->nissuers, (unsigned long long)t->gen, (long long)(pc_mono_us() - t0));
}

int gw_worker_run(void)
{
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* Workers never see the signals; main waits for them below. */
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    gw_l1_init((size_t)gw_cfg.l1_max);
    gw_flights_init();
    gw_front_init();
    size_t n = (size_t)gw_cfg.workers;
    workers = pc_xcalloc(n, sizeof *workers);
    nworkers = n;
    for (size_t i = 0; i < n; i++) {
        if (worker_init(&workers[i], (unsigned)i) != 0)
            return 1;
    }
    gw_revocation_start();
    gw_jwks_start();
    gw_usage_start();
    gw_ocsp_start();
    for (size_t i = 0; i < n; i++)
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0)
            pc_fatal("pthread_create failed");
    pc_log_info("gateway listening on %s (%zu workers, %zu routes, at most %lld connections), "
                "admin on %s", gw_cfg.listen, n, gw_cfg.table->nroutes, (long long)gw_front_max_conns(),
                gw_cfg.admin_port ? gw_cfg.admin_listen : "no listener");

    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
        reload();
    pc_log_info("signal %d: stopping", sig);
    stopping = 1;
    for (size_t i = 0; i < n; i++)
        pthread_join(workers[i].thread, NULL);
    /* Loops are stopped. From here every pending callback ends its request
     * without answering; gw_front_free then closes the client connections. */
    gw_stopping = 1;
    gw_jwks_stop();                  /* requests parked on a JWKS fetch go to inboxes */
    gw_revocation_stop();
    gw_usage_stop();
    gw_ocsp_stop();
    for (size_t i = 0; i < n; i++) {
        gw_resolve_stop(&workers[i]);    /* name lookups still due are dropped */
        gw_proxy_stop(&workers[i]);
    }
    for (size_t i = 0; i < n; i++)
        gw_pg_stop(&workers[i]);     /* lands every flight: waiters go to inboxes */
    for (size_t i = 0; i < n; i++)
        pc_ra_free(workers[i].redis);    /* pending commands call back: "closed" */
    for (size_t i = 0; i < n; i++) {
        struct gw_worker *w = &workers[i];
        gw_inbox_stop(w);
        event_free(w->tick_ev);
        event_free(w->reload_ev);
        gw_front_stop_accepting(w);
        gw_front_free(w);
        gw_table_worker_stop(w);     /* its requests have ended */
        gw_metrics_free(w);
        gw_mint_free(w);
        gw_streams_stop(w);          /* after the feed stopped and every stream ended */
        event_base_free(w->base);
    }
    free(workers);
    gw_front_fini();
    gw_flights_free();
    gw_jwks_free();
    gw_l1_free();
    return 0;
}
