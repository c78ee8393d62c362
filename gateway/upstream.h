/* Portcullis - MIT licence. See LICENSE.
 *
 * upstream.h: each worker's pool of connections per upstream
 * (upstream.c), for proxy.c's exchanges. Everything runs on the pool's
 * worker's loop.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include "types.h"
#include "../lib/util.h"
#include <event2/event.h>

struct gw_proxy;

struct upconn {
    struct upconn *next;            /* idle list */
    struct gw_uppool *pool;
    struct gw_proxy *px;            /* the exchange using it; NULL when idle */
    int fd;
    bool connecting;
    bool reused;                    /* has carried an exchange before */
    bool reading, writing;
    struct event *ev, *wev;
    char *in;
    size_t cap, len;
    struct pc_buf out;              /* the request, written in one go */
    size_t out_off;
};

struct gw_uppool {
    const struct gw_upstream *up;
    struct gw_worker *w;
    struct upconn *idle;
    size_t total;                   /* connections open, idle or busy */
    struct gw_proxy *active;        /* exchanges in progress */
};

/** Watches c for reading and/or writing (loop.h's gw_watch). */
void gw_upconn_want(struct upconn *c, bool rd, bool wr);
/** Closes and frees c (not on the idle list any more). */
void gw_upconn_close(struct upconn *c);
/** Takes c off p's idle list. */
void gw_upconn_idle_remove(struct gw_uppool *p, struct upconn *c);
/** A new connection to p's upstream, connecting, whose events call rd and
 * wr with c. NULL (errno set) when the socket cannot be made or the address
 * is refused at once. Does not check UPSTREAM_POOL. */
struct upconn *gw_upconn_open(struct gw_uppool *p, event_callback_fn rd, event_callback_fn wr);
/** After an exchange: back to the idle list (still read, to see the
 * upstream close it), or closed. */
void gw_upconn_put(struct upconn *c, bool reusable);

#endif
