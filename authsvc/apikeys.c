/* Portcullis - MIT licence. See LICENSE.
 *
 * apikeys.c: API keys as @better-auth/api-key 1.7.5 manages them
 * (better-auth-compat.md §4; AK dist/index.mjs and dist/version-*.mjs for
 * the error codes). Rows live in the `apikey` table Better Auth uses, so
 * either side lists, changes and verifies the other's keys.
 *
 *   create   validate (zod's order and messages) -> server-only fields are
 *            refused over HTTP -> session -> Better Auth's checks -> a key of
 *            prefix + 64 letters; only its SHA-256 (base64url) is stored.
 *            The plaintext is in this one answer and nowhere else.
 *   get/list/update/delete   the caller's own keys; anyone else's is 404
 *   internal /api/internal/api-key/{create,update} take the same bodies plus
 *            the server-only fields and userId, behind INTERNAL_SERVICE_SECRET
 *            (header x-service-auth, compared in constant time)
 *   validate /api/internal/validate: a key or a session token in, a verdict
 *            out. It reads; it does not consume quota or rate limit (the
 *            gateway owns those counters).
 *   revoke   every update and delete: PostgreSQL first, then DEL
 *            <REDIS_PREFIX>k:<hash> and PUBLISH <hash>, so every gateway
 *            re-reads the row (as_revoke_hash retries what Redis missed).
 */
#include "authsvc.h"
#include "apikeys.h"
#include "job.h"
#include "validate.h"
#include "../lib/bearer.h"
#include "../lib/cookie.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>

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


/* Every column, in the order Better Auth's adapter returns a row (observed),
 * timestamps as epoch ms (floor: JS Dates hold whole milliseconds). */
#define MS(c) "floor(extract(epoch from \"" c "\") * 1000)::bigint"
#define AK_COLS "\"configId\", \"name\", \"start\", \"referenceId\", \"prefix\", " \
    "\"refillInterval\", \"refillAmount\", " MS("lastRefillAt") ", \"enabled\", " \
    "\"rateLimitEnabled\", \"rateLimitTimeWindow\", \"rateLimitMax\", \"requestCount\", " \
    "\"remaining\", " MS("lastRequest") ", " MS("expiresAt") ", " MS("createdAt") ", " \
    MS("updatedAt") ", \"permissions\", \"metadata\", \"id\", \"key\""
enum {
    C_CONFIG = 0, C_NAME, C_START, C_REF, C_PREFIX, C_REFILL_INTERVAL, C_REFILL_AMOUNT,
    C_LAST_REFILL, C_ENABLED, C_RL_ENABLED, C_RL_WINDOW, C_RL_MAX, C_REQ_COUNT, C_REMAINING,
    C_LAST_REQUEST, C_EXPIRES, C_CREATED, C_UPDATED, C_PERMISSIONS, C_METADATA, C_ID, C_KEY,
};
/* A Better Auth key of the default configuration (null and "" count as default). */
#define DEFAULT_CONFIG "(\"configId\" IS NULL OR \"configId\" IN ('', 'default'))"
/* Epoch milliseconds (text parameter) to timestamptz, exactly. */
#define TS(p) "('epoch'::timestamptz + " p "::bigint * interval '1 millisecond')"

/* ---- revocation ---- */

/* DEL + PUBLISH of one stored key hash (sessions.c retries what Redis
 * does not take). Call after PostgreSQL committed. */
static void revoke_key(struct as_worker *w, const char *hash)
{
    if (hash == NULL || strlen(hash) != PC_HASH_B64_LEN) {
        /* Not one of ours (e.g. a Better Auth row with disableKeyHashing):
         * announce the hash of what is stored, which is what a gateway would
         * have computed from that plaintext. */
        if (hash == NULL)
            return;
        char h[PC_HASH_B64_LEN + 1];
        pc_cred_hash(hash, strlen(hash), h);
        revoke_key(w, h);
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
        const char *argv[] = {"HSET", key.data, "rem", n};
        ok = pc_redis_ok(&w->redis, 4, argv);
    } else {
        const char *argv[] = {"HDEL", key.data, "rem", "lr"};
        ok = pc_redis_ok(&w->redis, 4, argv);
    }
    if (!ok)
        pc_log_warn("redis: could not update a key's live remaining count");
    pc_buf_free(&key);
}

static void revoke_result(struct as_worker *w, const PGresult *res, int col)
{
    for (int i = 0; i < PQntuples(res); i++)
        if (!PQgetisnull(res, i, col))
            revoke_key(w, PQgetvalue(res, i, col));
}

/* Better Auth's deleteAllExpiredApiKeys: at most every 10 s, on the
 * management routes. Deleted keys are revoked like any other. */
static _Atomic int64_t last_sweep_ms;

static void sweep_expired(struct as_worker *w)
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
        revoke_result(w, res, 0);
    }
    if (res)
        PQclear(res);
}

/* ---- key generation ---- */

/* ---- request helpers ---- */

static bool internal_enabled(void)
{
    return as_cfg.internal_secret != NULL && as_cfg.internal_secret[0] != '\0';
}

/* The guard of the internal routes: 404 while INTERNAL_SERVICE_SECRET is unset
 * (as an unknown route), 401 without the right x-service-auth. Both sides
 * are hashed first, so the comparison takes the same time whatever the
 * length or content of the header. */
static bool internal_auth(struct as_job *job)
{
    if (!internal_enabled())
        return !as_error(job, 404, "NOT_FOUND", "Not found");
    const char *h = as_header(job, "x-service-auth");
    unsigned char want[PC_SHA256_LEN], got[PC_SHA256_LEN];
    pc_sha256(as_cfg.internal_secret, strlen(as_cfg.internal_secret), want);
    pc_sha256(h ? h : "", h ? strlen(h) : 0, got);
    bool ok = pc_ct_eq(want, got, sizeof want) && h != NULL;
    pc_wipe(want, sizeof want);
    pc_wipe(got, sizeof got);
    if (!ok)
        return !as_error(job, 401, "UNAUTHORIZED", "Missing or invalid x-service-auth header");
    return true;
}

/* The API key routes take JSON only (Better Auth: 415 for any other type,
 * and a body without Content-Type is no body at all). Internal routes also
 * take JSON without a Content-Type. Answers and returns NULL on failure. */
