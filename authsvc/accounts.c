/* Portcullis - MIT licence. See LICENSE.
 *
 * accounts.c: email/password accounts (better-auth-compat.md §3 and §5).
 *
 *   sign-up          validate -> email free? -> hash (pool) -> one transaction:
 *                    user, credential account (accountId = user id), session
 *   sign-in          validate -> user + credential row -> verify (pool) ->
 *                    session. An unknown email verifies against a dummy hash,
 *                    so it costs the same and answers the same 401.
 *   update-user      name/image; cached sessions are rewritten and announced
 *   change-password  verify current (pool) -> hash new (pool) -> update,
 *                    optionally revoking every session and issuing a new one
 *   OIDC sign-in     as_account_link_oidc (for oauth_flow.c): refresh a known
 *                    account, link a verified user by email, or a new user
 *                    and account in one transaction; then a session
 *
 * Every path that creates user, account and session rows is here, so one
 * file shows how Better Auth's tables are written; that is why it runs past
 * 700 lines.
 */
#include "authsvc.h"
#include "accounts.h"
#include "job.h"
#include "../lib/ba_schema.h"
#include "validate.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <hiredis/hiredis.h>

/* Costs one scrypt like a real hash; matches nothing a user can type. */
static const char dummy_hash[] =
    "00000000000000000000000000000000:"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000";

/* Timestamps are written with millisecond precision, as Better Auth writes them. */
#define NOW_MS "date_trunc('milliseconds', now())"

static const char *const busy_code = "PASSWORD_QUEUE_FULL";
static const char *const busy_msg = "Too many sign-ins in progress, try again";

static void rollback(struct pc_db *db)
{
    if (pc_db_simple(db, "ROLLBACK") != 0)
        pc_log_warn("postgres: ROLLBACK failed; the connection will be reset");
}

/* ---- validation ---- */

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* The email rule of Better Auth's schema (zod's email regex):
 *   ^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$ */
bool as_email_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 320 || s[0] == '.' || strstr(s, "..") != NULL)
        return false;
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL)
        return false;
    for (const char *p = s; p < at; p++)
        if (!is_alnum(*p) && strchr("_'+-.", *p) == NULL)
            return false;
    char last = at[-1];
    if (!is_alnum(last) && strchr("_+-", last) == NULL)
        return false;
    /* domain: labels [A-Za-z0-9][A-Za-z0-9-]* separated by dots, then a TLD of
     * two or more letters */
    const char *d = at + 1;
    const char *tld = strrchr(d, '.');
    if (tld == NULL || tld == d)
        return false;
    size_t tlen = strlen(tld + 1);
    if (tlen < 2)
        return false;
    for (const char *p = tld + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
    bool label_start = true;
    for (const char *p = d; p < tld; p++) {
        if (*p == '.') {
            if (label_start)
                return false;
            label_start = true;
            continue;
        }
        if (label_start ? !is_alnum(*p) : !(is_alnum(*p) || *p == '-'))
            return false;
        label_start = false;
    }
    return !label_start;
}





static bool v_bool(struct vcheck *v, yajl_val body, const char *key, bool def)
{
    yajl_val x = pc_json_get(body, key);
    if (x == NULL || YAJL_IS_NULL(x))
        return def;
    if (YAJL_IS_TRUE(x) || YAJL_IS_FALSE(x))
        return YAJL_IS_TRUE(x);
    if (YAJL_IS_STRING(x) && (strcmp(x->u.string, "true") == 0 || strcmp(x->u.string, "false") == 0))
        return x->u.string[0] == 't'; /* form bodies carry booleans as text */
    as_v_expected(v, key, "boolean", x);
    return def;
}

/* Password length in UTF-16 units, as Better Auth counts it. */
static bool password_length_ok(struct as_job *job, const char *pw)
{
    size_t n = pc_utf16_length(pw, strlen(pw));
    if ((int64_t)n < as_cfg.min_pw)
        return !as_error(job, 400, "PASSWORD_TOO_SHORT", "Password too short");
    if ((int64_t)n > as_cfg.max_pw)
        return !as_error(job, 400, "PASSWORD_TOO_LONG", "Password too long");
    return true;
}

