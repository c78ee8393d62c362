/* Portcullis - MIT licence. See LICENSE.
 *
 * accounts.h: the routes that create or change a user (accounts.c): email
 * sign-up and sign-in, update-user, change-password. Every path that writes
 * user, account and session rows together lives in accounts.c.
 */
#ifndef AS_ACCOUNTS_H
#define AS_ACCOUNTS_H

#include <stdbool.h>

struct as_job;
struct as_worker;

/* ---- routes (worker threads; job.h contract) ---- */
bool as_route_sign_up(struct as_job *job, struct as_worker *w);
bool as_route_sign_in(struct as_job *job, struct as_worker *w);
bool as_route_update_user(struct as_job *job, struct as_worker *w);
bool as_route_change_password(struct as_job *job, struct as_worker *w);

/** Any thread: Better Auth's (zod's) email check. */
bool as_email_valid(const char *s);

#endif
