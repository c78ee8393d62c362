/* Portcullis - MIT licence. See LICENSE.
 *
 * two_factor.c: Better Auth 1.7.25's twoFactor plugin (plugins/two-factor/
 * index, verify-two-factor, totp/, backup-codes/), on the same rows, so a
 * user who set up a second factor on either side signs in on either side.
 *
 *   enable        {password, method?, issuer?}: a new TOTP secret and ten
 *                 backup codes into "twoFactor" (verified false); 2FA turns
 *                 on when verify-totp first accepts a code
 *   get-totp-uri  {password}: the otpauth:// URI again
 *   verify-totp   {code, trustDevice?}; verify-backup-code {code,
 *                 disableSession?, trustDevice?}: with a session, checks the
 *                 code (and finishes enable); without one, the second step
 *                 of a sign-in, keyed by the two_factor cookie
 *   generate-backup-codes {password}: ten new codes replace the old ones
 *   disable       {password}: 2FA off, the row deleted, the trusted device
 *                 forgotten
 *
 * Sign-in (accounts.c calls as_two_factor_gate): a user with
 * twoFactorEnabled gets no session. Better Auth's after-hook deletes the
 * session sign-in made; authsvc makes none. The answer is
 * {"twoFactorRedirect":true,"twoFactorMethods":[...]} with a signed
 * two_factor cookie naming a verification row "2fa-<20 chars>" (value: the
 * user id) and its attempt counter "2fa-attempts-<that>" (5 tries, then 400
 * TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE and the challenge is gone). Failures
 * also count per account in "twoFactor"."failedVerificationCount": 10 in a
 * row lock the account's second factor for 15 minutes (429
 * ACCOUNT_TEMPORARILY_LOCKED). Per IP the plugin's rule is 3 requests per
 * 10 s on /two-factor/... (ratelimit.c).
 *
 * Secrets: the TOTP secret is 32 characters of [a-z0-9A-Z-_] used as its
 * UTF-8 bytes; it and the JSON array of backup codes are stored sealed with
 * Better Auth's symmetricEncrypt (lib/ba_jwks.h pc_seal). TOTP is RFC 6238,
 * SHA-1, 6 digits, 30 s, one period either side (lib/totp.h). Beyond Better
 * Auth, authsvc refuses a TOTP code for a period it already accepted one
 * for (a verification row with a deterministic id is the once-only gate);
 * a Better Auth server on the same database does not check that row.
 *
 * The trust_device cookie is "<HMAC>!trust-device-<32 chars>", the HMAC
 * base64url(HMAC-SHA256(secret, "<userId>!<identifier>")), with a
 * verification row of that identifier; each trusted sign-in replaces both.
 */
#include "authsvc.h"
#include "email_verify.h"
#include "job.h"
#include "two_factor.h"
#include "validate.h"
#include "../lib/ba_jwks.h"
#include "../lib/ba_schema.h"
#include "../lib/cookie.h"
#include "../lib/crypto.h"
#include "../lib/log.h"
#include "../lib/totp.h"

#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define TF_PERIOD 30            /* totpOptions.period */
#define TF_DIGITS 6             /* totpOptions.digits */
#define TF_WINDOW 1             /* @better-auth/utils verifyTOTP's default */
#define TF_SECRET_LEN 32        /* generateRandomString(32) */
#define TF_BACKUP_COUNT 10      /* backupCodeOptions.amount */
#define TF_BACKUP_LEN 10        /* backupCodeOptions.length, shown as 5-5 */
#define TF_ATTEMPTS 5           /* beginAttempt(5) */
#define TF_LOCK_AFTER "10"      /* accountLockout.maxFailedAttempts */
#define TF_LOCK_SECONDS "900"   /* accountLockout.durationSeconds */
#define TF_IDENT_MAX 96

#define NOW_MS PC_BA_NOW_MS
#define TS_PARAM(n) "to_timestamp($" #n "::double precision / 1000)"

/* generateRandomString's default alphabet (crypto/random.mjs) */
static const char alphabet64[] =
    "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

static const char *const invalid_cookie_msg = "Invalid two factor cookie";

static bool not_on(struct as_job *job)
{
    return as_error(job, 404, "NOT_FOUND", "Not found");
}

static bool bad_cookie(struct as_job *job)
{
    return as_error(job, 401, "INVALID_TWO_FACTOR_COOKIE", invalid_cookie_msg);
}

static void expire_cookie(struct as_job *job, const char *name)
{
    as_set_cookie(job, name, NULL, 0);
}

/* Sets signed cookie name = value.<sig> with max_age. */
static void set_signed(struct as_job *job, const char *name, const char *value, int64_t max_age)
{
    char *sv = pc_xmalloc(strlen(value) + PC_SIG_B64_LEN + 2);
    pc_sign_value(as_cfg.secret, value, sv);
    as_set_cookie(job, name, sv, max_age);
    pc_wipe(sv, strlen(sv));
    free(sv);
}

static bool dont_remember(const struct as_job *job)
{
    char v[16];
    return as_signed_cookie(job, as_cfg.cookie_dont_remember, v, sizeof v);
}

/* base64url(HMAC-SHA256(secret, "<uid>!<ident>")) into out (44 bytes). */
static void trust_mac(const char *uid, const char *ident, char out[PC_HASH_B64_LEN + 1])
{
    struct pc_buf m = {0};
    pc_buf_printf(&m, "%s!%s", uid, ident);
    unsigned char mac[PC_SHA256_LEN];
    pc_hmac_sha256(as_cfg.secret, strlen(as_cfg.secret), m.data, m.len, mac);
    pc_b64url_encode(mac, sizeof mac, out);
    pc_buf_free(&m);
}

/* ---- verification rows (Better Auth's internal adapter) ---- */

static int verif_insert(struct pc_db *db, const char *ident, const char *value, int64_t exp_ms)
{
    char id[33], exps[32];
    pc_random_alnum(id, 32);
    snprintf(exps, sizeof exps, "%lld", (long long)exp_ms);
    const char *p[] = {id, ident, value, exps};
    PGresult *res = pc_db_exec(db,
                               "INSERT INTO \"verification\" (\"id\", \"identifier\", \"value\", "
                               "\"expiresAt\", \"createdAt\", \"updatedAt\") VALUES ($1, $2, $3, "
                               TS_PARAM(4) ", " NOW_MS ", " NOW_MS ")",
                               4, p);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    return ok ? 0 : -1;
}

/* findVerificationValue: the newest row of ident, expired or not. 1 found
 * (*value heap, *exp_ms), 0 none, -1 database. */
