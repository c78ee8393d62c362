/* Portcullis - MIT licence. See LICENSE.
 *
 * sessions.c: Better Auth sessions (better-auth-compat.md §2 and §6).
 *
 *   token in    the signed session cookie, or Authorization: Bearer with a
 *               signed or raw token; a bad signature means "no session"
 *   lookup      PostgreSQL by token; an expired row is deleted and revoked
 *   refresh     when the row is updateAge old, expiresAt moves forward and
 *               the cookie is re-sent (not with dont_remember)
 *   cache       every live session is written through to Redis under the
 *               SHA-256 of its token, for the gateway
 *   revocation  PostgreSQL first (whose trigger logs it, migration 0005),
 *               then DEL and PUBLISH in Redis; what Redis missed the
 *               listener relays from the log (listener.c)
 *   service     as_session_lookup_token: a token a service hands to
 *               /api/internal/validate (internal.c), by the same rules
 *
 * Every reading of a session token and every session query lives here (the
 * multi-session plugin's cookies are multi_session.c's, its queries are
 * here), so the file runs past 700 lines.
 */
#include "authsvc.h"
#include "sessions.h"
#include "job.h"
#include "../lib/ba_schema.h"
#include "../lib/bearer.h"
#include "../lib/revmsg.h"
#include "../lib/cookie.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <hiredis/hiredis.h>

#define SESSION_COLS "s.\"id\", s.\"token\", s.\"userId\", s.\"ipAddress\", s.\"userAgent\", " \
    "(extract(epoch from s.\"expiresAt\")*1000)::bigint, " \
    "(extract(epoch from s.\"createdAt\")*1000)::bigint, " \
    "(extract(epoch from s.\"updatedAt\")*1000)::bigint"
#define SESSION_NCOLS 8
#define TOKEN_MAX 256
#define DONT_REMEMBER_AGE 86400 /* seconds: Better Auth's rememberMe:false life */

/* ---- rows and JSON ---- */

static char *col_dup(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return NULL;
    return pc_xstrdup(PQgetvalue(res, row, col));
}

void as_user_from_row(struct as_user *u, const struct pg_result *res, int row, int col)
{
    u->id = col_dup(res, row, col);
    u->name = col_dup(res, row, col + 1);
    u->email = col_dup(res, row, col + 2);
    u->email_verified = strcmp(PQgetvalue(res, row, col + 3), "t") == 0;
    u->image = col_dup(res, row, col + 4);
    u->created_at = pc_db_ms(PQgetvalue(res, row, col + 5));
    u->updated_at = pc_db_ms(PQgetvalue(res, row, col + 6));
}

static void session_from_row(struct as_session *s, const PGresult *res, int row, int col)
{
    s->id = col_dup(res, row, col);
    s->token = col_dup(res, row, col + 1);
    s->user_id = col_dup(res, row, col + 2);
    s->ip = col_dup(res, row, col + 3);
    s->ua = col_dup(res, row, col + 4);
    s->expires_at = pc_db_ms(PQgetvalue(res, row, col + 5));
    s->created_at = pc_db_ms(PQgetvalue(res, row, col + 6));
    s->updated_at = pc_db_ms(PQgetvalue(res, row, col + 7));
}

void as_user_free(struct as_user *u)
{
    free(u->id);
    free(u->name);
    free(u->email);
    free(u->image);
    memset(u, 0, sizeof *u);
}

void as_session_free(struct as_session *s)
{
    free(s->id);
    if (s->token)
        pc_wipe(s->token, strlen(s->token));
    free(s->token);
    free(s->user_id);
    free(s->ip);
    free(s->ua);
    memset(s, 0, sizeof *s);
}

void as_user_two_factor_from_row(struct as_user *u, const struct pg_result *res, int row, int col)
{
    u->two_factor_known = true;
    u->two_factor = PQgetvalue(res, row, col)[0] == 't';
}

void as_jw_user(struct pc_jw *w, const struct as_user *u)
{
    pc_jw_obj_begin(w);
    as_jw_user_fields(w, u);
    pc_jw_obj_end(w);
}

