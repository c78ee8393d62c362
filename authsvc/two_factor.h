/* Portcullis - MIT licence. See LICENSE.
 *
 * two_factor.h: Better Auth 1.7's twoFactor plugin (two_factor.c): the
 * /two-factor/... routes, and the step sign-in/email takes when the user has
 * a second factor (no session, a signed two_factor cookie instead).
 */
#ifndef AS_TWO_FACTOR_H
#define AS_TWO_FACTOR_H

#include <stdbool.h>

struct as_job;
struct as_worker;
struct as_user;
struct pc_db;

/* ---- routes (worker threads; job.h contract); 404 with the plugin off ---- */
bool as_route_2fa_enable(struct as_job *job, struct as_worker *w);
bool as_route_2fa_disable(struct as_job *job, struct as_worker *w);
bool as_route_2fa_get_totp_uri(struct as_job *job, struct as_worker *w);
bool as_route_2fa_verify_totp(struct as_job *job, struct as_worker *w);
bool as_route_2fa_generate_backup_codes(struct as_job *job, struct as_worker *w);
bool as_route_2fa_verify_backup_code(struct as_job *job, struct as_worker *w);
bool as_route_2fa_send_otp(struct as_job *job, struct as_worker *w);
bool as_route_2fa_verify_otp(struct as_job *job, struct as_worker *w);

/** What sign-in does next (as_two_factor_gate). */
enum as_2fa_gate {
    AS_2FA_PASS = 0,    /* no second factor needed (plugin off, user without
                         * it, or a trusted device: its cookie was renewed) */
    AS_2FA_ANSWERED,    /* the answer is set: {"twoFactorRedirect":true, ...}
                         * with the two_factor cookie, or a 503 */
};

/** Worker, sign-in/email once the password matched: Better Auth's after
 * hook. With the plugin on and u's twoFactorEnabled true, a valid
 * trust_device cookie lets the sign-in go on (the cookie and its row are
 * renewed); otherwise no session is made and the answer is the redirect
 * with a two_factor cookie (remember false keeps the dont_remember cookie,
 * which the verify route then honours). Sets u's twoFactorEnabled (known). */
enum as_2fa_gate as_two_factor_gate(struct as_job *job, struct as_worker *w,
                                    struct as_user *u, bool remember);

/** Worker, sign-up with the plugin on: writes the new user's twoFactorEnabled
 * false (Better Auth's default) and marks u's field known. 0, or -1. */
int as_two_factor_new_user(struct pc_db *db, struct as_user *u);

#endif
