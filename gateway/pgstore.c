/* Portcullis - MIT licence. See LICENSE.
 *
 * pgstore.c: stage PG, PostgreSQL, the source of truth: the SQL of a
 * session or API-key lookup and of the sliding session refresh, and rows ->
 * principal. A lookup joins its credential's flight (flight.c: one query
 * however many wait) and runs on the worker's pool (pgpool.c); lookups of
 * one kind that queued there together go in one round trip ("= ANY($1)",
 * up to GATEWAY_PG_BATCH_MAX), each answered by its own row. A found
 * principal is written back to Redis for the other replicas. An open
 * tunnel's session expiry is read again here too (streams.c). A query that
 * gets no answer is UNAVAILABLE (503), never "unknown".
 *
 * With replicas (DATABASE_READ_URL) a lookup is asked of them first
 * (pgpool.c keeps the lagging ones out); what a replica does not find, or
 * does not answer for, is asked of the primary, so a credential made a
 * moment ago is never refused for replica lag. A replica could still hold a
 * credential the primary has revoked: those are asked of the primary for
 * READ_MAX_LAG_MS plus a margin after the revocation (gw_pg_revoked), and
 * every lookup while the revocation feed is down.
 */
#include "stages.h"
#include "store.h"
#include "pgpool.h"
#include "metrics.h"
#include "../lib/ba_schema.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

enum q_kind { Q_SESSION = 0, Q_API_KEY, Q_REFRESH, Q_EXPIRY };

struct pg_query {
    struct gw_pgq q;                /* first: the pool's part */
    enum q_kind kind;
    unsigned char hash[32];         /* flight key (lookups) */
    char param[GW_CRED_MAX];        /* token, key hash, or session id */
    char p2[32], p3[32], p4[32];    /* refresh: new expiry, now (ms), updateAge (s) */
    struct pg_query *more;          /* lookups riding this one's round trip (absorb) */
    size_t nmore;
    char *array;                    /* with more: $1, every param as a text[] literal */
    void (*expiry_done)(void *arg, int64_t at_ms, bool answered); /* Q_EXPIRY */
    void *arg;
    bool on_replica;                /* asked of a replica: a miss asks the primary */
};

/* ---- what a replica must not answer ---- */

#define TOMB_SLOTS 4096
#define TOMB_PROBE 8
#define TOMB_MARGIN_MS 1500     /* the lag check's period and then some */

static pthread_mutex_t tomb_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    unsigned char hash[32];
    int64_t until;              /* ms since epoch; 0: free */
} tombs[TOMB_SLOTS];
static int64_t primary_only_until = INT64_MAX;   /* the feed starts down */

static int64_t tomb_window(void)
{
    return gw_cfg.read_max_lag_ms + TOMB_MARGIN_MS;
}

static size_t tomb_slot(const unsigned char hash[32])
{
    return ((size_t)hash[0] << 8 | hash[1]) % TOMB_SLOTS;
}

void gw_pg_revoked(const unsigned char hash[32])
{
    if (gw_cfg.nread_urls == 0)
        return;
    int64_t now = pc_now_ms(), until = now + tomb_window();
    pthread_mutex_lock(&tomb_mu);
    size_t s = tomb_slot(hash);
    bool placed = false;
    for (size_t i = 0; i < TOMB_PROBE && !placed; i++) {
        size_t k = (s + i) % TOMB_SLOTS;
        if (tombs[k].until <= now || memcmp(tombs[k].hash, hash, 32) == 0) {
            memcpy(tombs[k].hash, hash, 32);
            tombs[k].until = until;
            placed = true;
        }
    }
    /* too many at once to remember each: none is asked of a replica */
    if (!placed && primary_only_until < until)
        primary_only_until = until;
    pthread_mutex_unlock(&tomb_mu);
}

void gw_pg_replicas_trusted(bool trusted)
{
    pthread_mutex_lock(&tomb_mu);
    primary_only_until = trusted ? pc_now_ms() + tomb_window() : INT64_MAX;
    pthread_mutex_unlock(&tomb_mu);
}

