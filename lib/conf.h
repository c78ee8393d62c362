/* Portcullis - MIT licence. See LICENSE.
 *
 * conf.h: table-driven configuration from environment variables, after
 * pgbouncer's bouncer_params: one row per variable with its type, target,
 * default, bounds, validator and help text. Loading validates every row and
 * reports the first bad one by name; --help prints the table. A secret row
 * (PC_CONF_SECRET) may instead be read from the file NAME_FILE names (Docker
 * and Kubernetes secrets), never both; BETTER_AUTH_SECRET falls back to
 * AUTH_SECRET as in Better Auth. A variable renamed to say its unit
 * (L1_TTL_SECONDS -> L1_TTL_SECONDS) is still read under its old name, with a
 * warning, for one release.
 */
#ifndef PC_CONF_H
#define PC_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "util.h"

enum pc_conf_type {
    PC_CONF_STR = 0,    /* var is char **, heap copy */
    PC_CONF_INT,        /* var is int64_t *, within [min,max] */
    PC_CONF_BOOL,       /* var is bool *: true/false/1/0/yes/no/on/off */
    PC_CONF_TYPE_COUNT
};

#define PC_CONF_REQUIRED 0x1u   /* no default: must be set */
#define PC_CONF_SECRET 0x2u     /* never printed; NAME_FILE may hold it */

/** A validator returns 0, or -1 with *err pointing at a static message. */
typedef int (*pc_conf_validator)(const char *value, const char **err);

struct pc_conf_item {
    const char *name;           /* environment variable */
    enum pc_conf_type type;     /* how to parse it */
    void *var;                  /* where the parsed value goes */
    const char *def;            /* default text; NULL means empty/unset */
    int64_t min, max;           /* bounds for PC_CONF_INT */
    unsigned flags;             /* PC_CONF_* */
    pc_conf_validator validate; /* extra check on the text, or NULL */
    const char *help;           /* one line for --help */
};

/** Loads every item from the environment (getenv) or its default. On the
 * first invalid value returns -1 and writes "NAME: why" into err. */
PC_MUSTCHECK int pc_conf_load(const struct pc_conf_item *t, size_t n, char *err, size_t errsz);

/** The name a renamed variable had (read, with a warning on stderr, when
 * the new one is unset; both set is an error), or NULL. */
const char *pc_conf_old_name(const char *name);

/** Prints "NAME  default  help" for every item. */
void pc_conf_help(const struct pc_conf_item *t, size_t n, FILE *out);

/** Frees the strings pc_conf_load allocated. */
void pc_conf_free(const struct pc_conf_item *t, size_t n);

/* Validators shared by both programs. */
int pc_conf_check_hostport(const char *v, const char **err);
/** An admin listener: host:port, or "off" (none). */
int pc_conf_check_admin_listen(const char *v, const char **err);
/** A path prefix: empty, or "/" and segments of [A-Za-z0-9._~-], no "/" at the end. */
int pc_conf_check_path_prefix(const char *v, const char **err);
int pc_conf_check_http_url(const char *v, const char **err);
int pc_conf_check_pg_url(const char *v, const char **err);
int pc_conf_check_redis_url(const char *v, const char **err);  /* parses it whole */
int pc_conf_check_log_level(const char *v, const char **err);  /* debug|info|warn|error */
int pc_conf_check_secret(const char *v, const char **err);     /* >= 32 characters */

#endif
