/* Portcullis - MIT licence. See LICENSE.
 *
 * db.c: blocking libpq for worker threads, with connect timeout, statement
 * timeout and reconnect back-off.
 */
#include "db.h"
#include "log.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define DB_BACKOFF_MAX_MS 1000

void pc_db_init(struct pc_db *db, const char *url)
{
    memset(db, 0, sizeof *db);
    db->url = pc_xstrdup(url);
}

void pc_db_close(struct pc_db *db)
{
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    free(db->url);
    db->url = NULL;
}

/* Drops the connection. A connection that was working and died (a server
 * restart) is replaced at once; only failed connects back off, so a server
 * that is down costs each request one quick failure. */
static void db_drop(struct pc_db *db, bool connect_failed)
{
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    if (!connect_failed) {
        db->fail_count = 0;
        db->retry_at_ms = 0;
        return;
    }
    db->fail_count++;
    int64_t wait = 50LL << (db->fail_count < 5 ? db->fail_count : 5);
    if (wait > DB_BACKOFF_MAX_MS)
        wait = DB_BACKOFF_MAX_MS;
    db->retry_at_ms = pc_now_ms() + wait;
}

int pc_db_ensure(struct pc_db *db)
{
    /* An idle connection has nothing to read unless its server went away
     * (a FATAL message, then EOF): look before a statement is sent on it. */
    if (db->conn && PQstatus(db->conn) == CONNECTION_OK) {
        struct pollfd p = {.fd = PQsocket(db->conn), .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) == 0)
            return 0;
        if (!(p.revents & (POLLRDHUP | POLLHUP | POLLERR)) && PQconsumeInput(db->conn) &&
            PQstatus(db->conn) == CONNECTION_OK && PQgetResult(db->conn) == NULL)
            return 0;
    }
    if (db->conn)
        db_drop(db, false);
    if (pc_now_ms() < db->retry_at_ms)
        return -1;
    /* The statement timeout rides the startup packet, so it holds on every
     * server connection without any session state (no SET). A transaction
     * pooler (pgbouncer) refuses startup options: then we connect without,
     * and say once where the timeout must be set instead. */
    static int no_options;      /* atomic: a server refused "options" */
    bool with = !__atomic_load_n(&no_options, __ATOMIC_RELAXED);
    const char *keys[] = {"dbname", "connect_timeout", "application_name", "options", NULL};
    const char *vals[] = {db->url, "3", "portcullis", "-c statement_timeout=10000", NULL};
    if (!with)
        keys[3] = NULL;
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (with && db->conn && PQstatus(db->conn) != CONNECTION_OK &&
        strstr(PQerrorMessage(db->conn), "unsupported startup parameter")) {
        if (!__atomic_exchange_n(&no_options, 1, __ATOMIC_RELAXED))
            pc_log_warn("postgres: the server (a pooler such as pgbouncer?) refuses startup "
                        "options, so statements get no 10 s timeout from us: set one there "
                        "(pgbouncer's query_timeout, or ALTER ROLE ... SET statement_timeout)");
        PQfinish(db->conn);
        keys[3] = NULL;
        db->conn = PQconnectdbParams(keys, vals, 1);
    }
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        pc_log_warn("postgres: connect failed: %s",
                    db->conn ? PQerrorMessage(db->conn) : "out of memory");
        db_drop(db, true);
        return -1;
    }
    db->fail_count = 0;
    return 0;
}

struct pg_result *pc_db_exec(struct pc_db *db, const char *sql, int nparams,
                             const char *const *params)
{
    /* PostgreSQL refuses text that is not UTF-8 (22021) and logs it; such a
     * value comes from outside and can match nothing, so it never leaves
     * here. The caller sees a failed result, not a lost connection. */
    for (int i = 0; i < nparams; i++) {
        if (params[i] && !pc_utf8_valid(params[i], strlen(params[i]))) {
            pc_log_warn("postgres: parameter $%d is not UTF-8; statement not sent", i + 1);
            PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
            if (r == NULL)
                pc_fatal("out of memory");
            return r;
        }
    }
    if (pc_db_ensure(db) != 0)
        return NULL;
    PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    if (res == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        pc_log_warn("postgres: connection lost: %s", PQerrorMessage(db->conn));
        if (res)
            PQclear(res);
        db_drop(db, false);
        return NULL;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_FATAL_ERROR) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        /* Class 08 (connection), 57P (shutdown) and 53 (resources): the
         * server is unusable, not the query. */
        if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
                      strncmp(state, "53", 2) == 0)) {
            pc_log_warn("postgres: unavailable (%s)", state);
            PQclear(res);
            db_drop(db, false);
            return NULL;
        }
        if (!state || strncmp(state, "23", 2) != 0)
            pc_log_error("postgres: query failed (%s): %s", state ? state : "?",
                         PQresultErrorMessage(res));
    }
    return res;
}

bool pc_db_ok(const struct pg_result *res)
{
    if (res == NULL)
        return false;
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

bool pc_db_state_is(const struct pg_result *res, const char *state)
{
    if (res == NULL)
        return false;
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return s != NULL && strcmp(s, state) == 0;
}

int pc_db_simple(struct pc_db *db, const char *sql)
{
    PGresult *res = pc_db_exec(db, sql, 0, NULL);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    return ok ? 0 : -1;
}

int64_t pc_db_ms(const char *text)
{
    return text ? (int64_t)strtoll(text, NULL, 10) : 0;
}
