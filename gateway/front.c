/* Portcullis - MIT licence. See LICENSE.
 *
 * front.c: the HTTP/1.1 front. Accepts client connections on the worker's
 * listener, reads each request into the connection's buffer, parses it in
 * place (lib/http.c), reads its body, and hands it to intake.c
 * (gw_intake); answers are written from the connection's output buffer.
 * One file because it owns the connection: its socket (through
 * tls_front.c), buffers, states, caps and life. A connection whose ALPN
 * chose h2 keeps all of that here, and h2_front.c makes its streams
 * requests; request.h's response writer below hands those to h2_front.c.
 *
 *   read      one read() per readiness event into c->in; the head is parsed
 *             where it lies, so a request costs no allocation but its
 *             gw_request and no copy of its headers
 *   Host      an HTTP/1.1 request without exactly one Host, an HTTP/1.0
 *             one with two, or a Host that is no authority is 400 BAD_HOST
 *             (RFC 9112 3.2), before routing reads it
 *   limits    a head over GATEWAY_MAX_HEADER_BYTES is 431, a body over
 *             GATEWAY_MAX_BODY_BYTES 413, both answered before the rest is read;
 *             the connection then closes after a short linger (so the
 *             client reads the answer instead of a reset)
 *   bodies    Content-Length or chunked (decoded in place, after the head).
 *             A body all read with its head is handed over whole; any other
 *             is streamed (C_STREAM): the request starts on its head alone,
 *             so a refused one is answered before its body is read (which
 *             is then dropped in the linger, and the connection closed),
 *             and an allowed one goes upstream through a GW_BODY_WINDOW
 *             window that the front stops filling until proxy.c has taken
 *             it (gw_front_body_peek/consume). Expect: 100-continue is
 *             answered when the upstream side first asks for the body
 *   keep-alive one request at a time per connection; pipelined requests
 *             wait in the buffer and start when the previous one ends
 *   write     one write() of everything queued; EV_WRITE only when the
 *             socket is full. A streamed answer (proxy.c) is held back by
 *             gw_client_backlog_full()
 *   tunnels   after a relayed 101 (gw_resp_upgrade) the connection is
 *             C_TUNNEL: each read goes to proxy.c as it is, from the stack,
 *             and reading stops while the upstream side is backed up. The
 *             handshake's head and the input buffer are freed then
 *             (tunnel_shed), and the connection moves to w->tunnels, which
 *             the tick does not walk (streams.c times a tunnel's idleness),
 *             except while a write to it is blocked
 *   timeouts  checked every 100 ms by gw_front_tick (no timer per
 *             connection): GATEWAY_CLIENT_IDLE_SECONDS between reads,
 *             writes stalled as long, a wanted body stopped as long (HTTP/2:
 *             per stream, gw_h2_reset_stalled);
 *             GATEWAY_HEAD_TIMEOUT_MS for a whole request head, counted from
 *             the accept or from the first byte of a later request (408, or
 *             a plain close when nothing came)
 *   caps      GATEWAY_MAX_CONNS for the process, GATEWAY_MAX_CONNS_PER_IP per
 *             TCP peer address. A connection over a cap, or one taken with
 *             the worker's reserve descriptor when accept() says EMFILE or
 *             ENFILE, is an "overflow" connection: it may ask for /health,
 *             /live or /ready, anything else is 503 TOO_MANY_CONNECTIONS,
 *             and it closes after one answer or OVERFLOW_HEAD_MS. Without a
 *             descriptor the worker stops accepting for ACCEPT_BACKOFF_MS
 *             instead of spinning on a listener that stays readable. A
 *             worker whose reserve was taken by another thread closes its
 *             longest-idle keep-alive connection to get one back.
 *
 * A connection outlives its request: closing one whose request is still
 * running (parked on Redis, PostgreSQL or the upstream) marks it dead and
 * gw_request_end frees it later. Dead connections are freed from the
 * worker's reap event, never inside a callback that may still touch them.
 */
#include "front.h"
#include "request.h"
#include "intake.h"
#include "proxy.h"
#include "cors.h"
#include "metrics.h"
#include "loop.h"
#include "tls_front.h"
#include "h2_front.h"
#include "../lib/connlimit.h"
#include "../lib/http.h"
#include "../lib/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#define IN_START 4096               /* first input buffer */
#define REQUEST_LINE_MAX 8192       /* head bytes allowed beyond GATEWAY_MAX_HEADER_BYTES */
#define LINGER_MS 2000              /* reading and dropping after a refusal */
#define LINGER_MAX (4 * 1024 * 1024)
#define OUT_BACKLOG (256 * 1024)    /* queued output that pauses a stream */
#define OVERFLOW_SLOTS 4            /* overflow connections per worker */
#define OVERFLOW_HEAD_MS 250        /* an overflow connection's head deadline */
#define RESERVE_TRIES 64            /* connections taken with the reserve per EMFILE */
#define ACCEPT_BACKOFF_MS 250       /* no accept() after EMFILE/ENFILE for this long */
#define EMFILE_LOG_S 10             /* one warning per this many seconds */
#define ADMIN_CONNS_MAX 64          /* admin connections open at once; more are closed */

enum cstate {
    C_HEAD = 0,     /* waiting for (the rest of) a request head */
    C_STREAM,       /* the request runs while its body arrives (window after the head) */
    C_BUSY,         /* the request runs; input is only buffered */
    C_CLOSING,      /* write what is queued, then close */
    C_LINGER,       /* output done, write side shut; drop input, then close */
    C_TUNNEL,       /* after a 101: bytes read go upstream as they come (proxy.c) */
    C_H2,           /* HTTP/2 (ALPN h2): reads feed the session of h2_front.c */
};

struct gw_client {
    struct gw_worker *w;
    struct gw_client *prev, *next;  /* w->clients, or w->dead */
    int fd;
    bool dead;                      /* closed; freed once its request ends */
    bool reading;                   /* ev is added */
    bool writing;                   /* wev is added */
    enum cstate state;
    struct event *ev, *wev;
    char *in;
    size_t cap, len;                /* input buffer */
    size_t used;                    /* bytes of the current request, framing included */
    size_t avail;                   /* body bytes decoded and not taken, at in + head_len;
                                     * undecoded input follows them */
    uint64_t left;                  /* Content-Length: body bytes not yet in the buffer */
    uint64_t body_n;                /* chunked: body bytes decoded */
    uint64_t raw_total;             /* chunked: framing and body bytes read */
    bool body_done;                 /* the body's end is in the buffer */
    bool body_gone;                 /* the client left before it */
    enum gw_body body_err;          /* GW_BODY_BAD or _TOO_LARGE, else 0 */
    size_t linger_bytes;
    struct pc_chunked ch;
    struct pc_http_head *head;      /* the current request's head (pointers into in);
                                     * NULL, like in, once a tunnel has no use for them */
    bool on_tunnels;                /* listed in w->tunnels (else w->clients or w->dead) */
    struct gw_request *r;           /* the request running */
    struct pc_buf out;              /* queued output */
    size_t out_off;                 /* bytes of out already written */
    bool keep_alive;                /* the current answer leaves the connection open */
    bool unread;                    /* input was left unread: linger before closing */
    bool continue_sent;
    bool resp_chunked;              /* the streamed answer is chunked */
    bool resp_nobody;               /* HEAD: headers only */
    int64_t last_io_us;
    int64_t linger_until_us;
    int64_t head_start_us;          /* a head is awaited since (0: none) */
    bool counted;                   /* in gw_stats.conns_open */
    bool ip_counted;                /* in the per-address table */
    bool overflow;                  /* over a cap: health routes only, then close */
    bool reserve;                   /* holds the worker's reserve descriptor */
    bool admin;                     /* accepted on the admin listener (intake.c) */
    struct ssl_st *ssl;             /* TLS on the public listener (tls_front.c), or NULL */
    bool to_https;                  /* accepted on GATEWAY_HTTP_LISTEN (plain, redirects) */
    bool read_wants_write;          /* TLS: a read waits for writability */
    bool write_wants_read;          /* TLS: a write waits for readability */
    bool alpn_seen;                 /* TLS: the protocol ALPN chose was looked at */
    struct gw_h2 *h2;               /* C_H2: the HTTP/2 session (h2_front.c) */
    bool h2_busy, h2_again;         /* C_H2: h2_io is running / must run once more */
    struct event *h2_soon;          /* C_H2: h2_io at the end of this loop pass */
    struct pc_ipkey ipk;
    char ip[64];
};

