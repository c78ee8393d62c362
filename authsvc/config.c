/* Portcullis - MIT licence. See LICENSE.
 *
 * config.c: authsvc's configuration table. Names follow Better Auth where it
 * has one (BETTER_AUTH_SECRET, BETTER_AUTH_URL, DATABASE_URL). Every value is
 * validated at start; a bad one stops the program with the variable's name.
 */
#include "authsvc.h"
#include "../lib/conf_common.h"
#include "oauth.h"
#include "../lib/bearer.h"
#include "../lib/conf.h"
#include "../lib/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct as_config as_cfg;

/* Better Auth's API key prefix rule: ^[a-zA-Z0-9_-]+$, 1 to 32 characters. */
static int check_apikey_prefix(const char *v, const char **err)
{
    size_t n = strlen(v);
    bool ok = n >= 1 && n <= 32;
    for (const char *p = v; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
             *p == '_' || *p == '-';
    if (!ok) {
        *err = "must be 1 to 32 characters from a-z A-Z 0-9 _ -";
        return -1;
    }
    return 0;
}

static int check_jwt_alg(const char *v, const char **err)
{
    if (strcmp(v, "ES256") != 0 && strcmp(v, "RS256") != 0 && strcmp(v, "EdDSA") != 0) {
        *err = "must be ES256, RS256 or EdDSA";
        return -1;
    }
    return 0;
}

static int check_header_name(const char *v, const char **err)
{
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_')) {
            *err = "must be a header name (letters, digits, - and _)";
            return -1;
        }
    return 0;
}

static int check_tristate(const char *v, const char **err)
{
    if (v[0] && strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
        *err = "must be true, false or empty";
        return -1;
    }
    return 0;
}

static int check_smtp_url(const char *v, const char **err)
{
    if (v[0] && !pc_starts_with(v, "smtp://") && !pc_starts_with(v, "smtps://")) {
        *err = "must start with smtp:// or smtps://";
        return -1;
    }
    if (strpbrk(v, " \r\n\t") != NULL) {
        *err = "must not hold white space";
        return -1;
    }
    return 0;
}

static int check_direct_url(const char *v, const char **err)
{
    return v[0] ? pc_conf_check_pg_url(v, err) : 0;
}

const char *as_direct_url(void)
{
    return as_cfg.direct_url && as_cfg.direct_url[0] ? as_cfg.direct_url : as_cfg.database_url;
}

static int check_mail_from(const char *v, const char **err)
{
    char addr[AS_MAIL_ADDR_MAX];
    if (as_mail_from_addr(v, addr, sizeof addr) != 0) {
        *err = "must be addr@domain or \"Name <addr@domain>\", on one line";
        return -1;
    }
    return 0;
}

#define INT_ITEM(n, var, def, lo, hi, help) \
    {n, PC_CONF_INT, &as_cfg.var, def, lo, hi, 0, NULL, help}

