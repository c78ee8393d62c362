/* Portcullis - MIT licence. See LICENSE.
 *
 * revocation.c: the revocation feed. A dedicated thread with its own loop
 * and Redis connection SUBSCRIBEs to REVOCATION_CHANNEL; each message is the
 * base64url SHA-256 of a revoked credential, dropped from L1 at once for
 * every worker.
 *
 * Losing the subscription means messages may have been missed, so until it
 * is back L1 is "degraded" (no entry trusted for more than L1_DEGRADED_TTL),
 * and when it is back L1 is flushed. The gateway starts degraded.
 */
#include "gateway.h"
#include "../lib/log.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

static struct event_base *base;
static pthread_t thread;
static redisAsyncContext *ac;
static struct event *retry_ev, *stop_ev;
static atomic_bool subscribed;
static volatile int stop_flag;
static int backoff_ms = 100;
static struct pc_redis cmd;     /* a second, blocking connection for DEL */

static void feed_connect(void);

bool gw_revocation_up(void)
{
    return atomic_load(&subscribed);
}

static void went_down(void)
{
    if (atomic_exchange(&subscribed, false) && !stop_flag)
        pc_log_warn("revocations: subscription lost; L1 capped at %llds until it is back",
                    (long long)gw_cfg.l1_degraded_ttl);
    gw_l1_set_degraded(true);
    if (stop_flag)
        return;
    struct timeval tv = {backoff_ms / 1000, (backoff_ms % 1000) * 1000};
    event_add(retry_ev, &tv);
    backoff_ms = backoff_ms < 1000 ? backoff_ms * 2 : 1000;
}

static void on_message(redisAsyncContext *c, void *reply, void *priv)
{
    redisReply *rep = reply;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3)
        return;
    const char *type = rep->element[0]->str;
    if (type && strcmp(type, "subscribe") == 0) {
        gw_l1_flush();
        GW_STAT_INC(l1_flushes);
        gw_l1_set_degraded(false);
        atomic_store(&subscribed, true);
        backoff_ms = 100;
        pc_log_info("revocations: subscribed to %s; L1 flushed", gw_cfg.revocation_channel);
        return;
    }
    if (type && strcmp(type, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        const redisReply *m = rep->element[2];
        unsigned char h[40];
        if (m->len == PC_HASH_B64_LEN && pc_b64_decode(m->str, m->len, h) == 32) {
            gw_l1_delete(h);
            GW_STAT_INC(revocations);
            /* Whoever published may not have removed the Redis copy (an
             * operator's PUBLISH, say): drop it too, or the next lookup
             * would find it there. */
            char ks[128], kk[128];
            snprintf(ks, sizeof ks, "%ss:%.*s", gw_cfg.redis_prefix, (int)m->len, m->str);
            snprintf(kk, sizeof kk, "%sk:%.*s", gw_cfg.redis_prefix, (int)m->len, m->str);
            const char *argv[] = {"DEL", ks, kk};
            if (!pc_redis_ok(&cmd, 3, argv))
                GW_STAT_INC(redis_errors);
        }
    }
}

static void on_connect(const redisAsyncContext *c, int status)
{
    if (status != REDIS_OK) {
        ac = NULL;
        went_down();
    }
}

static void on_disconnect(const redisAsyncContext *c, int status)
{
    ac = NULL;
    went_down();
}

static void feed_connect(void)
{
    if (stop_flag)
        return;
    const struct pc_redis_addr *a = &gw_cfg.redis_addr;
    ac = a->path[0] ? redisAsyncConnectUnix(a->path) : redisAsyncConnect(a->host, a->port);
    if (ac == NULL || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        ac = NULL;
        went_down();
        return;
    }
    redisLibeventAttach(ac, base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (a->password[0])
        redisAsyncCommand(ac, NULL, NULL, "AUTH %s", a->password);
    redisAsyncCommand(ac, on_message, NULL, "SUBSCRIBE %s", gw_cfg.revocation_channel);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    feed_connect();
}

static void on_stop_check(evutil_socket_t fd, short what, void *arg)
{
    if (!stop_flag)
        return;
    if (ac) {
        redisAsyncContext *c = ac;
        ac = NULL;
        redisAsyncFree(c);
    }
    event_base_loopexit(base, NULL);
}

static void *feed_main(void *arg)
{
    pc_redis_init(&cmd, &gw_cfg.redis_addr, 250);
    feed_connect();
    event_base_dispatch(base);
    pc_redis_close(&cmd);
    return NULL;
}

void gw_revocation_start(void)
{
    gw_l1_set_degraded(true);
    base = event_base_new();
    if (base == NULL)
        pc_fatal("event_base_new failed");
    retry_ev = evtimer_new(base, on_retry, NULL);
    stop_ev = event_new(base, -1, EV_PERSIST, on_stop_check, NULL);
    struct timeval tv = {0, 100000};
    event_add(stop_ev, &tv);
    if (pthread_create(&thread, NULL, feed_main, NULL) != 0)
        pc_fatal("pthread_create failed");
}

void gw_revocation_stop(void)
{
    stop_flag = 1;
    pthread_join(thread, NULL);
    event_free(retry_ev);
    event_free(stop_ev);
    event_base_free(base);
}