static yajl_val ak_body(struct as_job *job, bool lenient)
{
    const char *ct = as_header(job, "Content-Type");
    if (ct != NULL) {
        size_t n = strcspn(ct, ";");
        while (n > 0 && ct[n - 1] == ' ')
            n--;
        if (!(n == 16 && pc_strnieq(ct, "application/json", 16))) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "Content-Type \"%.*s\" is not allowed. Allowed types: application/json",
                     (int)(n > 100 ? 100 : n), ct);
            as_error(job, 415, "UNSUPPORTED_MEDIA_TYPE", msg);
            return NULL;
        }
    } else if (!lenient) {
        as_error(job, 400, "VALIDATION_ERROR",
                 "[body] Invalid input: expected object, received undefined");
        return NULL;
    }
    return as_body(job, true);
}

/* Parsed query string: every value of every name, in order. */
struct query {
    struct evkeyvalq q;
};

static void query_parse(const struct as_job *job, struct query *q)
{
    TAILQ_INIT(&q->q);
    if (job->query && evhttp_parse_query_str(job->query, &q->q) != 0) {
        evhttp_clear_headers(&q->q);
        TAILQ_INIT(&q->q);
    }
    /* %FF and the like read as U+FFFD, as URLSearchParams reads them (the
     * values go to PostgreSQL; libevent frees them with free()) */
    for (struct evkeyval *kv = q->q.tqh_first; kv; kv = kv->next.tqe_next) {
        if (!pc_utf8_valid(kv->value, strlen(kv->value))) {
            char *fixed = pc_utf8_fix(kv->value, strlen(kv->value));
            free(kv->value);
            kv->value = fixed;
        }
    }
}

/* The first value of name (or NULL) and how many times it occurs. */
static const char *query_get(struct query *q, const char *name, int *count)
{
    const char *first = NULL;
    *count = 0;
    for (struct evkeyval *kv = q->q.tqh_first; kv; kv = kv->next.tqe_next) {
        if (strcmp(kv->key, name) != 0)
            continue;
        if (first == NULL)
            first = kv->value;
        (*count)++;
    }
    return first;
}

static void query_free(struct query *q)
{
    evhttp_clear_headers(&q->q);
}

/* ---- validation: zod's order and messages ---- */





/* A boolean field: sets *has and *out when present. */
static void v_bool(struct vcheck *v, yajl_val body, const char *key, bool *has, bool *out)
{
    yajl_val x = pc_json_get(body, key);
    *has = false;
    if (x == NULL)
        return;
    if (YAJL_IS_TRUE(x) || YAJL_IS_FALSE(x)) {
        *has = true;
        *out = YAJL_IS_TRUE(x);
        return;
    }
    as_v_expected(v, key, "boolean", x);
}

/* A JSON number as JavaScript reads it (overflow is Infinity). */
static double json_number(yajl_val x)
{
    return strtod(x->u.number.r, NULL);
}

static void fmt_min(char *out, size_t n, double min)
{
    snprintf(out, n, "Too small: expected number to be >=%lld", (long long)min);
}

enum num { N_ABSENT = 0, N_NULL, N_OK, N_BAD };

struct numfield {
    enum num st;
    double d;
};

/* A number field with zod's z.number()[.min(m)][.nullable()]. */
static struct numfield v_num(struct vcheck *v, yajl_val body, const char *key, bool nullable,
                             bool has_min, double min)
{
    struct numfield f = {N_ABSENT, 0};
    yajl_val x = pc_json_get(body, key);
    if (x == NULL)
        return f;
    if (YAJL_IS_NULL(x) && nullable) {
        f.st = N_NULL;
        return f;
    }
    if (!YAJL_IS_NUMBER(x)) {
        as_v_expected(v, key, "number", x);
        f.st = N_BAD;
        return f;
    }
    f.d = json_number(x);
    if (!isfinite(f.d)) {
        as_v_add(v, key, f.d > 0 ? "Invalid input: expected number, received Infinity"
                              : "Invalid input: expected number, received -Infinity");
        f.st = N_BAD;
        return f;
    }
    if (has_min && f.d < min) {
        char text[96];
        fmt_min(text, sizeof text, min);
        as_v_add(v, key, text);
        f.st = N_BAD;
        return f;
    }
    f.st = N_OK;
    return f;
}

/* The integer columns take 32-bit integers; Better Auth would pass 1.5 or
 * 3e9 to PostgreSQL and answer 500. Checked on the internal routes only,
 * after the server-only refusal, so HTTP callers see Better Auth's answers. */
static void v_int32(struct vcheck *v, const char *key, const struct numfield *f)
{
    if (f->st != N_OK)
        return;
    if (f->d != floor(f->d))
        as_v_add(v, key, "Invalid input: expected int, received number");
    else if (f->d > 2147483647.0)
        as_v_add(v, key, "Too big: expected int to be <=2147483647");
    else if (f->d < -2147483648.0)
        as_v_add(v, key, "Too small: expected int to be >=-2147483648");
}

/* z.record(z.string(), z.array(z.string())), optionally nullable. Returns
 * the value (NULL when absent or null). */
static yajl_val v_perms(struct vcheck *v, yajl_val body, const char *key, bool nullable,
                        bool *present)
{
    yajl_val x = pc_json_get(body, key);
    *present = x != NULL;
    if (x == NULL || (YAJL_IS_NULL(x) && nullable))
        return NULL;
    if (!YAJL_IS_OBJECT(x)) {
        as_v_expected(v, key, "record", x);
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i < x->u.object.len; i++) {
        yajl_val a = x->u.object.values[i];
        struct pc_buf path = {0};
        pc_buf_printf(&path, "%s.%s", key, x->u.object.keys[i]);
        if (!YAJL_IS_ARRAY(a)) {
            as_v_expected(v, path.data, "array", a);
            ok = false;
        } else {
            for (size_t j = 0; j < a->u.array.len; j++) {
                if (!YAJL_IS_STRING(a->u.array.values[j])) {
                    struct pc_buf p2 = {0};
                    pc_buf_printf(&p2, "%s.%zu", path.data, j);
                    as_v_expected(v, p2.data, "string", a->u.array.values[j]);
                    pc_buf_free(&p2);
                    ok = false;
                }
            }
        }
        pc_buf_free(&path);
    }
    return ok ? x : NULL;
}

