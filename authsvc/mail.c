/* Portcullis - MIT licence. See LICENSE.
 *
 * mail.c: the mails' templates and their outbox rows (mail.h).
 *
 * Each kind has three templates: a subject line, a plain-text body and an
 * HTML body. Built-in ones are below; MAIL_TEMPLATES_DIR may replace any of
 * them with <kind>.subject, <kind>.txt or <kind>.html, read once at start.
 * {{app}}, {{name}}, {{email}}, {{url}} and {{minutes}} are replaced; in the
 * HTML body the values are escaped, in the subject line breaks are dropped,
 * so no value can add a header or markup. The rendered mail is what the row
 * stores: a template changed later does not change a mail already written.
 */
#include "authsvc.h"
#include "mail.h"
#include "../lib/ba_schema.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define TEMPLATE_MAX (64 * 1024)

enum part { PART_SUBJECT = 0, PART_TEXT, PART_HTML, PART_COUNT };

static const char *const kind_names[AS_MAIL_KIND_COUNT] = {
    "verify-email", "reset-password", "change-email", "delete-account", "two-factor-otp"};
static const char *const part_ext[PART_COUNT] = {"subject", "txt", "html"};

static const char *const builtin[AS_MAIL_KIND_COUNT][PART_COUNT] = {
    [AS_MAIL_VERIFY_EMAIL] = {
        "Verify your email address for {{app}}",
        "Hello {{name}},\n\n"
        "please confirm that {{email}} is your email address for {{app}} by opening this "
        "link:\n\n{{url}}\n\n"
        "The link works for {{minutes}} minutes. If you did not sign up, ignore this mail.\n",
        "<!doctype html>\n<html><body style=\"font-family:sans-serif;line-height:1.5\">\n"
        "<p>Hello {{name}},</p>\n"
        "<p>please confirm that {{email}} is your email address for {{app}}.</p>\n"
        "<p><a href=\"{{url}}\">Verify my email address</a></p>\n"
        "<p>The link works for {{minutes}} minutes. If you did not sign up, ignore this "
        "mail.</p>\n</body></html>\n",
    },
    [AS_MAIL_RESET_PASSWORD] = {
        "Reset your {{app}} password",
        "Hello {{name}},\n\n"
        "someone asked to reset the password of {{email}} for {{app}}. To choose a new "
        "password, open this link:\n\n{{url}}\n\n"
        "The link works for {{minutes}} minutes and only once. If it was not you, ignore "
        "this mail: your password stays as it is.\n",
        "<!doctype html>\n<html><body style=\"font-family:sans-serif;line-height:1.5\">\n"
        "<p>Hello {{name}},</p>\n"
        "<p>someone asked to reset the password of {{email}} for {{app}}.</p>\n"
        "<p><a href=\"{{url}}\">Choose a new password</a></p>\n"
        "<p>The link works for {{minutes}} minutes and only once. If it was not you, ignore "
        "this mail: your password stays as it is.</p>\n</body></html>\n",
    },
    [AS_MAIL_CHANGE_EMAIL] = {
        "Approve the new email address for {{app}}",
        "Hello {{name}},\n\n"
        "someone asked to change the email address of your {{app}} account from {{email}} "
        "to {{newEmail}}. To approve it, open this link:\n\n{{url}}\n\n"
        "A mail to the new address will then ask to verify it. The link works for "
        "{{minutes}} minutes. If it was not you, ignore this mail and the address stays as "
        "it is.\n",
        "<!doctype html>\n<html><body style=\"font-family:sans-serif;line-height:1.5\">\n"
        "<p>Hello {{name}},</p>\n"
        "<p>someone asked to change the email address of your {{app}} account from {{email}} "
        "to {{newEmail}}.</p>\n"
        "<p><a href=\"{{url}}\">Approve the new address</a></p>\n"
        "<p>A mail to the new address will then ask to verify it. The link works for "
        "{{minutes}} minutes. If it was not you, ignore this mail and the address stays as "
        "it is.</p>\n</body></html>\n",
    },
    [AS_MAIL_DELETE_ACCOUNT] = {
        "Confirm deleting your {{app}} account",
        "Hello {{name}},\n\n"
        "someone asked to delete the {{app}} account of {{email}}. To delete it for good, "
        "open this link while signed in:\n\n{{url}}\n\n"
        "The link works for {{minutes}} minutes. If it was not you, ignore this mail and "
        "change your password.\n",
        "<!doctype html>\n<html><body style=\"font-family:sans-serif;line-height:1.5\">\n"
        "<p>Hello {{name}},</p>\n"
        "<p>someone asked to delete the {{app}} account of {{email}}.</p>\n"
        "<p><a href=\"{{url}}\">Delete my account for good</a> (while signed in)</p>\n"
        "<p>The link works for {{minutes}} minutes. If it was not you, ignore this mail and "
        "change your password.</p>\n</body></html>\n",
    },
    [AS_MAIL_TWO_FACTOR_OTP] = {
        "Your {{app}} sign-in code",
        "Hello {{name}},\n\n"
        "your {{app}} sign-in code is {{code}}\n\n"
        "It works for {{minutes}} minutes. If you did not try to sign in, change your "
        "password.\n",
        "<!doctype html>\n<html><body style=\"font-family:sans-serif;line-height:1.5\">\n"
        "<p>Hello {{name}},</p>\n"
        "<p>your {{app}} sign-in code is <b>{{code}}</b></p>\n"
        "<p>It works for {{minutes}} minutes. If you did not try to sign in, change your "
        "password.</p>\n</body></html>\n",
    },
};

