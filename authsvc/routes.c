/* Portcullis - MIT licence. See LICENSE.
 *
 * routes.c: every path authsvc answers, with the handler that answers it
 * (a worker handler, or a loop-thread answer that needs no I/O) and whether
 * Better Auth's per-IP rate limit applies (ratelimit.c has the rules). The index of a row is its route
 * number in the metrics.
 */
#include "routes.h"
#include "accounts.h"
#include "apikeys.h"
#include "email_verify.h"
#include "multi_session.h"
#include "jwt.h"
#include "oauth.h"
#include "sessions.h"
#include "two_factor.h"

#include <string.h>
#include <event2/http.h>

const struct as_route as_routes[] = {
    {EVHTTP_REQ_POST, "/api/auth/sign-up/email", as_route_sign_up, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/sign-in/email", as_route_sign_in, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/sign-out", as_route_sign_out, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/get-session", as_route_get_session, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/list-sessions", as_route_list_sessions, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/revoke-session", as_route_revoke_session, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/revoke-sessions", as_route_revoke_sessions, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/revoke-other-sessions", as_route_revoke_other_sessions, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/update-user", as_route_update_user, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/change-password", as_route_change_password, R_LIMITED,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/send-verification-email", as_route_send_verification_email,
     R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/verify-email", as_route_verify_email, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/request-password-reset", as_route_request_password_reset,
     R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/reset-password/", as_route_reset_password_link, R_PREFIX,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/reset-password", as_route_reset_password, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/multi-session/list-device-sessions", as_route_multi_list, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/multi-session/set-active", as_route_multi_set_active, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/multi-session/revoke", as_route_multi_revoke, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/verify-password", as_route_verify_password, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/list-accounts", as_route_list_accounts, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/link-social", as_route_link_social, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/account-info", as_route_account_info, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/unlink-account", as_route_unlink_account, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/update-session", as_route_update_session, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/change-email", as_route_change_email, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/delete-user", as_route_delete_user, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/delete-user/callback", as_route_delete_user_callback, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/enable", as_route_2fa_enable, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/disable", as_route_2fa_disable, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/get-totp-uri", as_route_2fa_get_totp_uri, R_LIMITED,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/verify-totp", as_route_2fa_verify_totp, R_LIMITED,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/generate-backup-codes",
     as_route_2fa_generate_backup_codes, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/verify-backup-code", as_route_2fa_verify_backup_code,
     R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/send-otp", as_route_2fa_send_otp, R_LIMITED, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/two-factor/verify-otp", as_route_2fa_verify_otp, R_LIMITED,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/api-key/create", as_route_apikey_create, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/api-key/get", as_route_apikey_get, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/api-key/update", as_route_apikey_update, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/api-key/delete", as_route_apikey_delete, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/api-key/list", as_route_apikey_list, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/internal/api-key/create", as_route_internal_apikey_create, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/internal/api-key/update", as_route_internal_apikey_update, 0,
     LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/internal/validate", as_route_internal_validate, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/token", as_route_token, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/jwks", as_route_jwks, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/.well-known/jwks.json", as_route_jwks, 0, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/sign-in/social", as_route_sign_in_social, R_LIMITED,
     LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/callback/", as_route_oauth_callback, R_PREFIX, LOOP_NONE},
    {EVHTTP_REQ_POST, "/api/auth/callback/", as_route_oauth_callback, R_PREFIX, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/error", as_route_oauth_error_page, 0, LOOP_NONE},
    {EVHTTP_REQ_GET, "/api/auth/ok", NULL, R_LOOP, LOOP_OK},
    /* /health, /live, /ready and (admin listener) /metrics: as_local_path */
};

const size_t as_nroutes = PC_ARRAY_LEN(as_routes);

const struct as_route *as_route_match(int method, const char *path, int *index)
{
    const struct as_route *r = NULL;
    *index = -1;
    for (size_t i = 0; i < as_nroutes; i++) {
        size_t plen = strlen(as_routes[i].path);
        bool match = (as_routes[i].flags & R_PREFIX)
                         ? strncmp(as_routes[i].path, path, plen) == 0 && path[plen] &&
                               strchr(path + plen, '/') == NULL
                         : strcmp(as_routes[i].path, path) == 0;
        if (!match)
            continue;
        *index = (int)i;
        if (as_routes[i].method == method)
            r = &as_routes[i];
    }
    return r;
}
