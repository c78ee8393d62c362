/* Portcullis - MIT licence. See LICENSE.
 *
 * accounts.h: the routes that create or change a user (accounts.c): email
 * sign-up and sign-in, update-user, change-password. Every path that writes
 * user, account and session rows together lives in accounts.c.
 */
#ifndef AS_ACCOUNTS_H
#define AS_ACCOUNTS_H

#include <stdbool.h>
#include <stdint.h>

struct as_job;
struct as_worker;

/* ---- routes (worker threads; job.h contract) ---- */
bool as_route_sign_up(struct as_job *job, struct as_worker *w);
bool as_route_sign_in(struct as_job *job, struct as_worker *w);
bool as_route_update_user(struct as_job *job, struct as_worker *w);
bool as_route_change_password(struct as_job *job, struct as_worker *w);

struct as_user;
/** Worker: u's fields changed (name, email, emailVerified): rewrites the
 * Redis entries of every live session of u and announces them, so gateways
 * drop their L1 copies. */
void as_user_cache_refresh(struct as_worker *w, const struct as_user *u);

struct as_user;
struct as_session;

/** An identity an OIDC provider vouched for, past the domain rules
 * (oauth_identity.c). Strings belong to the caller; NULL: absent. */
struct as_oidc_identity {
    const char *provider_id;    /* account.providerId */
    const char *sub;            /* account.accountId */
    const char *email, *name, *picture;
    const char *id_token, *access_token, *refresh_token;
    const char *scope;          /* comma-joined, as Better Auth stores it */
    int64_t access_exp_ms, refresh_exp_ms;  /* 0: unknown */
};

enum as_link {
    AS_LINK_OK = 0,         /* *u and *s filled (free them) */
    AS_LINK_NOT_LINKED,     /* a local user has the email but has not verified it */
    AS_LINK_DB_DOWN,        /* PostgreSQL failed */
    AS_LINK_INTERNAL,       /* the insert raced twice */
};

/** Worker: the user, account and session rows of an OIDC sign-in. An
 * existing account gets its tokens refreshed; an existing user by email is
 * linked when both sides verified the email (Better Auth 1.7's
 * requireLocalEmailVerified); otherwise a new user and account in one
 * transaction. Then a session. Sets no answer; on anything but AS_LINK_OK u
 * and s are left empty. *is_new: the user was created now. */
/** Worker: an account row for id owned by user_id. 1 inserted, 0 not (its
 * random id taken), -1 PostgreSQL failed. */
PC_MUSTCHECK int as_account_insert_oidc(struct as_worker *w, const char *user_id,
                                        const struct as_oidc_identity *id);
enum as_link as_account_link_oidc(struct as_job *job, struct as_worker *w,
                                  const struct as_oidc_identity *id, struct as_user *u,
                                  struct as_session *s, bool *is_new);

/** Any thread: Better Auth's (zod's) email check. */
bool as_email_valid(const char *s);

#endif
