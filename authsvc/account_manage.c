/* Portcullis - MIT licence. See LICENSE.
 *
 * account_manage.c: what a signed-in user does to their own account, as
 * Better Auth 1.7's routes do it (api/routes/account.ts, update-user.ts,
 * password.ts, update-session.ts):
 *
 *   verify-password  {password}: checked against the credential account
 *   list-accounts    the user's accounts (no tokens, no password), scopes split
 *   unlink-account   {accountId}: never the last one (ALLOW_UNLINKING_ALL);
 *                    needs a fresh session
 *   update-session   {…}: Better Auth's session has no fields a client may
 *                    set here, so this answers 400 "No fields to update"
 *   change-email     {newEmail, callbackURL?} (CHANGE_EMAIL_ENABLED): mails
 *                    a verify-email link to the new address (or approval to
 *                    the old one first: CHANGE_EMAIL_SEND_CONFIRMATION); the
 *                    address changes when that link is opened (email_verify.c)
 *   delete-user      {password?, token?, callbackURL?} (DELETE_USER_ENABLED):
 *                    deletes at once (password checked, or a fresh session),
 *                    or mails a confirmation link (DELETE_USER_SEND_VERIFICATION)
 *                    whose callback deletes
 *
 * Deleting a user takes its sessions, accounts and API keys with it in one
 * transaction (the revocation triggers log each), then tells Redis, so no
 * replica serves a credential of a deleted user.
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

#define DELETE_PREFIX "delete-account-"
#define DELETE_TOKEN_LEN 32

static const char *const busy_code = "PASSWORD_QUEUE_FULL";
static const char *const busy_msg = "Too many sign-ins in progress, try again";

static void rollback(struct pc_db *db)
{
    if (pc_db_simple(db, "ROLLBACK") != 0)
        pc_log_warn("postgres: ROLLBACK failed; the connection will be reset");
}

/* ---- the state of the routes that check a password ---- */

struct manage_state {
    struct as_session s;
    struct as_user u;
    char *token, *callback;     /* delete-user */
};

static void manage_state_free(void *p)
{
    struct manage_state *st = p;
    if (st == NULL)
        return;
    as_session_free(&st->s);
    as_user_free(&st->u);
    free(st->token);
    free(st->callback);
    free(st);
}

static struct manage_state *manage_state_new(struct as_job *job)
{
    struct manage_state *st = pc_xcalloc(1, sizeof *st);
    job->state = st;
    job->state_free = manage_state_free;
    return st;
}

bool as_check_password(struct as_job *job, struct as_worker *w, const char *uid, char *pw,
                           as_handler next, const char *no_account_code, const char *no_account_msg)
{
    size_t len = strlen(pw);
    bool handed = false;
    if ((int64_t)pc_utf16_length(pw, len) > as_cfg.max_pw) {
        as_error(job, 400, "PASSWORD_TOO_LONG", "Password too long");
        goto out;
    }
    const char *p[] = {uid};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT \"password\" FROM \"account\" WHERE \"userId\" = $1 AND "
                               "\"providerId\" = 'credential' AND \"password\" IS NOT NULL LIMIT 1",
                               1, p);
    bool ok = pc_db_ok(res), found = ok && PQntuples(res) == 1;
    if (found)
        snprintf(job->pw.stored, sizeof job->pw.stored, "%s", PQgetvalue(res, 0, 0));
    if (res)
        PQclear(res);
    if (!found) {
        if (!ok)
            as_fail_db(job);
        else
            as_error(job, 400, no_account_code, no_account_msg);
        goto out;
    }
    if (as_pw_submit(job, AS_PW_VERIFY, pw, len, next) != 0) {
        as_error(job, 503, busy_code, busy_msg);
        goto out;
    }
    return true;
out:
    pc_wipe(pw, len);
    free(pw);
    return handed;
}

/* ---- POST /verify-password ---- */

static bool verify_password_checked(struct as_job *job, struct as_worker *w)
{
    if (!job->pw.match)
        return as_error(job, 400, "INVALID_PASSWORD", "Invalid password");
    return as_reply_json(job, 200, "{\"status\":true}");
}

bool as_route_verify_password(struct as_job *job, struct as_worker *w)
{
    char *password = as_v_body_str(job, "password");
    if (password == NULL)
        return true;
    struct manage_state *st = manage_state_new(job);
    if (!as_require_session(job, w, &st->s, &st->u)) {
        pc_wipe(password, strlen(password));
        free(password);
        return true;
    }
    return !as_check_password(job, w, st->u.id, password, verify_password_checked,
                           "INVALID_PASSWORD", "Invalid password");
}

