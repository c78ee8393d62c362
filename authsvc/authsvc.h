/* Portcullis - MIT licence. See LICENSE.
 *
 * authsvc.h: the shared types of the auth service.
 *
 * authsvc.h holds the configuration (config.c) and includes every module's
 * header, as pgbouncer's bouncer.h does; each header states its contract.
 *
 * Request flow (file by file):
 *   main.c      configuration, start-up order, signals
 *   server.c    evhttp on one event loop: intake, hand a job to the worker
 *               pool, the completion queue, send its reply, access log,
 *               drain (server.h; only main.c calls it)
 *   routes.c    the route table: path, method, handler, flags (routes.h)
 *   job.c       struct as_job and the handler API (job.h): read the
 *               request, set the answer, hand the job on
 *   origin.c    trusted origins, the Origin/Referer check, redirect
 *               targets, CORS and preflight
 *   conns.c     connection caps, head deadline, EMFILE, evhttp's own errors
 *   ratelimit.c the client address (TRUSTED_PROXIES), per-IP sign-in/sign-up
 *               limits in Redis
 *   accounts.c  sign-up, sign-in, update-user, change-password
 *   sessions.c  session tokens, cookies, lookup, refresh, Redis cache,
 *               get-session, list-sessions, sign-out, revoke-*
 *   apikeys.c   the API-key plugin routes (validation, SQL: apikeys.h)
 *   internal.c  /api/internal/... for trusted services
 *   jwt.c       /token and the JWKS
 *   pwpool.c    scrypt on its own bounded thread pool
 *   oauth*.c    Google / OIDC sign-in (oauth_http.c: curl multi on the loop)
 *   email_verify.c  send-verification-email, verify-email (HS256 JWTs, libjwt)
 *   password_reset.c  request-password-reset, reset-password (verification rows)
 *   account_manage.c  verify-password, list-accounts, unlink-account,
 *               update-session, change-email, delete-user
 *   multi_session.c  the multiSession plugin: several accounts per browser
 *   two_factor.c  the twoFactor plugin: TOTP, backup codes, mailed OTP,
 *               trusted devices; sign-in's second step
 *   mail.c      the mails' templates and their outbox rows
 *   mailer.c    delivers the outbox over SMTP (libcurl; its own thread)
 *   listener.c  relays the revocation log to Redis (LISTEN thread)
 *   health.c    /ready's state (a prober thread keeps it)
 *   metrics.c   /metrics
 *   migrate.c   `authsvc migrate`
 *
 * Threads: one event loop thread owns every evhttp object. A job (struct
 * as_job) carries a copy of the request to a worker thread, where handlers
 * run straight-line blocking code on that worker's own PostgreSQL and Redis
 * connections. A handler that needs a password hash hands the job to the
 * password pool with a continuation, which comes back to a worker. The reply
 * goes back to the loop through a locked list and event_active().
 */
#ifndef AS_AUTHSVC_H
#define AS_AUTHSVC_H

#include <stdbool.h>
#include <stdint.h>
#include "../lib/util.h"
#include "../lib/ba_secrets.h"
#include "../lib/db.h"
#include "../lib/redis.h"
#include "../lib/json.h"
#include "../lib/password.h"
#include "../lib/netaddr.h"

#include "job.h"
#include "pwpool.h"
#include "origin.h"
#include "ratelimit.h"
#include "conns.h"
#include "accounts.h"
#include "sessions.h"
#include "apikeys.h"
#include "jwt.h"
#include "oauth.h"
#include "listener.h"
#include "mail.h"
#include "multi_session.h"
#include "two_factor.h"
#include "email_verify.h"
#include "health.h"
#include "metrics.h"
#include "migrate.h"

/* ---- configuration (config.c) ---- */