/* the operator's replacements (NULL: built-in) */
static char *loaded[AS_MAIL_KIND_COUNT][PART_COUNT];

static const char *tmpl(enum as_mail_kind k, enum part p)
{
    return loaded[k][p] ? loaded[k][p] : builtin[k][p];
}

/* Reads path whole; ENOENT leaves *out NULL and is not an error. */
static int read_template(const char *path, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "authsvc: MAIL_TEMPLATES_DIR: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = pc_xmalloc(TEMPLATE_MAX + 1);
    size_t n = fread(buf, 1, TEMPLATE_MAX + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || n > TEMPLATE_MAX || !pc_utf8_valid(buf, n) || memchr(buf, '\0', n) != NULL) {
        fprintf(stderr, "authsvc: MAIL_TEMPLATES_DIR: %s: %s\n", path,
                bad ? "read error" : n > TEMPLATE_MAX ? "larger than 64 KiB" : "not UTF-8 text");
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    return 0;
}

int as_mail_templates_load(void)
{
    if (as_cfg.mail_templates[0] == '\0')
        return 0;
    for (int k = 0; k < AS_MAIL_KIND_COUNT; k++)
        for (int p = 0; p < PART_COUNT; p++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s.%s", as_cfg.mail_templates, kind_names[k],
                     part_ext[p]);
            if (read_template(path, &loaded[k][p]) != 0)
                return -1;
        }
    return 0;
}

void as_mail_templates_free(void)
{
    for (int k = 0; k < AS_MAIL_KIND_COUNT; k++)
        for (int p = 0; p < PART_COUNT; p++) {
            free(loaded[k][p]);
            loaded[k][p] = NULL;
        }
}

/* ---- rendering ---- */

static void put_value(struct pc_buf *b, enum part p, const char *v)
{
    for (; *v; v++) {
        char c = *v;
        if (p == PART_SUBJECT && (c == '\r' || c == '\n'))
            continue;
        if (p == PART_HTML) {
            const char *e = c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;"
                          : c == '"' ? "&quot;" : c == '\'' ? "&#39;" : NULL;
            if (e) {
                pc_buf_puts(b, e);
                continue;
            }
        }
        pc_buf_putc(b, c);
    }
}