static int verif_find(struct pc_db *db, const char *ident, char **value, int64_t *exp_ms)
{
    const char *p[] = {ident};
    PGresult *res = pc_db_exec(db,
                               "SELECT \"value\", " PC_BA_MS("\"expiresAt\"") " FROM "
                               "\"verification\" WHERE \"identifier\" = $1 "
                               "ORDER BY \"createdAt\" DESC LIMIT 1",
                               1, p);
    as_health_note_pg(res != NULL);
    int rc = pc_db_ok(res) ? (PQntuples(res) == 1) : -1;
    if (rc == 1) {
        *value = pc_xstrdup(PQgetvalue(res, 0, 0));
        if (exp_ms)
            *exp_ms = pc_db_ms(PQgetvalue(res, 0, 1));
    }
    if (res)
        PQclear(res);
    return rc;
}

/* consumeVerificationValue: deletes ident's rows; 1 with the newest one's
 * value (heap) and expiresAt (exp_ms, may be NULL) when it had not expired,
 * 0 none or expired, -1 database. */
static int verif_consume(struct pc_db *db, const char *ident, char **value, int64_t *exp_ms)
{
    const char *p[] = {ident};
    PGresult *res = pc_db_exec(db,
                               "WITH d AS (DELETE FROM \"verification\" WHERE \"identifier\" = $1 "
                               "RETURNING \"value\", \"expiresAt\", \"createdAt\") "
                               "SELECT \"value\", \"expiresAt\" >= now(), "
                               PC_BA_MS("\"expiresAt\"") " FROM d "
                               "ORDER BY \"createdAt\" DESC LIMIT 1",
                               1, p);
    as_health_note_pg(res != NULL);
    int rc = -1;
    if (pc_db_ok(res)) {
        rc = PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't';
        if (rc == 1)
            *value = pc_xstrdup(PQgetvalue(res, 0, 0));
        if (rc == 1 && exp_ms)
            *exp_ms = pc_db_ms(PQgetvalue(res, 0, 2));
    }
    if (res)
        PQclear(res);
    return rc;
}

static int verif_delete(struct pc_db *db, const char *ident)
{
    const char *p[] = {ident};
    PGresult *res = pc_db_exec(db, "DELETE FROM \"verification\" WHERE \"identifier\" = $1", 1, p);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    return ok ? 0 : -1;
}

/* ---- the "twoFactor" row and the user's flag ---- */

struct tf_row {
    char *id, *secret, *backup;     /* heap; secret and backup sealed */
    int verified;                   /* -1 null, 0, 1 */
    bool locked;                    /* lockedUntil in the future */
    bool lock_passed;               /* lockedUntil set and past */
};

static void tf_row_free(struct tf_row *r)
{
    free(r->id);
    free(r->secret);
    free(r->backup);
    memset(r, 0, sizeof *r);
}

/* 1 found, 0 none, -1 database. */
static int tf_row_load(struct pc_db *db, const char *uid, struct tf_row *r)
{
    const char *p[] = {uid};
    PGresult *res = pc_db_exec(db,
                               "SELECT \"id\", \"secret\", \"backupCodes\", \"verified\", "
                               "\"lockedUntil\" > now(), \"lockedUntil\" <= now() "
                               "FROM \"twoFactor\" WHERE \"userId\" = $1 LIMIT 1",
                               1, p);
    as_health_note_pg(res != NULL);
    int rc = pc_db_ok(res) ? (PQntuples(res) == 1) : -1;
    if (rc == 1) {
        r->id = pc_xstrdup(PQgetvalue(res, 0, 0));
        r->secret = pc_xstrdup(PQgetvalue(res, 0, 1));
        r->backup = pc_xstrdup(PQgetvalue(res, 0, 2));
        r->verified = PQgetisnull(res, 0, 3) ? -1 : PQgetvalue(res, 0, 3)[0] == 't';
        r->locked = PQgetvalue(res, 0, 4)[0] == 't';
        r->lock_passed = PQgetvalue(res, 0, 5)[0] == 't';
    }
    if (res)
        PQclear(res);
    return rc;
}

static int exec_params(struct pc_db *db, const char *sql, int n, const char *const *p)
{
    PGresult *res = pc_db_exec(db, sql, n, p);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    return ok ? 0 : -1;
}

/* "user"."twoFactorEnabled" (null is false): 0/1, or -1 database. */
static int user_enabled(struct pc_db *db, const char *uid)
{
    const char *p[] = {uid};
    PGresult *res = pc_db_exec(db,
                               "SELECT COALESCE(\"twoFactorEnabled\", false) FROM \"user\" "
                               "WHERE \"id\" = $1",
                               1, p);
    as_health_note_pg(res != NULL);
    int rc = pc_db_ok(res) ? (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't') : -1;
    if (res)
        PQclear(res);
    return rc;
}

static int set_user_enabled(struct pc_db *db, const char *uid, bool on)
{
    const char *p[] = {uid, on ? "t" : "f"};
    return exec_params(db,
                       "UPDATE \"user\" SET \"twoFactorEnabled\" = $2::boolean, "
                       "\"updatedAt\" = " NOW_MS " WHERE \"id\" = $1",
                       2, p);
}

/* The user's JSON with the plugin's field (parseUserOutput), enabled as
 * given. */
static void jw_user(struct pc_jw *jw, const struct as_user *u, bool enabled)
{
    struct as_user v = *u;
    v.two_factor_known = true;
    v.two_factor = enabled;
    as_jw_user(jw, &v);
}

/* ---- secrets and backup codes ---- */

/* The TOTP key of a sealed secret: its text's bytes, or for an imported
 * "base32:<secret>" the decoded bytes (totp/index.mjs decryptTOTPSecret).
 * Heap (*n set; wipe it), NULL when it does not open. */
static unsigned char *open_secret(const char *sealed, size_t *n)
{
    size_t len = 0;
    char *plain = pc_unseal(&as_cfg.secrets, sealed, &len);
    if (plain == NULL)
        return NULL;
    if (strncmp(plain, "base32:", 7) != 0) {
        *n = len;
        return (unsigned char *)plain;
    }
    for (char *p = plain + 7; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    unsigned char *key = pc_base32_decode(plain + 7, n);
    pc_wipe(plain, len);
    free(plain);
    return key;
}

/* JSON.stringify of codes[0..n), sealed. Heap. */
static char *seal_codes(char *const *codes, size_t n)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_arr_begin(&jw);
    for (size_t i = 0; i < n; i++)
        pc_jw_str(&jw, codes[i]);
    pc_jw_arr_end(&jw);
    char *sealed = pc_seal(&as_cfg.secrets, b.data, b.len);
    pc_wipe(b.data, b.len);
    pc_buf_free(&b);
    return sealed;
}

/* generateBackupCodes: ten "xxxxx-xxxxx" of [a-z0-9A-Z] into codes (each
 * 12 bytes), and their sealed JSON (heap). */
static char *new_backup_codes(char codes[TF_BACKUP_COUNT][TF_BACKUP_LEN + 2])
{
    char *ptrs[TF_BACKUP_COUNT];
    for (int i = 0; i < TF_BACKUP_COUNT; i++) {
        char raw[TF_BACKUP_LEN + 1];
        pc_random_alnum(raw, TF_BACKUP_LEN);
        snprintf(codes[i], TF_BACKUP_LEN + 2, "%.5s-%s", raw, raw + 5);
        pc_wipe(raw, sizeof raw);
        ptrs[i] = codes[i];
    }
    return seal_codes(ptrs, TF_BACKUP_COUNT);
}