static struct pc_iptable *iptab;
static size_t nadmin;               /* open admin connections (worker 0's loop only) */
static int64_t max_conns;           /* effective GATEWAY_MAX_CONNS */

static void client_close(struct gw_client *c);
static void process(struct gw_client *c);

/* ---- the list of connections and their reaping ---- */

static void list_del(struct gw_client **head, struct gw_client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_add(struct gw_client **head, struct gw_client *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void client_free(struct gw_client *c)
{
    gw_h2_free(c->h2);
    if (c->h2_soon)
        event_free(c->h2_soon);
    if (c->ssl)
        gw_tls_front_release(c->ssl);
    if (c->ev)
        event_free(c->ev);
    if (c->wev)
        event_free(c->wev);
    free(c->in);
    free(c->head);
    pc_buf_free(&c->out);
    free(c);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    struct gw_client *c = w->dead, *keep = NULL;
    w->dead = NULL;
    while (c) {
        struct gw_client *next = c->next;
        if (c->r || (c->h2 && gw_h2_running(c->h2) > 0)) {
            /* still running: freed when it ends */
            c->prev = NULL;
            c->next = keep;
            keep = c;
        } else {
            client_free(c);
        }
        c = next;
    }
    w->dead = keep;
    if (keep)
        for (struct gw_client *k = keep; k->next; k = k->next)
            k->next->prev = k;
}

static void client_close(struct gw_client *c)
{
    if (c->dead)
        return;
    struct gw_worker *w = c->w;
    c->dead = true;
    if (c->reading)
        event_del(c->ev);
    if (c->writing)
        event_del(c->wev);
    c->reading = c->writing = false;
    /* TLS: close_notify first (RFC 8446 6.1), without which an OpenSSL
     * client takes the close for a truncation and will not resume the
     * session. One try, never waited on. */
    if (c->ssl)
        gw_tls_front_shutdown(c->ssl);
    close(c->fd);
    c->fd = -1;
    list_del(c->on_tunnels ? &w->tunnels : &w->clients, c);
    c->on_tunnels = false;
    list_add(&w->dead, c);
    w->nclients--;
    if (c->counted)
        __atomic_sub_fetch(&gw_stats.conns_open, 1, __ATOMIC_RELAXED);
    if (c->ip_counted)
        pc_iptable_release(iptab, &c->ipk);
    if (c->overflow)
        w->noverflow--;
    if (c->reserve && w->reserve_fd == -1)
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (c->admin)
        nadmin--;
    c->counted = c->ip_counted = c->reserve = c->admin = false;
    event_active(w->reap_ev, EV_TIMEOUT, 0);
    if (c->h2)
        gw_h2_conn_closed(c->h2); /* its running requests learn it (they end later) */
}

static void want_read(struct gw_client *c, bool on)
{
    if (c->dead)
        return;
    gw_watch(c->ev, &c->reading, on);
    /* bytes OpenSSL has decrypted already will not make the socket readable */
    if (on && c->ssl && gw_tls_front_pending(c->ssl))
        event_active(c->ev, EV_READ, 0);
}

/* A tunnel's connection waits on w->tunnels, out of gw_front_tick's walk
 * (its idleness is streams.c's timer), except while its writes are blocked:
 * then the tick's stall bound applies to it as to any connection. */
static void relist(struct gw_client *c)
{
    bool t = c->state == C_TUNNEL && c->r != NULL && !c->writing && !c->dead;
    if (t == c->on_tunnels || c->dead)
        return;
    list_del(c->on_tunnels ? &c->w->tunnels : &c->w->clients, c);
    list_add(t ? &c->w->tunnels : &c->w->clients, c);
    c->on_tunnels = t;
}

static void want_write(struct gw_client *c, bool on)
{
    if (c->dead)
        return;
    gw_watch(c->wev, &c->writing, on);
    if (c->state == C_TUNNEL)
        relist(c);
}

/* ---- output ---- */

static void client_gone(struct gw_client *c);
static void tunnel_shed(struct gw_client *c);

/* read(2) on c, through TLS when c has it. */
static ssize_t conn_read(struct gw_client *c, void *buf, size_t n)
{
    if (c->ssl == NULL)
        return read(c->fd, buf, n);
    bool ww;
    ssize_t got = gw_tls_front_read(c->ssl, buf, n, &ww);
    if (got < 0 && errno == EAGAIN && ww) {
        c->read_wants_write = true;
        gw_watch(c->wev, &c->writing, true);
    } else if (got > 0 && c->reading && gw_tls_front_pending(c->ssl)) {
        event_active(c->ev, EV_READ, 0);
    }
    return got;
}

/* write(2) on c, through TLS when c has it. */
static ssize_t conn_write(struct gw_client *c, const void *buf, size_t n)
{
    if (c->ssl == NULL)
        return write(c->fd, buf, n);
    bool wr;
    ssize_t put = gw_tls_front_write(c->ssl, buf, n, &wr);
    if (put < 0 && errno == EAGAIN && wr) {
        c->write_wants_read = true;
        gw_watch(c->ev, &c->reading, true);
    }
    return put;
}

static void h2_io(struct gw_client *c);

static void after_flush(struct gw_client *c)
{
    if (c->h2) {
        if (c->state == C_CLOSING) {
            if (gw_h2_running(c->h2) == 0)
                client_close(c);
            return;
        }
        want_read(c, true); /* reading stops while the output is backed up */
        gw_h2_drained(c->h2);
        h2_io(c);
        return;
    }
    if (c->state == C_CLOSING && c->r == NULL) {
        if (!c->unread || c->overflow) {
            client_close(c);
            return;
        }
        /* The client may still be sending what we refused: shut our side
         * and drop theirs for a while, so it reads our answer instead of a
         * reset. */
        if (c->ssl)
            gw_tls_front_shutdown(c->ssl);
        shutdown(c->fd, SHUT_WR);
        c->state = C_LINGER;
        c->linger_until_us = pc_mono_us() + LINGER_MS * 1000LL;
        want_read(c, true);
        return;
    }
    if (c->r && c->r->proxy)
        gw_proxy_resume(c->r);
    if (c->r == NULL && c->len > 0)
        event_active(c->ev, EV_READ, 0); /* a pipelined request waits */
}

static bool flush_out(struct gw_client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = conn_write(c, c->out.data + c->out_off, c->out.len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->last_io_us = pc_mono_us();
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* keep the buffer small: drop what is written */
            if (c->out_off > 65536) {
                memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
                c->out.len -= c->out_off;
                c->out_off = 0;
            }
            want_write(c, true);
            return true;
        }
        client_gone(c);
        return false;
    }
    c->out.len = 0;
    c->out_off = 0;
    want_write(c, false);
    after_flush(c);
    return true;
}

static void on_read(evutil_socket_t fd, short what, void *arg);

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    struct gw_client *c = arg;
    if (c->read_wants_write) { /* TLS: the read OpenSSL could not finish */
        c->read_wants_write = false;
        if (c->out_off == c->out.len)
            want_write(c, false);
        on_read(fd, EV_READ, c);
        return;
    }
    flush_out(c);
}

