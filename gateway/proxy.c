/* Portcullis - MIT licence. See LICENSE.
 *
 * proxy.c: stage ANSWER, the exchange. Forwards an allowed request upstream
 * and the answer back, over non-blocking sockets (plain, or TLS to an
 * https:// upstream), on the worker's pool (upstream.c), with the header
 * policy of identity.c.
 *
 *   request   method, path (key segment removed, or with strip_prefix all of
 *             the prefix; upstream base path added), query, body and
 *             end-to-end headers; hop-by-hop headers, the credential and any
 *             client-sent identity headers are dropped; X-User-Id,
 *             X-User-Email, X-Auth-Method, X-Session-Id or X-Api-Key-Id,
 *             X-Request-Id, X-Forwarded-For/-Proto/-Host (and -Prefix) are
 *             set, a TRUSTED_PROXIES peer's kept. Host is the upstream's, or
 *             with preserve_host the client's. Then the route's
 *             request_headers (identity.c gw_hdr_ruled).
 *             A request with its whole body goes out in one write.
 *   bodies    a streamed body (r->body_stream: not all read with its head)
 *             goes after the head with the client's Content-Length, or
 *             chunked as it came, each window the front filled taken
 *             (gw_front_body_peek) only once the upstream took the last:
 *             an upload costs GW_BODY_WINDOW, whatever its size. Its bytes
 *             are taken once the connection is made (so a target that
 *             cannot be reached leaves the next one the whole body); such
 *             a request is never retried after that. Waiting for the
 *             client's bytes is the front's silence bound, not timeout_ms.
 *             An answer before the body's end stops sending it, and neither
 *             connection is reused. A body that turns out malformed or too
 *             large is 400 or 413, the upstream connection closed.
 *   answer    parsed in place (lib/http.c) and relayed as it arrives: with
 *             the upstream's Content-Length when it has one, else chunked
 *             (re-framed after decoding). A small answer costs one read and
 *             one write to the client. The route's response_headers apply
 *             to the relayed head (never to the gateway's own errors).
 *             After a sliding refresh of a cookie session the session
 *             cookie is added once more (identity.c), after them, unless
 *             the upstream's answer sets that cookie itself.
 *             While the client has more than
 *             OUT_BACKLOG queued (front.c), the upstream is not read.
 *   targets   a route's next target in turn (upstream.c); a connection not
 *             made (refused, not in time, a name without address) skips
 *             that target for a while and goes on to the next one, any
 *             method, since nothing was sent; once every target was tried,
 *             502 (504 after a timeout, 503 when the pool was full). An
 *             exchange whose target's name is not resolved yet waits
 *             (PX_RESOLVE, no connection) for gw_proxy_resolved.
 *   pool      per worker and upstream, up to UPSTREAM_POOL keep-alive
 *             connections; past that 503. Idle connections are watched: an
 *             upstream that closes one is seen at once. A GET, HEAD or
 *             OPTIONS that finds a reused connection closed before any
 *             answer byte is retried once on a new one.
 *   tls       https:// upstreams: a new connection does its handshake
 *             (upstream.c) before the request is written; the route's
 *             timeout covers connect and handshake together. A handshake
 *             or certificate that fails is 502 UPSTREAM_TLS with the reason
 *             logged, and nothing is sent. Reused connections keep their
 *             TLS; reads and writes go through OpenSSL, otherwise as plain.
 *   failures  connection refused or broken, or a malformed answer (an
 *             HTTP/1.0 one with Transfer-Encoding among them): 502;
 *             nothing read for the route's timeout_ms, else
 *             UPSTREAM_TIMEOUT_SECONDS: 504. After the answer has
 *             started, the client's connection is closed instead (a cut
 *             stream must not look complete). A failed exchange's upstream
 *             connection is closed, never pooled.
 *   tunnels   a WebSocket handshake (r->upgrade) on a websocket route goes
 *             with Connection: Upgrade and Upgrade: websocket; the
 *             upstream's 101 is relayed and the exchange becomes PX_TUNNEL:
 *             bytes both ways (gw_proxy_tunnel_in from the front, reads into
 *             the stack from the upstream), each side paused while the
 *             other has its backlog queued, nothing pooled. Tunnels and
 *             long streamed answers are streams.c's streams: revocation,
 *             expiry, lifetime and idleness end them through gw_proxy_cut.
 *   cancel    a client that leaves (closes its side, or cannot be written
 *             to), before the answer or during it, cancels the exchange:
 *             the upstream connection is closed at once.
 */
#include "stages.h"
#include "proxy.h"
#include "cors.h"
#include "metrics.h"
#include "upstream.h"
#include "streams.h"
#include "../lib/http.h"
#include "../lib/log.h"
#include "../lib/netaddr.h"

#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/event.h>

#define UP_HEAD_MAX (1024 * 1024)   /* an answer head larger than this is 502 */
#define TUNNEL_BACKLOG (256 * 1024) /* unsent bytes to the upstream that pause the client */

/* the header k of kn bytes is lit (any case) */
#define IS(k, kn, lit) ((kn) == sizeof lit - 1 && strncasecmp((k), lit, (kn)) == 0)

enum px_state {
    PX_SEND = 0,
    PX_HEAD,
    PX_BODY,
    PX_RESOLVE,     /* waits for its target's name */
    PX_TUNNEL,      /* after a 101: bytes both ways */
};