struct as_config {
    char *secret;               /* the HMAC secret: BETTER_AUTH_SECRETS' current one, else
                                 * BETTER_AUTH_SECRET (lib/ba_secrets.h) */
    char *secrets_s;            /* BETTER_AUTH_SECRETS, as given */
    struct pc_secrets secrets;  /* ... parsed, with BETTER_AUTH_SECRET as the legacy one:
                                 * what seals and opens the jwks private keys */
    char *base_url;             /* BETTER_AUTH_URL */
    char *database_url;         /* DATABASE_URL */
    char *direct_url;           /* DATABASE_DIRECT_URL ("": DATABASE_URL; as_direct_url) */
    char *redis_url;            /* REDIS_URL */
    char *redis_sentinels;      /* REDIS_SENTINELS ("": none; lib/redis_sentinel.h) */
    char *redis_sentinel_master;    /* REDIS_SENTINEL_MASTER */
    char *redis_sentinel_password;  /* REDIS_SENTINEL_PASSWORD */
    char *listen;               /* AUTHSVC_LISTEN */
    char *admin_listen;         /* AUTHSVC_ADMIN_LISTEN ("off": none) */
    char *health_prefix;        /* AUTHSVC_HEALTH_PREFIX: "" or "/x" before /health, ... */
    char *trusted_origins;      /* TRUSTED_ORIGINS, comma list */
    bool rate_limit;            /* RATE_LIMIT_ENABLED */
    char *redis_prefix;         /* REDIS_PREFIX */
    char *revocation_channel;   /* REVOCATION_CHANNEL */
    char *log_path;             /* AUTHSVC_LOG */
    char *log_level;            /* LOG_LEVEL */
    char *ip_header;            /* IP_ADDRESS_HEADER */
    char *trusted_proxies_s;    /* TRUSTED_PROXIES, addresses/CIDRs */
    int64_t max_body;           /* AUTHSVC_MAX_BODY_BYTES */
    int64_t workers;            /* AUTHSVC_WORKERS */
    int64_t job_queue;          /* AUTHSVC_QUEUE */
    int64_t max_conns;          /* AUTHSVC_MAX_CONNS; 0: from the open-file limit */
    int64_t max_conns_per_ip;   /* AUTHSVC_MAX_CONNS_PER_IP; 0: no cap */
    int64_t head_timeout_ms;    /* AUTHSVC_HEAD_TIMEOUT_MS */
    int64_t pw_workers;         /* PASSWORD_WORKERS */
    int64_t pw_queue;           /* PASSWORD_QUEUE */
    int64_t expires_in;         /* SESSION_EXPIRES_IN_SECONDS, seconds */
    int64_t revocation_log_keep;  /* REVOCATION_LOG_KEEP_SECONDS, seconds (0: derived) */
    int64_t update_age;         /* SESSION_UPDATE_AGE_SECONDS, seconds */
    int64_t fresh_age;          /* SESSION_FRESH_AGE_SECONDS, seconds */
    int64_t min_pw;             /* PASSWORD_MIN_LENGTH */
    int64_t max_pw;             /* PASSWORD_MAX_LENGTH */
    bool bearer_require_sig;    /* BEARER_REQUIRE_SIGNATURE */
    char *internal_secret;      /* INTERNAL_SERVICE_SECRET ("" = internal routes off) */
    char *apikey_prefix;        /* APIKEY_DEFAULT_PREFIX */
    int64_t apikey_rl_max;      /* APIKEY_RATE_LIMIT_MAX */
    int64_t apikey_rl_window;   /* APIKEY_RATE_LIMIT_WINDOW_MS */
    bool apikey_metadata;       /* APIKEY_ENABLE_METADATA */

    /* OIDC sign-in (oauth_provider.c) */
    char *google_client_id;     /* GOOGLE_CLIENT_ID ("" = Google sign-in off) */
    char *google_client_secret; /* GOOGLE_CLIENT_SECRET */
    char *google_auth_url;      /* GOOGLE_AUTH_URL */
    char *google_token_url;     /* GOOGLE_TOKEN_URL */
    char *google_userinfo_url;  /* GOOGLE_USERINFO_URL */
    char *google_jwks_url;      /* GOOGLE_JWKS_URL */
    char *google_issuer;        /* GOOGLE_ISSUER */
    char *oidc_providers;       /* OIDC_PROVIDERS, names (OIDC_<NAME>_* read by oauth_provider.c) */
    char *allowed_domains;      /* ALLOWED_DOMAINS ("" = any domain) */
    int64_t oauth_timeout_ms;   /* OAUTH_HTTP_TIMEOUT_MS */
    int64_t jwks_cache_s;       /* OAUTH_JWKS_CACHE_SECONDS */
    char *jwt_alg;              /* JWT_ALG */
    int64_t jwt_expires;        /* JWT_EXPIRES_SECONDS, seconds */
    int64_t jwt_rotate_days;    /* JWT_ROTATE_DAYS */
    char *jwt_issuer;           /* JWT_ISSUER (default: base_origin) */
    char *jwt_audience;         /* JWT_AUDIENCE (default: the issuer) */
    int64_t jwks_max_age;       /* JWKS_MAX_AGE_SECONDS, seconds */

