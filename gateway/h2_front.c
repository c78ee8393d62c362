/* Portcullis - MIT licence. See LICENSE.
 *
 * h2_front.c: HTTP/2 (RFC 9113) on a TLS connection that chose "h2" by
 * ALPN. nghttp2 does the framing, HPACK, flow control and the protocol's
 * rules; here each stream becomes a gw_request, and its answer, written
 * through request.h's response writer, becomes a HEADERS frame and DATA.
 *
 *   streams   a stream's head (pseudo-headers and fields, cookies joined
 *             with "; ", :authority as Host) becomes a pc_http_head and
 *             goes through front.c's checks (405, 400 BAD_HOST, 413, 431)
 *             and then the same stages as HTTP/1.1. A request starts after
 *             nghttp2_session_mem_recv returns, never inside its callbacks
 *   bodies    a body all read with its head is handed over whole; any
 *             other is streamed: DATA is kept per stream and the peer's
 *             window is opened again only as the upstream side takes it
 *             (no automatic WINDOW_UPDATE), so a stream holds at most its
 *             64 KiB window and the connection at most CONN_WINDOW. A
 *             body the peer owes (all it sent taken) for
 *             GATEWAY_CLIENT_IDLE_SECONDS resets its stream (CANCEL;
 *             gw_h2_reset_stalled, from front.c's tick): PINGs or other
 *             streams keep a connection busy, not a stalled stream
 *   answers   the head's lines become the HEADERS (names in lower case,
 *             connection-specific ones dropped); the body is queued per
 *             stream and read by nghttp2 as the peer's windows allow. A
 *             stream with more than STREAM_BACKLOG queued holds its
 *             upstream back, as HTTP/1.1's output buffer does
 *   limits    GATEWAY_HTTP2_MAX_STREAMS streams at once (SETTINGS), and
 *             as many with a request still running: a stream the peer
 *             reset still counts until its request ends, so resetting
 *             streams cannot start more work (CVE-2023-44487, rapid reset;
 *             nghttp2's reset rate limit ends such a session too); a head
 *             past HEADER_FATAL bytes ends the session (HPACK bomb, and
 *             nghttp2 bounds CONTINUATION frames per head, CVE-2024-28182);
 *             SETTINGS frames bounded in entries and in unanswered ACKs;
 *             front.c stops reading while the output is backed up, so a
 *             peer that does not read cannot make the queue grow. Streams
 *             refused for a limit, and sessions ended for a protocol error,
 *             count in h2_refused
 *   close     a stream reset by the peer, or a connection that closes,
 *             tells a running request its client left (gw_proxy_client_gone
 *             for one at the upstream); an answer the request leaves
 *             unfinished resets its stream (INTERNAL_ERROR)
 *
 * One file: every part above is a callback or a hook of the same nghttp2
 * session and stream struct; split, each piece would need the other's
 * internals.
 *
 * No server push, no extended CONNECT: WebSocket tunnels need HTTP/1.1
 * (browsers open an HTTP/1.1 connection for them when the server does not
 * offer RFC 8441).
 */
#include "h2_front.h"
#include "intake.h"
#include "metrics.h"
#include "proxy.h"
#include "../lib/http.h"
#include "../lib/log.h"

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define STREAM_WINDOW 65535         /* a stream's receive window (the default) */
#define CONN_WINDOW (1 << 20)       /* the connection's receive window */
#define STREAM_BACKLOG (256 * 1024) /* queued answer bytes that hold the upstream back */
#define HEADER_FATAL(max) ((size_t)(max) * 2 + 8192) /* decoded head bytes: session over */
#define REFUSED_MAX 256             /* streams refused on one session: it ends */