/* zod's z.coerce.string() for userId. Returns a heap string or NULL when
 * absent. Strict (internal routes): only strings and integers; anything
 * else is recorded. Lenient (HTTP): what JavaScript's String() gives, which
 * matters only in that it is present and names no real user. */
static char *v_user_id(struct vcheck *v, yajl_val body, bool strict)
{
    yajl_val x = pc_json_get(body, "userId");
    if (x == NULL)
        return NULL;
    if (YAJL_IS_STRING(x))
        return pc_xstrdup(x->u.string);
    if (YAJL_IS_INTEGER(x)) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)x->u.number.i);
        return pc_xstrdup(b);
    }
    if (strict) {
        as_v_expected(v, "userId", "string", x);
        return NULL;
    }
    switch (x->type) {
    case yajl_t_number: return pc_xstrdup(x->u.number.r);
    case yajl_t_true: return pc_xstrdup("true");
    case yajl_t_false: return pc_xstrdup("false");
    case yajl_t_object: return pc_xstrdup("[object Object]");
    case yajl_t_array: return pc_xstrdup("[array]");
    default: return pc_xstrdup("null");
    }
}

static bool prefix_chars_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

/* JavaScript truthiness of a JSON value (absent is falsy). */
static bool truthy(yajl_val x)
{
    if (x == NULL || YAJL_IS_NULL(x) || YAJL_IS_FALSE(x))
        return false;
    if (YAJL_IS_STRING(x))
        return x->u.string[0] != '\0';
    if (YAJL_IS_NUMBER(x)) {
        double d = json_number(x);
        return d != 0 && !isnan(d);
    }
    return true;
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
static void jw_json_col(struct pc_jw *jw, const PGresult *res, int row, int col, bool twice)
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

static void jw_col_str(struct pc_jw *jw, const PGresult *res, int row, int col)
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

static void jw_col_date(struct pc_jw *jw, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        pc_jw_null(jw);
    else
        pc_jw_date(jw, pc_db_ms(PQgetvalue(res, row, col)));
}

/* One row as Better Auth answers it: its field order, no hashed key;
 * `plaintext` (create only) sits where the key column is; `metadata_raw`
 * (create only) replaces the stored metadata. */
static void jw_row(struct pc_jw *jw, const PGresult *res, int row, const char *plaintext,
                   const char *metadata_raw)
{
    pc_jw_obj_begin(jw);
    pc_jw_key(jw, "configId");
    jw_col_str(jw, res, row, C_CONFIG);
    pc_jw_key(jw, "name");
    jw_col_str(jw, res, row, C_NAME);
    pc_jw_key(jw, "start");
    jw_col_str(jw, res, row, C_START);
    pc_jw_key(jw, "referenceId");
    jw_col_str(jw, res, row, C_REF);
    pc_jw_key(jw, "prefix");
    jw_col_str(jw, res, row, C_PREFIX);
    if (plaintext) {
        pc_jw_key(jw, "key");
        pc_jw_str(jw, plaintext);
    }
    pc_jw_key(jw, "refillInterval");
    jw_col_int(jw, res, row, C_REFILL_INTERVAL);
    pc_jw_key(jw, "refillAmount");
    jw_col_int(jw, res, row, C_REFILL_AMOUNT);
    pc_jw_key(jw, "lastRefillAt");
    jw_col_date(jw, res, row, C_LAST_REFILL);
    pc_jw_key(jw, "enabled");
    jw_col_bool(jw, res, row, C_ENABLED);
    pc_jw_key(jw, "rateLimitEnabled");
    jw_col_bool(jw, res, row, C_RL_ENABLED);
    pc_jw_key(jw, "rateLimitTimeWindow");
    jw_col_int(jw, res, row, C_RL_WINDOW);
    pc_jw_key(jw, "rateLimitMax");
    jw_col_int(jw, res, row, C_RL_MAX);
    pc_jw_key(jw, "requestCount");
    jw_col_int(jw, res, row, C_REQ_COUNT);
    pc_jw_key(jw, "remaining");
    jw_col_int(jw, res, row, C_REMAINING);
    pc_jw_key(jw, "lastRequest");
    jw_col_date(jw, res, row, C_LAST_REQUEST);
    pc_jw_key(jw, "expiresAt");
    jw_col_date(jw, res, row, C_EXPIRES);
    pc_jw_key(jw, "createdAt");
    jw_col_date(jw, res, row, C_CREATED);
    pc_jw_key(jw, "updatedAt");
    jw_col_date(jw, res, row, C_UPDATED);
    pc_jw_key(jw, "permissions");
    jw_json_col(jw, res, row, C_PERMISSIONS, false);
    pc_jw_key(jw, "metadata");
    if (metadata_raw)
        pc_jw_raw(jw, metadata_raw);
    else
        jw_json_col(jw, res, row, C_METADATA, true);
    pc_jw_key(jw, "id");
    jw_col_str(jw, res, row, C_ID);
    pc_jw_obj_end(jw);
}

static bool reply_row(struct as_job *job, const PGresult *res, const char *plaintext,
                      const char *metadata_raw)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    jw_row(&jw, res, 0, plaintext, metadata_raw);
    return as_reply(job, 200, &b);
}

/* ---- create ---- */

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

static void input_free(struct ak_input *in)
{
    if (in->body)
        yajl_tree_free(in->body);
    free(in->user_id);
    memset(in, 0, sizeof *in);
}

