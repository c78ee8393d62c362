/* Portcullis - MIT licence. See LICENSE.
 *
 * proxy.c: stage 8. Forwards an allowed request upstream and the answer
 * back.
 *
 *   request   method, path (key segment removed, upstream base path added),
 *             query, body and end-to-end headers; hop-by-hop headers, the
 *             credential and any client-sent identity headers are dropped;
 *             X-User-Id, X-User-Email, X-Auth-Method, X-Session-Id or
 *             X-Api-Key-Id, X-Request-Id, X-Forwarded-For/-Proto are set
 *   answer    small answers with a Content-Length are relayed whole;
 *             anything else (chunked, server-sent events, large) streams
 *             through chunk by chunk as it arrives
 *   pool      per worker and upstream, up to UPSTREAM_POOL keep-alive
 *             evhttp connections; past that 503
 *   failures  connection refused or broken: 502; UPSTREAM_TIMEOUT: 504
 */
#include "gateway.h"
#include "../lib/cookie.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define RELAY_WHOLE_MAX (256 * 1024) /* larger answers stream */

struct upconn {
    struct upconn *next;            /* idle list */
    struct evhttp_connection *evcon;
};

struct gw_uppool {
    const struct gw_upstream *up;
    struct upconn *idle;
    size_t total;                   /* connections open, idle or busy */
    struct gw_proxy *active;        /* exchanges in progress (for shutdown) */
};

struct gw_proxy {
    struct gw_proxy *prev, *next;   /* pool->active */
    struct gw_request *r;
    struct gw_uppool *pool;
    struct upconn *uc;
    bool streaming;                 /* reply started, chunks follow */
    struct evbuffer *body;          /* relayed-whole answer */
    enum evhttp_request_error err;
    bool failed;
    bool head;                      /* HEAD: the connection is not reused */
    struct evhttp_request *up;      /* the upstream request */
    struct evhttp_connection *client;   /* while streaming: whose close we watch */
    struct event *cancel_ev;        /* while streaming: the client left */
};

void gw_proxy_init(struct gw_worker *w)
{
    w->pools = pc_xcalloc(gw_cfg.nupstreams, sizeof *w->pools);
    for (size_t i = 0; i < gw_cfg.nupstreams; i++)
        w->pools[i].up = &gw_cfg.upstreams[i];
}

static void proxy_free(struct gw_proxy *px);

void gw_proxy_stop(struct gw_worker *w)
{
    for (size_t i = 0; i < gw_cfg.nupstreams; i++) {
        struct gw_uppool *p = &w->pools[i];
        /* Exchanges still running: freeing the connection drops the
         * upstream request without a callback, so end them here. */
        while (p->active) {
            struct gw_proxy *px = p->active;
            struct gw_request *r = px->r;
            evhttp_connection_free(px->uc->evcon);
            free(px->uc);
            px->uc = NULL;
            p->total--;
            proxy_free(px);
            gw_request_finish(r);
        }
        while (p->idle) {
            struct upconn *c = p->idle;
            p->idle = c->next;
            evhttp_connection_free(c->evcon);
            free(c);
        }
    }
    free(w->pools);
    w->pools = NULL;
}

static struct upconn *conn_get(struct gw_worker *w, struct gw_uppool *p)
{
    struct upconn *c = p->idle;
    if (c) {
        p->idle = c->next;
        c->next = NULL;
        return c;
    }
    if ((int64_t)p->total >= gw_cfg.upstream_pool)
        return NULL;
    c = pc_xcalloc(1, sizeof *c);
    c->evcon = evhttp_connection_base_new(w->base, NULL, p->up->host, (ev_uint16_t)p->up->port);
    if (c->evcon == NULL)
        pc_fatal("evhttp_connection_base_new failed");
    struct timeval tv = {gw_cfg.read_timeout, 0};
    evhttp_connection_set_timeout_tv(c->evcon, &tv);
    evhttp_connection_set_retries(c->evcon, 0);
    p->total++;
    return c;
}

static void conn_put(struct gw_uppool *p, struct upconn *c, bool reusable)
{
    if (!reusable) {
        evhttp_connection_free(c->evcon);
        free(c);
        p->total--;
        return;
    }
    c->next = p->idle;
    p->idle = c;
}

/* ---- headers ---- */

static bool hop_by_hop(const char *h)
{
    static const char *const names[] = {"Connection", "Keep-Alive", "Proxy-Authenticate",
                                        "Proxy-Authorization", "TE", "Trailer",
                                        "Transfer-Encoding", "Upgrade", "Proxy-Connection"};
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++)
        if (pc_strieq(h, names[i]))
            return true;
    return false;
}