struct gw_h2_stream {
    struct gw_h2 *h;
    struct gw_h2_stream *prev, *next;
    int32_t id;
    struct gw_request *r;           /* the request running, or NULL */
    bool head_done;                 /* its request head is whole */
    bool started;                   /* a request was made of it */
    bool end_stream;                /* the peer's side has ended (body whole) */
    bool closed;                    /* nghttp2 closed it */
    bool gone;                      /* closed before its answer was: the client left */
    bool news;                      /* body bytes or its end came since the last look */
    bool resp_done;                 /* the answer's last frame was sent (or reset) */
    bool resp_nobody;               /* the answer has no body (HEAD, 204, 304, empty) */
    bool resp_eof;                  /* every byte of the answer's body is queued */
    bool deferred;                  /* nghttp2 waits for body bytes (resume_data) */
    bool too_many;                  /* more than PC_HTTP_MAX_HEADERS fields */
    enum gw_body body_err;          /* GW_BODY_TOO_LARGE, else 0 */
    size_t hbytes;                  /* decoded head bytes */
    struct pc_buf hb;               /* the head's strings: name\0value\0 ... */
    struct pc_http_head head;
    struct pc_buf cookies;          /* the cookie fields, joined */
    struct pc_buf body;             /* request body bytes not taken yet, from body_off */
    size_t body_off;
    uint64_t body_total;
    int64_t body_wait_us;           /* the body is wanted from the peer since (0: not) */
    struct pc_buf rhead;            /* the answer's header lines, HTTP/1.1-style */
    int64_t resp_left;              /* body bytes the answer's Content-Length still owes */
    struct pc_buf out;              /* the answer's body, queued from out_off */
    size_t out_off;
};

struct gw_h2 {
    struct gw_client *c;
    struct gw_worker *w;
    nghttp2_session *s;
    struct gw_h2_stream *streams;   /* every stream we keep */
    size_t nstreams;                /* kept: open, or closed with a request running */
    size_t nrunning;
    size_t refused;
    bool dead;                      /* the connection closed */
    bool goaway;
    char ip[64];
};

/* ---- streams ---- */

static struct gw_h2_stream *stream_find(struct gw_h2 *h, int32_t id)
{
    for (struct gw_h2_stream *s = h->streams; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static void stream_free(struct gw_h2_stream *s)
{
    struct gw_h2 *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->nstreams--;
    if (!h->dead && !s->closed)
        nghttp2_session_set_stream_user_data(h->s, s->id, NULL);
    pc_buf_free(&s->hb);
    pc_buf_free(&s->cookies);
    pc_buf_free(&s->body);
    pc_buf_free(&s->rhead);
    pc_buf_free(&s->out);
    free(s);
}

/* A stream nobody needs any more: closed (or its session gone) and no
 * request on it. */
static void stream_maybe_free(struct gw_h2_stream *s)
{
    if (s->r == NULL && (s->closed || s->h->dead))
        stream_free(s);
}

static void refuse_stream(struct gw_h2 *h, int32_t id)
{
    GW_STAT_INC(h2_refused); /* and once more if the session ends for it */
    nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    if (++h->refused > REFUSED_MAX && !h->goaway) {
        h->goaway = true;
        nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(h->s),
                              NGHTTP2_ENHANCE_YOUR_CALM, NULL, 0);
    }
}

/* ---- nghttp2's callbacks (inside mem_recv / mem_send: nothing here
 * starts, resumes or ends a request) ---- */

static int on_begin_headers(nghttp2_session *ss, const nghttp2_frame *f, void *ud)
{
    struct gw_h2 *h = ud;
    (void)ss;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (h->goaway || h->nstreams >= (size_t)gw_cfg.h2_max_streams) {
        refuse_stream(h, f->hd.stream_id);
        return 0;
    }
    struct gw_h2_stream *s = pc_xcalloc(1, sizeof *s);
    s->h = h;
    s->id = f->hd.stream_id;
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->nstreams++;
    nghttp2_session_set_stream_user_data(h->s, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *ss, const nghttp2_frame *f, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)ud;
    (void)flags;
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ss, f->hd.stream_id);
    if (s == NULL || s->head_done)
        return 0; /* refused, or trailers: not forwarded */
    s->hbytes += nlen + vlen + 4;
    if (s->hbytes > HEADER_FATAL(gw_cfg.max_headers)) {
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* the session ends: GOAWAY */
    }
    if (nlen == 6 && memcmp(name, "cookie", 6) == 0) {
        if (s->cookies.len > 0)
            pc_buf_append(&s->cookies, "; ", 2);
        pc_buf_append(&s->cookies, value, vlen);
        return 0;
    }
    pc_buf_append(&s->hb, name, nlen);
    pc_buf_putc(&s->hb, '\0');
    pc_buf_append(&s->hb, value, vlen);
    pc_buf_putc(&s->hb, '\0');
    return 0;
}

