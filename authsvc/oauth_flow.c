/* Portcullis - MIT licence. See LICENSE.
 *
 * oauth_flow.c: sign-in with Google or a generic OpenID Connect provider, the way
 * Better Auth 1.7 does it (better-auth-compat.md §9), restricted to the
 * email domains in ALLOWED_DOMAINS.
 *
 *   POST /sign-in/social   (worker) provider, URLs -> [loop: discovery] ->
 *                          (worker) verification row "auth-state:<state>",
 *                          signed state cookie, {url, redirect:true}
 *                          With {idToken:{token}}: the token is verified
 *                          like a callback's, the answer is JSON.
 *   POST /callback/:id     302 to the GET with the form fields as query
 *   GET  /callback/:id     (worker) state row + state cookie, consumed once
 *                          (loop) JWKS, code exchange with the PKCE
 *                          verifier, ID token signature and claims, userinfo
 *                          when the ID token has no email, domain rules
 *                          (worker) user/account/session, cookie, 302
 *   GET  /error            a small HTML page for the default error URL
 *   POST /link-social      sign-in/social's path for the signed-in user: the
 *                          state row carries "link" (the user and its sealed
 *                          session token); the verified identity ends in
 *                          oauth_link.c's oa_link_finish, not in a sign-in
 *
 * This file is the flow: the routes, the state row and cookie with the PKCE
 * verifier, the code exchange, the answers and error mapping. Providers are
 * oauth_provider.c's, the identity checks oauth_identity.c's, the rows
 * accounts.c's. It runs to about 850 lines: the two routes share the flow
 * state, its answers and the loop hops, and splitting them would export
 * those helpers for no reader's gain.
 *
 * Nothing is written for a refused identity: the domain rules run on the
 * loop, before the job goes back to a worker for the database. Tokens,
 * codes, verifiers and states never reach the log.
 */
#include "authsvc.h"
#include "oauth_int.h"
#include "job.h"
#include "accounts.h"
#include "validate.h"
#include "../lib/ba_jwks.h"
#include "../lib/cookie.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <event2/http.h>

#define NOW_MS "date_trunc('milliseconds', now())"
#define TS(n) "to_timestamp($" #n "::double precision / 1000)"

static const char rand_alphabet[] =
    "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

/* ---- one sign-in ---- */