/* createApiKeyBodySchema, field by field in its order. */
static void validate_create(struct vcheck *v, struct ak_input *in, bool internal)
{
    yajl_val b = in->body;
    in->config_id = as_v_str(v, b, "configId", false, false);
    in->name = as_v_str(v, b, "name", false, false);
    in->expires_in = v_num(v, b, "expiresIn", true, true, 1);
    in->prefix = as_v_str(v, b, "prefix", false, false);
    if (in->prefix && !prefix_chars_ok(in->prefix->u.string))
        as_v_add(v, "prefix", "Invalid prefix format, must be alphanumeric and contain only "
                           "underscores and hyphens.");
    in->remaining = v_num(v, b, "remaining", true, true, 0);
    in->metadata = pc_json_get(b, "metadata");
    in->refill_amount = v_num(v, b, "refillAmount", false, true, 1);
    in->refill_interval = v_num(v, b, "refillInterval", false, false, 0);
    in->rl_window = v_num(v, b, "rateLimitTimeWindow", false, false, 0);
    in->rl_max = v_num(v, b, "rateLimitMax", false, false, 0);
    v_bool(v, b, "rateLimitEnabled", &in->has_rl_enabled, &in->rl_enabled);
    in->permissions = v_perms(v, b, "permissions", false, &in->has_permissions);
    in->user_id = v_user_id(v, b, internal);
    /* organizationId: z.coerce.string() accepts anything; with keys that
     * belong to users (references:"user") Better Auth ignores it. */
}

static void validate_int_columns(struct vcheck *v, const struct ak_input *in)
{
    v_int32(v, "remaining", &in->remaining);
    v_int32(v, "refillAmount", &in->refill_amount);
    v_int32(v, "refillInterval", &in->refill_interval);
    v_int32(v, "rateLimitTimeWindow", &in->rl_window);
    v_int32(v, "rateLimitMax", &in->rl_max);
}

static void fmt_int(char *out, size_t n, const struct numfield *f)
{
    snprintf(out, n, "%lld", (long long)f->d);
}

static bool expires_in_bounds(struct as_job *job, double secs)
{
    double days = secs / 86400.0;
    if (days < EXPIRES_MIN_DAYS)
        return !as_error(job, 400, "EXPIRES_IN_IS_TOO_SMALL",
                         "The expiresIn is smaller than the predefined minimum value.");
    if (days > EXPIRES_MAX_DAYS)
        return !as_error(job, 400, "EXPIRES_IN_IS_TOO_LARGE",
                         "The expiresIn is larger than the predefined maximum value.");
    return true;
}

static bool name_length_ok(struct as_job *job, const char *name)
{
    size_t n = pc_utf16_length(name, strlen(name));
    if (n < NAME_MIN || n > NAME_MAX)
        return !as_error(job, 400, "INVALID_NAME_LENGTH",
                         "The name length is either too large or too small.");
    return true;
}

/* The checks after authentication and the insert (create-api-key.ts from
 * `if (metadata)` on). reference_id is the owner. */
