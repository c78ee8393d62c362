/* Portcullis - MIT licence. See LICENSE.
 *
 * apikey_store.c: API-key rows in the `apikey` table Better Auth uses
 * (better-auth-compat.md §4): the insert and update of create/update, rows
 * to JSON in Better Auth's field order, the JSON text of stored values (what
 * JSON.stringify would store), and revocation: PostgreSQL first, then DEL
 * <REDIS_PREFIX>k:<hash> and PUBLISH <hash> so every gateway re-reads the
 * row; expired keys are swept as deleteAllExpiredApiKeys does.
 */
#include "authsvc.h"
#include "apikey_int.h"
#include "../lib/crypto.h"
#include "../lib/keyspace.h"
#include "../lib/log.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- revocation ---- */

/* DEL + PUBLISH of one stored key hash (sessions.c retries what Redis
 * does not take). Call after PostgreSQL committed. */
void ak_revoke_key(struct as_worker *w, const char *hash)
{
    if (hash == NULL || strlen(hash) != PC_HASH_B64_LEN) {
        /* Not one of ours (e.g. a Better Auth row with disableKeyHashing):
         * announce the hash of what is stored, which is what a gateway would
         * have computed from that plaintext. */
        if (hash == NULL)
            return;
        char h[PC_HASH_B64_LEN + 1];
        pc_cred_hash(hash, strlen(hash), h);
        ak_revoke_key(w, h);
        return;
    }
    as_revoke_hash(&w->redis, 'k', hash);
}

/* The gateways count a key's use in Redis (<prefix>u:<hash>, seeded from
 * the row) and write it back. A new `remaining` set here must reach that
 * live counter too, or the next write-back would undo it: set it there (or
 * drop it, for unlimited). A write-back racing with this update can still
 * leave the old value in the row until the key's next use; the live counter,
 * which decides, has the new one. */
static void set_live_remaining(struct as_worker *w, const char *hash, bool limited,
                               long long remaining)
{
    if (hash == NULL || strlen(hash) != PC_HASH_B64_LEN)
        return;
    struct pc_buf key = {0};
    pc_buf_printf(&key, "%su:%s", as_cfg.redis_prefix, hash);
    char n[32];
    bool ok;
    if (limited) {
        snprintf(n, sizeof n, "%lld", remaining);
        const char *argv[] = {"HSET", key.data, PC_USAGE_REMAINING, n};
        ok = pc_redis_ok(&w->redis, 4, argv);
    } else {
        const char *argv[] = {"HDEL", key.data, PC_USAGE_REMAINING, PC_USAGE_LAST_REFILL};
        ok = pc_redis_ok(&w->redis, 4, argv);
    }
    if (!ok)
        pc_log_warn("redis: could not update a key's live remaining count");
    pc_buf_free(&key);
}

void ak_revoke_result(struct as_worker *w, const PGresult *res, int col)
{
    for (int i = 0; i < PQntuples(res); i++)
        if (!PQgetisnull(res, i, col))
            ak_revoke_key(w, PQgetvalue(res, i, col));
}

/* Better Auth's deleteAllExpiredApiKeys: at most every 10 s, on the
 * management routes. Deleted keys are revoked like any other. */
static _Atomic int64_t last_sweep_ms;

void ak_sweep_expired(struct as_worker *w)
{
    int64_t now = pc_now_ms(), last = atomic_load(&last_sweep_ms);
    if (now - last < SWEEP_EVERY_MS || !atomic_compare_exchange_strong(&last_sweep_ms, &last, now))
        return;
    PGresult *res = pc_db_exec(&w->db,
                               "DELETE FROM \"apikey\" WHERE \"expiresAt\" IS NOT NULL AND "
                               "\"expiresAt\" < now() RETURNING \"key\"",
                               0, NULL);
    if (pc_db_ok(res)) {
        if (PQntuples(res) > 0)
            pc_log_info("apikey: deleted %d expired key(s)", PQntuples(res));
        ak_revoke_result(w, res, 0);
    }
    if (res)
        PQclear(res);
}

/* ---- JSON text of request values (what JSON.stringify would store) ---- */