void as_jw_user_fields(struct pc_jw *w, const struct as_user *u)
{
    pc_jw_key(w, "name");
    pc_jw_str(w, u->name);
    pc_jw_key(w, "email");
    pc_jw_str(w, u->email);
    pc_jw_key(w, "emailVerified");
    pc_jw_bool(w, u->email_verified);
    pc_jw_key(w, "image");
    pc_jw_str(w, u->image);
    pc_jw_key(w, "createdAt");
    pc_jw_date(w, u->created_at);
    pc_jw_key(w, "updatedAt");
    pc_jw_date(w, u->updated_at);
    if (as_cfg.two_factor && u->two_factor_known) {   /* the twoFactor plugin's field */
        pc_jw_key(w, "twoFactorEnabled");
        pc_jw_bool(w, u->two_factor);
    }
    pc_jw_key(w, "id");
    pc_jw_str(w, u->id);
}

void as_jw_session(struct pc_jw *w, const struct as_session *s)
{
    pc_jw_obj_begin(w);
    pc_jw_key(w, "expiresAt");
    pc_jw_date(w, s->expires_at);
    pc_jw_key(w, "token");
    pc_jw_str(w, s->token);
    pc_jw_key(w, "createdAt");
    pc_jw_date(w, s->created_at);
    pc_jw_key(w, "updatedAt");
    pc_jw_date(w, s->updated_at);
    pc_jw_key(w, "ipAddress");
    pc_jw_str(w, s->ip);
    pc_jw_key(w, "userAgent");
    pc_jw_str(w, s->ua);
    pc_jw_key(w, "userId");
    pc_jw_str(w, s->user_id);
    pc_jw_key(w, "id");
    pc_jw_str(w, s->id);
    pc_jw_obj_end(w);
}

/* ---- cookies ---- */

void as_set_cookie(struct as_job *job, const char *name, const char *signed_value,
                   int64_t max_age)
{
    struct pc_buf b = {0};
    pc_set_cookie_value(&b, name, signed_value, max_age, as_cfg.secure_cookies);
    as_add_header(job, "Set-Cookie", b.data);
    pc_wipe(b.data, b.len);
    pc_buf_free(&b);
}

void as_session_set_cookie(struct as_job *job, const char *token, bool remember)
{
    char *sv = pc_xmalloc(strlen(token) + PC_SIG_B64_LEN + 2);
    pc_sign_value(as_cfg.secret, token, sv);
    as_set_cookie(job, as_cfg.cookie_session, sv, remember ? as_cfg.expires_in : -1);
    if (!remember) {
        char dr[8 + PC_SIG_B64_LEN];
        pc_sign_value(as_cfg.secret, "true", dr);
        as_set_cookie(job, as_cfg.cookie_dont_remember, dr, -1);
    }
    as_add_header(job, "set-auth-token", sv);
    as_add_header(job, "Access-Control-Expose-Headers", "set-auth-token");
    /* the multi-session plugin's after-hook looks at this (multi_session.c) */
    snprintf(job->new_session, sizeof job->new_session, "%s", token);
    pc_wipe(sv, strlen(sv));
    free(sv);
}

void as_token_array(struct pc_buf *b, char *const *toks, size_t n)
{
    pc_buf_putc(b, '{');
    for (size_t i = 0; i < n; i++)
        pc_buf_printf(b, "%s\"%s\"", i ? "," : "", toks[i]);
    pc_buf_putc(b, '}');
}

bool as_session_fresh(const struct as_session *s)
{
    return as_cfg.fresh_age == 0 || pc_now_ms() - s->created_at < as_cfg.fresh_age * 1000;
}

int as_sessions_by_tokens(struct as_worker *w, char *const *toks, size_t n,
                          struct as_session **s, struct as_user **u, size_t *count)
{
    *s = NULL;
    *u = NULL;
    *count = 0;
    if (n == 0)
        return 0;
    struct pc_buf arr = {0};
    as_token_array(&arr, toks, n);
    const char *p[] = {arr.data};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT " SESSION_COLS ", " PC_BA_USER_COLS
                               " FROM \"session\" s JOIN \"user\" u ON u.\"id\" = s.\"userId\""
                               " WHERE s.\"token\" = ANY($1::text[]) AND s.\"expiresAt\" > now()"
                               " ORDER BY array_position($1::text[], s.\"token\")",
                               1, p);
    pc_wipe(arr.data, arr.len);
    pc_buf_free(&arr);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return -1;
    }
    size_t rows = (size_t)PQntuples(res);
    *s = pc_xcalloc(rows + 1, sizeof **s);
    *u = pc_xcalloc(rows + 1, sizeof **u);
    for (size_t i = 0; i < rows; i++) {
        session_from_row(&(*s)[i], res, (int)i, 0);
        as_user_from_row(&(*u)[i], res, (int)i, SESSION_NCOLS);
    }
    *count = rows;
    PQclear(res);
    return 0;
}

