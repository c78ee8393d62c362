/* Portcullis - MIT licence. See LICENSE.
 *
 * email_verify.c: Better Auth's email verification (its
 * api/routes/email-verification.ts), so that a link either side mails is
 * accepted by the other.
 *
 *   token   an HS256 JWT over {email, updateTo?, requestType?, userId, iat,
 *           exp}, keyed by the secret (libjwt; the asymmetric JWTs of
 *           jwt.c stay on OpenSSL). Nothing is stored: the token is the
 *           state, so it works until it expires, as Better Auth's does.
 *   send-verification-email   {email, callbackURL?}: with a session, for its
 *           own unverified email only; without one, for any email, with the
 *           same answer whether or not the user exists (the mail is an
 *           outbox row, so both answers cost one query)
 *   verify-email?token&callbackURL   marks the email verified (and signs in
 *           with EMAIL_VERIFICATION_AUTO_SIGN_IN); a token with updateTo is
 *           Better Auth's change-email flow (confirmation, then
 *           verification of the new address). Errors redirect to
 *           callbackURL?error=CODE, or answer 401 without one.
 */
#include "authsvc.h"
#include "email_verify.h"
#include "job.h"
#include "mail.h"
#include "validate.h"
#include "../lib/ba_schema.h"
#include "../lib/cookie.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <jwt.h>
#include <libpq-fe.h>

#define TOKEN_MAX 4096  /* Better Auth's are ~300 bytes */

void as_auth_base_url(struct pc_buf *b)
{
    size_t n = strlen(as_cfg.base_url);
    while (n > 0 && as_cfg.base_url[n - 1] == '/')
        n--;
    pc_buf_append(b, as_cfg.base_url, n);
    pc_buf_puts(b, "/api/auth");
}


/* ---- the token ---- */

struct vclaims {
    char *email, *update_to, *request_type, *user_id;   /* heap or NULL */
};

static void vclaims_free(struct vclaims *c)
{
    free(c->email);
    free(c->update_to);
    free(c->request_type);
    free(c->user_id);
    memset(c, 0, sizeof *c);
}

/* Better Auth's createEmailVerificationToken (email_verify.h). */
char *as_verify_token_mint(const char *email, const char *update_to, const char *request_type,
                        const char *user_id, int64_t expires_in)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0)
        return NULL;
    char *le = pc_xstrdup_lower(email), *lu = update_to ? pc_xstrdup_lower(update_to) : NULL;
    long now = (long)(pc_now_ms() / 1000);
    int rc = jwt_add_grant(j, "email", le);
    if (rc == 0 && lu)
        rc = jwt_add_grant(j, "updateTo", lu);
    if (rc == 0 && request_type)
        rc = jwt_add_grant(j, "requestType", request_type);
    if (rc == 0 && user_id)
        rc = jwt_add_grant(j, "userId", user_id);
    if (rc == 0)
        rc = jwt_add_grant_int(j, "iat", now);
    if (rc == 0)
        rc = jwt_add_grant_int(j, "exp", now + (long)expires_in);
    if (rc == 0)
        rc = jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)as_cfg.secret,
                         (int)strlen(as_cfg.secret));
    char *tok = rc == 0 ? jwt_encode_str(j) : NULL;
    jwt_free(j);
    free(le);
    free(lu);
    return tok;
}

static bool opt_claim(jwt_t *j, const char *name, char **out)
{
    *out = NULL;
    errno = 0;
    const char *v = jwt_get_grant(j, name);
    if (v == NULL)
        return errno == ENOENT || errno == 0;   /* absent is fine; another type is not */
    *out = pc_xstrdup(v);
    return true;
}

static const char *const code_invalid = "INVALID_TOKEN";
static const char *const code_expired = "TOKEN_EXPIRED";

/* jose's jwtVerify(token, secret, {algorithms: ["HS256"]}) and the claims'
 * zod schema. NULL, with c filled, when good; else the error code. */
