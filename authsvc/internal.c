/* Portcullis - MIT licence. See LICENSE.
 *
 * internal.c: the service-to-service routes (design.md), behind
 * INTERNAL_SERVICE_SECRET (header x-service-auth, compared in constant time;
 * 404 while the secret is unset):
 *
 *   POST /api/internal/api-key/create, /api-key/update   the API-key bodies
 *            plus the server-only fields and userId (apikey_input.c), stored
 *            by apikey_store.c
 *   POST /api/internal/validate   a key or a session token in, a verdict
 *            out. It reads; it does not consume quota or rate limit (the
 *            gateway owns those counters). Sessions are looked up by
 *            sessions.c (as_session_lookup_token).
 */
#include "authsvc.h"
#include "apikeys.h"
#include "apikey_int.h"
#include "job.h"
#include "jwt.h"
#include "../lib/crypto.h"

#include <stdlib.h>
#include <string.h>

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
        ak_validate_create(&v, in, true);
    else
        ak_validate_update(&v, in, true);
    if (v.msg.len == 0)
        ak_validate_int_columns(&v, in);
    if (as_v_failed(job, &v))
        return false;
    if (in->user_id == NULL || in->user_id[0] == '\0')
        return !as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    return true;
}

bool as_route_internal_apikey_create(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if (internal_input(job, &in, true) && ak_user_exists(job, w, in.user_id))
        ak_create_key(job, w, &in, in.user_id);
    ak_input_free(&in);
    return true;
}

