/* Portcullis - MIT licence. See LICENSE.
 *
 * pgstore.c: stage 6, PostgreSQL, the source of truth.
 *
 * Flights: concurrent misses for one credential share one query, across all
 * workers. The first request to miss starts a flight (keyed by the
 * credential hash) and queries; later ones join it. When the answer comes,
 * L1 is filled (negatively for an unknown credential, so a flood of random
 * keys costs one query per distinct key), every waiter gets a copy of the
 * outcome and is woken on its own worker's loop.
 *
 * Pool: each worker keeps GATEWAY_PG_POOL non-blocking libpq connections on
 * its loop. A query waits in a bounded FIFO for a free connection; each has
 * a timeout after which its connection is dropped and the query fails as
 * UNAVAILABLE (503), never as "unknown". Dropped connections come back with
 * back-off.
 */
#include "gateway.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <libpq-fe.h>

/* ---- flights (shared) ---- */

struct flight {
    struct flight *next;            /* hash chain */
    unsigned char hash[32];
    struct gw_request *waiters;     /* linked through next_wake */
};

#define FLIGHT_BUCKETS 1024
static pthread_mutex_t flights_mu = PTHREAD_MUTEX_INITIALIZER;
static struct flight *flights[FLIGHT_BUCKETS];

void gw_flights_init(void)
{
    memset(flights, 0, sizeof flights);
}

void gw_flights_free(void)
{
    pthread_mutex_lock(&flights_mu);
    for (size_t i = 0; i < FLIGHT_BUCKETS; i++) {
        while (flights[i]) {
            struct flight *f = flights[i];
            flights[i] = f->next;
            free(f);
        }
    }
    pthread_mutex_unlock(&flights_mu);
}

static size_t flight_bucket(const unsigned char h[32])
{
    uint32_t v;
    memcpy(&v, h, sizeof v);
    return v % FLIGHT_BUCKETS;
}

enum join { JOIN_WAIT = 0, JOIN_LEAD, JOIN_CACHED };

/* Adds r as a waiter, or makes it the leader that must query. flight_land
 * fills L1 before it removes the flight, so a request that finds no flight
 * here finds the answer in L1 instead: JOIN_CACHED, r->p filled. */
static enum join flight_join(struct gw_request *r)
{
    size_t b = flight_bucket(r->hash);
    pthread_mutex_lock(&flights_mu);
    struct flight *f = flights[b];
    while (f && memcmp(f->hash, r->hash, 32) != 0)
        f = f->next;
    bool leader = f == NULL;
    if (leader && gw_l1_get(r->hash, &r->p)) {
        pthread_mutex_unlock(&flights_mu);
        return JOIN_CACHED;
    }
    if (leader) {
        f = pc_xcalloc(1, sizeof *f);
        memcpy(f->hash, r->hash, 32);
        f->next = flights[b];
        flights[b] = f;
    }
    r->next_wake = f->waiters;
    f->waiters = r;
    pthread_mutex_unlock(&flights_mu);
    return leader ? JOIN_LEAD : JOIN_WAIT;
}

/* Ends the flight for hash: fills L1 and wakes every waiter with a copy. */
static void flight_land(const unsigned char hash[32], enum gw_lookup outcome,
                        const struct gw_principal *p)
{
    if (outcome == GW_LOOKUP_FOUND) {
        int64_t ttl = gw_cfg.l1_ttl * 1000;
        int64_t left = p->expires_at ? p->expires_at - pc_now_ms() : ttl;
        gw_l1_put(hash, p, left < ttl ? left : ttl);
    } else if (outcome == GW_LOOKUP_UNKNOWN) {
        struct gw_principal neg = {.kind = p->kind, .found = false};
        gw_l1_put(hash, &neg, gw_cfg.l1_negative_ttl * 1000);
    }
    size_t b = flight_bucket(hash);
    pthread_mutex_lock(&flights_mu);
    struct flight **pp = &flights[b];
    while (*pp && memcmp((*pp)->hash, hash, 32) != 0)
        pp = &(*pp)->next;
    struct flight *f = *pp;
    if (f)
        *pp = f->next;
    pthread_mutex_unlock(&flights_mu);
    if (f == NULL)
        return;
    struct gw_request *r = f->waiters;
    free(f);
    while (r) {
        struct gw_request *next = r->next_wake;
        r->lookup = outcome;
        if (outcome == GW_LOOKUP_FOUND)
            r->p = *p;
        else
            memset(&r->p, 0, sizeof r->p);
        r->p.kind = r->kind;
        r->stage = GW_STAGE_DECIDE;
        gw_wake(r);
        r = next;
    }
}

