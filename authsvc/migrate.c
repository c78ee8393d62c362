/* Portcullis - MIT licence. See LICENSE.
 *
 * migrate.c: `authsvc migrate`. Applies the embedded migrations in name
 * order, each in its own transaction together with its row in
 * portcullis_migrations, under an advisory lock so that several replicas
 * starting at once apply each migration once. Migrations use IF NOT EXISTS,
 * so a database whose tables a Better Auth server created is adopted; the
 * columns authsvc needs are then checked, and a missing one is named.
 */
#include "authsvc.h"
#include "migrate.h"

#include <stdio.h>
#include <string.h>
#include <libpq-fe.h>

#define MIGRATE_LOCK_ID "7215000001"

struct need {
    const char *table;
    const char *columns[16];
};

/* What authsvc reads and writes, per table. */
static const struct need needs[] = {
    {"user", {"id", "name", "email", "emailVerified", "image", "createdAt", "updatedAt"}},
    {"session",
     {"id", "expiresAt", "token", "createdAt", "updatedAt", "ipAddress", "userAgent", "userId"}},
    {"account",
     {"id", "accountId", "providerId", "userId", "accessToken", "refreshToken", "idToken",
      "accessTokenExpiresAt", "refreshTokenExpiresAt", "scope", "password", "createdAt",
      "updatedAt"}},
    {"verification", {"id", "identifier", "value", "expiresAt", "createdAt", "updatedAt"}},
    {"jwks", {"id", "publicKey", "privateKey", "createdAt", "expiresAt", "alg", "crv"}},
    {"twoFactor",
     {"id", "secret", "backupCodes", "userId", "verified", "failedVerificationCount",
      "lockedUntil"}},
};

static int exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "migrate: %s", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

static int check_columns(PGconn *c)
{
    int missing = 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(needs); i++) {
        for (size_t j = 0; needs[i].columns[j]; j++) {
            const char *p[] = {needs[i].table, needs[i].columns[j]};
            PGresult *r = PQexecParams(c,
                                       "SELECT 1 FROM information_schema.columns WHERE "
                                       "table_schema = current_schema() AND table_name = $1 "
                                       "AND column_name = $2",
                                       2, NULL, p, NULL, NULL, 0);
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                fprintf(stderr, "migrate: %s", PQresultErrorMessage(r));
                PQclear(r);
                return -1;
            }
            if (PQntuples(r) == 0) {
                fprintf(stderr, "migrate: table \"%s\" has no column \"%s\"\n", p[0], p[1]);
                missing++;
            }
            PQclear(r);
        }
    }
    return missing ? -1 : 0;
}

static int apply_all(PGconn *c)
{
    if (exec_ok(c, "CREATE TABLE IF NOT EXISTS portcullis_migrations ("
                   "\"name\" text PRIMARY KEY, "
                   "\"appliedAt\" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP)") != 0)
        return -1;
    for (unsigned i = 0; i < as_migrations_count; i++) {
        const struct as_migration *m = &as_migrations[i];
        const char *p[] = {m->name};
        PGresult *r = PQexecParams(c, "SELECT 1 FROM portcullis_migrations WHERE \"name\" = $1",
                                   1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "migrate: %s", PQresultErrorMessage(r));
            PQclear(r);
            return -1;
        }
        bool done = PQntuples(r) > 0;
        PQclear(r);
        if (done)
            continue;
        if (exec_ok(c, "BEGIN") != 0)
            return -1;
        if (exec_ok(c, m->sql) != 0) {
            fprintf(stderr, "migrate: %s failed, rolled back\n", m->name);
            (void)exec_ok(c, "ROLLBACK");
            return -1;
        }
        r = PQexecParams(c, "INSERT INTO portcullis_migrations (\"name\") VALUES ($1)", 1, NULL,
                         p, NULL, NULL, 0);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok || exec_ok(c, "COMMIT") != 0) {
            (void)exec_ok(c, "ROLLBACK");
            return -1;
        }
        printf("migrate: applied %s\n", m->name);
    }
    return 0;
}

int as_migrate_run(const char *database_url)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {database_url, "10", "portcullis-migrate", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "migrate: cannot connect (DATABASE_URL): %s", PQerrorMessage(c));
        PQfinish(c);
        return 1;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    int rc = 1;
    if (exec_ok(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK_ID ")") != 0)
        goto out;
    if (apply_all(c) == 0 && check_columns(c) == 0) {
        printf("migrate: database is up to date (%u migration(s))\n", as_migrations_count);
        rc = 0;
    }
    (void)exec_ok(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_ID ")");
out:
    PQfinish(c);
    return rc;
}