static void jw_codes(struct pc_jw *jw, char codes[TF_BACKUP_COUNT][TF_BACKUP_LEN + 2])
{
    pc_jw_key(jw, "backupCodes");
    pc_jw_arr_begin(jw);
    for (int i = 0; i < TF_BACKUP_COUNT; i++)
        pc_jw_str(jw, codes[i]);
    pc_jw_arr_end(jw);
}

static const char *issuer(void)
{
    return as_cfg.two_factor_issuer[0] ? as_cfg.two_factor_issuer : as_cfg.mail_app_name;
}

/* ---- the session a route replaces (enable, disable, first verify) ---- */

/* A new session for u (Better Auth's createSession + setSessionCookie), the
 * old one deleted and revoked; its token into new_token (may be NULL). 0, or
 * -1 database. */
static int replace_session(struct as_job *job, struct as_worker *w, const struct as_session *old,
                           const struct as_user *u, char new_token[33])
{
    struct as_session ns = {0};
    if (as_session_create(job, w, u->id, true, &ns) != 0)
        return -1;
    as_session_cache_put(w, &ns, u);
    as_session_set_cookie(job, ns.token, !dont_remember(job));
    if (new_token)
        snprintf(new_token, 33, "%s", ns.token);
    as_session_free(&ns);
    const char *p[] = {old->token};
    if (exec_params(&w->db, "DELETE FROM \"session\" WHERE \"token\" = $1", 1, p) != 0)
        return -1;
    char *t = old->token;
    as_revoke_tokens(w, &t, 1);
    return 0;
}

/* ---- state of the routes ---- */

struct tf_state {
    struct as_session s;
    struct as_user u;
    bool enabled;                   /* u's twoFactorEnabled */
    bool sign_in;                   /* no session: the two_factor cookie's */
    char ident[TF_IDENT_MAX];       /* the two_factor cookie's identifier */
    char key[TF_IDENT_MAX];         /* verifyTwoFactor's key: ident, or "<uid>!<session id>" */
    int64_t ident_exp;              /* its row's expiresAt, ms */
    int attempts;                   /* the challenge's count before this try */
    char *method, *issuer;          /* enable */
    as_handler after_password;      /* password_route: what runs once it matched */
    struct tf_row row;
};

static void tf_state_free(void *p)
{
    struct tf_state *st = p;
    if (st == NULL)
        return;
    as_session_free(&st->s);
    as_user_free(&st->u);
    free(st->method);
    free(st->issuer);
    tf_row_free(&st->row);
    pc_wipe(st->ident, sizeof st->ident);
    free(st);
}

static struct tf_state *tf_state_new(struct as_job *job)
{
    struct tf_state *st = pc_xcalloc(1, sizeof *st);
    job->state = st;
    job->state_free = tf_state_free;
    return st;
}

/* The signed-in user (session required) with the flag; false: answered. */
static bool session_user(struct as_job *job, struct as_worker *w, struct tf_state *st)
{
    if (!as_require_session(job, w, &st->s, &st->u))
        return false;
    int en = user_enabled(&w->db, st->u.id);
    if (en < 0)
        return !as_fail_db(job);
    st->enabled = en == 1;
    return true;
}

/* Takes the required string `password` of body (heap, wiped from the tree). */
static char *take_password(struct vcheck *v, yajl_val body)
{
    yajl_val pw = as_v_str(v, body, "password", true, false);
    if (pw == NULL)
        return NULL;
    char *out = pc_xstrdup(pw->u.string);
    pc_wipe(pw->u.string, strlen(pw->u.string));
    return out;
}

static void drop_password(char *pw)
{
    if (pw) {
        pc_wipe(pw, strlen(pw));
        free(pw);
    }
}

static bool invalid_password(struct as_job *job)
{
    return as_error(job, 400, "INVALID_PASSWORD", "Invalid password");
}

/* ---- the {password} routes ---- */

/* What a {password} route needs before the password is checked. */
enum tf_need {
    NEED_SESSION = 0,   /* disable */
    NEED_ENABLE,        /* enable: the session; {method?, issuer?} too */
    NEED_ROW,           /* get-totp-uri: the row (400 TOTP_NOT_ENABLED) */
    NEED_ENABLED,       /* generate-backup-codes: 2FA on and the row */
};

/* The pool's answer for password_route: a mismatch is 400, else the route's
 * step. */
static bool password_checked(struct as_job *job, struct as_worker *w)
{
    struct tf_state *st = job->state;
    return job->pw.match ? st->after_password(job, w) : invalid_password(job);
}

/* The routes whose body is {password}: the session, what need asks for,
 * then the password goes to the pool and next runs once it matched. */
static bool password_route(struct as_job *job, struct as_worker *w, as_handler next,
                           enum tf_need need)
{
    if (!as_cfg.two_factor)
        return not_on(job);
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    char *pw = take_password(&v, body);
    yajl_val method = NULL, iss = NULL;
    if (need == NEED_ENABLE) {
        method = as_v_str(&v, body, "method", false, false);
        iss = as_v_str(&v, body, "issuer", false, false);
        if (method && strcmp(method->u.string, "otp") != 0 &&
            strcmp(method->u.string, "totp") != 0)
            as_v_add(&v, "method", "Invalid option: expected one of \"otp\"|\"totp\"");
    }
    struct tf_state *st = NULL;
    if (!as_v_failed(job, &v)) {
        st = tf_state_new(job);
        st->method = pc_xstrdup(method ? method->u.string : "totp");
        st->issuer = iss && iss->u.string[0] ? pc_xstrdup(iss->u.string) : NULL;
    }
    yajl_tree_free(body);
    if (st == NULL) {
        drop_password(pw);
        return true;
    }
    if (!session_user(job, w, st)) {
        drop_password(pw);
        return true;
    }
    const char *missing = need == NEED_ENABLED ? "TWO_FACTOR_NOT_ENABLED" : "TOTP_NOT_ENABLED";
    const char *missing_msg = need == NEED_ENABLED ? "Two factor isn't enabled" : "TOTP not enabled";
    if (need == NEED_ENABLED && !st->enabled) {
        drop_password(pw);
        return as_error(job, 400, missing, missing_msg);
    }
    int have = need <= NEED_ENABLE ? 1 : tf_row_load(&w->db, st->u.id, &st->row);
    if (have <= 0) {
        drop_password(pw);
        return have < 0 ? as_fail_db(job) : as_error(job, 400, missing, missing_msg);
    }
    if (pw[0] == '\0') {
        drop_password(pw);
        return invalid_password(job);
    }
    st->after_password = next;
    return !as_check_password(job, w, st->u.id, pw, password_checked, "INVALID_PASSWORD",
                              "Invalid password");
}

