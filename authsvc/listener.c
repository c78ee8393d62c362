/* Portcullis - MIT licence. See LICENSE.
 *
 * listener.c: relays the revocation log to Redis. Every writer - authsvc, a
 * Better Auth server, an operator in psql - that ends a credential fires a
 * trigger (migrations 0003-0005) that appends a tag to portcullis_revocation
 * in the same transaction and NOTIFYs pc_revoked. This thread holds one
 * connection on LISTEN and relays every row not yet marked relayed (DEL in
 * Redis, INCR, PUBLISH: lib/revmsg.h) at start, after every reconnect, on
 * every notice, and again every RELAY_RETRY_MS while Redis refuses. A row
 * is marked relayed in the transaction that read it, after Redis took it,
 * so nothing is lost while authsvc is stopped, its LISTEN connection is
 * down, or Redis is; a crash between PUBLISH and COMMIT only repeats a
 * message. Rows are locked with SKIP LOCKED, so several authsvc replicas
 * share the work. Rows older than REVOCATION_LOG_KEEP_SECONDS are pruned: by then
 * every cache entry they concern has expired.
 *
 * Why a relayed flag and not a "last sequence relayed" cursor: sequence
 * numbers are taken when a row is inserted, not when it commits, so a slow
 * transaction can commit a smaller number after a larger one was relayed,
 * and a cursor would skip it for ever.
 */
#include "authsvc.h"
#include "bgthread.h"
#include "../lib/log.h"
#include "../lib/revmsg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define RELAY_BATCH 500
#define RELAY_RETRY_MS 250
#define PRUNE_EVERY_MS 60000

static pthread_t thread;
static atomic_bool stop_flag, up;
static bool started;

bool as_listener_up(void)
{
    return atomic_load(&up);
}

enum relay_rc { RELAY_DONE, RELAY_REDIS_DOWN, RELAY_PG_DOWN };

/* One batch: lock up to RELAY_BATCH unrelayed rows, relay each, mark them.
 * *more is set when the batch was full; *done counts the rows relayed. */
static enum relay_rc relay_batch(PGconn *c, struct pc_redis *rd, bool *more, size_t *done)
{
    *more = false;
    if (!as_bg_exec(c, "listener", "BEGIN", 0, NULL))
        return RELAY_PG_DOWN;
    PGresult *res = PQexec(c, "SELECT \"seq\", \"tag\" FROM portcullis_revocation "
                              "WHERE NOT \"relayed\" ORDER BY \"seq\" LIMIT 500 "
                              "FOR UPDATE SKIP LOCKED");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pc_log_warn("listener: reading the revocation log: %s", PQresultErrorMessage(res));
        PQclear(res);
        (void)as_bg_exec(c, "listener", "ROLLBACK", 0, NULL);
        return RELAY_PG_DOWN;
    }
    int n = PQntuples(res);
    struct pc_buf seqs = {0};
    pc_buf_putc(&seqs, '{');
    for (int i = 0; i < n; i++) {
        const char *tag = PQgetvalue(res, i, 1);
        if (!pc_rev_tag_ok(tag)) {
            pc_log_warn("listener: skipping malformed revocation %s", PQgetvalue(res, i, 0));
        } else if (!as_revoke_relay(rd, tag)) {
            as_health_note_redis(false);
            PQclear(res);
            pc_buf_free(&seqs);
            (void)as_bg_exec(c, "listener", "ROLLBACK", 0, NULL);
            return RELAY_REDIS_DOWN;
        }
        if (i)
            pc_buf_putc(&seqs, ',');
        pc_buf_puts(&seqs, PQgetvalue(res, i, 0));
    }
    pc_buf_putc(&seqs, '}');
    PQclear(res);
    const char *params[] = {seqs.data};
    bool ok = n == 0 || as_bg_exec(c, "listener", "UPDATE portcullis_revocation SET \"relayed\" = true "
                                   "WHERE \"seq\" = ANY($1::bigint[])", 1, params);
    pc_buf_free(&seqs);
    if (!ok || !as_bg_exec(c, "listener", "COMMIT", 0, NULL))
        return RELAY_PG_DOWN;
    if (n > 0)
        as_health_note_redis(true);
    *more = n == RELAY_BATCH;
    *done += (size_t)n;
    return RELAY_DONE;
}

