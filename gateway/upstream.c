/* Portcullis - MIT licence. See LICENSE.
 *
 * upstream.c: each worker's pool per upstream (upstream.h): up to
 * UPSTREAM_POOL keep-alive connections, opened non-blocking, kept on an
 * idle list while unused and still read there, so an upstream that closes
 * one is seen at once. proxy.c checks the cap and runs the exchanges.
 */
#include "upstream.h"
#include "proxy.h"
#include "loop.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define UP_IN_START 16384

void gw_proxy_init(struct gw_worker *w)
{
    w->pools = pc_xcalloc(gw_cfg.nupstreams, sizeof *w->pools);
    for (size_t i = 0; i < gw_cfg.nupstreams; i++) {
        w->pools[i].up = &gw_cfg.upstreams[i];
        w->pools[i].w = w;
    }
}

void gw_upconn_want(struct upconn *c, bool rd, bool wr)
{
    gw_watch(c->ev, &c->reading, rd);
    gw_watch(c->wev, &c->writing, wr);
}

void gw_upconn_close(struct upconn *c)
{
    gw_upconn_want(c, false, false);
    event_free(c->ev);
    event_free(c->wev);
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

struct upconn *gw_upconn_open(struct gw_uppool *p, event_callback_fn rd, event_callback_fn wr)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", p->up->port);
    if (getaddrinfo(p->up->host, port, &hints, &ai) != 0 || ai == NULL) {
        errno = EHOSTUNREACH;
        return NULL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        freeaddrinfo(ai);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc == -1 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    struct upconn *c = pc_xcalloc(1, sizeof *c);
    c->pool = p;
    c->fd = fd;
    c->connecting = rc == -1;
    c->ev = event_new(p->w->base, fd, EV_READ | EV_PERSIST, rd, c);
    c->wev = event_new(p->w->base, fd, EV_WRITE | EV_PERSIST, wr, c);
    if (c->ev == NULL || c->wev == NULL)
        pc_fatal("event_new failed");
    c->cap = UP_IN_START;
    c->in = pc_xmalloc(c->cap);
    p->total++;
    return c;
}

void gw_upconn_put(struct upconn *c, bool reusable)
{
    c->px = NULL;
    if (!reusable || gw_stopping) {
        gw_upconn_close(c);
        return;
    }
    c->reused = true;
    c->len = 0;
    c->out.len = c->out_off = 0;
    c->next = c->pool->idle;
    c->pool->idle = c;
    gw_upconn_want(c, true, false);
}