/* ---- POST /two-factor/enable ---- */

static bool enable_checked(struct as_job *job, struct as_worker *w)
{
    struct tf_state *st = job->state;
    if (strcmp(st->method, "otp") == 0) {
        /* the mailed code needs no setup: 2FA is on at once, with a new session */
        if (!as_cfg.two_factor_otp)
            return as_error(job, 400, "OTP_NOT_CONFIGURED", "OTP is not available");
        if (set_user_enabled(&w->db, st->u.id, true) != 0 ||
            replace_session(job, w, &st->s, &st->u, NULL) != 0)
            return as_fail_db(job);
        return as_reply_json(job, 200, "{\"method\":\"otp\"}");
    }
    struct tf_row old = {0};
    int have = tf_row_load(&w->db, st->u.id, &old);
    if (have < 0)
        return as_fail_db(job);
    if (have && old.verified != 0) {
        tf_row_free(&old);
        return as_error(job, 400, "TOTP_ALREADY_ENABLED", "TOTP is already enabled");
    }
    char codes[TF_BACKUP_COUNT][TF_BACKUP_LEN + 2];
    char *sealed_codes = new_backup_codes(codes);
    char secret[TF_SECRET_LEN + 1];
    pc_random_string(secret, TF_SECRET_LEN, alphabet64);
    char *sealed_secret = pc_seal(&as_cfg.secrets, secret, TF_SECRET_LEN);
    int rc;
    if (have) {
        const char *p[] = {old.id, sealed_secret, sealed_codes};
        rc = exec_params(&w->db,
                         "UPDATE \"twoFactor\" SET \"secret\" = $2, \"backupCodes\" = $3, "
                         "\"verified\" = false WHERE \"id\" = $1",
                         3, p);
    } else {
        char id[33];
        pc_random_alnum(id, 32);
        const char *p[] = {id, sealed_secret, sealed_codes, st->u.id};
        rc = exec_params(&w->db,
                         "INSERT INTO \"twoFactor\" (\"id\", \"secret\", \"backupCodes\", "
                         "\"userId\", \"verified\", \"failedVerificationCount\") "
                         "VALUES ($1, $2, $3, $4, false, 0)",
                         4, p);
    }
    tf_row_free(&old);
    free(sealed_secret);
    free(sealed_codes);
    if (rc != 0) {
        pc_wipe(secret, sizeof secret);
        pc_wipe(codes, sizeof codes);
        return as_fail_db(job);
    }
    char *uri = pc_totp_uri(st->issuer ? st->issuer : issuer(), st->u.email, secret,
                            TF_SECRET_LEN, TF_DIGITS, TF_PERIOD);
    pc_wipe(secret, sizeof secret);
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "method");
    pc_jw_str(&jw, "totp");
    pc_jw_key(&jw, "totpURI");
    pc_jw_str(&jw, uri);
    jw_codes(&jw, codes);
    pc_jw_obj_end(&jw);
    pc_wipe(codes, sizeof codes);
    pc_wipe(uri, strlen(uri));
    free(uri);
    return as_reply(job, 200, &b);
}

bool as_route_2fa_enable(struct as_job *job, struct as_worker *w)
{
    return password_route(job, w, enable_checked, NEED_ENABLE);
}

/* ---- POST /two-factor/get-totp-uri ---- */

static bool totp_uri_checked(struct as_job *job, struct as_worker *w)
{
    struct tf_state *st = job->state;
    size_t n = 0;
    unsigned char *key = open_secret(st->row.secret, &n);
    if (key == NULL)
        return as_error(job, 500, "INTERNAL_SERVER_ERROR", "The TOTP secret does not open");
    /* Better Auth's get-totp-uri reads totpOptions.issuer, never the
     * plugin's issuer: the app name, whatever enable's URI said */
    char *uri = pc_totp_uri(as_cfg.mail_app_name, st->u.email, key, n, TF_DIGITS, TF_PERIOD);
    pc_wipe(key, n);
    free(key);
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "totpURI");
    pc_jw_str(&jw, uri);
    pc_jw_obj_end(&jw);
    pc_wipe(uri, strlen(uri));
    free(uri);
    return as_reply(job, 200, &b);
}

bool as_route_2fa_get_totp_uri(struct as_job *job, struct as_worker *w)
{
    return password_route(job, w, totp_uri_checked, NEED_ROW);
}

/* ---- POST /two-factor/generate-backup-codes ---- */

static bool backup_codes_checked(struct as_job *job, struct as_worker *w)
{
    struct tf_state *st = job->state;
    char codes[TF_BACKUP_COUNT][TF_BACKUP_LEN + 2];
    char *sealed = new_backup_codes(codes);
    const char *p[] = {st->row.id, sealed};
    int rc = exec_params(&w->db, "UPDATE \"twoFactor\" SET \"backupCodes\" = $2 WHERE \"id\" = $1",
                         2, p);
    free(sealed);
    if (rc != 0) {
        pc_wipe(codes, sizeof codes);
        return as_fail_db(job);
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "status");
    pc_jw_bool(&jw, true);
    jw_codes(&jw, codes);
    pc_jw_obj_end(&jw);
    pc_wipe(codes, sizeof codes);
    return as_reply(job, 200, &b);
}

bool as_route_2fa_generate_backup_codes(struct as_job *job, struct as_worker *w)
{
    return password_route(job, w, backup_codes_checked, NEED_ENABLED);
}

/* ---- POST /two-factor/disable ---- */

static bool disable_checked(struct as_job *job, struct as_worker *w)
{
    struct tf_state *st = job->state;
    const char *p[] = {st->u.id};
    if (set_user_enabled(&w->db, st->u.id, false) != 0 ||
        exec_params(&w->db, "DELETE FROM \"twoFactor\" WHERE \"userId\" = $1", 1, p) != 0 ||
        replace_session(job, w, &st->s, &st->u, NULL) != 0)
        return as_fail_db(job);
    char tv[256];
    if (as_signed_cookie(job, as_cfg.cookie_trust_device, tv, sizeof tv)) {
        char *bang = strchr(tv, '!');
        if (bang && bang[1]) {
            char *end = strchr(bang + 1, '!');
            if (end)
                *end = '\0';
            if (verif_delete(&w->db, bang + 1) != 0)
                return as_fail_db(job);
        }
        expire_cookie(job, as_cfg.cookie_trust_device);
    }
    return as_reply_json(job, 200, "{\"status\":true}");
}

bool as_route_2fa_disable(struct as_job *job, struct as_worker *w)
{
    return password_route(job, w, disable_checked, NEED_SESSION);
}

/* ---- the verify routes: who is verifying (verify-two-factor.mjs) ---- */

/* With a session: that user. Without: the two_factor cookie's challenge.
 * False when answered. */