/* Appends v as compact JSON. Duplicate object keys keep the last value at
 * the first position, as JSON.parse does. Returns false when nested deeper
 * than JSON_MAX_DEPTH. */
static bool json_write(struct pc_buf *b, yajl_val v, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return false;
    switch (v ? v->type : yajl_t_null) {
    case yajl_t_string:
        pc_json_quote(b, v->u.string, strlen(v->u.string));
        return true;
    case yajl_t_number:
        pc_buf_puts(b, v->u.number.r);
        return true;
    case yajl_t_true:
        pc_buf_puts(b, "true");
        return true;
    case yajl_t_false:
        pc_buf_puts(b, "false");
        return true;
    case yajl_t_array:
        pc_buf_putc(b, '[');
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (i)
                pc_buf_putc(b, ',');
            if (!json_write(b, v->u.array.values[i], depth + 1))
                return false;
        }
        pc_buf_putc(b, ']');
        return true;
    case yajl_t_object: {
        pc_buf_putc(b, '{');
        bool first = true;
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = strcmp(v->u.object.keys[j], k) == 0;
            if (seen)
                continue;
            if (!first)
                pc_buf_putc(b, ',');
            first = false;
            pc_json_quote(b, k, strlen(k));
            pc_buf_putc(b, ':');
            if (!json_write(b, pc_json_get(v, k), depth + 1))
                return false;
        }
        pc_buf_putc(b, '}');
        return true;
    }
    default:
        pc_buf_puts(b, "null");
        return true;
    }
}

/* Writes a JSON text column the way Better Auth reads it back: NULL, empty
 * or unparsable is null; a JSON string holding JSON (legacy double-encoded
 * metadata) is parsed once more. */
void ak_jw_json_col(struct pc_jw *jw, const PGresult *res, int row, int col, bool twice)
{
    if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) == 0) {
        pc_jw_null(jw);
        return;
    }
    const char *t = PQgetvalue(res, row, col);
    yajl_val v = pc_json_parse(t, strlen(t));
    if (v == NULL) {
        pc_jw_null(jw);
        return;
    }
    if (twice && YAJL_IS_STRING(v)) {
        yajl_val inner = pc_json_parse(v->u.string, strlen(v->u.string));
        if (inner)
            pc_jw_raw(jw, v->u.string);
        else
            pc_jw_null(jw);
        if (inner)
            yajl_tree_free(inner);
    } else {
        pc_jw_raw(jw, t);
    }
    yajl_tree_free(v);
}

/* ---- rows out ---- */

void ak_jw_col_str(struct pc_jw *jw, const PGresult *res, int row, int col)
{
    pc_jw_str(jw, PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col));
}

static void jw_col_int(struct pc_jw *jw, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        pc_jw_null(jw);
    else
        pc_jw_int(jw, strtoll(PQgetvalue(res, row, col), NULL, 10));
}

static void jw_col_bool(struct pc_jw *jw, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        pc_jw_null(jw);
    else
        pc_jw_bool(jw, PQgetvalue(res, row, col)[0] == 't');
}

void ak_jw_col_date(struct pc_jw *jw, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        pc_jw_null(jw);
    else
        pc_jw_date(jw, pc_db_ms(PQgetvalue(res, row, col)));
}

/* One row as Better Auth answers it: its field order, no hashed key;
 * `plaintext` (create only) sits where the key column is; `metadata_raw`
 * (create only) replaces the stored metadata. */
