/* Portcullis - MIT licence. See LICENSE.
 *
 * streams.h: the connections that outlive their request's decision
 * (streams.c): WebSocket tunnels and streamed answers (chunked, SSE, until
 * close). Each is indexed, per worker, under the credential it was opened
 * with, so that a revocation from the feed (any thread) ends every one of
 * them on every worker within milliseconds, and each has a timer for the
 * moment its credential expires (or its tunnel lifetime ends, or a tunnel
 * has been idle for its route's window). A session's expiry is read
 * again from PostgreSQL when its timer comes: a sliding refresh anywhere
 * (another replica, authsvc, Better Auth) may have moved it. proxy.c
 * owns the exchange and does the cutting (gw_proxy_cut); this file only
 * finds whom to cut and when. Everything but gw_streams_revoked runs on
 * the stream's worker's loop.
 *
 * WebSocket frames relayed to the client are followed (headers only, never
 * re-encoded) so that a close frame of our own goes in between two frames.
 */
#ifndef GW_STREAMS_H
#define GW_STREAMS_H

#include "types.h"

struct event;

/* How a stream ended, for the access log ("closed_by") and the counters. */
enum gw_cut {
    GW_CUT_NONE = 0,
    GW_CUT_CLIENT,      /* the client closed */
    GW_CUT_UPSTREAM,    /* the upstream closed (or the answer ended) */
    GW_CUT_REVOKED,     /* the credential was revoked: WebSocket close 4001 */
    GW_CUT_EXPIRED,     /* the credential expired: close 4001 */
    GW_CUT_LIFETIME,    /* the route's tunnel_max_lifetime_s: close 1001 */
    GW_CUT_IDLE,        /* nothing either way for tunnel_idle_timeout_ms: close 1001 */
    GW_CUT_SHUTDOWN,    /* the gateway is stopping: close 1001 */
    GW_CUT_UNVERIFIED,  /* revocations missed while the feed was down could not be read
                         * back (PostgreSQL failed too): close 1012, reconnect */
};

/** The WebSocket close code and reason of a cut. */
int gw_cut_code(enum gw_cut why);
const char *gw_cut_reason(enum gw_cut why);
/** "client", "upstream", "revoked", ... */
const char *gw_cut_name(enum gw_cut why);

/* A WebSocket byte stream's frame boundaries (one direction). */
struct gw_wsframes {
    uint64_t left;          /* payload bytes of the current frame still to come */
    unsigned char hdr[14];  /* a frame header being read */
    unsigned hlen;
};

/** Follows n relayed bytes. */
void gw_ws_follow(struct gw_wsframes *f, const unsigned char *p, size_t n);
/** Between two frames: a frame of our own may go in now. */
bool gw_ws_at_boundary(const struct gw_wsframes *f);
/** Appends a server close frame (unmasked) with code and reason to b. */
void gw_ws_close_frame(struct pc_buf *b, int code, const char *reason);

struct gw_stream_link {
    struct gw_stream_link *next, **pprev;
    unsigned char key[32];
    struct gw_stream *s;
};

/** Embedded in proxy.c's exchange while it is a tunnel or a stream. */
struct gw_stream {
    struct gw_stream *prev, *next;  /* the worker's list of streams */
    struct gw_request *r;
    bool open;
    bool tunnel;                    /* a WebSocket tunnel (else a streamed answer) */
    bool user_counted;              /* counts toward GATEWAY_MAX_TUNNELS_PER_USER */
    struct gw_stream_link link[2];  /* credential hash, session id */
    unsigned nlinks;
    struct event *timer;            /* expiry, lifetime or (tunnel) idleness */
    enum gw_cut timer_cut;          /* what reaching cut_at_ms means */
    int64_t cut_at_ms;              /* wall clock of the expiry or lifetime (0: none) */
    int64_t idle_us;                /* tunnel: its idle window (tunnel_idle_timeout_ms) */
    int64_t active_us;              /* tunnel: monotonic time of its last byte either way,
                                     * stamped by proxy.c (the timer reads it lazily) */
    struct gw_wsframes down;        /* tunnel: upstream -> client frames */
    int64_t opened_us;
    uint64_t bytes_up, bytes_down;  /* client -> upstream, upstream -> client */
    enum gw_cut cut;                /* how it ended (GW_CUT_NONE while open) */
    struct gw_recheck *recheck;     /* a session's expiresAt being read again, or NULL */
};

/** Worker start/stop: w's index and the queue the feed fills. */
void gw_streams_init(struct gw_worker *w);
void gw_streams_stop(struct gw_worker *w);

/** On r's loop: a tunnel over the per-worker (GATEWAY_MAX_TUNNELS) or
 * per-user (GATEWAY_MAX_TUNNELS_PER_USER) cap? Checked before the
 * handshake goes upstream. */
bool gw_tunnel_over_cap(const struct gw_request *r);

/** On r's loop: s starts, for r (tunnel or streamed answer): indexed under
 * r's credential (hash, and session id), a timer at its expiry (and, for a
 * tunnel, the route's lifetime), counted in the gauges. */
void gw_stream_open(struct gw_stream *s, struct gw_request *r, bool tunnel);
/** On its loop: s ends (why): out of the index, timer gone, counted. */
void gw_stream_close(struct gw_stream *s, enum gw_cut why);

/** Any thread (the revocation feed): the credential whose hash is key was
 * revoked; every worker cuts the streams opened with it. */
void gw_streams_revoked(const unsigned char key[32]);
/** Any thread (the feed, when it could not read back what it missed):
 * every worker ends the streams opened with a credential whose request
 * began before before_us (monotonic) with GW_CUT_UNVERIFIED: fail closed. */
void gw_streams_cut_all(int64_t before_us);
/** The index key of a session id (JWTs' sid, sessions' id). */
void gw_stream_sid_key(const char *sid, size_t n, unsigned char key[32]);
/** On w's loop, at the start of shutdown: every tunnel gets 1001. */
void gw_streams_drain(struct gw_worker *w);

/* proxy.c: s's tunnel has moved nothing for its idle window. Returns true
 * when it was cut (GW_CUT_IDLE); false when something else bounds it (a
 * client that does not read: the front's stall bound), and the timer waits
 * another window. */
bool gw_proxy_tunnel_idle(struct gw_stream *s);

/* proxy.c: ends s's exchange now for why (a WebSocket gets its close frame
 * when it is between frames; a streamed answer is cut). Ends the request. */
void gw_proxy_cut(struct gw_stream *s, enum gw_cut why);

#endif
