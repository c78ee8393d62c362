/* Portcullis - MIT licence. See LICENSE.
 *
 * password_reset.c: Better Auth's password reset (its api/routes/password.ts
 * and utils/password.ts), on the same rows, so a link either side mails is
 * accepted by the other.
 *
 *   request-password-reset {email, redirectTo?}   one transaction: a
 *       verification row (identifier "reset-password:<24 alphanumerics>",
 *       value the user id, RESET_PASSWORD_TOKEN_EXPIRES_IN) and the mail
 *       carrying <base>/reset-password/<token>?callbackURL=<redirectTo>.
 *       The answer is the same whether or not the email is known.
 *   GET reset-password/<token>?callbackURL   the link in the mail: redirects
 *       to callbackURL?token=<token>, or ?error=INVALID_TOKEN
 *   reset-password {newPassword, token}   hash (pool), then one
 *       transaction: consume the row (DELETE ... RETURNING, so a token
 *       works once even when two requests race), end every session with
 *       REVOKE_SESSIONS_ON_PASSWORD_RESET, set or create the credential
 *       account's password
 */
#include "authsvc.h"
#include "email_verify.h"
#include "job.h"
#include "mail.h"
#include "validate.h"
#include "../lib/ba_schema.h"
#include "../lib/cookie.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define RESET_TOKEN_LEN 24
#define RESET_PREFIX "reset-password:"

static const char *const msg_sent =
    "If this email exists in our system, check your email for the reset link";

static void rollback(struct pc_db *db)
{
    if (pc_db_simple(db, "ROLLBACK") != 0)
        pc_log_warn("postgres: ROLLBACK failed; the connection will be reset");
}

static bool reply_sent(struct as_job *job)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "status");
    pc_jw_bool(&jw, true);
    pc_jw_key(&jw, "message");
    pc_jw_str(&jw, msg_sent);
    pc_jw_obj_end(&jw);
    return as_reply(job, 200, &b);
}

/* ---- POST /request-password-reset ---- */

bool as_route_request_password_reset(struct as_job *job, struct as_worker *w)
{
    char *addr, *redirect;
    if (!as_v_email_body(job, "redirectTo", "INVALID_REDIRECT_URL", "Invalid redirectURL", &addr,
                         &redirect))
        return true;

    /* the same answer for every address, and at the same time (a floor:
     * Better Auth's send-verification-email has one, its reset does not) */
    as_answer_floor(job);
    struct as_user u = {0};
    const char *p[] = {addr};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT " PC_BA_USER_COLS " FROM \"user\" u WHERE u.\"email\" = $1",
                               1, p);
    bool ok = pc_db_ok(res), found = ok && PQntuples(res) == 1;
    if (found)
        as_user_from_row(&u, res, 0, 0);
    if (res)
        PQclear(res);
    if (ok && found) {
        char tok[RESET_TOKEN_LEN + 1];
        pc_random_alnum(tok, RESET_TOKEN_LEN);
        struct pc_buf ident = {0}, url = {0};
        pc_buf_printf(&ident, RESET_PREFIX "%s", tok);
        as_auth_base_url(&url);
        pc_buf_printf(&url, "/reset-password/%s?callbackURL=", tok);
        if (redirect)
            pc_url_encode_component(&url, redirect);
        struct as_mail_vars mv = {.name = u.name, .email = u.email, .url = pc_buf_cstr(&url),
                                  .expires_s = as_cfg.reset_expires_in};
        ok = as_mail_with_verification(&w->db, ident.data, u.id, as_cfg.reset_expires_in,
                                       AS_MAIL_RESET_PASSWORD, &mv) == 0;
        pc_wipe(tok, sizeof tok);
        pc_wipe(ident.data, ident.len);
        pc_wipe(url.data, url.len);
        pc_buf_free(&ident);
        pc_buf_free(&url);
        if (ok)
            pc_logr_info(job->request_id, "password reset mailed to user %s", u.id);
    } else if (ok) {
        /* the same work as a known address, near enough: one lookup */
        const char *d[] = {RESET_PREFIX "dummy-verification-token"};
        res = pc_db_exec(&w->db, "SELECT 1 FROM \"verification\" WHERE \"identifier\" = $1", 1,
                         d);
        if (res)
            PQclear(res);
    }
    as_user_free(&u);
    free(addr);
    free(redirect);
    if (!ok)
        return as_fail_db(job);
    return reply_sent(job);
}

/* ---- GET /reset-password/<token> ---- */

/* new URL(callback, base).searchParams.set(key, value).href; callback NULL:
 * <base>/error. */