static bool profile_lengths_ok(struct as_job *job, yajl_val name, yajl_val image)
{
    if (name && pc_utf16_length(name->u.string, strlen(name->u.string)) > AS_NAME_MAX)
        return !as_error(job, 400, "NAME_TOO_LONG", "Name is too long (at most 256 characters)");
    if (image && pc_utf16_length(image->u.string, strlen(image->u.string)) > AS_IMAGE_MAX)
        return !as_error(job, 400, "IMAGE_URL_TOO_LONG",
                         "Image URL is too long (at most 2048 characters)");
    return true;
}

static bool callback_ok(struct as_job *job, const yajl_val cb)
{
    if (cb && !as_redirect_allowed(cb->u.string))
        return !as_error(job, 403, "INVALID_CALLBACK_URL", "Invalid callbackURL");
    return true;
}

/* ---- shared state of the multi-step routes ---- */

struct acct_state {
    char *name, *email, *image, *callback;  /* owned */
    bool remember;
    struct as_user user;                    /* sign-in / change-password */
    struct as_session session;              /* change-password */
    char *new_pw;                           /* change-password, wiped */
    size_t new_pw_len;
    bool revoke_others;
};

static void acct_state_free(void *p)
{
    struct acct_state *st = p;
    if (st == NULL)
        return;
    free(st->name);
    free(st->email);
    free(st->image);
    free(st->callback);
    as_user_free(&st->user);
    as_session_free(&st->session);
    if (st->new_pw) {
        pc_wipe(st->new_pw, st->new_pw_len);
        free(st->new_pw);
    }
    free(st);
}

static struct acct_state *acct_state_new(struct as_job *job)
{
    struct acct_state *st = pc_xcalloc(1, sizeof *st);
    job->state = st;
    job->state_free = acct_state_free;
    return st;
}

/* {"redirect":…,"token":…,"url":…,"user":{…}} for sign-in; sign-up omits
 * redirect and url, as Better Auth does. */
static bool reply_with_session(struct as_job *job, bool with_redirect, const char *callback,
                               const struct as_session *s, const struct as_user *u)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    if (with_redirect) {
        pc_jw_key(&jw, "redirect");
        pc_jw_bool(&jw, callback != NULL);
    }
    pc_jw_key(&jw, "token");
    pc_jw_str(&jw, s ? s->token : NULL);
    if (with_redirect && callback) {
        pc_jw_key(&jw, "url");
        pc_jw_str(&jw, callback);
        as_add_header(job, "Location", callback);
    }
    pc_jw_key(&jw, "user");
    as_jw_user(&jw, u);
    pc_jw_obj_end(&jw);
    snprintf(job->user_id, sizeof job->user_id, "%s", u->id);
    if (s && s->id)
        snprintf(job->cred_id, sizeof job->cred_id, "%s", s->id);
    return as_reply(job, 200, &b);
}

/* ---- sign-up ---- */

static bool sign_up_insert(struct as_job *job, struct as_worker *w);
static bool sign_up_generic(struct as_job *job, struct as_worker *w);