static void free_secret(char **s)
{
    if (*s) {
        pc_wipe(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

static void flow_free(void *arg)
{
    struct flow *f = arg;
    if (f == NULL)
        return;
    free(f->callback);
    free(f->error_url);
    free(f->new_user_url);
    free_secret(&f->code);
    free_secret(&f->verifier);
    free_secret(&f->nonce);
    free_secret(&f->access_token);
    free_secret(&f->refresh_token);
    free_secret(&f->id_token);
    free(f->scope);
    free(f->sub);
    free(f->email);
    free(f->name);
    free(f->picture);
    free(f->hd);
    free(f->link_user);
    free(f->link_email);
    free_secret(&f->link_session);
    free(f->account_row);
    free(f->account_id);
    free(f->account_provider);
    if (f->body)
        yajl_tree_free(f->body);
    free(f);
}

struct flow *oa_flow_new(struct as_job *job, struct provider *p)
{
    struct flow *f = pc_xcalloc(1, sizeof *f);
    f->p = p;
    job->state = f;
    job->state_free = flow_free;
    return f;
}

static char *dup_or_null(const char *s)
{
    return s ? pc_xstrdup(s) : NULL;
}

/* ---- answers ---- */

void oa_base_url(struct pc_buf *b)
{
    size_t n = strlen(as_cfg.base_url);
    while (n > 0 && as_cfg.base_url[n - 1] == '/')
        n--;
    pc_buf_append(b, as_cfg.base_url, n);
}

/* [__Secure-]better-auth.state */
static void state_cookie_name(char *out, size_t cap)
{
    snprintf(out, cap, "%sbetter-auth.state", as_cfg.secure_cookies ? "__Secure-" : "");
}

/* The state cookie, or its deletion (value NULL). */
static void state_cookie(struct as_job *job, const char *state)
{
    struct pc_buf b = {0};
    char name[64], sv[STATE_LEN + PC_SIG_B64_LEN + 2];
    state_cookie_name(name, sizeof name);
    if (state)
        pc_sign_value(as_cfg.secret, state, sv);
    pc_set_cookie_value(&b, name, state ? sv : NULL, state ? STATE_COOKIE_AGE : 0,
                        as_cfg.secure_cookies);
    as_add_header(job, "Set-Cookie", b.data);
    pc_wipe(b.data, b.len);
    pc_buf_free(&b);
}

/* JSON status and code for an error of the callback. */
static int error_status(const char *error)
{
    static const struct {
        const char *error;
        int status;
    } map[] = {
        {"domain_not_allowed", 403}, {"email_not_verified", 403}, {"account_not_linked", 401},
        {"provider_unavailable", 502}, {"invalid_code", 401}, {"unable_to_get_user_info", 401},
        {"email_not_found", 401}, {"internal_server_error", 500}, {"database_unavailable", 503},
        {"shutting_down", 503}, {"invalid_token", 401}, {"user_email_not_found", 401},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(map); i++)
        if (strcmp(map[i].error, error) == 0)
            return map[i].status;
    return 400;
}

static const char *error_message(const char *error)
{
    if (strcmp(error, "domain_not_allowed") == 0)
        return "This account's email domain is not allowed to sign in";
    if (strcmp(error, "email_not_verified") == 0)
        return "The provider has not verified this account's email";
    if (strcmp(error, "account_not_linked") == 0)
        return "A user with this email exists and cannot be linked to this account";
    if (strcmp(error, "provider_unavailable") == 0)
        return "The sign-in provider did not answer, try again";
    if (strcmp(error, "invalid_token") == 0)
        return "Invalid token";
    if (strcmp(error, "user_email_not_found") == 0)
        return "User email not found";
    return "Sign-in failed";
}

/* Ends the flow with `error`: a JSON error for API callers, else a 302 to
 * the error URL (the state's errorCallbackURL, or BETTER_AUTH_URL/api/auth/
 * error) with ?error=. Returns true (answered). */
bool oa_fail(struct as_job *job, const char *error)
{
    struct flow *f = job->state;
    if (f == NULL || f->idtoken_mode || f->want_json) {
        char code[64];
        size_t i = 0;
        for (; error[i] && i < sizeof code - 1; i++)
            code[i] = (error[i] >= 'a' && error[i] <= 'z') ? (char)(error[i] - 32) : error[i];
        code[i] = '\0';
        /* as_error keeps the pointer for the access log: a static copy of
         * the known codes, else a generic one */
        static const char *const known[] = {
            "DOMAIN_NOT_ALLOWED", "EMAIL_NOT_VERIFIED", "ACCOUNT_NOT_LINKED",
            "PROVIDER_UNAVAILABLE", "INVALID_CODE", "UNABLE_TO_GET_USER_INFO",
            "EMAIL_NOT_FOUND", "STATE_MISMATCH", "STATE_NOT_FOUND", "NO_CODE",
            "OAUTH_PROVIDER_NOT_FOUND", "ISSUER_MISMATCH", "INTERNAL_SERVER_ERROR",
            "DATABASE_UNAVAILABLE", "SHUTTING_DOWN", "INVALID_TOKEN", "USER_EMAIL_NOT_FOUND"};
        const char *c = "OAUTH_ERROR";
        for (size_t k = 0; k < PC_ARRAY_LEN(known); k++)
            if (strcmp(known[k], code) == 0)
                c = known[k];
        return as_error(job, error_status(error), c, error_message(error));
    }
    struct pc_buf u = {0};
    if (f->error_url) {
        pc_buf_puts(&u, f->error_url);
    } else {
        oa_base_url(&u);
        pc_buf_puts(&u, "/api/auth/error");
    }
    pc_buf_putc(&u, strchr(pc_buf_cstr(&u), '?') ? '&' : '?');
    pc_buf_puts(&u, "error=");
    pc_url_encode_component(&u, error);
    job->err_code = "OAUTH_ERROR";
    as_redirect(job, u.data);
    pc_buf_free(&u);
    return true;
}

/* ---- loop <-> worker ---- */

/* Loop: ends the job with error. */
void oa_fail_on_loop(struct as_job *job, const char *error)
{
    oa_fail(job, error);
    as_server_finish(job);
}

/* Loop: the job goes back to a worker for handler (unless we are oa_stopping). */
void oa_to_worker(struct as_job *job, as_handler handler)
{
    if (oa_stopping) {
        oa_fail_on_loop(job, "shutting_down");
        return;
    }
    job->handler = handler;
    as_server_resume(job);
}

/* ---- code exchange (loop) ---- */

void oa_form_add(struct pc_buf *b, const char *k, const char *v)
{
    if (b->len)
        pc_buf_putc(b, '&');
    pc_buf_puts(b, k);
    pc_buf_putc(b, '=');
    pc_url_encode_component(b, v);
}

static void redirect_uri(struct pc_buf *b, const struct provider *p)
{
    oa_base_url(b);
    pc_buf_printf(b, "/api/auth/callback/%s", p->id);
}

char *oa_scope_join(const char *c)
{
    struct pc_buf sc = {0};
    while (*c) {
        size_t n = strcspn(c, " ");
        if (n) {
            if (sc.len)
                pc_buf_putc(&sc, ',');
            pc_buf_append(&sc, c, n);
        }
        c += n;
        while (*c == ' ')
            c++;
    }
    return sc.data;
}

void oa_token_answer(struct flow *f, yajl_val doc)
{
    free_secret(&f->access_token);
    free_secret(&f->refresh_token);
    free_secret(&f->id_token);
    free(f->scope);
    f->scope = NULL;
    f->access_token = oa_json_str(doc, "access_token");
    f->refresh_token = oa_json_str(doc, "refresh_token");
    f->id_token = oa_json_str(doc, "id_token");
    int64_t now = pc_now_ms();
    yajl_val v = pc_json_get(doc, "expires_in");
    if (YAJL_IS_INTEGER(v) && v->u.number.i > 0)
        f->access_exp_ms = now + v->u.number.i * 1000;
    v = pc_json_get(doc, "refresh_token_expires_in");
    if (YAJL_IS_INTEGER(v) && v->u.number.i > 0)
        f->refresh_exp_ms = now + v->u.number.i * 1000;
    v = pc_json_get(doc, "scope");
    if (YAJL_IS_STRING(v))
        f->scope = oa_scope_join(v->u.string);
}

static void on_token(void *arg, const struct as_http_resp *r, const char *err)
{
    struct as_job *job = arg;
    struct flow *f = job->state;
    if (err) {
        oa_fail_on_loop(job, err == AS_HTTP_ESHUTDOWN ? "shutting_down" : "provider_unavailable");
        return;
    }
    if (r->status >= 500) {
        pc_logr_warn(job->request_id, "oauth: %s: token endpoint answered %ld", f->p->id, r->status);
        oa_fail_on_loop(job, "provider_unavailable");
        return;
    }
    yajl_val doc = r->status == 200 ? pc_json_parse(r->body, r->len) : NULL;
    if (doc == NULL) {
        pc_logr_info(job->request_id, "oauth: %s: code exchange refused (HTTP %ld)", f->p->id, r->status);
        oa_fail_on_loop(job, "invalid_code");
        return;
    }
    oa_token_answer(f, doc);
    yajl_tree_free(doc);
    if (f->access_token == NULL || f->id_token == NULL) {
        pc_logr_warn(job->request_id, "oauth: %s: token answer without access_token or id_token", f->p->id);
        oa_fail_on_loop(job, "unable_to_get_user_info");
        return;
    }
    oa_verify_id_token(job);
}

/* Loop, keys known (or not): POST the code and the PKCE verifier. */
static void exchange_code(struct as_job *job)
{
    struct flow *f = job->state;
    struct provider *p = f->p;
    if (!oa_provider_ready(job, p))
        return;
    struct pc_buf form = {0}, ru = {0};
    redirect_uri(&ru, p);
    oa_form_add(&form, "grant_type", "authorization_code");
    oa_form_add(&form, "code", f->code);
    oa_form_add(&form, "code_verifier", f->verifier);
    oa_form_add(&form, "redirect_uri", ru.data);
    oa_form_add(&form, "client_id", p->client_id);
    oa_form_add(&form, "client_secret", p->client_secret);
    int rc = as_http_request(p->token_url, form.data, NULL, on_token, job);
    pc_wipe(form.data, form.len);
    pc_buf_free(&form);
    pc_buf_free(&ru);
    if (rc != 0)
        oa_fail_on_loop(job, "provider_unavailable");
}

static void callback_on_loop(struct as_job *job)
{
    struct flow *f = job->state;
    oa_provider_ensure(f->p, true, job, exchange_code);
}

static void idtoken_on_loop(struct as_job *job)
{
    struct flow *f = job->state;
    oa_provider_ensure(f->p, true, job, oa_verify_id_token);
}

/* ---- database (worker) ---- */

static void ms_text(int64_t ms, char out[32])
{
    snprintf(out, 32, "%lld", (long long)ms);
}

/* Answers the sign-in once the user is known: session, cookie, 302 or JSON. */
static bool sign_in_done(struct as_job *job, struct as_worker *w, struct as_user *u,
                         struct as_session *s, bool is_new)
{
    struct flow *f = job->state;
    as_session_cache_put(w, s, u);
    as_session_set_cookie(job, s->token, true);
    snprintf(job->user_id, sizeof job->user_id, "%s", u->id);
    if (f->idtoken_mode) {
        struct pc_buf b = {0};
        struct pc_jw jw = {.b = &b};
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "redirect");
        pc_jw_bool(&jw, false);
        pc_jw_key(&jw, "token");
        pc_jw_str(&jw, s->token);
        pc_jw_key(&jw, "user");
        as_jw_user(&jw, u);
        pc_jw_obj_end(&jw);
        return as_reply(job, 200, &b);
    }
    const char *to = is_new && f->new_user_url ? f->new_user_url : f->callback;
    return as_redirect(job, to);
}

/* Worker: the identity passed every rule. accounts.c writes the user,
 * account and session rows (as_account_link_oidc); then the answer. */
bool oa_finish_db(struct as_job *job, struct as_worker *w)
{
    struct flow *f = job->state;
    if (f->link)
        return oa_link_finish(job, w);
    const struct as_oidc_identity id = {
        .provider_id = f->p->id,
        .sub = f->sub,
        .email = f->email,
        .name = f->name,
        .picture = f->picture,
        .id_token = f->id_token,
        .access_token = f->access_token,
        .refresh_token = f->refresh_token,
        .scope = f->scope,
        .access_exp_ms = f->access_exp_ms,
        .refresh_exp_ms = f->refresh_exp_ms,
    };
    struct as_user u;
    struct as_session s;
    bool is_new;
    switch (as_account_link_oidc(job, w, &id, &u, &s, &is_new)) {
    case AS_LINK_OK:
        break;
    case AS_LINK_NOT_LINKED:
        return oa_fail(job, "account_not_linked");
    case AS_LINK_INTERNAL:
        return oa_fail(job, "internal_server_error");
    default:
        return oa_fail(job, "database_unavailable");
    }
    sign_in_done(job, w, &u, &s, is_new);
    as_user_free(&u);
    as_session_free(&s);
    return true;
}

/* ---- POST /sign-in/social ---- */

static void social_on_loop(struct as_job *job);
static bool social_start(struct as_job *job, struct as_worker *w);

/* An optional string member: NULL when absent; false (answered 400) when
 * present but not a string. */
static bool opt_str(struct as_job *job, yajl_val body, const char *key, const char **out)
{
    yajl_val v = pc_json_get(body, key);
    *out = NULL;
    if (v == NULL || YAJL_IS_NULL(v))
        return true;
    if (!YAJL_IS_STRING(v)) {
        char msg[160];
        snprintf(msg, sizeof msg, "[body.%s] Invalid input: expected string, received %s", key,
                 as_json_type_name(v));
        return !as_error(job, 400, "VALIDATION_ERROR", msg);
    }
    *out = v->u.string;
    return true;
}

/* POST /sign-in/social and /link-social: the same body (link-social has no
 * newUserCallbackURL) and the same two ways, a redirect or an ID token. */
static bool social_route(struct as_job *job, struct as_worker *w, bool link)
{
    struct as_session s = {0};
    struct as_user u = {0};
    if (link && !as_require_session(job, w, &s, &u))
        return true;
    yajl_val body = as_body(job, true);
    if (body == NULL) {
        as_session_free(&s);
        as_user_free(&u);
        return true;
    }
    const char *prov, *cb, *ecb, *ncb;
    bool ok = opt_str(job, body, "provider", &prov) && opt_str(job, body, "callbackURL", &cb) &&
              opt_str(job, body, "errorCallbackURL", &ecb) &&
              opt_str(job, body, "newUserCallbackURL", &ncb);
    if (ok && prov == NULL) {
        as_error(job, 400, "VALIDATION_ERROR",
                 "[body.provider] Invalid input: expected string, received undefined");
        ok = false;
    }
    if (!ok) {
        yajl_tree_free(body);
        as_session_free(&s);
        as_user_free(&u);
        return true;
    }
    struct provider *p = oa_provider_find(prov);
    if (p == NULL) {
        yajl_tree_free(body);
        as_session_free(&s);
        as_user_free(&u);
        return as_error(job, 404, "PROVIDER_NOT_FOUND", "Provider not found");
    }
    /* server.c's redirects_check already refused untrusted URLs */
    struct flow *f = oa_flow_new(job, p);
    f->body = body;
    f->error_url = dup_or_null(ecb);
    f->new_user_url = link ? NULL : dup_or_null(ncb);
    if (link) {
        f->link = true;
        f->link_user = u.id;
        f->link_email = u.email;
        f->link_session = s.token;
        u.id = u.email = s.token = NULL;
        as_session_free(&s);
        as_user_free(&u);
    }
    if (cb) {
        f->callback = pc_xstrdup(cb);
    } else {
        struct pc_buf b = {0};
        oa_base_url(&b);
        f->callback = b.data;
    }
    yajl_val idt = pc_json_get(body, "idToken");
    if (idt && !YAJL_IS_NULL(idt)) {
        yajl_val tok = pc_json_get(idt, "token");
        if (!YAJL_IS_OBJECT(idt) || !YAJL_IS_STRING(tok) || tok->u.string[0] == '\0')
            return as_error(job, 400, "VALIDATION_ERROR",
                            "[body.idToken.token] Invalid input: expected string");
        f->idtoken_mode = true;
        f->id_token = pc_xstrdup(tok->u.string);
        yajl_val n = pc_json_get(idt, "nonce");
        if (YAJL_IS_STRING(n) && n->u.string[0])
            f->nonce = pc_xstrdup(n->u.string);
        yajl_val at = pc_json_get(idt, "accessToken");
        if (YAJL_IS_STRING(at) && at->u.string[0])
            f->access_token = pc_xstrdup(at->u.string);
        yajl_val rt = pc_json_get(idt, "refreshToken");
        if (YAJL_IS_STRING(rt) && rt->u.string[0])
            f->refresh_token = pc_xstrdup(rt->u.string);
        pc_wipe(tok->u.string, strlen(tok->u.string));
        as_server_to_loop(job, idtoken_on_loop);
        return false;
    }
    pthread_mutex_lock(&p->mu);
    bool known = p->disc == P_OK;
    pthread_mutex_unlock(&p->mu);
    if (!known) {
        as_server_to_loop(job, social_on_loop);
        return false;
    }
    return social_start(job, w);
}

bool as_route_sign_in_social(struct as_job *job, struct as_worker *w)
{
    return social_route(job, w, false);
}

bool as_route_link_social(struct as_job *job, struct as_worker *w)
{
    return social_route(job, w, true);
}

static void social_ready(struct as_job *job)
{
    oa_to_worker(job, social_start);
}

static void social_on_loop(struct as_job *job)
{
    struct flow *f = job->state;
    oa_provider_ensure(f->p, false, job, social_ready);
}

/* The state JSON Better Auth 1.7 stores: additionalData's members first,
 * then its own keys in its order, undefined ones left out. */
static void state_value(struct pc_buf *b, const struct flow *f, const char *state,
                        const char *verifier, int64_t expires_ms)
{
    static const char *const internal[] = {"callbackURL", "codeVerifier", "errorURL",
                                           "newUserURL", "link", "serverContext", "expiresAt",
                                           "requestSignUp", "idTokenNonce", "oauthState"};
    struct pc_jw jw = {.b = b};
    pc_jw_obj_begin(&jw);
    yajl_val add = pc_json_get(f->body, "additionalData");
    if (YAJL_IS_OBJECT(add)) {
        for (size_t i = 0; i < add->u.object.len; i++) {
            bool skip = false;
            for (size_t k = 0; k < PC_ARRAY_LEN(internal); k++)
                skip = skip || strcmp(add->u.object.keys[i], internal[k]) == 0;
            yajl_val v = add->u.object.values[i];
            if (skip || !(YAJL_IS_STRING(v) || YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v) ||
                          YAJL_IS_INTEGER(v)))
                continue;
            pc_jw_key(&jw, add->u.object.keys[i]);
            if (YAJL_IS_STRING(v))
                pc_jw_str(&jw, v->u.string);
            else if (YAJL_IS_INTEGER(v))
                pc_jw_int(&jw, v->u.number.i);
            else
                pc_jw_bool(&jw, YAJL_IS_TRUE(v));
        }
    }
    pc_jw_key(&jw, "callbackURL");
    pc_jw_str(&jw, f->callback);
    pc_jw_key(&jw, "codeVerifier");
    pc_jw_str(&jw, verifier);
    if (f->error_url) {
        pc_jw_key(&jw, "errorURL");
        pc_jw_str(&jw, f->error_url);
    }
    if (f->new_user_url) {
        pc_jw_key(&jw, "newUserURL");
        pc_jw_str(&jw, f->new_user_url);
    }
    if (f->link) {
        /* the session token sealed as Better Auth seals it, so that either
         * side's callback can check the session that started the link */
        struct pc_secrets purpose;
        pc_secrets_purpose(&as_cfg.secrets, LINK_TOKEN_PURPOSE, &purpose);
        char *sealed = pc_seal(&purpose, f->link_session, strlen(f->link_session));
        pc_secrets_free(&purpose);
        pc_jw_key(&jw, "link");
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "userId");
        pc_jw_str(&jw, f->link_user);
        pc_jw_key(&jw, "email");
        pc_jw_str(&jw, f->link_email);
        pc_jw_key(&jw, "encryptedSessionToken");
        pc_jw_str(&jw, sealed);
        pc_jw_obj_end(&jw);
        free(sealed);
    }
    pc_jw_key(&jw, "expiresAt");
    pc_jw_int(&jw, expires_ms);
    yajl_val rsu = pc_json_get(f->body, "requestSignUp");
    if (YAJL_IS_TRUE(rsu) || YAJL_IS_FALSE(rsu)) {
        pc_jw_key(&jw, "requestSignUp");
        pc_jw_bool(&jw, YAJL_IS_TRUE(rsu));
    }
    pc_jw_key(&jw, "oauthState");
    pc_jw_str(&jw, state);
    pc_jw_obj_end(&jw);
}