static void callback_with(struct pc_buf *u, const char *callback, const char *key,
                          const char *value)
{
    if (callback == NULL) {
        as_auth_base_url(u);
        pc_buf_puts(u, "/error");
        callback = "";
    } else if (callback[0] == '/') {
        pc_buf_puts(u, as_cfg.base_origin);
    }
    const char *hash = strchr(callback, '#');
    size_t n = hash ? (size_t)(hash - callback) : strlen(callback);
    pc_buf_append(u, callback, n);
    const char *q = strchr(pc_buf_cstr(u), '?');
    if (q == NULL)
        pc_buf_putc(u, '?');
    else if (q[1] != '\0' && u->data[u->len - 1] != '&')
        pc_buf_putc(u, '&');
    pc_buf_printf(u, "%s=", key);
    pc_url_encode_component(u, value);
    if (hash)
        pc_buf_puts(u, hash);
}

bool as_route_reset_password_link(struct as_job *job, struct as_worker *w)
{
    const char *tok = job->path + strlen("/api/auth/reset-password/");
    char *callback = as_query_param(job, "callbackURL");
    if (callback && callback[0] == '\0') {
        free(callback);
        callback = NULL;
    }
    if (callback && !as_redirect_allowed(callback)) {
        free(callback);
        return as_error(job, 403, "INVALID_CALLBACK_URL", "Invalid callbackURL");
    }
    bool valid = false;
    if (callback && tok[0] && strlen(tok) <= 256) {
        struct pc_buf ident = {0};
        pc_buf_printf(&ident, RESET_PREFIX "%s", tok);
        const char *p[] = {ident.data};
        PGresult *res = pc_db_exec(&w->db,
                                   "SELECT 1 FROM \"verification\" WHERE \"identifier\" = $1 "
                                   "AND \"expiresAt\" >= now()",
                                   1, p);
        pc_buf_free(&ident);
        if (!pc_db_ok(res)) {
            if (res)
                PQclear(res);
            free(callback);
            return as_fail_db(job);
        }
        valid = PQntuples(res) > 0;
        PQclear(res);
    }
    struct pc_buf u = {0};
    if (valid)
        callback_with(&u, callback, "token", tok);
    else
        callback_with(&u, callback, "error", "INVALID_TOKEN");
    if (!valid)
        job->err_code = "INVALID_TOKEN";
    as_redirect(job, pc_buf_cstr(&u));
    pc_buf_free(&u);
    free(callback);
    return true;
}

/* ---- POST /reset-password ---- */

struct reset_state {
    char *token;    /* owned, wiped */
};

static void reset_state_free(void *p)
{
    struct reset_state *st = p;
    if (st == NULL)
        return;
    if (st->token) {
        pc_wipe(st->token, strlen(st->token));
        free(st->token);
    }
    free(st);
}

static bool reset_hashed(struct as_job *job, struct as_worker *w);

bool as_route_reset_password(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    yajl_val np = as_v_str(&v, body, "newPassword", true, false);
    yajl_val bt = as_v_str(&v, body, "token", false, false);
    if (as_v_failed(job, &v)) {
        yajl_tree_free(body);
        return true;
    }
    char *tok = bt && bt->u.string[0] ? pc_xstrdup(bt->u.string) : as_query_param(job, "token");
    if (tok == NULL || tok[0] == '\0' || strlen(tok) > 256) {
        free(tok);
        yajl_tree_free(body);
        return as_error(job, 400, "INVALID_TOKEN", "Invalid token");
    }
    size_t n = pc_utf16_length(np->u.string, strlen(np->u.string));
    const char *len_code = (int64_t)n < as_cfg.min_pw   ? "PASSWORD_TOO_SHORT"
                           : (int64_t)n > as_cfg.max_pw ? "PASSWORD_TOO_LONG"
                                                        : NULL;
    if (len_code) {
        free(tok);
        pc_wipe(np->u.string, strlen(np->u.string));
        yajl_tree_free(body);
        return as_error(job, 400, len_code,
                        len_code[9] == 'S' ? "Password too short" : "Password too long");
    }
    struct reset_state *st = pc_xcalloc(1, sizeof *st);
    st->token = tok;
    job->state = st;
    job->state_free = reset_state_free;
    char *password = pc_xstrdup(np->u.string);
    size_t pwlen = strlen(password);
    pc_wipe(np->u.string, pwlen);
    yajl_tree_free(body);

    /* a live token, before spending a hash on it (it is consumed after) */
    struct pc_buf ident = {0};
    pc_buf_printf(&ident, RESET_PREFIX "%s", tok);
    const char *p[] = {ident.data};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT 1 FROM \"verification\" v JOIN \"user\" u ON u.\"id\" = "
                               "v.\"value\" WHERE v.\"identifier\" = $1 AND v.\"expiresAt\" >= now()",
                               1, p);
    pc_buf_free(&ident);
    bool ok = pc_db_ok(res), live = ok && PQntuples(res) > 0;
    if (res)
        PQclear(res);
    if (!live) {
        pc_wipe(password, pwlen);
        free(password);
        if (!ok)
            return as_fail_db(job);
        return as_error(job, 400, "INVALID_TOKEN", "Invalid token");
    }
    if (as_pw_submit(job, AS_PW_HASH, password, pwlen, reset_hashed) != 0) {
        pc_wipe(password, pwlen);
        free(password);
        return as_error(job, 503, "PASSWORD_QUEUE_FULL", "Too many sign-ins in progress, try again");
    }
    return false;
}