void as_session_clear_cookies(struct as_job *job)
{
    as_set_cookie(job, as_cfg.cookie_session, NULL, 0);
    as_set_cookie(job, as_cfg.cookie_session_data, NULL, 0);
    as_set_cookie(job, as_cfg.cookie_dont_remember, NULL, 0);
}

bool as_signed_cookie(const struct as_job *job, const char *name, char *tok, size_t cap)
{
    /* every Cookie line, in order (evhttp keeps them apart): the first
     * that has the cookie wins, as in one joined header */
    char *raw = NULL;
    for (size_t i = 0; i < job->nhdrs && raw == NULL; i++)
        if (pc_strieq(job->hdrs[i].name, "Cookie"))
            raw = pc_cookie_get(job->hdrs[i].value, name);
    if (raw == NULL)
        return false;
    bool ok = pc_cookie_verify(as_cfg.secret, raw, tok, cap);
    pc_wipe(raw, strlen(raw));
    free(raw);
    return ok;
}

enum tok_src { TOK_NONE = 0, TOK_COOKIE, TOK_BEARER };

/* The bearer plugin wins over the cookie, as in Better Auth (it rewrites the
 * cookie from the Authorization header). */
static enum tok_src request_token(const struct as_job *job, char tok[TOKEN_MAX])
{
    size_t n = 0;
    const char *v = pc_bearer_value(as_header(job, "Authorization"), &n);
    if (v) {
        if (n == 0 || n >= TOKEN_MAX * 2)
            return TOK_NONE;
        /* lib/bearer.c: the rule the gateway applies to the same value */
        switch (pc_bearer_classify(v, n, as_cfg.bearer_require_sig)) {
        case PC_BEARER_SESSION_RAW:
            memcpy(tok, v, n);
            tok[n] = '\0';
            return TOK_BEARER;
        case PC_BEARER_SESSION_SIGNED: {
            char *dec = memchr(v, '%', n) ? pc_url_decode(v, n) : pc_xstrndup(v, n);
            bool ok = dec && pc_verify_signed(as_cfg.secret, dec, strlen(dec), PC_SIG_TOLERANT,
                                              tok, TOKEN_MAX);
            free(dec);
            return ok ? TOK_BEARER : TOK_NONE;
        }
        default:
            return TOK_NONE;
        }
    }
    if (as_signed_cookie(job, as_cfg.cookie_session, tok, TOKEN_MAX))
        return TOK_COOKIE;
    return TOK_NONE;
}

/* A token that is not UTF-8 matches no row (tokens are alphanumeric): no
 * session, as Better Auth answers, without asking PostgreSQL. */
static enum tok_src request_token_text(const struct as_job *job, char tok[TOKEN_MAX])
{
    enum tok_src src = request_token(job, tok);
    if (src != TOK_NONE && !pc_utf8_valid(tok, strlen(tok))) {
        pc_wipe(tok, TOKEN_MAX);
        return TOK_NONE;
    }
    return src;
}

/* ---- Redis cache and revocation ---- */

static void cache_key(const char *token, struct pc_buf *key, char hash[PC_HASH_B64_LEN + 1])
{
    pc_cred_hash(token, strlen(token), hash);
    pc_buf_printf(key, "%ss:%s", as_cfg.redis_prefix, hash);
}

