/* Portcullis - MIT licence. See LICENSE.
 *
 * ba_schema.h: Better Auth's tables as both programs read them: the column
 * lists and the lookups authsvc and the gateway run on the same rows. One
 * place to edit when Better Auth changes a column.
 *
 * Sources: /work/shared/docs/better-auth-compat.md (section 1, the schema:
 * camelCase quoted identifiers, timestamptz times; section 4.2, API keys)
 * and tests/e2e/interop/FACTS.md (what a real Better Auth 1.7 server was
 * seen to store). Every macro is a string literal, so SQL is still built at
 * compile time: "SELECT " PC_BA_USER_COLS " FROM \"user\" u WHERE ...".
 *
 * Times come back as epoch milliseconds (bigint text, pc_db_ms). Two forms
 * are in use and both are kept, since they differ for a time that is not a
 * whole millisecond (PostgreSQL's now(); Better Auth's JS Dates always are):
 * PC_BA_MS rounds (sessions, users, jwks), PC_BA_MS_FLOOR floors (API keys,
 * as a JS Date would hold it).
 *
 * Where it sits: the gateway's PG stage (pgstore.c) and authsvc's session,
 * account, API-key and JWT handlers; nothing here runs, it is text.
 */
#ifndef PC_BA_SCHEMA_H
#define PC_BA_SCHEMA_H

/* ---- times ---- */

/** Epoch ms of a qualified column expression (e.g. s."expiresAt"), rounded. */
#define PC_BA_MS(expr) "(extract(epoch from " expr ")*1000)::bigint"
/** Epoch ms of an unqualified column name, floored (API keys). */
#define PC_BA_MS_FLOOR(col) "floor(extract(epoch from \"" col "\") * 1000)::bigint"
/** now(), cut to whole milliseconds as Better Auth's Dates are. */
#define PC_BA_NOW_MS "date_trunc('milliseconds', now())"

/* ---- user (alias u) ---- */

/** id, name, email, emailVerified, image, createdAt ms, updatedAt ms. */
#define PC_BA_USER_COLS                                                        \
    "u.\"id\", u.\"name\", u.\"email\", u.\"emailVerified\", u.\"image\", "    \
    PC_BA_MS("u.\"createdAt\"") ", " PC_BA_MS("u.\"updatedAt\"")
#define PC_BA_USER_NCOLS 7

/* ---- session (alias s) ---- */

/** id, token, userId, ipAddress, userAgent, expiresAt ms, createdAt ms,
 * updatedAt ms. */
#define PC_BA_SESSION_COLS                                                             \
    "s.\"id\", s.\"token\", s.\"userId\", s.\"ipAddress\", s.\"userAgent\", "          \
    PC_BA_MS("s.\"expiresAt\"") ", " PC_BA_MS("s.\"createdAt\"") ", "                  \
    PC_BA_MS("s.\"updatedAt\"")
#define PC_BA_SESSION_NCOLS 8

/** A session row with its user: only sessions whose user exists count. */
#define PC_BA_SESSION_JOIN_USER " FROM \"session\" s JOIN \"user\" u ON u.\"id\" = s.\"userId\""
/** The lookup key of a session: its token ($1), as Better Auth stores it. */
#define PC_BA_SESSION_BY_TOKEN " WHERE s.\"token\" = $1"

/** authsvc's session lookup (sessions.c): PC_BA_SESSION_COLS then
 * PC_BA_USER_COLS. */
#define PC_BA_SQL_SESSION_FULL                                                 \
    "SELECT " PC_BA_SESSION_COLS ", " PC_BA_USER_COLS PC_BA_SESSION_JOIN_USER \
    PC_BA_SESSION_BY_TOKEN

/** The gateway's session principal (pgstore.c): id, userId, expiresAt ms,
 * updatedAt ms, the user's email. */
#define PC_BA_SESSION_PRINCIPAL_COLS                                                    \
    "s.\"id\", s.\"userId\", " PC_BA_MS("s.\"expiresAt\"") ", "                         \
    PC_BA_MS("s.\"updatedAt\"") ", u.\"email\", u.\"emailVerified\""
#define PC_BA_SQL_SESSION_PRINCIPAL                                                     \
    "SELECT " PC_BA_SESSION_PRINCIPAL_COLS PC_BA_SESSION_JOIN_USER PC_BA_SESSION_BY_TOKEN
/** The same for many tokens in one round trip (the gateway's batched
 * misses): those columns, then the token the row is for; $1 a text[]. */
#define PC_BA_SQL_SESSION_PRINCIPAL_ANY                                                 \
    "SELECT " PC_BA_SESSION_PRINCIPAL_COLS ", s.\"token\"" PC_BA_SESSION_JOIN_USER          \
    " WHERE s.\"token\" = ANY($1::text[])"

/** authsvc's internal validate (apikeys.c): id, userId, expiresAt ms
 * (floored). */
#define PC_BA_SQL_SESSION_VALIDATE                                                      \
    "SELECT s.\"id\", s.\"userId\", "                                                   \
    "floor(extract(epoch from s.\"expiresAt\") * 1000)::bigint" PC_BA_SESSION_JOIN_USER \
    PC_BA_SESSION_BY_TOKEN

/* ---- apikey (no alias) ---- */

/** Every column, in the order Better Auth's adapter returns a row
 * (observed), times as floored epoch ms; PC_BA_AK_* index them. */
