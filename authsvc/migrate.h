/* Portcullis - MIT licence. See LICENSE.
 *
 * migrate.h: the SQL migrations compiled into authsvc (generated from
 * db/migrations by scripts/embed-sql.sh).
 */
#ifndef AS_MIGRATE_H
#define AS_MIGRATE_H

struct as_migration {
    const char *name;   /* file name, e.g. "0001_core.sql"; sorts in apply order */
    const char *sql;    /* its text */
};

extern const struct as_migration as_migrations[];
extern const unsigned as_migrations_count;

/** `authsvc migrate`: applies what is missing. Returns the exit code. */
int as_migrate_run(const char *database_url);

#endif
