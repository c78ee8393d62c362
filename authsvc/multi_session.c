/* Portcullis - MIT licence. See LICENSE.
 *
 * multi_session.c: Better Auth 1.7's multiSession plugin
 * (plugins/multi-session), with its cookies, so a browser that signed in
 * several accounts through either server keeps them on the other.
 *
 *   cookie   <[__Secure-]better-auth.session_token>_multi-<lower(token)>,
 *            value the signed token, the session cookie's attributes
 *   after    any answer that sets a session cookie adds that session's
 *            multi cookie, unless it is already there; the browser's other
 *            sessions of the same user end (their cookies expire); at most
 *            MULTI_SESSION_MAXIMUM are kept (the cookie is then left out)
 *   list-device-sessions   [{session, user}] of the live ones, one per user
 *   set-active {sessionToken}   that session's cookie becomes the session
 *   revoke {sessionToken}  (signed in) ends it; if it was the active one,
 *            the next live one becomes active, or the cookies are cleared
 *   sign-out ends every session the multi cookies hold
 *
 * A multi cookie counts only with a good signature; at most MULTI_MAX are
 * read from a request.
 */
#include "authsvc.h"
#include "job.h"
#include "multi_session.h"
#include "validate.h"
#include "../lib/cookie.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define MULTI_MAX 64        /* multi cookies read from one request */
#define MULTI_NAME_MAX 192
#define MULTI_TOKEN_MAX 128

struct mcookie {
    char name[MULTI_NAME_MAX];
    char tok[MULTI_TOKEN_MAX];
};

static void multi_name(const char *token, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s_multi-", as_cfg.cookie_session);
    for (const char *p = token; *p && (size_t)n + 1 < cap; p++, n++)
        out[n] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
    out[n < (int)cap ? n : (int)cap - 1] = '\0';
}

static bool token_ok(const char *t)
{
    return t[0] && pc_token_chars(t, MULTI_TOKEN_MAX - 1, NULL);
}

/* Every signed multi cookie of the request, in order; returns how many. */
static size_t multi_cookies(const struct as_job *job, struct mcookie *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < job->nhdrs && n < cap; i++) {
        if (!pc_strieq(job->hdrs[i].name, "Cookie"))
            continue;
        const char *p = job->hdrs[i].value;
        while (*p && n < cap) {
            while (*p == ' ' || *p == ';')
                p++;
            const char *end = p + strcspn(p, ";");
            const char *eq = memchr(p, '=', (size_t)(end - p));
            if (eq && (size_t)(eq - p) < MULTI_NAME_MAX) {
                char name[MULTI_NAME_MAX];
                memcpy(name, p, (size_t)(eq - p));
                name[eq - p] = '\0';
                if (strstr(name, "_multi-") != NULL) {
                    char *raw = pc_xstrndup(eq + 1, (size_t)(end - eq - 1));
                    struct mcookie *m = &out[n];
                    if (pc_cookie_verify(as_cfg.secret, raw, m->tok, sizeof m->tok) &&
                        token_ok(m->tok)) {
                        memcpy(m->name, name, sizeof name);
                        n++;
                    }
                    pc_wipe(raw, strlen(raw));
                    free(raw);
                }
            }
            p = end;
        }
    }
    return n;
}

static bool has_cookie_named(const struct as_job *job, const char *name)
{
    for (size_t i = 0; i < job->nhdrs; i++) {
        if (!pc_strieq(job->hdrs[i].name, "Cookie"))
            continue;
        char *v = pc_cookie_get(job->hdrs[i].value, name);
        if (v) {
            pc_wipe(v, strlen(v));
            free(v);
            return true;
        }
    }
    return false;
}

static void set_multi(struct as_job *job, const char *name, const char *token)
{
    if (token == NULL) {
        as_set_cookie(job, name, NULL, 0);
        return;
    }
    char *sv = pc_xmalloc(strlen(token) + PC_SIG_B64_LEN + 2);
    pc_sign_value(as_cfg.secret, token, sv);
    as_set_cookie(job, name, sv, as_cfg.expires_in);
    pc_wipe(sv, strlen(sv));
    free(sv);
}

/* DELETE the sessions toks[0..n) and revoke them. 0 or -1. */
static int end_sessions(struct as_worker *w, char **toks, size_t n)
{
    if (n == 0)
        return 0;
    struct pc_buf arr = {0};
    as_token_array(&arr, toks, n);
    const char *p[] = {arr.data};
    PGresult *res = pc_db_exec(&w->db, "DELETE FROM \"session\" WHERE \"token\" = ANY($1::text[]) "
                                       "RETURNING \"token\"", 1, p);
    pc_wipe(arr.data, arr.len);
    pc_buf_free(&arr);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return -1;
    }
    size_t k = (size_t)PQntuples(res);
    char **gone = pc_xcalloc(k + 1, sizeof *gone);
    for (size_t i = 0; i < k; i++)
        gone[i] = PQgetvalue(res, (int)i, 0);
    as_revoke_tokens(w, gone, k);
    free(gone);
    PQclear(res);
    return 0;
}