static void render(struct pc_buf *b, enum as_mail_kind k, enum part p, const struct as_mail_vars *v)
{
    char minutes[24];
    snprintf(minutes, sizeof minutes, "%lld", (long long)((v->expires_s + 59) / 60));
    const char *names[] = {"app", "name", "email", "url", "minutes", "newEmail", "code"};
    const char *vals[] = {as_cfg.mail_app_name, v->name ? v->name : "", v->email,
                          v->url ? v->url : "", minutes, v->new_email ? v->new_email : "",
                          v->code ? v->code : ""};
    const char *s = tmpl(k, p);
    while (*s) {
        const char *open = strstr(s, "{{");
        if (open == NULL) {
            pc_buf_puts(b, s);
            break;
        }
        pc_buf_append(b, s, (size_t)(open - s));
        const char *close = strstr(open + 2, "}}");
        size_t i = PC_ARRAY_LEN(names);
        if (close)
            for (i = 0; i < PC_ARRAY_LEN(names); i++)
                if ((size_t)(close - open - 2) == strlen(names[i]) &&
                    memcmp(open + 2, names[i], strlen(names[i])) == 0)
                    break;
        if (i == PC_ARRAY_LEN(names)) {
            pc_buf_puts(b, "{{");   /* not a name we know: kept as written */
            s = open + 2;
            continue;
        }
        put_value(b, p, vals[i]);
        s = close + 2;
    }
    if (p == PART_SUBJECT) /* one line, even from an operator's file */
        while (b->len > 0 && (b->data[b->len - 1] == '\n' || b->data[b->len - 1] == '\r'))
            b->data[--b->len] = '\0';
}

int as_mail_enqueue(struct pc_db *db, enum as_mail_kind kind, const struct as_mail_vars *v)
{
    struct pc_buf parts[PART_COUNT] = {{0}};
    for (int p = 0; p < PART_COUNT; p++) {
        render(&parts[p], kind, (enum part)p, v);
        (void)pc_buf_cstr(&parts[p]);
    }
    const char *params[] = {kind_names[kind], v->email, parts[PART_SUBJECT].data,
                            parts[PART_TEXT].data, parts[PART_HTML].data};
    PGresult *res = pc_db_exec(db,
                               "INSERT INTO portcullis_mail (\"kind\", \"to\", \"subject\", "
                               "\"text\", \"html\") VALUES ($1, $2, $3, $4, $5)",
                               5, params);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    for (int p = 0; p < PART_COUNT; p++) {
        pc_wipe(parts[p].data, parts[p].len);   /* the link is a credential */
        pc_buf_free(&parts[p]);
    }
    return ok ? 0 : -1;
}

int as_mail_with_verification(struct pc_db *db, const char *ident, const char *value,
                              int64_t expires_s, enum as_mail_kind kind,
                              const struct as_mail_vars *v)
{
    char id[33], secs[24];
    pc_random_alnum(id, 32);
    snprintf(secs, sizeof secs, "%lld", (long long)expires_s);
    const char *q[] = {id, ident, value, secs};
    if (pc_db_simple(db, "BEGIN") != 0)
        return -1;
    PGresult *res = pc_db_exec(db,
                               "INSERT INTO \"verification\" (\"id\", \"identifier\", \"value\", "
                               "\"expiresAt\", \"createdAt\", \"updatedAt\") VALUES ($1, $2, $3, "
                               PC_BA_NOW_MS " + $4::bigint * interval '1 second', " PC_BA_NOW_MS
                               ", " PC_BA_NOW_MS ")",
                               4, q);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    ok = ok && as_mail_enqueue(db, kind, v) == 0;
    ok = ok && pc_db_simple(db, "COMMIT") == 0;
    if (!ok && pc_db_simple(db, "ROLLBACK") != 0)
        pc_log_warn("postgres: ROLLBACK failed; the connection will be reset");
    return ok ? 0 : -1;
}

/* ---- MAIL_FROM ---- */

static bool addr_ok(const char *s, size_t n)
{
    const char *at = memchr(s, '@', n);
    if (n == 0 || n >= AS_MAIL_ADDR_MAX || at == NULL || at == s || at == s + n - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || strchr("<>()[]\\,;:\"", c) != NULL)
            return false;
    }
    return memchr(at + 1, '@', (size_t)(s + n - at - 1)) == NULL;
}

int as_mail_from_addr(const char *from, char *out, size_t cap)
{
    if (strpbrk(from, "\r\n") != NULL)
        return -1;
    const char *lt = strrchr(from, '<');
    const char *a = from;
    size_t n = strlen(from);
    if (lt != NULL) {
        const char *gt = strchr(lt, '>');
        if (gt == NULL || gt[1] != '\0')
            return -1;
        a = lt + 1;
        n = (size_t)(gt - a);
    }
    if (!addr_ok(a, n) || n + 1 > cap)
        return -1;
    memcpy(out, a, n);
    out[n] = '\0';
    return 0;
}
