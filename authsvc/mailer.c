/* Portcullis - MIT licence. See LICENSE.
 *
 * mailer.c: delivers the outbox (portcullis_mail, migration 0006) over SMTP
 * with libcurl, on its own thread and its own PostgreSQL connection.
 *
 *   LISTEN pc_mail           the insert trigger's NOTIFY arrives at commit
 *   BEGIN; SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1   one due mail, locked
 *   SMTP: MAIL FROM, RCPT TO, DATA                     (curl, bounded)
 *   UPDATE: sent (bodies wiped), or retry later, or failed for good; COMMIT
 *
 * The row stays locked while SMTP works on it, so two replicas never send
 * the same mail; a crash before COMMIT unlocks it and it is sent again, the
 * one case where a mail can arrive twice (its Message-ID is the row's, so a
 * mail store can tell). A delivery refused with a 4xx reply or a network
 * fault is retried after 1, 2, 4 ... seconds (at most MAIL_RETRY_MAX_SECONDS
 * apart); a 5xx reply (the server will never take it) or a mail older than
 * MAIL_GIVE_UP_SECONDS is marked failed. Due rows are also looked for every
 * second, for retries and for rows another replica's crash left behind.
 *
 * Without SMTP_URL a mail is "delivered" to the log at info, link included:
 * for development only, and the start-up log says so.
 */
#include "authsvc.h"
#include "mail.h"
#include "../lib/crypto.h"
#include "bgthread.h"
#include "../lib/log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#define SWEEP_MS 1000
#define PRUNE_EVERY_MS 60000
#define KEEP_DONE_DAYS "7"  /* sent or failed rows are pruned after this */

static pthread_t thread;
static atomic_bool stop_flag;
static bool started;

/* ---- the message (RFC 5322 + MIME), CRLF line ends ---- */

static bool ascii_only(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* RFC 2047 for a header value that is not plain ASCII. */
static void put_header_text(struct pc_buf *b, const char *s)
{
    if (ascii_only(s)) {
        pc_buf_puts(b, s);
        return;
    }
    size_t n = strlen(s);
    char *enc = pc_xmalloc(pc_b64_len(n, true) + 1);
    pc_b64std_encode((const unsigned char *)s, n, enc);
    pc_buf_printf(b, "=?UTF-8?B?%s?=", enc);
    free(enc);
}

static void put_from(struct pc_buf *b, const char *from, const char *addr)
{
    const char *lt = strrchr(from, '<');
    if (lt == NULL) {
        pc_buf_puts(b, addr);
        return;
    }
    size_t n = (size_t)(lt - from);
    while (n > 0 && from[n - 1] == ' ')
        n--;
    char *name = pc_xstrndup(from, n);
    if (n > 0) {
        put_header_text(b, name);
        pc_buf_putc(b, ' ');
    }
    free(name);
    pc_buf_printf(b, "<%s>", addr);
}

static void put_b64_body(struct pc_buf *b, const char *s)
{
    size_t n = strlen(s);
    char *enc = pc_xmalloc(pc_b64_len(n, true) + 1);
    size_t len = pc_b64std_encode((const unsigned char *)s, n, enc);
    for (size_t i = 0; i < len; i += 76) {
        pc_buf_append(b, enc + i, len - i < 76 ? len - i : 76);
        pc_buf_puts(b, "\r\n");
    }
    free(enc);
}

static void build_message(struct pc_buf *b, const char *id, const char *to, const char *subject,
                          const char *text, const char *html, const char *from_addr)
{
    char date[64], bound[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    pc_random_alnum(bound + 3, 24);
    memcpy(bound, "pc-", 3);
    const char *domain = strchr(from_addr, '@') + 1;
    pc_buf_printf(b, "Date: %s\r\nFrom: ", date);
    put_from(b, as_cfg.mail_from, from_addr);
    pc_buf_printf(b, "\r\nTo: <%s>\r\nSubject: ", to);
    put_header_text(b, subject);
    pc_buf_printf(b, "\r\nMessage-ID: <portcullis-mail-%s@%s>\r\n"
                     "MIME-Version: 1.0\r\n"
                     "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n",
                  id, domain, bound);
    pc_buf_printf(b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n", bound);
    put_b64_body(b, text);
    pc_buf_printf(b, "--%s\r\nContent-Type: text/html; charset=utf-8\r\n"
                     "Content-Transfer-Encoding: base64\r\n\r\n", bound);
    put_b64_body(b, html);
    pc_buf_printf(b, "--%s--\r\n", bound);
}

/* ---- SMTP (libcurl) ---- */

struct upload {
    const char *data;
    size_t len, off;
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct upload *u = arg;
    size_t room = size * nitems, left = u->len - u->off;
    size_t n = left < room ? left : room;
    memcpy(buf, u->data + u->off, n);
    u->off += n;
    return n;
}

/* Ends a delivery in progress when authsvc stops (the row is then retried). */
static int progress_cb(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    return atomic_load(&stop_flag) ? 1 : 0;
}

enum deliver_rc { DELIVERED = 0, DELIVER_RETRY, DELIVER_REFUSED };

static enum deliver_rc smtp_send(const char *to, const char *from_addr, const struct pc_buf *msg,
                                 char *err, size_t errsz)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        snprintf(err, errsz, "curl_easy_init failed");
        return DELIVER_RETRY;
    }
    char rcpt_s[AS_MAIL_ADDR_MAX + 3], from_s[AS_MAIL_ADDR_MAX + 3];
    snprintf(rcpt_s, sizeof rcpt_s, "<%s>", to);
    snprintf(from_s, sizeof from_s, "<%s>", from_addr);
    struct curl_slist *rcpt = curl_slist_append(NULL, rcpt_s);
    struct upload up = {.data = msg->data, .len = msg->len};
    char ebuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, as_cfg.smtp_url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    /* CURLUSESSL_ALL on smtp:// is STARTTLS or nothing: a server (or a man
     * in the middle) that does not offer it gets no mail in plain text */
    bool tls = pc_starts_with(as_cfg.smtp_url, "smtps://") || as_cfg.smtp_tls_required;
    curl_easy_setopt(h, CURLOPT_USE_SSL, (long)(tls ? CURLUSESSL_ALL : CURLUSESSL_TRY));
    if (as_cfg.smtp_ca_file[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, as_cfg.smtp_ca_file);
    if (as_cfg.smtp_user[0])
        curl_easy_setopt(h, CURLOPT_USERNAME, as_cfg.smtp_user);
    if (as_cfg.smtp_password[0])
        curl_easy_setopt(h, CURLOPT_PASSWORD, as_cfg.smtp_password);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from_s);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(h, CURLOPT_READDATA, &up);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)as_cfg.mail_timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(as_cfg.mail_timeout_ms < 10000 ? as_cfg.mail_timeout_ms : 10000));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
    if (rc == CURLE_OK)
        return DELIVERED;
    snprintf(err, errsz, "%s (SMTP reply %ld)", ebuf[0] ? ebuf : curl_easy_strerror(rc), code);
    return code >= 500 && code < 600 ? DELIVER_REFUSED : DELIVER_RETRY;
}

