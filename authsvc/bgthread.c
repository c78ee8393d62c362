/* Portcullis - MIT licence. See LICENSE.
 *
 * bgthread.c: helpers of the background threads (bgthread.h).
 */
#include "authsvc.h"
#include "bgthread.h"
#include "../lib/log.h"

#include <stdio.h>
#include <time.h>

void as_bg_nap(const atomic_bool *stop, int ms)
{
    for (int t = 0; t < ms && !atomic_load(stop); t += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

bool as_bg_exec(PGconn *c, const char *who, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        pc_log_warn("%s: %s", who, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

PGconn *as_bg_listen(const char *app, const char *channel)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {as_direct_url(), "3", app, NULL};   /* LISTEN: not via a pooler */
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    char sql[128];
    snprintf(sql, sizeof sql, "LISTEN %s", channel);
    if (PQstatus(c) != CONNECTION_OK || !as_bg_exec(c, app, sql, 0, NULL)) {
        PQfinish(c);
        return NULL;
    }
    return c;
}