/* Headers only the gateway may set. */
static bool identity_header(const char *h)
{
    static const char *const names[] = {"X-User-Id", "X-User-Email", "X-Auth-Method",
                                        "X-Session-Id", "X-Api-Key-Id", "X-Request-Id",
                                        "X-Auth-JWT", "X-Auth-Issuer",
                                        "X-Forwarded-Proto", "Host", "Content-Length"};
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++)
        if (pc_strieq(h, names[i]))
            return true;
    return false;
}

/* Is h named in the request's Connection header (so hop-by-hop too)? */
static bool named_in_connection(const char *conn, const char *h)
{
    if (conn == NULL)
        return false;
    size_t n = strlen(h);
    for (const char *p = conn; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t l = strcspn(p, ", ");
        if (l == n && pc_strnieq(p, h, n))
            return true;
        p += l;
    }
    return false;
}

/* The Cookie header minus Better Auth's own cookies, or NULL if none left. */
static char *filter_cookies(const char *cookie)
{
    struct pc_buf b = {0};
    const char *p = cookie;
    while (*p) {
        while (*p == ' ' || *p == ';')
            p++;
        size_t l = strcspn(p, ";");
        if (l == 0)
            break;
        const char *name = p;
        size_t nl = strcspn(name, "=");
        if (nl > l)
            nl = l;
        bool ours = (nl >= 11 && (memmem(name, nl, "better-auth.", 12) != NULL));
        if (!ours) {
            if (b.len)
                pc_buf_puts(&b, "; ");
            pc_buf_append(&b, p, l);
        }
        p += l;
    }
    return b.data; /* NULL when empty */
}

void gw_set_identity_headers(struct gw_request *r, struct evkeyvalq *oh)
{
    if (r->route->anonymous)
        return;
    const struct gw_principal *p = &r->p;
    evhttp_add_header(oh, "X-User-Id", p->user_id);
    if (p->email[0])
        evhttp_add_header(oh, "X-User-Email", p->email);
    if (r->kind == GW_CRED_SESSION) {
        evhttp_add_header(oh, "X-Auth-Method", "session");
        evhttp_add_header(oh, "X-Session-Id", p->cred_id);
    } else if (r->kind == GW_CRED_JWT) {
        evhttp_add_header(oh, "X-Auth-Method", "jwt");
        if (p->issuer < gw_cfg.nissuers)  /* whose sub X-User-Id is */
            evhttp_add_header(oh, "X-Auth-Issuer", gw_cfg.issuers[p->issuer].issuer);
        if (p->cred_id[0])
            evhttp_add_header(oh, "X-Session-Id", p->cred_id);
    } else {
        evhttp_add_header(oh, "X-Auth-Method", "api_key");
        evhttp_add_header(oh, "X-Api-Key-Id", p->cred_id);
    }
    if (r->upstream_jwt && r->route->upstream_jwt == GW_UPJWT_HEADER) {
        evhttp_add_header(oh, "X-Auth-JWT", r->upstream_jwt);
    } else if (r->upstream_jwt) {
        struct pc_buf b = {0};
        pc_buf_printf(&b, "Bearer %s", r->upstream_jwt);
        evhttp_add_header(oh, "Authorization", pc_buf_cstr(&b));
        pc_buf_free(&b);
    }
}

static void copy_request_headers(struct gw_request *r, struct evkeyvalq *ih, struct evkeyvalq *oh)
{
    const char *conn = evhttp_find_header(ih, "Connection");
    const char *xff = NULL;
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next) {
        const char *k = kv->key;
        if (hop_by_hop(k) || identity_header(k) || named_in_connection(conn, k))
            continue;
        if (pc_strieq(k, "X-Forwarded-For")) {
            xff = kv->value;
            continue;
        }
        if (pc_strieq(k, "Authorization") &&
            (r->src == GW_SRC_BEARER || r->route->upstream_jwt == GW_UPJWT_AUTHORIZATION))
            continue;
        if (pc_strieq(k, "x-api-key") && r->src == GW_SRC_API_HEADER)
            continue;
        if (pc_strieq(k, "Cookie")) {
            char *rest = r->route->forward_cookies ? filter_cookies(kv->value) : NULL;
            if (rest)
                evhttp_add_header(oh, "Cookie", rest);
            free(rest);
            continue;
        }
        evhttp_add_header(oh, k, kv->value);
    }
    struct pc_buf f = {0};
    if (xff)
        pc_buf_printf(&f, "%s, %s", xff, r->client_ip);
    else
        pc_buf_puts(&f, r->client_ip);
    evhttp_add_header(oh, "X-Forwarded-For", f.data);
    pc_buf_free(&f);
    evhttp_add_header(oh, "X-Forwarded-Proto", "http");
    evhttp_add_header(oh, "X-Request-Id", r->request_id);
    evhttp_add_header(oh, "Host", r->route->upstream->host_header);
    gw_set_identity_headers(r, oh);
}