struct gw_proxy {
    struct gw_proxy *prev, *next;   /* pool->active, or pool->tunnels */
    bool on_tunnels;
    struct gw_request *r;
    struct gw_uppool *pool;
    struct upconn *uc;
    enum px_state state;
    bool head_req;                  /* HEAD: the answer has no body */
    bool retryable;                 /* idempotent and not yet retried */
    bool reusable;                  /* the connection may serve another exchange */
    bool paused;                    /* the client's backlog is full */
    bool tls_failed;                /* the TLS handshake failed: 502 UPSTREAM_TLS */
    bool body_open;                 /* a streamed body not all sent */
    bool body_wait;                 /* ... waiting for the client's next bytes */
    unsigned tried;                 /* the route's targets tried (bit k: targets[k]) */
    int target;                     /* the one in use */
    int why;                        /* when none is left: 502, 503 (pool full) or 504 */
    enum pc_http_framing framing;
    uint64_t left;                  /* PC_HTTP_BODY_LENGTH: bytes still to come */
    struct pc_chunked ch;
    int64_t deadline_us;            /* connect, or the next read, by then */
    struct event *cancel_ev;        /* the client left (created when needed) */
    enum gw_cut ending;             /* how it ends, for its stream (set before the end) */
    struct gw_stream stream;        /* a tunnel or a streamed answer (streams.c) */
};

/* The answer's head, parsed (again, from the start of the connection's
 * buffer, until it is whole) and used within one on_answer call: one per
 * worker thread, not 4 KiB in every exchange and tunnel. */
static __thread struct pc_http_head answer_head;

static void up_read(evutil_socket_t fd, short what, void *arg);
static void up_write(evutil_socket_t fd, short what, void *arg);
static bool send_request(struct gw_proxy *px);
static bool tls_turn(struct gw_proxy *px, bool reading);
static void exchange_failed(struct gw_proxy *px, bool timeout);
static void connect_failed(struct gw_proxy *px, bool timeout);
static void proxy_free(struct gw_proxy *px);
static void exchange_done(struct gw_proxy *px);

void gw_proxy_stop(struct gw_worker *w)
{
    for (size_t i = 0; i < w->npools; i++) {
        struct gw_uppool *p = &w->pools[i];
        while (p->active || p->tunnels) {
            struct gw_proxy *px = p->active ? p->active : p->tunnels;
            struct gw_request *r = px->r;
            if (px->uc)
                gw_upconn_close(px->uc);
            px->uc = NULL;
            px->ending = GW_CUT_SHUTDOWN;
            proxy_free(px);
            gw_request_end(r);
        }
        while (p->idle) {
            struct upconn *c = p->idle;
            p->idle = c->next;
            gw_upconn_close(c);
        }
        gw_uppool_fini(p);
    }
    free(w->pools);
    w->pools = NULL;
}

/* X-Forwarded-For, -Proto, -Host and -Prefix. From a peer in
 * TRUSTED_PROXIES what it says is kept (X-Forwarded-For appended to, a
 * prefix it stripped put before ours); from anyone else it is replaced by
 * what the gateway saw. xff: the request's X-Forwarded-For lines, joined. */
static void forwarded_headers(struct gw_request *r, struct pc_buf *b, const struct pc_buf *xff)
{
    bool trusted = gw_peer_trusted(r);
    pc_buf_puts(b, "X-Forwarded-For: ");
    if (trusted && xff->len) {
        pc_buf_append(b, xff->data, xff->len);
        pc_buf_append(b, ", ", 2);
    }
    pc_buf_puts(b, r->client_ip);
    pc_buf_append(b, "\r\n", 2);
    const char *proto = trusted ? gw_header(r, "X-Forwarded-Proto") : NULL;
    if (proto == NULL || (strcasecmp(proto, "http") != 0 && strcasecmp(proto, "https") != 0))
        proto = r->tls ? "https" : "http"; /* how it reached our front */
    gw_hdr_append(b, "X-Forwarded-Proto", proto);
    const char *host = trusted ? gw_header(r, "X-Forwarded-Host") : NULL;
    if (host == NULL)
        host = gw_header(r, "Host");
    if (host && host[0])
        gw_hdr_append(b, "X-Forwarded-Host", host);
    const char *outer = trusted ? gw_header(r, "X-Forwarded-Prefix") : NULL;
    if (outer || r->forwarded_prefix) {
        pc_buf_puts(b, "X-Forwarded-Prefix: ");
        if (outer)
            pc_buf_append(b, outer, strlen(outer) - (outer[0] && outer[strlen(outer) - 1] == '/'));
        if (r->forwarded_prefix)
            pc_buf_puts(b, r->forwarded_prefix);
        pc_buf_append(b, "\r\n", 2);
    }
}

