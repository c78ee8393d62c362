/* Portcullis - MIT licence. See LICENSE.
 *
 * oauth_int.h: what the three OIDC sign-in files share, private to them:
 *   oauth_provider.c  providers from the environment (GOOGLE_*, OIDC_*,
 *                     ALLOWED_DOMAINS), discovery and the JWKS cache (loop)
 *   oauth_identity.c  the ID token, userinfo and the domain rules (loop)
 *   oauth_flow.c      sign-in/social and link-social, state and PKCE, the
 *                     code exchange, the callback, the answers; a sign-in's
 *                     rows are accounts.c's (as_account_link_oidc)
 *   oauth_link.c      a link's rows (link-social, its callback) and
 *                     account-info
 * oauth.h has the module's public API and the thread map of a sign-in.
 */
#ifndef AS_OAUTH_INT_H
#define AS_OAUTH_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "job.h"
#include "oauth.h"
#include "../lib/jws.h"

#define STATE_LEN 32
#define VERIFIER_LEN 128
#define STATE_TTL_MS 600000         /* the verification row: 10 min */
#define STATE_COOKIE_AGE 300        /* the state cookie: 5 min */
#define RETRY_MS 5000               /* after a failed discovery or JWKS fetch */
#define KEYS_REFETCH_MIN_MS 10000   /* an unknown kid refetches at most this often */
#define LEEWAY_S 60                 /* clock skew allowed on exp/nbf */
/* derivePurposeKey's purpose of the link state's encryptedSessionToken */
#define LINK_TOKEN_PURPOSE "oauth-link-session-token"

enum pstate { P_NONE = 0, P_RUNNING, P_OK, P_FAILED };
/* A job waiting on a provider's discovery or keys (loop thread). */
struct waiter {
    struct as_job *job;
    void (*k)(struct as_job *);     /* runs when the wait is over, either way */
    bool need_keys;
    struct waiter *next;
};
struct provider {
    char id[64];                /* "google" or the OIDC_PROVIDERS name */
    bool google;                /* Google's rules: hd claim, both issuer forms */
    char *client_id, *client_secret;    /* owned */
    char *issuer;               /* expected iss; OIDC: also the discovery base */
    char *scope;                /* default scopes, space separated */
    /* endpoints: fixed for Google, discovered for OIDC (written on the loop,
     * read by workers for auth_url: guarded by mu) */
    pthread_mutex_t mu;
    char *auth_url, *token_url, *userinfo_url, *jwks_url;
    enum pstate disc;           /* discovery (P_OK from the start for Google) */
    int64_t disc_retry_ms;
    /* loop thread only */
    enum pstate keys;
    int64_t keys_at_ms, keys_retry_ms;
    struct pc_jwks jwks;
    struct waiter *waiters;
};
struct flow {
    struct provider *p;
    bool idtoken_mode;          /* POST /sign-in/social with idToken: JSON answers */
    bool want_json;             /* callback called with Accept: application/json */
    char *callback, *error_url, *new_user_url;  /* redirect targets */
    char *code, *verifier, *nonce;              /* secrets: wiped */
    char *access_token, *refresh_token, *id_token;  /* secrets: wiped */
    char *scope;                /* comma-joined, as Better Auth stores it */
    int64_t access_exp_ms, refresh_exp_ms;      /* 0: unknown */
    bool keys_refetched;        /* an unknown kid already refetched the JWKS */
    /* the verified identity */
    char *sub, *email, *name, *picture, *hd;
    bool email_verified;
    yajl_val body;              /* sign-in/social: the request body */
    /* link-social (the state's "link"): the signed-in user the identity is
     * linked to, and (callback) the session that started it, still live */
    bool link;
    char *link_user, *link_email;
    char *link_session;         /* secret: wiped; NULL when the state had none */
    /* account-info: the account row */
    char *account_row, *account_id, *account_provider;
};

/* ---- providers (oauth_provider.c) ---- */

extern char **oa_domains;       /* ALLOWED_DOMAINS, lower-cased */
extern size_t oa_ndomains;
extern bool oa_stopping;        /* loop: as_oauth_stop ran */

/** Any thread: the configured provider named id, or NULL. */
struct provider *oa_provider_find(const char *id);
/** True when ALLOWED_DOMAINS is empty or lists d (case-insensitive). */
bool oa_domain_allowed(const char *d);
/** Loop: false (and the job answered) when we are stopping or p has no
 * discovery document or keys to work with. */
bool oa_provider_ready(struct as_job *job, const struct provider *p);
/** Loop: calls k(job) once p's endpoints (and, with need_keys, its JWKS) are
 * known, or known to be unavailable for now. k checks which. */
void oa_provider_ensure(struct provider *p, bool need_keys, struct as_job *job,
                        void (*k)(struct as_job *));
/** A string member of obj as a heap copy, or NULL. */
char *oa_json_str(yajl_val obj, const char *key);

/* ---- identity (oauth_identity.c) ---- */

/** Loop: checks the ID token (signature against the provider's JWKS, iss,
 * aud, exp, nonce), takes the identity from it (userinfo when it lacks the
 * email), applies the domain rules, then sends the job to a worker for
 * oa_finish_db, or ends it with an error. */
void oa_verify_id_token(struct as_job *job);

/* ---- the flow (oauth_flow.c) ---- */

/** Loop: ends the job with error (Better Auth's error redirect or JSON). */
void oa_fail_on_loop(struct as_job *job, const char *error);
/** Loop: the job goes back to a worker for handler (unless stopping). */
void oa_to_worker(struct as_job *job, as_handler handler);
/** Worker: the rows (as_account_link_oidc), the session cookie, the answer;
 * for a link, oa_link_finish's. */
bool oa_finish_db(struct as_job *job, struct as_worker *w);
/** Ends the flow with error (lower-case, Better Auth's callback code): JSON
 * for API callers, else the 302 to the error URL. Returns true (answered). */
bool oa_fail(struct as_job *job, const char *error);
/** The flow's state, freed with the job. */
struct flow *oa_flow_new(struct as_job *job, struct provider *p);
/** Parses a token endpoint's answer (code exchange or refresh) into f:
 * access, refresh and ID tokens, expiries, scope. */
void oa_token_answer(struct flow *f, yajl_val doc);
/** "openid email" -> "openid,email" (heap), as Better Auth stores scopes. */
char *oa_scope_join(const char *spaced);
/** BETTER_AUTH_URL without its trailing slashes. */
void oa_base_url(struct pc_buf *b);
/** Adds k=v, URL-encoded, to a form or query. */
void oa_form_add(struct pc_buf *b, const char *k, const char *v);

/* ---- links and account-info (oauth_link.c) ---- */

/** Worker: a verified identity for a link (link-social's idToken, or the
 * callback of its redirect): Better Auth's rules, the account row, the
 * answer. */
bool oa_link_finish(struct as_job *job, struct as_worker *w);

#endif