static const char *token_check(const char *tok, struct vclaims *c)
{
    memset(c, 0, sizeof *c);
    if (strlen(tok) > TOKEN_MAX)
        return code_invalid;
    jwt_t *j = NULL;
    if (jwt_decode(&j, tok, (const unsigned char *)as_cfg.secret, (int)strlen(as_cfg.secret)) != 0)
        return code_invalid;
    const char *bad = code_invalid;
    if (jwt_get_alg(j) != JWT_ALG_HS256) /* never "none", whatever the header says */
        goto out;
    long now = (long)(pc_now_ms() / 1000);
    errno = 0;
    long exp = jwt_get_grant_int(j, "exp");
    if (errno != 0) /* Better Auth's always have one */
        goto out;
    errno = 0;
    long nbf = jwt_get_grant_int(j, "nbf");
    if (errno == 0 && nbf > now)
        goto out;
    if (exp <= now) {
        bad = code_expired;
        goto out;
    }
    if (!opt_claim(j, "email", &c->email) || c->email == NULL || !as_email_valid(c->email) ||
        !opt_claim(j, "updateTo", &c->update_to) ||
        !opt_claim(j, "requestType", &c->request_type) || !opt_claim(j, "userId", &c->user_id))
        goto out;
    bad = NULL;
out:
    jwt_free(j);
    if (bad)
        vclaims_free(c);
    return bad;
}

/* ---- the mail ---- */

/* base/verify-email?token=<t>&callbackURL=<encodeURIComponent(cb or "/")> */
static void verify_link(struct pc_buf *b, const char *tok, const char *callback)
{
    as_auth_base_url(b);
    pc_buf_printf(b, "/verify-email?token=%s&callbackURL=", tok);
    pc_url_encode_component(b, callback ? callback : "/");
}

static int mail_token(struct pc_db *db, const char *to, const char *name, const char *tok,
                      const char *callback, int64_t expires_in)
{
    struct pc_buf url = {0};
    verify_link(&url, tok, callback);
    struct as_mail_vars v = {.name = name, .email = to, .url = pc_buf_cstr(&url),
                             .expires_s = expires_in};
    int rc = as_mail_enqueue(db, AS_MAIL_VERIFY_EMAIL, &v);
    pc_wipe(url.data, url.len);
    pc_buf_free(&url);
    return rc;
}

int as_verification_mail(struct pc_db *db, const struct as_user *u, const char *callback)
{
    char *tok = as_verify_token_mint(u->email, NULL, NULL, u->id, as_cfg.verify_expires_in);
    if (tok == NULL) {
        pc_log_error("email verification: could not mint a token");
        return -1;
    }
    int rc = mail_token(db, u->email, u->name, tok, callback, as_cfg.verify_expires_in);
    pc_wipe(tok, strlen(tok));
    free(tok);
    return rc;
}

/* ---- POST /send-verification-email ---- */

static bool reply_true(struct as_job *job)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"status\":true}");
    return as_reply(job, 200, &b);
}

bool as_route_send_verification_email(struct as_job *job, struct as_worker *w)
{
    char *addr, *callback;
    if (!as_v_email_body(job, "callbackURL", "INVALID_CALLBACK_URL", "Invalid callbackURL", &addr,
                         &callback))
        return true;

    struct as_session s = {0};
    struct as_user u = {0};
    bool ok = true, done = false;
    enum as_lookup lk = as_session_resolve(job, w, &s, &u);
    if (lk == AS_LOOKUP_UNAVAILABLE) {
        done = as_fail_db(job);
    } else if (lk == AS_LOOKUP_OK) {
        if (!pc_strieq(u.email, addr))
            done = as_error(job, 400, "EMAIL_MISMATCH", "Email mismatch");
        else if (u.email_verified)
            done = as_error(job, 400, "EMAIL_ALREADY_VERIFIED", "Email is already verified");
        else
            ok = as_verification_mail(&w->db, &u, callback) == 0;
    } else {
        /* No session: the same answer for every address, and no sooner for
         * one without an account (Better Auth's 500 ms floor) */
        as_answer_floor(job);
        const char *p[] = {addr};
        PGresult *res = pc_db_exec(&w->db,
                                   "SELECT " PC_BA_USER_COLS " FROM \"user\" u WHERE "
                                   "u.\"email\" = $1",
                                   1, p);
        ok = pc_db_ok(res);
        if (ok && PQntuples(res) == 1) {
            struct as_user found = {0};
            as_user_from_row(&found, res, 0, 0);
            if (!found.email_verified)
                ok = as_verification_mail(&w->db, &found, callback) == 0;
            as_user_free(&found);
        }
        if (res)
            PQclear(res);
    }
    as_session_free(&s);
    as_user_free(&u);
    free(addr);
    free(callback);
    if (done)
        return true;
    if (!ok)
        return as_fail_db(job);
    return reply_true(job);
}

/* ---- GET /verify-email ---- */

/* Better Auth's redirectOnError: callbackURL?error=CODE (appendQueryParams),
 * or 401. */