static int on_frame_recv(nghttp2_session *ss, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ss, f->hd.stream_id);
    if (s == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS)
        s->head_done = true;
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
        s->end_stream = true;
    if (s->end_stream)
        s->body_wait_us = 0;
    else if (f->hd.type == NGHTTP2_HEADERS)
        s->body_wait_us = pc_mono_us(); /* the body is the peer's to send */
    s->news = true;
    return 0;
}

static int on_data_chunk(nghttp2_session *ss, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ss, id);
    if (s == NULL || s->body_err || s->gone || (s->started && s->r == NULL)) {
        nghttp2_session_consume(ss, id, len); /* dropped: keep the connection's window open */
        return 0;
    }
    s->body_total += len;
    s->news = true;
    s->body_wait_us = 0; /* bytes to take: the wait is ours until they are */
    if (s->body_total > (uint64_t)gw_cfg.max_body) {
        s->body_err = GW_BODY_TOO_LARGE;
        nghttp2_session_consume(ss, id, len);
        return 0;
    }
    pc_buf_append(&s->body, data, len);
    return 0;
}

static int on_frame_send(nghttp2_session *ss, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
        GW_STAT_INC(h2_refused); /* a protocol error, a flood, a limit: the session ends */
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ss, f->hd.stream_id);
        if (s)
            s->resp_done = true;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ss, int32_t id, uint32_t err, void *ud)
{
    (void)err;
    (void)ud;
    struct gw_h2_stream *s = nghttp2_session_get_stream_user_data(ss, id);
    if (s == NULL)
        return 0;
    s->closed = true;
    if (s->r && !s->resp_done) {
        s->gone = true; /* told to the request after mem_recv/mem_send (news) */
        s->news = true;
    }
    if (s->r == NULL)
        stream_free(s); /* a stream reset before its request started is skipped */
    return 0;
}

/* The answer's body for nghttp2, as the peer's windows allow. */
static ssize_t on_data_read(nghttp2_session *ss, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ss;
    (void)id;
    (void)ud;
    struct gw_h2_stream *s = src->ptr;
    size_t have = s->out.len - s->out_off;
    size_t n = have < len ? have : len;
    if (n > 0)
        memcpy(buf, s->out.data + s->out_off, n);
    s->out_off += n;
    if (s->out_off == s->out.len) {
        s->out.len = s->out_off = 0;
    } else if (s->out_off > 65536) {
        memmove(s->out.data, s->out.data + s->out_off, s->out.len - s->out_off);
        s->out.len -= s->out_off;
        s->out_off = 0;
    }
    if (s->out.len == 0 && s->resp_eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- the session ---- */

static nghttp2_session_callbacks *cbs;
static nghttp2_option *opt;
static pthread_once_t cbs_once = PTHREAD_ONCE_INIT;

/* The callbacks and options every session shares (gw_cfg is read by now). */
static void cbs_init(void)
{
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        pc_fatal("nghttp2: out of memory");
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_settings(opt, 16);
    nghttp2_option_set_max_outbound_ack(opt, 256);
    nghttp2_option_set_stream_reset_rate_limit(opt, 2 * (uint64_t)gw_cfg.h2_max_streams, 33);
}

struct gw_h2 *gw_h2_new(struct gw_client *c, struct gw_worker *w, const char *ip)
{
    pthread_once(&cbs_once, cbs_init);
    struct gw_h2 *h = pc_xcalloc(1, sizeof *h);
    h->c = c;
    h->w = w;
    snprintf(h->ip, sizeof h->ip, "%s", ip);
    if (nghttp2_session_server_new2(&h->s, cbs, h, opt) != 0)
        pc_fatal("nghttp2: out of memory");
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)gw_cfg.h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)gw_cfg.max_headers},
    };
    nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, PC_ARRAY_LEN(iv));
    nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    GW_STAT_INC(h2_conns);
    return h;
}

