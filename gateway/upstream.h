/* Portcullis - MIT licence. See LICENSE.
 *
 * upstream.h: each worker's pool of connections per upstream
 * (upstream.c), for proxy.c's exchanges, and TLS to https:// upstreams:
 * the contexts made at start (one per CA file) and the connection's
 * non-blocking handshake, reads and writes. Everything but
 * gw_tls_ctx_new/free runs on the pool's worker's loop.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include "types.h"
#include "../lib/util.h"
#include <event2/event.h>
#include <sys/types.h>

struct gw_proxy;
struct ssl_st;
struct ssl_session_st;

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
    struct gw_proxy *active;        /* exchanges in progress */
    struct ssl_session_st *sess;    /* https: the last session the upstream gave, offered
                                     * again by the next new connection (resumption) */
};

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
/** A new connection to p's upstream, connecting, whose events call rd and
 * wr with c; for https, its TLS connection made (SNI, host name to verify,
 * the pool's session offered) and handshaking set. NULL (errno set) when
 * the socket cannot be made or the address is refused at once. Does not
 * check UPSTREAM_POOL. */
struct upconn *gw_upconn_open(struct gw_uppool *p, event_callback_fn rd, event_callback_fn wr);
/** After an exchange: back to the idle list (still read, to see the
 * upstream close it), or closed. */
void gw_upconn_put(struct upconn *c, bool reusable);

#endif