bool as_route_sign_up(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    yajl_val name = as_v_str(&v, body, "name", true, false);
    yajl_val email = as_v_str(&v, body, "email", true, false);
    yajl_val pw = as_v_str(&v, body, "password", true, false);
    yajl_val image = as_v_str(&v, body, "image", false, true);
    yajl_val cb = as_v_str(&v, body, "callbackURL", false, false);
    bool remember = v_bool(&v, body, "rememberMe", true);
    if (email && !as_email_valid(email->u.string))
        as_v_add(&v, "email", "Invalid email address");
    if (as_v_failed(job, &v) || !password_length_ok(job, pw->u.string) ||
        !profile_lengths_ok(job, name, image) || !callback_ok(job, cb)) {
        yajl_tree_free(body);
        return true;
    }
    if (as_pwpool_full()) {
        yajl_tree_free(body);
        return as_error(job, 503, busy_code, busy_msg);
    }
    struct acct_state *st = acct_state_new(job);
    st->name = pc_xstrdup(name->u.string);
    st->email = pc_xstrdup_lower(email->u.string);
    st->image = image ? pc_xstrdup(image->u.string) : NULL;
    st->callback = cb ? pc_xstrdup(cb->u.string) : NULL;
    st->remember = remember;
    char *password = pc_xstrdup(pw->u.string);
    size_t pwlen = strlen(password);
    pc_wipe(pw->u.string, pwlen);
    yajl_tree_free(body);

    const char *params[] = {st->email};
    PGresult *res = pc_db_exec(&w->db, "SELECT 1 FROM \"user\" WHERE \"email\" = $1", 1, params);
    as_health_note_pg(res != NULL);
    bool exists = pc_db_ok(res) && PQntuples(res) > 0;
    bool db_ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    if (!db_ok || (exists && !as_cfg.require_verification)) {
        pc_wipe(password, pwlen);
        free(password);
        if (!db_ok)
            return as_fail_db(job);
        return as_error(job, 422, "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL",
                        "User already exists. Use another email.");
    }
    /* With REQUIRE_EMAIL_VERIFICATION a taken address is not told apart: the
     * same hash, the same answer (Better Auth's generic duplicate response) */
    if (as_pw_submit(job, AS_PW_HASH, password, pwlen,
                     exists ? sign_up_generic : sign_up_insert) != 0) {
        pc_wipe(password, pwlen);
        free(password);
        return as_error(job, 503, busy_code, busy_msg);
    }
    return false;
}

/* {"token":null,"user":{...}} for a user that was not created: a new id,
 * the request's fields, as Better Auth's buildGenericDuplicateResponse. */
static bool sign_up_generic(struct as_job *job, struct as_worker *w)
{
    struct acct_state *st = job->state;
    char uid[33];
    pc_random_alnum(uid, 32);
    int64_t now = pc_now_ms();
    struct as_user u = {.id = uid, .name = st->name, .email = st->email, .image = st->image,
                        .created_at = now, .updated_at = now, .two_factor_known = true};
    return reply_with_session(job, false, NULL, NULL, &u);
}

static bool sign_up_insert(struct as_job *job, struct as_worker *w)
{
    struct acct_state *st = job->state;
    if (job->pw.failed)
        return as_error(job, 500, "INTERNAL_SERVER_ERROR", "Password hashing failed");
    char uid[33], aid[33];
    pc_random_alnum(uid, 32);
    pc_random_alnum(aid, 32);
    if (pc_db_simple(&w->db, "BEGIN") != 0)
        return as_fail_db(job);
    const char *up[] = {uid, st->name, st->email, st->image};
    PGresult *res = pc_db_exec(&w->db,
                               "WITH u AS (INSERT INTO \"user\" (\"id\", \"name\", \"email\", "
                               "\"emailVerified\", \"image\", \"createdAt\", \"updatedAt\") "
                               "VALUES ($1, $2, $3, false, $4, " NOW_MS ", " NOW_MS ") "
                               "ON CONFLICT (\"email\") DO NOTHING RETURNING *) "
                               "SELECT " PC_BA_USER_COLS " FROM u",
                               4, up);
    if (!pc_db_ok(res) || PQntuples(res) != 1) {
        bool dup = pc_db_ok(res);
        if (res)
            PQclear(res);
        rollback(&w->db);
        if (dup)
            return as_error(job, 422, "USER_ALREADY_EXISTS_USE_ANOTHER_EMAIL",
                            "User already exists. Use another email.");
        return as_fail_db(job);
    }
    as_user_from_row(&st->user, res, 0, 0);
    PQclear(res);
    /* the twoFactor plugin's field: Better Auth writes its default, false */
    bool ok = !as_cfg.two_factor || as_two_factor_new_user(&w->db, &st->user) == 0;
    const char *ap[] = {aid, uid, job->pw.out};
    res = pc_db_exec(&w->db,
                     "INSERT INTO \"account\" (\"id\", \"accountId\", \"providerId\", \"userId\", "
                     "\"password\", \"createdAt\", \"updatedAt\") "
                     "VALUES ($1, $2, 'credential', $2, $3, " NOW_MS ", " NOW_MS ")",
                     3, ap);
    ok = ok && pc_db_ok(res);
    if (res)
        PQclear(res);
    /* the verification mail commits with the user (EMAIL_VERIFICATION_SEND_ON_SIGN_UP) */
    ok = ok && (!as_cfg.send_on_sign_up ||
                as_verification_mail(&w->db, &st->user, st->callback) == 0);
    /* REQUIRE_EMAIL_VERIFICATION: no session until the email is verified */
    bool session = !as_cfg.require_verification;
    struct as_session s = {0};
    ok = ok && (!session || as_session_create(job, w, uid, st->remember, &s) == 0);
    ok = ok && pc_db_simple(&w->db, "COMMIT") == 0;
    if (!ok) {
        rollback(&w->db);
        as_session_free(&s);
        return as_fail_db(job);
    }
    if (!session) {
        reply_with_session(job, false, NULL, NULL, &st->user);
        return true;
    }
    as_session_cache_put(w, &s, &st->user);
    as_session_set_cookie(job, s.token, st->remember);
    reply_with_session(job, false, NULL, &s, &st->user);
    as_session_free(&s);
    return true;
}

