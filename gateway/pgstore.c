/* Portcullis - MIT licence. See LICENSE.
 *
 * pgstore.c: stage PG, PostgreSQL, the source of truth: the SQL of a
 * session or API-key lookup and of the sliding session refresh, and rows ->
 * principal. A lookup joins its credential's flight (flight.c: one query
 * however many wait) and runs on the worker's pool (pgpool.c). A found
 * principal is written back to Redis for the other replicas. A query that
 * gets no answer is UNAVAILABLE (503), never "unknown".
 */
#include "stages.h"
#include "store.h"
#include "pgpool.h"
#include "metrics.h"
#include "../lib/ba_schema.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

enum q_kind { Q_SESSION = 0, Q_API_KEY, Q_REFRESH };

struct pg_query {
    struct gw_pgq q;                /* first: the pool's part */
    enum q_kind kind;
    unsigned char hash[32];         /* flight key (lookups) */
    char param[GW_CRED_MAX];        /* token, key hash, or session id */
    char p2[32], p3[32], p4[32];    /* refresh: new expiry, now (ms), updateAge (s) */
};

/* Better Auth's tables, as both programs read them (lib/ba_schema.h). */
static const char *const sql_session = PC_BA_SQL_SESSION_PRINCIPAL;
static const char *const sql_api_key = PC_BA_SQL_APIKEY_PRINCIPAL;
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
        gw_flight_land(q->hash, outcome, p ? p : &empty);
    }
    pc_wipe(q->param, sizeof q->param);
    free(q);
}

static void on_done(struct gw_pgq *pq, const struct pg_result *res, bool answered)
{
    struct pg_query *q = (struct pg_query *)pq;
    const PGresult *first = res;
    if (!answered) {
        query_done(q, GW_LOOKUP_UNAVAILABLE, NULL);
        return;
    }
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
                gw_l2_store(q->q.w, hb, &p, p.expires_at - pc_now_ms());
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
                gw_l2_store(q->q.w, hb, &p, left < ttl ? left : ttl);
            }
            query_done(q, GW_LOOKUP_FOUND, &p);
        }
}

static struct pg_query *query_new(enum q_kind kind)
{
    struct pg_query *q = pc_xcalloc(1, sizeof *q);
    q->kind = kind;
    q->q.sql = kind == Q_SESSION ? sql_session : kind == Q_API_KEY ? sql_api_key : sql_refresh;
    q->q.nparams = kind == Q_REFRESH ? 4 : 1;
    q->q.params[0] = q->param;
    q->q.params[1] = q->p2;
    q->q.params[2] = q->p3;
    q->q.params[3] = q->p4;
    q->q.done = on_done;
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
    gw_pgpool_submit(r->w, &q->q);
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
