/* Portcullis - MIT licence. See LICENSE.
 *
 * pgpool.c: each worker's PostgreSQL pool (pgpool.h): GATEWAY_PG_POOL
 * non-blocking libpq connections on its loop. A query waits in a bounded
 * FIFO (GATEWAY_PENDING_MAX) for a free connection; each has a timeout
 * (GATEWAY_PG_TIMEOUT_MS) after which its connection is dropped and the
 * query completes without an answer, never as "unknown". A query that
 * leaves the queue may take later queued ones along (absorb: pgstore.c's
 * lookups, one "= ANY($1)" for the misses that queued together). Dropped
 * connections come back with back-off. What the queries are, and what
 * their rows mean, is pgstore.c's.
 */
#include "pgpool.h"
#include "store.h"
#include "metrics.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <libpq-fe.h>

enum pgc_state { PGC_DOWN = 0, PGC_CONNECTING, PGC_IDLE, PGC_BUSY };

struct pgc {
    struct gw_pg *pool;
    PGconn *conn;
    enum pgc_state st;
    struct event *io;               /* socket readiness */
    struct event *timer;            /* connect retry or query timeout */
    struct gw_pgq *q;             /* running query */
    int64_t retry_at;
    int fails;
};

struct gw_pg {
    struct gw_worker *w;
    struct pgc *conns;
    size_t n;
    struct gw_pgq *head, *tail;   /* waiting queries */
    size_t depth;
};

static void pgc_connect(struct pgc *c);
static void pump(struct gw_pg *pg);

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

static void result_ready(struct pgc *c)
{
    PGresult *res;
    PGresult *first = NULL;
    while ((res = PQgetResult(c->conn)) != NULL) {
        if (first == NULL)
            first = res;
        else
            PQclear(res);
    }
    evtimer_del(c->timer);
    struct gw_pgq *q = c->q;
    c->q = NULL;
    c->st = PGC_IDLE;
    c->fails = 0;
    watch(c, EV_READ);
    q->done(q, first, true);
    if (first)
        PQclear(first);
    pump(c->pool);
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
    if (PQisBusy(c->conn)) {
        watch(c, EV_READ);
        return;
    }
    result_ready(c);
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
        const char *vals[] = {gw_cfg.database_url, "portcullis-gateway", NULL};
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
            pc_log_info("postgres: connected");
        watch(c, EV_READ);
        pump(c->pool);
        return;
    default:
        pgc_drop(c, "connect failed");
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

/* Gives waiting queries to idle connections; fails them when none can come. */
static void pump(struct gw_pg *pg)
{
    while (pg->head) {
        struct pgc *idle = NULL;
        bool any_alive = false;
        for (size_t i = 0; i < pg->n; i++) {
            struct pgc *c = &pg->conns[i];
            if (c->st == PGC_IDLE && idle == NULL)
                idle = c;
            if (c->st != PGC_DOWN)
                any_alive = true;
        }
        if (idle == NULL) {
            if (any_alive)
                return; /* a connection will free up or come up */
            /* everything is down: fail fast rather than queue */
            GW_STAT_INC(pg_errors);
            struct gw_pgq *q = pg->head;
            pg->head = q->next;
            if (pg->head == NULL)
                pg->tail = NULL;
            pg->depth--;
            no_answer(q);
            continue;
        }
        struct gw_pgq *q = pg->head;
        pg->head = q->next;
        if (pg->head == NULL)
            pg->tail = NULL;
        pg->depth--;
        q->next = NULL;
        if (q->absorb)
            absorb_queued(pg, q);
        if (!pgc_send(idle, q)) {
            idle->q = q;
            pgc_drop(idle, "send failed");
        }
    }
}

void gw_pgpool_submit(struct gw_worker *w, struct gw_pgq *q)
{
    struct gw_pg *pg = w->pg;
    q->w = w;
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
    if (pg->tail)
        pg->tail->next = q;
    else
        pg->head = q;
    pg->tail = q;
    pg->depth++;
    pump(pg);
}

void gw_pg_start(struct gw_worker *w)
{
    struct gw_pg *pg = pc_xcalloc(1, sizeof *pg);
    pg->w = w;
    pg->n = (size_t)gw_cfg.pg_pool;
    pg->conns = pc_xcalloc(pg->n, sizeof *pg->conns);
    w->pg = pg;
    for (size_t i = 0; i < pg->n; i++) {
        struct pgc *c = &pg->conns[i];
        c->pool = pg;
        c->timer = evtimer_new(w->base, on_timer, c);
        pgc_connect(c);
    }
}

void gw_pg_stop(struct gw_worker *w)
{
    struct gw_pg *pg = w->pg;
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
    free(pg->conns);
    free(pg);
    w->pg = NULL;
}

bool gw_pg_up(struct gw_worker *w)
{
    for (size_t i = 0; i < w->pg->n; i++)
        if (w->pg->conns[i].st == PGC_IDLE || w->pg->conns[i].st == PGC_BUSY)
            return true;
    return false;
}