static bool create_key(struct as_job *job, struct as_worker *w, struct ak_input *in,
                       const char *reference_id)
{
    yajl_val md = in->metadata;
    if (truthy(md)) {
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
    bool expires = in->expires_in.st == N_OK; /* >= 1 after zod: truthy */
    if (expires && !expires_in_bounds(job, in->expires_in.d))
        return true;
    const char *prefix = in->prefix ? in->prefix->u.string : NULL;
    if (prefix && strlen(prefix) > PREFIX_MAX)
        return as_error(job, 400, "INVALID_PREFIX_LENGTH",
                        "The prefix length is either too large or too small.");
    const char *name = in->name ? in->name->u.string : NULL;
    if (name && name[0] && !name_length_ok(job, name))
        return true;

    sweep_expired(w);

    /* The stored texts. metadata: JSON.stringify of a truthy value, else the
     * text null (what Better Auth writes); permissions: JSON or NULL. */
    struct pc_buf mdtext = {0}, permtext = {0};
    if (truthy(md)) {
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
        fmt_int(rem, sizeof rem, &in->remaining);
    if (in->refill_amount.st == N_OK)
        fmt_int(ra, sizeof ra, &in->refill_amount);
    if (in->refill_interval.st == N_OK)
        fmt_int(ri, sizeof ri, &in->refill_interval);
    if (in->rl_window.st == N_OK)
        fmt_int(rw, sizeof rw, &in->rl_window);
    else
        snprintf(rw, sizeof rw, "%lld", (long long)as_cfg.apikey_rl_window);
    if (in->rl_max.st == N_OK)
        fmt_int(rm, sizeof rm, &in->rl_max);
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
            reply_row(job, res, key, echo.data);
        else
            reply_row(job, res, key, "null");
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

/* Server-only fields sent over HTTP (create: `remaining` only when not null). */
static bool server_only_create(const struct ak_input *in)
{
    return in->refill_amount.st != N_ABSENT || in->refill_interval.st != N_ABSENT ||
           in->rl_max.st != N_ABSENT || in->rl_window.st != N_ABSENT || in->has_rl_enabled ||
           in->has_permissions || in->remaining.st == N_OK;
}

bool as_route_apikey_create(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if ((in.body = ak_body(job, false)) == NULL)
        return true;
    struct vcheck v = {.where = "body"};
    validate_create(&v, &in, false);
    if (as_v_failed(job, &v)) {
        input_free(&in);
        return true;
    }
    if (server_only_create(&in)) {
        input_free(&in);
        return as_error(job, 400, "SERVER_ONLY_PROPERTY", E_SERVER_ONLY);
    }
    if (in.user_id != NULL) {
        input_free(&in);
        return as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    }
    struct as_session s = {0};
    struct as_user u = {0};
    enum as_lookup lk = as_session_resolve(job, w, &s, &u);
    if (lk != AS_LOOKUP_OK) {
        input_free(&in);
        if (lk == AS_LOOKUP_UNAVAILABLE)
            return as_fail_db(job);
        return as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    }
    create_key(job, w, &in, u.id);
    as_session_free(&s);
    as_user_free(&u);
    input_free(&in);
    return true;
}

/* The user named by an internal call must exist (Better Auth's server API
 * would file a key under any string). Answers and returns false otherwise. */
static bool user_exists(struct as_job *job, struct as_worker *w, const char *user_id)
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

static void validate_update(struct vcheck *v, struct ak_input *in, bool internal);

/* The shared start of the internal create and update routes: the service
 * secret, the body, validation (create or update rules plus the 32-bit
 * integer columns) and a userId. Returns false when it has answered. */
static bool internal_input(struct as_job *job, struct ak_input *in, bool create)
{
    if (!internal_auth(job))
        return false;
    if ((in->body = ak_body(job, true)) == NULL)
        return false;
    struct vcheck v = {.where = "body"};
    if (create)
        validate_create(&v, in, true);
    else
        validate_update(&v, in, true);
    if (v.msg.len == 0)
        validate_int_columns(&v, in);
    if (as_v_failed(job, &v))
        return false;
    if (in->user_id == NULL || in->user_id[0] == '\0')
        return !as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    return true;
}

bool as_route_internal_apikey_create(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if (internal_input(job, &in, true) && user_exists(job, w, in.user_id))
        create_key(job, w, &in, in.user_id);
    input_free(&in);
    return true;
}

/* ---- get / delete / list ---- */

/* A query string parameter that must be a single string (zod's
 * z.string(); a repeated name is an array). */
static const char *q_str(struct vcheck *v, struct query *q, const char *name, bool required)
{
    int count;
    const char *val = query_get(q, name, &count);
    if (count == 1)
        return val;
    if (count > 1)
        as_v_add(v, name, "Invalid input: expected string, received array");
    else if (required)
        as_v_add(v, name, "Invalid input: expected string, received undefined");
    return NULL;
}

bool as_route_apikey_get(struct as_job *job, struct as_worker *w)
{
    struct query q;
    query_parse(job, &q);
    struct vcheck v = {.where = "query"};
    (void)q_str(&v, &q, "configId", false);
    const char *id = q_str(&v, &q, "id", true);
    if (as_v_failed(job, &v)) {
        query_free(&q);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        query_free(&q);
        return true;
    }
    const char *params[] = {id, u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT " AK_COLS " FROM \"apikey\" WHERE \"id\" = $1 AND "
                               "\"referenceId\" = $2 AND " DEFAULT_CONFIG,
                               2, params);
    query_free(&q);
    as_session_free(&s);
    as_user_free(&u);
    bool ok = pc_db_ok(res);
    if (ok && PQntuples(res) == 1) {
        sweep_expired(w);
        reply_row(job, res, NULL, NULL);
    } else if (ok) {
        as_error(job, 404, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    } else {
        as_fail_db(job);
    }
    if (res)
        PQclear(res);
    return true;
}

bool as_route_apikey_delete(struct as_job *job, struct as_worker *w)
{
    yajl_val body = ak_body(job, false);
    if (body == NULL)
        return true;
    struct vcheck v = {.where = "body"};
    (void)as_v_str(&v, body, "configId", false, false);
    yajl_val key_id = as_v_str(&v, body, "keyId", true, false);
    if (as_v_failed(job, &v)) {
        yajl_tree_free(body);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        yajl_tree_free(body);
        return true;
    }
    const char *params[] = {key_id->u.string, u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "DELETE FROM \"apikey\" WHERE \"id\" = $1 AND \"referenceId\" = $2 "
                               "AND " DEFAULT_CONFIG " RETURNING \"key\"",
                               2, params);
    yajl_tree_free(body);
    as_session_free(&s);
    as_user_free(&u);
    bool ok = pc_db_ok(res), found = ok && PQntuples(res) > 0;
    if (found)
        revoke_result(w, res, 0);
    if (res)
        PQclear(res);
    if (!ok)
        return as_fail_db(job);
    if (!found)
        return as_error(job, 404, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    sweep_expired(w);
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"success\":true}");
    return as_reply(job, 200, &b);
}

/* JavaScript's Number(string), for z.coerce.number(). */
static double js_number(const char *s)
{
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || (s[n - 1] >= '\t' && s[n - 1] <= '\r')))
        n--;
    if (n == 0)
        return 0;
    char buf[128];
    if (n >= sizeof buf)
        return NAN;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X' || buf[1] == 'o' || buf[1] == 'O' ||
                          buf[1] == 'b' || buf[1] == 'B')) {
        int radix = (buf[1] | 0x20) == 'x' ? 16 : (buf[1] | 0x20) == 'o' ? 8 : 2;
        if (buf[2] == '\0')
            return NAN;
        double d = 0;
        for (const char *p = buf + 2; *p; p++) {
            int dv = (*p >= '0' && *p <= '9') ? *p - '0'
                     : ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f') ? (*p | 0x20) - 'a' + 10
                                                                  : 99;
            if (dv >= radix)
                return NAN;
            d = d * radix + dv;
        }
        return d;
    }
    const char *p = buf;
    if (*p == '+' || *p == '-')
        p++;
    if (strcmp(p, "Infinity") == 0)
        return buf[0] == '-' ? -INFINITY : INFINITY;
    /* digits [. digits] | . digits, then an optional exponent */
    const char *q = p;
    size_t digits = 0;
    while (*q >= '0' && *q <= '9')
        q++, digits++;
    if (*q == '.') {
        q++;
        while (*q >= '0' && *q <= '9')
            q++, digits++;
    }
    if (digits == 0)
        return NAN;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return NAN;
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (*q != '\0')
        return NAN;
    return strtod(buf, NULL);
}

/* z.coerce.number().int().nonnegative() on a query parameter. Returns true
 * and sets *out when present and valid. */
static bool q_count(struct vcheck *v, struct query *q, const char *name, int64_t *out)
{
    int count;
    const char *val = query_get(q, name, &count);
    if (count == 0)
        return false;
    double d = count > 1 ? NAN : js_number(val);
    if (isnan(d)) {
        as_v_add(v, name, "Invalid input: expected number, received NaN");
        return false;
    }
    if (isinf(d)) {
        as_v_add(v, name, d > 0 ? "Invalid input: expected number, received Infinity"
                             : "Invalid input: expected number, received -Infinity");
        return false;
    }
    if (d != floor(d)) {
        as_v_add(v, name, "Invalid input: expected int, received number");
        return false;
    }
    if (d > 9007199254740991.0) {
        as_v_add(v, name, "Too big: expected int to be <=9007199254740991");
        return false;
    }
    if (d < 0) {
        as_v_add(v, name, "Too small: expected number to be >=0");
        return false;
    }
    *out = (int64_t)d;
    return true;
}

/* Columns a list may be sorted by: the apikey model's fields. */
static const char *const sortable[] = {
    "id", "configId", "name", "start", "referenceId", "prefix", "key", "refillInterval",
    "refillAmount", "lastRefillAt", "enabled", "rateLimitEnabled", "rateLimitTimeWindow",
    "rateLimitMax", "requestCount", "remaining", "lastRequest", "expiresAt", "createdAt",
    "updatedAt", "permissions", "metadata",
};