/* Worker: the provider's endpoints are known (or not). Stores the state and
 * answers with the authorization URL. */
static bool social_start(struct as_job *job, struct as_worker *w)
{
    struct flow *f = job->state;
    struct provider *p = f->p;
    pthread_mutex_lock(&p->mu);
    char *auth_url = p->disc == P_OK ? pc_xstrdup(p->auth_url) : NULL;
    pthread_mutex_unlock(&p->mu);
    if (auth_url == NULL)
        return as_error(job, 503, "PROVIDER_UNAVAILABLE",
                        "The sign-in provider could not be reached, try again");
    char state[STATE_LEN + 1], verifier[VERIFIER_LEN + 1], id[33];
    pc_random_string(state, STATE_LEN, rand_alphabet);
    pc_random_string(verifier, VERIFIER_LEN, rand_alphabet);
    pc_random_alnum(id, 32);
    int64_t exp = pc_now_ms() + STATE_TTL_MS;
    char exps[32];
    ms_text(exp, exps);
    struct pc_buf value = {0}, ident = {0};
    state_value(&value, f, state, verifier, exp);
    pc_buf_printf(&ident, "auth-state:%s", state);
    const char *q[] = {id, ident.data, value.data, exps};
    PGresult *res = pc_db_exec(&w->db,
                               "INSERT INTO \"verification\" (\"id\", \"identifier\", \"value\", "
                               "\"expiresAt\", \"createdAt\", \"updatedAt\") VALUES ($1, $2, $3, "
                               TS(4) ", " NOW_MS ", " NOW_MS ")",
                               4, q);
    as_health_note_pg(res != NULL);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    pc_wipe(value.data, value.len);
    pc_buf_free(&value);
    pc_wipe(ident.data, ident.len);
    pc_buf_free(&ident);
    if (!ok) {
        free(auth_url);
        pc_wipe(verifier, sizeof verifier);
        pc_wipe(state, sizeof state);
        return as_fail_db(job);
    }

    /* PKCE S256: b64url(SHA-256(verifier)) */
    unsigned char dig[PC_SHA256_LEN];
    char challenge[PC_HASH_B64_LEN + 1];
    pc_sha256(verifier, VERIFIER_LEN, dig);
    pc_b64url_encode(dig, sizeof dig, challenge);
    pc_wipe(verifier, sizeof verifier);

    struct pc_buf url = {0}, q2 = {0}, scope = {0}, ru = {0};
    pc_buf_puts(&scope, p->scope);
    yajl_val extra = pc_json_get(f->body, "scopes");
    for (size_t i = 0; YAJL_IS_ARRAY(extra) && i < extra->u.array.len; i++) {
        yajl_val s = extra->u.array.values[i];
        if (YAJL_IS_STRING(s) && s->u.string[0] && strpbrk(s->u.string, " \t\r\n") == NULL)
            pc_buf_printf(&scope, " %s", s->u.string);
    }
    redirect_uri(&ru, p);
    oa_form_add(&q2, "response_type", "code");
    oa_form_add(&q2, "client_id", p->client_id);
    oa_form_add(&q2, "state", state);
    oa_form_add(&q2, "scope", scope.data);
    oa_form_add(&q2, "redirect_uri", ru.data);
    oa_form_add(&q2, "code_challenge", challenge);
    oa_form_add(&q2, "code_challenge_method", "S256");
    if (p->google) {
        oa_form_add(&q2, "include_granted_scopes", "true");
        if (oa_ndomains == 1)
            oa_form_add(&q2, "hd", oa_domains[0]);  /* a hint; the callback checks */
    }
    yajl_val hint = pc_json_get(f->body, "loginHint");
    if (YAJL_IS_STRING(hint) && hint->u.string[0])
        oa_form_add(&q2, "login_hint", hint->u.string);
    pc_buf_puts(&url, auth_url);
    pc_buf_putc(&url, strchr(auth_url, '?') ? '&' : '?');
    pc_buf_puts(&url, q2.data);
    free(auth_url);

    state_cookie(job, state);
    pc_wipe(state, sizeof state);
    yajl_val dr = pc_json_get(f->body, "disableRedirect");
    bool no_redirect = YAJL_IS_TRUE(dr) || (YAJL_IS_STRING(dr) && strcmp(dr->u.string, "true") == 0);
    if (!no_redirect)
        as_add_header(job, "Location", url.data);
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "url");
    pc_jw_str(&jw, url.data);
    pc_jw_key(&jw, "redirect");
    pc_jw_bool(&jw, !no_redirect);
    pc_jw_obj_end(&jw);
    pc_buf_free(&url);
    pc_buf_free(&q2);
    pc_buf_free(&scope);
    pc_buf_free(&ru);
    return as_reply(job, 200, &b);
}