/* ---- sign-in ---- */

static bool sign_in_verified(struct as_job *job, struct as_worker *w);

bool as_route_sign_in(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    yajl_val email = as_v_str(&v, body, "email", true, false);
    yajl_val pw = as_v_str(&v, body, "password", true, false);
    yajl_val cb = as_v_str(&v, body, "callbackURL", false, false);
    bool remember = v_bool(&v, body, "rememberMe", true);
    bool ok = !as_v_failed(job, &v);
    if (ok && !as_email_valid(email->u.string))
        ok = !as_error(job, 400, "INVALID_EMAIL", "Invalid email");
    ok = ok && callback_ok(job, cb);
    if (ok && as_pwpool_full())
        ok = !as_error(job, 503, busy_code, busy_msg);
    if (!ok) {
        yajl_tree_free(body);
        return true;
    }
    struct acct_state *st = acct_state_new(job);
    st->email = pc_xstrdup_lower(email->u.string);
    st->callback = cb ? pc_xstrdup(cb->u.string) : NULL;
    st->remember = remember;
    char *password = pc_xstrdup(pw->u.string);
    size_t pwlen = strlen(password);
    pc_wipe(pw->u.string, pwlen);
    yajl_tree_free(body);

    const char *params[] = {st->email};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT " PC_BA_USER_COLS ", a.\"password\" FROM \"user\" u "
                               "LEFT JOIN \"account\" a ON a.\"userId\" = u.\"id\" AND "
                               "a.\"providerId\" = 'credential' AND a.\"accountId\" = u.\"id\" "
                               "WHERE u.\"email\" = $1 LIMIT 1",
                               1, params);
    as_health_note_pg(res != NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        pc_wipe(password, pwlen);
        free(password);
        return as_fail_db(job);
    }
    const char *stored = dummy_hash;
    if (PQntuples(res) == 1) {
        as_user_from_row(&st->user, res, 0, 0);
        if (!PQgetisnull(res, 0, PC_BA_USER_NCOLS))
            stored = PQgetvalue(res, 0, PC_BA_USER_NCOLS);
    }
    snprintf(job->pw.stored, sizeof job->pw.stored, "%s", stored);
    /* A user without a password row verifies against the dummy too: the
     * same cost, the same answer. */
    if (stored == dummy_hash)
        as_user_free(&st->user);
    PQclear(res);
    if (as_pw_submit(job, AS_PW_VERIFY, password, pwlen, sign_in_verified) != 0) {
        pc_wipe(password, pwlen);
        free(password);
        return as_error(job, 503, busy_code, busy_msg);
    }
    return false;
}