static bool verifier(struct as_job *job, struct as_worker *w, struct tf_state *st)
{
    enum as_lookup lk = as_session_resolve(job, w, &st->s, &st->u);
    if (lk == AS_LOOKUP_UNAVAILABLE)
        return !as_fail_db(job);
    if (lk == AS_LOOKUP_OK) {
        int en = user_enabled(&w->db, st->u.id);
        if (en < 0)
            return !as_fail_db(job);
        st->enabled = en == 1;
        snprintf(st->key, sizeof st->key, "%s!%s", st->u.id, st->s.id);
        return true;
    }
    st->sign_in = true;
    if (!as_signed_cookie(job, as_cfg.cookie_two_factor, st->ident, sizeof st->ident))
        return !bad_cookie(job);
    char *uid = NULL;
    int rc = verif_find(&w->db, st->ident, &uid, &st->ident_exp);
    if (rc <= 0)
        return rc < 0 ? !as_fail_db(job) : !bad_cookie(job);
    const char *p[] = {uid};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT " PC_BA_USER_COLS ", COALESCE(u.\"twoFactorEnabled\", false) "
                               "FROM \"user\" u WHERE u.\"id\" = $1",
                               1, p);
    free(uid);
    bool ok = pc_db_ok(res), found = ok && PQntuples(res) == 1;
    if (found) {
        as_user_from_row(&st->u, res, 0, 0);
        st->enabled = PQgetvalue(res, 0, PC_BA_USER_NCOLS)[0] == 't';
    }
    if (res)
        PQclear(res);
    if (!found)
        return ok ? !bad_cookie(job) : !as_fail_db(job);
    snprintf(job->user_id, sizeof job->user_id, "%s", st->u.id);
    snprintf(st->key, sizeof st->key, "%s", st->ident);
    return true;
}

static void attempts_ident(const struct tf_state *st, char *out, size_t cap)
{
    snprintf(out, cap, "2fa-attempts-%s", st->ident);
}

/* beginAttempt: takes the challenge's counter; after TF_ATTEMPTS failures
 * the challenge ends. False when answered. */
static bool attempt_begin(struct as_job *job, struct as_worker *w, struct tf_state *st)
{
    char ai[TF_IDENT_MAX + 16];
    attempts_ident(st, ai, sizeof ai);
    char *val = NULL;
    int rc = verif_consume(&w->db, ai, &val, NULL);
    if (rc <= 0)
        return rc < 0 ? !as_fail_db(job) : !bad_cookie(job);
    char *end = NULL;
    long n = strtol(val, &end, 10);
    st->attempts = (val[0] >= '0' && val[0] <= '9' && *end == '\0' && n >= 0 && n < 1000000)
                       ? (int)n
                       : TF_ATTEMPTS;
    free(val);
    if (st->attempts < TF_ATTEMPTS)
        return true;
    char *uid = NULL;
    rc = verif_consume(&w->db, st->ident, &uid, NULL);
    free(uid);
    expire_cookie(job, as_cfg.cookie_two_factor);
    if (rc < 0)
        return !as_error(job, 500, "FAILED_TO_INVALIDATE_TWO_FACTOR_CHALLENGE",
                         "Failed to invalidate two-factor challenge");
    return !as_error(job, 400, "TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE",
                     "Too many attempts. Please request a new code.");
}

/* rearm: the counter back, at count (best effort, as Better Auth's). */
static void attempt_rearm(struct as_worker *w, const struct tf_state *st, int count)
{
    char ai[TF_IDENT_MAX + 16], cs[16];
    attempts_ident(st, ai, sizeof ai);
    snprintf(cs, sizeof cs, "%d", count);
    if (verif_insert(&w->db, ai, cs, st->ident_exp) != 0)
        pc_log_warn("two-factor: the attempt counter was not written back");
}

/* assertTwoFactorNotLocked (sign-in only). False when answered. */
static bool not_locked(struct as_job *job, struct as_worker *w, const struct tf_state *st)
{
    if (st->row.locked)
        return !as_error(job, 429, "ACCOUNT_TEMPORARILY_LOCKED",
                         "Too many failed verification attempts. Your account is temporarily "
                         "locked. Please try again later.");
    if (st->row.lock_passed) {
        const char *p[] = {st->row.id};
        if (exec_params(&w->db,
                        "UPDATE \"twoFactor\" SET \"failedVerificationCount\" = 0, "
                        "\"lockedUntil\" = NULL WHERE \"id\" = $1 AND \"lockedUntil\" <= now()",
                        1, p) != 0)
            return !as_fail_db(job);
    }
    return true;
}

/* A failed code: the challenge's counter up, and (sign-in) the account's
 * (recordTwoFactorFailure: TF_LOCK_AFTER in a row lock it). */
static void account_failure(struct as_worker *w, const struct tf_state *st)
{
    const char *p[] = {st->row.id};
    if (exec_params(&w->db,
                    "UPDATE \"twoFactor\" SET \"failedVerificationCount\" = "
                    "COALESCE(\"failedVerificationCount\", 0) + 1, \"lockedUntil\" = CASE WHEN "
                    "COALESCE(\"failedVerificationCount\", 0) + 1 >= " TF_LOCK_AFTER
                    " THEN " NOW_MS " + interval '" TF_LOCK_SECONDS " seconds' "
                    "ELSE \"lockedUntil\" END WHERE \"id\" = $1",
                    1, p) != 0)
        pc_log_warn("two-factor: a failed attempt was not counted");
}

/* A failed code at sign-in: the challenge's counter and the account's. */
static void record_failure(struct as_worker *w, const struct tf_state *st)
{
    if (!st->sign_in)
        return;
    attempt_rearm(w, st, st->attempts + 1);
    account_failure(w, st);
}

/* resetTwoFactorFailures (sign-in only). */
static int reset_failures(struct as_worker *w, const struct tf_state *st)
{
    if (!st->sign_in)
        return 0;
    const char *p[] = {st->row.id};
    return exec_params(&w->db,
                       "UPDATE \"twoFactor\" SET \"failedVerificationCount\" = 0, "
                       "\"lockedUntil\" = NULL WHERE \"id\" = $1",
                       1, p);
}

/* A new trusted device for uid: its row and its cookie. 0 or -1. */
static int trust_device(struct as_job *job, struct as_worker *w, const char *uid)
{
    char ident[14 + TF_SECRET_LEN + 1] = "trust-device-";
    pc_random_string(ident + 13, TF_SECRET_LEN, alphabet64);
    char mac[PC_HASH_B64_LEN + 1];
    trust_mac(uid, ident, mac);
    if (verif_insert(&w->db, ident, uid, pc_now_ms() + 1000 * as_cfg.trust_device_age) != 0)
        return -1;
    struct pc_buf v = {0};
    pc_buf_printf(&v, "%s!%s", mac, ident);
    set_signed(job, as_cfg.cookie_trust_device, v.data, as_cfg.trust_device_age);
    pc_wipe(v.data, v.len);
    pc_buf_free(&v);
    return 0;
}

