/* Portcullis - MIT licence. See LICENSE.
 *
 * upstream.c: a route's targets (round-robin; a target whose connection
 * failed is skipped by every worker for UPSTREAM_FAIL_TIMEOUT_MS, atomics
 * in gw_upstream and gw_route), and each worker's pool per upstream
 * (upstream.h): up to
 * UPSTREAM_POOL keep-alive connections, opened non-blocking, kept on an
 * idle list while unused and still read there, so an upstream that closes
 * one is seen at once. proxy.c checks the cap and runs the exchanges.
 *
 * https:// upstreams: OpenSSL on the same non-blocking sockets. The
 * contexts (one per CA file, gw_tls_ctx_new) are made by routes_file.c
 * when a routes file first names the CA file; each connection gets SNI
 * and the host name (or address) its certificate must carry, and offers the last session its pool was given
 * (one per worker and upstream), so a new connection usually resumes
 * instead of doing a full handshake. SSL_connect, SSL_read and SSL_write
 * map WANT_READ/WANT_WRITE onto the fd's events; OpenSSL's error queue is
 * cleared before each call, so a stale error from other code on this
 * thread is never read as this call's. Plain connections never reach any
 * of it (c->ssl is NULL).
 */
#include "upstream.h"
#include "proxy.h"
#include "loop.h"
#include "metrics.h"

#include "../lib/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define UP_IN_START 16384

void gw_proxy_init(struct gw_worker *w)
{
    w->pools = pc_xcalloc(GW_UPSTREAMS_MAX, sizeof *w->pools);
    gw_proxy_grow(w, w->table->nupstreams);
}

void gw_proxy_grow(struct gw_worker *w, size_t n)
{
    for (size_t i = w->npools; i < n; i++) {
        w->pools[i].up = gw_cfg.upstreams[i];
        w->pools[i].w = w;
        gw_resolve_pool(w, &w->pools[i]);
    }
    w->npools = n;
}

void gw_uppool_fini(struct gw_uppool *p)
{
    SSL_SESSION_free(p->sess);
    p->sess = NULL;
}

void gw_upconn_want(struct upconn *c, bool rd, bool wr)
{
    gw_watch(c->ev, &c->reading, rd);
    gw_watch(c->wev, &c->writing, wr);
    /* bytes OpenSSL has read from the socket already will not make it
     * readable again */
    if (c->ssl && rd && SSL_has_pending(c->ssl))
        event_active(c->ev, EV_READ, 0);
}

void gw_upconn_close(struct upconn *c)
{
    gw_upconn_want(c, false, false);
    event_free(c->ev);
    event_free(c->wev);
    if (c->ssl) {
        /* a close_notify, best effort (never waited for), on a connection
         * whose TLS is sound */
        if (!c->handshaking && !c->tls_broken) {
            ERR_clear_error();
            SSL_shutdown(c->ssl);
        }
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    close(c->fd);
    free(c->in);
    pc_buf_free(&c->out);
    c->pool->total--;
    free(c);
}

void gw_upconn_idle_remove(struct gw_uppool *p, struct upconn *c)
{
    for (struct upconn **pp = &p->idle; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            c->next = NULL;
            return;
        }
    }
}

/* ---- TLS ---- */

/* A new session from the upstream (after a full handshake; with TLS 1.3
 * in its tickets): the pool keeps the last one for its next connection.
 * Returns 1: the reference is the pool's. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct upconn *c = SSL_get_app_data(ssl);
    if (c == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    SSL_SESSION_free(c->pool->sess);
    c->pool->sess = sess;
    return 1;
}

/* The reason of the first error queued, or NULL. */
static const char *queued_reason(void)
{
    unsigned long e = ERR_get_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    return why ? why : e ? "TLS error" : NULL;
}

struct ssl_ctx_st *gw_tls_ctx_new(const char *ca_file, char *err, size_t errsz)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        pc_fatal("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* SSL_write may take part of the request; the buffer of an idle
     * connection is released */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    if (ca_file == NULL) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            snprintf(err, errsz, "cannot load the system's CA certificates");
            goto fail;
        }
        ERR_clear_error();
        return ctx;
    }
    FILE *f = fopen(ca_file, "r");
    if (f == NULL) {
        snprintf(err, errsz, "cannot read %s: %s", ca_file, strerror(errno));
        goto fail;
    }
    fclose(f);
    if (SSL_CTX_load_verify_file(ctx, ca_file) != 1) {
        const char *why = queued_reason();
        snprintf(err, errsz, "%s is no PEM bundle of CA certificates (%s)", ca_file,
                 why ? why : "unreadable");
        goto fail;
    }
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    bool any = false;
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++)
        any = any || X509_OBJECT_get_type(sk_X509_OBJECT_value(objs, i)) == X509_LU_X509;
    if (!any) {
        snprintf(err, errsz, "%s holds no certificate", ca_file);
        goto fail;
    }
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

void gw_tls_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

/* c's TLS connection to its upstream: SNI and the name to verify (an
 * address: its IP names, and no SNI, RFC 6066 3), the pool's session. */