static bool sign_in_verified(struct as_job *job, struct as_worker *w)
{
    struct acct_state *st = job->state;
    if (!job->pw.match || st->user.id == NULL)
        return as_error(job, 401, "INVALID_EMAIL_OR_PASSWORD", "Invalid email or password");
    if (as_cfg.require_verification && !st->user.email_verified) {
        /* EMAIL_VERIFICATION_SEND_ON_SIGN_IN: a fresh link with the refusal */
        if (as_cfg.send_on_sign_in && as_verification_mail(&w->db, &st->user, st->callback) != 0)
            return as_fail_db(job);
        return as_error(job, 403, "EMAIL_NOT_VERIFIED", "Email not verified");
    }
    /* the twoFactor plugin: no session until the second factor */
    if (as_two_factor_gate(job, w, &st->user, st->remember) == AS_2FA_ANSWERED)
        return true;
    struct as_session s = {0};
    if (as_session_create(job, w, st->user.id, st->remember, &s) != 0)
        return as_fail_db(job);
    as_session_cache_put(w, &s, &st->user);
    as_session_set_cookie(job, s.token, st->remember);
    reply_with_session(job, true, st->callback, &s, &st->user);
    as_session_free(&s);
    return true;
}

/* ---- update-user ---- */

void as_user_cache_refresh(struct as_worker *w, const struct as_user *u)
{
    const char *params[] = {u->id};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT \"id\", \"token\", "
                               "(extract(epoch from \"expiresAt\")*1000)::bigint, "
                               "(extract(epoch from \"updatedAt\")*1000)::bigint "
                               "FROM \"session\" WHERE \"userId\" = $1 AND \"expiresAt\" > now()",
                               1, params);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        struct as_session s = {
            .id = PQgetvalue(res, i, 0),
            .token = PQgetvalue(res, i, 1),
            .user_id = u->id,
            .expires_at = pc_db_ms(PQgetvalue(res, i, 2)),
            .updated_at = pc_db_ms(PQgetvalue(res, i, 3)),
        };
        as_session_cache_put(w, &s, u);
    }
    /* The cache now holds the new values; a revoke message makes every
     * gateway drop its L1 copy and read them again. */
    char **toks = pc_xcalloc((size_t)PQntuples(res) + 1, sizeof *toks);
    for (int i = 0; i < PQntuples(res); i++)
        toks[i] = PQgetvalue(res, i, 1);
    for (int i = 0; i < PQntuples(res); i++) {
        char hash[PC_HASH_B64_LEN + 1];
        pc_cred_hash(toks[i], strlen(toks[i]), hash);
        const char *pub[] = {"PUBLISH", as_cfg.revocation_channel, hash};
        (void)pc_redis_ok(&w->redis, 3, pub);
    }
    free(toks);
    PQclear(res);
}

bool as_route_update_user(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return true;
    if (pc_json_get(body, "email") != NULL) {
        yajl_tree_free(body);
        return as_error(job, 400, "EMAIL_CAN_NOT_BE_UPDATED", "Email can not be updated");
    }
    struct vcheck v = {0};
    yajl_val name = as_v_str(&v, body, "name", false, false);
    yajl_val image = as_v_str(&v, body, "image", false, true);
    yajl_val image_raw = pc_json_get(body, "image");
    if (as_v_failed(job, &v) || !profile_lengths_ok(job, name, image)) {
        yajl_tree_free(body);
        return true;
    }
    if (name == NULL && image_raw == NULL) {
        yajl_tree_free(body);
        return as_error(job, 400, "NO_FIELDS_TO_UPDATE", "No fields to update");
    }
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        yajl_tree_free(body);
        return true;
    }
    const char *params[] = {u.id, name ? name->u.string : NULL, image ? image->u.string : NULL,
                            image_raw ? "t" : "f"};
    PGresult *res = pc_db_exec(&w->db,
                               "WITH u AS (UPDATE \"user\" SET "
                               "\"name\" = COALESCE($2, \"name\"), "
                               "\"image\" = CASE WHEN $4::boolean THEN $3 ELSE \"image\" END, "
                               "\"updatedAt\" = " NOW_MS " WHERE \"id\" = $1 RETURNING *) "
                               "SELECT " PC_BA_USER_COLS " FROM u",
                               4, params);
    yajl_tree_free(body);
    bool ok = pc_db_ok(res) && PQntuples(res) == 1;
    if (ok) {
        struct as_user nu = {0};
        as_user_from_row(&nu, res, 0, 0);
        as_user_cache_refresh(w, &nu);
        as_user_free(&nu);
        as_session_set_cookie(job, s.token, true);
    }
    if (res)
        PQclear(res);
    as_session_free(&s);
    as_user_free(&u);
    if (!ok)
        return as_fail_db(job);
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"status\":true}");
    return as_reply(job, 200, &b);
}