static bool reset_hashed(struct as_job *job, struct as_worker *w)
{
    struct reset_state *st = job->state;
    if (job->pw.failed)
        return as_error(job, 500, "INTERNAL_SERVER_ERROR", "Password hashing failed");
    struct pc_buf ident = {0};
    pc_buf_printf(&ident, RESET_PREFIX "%s", st->token);
    if (pc_db_simple(&w->db, "BEGIN") != 0) {
        pc_buf_free(&ident);
        return as_fail_db(job);
    }
    /* consume: the row goes whether or not it is still live; only a live
     * one resets (Better Auth's consumeVerificationValue) */
    const char *p[] = {ident.data};
    PGresult *res = pc_db_exec(&w->db,
                               "DELETE FROM \"verification\" WHERE \"identifier\" = $1 "
                               "RETURNING \"value\", \"expiresAt\" >= now()",
                               1, p);
    pc_buf_free(&ident);
    char uid[sizeof job->user_id] = "";
    bool ok = pc_db_ok(res);
    for (int i = 0; ok && i < PQntuples(res); i++)
        if (PQgetvalue(res, i, 1)[0] == 't' && strlen(PQgetvalue(res, i, 0)) < sizeof uid)
            memcpy(uid, PQgetvalue(res, i, 0), strlen(PQgetvalue(res, i, 0)) + 1);
    if (res)
        PQclear(res);
    if (!ok || uid[0] == '\0') {
        if (ok && pc_db_simple(&w->db, "COMMIT") == 0)
            return as_error(job, 400, "INVALID_TOKEN", "Invalid token");
        rollback(&w->db);
        return as_fail_db(job);
    }
    char aid[33];
    pc_random_alnum(aid, 32);
    const char *q[] = {uid, job->pw.out, aid};
    res = pc_db_exec(&w->db,
                     "WITH up AS (UPDATE \"account\" SET \"password\" = $2, \"updatedAt\" = "
                     PC_BA_NOW_MS " WHERE \"userId\" = $1 AND \"providerId\" = 'credential' "
                     "RETURNING 1) "
                     "INSERT INTO \"account\" (\"id\", \"accountId\", \"providerId\", \"userId\", "
                     "\"password\", \"createdAt\", \"updatedAt\") "
                     "SELECT $3, $1, 'credential', $1, $2, " PC_BA_NOW_MS ", " PC_BA_NOW_MS
                     " WHERE NOT EXISTS (SELECT 1 FROM up) AND EXISTS "
                     "(SELECT 1 FROM \"user\" WHERE \"id\" = $1)",
                     3, q);
    ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    PGresult *sres = NULL;
    if (ok && as_cfg.revoke_on_reset) {
        const char *sp[] = {uid};
        sres = pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"userId\" = $1 RETURNING "
                                  "\"token\"", 1, sp);
        ok = pc_db_ok(sres);
    }
    ok = ok && pc_db_simple(&w->db, "COMMIT") == 0;
    if (!ok) {
        if (sres)
            PQclear(sres);
        rollback(&w->db);
        return as_fail_db(job);
    }
    if (sres) {
        /* committed: now out of Redis and every gateway's memory */
        int n = PQntuples(sres);
        char **toks = pc_xcalloc((size_t)n + 1, sizeof *toks);
        for (int i = 0; i < n; i++)
            toks[i] = PQgetvalue(sres, i, 0);
        as_revoke_tokens(w, toks, (size_t)n);
        free(toks);
        PQclear(sres);
    }
    snprintf(job->user_id, sizeof job->user_id, "%s", uid);
    pc_logr_info(job->request_id, "password reset for user %s", uid);
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"status\":true}");
    return as_reply(job, 200, &b);
}