static void free_found(struct as_session *s, struct as_user *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        as_session_free(&s[i]);
        as_user_free(&u[i]);
    }
    free(s);
    free(u);
}

/* ---- the after-hook ---- */

void as_multi_session_after(struct as_job *job, struct as_worker *w)
{
    if (!as_cfg.multi_session || !job->new_session[0] || job->status != 200)
        return;
    char name[MULTI_NAME_MAX];
    multi_name(job->new_session, name, sizeof name);
    if (has_cookie_named(job, name))
        return;
    struct mcookie *mc = pc_xcalloc(MULTI_MAX, sizeof *mc);
    size_t n = multi_cookies(job, mc, MULTI_MAX);
    char **toks = pc_xcalloc(n + 2, sizeof *toks);
    toks[0] = job->new_session;
    for (size_t i = 0; i < n; i++)
        toks[i + 1] = mc[i].tok;
    struct as_session *s;
    struct as_user *u;
    size_t found;
    if (as_sessions_by_tokens(w, toks, n + 1, &s, &u, &found) != 0) {
        pc_logr_warn(job->request_id, "multi-session: PostgreSQL failed; no multi cookie set");
        goto out;
    }
    const char *uid = NULL;
    for (size_t j = 0; j < found; j++)
        if (strcmp(s[j].token, job->new_session) == 0)
            uid = u[j].id;
    if (uid == NULL)
        goto done;
    /* the browser's other sessions of this user end */
    size_t ended = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < found; j++)
            if (strcmp(s[j].token, mc[i].tok) == 0 && strcmp(u[j].id, uid) == 0) {
                toks[ended++] = mc[i].tok;
                set_multi(job, mc[i].name, NULL);
                break;
            }
    if (end_sessions(w, toks, ended) != 0)
        pc_logr_warn(job->request_id, "multi-session: could not end the user's older sessions");
    if (n - ended + 1 <= (size_t)as_cfg.multi_session_max)
        set_multi(job, name, job->new_session);
done:
    free_found(s, u, found);
out:
    pc_wipe(mc, MULTI_MAX * sizeof *mc);
    free(mc);
    free(toks);
}

int as_multi_session_sign_out(struct as_job *job, struct as_worker *w)
{
    if (!as_cfg.multi_session)
        return 0;
    struct mcookie *mc = pc_xcalloc(MULTI_MAX, sizeof *mc);
    size_t n = multi_cookies(job, mc, MULTI_MAX);
    char **toks = pc_xcalloc(n + 1, sizeof *toks);
    for (size_t i = 0; i < n; i++) {
        toks[i] = mc[i].tok;
        set_multi(job, mc[i].name, NULL);
    }
    int rc = end_sessions(w, toks, n);
    pc_wipe(mc, MULTI_MAX * sizeof *mc);
    free(mc);
    free(toks);
    return rc;
}

/* ---- routes ---- */

static bool not_on(struct as_job *job)
{
    return as_error(job, 404, "NOT_FOUND", "Not found");
}

static bool reply_pair(struct as_job *job, const struct as_session *s, const struct as_user *u)
{
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "session");
    as_jw_session(&jw, s);
    pc_jw_key(&jw, "user");
    as_jw_user(&jw, u);
    pc_jw_obj_end(&jw);
    return as_reply(job, 200, &b);
}

bool as_route_multi_list(struct as_job *job, struct as_worker *w)
{
    if (!as_cfg.multi_session)
        return not_on(job);
    struct mcookie *mc = pc_xcalloc(MULTI_MAX, sizeof *mc);
    size_t n = multi_cookies(job, mc, MULTI_MAX);
    char **toks = pc_xcalloc(n + 1, sizeof *toks);
    for (size_t i = 0; i < n; i++)
        toks[i] = mc[i].tok;
    struct as_session *s;
    struct as_user *u;
    size_t found;
    bool answered;
    if (as_sessions_by_tokens(w, toks, n, &s, &u, &found) != 0) {
        answered = as_fail_db(job);
        goto out;
    }
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_arr_begin(&jw);
    for (size_t j = 0; j < found; j++) {
        bool seen = false;
        for (size_t k = 0; k < j && !seen; k++)
            seen = strcmp(u[k].id, u[j].id) == 0;
        if (seen)
            continue;
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "session");
        as_jw_session(&jw, &s[j]);
        pc_jw_key(&jw, "user");
        as_jw_user(&jw, &u[j]);
        pc_jw_obj_end(&jw);
    }
    pc_jw_arr_end(&jw);
    free_found(s, u, found);
    answered = as_reply(job, 200, &b);