static bool verify_error(struct as_job *job, const char *callback, const char *code,
                         const char *msg)
{
    if (callback == NULL)
        return as_error(job, 401, code, msg);
    job->err_code = code;
    struct pc_buf u = {0};
    const char *hash = strchr(callback, '#');
    size_t n = hash ? (size_t)(hash - callback) : strlen(callback);
    pc_buf_append(&u, callback, n);
    const char *q = memchr(callback, '?', n);
    if (q == NULL)
        pc_buf_putc(&u, '?');
    else if (q + 1 < callback + n && callback[n - 1] != '&')
        pc_buf_putc(&u, '&');
    pc_buf_printf(&u, "error=%s", code);
    if (hash)
        pc_buf_puts(&u, hash);
    as_redirect(job, pc_buf_cstr(&u));
    pc_buf_free(&u);
    return true;
}

static bool verify_done(struct as_job *job, const char *callback, const struct as_user *u)
{
    if (callback)
        return as_redirect(job, callback);
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "status");
    pc_jw_bool(&jw, true);
    pc_jw_key(&jw, "user");
    if (u)
        as_jw_user(&jw, u);
    else
        pc_jw_null(&jw);
    pc_jw_obj_end(&jw);
    return as_reply(job, 200, &b);
}

/* The user by id (by_id) or email, into u. 1 found, 0 not, -1 PostgreSQL. */
static int load_user(struct as_worker *w, bool by_id, const char *key, struct as_user *u)
{
    const char *p[] = {key};
    PGresult *res = pc_db_exec(&w->db,
                               by_id ? "SELECT " PC_BA_USER_COLS " FROM \"user\" u WHERE u.\"id\" = $1"
                                     : "SELECT " PC_BA_USER_COLS " FROM \"user\" u "
                                       "WHERE u.\"email\" = $1",
                               1, p);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return -1;
    }
    int found = PQntuples(res) == 1;
    if (found)
        as_user_from_row(u, res, 0, 0);
    PQclear(res);
    return found;
}

/* UPDATE "user" SET email = $2, emailVerified = $3 ... RETURNING, into nu.
 * 1 done, 0 the address is taken, -1 PostgreSQL. */
static int set_email(struct as_worker *w, const char *uid, const char *email, bool verified,
                     struct as_user *nu)
{
    const char *p[] = {uid, email, verified ? "t" : "f"};
    PGresult *res = pc_db_exec(&w->db,
                               "WITH u AS (UPDATE \"user\" SET \"email\" = $2, "
                               "\"emailVerified\" = $3::boolean, \"updatedAt\" = " PC_BA_NOW_MS
                               " WHERE \"id\" = $1 AND NOT EXISTS (SELECT 1 FROM \"user\" o "
                               "WHERE o.\"email\" = $2 AND o.\"id\" <> $1) RETURNING *) "
                               "SELECT " PC_BA_USER_COLS " FROM u",
                               3, p);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return -1;
    }
    int done = PQntuples(res) == 1;
    if (done)
        as_user_from_row(nu, res, 0, 0);
    PQclear(res);
    if (done)
        as_user_cache_refresh(w, nu);
    return done;
}

/* Better Auth's change-email flows: the token carries updateTo. */
static bool verify_change(struct as_job *job, struct as_worker *w, const struct vclaims *c,
                          const char *callback)
{
    if (c->user_id == NULL)
        return verify_error(job, callback, code_invalid, "Invalid token");
    struct as_user bound = {0}, nu = {0};
    struct as_session s = {0};
    struct as_user su = {0};
    bool answered = false;
    int f = load_user(w, true, c->user_id, &bound);
    if (f < 0)
        return as_fail_db(job);
    if (f == 0)
        return verify_error(job, callback, "USER_NOT_FOUND", "User not found");
    char *cur = pc_xstrdup_lower(bound.email);
    enum as_lookup lk = AS_LOOKUP_NONE;
    if (strcmp(cur, c->email) != 0) {
        answered = verify_error(job, callback, code_invalid, "Invalid token");
        goto out;
    }
    lk = as_session_resolve(job, w, &s, &su);
    if (lk == AS_LOOKUP_UNAVAILABLE) {
        answered = as_fail_db(job);
        goto out;
    }
    if (lk == AS_LOOKUP_OK && strcmp(su.id, bound.id) != 0) {
        answered = verify_error(job, callback, "INVALID_USER", "Invalid user");
        goto out;
    }
    const char *rt = c->request_type ? c->request_type : "";
    if (strcmp(rt, "change-email-confirmation") == 0) {
        /* the old address confirmed: now verify the new one */
        char *tok = as_verify_token_mint(c->email, c->update_to, "change-email-verification", bound.id,
                               as_cfg.verify_expires_in);
        int rc = tok ? mail_token(&w->db, c->update_to, bound.name, tok, callback,
                                  as_cfg.verify_expires_in) : -1;
        if (tok) {
            pc_wipe(tok, strlen(tok));
            free(tok);
        }
        answered = rc != 0 ? as_fail_db(job) : callback ? as_redirect(job, callback)
                                                        : reply_true(job);
        goto out;
    }
    bool legacy = strcmp(rt, "change-email-verification") != 0;
    bool verified = legacy ? false : bound.email_verified;
    char *to = pc_xstrdup_lower(c->update_to);
    int rc = set_email(w, bound.id, to, verified, &nu);
    if (rc == 1 && legacy) {
        /* the legacy flow changes at once, then asks to verify the new address */
        char *tok = as_verify_token_mint(to, NULL, NULL, bound.id, 3600);
        rc = tok && mail_token(&w->db, to, nu.name, tok, callback, 3600) == 0 ? 1 : -1;
        if (tok) {
            pc_wipe(tok, strlen(tok));
            free(tok);
        }
    }
    free(to);
    if (rc < 0)
        answered = as_fail_db(job);
    else if (rc == 0)
        answered = as_error(job, 422, "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL",
                            "User already exists. Use another email.");
    else {
        if (lk == AS_LOOKUP_OK)
            as_session_set_cookie(job, s.token, true);
        answered = verify_done(job, callback, &nu);
    }
out:
    free(cur);
    as_user_free(&bound);
    as_user_free(&nu);
    as_user_free(&su);
    as_session_free(&s);
    return answered;
}

