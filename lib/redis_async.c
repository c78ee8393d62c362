/* Portcullis - MIT licence. See LICENSE.
 *
 * redis_async.c: a self-healing async hiredis connection (redis_async.h).
 * Taken out of the gateway's l2redis.c, which, with limit.c, now uses it
 * for each worker's connection.
 */
#include "redis_async.h"
#include "log.h"
#include "redis_sentinel.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#define WATCH_EVERY_MS 250
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct pc_ra {
    struct event_base *base;
    struct pc_redis_addr addr;
    int64_t deadline_ms;
    bool log;
    pc_ra_notify_fn *notify;
    void *arg;
    redisAsyncContext *ac;      /* NULL while down */
    bool connected;             /* connect callback said yes */
    bool closing;               /* pc_ra_free: no reconnect */
    struct event *retry_ev;     /* reconnect timer */
    struct event *watch_ev;     /* the hang watchdog */
    int backoff_ms;
    bool ping_out;              /* a watchdog PING awaits its answer */
    int64_t ping_sent_ms;       /* when it was sent, mono ms */
    uint64_t gen;               /* the Sentinel master generation it connected to */
};

/* One command with a callback. cb is NULL once it has run (a timeout). */
struct ra_op {
    pc_ra_cb *cb;
    void *priv;
    struct event *timer;
};

static void ra_connect(struct pc_ra *ra);

static void tell(struct pc_ra *ra, enum pc_ra_event ev)
{
    if (ra->notify)
        ra->notify(ra->arg, ev);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    ra_connect(arg);
}

static void schedule_retry(struct pc_ra *ra)
{
    if (ra->closing)
        return;
    struct timeval tv = {ra->backoff_ms / 1000, (ra->backoff_ms % 1000) * 1000};
    event_add(ra->retry_ev, &tv);
    ra->backoff_ms = ra->backoff_ms < BACKOFF_MAX_MS ? ra->backoff_ms * 2 : BACKOFF_MAX_MS;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct pc_ra *ra = ac->data;
    if (ra == NULL)
        return;
    if (status != REDIS_OK) {
        if (ra->log)
            pc_log_warn("redis: connect failed: %s", ac->errstr);
        ra->ac = NULL; /* hiredis frees it after this callback */
        ra->connected = false;
        pc_sentinel_suspect();
        schedule_retry(ra);
        return;
    }
    ra->connected = true;
    ra->backoff_ms = BACKOFF_MIN_MS;
    tell(ra, PC_RA_CONNECTED);
    if (ra->log)
        pc_log_info("redis: connected");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct pc_ra *ra = ac->data;
    if (ra == NULL)
        return;
    ra->ac = NULL;
    ra->connected = false;
    if (status != REDIS_OK) {
        tell(ra, PC_RA_LOST);
        if (ra->log)
            pc_log_warn("redis: connection lost");
        schedule_retry(ra);
    }
}

static void on_auth_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        pc_log_warn("redis: AUTH/SELECT failed");
}