void as_session_cache_put(struct as_worker *w, const struct as_session *s, const struct as_user *u)
{
    int64_t ttl = s->expires_at - pc_now_ms();
    if (ttl <= 0)
        return;
    struct pc_buf key = {0}, val = {0};
    char hash[PC_HASH_B64_LEN + 1];
    cache_key(s->token, &key, hash);
    struct pc_jw jw = {.b = &val};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "kind");
    pc_jw_str(&jw, "session");
    pc_jw_key(&jw, "id");
    pc_jw_str(&jw, s->id);
    pc_jw_key(&jw, "userId");
    pc_jw_str(&jw, s->user_id);
    pc_jw_key(&jw, "expiresAt");
    pc_jw_int(&jw, s->expires_at);
    pc_jw_key(&jw, "updatedAt");
    pc_jw_int(&jw, s->updated_at);
    pc_jw_key(&jw, "user");
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "id");
    pc_jw_str(&jw, u->id);
    pc_jw_key(&jw, "email");
    pc_jw_str(&jw, u->email);
    pc_jw_key(&jw, "name");
    pc_jw_str(&jw, u->name);
    pc_jw_key(&jw, "emailVerified");
    pc_jw_bool(&jw, u->email_verified);
    pc_jw_obj_end(&jw);
    pc_jw_obj_end(&jw);
    char ttls[32];
    snprintf(ttls, sizeof ttls, "%lld", (long long)ttl);
    const char *argv[] = {"SET", key.data, val.data, "PX", ttls};
    bool ok = pc_redis_ok(&w->redis, 5, argv);
    as_health_note_redis(ok);
    pc_buf_free(&key);
    pc_buf_free(&val);
}

/* The fast path of a revocation authsvc made itself: relay it to Redis at
 * once. Whatever happens here, the trigger of migration 0005 has logged the
 * same tag in the writing transaction, and the listener relays every logged
 * tag that is not marked relayed (listener.c), so a revocation Redis did not
 * take now, or one pending when authsvc stops, is not lost. */
void as_revoke_hash(struct pc_redis *r, char kind, const char *hash)
{
    char tag[2 + PC_REV_SID_MAX + 8];
    snprintf(tag, sizeof tag, "%c:%s", kind, hash);
    bool ok = as_revoke_relay(r, tag);
    as_health_note_redis(ok);
}

bool as_revoke_relay(struct pc_redis *r, const char *tag)
{
    return pc_rev_relay(r, as_cfg.redis_prefix, as_cfg.revocation_channel, tag,
                        as_cfg.jwt_expires + 300);
}

void as_revoke_tokens(struct as_worker *w, char **tokens, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char hash[PC_HASH_B64_LEN + 1];
        pc_cred_hash(tokens[i], strlen(tokens[i]), hash);
        as_revoke_hash(&w->redis, 's', hash);
    }
}

/* Revokes every token in column 0 of res. */
static void revoke_result(struct as_worker *w, PGresult *res)
{
    int n = PQntuples(res);
    char **toks = pc_xcalloc((size_t)n, sizeof *toks);
    for (int i = 0; i < n; i++)
        toks[i] = PQgetvalue(res, i, 0);
    as_revoke_tokens(w, toks, (size_t)n);
    free(toks);
}

int as_revoke_user_sessions(struct as_worker *w, const char *user_id, const char *keep_token)
{
    const char *params[] = {user_id, keep_token};
    PGresult *res = keep_token
        ? pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"userId\" = $1 AND \"token\" <> $2 "
                             "RETURNING \"token\"", 2, params)
        : pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"userId\" = $1 RETURNING \"token\"",
                     1, params);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return -1;
    }
    revoke_result(w, res);
    PQclear(res);
    return 0;
}

/* ---- create and resolve ---- */

