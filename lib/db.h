/* Portcullis - MIT licence. See LICENSE.
 *
 * db.h: a blocking PostgreSQL connection for worker threads (authsvc runs its
 * handlers on a pool of threads, one connection each). Reconnects lazily with
 * a back-off so a database outage costs each request one quick failure, not
 * a connect timeout. The gateway's event loops use async libpq instead.
 */
#ifndef PC_DB_H
#define PC_DB_H

#include <stdbool.h>
#include <stdint.h>
#include "util.h"

struct pg_conn;
struct pg_result;

struct pc_db {
    char *url;              /* libpq URL; owned */
    struct pg_conn *conn;   /* NULL until connected */
    int64_t retry_at_ms;    /* no reconnect attempt before this time */
    int fail_count;         /* consecutive failures, for the back-off */
};

/** Initialises db for url (copied). Does not connect. */
void pc_db_init(struct pc_db *db, const char *url);
void pc_db_close(struct pc_db *db);

/** Connects if needed. Returns 0, or -1 when the server is unreachable (or in
 * back-off). */
PC_MUSTCHECK int pc_db_ensure(struct pc_db *db);

/** Runs one statement with text parameters (NULL = SQL NULL). Returns the
 * result, which the caller frees with PQclear, or NULL when the connection is
 * unusable (the connection is dropped and retried later). A result with an
 * error status (constraint violation, ...) is returned as is. A parameter
 * that is not well-formed UTF-8 is never sent: the answer is a failed result
 * with no SQLSTATE (and a warning in the log), the connection stays. Inputs
 * are checked before they get here; this is the net under them. */
struct pg_result *pc_db_exec(struct pc_db *db, const char *sql, int nparams,
                             const char *const *params);

/** True when res is PGRES_COMMAND_OK or PGRES_TUPLES_OK. */
bool pc_db_ok(const struct pg_result *res);
/** True when res failed with SQLSTATE `state` (e.g. "23505"). */
bool pc_db_state_is(const struct pg_result *res, const char *state);

/** Runs "BEGIN"/"COMMIT"/"ROLLBACK"; returns 0 or -1. */
PC_MUSTCHECK int pc_db_simple(struct pc_db *db, const char *sql);

/** Converts a timestamptz returned as epoch milliseconds text ("1700000000123"
 * or "1700000000123.456") into int64. */
int64_t pc_db_ms(const char *text);

#endif