static void copy_response_headers(struct evhttp_request *up, struct gw_request *r, bool whole)
{
    struct evkeyvalq *ih = evhttp_request_get_input_headers(up);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next) {
        if (hop_by_hop(kv->key))
            continue;
        if (whole && pc_strieq(kv->key, "Content-Length"))
            continue;
        evhttp_add_header(oh, kv->key, kv->value);
    }
    if (evhttp_find_header(oh, "X-Request-Id") == NULL)
        evhttp_add_header(oh, "X-Request-Id", r->request_id);
}

/* ---- the exchange ---- */

static void proxy_free(struct gw_proxy *px)
{
    if (px->prev)
        px->prev->next = px->next;
    else
        px->pool->active = px->next;
    if (px->next)
        px->next->prev = px->prev;
    if (px->body)
        evbuffer_free(px->body);
    if (px->client)
        evhttp_connection_set_closecb(px->client, NULL, NULL);
    if (px->cancel_ev)
        event_free(px->cancel_ev);
    free(px);
}

/* ---- a client that leaves a stream ----
 *
 * libevent notices a client gone only when a write to it fails, and then
 * frees its connection (the request, still being answered, is detached and
 * left to us). The close callback only schedules cancel_stream: everything
 * is torn down from the loop, not from inside libevent's teardown. */

static void cancel_stream(evutil_socket_t fd, short what, void *arg)
{
    struct gw_proxy *px = arg;
    struct gw_request *r = px->r;
    GW_STAT_INC(upstream_cancels);
    evhttp_cancel_request(px->up);      /* no callback; the connection is reset */
    conn_put(px->pool, px->uc, false);
    evhttp_send_reply_end(r->req);      /* frees the detached client request */
    proxy_free(px);
    gw_request_finish(r);
}

static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    struct gw_proxy *px = arg;
    px->client = NULL;
    event_active(px->cancel_ev, EV_TIMEOUT, 0);
}

static int on_up_headers(struct evhttp_request *up, void *arg)
{
    struct gw_proxy *px = arg;
    struct gw_request *r = px->r;
    const char *cl = evhttp_find_header(evhttp_request_get_input_headers(up), "Content-Length");
    long long n = cl ? strtoll(cl, NULL, 10) : -1;
    if (cl && n >= 0 && n <= RELAY_WHOLE_MAX)
        return 0; /* relay whole in on_up_done */
    copy_response_headers(up, r, false);
    px->streaming = true;
    r->status = evhttp_request_get_response_code(up);
    evhttp_send_reply_start(r->req, r->status, evhttp_request_get_response_code_line(up));
    px->client = evhttp_request_get_connection(r->req);
    if (px->client) {
        px->cancel_ev = event_new(r->w->base, -1, 0, cancel_stream, px);
        if (px->cancel_ev == NULL)
            pc_fatal("event_new failed");
        evhttp_connection_set_closecb(px->client, on_client_close, px);
    }
    return 0;
}

static void on_up_chunk(struct evhttp_request *up, void *arg)
{
    struct gw_proxy *px = arg;
    struct evbuffer *in = evhttp_request_get_input_buffer(up);
    if (px->streaming) {
        evhttp_send_reply_chunk(px->r->req, in);
    } else {
        if (px->body == NULL)
            px->body = evbuffer_new();
        evbuffer_add_buffer(px->body, in);
    }
}

static void on_up_error(enum evhttp_request_error err, void *arg)
{
    struct gw_proxy *px = arg;
    px->failed = true;
    px->err = err;
}