void ak_jw_row(struct pc_jw *jw, const PGresult *res, int row, const char *plaintext,
                   const char *metadata_raw)
{
    pc_jw_obj_begin(jw);
    pc_jw_key(jw, "configId");
    ak_jw_col_str(jw, res, row, PC_BA_AK_CONFIG);
    pc_jw_key(jw, "name");
    ak_jw_col_str(jw, res, row, PC_BA_AK_NAME);
    pc_jw_key(jw, "start");
    ak_jw_col_str(jw, res, row, PC_BA_AK_START);
    pc_jw_key(jw, "referenceId");
    ak_jw_col_str(jw, res, row, PC_BA_AK_REF);
    pc_jw_key(jw, "prefix");
    ak_jw_col_str(jw, res, row, PC_BA_AK_PREFIX);
    if (plaintext) {
        pc_jw_key(jw, "key");
        pc_jw_str(jw, plaintext);
    }
    pc_jw_key(jw, "refillInterval");
    jw_col_int(jw, res, row, PC_BA_AK_REFILL_INTERVAL);
    pc_jw_key(jw, "refillAmount");
    jw_col_int(jw, res, row, PC_BA_AK_REFILL_AMOUNT);
    pc_jw_key(jw, "lastRefillAt");
    ak_jw_col_date(jw, res, row, PC_BA_AK_LAST_REFILL);
    pc_jw_key(jw, "enabled");
    jw_col_bool(jw, res, row, PC_BA_AK_ENABLED);
    pc_jw_key(jw, "rateLimitEnabled");
    jw_col_bool(jw, res, row, PC_BA_AK_RL_ENABLED);
    pc_jw_key(jw, "rateLimitTimeWindow");
    jw_col_int(jw, res, row, PC_BA_AK_RL_WINDOW);
    pc_jw_key(jw, "rateLimitMax");
    jw_col_int(jw, res, row, PC_BA_AK_RL_MAX);
    pc_jw_key(jw, "requestCount");
    jw_col_int(jw, res, row, PC_BA_AK_REQ_COUNT);
    pc_jw_key(jw, "remaining");
    jw_col_int(jw, res, row, PC_BA_AK_REMAINING);
    pc_jw_key(jw, "lastRequest");
    ak_jw_col_date(jw, res, row, PC_BA_AK_LAST_REQUEST);
    pc_jw_key(jw, "expiresAt");
    ak_jw_col_date(jw, res, row, PC_BA_AK_EXPIRES);
    pc_jw_key(jw, "createdAt");
    ak_jw_col_date(jw, res, row, PC_BA_AK_CREATED);
    pc_jw_key(jw, "updatedAt");
    ak_jw_col_date(jw, res, row, PC_BA_AK_UPDATED);
    pc_jw_key(jw, "permissions");
    ak_jw_json_col(jw, res, row, PC_BA_AK_PERMISSIONS, false);
    pc_jw_key(jw, "metadata");
    if (metadata_raw)
        pc_jw_raw(jw, metadata_raw);
    else
        ak_jw_json_col(jw, res, row, PC_BA_AK_METADATA, true);
    pc_jw_key(jw, "id");
    ak_jw_col_str(jw, res, row, PC_BA_AK_ID);
    pc_jw_obj_end(jw);
}

bool ak_reply_row(struct as_job *job, const PGresult *res, const char *plaintext,
                      const char *metadata_raw)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    ak_jw_row(&jw, res, 0, plaintext, metadata_raw);
    return as_reply(job, 200, &b);
}

/* The checks after authentication and the insert (create-api-key.ts from
 * `if (metadata)` on). reference_id is the owner. */
