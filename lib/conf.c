/* Portcullis - MIT licence. See LICENSE.
 *
 * conf.c: the configuration table engine. A program owns its table (see
 * authsvc/config.c); this file only parses, validates and prints.
 */
#include "conf.h"
#include "log.h"
#include "redis.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The longest value a NAME_FILE may hold: secrets and URLs are short. */
#define CONF_FILE_MAX 65536

/* Better Auth's own fallbacks (its env.ts): when the first name is unset,
 * the second is read, so one secret file serves both servers. */
static const struct {
    const char *name, *fallback;
} conf_fallbacks[] = {
    {"BETTER_AUTH_SECRET", "AUTH_SECRET"},
};

/* Variables renamed so that each name says its unit (issue 17): the old
 * name is still read, with a warning, for one release (until 2.0); setting
 * both is an error. */
static const struct {
    const char *name, *was;
} conf_renamed[] = {
    {"L1_TTL_SECONDS", "L1_TTL"},
    {"L1_NEGATIVE_TTL_SECONDS", "L1_NEGATIVE_TTL"},
    {"L1_DEGRADED_TTL_SECONDS", "L1_DEGRADED_TTL"},
    {"L2_TTL_SECONDS", "L2_TTL"},
    {"UPSTREAM_TIMEOUT_SECONDS", "UPSTREAM_TIMEOUT"},
    {"GATEWAY_MAX_BODY_BYTES", "GATEWAY_MAX_BODY"},
    {"GATEWAY_MAX_HEADER_BYTES", "GATEWAY_MAX_HEADERS"},
    {"JWT_LEEWAY_SECONDS", "JWT_LEEWAY"},
    {"SESSION_EXPIRES_IN_SECONDS", "SESSION_EXPIRES_IN"},
    {"SESSION_UPDATE_AGE_SECONDS", "SESSION_UPDATE_AGE"},
    {"SESSION_FRESH_AGE_SECONDS", "SESSION_FRESH_AGE"},
    {"REVOCATION_LOG_KEEP_SECONDS", "REVOCATION_LOG_KEEP"},
    {"AUTHSVC_MAX_BODY_BYTES", "AUTHSVC_MAX_BODY"},
    {"JWT_EXPIRES_SECONDS", "JWT_EXPIRES"},
    {"JWKS_MAX_AGE_SECONDS", "JWKS_MAX_AGE"},
};