/* ---- streams into requests (after mem_recv) ---- */

/* Makes s's pc_http_head from what on_header kept: false when more fields
 * came than a head holds. */
static bool head_build(struct gw_h2_stream *s)
{
    struct pc_http_head *hd = &s->head;
    const char *authority = NULL, *host = NULL;
    memset(hd, 0, offsetof(struct pc_http_head, h));
    hd->nh = 0;
    const char *p = s->hb.data, *end = s->hb.data + s->hb.len;
    /* first pass: pseudo-headers and Host */
    for (const char *q = p; q && q < end;) {
        const char *name = q, *value = name + strlen(name) + 1;
        q = value + strlen(value) + 1;
        if (strcmp(name, ":method") == 0)
            hd->method = value;
        else if (strcmp(name, ":path") == 0)
            hd->target = (char *)value;
        else if (strcmp(name, ":authority") == 0)
            authority = value;
        else if (strcmp(name, "host") == 0 && host == NULL)
            host = value;
    }
    if (authority == NULL)
        authority = host;
    size_t need = (authority ? 1 : 0) + (s->cookies.len > 0 ? 1 : 0);
    if (authority) {
        hd->h[hd->nh++] = (struct pc_http_header){"host", authority, 4, strlen(authority)};
    }
    for (const char *q = p; q && q < end;) {
        const char *name = q, *value = name + strlen(name) + 1;
        q = value + strlen(value) + 1;
        if (name[0] == ':' || strcmp(name, "host") == 0)
            continue;
        if (hd->nh + need >= PC_HTTP_MAX_HEADERS)
            return false;
        hd->h[hd->nh++] = (struct pc_http_header){name, value, strlen(name), strlen(value)};
        if (strcmp(name, "content-length") == 0)
            hd->content_length = strtoull(value, NULL, 10); /* nghttp2 checked its form */
    }
    if (s->cookies.len > 0) {
        pc_buf_putc(&s->cookies, '\0');
        s->cookies.len--;
        hd->h[hd->nh++] = (struct pc_http_header){"cookie", s->cookies.data, 6, s->cookies.len};
    }
    hd->minor = 1;
    hd->keep_alive = true;
    hd->head_len = s->hbytes;
    bool has_len = pc_http_get(hd, "content-length") != NULL;
    if (s->end_stream && s->body_total == 0)
        hd->framing = PC_HTTP_BODY_NONE;
    else
        hd->framing = has_len ? PC_HTTP_BODY_LENGTH : PC_HTTP_BODY_CHUNKED;
    return true;
}

static void stream_refuse(struct gw_h2_stream *s, int status, const char *code, const char *msg)
{
    struct gw_h2 *h = s->h;
    struct gw_request *r = gw_request_new(h->w, h->c, &s->head, h->ip);
    r->h2s = s;
    r->tls = true;
    s->r = r;
    h->nrunning++;
    gw_request_id(r);
    r->method = s->head.method ? s->head.method : "";
    r->path = pc_xstrdup("/");
    gw_fail(r, status, code, msg);
}

