/* Portcullis - MIT licence. See LICENSE.
 *
 * oauth_link.c: a provider account linked to the signed-in user, and what
 * the provider says of a linked account, as Better Auth 1.7 does them
 * (api/routes/account.mjs, oauth2/link-account.mjs):
 *
 *   POST /link-social    oauth_flow.c's sign-in/social path with the state's
 *                        "link"; the identity, verified (ID token, domain
 *                        rules), ends here (oa_link_finish): Better Auth's
 *                        rules, then the account row. No session is made.
 *   GET  /account-info   (worker) the user's account row -> (loop) a refresh
 *                        when the access token has expired, the userinfo of
 *                        an OIDC provider -> (worker) the refreshed tokens
 *                        stored -> {user, data, account}
 *
 * The rules of a link, in Better Auth's order: the session that started a
 * redirect link must still be live; the provider must have verified the
 * email (we trust no provider without it); the email must be the user's;
 * an account of another user is refused; the user's own is refreshed.
 * Tokens never reach the log.
 */
#include "authsvc.h"
#include "oauth_int.h"
#include "job.h"
#include "accounts.h"
#include "sessions.h"
#include "../lib/ba_schema.h"
#include "../lib/crypto.h"
#include "../lib/jws.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <libpq-fe.h>

#define NOW_MS "date_trunc('milliseconds', now())"
#define TS(n) "to_timestamp($" #n "::double precision / 1000)"

/* ---- a link's rows (worker) ---- */

enum link_refusal {
    LINK_UNVERIFIED,        /* the provider has not verified the email */
    LINK_OTHER_EMAIL,       /* not the signed-in user's email */
    LINK_OTHER_USER,        /* the provider account is another user's */
    LINK_FAILED,            /* the session that started it is gone, or no row */
};

/* A refusal: link-social with an ID token answers JSON with the route's
 * codes, a callback redirects with the callback's. */
static bool refuse(struct as_job *job, enum link_refusal why)
{
    static const struct {
        int status;
        const char *code, *message, *callback_error;
    } r[] = {
        [LINK_UNVERIFIED] = {401, "LINKING_NOT_ALLOWED", "Account not linked - linking not allowed",
                             "unable_to_link_account"},
        [LINK_OTHER_EMAIL] = {401, "LINKING_DIFFERENT_EMAILS_NOT_ALLOWED",
                              "Account not linked - different emails not allowed",
                              "email_does_not_match"},
        [LINK_OTHER_USER] = {409, "SOCIAL_ACCOUNT_ALREADY_LINKED", "Social account already linked",
                             "account_already_linked_to_different_user"},
        [LINK_FAILED] = {417, "LINKING_FAILED", "Account not linked - unable to create account",
                         "unable_to_link_account"},
    };
    struct flow *f = job->state;
    pc_logr_info(job->request_id, "oauth: %s: link refused: %s", f->p->id, r[why].callback_error);
    if (f->idtoken_mode)
        return as_error(job, r[why].status, r[why].code, r[why].message);
    return oa_fail(job, r[why].callback_error);
}

/* 1 when token is a live session of user, 0 when not, -1 PostgreSQL down. */
static int session_live(struct as_worker *w, const char *token, const char *user)
{
    const char *p[] = {token, user};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT 1 FROM \"session\" WHERE \"token\" = $1 AND \"userId\" = $2 "
                               "AND \"expiresAt\" > now()",
                               2, p);
    as_health_note_pg(res != NULL);
    int rc = !pc_db_ok(res) ? -1 : PQntuples(res) == 1;
    if (res)
        PQclear(res);
    return rc;
}

/* Better Auth's mergeScopes: the stored ones, then the new ones not there. */
static char *merge_scopes(const char *stored, const char *more)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, stored ? stored : "");
    while (more && *more) {
        size_t n = strcspn(more, ",");
        bool have = false;
        for (const char *c = pc_buf_cstr(&b); n && *c && !have;) {
            size_t m = strcspn(c, ",");
            have = m == n && strncmp(c, more, n) == 0;
            c += m + (c[m] == ',');
        }
        if (n && !have) {
            if (b.len)
                pc_buf_putc(&b, ',');
            pc_buf_append(&b, more, n);
        }
        more += n + (more[n] == ',');
    }
    return b.data;
}

/* The user's own account: its tokens (and, for a callback, expiries and
 * scopes) refreshed. -1 when PostgreSQL failed. */
