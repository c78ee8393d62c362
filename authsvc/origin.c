/* Portcullis - MIT licence. See LICENSE.
 *
 * origin.c: trusted origins (the origin of BETTER_AUTH_URL, TRUSTED_ORIGINS,
 * BETTER_AUTH_TRUSTED_ORIGINS), and the two checks that use them on every
 * state-changing request (better-auth-compat.md §5): the Origin/Referer of a
 * cookie-bearing request, and every redirect target in the body or query
 * (callbackURL, redirectTo, errorCallbackURL, newUserCallbackURL); and CORS:
 * the answer to a preflight and the Access-Control-* headers of every answer
 * to a trusted Origin.
 *
 * URLs are read as a browser reads them (lib/url.c), so the host checked is
 * the host a browser goes to; only http and https URLs and safe root-relative
 * paths are redirect targets, whatever the patterns say.
 */
#include "authsvc.h"
#include "origin.h"
#include "job.h"
#include "../lib/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static struct pc_origin_list trusted;

static int add_list(const char *var, const char *s)
{
    char err[200];
    if (pc_origin_list_add(&trusted, s, err, sizeof err) != 0) {
        fprintf(stderr, "authsvc: configuration error: %s: %s\n", var, err);
        return -1;
    }
    return 0;
}

int as_origins_load(void)
{
    as_origins_free();
    if (add_list("BETTER_AUTH_URL", as_cfg.base_origin) != 0 ||
        add_list("TRUSTED_ORIGINS", as_cfg.trusted_origins) != 0 ||
        add_list("BETTER_AUTH_TRUSTED_ORIGINS", getenv("BETTER_AUTH_TRUSTED_ORIGINS")) != 0) {
        as_origins_free();
        return -1;
    }
    return 0;
}

void as_origins_free(void)
{
    pc_origin_list_free(&trusted);
}

bool as_origin_trusted(const char *origin, size_t n)
{
    return pc_origin_list_trusts(&trusted, origin, n);
}

bool as_redirect_allowed(const char *url)
{
    size_t n = strlen(url);
    if (n > 0 && url[0] == '/')
        return pc_url_relative_ok(url, n);
    /* what the browser would drop or stop at (tabs, newlines, spaces) and
     * what a Location header cannot carry: refused outright */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return false;
    struct pc_url u;
    return pc_url_parse(url, n, &u) == PC_URL_OK && pc_origin_list_match(&trusted, &u);
}

/* Better Auth's origin check for state-changing requests that carry a
 * cookie (better-auth-compat.md §5). Returns true when the request may go on. */
bool as_origin_check(struct as_job *job)
{
    if (job->method == EVHTTP_REQ_GET || job->method == EVHTTP_REQ_HEAD ||
        job->method == EVHTTP_REQ_OPTIONS)
        return true;
    /* Not for the internal routes (the x-service-auth secret is their
     * credential; a cookie means nothing to them), nor for the provider's
     * form_post to the callback: it changes nothing, it only turns into the
     * GET, which checks the state and its cookie. */
    if (pc_starts_with(job->path, "/api/internal/") ||
        pc_starts_with(job->path, "/api/auth/callback/"))
        return true;
    bool has_cookie = as_header(job, "Cookie") != NULL;
    bool is_form_route = strcmp(job->path, "/api/auth/sign-in/email") == 0 ||
                         strcmp(job->path, "/api/auth/sign-up/email") == 0;
    const char *origin = as_header(job, "Origin");
    const char *referer = as_header(job, "Referer");
    if (!has_cookie) {
        if (!is_form_route)
            return true;
        /* formCsrfMiddleware: browsers' cross-site navigations can't log in */
        const char *site = as_header(job, "Sec-Fetch-Site");
        const char *mode = as_header(job, "Sec-Fetch-Mode");
        if (site && mode && strcmp(site, "cross-site") == 0 && strcmp(mode, "navigate") == 0) {
            as_error(job, 403, "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED",
                     "Cross-site navigation login blocked");
            return false;
        }
        if (origin == NULL && referer == NULL)
            return true;
    }
    const char *src = origin ? origin : referer;
    if (src == NULL || strcmp(src, "null") == 0) {
        as_error(job, 403, "MISSING_OR_NULL_ORIGIN", "Missing or null Origin");
        return false;
    }
    /* an Origin, or a Referer's origin, as the browser reads it */
    if (!as_origin_trusted(src, strlen(src))) {
        as_error(job, 403, "INVALID_ORIGIN", "Invalid origin");
        return false;
    }
    return true;
}

