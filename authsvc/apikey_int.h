/* Portcullis - MIT licence. See LICENSE.
 *
 * apikey_int.h: what the API-key files share, private to them:
 *   apikey_input.c   zod-order validation of bodies and query strings
 *   apikey_store.c   SQL, rows to JSON, revocation and the expired-key sweep
 *   apikeys.c        the five public routes (apikeys.h)
 *   internal.c       /api/internal/{api-key/create, api-key/update, validate}
 * Everything runs on a request worker, on the job that worker owns (job.h).
 * Functions that take a job and return bool answer it themselves when they
 * return false (input) or always (store's ak_create_key/ak_update_key).
 */
#ifndef AS_APIKEY_INT_H
#define AS_APIKEY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include "job.h"
#include "validate.h"
#include "../lib/ba_schema.h"

#define KEY_LETTERS 64          /* defaultKeyLength */
#define KEY_START_LEN 6         /* startingCharactersConfig.charactersLength */
#define NAME_MIN 1
#define NAME_MAX 32
#define PREFIX_MAX 32
#define EXPIRES_MIN_DAYS 1.0    /* keyExpiration.minExpiresIn */
#define EXPIRES_MAX_DAYS 365.0  /* keyExpiration.maxExpiresIn */
#define SWEEP_EVERY_MS 10000    /* deleteAllExpiredApiKeys throttle */
#define JSON_MAX_DEPTH 64       /* metadata nesting we store */
#define TOKEN_MAX 256

/* Better Auth's messages (AK dist/version-*.mjs API_KEY_ERROR_CODES). */
#define E_SERVER_ONLY "The property you're trying to set can only be set from the server auth instance only."
#define E_UNAUTHORIZED_SESSION "Unauthorized or invalid session"
#define E_KEY_NOT_FOUND "API Key not found"

/* The columns (in Better Auth's order), their indexes and the default
 * configuration test are lib/ba_schema.h's. */
#define AK_COLS PC_BA_APIKEY_COLS
#define DEFAULT_CONFIG PC_BA_APIKEY_DEFAULT_CONFIG
/* Epoch milliseconds (text parameter) to timestamptz, exactly. */
#define TS(p) "('epoch'::timestamptz + " p "::bigint * interval '1 millisecond')"

enum num { N_ABSENT = 0, N_NULL, N_OK, N_BAD };

struct numfield {
    enum num st;
    double d;
};

/* The create and update bodies after zod's checks. Pointers point into body. */
struct ak_input {
    yajl_val body;
    yajl_val config_id, key_id, name, prefix, metadata, permissions;
    char *user_id;                  /* heap */
    bool has_enabled, enabled;
    bool has_rl_enabled, rl_enabled;
    bool has_permissions;           /* present, even as null */
    struct numfield expires_in, remaining, refill_amount, refill_interval, rl_window, rl_max;
};

/* Parsed query string: every value of every name, in order. */
struct query {
    struct evkeyvalq q;
};

/* ---- input (apikey_input.c) ---- */

/** The API key routes take JSON only (Better Auth: 415 for any other type,
 * and a body without Content-Type is no body at all); lenient (internal
 * routes) also takes JSON without a Content-Type. Answers, NULL on failure. */
yajl_val ak_body(struct as_job *job, bool lenient);
/** Parses the job's query (values not UTF-8 read as U+FFFD); free it. */
void ak_query_parse(const struct as_job *job, struct query *q);
/** The first value of name (or NULL) and how many times it occurs. */
const char *ak_query_get(struct query *q, const char *name, int *count);
void ak_query_free(struct query *q);
/** A query parameter that must be a single string (zod's z.string()). */
const char *ak_q_str(struct vcheck *v, struct query *q, const char *name, bool required);
/** z.coerce.number().int().nonnegative() on a query parameter: true with *out
 * set when present and valid. */
bool ak_q_count(struct vcheck *v, struct query *q, const char *name, int64_t *out);
/** z.record(z.string(), z.array(z.string())), optionally nullable: the value
 * (NULL when absent or null); *present even for null. */
yajl_val ak_v_perms(struct vcheck *v, yajl_val body, const char *key, bool nullable,
                    bool *present);
/** JavaScript truthiness of a JSON value (absent is falsy). */
bool ak_truthy(yajl_val x);
/** createApiKeyBodySchema / updateApiKeyBodySchema, field by field in its
 * order, into in (in->body set by the caller); failures go into v. */
void ak_validate_create(struct vcheck *v, struct ak_input *in, bool internal);
void ak_validate_update(struct vcheck *v, struct ak_input *in, bool internal);
/** The internal routes' extra rule: the integer columns fit 32 bits. */
void ak_validate_int_columns(struct vcheck *v, const struct ak_input *in);
/** Server-only fields sent over HTTP (create: `remaining` only when not
 * null; update: any of them). */
bool ak_server_only_create(const struct ak_input *in);
bool ak_server_only_update(const struct ak_input *in);
/** Frees in->body and in->user_id. */
void ak_input_free(struct ak_input *in);
/** A numeric field as the integer text PostgreSQL gets. */
void ak_fmt_int(char *out, size_t n, const struct numfield *f);
/** Better Auth's checks after authentication; false when they answered 400. */
bool ak_expires_in_bounds(struct as_job *job, double secs);
bool ak_name_length_ok(struct as_job *job, const char *name);

/* ---- storage (apikey_store.c) ---- */

/** DEL + PUBLISH of one stored key hash (sessions.c retries what Redis does
 * not take). Call after PostgreSQL committed. */
void ak_revoke_key(struct as_worker *w, const char *hash);
/** ak_revoke_key for column col (the hash) of every row of res. */
void ak_revoke_result(struct as_worker *w, const PGresult *res, int col);
/** deleteAllExpiredApiKeys, at most once per SWEEP_EVERY_MS (any worker). */
void ak_sweep_expired(struct as_worker *w);
/** Row values as Better Auth writes them: a JSON text column (twice: a
 * legacy double-encoded string), a string, a date (null when NULL). */
void ak_jw_json_col(struct pc_jw *jw, const PGresult *res, int row, int col, bool twice);
void ak_jw_col_str(struct pc_jw *jw, const PGresult *res, int row, int col);
void ak_jw_col_date(struct pc_jw *jw, const PGresult *res, int row, int col);
/** One AK_COLS row as Better Auth answers it (no hashed key; plaintext, on
 * create only, where the key is; metadata_raw, when not NULL, as given). */
void ak_jw_row(struct pc_jw *jw, const PGresult *res, int row, const char *plaintext,
               const char *metadata_raw);
/** Answers 200 with ak_jw_row of row 0. Returns true. */
bool ak_reply_row(struct as_job *job, const PGresult *res, const char *plaintext,
                  const char *metadata_raw);
/** create-api-key.ts after authentication: Better Auth's checks, a new key,
 * the INSERT, the answer (with the plaintext). Always answers. */
bool ak_create_key(struct as_job *job, struct as_worker *w, struct ak_input *in,
                   const char *reference_id);
/** update-api-key.ts after authentication: the owner check, the value checks,
 * one UPDATE, the revocation, the answer. Always answers. */
bool ak_update_key(struct as_job *job, struct as_worker *w, struct ak_input *in,
                   const char *user_id);
/** The user named by an internal call exists; otherwise answers 404/503 and
 * returns false. Sets job->user_id. */
bool ak_user_exists(struct as_job *job, struct as_worker *w, const char *user_id);

#endif