/* s's head is whole: its request runs (or is refused). */
static void stream_start(struct gw_h2_stream *s)
{
    struct gw_h2 *h = s->h;
    s->started = true;
    GW_STAT_INC(h2_streams);
    static const char *const empty = "";
    if (!head_build(s)) {
        s->head.method = s->head.method ? s->head.method : empty;
        s->head.nh = 0;
        stream_refuse(s, 431, "HEADERS_TOO_LARGE", "Too many request headers");
        return;
    }
    if (s->head.method == NULL || s->head.target == NULL) {
        s->head.method = s->head.method ? s->head.method : empty;
        stream_refuse(s, 405, "METHOD_NOT_ALLOWED", "Method not allowed");
        return;
    }
    const char *code = NULL, *msg = NULL;
    int st = gw_front_head_refusal(&s->head, &code, &msg);
    if (st == 0 && s->body_err) {
        st = 413;
        code = "PAYLOAD_TOO_LARGE";
        msg = "Request body is too large";
    }
    if (st != 0) {
        stream_refuse(s, st, code, msg);
        return;
    }
    struct gw_request *r = gw_request_new(h->w, h->c, &s->head, h->ip);
    r->h2s = s;
    r->tls = true;
    s->r = r;
    h->nrunning++;
    r->method = s->head.method;
    r->head_method = strcmp(s->head.method, "HEAD") == 0;
    r->bytes_in = s->hbytes + s->body_total;
    if (s->end_stream) {
        /* the whole body came with its head */
        r->body = s->body.len ? s->body.data : NULL;
        r->body_len = s->body.len;
        if (s->body.len)
            nghttp2_session_consume(h->s, s->id, s->body.len);
    } else {
        r->body_stream = true;
        r->body_size = s->head.framing == PC_HTTP_BODY_LENGTH ? (int64_t)s->head.content_length : -1;
    }
    s->news = false;
    gw_intake(r);
}

/* After mem_recv or mem_send: what the callbacks marked. By stream id, as
 * each step may end requests and free their streams. */
static void after_session(struct gw_h2 *h)
{
    int32_t ids[2048];
    size_t n = 0;
    for (struct gw_h2_stream *s = h->streams; s && n < PC_ARRAY_LEN(ids); s = s->next)
        if ((s->head_done && !s->started) || s->news)
            ids[n++] = s->id;
    for (size_t i = n; i-- > 0;) { /* the oldest first */
        struct gw_h2_stream *s = stream_find(h, ids[i]);
        if (s == NULL || h->dead)
            continue;
        if (!s->started) {
            stream_start(s);
            continue;
        }
        s->news = false;
        struct gw_request *r = s->r;
        if (r == NULL) {
            stream_maybe_free(s);
            continue;
        }
        if (s->gone) {
            if (r->proxy)
                gw_proxy_client_gone(r);
        } else if (r->proxy && r->body_stream) {
            gw_proxy_body_ready(r); /* may end r */
        }
    }
}

bool gw_h2_recv(struct gw_h2 *h, const uint8_t *data, size_t n)
{
    ssize_t rv = nghttp2_session_mem_recv(h->s, data, n);
    if (rv < 0) {
        pc_log_debug("http2: %s: %s", h->ip, nghttp2_strerror((int)rv));
        if (rv != NGHTTP2_ERR_CALLBACK_FAILURE)
            nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
        else
            nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
        return false;
    }
    after_session(h);
    return true;
}

bool gw_h2_pump(struct gw_h2 *h, struct pc_buf *out, size_t pending, size_t limit)
{
    while (pending < limit) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(h->s, &p);
        if (n < 0) {
            pc_log_debug("http2: %s: %s", h->ip, nghttp2_strerror((int)n));
            return false;
        }
        if (n == 0)
            break;
        pc_buf_append(out, p, (size_t)n);
        pending += (size_t)n;
    }
    after_session(h);
    return nghttp2_session_want_read(h->s) || nghttp2_session_want_write(h->s);
}

void gw_h2_drained(struct gw_h2 *h)
{
    int32_t ids[2048];
    size_t n = 0;
    for (struct gw_h2_stream *s = h->streams; s && n < PC_ARRAY_LEN(ids); s = s->next)
        if (s->r && s->r->proxy && !s->gone && s->out.len - s->out_off < STREAM_BACKLOG)
            ids[n++] = s->id;
    for (size_t i = 0; i < n && !h->dead; i++) {
        struct gw_h2_stream *s = stream_find(h, ids[i]);
        if (s && s->r && s->r->proxy)
            gw_proxy_resume(s->r);
    }
}

