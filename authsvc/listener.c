/* Portcullis - MIT licence. See LICENSE.
 *
 * listener.c: revocations from writers other than authsvc. Migration 0003
 * makes PostgreSQL NOTIFY pc_revoked from the transaction that deletes a
 * session or API key, shortens its life, disables it or changes a user's
 * cached fields. This thread holds a dedicated connection on LISTEN and
 * turns each notice ("s:<hash>" or "k:<hash>") into DEL + PUBLISH in Redis,
 * so a sign-out done by a Better Auth server or a DELETE in psql reaches
 * every gateway like one done here. The connection is re-established with
 * back-off; notices sent while it was down are lost, so after a reconnect
 * the gateways are told nothing new - their L1 TTL bounds the gap.
 */
#include "authsvc.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

static pthread_t thread;
static atomic_bool stop_flag, up;
static bool started;

bool as_listener_up(void)
{
    return atomic_load(&up);
}

/* Sleeps ms in small steps, returning early when asked to stop. */
static void nap(int ms)
{
    for (int t = 0; t < ms && !atomic_load(&stop_flag); t += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static PGconn *listen_connect(void)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {as_cfg.database_url, "3", "portcullis-listener", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        PQfinish(c);
        return NULL;
    }
    PGresult *r = PQexec(c, "LISTEN pc_revoked");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* A session id as Better Auth makes them (32 alphanumerics; allow some
 * slack for custom generateId). */
static bool id_shape(const char *s)
{
    return pc_token_chars(s, 64, "-_");
}

static void handle(struct pc_redis *rd, const char *payload)
{
    if (payload[0] == 'i' && payload[1] == ':' && id_shape(payload + 2)) {
        as_revoke_hash(rd, 'i', payload + 2);
        return;
    }
    if ((payload[0] != 's' && payload[0] != 'k') || payload[1] != ':' ||
        strlen(payload + 2) != PC_HASH_B64_LEN) {
        pc_log_warn("listener: ignoring malformed notice");
        return;
    }
    as_revoke_hash(rd, payload[0], payload + 2);
}

static void *listener_main(void *arg)
{
    struct pc_redis rd;
    pc_redis_init(&rd, &as_cfg.redis_addr, 250);
    int backoff = 100;
    while (!atomic_load(&stop_flag)) {
        PGconn *c = listen_connect();
        if (c == NULL) {
            atomic_store(&up, false);
            nap(backoff);
            backoff = backoff < 2000 ? backoff * 2 : 2000;
            continue;
        }
        backoff = 100;
        atomic_store(&up, true);
        pc_log_info("listener: LISTEN pc_revoked");
        while (!atomic_load(&stop_flag)) {
            struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
            int n = poll(&pfd, 1, 200);
            if (n == -1 && errno != EINTR)
                break;
            if (n > 0 && !PQconsumeInput(c))
                break; /* connection lost */
            PGnotify *nt;
            while ((nt = PQnotifies(c)) != NULL) {
                handle(&rd, nt->extra);
                PQfreemem(nt);
            }
            if (PQstatus(c) != CONNECTION_OK)
                break;
        }
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