static int refresh_own(struct as_worker *w, const struct flow *f, const char *row,
                       const char *stored_scope)
{
    char aexp[32], rexp[32];
    snprintf(aexp, sizeof aexp, "%lld", (long long)f->access_exp_ms);
    snprintf(rexp, sizeof rexp, "%lld", (long long)f->refresh_exp_ms);
    char *scope = f->idtoken_mode ? NULL : merge_scopes(stored_scope, f->scope);
    const char *p[] = {row, f->access_token, f->refresh_token, f->id_token,
                       f->access_exp_ms ? aexp : NULL, f->refresh_exp_ms ? rexp : NULL,
                       scope && scope[0] ? scope : NULL};
    PGresult *res = pc_db_exec(
        &w->db,
        "UPDATE \"account\" SET \"accessToken\" = COALESCE($2, \"accessToken\"), "
        "\"refreshToken\" = COALESCE($3, \"refreshToken\"), \"idToken\" = $4, "
        "\"accessTokenExpiresAt\" = COALESCE(" TS(5) ", \"accessTokenExpiresAt\"), "
        "\"refreshTokenExpiresAt\" = COALESCE(" TS(6) ", \"refreshTokenExpiresAt\"), "
        "\"scope\" = COALESCE($7, \"scope\"), \"updatedAt\" = " NOW_MS " WHERE \"id\" = $1",
        7, p);
    free(scope);
    as_health_note_pg(res != NULL);
    int rc = pc_db_ok(res) ? 0 : -1;
    if (res)
        PQclear(res);
    return rc;
}

static bool linked(struct as_job *job)
{
    struct flow *f = job->state;
    snprintf(job->user_id, sizeof job->user_id, "%s", f->link_user);
    pc_logr_info(job->request_id, "oauth: %s: account linked to user %s", f->p->id, f->link_user);
    if (f->idtoken_mode)
        return as_reply_json(job, 200, "{\"url\":\"\",\"status\":true,\"redirect\":false}");
    return as_redirect(job, f->callback);
}

bool oa_link_finish(struct as_job *job, struct as_worker *w)
{
    struct flow *f = job->state;
    bool email_ok = strcasecmp(f->email, f->link_email) == 0;
    /* a callback checks the session and the identity before the row (an
     * ID token link, the row first: Better Auth's two orders) */
    if (!f->idtoken_mode) {
        if (f->link_session) {
            int live = session_live(w, f->link_session, f->link_user);
            if (live < 0)
                return oa_fail(job, "database_unavailable");
            if (live == 0)
                return refuse(job, LINK_FAILED);
        }
        if (!f->email_verified)
            return refuse(job, LINK_UNVERIFIED);
        if (!email_ok)
            return refuse(job, LINK_OTHER_EMAIL);
    }
    const char *q[] = {f->p->id, f->sub};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT \"id\", \"userId\", \"scope\" FROM \"account\" "
                               "WHERE \"providerId\" = $1 AND \"accountId\" = $2 "
                               "ORDER BY \"createdAt\" LIMIT 1",
                               2, q);
    as_health_note_pg(res != NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return oa_fail(job, "database_unavailable");
    }
    if (PQntuples(res) == 1) {
        bool mine = strcmp(PQgetvalue(res, 0, 1), f->link_user) == 0;
        int rc = mine ? refresh_own(w, f, PQgetvalue(res, 0, 0),
                                    PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2))
                      : 0;
        PQclear(res);
        if (!mine)
            return refuse(job, LINK_OTHER_USER);
        return rc < 0 ? oa_fail(job, "database_unavailable") : linked(job);
    }
    PQclear(res);
    if (!f->email_verified)
        return refuse(job, LINK_UNVERIFIED);
    if (!email_ok)
        return refuse(job, LINK_OTHER_EMAIL);
    const struct as_oidc_identity id = {
        .provider_id = f->p->id,
        .sub = f->sub,
        .id_token = f->id_token,
        .access_token = f->access_token,
        .refresh_token = f->refresh_token,
        .scope = f->idtoken_mode ? NULL : f->scope,
        .access_exp_ms = f->access_exp_ms,
        .refresh_exp_ms = f->refresh_exp_ms,
    };
    int rc = as_account_insert_oidc(w, f->link_user, &id);
    if (rc < 0)
        return oa_fail(job, "database_unavailable");
    return rc == 1 ? linked(job) : refuse(job, LINK_FAILED);
}

/* ---- GET /account-info ---- */

/* The claims of a JWT's payload as JSON text (heap), unverified: the ID
 * token came from the provider's token endpoint. NULL when it is not one. */
static char *jwt_payload_json(const char *tok)
{
    const char *a = tok ? strchr(tok, '.') : NULL;
    const char *b = a ? strchr(a + 1, '.') : NULL;
    if (b == NULL || (size_t)(b - a) > 16384)
        return NULL;
    size_t n = (size_t)(b - a - 1);
    char *out = pc_xmalloc(n * 3 / 4 + 4);
    long got = pc_b64_decode(a + 1, n, (unsigned char *)out);
    if (got < 0) {
        free(out);
        return NULL;
    }
    out[got] = '\0';
    return out;
}

