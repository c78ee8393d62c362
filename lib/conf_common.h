/* Portcullis - MIT licence. See LICENSE.
 *
 * conf_common.h: the configuration rows authsvc and the gateway both read,
 * each with one default, one range and one validator, so the two programs
 * can never take the same variable two ways; and the values both derive
 * from them (cookie names, the default JWT issuer and audience).
 *
 *   BETTER_AUTH_SECRET  BETTER_AUTH_URL  DATABASE_URL  REDIS_URL
 *   REDIS_SENTINELS  REDIS_SENTINEL_MASTER  REDIS_SENTINEL_PASSWORD
 *   REDIS_PREFIX  REVOCATION_CHANNEL  LOG_LEVEL  SESSION_EXPIRES_IN_SECONDS
 *   SESSION_UPDATE_AGE_SECONDS  JWT_ISSUER  JWT_AUDIENCE  BEARER_REQUIRE_SIGNATURE
 *   TRUSTED_ORIGINS
 *
 * Each program's table (authsvc/config.c, gateway/config.c) places these
 * rows where it likes, one macro per row taking the address of its field,
 * or all of them with PC_CONF_COMMON_ROWS(cfg) when its config struct has
 * the usual field names. Loading is lib/conf.h's; this file only adds rows.
 * Start-up only: nothing here is on a request path.
 */
#ifndef PC_CONF_COMMON_H
#define PC_CONF_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include "ba_secrets.h"
#include "bearer.h"
#include "conf.h"
#include "keyspace.h"
#include "redis_sentinel.h"

/* ---- validators (lib/conf.h's pc_conf_validator) ---- */

/** REDIS_PREFIX: printable ASCII without spaces, at most PC_REDIS_PREFIX_MAX. */
int pc_conf_check_redis_prefix(const char *v, const char **err);
/** REVOCATION_CHANNEL: printable ASCII without spaces, at most PC_REDIS_CHANNEL_MAX. */
int pc_conf_check_redis_channel(const char *v, const char **err);
/** TRUSTED_PROXIES (each program words its own row): a CIDR list as
 * lib/netaddr.h's pc_cidr_list_parse reads it. */
int pc_conf_check_cidr_list(const char *v, const char **err);
/** TRUSTED_ORIGINS: a comma-separated list of trusted-origin patterns (lib/url.h). */
int pc_conf_check_origin_list(const char *v, const char **err);

/* ---- the rows ---- */

#define PC_CONF_ROW_BETTER_AUTH_SECRET(strpp)                                             \
    {"BETTER_AUTH_SECRET", PC_CONF_STR, (strpp), NULL, 0, 0, PC_CONF_SECRET,             \
     pc_conf_check_secret,                                                                \
     "HMAC key for cookies; the same value as the Better Auth servers and every "       \
     "authsvc and gateway sharing the database (required unless BETTER_AUTH_SECRETS)"}
#define PC_CONF_ROW_BETTER_AUTH_SECRETS(strpp)                                            \
    {"BETTER_AUTH_SECRETS", PC_CONF_STR, (strpp), NULL, 0, 0, PC_CONF_SECRET,            \
     pc_conf_check_secrets,                                                               \
     "Better Auth's versioned secrets, <version>:<secret>,... current first (as in "     \
     "authsvc): cookies checked with the current one, jwks keys opened with any listed"}
#define PC_CONF_ROW_BETTER_AUTH_URL(strpp)                                                \
    {"BETTER_AUTH_URL", PC_CONF_STR, (strpp), "http://localhost:3000", 0, 0, 0,          \
     pc_conf_check_http_url,                                                              \
     "authsvc's public base URL; https:// turns on __Secure- cookies"}
#define PC_CONF_ROW_DATABASE_URL(strpp)                                                   \
    {"DATABASE_URL", PC_CONF_STR, (strpp), NULL, 0, 0, PC_CONF_REQUIRED | PC_CONF_SECRET, \
     pc_conf_check_pg_url, "PostgreSQL URL (libpq)"}
#define PC_CONF_ROW_REDIS_URL(strpp)                                                      \
    {"REDIS_URL", PC_CONF_STR, (strpp), "redis://127.0.0.1:6379", 0, 0, PC_CONF_SECRET,  \
     pc_conf_check_redis_url, "Redis URL: redis://[:password@]host:port[/db]"}
#define PC_CONF_ROW_REDIS_SENTINELS(strpp)                                                \
    {"REDIS_SENTINELS", PC_CONF_STR, (strpp), "", 0, 0, 0, pc_conf_check_sentinels,       \
     "Redis Sentinel addresses, host:port,...: the master is asked of them and followed " \
     "through failovers (REDIS_URL then gives only the password and db); empty: "         \
     "REDIS_URL's host"}
#define PC_CONF_ROW_REDIS_SENTINEL_MASTER(strpp)                                          \
    {"REDIS_SENTINEL_MASTER", PC_CONF_STR, (strpp), "mymaster", 0, 0, 0,                 \
     pc_conf_check_sentinel_master, "the master's name in the sentinels' configuration"}
#define PC_CONF_ROW_REDIS_SENTINEL_PASSWORD(strpp)                                        \
    {"REDIS_SENTINEL_PASSWORD", PC_CONF_STR, (strpp), "", 0, 0, PC_CONF_SECRET, NULL,    \
     "the sentinels' AUTH password (REDIS_SENTINEL_PASSWORD_FILE: from a file); empty: none"}