/* ---- GET /list-accounts ---- */

bool as_route_list_accounts(struct as_job *job, struct as_worker *w)
{
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u))
        return true;
    const char *p[] = {u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT \"id\", \"accountId\", \"providerId\", \"userId\", \"scope\", "
                               PC_BA_MS("\"createdAt\"") ", " PC_BA_MS("\"updatedAt\"")
                               " FROM \"account\" WHERE \"userId\" = $1 ORDER BY \"createdAt\", \"id\"",
                               1, p);
    as_session_free(&s);
    as_user_free(&u);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return as_fail_db(job);
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_arr_begin(&jw);
    for (int i = 0; i < PQntuples(res); i++) {
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "id");
        pc_jw_str(&jw, PQgetvalue(res, i, 0));
        pc_jw_key(&jw, "accountId");
        pc_jw_str(&jw, PQgetvalue(res, i, 1));
        pc_jw_key(&jw, "providerId");
        pc_jw_str(&jw, PQgetvalue(res, i, 2));
        pc_jw_key(&jw, "userId");
        pc_jw_str(&jw, PQgetvalue(res, i, 3));
        pc_jw_key(&jw, "createdAt");
        pc_jw_date(&jw, pc_db_ms(PQgetvalue(res, i, 5)));
        pc_jw_key(&jw, "updatedAt");
        pc_jw_date(&jw, pc_db_ms(PQgetvalue(res, i, 6)));
        /* scope "a, b,,c" -> ["a","b","c"] (parseStoredScopes) */
        pc_jw_key(&jw, "scopes");
        pc_jw_arr_begin(&jw);
        const char *sc = PQgetisnull(res, i, 4) ? "" : PQgetvalue(res, i, 4);
        while (*sc) {
            size_t n = strcspn(sc, ",");
            const char *a = sc, *e = sc + n;
            while (a < e && (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r'))
                a++;
            while (e > a && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
                e--;
            if (e > a) {
                char *one = pc_xstrndup(a, (size_t)(e - a));
                pc_jw_str(&jw, one);
                free(one);
            }
            sc += n + (sc[n] == ',');
        }
        pc_jw_arr_end(&jw);
        pc_jw_obj_end(&jw);
    }
    pc_jw_arr_end(&jw);
    PQclear(res);
    return as_reply(job, 200, &b);
}

/* ---- POST /unlink-account ---- */

bool as_route_unlink_account(struct as_job *job, struct as_worker *w)
{
    char *account = as_v_body_str(job, "accountId");
    if (account == NULL)
        return true;
    struct as_session s = {0};
    struct as_user u = {0};
    bool answered;
    if (!as_require_session(job, w, &s, &u)) {
        free(account);
        return true;
    }
    if (!as_session_fresh(&s)) {
        answered = as_error(job, 403, "SESSION_NOT_FRESH", "Session is not fresh");
        goto out;
    }
    /* one statement: the count and the delete see the same rows, so two
     * racing unlinks cannot remove the last two */
    const char *p[] = {u.id, account, as_cfg.unlink_all ? "t" : "f"};
    PGresult *res = pc_db_exec(&w->db,
                               "WITH mine AS (SELECT \"id\" FROM \"account\" WHERE \"userId\" = $1 "
                               "FOR UPDATE), d AS (DELETE FROM \"account\" WHERE \"id\" = $2 AND "
                               "\"userId\" = $1 AND ($3::boolean OR (SELECT count(*) FROM mine) > 1) "
                               "RETURNING 1) SELECT (SELECT count(*) FROM mine), "
                               "(SELECT count(*) FROM d), EXISTS (SELECT 1 FROM mine WHERE "
                               "\"id\" = $2)",
                               3, p);
    if (!pc_db_ok(res) || PQntuples(res) != 1) {
        if (res)
            PQclear(res);
        answered = as_fail_db(job);
        goto out;
    }
    long total = strtol(PQgetvalue(res, 0, 0), NULL, 10);
    bool deleted = strcmp(PQgetvalue(res, 0, 1), "1") == 0;
    bool exists = PQgetvalue(res, 0, 2)[0] == 't';
    PQclear(res);
    if (deleted) {
        pc_logr_info(job->request_id, "account %s unlinked from user %s", account, u.id);
        answered = as_reply_json(job, 200, "{\"status\":true}");
    } else if (total == 1 && !as_cfg.unlink_all) {
        answered = as_error(job, 400, "FAILED_TO_UNLINK_LAST_ACCOUNT",
                            "You can't unlink your last account");
    } else {
        (void)exists;
        answered = as_error(job, 400, "ACCOUNT_NOT_FOUND", "Account not found");
    }
out:
    free(account);
    as_session_free(&s);
    as_user_free(&u);
    return answered;
}

/* ---- POST /update-session ---- */

bool as_route_update_session(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, false);
    if (body == NULL)
        return true;
    bool is_obj = YAJL_IS_OBJECT(body);
    yajl_tree_free(body);
    if (!is_obj)
        return as_error(job, 400, "BODY_MUST_BE_AN_OBJECT", "Body must be an object");
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u))
        return true;
    as_session_free(&s);
    as_user_free(&u);
    /* the session has no additional fields: nothing a client may set */
    return as_error(job, 400, "NO_FIELDS_TO_UPDATE", "No fields to update");
}