bool as_route_apikey_list(struct as_job *job, struct as_worker *w)
{
    struct query q;
    query_parse(job, &q);
    struct vcheck v = {.where = "query"};
    const char *config_id = q_str(&v, &q, "configId", false);
    const char *org_id = q_str(&v, &q, "organizationId", false);
    int64_t limit = 0, offset = 0;
    bool has_limit = q_count(&v, &q, "limit", &limit);
    bool has_offset = q_count(&v, &q, "offset", &offset);
    const char *sort_by = q_str(&v, &q, "sortBy", false);
    int dcount;
    const char *dir = query_get(&q, "sortDirection", &dcount);
    if (dcount > 1 || (dcount == 1 && strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0))
        as_v_add(&v, "sortDirection", "Invalid option: expected one of \"asc\"|\"desc\"");
    const char *sort_col = NULL;
    if (sort_by && sort_by[0]) {
        for (size_t i = 0; i < PC_ARRAY_LEN(sortable) && !sort_col; i++)
            if (strcmp(sort_by, sortable[i]) == 0)
                sort_col = sortable[i];
        if (sort_col == NULL)
            as_v_add(&v, "sortBy", "Invalid input: not a field of the apikey model");
    }
    if (as_v_failed(job, &v)) {
        query_free(&q);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        query_free(&q);
        return true;
    }
    if (org_id && org_id[0]) {
        query_free(&q);
        as_session_free(&s);
        as_user_free(&u);
        return as_error(job, 400, "ORGANIZATION_PLUGIN_REQUIRED",
                        "Organization plugin is required for organization-owned API keys. "
                        "Please install and configure the organization plugin.");
    }
    /* configId filters with Better Auth's configIdMatches: null, "" and
     * "default" are one configuration. */
    struct pc_buf where = {0}, sql = {0};
    const char *params[4] = {u.id};
    int np = 1;
    pc_buf_puts(&where, "\"referenceId\" = $1");
    if (config_id && config_id[0]) {
        if (strcmp(config_id, "default") == 0) {
            pc_buf_puts(&where, " AND " DEFAULT_CONFIG);
        } else {
            params[np++] = config_id;
            pc_buf_printf(&where, " AND \"configId\" = $%d", np);
        }
    }
    int nwhere = np; /* parameters the WHERE clause uses */
    pc_buf_printf(&sql, "SELECT " AK_COLS " FROM \"apikey\" WHERE %s ORDER BY ", where.data);
    if (sort_col)
        pc_buf_printf(&sql, "\"%s\" %s, ", sort_col,
                      dir && strcmp(dir, "desc") == 0 ? "DESC" : "ASC");
    pc_buf_puts(&sql, "\"createdAt\", \"id\"");
    char lims[32], offs[32];
    if (has_offset) {
        snprintf(offs, sizeof offs, "%lld", (long long)offset);
        params[np++] = offs;
        pc_buf_printf(&sql, " OFFSET $%d", np);
    }
    if (has_limit) {
        snprintf(lims, sizeof lims, "%lld", (long long)limit);
        params[np++] = lims;
        pc_buf_printf(&sql, " LIMIT $%d", np);
    }
    PGresult *res = pc_db_exec(&w->db, sql.data, np, params);
    pc_buf_reset(&sql);
    pc_buf_printf(&sql, "SELECT count(*) FROM \"apikey\" WHERE %s", where.data);
    PGresult *cnt = pc_db_ok(res) ? pc_db_exec(&w->db, sql.data, nwhere, params) : NULL;
    pc_buf_free(&sql);
    pc_buf_free(&where);
    bool ok = pc_db_ok(res) && pc_db_ok(cnt) && PQntuples(cnt) == 1;
    if (ok) {
        struct pc_buf b = {0};
        struct pc_jw jw = {.b = &b};
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "apiKeys");
        pc_jw_arr_begin(&jw);
        for (int i = 0; i < PQntuples(res); i++)
            jw_row(&jw, res, i, NULL, NULL);
        pc_jw_arr_end(&jw);
        pc_jw_key(&jw, "total");
        pc_jw_int(&jw, strtoll(PQgetvalue(cnt, 0, 0), NULL, 10));
        if (has_limit) {
            pc_jw_key(&jw, "limit");
            pc_jw_int(&jw, limit);
        }
        if (has_offset) {
            pc_jw_key(&jw, "offset");
            pc_jw_int(&jw, offset);
        }
        pc_jw_obj_end(&jw);
        as_reply(job, 200, &b);
    }
    if (res)
        PQclear(res);
    if (cnt)
        PQclear(cnt);
    query_free(&q);
    as_session_free(&s);
    as_user_free(&u);
    if (!ok)
        return as_fail_db(job);
    sweep_expired(w);
    return true;
}

/* ---- update ---- */

/* updateApiKeyBodySchema, field by field in its order. */
static void validate_update(struct vcheck *v, struct ak_input *in, bool internal)
{
    yajl_val b = in->body;
    in->config_id = as_v_str(v, b, "configId", false, false);
    in->key_id = as_v_str(v, b, "keyId", true, false);
    in->user_id = v_user_id(v, b, internal);
    in->name = as_v_str(v, b, "name", false, false);
    v_bool(v, b, "enabled", &in->has_enabled, &in->enabled);
    in->remaining = v_num(v, b, "remaining", false, true, 1);
    in->refill_amount = v_num(v, b, "refillAmount", false, false, 0);
    in->refill_interval = v_num(v, b, "refillInterval", false, false, 0);
    in->metadata = pc_json_get(b, "metadata");
    in->expires_in = v_num(v, b, "expiresIn", true, true, 1);
    v_bool(v, b, "rateLimitEnabled", &in->has_rl_enabled, &in->rl_enabled);
    in->rl_window = v_num(v, b, "rateLimitTimeWindow", false, false, 0);
    in->rl_max = v_num(v, b, "rateLimitMax", false, false, 0);
    in->permissions = v_perms(v, b, "permissions", true, &in->has_permissions);
}