static bool replica_may_answer(const unsigned char hash[32])
{
    int64_t now = pc_now_ms();
    pthread_mutex_lock(&tomb_mu);
    bool ok = now >= primary_only_until;
    size_t s = tomb_slot(hash);
    for (size_t i = 0; ok && i < TOMB_PROBE; i++) {
        size_t k = (s + i) % TOMB_SLOTS;
        ok = !(tombs[k].until > now && memcmp(tombs[k].hash, hash, 32) == 0);
    }
    pthread_mutex_unlock(&tomb_mu);
    return ok;
}

/* Better Auth's tables, as both programs read them (lib/ba_schema.h). The
 * _ANY forms answer many lookups of one kind at once, each row ending with
 * the token or hash it is for. */
static const char *const sql_session = PC_BA_SQL_SESSION_PRINCIPAL;
static const char *const sql_api_key = PC_BA_SQL_APIKEY_PRINCIPAL;
static const char *const sql_session_any = PC_BA_SQL_SESSION_PRINCIPAL_ANY;
static const char *const sql_api_key_any = PC_BA_SQL_APIKEY_PRINCIPAL_ANY;
static const char *const sql_refresh =
    "UPDATE \"session\" SET \"expiresAt\" = to_timestamp($2::double precision / 1000), "
    "\"updatedAt\" = to_timestamp($3::double precision / 1000) "
    "WHERE \"id\" = $1 AND \"expiresAt\" <= to_timestamp($2::double precision / 1000) "
    "- make_interval(secs => $4::double precision)";
static const char *const sql_expiry =
    "SELECT " PC_BA_MS("s.\"expiresAt\"") PC_BA_SESSION_JOIN_USER " WHERE s.\"id\" = $1";

/* Completes q with outcome (and p when found), then frees it. */
static void query_done(struct pg_query *q, enum gw_lookup outcome, const struct gw_principal *p)
{
    if (q->kind == Q_SESSION || q->kind == Q_API_KEY) {
        struct gw_principal empty = {.kind = q->kind == Q_SESSION ? GW_CRED_SESSION
                                                                   : GW_CRED_API_KEY};
        gw_flight_land(q->hash, outcome, p ? p : &empty);
    }
    pc_wipe(q->param, sizeof q->param);
    if (q->array) {
        pc_wipe(q->array, strlen(q->array));
        free(q->array);
    }
    free(q);
}

/* Row i of a lookup's result as its principal; a found one goes back to
 * Redis for the other replicas. */
static void row_principal(const struct pg_query *q, const PGresult *res, int i,
                          struct gw_principal *p)
{
    *p = (struct gw_principal){.found = true, .enabled = true};
    snprintf(p->cred_id, sizeof p->cred_id, "%s", PQgetvalue(res, i, 0));
    snprintf(p->user_id, sizeof p->user_id, "%s", PQgetvalue(res, i, 1));
    char hb[PC_HASH_B64_LEN + 1];
    pc_b64url_encode(q->hash, 32, hb);
    if (q->kind == Q_SESSION) {
        p->kind = GW_CRED_SESSION;
        p->expires_at = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        p->updated_at = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        snprintf(p->email, sizeof p->email, "%s", PQgetvalue(res, i, 4));
        p->email_verified = strcmp(PQgetvalue(res, i, 5), "t") == 0;
        /* Redis lost it (flushed, restarted): put it back for the others */
        gw_l2_store(q->q.w, hb, p, p->expires_at - pc_now_ms());
        return;
    }
    p->kind = GW_CRED_API_KEY;
    p->enabled = strcmp(PQgetvalue(res, i, 2), "t") == 0;
    p->expires_at = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    snprintf(p->permissions, sizeof p->permissions, "%s", PQgetvalue(res, i, 4));
    p->lim.remaining = strtoll(PQgetvalue(res, i, 5), NULL, 10);
    p->lim.refill_interval = strtoll(PQgetvalue(res, i, 6), NULL, 10);
    p->lim.refill_amount = strtoll(PQgetvalue(res, i, 7), NULL, 10);
    p->lim.last_refill_at = strtoll(PQgetvalue(res, i, 8), NULL, 10);
    p->lim.created_at = strtoll(PQgetvalue(res, i, 9), NULL, 10);
    p->lim.rl_enabled = strcmp(PQgetvalue(res, i, 10), "t") == 0;
    p->lim.rl_window = strtoll(PQgetvalue(res, i, 11), NULL, 10);
    p->lim.rl_max = strtoll(PQgetvalue(res, i, 12), NULL, 10);
    /* share the fill with the other replicas; Redis keeps it longer than
     * L1: every revocation deletes it */
    int64_t ttl = gw_cfg.l2_ttl * 1000;
    int64_t left = p->expires_at ? p->expires_at - pc_now_ms() : ttl;
    gw_l2_store(q->q.w, hb, p, left < ttl ? left : ttl);
}