const char *pc_conf_old_name(const char *name)
{
    for (size_t k = 0; k < PC_ARRAY_LEN(conf_renamed); k++)
        if (strcmp(conf_renamed[k].name, name) == 0)
            return conf_renamed[k].was;
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < PC_ARRAY_LEN(yes); i++) {
        if (pc_strieq(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (pc_strieq(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Reads NAME_FILE's file into a heap string without its final line end
 * (Docker and Kubernetes secrets are written with one). */
static char *read_value_file(const char *name, const char *path, char *err, size_t errsz)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errsz, "%s_FILE: cannot read %s: %s", name, path, strerror(errno));
        return NULL;
    }
    char *buf = pc_xmalloc(CONF_FILE_MAX + 1);
    size_t len = fread(buf, 1, CONF_FILE_MAX + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || len > CONF_FILE_MAX) {
        snprintf(err, errsz, "%s_FILE: %s %s", name, path,
                 bad ? "could not be read" : "is larger than 64 KiB");
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    if (memchr(buf, '\0', len) != NULL || strchr(buf, '\n') != NULL) {
        snprintf(err, errsz, "%s_FILE: %s holds more than one line", name, path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* The value a secret row is given by NAME or by NAME_FILE (never both):
 * 0 with *out (heap, or NULL when neither is set), or -1 with err. */
static int secret_value(const char *name, char **out, char *err, size_t errsz)
{
    char fname[128];
    snprintf(fname, sizeof fname, "%s_FILE", name);
    const char *v = getenv(name), *path = getenv(fname);
    bool has_v = v != NULL && v[0] != '\0', has_path = path != NULL && path[0] != '\0';
    *out = NULL;
    if (has_v && has_path) {
        snprintf(err, errsz, "%s: is set and so is %s; set one of them", name, fname);
        return -1;
    }
    if (has_path)
        return (*out = read_value_file(name, path, err, errsz)) != NULL ? 0 : -1;
    if (has_v)
        *out = pc_xstrdup(v);
    return 0;
}

/* A row's text from the environment: NAME (or the old name of a renamed
 * one), NAME_FILE for secrets, then the fallback name of conf_fallbacks.
 * 0 with *out (heap or NULL), or -1. */
static int env_value(const struct pc_conf_item *it, char **out, char *err, size_t errsz)
{
    if (!(it->flags & PC_CONF_SECRET)) {
        const char *v = getenv(it->name);
        const char *was = pc_conf_old_name(it->name);
        const char *old = was ? getenv(was) : NULL;
        if (old != NULL && old[0] != '\0') {
            if (v != NULL && v[0] != '\0') {
                snprintf(err, errsz, "%s: set, and so is %s, its old name: keep %s only",
                         it->name, was, it->name);
                return -1;
            }
            fprintf(stderr, "%s: configuration warning: %s is read as %s, its new name; the "
                            "old name goes in the next major release\n",
                    program_invocation_short_name, was, it->name);
            v = old;
        }
        *out = v != NULL && v[0] != '\0' ? pc_xstrdup(v) : NULL;
        return 0;
    }
    if (secret_value(it->name, out, err, errsz) != 0)
        return -1;
    for (size_t k = 0; *out == NULL && k < PC_ARRAY_LEN(conf_fallbacks); k++)
        if (strcmp(conf_fallbacks[k].name, it->name) == 0 &&
            secret_value(conf_fallbacks[k].fallback, out, err, errsz) != 0)
            return -1;
    return 0;
}

/* Parses one row's text (v, or its default) into its variable. */
static int load_item(const struct pc_conf_item *it, const char *v, char *err, size_t errsz)
{
    if (v == NULL || v[0] == '\0')
        v = it->def;
    if (v == NULL || v[0] == '\0') {
        if (it->flags & PC_CONF_REQUIRED) {
            snprintf(err, errsz, "%s: is required and not set", it->name);
            return -1;
        }
        v = "";
    }
    const char *why = NULL;
    if (v[0] != '\0' && it->validate != NULL && it->validate(v, &why) != 0) {
        snprintf(err, errsz, "%s: %s", it->name, why);
        return -1;
    }
    switch (it->type) {
    case PC_CONF_STR: {
        char **dst = it->var;
        free(*dst);
        *dst = pc_xstrdup(v);
        break;
    }
    case PC_CONF_INT: {
        int64_t x;
        if (pc_parse_int64(v, it->min, it->max, &x) != 0) {
            snprintf(err, errsz, "%s: must be an integer from %lld to %lld (got \"%s\")",
                     it->name, (long long)it->min, (long long)it->max,
                     (it->flags & PC_CONF_SECRET) ? "***" : v);
            return -1;
        }
        *(int64_t *)it->var = x;
        break;
    }
    case PC_CONF_BOOL:
        if (parse_bool(v, it->var) != 0) {
            snprintf(err, errsz, "%s: must be true or false (got \"%s\")", it->name, v);
            return -1;
        }
        break;
    default:
        pc_fatal("conf: bad type for %s", it->name);
    }
    return 0;
}

int pc_conf_load(const struct pc_conf_item *t, size_t n, char *err, size_t errsz)
{
    for (size_t i = 0; i < n; i++) {
        char *env;
        if (env_value(&t[i], &env, err, errsz) != 0)
            return -1;
        int rc = load_item(&t[i], env, err, errsz);
        if (env != NULL) {
            explicit_bzero(env, strlen(env));
            free(env);
        }
        if (rc != 0)
            return -1;
    }
    return 0;
}

void pc_conf_help(const struct pc_conf_item *t, size_t n, FILE *out)
{
    int w = 28; /* the name column: as wide as the longest name */
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(t[i].name) > w)
            w = (int)strlen(t[i].name);
    for (size_t i = 0; i < n; i++) {
        const struct pc_conf_item *it = &t[i];
        const char *def = it->def ? it->def : "";
        if (it->flags & PC_CONF_REQUIRED)
            def = "(required)";
        else if (def[0] == '\0')
            def = "(unset)";
        fprintf(out, "  %-*s %-26s %s\n", w, it->name, def, it->help);
    }
}

void pc_conf_free(const struct pc_conf_item *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].type == PC_CONF_STR) {
            char **dst = t[i].var;
            free(*dst);
            *dst = NULL;
        }
    }
}

int pc_conf_check_hostport(const char *v, const char **err)
{
    char host[256];
    int port;
    return pc_parse_hostport(v, host, sizeof host, &port, err);
}

int pc_conf_check_admin_listen(const char *v, const char **err)
{
    if (strcmp(v, "off") == 0)
        return 0;
    return pc_conf_check_hostport(v, err);
}

int pc_conf_check_path_prefix(const char *v, const char **err)
{
    if (*v == '\0')
        return 0;
    size_t n = strlen(v);
    if (v[0] != '/' || v[n - 1] == '/' || strstr(v, "//") != NULL || n > 64 ||
        strspn(v, "/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-") != n) {
        *err = "must be empty or like /_gateway: segments of letters, digits and ._~-, "
               "at most 64 bytes, no / at the end";
        return -1;
    }
    for (const char *seg = v + 1; *seg; ) {
        size_t k = strcspn(seg, "/");
        if ((k == 1 && seg[0] == '.') || (k == 2 && seg[0] == '.' && seg[1] == '.')) {
            *err = "must not hold . or .. segments";
            return -1;
        }
        seg += k + (seg[k] == '/');
    }
    return 0;
}

int pc_conf_check_http_url(const char *v, const char **err)
{
    const char *rest;
    if (pc_starts_with(v, "http://"))
        rest = v + 7;
    else if (pc_starts_with(v, "https://"))
        rest = v + 8;
    else {
        *err = "must start with http:// or https://";
        return -1;
    }
    if (*rest == '\0' || *rest == '/') {
        *err = "has no host";
        return -1;
    }
    return 0;
}

int pc_conf_check_pg_url(const char *v, const char **err)
{
    if (!pc_starts_with(v, "postgres://") && !pc_starts_with(v, "postgresql://")) {
        *err = "must be a postgres:// or postgresql:// URL";
        return -1;
    }
    return 0;
}

int pc_conf_check_redis_url(const char *v, const char **err)
{
    struct pc_redis_addr a;
    return pc_redis_parse_url(v, &a, err);
}

int pc_conf_check_log_level(const char *v, const char **err)
{
    if (pc_log_level_parse(v) < 0) {
        *err = "must be one of debug, info, warn, error";
        return -1;
    }
    return 0;
}

int pc_conf_check_secret(const char *v, const char **err)
{
    if (strlen(v) < 32) {
        *err = "must be at least 32 characters (generate one with: openssl rand -base64 32)";
        return -1;
    }
    return 0;
}