/* The request line, headers and body, as the upstream gets them. */
static void build_request(struct gw_request *r, const struct gw_upstream *up, struct pc_buf *b)
{
    pc_buf_puts(b, r->method);
    pc_buf_putc(b, ' ');
    pc_buf_puts(b, up->base_path);
    pc_buf_puts(b, r->upstream_path);
    if (r->query) {
        pc_buf_putc(b, '?');
        pc_buf_puts(b, r->query);
    }
    pc_buf_puts(b, " HTTP/1.1\r\n");
    /* preserve_host: the client's Host (an HTTP/1.0 request may have none) */
    const char *host = r->route->preserve_host ? gw_header(r, "Host") : NULL;
    gw_hdr_append(b, "Host", host && host[0] ? host : up->host_header);

    const struct gw_hdr_rules *rules = &r->route->req_hdrs;
    const struct pc_http_head *h = r->head;
    const char *conn = pc_http_get(h, "Connection");
    struct pc_buf xff = {0};    /* every X-Forwarded-For line, in order */
    for (size_t i = 0; i < h->nh; i++) {
        const char *k = h->h[i].name, *v = h->h[i].value;
        size_t kn = h->h[i].nlen;
        if (gw_hop_by_hop(k, kn) || gw_identity_header(k, kn) || gw_named_in_connection(conn, k))
            continue;
        if (rules->n && gw_hdr_ruled(rules, k, kn))
            continue; /* the route's request_headers replace or remove it */
        if (IS(k, kn, "X-Forwarded-For")) {
            if (h->h[i].vlen) {
                if (xff.len)
                    pc_buf_append(&xff, ", ", 2);
                pc_buf_append(&xff, v, h->h[i].vlen);
            }
            continue;
        }
        if (IS(k, kn, "Authorization") &&
            (r->src == GW_SRC_BEARER || r->route->upstream_jwt == GW_UPJWT_AUTHORIZATION))
            continue;
        if (IS(k, kn, "x-api-key") && r->src == GW_SRC_API_HEADER)
            continue;
        if (IS(k, kn, "Cookie") && !r->route->auth_passthrough) {
            char *rest = r->route->forward_cookies ? gw_filter_cookies(v) : NULL;
            if (rest)
                gw_hdr_append(b, "Cookie", rest);
            free(rest);
            continue;
        }
        pc_buf_append(b, k, h->h[i].nlen);
        pc_buf_append(b, ": ", 2);
        pc_buf_append(b, v, h->h[i].vlen);
        pc_buf_append(b, "\r\n", 2);
    }
    forwarded_headers(r, b, &xff);
    pc_buf_free(&xff);
    if (r->upgrade && r->route->websocket)
        pc_buf_puts(b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    pc_buf_puts(b, "X-Request-Id: ");
    pc_buf_puts(b, r->request_id);
    pc_buf_append(b, "\r\n", 2);
    gw_identity_headers(r, b);
    gw_hdr_rules_set(rules, b);
    /* The body's framing is ours: a body read whole (and de-chunked) gets
     * an exact Content-Length for every method that carries one. Without
     * it, a body on GET or PATCH would be read upstream as the next request
     * (request smuggling). A streamed one keeps the client's length, or is
     * chunked again, chunk by chunk as it is sent. */
    const char *m = r->method;
    if (r->body_stream) {
        if (r->body_size >= 0) {
            pc_buf_puts(b, "Content-Length: ");
            pc_buf_putu(b, (uint64_t)r->body_size);
            pc_buf_append(b, "\r\n", 2);
        } else {
            pc_buf_puts(b, "Transfer-Encoding: chunked\r\n");
        }
    } else if (r->body_len || strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 ||
        strcmp(m, "PATCH") == 0) {
        pc_buf_puts(b, "Content-Length: ");
        pc_buf_putu(b, r->body_len);
        pc_buf_append(b, "\r\n", 2);
    }
    pc_buf_append(b, "\r\n", 2);
    if (r->body_len)
        pc_buf_append(b, r->body, r->body_len);
}

/* The answer's head, as the client gets it. */
static void relay_head(struct gw_proxy *px, const struct pc_http_head *h)
{
    struct gw_request *r = px->r;
    const struct gw_hdr_rules *rules = &r->route->resp_hdrs;
    struct pc_buf *b = gw_resp_begin(r, h->status, h->reason);
    bool rid = false;
    for (size_t i = 0; i < h->nh; i++) {
        const char *k = h->h[i].name;
        size_t kn = h->h[i].nlen;
        if (gw_hop_by_hop(k, kn) || IS(k, kn, "Content-Length") ||
            (rules->n && gw_hdr_ruled(rules, k, kn)) ||
            (r->route->cors && gw_cors_header_name(k, kn)))
            continue; /* on a cors route the Access-Control-* lines are the route's */
        rid = rid || IS(k, kn, "X-Request-Id");
        /* the upstream sets (or clears: sign-out) the session cookie itself:
         * its line is the one the browser must keep */
        if (r->refresh_cookie && IS(k, kn, "Set-Cookie") &&
            gw_sets_session_cookie(h->h[i].value, h->h[i].vlen))
            r->refresh_cookie = false;
        pc_buf_append(b, k, h->h[i].nlen);
        pc_buf_append(b, ": ", 2);
        pc_buf_append(b, h->h[i].value, h->h[i].vlen);
        pc_buf_append(b, "\r\n", 2);
    }
    gw_hdr_rules_set(rules, b); /* the route's response_headers */
    gw_refresh_cookie_header(r, b); /* a sliding refresh: the cookie's new Max-Age */
    if (!rid)
        gw_hdr_append(b, "X-Request-Id", r->request_id);
    if (h->status == 101) {
        gw_resp_upgrade(r);
        return;
    }
    int64_t len;
    if (h->framing == PC_HTTP_BODY_LENGTH) {
        len = (int64_t)h->content_length;
    } else if (h->framing == PC_HTTP_BODY_NONE) {
        /* HEAD keeps the length the GET would have; 204 and 304 have none */
        const char *cl = pc_http_get(h, "Content-Length");
        bool bodiless = h->status < 200 || h->status == 204 || h->status == 304;
        len = bodiless || (px->head_req && cl == NULL) ? GW_LEN_OMIT
              : px->head_req ? (int64_t)h->content_length
                             : 0;
    } else {
        len = GW_LEN_STREAM;
    }
    gw_resp_end_head(r, len, false);
}

/* ---- the exchange ---- */

/* px on pool's list of exchanges (of tunnels once it is one). */
static void px_link(struct gw_proxy *px, struct gw_uppool *pool)
{
    struct gw_proxy **head = px->on_tunnels ? &pool->tunnels : &pool->active;
    px->pool = pool;
    px->prev = NULL;
    px->next = *head;
    if (*head)
        (*head)->prev = px;
    *head = px;
}

static void px_unlink(struct gw_proxy *px)
{
    if (px->pool == NULL)
        return;
    if (px->prev)
        px->prev->next = px->next;
    else if (px->on_tunnels)
        px->pool->tunnels = px->next;
    else
        px->pool->active = px->next;
    if (px->next)
        px->next->prev = px->prev;
    px->pool = NULL;
    px->prev = px->next = NULL;
}

static void proxy_free(struct gw_proxy *px)
{
    if (px->stream.open)
        gw_stream_close(&px->stream, px->ending ? px->ending : GW_CUT_UPSTREAM);
    px_unlink(px);
    if (px->cancel_ev)
        event_free(px->cancel_ev);
    px->r->proxy = NULL;
    free(px);
}

/* The answer is all relayed. */
static void exchange_done(struct gw_proxy *px)
{
    struct gw_request *r = px->r;
    gw_upconn_put(px->uc, px->reusable);
    px->uc = NULL;
    proxy_free(px);
    gw_resp_end(r);
    gw_resp_send(r);
    gw_request_end(r);
}

static void exchange_failed(struct gw_proxy *px, bool timeout)
{
    struct gw_request *r = px->r;
    if (timeout)
        GW_STAT_INC(upstream_timeouts);
    else
        GW_STAT_INC(upstream_errors);
    bool px_tls = px->tls_failed;
    if (px->uc)
        gw_upconn_close(px->uc);
    px->uc = NULL;
    proxy_free(px);
    if (r->resp_started) {
        gw_resp_abort(r);
        gw_request_end(r);
    } else if (timeout) {
        gw_fail(r, 504, "UPSTREAM_TIMEOUT_SECONDS", "The upstream did not answer in time");
    } else if (px_tls) {
        gw_fail(r, 502, "UPSTREAM_TLS", "The upstream's TLS handshake or certificate was refused");
    } else {
        gw_fail(r, 502, "UPSTREAM_UNAVAILABLE", "The upstream could not be reached");
    }
}

/* The client left (gw_proxy_client_gone): before the answer or during it. */
static void cancel_exchange(evutil_socket_t fd, short what, void *arg)
{
    struct gw_proxy *px = arg;
    struct gw_request *r = px->r;
    GW_STAT_INC(upstream_cancels);
    if (!r->resp_started)
        r->status = 499; /* nothing answered: logged as nginx's "client closed request" */
    px->ending = GW_CUT_CLIENT;
    if (px->uc)
        gw_upconn_close(px->uc);
    px->uc = NULL;
    proxy_free(px);
    gw_request_end(r);
}

void gw_proxy_client_gone(struct gw_request *r)
{
    struct gw_proxy *px = r->proxy;
    if (px->cancel_ev == NULL) {
        px->cancel_ev = event_new(r->w->base, -1, 0, cancel_exchange, px);
        if (px->cancel_ev == NULL)
            pc_fatal("event_new failed");
    }
    event_active(px->cancel_ev, EV_TIMEOUT, 0);
}

/* The next connect or read is due by now + the route's timeout_ms, else
 * UPSTREAM_TIMEOUT_SECONDS (seen by gw_proxy_tick, every 100 ms). A tunnel's bytes
 * only restart its idle window (its stream's timer looks at it). */
static void deadline(struct gw_proxy *px)
{
    int64_t now = pc_mono_us();
    if (px->state == PX_TUNNEL) {
        px->stream.active_us = now;
        return;
    }
    int64_t ms = px->r->route->timeout_ms;
    px->deadline_us = now + (ms ? ms : gw_cfg.read_timeout * 1000) * 1000LL;
}

bool gw_proxy_tunnel_idle(struct gw_stream *s)
{
    struct gw_proxy *px = (struct gw_proxy *)(void *)((char *)s - offsetof(struct gw_proxy, stream));
    /* a client that leaves is cancelled from the loop; one that does not
     * read is the front's (the stall bound), not idleness */
    if (px->paused || px->cancel_ev != NULL)
        return false;
    gw_proxy_cut(s, GW_CUT_IDLE);
    return true;
}

void gw_proxy_tick(struct gw_worker *w)
{
    int64_t now = pc_mono_us();
    for (size_t i = 0; i < w->npools; i++) {
        for (struct gw_proxy *px = w->pools[i].active, *next; px; px = next) {
            next = px->next;
            /* a paused stream waits for the client, not the upstream */
            if (px->paused || px->body_wait || px->cancel_ev != NULL || now < px->deadline_us)
                continue;
            if (px->state == PX_RESOLVE || (px->uc && px->uc->connecting))
                connect_failed(px, true);
            else
                exchange_failed(px, true);
        }
    }
}

void gw_proxy_resume(struct gw_request *r)
{
    struct gw_proxy *px = r->proxy;
    if (!px->paused || gw_client_backlog_full(r))
        return;
    px->paused = false;
    deadline(px);
    struct upconn *c = px->uc;
    gw_upconn_want(c, true, px->state == PX_TUNNEL && c->out_off < c->out.len);
}

/* Feeds body bytes in[0..n) through to the client. Returns false when the
 * answer is complete (or failed: then px is gone). */
static bool relay_body(struct gw_proxy *px, char *in, size_t n)
{
    struct gw_request *r = px->r;
    switch (px->framing) {
    case PC_HTTP_BODY_LENGTH: {
        size_t take = (uint64_t)n < px->left ? n : (size_t)px->left;
        gw_resp_body(r, in, take);
        px->left -= take;
        if (take < n)
            px->reusable = false; /* bytes beyond the answer: not to be trusted */
        if (px->left == 0) {
            exchange_done(px);
            return false;
        }
        return true;
    }
    case PC_HTTP_BODY_CHUNKED: {
        size_t out = 0;
        bool done = false;
        ssize_t used = pc_chunked_decode(&px->ch, in, n, in, &out, &done);
        if (used < 0) {
            exchange_failed(px, false);
            return false;
        }
        gw_resp_body(r, in, out);
        if (done) {
            if ((size_t)used < n)
                px->reusable = false;
            exchange_done(px);
            return false;
        }
        return true;
    }
    case PC_HTTP_BODY_CLOSE:
        gw_resp_body(r, in, n);
        return true;
    default:
        exchange_done(px);
        return false;
    }
}

/* Writes what was relayed; stops reading the upstream while the client
 * has too much queued (gw_proxy_resume starts again). */
static void relay_flush(struct gw_proxy *px)
{
    gw_resp_send(px->r);
    /* a failed write schedules the cancel: px stays until it runs */
    if (px->cancel_ev == NULL && gw_client_backlog_full(px->r)) {
        struct upconn *c = px->uc;
        px->paused = true;
        gw_upconn_want(c, c->wr_wants_rd, px->state == PX_TUNNEL && c->out_off < c->out.len);
    }
}

/* ---- tunnels ---- */

/* A 101 the client asked for: a WebSocket handshake on a websocket route,
 * answered with Upgrade: websocket and Connection: upgrade. */
static bool upgrade_answer(const struct gw_proxy *px, const struct pc_http_head *h)
{
    const struct gw_request *r = px->r;
    const char *up = pc_http_get(h, "Upgrade");
    return r->upgrade && r->route->websocket && up && strcasecmp(up, "websocket") == 0 &&
           gw_named_in_connection(pc_http_get(h, "Connection"), "Upgrade");
}

/* Upstream bytes p[0..n) of a tunnel, to the client as they are. */
static void tunnel_down(struct gw_proxy *px, const char *p, size_t n)
{
    px->stream.bytes_down += n;
    gw_ws_follow(&px->stream.down, (const unsigned char *)p, n);
    gw_resp_body(px->r, p, n);
    deadline(px);
    relay_flush(px);
}

/* The upstream's 101: relayed, and from now on bytes both ways. */
static void tunnel_start(struct gw_proxy *px, const struct pc_http_head *h)
{
    struct upconn *c = px->uc;
    struct gw_request *r = px->r;
    px->reusable = false;
    px->state = PX_TUNNEL;
    struct gw_uppool *pool = px->pool;
    px_unlink(px);
    px->on_tunnels = true; /* off gw_proxy_tick's walk */
    px_link(px, pool);
    gw_stream_open(&px->stream, r, true);
    size_t hl = h->head_len, n = c->len - hl;
    relay_head(px, h); /* the client's connection is a tunnel now */
    pc_buf_free(&c->out); /* the request went: the buffer grows again if bytes wait */
    c->out_off = 0;
    /* what came after the 101, then the connection's buffer is not needed:
     * tunnels read into the stack */
    char *in = c->in;
    c->in = NULL;
    c->len = c->cap = 0;
    gw_upconn_want(c, true, false);
    if (n > 0)
        tunnel_down(px, in + hl, n);
    else
        gw_resp_send(r);
    free(in);
}

/* A tunnel's upstream is readable. */
static void tunnel_up_read(struct gw_proxy *px)
{
    struct upconn *c = px->uc;
    char buf[16384];
    ssize_t n = c->ssl ? gw_upconn_tls_read(c, buf, sizeof buf) : read(c->fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        px->ending = GW_CUT_UPSTREAM;
        exchange_done(px);
        return;
    }
    tunnel_down(px, buf, (size_t)n);
}

int gw_proxy_tunnel_in(struct gw_request *r, const char *data, size_t n)
{
    struct gw_proxy *px = r->proxy;
    if (px == NULL || px->state != PX_TUNNEL || px->cancel_ev != NULL)
        return 1; /* ending: dropped */
    struct upconn *c = px->uc;
    if (c->out_off > 65536) {
        memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
    pc_buf_append(&c->out, data, n);
    px->stream.bytes_up += n;
    deadline(px);
    if (!send_request(px))
        return -1;
    return c->out.len - c->out_off > TUNNEL_BACKLOG ? 0 : 1;
}

void gw_proxy_cut(struct gw_stream *s, enum gw_cut why)
{
    struct gw_proxy *px = (struct gw_proxy *)(void *)((char *)s - offsetof(struct gw_proxy, stream));
    struct gw_request *r = px->r;
    px->ending = why;
    gw_stream_close(s, why);
    if (px->cancel_ev != NULL)
        return; /* the client left: the cancel ends it */
    if (px->state == PX_TUNNEL) {
        /* our close frame only between two of the upstream's */
        if (gw_ws_at_boundary(&s->down)) {
            struct pc_buf f = {0};
            gw_ws_close_frame(&f, gw_cut_code(why), gw_cut_reason(why));
            gw_resp_body(r, f.data, f.len);
            pc_buf_free(&f);
        }
        exchange_done(px);
        return;
    }
    /* a streamed answer: cut, so that it does not look complete */
    if (px->uc)
        gw_upconn_close(px->uc);
    px->uc = NULL;
    proxy_free(px);
    gw_resp_abort(r);
    gw_request_end(r);
}

/* Parses the answer's head from the connection's buffer and relays what
 * follows. */
static void on_answer(struct gw_proxy *px)
{
    struct upconn *c = px->uc;
    struct pc_http_head *h = &answer_head;
    for (;;) {
        enum pc_http_result res = pc_http_parse_response(c->in, c->len, px->head_req, h);
        if (res == PC_HTTP_INCOMPLETE) {
            if (c->len >= UP_HEAD_MAX)
                exchange_failed(px, false);
            return;
        }
        if (res != PC_HTTP_OK || (h->status == 101 && !upgrade_answer(px, h))) {
            pc_logr_warn(px->r->request_id, "upstream %s: malformed answer%s", px->pool->up->url,
                        res == PC_HTTP_OK ? " (a 101 to no WebSocket handshake)" : "");
            exchange_failed(px, false);
            return;
        }
        if (h->status >= 200 || h->status == 101)
            break;
        /* 1xx: informational, dropped; the real answer follows */
        size_t hl = h->head_len;
        memmove(c->in, c->in + hl, c->len - hl);
        c->len -= hl;
    }
    px->retryable = false;
    if (h->status == 101) {
        tunnel_start(px, h);
        return;
    }
    px->framing = h->framing;
    px->left = h->content_length;
    px->reusable = h->keep_alive && px->framing != PC_HTTP_BODY_CLOSE && !px->body_open;
    relay_head(px, h);
    px->state = PX_BODY;
    size_t hl = h->head_len, n = c->len - hl;
    c->len = 0;
    if (!relay_body(px, c->in + hl, n))
        return;
    /* still streaming after its first bytes (SSE, a long chunked answer):
     * revocation and expiry end it (streams.c) */
    struct gw_request *r = px->r;
    if (px->framing != PC_HTTP_BODY_LENGTH && r->kind != GW_CRED_NONE && r->p.found)
        gw_stream_open(&px->stream, r, false);
    relay_flush(px);
}

/* A reused connection the upstream had closed: try once more on a new one. */
static bool retry(struct gw_proxy *px)
{
    if (!px->retryable || !px->uc->reused || px->state == PX_BODY || px->uc->len > 0)
        return false;
    px->retryable = false;
    struct sockaddr_storage sa;
    socklen_t len;
    if (gw_upstream_addr(px->pool, &sa, &len) != 1)
        return false;
    struct upconn *old = px->uc;
    struct upconn *c = gw_upconn_open(px->pool, &sa, len, up_read, up_write);
    if (c == NULL)
        return false;
    pc_buf_append(&c->out, old->out.data, old->out.len);
    gw_upconn_close(old);
    c->px = px;
    px->uc = c;
    px->state = PX_SEND;
    deadline(px);
    gw_upconn_want(c, true, true);
    return true;
}

static void up_read(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    struct gw_proxy *px = c->px;
    if (px == NULL) {
        /* idle: a close (or anything else) ends it */
        gw_upconn_idle_remove(c->pool, c);
        gw_upconn_close(c);
        return;
    }
    if (c->connecting && c->ssl == NULL) {
        up_write(fd, EV_WRITE, c); /* readable before the connect is seen done: judged there */
        return;
    }
    if (c->ssl && tls_turn(px, true))
        return;
    if (px->state == PX_TUNNEL) {
        tunnel_up_read(px);
        return;
    }
    if (c->len == c->cap) {
        c->cap *= 2;
        c->in = pc_xrealloc(c->in, c->cap);
    }
    ssize_t n = c->ssl ? gw_upconn_tls_read(c, c->in + c->len, c->cap - c->len)
                       : read(fd, c->in + c->len, c->cap - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        if (px->state == PX_BODY && px->framing == PC_HTTP_BODY_CLOSE) {
            px->reusable = false;
            exchange_done(px);
            return;
        }
        if (!retry(px))
            exchange_failed(px, false);
        return;
    }
    c->len += (size_t)n;
    deadline(px);
    if (px->state != PX_BODY) {
        /* an answer before the request was all sent is still an answer */
        if (px->state == PX_SEND) {
            gw_upconn_want(c, true, false);
            px->body_wait = false; /* what is left of the body is not sent */
        }
        px->state = PX_HEAD;
        on_answer(px);
        return;
    }
    size_t len = c->len;
    c->len = 0;
    if (relay_body(px, c->in, len))
        relay_flush(px);
}

/* https, on c's read (reading) or write event, before the plain work:
 * the handshake's next step, or an SSL_read or SSL_write that waited for
 * the other direction. True when the event was for that (the plain work
 * is not to be done now; px may be gone). */
static bool tls_turn(struct gw_proxy *px, bool reading)
{
    struct upconn *c = px->uc;
    if (c->connecting) {
        /* readable before the connect is seen done: up_write judges it */
        if (reading)
            up_write(c->fd, EV_WRITE, c);
        return true;
    }
    if (c->handshaking) {
        char why[256];
        int rc = gw_upconn_handshake(c, why, sizeof why);
        if (rc < 0) {
            pc_logr_warn(px->r->request_id, "upstream %s: TLS handshake failed: %s",
                        px->pool->up->url, why);
            px->tls_failed = true;
            exchange_failed(px, false);
        } else if (rc > 0) {
            send_request(px);
        }
        return true;
    }
    if (reading && c->wr_wants_rd) {
        c->wr_wants_rd = false;
        send_request(px);
        return true;
    }
    if (!reading && c->rd_wants_wr) {
        c->rd_wants_wr = false;
        if (px->state != PX_SEND && !(px->state == PX_TUNNEL && c->out_off < c->out.len))
            gw_upconn_want(c, c->reading, false);
        up_read(c->fd, EV_READ, c);
        return true;
    }
    return false;
}

/* A streamed body failed on the client's side (malformed, too large). */
static void body_failed(struct gw_proxy *px, enum gw_body why)
{
    struct gw_request *r = px->r;
    gw_upconn_close(px->uc);
    px->uc = NULL;
    proxy_free(px);
    if (why == GW_BODY_TOO_LARGE)
        gw_fail(r, 413, "PAYLOAD_TOO_LARGE", "Request body is too large");
    else
        gw_fail(r, 400, "BAD_REQUEST", "Malformed chunked body");
}

/* Moves what the client's streamed body has into the drained output of
 * px's connection (chunk-framed when it came chunked). 1: there is
 * something to write, or the body ended (body_open false); 0: nothing yet
 * (gw_proxy_body_ready follows); -1: the body failed, px is gone or its
 * cancel is on the way. */
static int body_pull(struct gw_proxy *px)
{
    struct upconn *c = px->uc;
    struct gw_request *r = px->r;
    bool chunked = r->body_size < 0;
    const char *p;
    size_t n;
    enum gw_body got = gw_front_body_peek(r, &p, &n);
    c->out.len = c->out_off = 0;
    switch (got) {
    case GW_BODY_DATA:
        if (chunked) {
            char hex[24];
            int k = snprintf(hex, sizeof hex, "%zx\r\n", n);
            pc_buf_append(&c->out, hex, (size_t)k);
        }
        pc_buf_append(&c->out, p, n);
        if (chunked)
            pc_buf_append(&c->out, "\r\n", 2);
        gw_front_body_consume(r, n);
        deadline(px);
        return 1;
    case GW_BODY_END:
        px->body_open = false;
        if (chunked)
            pc_buf_puts(&c->out, "0\r\n\r\n");
        return 1;
    case GW_BODY_WAIT:
        return 0;
    case GW_BODY_GONE:
        gw_upconn_want(c, false, false);
        gw_proxy_client_gone(r);
        return -1;
    default:
        body_failed(px, got);
        return -1;
    }
}

static bool send_request(struct gw_proxy *px)
{
    struct upconn *c = px->uc;
again:
    while (c->out_off < c->out.len) {
        const char *from = c->out.data + c->out_off;
        size_t left = c->out.len - c->out_off;
        ssize_t n = c->ssl ? gw_upconn_tls_write(c, from, left) : write(c->fd, from, left);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            gw_upconn_want(c, px->state != PX_TUNNEL || !px->paused || c->wr_wants_rd,
                           !c->wr_wants_rd);
            return true;
        }
        if (retry(px))
            return true;
        exchange_failed(px, false);
        return false;
    }
    if (px->state == PX_TUNNEL) {
        c->out.len = c->out_off = 0;
        gw_upconn_want(c, !px->paused, false);
        gw_front_tunnel_resume(px->r);
        return true;
    }
    if (px->state == PX_SEND && px->body_open) {
        int got = body_pull(px);
        if (got < 0)
            return false;
        if (got > 0)
            goto again;
        px->body_wait = true; /* the client's next bytes; the upstream may answer early */
        gw_upconn_want(c, true, false);
        return true;
    }
    if (px->state == PX_SEND)
        px->state = PX_HEAD;
    gw_upconn_want(c, true, false);
    return true;
}

static void up_write(evutil_socket_t fd, short what, void *arg)
{
    struct upconn *c = arg;
    struct gw_proxy *px = c->px;
    if (px == NULL) {
        gw_upconn_want(c, c->reading, false);
        return;
    }
    if (c->connecting) {
        int err = 0;
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == -1 || err != 0) {
            connect_failed(px, false);
            return;
        }
        c->connecting = false;
    }
    if (c->ssl && tls_turn(px, false))
        return;
    send_request(px);
}