bool gw_h2_reset_stalled(struct gw_h2 *h, int64_t since_us)
{
    bool any = false;
    for (struct gw_h2_stream *s = h->streams; s && !h->dead; s = s->next) {
        if (s->r == NULL || s->closed || s->gone || s->end_stream || s->body_wait_us == 0 ||
            s->body_wait_us > since_us)
            continue;
        s->body_wait_us = 0;
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        any = true; /* once sent, on_stream_close tells the request: it is cancelled */
    }
    return any;
}

size_t gw_h2_running(const struct gw_h2 *h)
{
    return h->nrunning;
}

void gw_h2_goaway(struct gw_h2 *h)
{
    if (h->goaway || h->dead)
        return;
    h->goaway = true;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

void gw_h2_conn_closed(struct gw_h2 *h)
{
    if (h->dead)
        return;
    h->dead = true;
    for (struct gw_h2_stream *s = h->streams; s; s = s->next)
        if (s->r && !s->resp_done) {
            s->gone = true;
            if (s->r->proxy)
                gw_proxy_client_gone(s->r); /* cancelled from the loop, later */
        }
}

void gw_h2_free(struct gw_h2 *h)
{
    if (h == NULL)
        return;
    h->dead = true;
    while (h->streams)
        stream_free(h->streams);
    nghttp2_session_del(h->s);
    free(h);
}

/* ---- the answer ---- */

struct pc_buf *gw_h2_resp_begin(struct gw_request *r, int status)
{
    struct gw_h2_stream *s = r->h2s;
    r->status = status;
    if (r->resp_started)
        pc_fatal("gw_resp_begin: answer already started");
    r->resp_started = true;
    s->rhead.len = 0;
    r->out_mark = 0;
    return &s->rhead;
}

/* Header fields HTTP/2 forbids (RFC 9113 8.2.2). */
static bool connection_specific(const char *n, size_t len)
{
    static const char *const bad[] = {"connection", "keep-alive", "proxy-connection",
                                      "transfer-encoding", "upgrade", "te", "http2-settings"};
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++)
        if (strlen(bad[i]) == len && strncasecmp(n, bad[i], len) == 0)
            return true;
    return false;
}

void gw_h2_resp_end_head(struct gw_request *r, int64_t body_len, bool own)
{
    struct gw_h2_stream *s = r->h2s;
    struct gw_h2 *h = s->h;
    gw_front_head_extras(r, &s->rhead, body_len, own);
    r->bytes_out += s->rhead.len;
    s->resp_nobody = r->head_method || body_len == GW_LEN_OMIT || body_len == 0;
    s->resp_left = body_len >= 0 ? body_len : -1;
    if (s->gone || h->dead)
        return;
    size_t lines = 1;
    for (size_t i = 0; i < s->rhead.len; i++)
        lines += s->rhead.data[i] == '\n';
    nghttp2_nv stack_nv[64]; /* most answers; a longer head takes the heap */
    nghttp2_nv *nv = lines + 1 <= PC_ARRAY_LEN(stack_nv) ? stack_nv
                                                         : pc_xcalloc(lines + 1, sizeof *nv);
    char status[4];
    int st = r->status >= 100 && r->status <= 999 ? r->status : 502;
    status[0] = (char)('0' + st / 100);
    status[1] = (char)('0' + st / 10 % 10);
    status[2] = (char)('0' + st % 10);
    status[3] = '\0';
    size_t k = 0;
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    char *p = s->rhead.data, *end = s->rhead.data + s->rhead.len;
    while (p < end && k <= lines) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *stop = eol ? eol : end;
        char *colon = memchr(p, ':', (size_t)(stop - p));
        if (colon && colon > p) {
            size_t nlen = (size_t)(colon - p);
            char *v = colon + 1;
            while (v < stop && (*v == ' ' || *v == '\t'))
                v++;
            char *ve = stop;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            for (size_t i = 0; i < nlen; i++)
                if (p[i] >= 'A' && p[i] <= 'Z')
                    p[i] = (char)(p[i] + 32);
            if (!connection_specific(p, nlen))
                nv[k++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, nlen, (size_t)(ve - v),
                                       NGHTTP2_NV_FLAG_NONE};
        }
        p = stop + 1;
    }
    nghttp2_data_provider dp = {.source = {.ptr = s}, .read_callback = on_data_read};
    int rv = nghttp2_submit_response(h->s, s->id, nv, k, s->resp_nobody ? NULL : &dp);
    if (nv != stack_nv)
        free(nv);
    if (rv != 0) {
        pc_log_debug("http2: stream %d: %s", s->id, nghttp2_strerror(rv));
        s->resp_done = true;
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    }
}

