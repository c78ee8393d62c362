/* Portcullis - MIT licence. See LICENSE.
 *
 * email_verify.h: email verification as Better Auth does it (email_verify.c)
 * and password reset (password_reset.c): the routes, and the verification
 * mail that sign-up and sign-in send.
 */
#ifndef AS_EMAIL_VERIFY_H
#define AS_EMAIL_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include "job.h"

struct as_job;
struct as_worker;
struct as_user;
struct pc_db;
struct pc_buf;

/* ---- routes (worker threads; job.h contract) ---- */
bool as_route_send_verification_email(struct as_job *job, struct as_worker *w);
bool as_route_verify_email(struct as_job *job, struct as_worker *w);
bool as_route_request_password_reset(struct as_job *job, struct as_worker *w);
bool as_route_reset_password_link(struct as_job *job, struct as_worker *w);
bool as_route_reset_password(struct as_job *job, struct as_worker *w);

/** Better Auth's createEmailVerificationToken: an HS256 JWT (libjwt) over
 * {email, updateTo?, requestType?, userId?, iat, exp}, keyed by the secret.
 * Heap string, or NULL. */
char *as_verify_token_mint(const char *email, const char *update_to, const char *request_type,
                           const char *user_id, int64_t expires_in);

/* ---- account management (account_manage.c; job.h contract) ---- */
bool as_route_verify_password(struct as_job *job, struct as_worker *w);
bool as_route_list_accounts(struct as_job *job, struct as_worker *w);
bool as_route_unlink_account(struct as_job *job, struct as_worker *w);
bool as_route_update_session(struct as_job *job, struct as_worker *w);
bool as_route_change_email(struct as_job *job, struct as_worker *w);
bool as_route_delete_user(struct as_job *job, struct as_worker *w);
bool as_route_delete_user_callback(struct as_job *job, struct as_worker *w);

/** Worker: hands pw (heap; taken: wiped and freed) to the pool to be checked
 * against user uid's credential password (Better Auth's validatePassword);
 * next runs with job->pw.match. When that cannot be done (too long, no
 * credential account: no_account_code/msg, busy, database) the answer is set
 * instead. Returns whether the job was handed on. */
bool as_check_password(struct as_job *job, struct as_worker *w, const char *uid, char *pw,
                       as_handler next, const char *no_account_code, const char *no_account_msg);

/** Worker: writes u's verification mail (a link to verify-email with a new
 * token, back to callback or "/") into the outbox on db, in the caller's
 * transaction if one is open. Returns 0, or -1 (PostgreSQL failed). */
int as_verification_mail(struct pc_db *db, const struct as_user *u, const char *callback);

/** The link's base: BETTER_AUTH_URL without a final '/', then "/api/auth". */
void as_auth_base_url(struct pc_buf *b);

#endif