static const struct pc_conf_item table[] = {
    {"BETTER_AUTH_SECRET", PC_CONF_STR, &as_cfg.secret, NULL, 0, 0, PC_CONF_SECRET,
     pc_conf_check_secret,
     "HMAC key for cookies, and what seals the jwks private keys; the same value as the "
     "Better Auth servers sharing the database (required unless BETTER_AUTH_SECRETS is set)"},
    {"BETTER_AUTH_SECRETS", PC_CONF_STR, &as_cfg.secrets_s, NULL, 0, 0, PC_CONF_SECRET,
     pc_conf_check_secrets,
     "Better Auth's versioned secrets, <version>:<secret>,... current first: cookies are "
     "signed with the current one, jwks keys sealed with it and opened with any listed; "
     "BETTER_AUTH_SECRET then opens only what was sealed before versions"},
    {"BETTER_AUTH_URL", PC_CONF_STR, &as_cfg.base_url, "http://localhost:3000", 0, 0, 0,
     pc_conf_check_http_url, "public base URL; https:// turns on __Secure- cookies"},
    {"DATABASE_URL", PC_CONF_STR, &as_cfg.database_url, NULL, 0, 0,
     PC_CONF_REQUIRED | PC_CONF_SECRET, pc_conf_check_pg_url, "PostgreSQL URL (libpq)"},
    {"DATABASE_DIRECT_URL", PC_CONF_STR, &as_cfg.direct_url, "", 0, 0, PC_CONF_SECRET,
     check_direct_url,
     "PostgreSQL reached directly, not through a transaction pooler (pgbouncer), for what "
     "needs a session of its own: LISTEN (the revocation relay, the mailer) and the "
     "migration lock; empty: DATABASE_URL"},
    {"REDIS_URL", PC_CONF_STR, &as_cfg.redis_url, "redis://127.0.0.1:6379", 0, 0,
     PC_CONF_SECRET, pc_conf_check_redis_url, "Redis URL: redis://[:password@]host:port[/db]"},
    PC_CONF_ROW_REDIS_SENTINELS(&as_cfg.redis_sentinels),
    PC_CONF_ROW_REDIS_SENTINEL_MASTER(&as_cfg.redis_sentinel_master),
    PC_CONF_ROW_REDIS_SENTINEL_PASSWORD(&as_cfg.redis_sentinel_password),
    {"AUTHSVC_LISTEN", PC_CONF_STR, &as_cfg.listen, "127.0.0.1:3000", 0, 0, 0,
     pc_conf_check_hostport, "address to listen on (host:port)"},
    {"AUTHSVC_ADMIN_LISTEN", PC_CONF_STR, &as_cfg.admin_listen, "127.0.0.1:9091", 0, 0, 0,
     pc_conf_check_admin_listen,
     "the operators' listener (host:port, or off): /metrics and the health checks; the "
     "public listener does not answer /metrics"},
    {"AUTHSVC_HEALTH_PREFIX", PC_CONF_STR, &as_cfg.health_prefix, "", 0, 0, 0,
     pc_conf_check_path_prefix,
     "path before /health, /live and /ready on the public listener (e.g. /_authsvc); the "
     "admin listener answers them with and without it"},
    PC_CONF_ROW_TRUSTED_ORIGINS(&as_cfg.trusted_origins),
    {"RATE_LIMIT_ENABLED", PC_CONF_BOOL, &as_cfg.rate_limit, "true", 0, 0, 0, NULL,
     "limit sign-in/sign-up per IP (3 per 10 s, Better Auth's rule) in Redis"},
    {"IP_ADDRESS_HEADER", PC_CONF_STR, &as_cfg.ip_header, "x-forwarded-for", 0, 0, 0,
     check_header_name,
     "header naming the client IP, believed only from TRUSTED_PROXIES (X-Forwarded-For "
     "rules: the right-most address that is not a trusted proxy); empty: the TCP peer"},
    {"TRUSTED_PROXIES", PC_CONF_STR, &as_cfg.trusted_proxies_s, "", 0, 0, 0,
     pc_conf_check_cidr_list,
     "addresses or networks (10.0.0.0/8, fd00::/8) of proxies in front of authsvc whose "
     "IP_ADDRESS_HEADER is believed; empty: none, the client is the TCP peer"},
    PC_CONF_ROW_REDIS_PREFIX(&as_cfg.redis_prefix),
    PC_CONF_ROW_REVOCATION_CHANNEL(&as_cfg.revocation_channel),
    INT_ITEM("REVOCATION_LOG_KEEP_SECONDS", revocation_log_keep, "0", 0, 31536000,
             "seconds a revocation stays in the log (0: SESSION_EXPIRES_IN_SECONDS + 1 h + 5 min)"),
    {"AUTHSVC_LOG", PC_CONF_STR, &as_cfg.log_path, "", 0, 0, 0, NULL,
     "JSON log file (appended); empty: stderr"},
    {"LOG_LEVEL", PC_CONF_STR, &as_cfg.log_level, "info", 0, 0, 0, pc_conf_check_log_level,
     "debug, info, warn or error"},
    INT_ITEM("AUTHSVC_MAX_BODY_BYTES", max_body, "65536", 1024, 16 * 1024 * 1024,
             "largest request body in bytes (413 above)"),
    INT_ITEM("AUTHSVC_WORKERS", workers, "8", 1, 256,
             "request worker threads (one PostgreSQL connection each)"),
    INT_ITEM("AUTHSVC_QUEUE", job_queue, "1024", 1, 1000000,
             "requests waiting for a worker before 503"),
    INT_ITEM("AUTHSVC_MAX_CONNS", max_conns, "0", 0, 10000000,
             "client connections open at once; over it a connection may ask /health, /live "
             "or /ready, anything else is 503 (0: the open-file limit less 64 and 4 per worker)"),
    INT_ITEM("AUTHSVC_MAX_CONNS_PER_IP", max_conns_per_ip, "0", 0, 10000000,
             "client connections open at once from one TCP peer address, 503 over it (0: no "
             "cap; leave 0 behind a proxy, whose address every connection has)"),
    INT_ITEM("AUTHSVC_HEAD_TIMEOUT_MS", head_timeout_ms, "10000", 100, 600000,
             "a request must arrive whole within this long of the connection or of the "
             "previous answer (408 after)"),
    INT_ITEM("PASSWORD_WORKERS", pw_workers, "0", 0, 256,
             "password hashing threads (0: one per CPU core)"),
    INT_ITEM("PASSWORD_QUEUE", pw_queue, "64", 1, 100000,
             "password hashes waiting before 503"),
    INT_ITEM("SESSION_EXPIRES_IN_SECONDS", expires_in, "604800", 60, 31536000,
             "session lifetime in seconds (Better Auth: 7 days)"),
    INT_ITEM("SESSION_UPDATE_AGE_SECONDS", update_age, "86400", 0, 31536000,
             "refresh a session's expiry when it is this old, seconds (1 day)"),
    INT_ITEM("SESSION_FRESH_AGE_SECONDS", fresh_age, "86400", 0, 31536000,
             "list-sessions needs a session younger than this, seconds (0: off)"),
    INT_ITEM("PASSWORD_MIN_LENGTH", min_pw, "8", 1, 1000, "shortest password"),
    INT_ITEM("PASSWORD_MAX_LENGTH", max_pw, "128", 8, 4096, "longest password"),
    PC_BEARER_REQUIRE_SIGNATURE_ROW(&as_cfg.bearer_require_sig),
    {"INTERNAL_SERVICE_SECRET", PC_CONF_STR, &as_cfg.internal_secret, NULL, 0, 0,
     PC_CONF_SECRET, pc_conf_check_secret,
     "shared secret for /api/internal/* (header x-service-auth, >= 32 chars); unset: those "
     "routes answer 404"},
    {"APIKEY_DEFAULT_PREFIX", PC_CONF_STR, &as_cfg.apikey_prefix, "oc_", 0, 0, 0,
     check_apikey_prefix, "prefix of new API keys when the request names none"},
    INT_ITEM("APIKEY_RATE_LIMIT_MAX", apikey_rl_max, "10000", 1, 2147483647,
             "requests per window for new API keys (rateLimitMax)"),
    INT_ITEM("APIKEY_RATE_LIMIT_WINDOW_MS", apikey_rl_window, "60000", 1, 2147483647,
             "rate-limit window of new API keys, milliseconds (rateLimitTimeWindow)"),
    {"APIKEY_ENABLE_METADATA", PC_CONF_BOOL, &as_cfg.apikey_metadata, "true", 0, 0, 0, NULL,
     "accept `metadata` on API keys (Better Auth's enableMetadata)"},
    /* JWTs and the JWKS (jwt.c) */
    {"JWT_ALG", PC_CONF_STR, &as_cfg.jwt_alg, "ES256", 0, 0, 0, check_jwt_alg,
     "signing algorithm of new keys: ES256, RS256 or EdDSA"},
    INT_ITEM("JWT_EXPIRES_SECONDS", jwt_expires, "900", 30, 86400,
             "JWT lifetime in seconds (15 min)"),
    INT_ITEM("JWT_ROTATE_DAYS", jwt_rotate_days, "30", 1, 3650,
             "a new signing key after this many days; the old one stays published until its "
             "last token expires"),
    {"JWT_ISSUER", PC_CONF_STR, &as_cfg.jwt_issuer, "", 0, 0, 0, NULL,
     "iss of our JWTs; empty: the origin of BETTER_AUTH_URL"},
    {"JWT_AUDIENCE", PC_CONF_STR, &as_cfg.jwt_audience, "", 0, 0, 0, NULL,
     "aud of our JWTs; empty: the issuer"},
    INT_ITEM("JWKS_MAX_AGE_SECONDS", jwks_max_age, "300", 0, 86400,
             "Cache-Control max-age of /api/auth/jwks, seconds"),
    /* email verification and password reset (email_verify.c, password_reset.c) */
    {"REQUIRE_EMAIL_VERIFICATION", PC_CONF_BOOL, &as_cfg.require_verification, "false", 0, 0, 0,
     NULL, "sign-in with a password is refused (403 EMAIL_NOT_VERIFIED) until the email is "
     "verified, and sign-up creates no session (Better Auth's requireEmailVerification)"},
    {"EMAIL_VERIFICATION_SEND_ON_SIGN_UP", PC_CONF_STR, &as_cfg.send_on_sign_up_s, "", 0, 0, 0,
     check_tristate, "mail a verification link on sign-up: true or false; empty: as "
     "REQUIRE_EMAIL_VERIFICATION (sendOnSignUp)"},
    {"EMAIL_VERIFICATION_SEND_ON_SIGN_IN", PC_CONF_BOOL, &as_cfg.send_on_sign_in, "false", 0, 0,
     0, NULL, "mail a new verification link when sign-in is refused for an unverified email "
     "(sendOnSignIn)"},
    {"EMAIL_VERIFICATION_AUTO_SIGN_IN", PC_CONF_BOOL, &as_cfg.auto_sign_in_verified, "false", 0,
     0, 0, NULL, "opening the verification link signs the user in "
     "(autoSignInAfterVerification)"},
    INT_ITEM("EMAIL_VERIFICATION_EXPIRES_IN", verify_expires_in, "3600", 60, 31536000,
             "lifetime of an email verification link, seconds (Better Auth: 1 h)"),
    INT_ITEM("RESET_PASSWORD_TOKEN_EXPIRES_IN", reset_expires_in, "3600", 60, 31536000,
             "lifetime of a password reset link, seconds (Better Auth: 1 h)"),
    {"REVOKE_SESSIONS_ON_PASSWORD_RESET", PC_CONF_BOOL, &as_cfg.revoke_on_reset, "false", 0, 0,
     0, NULL, "a password reset ends every session of the user "
     "(revokeSessionsOnPasswordReset)"},
    /* account management (account_manage.c) */
    {"CHANGE_EMAIL_ENABLED", PC_CONF_BOOL, &as_cfg.change_email, "false", 0, 0, 0, NULL,
     "POST /change-email is on (user.changeEmail.enabled); the new address is set once its "
     "verification link is opened"},
    {"CHANGE_EMAIL_UPDATE_WITHOUT_VERIFICATION", PC_CONF_BOOL, &as_cfg.change_email_unverified,
     "false", 0, 0, 0, NULL,
     "a user whose email is not verified gets the new address at once "
     "(updateEmailWithoutVerification)"},
    {"CHANGE_EMAIL_SEND_CONFIRMATION", PC_CONF_BOOL, &as_cfg.change_email_confirm, "false", 0, 0,
     0, NULL, "a verified user first approves the change from the old address "
     "(sendChangeEmailConfirmation)"},
    {"DELETE_USER_ENABLED", PC_CONF_BOOL, &as_cfg.delete_user, "false", 0, 0, 0, NULL,
     "POST /delete-user is on (user.deleteUser.enabled); off: 404"},
    {"DELETE_USER_SEND_VERIFICATION", PC_CONF_BOOL, &as_cfg.delete_user_verify, "false", 0, 0, 0,
     NULL, "delete-user mails a confirmation link instead of deleting at once "
     "(sendDeleteAccountVerification)"},
    INT_ITEM("DELETE_USER_TOKEN_EXPIRES_IN", delete_expires_in, "86400", 60, 31536000,
             "lifetime of a delete-account link, seconds (Better Auth: 1 day)"),
    {"ALLOW_UNLINKING_ALL", PC_CONF_BOOL, &as_cfg.unlink_all, "false", 0, 0, 0, NULL,
     "unlink-account may remove a user's last account (accountLinking.allowUnlinkingAll)"},
    {"MULTI_SESSION_ENABLED", PC_CONF_BOOL, &as_cfg.multi_session, "false", 0, 0, 0, NULL,
     "Better Auth's multiSession plugin: several accounts signed in per browser, "
     "/multi-session/* routes (off: 404)"},
    INT_ITEM("MULTI_SESSION_MAXIMUM", multi_session_max, "5", 1, 64,
             "accounts one browser may hold at once (maximumSessions)"),
    /* the twoFactor plugin (two_factor.c) */
    {"TWO_FACTOR_ENABLED", PC_CONF_BOOL, &as_cfg.two_factor, "false", 0, 0, 0, NULL,
     "Better Auth's twoFactor plugin: TOTP, backup codes, mailed OTP, trusted devices, "
     "/two-factor/* routes (off: 404, and sign-in never asks for a second factor)"},
    {"TWO_FACTOR_ISSUER", PC_CONF_STR, &as_cfg.two_factor_issuer, "", 0, 0, 0, NULL,
     "the issuer in the TOTP URI (issuer); empty: MAIL_APP_NAME, as Better Auth's appName"},
    {"TWO_FACTOR_OTP_ENABLED", PC_CONF_BOOL, &as_cfg.two_factor_otp, "false", 0, 0, 0, NULL,
     "the mailed one-time code (otpOptions.sendOTP): send-otp/verify-otp and enable "
     "{method:\"otp\"}; off: 400 OTP_NOT_CONFIGURED, as Better Auth without sendOTP"},
    INT_ITEM("TWO_FACTOR_OTP_PERIOD_MINUTES", two_factor_otp_minutes, "3", 1, 1440,
             "how long a mailed code works, minutes (otpOptions.period)"),
    INT_ITEM("TWO_FACTOR_COOKIE_MAX_AGE", two_factor_cookie_age, "600", 60, 86400,
             "how long a sign-in waits for its second factor, seconds (twoFactorCookieMaxAge)"),
    INT_ITEM("TWO_FACTOR_TRUST_DEVICE_MAX_AGE", trust_device_age, "2592000", 60, 31536000,
             "how long a trusted device skips the second factor, seconds (trustDeviceMaxAge)"),
    /* mail (mail.c, mailer.c) */
    {"SMTP_URL", PC_CONF_STR, &as_cfg.smtp_url, "", 0, 0, PC_CONF_SECRET, check_smtp_url,
     "smtp://host[:port] (STARTTLS when offered) or smtps://host[:port]; user:password@ "
     "allowed; empty: mails are written to the log at info, with their links"},
    {"SMTP_USERNAME", PC_CONF_STR, &as_cfg.smtp_user, "", 0, 0, 0, NULL,
     "SMTP AUTH user (instead of the URL's)"},
    {"SMTP_PASSWORD", PC_CONF_STR, &as_cfg.smtp_password, "", 0, 0, PC_CONF_SECRET, NULL,
     "SMTP AUTH password (SMTP_PASSWORD_FILE: read from a file)"},
    {"SMTP_REQUIRE_TLS", PC_CONF_STR, &as_cfg.smtp_require_tls_s, "", 0, 0, 0, check_tristate,
     "true: an smtp:// server must take STARTTLS, or the mail waits (no plain-text "
     "fallback); false: STARTTLS when offered; empty: true unless SMTP_URL's host is "
     "loopback"},
    {"SMTP_CA_FILE", PC_CONF_STR, &as_cfg.smtp_ca_file, "", 0, 0, 0, NULL,
     "PEM CA bundle the SMTP server's certificate must chain to; empty: the system's"},
    {"MAIL_FROM", PC_CONF_STR, &as_cfg.mail_from, "Portcullis <no-reply@localhost>", 0, 0, 0,
     check_mail_from, "sender of every mail: addr@domain or \"Name <addr@domain>\""},
    {"MAIL_APP_NAME", PC_CONF_STR, &as_cfg.mail_app_name, "Portcullis", 0, 0, 0, NULL,
     "the product name mails speak of ({{app}} in the templates)"},
    {"MAIL_TEMPLATES_DIR", PC_CONF_STR, &as_cfg.mail_templates, "", 0, 0, 0, NULL,
     "directory of replacement templates: <kind>.subject, <kind>.txt, <kind>.html for "
     "verify-email, reset-password, change-email, delete-account, two-factor-otp; a missing "
     "file keeps the built-in one"},
    INT_ITEM("MAIL_TIMEOUT_MS", mail_timeout_ms, "30000", 1000, 600000,
             "bound on one SMTP delivery (connect to the last reply), ms"),
    INT_ITEM("MAIL_RETRY_MAX_SECONDS", mail_retry_max, "300", 1, 86400,
             "a refused delivery is retried after 1, 2, 4, ... seconds, at most this apart"),
    INT_ITEM("MAIL_GIVE_UP_SECONDS", mail_give_up, "259200", 60, 31536000,
             "a mail not delivered this long after it was written is dropped (3 days)"),
    /* OIDC sign-in (oauth_provider.c) */
    {"GOOGLE_CLIENT_ID", PC_CONF_STR, &as_cfg.google_client_id, "", 0, 0, 0, NULL,
     "Google OAuth client id; set: \"Sign in with Google\" is on (provider id google)"},
    {"GOOGLE_CLIENT_SECRET", PC_CONF_STR, &as_cfg.google_client_secret, "", 0, 0,
     PC_CONF_SECRET, NULL, "Google OAuth client secret (required with GOOGLE_CLIENT_ID)"},
    {"GOOGLE_AUTH_URL", PC_CONF_STR, &as_cfg.google_auth_url,
     "https://accounts.google.com/o/oauth2/v2/auth", 0, 0, 0, NULL,
     "Google's authorization endpoint (override for tests or a private deployment)"},
    {"GOOGLE_TOKEN_URL", PC_CONF_STR, &as_cfg.google_token_url,
     "https://oauth2.googleapis.com/token", 0, 0, 0, NULL, "Google's token endpoint"},
    {"GOOGLE_USERINFO_URL", PC_CONF_STR, &as_cfg.google_userinfo_url,
     "https://openidconnect.googleapis.com/v1/userinfo", 0, 0, 0, NULL,
     "Google's userinfo endpoint (asked only when the ID token has no email)"},
    {"GOOGLE_JWKS_URL", PC_CONF_STR, &as_cfg.google_jwks_url,
     "https://www.googleapis.com/oauth2/v3/certs", 0, 0, 0, NULL,
     "Google's signing keys, which ID tokens are verified against"},
    {"GOOGLE_ISSUER", PC_CONF_STR, &as_cfg.google_issuer, "https://accounts.google.com", 0, 0,
     0, NULL, "the iss Google's ID tokens must carry"},
    {"OIDC_PROVIDERS", PC_CONF_STR, &as_cfg.oidc_providers, "", 0, 0, 0, NULL,
     "generic OIDC providers, comma separated names; each NAME needs OIDC_<NAME>_ISSUER, "
     "OIDC_<NAME>_CLIENT_ID, OIDC_<NAME>_CLIENT_SECRET (optional OIDC_<NAME>_SCOPES)"},
    {"ALLOWED_DOMAINS", PC_CONF_STR, &as_cfg.allowed_domains, "", 0, 0, 0, NULL,
     "email domains allowed to sign in with Google/OIDC, comma separated; empty: any "
     "(the provider must still have verified the email)"},
    INT_ITEM("OAUTH_HTTP_TIMEOUT_MS", oauth_timeout_ms, "10000", 100, 120000,
             "bound on each call to a provider (discovery, JWKS, token, userinfo), ms"),
    INT_ITEM("OAUTH_JWKS_CACHE_SECONDS", jwks_cache_s, "3600", 0, 604800,
             "how long a provider's JWKS is reused (an unknown kid refetches sooner)"),
};