#define PC_BA_APIKEY_COLS                                                                 \
    "\"configId\", \"name\", \"start\", \"referenceId\", \"prefix\", "                  \
    "\"refillInterval\", \"refillAmount\", " PC_BA_MS_FLOOR("lastRefillAt") ", "        \
    "\"enabled\", \"rateLimitEnabled\", \"rateLimitTimeWindow\", \"rateLimitMax\", "    \
    "\"requestCount\", \"remaining\", " PC_BA_MS_FLOOR("lastRequest") ", "              \
    PC_BA_MS_FLOOR("expiresAt") ", " PC_BA_MS_FLOOR("createdAt") ", "                   \
    PC_BA_MS_FLOOR("updatedAt") ", \"permissions\", \"metadata\", \"id\", \"key\""
enum pc_ba_apikey_col {
    PC_BA_AK_CONFIG = 0, PC_BA_AK_NAME, PC_BA_AK_START, PC_BA_AK_REF, PC_BA_AK_PREFIX,
    PC_BA_AK_REFILL_INTERVAL, PC_BA_AK_REFILL_AMOUNT, PC_BA_AK_LAST_REFILL, PC_BA_AK_ENABLED,
    PC_BA_AK_RL_ENABLED, PC_BA_AK_RL_WINDOW, PC_BA_AK_RL_MAX, PC_BA_AK_REQ_COUNT,
    PC_BA_AK_REMAINING, PC_BA_AK_LAST_REQUEST, PC_BA_AK_EXPIRES, PC_BA_AK_CREATED,
    PC_BA_AK_UPDATED, PC_BA_AK_PERMISSIONS, PC_BA_AK_METADATA, PC_BA_AK_ID, PC_BA_AK_KEY,
    PC_BA_AK_NCOLS
};
/** An API key's lookup key: the hash of the key ($1), as Better Auth stores it. */
#define PC_BA_APIKEY_BY_HASH " WHERE \"key\" = $1"
/** A key of Better Auth's default configuration (null and "" count as default). */
#define PC_BA_APIKEY_DEFAULT_CONFIG "(\"configId\" IS NULL OR \"configId\" IN ('', 'default'))"

/** The gateway's API-key principal (pgstore.c), with Better Auth's defaults
 * for nulls: id, referenceId, enabled, expiresAt ms (0 never), permissions
 * ('' none), remaining (-1 unlimited), refillInterval (0), refillAmount (-1),
 * lastRefillAt ms (0), createdAt ms, rateLimitEnabled (true),
 * rateLimitTimeWindow (0), rateLimitMax (0). */
#define PC_BA_APIKEY_PRINCIPAL_COLS                                                      \
    "\"id\", \"referenceId\", COALESCE(\"enabled\", true), "                                \
    "COALESCE(" PC_BA_MS("\"expiresAt\"") ", 0), "                                       \
    "COALESCE(\"permissions\", ''), COALESCE(\"remaining\", -1), "                       \
    "COALESCE(\"refillInterval\", 0), COALESCE(\"refillAmount\", -1), "                  \
    "COALESCE(" PC_BA_MS("\"lastRefillAt\"") ", 0), "                                    \
    PC_BA_MS("\"createdAt\"") ", COALESCE(\"rateLimitEnabled\", true), "                 \
    "COALESCE(\"rateLimitTimeWindow\", 0), COALESCE(\"rateLimitMax\", 0)"
#define PC_BA_SQL_APIKEY_PRINCIPAL \
    "SELECT " PC_BA_APIKEY_PRINCIPAL_COLS " FROM \"apikey\"" PC_BA_APIKEY_BY_HASH
/** The same for many hashes in one round trip (the gateway's batched
 * misses): those columns, then the hash the row is for; $1 a text[]. */
#define PC_BA_SQL_APIKEY_PRINCIPAL_ANY                                                   \
    "SELECT " PC_BA_APIKEY_PRINCIPAL_COLS ", \"key\" FROM \"apikey\""                     \
    " WHERE \"key\" = ANY($1::text[])"

/** authsvc's lookup of a key by hash (apikeys.c verify): PC_BA_APIKEY_COLS. */
#define PC_BA_SQL_APIKEY_BY_HASH \
    "SELECT " PC_BA_APIKEY_COLS " FROM \"apikey\"" PC_BA_APIKEY_BY_HASH " LIMIT 1"

/* ---- jwks (the jwt plugin) ---- */

/** Every row, newest first (the order lib/ba_jwks.h's signer choice
 * breaks ties in): id, publicKey, privateKey, alg, createdAt ms, expiresAt
 * ms (NULL: none). authsvc/jwt.c reads these. */
#define PC_BA_SQL_JWKS_ROWS                                                              \
    "SELECT \"id\", \"publicKey\", \"privateKey\", \"alg\", "                            \
    PC_BA_MS("\"createdAt\"") ", " PC_BA_MS("\"expiresAt\"") " FROM \"jwks\" "           \
    "ORDER BY \"createdAt\" DESC, \"id\""
/** The rows the gateway's signer considers: id, privateKey, alg, publicKey
 * of the rows not expired, newest first. */
#define PC_BA_SQL_JWKS_UNEXPIRED                                                          \
    "SELECT \"id\", \"privateKey\", \"alg\", \"publicKey\" FROM \"jwks\" "               \
    "WHERE \"expiresAt\" IS NULL OR \"expiresAt\" > now() "                              \
    "ORDER BY \"createdAt\" DESC, \"id\""

#endif