/* ---- targets ---- */

/* No target is left: the answer says why the last one could not serve. */
static void no_target(struct gw_proxy *px)
{
    struct gw_request *r = px->r;
    int why = px->why;
    proxy_free(px);
    if (why == 504) {
        GW_STAT_INC(upstream_timeouts);
        gw_fail(r, 504, "UPSTREAM_TIMEOUT_SECONDS", "The upstream did not answer in time");
    } else if (why == 503) {
        GW_STAT_INC(upstream_errors);
        gw_fail(r, 503, "UPSTREAM_BUSY", "Too many requests to this upstream in progress");
    } else {
        GW_STAT_INC(upstream_errors);
        gw_fail(r, 502, "UPSTREAM_UNAVAILABLE", "The upstream could not be reached");
    }
}

/* px goes out on connection c of its pool. */
static void px_send(struct gw_proxy *px, struct upconn *c)
{
    px->uc = c;
    px->state = PX_SEND;
    c->px = px;
    build_request(px->r, px->pool->up, &c->out);
    deadline(px);
    if (c->connecting) {
        gw_upconn_want(c, true, true);
        return;
    }
    if (c->ssl && tls_turn(px, false))
        return;
    send_request(px);
}

/* px on its pool's upstream: an idle connection, or a new one (or a wait
 * for the upstream's name: gw_proxy_resolved). False when this target
 * cannot take it (px->why says why; a target that failed is marked so). */