/* ---- change-password ---- */

static bool change_password_verified(struct as_job *job, struct as_worker *w);
static bool change_password_hashed(struct as_job *job, struct as_worker *w);

bool as_route_change_password(struct as_job *job, struct as_worker *w)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    yajl_val np = as_v_str(&v, body, "newPassword", true, false);
    yajl_val cur = as_v_str(&v, body, "currentPassword", true, false);
    bool revoke = v_bool(&v, body, "revokeOtherSessions", false);
    if (as_v_failed(job, &v) || !password_length_ok(job, np->u.string)) {
        yajl_tree_free(body);
        return true;
    }
    struct acct_state *st = acct_state_new(job);
    st->revoke_others = revoke;
    st->new_pw = pc_xstrdup(np->u.string);
    st->new_pw_len = strlen(st->new_pw);
    char *current = pc_xstrdup(cur->u.string);
    size_t curlen = strlen(current);
    pc_wipe(np->u.string, st->new_pw_len);
    pc_wipe(cur->u.string, curlen);
    yajl_tree_free(body);

    if (!as_require_session(job, w, &st->session, &st->user)) {
        pc_wipe(current, curlen);
        free(current);
        return true;
    }
    const char *params[] = {st->user.id};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT \"password\" FROM \"account\" WHERE \"userId\" = $1 AND "
                               "\"providerId\" = 'credential' AND \"password\" IS NOT NULL LIMIT 1",
                               1, params);
    bool db_ok = pc_db_ok(res);
    bool found = db_ok && PQntuples(res) == 1;
    if (found)
        snprintf(job->pw.stored, sizeof job->pw.stored, "%s", PQgetvalue(res, 0, 0));
    if (res)
        PQclear(res);
    if (!found) {
        pc_wipe(current, curlen);
        free(current);
        if (!db_ok)
            return as_fail_db(job);
        return as_error(job, 400, "CREDENTIAL_ACCOUNT_NOT_FOUND", "Credential account not found");
    }
    if (as_pw_submit(job, AS_PW_VERIFY, current, curlen, change_password_verified) != 0) {
        pc_wipe(current, curlen);
        free(current);
        return as_error(job, 503, busy_code, busy_msg);
    }
    return false;
}

static bool change_password_verified(struct as_job *job, struct as_worker *w)
{
    struct acct_state *st = job->state;
    if (!job->pw.match)
        return as_error(job, 400, "INVALID_PASSWORD", "Invalid password");
    char *np = st->new_pw;
    size_t n = st->new_pw_len;
    st->new_pw = NULL;
    st->new_pw_len = 0;
    if (as_pw_submit(job, AS_PW_HASH, np, n, change_password_hashed) != 0) {
        pc_wipe(np, n);
        free(np);
        return as_error(job, 503, busy_code, busy_msg);
    }
    return false;
}