static bool server_only_update(const struct ak_input *in)
{
    return in->refill_amount.st != N_ABSENT || in->refill_interval.st != N_ABSENT ||
           in->rl_max.st != N_ABSENT || in->rl_window.st != N_ABSENT || in->has_rl_enabled ||
           in->remaining.st != N_ABSENT || in->has_permissions;
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
    fmt_int(b, sizeof b, f);
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
static bool update_key(struct as_job *job, struct as_worker *w, struct ak_input *in,
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
        if (!name_length_ok(job, in->name->u.string)) {
            set_free(&sl);
            return true;
        }
        set_add(&sl, "name", "", "", in->name->u.string, false);
    }
    if (in->has_enabled)
        set_add(&sl, "enabled", "", "::boolean", in->enabled ? "t" : "f", false);
    if (in->expires_in.st == N_OK) {
        if (!expires_in_bounds(job, in->expires_in.d)) {
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
        revoke_result(w, res, C_KEY);
        if (in->remaining.st != N_ABSENT)
            set_live_remaining(w, PQgetvalue(res, 0, C_KEY), in->remaining.st == N_OK,
                               (long long)in->remaining.d);
        sweep_expired(w);
        reply_row(job, res, NULL, NULL);
    }
    if (res)
        PQclear(res);
    if (!ok)
        return as_fail_db(job);
    if (!found)
        return as_error(job, 404, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    return true;
}

bool as_route_apikey_update(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if ((in.body = ak_body(job, false)) == NULL)
        return true;
    struct vcheck v = {.where = "body"};
    validate_update(&v, &in, false);
    if (as_v_failed(job, &v)) {
        input_free(&in);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    enum as_lookup lk = as_session_resolve(job, w, &s, &u);
    if (lk != AS_LOOKUP_OK) {
        input_free(&in);
        if (lk == AS_LOOKUP_UNAVAILABLE)
            return as_fail_db(job);
        return as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    }
    if (in.user_id && in.user_id[0] && strcmp(in.user_id, u.id) != 0)
        as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    else if (server_only_update(&in))
        as_error(job, 400, "SERVER_ONLY_PROPERTY", E_SERVER_ONLY);
    else
        update_key(job, w, &in, u.id);
    as_session_free(&s);
    as_user_free(&u);
    input_free(&in);
    return true;
}

bool as_route_internal_apikey_update(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if (internal_input(job, &in, false)) {
        snprintf(job->user_id, sizeof job->user_id, "%s", in.user_id);
        update_key(job, w, &in, in.user_id);
    }
    input_free(&in);
    return true;
}

/* ---- validate ---- */

static bool reply_invalid(struct as_job *job, const char *code, const char *msg)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "valid");
    pc_jw_bool(&jw, false);
    pc_jw_key(&jw, "error");
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "message");
    pc_jw_str(&jw, msg);
    pc_jw_key(&jw, "code");
    pc_jw_str(&jw, code);
    pc_jw_obj_end(&jw);
    pc_jw_obj_end(&jw);
    job->err_code = code;
    return as_reply(job, 200, &b);
}

/* role(granted).authorize(wanted): every requested action of every
 * requested resource must be granted. */
static bool permissions_cover(const char *granted_text, yajl_val wanted)
{
    if (granted_text == NULL)
        return false;
    yajl_val g = pc_json_parse(granted_text, strlen(granted_text));
    if (!YAJL_IS_OBJECT(g)) {
        if (g)
            yajl_tree_free(g);
        return false;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < wanted->u.object.len; i++) {
        yajl_val want = wanted->u.object.values[i];
        yajl_val have = pc_json_get(g, wanted->u.object.keys[i]);
        if (!YAJL_IS_ARRAY(have)) {
            ok = false;
            break;
        }
        for (size_t j = 0; ok && j < want->u.array.len; j++) {
            bool found = false;
            for (size_t k = 0; !found && k < have->u.array.len; k++)
                found = YAJL_IS_STRING(have->u.array.values[k]) &&
                        strcmp(have->u.array.values[k]->u.string,
                               want->u.array.values[j]->u.string) == 0;
            ok = found;
        }
    }
    yajl_tree_free(g);
    return ok;
}

/* validateApiKey's verdict, without consuming anything: found, enabled, not
 * expired (an expired row is deleted and revoked, as Better Auth does), the
 * requested permissions, and a quota that is not spent (or refills now). */
static bool validate_key(struct as_job *job, struct as_worker *w, const char *key,
                         yajl_val wanted)
{
    char hash[PC_HASH_B64_LEN + 1];
    pc_cred_hash(key, strlen(key), hash);
    const char *params[] = {hash};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT " AK_COLS " FROM \"apikey\" WHERE \"key\" = $1 LIMIT 1",
                               1, params);
    as_health_note_pg(res != NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return as_fail_db(job);
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        return reply_invalid(job, "INVALID_API_KEY", "Invalid API key.");
    }
    int64_t now = pc_now_ms();
    snprintf(job->user_id, sizeof job->user_id, "%s", PQgetvalue(res, 0, C_REF));
    if (!PQgetisnull(res, 0, C_ENABLED) && PQgetvalue(res, 0, C_ENABLED)[0] == 'f') {
        PQclear(res);
        return reply_invalid(job, "KEY_DISABLED", "API Key is disabled");
    }
    if (!PQgetisnull(res, 0, C_EXPIRES) && now > pc_db_ms(PQgetvalue(res, 0, C_EXPIRES))) {
        const char *dp[] = {PQgetvalue(res, 0, C_ID)};
        PGresult *d = pc_db_exec(&w->db, "DELETE FROM \"apikey\" WHERE \"id\" = $1", 1, dp);
        if (pc_db_ok(d))
            revoke_key(w, PQgetvalue(res, 0, C_KEY));
        if (d)
            PQclear(d);
        PQclear(res);
        return reply_invalid(job, "KEY_EXPIRED", "API Key has expired");
    }
    if (wanted && !permissions_cover(PQgetisnull(res, 0, C_PERMISSIONS)
                                         ? NULL
                                         : PQgetvalue(res, 0, C_PERMISSIONS),
                                     wanted)) {
        PQclear(res);
        return reply_invalid(job, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    }
    if (!PQgetisnull(res, 0, C_REMAINING) && strtoll(PQgetvalue(res, 0, C_REMAINING), NULL, 10) <= 0) {
        bool refill = !PQgetisnull(res, 0, C_REFILL_AMOUNT) &&
                      !PQgetisnull(res, 0, C_REFILL_INTERVAL) &&
                      strtoll(PQgetvalue(res, 0, C_REFILL_AMOUNT), NULL, 10) != 0 &&
                      strtoll(PQgetvalue(res, 0, C_REFILL_INTERVAL), NULL, 10) != 0;
        int64_t last = pc_db_ms(PQgetvalue(res, 0, PQgetisnull(res, 0, C_LAST_REFILL)
                                                       ? C_CREATED
                                                       : C_LAST_REFILL));
        if (!refill ||
            now - last <= strtoll(PQgetvalue(res, 0, C_REFILL_INTERVAL), NULL, 10)) {
            PQclear(res);
            return reply_invalid(job, "USAGE_EXCEEDED", "API Key has reached its usage limit");
        }
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "valid");
    pc_jw_bool(&jw, true);
    pc_jw_key(&jw, "kind");
    pc_jw_str(&jw, "api_key");
    pc_jw_key(&jw, "userId");
    jw_col_str(&jw, res, 0, C_REF);
    pc_jw_key(&jw, "keyId");
    jw_col_str(&jw, res, 0, C_ID);
    pc_jw_key(&jw, "expiresAt");
    jw_col_date(&jw, res, 0, C_EXPIRES);
    pc_jw_key(&jw, "permissions");
    jw_json_col(&jw, res, 0, C_PERMISSIONS, false);
    pc_jw_obj_end(&jw);
    PQclear(res);
    return as_reply(job, 200, &b);
}