/* valid(): the answer after an accepted code. Sign-in: the challenge is
 * consumed and the session made (trustDevice: and the device trusted).
 * With a session: that session's token and user. */
static bool verified(struct as_job *job, struct as_worker *w, struct tf_state *st, bool trust)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    if (!st->sign_in) {
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "token");
        pc_jw_str(&jw, st->s.token);
        pc_jw_key(&jw, "user");
        jw_user(&jw, &st->u, st->enabled);
        pc_jw_obj_end(&jw);
        return as_reply(job, 200, &b);
    }
    char *uid = NULL;
    int rc = verif_consume(&w->db, st->ident, &uid, NULL);
    bool mine = rc == 1 && strcmp(uid, st->u.id) == 0;
    free(uid);
    if (rc < 0)
        return as_fail_db(job);
    if (!mine) {
        expire_cookie(job, as_cfg.cookie_two_factor);
        return bad_cookie(job);
    }
    bool remember = !dont_remember(job);
    struct as_session s = {0};
    if (as_session_create(job, w, st->u.id, remember, &s) != 0)
        return as_fail_db(job);
    as_session_cache_put(w, &s, &st->u);
    as_session_set_cookie(job, s.token, remember);
    expire_cookie(job, as_cfg.cookie_two_factor);
    if (trust) {
        if (trust_device(job, w, st->u.id) != 0) {
            as_session_free(&s);
            return as_fail_db(job);
        }
        expire_cookie(job, as_cfg.cookie_dont_remember);
    }
    snprintf(job->cred_id, sizeof job->cred_id, "%s", s.id);
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "token");
    pc_jw_str(&jw, s.token);
    pc_jw_key(&jw, "user");
    jw_user(&jw, &st->u, st->enabled);
    pc_jw_obj_end(&jw);
    as_session_free(&s);
    return as_reply(job, 200, &b);
}

/* An optional boolean body field (zod's z.boolean().optional()). */
static bool opt_bool(struct vcheck *v, yajl_val body, const char *key)
{
    yajl_val x = pc_json_get(body, key);
    if (x == NULL)
        return false;
    if (!YAJL_IS_TRUE(x) && !YAJL_IS_FALSE(x)) {
        as_v_expected(v, key, "boolean", x);
        return false;
    }
    return YAJL_IS_TRUE(x);
}

/* The body of the verify routes: {code, flags...}. Heap code, or NULL when
 * answered. */
static char *verify_body(struct as_job *job, bool *trust, bool *disable_session)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return NULL;
    struct vcheck v = {0};
    yajl_val code = as_v_str(&v, body, "code", true, false);
    if (disable_session)
        *disable_session = opt_bool(&v, body, "disableSession");
    *trust = opt_bool(&v, body, "trustDevice");
    char *out = code ? pc_xstrdup(code->u.string) : NULL;
    if (code)
        pc_wipe(code->u.string, strlen(code->u.string));
    yajl_tree_free(body);
    if (as_v_failed(job, &v)) {
        drop_password(out);
        return NULL;
    }
    return out;
}

/* The start of the verify routes: the plugin on, the body, and who is
 * verifying. The state, with *code (heap: drop_password it), or NULL when
 * answered (nothing to free). */
static struct tf_state *verify_begin(struct as_job *job, struct as_worker *w, char **code,
                                     bool *trust, bool *disable_session)
{
    if (!as_cfg.two_factor) {
        not_on(job);
        return NULL;
    }
    *code = verify_body(job, trust, disable_session);
    if (*code == NULL)
        return NULL;
    struct tf_state *st = tf_state_new(job);
    if (verifier(job, w, st))
        return st;
    drop_password(*code);
    *code = NULL;
    return NULL;
}

/* A verify route's own step, once verify_begin got that far; returns what
 * a handler returns. code is the caller's. */
typedef bool (*tf_verify_step)(struct as_job *job, struct as_worker *w, struct tf_state *st,
                               const char *code, bool trust, bool disable_session);

static bool verify_route(struct as_job *job, struct as_worker *w, tf_verify_step step,
                         bool has_disable_session)
{
    bool trust = false, no_session = false;
    char *code = NULL;
    struct tf_state *st =
        verify_begin(job, w, &code, &trust, has_disable_session ? &no_session : NULL);
    if (st == NULL)
        return true;
    bool done = step(job, w, st, code, trust, no_session);
    drop_password(code);
    return done;
}

/* ---- POST /two-factor/verify-totp ---- */

/* authsvc's replay gate: the first acceptance of a period's code inserts
 * the row of id "totp-used-<row id>-<counter>"; a second finds it. 1 first,
 * 0 replay, -1 database. */
static int totp_first_use(struct as_worker *w, const struct tf_state *st, uint64_t counter)
{
    struct pc_buf id = {0};
    pc_buf_printf(&id, "totp-used-%s-%llu", st->row.id, (unsigned long long)counter);
    char exps[32];
    snprintf(exps, sizeof exps, "%lld",
             (long long)((counter + 1 + TF_WINDOW) * TF_PERIOD * 1000 + 1000));
    const char *p[] = {id.data, exps};
    PGresult *res = pc_db_exec(&w->db,
                               "INSERT INTO \"verification\" (\"id\", \"identifier\", \"value\", "
                               "\"expiresAt\", \"createdAt\", \"updatedAt\") VALUES ($1, $1, '1', "
                               TS_PARAM(2) ", " NOW_MS ", " NOW_MS ") ON CONFLICT (\"id\") DO NOTHING",
                               2, p);
    int rc = pc_db_ok(res) ? strcmp(PQcmdTuples(res), "1") == 0 : -1;
    if (res)
        PQclear(res);
    pc_buf_free(&id);
    return rc;
}

static bool verify_totp(struct as_job *job, struct as_worker *w, struct tf_state *st,
                        const char *code, bool trust, bool disable_session)
{
    bool answered = true;
    int have = tf_row_load(&w->db, st->u.id, &st->row);
    if (have < 0) {
        as_fail_db(job);
        goto out;
    }
    if (!have || (st->sign_in && st->row.verified == 0)) {
        as_error(job, 400, "TOTP_NOT_ENABLED", "TOTP not enabled");
        goto out;
    }
    if (st->sign_in && (!not_locked(job, w, st) || !attempt_begin(job, w, st)))
        goto out;
    size_t n = 0;
    unsigned char *key = open_secret(st->row.secret, &n);
    if (key == NULL) {
        if (st->sign_in)
            attempt_rearm(w, st, st->attempts);
        as_error(job, 500, "INTERNAL_SERVER_ERROR", "The TOTP secret does not open");
        goto out;
    }
    uint64_t counter = 0;
    bool ok = pc_totp_verify(key, n, code, pc_now_ms(), TF_PERIOD, TF_DIGITS, TF_WINDOW, &counter);
    pc_wipe(key, n);
    free(key);
    int first = ok ? totp_first_use(w, st, counter) : 0;
    if (first < 0) {
        if (st->sign_in)
            attempt_rearm(w, st, st->attempts);
        as_fail_db(job);
        goto out;
    }
    if (!first) {
        record_failure(w, st);
        as_error(job, 401, "INVALID_CODE", "Invalid code");
        goto out;
    }
    if (reset_failures(w, st) != 0) {
        as_fail_db(job);
        goto out;
    }
    if (st->row.verified != 1) {
        /* the first code after enable turns 2FA on, with a new session */
        if (!st->enabled && !st->sign_in &&
            (set_user_enabled(&w->db, st->u.id, true) != 0 ||
             replace_session(job, w, &st->s, &st->u, NULL) != 0)) {
            as_fail_db(job);
            goto out;
        }
        const char *p[] = {st->row.id};
        if (exec_params(&w->db, "UPDATE \"twoFactor\" SET \"verified\" = true WHERE \"id\" = $1",
                        1, p) != 0) {
            as_fail_db(job);
            goto out;
        }
    }
    answered = verified(job, w, st, trust);
out:
    return answered;
}

