/* Portcullis - MIT licence. See LICENSE.
 *
 * redis_async.h: one non-blocking hiredis connection on a libevent loop,
 * kept up by itself (the shape of h2o's include/h2o/redis.h).
 *
 *   connect     at once; a failed or lost connection is retried with
 *               back-off (100 ms doubling to 2 s); AUTH and SELECT from the
 *               address are sent first
 *   watchdog    with deadline_ms, a PING every 250 ms: one unanswered for
 *               deadline_ms drops the connection (a Redis that hangs without
 *               closing: SIGSTOP, a partition) and a new one is made
 *   commands    sent only while connected; each may carry a timeout, and
 *               its callback runs exactly once, with the reply or with an
 *               errstr ("timeout", "closed")
 *
 * Everything runs on the loop's thread. Redis holds caches and counters:
 * a caller treats "not connected" and every errstr as "carry on without
 * Redis" (or fail closed), never as an answer.
 */
#ifndef PC_REDIS_ASYNC_H
#define PC_REDIS_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "redis.h"
#include "util.h"

struct event_base;
struct redisAsyncContext;
struct pc_ra;

enum pc_ra_event {
    PC_RA_CONNECTED = 0,    /* a connection was made */
    PC_RA_LOST,             /* an established connection closed with an error */
    PC_RA_HUNG,             /* the watchdog's PING went unanswered: dropped */
};
/** Told on the loop about the connection's life (for counters). */
typedef void pc_ra_notify_fn(void *arg, enum pc_ra_event ev);

struct pc_ra_opts {
    const struct pc_redis_addr *addr;   /* copied */
    int64_t deadline_ms;    /* watchdog: 0 = none */
    bool log;               /* log connects, losses and hangs (one instance of many) */
    pc_ra_notify_fn *notify;            /* NULL: none */
    void *arg;
};

/** On base's thread: a connection that starts connecting now. */
struct pc_ra *pc_ra_new(struct event_base *base, const struct pc_ra_opts *o);
/** On base's thread: closes it; every pending command's callback runs now
 * with errstr "closed". NULL: nothing. */
void pc_ra_free(struct pc_ra *ra);
/** Connected now. */
bool pc_ra_up(const struct pc_ra *ra);

/** A command's answer: reply (a redisReply, freed by hiredis after the
 * call) with errstr NULL; or reply NULL and errstr "timeout" or "closed". */
typedef void pc_ra_cb(void *reply, const char *errstr, void *priv);

/** Sends argv (lens NULL: C strings). cb runs exactly once, at most
 * timeout_ms later (0: no timeout; a late reply is dropped). False: not
 * connected, or hiredis refused it; cb will not run. */
PC_MUSTCHECK bool pc_ra_command(struct pc_ra *ra, int64_t timeout_ms, pc_ra_cb *cb, void *priv,
                                int argc, const char **argv, const size_t *lens);
/** Fire and forget: sends argv; failed tells whether the reply was an
 * error (or none), for counting. False: not connected. */
typedef void pc_ra_done_fn(bool failed);
bool pc_ra_send(struct pc_ra *ra, pc_ra_done_fn *done, int argc, const char **argv,
                const size_t *lens);

#endif