/* ---- /callback/:provider ---- */

static const char callback_prefix[] = "/api/auth/callback/";

/* The signed state cookie's value, when present and well signed. */
static bool state_from_cookie(const struct as_job *job, char *out, size_t cap)
{
    char name[64];
    state_cookie_name(name, sizeof name);
    return as_signed_cookie(job, name, out, cap);
}

static bool accepts_json_only(const struct as_job *job)
{
    const char *a = as_header(job, "Accept");
    return a && strstr(a, "application/json") && !strstr(a, "text/html");
}

/* POST (form_post response mode): back to the GET, as Better Auth does, so
 * the SameSite=Lax state cookie comes along. */
static bool callback_post(struct as_job *job, const char *id)
{
    static const char *const keys[] = {"code", "error", "device_id", "error_description",
                                       "state", "user", "iss"};
    yajl_val body = as_body(job, false);
    if (body == NULL)
        return true;
    struct pc_buf u = {0}, q = {0};
    for (size_t i = 0; i < PC_ARRAY_LEN(keys); i++) {
        char *qv = as_query_param(job, keys[i]);
        yajl_val bv = pc_json_get(body, keys[i]);
        const char *v = qv ? qv : YAJL_IS_STRING(bv) ? bv->u.string : NULL;
        if (v)
            oa_form_add(&q, keys[i], v);
        free(qv);
    }
    yajl_tree_free(body);
    oa_base_url(&u);
    pc_buf_puts(&u, callback_prefix);
    pc_url_encode_component(&u, id);
    pc_buf_printf(&u, "?%s", q.len ? q.data : "");
    as_redirect(job, u.data);
    pc_wipe(u.data, u.len);
    pc_buf_free(&u);
    pc_wipe(q.data, q.len);
    pc_buf_free(&q);
    return true;
}