int as_session_create(struct as_job *job, struct as_worker *w, const char *user_id, bool remember,
                      struct as_session *s)
{
    char id[33], token[33];
    pc_random_alnum(id, 32);
    pc_random_alnum(token, 32);
    int64_t now = pc_now_ms();
    int64_t exp = now + 1000 * (remember ? as_cfg.expires_in : DONT_REMEMBER_AGE);
    char nows[32], exps[32];
    snprintf(nows, sizeof nows, "%lld", (long long)now);
    snprintf(exps, sizeof exps, "%lld", (long long)exp);
    const char *uah = as_header(job, "User-Agent");
    /* stored as text: bytes that are not UTF-8 become U+FFFD */
    char *ua = pc_utf8_fix(uah ? uah : "", uah ? strlen(uah) : 0);
    const char *params[] = {id, token, user_id, exps, nows, job->ip, ua};
    PGresult *res = pc_db_exec(
        &w->db,
        "INSERT INTO \"session\" (\"id\", \"token\", \"userId\", \"expiresAt\", \"createdAt\", "
        "\"updatedAt\", \"ipAddress\", \"userAgent\") VALUES ($1, $2, $3, "
        "to_timestamp($4::double precision / 1000), to_timestamp($5::double precision / 1000), "
        "to_timestamp($5::double precision / 1000), $6, $7)",
        7, params);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    if (!ok) {
        free(ua);
        return -1;
    }
    s->id = pc_xstrdup(id);
    s->token = pc_xstrdup(token);
    s->user_id = pc_xstrdup(user_id);
    s->ip = pc_xstrdup(job->ip);
    s->ua = ua;
    s->expires_at = exp;
    s->created_at = s->updated_at = now;
    pc_wipe(token, sizeof token);
    return 0;
}

static bool query_flag(const struct as_job *job, const char *name)
{
    char *v = as_query_param(job, name);
    bool on = v && strcmp(v, "true") == 0;
    free(v);
    return on;
}

enum as_lookup as_session_resolve(struct as_job *job, struct as_worker *w, struct as_session *s,
                                  struct as_user *u)
{
    char tok[TOKEN_MAX];
    enum tok_src src = request_token_text(job, tok);
    if (src == TOK_NONE)
        return AS_LOOKUP_NONE;
    const char *params[] = {tok};
    /* the plugin's column only when it is on: without it migration 0007
     * may not have run */
    PGresult *res = pc_db_exec(&w->db,
                               as_cfg.two_factor
                                   ? "SELECT " SESSION_COLS ", " PC_BA_USER_COLS
                                     ", COALESCE(u.\"twoFactorEnabled\", false)"
                                     " FROM \"session\" s JOIN \"user\" u ON u.\"id\" = "
                                     "s.\"userId\" WHERE s.\"token\" = $1"
                                   : "SELECT " SESSION_COLS ", " PC_BA_USER_COLS
                                     " FROM \"session\" s JOIN \"user\" u ON u.\"id\" = "
                                     "s.\"userId\" WHERE s.\"token\" = $1",
                               1, params);
    if (res == NULL || !pc_db_ok(res)) {
        if (res)
            PQclear(res);
        pc_wipe(tok, sizeof tok);
        return AS_LOOKUP_UNAVAILABLE;
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        pc_wipe(tok, sizeof tok);
        as_session_clear_cookies(job);
        return AS_LOOKUP_NONE;
    }
    session_from_row(s, res, 0, 0);
    as_user_from_row(u, res, 0, SESSION_NCOLS);
    if (as_cfg.two_factor)
        as_user_two_factor_from_row(u, res, 0, SESSION_NCOLS + PC_BA_USER_NCOLS);
    PQclear(res);
    pc_wipe(tok, sizeof tok);

    int64_t now = pc_now_ms();
    if (s->expires_at < now) {
        const char *p[] = {s->id};
        PGresult *d = pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"id\" = $1", 1, p);
        if (d)
            PQclear(d);
        as_revoke_tokens(w, &s->token, 1);
        as_session_free(s);
        as_user_free(u);
        as_session_clear_cookies(job);
        return AS_LOOKUP_NONE;
    }

    char drtok[16];
    bool dont_remember = as_signed_cookie(job, as_cfg.cookie_dont_remember, drtok, sizeof drtok);
    bool due = s->expires_at - as_cfg.expires_in * 1000 + as_cfg.update_age * 1000 <= now;
    if (due && !dont_remember && !query_flag(job, "disableRefresh")) {
        int64_t exp = now + as_cfg.expires_in * 1000;
        char exps[32], nows[32];
        snprintf(exps, sizeof exps, "%lld", (long long)exp);
        snprintf(nows, sizeof nows, "%lld", (long long)now);
        const char *p[] = {s->id, exps, nows};
        PGresult *up = pc_db_exec(&w->db,
                                  "UPDATE \"session\" SET \"expiresAt\" = to_timestamp($2::double "
                                  "precision / 1000), \"updatedAt\" = to_timestamp($3::double "
                                  "precision / 1000) WHERE \"id\" = $1",
                                  3, p);
        if (pc_db_ok(up)) {
            s->expires_at = exp;
            s->updated_at = now;
            as_session_cache_put(w, s, u);
            as_session_set_cookie(job, s->token, true);
        }
        if (up)
            PQclear(up);
    }
    snprintf(job->user_id, sizeof job->user_id, "%s", u->id);
    snprintf(job->cred_id, sizeof job->cred_id, "%s", s->id ? s->id : "");
    return AS_LOOKUP_OK;
}