static void tls_attach(struct upconn *c)
{
    const struct gw_upstream *up = c->pool->up;
    SSL *ssl = SSL_new(up->tls);
    if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1)
        pc_fatal("SSL_new failed");
    SSL_set_app_data(ssl, c);
    SSL_set_connect_state(ssl);
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    bool ok = up->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), up->host) == 1
                             : SSL_set_tlsext_host_name(ssl, up->host) == 1 &&
                                   SSL_set1_host(ssl, up->host) == 1;
    if (!ok)
        pc_fatal("TLS: cannot set the upstream's name %s", up->host); /* checked at start */
    if (c->pool->sess)
        SSL_set_session(ssl, c->pool->sess);
    ERR_clear_error();
    c->ssl = ssl;
    c->handshaking = true;
}

int gw_upconn_handshake(struct upconn *c, char *why, size_t whysz)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(c->ssl);
    if (rc == 1) {
        c->handshaking = false;
        return 1;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        gw_upconn_want(c, true, e == SSL_ERROR_WANT_WRITE);
        return 0;
    }
    int sys = errno;
    c->tls_broken = true;
    long v = SSL_get_verify_result(c->ssl);
    const char *reason = queued_reason();
    if (v != X509_V_OK)
        snprintf(why, whysz, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    else if (reason)
        snprintf(why, whysz, "%s", reason);
    else if (e == SSL_ERROR_SYSCALL && sys != 0)
        snprintf(why, whysz, "%s during the handshake", strerror(sys));
    else
        snprintf(why, whysz, "the upstream closed the connection during the handshake");
    ERR_clear_error();
    return -1;
}

ssize_t gw_upconn_tls_read(struct upconn *c, char *buf, size_t n)
{
    ERR_clear_error();
    int rc = SSL_read(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    if (rc > 0) {
        if (SSL_has_pending(c->ssl))
            event_active(c->ev, EV_READ, 0);
        return rc;
    }
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (e == SSL_ERROR_WANT_WRITE) {
            c->rd_wants_wr = true;
            gw_watch(c->wev, &c->writing, true);
        }
        errno = EAGAIN;
        return -1;
    }
    if (e != SSL_ERROR_ZERO_RETURN) {
        const char *why = queued_reason();
        c->tls_broken = true;
        if (why)
            pc_log_warn("upstream %s: TLS: %s", c->pool->up->url, why);
    }
    ERR_clear_error();
    return 0;
}

ssize_t gw_upconn_tls_write(struct upconn *c, const char *buf, size_t n)
{
    ERR_clear_error();
    int rc = SSL_write(c->ssl, buf, n > INT32_MAX ? INT32_MAX : (int)n);
    if (rc > 0)
        return rc;
    int e = SSL_get_error(c->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->wr_wants_rd = e == SSL_ERROR_WANT_READ;
        errno = EAGAIN;
        return -1;
    }
    c->tls_broken = true;
    ERR_clear_error();
    errno = EPIPE;
    return -1;
}

/* ---- targets ---- */

int gw_target_pick(const struct gw_route *rt, unsigned tried)
{
    size_t n = rt->ntargets;
    unsigned start = n > 1 ? atomic_fetch_add_explicit(rt->rr, 1, memory_order_relaxed) % n : 0;
    int64_t now = pc_mono_us();
    int skipped = -1;
    for (size_t k = 0; k < n; k++) {
        size_t t = (start + k) % n;
        if (tried & (1u << t))
            continue;
        if (atomic_load_explicit(&rt->targets[t]->down_until_us, memory_order_relaxed) > now) {
            if (skipped < 0)
                skipped = (int)t;
            continue;
        }
        return (int)t;
    }
    return tried ? -1 : skipped;
}

void gw_target_failed(struct gw_upstream *up)
{
    if (gw_cfg.fail_timeout_ms == 0)
        return;
    int64_t now = pc_mono_us();
    int64_t until = now + gw_cfg.fail_timeout_ms * 1000;
    int64_t was = atomic_exchange_explicit(&up->down_until_us, until, memory_order_relaxed);
    if (was <= now) {
        GW_STAT_INC(upstream_skips);
        pc_log_warn("upstream %s: connection failed; skipped for %lld ms", up->url,
                    (long long)gw_cfg.fail_timeout_ms);
    }
}

/* ---- connections ---- */

struct upconn *gw_upconn_open(struct gw_uppool *p, const struct sockaddr_storage *sa,
                              socklen_t len, event_callback_fn rd, event_callback_fn wr)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, (const struct sockaddr *)sa, len);
    if (rc == -1 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    struct upconn *c = pc_xcalloc(1, sizeof *c);
    c->pool = p;
    c->gen = p->gen;
    c->fd = fd;
    c->connecting = rc == -1;
    c->ev = event_new(p->w->base, fd, EV_READ | EV_PERSIST, rd, c);
    c->wev = event_new(p->w->base, fd, EV_WRITE | EV_PERSIST, wr, c);
    if (c->ev == NULL || c->wev == NULL)
        pc_fatal("event_new failed");
    c->cap = UP_IN_START;
    c->in = pc_xmalloc(c->cap);
    p->total++;
    if (p->up->tls)
        tls_attach(c);
    return c;
}

void gw_upconn_put(struct upconn *c, bool reusable)
{
    c->px = NULL;
    if (!reusable || gw_stopping || c->gen != c->pool->gen) {
        gw_upconn_close(c);
        return;
    }
    c->reused = true;
    c->rd_wants_wr = c->wr_wants_rd = false; /* the next exchange starts afresh */
    c->len = 0;
    c->out.len = c->out_off = 0;
    c->next = c->pool->idle;
    c->pool->idle = c;
    gw_upconn_want(c, true, false);
}