static void on_up_done(struct evhttp_request *up, void *arg)
{
    struct gw_proxy *px = arg;
    struct gw_request *r = px->r;
    bool ok = up != NULL && !px->failed && evhttp_request_get_response_code(up) != 0;
    /* After HEAD an upstream may still send a body the client side of
     * libevent never reads; such a connection must not serve another request. */
    conn_put(px->pool, px->uc, ok && !px->head);
    if (gw_stopping) {
        if (px->streaming)
            evhttp_send_reply_end(r->req);
        proxy_free(px);
        gw_request_finish(r);
        return;
    }
    if (!ok) {
        bool timeout = px->failed && px->err == EVREQ_HTTP_TIMEOUT;
        if (timeout)
            GW_STAT_INC(upstream_timeouts);
        else
            GW_STAT_INC(upstream_errors);
        if (px->streaming) {
            /* Headers are gone already: end the stream short. */
            evhttp_send_reply_end(r->req);
            proxy_free(px);
            gw_request_finish(r);
            return;
        }
        proxy_free(px);
        if (timeout)
            gw_fail(r, 504, "UPSTREAM_TIMEOUT", "The upstream did not answer in time");
        else
            gw_fail(r, 502, "UPSTREAM_UNAVAILABLE", "The upstream could not be reached");
        return;
    }
    if (px->streaming) {
        struct evbuffer *in = evhttp_request_get_input_buffer(up);
        if (evbuffer_get_length(in))
            evhttp_send_reply_chunk(r->req, in);
        evhttp_send_reply_end(r->req);
    } else {
        copy_response_headers(up, r, true);
        r->status = evhttp_request_get_response_code(up);
        struct evbuffer *in = evhttp_request_get_input_buffer(up);
        if (px->body == NULL)
            px->body = evbuffer_new();
        evbuffer_add_buffer(px->body, in);
        evhttp_send_reply(r->req, r->status, evhttp_request_get_response_code_line(up), px->body);
    }
    proxy_free(px);
    gw_request_finish(r);
}

void gw_proxy_start(struct gw_request *r)
{
    struct gw_worker *w = r->w;
    struct gw_uppool *pool = &w->pools[r->route->upstream->index];
    struct upconn *uc = conn_get(w, pool);
    if (uc == NULL) {
        GW_STAT_INC(upstream_errors);
        gw_fail(r, 503, "UPSTREAM_BUSY", "Too many requests to this upstream in progress");
        return;
    }
    struct gw_proxy *px = pc_xcalloc(1, sizeof *px);
    px->r = r;
    px->pool = pool;
    px->uc = uc;
    px->next = pool->active;
    if (pool->active)
        pool->active->prev = px;
    pool->active = px;
    r->proxy = px;
    struct evhttp_request *up = evhttp_request_new(on_up_done, px);
    if (up == NULL)
        pc_fatal("evhttp_request_new failed");
    px->up = up;
    evhttp_request_set_header_cb(up, on_up_headers);
    evhttp_request_set_chunked_cb(up, on_up_chunk);
    evhttp_request_set_error_cb(up, on_up_error);
    copy_request_headers(r, evhttp_request_get_input_headers(r->req),
                         evhttp_request_get_output_headers(up));
    /* The body's framing is ours: libevent has read (and de-chunked) the
     * client's body, so the upstream gets an exact Content-Length for every
     * method that carries one. Without it, a body on GET or PATCH would be
     * read upstream as the next request (request smuggling). */
    struct evbuffer *body = evhttp_request_get_input_buffer(r->req);
    size_t blen = evbuffer_get_length(body);
    enum evhttp_cmd_type m = evhttp_request_get_command(r->req);
    if (blen || m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT || m == EVHTTP_REQ_PATCH) {
        char cl[32];
        snprintf(cl, sizeof cl, "%zu", blen);
        evhttp_add_header(evhttp_request_get_output_headers(up), "Content-Length", cl);
    }
    if (blen)
        evbuffer_add_buffer(evhttp_request_get_output_buffer(up), body);
    px->head = m == EVHTTP_REQ_HEAD;

    struct pc_buf uri = {0};
    pc_buf_puts(&uri, r->route->upstream->base_path);
    pc_buf_puts(&uri, r->upstream_path);
    if (r->query) {
        pc_buf_putc(&uri, '?');
        pc_buf_puts(&uri, r->query);
    }
    if (evhttp_make_request(uc->evcon, up, m, uri.data) != 0) {
        /* evhttp freed up and will not call back */
        pc_buf_free(&uri);
        conn_put(pool, uc, false);
        proxy_free(px);
        GW_STAT_INC(upstream_errors);
        gw_fail(r, 502, "UPSTREAM_UNAVAILABLE", "The upstream could not be reached");
        return;
    }
    pc_buf_free(&uri);
}