bool gw_client_backlog_full(const struct gw_request *r)
{
    const struct gw_client *c = r->c;
    if (r->h2s)
        return gw_h2_backlog_full(r);
    return !c->dead && c->out.len - c->out_off > OUT_BACKLOG;
}

/* ---- HTTP/2 connections: h2_front.c's session, this file's socket ---- */

/* Moves what the session has to send into the output and writes it, until
 * the socket is full or the session has nothing more; a call from inside
 * (an answer queued while writing) makes the running one go round again. */
static void h2_io(struct gw_client *c)
{
    if (c->h2_busy) {
        c->h2_again = true;
        return;
    }
    c->h2_busy = true;
    do {
        c->h2_again = false;
        if (c->dead)
            break;
        bool live = gw_h2_pump(c->h2, &c->out, c->out.len - c->out_off, OUT_BACKLOG);
        if (!live && c->state == C_H2) {
            c->state = C_CLOSING; /* closed once what is queued is written */
            c->keep_alive = false;
        }
        if (c->dead || c->out_off == c->out.len)
            break; /* nothing to write (after_flush would only call here again) */
        if (!flush_out(c))
            break;
    } while (c->h2_again);
    if (!c->dead && c->state == C_CLOSING && c->out_off == c->out.len &&
        gw_h2_running(c->h2) == 0)
        client_close(c);
    c->h2_busy = false;
}

static void on_h2_soon(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct gw_client *c = arg;
    if (!c->dead)
        h2_io(c);
}

/* h2_io once the loop has run what else is ready: the answers of several
 * streams that came in the same pass (each from its own upstream) leave in
 * one TLS write, not one each. */
void gw_front_h2_kick(struct gw_client *c)
{
    if (c->dead)
        return;
    if (c->h2_busy)
        c->h2_again = true;
    else
        event_active(c->h2_soon, EV_TIMEOUT, 0); /* once, however often asked */
}

/* C_H2: one read, fed to the session. */
static void h2_read(struct gw_client *c)
{
    if (c->out.len - c->out_off > OUT_BACKLOG) {
        want_read(c, false); /* a peer that does not read: after_flush reads again */
        return;
    }
    uint8_t buf[16384];
    ssize_t n = conn_read(c, buf, sizeof buf);
    if (n > 0) {
        c->last_io_us = pc_mono_us();
        if (!gw_h2_recv(c->h2, buf, (size_t)n) && !c->dead) {
            c->state = C_CLOSING;
            want_read(c, false);
        }
        if (!c->dead)
            h2_io(c);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    want_read(c, false);
    client_gone(c);
}

/* The TLS handshake is done (a first read returned bytes): when ALPN chose
 * h2, the connection becomes an HTTP/2 session, fed what was read. */
static bool h2_switch(struct gw_client *c)
{
    c->alpn_seen = true;
    if (!gw_tls_front_is_h2(c->ssl))
        return false;
    if (c->overflow) {
        client_close(c); /* over a cap: HTTP/1.1 health checks only */
        return true;
    }
    c->state = C_H2;
    c->keep_alive = true;
    c->h2 = gw_h2_new(c, c->w, c->ip);
    c->h2_soon = event_new(c->w->base, -1, 0, on_h2_soon, c); /* gw_front_h2_kick */
    if (c->h2_soon == NULL)
        pc_fatal("event_new failed");
    size_t n = c->len;
    c->len = 0;
    if (!gw_h2_recv(c->h2, (const uint8_t *)c->in, n) && !c->dead)
        c->state = C_CLOSING;
    free(c->in); /* reads go through the stack from now on */
    c->in = NULL;
    c->cap = 0;
    if (!c->dead)
        h2_io(c);
    return true;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

/* Appends "name: value\r\n", leaving out bytes no header value may hold (a
 * CR or LF from a database row must not start a header of its own). */
void gw_hdr_append(struct pc_buf *b, const char *name, const char *value)
{
    pc_buf_puts(b, name);
    pc_buf_append(b, ": ", 2);
    const char *s = value;
    for (const char *p = value;; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '\0' || (ch < 0x20 && ch != '\t') || ch == 0x7f) {
            pc_buf_append(b, s, (size_t)(p - s));
            if (ch == '\0')
                break;
            s = p + 1;
        }
    }
    pc_buf_append(b, "\r\n", 2);
}

/* The Date header's value, made once a second per thread. */
static const char *http_date(void)
{
    static __thread char buf[40];
    static __thread time_t made;
    time_t now = time(NULL);
    if (now != made) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        made = now;
    }
    return buf;
}

struct pc_buf *gw_resp_begin(struct gw_request *r, int status, const char *reason)
{
    struct gw_client *c = r->c;
    if (r->h2s)
        return gw_h2_resp_begin(r, status);
    r->status = status;
    if (c->state == C_STREAM)
        c->keep_alive = false; /* its body has not all come: where it ends is not known */
    if (r->resp_started)
        pc_fatal("gw_resp_begin: answer already started");
    r->resp_started = true;
    struct pc_buf *b = &c->out;
    r->out_mark = b->len;
    if (reason == NULL || reason[0] == '\0')
        reason = reason_phrase(status);
    pc_buf_puts(b, "HTTP/1.1 ");
    pc_buf_putu(b, (uint64_t)status);
    pc_buf_putc(b, ' ');
    pc_buf_puts(b, reason);
    pc_buf_append(b, "\r\n", 2);
    return b;
}

void gw_front_head_extras(struct gw_request *r, struct pc_buf *b, int64_t body_len, bool own)
{
    gw_cors_headers(r, b);
    if (r->tls && r->route && r->route->hsts_max_age_s > 0) { /* RFC 6797: over TLS only */
        pc_buf_puts(b, "Strict-Transport-Security: max-age=");
        pc_buf_putu(b, (uint64_t)r->route->hsts_max_age_s);
        pc_buf_append(b, "\r\n", 2);
    }
    if (own)
        gw_hdr_append(b, "Date", http_date());
    if (body_len >= 0) {
        pc_buf_puts(b, "Content-Length: ");
        pc_buf_putu(b, (uint64_t)body_len);
        pc_buf_append(b, "\r\n", 2);
    }
}