bool as_require_session(struct as_job *job, struct as_worker *w, struct as_session *s,
                        struct as_user *u)
{
    switch (as_session_resolve(job, w, s, u)) {
    case AS_LOOKUP_OK:
        return true;
    case AS_LOOKUP_UNAVAILABLE:
        as_fail_db(job);
        return false;
    default:
        as_error(job, 401, "UNAUTHORIZED", "Unauthorized");
        return false;
    }
}

/* ---- routes ---- */

bool as_route_get_session(struct as_job *job, struct as_worker *w)
{
    struct as_session s = {0};
    struct as_user u = {0};
    enum as_lookup lk = as_session_resolve(job, w, &s, &u);
    if (lk == AS_LOOKUP_UNAVAILABLE)
        return as_fail_db(job);
    as_add_header(job, "Pragma", "no-cache");
    struct pc_buf b = {0};
    if (lk == AS_LOOKUP_NONE) {
        pc_buf_puts(&b, "null");
        return as_reply(job, 200, &b);
    }
    char *jwt = as_jwt_mint(w, &s, &u);    /* Better Auth's jwt plugin: set-auth-jwt */
    if (jwt) {
        as_add_header(job, "set-auth-jwt", jwt);
        as_add_header(job, "Access-Control-Expose-Headers", "set-auth-jwt");
        free(jwt);
    }
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "session");
    as_jw_session(&jw, &s);
    pc_jw_key(&jw, "user");
    as_jw_user(&jw, &u);
    pc_jw_obj_end(&jw);
    as_session_free(&s);
    as_user_free(&u);
    return as_reply(job, 200, &b);
}

bool as_route_list_sessions(struct as_job *job, struct as_worker *w)
{
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u))
        return true;
    bool fresh = as_session_fresh(&s);
    const char *params[] = {u.id};
    PGresult *res = fresh ? pc_db_exec(&w->db,
                                       "SELECT " SESSION_COLS " FROM \"session\" s WHERE "
                                       "s.\"userId\" = $1 AND s.\"expiresAt\" > now() "
                                       "ORDER BY s.\"createdAt\"",
                                       1, params)
                          : NULL;
    as_session_free(&s);
    as_user_free(&u);
    if (!fresh)
        return as_error(job, 403, "SESSION_NOT_FRESH", "Session is not fresh");
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return as_fail_db(job);
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_arr_begin(&jw);
    for (int i = 0; i < PQntuples(res); i++) {
        struct as_session r = {0};
        session_from_row(&r, res, i, 0);
        as_jw_session(&jw, &r);
        as_session_free(&r);
    }
    pc_jw_arr_end(&jw);
    PQclear(res);
    return as_reply(job, 200, &b);
}

bool as_route_sign_out(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, false);
    if (body == NULL)
        return true;
    yajl_tree_free(body);
    char tok[TOKEN_MAX];
    struct pc_buf b = {0};
    if (request_token_text(job, tok) == TOK_NONE) {
        /* Better Auth answers success and clears the cookies either way. */
        as_session_clear_cookies(job);
        if (as_multi_session_sign_out(job, w) != 0)
            return as_fail_db(job);
        pc_buf_puts(&b, "{\"success\":true}");
        return as_reply(job, 200, &b);
    }
    const char *params[] = {tok};
    PGresult *res = pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"token\" = $1", 1, params);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        pc_wipe(tok, sizeof tok);
        return as_fail_db(job);
    }
    PQclear(res);
    char *t = tok;
    as_revoke_tokens(w, &t, 1);
    pc_wipe(tok, sizeof tok);
    as_session_clear_cookies(job);
    if (as_multi_session_sign_out(job, w) != 0)
        return as_fail_db(job);
    pc_buf_puts(&b, "{\"success\":true}");
    return as_reply(job, 200, &b);
}