/* ---- POST /change-email ---- */

static int mail_change(struct as_worker *w, enum as_mail_kind kind, const char *to,
                       const char *name, const char *tok, const char *callback,
                       const char *new_email)
{
    struct pc_buf url = {0};
    as_auth_base_url(&url);
    pc_buf_printf(&url, "/verify-email?token=%s&callbackURL=", tok);
    pc_url_encode_component(&url, callback ? callback : "/");
    struct as_mail_vars mv = {.name = name, .email = to, .url = pc_buf_cstr(&url),
                              .expires_s = as_cfg.verify_expires_in, .new_email = new_email};
    int rc = as_mail_enqueue(&w->db, kind, &mv);
    pc_wipe(url.data, url.len);
    pc_buf_free(&url);
    return rc;
}

bool as_route_change_email(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    yajl_val ne = as_v_str(&v, body, "newEmail", true, false);
    yajl_val cb = as_v_str(&v, body, "callbackURL", false, false);
    if (ne && !as_email_valid(ne->u.string))
        as_v_add(&v, "newEmail", "Invalid email address");
    if (as_v_failed(job, &v)) {
        yajl_tree_free(body);
        return true;
    }
    if (cb && !as_redirect_allowed(cb->u.string)) {
        yajl_tree_free(body);
        return as_error(job, 403, "INVALID_CALLBACK_URL", "Invalid callbackURL");
    }
    char *to = pc_xstrdup_lower(ne->u.string);
    char *callback = cb ? pc_xstrdup(cb->u.string) : NULL;
    yajl_tree_free(body);
    struct as_session s = {0};
    struct as_user u = {0};
    bool answered;
    if (!as_require_session(job, w, &s, &u)) {
        answered = true;
        goto out;
    }
    if (!as_cfg.change_email) {
        answered = as_error(job, 400, "CHANGE_EMAIL_DISABLED", "Change email is disabled");
        goto out;
    }
    if (strcmp(to, u.email) == 0) {
        answered = as_error(job, 400, "EMAIL_IS_THE_SAME", "Email is the same");
        goto out;
    }
    const char *p[] = {to};
    PGresult *res = pc_db_exec(&w->db, "SELECT 1 FROM \"user\" WHERE \"email\" = $1", 1, p);
    bool ok = pc_db_ok(res), taken = ok && PQntuples(res) > 0;
    if (res)
        PQclear(res);
    if (!ok) {
        answered = as_fail_db(job);
        goto out;
    }
    int rc = 0;
    if (taken) {
        /* the same answer as for a free address: nothing tells it is taken */
        pc_logr_info(job->request_id, "change-email to an address in use, for user %s", u.id);
    } else if (!u.email_verified && as_cfg.change_email_unverified) {
        /* updateEmailWithoutVerification: at once, then verify the new one */
        const char *q[] = {u.id, to};
        res = pc_db_exec(&w->db,
                         "WITH u AS (UPDATE \"user\" SET \"email\" = $2, \"updatedAt\" = "
                         PC_BA_NOW_MS " WHERE \"id\" = $1 RETURNING *) SELECT " PC_BA_USER_COLS
                         " FROM u",
                         2, q);
        ok = pc_db_ok(res) && PQntuples(res) == 1;
        struct as_user nu = {0};
        if (ok)
            as_user_from_row(&nu, res, 0, 0);
        if (res)
            PQclear(res);
        if (ok) {
            as_user_cache_refresh(w, &nu);
            rc = as_verification_mail(&w->db, &nu, callback);
        } else {
            rc = -1;
        }
        as_user_free(&nu);
    } else {
        bool confirm = u.email_verified && as_cfg.change_email_confirm;
        char *tok = as_verify_token_mint(u.email, to,
                                         confirm ? "change-email-confirmation"
                                                 : "change-email-verification",
                                         u.id, as_cfg.verify_expires_in);
        rc = tok == NULL ? -1
             : confirm ? mail_change(w, AS_MAIL_CHANGE_EMAIL, u.email, u.name, tok, callback, to)
                       : mail_change(w, AS_MAIL_VERIFY_EMAIL, to, u.name, tok, callback, NULL);
        if (tok) {
            pc_wipe(tok, strlen(tok));
            free(tok);
        }
    }
    answered = rc != 0 ? as_fail_db(job) : as_reply_json(job, 200, "{\"status\":true}");
out:
    free(to);
    free(callback);
    as_session_free(&s);
    as_user_free(&u);
    return answered;
}

