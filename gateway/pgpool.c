/* Portcullis - MIT licence. See LICENSE.
 *
 * pgpool.c: each worker's PostgreSQL pool (pgpool.h): GATEWAY_PG_POOL
 * non-blocking libpq connections on its loop. A query waits in a bounded
 * FIFO (GATEWAY_PENDING_MAX) for a free connection, at most
 * GATEWAY_PG_TIMEOUT_MS; running, it has the same timeout, after which its
 * connection is dropped. Either way it completes without an answer, never
 * as "unknown". A query that
 * leaves the queue may take later queued ones along (absorb: pgstore.c's
 * lookups, one "= ANY($1)" for the misses that queued together). Dropped
 * connections come back with back-off. What the queries are, and what
 * their rows mean, is pgstore.c's.
 *
 * With DATABASE_READ_URL a worker has a second pool on the replicas (its
 * connections spread over them). Each replica connection measures its own
 * lag on connect and every LAG_CHECK_MS; one lagging more than
 * READ_MAX_LAG_MS takes no lookups. When no replica connection can take a
 * query (all down or lagging), it goes to the primary's pool instead.
 */
#include "pgpool.h"
#include "store.h"
#include "metrics.h"
#include "../lib/log.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <libpq-fe.h>

enum pgc_state { PGC_DOWN = 0, PGC_CONNECTING, PGC_IDLE, PGC_BUSY };

#define LAG_CHECK_MS 500    /* how often a replica connection measures its lag */

struct pgc {
    struct gw_pg *pool;
    const char *url;                /* the server it connects to */
    bool lagging;                   /* a replica behind READ_MAX_LAG_MS (or not measured yet) */
    int64_t lag_at;                 /* when its lag was last asked, ms */
    struct gw_pgq lagq;             /* the lag query (read pools) */
    PGconn *conn;
    enum pgc_state st;
    struct event *io;               /* socket readiness */
    struct event *timer;            /* connect retry or query timeout */
    struct gw_pgq *q;             /* running query */
    PGresult *first;                /* its first result, until libpq has no more */
    int64_t retry_at;
    int fails;
};

struct gw_pg {
    struct gw_worker *w;
    struct pgc *conns;
    size_t n;
    struct gw_pg *fallback;         /* a read pool: the primary's, for what it cannot take */
    struct event *lag_ev;           /* a read pool: the lag checks */
    struct event *pump_ev;          /* pump() on the next loop turn (pump_soon) */
    struct gw_pgq *head, *tail;   /* waiting queries */
    size_t depth;
};

static void pgc_connect(struct pgc *c);
static void pump(struct gw_pg *pg);
static void pump_soon(struct gw_pg *pg);
static void lag_check(struct pgc *c);

/* Completes q without an answer (timeout, lost connection, no
 * connection, queue full). */
static void no_answer(struct gw_pgq *q)
{
    q->done(q, NULL, false);
}

/* Drops c's connection. One that was established and died (a server
 * restart) reconnects at once; failed connects back off. */
static void pgc_drop(struct pgc *c, const char *why)
{
    bool was_up = c->st == PGC_IDLE || c->st == PGC_BUSY;
    if (!gw_stopping && c->q == NULL)
        GW_STAT_INC(pg_errors); /* a lost connection or a failed connect */
    if (c->conn && !gw_stopping) {
        if (c->pool->w->id == 0 || c->st != PGC_CONNECTING)
            pc_log_warn("postgres: %s: %s", why, PQerrorMessage(c->conn));
    }
    if (c->first) {
        PQclear(c->first);
        c->first = NULL;
    }
    if (c->conn) {
        PQfinish(c->conn);
    }
    c->conn = NULL;
    if (c->io) {
        event_free(c->io);
        c->io = NULL;
    }
    evtimer_del(c->timer);
    c->st = PGC_DOWN;
    if (c->pool->fallback)
        c->lagging = true;      /* a replica is measured again when it is back */
    if (was_up) {
        c->fails = 0;
        c->retry_at = pc_now_ms();
    } else {
        c->fails++;
        int64_t wait = 50LL << (c->fails < 5 ? c->fails : 5);
        c->retry_at = pc_now_ms() + (wait > 1000 ? 1000 : wait);
    }
    if (c->q) {
        struct gw_pgq *q = c->q;
        c->q = NULL;
        GW_STAT_INC(pg_errors);
        no_answer(q);
    }
    if (!gw_stopping) {
        struct timeval tv = {0, (suseconds_t)((c->retry_at - pc_now_ms()) * 1000)};
        evtimer_add(c->timer, &tv);
        /* queries waiting for this connection may have nowhere left to go
         * (the primary, or no answer): pump decides, but not from inside
         * whatever dropped it (pump itself, on a failed send) */
        pump_soon(c->pool);
    }
}