/* The origin check's second half: on state-changing requests every
 * redirect target in the body or the query must be a safe relative path or
 * an http(s) URL of a trusted origin (better-auth-compat.md §5). */
bool as_redirects_check(struct as_job *job)
{
    static const struct {
        const char *field, *code, *msg;
    } fields[] = {
        {"callbackURL", "INVALID_CALLBACK_URL", "Invalid callbackURL"},
        {"redirectTo", "INVALID_REDIRECT_URL", "Invalid redirectURL"},
        {"errorCallbackURL", "INVALID_ERROR_CALLBACK_URL", "Invalid errorCallbackURL"},
        {"newUserCallbackURL", "INVALID_NEW_USER_CALLBACK_URL", "Invalid newUserCallbackURL"},
    };
    if (job->method == EVHTTP_REQ_GET)
        return true;
    /* the body as the route will read it (as_body): a form, else JSON */
    const char *ct = as_header(job, "Content-Type");
    size_t ctn = ct ? strcspn(ct, ";") : 0;
    while (ctn > 0 && ct[ctn - 1] == ' ')
        ctn--;
    bool form = ctn == 33 && pc_strnieq(ct, "application/x-www-form-urlencoded", 33);
    struct evkeyvalq fq;
    TAILQ_INIT(&fq);
    yajl_val body = NULL;
    if (form && job->body_len)
        (void)evhttp_parse_query_str(job->body, &fq);
    else if (job->body_len)
        body = pc_json_parse(job->body, job->body_len);
    bool ok = true;
    for (size_t i = 0; ok && i < PC_ARRAY_LEN(fields); i++) {
        char *q = as_query_param(job, fields[i].field);
        yajl_val b = pc_json_get(body, fields[i].field);
        bool bad = (q && !as_redirect_allowed(q)) ||
                   (YAJL_IS_STRING(b) && !as_redirect_allowed(b->u.string));
        /* every occurrence in a form: which one a reader takes is not ours to guess */
        for (struct evkeyval *kv = fq.tqh_first; !bad && kv; kv = kv->next.tqe_next)
            bad = strcmp(kv->key, fields[i].field) == 0 && !as_redirect_allowed(kv->value);
        if (bad) {
            as_error(job, 403, fields[i].code, fields[i].msg);
            ok = false;
        }
        free(q);
    }
    evhttp_clear_headers(&fq);
    if (body)
        yajl_tree_free(body);
    return ok;
}

/* ---- CORS (loop thread) ---- */

void as_cors_preflight(struct as_job *job)
{
    job->status = 204;
    job->out_empty = true;
    const char *origin = as_header(job, "Origin");
    if (origin && as_origin_trusted(origin, strlen(origin))) {
        as_add_header(job, "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        const char *rh = as_header(job, "Access-Control-Request-Headers");
        as_add_header(job, "Access-Control-Allow-Headers",
                      rh ? rh : "Content-Type, Authorization");
        as_add_header(job, "Access-Control-Max-Age", "600");
    }
}

void as_cors_add(struct evkeyvalq *oh, const struct as_job *job)
{
    const char *origin = as_header(job, "Origin");
    if (origin == NULL || !as_origin_trusted(origin, strlen(origin)))
        return;
    evhttp_add_header(oh, "Access-Control-Allow-Origin", origin);
    evhttp_add_header(oh, "Access-Control-Allow-Credentials", "true");
    evhttp_add_header(oh, "Vary", "Origin");
}