static void jw_claim(struct pc_jw *jw, yajl_val claims, const char *claim, const char *key)
{
    yajl_val v = pc_json_get(claims, claim);
    if (YAJL_IS_STRING(v)) {
        pc_jw_key(jw, key);
        pc_jw_str(jw, v->u.string);
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        pc_jw_key(jw, key);
        pc_jw_bool(jw, YAJL_IS_TRUE(v));
    }
}

/* Any thread: {user, data, account} from the provider's claims (JSON text),
 * or 401 FAILED_TO_GET_USER_INFO. */
static bool info_answer(struct as_job *job, const char *claims_json)
{
    struct flow *f = job->state;
    yajl_val c = claims_json ? pc_json_parse(claims_json, strlen(claims_json)) : NULL;
    if (!YAJL_IS_OBJECT(c)) {
        if (c)
            yajl_tree_free(c);
        return as_error(job, 401, "FAILED_TO_GET_USER_INFO", "Failed to get user info");
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "user");
    pc_jw_obj_begin(&jw);
    jw_claim(&jw, c, "name", "name");
    jw_claim(&jw, c, "email", "email");
    jw_claim(&jw, c, "picture", "image");
    jw_claim(&jw, c, "email_verified", "emailVerified");
    pc_jw_obj_end(&jw);
    yajl_tree_free(c);
    pc_jw_key(&jw, "data");
    pc_jw_raw(&jw, claims_json);
    pc_jw_key(&jw, "account");
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "id");
    pc_jw_str(&jw, f->account_row);
    pc_jw_key(&jw, "providerId");
    pc_jw_str(&jw, f->account_provider);
    pc_jw_key(&jw, "accountId");
    pc_jw_str(&jw, f->account_id);
    pc_jw_obj_end(&jw);
    pc_jw_obj_end(&jw);
    return as_reply(job, 200, &b);
}

static void info_userinfo(struct as_job *job);

/* Worker. Google's getUserInfo is the stored ID token's claims; an OIDC
 * provider's, its userinfo endpoint (the ID token's claims without one). */
static bool info_claims(struct as_job *job)
{
    struct flow *f = job->state;
    if (f->access_token == NULL || f->access_token[0] == '\0')
        return as_error(job, 400, "ACCESS_TOKEN_NOT_FOUND", "Access token not found");
    if (!f->p->google) {
        pthread_mutex_lock(&f->p->mu);
        bool has = f->p->userinfo_url != NULL;
        pthread_mutex_unlock(&f->p->mu);
        if (has) {
            as_server_to_loop(job, info_userinfo);
            return false;
        }
    }
    char *claims = jwt_payload_json(f->id_token);
    bool r = info_answer(job, claims);
    free(claims);
    return r;
}

static void on_userinfo(void *arg, const struct as_http_resp *r, const char *err)
{
    struct as_job *job = arg;
    if (err || r->status != 200)
        as_error(job, 401, "FAILED_TO_GET_USER_INFO", "Failed to get user info");
    else
        info_answer(job, r->body);
    as_server_finish(job);
}

/* Loop: GET userinfo with the access token. */
static void info_userinfo(struct as_job *job)
{
    struct flow *f = job->state;
    if (f->p->disc != P_OK ||
        as_http_request(f->p->userinfo_url, NULL, f->access_token, on_userinfo, job) != 0) {
        as_error(job, 401, "FAILED_TO_GET_USER_INFO", "Failed to get user info");
        as_server_finish(job);
    }
}

/* Worker, after a refresh: the new tokens stored (best effort, as Better
 * Auth), then the claims. */
static bool info_refreshed(struct as_job *job, struct as_worker *w)
{
    struct flow *f = job->state;
    char aexp[32], rexp[32];
    snprintf(aexp, sizeof aexp, "%lld", (long long)f->access_exp_ms);
    snprintf(rexp, sizeof rexp, "%lld", (long long)f->refresh_exp_ms);
    const char *p[] = {f->account_row, f->access_token, f->refresh_token, f->id_token,
                       f->access_exp_ms ? aexp : NULL, f->refresh_exp_ms ? rexp : NULL};
    PGresult *res = pc_db_exec(
        &w->db,
        "UPDATE \"account\" SET \"accessToken\" = $2, \"refreshToken\" = $3, \"idToken\" = $4, "
        "\"accessTokenExpiresAt\" = " TS(5) ", "
        "\"refreshTokenExpiresAt\" = COALESCE(" TS(6) ", \"refreshTokenExpiresAt\"), "
        "\"updatedAt\" = " NOW_MS " WHERE \"id\" = $1",
        6, p);
    as_health_note_pg(res != NULL);
    if (!pc_db_ok(res))
        pc_logr_warn(job->request_id, "oauth: %s: refreshed tokens not stored", f->p->id);
    if (res)
        PQclear(res);
    return info_claims(job);
}

