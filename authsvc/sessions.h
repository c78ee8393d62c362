/* Portcullis - MIT licence. See LICENSE.
 *
 * sessions.h: Better Auth sessions (sessions.c): tokens and signed cookies,
 * lookup with expiry and sliding refresh, the Redis write-through cache, the
 * session routes, and revocation (PostgreSQL first, then Redis DEL +
 * PUBLISH; the listener relays what Redis missed).
 */
#ifndef AS_SESSIONS_H
#define AS_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../lib/util.h"

struct as_job;
struct as_worker;
struct pc_jw;
struct pc_redis;
struct pg_result;

struct as_user {
    char *id, *name, *email, *image;    /* owned; image may be NULL */
    bool email_verified;
    int64_t created_at, updated_at;     /* epoch ms */
    bool two_factor_known;              /* two_factor read (TWO_FACTOR_ENABLED): the JSON
                                         * has twoFactorEnabled, as Better Auth's does */
    bool two_factor;                    /* "twoFactorEnabled" (null: false) */
};

struct as_session {
    char *id, *token, *user_id;         /* owned */
    char *ip, *ua;                      /* owned, may be NULL */
    int64_t expires_at, created_at, updated_at; /* epoch ms */
};

enum as_lookup {
    AS_LOOKUP_OK = 0,       /* a live session */
    AS_LOOKUP_NONE,         /* no (valid) session */
    AS_LOOKUP_UNAVAILABLE,  /* PostgreSQL unreachable: answer 503 */
};

/* ---- routes (worker threads; job.h contract) ---- */
bool as_route_get_session(struct as_job *job, struct as_worker *w);
bool as_route_list_sessions(struct as_job *job, struct as_worker *w);
bool as_route_sign_out(struct as_job *job, struct as_worker *w);
bool as_route_revoke_session(struct as_job *job, struct as_worker *w);
bool as_route_revoke_sessions(struct as_job *job, struct as_worker *w);
bool as_route_revoke_other_sessions(struct as_job *job, struct as_worker *w);

/* ---- rows and their JSON (any thread) ---- */
void as_user_free(struct as_user *u);
void as_session_free(struct as_session *s);
/** Fills u from row `row` of res, columns starting at col (PC_BA_USER_COLS). */
void as_user_from_row(struct as_user *u, const struct pg_result *res, int row, int col);
void as_jw_user(struct pc_jw *w, const struct as_user *u);
/** Fills u's two_factor from column col of row (a COALESCEd boolean). */
void as_user_two_factor_from_row(struct as_user *u, const struct pg_result *res, int row, int col);
/** The user's members alone, into an open object (JWT claims). */
void as_jw_user_fields(struct pc_jw *w, const struct as_user *u);
void as_jw_session(struct pc_jw *w, const struct as_session *s);

/* ---- the caller's session (worker) ---- */

/** Resolves the caller's session from the cookie or Authorization header,
 * with Better Auth's expiry and sliding refresh (which may add Set-Cookie).
 * On AS_LOOKUP_OK s and u are filled (free them). */
enum as_lookup as_session_resolve(struct as_job *job, struct as_worker *w,
                                  struct as_session *s, struct as_user *u);
/** Resolves, or sets a 401/503 answer itself; true when a session is there. */
bool as_require_session(struct as_job *job, struct as_worker *w, struct as_session *s,
                        struct as_user *u);
/** What as_session_lookup_token found. */
enum as_token_lookup {
    AS_TOKEN_OK = 0,        /* a live session: *out filled */
    AS_TOKEN_INVALID,       /* not a session token, bad signature, no such row */
    AS_TOKEN_JWT,           /* a JWT, not a session token */
    AS_TOKEN_EXPIRED,       /* expired: the row is deleted and revoked; *out filled */
    AS_TOKEN_UNAVAILABLE,   /* PostgreSQL failed */
};
struct as_token_session {
    char *id, *user_id;     /* heap (as_token_session_free) */
    int64_t expires_at;     /* epoch ms, floored */
};
/** Worker: a session token as the bearer plugin takes it (signed
 * "token.sig", maybe percent-encoded, or raw unless BEARER_REQUIRE_SIGNATURE;
 * lib/bearer.c tells them apart), looked up with no refresh and no cache
 * (/api/internal/validate). An expired row is deleted and revoked, as a
 * session lookup does. */
enum as_token_lookup as_session_lookup_token(struct as_worker *w, const char *in,
                                             struct as_token_session *out);
void as_token_session_free(struct as_token_session *t);
/** Reads the value of signed cookie name (Better Auth's "value.sig", maybe
 * URL-encoded). True, with tok filled, when present and correctly signed. */
bool as_signed_cookie(const struct as_job *job, const char *name, char *tok, size_t cap);

/* ---- making sessions (worker) ---- */

/** Inserts a session row for user_id. Returns 0, or -1 (database down). */
PC_MUSTCHECK int as_session_create(struct as_job *job, struct as_worker *w, const char *user_id,
                                   bool remember, struct as_session *s);
/** Writes the session through to Redis (best effort). */
void as_session_cache_put(struct as_worker *w, const struct as_session *s, const struct as_user *u);
/** Sets the session cookie(s), set-auth-token and the expose header. */
void as_session_set_cookie(struct as_job *job, const char *token, bool remember);
/** Sets one of Better Auth's cookies: signed_value NULL and max_age 0
 * expire it; max_age < 0: a browser-session cookie. */
void as_set_cookie(struct as_job *job, const char *name, const char *signed_value,
                   int64_t max_age);
/** Younger than SESSION_FRESH_AGE_SECONDS (Better Auth's freshAge; 0: always). */
bool as_session_fresh(const struct as_session *s);
/** {"t1","t2",...}: a PostgreSQL text[] literal of session tokens (which are
 * alphanumeric: nothing is escaped). */
void as_token_array(struct pc_buf *b, char *const *toks, size_t n);
/** The live sessions among tokens (n, alphanumeric) with their users, in
 * the order given: *s and *u arrays of *count (free each, then the arrays).
 * Returns 0, or -1 (PostgreSQL failed). */
int as_sessions_by_tokens(struct as_worker *w, char *const *toks, size_t n,
                          struct as_session **s, struct as_user **u, size_t *count);
/** Expires the session cookies (sign-out, dead session). */
void as_session_clear_cookies(struct as_job *job);

/* ---- revocation (worker) ---- */

/** For each token: DEL its Redis entry and PUBLISH its hash. Call after the
 * PostgreSQL change has committed. */
void as_revoke_tokens(struct as_worker *w, char **tokens, size_t n);
/** Deletes sessions of user_id (all, or all but keep_token) in PostgreSQL
 * and revokes them. Returns 0 or -1. */
PC_MUSTCHECK int as_revoke_user_sessions(struct as_worker *w, const char *user_id,
                                         const char *keep_token);
/** Relays <kind>:<hash> to Redis at once ('s' session, 'k' API key, 'i' a
 * session id whose JWTs die; lib/revmsg.h has the format). Call after the
 * PostgreSQL change committed: its trigger logged the same tag, so what
 * Redis does not take now the listener relays later. */
void as_revoke_hash(struct pc_redis *r, char kind, const char *hash);
/** Any thread (listener too): one tag's DEL/SET + INCR + PUBLISH
 * (pc_rev_relay with authsvc's settings). False when Redis did not take it. */
PC_MUSTCHECK bool as_revoke_relay(struct pc_redis *r, const char *tag);

#endif