static bool px_on_pool(struct gw_proxy *px)
{
    struct gw_uppool *pool = px->pool;
    gw_upstream_fresh(pool);
    struct upconn *c = pool->idle;
    if (c) {
        pool->idle = c->next;
        c->next = NULL;
        px_send(px, c);
        return true;
    }
    if ((int64_t)pool->total >= gw_cfg.upstream_pool) {
        px->why = 503;
        return false;
    }
    struct sockaddr_storage sa;
    socklen_t len;
    int a = gw_upstream_addr(pool, &sa, &len);
    if (a == 0) {
        px->state = PX_RESOLVE;
        deadline(px);
        return true;
    }
    if (a < 0 || (c = gw_upconn_open(pool, &sa, len, up_read, up_write)) == NULL) {
        px->why = 502;
        gw_target_failed(px->r->route->targets[px->target]);
        return false;
    }
    px_send(px, c);
    return true;
}

/* px on the route's next target, or its answer when none is left. */
static void px_next(struct gw_proxy *px)
{
    const struct gw_route *rt = px->r->route;
    for (;;) {
        int t = gw_target_pick(rt, px->tried);
        if (t < 0) {
            no_target(px);
            return;
        }
        px->tried |= 1u << t;
        px->target = t;
        px->r->upstream_url = rt->targets[t]->url;
        struct gw_uppool *pool = &px->r->w->pools[rt->targets[t]->index];
        if (pool != px->pool) {
            px_unlink(px);
            px_link(px, pool);
        }
        if (px_on_pool(px))
            return;
    }
}

