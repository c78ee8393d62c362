/* Portcullis - MIT licence. See LICENSE.
 *
 * multi_session.h: Better Auth's multiSession plugin (multi_session.c):
 * several accounts signed in in one browser, each in a signed cookie
 * <session cookie>_multi-<token in lower case>; the ordinary session cookie
 * is the active one, which is all the gateway reads.
 */
#ifndef AS_MULTI_SESSION_H
#define AS_MULTI_SESSION_H

#include <stdbool.h>

struct as_job;
struct as_worker;

/* ---- routes (worker threads; job.h contract); 404 unless MULTI_SESSION_ENABLED ---- */
bool as_route_multi_list(struct as_job *job, struct as_worker *w);
bool as_route_multi_set_active(struct as_job *job, struct as_worker *w);
bool as_route_multi_revoke(struct as_job *job, struct as_worker *w);

/** Worker, after any handler that answered with a new session cookie
 * (job->new_session): the plugin's after-hook. Adds that session's multi
 * cookie (unless MULTI_SESSION_MAXIMUM are held), ending the browser's
 * other sessions of the same user. Best effort: a PostgreSQL failure only
 * leaves the cookie out. */
void as_multi_session_after(struct as_job *job, struct as_worker *w);
/** Worker, in sign-out: expires every multi cookie the request holds and
 * ends (revokes) their sessions. 0, or -1 (PostgreSQL failed). */
int as_multi_session_sign_out(struct as_job *job, struct as_worker *w);

#endif