/* ---- the pool (per worker) ---- */

enum pgc_state { PGC_DOWN = 0, PGC_CONNECTING, PGC_IDLE, PGC_BUSY };

enum q_kind { Q_SESSION = 0, Q_API_KEY, Q_REFRESH };

struct pg_query {
    struct pg_query *next;
    enum q_kind kind;
    unsigned char hash[32];         /* flight key (lookups) */
    char param[GW_CRED_MAX];        /* token, key hash, or session id */
    char p2[32], p3[32], p4[32];    /* refresh: new expiry, now (ms), updateAge (s) */
};

struct pgc {
    struct gw_pg *pool;
    PGconn *conn;
    enum pgc_state st;
    struct event *io;               /* socket readiness */
    struct event *timer;            /* connect retry or query timeout */
    struct pg_query *q;             /* running query */
    int64_t retry_at;
    int fails;
};

struct gw_pg {
    struct gw_worker *w;
    struct pgc *conns;
    size_t n;
    struct pg_query *head, *tail;   /* waiting queries */
    size_t depth;
};

static void pgc_connect(struct pgc *c);
static void pump(struct gw_pg *pg);

static const char *const sql_session =
    "SELECT s.\"id\", s.\"userId\", (extract(epoch from s.\"expiresAt\")*1000)::bigint, "
    "(extract(epoch from s.\"updatedAt\")*1000)::bigint, u.\"email\" "
    "FROM \"session\" s JOIN \"user\" u ON u.\"id\" = s.\"userId\" WHERE s.\"token\" = $1";
static const char *const sql_api_key =
    "SELECT \"id\", \"referenceId\", COALESCE(\"enabled\", true), "
    "COALESCE((extract(epoch from \"expiresAt\")*1000)::bigint, 0), "
    "COALESCE(\"permissions\", ''), COALESCE(\"remaining\", -1), "
    "COALESCE(\"refillInterval\", 0), COALESCE(\"refillAmount\", -1), "
    "COALESCE((extract(epoch from \"lastRefillAt\")*1000)::bigint, 0), "
    "(extract(epoch from \"createdAt\")*1000)::bigint, COALESCE(\"rateLimitEnabled\", true), "
    "COALESCE(\"rateLimitTimeWindow\", 0), COALESCE(\"rateLimitMax\", 0) "
    "FROM \"apikey\" WHERE \"key\" = $1";
static const char *const sql_refresh =
    "UPDATE \"session\" SET \"expiresAt\" = to_timestamp($2::double precision / 1000), "
    "\"updatedAt\" = to_timestamp($3::double precision / 1000) "
    "WHERE \"id\" = $1 AND \"expiresAt\" <= to_timestamp($2::double precision / 1000) "
    "- make_interval(secs => $4::double precision)";