void gw_resp_end_head(struct gw_request *r, int64_t body_len, bool own)
{
    struct gw_client *c = r->c;
    if (r->h2s) {
        gw_h2_resp_end_head(r, body_len, own);
        return;
    }
    struct pc_buf *b = &c->out;
    c->resp_nobody = r->head_method || body_len == GW_LEN_OMIT;
    c->resp_chunked = false;
    gw_front_head_extras(r, b, body_len, own);
    if (body_len == GW_LEN_STREAM && !r->head_method) {
        if (c->head->minor >= 1) {
            c->resp_chunked = true;
            pc_buf_puts(b, "Transfer-Encoding: chunked\r\n");
        } else {
            c->keep_alive = false; /* HTTP/1.0: the body ends at the close */
        }
    }
    if (!c->keep_alive)
        pc_buf_puts(b, "Connection: close\r\n");
    else if (c->head->minor == 0)
        pc_buf_puts(b, "Connection: keep-alive\r\n");
    pc_buf_append(b, "\r\n", 2);
    r->bytes_out += b->len - r->out_mark;
}

void gw_resp_body(struct gw_request *r, const void *data, size_t n)
{
    struct gw_client *c = r->c;
    if (r->h2s) {
        gw_h2_resp_body(r, data, n);
        return;
    }
    if (n == 0 || c->resp_nobody || c->dead)
        return;
    size_t before = c->out.len;
    if (c->resp_chunked)
        pc_buf_printf(&c->out, "%zx\r\n", n);
    pc_buf_append(&c->out, data, n);
    if (c->resp_chunked)
        pc_buf_append(&c->out, "\r\n", 2);
    r->bytes_out += c->out.len - before;
}

void gw_resp_send(struct gw_request *r)
{
    struct gw_client *c = r->c;
    if (c->dead)
        return;
    if (r->h2s)
        gw_front_h2_kick(c);
    else
        flush_out(c);
}

void gw_resp_end(struct gw_request *r)
{
    struct gw_client *c = r->c;
    if (r->h2s) {
        gw_h2_resp_end(r);
        return;
    }
    if (c->resp_chunked && !c->dead)
        pc_buf_append(&c->out, "0\r\n\r\n", 5);
    c->resp_chunked = false;
}

void gw_resp_abort(struct gw_request *r)
{
    /* A streamed answer that cannot be completed: the client must see it
     * cut, not a well-formed ending. */
    struct gw_client *c = r->c;
    if (r->h2s) {
        gw_h2_resp_abort(r); /* the stream is reset, the connection stays */
        return;
    }
    c->keep_alive = false;
    c->resp_chunked = false;
    if (!c->dead) {
        flush_out(c);
        if (!c->dead)
            client_close(c);
    }
}