/* A session token as the bearer plugin takes it: signed ("token.sig", maybe
 * percent-encoded) or raw (unless BEARER_REQUIRE_SIGNATURE), told apart by
 * the rule in lib/bearer.c. */
static bool validate_session(struct as_job *job, struct as_worker *w, const char *in)
{
    size_t n = strlen(in);
    /* lib/bearer.c: read as the gateway and a Bearer header are */
    enum pc_bearer_kind kind = pc_bearer_classify(in, n, as_cfg.bearer_require_sig);
    if (kind == PC_BEARER_JWT)
        return reply_invalid(job, "JWT_NOT_SUPPORTED", "JWTs are not supported yet");
    char tok[TOKEN_MAX];
    bool ok = false;
    if (kind == PC_BEARER_SESSION_RAW) {
        ok = true;
        memcpy(tok, in, n + 1);
    } else if (kind == PC_BEARER_SESSION_SIGNED) {
        char *dec = strchr(in, '%') ? pc_url_decode(in, n) : pc_xstrndup(in, n);
        ok = dec && pc_verify_signed(as_cfg.secret, dec, strlen(dec), PC_SIG_TOLERANT, tok,
                                     sizeof tok);
        if (dec) {
            pc_wipe(dec, strlen(dec));
            free(dec);
        }
    }
    if (!ok)
        return reply_invalid(job, "INVALID_TOKEN", "Invalid token");
    const char *params[] = {tok};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT s.\"id\", s.\"userId\", "
                               "floor(extract(epoch from s.\"expiresAt\") * 1000)::bigint "
                               "FROM \"session\" s JOIN \"user\" u ON u.\"id\" = s.\"userId\" "
                               "WHERE s.\"token\" = $1",
                               1, params);
    as_health_note_pg(res != NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        pc_wipe(tok, sizeof tok);
        return as_fail_db(job);
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        pc_wipe(tok, sizeof tok);
        return reply_invalid(job, "INVALID_TOKEN", "Invalid token");
    }
    snprintf(job->user_id, sizeof job->user_id, "%s", PQgetvalue(res, 0, 1));
    int64_t exp = pc_db_ms(PQgetvalue(res, 0, 2));
    if (exp < pc_now_ms()) {
        /* As a session lookup does: the row goes, and so does every cache. */
        const char *dp[] = {PQgetvalue(res, 0, 0)};
        PGresult *d = pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"id\" = $1", 1, dp);
        if (pc_db_ok(d)) {
            char *t = tok;
            as_revoke_tokens(w, &t, 1);
        }
        if (d)
            PQclear(d);
        PQclear(res);
        pc_wipe(tok, sizeof tok);
        return reply_invalid(job, "SESSION_EXPIRED",
                             "Session expired. Re-authenticate to perform this action.");
    }
    pc_wipe(tok, sizeof tok);
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "valid");
    pc_jw_bool(&jw, true);
    pc_jw_key(&jw, "kind");
    pc_jw_str(&jw, "session");
    pc_jw_key(&jw, "userId");
    pc_jw_str(&jw, PQgetvalue(res, 0, 1));
    pc_jw_key(&jw, "sessionId");
    pc_jw_str(&jw, PQgetvalue(res, 0, 0));
    pc_jw_key(&jw, "expiresAt");
    pc_jw_date(&jw, exp);
    pc_jw_obj_end(&jw);
    PQclear(res);
    return as_reply(job, 200, &b);
}

bool as_route_internal_validate(struct as_job *job, struct as_worker *w)
{
    if (!internal_auth(job))
        return true;
    yajl_val body = ak_body(job, true);
    if (body == NULL)
        return true;
    struct vcheck v = {.where = "body"};
    yajl_val key = as_v_str(&v, body, "key", false, false);
    yajl_val token = as_v_str(&v, body, "token", false, false);
    bool has_perms;
    yajl_val perms = v_perms(&v, body, "permissions", false, &has_perms);
    if (v.msg.len == 0 && (key == NULL) == (token == NULL))
        as_v_add(&v, "", "Invalid input: expected exactly one of key or token");
    if (v.msg.len == 0 && token && has_perms)
        as_v_add(&v, "permissions", "Invalid input: only checked for API keys");
    if (!as_v_failed(job, &v)) {
        if (key)
            validate_key(job, w, key->u.string, perms);
        else
            validate_session(job, w, token->u.string);
    }
    /* The credential was in the body: wipe it before the tree goes. */
    if (key)
        pc_wipe(key->u.string, strlen(key->u.string));
    if (token)
        pc_wipe(token->u.string, strlen(token->u.string));
    yajl_tree_free(body);
    return true;
}