/* The state's "link" (link-social), when there is one: false when it is
 * malformed. A sealed session token that does not open leaves "" as the
 * session, which no session has: oa_link_finish then refuses the link, as
 * Better Auth does. */
static bool state_link(struct flow *f, yajl_val link)
{
    if (link == NULL)
        return true;
    if (!YAJL_IS_OBJECT(link))
        return false;
    yajl_val uid = pc_json_get(link, "userId");
    f->link = true;
    f->link_email = oa_json_str(link, "email");
    if (YAJL_IS_STRING(uid))
        f->link_user = pc_xstrdup(uid->u.string);
    else if (YAJL_IS_INTEGER(uid)) {    /* z.coerce.string() */
        char n[32];
        ms_text(uid->u.number.i, n);
        f->link_user = pc_xstrdup(n);
    }
    yajl_val enc = pc_json_get(link, "encryptedSessionToken");
    if (YAJL_IS_STRING(enc)) {
        struct pc_secrets purpose;
        size_t n;
        pc_secrets_purpose(&as_cfg.secrets, LINK_TOKEN_PURPOSE, &purpose);
        f->link_session = pc_unseal(&purpose, enc->u.string, &n);
        pc_secrets_free(&purpose);
        if (f->link_session == NULL)
            f->link_session = pc_xstrdup("");
    }
    return f->link_email != NULL && f->link_user != NULL;
}