void gw_resp_upgrade(struct gw_request *r)
{
    struct gw_client *c = r->c;
    if (r->h2s) { /* never asked for over HTTP/2: a 101 there is the upstream's fault */
        gw_h2_resp_abort(r);
        return;
    }
    pc_buf_puts(&c->out, "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    r->bytes_out += c->out.len - r->out_mark;
    c->resp_nobody = c->resp_chunked = false;
    c->keep_alive = false;
    c->unread = true; /* the client's close frame may come as we close: linger */
    c->state = C_TUNNEL;
    relist(c);
    /* what the client sent after its handshake goes upstream first, from
     * the loop (tunnel_read); then the head and the input buffer go */
    want_read(c, true);
    if (c->len > c->used)
        event_active(c->ev, EV_READ, 0);
    else
        tunnel_shed(c);
}

/* A tunnel needs neither the handshake's head nor the input buffer it lies
 * in (reads go through the stack): both are freed, 8 KiB of every idle
 * tunnel. r keeps what it uses after the 101 (the log's method; path and
 * credential are its own copies) and sees no headers from now on. */
static void tunnel_shed(struct gw_client *c)
{
    static const struct pc_http_head none;
    struct gw_request *r = c->r;
    if (r != NULL) {
        const char *ua = gw_header(r, "User-Agent");
        if (ua != NULL)
            r->user_agent = pc_xstrndup(ua, strnlen(ua, GW_LOG_UA_MAX));
        r->method = "GET"; /* websocket_handshake: nothing else upgrades */
        r->head = &none;
        r->body = NULL;
        r->body_len = 0;
    }
    free(c->head);
    c->head = NULL;
    free(c->in);
    c->in = NULL;
    c->cap = c->len = c->used = 0;
}

void gw_front_tunnel_resume(struct gw_request *r)
{
    struct gw_client *c = r->c;
    if (!r->h2s && !c->dead && c->state == C_TUNNEL)
        want_read(c, true);
}

/* C_TUNNEL: one read, handed upstream as it is (never kept here). */
static void tunnel_read(struct gw_client *c)
{
    if (c->in != NULL) {
        size_t extra = c->len - c->used;
        c->r->bytes_in += extra;
        int more = gw_proxy_tunnel_in(c->r, c->in + c->used, extra);
        if (!c->dead)
            tunnel_shed(c);
        if (more == 0 && !c->dead)
            want_read(c, false);
        return;
    }
    char buf[16384];
    ssize_t n = conn_read(c, buf, sizeof buf);
    if (n > 0) {
        c->last_io_us = pc_mono_us();
        c->r->bytes_in += (size_t)n;
        if (gw_proxy_tunnel_in(c->r, buf, (size_t)n) == 0 && !c->dead)
            want_read(c, false); /* the upstream reads slowly: wait (gw_front_tunnel_resume) */
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    want_read(c, false);
    client_gone(c); /* the client closed: the exchange is cancelled, the upstream closed */
}

void gw_reply(struct gw_request *r, int status, const char *ctype, const char *body, size_t n)
{
    struct pc_buf *b = gw_resp_begin(r, status, NULL);
    gw_hdr_append(b, "Content-Type", ctype);
    gw_hdr_append(b, "X-Request-Id", r->request_id);
    gw_resp_end_head(r, (int64_t)n, true);
    gw_resp_body(r, body, n);
    gw_resp_send(r);
}

/* ---- requests ---- */

static struct gw_request *request_new(struct gw_client *c)
{
    struct gw_request *r = gw_request_new(c->w, c, c->head, c->ip);
    r->tls = c->ssl != NULL;
    r->to_https = c->to_https;
    r->admin = c->admin;
    c->r = r;
    c->state = C_BUSY;
    return r;
}

/* Answers a request the front refuses before routing (bad framing, limits):
 * the connection closes after the answer. parsed: the head was read whole
 * (its X-Request-Id counts). */
static void refuse(struct gw_client *c, bool parsed, int status, const char *code,
                   const char *msg)
{
    if (!parsed) {
        c->head->nh = 0;
        c->head->method = NULL;
    }
    struct gw_request *r = request_new(c);
    gw_request_id(r);
    r->method = c->head->method ? c->head->method : "";
    r->path = pc_xstrdup("/");
    c->keep_alive = false;
    c->unread = true; /* where this request ends is not known */
    gw_fail(r, status, code, msg);
}

void gw_front_request_done(struct gw_request *r)
{
    struct gw_client *c = r->c;
    if (r->h2s) {
        gw_h2_request_done(r);
        if (c->dead && gw_h2_running(c->h2) == 0)
            event_active(c->w->reap_ev, EV_TIMEOUT, 0); /* kept for it: free it now */
        else if (!c->dead)
            gw_front_h2_kick(c);
        return;
    }
    c->r = NULL;
    if (c->dead)
        return; /* the reap event frees it */
    if (c->state == C_STREAM) {
        /* answered before its body ended: the rest is dropped while
         * lingering, and the connection closes (nothing else is known to
         * be where the next request starts) */
        c->keep_alive = false;
        c->unread = true;
    }
    if (gw_stopping) {
        relist(c); /* a tunnel's connection: back where gw_front_free closes it */
        return;
    }
    if (!c->keep_alive) {
        c->state = C_CLOSING;
        relist(c);
        flush_out(c);
        return;
    }
    /* keep what follows the request (pipelined) at the front */
    if (c->used < c->len)
        memmove(c->in, c->in + c->used, c->len - c->used);
    c->len -= c->used;
    c->used = 0;
    c->state = C_HEAD;
    c->head_start_us = c->len > 0 ? pc_mono_us() : 0;
    c->continue_sent = false;
    want_read(c, true);
    if (c->out_off == c->out.len && c->len > 0)
        event_active(c->ev, EV_READ, 0);
}

static const char *allowed_method(const char *m)
{
    static const char *const ok[] = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < PC_ARRAY_LEN(ok); i++)
        if (strcmp(m, ok[i]) == 0)
            return ok[i];
    return NULL;
}

/* A WebSocket handshake (RFC 6455 4.1): an HTTP/1.1 GET without a body,
 * Upgrade: websocket, and Upgrade named in Connection. */
static bool websocket_handshake(const struct pc_http_head *h)
{
    const char *up = pc_http_get(h, "Upgrade");
    return h->minor >= 1 && strcmp(h->method, "GET") == 0 && h->framing == PC_HTTP_BODY_NONE &&
           up && strcasecmp(up, "websocket") == 0 &&
           gw_named_in_connection(pc_http_get(h, "Connection"), "Upgrade");
}

/* Runs the request whose head was parsed: with its whole body at
 * in[head_len .. head_len + body_len), taking used bytes of input, or
 * (stream) with its body still arriving. */
static void start_request(struct gw_client *c, size_t body_len, size_t used, bool stream)
{
    struct gw_request *r = request_new(c);
    r->method = c->head->method;
    r->head_method = strcmp(c->head->method, "HEAD") == 0;
    r->upgrade = websocket_handshake(c->head);
    if (stream) {
        c->state = C_STREAM;
        r->body_stream = true;
        r->body_size = c->head->framing == PC_HTTP_BODY_LENGTH ? (int64_t)c->head->content_length : -1;
        c->used = c->head->head_len;
        r->bytes_in = c->len; /* the head and what came of the body; body_read adds the rest */
    } else {
        r->body = c->in + c->head->head_len;
        r->body_len = body_len;
        c->used = used;
        r->bytes_in = used;
    }
    gw_intake(r);
}


/* Moves the parsed head's pointers along with the buffer they point into. */
static void rebase(const char **p, uintptr_t old, char *now)
{
    if (*p)
        *p = now + ((uintptr_t)*p - old);
}

/* Room for need bytes of input in all. */
static void grow_in(struct gw_client *c, size_t need)
{
    if (need <= c->cap)
        return;
    size_t cap = c->cap ? c->cap : IN_START;
    while (cap < need)
        cap *= 2;
    /* offsets of the head's pointers, taken before the old block goes */
    bool parsed = c->state == C_STREAM;
    uintptr_t old = (uintptr_t)c->in;
    char *now = pc_xrealloc(c->in, cap);
    c->cap = cap;
    c->in = now;
    if (!parsed || (uintptr_t)now == old)
        return;
    struct pc_http_head *h = c->head;
    rebase(&h->method, old, now);
    rebase((const char **)&h->target, old, now);
    for (size_t i = 0; i < h->nh; i++) {
        rebase(&h->h[i].name, old, now);
        rebase(&h->h[i].value, old, now);
    }
}

/* ---- bodies ---- */

static void send_continue(struct gw_client *c)
{
    if (c->continue_sent || !c->head->expect_continue || c->head->minor == 0)
        return;
    c->continue_sent = true;
    pc_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    flush_out(c);
}

/* Decodes what input follows the decoded body bytes: sets avail,
 * body_done, or body_err. */
static void body_feed(struct gw_client *c)
{
    if (c->body_done || c->body_err)
        return;
    size_t at = c->head->head_len + c->avail; /* decoded bytes end, undecoded begin */
    if (c->head->framing == PC_HTTP_BODY_LENGTH) {
        size_t k = c->len - at;
        if (k > c->left)
            k = (size_t)c->left;
        c->avail += k;
        c->left -= k;
        c->body_done = c->left == 0;
        return;
    }
    size_t out = 0;
    bool done = false;
    ssize_t n = pc_chunked_decode(&c->ch, c->in + at, c->len - at, c->in + at, &out, &done);
    if (n < 0) {
        c->body_err = GW_BODY_BAD;
        return;
    }
    c->raw_total += (size_t)n;
    c->body_n += out;
    /* keep head, decoded body, then what is not decoded yet */
    memmove(c->in + at + out, c->in + at + n, c->len - at - (size_t)n);
    c->len -= (size_t)n - out;
    c->avail += out;
    if (c->body_n > (uint64_t)gw_cfg.max_body ||
        c->raw_total > 2 * (uint64_t)gw_cfg.max_body + 65536) {
        c->body_err = GW_BODY_TOO_LARGE;
        return;
    }
    c->body_done = done;
}

/* A streamed body is all taken: what follows it is the next request's. */
static void body_finished(struct gw_client *c)
{
    if (c->state != C_STREAM || !c->body_done || c->avail > 0)
        return;
    c->state = C_BUSY;
    c->used = c->head->head_len;
}

/* The head says a body follows: run the request with it whole when it is
 * all here, else with it streamed. */
static void body_begin(struct gw_client *c)
{
    c->state = C_STREAM; /* the head is parsed: grow_in moves its pointers */
    c->avail = 0;
    c->left = c->head->content_length;
    c->body_n = c->raw_total = 0;
    c->body_done = c->body_gone = false;
    c->body_err = 0;
    memset(&c->ch, 0, sizeof c->ch);
    size_t window = GW_BODY_WINDOW;
    if (c->head->framing == PC_HTTP_BODY_LENGTH && c->head->content_length < window)
        window = (size_t)c->head->content_length;
    grow_in(c, c->head->head_len + window);
    body_feed(c);
    if (c->body_err == GW_BODY_BAD) {
        refuse(c, true, 400, "BAD_REQUEST", "Malformed chunked body");
    } else if (c->body_err) {
        refuse(c, true, 413, "PAYLOAD_TOO_LARGE", "Request body is too large");
    } else if (c->body_done) {
        start_request(c, c->avail, c->head->head_len + c->avail, false);
    } else {
        start_request(c, 0, 0, true);
    }
}

/* C_STREAM: one read into the window, decoded, announced upstream. */
static void body_read(struct gw_client *c)
{
    struct gw_request *r = c->r;
    if (c->len >= c->cap || c->body_done || c->body_err) {
        want_read(c, false); /* resumed by gw_front_body_consume */
        return;
    }
    ssize_t n = conn_read(c, c->in + c->len, c->cap - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        /* the body cannot end now: the exchange is cancelled, or (still on
         * the stores) the request finds it gone when it peeks */
        want_read(c, false);
        c->body_gone = true;
        c->keep_alive = false;
        if (r->proxy)
            client_gone(c);
        return;
    }
    c->len += (size_t)n;
    c->last_io_us = pc_mono_us();
    r->bytes_in += (size_t)n;
    body_feed(c);
    if (c->avail == 0)
        body_finished(c); /* only framing came, or the end of it */
    if (r->proxy)
        gw_proxy_body_ready(r); /* last: it may end r */
}

enum gw_body gw_front_body_peek(struct gw_request *r, const char **data, size_t *n)
{
    struct gw_client *c = r->c;
    if (r->h2s)
        return gw_h2_body_peek(r, data, n);
    *data = NULL;
    *n = 0;
    if (!c->dead && c->state == C_STREAM)
        send_continue(c);
    if (c->dead)
        return GW_BODY_GONE;
    if (c->state != C_STREAM)
        return GW_BODY_END;
    if (c->avail > 0) {
        *data = c->in + c->head->head_len;
        *n = c->avail;
        return GW_BODY_DATA;
    }
    if (c->body_err)
        return c->body_err;
    if (c->body_gone)
        return GW_BODY_GONE;
    return GW_BODY_WAIT;
}

void gw_front_body_consume(struct gw_request *r, size_t n)
{
    struct gw_client *c = r->c;
    if (r->h2s) {
        gw_h2_body_consume(r, n);
        return;
    }
    if (n == 0 || c->state != C_STREAM)
        return;
    char *at = c->in + c->head->head_len;
    memmove(at, at + n, c->len - c->head->head_len - n);
    c->len -= n;
    c->avail -= n;
    body_feed(c); /* undecoded input that waited behind a full window */
    body_finished(c);
    if (c->state == C_STREAM && !c->body_done && !c->body_gone && !c->body_err)
        want_read(c, true);
}

/* GET or HEAD of /health, /live or /ready (after GATEWAY_HEALTH_PREFIX):
 * what an overflow connection may ask. */
static bool health_target(const struct pc_http_head *h)
{
    if (strcmp(h->method, "GET") != 0 && strcmp(h->method, "HEAD") != 0)
        return false;
    char path[96];
    size_t n = strcspn(h->target, "?");
    if (n >= sizeof path)
        return false;
    memcpy(path, h->target, n);
    path[n] = '\0';
    enum gw_local what = gw_local_path(path, false);
    return what == GW_LOCAL_HEALTH || what == GW_LOCAL_LIVE || what == GW_LOCAL_READY;
}

int gw_front_head_refusal(const struct pc_http_head *h, const char **code, const char **msg)
{
    size_t hdr_bytes = 0;
    for (size_t i = 0; i < h->nh; i++)
        hdr_bytes += h->h[i].nlen + h->h[i].vlen + 4;
    *code = *msg = NULL;
    if ((int64_t)hdr_bytes > gw_cfg.max_headers) {
        *code = "HEADERS_TOO_LARGE";
        *msg = "Request headers are too large";
        return 431;
    }
    if (allowed_method(h->method) == NULL) {
        *code = "METHOD_NOT_ALLOWED";
        *msg = "Method not allowed";
        return 405;
    }
    if (!pc_http_host_ok(h)) {
        *code = "BAD_HOST";
        *msg = "An HTTP/1.1 request needs exactly one valid Host header";
        return 400;
    }
    /* Content on a HEAD has no meaning (RFC 9110 9.3.2), and servers such as
     * libevent's read none: forwarded, it would be parsed upstream as the
     * next request on a pooled connection, headers chosen by the client. */
    if (strcmp(h->method, "HEAD") == 0 &&
        (h->framing == PC_HTTP_BODY_CHUNKED ||
         (h->framing == PC_HTTP_BODY_LENGTH && h->content_length > 0))) {
        *code = "BODY_NOT_ALLOWED";
        *msg = "A HEAD request cannot carry a body";
        return 400;
    }
    if (h->framing == PC_HTTP_BODY_LENGTH && h->content_length > (uint64_t)gw_cfg.max_body) {
        *code = "PAYLOAD_TOO_LARGE";
        *msg = "Request body is too large";
        return 413;
    }
    return 0;
}

/* Parses and runs what the buffer holds. */
static void process(struct gw_client *c)
{
    if (c->state != C_HEAD || c->len == 0)
        return;
    enum pc_http_result res = pc_http_parse_request(c->in, c->len, c->head);
    size_t head_max = (size_t)gw_cfg.max_headers + REQUEST_LINE_MAX;
    switch (res) {
    case PC_HTTP_OK:
        break;
    case PC_HTTP_INCOMPLETE:
        if (c->len > head_max)
            refuse(c, false, 431, "HEADERS_TOO_LARGE", "Request headers are too large");
        return;
    case PC_HTTP_TOO_MANY:
        refuse(c, false, 431, "HEADERS_TOO_LARGE", "Too many request headers");
        return;
    case PC_HTTP_BAD_VERSION:
        refuse(c, false, 505, "HTTP_VERSION_NOT_SUPPORTED", "Only HTTP/1.0 and HTTP/1.1 are served");
        return;
    case PC_HTTP_BAD_FRAMING:
        refuse(c, true, 400, "BAD_REQUEST", "Conflicting or unsupported body framing");
        return;
    default:
        refuse(c, false, 400, "BAD_REQUEST", "Malformed request");
        return;
    }
    c->head_start_us = 0;
    c->keep_alive = c->head->keep_alive;
    if (c->overflow) {
        c->keep_alive = false;
        if (!health_target(c->head) || c->head->framing != PC_HTTP_BODY_NONE) {
            refuse(c, true, 503, "TOO_MANY_CONNECTIONS",
                   "Too many connections, try again later");
            return;
        }
    }
    const char *code, *msg;
    int status = gw_front_head_refusal(c->head, &code, &msg);
    if (status == 0 && c->head->head_len > head_max) {
        status = 431;
        code = "HEADERS_TOO_LARGE";
        msg = "Request headers are too large";
    }
    if (status != 0) {
        refuse(c, true, status, code, msg);
        return;
    }
    switch (c->head->framing) {
    case PC_HTTP_BODY_LENGTH:
        body_begin(c);
        return;
    case PC_HTTP_BODY_CHUNKED:
        body_begin(c);
        return;
    default:
        start_request(c, 0, c->head->head_len, false);
        return;
    }
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct gw_client *c = arg;
    if (c->dead)
        return;
    if (c->write_wants_read) { /* TLS: the write OpenSSL could not finish */
        c->write_wants_read = false;
        if (!flush_out(c) || c->dead)
            return;
    }
    if (c->state == C_LINGER) {
        char drop[16384];
        ssize_t n = read(c->fd, drop, sizeof drop);
        c->linger_bytes += n > 0 ? (size_t)n : 0;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
            c->linger_bytes > LINGER_MAX)
            client_close(c);
        return;
    }
    if (c->state == C_H2) {
        h2_read(c);
        return;
    }
    if (c->state == C_TUNNEL || c->state == C_STREAM) {
        if (c->r == NULL)
            want_read(c, false);
        else if (c->state == C_TUNNEL)
            tunnel_read(c);
        else
            body_read(c);
        return;
    }
    bool busy = c->r != NULL || c->state == C_CLOSING;
    /* A head grows the buffer (process() refuses one past its limit). */
    if (!busy && c->len >= c->cap && c->state == C_HEAD)
        grow_in(c, c->cap * 2);
    if (c->len >= c->cap) {
        /* busy and no room: stop reading until the request ends */
        want_read(c, false);
        return;
    }
    if (what & EV_READ) {
        ssize_t n = conn_read(c, c->in + c->len, c->cap - c->len);
        if (n > 0) {
            c->len += (size_t)n;
            c->last_io_us = pc_mono_us();
            if (c->state == C_HEAD && c->head_start_us == 0)
                c->head_start_us = c->last_io_us;
            if (c->ssl && !c->alpn_seen && h2_switch(c))
                return;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            /* The client closed (or half-closed) its side. An exchange with
             * the upstream is cancelled, whether or not its answer has
             * started (nobody may read it, and the upstream connection
             * should not wait for UPSTREAM_TIMEOUT_SECONDS); a half-closed client
             * loses its answer, as with nginx's proxy_ignore_client_abort
             * off. A request still on the stores gets its answer written. */
            want_read(c, false);
            if (c->r == NULL) {
                if (c->out_off < c->out.len) {
                    c->keep_alive = false;
                    c->state = C_CLOSING;
                } else {
                    client_close(c);
                }
            } else if (c->r->proxy) {
                client_gone(c);
            } else {
                c->keep_alive = false;
            }
            return;
        }
    }
    /* a new request waits until the previous answer is written */
    if (!busy && (c->state != C_HEAD || c->out_off == c->out.len))
        process(c);
}