out:
    pc_wipe(mc, MULTI_MAX * sizeof *mc);
    free(mc);
    free(toks);
    return answered;
}

/* The session the multi cookie for body.sessionToken holds, into s/u.
 * True when found and live; else the answer is set (401, and the stale
 * cookie expired). *name gets the cookie's name. */
static bool multi_target(struct as_job *job, struct as_worker *w, char *name, size_t cap,
                         char *tok, struct as_session *s, struct as_user *u)
{
    char *want = as_v_body_str(job, "sessionToken");
    if (want == NULL)
        return false;
    multi_name(want, name, cap);
    pc_wipe(want, strlen(want));
    free(want);
    if (!as_signed_cookie(job, name, tok, MULTI_TOKEN_MAX) || !token_ok(tok))
        return !as_error(job, 401, "INVALID_SESSION_TOKEN", "Invalid session token");
    char *t = tok;
    struct as_session *fs;
    struct as_user *fu;
    size_t found;
    if (as_sessions_by_tokens(w, &t, 1, &fs, &fu, &found) != 0)
        return !as_fail_db(job);
    if (found == 1) {
        *s = fs[0];
        *u = fu[0];
        free(fs);
        free(fu);
        return true;
    }
    free_found(fs, fu, found);
    return false;
}

bool as_route_multi_set_active(struct as_job *job, struct as_worker *w)
{
    if (!as_cfg.multi_session)
        return not_on(job);
    char name[MULTI_NAME_MAX], tok[MULTI_TOKEN_MAX] = "";
    struct as_session s = {0};
    struct as_user u = {0};
    if (!multi_target(job, w, name, sizeof name, tok, &s, &u)) {
        if (job->status == 0) {
            set_multi(job, name, NULL);
            as_error(job, 401, "INVALID_SESSION_TOKEN", "Invalid session token");
        }
        pc_wipe(tok, sizeof tok);
        return true;
    }
    as_session_set_cookie(job, s.token, true);
    snprintf(job->user_id, sizeof job->user_id, "%s", u.id);
    reply_pair(job, &s, &u);
    as_session_free(&s);
    as_user_free(&u);
    pc_wipe(tok, sizeof tok);
    return true;
}

bool as_route_multi_revoke(struct as_job *job, struct as_worker *w)
{
    if (!as_cfg.multi_session)
        return not_on(job);
    struct as_session cur = {0};
    struct as_user cu = {0};
    char name[MULTI_NAME_MAX], tok[MULTI_TOKEN_MAX] = "";
    char *want = as_v_body_str(job, "sessionToken");
    if (want == NULL)
        return true;
    multi_name(want, name, sizeof name);
    pc_wipe(want, strlen(want));
    free(want);
    if (!as_require_session(job, w, &cur, &cu))
        return true;
    bool answered;
    if (!as_signed_cookie(job, name, tok, sizeof tok) || !token_ok(tok)) {
        answered = as_error(job, 401, "INVALID_SESSION_TOKEN", "Invalid session token");
        goto out;
    }
    char *t = tok;
    if (end_sessions(w, &t, 1) != 0) {
        answered = as_fail_db(job);
        goto out;
    }
    set_multi(job, name, NULL);
    if (strcmp(cur.token, tok) == 0) {
        /* the active one ended: the next live one takes its place */
        struct mcookie *mc = pc_xcalloc(MULTI_MAX, sizeof *mc);
        size_t n = multi_cookies(job, mc, MULTI_MAX);
        char **toks = pc_xcalloc(n + 1, sizeof *toks);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (strcmp(mc[i].tok, tok) != 0)
                toks[k++] = mc[i].tok;
        struct as_session *s;
        struct as_user *u;
        size_t found = 0;
        if (as_sessions_by_tokens(w, toks, k, &s, &u, &found) != 0)
            found = 0, s = NULL, u = NULL;
        if (found > 0)
            as_session_set_cookie(job, s[0].token, true);
        else
            as_session_clear_cookies(job);
        free_found(s, u, found);
        pc_wipe(mc, MULTI_MAX * sizeof *mc);
        free(mc);
        free(toks);
    }
    answered = as_reply_json(job, 200, "{\"status\":true}");
out:
    pc_wipe(tok, sizeof tok);
    as_session_free(&cur);
    as_user_free(&cu);
    return answered;
}