/* Completes q with outcome (and p when found), then frees it. */
static void query_done(struct pg_query *q, enum gw_lookup outcome, const struct gw_principal *p)
{
    if (q->kind != Q_REFRESH) {
        struct gw_principal empty = {.kind = q->kind == Q_SESSION ? GW_CRED_SESSION
                                                                   : GW_CRED_API_KEY};
        flight_land(q->hash, outcome, p ? p : &empty);
    }
    pc_wipe(q->param, sizeof q->param);
    free(q);
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
        struct pg_query *q = c->q;
        c->q = NULL;
        GW_STAT_INC(pg_errors);
        query_done(q, GW_LOOKUP_UNAVAILABLE, NULL);
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
    struct pg_query *q = c->q;
    c->q = NULL;
    c->st = PGC_IDLE;
    c->fails = 0;
    watch(c, EV_READ);
    ExecStatusType st = first ? PQresultStatus(first) : PGRES_FATAL_ERROR;
    if (q->kind == Q_REFRESH) {
        if (st != PGRES_COMMAND_OK)
            GW_STAT_INC(pg_errors);
        query_done(q, GW_LOOKUP_UNKNOWN, NULL);
    } else if (st != PGRES_TUPLES_OK) {
        const char *state = first ? PQresultErrorField(first, PG_DIAG_SQLSTATE) : NULL;
        /* apikey table missing (42P01): no key can be valid */
        if (state && strcmp(state, "42P01") == 0) {
            query_done(q, GW_LOOKUP_UNKNOWN, NULL);
        } else {
            GW_STAT_INC(pg_errors);
            pc_log_error("postgres: lookup failed: %s",
                         first ? PQresultErrorMessage(first) : "no result");
            query_done(q, GW_LOOKUP_UNAVAILABLE, NULL);
        }
    } else if (PQntuples(first) != 1) {
        query_done(q, GW_LOOKUP_UNKNOWN, NULL);
    } else {
        struct gw_principal p = {.found = true, .enabled = true};
        snprintf(p.cred_id, sizeof p.cred_id, "%s", PQgetvalue(first, 0, 0));
        snprintf(p.user_id, sizeof p.user_id, "%s", PQgetvalue(first, 0, 1));
        if (q->kind == Q_SESSION) {
            p.kind = GW_CRED_SESSION;
            p.expires_at = strtoll(PQgetvalue(first, 0, 2), NULL, 10);
            p.updated_at = strtoll(PQgetvalue(first, 0, 3), NULL, 10);
            snprintf(p.email, sizeof p.email, "%s", PQgetvalue(first, 0, 4));
            /* Redis lost it (flushed, restarted): put it back for the others */
            char hb[PC_HASH_B64_LEN + 1];
            pc_b64url_encode(q->hash, 32, hb);
            gw_l2_store(c->pool->w, hb, &p, p.expires_at - pc_now_ms());
        } else {
            p.kind = GW_CRED_API_KEY;
            p.enabled = strcmp(PQgetvalue(first, 0, 2), "t") == 0;
            p.expires_at = strtoll(PQgetvalue(first, 0, 3), NULL, 10);
            snprintf(p.permissions, sizeof p.permissions, "%s", PQgetvalue(first, 0, 4));
            p.lim.remaining = strtoll(PQgetvalue(first, 0, 5), NULL, 10);
            p.lim.refill_interval = strtoll(PQgetvalue(first, 0, 6), NULL, 10);
            p.lim.refill_amount = strtoll(PQgetvalue(first, 0, 7), NULL, 10);
            p.lim.last_refill_at = strtoll(PQgetvalue(first, 0, 8), NULL, 10);
            p.lim.created_at = strtoll(PQgetvalue(first, 0, 9), NULL, 10);
            p.lim.rl_enabled = strcmp(PQgetvalue(first, 0, 10), "t") == 0;
            p.lim.rl_window = strtoll(PQgetvalue(first, 0, 11), NULL, 10);
            p.lim.rl_max = strtoll(PQgetvalue(first, 0, 12), NULL, 10);
            /* share the fill with the other replicas */
            char hb[PC_HASH_B64_LEN + 1];
            pc_b64url_encode(q->hash, 32, hb);
            /* Redis keeps it longer than L1: every revocation deletes it */
            int64_t ttl = gw_cfg.l2_ttl * 1000;
            int64_t left = p.expires_at ? p.expires_at - pc_now_ms() : ttl;
            gw_l2_store(c->pool->w, hb, &p, left < ttl ? left : ttl);
        }
        query_done(q, GW_LOOKUP_FOUND, &p);
    }
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

static bool pgc_send(struct pgc *c, struct pg_query *q)
{
    const char *params[4] = {q->param, q->p2, q->p3, q->p4};
    const char *sql = q->kind == Q_SESSION ? sql_session
                      : q->kind == Q_API_KEY ? sql_api_key : sql_refresh;
    int n = q->kind == Q_REFRESH ? 4 : 1;
    if (!PQsendQueryParams(c->conn, sql, n, NULL, params, NULL, NULL, 0))
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
            struct pg_query *q = pg->head;
            pg->head = q->next;
            if (pg->head == NULL)
                pg->tail = NULL;
            pg->depth--;
            query_done(q, GW_LOOKUP_UNAVAILABLE, NULL);
            continue;
        }
        struct pg_query *q = pg->head;
        pg->head = q->next;
        if (pg->head == NULL)
            pg->tail = NULL;
        pg->depth--;
        q->next = NULL;
        if (!pgc_send(idle, q)) {
            idle->q = q;
            pgc_drop(idle, "send failed");
        }
    }
}