static void refresh_failed(struct as_job *job)
{
    as_error(job, 400, "FAILED_TO_GET_ACCESS_TOKEN", "Failed to get a valid access token");
    as_server_finish(job);
}

static void on_refresh(void *arg, const struct as_http_resp *r, const char *err)
{
    struct as_job *job = arg;
    struct flow *f = job->state;
    yajl_val doc = !err && r->status == 200 ? pc_json_parse(r->body, r->len) : NULL;
    yajl_val at = pc_json_get(doc, "access_token");
    if (!YAJL_IS_STRING(at)) {
        pc_logr_info(job->request_id, "oauth: %s: refresh refused (HTTP %ld)", f->p->id,
                     err ? 0L : r->status);
        if (doc)
            yajl_tree_free(doc);
        refresh_failed(job);
        return;
    }
    /* a refresh answer may leave out the refresh and ID tokens: the stored
     * ones stay (Better Auth's getValidAccessToken) */
    char *old_rt = f->refresh_token, *old_id = f->id_token;
    f->refresh_token = f->id_token = NULL;
    f->access_exp_ms = f->refresh_exp_ms = 0;
    oa_token_answer(f, doc);
    yajl_tree_free(doc);
    if (f->refresh_token == NULL) {
        f->refresh_token = old_rt;
        old_rt = NULL;
    }
    if (f->id_token == NULL) {
        f->id_token = old_id;
        old_id = NULL;
    }
    if (old_rt)
        pc_wipe(old_rt, strlen(old_rt));
    if (old_id)
        pc_wipe(old_id, strlen(old_id));
    free(old_rt);
    free(old_id);
    oa_to_worker(job, info_refreshed);
}

/* Loop: POST grant_type=refresh_token to the token endpoint. */
static void info_refresh(struct as_job *job)
{
    struct flow *f = job->state;
    struct provider *p = f->p;
    if (oa_stopping || p->disc != P_OK) {
        refresh_failed(job);
        return;
    }
    struct pc_buf form = {0};
    oa_form_add(&form, "grant_type", "refresh_token");
    oa_form_add(&form, "refresh_token", f->refresh_token);
    oa_form_add(&form, "client_id", p->client_id);
    oa_form_add(&form, "client_secret", p->client_secret);
    int rc = as_http_request(p->token_url, form.data, NULL, on_refresh, job);
    pc_wipe(form.data, form.len);
    pc_buf_free(&form);
    if (rc != 0)
        refresh_failed(job);
}

static void info_refresh_on_loop(struct as_job *job)
{
    struct flow *f = job->state;
    oa_provider_ensure(f->p, false, job, info_refresh);
}

static char *col(const PGresult *res, int c)
{
    return PQgetisnull(res, 0, c) ? NULL : pc_xstrdup(PQgetvalue(res, 0, c));
}

bool as_route_account_info(struct as_job *job, struct as_worker *w)
{
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u))
        return true;
    char *account = as_query_param(job, "accountId");
    if (account == NULL || account[0] == '\0') {
        free(account);
        as_session_free(&s);
        as_user_free(&u);
        return as_error(job, 400, "VALIDATION_ERROR",
                        "[query.accountId] Invalid input: expected string, received undefined");
    }
    const char *q[] = {account, u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT \"id\", \"accountId\", \"providerId\", \"accessToken\", "
                               "\"refreshToken\", \"idToken\", " PC_BA_MS("\"accessTokenExpiresAt\"")
                               " FROM \"account\" WHERE \"id\" = $1 AND \"userId\" = $2",
                               2, q);
    free(account);
    as_session_free(&s);
    as_user_free(&u);
    as_health_note_pg(res != NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return as_fail_db(job);
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        return as_error(job, 400, "ACCOUNT_NOT_FOUND", "Account not found");
    }
    struct provider *p = oa_provider_find(PQgetvalue(res, 0, 2));
    if (p == NULL) {
        PQclear(res);
        return as_error(job, 400, "PROVIDER_NOT_CONFIGURED",
                        "Account is not associated with a configured social provider.");
    }
    struct flow *f = oa_flow_new(job, p);
    f->want_json = true;
    f->account_row = col(res, 0);
    f->account_id = col(res, 1);
    f->account_provider = col(res, 2);
    f->access_token = col(res, 3);
    f->refresh_token = col(res, 4);
    f->id_token = col(res, 5);
    int64_t exp = PQgetisnull(res, 0, 6) ? 0 : pc_db_ms(PQgetvalue(res, 0, 6));
    PQclear(res);
    /* Better Auth refreshes within 5 s of expiry, when it can */
    if (f->refresh_token && f->refresh_token[0] && exp && exp - pc_now_ms() < 5000) {
        as_server_to_loop(job, info_refresh_on_loop);
        return false;
    }
    return info_claims(job);
}
