/* Portcullis - MIT licence. See LICENSE.
 *
 * revocation.c: the revocation feed. A dedicated thread with its own loop
 * and Redis connection SUBSCRIBEs to REVOCATION_CHANNEL; each message is the
 * base64url SHA-256 of a revoked credential, dropped from L1 at once for
 * every worker.
 *
 * Losing the subscription means messages may have been missed, so until it
 * is back L1 is "degraded" (no entry trusted for more than L1_DEGRADED_TTL_SECONDS),
 * and when it is back L1 is flushed. The gateway starts degraded. A message
 * numbered out of turn (lib/revmsg.h: a hole means one was lost, a step back
 * a Redis that lost its data) flushes L1 too.
 *
 * A Redis that hangs (SIGSTOP, a partition without a reset) closes nothing,
 * so the subscription is watched end to end: it also subscribes to a
 * heartbeat channel of its own, <channel>:hb:<pid>.<random>, and PUBLISHes
 * there every HB_EVERY_MS on the command connection. A heartbeat not back
 * within GATEWAY_REDIS_DEADLINE_MS means the feed is lost: the connection
 * is dropped and made again, L1 is degraded, and /ready says so.
 *
 * L1's flush covers what was missed for requests to come, not for the
 * tunnels and streams already open. So when the feed is back, what
 * PostgreSQL's revocation log (migration 0005) recorded since the loss
 * (and the heartbeat deadline before it, and a margin) is read back on
 * this thread's own connection and applied to them, and to the revoked
 * session ids. When that cannot be read, every stream that began before
 * the feed came back is cut (close 1012): fail closed.
 */
#include "feed.h"
#include "cache.h"
#include "metrics.h"
#include "streams.h"
#include "store.h"
#include "../lib/keyspace.h"
#include "../lib/crypto.h"
#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/redis_sentinel.h"
#include "../lib/revmsg.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

static struct event_base *base;
static pthread_t thread;
static redisAsyncContext *ac;
static struct event *retry_ev, *stop_ev, *hb_ev;
static atomic_bool subscribed;
static volatile int stop_flag;
static int backoff_ms = 100;
static struct pc_redis cmd;     /* a second, blocking connection: DEL, heartbeats */

#define HB_EVERY_MS 250
static char hb_channel[256];    /* this process's heartbeat channel */
static int64_t hb_seen_ms;      /* last heartbeat back (or connect), mono ms */
static uint64_t feed_gen;       /* the Sentinel master generation subscribed to */
static int64_t last_seq;        /* last numbered message on this subscription */
static int64_t lost_at_us;      /* the feed was lost then (mono; start: degraded); 0: up */
static struct pc_db logdb;      /* this thread's: the revocation log read back */

#define REPLAY_MARGIN_S 5       /* read back this much more than the loss lasted */

static void feed_connect(void);

/* ---- revoked session ids (JWTs carry sid, not the session token) ---- */

#define SID_BUCKETS 4096
#define SID_MAX_LEN 64
#define SID_MAX_ENTRIES 1000000
#define REVOKED_SID_KEEP_MS (25LL * 3600 * 1000)

struct sid_entry {
    struct sid_entry *next;
    int64_t until;          /* ms since epoch */
    char id[SID_MAX_LEN + 1];
};

/* Every JWT request looks here once a session has been revoked, so there is
 * no single lock: bucket b is guarded by sid_mu[b % SID_STRIPES]. */
