/* Portcullis - MIT licence. See LICENSE.
 *
 * mail.h: the mails authsvc sends (mail.c: templates and the outbox row;
 * mailer.c: the thread that delivers the outbox over SMTP).
 *
 * A route never talks to SMTP. It calls as_mail_enqueue() on its worker's
 * PostgreSQL connection, inside the transaction that creates the token the
 * mail carries, so the mail exists exactly when the token does. The mailer
 * (one thread per authsvc, any number of replicas) delivers each row once
 * SMTP acknowledges it, retrying with back-off while SMTP refuses or is
 * down (db/migrations/0006_mail_outbox.sql).
 */
#ifndef AS_MAIL_H
#define AS_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pc_db;

#define AS_MAIL_ADDR_MAX 320

enum as_mail_kind {
    AS_MAIL_VERIFY_EMAIL = 0,   /* "verify-email": the email verification link */
    AS_MAIL_RESET_PASSWORD,     /* "reset-password": the password reset link */
    AS_MAIL_CHANGE_EMAIL,       /* "change-email": to the old address, approve the new one */
    AS_MAIL_DELETE_ACCOUNT,     /* "delete-account": confirm deleting the account */
    AS_MAIL_TWO_FACTOR_OTP,     /* "two-factor-otp": the twoFactor plugin's mailed code */
    AS_MAIL_KIND_COUNT
};

/** What a template may name: {{app}}, {{name}}, {{email}}, {{url}},
 * {{minutes}} (the link's lifetime), {{newEmail}} (change-email), {{code}}
 * (two-factor-otp). */
struct as_mail_vars {
    const char *name;       /* the user's name ("" if none) */
    const char *email;      /* the address the mail goes to */
    const char *url;        /* the link */
    int64_t expires_s;      /* its lifetime, seconds */
    const char *new_email;  /* change-email: the address asked for (or NULL) */
    const char *code;       /* two-factor-otp: the one-time code (or NULL) */
};

/** Start-up: loads MAIL_TEMPLATES_DIR over the built-in templates. Returns 0,
 * or -1 after printing the unreadable file to stderr. */
int as_mail_templates_load(void);
void as_mail_templates_free(void);

/** Worker: renders kind's templates with v and inserts the mail into the
 * outbox on db, in the caller's transaction if one is open (the trigger's
 * NOTIFY wakes a mailer at commit). Returns 0, or -1 (PostgreSQL failed). */
int as_mail_enqueue(struct pc_db *db, enum as_mail_kind kind, const struct as_mail_vars *v);

/** Worker: one transaction holding a "verification" row (identifier ident,
 * value, expiring in expires_s) and the mail that carries its link, so the
 * mail exists exactly when the token does. 0, or -1 (PostgreSQL failed). */
int as_mail_with_verification(struct pc_db *db, const char *ident, const char *value,
                              int64_t expires_s, enum as_mail_kind kind,
                              const struct as_mail_vars *v);

/** The address part of MAIL_FROM ("addr" or "Name <addr>") into out.
 * Returns 0, or -1 when from is not one of those on one line. */
int as_mail_from_addr(const char *from, char *out, size_t cap);

/** Main thread, at start / at stop: the delivery thread (mailer.c). */
void as_mailer_start(void);
void as_mailer_stop(void);

#endif