    /* email verification and password reset (email_verify.c, password_reset.c) */
    bool require_verification;  /* REQUIRE_EMAIL_VERIFICATION (requireEmailVerification) */
    char *send_on_sign_up_s;    /* EMAIL_VERIFICATION_SEND_ON_SIGN_UP: "", true, false */
    bool send_on_sign_up;       /* ... resolved: "" follows require_verification */
    bool send_on_sign_in;       /* EMAIL_VERIFICATION_SEND_ON_SIGN_IN (sendOnSignIn) */
    bool auto_sign_in_verified; /* EMAIL_VERIFICATION_AUTO_SIGN_IN (autoSignInAfterVerification) */
    int64_t verify_expires_in;  /* EMAIL_VERIFICATION_EXPIRES_IN, seconds */
    int64_t reset_expires_in;   /* RESET_PASSWORD_TOKEN_EXPIRES_IN, seconds */
    bool revoke_on_reset;       /* REVOKE_SESSIONS_ON_PASSWORD_RESET */

    /* account management (account_manage.c) */
    bool change_email;          /* CHANGE_EMAIL_ENABLED (user.changeEmail.enabled) */
    bool change_email_unverified; /* CHANGE_EMAIL_UPDATE_WITHOUT_VERIFICATION */
    bool change_email_confirm;  /* CHANGE_EMAIL_SEND_CONFIRMATION (sendChangeEmailConfirmation) */
    bool delete_user;           /* DELETE_USER_ENABLED (user.deleteUser.enabled) */
    bool delete_user_verify;    /* DELETE_USER_SEND_VERIFICATION (sendDeleteAccountVerification) */
    int64_t delete_expires_in;  /* DELETE_USER_TOKEN_EXPIRES_IN, seconds */
    bool unlink_all;            /* ALLOW_UNLINKING_ALL (accountLinking.allowUnlinkingAll) */
    bool multi_session;         /* MULTI_SESSION_ENABLED (the multiSession plugin) */
    int64_t multi_session_max;  /* MULTI_SESSION_MAXIMUM (maximumSessions) */

    /* the twoFactor plugin (two_factor.c) */
    bool two_factor;            /* TWO_FACTOR_ENABLED */
    char *two_factor_issuer;    /* TWO_FACTOR_ISSUER ("": mail_app_name) */
    bool two_factor_otp;        /* TWO_FACTOR_OTP_ENABLED (otpOptions.sendOTP) */
    int64_t two_factor_otp_minutes; /* TWO_FACTOR_OTP_PERIOD_MINUTES (otpOptions.period) */
    int64_t two_factor_cookie_age; /* TWO_FACTOR_COOKIE_MAX_AGE, seconds (twoFactorCookieMaxAge) */
    int64_t trust_device_age;   /* TWO_FACTOR_TRUST_DEVICE_MAX_AGE, seconds (trustDeviceMaxAge) */

    /* mail (mail.c, mailer.c) */
    char *smtp_url;             /* SMTP_URL ("": mails go to the log) */
    char *smtp_user;            /* SMTP_USERNAME */
    char *smtp_password;        /* SMTP_PASSWORD (or SMTP_PASSWORD_FILE) */
    char *smtp_ca_file;         /* SMTP_CA_FILE ("": the system's CAs) */
    char *smtp_require_tls_s;   /* SMTP_REQUIRE_TLS: "true", "false", "" (auto) */
    bool smtp_tls_required;     /* ... resolved: smtp:// must take STARTTLS */
    char *mail_from;            /* MAIL_FROM: addr or "Name <addr>" */
    char *mail_app_name;        /* MAIL_APP_NAME */
    char *mail_templates;       /* MAIL_TEMPLATES_DIR ("": built-in) */
    int64_t mail_timeout_ms;    /* MAIL_TIMEOUT_MS, one SMTP delivery */
    int64_t mail_retry_max;     /* MAIL_RETRY_MAX_SECONDS, back-off cap */
    int64_t mail_give_up;       /* MAIL_GIVE_UP_SECONDS, a mail older than this is dropped */

    /* derived at load time */
    bool secure_cookies;        /* base_url is https */
    char cookie_session[64];    /* [__Secure-]better-auth.session_token */
    char cookie_dont_remember[64];
    char cookie_session_data[64];
    char cookie_two_factor[64]; /* [__Secure-]better-auth.two_factor */
    char cookie_trust_device[64];
    char base_origin[512];      /* scheme://host[:port] of base_url */
    struct pc_cidr *proxies;    /* TRUSTED_PROXIES, parsed */
    size_t nproxies;
    struct pc_redis_addr redis_addr;
    char listen_host[256];
    int listen_port;
    char admin_host[256];       /* admin_port 0: no admin listener */
    int admin_port;
};

extern struct as_config as_cfg;

/** Loads and validates the environment. Returns 0, or -1 after printing the
 * offending variable to stderr. */
PC_MUSTCHECK int as_config_load(void);
void as_config_help(void);
void as_config_free(void);
/** DATABASE_DIRECT_URL, else DATABASE_URL: for LISTEN and the migration lock. */
const char *as_direct_url(void);

#endif