/* ---- the outbox ---- */

static enum deliver_rc deliver(const char *id, const char *to, const char *subject,
                               const char *text, const char *html, char *err, size_t errsz)
{
    if (as_cfg.smtp_url[0] == '\0') {
        pc_log_info("mail %s to %s (no SMTP_URL: written here instead of sent): %s\n%s", id, to,
                    subject, text);
        return DELIVERED;
    }
    char from_addr[AS_MAIL_ADDR_MAX];
    if (as_mail_from_addr(as_cfg.mail_from, from_addr, sizeof from_addr) != 0)
        pc_fatal("validated MAIL_FROM failed to parse");
    struct pc_buf msg = {0};
    build_message(&msg, id, to, subject, text, html, from_addr);
    enum deliver_rc rc = smtp_send(to, from_addr, &msg, err, errsz);
    pc_wipe(msg.data, msg.len);
    pc_buf_free(&msg);
    return rc;
}

/* One due mail: locked, delivered, marked. False when there was none or
 * PostgreSQL failed (*pg_down then). */
static bool send_one(PGconn *c, bool *pg_down)
{
    *pg_down = true;
    if (!as_bg_exec(c, "mailer", "BEGIN", 0, NULL))
        return false;
    char give_up[24];
    snprintf(give_up, sizeof give_up, "%lld", (long long)as_cfg.mail_give_up);
    const char *gp[] = {give_up};
    PGresult *res = PQexecParams(
        c,
        "SELECT \"id\", \"to\", \"subject\", \"text\", \"html\", \"attempts\", "
        "\"createdAt\" < now() - $1::bigint * interval '1 second' "
        "FROM portcullis_mail WHERE \"sentAt\" IS NULL AND \"failedAt\" IS NULL "
        "AND \"nextAttemptAt\" <= now() ORDER BY \"id\" LIMIT 1 FOR UPDATE SKIP LOCKED",
        1, NULL, gp, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pc_log_warn("mailer: reading the outbox: %s", PQresultErrorMessage(res));
        PQclear(res);
        (void)as_bg_exec(c, "mailer", "ROLLBACK", 0, NULL);
        return false;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        *pg_down = !as_bg_exec(c, "mailer", "COMMIT", 0, NULL);
        return false;
    }
    const char *id = PQgetvalue(res, 0, 0), *to = PQgetvalue(res, 0, 1);
    long attempts = strtol(PQgetvalue(res, 0, 5), NULL, 10);
    bool too_old = PQgetvalue(res, 0, 6)[0] == 't';
    char err[CURL_ERROR_SIZE + 64] = "";
    enum deliver_rc rc = DELIVER_REFUSED;
    if (too_old)
        snprintf(err, sizeof err, "not delivered within MAIL_GIVE_UP_SECONDS");
    else
        rc = deliver(id, to, PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4),
                     err, sizeof err);
    long delay = 1;
    for (long i = 0; i < attempts && delay < as_cfg.mail_retry_max; i++)
        delay *= 2;
    if (delay > as_cfg.mail_retry_max)
        delay = as_cfg.mail_retry_max;
    char delay_s[24];
    snprintf(delay_s, sizeof delay_s, "%ld", delay);
    const char *p[] = {id, err, delay_s};
    bool ok;
    if (rc == DELIVERED) {
        ok = as_bg_exec(c, "mailer", "UPDATE portcullis_mail SET \"sentAt\" = now(), \"attempts\" = "
                        "\"attempts\" + 1, \"lastError\" = NULL, \"subject\" = NULL, "
                        "\"text\" = NULL, \"html\" = NULL WHERE \"id\" = $1",
                     1, p);
        if (as_cfg.smtp_url[0])
            pc_log_info("mailer: mail %s delivered to %s", id, to);
    } else if (rc == DELIVER_REFUSED) {
        ok = as_bg_exec(c, "mailer", "UPDATE portcullis_mail SET \"failedAt\" = now(), \"attempts\" = "
                        "\"attempts\" + 1, \"lastError\" = $2, \"subject\" = NULL, "
                        "\"text\" = NULL, \"html\" = NULL WHERE \"id\" = $1",
                     2, p);
        pc_log_error("mailer: mail %s to %s dropped: %s", id, to, err);
    } else {
        ok = as_bg_exec(c, "mailer", "UPDATE portcullis_mail SET \"attempts\" = \"attempts\" + 1, "
                        "\"lastError\" = $2, \"nextAttemptAt\" = now() + $3::bigint * "
                        "interval '1 second' WHERE \"id\" = $1",
                     3, p);
        pc_log_warn("mailer: mail %s to %s not delivered (attempt %ld), again in %ld s: %s", id,
                    to, attempts + 1, delay, err);
    }
    PQclear(res);
    if (!ok || !as_bg_exec(c, "mailer", "COMMIT", 0, NULL)) {
        (void)as_bg_exec(c, "mailer", "ROLLBACK", 0, NULL);
        return false;
    }
    *pg_down = false;
    return true;
}