static bool change_password_hashed(struct as_job *job, struct as_worker *w)
{
    struct acct_state *st = job->state;
    if (job->pw.failed)
        return as_error(job, 500, "INTERNAL_SERVER_ERROR", "Password hashing failed");
    const char *params[] = {st->user.id, job->pw.out};
    PGresult *res = pc_db_exec(&w->db,
                               "UPDATE \"account\" SET \"password\" = $2, \"updatedAt\" = " NOW_MS " "
                               "WHERE \"userId\" = $1 AND \"providerId\" = 'credential'",
                               2, params);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    if (!ok)
        return as_fail_db(job);
    struct as_session ns = {0};
    if (st->revoke_others) {
        if (as_revoke_user_sessions(w, st->user.id, NULL) != 0 ||
            as_session_create(job, w, st->user.id, true, &ns) != 0) {
            as_session_free(&ns);
            return as_fail_db(job);
        }
        as_session_cache_put(w, &ns, &st->user);
        as_session_set_cookie(job, ns.token, true);
    }
    reply_with_session(job, false, NULL, st->revoke_others ? &ns : NULL, &st->user);
    as_session_free(&ns);
    return true;
}

/* ---- OIDC sign-in's rows (oauth_flow.c) ---- */

#define TS_PARAM(n) "to_timestamp($" #n "::double precision / 1000)"

int as_account_insert_oidc(struct as_worker *w, const char *user_id,
                           const struct as_oidc_identity *id)
{
    char aid[33], aexp[32], rexp[32];
    pc_random_alnum(aid, 32);
    snprintf(aexp, sizeof aexp, "%lld", (long long)id->access_exp_ms);
    snprintf(rexp, sizeof rexp, "%lld", (long long)id->refresh_exp_ms);
    const char *qa[] = {aid, id->sub, id->provider_id, user_id, id->access_token,
                        id->refresh_token, id->id_token, id->access_exp_ms ? aexp : NULL,
                        id->refresh_exp_ms ? rexp : NULL, id->scope};
    PGresult *res = pc_db_exec(
        &w->db,
        "INSERT INTO \"account\" (\"id\", \"accountId\", \"providerId\", \"userId\", "
        "\"accessToken\", \"refreshToken\", \"idToken\", \"accessTokenExpiresAt\", "
        "\"refreshTokenExpiresAt\", \"scope\", \"createdAt\", \"updatedAt\") "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, " TS_PARAM(8) ", " TS_PARAM(9) ", $10, " NOW_MS
        ", " NOW_MS ") ON CONFLICT DO NOTHING",
        10, qa);
    as_health_note_pg(res != NULL);
    int rc = !pc_db_ok(res) ? -1 : strcmp(PQcmdTuples(res), "1") == 0 ? 1 : 0;
    if (res)
        PQclear(res);
    return rc;
}

enum as_link as_account_link_oidc(struct as_job *job, struct as_worker *w,
                                  const struct as_oidc_identity *id, struct as_user *u,
                                  struct as_session *s, bool *is_new)
{
    char aexp[32], rexp[32];
    snprintf(aexp, sizeof aexp, "%lld", (long long)id->access_exp_ms);
    snprintf(rexp, sizeof rexp, "%lld", (long long)id->refresh_exp_ms);
    const char *ae = id->access_exp_ms ? aexp : NULL, *re = id->refresh_exp_ms ? rexp : NULL;
    enum as_link rc = AS_LINK_DB_DOWN;
    PGresult *res = NULL;
    bool in_tx = false;
    *is_new = false;
    memset(u, 0, sizeof *u);
    memset(s, 0, sizeof *s);