static void on_io(evutil_socket_t fd, short what, void *arg);

static void watch(struct pgc *c, short what)
{
    if (c->io)
        event_free(c->io);
    c->io = event_new(c->pool->w->base, PQsocket(c->conn), what, on_io, c);
    event_add(c->io, NULL);
}

/* Takes the results that have arrived, never waiting (a PQgetResult while
 * PQisBusy would block the loop until the server's ReadyForQuery came).
 * The query completes with its first result once libpq says there are no
 * more; until then c stays busy. */
static void results_arrived(struct pgc *c)
{
    PGresult *res;
    while (!PQisBusy(c->conn)) {
        if ((res = PQgetResult(c->conn)) == NULL) {
            evtimer_del(c->timer);
            PGresult *first = c->first;
            struct gw_pgq *q = c->q;
            c->first = NULL;
            c->q = NULL;
            c->st = PGC_IDLE;
            c->fails = 0;
            watch(c, EV_READ);
            q->done(q, first, true);
            if (first)
                PQclear(first);
            pump(c->pool);
            return;
        }
        if (c->first == NULL)
            c->first = res;
        else
            PQclear(res);
    }
    watch(c, EV_READ);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    struct pgc *c = arg;
    if (c->st == PGC_CONNECTING) {
        pgc_connect(c);
        return;
    }
    if (c->st == PGC_IDLE) {
        /* an idle connection is readable only when the server closed it
         * (or sent a notice): find out now, not on the next query */
        if (!PQconsumeInput(c->conn) || PQstatus(c->conn) != CONNECTION_OK)
            pgc_drop(c, "connection lost while idle");
        else
            watch(c, EV_READ);
        return;
    }
    if (c->st != PGC_BUSY)
        return;
    if (what & EV_WRITE) {
        int f = PQflush(c->conn);
        if (f == -1) {
            pgc_drop(c, "send failed");
            return;
        }
        watch(c, f == 1 ? EV_WRITE | EV_READ : EV_READ);
        return;
    }
    if (!PQconsumeInput(c->conn)) {
        pgc_drop(c, "connection lost");
        return;
    }
    results_arrived(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct pgc *c = arg;
    if (c->st == PGC_BUSY) {
        pgc_drop(c, "query timed out");
    } else if (c->st == PGC_CONNECTING) {
        pgc_drop(c, "connect timed out");
    } else if (c->st == PGC_DOWN) {
        pgc_connect(c);
    }
}

/* Starts or continues a non-blocking connect. */
static void pgc_connect(struct pgc *c)
{
    if (c->st == PGC_DOWN) {
        if (gw_stopping)
            return;
        const char *keys[] = {"dbname", "application_name", NULL};
        const char *vals[] = {c->url, "portcullis-gateway", NULL};
        c->conn = PQconnectStartParams(keys, vals, 1);
        if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD) {
            pgc_drop(c, "connect failed");
            return;
        }
        c->st = PGC_CONNECTING;
        struct timeval tv = {5, 0};
        evtimer_add(c->timer, &tv);
    }
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        watch(c, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        watch(c, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        evtimer_del(c->timer);
        PQsetnonblocking(c->conn, 1);
        GW_STAT_INC(pg_connects);
        c->st = PGC_IDLE;
        c->fails = 0;
        if (c->pool->w->id == 0)
            pc_log_info("postgres: connected%s", c->pool->fallback ? " (replica)" : "");
        watch(c, EV_READ);
        if (c->pool->fallback) {
            c->lagging = true;      /* until it has said how far behind it is */
            lag_check(c);
        }
        pump(c->pool);
        return;
    default:
        pgc_drop(c, "connect failed");
    }
}

/* ---- replica lag (read pools) ---- */

/* 0 when the replica has replayed all it received, else how long ago the
 * last transaction it replayed committed (ms); 0 on a primary; the most
 * there is when its WAL receiver is not streaming. (A replica whose link
 * to the primary died without a word still says "streaming" until
 * wal_receiver_timeout: keep that low, docs/gateway.md.) */
static const char sql_lag[] =
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 "
    /* not receiving from a primary at all: as far behind as can be */
    "WHEN (SELECT status FROM pg_stat_wal_receiver) IS DISTINCT FROM 'streaming' "
    "THEN 2147483647 "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE((extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000)"
    "::bigint, 0) END";

static void lag_done(struct gw_pgq *q, const struct pg_result *r, bool answered)
{
    struct pgc *c = (struct pgc *)((char *)q - offsetof(struct pgc, lagq));
    const PGresult *res = r;
    bool was = c->lagging;
    c->lagging = true;
    if (answered && res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        int64_t lag = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        c->lagging = lag > gw_cfg.read_max_lag_ms;
        if (c->lagging && !was && c->pool->w->id == 0)
            pc_log_warn("postgres: replica %lld ms behind (READ_MAX_LAG_MS %lld): lookups go "
                        "to the primary", (long long)lag, (long long)gw_cfg.read_max_lag_ms);
    }
    if (was && !c->lagging && c->pool->w->id == 0)
        pc_log_info("postgres: replica caught up: lookups go to it");
}

static bool pgc_send(struct pgc *c, struct gw_pgq *q);

static void lag_check(struct pgc *c)
{
    c->lag_at = pc_now_ms();
    c->lagq = (struct gw_pgq){.w = c->pool->w, .sql = sql_lag, .done = lag_done};
    if (!pgc_send(c, &c->lagq)) {
        c->q = &c->lagq;
        pgc_drop(c, "send failed");
    }
}

static void on_lag_tick(evutil_socket_t fd, short what, void *arg)
{
    struct gw_pg *pg = arg;
    int64_t now = pc_now_ms();
    for (size_t i = 0; i < pg->n; i++) {
        struct pgc *c = &pg->conns[i];
        if (c->st == PGC_IDLE && now - c->lag_at >= LAG_CHECK_MS)
            lag_check(c);
    }
}

static bool pgc_send(struct pgc *c, struct gw_pgq *q)
{
    if (!PQsendQueryParams(c->conn, q->sql, q->nparams, NULL, q->params, NULL, NULL, 0))
        return false;
    c->q = q;
    c->st = PGC_BUSY;
    GW_STAT_INC(pg_queries);
    struct timeval tv = {gw_cfg.pg_timeout_ms / 1000, (gw_cfg.pg_timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    int f = PQflush(c->conn);
    watch(c, f == 1 ? EV_WRITE | EV_READ : EV_READ);
    return true;
}

/* q is about to go: it takes along the queued queries it can (misses that
 * arrived together share one round trip), then is final. */
static void absorb_queued(struct gw_pg *pg, struct gw_pgq *q)
{
    struct gw_pgq **at = &pg->head, *last = NULL;
    while (*at) {
        struct gw_pgq *o = *at;
        if (o->absorb == q->absorb && q->absorb(q, o)) {
            *at = o->next;
            pg->depth--;
            GW_STAT_INC(pg_batched);
        } else {
            last = o;
            at = &o->next;
        }
    }
    pg->tail = last;
    q->absorb(q, NULL);
}

static void pool_submit(struct gw_pg *pg, struct gw_pgq *q);

/* The query at the head of pg's queue, taken off it. */
static struct gw_pgq *pop(struct gw_pg *pg)
{
    struct gw_pgq *q = pg->head;
    pg->head = q->next;
    if (pg->head == NULL)
        pg->tail = NULL;
    pg->depth--;
    q->next = NULL;
    return q;
}

/* q, which pg cannot serve (nothing up, or it waited too long): a read
 * pool's primary takes it; on the primary it completes without an answer. */
static void cannot_serve(struct gw_pg *pg, struct gw_pgq *q)
{
    if (pg->fallback) {
        GW_STAT_INC(pg_read_fallbacks);
        pool_submit(pg->fallback, q);
    } else {
        GW_STAT_INC(pg_errors);
        no_answer(q);
    }
}

/* Gives waiting queries to idle connections; fails them when none can come
 * (a read pool's go to the primary instead). A query waits only for a
 * connection that can free up: on the primary's pool one that is busy or
 * still connecting (its connect times out); on a read pool one that is busy
 * (a replica still connecting may be the one that just went away, and the
 * primary can answer now). */
static void pump(struct gw_pg *pg)
{
    while (pg->head) {
        struct pgc *idle = NULL;
        bool any_alive = false;
        for (size_t i = 0; i < pg->n; i++) {
            struct pgc *c = &pg->conns[i];
            if (c->lagging)
                continue;       /* a replica too far behind takes nothing */
            if (c->st == PGC_IDLE && idle == NULL)
                idle = c;
            if (c->st == PGC_IDLE || c->st == PGC_BUSY ||
                (c->st == PGC_CONNECTING && pg->fallback == NULL))
                any_alive = true;
        }
        if (idle == NULL) {
            if (any_alive)
                return; /* a connection will free up or come up */
            /* nothing here can take it: fail fast rather than queue */
            cannot_serve(pg, pop(pg));
            continue;
        }
        if (pg->fallback && pc_now_ms() - idle->lag_at >= LAG_CHECK_MS) {
            /* a replica busy at every tick is measured between lookups */
            lag_check(idle);
            continue;
        }
        struct gw_pgq *q = pop(pg);
        if (q->absorb)
            absorb_queued(pg, q);
        if (!pgc_send(idle, q)) {
            idle->q = q;
            pgc_drop(idle, "send failed");
        }
    }
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

static void pump_soon(struct gw_pg *pg)
{
    if (pg->head)
        event_active(pg->pump_ev, 0, 0);
}

void gw_pgpool_submit(struct gw_worker *w, struct gw_pgq *q)
{
    q->w = w;
    pool_submit(w->pg, q);
}

void gw_pgpool_submit_read(struct gw_worker *w, struct gw_pgq *q)
{
    q->w = w;
    GW_STAT_INC(pg_read_queries);
    pool_submit(w->pg_read ? w->pg_read : w->pg, q);
}

static void pool_submit(struct gw_pg *pg, struct gw_pgq *q)
{
    /* Reconnect any connection whose back-off has passed. */
    int64_t now = pc_now_ms();
    for (size_t i = 0; i < pg->n; i++)
        if (pg->conns[i].st == PGC_DOWN && now >= pg->conns[i].retry_at)
            pgc_connect(&pg->conns[i]);
    if ((int64_t)pg->depth >= gw_cfg.pending_max) {
        no_answer(q);
        return;
    }
    q->next = NULL;
    q->queued_at = now;
    if (pg->tail)
        pg->tail->next = q;
    else
        pg->head = q;
    pg->tail = q;
    pg->depth++;
    pump(pg);
}

/* A pool of n connections over urls (round robin); fallback: a read pool's
 * primary. */
static struct gw_pg *pool_new(struct gw_worker *w, size_t n, char *const *urls, size_t nurls,
                              struct gw_pg *fallback)
{
    struct gw_pg *pg = pc_xcalloc(1, sizeof *pg);
    pg->w = w;
    pg->n = n;
    pg->fallback = fallback;
    pg->conns = pc_xcalloc(pg->n, sizeof *pg->conns);
    pg->pump_ev = event_new(w->base, -1, 0, on_pump, pg);
    for (size_t i = 0; i < pg->n; i++) {
        struct pgc *c = &pg->conns[i];
        c->pool = pg;
        c->url = urls[i % nurls];
        c->timer = evtimer_new(w->base, on_timer, c);
        pgc_connect(c);
    }
    if (fallback) {
        pg->lag_ev = event_new(w->base, -1, EV_PERSIST, on_lag_tick, pg);
        struct timeval tv = {0, LAG_CHECK_MS * 1000};
        event_add(pg->lag_ev, &tv);
    }
    return pg;
}

void gw_pg_start(struct gw_worker *w)
{
    char *primary[] = {gw_cfg.database_url};
    w->pg = pool_new(w, (size_t)gw_cfg.pg_pool, primary, 1, NULL);
    w->pg_read = NULL;
    if (gw_cfg.nread_urls > 0) {
        /* at least one connection per replica */
        size_t n = (size_t)gw_cfg.pg_pool > gw_cfg.nread_urls ? (size_t)gw_cfg.pg_pool
                                                               : gw_cfg.nread_urls;
        w->pg_read = pool_new(w, n, gw_cfg.read_urls, gw_cfg.nread_urls, w->pg);
    }
}

/* Fails the queries at the head of pg's queue that have waited too long
 * (the queue is in arrival order; a read pool's move on to the primary). */
static void expire_queued(struct gw_pg *pg, int64_t now)
{
    while (pg->head && now - pg->head->queued_at >= gw_cfg.pg_timeout_ms) {
        cannot_serve(pg, pop(pg));
    }
}

void gw_pg_tick(struct gw_worker *w)
{
    int64_t now = pc_now_ms();
    if (w->pg_read)
        expire_queued(w->pg_read, now);
    expire_queued(w->pg, now);
}

static void pool_free(struct gw_pg *pg);

void gw_pg_stop(struct gw_worker *w)
{
    if (w->pg_read)
        pool_free(w->pg_read);
    w->pg_read = NULL;
    pool_free(w->pg);
    w->pg = NULL;
}

static void pool_free(struct gw_pg *pg)
{
    if (pg->lag_ev)
        event_free(pg->lag_ev);
    for (size_t i = 0; i < pg->n; i++) {
        struct pgc *c = &pg->conns[i];
        if (c->conn)
            { c->fails = 0; pgc_drop(c, "closing"); }
        event_free(c->timer);
    }
    while (pg->head) {
        struct gw_pgq *q = pg->head;
        pg->head = q->next;
        no_answer(q);
    }
    event_free(pg->pump_ev);
    free(pg->conns);
    free(pg);
}

bool gw_pg_up(struct gw_worker *w)
{
    for (size_t i = 0; i < w->pg->n; i++)
        if (w->pg->conns[i].st == PGC_IDLE || w->pg->conns[i].st == PGC_BUSY)
            return true;
    return false;
}