bool as_route_2fa_verify_totp(struct as_job *job, struct as_worker *w)
{
    return verify_route(job, w, verify_totp, false);
}

/* ---- POST /two-factor/verify-backup-code ---- */

/* Whether code is one of the sealed codes; *rest (heap, sealed) the others
 * when it is. */
static bool backup_match(const char *sealed, const char *code, char **rest)
{
    size_t len = 0;
    char *json = pc_unseal(&as_cfg.secrets, sealed, &len);
    if (json == NULL)
        return false;
    yajl_val arr = pc_json_parse(json, len);
    pc_wipe(json, len);
    free(json);
    bool found = false;
    if (arr && YAJL_IS_ARRAY(arr)) {
        size_t n = arr->u.array.len, kept = 0;
        char **others = pc_xcalloc(n + 1, sizeof *others);
        for (size_t i = 0; i < n; i++) {
            yajl_val c = arr->u.array.values[i];
            const char *s = YAJL_IS_STRING(c) ? c->u.string : NULL;
            if (s && strcmp(s, code) == 0)
                found = true;
            else if (s)
                others[kept++] = (char *)s;
        }
        if (found)
            *rest = seal_codes(others, kept);
        free(others);
    }
    if (arr) {
        for (size_t i = 0; YAJL_IS_ARRAY(arr) && i < arr->u.array.len; i++)
            if (YAJL_IS_STRING(arr->u.array.values[i]))
                pc_wipe(arr->u.array.values[i]->u.string,
                        strlen(arr->u.array.values[i]->u.string));
        yajl_tree_free(arr);
    }
    return found;
}

static bool verify_backup(struct as_job *job, struct as_worker *w, struct tf_state *st,
                          const char *code, bool trust, bool no_session)
{
    bool answered = true;
    char *rest = NULL;
    int have = tf_row_load(&w->db, st->u.id, &st->row);
    if (have <= 0) {
        if (have < 0)
            as_fail_db(job);
        else
            as_error(job, 400, "BACKUP_CODES_NOT_ENABLED", "Backup codes aren't enabled");
        goto out;
    }
    if (st->sign_in && (!not_locked(job, w, st) || !attempt_begin(job, w, st)))
        goto out;
    if (!backup_match(st->row.backup, code, &rest)) {
        record_failure(w, st);
        as_error(job, 401, "INVALID_BACKUP_CODE", "Invalid backup code");
        goto out;
    }
    /* single use: the new list replaces exactly the one read */
    const char *p[] = {st->row.id, st->row.backup, rest};
    PGresult *res = pc_db_exec(&w->db,
                               "UPDATE \"twoFactor\" SET \"backupCodes\" = $3 "
                               "WHERE \"id\" = $1 AND \"backupCodes\" = $2",
                               3, p);
    int rc = pc_db_ok(res) ? strcmp(PQcmdTuples(res), "1") == 0 : -1;
    if (res)
        PQclear(res);
    if (rc <= 0) {
        if (rc < 0)
            as_fail_db(job);
        else
            as_error(job, 409, "CONFLICT", "Failed to verify backup code. Please try again.");
        goto out;
    }
    if (reset_failures(w, st) != 0) {
        as_fail_db(job);
        goto out;
    }
    if (!no_session) {
        answered = verified(job, w, st, trust);
        goto out;
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    if (!st->sign_in) {
        pc_jw_key(&jw, "token");
        pc_jw_str(&jw, st->s.token);
    }
    pc_jw_key(&jw, "user");
    jw_user(&jw, &st->u, st->enabled);
    pc_jw_obj_end(&jw);
    as_reply(job, 200, &b);
out:
    free(rest);
    return answered;
}

bool as_route_2fa_verify_backup_code(struct as_job *job, struct as_worker *w)
{
    return verify_route(job, w, verify_backup, true);
}

/* ---- POST /two-factor/send-otp, /two-factor/verify-otp (otp/index.mjs) ---- */

static bool otp_off(struct as_job *job)
{
    return as_error(job, 400, "OTP_NOT_CONFIGURED", "otp isn't configured");
}

bool as_route_2fa_send_otp(struct as_job *job, struct as_worker *w)
{
    if (!as_cfg.two_factor)
        return not_on(job);
    yajl_val body = as_body(job, false);
    if (body == NULL)
        return true;
    struct vcheck v = {0};
    (void)opt_bool(&v, body, "trustDevice");
    yajl_tree_free(body);
    if (as_v_failed(job, &v))
        return true;
    if (!as_cfg.two_factor_otp)
        return otp_off(job);
    struct tf_state *st = tf_state_new(job);
    if (!verifier(job, w, st))
        return true;
    /* generateRandomString(digits, "0-9"), stored plain as "<code>:<tries>" */
    char code[TF_DIGITS + 1], value[TF_DIGITS + 4], ident[TF_IDENT_MAX + 8];
    pc_random_string(code, TF_DIGITS, "0123456789");
    snprintf(value, sizeof value, "%s:0", code);
    snprintf(ident, sizeof ident, "2fa-otp-%s", st->key);
    struct as_mail_vars mv = {.name = st->u.name, .email = st->u.email,
                              .expires_s = 60 * as_cfg.two_factor_otp_minutes, .code = code};
    int rc = as_mail_with_verification(&w->db, ident, value, mv.expires_s, AS_MAIL_TWO_FACTOR_OTP,
                                       &mv);
    pc_wipe(code, sizeof code);
    pc_wipe(value, sizeof value);
    if (rc != 0)
        return as_fail_db(job);
    return as_reply_json(job, 200, "{\"status\":true}");
}

static bool verify_otp(struct as_job *job, struct as_worker *w, struct tf_state *st,
                       const char *code, bool trust, bool disable_session)
{
    bool answered = true;
    char *stored = NULL;
    int have = st->sign_in ? tf_row_load(&w->db, st->u.id, &st->row) : 0;
    if (have < 0) {
        as_fail_db(job);
        goto out;
    }
    if (have && !not_locked(job, w, st))
        goto out;
    char ident[TF_IDENT_MAX + 8];
    snprintf(ident, sizeof ident, "2fa-otp-%s", st->key);
    int64_t otp_exp = 0;
    int rc = verif_consume(&w->db, ident, &stored, &otp_exp);
    if (rc <= 0) {
        if (rc < 0)
            as_fail_db(job);
        else
            as_error(job, 400, "OTP_HAS_EXPIRED", "OTP has expired");
        goto out;
    }
    char *colon = strchr(stored, ':');
    int tries = colon ? atoi(colon + 1) : 0;
    if (colon)
        *colon = '\0';
    if (tries >= TF_ATTEMPTS) {
        as_error(job, 400, "TOO_MANY_ATTEMPTS_REQUEST_NEW_CODE",
                 "Too many attempts. Please request a new code.");
        goto out;
    }
    size_t n = strlen(stored);
    if (strlen(code) != n || !pc_ct_eq(stored, code, n)) {
        char value[TF_IDENT_MAX];
        snprintf(value, sizeof value, "%s:%d", stored, tries + 1);
        /* the count goes back with the consumed row's expiresAt */
        if (verif_insert(&w->db, ident, value, otp_exp) != 0) {
            as_fail_db(job);
            goto out;
        }
        if (have)
            account_failure(w, st);
        pc_wipe(value, sizeof value);
        as_error(job, 401, "INVALID_CODE", "Invalid code");
        goto out;
    }
    if (have && reset_failures(w, st) != 0) {
        as_fail_db(job);
        goto out;
    }
    if (!st->enabled) {
        /* the first code of a session turns 2FA on, with a new session */
        if (st->sign_in) {
            as_error(job, 400, "FAILED_TO_CREATE_SESSION", "Failed to create session");
            goto out;
        }
        char tok[33];
        if (set_user_enabled(&w->db, st->u.id, true) != 0 ||
            replace_session(job, w, &st->s, &st->u, tok) != 0) {
            as_fail_db(job);
            goto out;
        }
        struct pc_buf b = {0};
        struct pc_jw jw = {.b = &b};
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "token");
        pc_jw_str(&jw, tok);
        pc_jw_key(&jw, "user");
        jw_user(&jw, &st->u, true);
        pc_jw_obj_end(&jw);
        pc_wipe(tok, sizeof tok);
        as_reply(job, 200, &b);
        goto out;
    }
    answered = verified(job, w, st, trust);
out:
    if (stored) {
        pc_wipe(stored, strlen(stored));
        free(stored);
    }
    return answered;
}

