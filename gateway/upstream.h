/* Portcullis - MIT licence. See LICENSE.
 *
 * upstream.h: each worker's pool of connections per upstream
 * (upstream.c), for proxy.c's exchanges: a route's choice of target
 * (round-robin, passive health), the upstream's addresses (resolve.c:
 * host names resolved off the loop with evdns, again when their TTL runs
 * out), and TLS to https:// upstreams: the contexts made at start (one
 * per CA file) and the connection's non-blocking handshake, reads and
 * writes. Everything but gw_tls_ctx_new/free runs on the pool's worker's
 * loop.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include "types.h"
#include "../lib/util.h"
#include <event2/event.h>
#include <sys/socket.h>
#include <sys/types.h>

struct gw_proxy;
struct ssl_st;
struct ssl_session_st;

struct gw_upres;

struct upconn {
    struct upconn *next;            /* idle list */
    unsigned gen;                   /* the pool's address generation it was opened in */
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
    struct ssl_st *ssl;             /* https: the TLS connection; NULL: plain */
    bool handshaking;               /* https: SSL_connect not done yet */
    bool tls_broken;                /* https: a fatal TLS error; no close_notify */
    bool rd_wants_wr;               /* https: SSL_read waits for the socket to be writable */
    bool wr_wants_rd;               /* https: SSL_write waits for it to be readable */
};

struct gw_uppool {
    const struct gw_upstream *up;
    struct gw_worker *w;
    struct upconn *idle;
    size_t total;                   /* connections open, idle or busy */
    struct gw_proxy *active;        /* exchanges in progress (walked by gw_proxy_tick) */
    struct gw_proxy *tunnels;       /* exchanges that became tunnels (streams.c times them) */
    struct ssl_session_st *sess;    /* https: the last session the upstream gave, offered
                                     * again by the next new connection (resumption) */
    struct gw_upres *res;           /* resolve.c: a host name's addresses; NULL: numeric */
    unsigned gen;                   /* bumped when the name's addresses change: connections
                                     * of an older generation are not reused */
};

/* ---- targets and passive health (upstream.c) ---- */

/** A target of route rt for a new exchange, as an index into rt->targets:
 * the next in round-robin order that is not in tried (bit k: target k)
 * and not skipped (UPSTREAM_FAIL_TIMEOUT_MS after a failure). -1 when none
 * is left; on the first pick (tried 0) a route whose targets are all
 * skipped still gets one, so that it recovers as soon as one does.
 * Thread-safe (any worker). */
int gw_target_pick(const struct gw_route *rt, unsigned tried);
/** A connection to up failed (refused, not made in time, its name does not
 * resolve): every worker skips it for UPSTREAM_FAIL_TIMEOUT_MS. */
void gw_target_failed(struct gw_upstream *up);

/* ---- addresses (resolve.c) ---- */

/** On w's loop (or at worker start): p's upstream is a host name: its
 * first resolution starts, on w's resolver (evdns, GATEWAY_RESOLVER or
 * /etc/resolv.conf, /etc/hosts first), made with the first such pool.
 * Nothing for an address. Stop: frees the resolver (answers still due are
 * dropped); runs before the pools are freed. */
void gw_resolve_pool(struct gw_worker *w, struct gw_uppool *p);
void gw_resolve_stop(struct gw_worker *w);
/** The address for p's next new connection into *sa and *len (a name's
 * addresses in turn). 1: there; 0: the name is being resolved, and
 * proxy.c's gw_proxy_resolved(p) runs when it is; -1: the name does not
 * resolve (logged). Addresses past their TTL are still used while they
 * are resolved again in the background. */
int gw_upstream_addr(struct gw_uppool *p, struct sockaddr_storage *sa, socklen_t *len);
/** Before p's idle connection is reused: a name past its TTL is resolved
 * again in the background (when its addresses change, the idle
 * connections are closed). */
void gw_upstream_fresh(struct gw_uppool *p);
/** proxy.c: p's name was resolved (or failed to): the exchanges waiting for
 * it go on. */
void gw_proxy_resolved(struct gw_uppool *p);

/** Main thread, at start: a TLS client context for https:// upstreams:
 * TLS 1.2 at least, the peer's chain verified against the PEM bundle
 * ca_file (NULL: the system store), client-side session caching through
 * the pools. NULL with err set ("cannot read ...", "holds no
 * certificate") when the file cannot be used. Freed by gw_tls_ctx_free. */
struct ssl_ctx_st *gw_tls_ctx_new(const char *ca_file, char *err, size_t errsz);
void gw_tls_ctx_free(struct ssl_ctx_st *ctx);
/** Worker stop: drops p's TLS session. */
void gw_uppool_fini(struct gw_uppool *p);

/** https: one step of c's handshake (SSL_connect), watching the events it
 * waits for. 1: done; 0: waiting; -1: failed, why says why (the
 * certificate verify error, the TLS alert or reason, or the close). */
int gw_upconn_handshake(struct upconn *c, char *why, size_t whysz);
/** https: SSL_read into buf. Bytes read; 0: the upstream closed (or a TLS
 * error: then logged); -1 with errno EAGAIN: nothing yet (rd_wants_wr set
 * when it waits to write). Data left inside OpenSSL makes c's read event
 * active again, since the socket will not say so. */
ssize_t gw_upconn_tls_read(struct upconn *c, char *buf, size_t n);
/** https: SSL_write from buf (partial writes allowed). Bytes written; -1
 * with errno EAGAIN (wr_wants_rd set when it waits to read) or EPIPE. */
ssize_t gw_upconn_tls_write(struct upconn *c, const char *buf, size_t n);

/** Watches c for reading and/or writing (loop.h's gw_watch); for https,
 * reading with data already inside OpenSSL runs the read event at once. */
void gw_upconn_want(struct upconn *c, bool rd, bool wr);
/** Closes and frees c (not on the idle list any more). */
void gw_upconn_close(struct upconn *c);
/** Takes c off p's idle list. */
void gw_upconn_idle_remove(struct gw_uppool *p, struct upconn *c);
/** A new connection to p's upstream at sa (gw_upstream_addr), connecting,
 * whose events call rd and wr with c; for https, its TLS connection made
 * (SNI, host name to verify, the pool's session offered) and handshaking
 * set. NULL (errno set) when the socket cannot be made or the address is
 * refused at once. Does not check UPSTREAM_POOL. */
struct upconn *gw_upconn_open(struct gw_uppool *p, const struct sockaddr_storage *sa,
                              socklen_t len, event_callback_fn rd, event_callback_fn wr);
/** After an exchange: back to the idle list (still read, to see the
 * upstream close it), or closed (also when p's addresses changed since it
 * was opened). */
void gw_upconn_put(struct upconn *c, bool reusable);

#endif