/* The one row of res for lookup m, or -1 (none, or more than one: unknown,
 * as a lone lookup's answer with other than one row is). batched: rows end
 * with the token or hash they are for. */
static int row_of(const struct pg_query *m, const PGresult *res, bool batched)
{
    int n = PQntuples(res);
    if (!batched)
        return n == 1 ? 0 : -1;
    int key = PQnfields(res) - 1, at = -1;
    for (int i = 0; i < n; i++) {
        if (strcmp(PQgetvalue(res, i, key), m->param) != 0)
            continue;
        if (at >= 0)
            return -1;
        at = i;
    }
    return at;
}

/* A lookup a replica did not find or did not answer: asked of the primary,
 * alone (it may ride another lookup's round trip there). */
static void to_primary(struct pg_query *m)
{
    GW_STAT_INC(pg_read_misses);
    if (m->array) {
        pc_wipe(m->array, strlen(m->array));
        free(m->array);
        m->array = NULL;
    }
    m->more = NULL;
    m->nmore = 0;
    m->on_replica = false;
    m->q.sql = m->kind == Q_SESSION ? sql_session : sql_api_key;
    m->q.params[0] = m->param;
    gw_pgpool_submit(m->q.w, &m->q);
}

/* The outcome of lookup m from an answered, well-formed result. */
static void lookup_done(struct pg_query *m, const PGresult *res, bool batched)
{
    int i = row_of(m, res, batched);
    if (i < 0 && m->on_replica) {
        to_primary(m);
        return;
    }
    if (i < 0) {
        query_done(m, GW_LOOKUP_UNKNOWN, NULL);
        return;
    }
    struct gw_principal p;
    row_principal(m, res, i, &p);
    query_done(m, GW_LOOKUP_FOUND, &p);
    pc_wipe(&p, sizeof p);
}

static void on_done(struct gw_pgq *pq, const struct pg_result *r, bool answered)
{
    struct pg_query *q = (struct pg_query *)pq;
    const PGresult *res = r;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (q->kind == Q_REFRESH) {
        if (answered && st != PGRES_COMMAND_OK)
            GW_STAT_INC(pg_errors);
        query_done(q, answered ? GW_LOOKUP_UNKNOWN : GW_LOOKUP_UNAVAILABLE, NULL);
        return;
    }
    if (q->kind == Q_EXPIRY) {
        bool ok = answered && st == PGRES_TUPLES_OK;
        if (answered && !ok)
            GW_STAT_INC(pg_errors);
        int64_t at = ok && PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        q->expiry_done(q->arg, at, ok);
        query_done(q, GW_LOOKUP_UNKNOWN, NULL);
        return;
    }
    enum gw_lookup all = GW_LOOKUP_FOUND;  /* FOUND here: each by its row */
    if (!answered) {
        all = GW_LOOKUP_UNAVAILABLE;
    } else if (st != PGRES_TUPLES_OK) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        /* apikey table missing (42P01): no key can be valid */
        if (state && strcmp(state, "42P01") == 0) {
            all = GW_LOOKUP_UNKNOWN;
        } else {
            GW_STAT_INC(pg_errors);
            pc_log_error("postgres: lookup failed: %s",
                         res ? PQresultErrorMessage(res) : "no result");
            all = GW_LOOKUP_UNAVAILABLE;
        }
    }
    bool batched = q->nmore > 0;
    for (struct pg_query *m = q, *next; m; m = next) {
        next = m == q ? q->more : m->more;
        if (all == GW_LOOKUP_FOUND)
            lookup_done(m, res, batched);
        else if (m->on_replica)
            to_primary(m);      /* the replica failed it: the primary may not */
        else
            query_done(m, all, NULL);
    }
}

char *gw_pg_text_array(const char *const *vals, size_t n)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++)
        cap += 2 * strlen(vals[i]) + 3;
    char *a = pc_xmalloc(cap), *w = a;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *w++ = ',';
        *w++ = '"';
        for (const char *s = vals[i]; *s; s++) {
            if (*s == '"' || *s == '\\')
                *w++ = '\\';
            *w++ = *s;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return a;
}