void as_config_help(void)
{
    printf("usage: authsvc [migrate | --help]\n\n"
           "  authsvc           serve the auth API\n"
           "  authsvc migrate   apply pending database migrations and exit\n\n"
           "Configuration comes from the environment:\n\n");
    pc_conf_help(table, PC_ARRAY_LEN(table), stdout);
}

/* scheme://host[:port] of a URL, lower-cased. */
static void url_origin(const char *url, char *out, size_t outsz)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    snprintf(out, outsz, "%.*s", (int)((size_t)(p - url) + n), url);
    for (char *c = out; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
}

/* SMTP_URL's host is this machine (localhost, 127.0.0.0/8, ::1): mail to
 * it does not cross a network. */
static bool smtp_host_loopback(const char *url)
{
    const char *rest = strstr(url, "://");
    struct pc_buf b = {0};
    struct pc_url u;
    pc_buf_printf(&b, "http%s", rest ? rest : "");
    bool ok = pc_url_parse(b.data, b.len, &u) == PC_URL_OK &&
              ((u.kind == PC_URL_IPV4 && pc_starts_with(u.host, "127.")) ||
               (u.kind == PC_URL_IPV6 && strcmp(u.host, "[::1]") == 0) ||
               (u.kind == PC_URL_DOMAIN && strcmp(u.host, "localhost") == 0));
    pc_wipe(b.data, b.len);     /* user:password@ may be in it */
    pc_buf_free(&b);
    return ok;
}