static bool verify_plain(struct as_job *job, struct as_worker *w, const struct vclaims *c,
                         const char *callback)
{
    struct as_user u = {0}, nu = {0}, su = {0};
    struct as_session s = {0}, ns = {0};
    int f = load_user(w, false, c->email, &u);
    if (f < 0)
        return as_fail_db(job);
    if (f == 0)
        return verify_error(job, callback, "USER_NOT_FOUND", "User not found");
    bool answered;
    if (c->user_id && strcmp(c->user_id, u.id) != 0) {
        answered = verify_error(job, callback, code_invalid, "Invalid token");
        goto out;
    }
    if (u.email_verified) {
        answered = verify_done(job, callback, NULL);
        goto out;
    }
    const char *p[] = {u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "WITH u AS (UPDATE \"user\" SET \"emailVerified\" = true, "
                               "\"updatedAt\" = " PC_BA_NOW_MS " WHERE \"id\" = $1 RETURNING *) "
                               "SELECT " PC_BA_USER_COLS " FROM u",
                               1, p);
    bool ok = pc_db_ok(res) && PQntuples(res) == 1;
    if (ok)
        as_user_from_row(&nu, res, 0, 0);
    if (res)
        PQclear(res);
    if (!ok) {
        answered = as_fail_db(job);
        goto out;
    }
    as_user_cache_refresh(w, &nu);
    pc_logr_info(job->request_id, "email verified for user %s", nu.id);
    if (as_cfg.auto_sign_in_verified) {
        enum as_lookup lk = as_session_resolve(job, w, &s, &su);
        if (lk == AS_LOOKUP_OK && strcmp(su.email, c->email) == 0) {
            as_session_set_cookie(job, s.token, true);
        } else {
            if (as_session_create(job, w, nu.id, true, &ns) != 0) {
                answered = as_fail_db(job);
                goto out;
            }
            as_session_cache_put(w, &ns, &nu);
            as_session_set_cookie(job, ns.token, true);
            snprintf(job->cred_id, sizeof job->cred_id, "%s", ns.id);
        }
    }
    snprintf(job->user_id, sizeof job->user_id, "%s", nu.id);
    answered = verify_done(job, callback, NULL);
out:
    as_user_free(&u);
    as_user_free(&nu);
    as_user_free(&su);
    as_session_free(&s);
    as_session_free(&ns);
    return answered;
}

bool as_route_verify_email(struct as_job *job, struct as_worker *w)
{
    char *tok = as_query_param(job, "token");
    char *callback = as_query_param(job, "callbackURL");
    bool answered;
    struct vclaims c = {0};
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
    const char *bad = token_check(tok, &c);
    if (bad)
        answered = verify_error(job, callback, bad, bad == code_expired ? "Token expired"
                                                                       : "Invalid token");
    else if (c.update_to)
        answered = verify_change(job, w, &c, callback);
    else
        answered = verify_plain(job, w, &c, callback);
out:
    vclaims_free(&c);
    if (tok) {
        pc_wipe(tok, strlen(tok));
        free(tok);
    }
    free(callback);
    return answered;
}