bool ak_create_key(struct as_job *job, struct as_worker *w, struct ak_input *in,
                       const char *reference_id)
{
    yajl_val md = in->metadata;
    if (ak_truthy(md)) {
        if (!as_cfg.apikey_metadata)
            return as_error(job, 400, "METADATA_DISABLED", "Metadata is disabled.");
        if (!YAJL_IS_OBJECT(md) && !YAJL_IS_ARRAY(md))
            return as_error(job, 400, "INVALID_METADATA_TYPE",
                            "metadata must be an object or undefined");
    }
    bool amount = in->refill_amount.st == N_OK && in->refill_amount.d != 0;
    bool interval = in->refill_interval.st == N_OK && in->refill_interval.d != 0;
    if (amount && !interval)
        return as_error(job, 400, "REFILL_AMOUNT_AND_INTERVAL_REQUIRED",
                        "refillAmount is required when refillInterval is provided");
    if (interval && !amount)
        return as_error(job, 400, "REFILL_INTERVAL_AND_AMOUNT_REQUIRED",
                        "refillInterval is required when refillAmount is provided");
    bool expires = in->expires_in.st == N_OK; /* >= 1 after zod: ak_truthy */
    if (expires && !ak_expires_in_bounds(job, in->expires_in.d))
        return true;
    const char *prefix = in->prefix ? in->prefix->u.string : NULL;
    if (prefix && strlen(prefix) > PREFIX_MAX)
        return as_error(job, 400, "INVALID_PREFIX_LENGTH",
                        "The prefix length is either too large or too small.");
    const char *name = in->name ? in->name->u.string : NULL;
    if (name && name[0] && !ak_name_length_ok(job, name))
        return true;

    ak_sweep_expired(w);

    /* The stored texts. metadata: JSON.stringify of a ak_truthy value, else the
     * text null (what Better Auth writes); permissions: JSON or NULL. */
    struct pc_buf mdtext = {0}, permtext = {0};
    if (ak_truthy(md)) {
        if (!json_write(&mdtext, md, 0)) {
            pc_buf_free(&mdtext);
            return as_error(job, 400, "VALIDATION_ERROR",
                            "[body.metadata] Too deeply nested");
        }
    } else {
        pc_buf_puts(&mdtext, "null");
    }
    if (in->permissions)
        (void)json_write(&permtext, in->permissions, 0);

    const char *use_prefix = prefix ? prefix : as_cfg.apikey_prefix;
    size_t plen = strlen(use_prefix);
    char *key = pc_xmalloc(plen + KEY_LETTERS + 1);
    memcpy(key, use_prefix, plen);
    /* generateRandomString(64, "a-z", "A-Z") */
    pc_random_string(key + plen, KEY_LETTERS,
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    char hash[PC_HASH_B64_LEN + 1];
    pc_cred_hash(key, plen + KEY_LETTERS, hash);
    char start[KEY_START_LEN + 1];
    snprintf(start, sizeof start, "%s", key);
    char id[33];
    pc_random_alnum(id, 32);

    int64_t now = pc_now_ms();
    char nows[32], exps[32], rem[32], ra[32], ri[32], rw[32], rm[32];
    snprintf(nows, sizeof nows, "%lld", (long long)now);
    if (expires)
        snprintf(exps, sizeof exps, "%lld", (long long)((double)now + in->expires_in.d * 1000.0));
    if (in->remaining.st == N_OK)
        ak_fmt_int(rem, sizeof rem, &in->remaining);
    if (in->refill_amount.st == N_OK)
        ak_fmt_int(ra, sizeof ra, &in->refill_amount);
    if (in->refill_interval.st == N_OK)
        ak_fmt_int(ri, sizeof ri, &in->refill_interval);
    if (in->rl_window.st == N_OK)
        ak_fmt_int(rw, sizeof rw, &in->rl_window);
    else
        snprintf(rw, sizeof rw, "%lld", (long long)as_cfg.apikey_rl_window);
    if (in->rl_max.st == N_OK)
        ak_fmt_int(rm, sizeof rm, &in->rl_max);
    else
        snprintf(rm, sizeof rm, "%lld", (long long)as_cfg.apikey_rl_max);
    const char *params[] = {
        id,
        name,
        start,
        reference_id,
        use_prefix,
        hash,
        in->refill_interval.st == N_OK ? ri : NULL,
        in->refill_amount.st == N_OK ? ra : NULL,
        (in->has_rl_enabled && !in->rl_enabled) ? "f" : "t",
        rw,
        rm,
        in->remaining.st == N_OK ? rem : NULL,
        expires ? exps : NULL,
        nows,
        in->permissions ? permtext.data : NULL,
        mdtext.data,
    };
    PGresult *res = pc_db_exec(
        &w->db,
        "INSERT INTO \"apikey\" (\"id\", \"configId\", \"name\", \"start\", \"referenceId\", "
        "\"prefix\", \"key\", \"refillInterval\", \"refillAmount\", \"lastRefillAt\", \"enabled\", "
        "\"rateLimitEnabled\", \"rateLimitTimeWindow\", \"rateLimitMax\", \"requestCount\", "
        "\"remaining\", \"lastRequest\", \"expiresAt\", \"createdAt\", \"updatedAt\", "
        "\"permissions\", \"metadata\") VALUES ($1, 'default', $2, $3, $4, $5, $6, $7::integer, "
        "$8::integer, NULL, true, $9::boolean, $10::integer, $11::integer, 0, $12::integer, NULL, "
        TS("$13") ", " TS("$14") ", " TS("$14") ", $15, $16) RETURNING " AK_COLS,
        16, params);
    as_health_note_pg(res != NULL);
    bool ok = pc_db_ok(res) && PQntuples(res) == 1;
    if (ok) {
        /* The answer echoes the body's metadata (`metadata ?? null`). */
        struct pc_buf echo = {0};
        if (md && !YAJL_IS_NULL(md) && json_write(&echo, md, 0))
            ak_reply_row(job, res, key, echo.data);
        else
            ak_reply_row(job, res, key, "null");
        pc_buf_free(&echo);
    }
    if (res)
        PQclear(res);
    pc_wipe(key, plen + KEY_LETTERS);
    free(key);
    pc_buf_free(&mdtext);
    pc_buf_free(&permtext);
    if (!ok)
        return as_fail_db(job);
    return true;
}

/* The user named by an internal call must exist (Better Auth's server API
 * would file a key under any string). Answers and returns false otherwise. */
bool ak_user_exists(struct as_job *job, struct as_worker *w, const char *user_id)
{
    const char *params[] = {user_id};
    PGresult *res = pc_db_exec(&w->db, "SELECT 1 FROM \"user\" WHERE \"id\" = $1", 1, params);
    as_health_note_pg(res != NULL);
    bool ok = pc_db_ok(res), found = ok && PQntuples(res) == 1;
    if (res)
        PQclear(res);
    if (!ok)
        return !as_fail_db(job);
    if (!found)
        return !as_error(job, 404, "USER_NOT_FOUND", "User not found");
    snprintf(job->user_id, sizeof job->user_id, "%s", user_id);
    return true;
}

/* A SET list under construction: "col" = <pre>$n<post>. Parameters 1 and 2
 * are the key id and its owner. */
struct setlist {
    struct pc_buf sql;
    const char *params[16];
    char *owned[16];
    int np;
};

#define SET_TS "('epoch'::timestamptz + ", "::bigint * interval '1 millisecond')"

static void set_add(struct setlist *sl, const char *col, const char *pre, const char *post,
                    const char *val, bool own)
{
    sl->params[sl->np] = val;
    sl->owned[sl->np] = own ? (char *)val : NULL;
    sl->np++;
    pc_buf_printf(&sl->sql, "%s\"%s\" = %s$%d%s", sl->sql.len ? ", " : "", col, pre, sl->np,
                  post);
}

static void set_add_num(struct setlist *sl, const char *col, const struct numfield *f)
{
    char b[32];
    ak_fmt_int(b, sizeof b, f);
    set_add(sl, col, "", "::integer", pc_xstrdup(b), true);
}

static void set_free(struct setlist *sl)
{
    for (int i = 0; i < sl->np; i++)
        free(sl->owned[i]);
    pc_buf_free(&sl->sql);
}

/* update-api-key.ts after authentication: the owner check, Better Auth's
 * value checks, one UPDATE, then the revocation. */
bool ak_update_key(struct as_job *job, struct as_worker *w, struct ak_input *in,
                       const char *user_id)
{
    const char *kp[] = {in->key_id->u.string, user_id};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT 1 FROM \"apikey\" WHERE \"id\" = $1 AND \"referenceId\" = $2 "
                               "AND " DEFAULT_CONFIG,
                               2, kp);
    as_health_note_pg(res != NULL);
    bool ok = pc_db_ok(res), found = ok && PQntuples(res) == 1;
    if (res)
        PQclear(res);
    if (!ok)
        return as_fail_db(job);
    if (!found)
        return as_error(job, 404, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);

    struct setlist sl = {0};
    sl.params[0] = in->key_id->u.string;
    sl.params[1] = user_id;
    sl.np = 2;
    if (in->name) {
        if (!ak_name_length_ok(job, in->name->u.string)) {
            set_free(&sl);
            return true;
        }
        set_add(&sl, "name", "", "", in->name->u.string, false);
    }
    if (in->has_enabled)
        set_add(&sl, "enabled", "", "::boolean", in->enabled ? "t" : "f", false);
    if (in->expires_in.st == N_OK) {
        if (!ak_expires_in_bounds(job, in->expires_in.d)) {
            set_free(&sl);
            return true;
        }
        char b[32];
        snprintf(b, sizeof b, "%lld",
                 (long long)((double)pc_now_ms() + in->expires_in.d * 1000.0));
        set_add(&sl, "expiresAt", SET_TS, pc_xstrdup(b), true);
    } else if (in->expires_in.st == N_NULL) {
        set_add(&sl, "expiresAt", "", "::timestamptz", NULL, false);
    }
    if (in->metadata && as_cfg.apikey_metadata) {
        yajl_val md = in->metadata;
        if (!YAJL_IS_OBJECT(md) && !YAJL_IS_ARRAY(md) && !YAJL_IS_NULL(md)) {
            set_free(&sl);
            return as_error(job, 400, "INVALID_METADATA_TYPE",
                            "metadata must be an object or undefined");
        }
        struct pc_buf t = {0};
        if (!json_write(&t, md, 0)) {
            pc_buf_free(&t);
            set_free(&sl);
            return as_error(job, 400, "VALIDATION_ERROR", "[body.metadata] Too deeply nested");
        }
        set_add(&sl, "metadata", "", "", t.data, true);
    }
    if (in->remaining.st == N_OK)
        set_add_num(&sl, "remaining", &in->remaining);
    if (in->refill_amount.st != N_ABSENT || in->refill_interval.st != N_ABSENT) {
        if (in->refill_amount.st != N_ABSENT && in->refill_interval.st == N_ABSENT) {
            set_free(&sl);
            return as_error(job, 400, "REFILL_AMOUNT_AND_INTERVAL_REQUIRED",
                            "refillAmount is required when refillInterval is provided");
        }
        if (in->refill_interval.st != N_ABSENT && in->refill_amount.st == N_ABSENT) {
            set_free(&sl);
            return as_error(job, 400, "REFILL_INTERVAL_AND_AMOUNT_REQUIRED",
                            "refillInterval is required when refillAmount is provided");
        }
        set_add_num(&sl, "refillAmount", &in->refill_amount);
        set_add_num(&sl, "refillInterval", &in->refill_interval);
    }
    if (in->has_rl_enabled)
        set_add(&sl, "rateLimitEnabled", "", "::boolean", in->rl_enabled ? "t" : "f", false);
    if (in->rl_window.st == N_OK)
        set_add_num(&sl, "rateLimitTimeWindow", &in->rl_window);
    if (in->rl_max.st == N_OK)
        set_add_num(&sl, "rateLimitMax", &in->rl_max);
    if (in->has_permissions) {
        struct pc_buf t = {0};
        if (in->permissions)
            (void)json_write(&t, in->permissions, 0);
        else
            pc_buf_puts(&t, "null");
        set_add(&sl, "permissions", "", "", t.data, true);
    }
    if (sl.np == 2) {
        set_free(&sl);
        return as_error(job, 400, "NO_VALUES_TO_UPDATE", "No values to update.");
    }
    /* updatedAt stays: Better Auth's update does not touch it (observed). */
    struct pc_buf sql = {0};
    pc_buf_printf(&sql,
                  "UPDATE \"apikey\" SET %s WHERE \"id\" = $1 AND \"referenceId\" = $2 AND "
                  DEFAULT_CONFIG " RETURNING " AK_COLS,
                  sl.sql.data);
    res = pc_db_exec(&w->db, sql.data, sl.np, sl.params);
    pc_buf_free(&sql);
    set_free(&sl);
    ok = pc_db_ok(res);
    found = ok && PQntuples(res) == 1;
    if (found) {
        /* Every change is announced: a disabled key or a shorter life must
         * stop at once, and any other change makes gateways re-read. */
        ak_revoke_result(w, res, PC_BA_AK_KEY);
        if (in->remaining.st != N_ABSENT)
            set_live_remaining(w, PQgetvalue(res, 0, PC_BA_AK_KEY), in->remaining.st == N_OK,
                               (long long)in->remaining.d);
        ak_sweep_expired(w);
        ak_reply_row(job, res, NULL, NULL);
    }
    if (res)
        PQclear(res);
    if (!ok)
        return as_fail_db(job);
    if (!found)
        return as_error(job, 404, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    return true;
}
