/* Portcullis - MIT licence. See LICENSE.
 *
 * oauth.h: sign-in with Google or any OpenID Connect provider
 * (oauth_provider.c, oauth_identity.c, oauth_flow.c; their private header is
 * oauth_int.h; a sign-in's rows are accounts.c's as_account_link_oidc),
 * linking a provider account to the signed-in user and reading what the
 * provider says of it (link-social, account-info: oauth_link.c), and the HTTP
 * client it rides on (oauth_http.c: libcurl multi driven by the
 * authsvc event loop, so a slow provider never holds a thread).
 *
 * A sign-in moves between threads like this:
 *
 *   worker  POST /sign-in/social: state row + signed state cookie -> {url}
 *   worker  GET /callback/:id: state row + cookie checked and consumed
 *   loop    discovery / JWKS (cached), code exchange, ID token verified,
 *           userinfo when the ID token lacks the email, domain rules
 *   worker  user / account / session rows, cookie, 302
 *
 * POST /link-social takes the same path with the state's "link" (the user,
 * and the session that started it, sealed); its callback ends in
 * oa_link_finish: an account row for that user, no new session.
 * GET /account-info: worker (the account row) -> loop (a refresh when the
 * access token has expired; the userinfo of an OIDC provider) -> worker.
 *
 * Jobs go to the loop with as_server_to_loop() and back with
 * as_server_resume(); the loop answers failures itself with
 * as_server_finish().
 */
#ifndef AS_OAUTH_H
#define AS_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct as_job;
struct as_worker;

/** A job's next step on the loop thread (as_job.hop): set by
 * as_server_to_loop, run and cleared by server.c's completion handler. */
struct as_loop_hop {
    void (*fn)(struct as_job *);
};

/* ---- HTTP client (oauth_http.c), loop thread only ---- */

/** A finished exchange. body is NUL-terminated; both belong to the client
 * and are valid only during the callback. */
struct as_http_resp {
    long status;            /* HTTP status */
    const char *body;       /* response body ("" when empty) */
    size_t len;             /* body length */
};

/** Called exactly once per request, on the loop thread: errstr is NULL on a
 * completed exchange (any status), else one of the AS_HTTP_E* constants. */
typedef void (*as_http_cb)(void *arg, const struct as_http_resp *r, const char *errstr);

extern const char *const AS_HTTP_ETIMEOUT;     /* OAUTH_HTTP_TIMEOUT_MS passed */
extern const char *const AS_HTTP_EFAILED;      /* DNS, connect, TLS, protocol */
extern const char *const AS_HTTP_ETOOBIG;      /* body over 1 MiB */
extern const char *const AS_HTTP_ESHUTDOWN;    /* authsvc is stopping */

/** Sets the client up on base. Returns 0 or -1. */
int as_http_init(struct event_base *base, int64_t timeout_ms);
/** Aborts every transfer (their callbacks run with AS_HTTP_ESHUTDOWN) and
 * refuses new ones. */
void as_http_shutdown(void);
/** Starts GET url (form NULL) or POST url with an x-www-form-urlencoded
 * body form. bearer, when not NULL, goes in Authorization. Strings are
 * copied. Returns 0 (cb will run later, never from inside this call), or -1
 * when the client is shut down or curl refused (cb will not run). */
int as_http_request(const char *url, const char *form, const char *bearer, as_http_cb cb,
                    void *arg);

/* ---- providers (oauth_provider.c) ---- */

/** Reads and validates GOOGLE_*, OIDC_*, ALLOWED_DOMAINS (called by
 * as_config_load). Returns 0, or -1 after printing the variable. */
int as_oauth_config_load(void);
void as_oauth_config_free(void);
/** Loop thread, before the workers start: HTTP client, then discovery of
 * the generic OIDC providers in the background. */
void as_oauth_start(struct event_base *base);
/** Loop thread, after the worker pool is gone: answers every parked
 * sign-in with 503 and shuts the HTTP client down. */
void as_oauth_stop(void);

/* ---- routes (worker threads; job.h contract) ---- */
bool as_route_sign_in_social(struct as_job *job, struct as_worker *w);
bool as_route_link_social(struct as_job *job, struct as_worker *w);
bool as_route_account_info(struct as_job *job, struct as_worker *w);
bool as_route_oauth_callback(struct as_job *job, struct as_worker *w);
bool as_route_oauth_error_page(struct as_job *job, struct as_worker *w);

#endif