/* The client cannot be written to (or has been silent too long): close it.
 * A stream being relayed to it is cancelled from the loop (proxy.c), not
 * from inside whatever was writing. */
static void client_gone(struct gw_client *c)
{
    c->out.len = c->out_off = 0;
    c->keep_alive = false;
    struct gw_request *r = c->r;
    client_close(c);
    if (r && r->proxy)
        gw_proxy_client_gone(r);
}

/* ---- accepting ---- */

static struct gw_client *client_new(struct gw_worker *w, int fd, const struct sockaddr_storage *sa)
{
    struct gw_client *c = pc_xcalloc(1, sizeof *c);
    c->w = w;
    c->fd = fd;
    c->last_io_us = c->head_start_us = pc_mono_us();
    pc_ipkey_from((const struct sockaddr *)sa, &c->ipk, c->ip, sizeof c->ip);
    c->ev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    if (c->ev == NULL || c->wev == NULL)
        pc_fatal("event_new failed");
    c->head = pc_xcalloc(1, sizeof *c->head);
    grow_in(c, IN_START);
    list_add(&w->clients, c);
    w->nclients++;
    want_read(c, true);
    return c;
}

/* Takes an accepted connection in, within the caps or as an overflow one
 * (reserve: it holds the worker's reserve descriptor). */