/* ---- POST /delete-user, GET /delete-user/callback ---- */

/* Deletes uid with its sessions, accounts and API keys (one transaction),
 * then revokes the sessions in Redis. 0, or -1 (PostgreSQL). */
static int delete_user_rows(struct as_worker *w, const char *uid)
{
    const char *p[] = {uid};
    if (pc_db_simple(&w->db, "BEGIN") != 0)
        return -1;
    PGresult *sres = pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"userId\" = $1 "
                                        "RETURNING \"token\"", 1, p);
    bool ok = pc_db_ok(sres);
    static const char *const more[] = {
        "DELETE FROM \"apikey\" WHERE \"referenceId\" = $1",
        "DELETE FROM \"account\" WHERE \"userId\" = $1",
        "DELETE FROM \"user\" WHERE \"id\" = $1",
    };
    for (size_t i = 0; ok && i < PC_ARRAY_LEN(more); i++) {
        PGresult *r = pc_db_exec(&w->db, more[i], 1, p);
        ok = pc_db_ok(r);
        if (r)
            PQclear(r);
    }
    ok = ok && pc_db_simple(&w->db, "COMMIT") == 0;
    if (!ok) {
        if (sres)
            PQclear(sres);
        rollback(&w->db);
        return -1;
    }
    int n = PQntuples(sres);
    char **toks = pc_xcalloc((size_t)n + 1, sizeof *toks);
    for (int i = 0; i < n; i++)
        toks[i] = PQgetvalue(sres, i, 0);
    as_revoke_tokens(w, toks, (size_t)n);
    free(toks);
    PQclear(sres);
    return 0;
}

static bool deleted(struct as_job *job, struct as_worker *w, const char *uid,
                    const char *callback)
{
    if (delete_user_rows(w, uid) != 0)
        return as_fail_db(job);
    pc_logr_info(job->request_id, "user %s deleted", uid);
    snprintf(job->user_id, sizeof job->user_id, "%s", uid);
    as_session_clear_cookies(job);
    if (callback)
        return as_redirect(job, callback);
    return as_reply_json(job, 200, "{\"success\":true,\"message\":\"User deleted\"}");
}

/* Consumes "delete-account-<token>" (deleted whether or not it matches);
 * true when it was live and for uid. -1 on a PostgreSQL failure. */
static int consume_delete_token(struct as_worker *w, const char *tok, const char *uid)
{
    struct pc_buf ident = {0};
    pc_buf_printf(&ident, DELETE_PREFIX "%s", tok);
    const char *p[] = {ident.data, uid};
    PGresult *res = pc_db_exec(&w->db,
                               "WITH d AS (DELETE FROM \"verification\" WHERE \"identifier\" = $1 "
                               "RETURNING \"value\", \"expiresAt\") SELECT count(*) FROM d "
                               "WHERE \"value\" = $2 AND \"expiresAt\" >= now()",
                               2, p);
    pc_buf_free(&ident);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return -1;
    }
    int good = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    PQclear(res);
    return good;
}