#define SID_STRIPES 64
static pthread_mutex_t sid_mu[SID_STRIPES] = {[0 ... SID_STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};
static struct sid_entry *sid_tab[SID_BUCKETS];
static atomic_size_t sid_count;
static atomic_size_t sid_inserts;

static pthread_mutex_t *sid_lock(size_t bucket)
{
    return &sid_mu[bucket % SID_STRIPES];
}

static size_t sid_bucket(const char *id)
{
    size_t h = 5381;
    for (; *id; id++)
        h = h * 33 + (unsigned char)*id;
    return h % SID_BUCKETS;
}

/* Drops expired entries, taking each bucket's lock in turn (none held). */
static void sid_sweep(int64_t now)
{
    for (size_t b = 0; b < SID_BUCKETS; b++) {
        pthread_mutex_t *mu = sid_lock(b);
        pthread_mutex_lock(mu);
        for (struct sid_entry **pp = &sid_tab[b]; *pp;) {
            if ((*pp)->until <= now) {
                struct sid_entry *dead = *pp;
                *pp = dead->next;
                free(dead);
                atomic_fetch_sub(&sid_count, 1);
            } else {
                pp = &(*pp)->next;
            }
        }
        pthread_mutex_unlock(mu);
    }
}

void gw_sid_revoke(const char *id)
{
    if (strlen(id) == 0 || strlen(id) > SID_MAX_LEN)
        return;
    int64_t now = pc_now_ms();
    if (atomic_fetch_add(&sid_inserts, 1) % 4096 == 4095)
        sid_sweep(now);
    size_t b = sid_bucket(id);
    pthread_mutex_t *mu = sid_lock(b);
    pthread_mutex_lock(mu);
    struct sid_entry *e = sid_tab[b];
    while (e && strcmp(e->id, id) != 0)
        e = e->next;
    if (e == NULL && atomic_load(&sid_count) < SID_MAX_ENTRIES) {
        e = pc_xcalloc(1, sizeof *e);
        strcpy(e->id, id);
        e->next = sid_tab[b];
        sid_tab[b] = e;
        atomic_fetch_add(&sid_count, 1);
    } else if (e == NULL) {
        pc_log_error("revocations: %d revoked sessions remembered; dropping one", SID_MAX_ENTRIES);
    }
    if (e)
        e->until = now + REVOKED_SID_KEEP_MS;
    pthread_mutex_unlock(mu);
}

bool gw_sid_revoked(const char *id)
{
    if (id[0] == '\0' || atomic_load_explicit(&sid_count, memory_order_relaxed) == 0)
        return false;
    int64_t now = pc_now_ms();
    size_t b = sid_bucket(id);
    pthread_mutex_t *mu = sid_lock(b);
    pthread_mutex_lock(mu);
    const struct sid_entry *e = sid_tab[b];
    while (e && strcmp(e->id, id) != 0)
        e = e->next;
    bool hit = e && e->until > now;
    pthread_mutex_unlock(mu);
    return hit;
}

static void sid_free_all(void)
{
    sid_sweep(INT64_MAX);
}

/* Refills the set from <prefix>rsid:* (on every subscribe). */
static void sid_reload(void)
{
    char match[PC_KEY_MAX], cursor[32] = "0";
    (void)pc_key_revoked_sid_pattern(match, sizeof match, gw_cfg.redis_prefix);
    size_t plen = strlen(gw_cfg.redis_prefix) + strlen(PC_KEY_TAG_REVOKED_SID);
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", match, "COUNT", "1000"};
        redisReply *rep = pc_redis_cmd(&cmd, 6, argv, NULL);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            if (rep)
                freeReplyObject(rep);
            GW_STAT_INC(redis_errors);
            pc_log_warn("revocations: cannot read revoked sessions from Redis");
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        for (size_t i = 0; i < rep->element[1]->elements; i++) {
            const redisReply *k = rep->element[1]->element[i];
            if (k->type == REDIS_REPLY_STRING && k->len > plen)
                gw_sid_revoke(k->str + plen);
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
}

bool gw_revocation_up(void)
{
    return atomic_load(&subscribed);
}

static void went_down(void)
{
    if (lost_at_us == 0) /* the heartbeat's deadline is added when it is read back */
        lost_at_us = pc_mono_us();
    if (atomic_exchange(&subscribed, false) && !stop_flag)
        pc_log_warn("revocations: subscription lost; L1 capped at %llds until it is back",
                    (long long)gw_cfg.l1_degraded_ttl);
    gw_l1_set_degraded(true);
    gw_pg_replicas_trusted(false);
    if (stop_flag)
        return;
    struct timeval tv = {backoff_ms / 1000, (backoff_ms % 1000) * 1000};
    event_add(retry_ev, &tv);
    backoff_ms = backoff_ms < 1000 ? backoff_ms * 2 : 1000;
}

static void revocation_message(const redisReply *m)
{
    struct pc_rev_msg msg;
    if (!pc_rev_parse(m->str, m->len, &msg))
        return;
    if (pc_rev_seq_check(&last_seq, msg.seq)) {
        pc_log_warn("revocations: message %lld out of turn; L1 flushed", (long long)msg.seq);
        gw_l1_flush();
        gw_pg_replicas_trusted(true);   /* the missed ones: the primary, for a while */
        GW_STAT_INC(l1_flushes);
    }
    GW_STAT_INC(revocations);
    if (msg.kind == 'i') {
        char id[PC_REV_SID_MAX + 1];
        snprintf(id, sizeof id, "%.*s", (int)msg.id_len, msg.id);
        gw_sid_revoke(id);
        unsigned char key[32];
        gw_stream_sid_key(id, strlen(id), key);
        gw_streams_revoked(key);     /* open tunnels and streams of that session */
        return;
    }
    gw_l1_delete(msg.hash);
    gw_pg_revoked(msg.hash);        /* a replica may not have replayed it yet */
    gw_streams_revoked(msg.hash);
    /* Whoever published may not have removed the Redis copy (an operator's
     * PUBLISH, say): drop it too, or the next lookup would find it there. */
    char ks[PC_KEY_MAX], kk[PC_KEY_MAX];
    (void)pc_key_cred(ks, sizeof ks, gw_cfg.redis_prefix, PC_CACHE_SESSION, msg.id, msg.id_len);
    (void)pc_key_cred(kk, sizeof kk, gw_cfg.redis_prefix, PC_CACHE_API_KEY, msg.id, msg.id_len);
    const char *argv[] = {"DEL", ks, kk};
    if (!pc_redis_ok(&cmd, 3, argv))
        GW_STAT_INC(redis_errors);
    /* a lookup that read that copy before the DEL began before this second
     * delete's epoch, so what it found is not cached */
    gw_l1_delete(msg.hash);
}

/* The streams (and revoked session ids) under one logged tag. */
static void replay_tag(const char *tag, size_t n)
{
    struct pc_rev_msg msg;
    if (n > 2 && (tag[0] == 's' || tag[0] == 'k') && tag[1] == ':' &&
        pc_rev_parse(tag + 2, n - 2, &msg) && msg.kind == 'h') {
        gw_streams_revoked(msg.hash);
        /* and the Redis copy, as for a live message (gone already when
         * authsvc relayed it) */
        char k[PC_KEY_MAX];
        enum pc_cache_kind kind = tag[0] == 's' ? PC_CACHE_SESSION : PC_CACHE_API_KEY;
        if (pc_key_cred(k, sizeof k, gw_cfg.redis_prefix, kind, msg.id, msg.id_len)) {
            const char *argv[] = {"DEL", k};
            if (!pc_redis_ok(&cmd, 2, argv))
                GW_STAT_INC(redis_errors);
        }
        return;
    }
    if (n > 2 && n - 2 <= PC_REV_SID_MAX && tag[0] == 'i' && tag[1] == ':') {
        char id[PC_REV_SID_MAX + 1];
        snprintf(id, sizeof id, "%.*s", (int)(n - 2), tag + 2);
        gw_sid_revoke(id);
        unsigned char key[32];
        gw_stream_sid_key(id, strlen(id), key);
        gw_streams_revoked(key);
    }
}

/* The feed is back after lost_at_us: what the log recorded meanwhile. */
static void replay_log(void)
{
    int64_t now = pc_mono_us(), since = lost_at_us;
    lost_at_us = 0;
    if (since == 0)
        return;
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f",
             (double)(now - since) / 1e6 + (double)gw_cfg.redis_deadline_ms / 1e3 + REPLAY_MARGIN_S);
    const char *p[] = {secs};
    PGresult *res = pc_db_exec(&logdb,
                               "SELECT \"tag\" FROM portcullis_revocation WHERE \"createdAt\" >= "
                               "now() - make_interval(secs => $1::double precision)",
                               1, p);
    if (!pc_db_ok(res)) {
        pc_log_warn("revocations: the log of what was missed cannot be read (%s); open tunnels "
                    "and streams are closed", res ? PQresultErrorMessage(res) : "no connection");
        if (res)
            PQclear(res);
        gw_streams_cut_all(now);
        return;
    }
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++)
        replay_tag(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
    __atomic_add_fetch(&gw_stats.revocations_replayed, (uint64_t)rows, __ATOMIC_RELAXED);
    PQclear(res);
    if (rows > 0)
        pc_log_info("revocations: %d logged in the last %s s applied to open tunnels and streams",
                    rows, secs);
}

static void on_message(redisAsyncContext *c, void *reply, void *priv)
{
    redisReply *rep = reply;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *type = rep->element[0]->str;
    bool feed = strcmp(rep->element[1]->str, gw_cfg.revocation_channel) == 0;
    if (!feed) {
        hb_seen_ms = pc_mono_us() / 1000; /* the heartbeat channel: alive */
        return;
    }
    if (strcmp(type, "subscribe") == 0) {
        sid_reload();
        gw_l1_flush();
        GW_STAT_INC(l1_flushes);
        gw_l1_set_degraded(false);
        gw_pg_replicas_trusted(true);
        last_seq = 0;
        atomic_store(&subscribed, true);
        backoff_ms = 100;
        pc_log_info("revocations: subscribed to %s; L1 flushed", gw_cfg.revocation_channel);
        replay_log();
        return;
    }
    if (strcmp(type, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING)
        revocation_message(rep->element[2]);
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
    struct pc_redis_addr resolved;
    const struct pc_redis_addr *a = &resolved;
    if (!pc_sentinel_resolve(&gw_cfg.redis_addr, &resolved, &feed_gen)) {
        went_down();            /* no master known yet: retried */
        return;
    }
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
    if (a->db)
        redisAsyncCommand(ac, NULL, NULL, "SELECT %d", a->db);
    hb_seen_ms = pc_mono_us() / 1000;
    redisAsyncCommand(ac, on_message, NULL, "SUBSCRIBE %s %s", gw_cfg.revocation_channel,
                      hb_channel);
}

/* Every HB_EVERY_MS: send a heartbeat, and drop a subscription whose last
 * one did not come back in time. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    if (stop_flag || ac == NULL)
        return;
    int64_t now = pc_mono_us() / 1000;
    bool moved = pc_sentinel_moved(feed_gen);
    if (moved || now - hb_seen_ms > gw_cfg.redis_deadline_ms) {
        /* a hung Redis, or a failover (lib/redis_sentinel.h): either way a
         * lost subscription, resubscribed on the master */
        if (moved)
            pc_log_warn("revocations: the Redis master moved; resubscribing there");
        else
            pc_log_warn("revocations: Redis left the feed unanswered for %lld ms; reconnecting",
                        (long long)(now - hb_seen_ms));
        GW_STAT_INC(redis_errors);
        redisAsyncContext *c = ac;
        ac = NULL;
        redisAsyncFree(c);      /* once connected, on_disconnect: went_down() */
        if (!evtimer_pending(retry_ev, NULL))
            went_down();
        return;
    }
    const char *argv[] = {"PUBLISH", hb_channel, "hb"};
    if (!pc_redis_ok(&cmd, 3, argv))
        GW_STAT_INC(redis_errors);
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
    pc_db_init(&logdb, gw_cfg.database_url);
    lost_at_us = pc_mono_us(); /* it starts degraded: anything before the first subscribe */
    feed_connect();
    event_base_dispatch(base);
    pc_redis_close(&cmd);
    pc_db_close(&logdb);
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
    unsigned char rnd[6];
    pc_random_bytes(rnd, sizeof rnd);
    snprintf(hb_channel, sizeof hb_channel, "%s:hb:%ld.%02x%02x%02x%02x%02x%02x",
             gw_cfg.revocation_channel, (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
             rnd[5]);
    hb_ev = event_new(base, -1, EV_PERSIST, on_heartbeat, NULL);
    struct timeval hb = {0, HB_EVERY_MS * 1000};
    event_add(hb_ev, &hb);
    if (pthread_create(&thread, NULL, feed_main, NULL) != 0)
        pc_fatal("pthread_create failed");
}

void gw_revocation_stop(void)
{
    stop_flag = 1;
    pthread_join(thread, NULL);
    event_free(retry_ev);
    event_free(stop_ev);
    event_free(hb_ev);
    event_base_free(base);
    sid_free_all();
}