/* Reads and consumes the state row. Returns true when the flow may go on
 * (f->callback, f->verifier ... filled); false when answered. */
static bool consume_state(struct as_job *job, struct as_worker *w, struct flow *f,
                          const char *state)
{
    struct pc_buf ident = {0};
    pc_buf_printf(&ident, "auth-state:%s", state);
    const char *q[] = {ident.data};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT \"id\", \"value\", \"expiresAt\" < now() FROM "
                               "\"verification\" WHERE \"identifier\" = $1 "
                               "ORDER BY \"createdAt\" DESC LIMIT 1",
                               1, q);
    pc_wipe(ident.data, ident.len);
    pc_buf_free(&ident);
    as_health_note_pg(res != NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return !oa_fail(job, "database_unavailable");
    }
    if (PQntuples(res) != 1) {
        PQclear(res);
        return !oa_fail(job, "state_mismatch");
    }
    char row_id[64];
    snprintf(row_id, sizeof row_id, "%s", PQgetvalue(res, 0, 0));
    bool row_expired = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    const char *val = PQgetvalue(res, 0, 1);
    yajl_val v = pc_json_parse(val, strlen(val));
    PQclear(res);
    yajl_val cb = pc_json_get(v, "callbackURL"), cv = pc_json_get(v, "codeVerifier");
    yajl_val ex = pc_json_get(v, "expiresAt"), os = pc_json_get(v, "oauthState");
    if (!YAJL_IS_STRING(cb) || !YAJL_IS_STRING(cv) || !YAJL_IS_NUMBER(ex)) {
        if (v)
            yajl_tree_free(v);
        return !oa_fail(job, "internal_server_error");
    }
    f->callback = pc_xstrdup(cb->u.string);
    f->verifier = pc_xstrdup(cv->u.string);
    f->error_url = oa_json_str(v, "errorURL");
    f->new_user_url = oa_json_str(v, "newUserURL");
    bool link_bad = !state_link(f, pc_json_get(v, "link"));
    /* The row may have been written by a Better Auth server, whose check
     * lets javascript: and other schemes through: check the targets again. */
    if (f->error_url && !as_redirect_allowed(f->error_url)) {
        free(f->error_url);
        f->error_url = NULL;
    }
    bool targets_bad = !as_redirect_allowed(f->callback) ||
                       (f->new_user_url && !as_redirect_allowed(f->new_user_url));
    int64_t expires = YAJL_IS_INTEGER(ex) ? ex->u.number.i : (int64_t)ex->u.number.d;
    bool os_bad = os && (!YAJL_IS_STRING(os) || strcmp(os->u.string, state) != 0);
    yajl_tree_free(v);
    if (link_bad)
        return !oa_fail(job, "internal_server_error");
    /* The state the browser carries must be the one this browser started
     * (the signed cookie); a mismatch leaves the row for its owner. */
    char cookie_state[STATE_LEN * 4];
    bool cookie_ok = state_from_cookie(job, cookie_state, sizeof cookie_state) &&
                     strcmp(cookie_state, state) == 0;
    pc_wipe(cookie_state, sizeof cookie_state);
    if (os_bad || !cookie_ok)
        return !oa_fail(job, "state_mismatch");
    const char *dq[] = {row_id};
    res = pc_db_exec(&w->db, "DELETE FROM \"verification\" WHERE \"id\" = $1", 1, dq);
    bool deleted = pc_db_ok(res) && strcmp(PQcmdTuples(res), "1") == 0;
    bool db_ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    if (!db_ok)
        return !oa_fail(job, "database_unavailable");
    state_cookie(job, NULL);
    /* Two callbacks raced for one state: the second one loses. */
    if (!deleted || row_expired || expires < pc_now_ms())
        return !oa_fail(job, "state_mismatch");
    if (targets_bad)
        return !oa_fail(job, "invalid_callback_url");
    return true;
}