bool as_route_2fa_verify_otp(struct as_job *job, struct as_worker *w)
{
    return verify_route(job, w, verify_otp, false);
}

/* ---- sign-in's after-hook ---- */

/* A trust_device cookie that names uid and a live row of it: renewed
 * (the old row deleted, a new one and its cookie). 1 trusted, 0 not (the
 * cookie, if any, expired), -1 database. */
static int trusted_device(struct as_job *job, struct as_worker *w, const char *uid)
{
    char tv[256];
    if (!as_signed_cookie(job, as_cfg.cookie_trust_device, tv, sizeof tv))
        return 0;
    int rc = 0;
    char *bang = strchr(tv, '!');
    if (bang && bang != tv && bang[1]) {
        *bang = '\0';
        char *ident = bang + 1, *end = strchr(ident, '!');
        if (end)
            *end = '\0';
        char mac[PC_HASH_B64_LEN + 1];
        trust_mac(uid, ident, mac);
        char *owner = NULL;
        int64_t exp = 0;
        if (strlen(tv) == PC_HASH_B64_LEN && pc_ct_eq(tv, mac, PC_HASH_B64_LEN)) {
            rc = verif_find(&w->db, ident, &owner, &exp);
            if (rc == 1)
                rc = strcmp(owner, uid) == 0 && exp > pc_now_ms();
            free(owner);
        }
        if (rc == 1 && (verif_delete(&w->db, ident) != 0 || trust_device(job, w, uid) != 0))
            rc = -1;
    }
    pc_wipe(tv, sizeof tv);
    if (rc == 0)
        expire_cookie(job, as_cfg.cookie_trust_device);
    return rc;
}

int as_two_factor_new_user(struct pc_db *db, struct as_user *u)
{
    u->two_factor_known = true;
    u->two_factor = false;
    return set_user_enabled(db, u->id, false);
}

enum as_2fa_gate as_two_factor_gate(struct as_job *job, struct as_worker *w,
                                    struct as_user *u, bool remember)
{
    if (!as_cfg.two_factor)
        return AS_2FA_PASS;
    int en = user_enabled(&w->db, u->id);
    u->two_factor_known = en >= 0;
    u->two_factor = en == 1;
    int trusted = en == 1 ? trusted_device(job, w, u->id) : 0;
    if (en < 0 || trusted < 0) {
        as_fail_db(job);
        return AS_2FA_ANSWERED;
    }
    if (en == 0 || trusted == 1)
        return AS_2FA_PASS;
    /* deleteSessionCookie(ctx, true): dont_remember stays */
    expire_cookie(job, as_cfg.cookie_session);
    expire_cookie(job, as_cfg.cookie_session_data);
    if (!remember) {
        char dr[8 + PC_SIG_B64_LEN];
        pc_sign_value(as_cfg.secret, "true", dr);
        as_set_cookie(job, as_cfg.cookie_dont_remember, dr, -1);
    }
    char ident[4 + 20 + 1] = "2fa-", ai[TF_IDENT_MAX + 16];
    pc_random_string(ident + 4, 20, alphabet64);
    snprintf(ai, sizeof ai, "2fa-attempts-%s", ident);
    int64_t exp = pc_now_ms() + 1000 * as_cfg.two_factor_cookie_age;
    struct tf_row row = {0};
    int have = -1;
    if (verif_insert(&w->db, ident, u->id, exp) != 0 || verif_insert(&w->db, ai, "0", exp) != 0 ||
        (have = tf_row_load(&w->db, u->id, &row)) < 0) {
        as_fail_db(job);
        return AS_2FA_ANSWERED;
    }
    set_signed(job, as_cfg.cookie_two_factor, ident, as_cfg.two_factor_cookie_age);
    pc_wipe(ident, sizeof ident);
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "twoFactorRedirect");
    pc_jw_bool(&jw, true);
    pc_jw_key(&jw, "twoFactorMethods");
    pc_jw_arr_begin(&jw);
    if (have == 1 && row.verified != 0)
        pc_jw_str(&jw, "totp");
    if (as_cfg.two_factor_otp)
        pc_jw_str(&jw, "otp");
    pc_jw_arr_end(&jw);
    pc_jw_obj_end(&jw);
    tf_row_free(&row);
    snprintf(job->user_id, sizeof job->user_id, "%s", u->id);
    as_reply(job, 200, &b);
    return AS_2FA_ANSWERED;
}