static void prune(PGconn *c)
{
    (void)as_bg_exec(c, "mailer", "DELETE FROM portcullis_mail WHERE (\"sentAt\" IS NOT NULL OR "
                     "\"failedAt\" IS NOT NULL) AND \"createdAt\" < now() - interval '"
                     KEEP_DONE_DAYS " days'", 0, NULL);
}

/* Works on c until it fails or we are stopped. */
static void serve(PGconn *c)
{
    int64_t sweep_at = 0, prune_at = 0;
    while (!atomic_load(&stop_flag)) {
        int64_t now = pc_now_ms();
        if (now >= sweep_at) {
            bool pg_down = false;
            while (!atomic_load(&stop_flag) && send_one(c, &pg_down))
                ;
            if (pg_down)
                return;
            sweep_at = pc_now_ms() + SWEEP_MS;
        }
        if (now >= prune_at) {
            prune(c);
            prune_at = now + PRUNE_EVERY_MS;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        int n = poll(&pfd, 1, 200);
        if (n == -1 && errno != EINTR)
            return;
        if (n > 0 && !PQconsumeInput(c))
            return;
        PGnotify *nt;
        while ((nt = PQnotifies(c)) != NULL) {
            sweep_at = 0;
            PQfreemem(nt);
        }
        if (PQstatus(c) != CONNECTION_OK)
            return;
    }
}

static void *mailer_main(void *arg)
{
    int backoff = 100;
    while (!atomic_load(&stop_flag)) {
        PGconn *c = as_bg_listen("portcullis-mailer", "pc_mail");
        if (c == NULL) {
            as_bg_nap(&stop_flag, backoff);
            backoff = backoff < 2000 ? backoff * 2 : 2000;
            continue;
        }
        backoff = 100;
        serve(c);
        if (!atomic_load(&stop_flag))
            pc_log_warn("mailer: PostgreSQL connection lost, reconnecting");
        PQfinish(c);
    }
    return NULL;
}

void as_mailer_start(void)
{
    if (as_cfg.smtp_url[0] == '\0')
        pc_log_warn("mailer: no SMTP_URL: mails are written to the log, links included "
                    "(development only)");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        pc_fatal("mailer: curl_global_init failed");
    if (pthread_create(&thread, NULL, mailer_main, NULL) != 0)
        pc_fatal("mailer: pthread_create failed");
    started = true;
}

void as_mailer_stop(void)
{
    if (!started)
        return;
    atomic_store(&stop_flag, true);
    pthread_join(thread, NULL);
    curl_global_cleanup();
    started = false;
}