/* The connection to px's target was not made (refused, or not in time) or
 * its name did not resolve: the target is skipped a while and px goes to
 * the route's next one. Nothing reached the upstream, so any method may
 * go again. */
static void connect_failed(struct gw_proxy *px, bool timeout)
{
    gw_target_failed(px->r->route->targets[px->target]);
    if (px->uc)
        gw_upconn_close(px->uc);
    px->uc = NULL;
    px->why = timeout ? 504 : 502;
    px_next(px);
}

void gw_proxy_body_ready(struct gw_request *r)
{
    struct gw_proxy *px = r->proxy;
    if (px == NULL || !px->body_wait || px->state != PX_SEND || px->cancel_ev != NULL)
        return;
    px->body_wait = false;
    deadline(px);
    send_request(px);
}

void gw_proxy_resolved(struct gw_uppool *p)
{
    for (struct gw_proxy *px = p->active, *next; px; px = next) {
        next = px->next;
        if (px->state != PX_RESOLVE || px->cancel_ev != NULL)
            continue;
        if (!px_on_pool(px))
            px_next(px);
    }
}

void gw_proxy_start(struct gw_request *r)
{
    if (r->upgrade && r->route->websocket && gw_tunnel_over_cap(r)) {
        GW_STAT_INC(tunnels_refused);
        r->retry_after = 1;
        gw_fail(r, 429, "TOO_MANY_TUNNELS", "Too many WebSocket connections are open");
        return;
    }
    struct gw_proxy *px = pc_xcalloc(1, sizeof *px);
    px->r = r;
    px->head_req = r->head_method;
    px->retryable = !r->body_stream && (r->head_method || strcmp(r->method, "GET") == 0 ||
                                        strcmp(r->method, "OPTIONS") == 0);
    px->body_open = r->body_stream;
    r->proxy = px;
    px_next(px);
}