bool as_route_internal_apikey_update(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if (internal_input(job, &in, false)) {
        snprintf(job->user_id, sizeof job->user_id, "%s", in.user_id);
        ak_update_key(job, w, &in, in.user_id);
    }
    ak_input_free(&in);
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

/* {"valid": true, "kind": kind, "userId": ... (the caller writes the value) */
static void valid_head(struct pc_jw *jw, const char *kind)
{
    pc_jw_obj_begin(jw);
    pc_jw_key(jw, "valid");
    pc_jw_bool(jw, true);
    pc_jw_key(jw, "kind");
    pc_jw_str(jw, kind);
    pc_jw_key(jw, "userId");
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
                               PC_BA_SQL_APIKEY_BY_HASH,
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
    snprintf(job->user_id, sizeof job->user_id, "%s", PQgetvalue(res, 0, PC_BA_AK_REF));
    snprintf(job->cred_id, sizeof job->cred_id, "%s", PQgetvalue(res, 0, PC_BA_AK_ID));
    if (!PQgetisnull(res, 0, PC_BA_AK_ENABLED) && PQgetvalue(res, 0, PC_BA_AK_ENABLED)[0] == 'f') {
        PQclear(res);
        return reply_invalid(job, "KEY_DISABLED", "API Key is disabled");
    }
    if (!PQgetisnull(res, 0, PC_BA_AK_EXPIRES) && now > pc_db_ms(PQgetvalue(res, 0, PC_BA_AK_EXPIRES))) {
        const char *dp[] = {PQgetvalue(res, 0, PC_BA_AK_ID)};
        PGresult *d = pc_db_exec(&w->db, "DELETE FROM \"apikey\" WHERE \"id\" = $1", 1, dp);
        if (pc_db_ok(d))
            ak_revoke_key(w, PQgetvalue(res, 0, PC_BA_AK_KEY));
        if (d)
            PQclear(d);
        PQclear(res);
        return reply_invalid(job, "KEY_EXPIRED", "API Key has expired");
    }
    if (wanted && !permissions_cover(PQgetisnull(res, 0, PC_BA_AK_PERMISSIONS)
                                         ? NULL
                                         : PQgetvalue(res, 0, PC_BA_AK_PERMISSIONS),
                                     wanted)) {
        PQclear(res);
        return reply_invalid(job, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    }
    if (!PQgetisnull(res, 0, PC_BA_AK_REMAINING) && strtoll(PQgetvalue(res, 0, PC_BA_AK_REMAINING), NULL, 10) <= 0) {
        bool refill = !PQgetisnull(res, 0, PC_BA_AK_REFILL_AMOUNT) &&
                      !PQgetisnull(res, 0, PC_BA_AK_REFILL_INTERVAL) &&
                      strtoll(PQgetvalue(res, 0, PC_BA_AK_REFILL_AMOUNT), NULL, 10) != 0 &&
                      strtoll(PQgetvalue(res, 0, PC_BA_AK_REFILL_INTERVAL), NULL, 10) != 0;
        int64_t last = pc_db_ms(PQgetvalue(res, 0, PQgetisnull(res, 0, PC_BA_AK_LAST_REFILL)
                                                       ? PC_BA_AK_CREATED
                                                       : PC_BA_AK_LAST_REFILL));
        if (!refill ||
            now - last <= strtoll(PQgetvalue(res, 0, PC_BA_AK_REFILL_INTERVAL), NULL, 10)) {
            PQclear(res);
            return reply_invalid(job, "USAGE_EXCEEDED", "API Key has reached its usage limit");
        }
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    valid_head(&jw, "api_key");
    ak_jw_col_str(&jw, res, 0, PC_BA_AK_REF);
    pc_jw_key(&jw, "keyId");
    ak_jw_col_str(&jw, res, 0, PC_BA_AK_ID);
    pc_jw_key(&jw, "expiresAt");
    ak_jw_col_date(&jw, res, 0, PC_BA_AK_EXPIRES);
    pc_jw_key(&jw, "permissions");
    ak_jw_json_col(&jw, res, 0, PC_BA_AK_PERMISSIONS, false);
    pc_jw_obj_end(&jw);
    PQclear(res);
    return as_reply(job, 200, &b);
}

/* {valid: true, kind, userId, sessionId, expiresAt}: a session's or a JWT's. */
static bool reply_valid(struct as_job *job, const char *kind, const char *user, const char *sid,
                        int64_t expires_ms)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    valid_head(&jw, kind);
    pc_jw_str(&jw, user);
    pc_jw_key(&jw, "sessionId");
    pc_jw_str(&jw, sid);
    pc_jw_key(&jw, "expiresAt");
    pc_jw_date(&jw, expires_ms);
    pc_jw_obj_end(&jw);
    return as_reply(job, 200, &b);
}

/* One of our JWTs (GET /token's): its signature against the keys we
 * publish, iss, aud and exp (jwt.c), then its session (sid) still there:
 * a signed-out session's JWT is refused at once, not when it expires. */
static bool validate_jwt(struct as_job *job, struct as_worker *w, const char *tok)
{
    char *sub, *sid;
    int64_t exp_s = 0;
    switch (as_jwt_verify(w, tok, &sub, &sid, &exp_s)) {
    case AS_JWT_UNAVAILABLE:
        return as_fail_db(job);
    case AS_JWT_EXPIRED:
        return reply_invalid(job, "TOKEN_EXPIRED", "Token expired");
    case AS_JWT_INVALID:
        return reply_invalid(job, "INVALID_TOKEN", "Invalid token");
    default:
        break;
    }
    snprintf(job->user_id, sizeof job->user_id, "%s", sub);
    bool done;
    PGresult *res = NULL;
    if (sid) {
        snprintf(job->cred_id, sizeof job->cred_id, "%s", sid);
        const char *p[] = {sid, sub};
        res = pc_db_exec(&w->db,
                         "SELECT 1 FROM \"session\" WHERE \"id\" = $1 AND \"userId\" = $2 "
                         "AND \"expiresAt\" > now()",
                         2, p);
        as_health_note_pg(res != NULL);
    }
    if (sid && !pc_db_ok(res)) {
        done = as_fail_db(job);
    } else if (sid && PQntuples(res) != 1) {
        done = reply_invalid(job, "SESSION_REVOKED", "The token's session has ended");
    } else {
        done = reply_valid(job, "jwt", sub, sid, exp_s * 1000);
    }
    if (res)
        PQclear(res);
    free(sub);
    free(sid);
    return done;
}

/* A session token: sessions.c reads and looks it up; the verdict is ours. */
static bool validate_session(struct as_job *job, struct as_worker *w, const char *in)
{
    struct as_token_session t = {0};
    enum as_token_lookup lk = as_session_lookup_token(w, in, &t);
    if (t.user_id)
        snprintf(job->user_id, sizeof job->user_id, "%s", t.user_id);
    if (t.id)
        snprintf(job->cred_id, sizeof job->cred_id, "%s", t.id);
    bool done;
    switch (lk) {
    case AS_TOKEN_JWT:
        done = validate_jwt(job, w, in);
        break;
    case AS_TOKEN_INVALID:
        done = reply_invalid(job, "INVALID_TOKEN", "Invalid token");
        break;
    case AS_TOKEN_UNAVAILABLE:
        done = as_fail_db(job);
        break;
    case AS_TOKEN_EXPIRED:
        done = reply_invalid(job, "SESSION_EXPIRED",
                             "Session expired. Re-authenticate to perform this action.");
        break;
    default:
        done = reply_valid(job, "session", t.user_id, t.id, t.expires_at);
    }
    as_token_session_free(&t);
    return done;
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
    yajl_val perms = ak_v_perms(&v, body, "permissions", false, &has_perms);
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