static void enqueue(struct gw_pg *pg, struct pg_query *q)
{
    /* Reconnect any connection whose back-off has passed. */
    int64_t now = pc_now_ms();
    for (size_t i = 0; i < pg->n; i++)
        if (pg->conns[i].st == PGC_DOWN && now >= pg->conns[i].retry_at)
            pgc_connect(&pg->conns[i]);
    if ((int64_t)pg->depth >= gw_cfg.pending_max) {
        query_done(q, GW_LOOKUP_UNAVAILABLE, NULL);
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

void gw_pg_lookup(struct gw_request *r)
{
    if ((int64_t)r->w->parked >= gw_cfg.pending_max) {
        gw_fail(r, 503, "OVERLOADED", "Too many requests waiting for the database");
        return;
    }
    switch (flight_join(r)) {
    case JOIN_WAIT:
        r->w->parked++;
        return; /* another request is already asking */
    case JOIN_CACHED:
        r->lookup = r->p.found ? GW_LOOKUP_FOUND : GW_LOOKUP_UNKNOWN;
        r->stage = GW_STAGE_DECIDE;
        gw_advance(r);
        return;
    default:
        r->w->parked++;
    }
    struct pg_query *q = pc_xcalloc(1, sizeof *q);
    memcpy(q->hash, r->hash, 32);
    if (r->kind == GW_CRED_SESSION) {
        q->kind = Q_SESSION;
        memcpy(q->param, r->cred, r->cred_len + 1);
    } else {
        q->kind = Q_API_KEY;
        memcpy(q->param, r->hash_b64, sizeof r->hash_b64);
    }
    enqueue(r->w->pg, q);
}

void gw_pg_refresh_session(struct gw_worker *w, const char *session_id, int64_t new_exp_ms,
                           int64_t now_ms)
{
    struct pg_query *q = pc_xcalloc(1, sizeof *q);
    q->kind = Q_REFRESH;
    snprintf(q->param, sizeof q->param, "%s", session_id);
    snprintf(q->p2, sizeof q->p2, "%lld", (long long)new_exp_ms);
    snprintf(q->p3, sizeof q->p3, "%lld", (long long)now_ms);
    snprintf(q->p4, sizeof q->p4, "%lld", (long long)gw_cfg.update_age);
    enqueue(w->pg, q);
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
        struct pg_query *q = pg->head;
        pg->head = q->next;
        query_done(q, GW_LOOKUP_UNAVAILABLE, NULL);
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