/* The pool's absorb (pgpool.h): a lookup takes later queued lookups of
 * its kind along, up to GATEWAY_PG_BATCH_MAX in all; then $1 becomes a
 * text[] of their params (gw_pg_text_array). */
static bool absorb(struct gw_pgq *pq, struct gw_pgq *po)
{
    struct pg_query *q = (struct pg_query *)pq;
    if (po != NULL) {
        struct pg_query *o = (struct pg_query *)po;
        if (o->kind != q->kind || (int64_t)q->nmore + 1 >= gw_cfg.pg_batch_max)
            return false;
        o->more = q->more;
        q->more = o;
        q->nmore++;
        return true;
    }
    if (q->nmore == 0)
        return false;
    const char **vals = pc_xcalloc(q->nmore + 1, sizeof *vals);
    size_t n = 0;
    for (struct pg_query *m = q; m; m = m == q ? q->more : m->more)
        vals[n++] = m->param;
    char *a = gw_pg_text_array(vals, n);
    free(vals);
    q->array = a;
    q->q.params[0] = a;
    q->q.sql = q->kind == Q_SESSION ? sql_session_any : sql_api_key_any;
    return false;
}

static struct pg_query *query_new(enum q_kind kind)
{
    struct pg_query *q = pc_xcalloc(1, sizeof *q);
    q->kind = kind;
    static const char *const sql[] = {sql_session, sql_api_key, sql_refresh, sql_expiry};
    q->q.sql = sql[kind];
    q->q.nparams = kind == Q_REFRESH ? 4 : 1;
    q->q.params[0] = q->param;
    q->q.params[1] = q->p2;
    q->q.params[2] = q->p3;
    q->q.params[3] = q->p4;
    q->q.done = on_done;
    q->q.absorb = kind == Q_SESSION || kind == Q_API_KEY ? absorb : NULL;
    return q;
}

enum gw_step gw_pg_lookup(struct gw_request *r)
{
    switch (gw_flight_join(r)) {
    case GW_JOIN_FULL:
        gw_fail(r, 503, "OVERLOADED", "Too many requests waiting for the database");
        return GW_ENDED;
    case GW_JOIN_CACHED:
        r->lookup = r->p.found ? GW_LOOKUP_FOUND : GW_LOOKUP_UNKNOWN;
        return GW_NEXT;
    case GW_JOIN_WAIT:
        return GW_ASYNC; /* another request is already asking */
    default:
        break;
    }
    struct pg_query *q = query_new(r->kind == GW_CRED_SESSION ? Q_SESSION : Q_API_KEY);
    memcpy(q->hash, r->hash, 32);
    if (r->kind == GW_CRED_SESSION)
        memcpy(q->param, r->cred, r->cred_len + 1);
    else
        memcpy(q->param, r->hash_b64, sizeof r->hash_b64);
    if (r->w->pg_read && replica_may_answer(q->hash)) {
        q->on_replica = true;
        gw_pgpool_submit_read(r->w, &q->q);
    } else {
        gw_pgpool_submit(r->w, &q->q);
    }
    return GW_ASYNC;
}

void gw_pg_refresh_session(struct gw_worker *w, const char *session_id, int64_t new_exp_ms,
                           int64_t now_ms)
{
    struct pg_query *q = query_new(Q_REFRESH);
    snprintf(q->param, sizeof q->param, "%s", session_id);
    snprintf(q->p2, sizeof q->p2, "%lld", (long long)new_exp_ms);
    snprintf(q->p3, sizeof q->p3, "%lld", (long long)now_ms);
    snprintf(q->p4, sizeof q->p4, "%lld", (long long)gw_cfg.update_age);
    gw_pgpool_submit(w, &q->q);
}

void gw_pg_session_expiry(struct gw_worker *w, const char *session_id,
                          void (*done)(void *arg, int64_t at_ms, bool answered), void *arg)
{
    struct pg_query *q = query_new(Q_EXPIRY);
    snprintf(q->param, sizeof q->param, "%s", session_id);
    q->expiry_done = done;
    q->arg = arg;
    gw_pgpool_submit(w, &q->q);
}
