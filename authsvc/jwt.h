/* Portcullis - MIT licence. See LICENSE.
 *
 * jwt.h: Better Auth's jwt plugin (jwt.c): the signing key in the jwks
 * table, /api/auth/token, the JWKS routes and the set-auth-jwt header of
 * get-session.
 */
#ifndef AS_JWT_H
#define AS_JWT_H

#include <stdbool.h>
#include "../lib/util.h"

struct as_job;
struct as_worker;
struct as_session;
struct as_user;
struct pc_db;

/* ---- routes (worker threads; job.h contract) ---- */
bool as_route_token(struct as_job *job, struct as_worker *w);
bool as_route_jwks(struct as_job *job, struct as_worker *w);

/** Main thread, at start: makes sure a current signing key exists (creates
 * one). Returns 0, or -1 when the database is down (retried on use). */
PC_MUSTCHECK int as_jwt_init(struct pc_db *db);
/** Main thread, at stop. */
void as_jwt_free(void);
/** Worker: a JWT for the session's user (heap), or NULL when no key can be
 * had. */
char *as_jwt_mint(struct as_worker *w, const struct as_session *s, const struct as_user *u);

/** What as_jwt_verify found. */
enum as_jwt_verdict {
    AS_JWT_OK = 0,          /* ours, signed by a published key, iss/aud/exp good */
    AS_JWT_INVALID,         /* not a JWT we accept: shape, alg, kid, signature, iss, aud */
    AS_JWT_EXPIRED,         /* exp passed (or nbf ahead) */
    AS_JWT_UNAVAILABLE,     /* the keys could not be read (PostgreSQL down) */
};
/** Worker: checks tok as one of ours (the keys of the jwks table we
 * publish; an unknown kid reads the table again once). On AS_JWT_OK *sub
 * and *sid (heap, the sid may be NULL) and *exp_s are set. */
enum as_jwt_verdict as_jwt_verify(struct as_worker *w, const char *tok, char **sub, char **sid,
                                  int64_t *exp_s);

#endif