bool as_route_oauth_callback(struct as_job *job, struct as_worker *w)
{
    const char *id = job->path + strlen(callback_prefix);
    if (job->method != EVHTTP_REQ_GET)
        return callback_post(job, id);
    struct flow *f = oa_flow_new(job, oa_provider_find(id));
    f->want_json = accepts_json_only(job);
    char *state = as_query_param(job, "state");
    if (state == NULL || state[0] == '\0' || strlen(state) > 512) {
        free(state);
        return oa_fail(job, "state_not_found");
    }
    bool go = consume_state(job, w, f, state);
    pc_wipe(state, strlen(state));
    free(state);
    if (!go)
        return true;
    char *error = as_query_param(job, "error");
    if (error) {
        /* the provider's own error code, passed on as Better Auth does */
        bool clean = error[0] != '\0' && strlen(error) < 64;
        for (const char *c = error; clean && *c; c++)
            clean = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
                    (*c >= '0' && *c <= '9');
        oa_fail(job, clean ? error : "invalid_callback_request");
        free(error);
        return true;
    }
    f->code = as_query_param(job, "code");
    if (f->code == NULL || f->code[0] == '\0')
        return oa_fail(job, "no_code");
    if (f->p == NULL)
        return oa_fail(job, "oauth_provider_not_found");
    char *iss = as_query_param(job, "iss");
    bool iss_bad = iss && strcmp(iss, f->p->issuer) != 0;
    free(iss);
    if (iss_bad)
        return oa_fail(job, "issuer_mismatch");
    as_server_to_loop(job, callback_on_loop);
    return false;
}

/* ---- GET /error ---- */

bool as_route_oauth_error_page(struct as_job *job, struct as_worker *w)
{
    char *error = as_query_param(job, "error");
    struct pc_buf b = {0};
    pc_buf_puts(&b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in error"
                    "</title></head><body><h1>Sign-in failed</h1><p>Error: <code>");
    const char *e = error ? error : "unknown";
    for (size_t i = 0; e[i] && i < 100; i++) {
        char c = e[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-')
            pc_buf_putc(&b, c);
    }
    pc_buf_puts(&b, "</code></p></body></html>");
    free(error);
    job->content_type = "text/html; charset=utf-8";
    return as_reply(job, 200, &b);
}