static bool delete_user_go(struct as_job *job, struct as_worker *w, bool password_checked)
{
    struct manage_state *st = job->state;
    if (st->token) {
        int good = consume_delete_token(w, st->token, st->u.id);
        if (good < 0)
            return as_fail_db(job);
        if (!good)
            return as_error(job, 404, "INVALID_TOKEN", "Invalid token");
        return deleted(job, w, st->u.id, NULL);
    }
    if (as_cfg.delete_user_verify) {
        char tok[DELETE_TOKEN_LEN + 1];
        /* Better Auth's: 32 of 0-9 a-z */
        pc_random_alnum(tok, DELETE_TOKEN_LEN);
        for (char *c = tok; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        struct pc_buf ident = {0}, url = {0};
        pc_buf_printf(&ident, DELETE_PREFIX "%s", tok);
        as_auth_base_url(&url);
        pc_buf_printf(&url, "/delete-user/callback?token=%s&callbackURL=", tok);
        pc_url_encode_component(&url, st->callback ? st->callback : "/");
        struct as_mail_vars mv = {.name = st->u.name, .email = st->u.email,
                                  .url = pc_buf_cstr(&url), .expires_s = as_cfg.delete_expires_in};
        bool ok = as_mail_with_verification(&w->db, ident.data, st->u.id, as_cfg.delete_expires_in,
                                            AS_MAIL_DELETE_ACCOUNT, &mv) == 0;
        pc_wipe(tok, sizeof tok);
        pc_wipe(ident.data, ident.len);
        pc_wipe(url.data, url.len);
        pc_buf_free(&ident);
        pc_buf_free(&url);
        if (!ok)
            return as_fail_db(job);
        return as_reply_json(job, 200,
                             "{\"success\":true,\"message\":\"Verification email sent\"}");
    }
    if (!password_checked && !as_session_fresh(&st->s))
        return as_error(job, 400, "SESSION_EXPIRED",
                        "Session expired. Re-authenticate to perform this action.");
    return deleted(job, w, st->u.id, NULL);
}

static bool delete_user_checked(struct as_job *job, struct as_worker *w)
{
    if (!job->pw.match)
        return as_error(job, 400, "INVALID_PASSWORD", "Invalid password");
    return delete_user_go(job, w, true);
}

bool as_route_delete_user(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, false);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    yajl_val cb = as_v_str(&v, body, "callbackURL", false, false);
    yajl_val pw = as_v_str(&v, body, "password", false, false);
    yajl_val tk = as_v_str(&v, body, "token", false, false);
    if (as_v_failed(job, &v)) {
        yajl_tree_free(body);
        return true;
    }
    if (cb && !as_redirect_allowed(cb->u.string)) {
        yajl_tree_free(body);
        return as_error(job, 403, "INVALID_CALLBACK_URL", "Invalid callbackURL");
    }
    struct manage_state *st = manage_state_new(job);
    st->callback = cb ? pc_xstrdup(cb->u.string) : NULL;
    st->token = tk && tk->u.string[0] ? pc_xstrdup(tk->u.string) : NULL;
    char *password = pw && pw->u.string[0] ? pc_xstrdup(pw->u.string) : NULL;
    if (password)
        pc_wipe(pw->u.string, strlen(password));
    yajl_tree_free(body);
    bool have_session = as_require_session(job, w, &st->s, &st->u);
    if (!have_session || !as_cfg.delete_user) {
        if (password) {
            pc_wipe(password, strlen(password));
            free(password);
        }
        if (have_session) /* Better Auth: 404 when the option is off */
            return as_error(job, 404, "NOT_FOUND", "Not Found");
        return true;
    }
    if (password)
        return !as_check_password(job, w, st->u.id, password, delete_user_checked,
                               "CREDENTIAL_ACCOUNT_NOT_FOUND", "Credential account not found");
    return delete_user_go(job, w, false);
}

bool as_route_delete_user_callback(struct as_job *job, struct as_worker *w)
{
    char *tok = as_query_param(job, "token");
    char *callback = as_query_param(job, "callbackURL");
    struct as_session s = {0};
    struct as_user u = {0};
    bool answered;
    if (tok == NULL) {
        struct vcheck v = {.where = "query"};
        as_v_expected(&v, "token", "string", NULL);
        answered = as_v_failed(job, &v);
        goto out;
    }
    if (callback && !as_redirect_allowed(callback)) {
        answered = as_error(job, 403, "INVALID_CALLBACK_URL", "Invalid callbackURL");
        goto out;
    }
    if (!as_cfg.delete_user) {
        answered = as_error(job, 404, "NOT_FOUND", "Not found");
        goto out;
    }
    enum as_lookup lk = as_session_resolve(job, w, &s, &u);
    if (lk == AS_LOOKUP_UNAVAILABLE) {
        answered = as_fail_db(job);
        goto out;
    }
    if (lk != AS_LOOKUP_OK) {
        answered = as_error(job, 404, "FAILED_TO_GET_USER_INFO", "Failed to get user info");
        goto out;
    }
    int good = consume_delete_token(w, tok, u.id);
    if (good < 0)
        answered = as_fail_db(job);
    else if (!good)
        answered = as_error(job, 404, "INVALID_TOKEN", "Invalid token");
    else
        answered = deleted(job, w, u.id, callback);
out:
    if (tok) {
        pc_wipe(tok, strlen(tok));
        free(tok);
    }
    free(callback);
    as_session_free(&s);
    as_user_free(&u);
    return answered;
}