    for (int attempt = 0; attempt < 2; attempt++) {
        const char *q1[] = {id->provider_id, id->sub, id->id_token, id->access_token,
                            id->refresh_token, ae, re};
        /* 1. the account exists: refresh its tokens (Better Auth's
         * updateAccountOnSignIn); scope is left alone */
        res = pc_db_exec(
            &w->db,
            "WITH a AS (UPDATE \"account\" SET \"idToken\" = $3, \"accessToken\" = $4, "
            "\"refreshToken\" = COALESCE($5, \"refreshToken\"), "
            "\"accessTokenExpiresAt\" = COALESCE(" TS_PARAM(6) ", \"accessTokenExpiresAt\"), "
            "\"refreshTokenExpiresAt\" = COALESCE(" TS_PARAM(7) ", \"refreshTokenExpiresAt\"), "
            "\"updatedAt\" = " NOW_MS " WHERE \"providerId\" = $1 AND \"accountId\" = $2 "
            "RETURNING \"userId\") "
            "SELECT " PC_BA_USER_COLS " FROM \"user\" u JOIN a ON a.\"userId\" = u.\"id\"",
            7, q1);
        as_health_note_pg(res != NULL);
        if (!pc_db_ok(res))
            goto fail;
        if (PQntuples(res) == 1) {
            as_user_from_row(u, res, 0, 0);
            PQclear(res);
            res = NULL;
            if (!u->email_verified && strcmp(u->email, id->email) == 0) {
                const char *q[] = {u->id};
                PGresult *up = pc_db_exec(&w->db,
                                          "UPDATE \"user\" SET \"emailVerified\" = true, "
                                          "\"updatedAt\" = " NOW_MS " WHERE \"id\" = $1",
                                          1, q);
                if (pc_db_ok(up))
                    u->email_verified = true;
                if (up)
                    PQclear(up);
            }
            if (as_session_create(job, w, u->id, true, s) != 0)
                goto fail;
            return AS_LINK_OK;
        }
        PQclear(res);

        const char *q2[] = {id->email};
        res = pc_db_exec(&w->db, "SELECT " PC_BA_USER_COLS " FROM \"user\" u WHERE u.\"email\" = $1",
                         1, q2);
        if (!pc_db_ok(res))
            goto fail;
        if (PQntuples(res) == 1) {
            /* 2. a user with this email: link, or refuse */
            as_user_from_row(u, res, 0, 0);
            PQclear(res);
            res = NULL;
            if (!u->email_verified) {
                pc_logr_info(job->request_id, "oauth: %s: account not linked: the local user's email is not "
                            "verified", id->provider_id);
                rc = AS_LINK_NOT_LINKED;
                goto fail;
            }
            if (as_account_insert_oidc(w, u->id, id) < 0 ||
                as_session_create(job, w, u->id, true, s) != 0)
                goto fail;
            return AS_LINK_OK;
        }
        PQclear(res);
        res = NULL;

        /* 3. a new user, its account and its session, together */
        char uid[33];
        pc_random_alnum(uid, 32);
        if (pc_db_simple(&w->db, "BEGIN") != 0)
            goto fail;
        in_tx = true;
        const char *qu[] = {uid, id->name ? id->name : "", id->email, id->picture};
        res = pc_db_exec(&w->db,
                         "WITH u AS (INSERT INTO \"user\" (\"id\", \"name\", \"email\", "
                         "\"emailVerified\", \"image\", \"createdAt\", \"updatedAt\") "
                         "VALUES ($1, $2, $3, true, $4, " NOW_MS ", " NOW_MS ") "
                         "ON CONFLICT (\"email\") DO NOTHING RETURNING *) "
                         "SELECT " PC_BA_USER_COLS " FROM u",
                         4, qu);
        if (!pc_db_ok(res) || PQntuples(res) != 1) {
            bool raced = pc_db_ok(res);
            if (!raced)
                goto fail;
            PQclear(res);
            res = NULL;
            rollback(&w->db);
            in_tx = false;
            continue;   /* the email appeared meanwhile: link instead */
        }
        as_user_from_row(u, res, 0, 0);
        PQclear(res);
        res = NULL;
        if (as_cfg.two_factor && as_two_factor_new_user(&w->db, u) != 0)
            goto fail;
        bool ok = as_account_insert_oidc(w, uid, id) == 1;
        ok = ok && as_session_create(job, w, uid, true, s) == 0;
        ok = ok && pc_db_simple(&w->db, "COMMIT") == 0;
        if (!ok)
            goto fail;
        in_tx = false;
        pc_logr_info(job->request_id, "oauth: %s: new user %s", id->provider_id, u->id);
        *is_new = true;
        return AS_LINK_OK;
    }
    rc = AS_LINK_INTERNAL;
fail:
    if (res)
        PQclear(res);
    if (in_tx)
        rollback(&w->db);
    as_user_free(u);
    as_session_free(s);
    return rc;
}