/* Relays the whole backlog. quiet: a notice's one or two rows, not worth a
 * log line (a backlog after a restart or an outage is). */
static enum relay_rc relay_all(PGconn *c, struct pc_redis *rd, bool quiet)
{
    bool more = true;
    size_t done = 0;
    enum relay_rc rc = RELAY_DONE;
    while (more && !atomic_load(&stop_flag) && rc == RELAY_DONE)
        rc = relay_batch(c, rd, &more, &done);
    if (done && !quiet)
        pc_log_info("listener: relayed %zu revocation(s) from the log", done);
    return rc;
}

static void prune(PGconn *c)
{
    int64_t keep = as_cfg.revocation_log_keep ? as_cfg.revocation_log_keep
                                              : as_cfg.expires_in + 3600 + 300;
    char secs[24];
    snprintf(secs, sizeof secs, "%lld", (long long)keep);
    const char *params[] = {secs};
    (void)as_bg_exec(c, "listener", "DELETE FROM portcullis_revocation "
                     "WHERE \"createdAt\" < now() - $1::bigint * interval '1 second'",
                  1, params);
}

/* Listens on c until it fails or we are stopped. */
static void serve(PGconn *c, struct pc_redis *rd)
{
    bool pending = true;                /* relay the backlog first */
    bool backlog = true;                /* ... and say how much it was */
    int64_t retry_at = 0, prune_at = 0;
    while (!atomic_load(&stop_flag)) {
        int64_t now = pc_now_ms();
        if (pending && now >= retry_at) {
            enum relay_rc rc = relay_all(c, rd, !backlog);
            if (rc == RELAY_PG_DOWN)
                return;
            pending = backlog = rc == RELAY_REDIS_DOWN;
            retry_at = now + RELAY_RETRY_MS;
        }
        if (now >= prune_at) {
            prune(c);
            prune_at = now + PRUNE_EVERY_MS;
        }
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        int n = poll(&pfd, 1, pending ? RELAY_RETRY_MS : 200);
        if (n == -1 && errno != EINTR)
            return;
        if (n > 0 && !PQconsumeInput(c))
            return; /* connection lost */
        PGnotify *nt;
        while ((nt = PQnotifies(c)) != NULL) {
            if (!pending)
                retry_at = 0;
            pending = true;
            PQfreemem(nt);
        }
        if (PQstatus(c) != CONNECTION_OK)
            return;
    }
}

static void *listener_main(void *arg)
{
    struct pc_redis rd;
    pc_redis_init(&rd, &as_cfg.redis_addr, 250);
    int backoff = 100;
    while (!atomic_load(&stop_flag)) {
        PGconn *c = as_bg_listen("portcullis-listener", "pc_revoked");
        if (c == NULL) {
            atomic_store(&up, false);
            as_bg_nap(&stop_flag, backoff);
            backoff = backoff < 2000 ? backoff * 2 : 2000;
            continue;
        }
        backoff = 100;
        atomic_store(&up, true);
        pc_log_info("listener: LISTEN pc_revoked; relaying the revocation log");
        serve(c, &rd);
        if (!atomic_load(&stop_flag))
            pc_log_warn("listener: connection lost, reconnecting");
        atomic_store(&up, false);
        PQfinish(c);
    }
    pc_redis_close(&rd);
    return NULL;
}

void as_listener_start(void)
{
    if (pthread_create(&thread, NULL, listener_main, NULL) != 0)
        pc_fatal("listener: pthread_create failed");
    started = true;
}

void as_listener_stop(void)
{
    if (!started)
        return;
    atomic_store(&stop_flag, true);
    pthread_join(thread, NULL);
    started = false;
}