#define PC_CONF_ROW_REDIS_PREFIX(strpp)                                                   \
    {"REDIS_PREFIX", PC_CONF_STR, (strpp), "pc:", 0, 0, 0, pc_conf_check_redis_prefix,   \
     "namespace of every Redis key (the same in authsvc and every gateway); printable, " \
     "no spaces, at most 64 characters"}
#define PC_CONF_ROW_REVOCATION_CHANNEL(strpp)                                             \
    {"REVOCATION_CHANNEL", PC_CONF_STR, (strpp), "pc:revoked", 0, 0, 0,                  \
     pc_conf_check_redis_channel,                                                         \
     "Redis pub/sub channel announcing revoked credential hashes (the same in authsvc "  \
     "and every gateway); printable, no spaces, at most 128 characters"}
#define PC_CONF_ROW_TRUSTED_ORIGINS(strpp)                                                \
    {"TRUSTED_ORIGINS", PC_CONF_STR, (strpp), "", 0, 0, 0, pc_conf_check_origin_list,    \
     "extra trusted origins, comma separated: https://app.example.com, https://*.example.com " \
     "(a * is whole labels), *.example.com (http or https); the BETTER_AUTH_URL origin is " \
     "always trusted"}
#define PC_CONF_ROW_LOG_LEVEL(strpp)                                                      \
    {"LOG_LEVEL", PC_CONF_STR, (strpp), "info", 0, 0, 0, pc_conf_check_log_level,        \
     "debug, info, warn or error"}
#define PC_CONF_ROW_SESSION_EXPIRES_IN(i64p)                                              \
    {"SESSION_EXPIRES_IN_SECONDS", PC_CONF_INT, (i64p), "604800", 60, 31536000, 0, NULL,         \
     "session lifetime in seconds (Better Auth: 7 days)"}
#define PC_CONF_ROW_SESSION_UPDATE_AGE(i64p)                                              \
    {"SESSION_UPDATE_AGE_SECONDS", PC_CONF_INT, (i64p), "86400", 0, 31536000, 0, NULL,           \
     "refresh a session's expiry when it is this old, seconds (1 day)"}
#define PC_CONF_ROW_JWT_ISSUER(strpp)                                                     \
    {"JWT_ISSUER", PC_CONF_STR, (strpp), "", 0, 0, 0, NULL,                              \
     "iss of authsvc's JWTs (the gateway's default issuer, and iss of the JWTs it hands " \
     "upstream); empty: the origin of BETTER_AUTH_URL"}
#define PC_CONF_ROW_JWT_AUDIENCE(strpp)                                                   \
    {"JWT_AUDIENCE", PC_CONF_STR, (strpp), "", 0, 0, 0, NULL,                            \
     "aud of authsvc's JWTs (and of those the gateway hands upstream); empty: the issuer"}
#define PC_CONF_ROW_BEARER_REQUIRE_SIGNATURE(boolp) PC_BEARER_REQUIRE_SIGNATURE_ROW(boolp)

/** All twelve rows, for a config struct cfg (an lvalue such as as_cfg) with
 * the fields secret, base_url, database_url, redis_url, redis_prefix,
 * revocation_channel, log_level (char *), expires_in, update_age (int64_t),
 * jwt_issuer, jwt_audience (char *) and bearer_require_sig (bool). */
#define PC_CONF_COMMON_ROWS(cfg)                                  \
    PC_CONF_ROW_BETTER_AUTH_SECRET(&(cfg).secret),                \
    PC_CONF_ROW_BETTER_AUTH_URL(&(cfg).base_url),                 \
    PC_CONF_ROW_DATABASE_URL(&(cfg).database_url),                \
    PC_CONF_ROW_REDIS_URL(&(cfg).redis_url),                      \
    PC_CONF_ROW_REDIS_PREFIX(&(cfg).redis_prefix),                \
    PC_CONF_ROW_REVOCATION_CHANNEL(&(cfg).revocation_channel),    \
    PC_CONF_ROW_LOG_LEVEL(&(cfg).log_level),                      \
    PC_CONF_ROW_SESSION_EXPIRES_IN(&(cfg).expires_in),            \
    PC_CONF_ROW_SESSION_UPDATE_AGE(&(cfg).update_age),            \
    PC_CONF_ROW_JWT_ISSUER(&(cfg).jwt_issuer),                    \
    PC_CONF_ROW_JWT_AUDIENCE(&(cfg).jwt_audience),                \
    PC_CONF_ROW_BEARER_REQUIRE_SIGNATURE(&(cfg).bearer_require_sig)
#define PC_CONF_COMMON_NROWS 12

/* ---- derived values (after pc_conf_load) ---- */

/** True when BETTER_AUTH_URL is https://: cookies get the __Secure- prefix. */
bool pc_conf_secure_cookies(const char *base_url);

/** Better Auth's cookie name: "[__Secure-]better-auth.<name>", e.g. name
 * "session_token". Writes into out[0..cap); false when it does not fit. */
bool pc_conf_cookie_name(char *out, size_t cap, const char *base_url, const char *name);

/** scheme://host[:port] of url, lower-cased (as Better Auth's URL origin
 * reads it; the default issuer). Writes into out[0..cap), cut to fit. */
void pc_conf_url_origin(const char *url, char *out, size_t cap);

/** JWT_ISSUER and JWT_AUDIENCE as both programs use them: an empty issuer
 * becomes the origin of base_url, an empty audience the issuer. *issuer and
 * *audience are pc_conf_load's heap strings, replaced in place. */
void pc_conf_jwt_defaults(char **issuer, char **audience, const char *base_url);

#endif