static void admit(struct gw_worker *w, int fd, const struct sockaddr_storage *sa, bool reserve,
                  bool to_https)
{
    bool over = reserve, counted = false, ip_counted = false;
    struct pc_ipkey k;
    pc_ipkey_from((const struct sockaddr *)sa, &k, NULL, 0);
    if (!over) {
        uint64_t n = __atomic_add_fetch(&gw_stats.conns_open, 1, __ATOMIC_RELAXED);
        counted = true;
        if (max_conns > 0 && n > (uint64_t)max_conns) {
            GW_STAT_INC(conns_refused_max);
            over = true;
        } else if (!pc_iptable_acquire(iptab, &k, gw_cfg.max_conns_per_ip)) {
            GW_STAT_INC(conns_refused_ip);
            over = true;
        } else {
            ip_counted = true;
        }
        if (over) {
            __atomic_sub_fetch(&gw_stats.conns_open, 1, __ATOMIC_RELAXED);
            counted = false;
        }
    }
    if (over && w->noverflow >= OVERFLOW_SLOTS) {
        close(fd); /* the overflow slots are busy: no answer */
        if (reserve && w->reserve_fd == -1)
            w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct gw_client *c = client_new(w, fd, sa);
    c->counted = counted;
    c->ip_counted = ip_counted;
    c->overflow = over;
    c->reserve = reserve;
    if (over)
        w->noverflow++;
    c->to_https = to_https;
    if (gw_tls_front_on() && !to_https && (c->ssl = gw_tls_front_new(fd)) == NULL) {
        pc_log_error("tls: cannot make a connection's SSL");
        client_close(c);
        return;
    }
    if (over) {
        on_read(fd, EV_READ, c); /* a health check has sent its request by now */
        /* Nothing sent yet: one just made keeps the reserve a moment, one
         * that waited in the backlog is closed so the next one is reached. */
        if (!c->dead && reserve && c->len == 0 && c->r == NULL && !pc_conn_fresh(fd, 50))
            client_close(c);
    }
}

static void pause_accept(struct gw_worker *w)
{
    if (!w->accept_paused && w->listen_fd != -1)
        event_del(w->accept_ev);
    w->accept_paused = true;
    w->accept_resume_us = pc_mono_us() + ACCEPT_BACKOFF_MS * 1000LL;
}

/* The reserve descriptor is gone (another thread took the descriptor it
 * freed): close this worker's longest-idle keep-alive connection, one that
 * waits for a request and has nothing to send, and take its descriptor as
 * the reserve, so that a health check is still reached (nginx drains its
 * reusable connections the same way). */
static void reclaim_reserve(struct gw_worker *w)
{
    struct gw_client *old = NULL;
    for (struct gw_client *c = w->clients; c; c = c->next)
        if (c->state == C_HEAD && c->len == 0 && c->r == NULL && c->out_off == c->out.len &&
            !c->overflow && (old == NULL || c->last_io_us < old->last_io_us))
            old = c;
    if (old == NULL)
        return;
    GW_STAT_INC(conns_reclaimed);
    client_close(old);
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* accept() failed with EMFILE or ENFILE. The listener stays readable, so
 * accepting again at once would spin: answer one connection with the
 * reserve descriptor, stop accepting for a while, warn once per interval. */
static void out_of_descriptors(struct gw_worker *w, int err)
{
    static int64_t warned_us, missed;
    GW_STAT_INC(accept_errors);
    int64_t now = pc_mono_us();
    int64_t last = __atomic_load_n(&warned_us, __ATOMIC_RELAXED);
    if (now - last >= EMFILE_LOG_S * 1000000LL &&
        __atomic_compare_exchange_n(&warned_us, &last, now, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
        int64_t m = __atomic_exchange_n(&missed, 0, __ATOMIC_RELAXED);
        pc_log_warn("accept: %s; pausing accepts for %d ms (%lld more in the last %d s; raise "
                    "the open file limit or lower GATEWAY_MAX_CONNS)",
                    strerror(err), ACCEPT_BACKOFF_MS, (long long)m, EMFILE_LOG_S);
    } else {
        __atomic_add_fetch(&missed, 1, __ATOMIC_RELAXED);
    }
    if (w->reserve_fd == -1)
        reclaim_reserve(w);
    /* Queued idle connections are closed at once, so a health check
     * behind them is reached. */
    for (int k = 0; k < RESERVE_TRIES && w->reserve_fd != -1 && w->noverflow < OVERFLOW_SLOTS;
         k++) {
        close(w->reserve_fd);
        w->reserve_fd = -1;
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(w->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            break;
        }
        admit(w, fd, &sa, true, false);
    }
    pause_accept(w);
}

/* Takes what lfd (the public listener, or GATEWAY_HTTP_LISTEN's) has. */
static void accept_all(struct gw_worker *w, evutil_socket_t lfd, bool to_https)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            int e = errno;
            if (e == EMFILE || e == ENFILE)
                out_of_descriptors(w, e);
            else if (e == ENOBUFS || e == ENOMEM)
                pause_accept(w);
            return;
        }
        admit(w, fd, &sa, false, to_https);
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    accept_all(arg, lfd, false);
}

static void on_http_accept(evutil_socket_t lfd, short what, void *arg)
{
    accept_all(arg, lfd, true);
}

/* The admin listener (worker 0): a connection of its own kind, outside
 * GATEWAY_MAX_CONNS and the per-address caps (so a flood on the public port
 * cannot hide the metrics), bounded by ADMIN_CONNS_MAX. */

static void on_admin_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct gw_worker *w = arg;
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1)
            return; /* EMFILE too: the public listener's reserve logic is for health checks */
        if (nadmin >= ADMIN_CONNS_MAX) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct gw_client *c = client_new(w, fd, &sa);
        c->admin = true;
        nadmin++;
    }
}