static void ra_connect(struct pc_ra *ra)
{
    struct pc_redis_addr resolved;
    const struct pc_redis_addr *a = &resolved;
    if (!pc_sentinel_resolve(&ra->addr, &resolved, &ra->gen)) {
        schedule_retry(ra);     /* no master known yet */
        return;
    }
    redisAsyncContext *ac = a->path[0] ? redisAsyncConnectUnix(a->path)
                                       : redisAsyncConnect(a->host, a->port);
    if (ac == NULL || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(ra);
        return;
    }
    ac->data = ra;
    redisLibeventAttach(ac, ra->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (a->password[0])
        redisAsyncCommand(ac, on_auth_reply, NULL, "AUTH %s", a->password);
    if (a->db)
        redisAsyncCommand(ac, on_auth_reply, NULL, "SELECT %d", a->db);
    ra->ac = ac;
}

/* Drops the connection now: pending callbacks run with NULL replies. */
static void drop(struct pc_ra *ra)
{
    redisAsyncContext *ac = ra->ac;
    ra->ac = NULL;
    ra->connected = false;
    ra->ping_out = false;
    if (ac) {
        ac->data = NULL;        /* on_disconnect: nothing left to do */
        redisAsyncFree(ac);
    }
}

static void on_pong(redisAsyncContext *ac, void *reply, void *priv)
{
    struct pc_ra *ra = priv;
    if (ac->data != NULL)
        ra->ping_out = false;
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    struct pc_ra *ra = arg;
    if (pc_sentinel_moved(ra->gen) && !ra->closing) {
        /* a failover: to the new master now, not after the back-off */
        if (ra->log)
            pc_log_info("redis: the master moved; reconnecting");
        if (ra->connected)
            tell(ra, PC_RA_LOST);
        drop(ra);
        event_del(ra->retry_ev);
        ra->backoff_ms = BACKOFF_MIN_MS;
        ra_connect(ra);
        return;
    }
    if (ra->deadline_ms <= 0)
        return;
    if (!ra->connected || ra->ac == NULL) {
        ra->ping_out = false;
        return;
    }
    int64_t now = pc_mono_us() / 1000;
    if (!ra->ping_out) {
        if (redisAsyncCommand(ra->ac, on_pong, ra, "PING") == REDIS_OK) {
            ra->ping_out = true;
            ra->ping_sent_ms = now;
        }
        return;
    }
    if (now - ra->ping_sent_ms <= ra->deadline_ms)
        return;
    if (ra->log)
        pc_log_warn("redis: no answer for %lld ms; reconnecting",
                    (long long)(now - ra->ping_sent_ms));
    tell(ra, PC_RA_HUNG);
    drop(ra);
    schedule_retry(ra);
}

struct pc_ra *pc_ra_new(struct event_base *base, const struct pc_ra_opts *o)
{
    struct pc_ra *ra = pc_xcalloc(1, sizeof *ra);
    ra->base = base;
    ra->addr = *o->addr;
    ra->deadline_ms = o->deadline_ms;
    ra->log = o->log;
    ra->notify = o->notify;
    ra->arg = o->arg;
    ra->backoff_ms = BACKOFF_MIN_MS;
    ra->retry_ev = evtimer_new(base, on_retry, ra);
    if (ra->retry_ev == NULL)
        pc_fatal("event_new failed");
    if (ra->deadline_ms > 0 || pc_sentinel_on()) {
        ra->watch_ev = event_new(base, -1, EV_PERSIST, on_watch, ra);
        if (ra->watch_ev == NULL)
            pc_fatal("event_new failed");
        struct timeval tv = {0, WATCH_EVERY_MS * 1000};
        event_add(ra->watch_ev, &tv);
    }
    ra_connect(ra);
    return ra;
}

void pc_ra_free(struct pc_ra *ra)
{
    if (ra == NULL)
        return;
    ra->closing = true;
    drop(ra);
    event_free(ra->retry_ev);
    if (ra->watch_ev)
        event_free(ra->watch_ev);
    free(ra);
}

bool pc_ra_up(const struct pc_ra *ra)
{
    return ra && ra->connected && ra->ac != NULL;
}

static void op_free(struct ra_op *op)
{
    if (op->timer)
        event_free(op->timer);
    free(op);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct ra_op *op = priv;
    pc_ra_cb *cb = op->cb;
    void *p = op->priv;
    op_free(op);
    const redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR && pc_redis_reply_readonly(rep->str, rep->len))
        pc_sentinel_suspect();  /* a demoted master: the watcher asks again */
    if (cb)
        cb(reply, reply ? NULL : "closed", p);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct ra_op *op = arg;
    pc_ra_cb *cb = op->cb;
    op->cb = NULL;              /* the reply, when it comes, only frees op */
    event_free(op->timer);
    op->timer = NULL;
    cb(NULL, "timeout", op->priv);
}

bool pc_ra_command(struct pc_ra *ra, int64_t timeout_ms, pc_ra_cb *cb, void *priv, int argc,
                   const char **argv, const size_t *lens)
{
    if (!pc_ra_up(ra))
        return false;
    struct ra_op *op = pc_xcalloc(1, sizeof *op);
    op->cb = cb;
    op->priv = priv;
    if (redisAsyncCommandArgv(ra->ac, on_reply, op, argc, argv, lens) != REDIS_OK) {
        free(op);
        return false;
    }
    if (timeout_ms > 0) {
        op->timer = evtimer_new(ra->base, on_timeout, op);
        if (op->timer == NULL)
            pc_fatal("event_new failed");
        struct timeval tv = {(time_t)(timeout_ms / 1000),
                             (suseconds_t)((timeout_ms % 1000) * 1000)};
        evtimer_add(op->timer, &tv);
    }
    return true;
}

static void on_sent(redisAsyncContext *ac, void *reply, void *priv)
{
    pc_ra_done_fn *done;
    memcpy(&done, &priv, sizeof done);
    redisReply *rep = reply;
    if (rep && rep->type == REDIS_REPLY_ERROR && pc_redis_reply_readonly(rep->str, rep->len))
        pc_sentinel_suspect();
    if (done)
        done(rep == NULL || rep->type == REDIS_REPLY_ERROR);
}

static_assert(sizeof(void *) == sizeof(pc_ra_done_fn *), "a callback fits hiredis' priv");

bool pc_ra_send(struct pc_ra *ra, pc_ra_done_fn *done, int argc, const char **argv,
                const size_t *lens)
{
    if (!pc_ra_up(ra))
        return false;
    void *priv;
    memcpy(&priv, &done, sizeof priv);
    return redisAsyncCommandArgv(ra->ac, on_sent, priv, argc, argv, lens) == REDIS_OK;
}