static bool reply_status_true(struct as_job *job)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"status\":true}");
    return as_reply(job, 200, &b);
}

bool as_route_revoke_session(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, false);
    if (body == NULL)
        return true;
    yajl_val t = pc_json_get(body, "token");
    if (!YAJL_IS_STRING(t) || t->u.string[0] == '\0') {
        yajl_tree_free(body);
        return as_error(job, 400, "VALIDATION_ERROR", "[body.token] Invalid input: expected string");
    }
    char *target = pc_xstrdup(t->u.string);
    yajl_tree_free(body);
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        free(target);
        return true;
    }
    const char *params[] = {target, u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "DELETE FROM \"session\" WHERE \"token\" = $1 AND \"userId\" = $2 "
                               "RETURNING \"token\"",
                               2, params);
    bool ok = pc_db_ok(res);
    if (ok) {
        revoke_result(w, res);
        if (PQntuples(res) > 0 && strcmp(target, s.token) == 0)
            as_session_clear_cookies(job);
    }
    if (res)
        PQclear(res);
    free(target);
    as_session_free(&s);
    as_user_free(&u);
    if (!ok)
        return as_fail_db(job);
    return reply_status_true(job);
}

static bool revoke_many(struct as_job *job, struct as_worker *w, bool keep_current)
{
    yajl_val body = as_body(job, false);
    if (body == NULL)
        return true;
    yajl_tree_free(body);
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u))
        return true;
    int rc = as_revoke_user_sessions(w, u.id, keep_current ? s.token : NULL);
    as_session_free(&s);
    as_user_free(&u);
    if (rc != 0)
        return as_fail_db(job);
    if (!keep_current)
        as_session_clear_cookies(job);
    return reply_status_true(job);
}

bool as_route_revoke_sessions(struct as_job *job, struct as_worker *w)
{
    return revoke_many(job, w, false);
}

bool as_route_revoke_other_sessions(struct as_job *job, struct as_worker *w)
{
    return revoke_many(job, w, true);
}

/* ---- a token handed in by a service (/api/internal/validate) ---- */

void as_token_session_free(struct as_token_session *t)
{
    free(t->id);
    free(t->user_id);
    memset(t, 0, sizeof *t);
}

enum as_token_lookup as_session_lookup_token(struct as_worker *w, const char *in,
                                             struct as_token_session *out)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(in);
    /* lib/bearer.c: read as the gateway and a Bearer header are */
    enum pc_bearer_kind kind = pc_bearer_classify(in, n, as_cfg.bearer_require_sig);
    if (kind == PC_BEARER_JWT)
        return AS_TOKEN_JWT;
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
        return AS_TOKEN_INVALID;
    const char *params[] = {tok};
    PGresult *res = pc_db_exec(&w->db,
                               PC_BA_SQL_SESSION_VALIDATE,
                               1, params);
    as_health_note_pg(res != NULL);
    enum as_token_lookup rc;
    if (!pc_db_ok(res)) {
        rc = AS_TOKEN_UNAVAILABLE;
        goto out;
    }
    if (PQntuples(res) != 1) {
        rc = AS_TOKEN_INVALID;
        goto out;
    }
    out->id = pc_xstrdup(PQgetvalue(res, 0, 0));
    out->user_id = pc_xstrdup(PQgetvalue(res, 0, 1));
    out->expires_at = pc_db_ms(PQgetvalue(res, 0, 2));
    rc = AS_TOKEN_OK;
    if (out->expires_at < pc_now_ms()) {
        /* As a session lookup does: the row goes, and so does every cache. */
        const char *dp[] = {out->id};
        PGresult *d = pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"id\" = $1", 1, dp);
        if (pc_db_ok(d)) {
            char *t = tok;
            as_revoke_tokens(w, &t, 1);
        }
        if (d)
            PQclear(d);
        rc = AS_TOKEN_EXPIRED;
    }
out:
    if (res)
        PQclear(res);
    pc_wipe(tok, sizeof tok);
    return rc;
}