int as_config_load(void)
{
    char err[512];
    if (pc_conf_load(table, PC_ARRAY_LEN(table), err, sizeof err) != 0 ||
        pc_secrets_load(as_cfg.secrets_s, &as_cfg.secret, &as_cfg.secrets, err, sizeof err) != 0) {
        fprintf(stderr, "authsvc: configuration error: %s\n", err);
        return -1;
    }
    if (as_cfg.max_pw < as_cfg.min_pw) {
        fprintf(stderr, "authsvc: configuration error: PASSWORD_MAX_LENGTH: must not be "
                        "below PASSWORD_MIN_LENGTH\n");
        return -1;
    }
    /* IP_ADDRESS_HEADER set but empty means the TCP peer, not the default */
    const char *ih = getenv("IP_ADDRESS_HEADER");
    if (ih != NULL && ih[0] == '\0') {
        free(as_cfg.ip_header);
        as_cfg.ip_header = pc_xstrdup("");
    }
    const char *why;
    as_cfg.admin_port = 0;
    if (strcmp(as_cfg.admin_listen, "off") != 0 &&
        pc_parse_hostport(as_cfg.admin_listen, as_cfg.admin_host, sizeof as_cfg.admin_host,
                          &as_cfg.admin_port, &why) != 0)
        pc_fatal("validated config failed to parse");
    if (pc_parse_hostport(as_cfg.listen, as_cfg.listen_host, sizeof as_cfg.listen_host,
                          &as_cfg.listen_port, &why) != 0 ||
        pc_redis_parse_url(as_cfg.redis_url, &as_cfg.redis_addr, &why) != 0)
        pc_fatal("validated config failed to parse");
    as_cfg.secure_cookies = pc_starts_with(as_cfg.base_url, "https://");
    const char *pfx = as_cfg.secure_cookies ? "__Secure-" : "";
    snprintf(as_cfg.cookie_session, sizeof as_cfg.cookie_session,
             "%sbetter-auth.session_token", pfx);
    snprintf(as_cfg.cookie_dont_remember, sizeof as_cfg.cookie_dont_remember,
             "%sbetter-auth.dont_remember", pfx);
    snprintf(as_cfg.cookie_session_data, sizeof as_cfg.cookie_session_data,
             "%sbetter-auth.session_data", pfx);
    snprintf(as_cfg.cookie_two_factor, sizeof as_cfg.cookie_two_factor,
             "%sbetter-auth.two_factor", pfx);
    snprintf(as_cfg.cookie_trust_device, sizeof as_cfg.cookie_trust_device,
             "%sbetter-auth.trust_device", pfx);
    as_cfg.send_on_sign_up = as_cfg.send_on_sign_up_s[0]
                                 ? strcmp(as_cfg.send_on_sign_up_s, "true") == 0
                                 : as_cfg.require_verification;
    as_cfg.smtp_tls_required = as_cfg.smtp_require_tls_s[0]
                                   ? strcmp(as_cfg.smtp_require_tls_s, "true") == 0
                                   : !smtp_host_loopback(as_cfg.smtp_url);
    if (as_oauth_config_load() != 0) /* OIDC sign-in (oauth_provider.c) */
        return -1;
    url_origin(as_cfg.base_url, as_cfg.base_origin, sizeof as_cfg.base_origin);
    if (as_origins_load() != 0) /* origin.c */
        return -1;
    if (pc_cidr_list_parse(as_cfg.trusted_proxies_s, &as_cfg.proxies, &as_cfg.nproxies, &why) != 0)
        pc_fatal("validated config failed to parse");
    if (as_mail_templates_load() != 0) /* mail.c */
        return -1;
    if (as_cfg.jwt_issuer[0] == '\0') {
        free(as_cfg.jwt_issuer);
        as_cfg.jwt_issuer = pc_xstrdup(as_cfg.base_origin);
    }
    if (as_cfg.jwt_audience[0] == '\0') {
        free(as_cfg.jwt_audience);
        as_cfg.jwt_audience = pc_xstrdup(as_cfg.jwt_issuer);
    }
    return 0;
}

void as_config_free(void)
{
    as_origins_free();
    as_mail_templates_free();
    free(as_cfg.proxies);
    as_cfg.proxies = NULL;
    as_cfg.nproxies = 0;
    as_oauth_config_free(); /* OIDC sign-in (oauth_provider.c) */
    pc_secrets_free(&as_cfg.secrets);
    pc_conf_free(table, PC_ARRAY_LEN(table));
}