void gw_front_init(void)
{
    iptab = pc_iptable_new();
    max_conns = gw_cfg.max_conns;
    if (max_conns == 0) {
        /* each client may hold an upstream connection too */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            max_conns = (int64_t)rl.rlim_cur / 2;
        if (max_conns < 16)
            max_conns = 16;
    }
}

void gw_front_fini(void)
{
    pc_iptable_free(iptab);
    iptab = NULL;
}

int64_t gw_front_max_conns(void)
{
    return max_conns;
}

size_t gw_front_addresses(void)
{
    return iptab ? pc_iptable_addresses(iptab) : 0;
}

void gw_front_start(struct gw_worker *w)
{
    w->accept_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, w);
    w->reap_ev = event_new(w->base, -1, 0, on_reap, w);
    if (w->accept_ev == NULL || w->reap_ev == NULL)
        pc_fatal("event_new failed");
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    event_add(w->accept_ev, NULL);
    if (w->http_fd != -1) {
        w->http_ev = event_new(w->base, w->http_fd, EV_READ | EV_PERSIST, on_http_accept, w);
        if (w->http_ev == NULL)
            pc_fatal("event_new failed");
        event_add(w->http_ev, NULL);
    }
    if (w->admin_fd != -1) {
        w->admin_ev = event_new(w->base, w->admin_fd, EV_READ | EV_PERSIST, on_admin_accept, w);
        if (w->admin_ev == NULL)
            pc_fatal("event_new failed");
        event_add(w->admin_ev, NULL);
    }
}

void gw_front_stop_accepting(struct gw_worker *w)
{
    if (w->http_fd != -1) {
        event_del(w->http_ev);
        close(w->http_fd);
        w->http_fd = -1;
    }
    if (w->admin_fd != -1) {
        event_del(w->admin_ev);
        close(w->admin_fd);
        w->admin_fd = -1;
    }
    if (w->listen_fd == -1)
        return;
    if (!w->accept_paused)
        event_del(w->accept_ev);
    close(w->listen_fd);
    w->listen_fd = -1;
}

void gw_front_tick(struct gw_worker *w, bool stopping)
{
    int64_t now = pc_mono_us();
    if (w->reserve_fd == -1 && !stopping) {
        bool held = false;
        for (struct gw_client *c = w->clients; c && !held; c = c->next)
            held = c->reserve;
        if (!held)
            w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (w->accept_paused && now >= w->accept_resume_us && w->listen_fd != -1 && !stopping) {
        w->accept_paused = false;
        event_add(w->accept_ev, NULL);
    }
    int64_t head_us = gw_cfg.head_timeout_ms * 1000LL;
    for (struct gw_client *c = w->clients, *next; c; c = next) {
        next = c->next;
        if (c->state == C_LINGER) {
            if (now >= c->linger_until_us)
                client_close(c);
            continue;
        }
        if (c->h2) {
            /* HTTP/2: silent for GATEWAY_CLIENT_IDLE_SECONDS (streams wait on
             * the upstream under its own bounds), a stream whose body stopped
             * as long (PINGs keep the connection busy, not the stream), or
             * draining */
            bool quiet = gw_h2_running(c->h2) == 0 || c->out_off < c->out.len;
            if (stopping) {
                gw_h2_goaway(c->h2);
                h2_io(c);
                if (!c->dead && gw_h2_running(c->h2) == 0 && c->out_off == c->out.len)
                    client_close(c);
            } else if (quiet && now - c->last_io_us > gw_cfg.client_idle_s * 1000000LL) {
                client_gone(c);
            } else if (gw_h2_reset_stalled(c->h2, now - gw_cfg.client_idle_s * 1000000LL)) {
                h2_io(c); /* a body that stopped coming: its stream reset */
            }
            continue;
        }
        bool idle = c->r == NULL && c->out_off == c->out.len;
        if (stopping && idle && c->state == C_HEAD) {
            client_close(c); /* between requests: nothing is lost */
            continue;
        }
        if (idle && c->state == C_HEAD && c->head_start_us &&
            now - c->head_start_us > (c->overflow ? OVERFLOW_HEAD_MS * 1000LL : head_us)) {
            if (!c->overflow)
                GW_STAT_INC(head_timeouts);
            if (c->len > 0 && !c->overflow)
                refuse(c, false, 408, "REQUEST_TIMEOUT",
                       "The request head did not arrive in time");
            else
                client_close(c);
            continue;
        }
        /* A request waiting on the stores or the upstream has its own
         * bounds; here only the client's own silence counts (a body that
         * stops coming while it is wanted among it). */
        bool body_wanted = c->state == C_STREAM && c->reading;
        if ((idle || body_wanted || c->out_off < c->out.len) &&
            now - c->last_io_us > gw_cfg.client_idle_s * 1000000LL)
            client_gone(c);
    }
}

void gw_front_free(struct gw_worker *w)
{
    while (w->tunnels)
        client_close(w->tunnels);
    while (w->clients)
        client_close(w->clients);
    on_reap(-1, 0, w);
    /* The stop functions have finished every request, so on_reap freed
     * them all; a connection still marked busy here would be a request
     * lost on the way, and its connection goes anyway. */
    while (w->dead) {
        struct gw_client *c = w->dead;
        w->dead = c->next;
        client_free(c);
    }
    if (w->accept_ev)
        event_free(w->accept_ev);
    if (w->admin_ev)
        event_free(w->admin_ev);
    if (w->http_ev)
        event_free(w->http_ev);
    if (w->http_fd != -1)
        close(w->http_fd);
    w->http_fd = -1;
    if (w->admin_fd != -1)
        close(w->admin_fd);
    w->admin_fd = -1;
    if (w->reap_ev)
        event_free(w->reap_ev);
    if (w->reserve_fd != -1)
        close(w->reserve_fd);
    w->reserve_fd = -1;
}