static void resume(struct gw_h2_stream *s)
{
    if (s->deferred && !s->h->dead) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h->s, s->id);
    }
}

void gw_h2_resp_body(struct gw_request *r, const void *data, size_t n)
{
    struct gw_h2_stream *s = r->h2s;
    if (n == 0 || s->resp_nobody || s->gone || s->h->dead || s->resp_eof)
        return;
    if (s->resp_left >= 0 && (int64_t)n > s->resp_left)
        n = (size_t)s->resp_left; /* never past its Content-Length */
    pc_buf_append(&s->out, data, n);
    r->bytes_out += n;
    if (s->resp_left >= 0 && (s->resp_left -= (int64_t)n) == 0)
        s->resp_eof = true;
    resume(s);
}

void gw_h2_resp_end(struct gw_request *r)
{
    struct gw_h2_stream *s = r->h2s;
    if (s->resp_left < 0)
        s->resp_eof = true;
    resume(s);
}

void gw_h2_resp_abort(struct gw_request *r)
{
    struct gw_h2_stream *s = r->h2s;
    if (s->resp_done || s->h->dead)
        return;
    s->resp_done = true;
    nghttp2_submit_rst_stream(s->h->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    gw_front_h2_kick(s->h->c);
}

bool gw_h2_backlog_full(const struct gw_request *r)
{
    const struct gw_h2_stream *s = r->h2s;
    return !s->gone && !s->h->dead && s->out.len - s->out_off > STREAM_BACKLOG;
}

/* ---- the streamed request body ---- */

enum gw_body gw_h2_body_peek(struct gw_request *r, const char **data, size_t *n)
{
    struct gw_h2_stream *s = r->h2s;
    *data = NULL;
    *n = 0;
    if (s->gone || s->h->dead)
        return GW_BODY_GONE;
    if (s->body_err)
        return s->body_err;
    if (s->body.len > s->body_off) {
        *data = s->body.data + s->body_off;
        *n = s->body.len - s->body_off;
        return GW_BODY_DATA;
    }
    if (s->end_stream)
        return GW_BODY_END;
    if (s->closed)
        return GW_BODY_GONE;
    return GW_BODY_WAIT;
}

void gw_h2_body_consume(struct gw_request *r, size_t n)
{
    struct gw_h2_stream *s = r->h2s;
    if (n == 0 || s->body.len - s->body_off < n)
        return;
    s->body_off += n;
    if (s->body_off == s->body.len) {
        s->body.len = s->body_off = 0;
        if (!s->end_stream)
            s->body_wait_us = pc_mono_us(); /* all taken: the peer's turn */
    }
    if (!s->h->dead && !s->closed) {
        nghttp2_session_consume(s->h->s, s->id, n); /* the peer may send as much again */
        gw_front_h2_kick(s->h->c);
    }
}

void gw_h2_request_done(struct gw_request *r)
{
    struct gw_h2_stream *s = r->h2s;
    struct gw_h2 *h = s->h;
    s->r = NULL;
    h->nrunning--;
    if (!h->dead && !s->closed && !s->resp_done) {
        bool whole = r->resp_started && (s->resp_nobody || s->resp_eof);
        if (!whole) {
            /* ended without a whole answer: the client must not take it for one */
            s->resp_done = true;
            nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        }
    }
    stream_maybe_free(s);
}
