/* Portcullis - MIT licence. See LICENSE.
 *
 * conns.c: what evhttp (libevent 2.1) does not do for the connections it
 * accepts, from the loop thread:
 *
 *   caps      AUTHSVC_MAX_CONNS for the process: at the cap evhttp's
 *             listener is disabled and the overflow responder below takes
 *             the listening socket. AUTHSVC_MAX_CONNS_PER_IP per TCP peer
 *             address: a connection over it is answered 503 and closed at
 *             once, before evhttp reads from it.
 *   deadline  AUTHSVC_HEAD_TIMEOUT_MS for a whole request (evhttp hands a
 *             request over when its body is read too), from the accept or
 *             from the previous answer: 408 when part of one came, a plain
 *             close when nothing did.
 *   EMFILE    evhttp's listener has an error callback now (without one,
 *             libevent logs "Error from accept() call" and the listener,
 *             still readable, spins): accepts stop for ACCEPT_BACKOFF_MS,
 *             one warning per EMFILE_LOG_S, a counter; the overflow
 *             responder answers with a reserve descriptor.
 *   overflow  while evhttp does not accept, at most OVF_SLOTS connections at
 *             once are read here (one request line, OVF_MS at most):
 *             GET/HEAD /health, /live, /ready are answered as usual, the
 *             rest 503 TOO_MANY_CONNECTIONS; then they close. One taken with
 *             the reserve descriptor that has sent nothing and waited in the
 *             backlog is closed at once, so that idle connections queued
 *             there do not keep a health check behind them.
 *   errors    evhttp 2.1 answers bad or oversized requests itself with an
 *             HTML page and has no hook for it: an output-buffer callback
 *             spots that page (its fixed HTML ending, no X-Request-Id, which
 *             every answer of ours has) and replaces it with a JSON body
 *             {"message","code"} under the same status.
 *
 * Connections are known through evhttp's bufferevent hook (a bufferevent
 * per new connection) and, once evhttp has set it up, its close callback.
 * libevent 2.1 hands no connection to that hook, so on_check, run just
 * after evhttp's accept callback, takes it from the bufferevent's callback
 * argument (evhttp sets it to the evhttp_connection) - like the error-page
 * match, a reliance on libevent 2.1's http.c, checked by the e2e tests.
 */
#include "authsvc.h"
#include "health.h"
#include "../lib/connlimit.h"
#include "../lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/tcp.h>      /* struct tcp_info with tcpi_bytes_received */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#define OVF_SLOTS 4
#define OVF_MS 250           /* an overflow connection's request line must come by then */
#define RESERVE_TRIES 64    /* connections taken with the reserve per EMFILE */
#define OVF_BUF 2048
#define ACCEPT_BACKOFF_MS 250
#define EMFILE_LOG_S 10
#define SWEEP_MS 100

struct crec {
    struct evhttp_connection *evcon;
    struct bufferevent *bev;
    struct crec *prev, *next;
    int fd;
    struct pc_ipkey ip;
    bool ip_counted;
    bool busy;                  /* a request is with us */
    int64_t mark_us;            /* the next request is awaited since */
    uint64_t rx_mark;           /* bytes received by then */
};

struct ovf {
    int fd;                     /* -1: free */
    bool reserve;               /* holds the reserve descriptor */
    bool answered;              /* answer sent; draining until EOF */
    struct event *ev;
    size_t len;
    char buf[OVF_BUF];
};

static struct event_base *base;
static struct evconnlistener *lev;
static int listen_fd = -1;
static struct pc_iptable *iptab;
static int64_t max_conns;

static struct crec **by_fd;
static size_t nby_fd;
static struct crec *live;
static struct bufferevent **pending;
static size_t npending, cap_pending;
static size_t nopen;                /* connections evhttp holds */
static struct event *check_ev, *sweep_ev, *ovf_accept_ev;
static bool ovf_mode, ovf_accepting;
static int64_t ovf_until_us;        /* no accept before (EMFILE back-off) */
static int reserve_fd = -1;
static struct ovf slots[OVF_SLOTS];

static uint64_t n_accept_errors, n_refused_max, n_refused_ip, n_head_timeouts, n_json_errors;
static int64_t warned_us;
static uint64_t missed_warnings;

/* ---- canned answers, written straight to a socket evhttp is not writing to ---- */

static void send_json(int fd, int status, const char *reason, const char *body)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Cache-Control: no-store\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, reason, strlen(body), body);
    if (n > 0 && (size_t)n < sizeof msg) {
        ssize_t w = send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w; /* best effort: the connection closes either way */
    }
}

static const char busy_body[] =
    "{\"message\":\"Too many connections, try again later\",\"code\":\"TOO_MANY_CONNECTIONS\"}";

static void reserve_open(void)
{
    if (reserve_fd == -1)
        reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void note_emfile(int err)
{
    n_accept_errors++;
    int64_t now = pc_mono_us();
    if (now - warned_us >= EMFILE_LOG_S * 1000000LL) {
        pc_log_warn("accept: %s; pausing accepts for %d ms (%llu more in the last %d s; raise "
                    "the open file limit or lower AUTHSVC_MAX_CONNS)",
                    strerror(err), ACCEPT_BACKOFF_MS, (unsigned long long)missed_warnings,
                    EMFILE_LOG_S);
        warned_us = now;
        missed_warnings = 0;
    } else {
        missed_warnings++;
    }
}

/* ---- overflow responder ---- */

static void ovf_accepting_set(bool on)
{
    if (on == ovf_accepting || ovf_accept_ev == NULL)
        return;
    ovf_accepting = on;
    if (on)
        event_add(ovf_accept_ev, NULL);
    else
        event_del(ovf_accept_ev);
}

static size_t ovf_free_slots(void)
{
    size_t n = 0;
    for (size_t i = 0; i < OVF_SLOTS; i++)
        n += slots[i].fd == -1;
    return n;
}

static void ovf_close(struct ovf *o)
{
    event_free(o->ev);
    o->ev = NULL;
    close(o->fd);
    o->fd = -1;
    if (o->reserve)
        reserve_open();
    o->reserve = false;
    if (ovf_mode && pc_mono_us() >= ovf_until_us)
        ovf_accepting_set(true);
}

static void ovf_answer(struct ovf *o)
{
    const char *sp = memchr(o->buf, ' ', o->len);
    const char *path = sp ? sp + 1 : "";
    size_t pn = sp ? o->len - (size_t)(path - o->buf) : 0;
    bool get = sp && ((sp - o->buf == 3 && memcmp(o->buf, "GET", 3) == 0) ||
                      (sp - o->buf == 4 && memcmp(o->buf, "HEAD", 4) == 0));
    size_t plen = 0; /* the path: up to the query or the version */
    while (plen < pn && path[plen] != ' ' && path[plen] != '?')
        plen++;
    enum as_local kind = get ? as_local_path(path, plen, false) : AS_LOCAL_NONE;
    if (kind == AS_LOCAL_HEALTH || kind == AS_LOCAL_LIVE) {
        send_json(o->fd, 200, "OK",
                  kind == AS_LOCAL_LIVE ? "{\"status\":\"live\"}" : "{\"status\":\"ok\"}");
    } else if (kind == AS_LOCAL_READY) {
        bool pg = as_health_pg_ok(), rd = as_health_redis_ok();
        char b[128];
        snprintf(b, sizeof b, "{\"status\":\"%s\",\"postgres\":\"%s\",\"redis\":\"%s\"}",
                 pg && rd ? "ready" : "unavailable", pg ? "ok" : "down", rd ? "ok" : "down");
        send_json(o->fd, pg && rd ? 200 : 503, pg && rd ? "OK" : "Service Unavailable", b);
    } else {
        send_json(o->fd, 503, "Service Unavailable", busy_body);
    }
    shutdown(o->fd, SHUT_WR);
    o->answered = true;
}

/* Reads what the connection has sent; answers once its request line is in. */
static void ovf_feed(struct ovf *o)
{
    char drop[4096];
    char *at = o->answered ? drop : o->buf + o->len;
    size_t room = o->answered ? sizeof drop : sizeof o->buf - o->len;
    ssize_t n = recv(o->fd, at, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0 || o->answered) {
        if (n <= 0)
            ovf_close(o);
        return;
    }
    o->len += (size_t)n;
    char *nl = memchr(o->buf, '\n', o->len);
    if (nl == NULL) {
        if (o->len == sizeof o->buf)
            ovf_close(o);
        return;
    }
    o->len = (size_t)(nl - o->buf);
    ovf_answer(o);
}

static void on_ovf_read(evutil_socket_t fd, short what, void *arg)
{
    struct ovf *o = arg;
    if (what & EV_TIMEOUT)
        ovf_close(o);
    else
        ovf_feed(o);
}

static void ovf_take(int fd, bool reserve)
{
    for (size_t i = 0; i < OVF_SLOTS; i++) {
        struct ovf *o = &slots[i];
        if (o->fd != -1)
            continue;
        o->fd = fd;
        o->reserve = reserve;
        o->answered = false;
        o->len = 0;
        o->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_ovf_read, o);
        if (o->ev == NULL)
            pc_fatal("event_new failed");
        struct timeval tv = {OVF_MS / 1000, (OVF_MS % 1000) * 1000};
        event_add(o->ev, &tv);
        ovf_feed(o);
        /* Nothing sent yet: one just made keeps the reserve a moment, one
         * that waited in the backlog is closed so the next one is reached. */
        if (o->fd != -1 && reserve && !o->answered && o->len == 0 && !pc_conn_fresh(fd, 50))
            ovf_close(o);
        return;
    }
    close(fd); /* cannot happen: callers check for a free slot */
}

static void ovf_pause(void)
{
    ovf_until_us = pc_mono_us() + ACCEPT_BACKOFF_MS * 1000LL;
    ovf_accepting_set(false);
}

static void on_ovf_accept(evutil_socket_t lfd, short what, void *arg)
{
    for (int i = 0; i < 16; i++) {
        if (ovf_free_slots() == 0) {
            ovf_accepting_set(false); /* a closing slot turns it back on */
            return;
        }
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            int e = errno;
            if (e == EMFILE || e == ENFILE) {
                note_emfile(e);
                for (int k = 0; k < RESERVE_TRIES && reserve_fd != -1 && ovf_free_slots(); k++) {
                    close(reserve_fd);
                    reserve_fd = -1;
                    fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd == -1) {
                        reserve_open();
                        break;
                    }
                    ovf_take(fd, true); /* answered, dropped or held */
                }
                ovf_pause();
            } else if (e == ENOBUFS || e == ENOMEM) {
                ovf_pause();
            }
            return;
        }
        if ((int64_t)nopen >= max_conns)
            n_refused_max++;
        ovf_take(fd, false);
    }
}

static void ovf_enter(bool backoff)
{
    if (lev == NULL)
        return;
    if (!ovf_mode) {
        evconnlistener_disable(lev);
        ovf_mode = true;
    }
    if (backoff)
        ovf_pause();
    else if (pc_mono_us() >= ovf_until_us && ovf_free_slots() > 0)
        ovf_accepting_set(true);
}

static void ovf_leave(void)
{
    if (!ovf_mode || lev == NULL)
        return;
    ovf_accepting_set(false);
    ovf_mode = false;
    evconnlistener_enable(lev);
}

/* evhttp's listener could not accept (not EAGAIN/EINTR/ECONNABORTED). */
static void on_listener_error(struct evconnlistener *l, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    if (e == EMFILE || e == ENFILE)
        note_emfile(e);
    else
        pc_log_warn("accept: %s", strerror(e));
    ovf_enter(false); /* the responder tries once with the reserve */
    ovf_until_us = pc_mono_us() + ACCEPT_BACKOFF_MS * 1000LL;
}

/* ---- connections evhttp holds ---- */

static void rec_unlink(struct crec *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->fd >= 0 && (size_t)r->fd < nby_fd && by_fd[r->fd] == r)
        by_fd[r->fd] = NULL;
    if (r->ip_counted)
        pc_iptable_release(iptab, &r->ip);
    free(r);
    nopen--;
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    rec_unlink(arg);
    if (ovf_mode && (int64_t)nopen < max_conns && pc_mono_us() >= ovf_until_us)
        ovf_leave();
}

static uint64_t rx_bytes(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return 0;
    return ti.tcpi_bytes_received; /* 0 from a kernel older than 4.1: then no 408 */
}

/* evhttp has just set up the connections whose bufferevents were made. */
static void on_check(evutil_socket_t fd_, short what, void *arg)
{
    for (size_t i = 0; i < npending; i++) {
        struct bufferevent *bev = pending[i];
        int fd = (int)bufferevent_getfd(bev);
        bufferevent_data_cb rcb, wcb;
        bufferevent_event_cb ecb;
        void *cbarg = NULL;
        bufferevent_getcb(bev, &rcb, &wcb, &ecb, &cbarg);
        struct evhttp_connection *evcon = cbarg;
        if (fd < 0 || evcon == NULL) {
            nopen--;
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        struct pc_ipkey k = {{0}};
        bool have_ip = getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
                       pc_ipkey_from((struct sockaddr *)&ss, &k, NULL, 0);
        if (have_ip && !pc_iptable_acquire(iptab, &k, as_cfg.max_conns_per_ip)) {
            n_refused_ip++;
            send_json(fd, 503, "Service Unavailable", busy_body);
            nopen--;
            evhttp_connection_free(evcon);
            continue;
        }
        if ((size_t)fd >= nby_fd) {
            size_t n = nby_fd ? nby_fd : 256;
            while (n <= (size_t)fd)
                n *= 2;
            by_fd = pc_xrealloc(by_fd, n * sizeof *by_fd);
            memset(by_fd + nby_fd, 0, (n - nby_fd) * sizeof *by_fd);
            nby_fd = n;
        }
        if (by_fd[fd])
            rec_unlink(by_fd[fd]); /* a closed connection's leftover */
        struct crec *r = pc_xcalloc(1, sizeof *r);
        r->evcon = evcon;
        r->bev = bev;
        r->fd = fd;
        r->ip = k;
        r->ip_counted = have_ip;
        r->mark_us = pc_mono_us();
        r->next = live;
        if (live)
            live->prev = r;
        live = r;
        by_fd[fd] = r; /* counted in nopen since on_new_bev; rec_unlink uncounts */
        evhttp_connection_set_closecb(evcon, on_conn_close, r);
    }
    npending = 0;
}

/* An evhttp error page (ERR_FORMAT in libevent's http.c) becomes JSON. */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    static const char tail[] = "</H1>\n</BODY></HTML>\n";
    const size_t tl = sizeof tail - 1;
    size_t len = evbuffer_get_length(buf);
    if (info->n_added == 0 || len < tl + 16)
        return;
    char end[sizeof tail];
    struct evbuffer_ptr p;
    if (evbuffer_ptr_set(buf, &p, len - tl, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(buf, &p, end, tl) != (ev_ssize_t)tl || memcmp(end, tail, tl) != 0)
        return;
    char head[2048];
    ev_ssize_t hn = evbuffer_copyout(buf, head, sizeof head - 1);
    if (hn < 16)
        return;
    head[hn] = '\0';
    char *eoh = strstr(head, "\r\n\r\n");
    if (eoh == NULL || strncmp(head, "HTTP/1.", 7) != 0)
        return;
    *eoh = '\0';
    if (strcasestr(head, "\r\nX-Request-Id:") != NULL ||
        strcasestr(head, "\r\nContent-Type: text/html") == NULL)
        return;
    int status = atoi(head + 9);
    const char *code, *msg;
    switch (status) {
    case 413: code = "PAYLOAD_TOO_LARGE"; msg = "Request is too large"; break;
    case 431: code = "HEADERS_TOO_LARGE"; msg = "Request headers are too large"; break;
    case 417: code = "EXPECTATION_FAILED"; msg = "Expectation failed"; break;
    case 501: code = "NOT_IMPLEMENTED"; msg = "Not implemented"; break;
    case 400: code = "BAD_REQUEST"; msg = "Malformed request"; break;
    default:
        code = status >= 500 ? "INTERNAL_SERVER_ERROR" : "BAD_REQUEST";
        msg = status >= 500 ? "Internal server error" : "Bad request";
    }
    char *eol = strstr(head, "\r\n");
    char body[160];
    snprintf(body, sizeof body, "{\"message\":\"%s\",\"code\":\"%s\"}", msg, code);
    evbuffer_drain(buf, len);
    evbuffer_add_printf(buf,
                        "%.*s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                        (int)(eol - head), head, strlen(body), body);
    n_json_errors++;
}

static struct bufferevent *on_new_bev(struct event_base *b, void *arg)
{
    struct bufferevent *bev = bufferevent_socket_new(b, -1, 0); /* as evhttp makes it */
    if (bev == NULL)
        return NULL;
    evbuffer_add_cb(bufferevent_get_output(bev), on_output, NULL);
    if (npending == cap_pending) {
        cap_pending = cap_pending ? cap_pending * 2 : 64;
        pending = pc_xrealloc(pending, cap_pending * sizeof *pending);
    }
    pending[npending++] = bev;
    nopen++;
    event_active(check_ev, EV_TIMEOUT, 0);
    if ((int64_t)nopen >= max_conns)
        ovf_enter(false); /* stops evhttp's accept loop after this one */
    return bev;
}

static void on_sweep(evutil_socket_t fd_, short what, void *arg)
{
    int64_t now = pc_mono_us();
    if (reserve_fd == -1) {
        bool held = false;
        for (size_t i = 0; i < OVF_SLOTS; i++)
            held = held || (slots[i].fd != -1 && slots[i].reserve);
        if (!held)
            reserve_open();
    }
    if (ovf_mode && now >= ovf_until_us) {
        if ((int64_t)nopen < max_conns)
            ovf_leave(); /* evhttp accepts again (its error callback says if in vain) */
        else if (ovf_free_slots() > 0)
            ovf_accepting_set(true);
    }
    int64_t limit = as_cfg.head_timeout_ms * 1000LL;
    for (struct crec *r = live, *next; r; r = next) {
        next = r->next;
        if (r->busy)
            continue;
        if (evbuffer_get_length(bufferevent_get_output(r->bev)) > 0) {
            r->mark_us = now; /* an answer is still going out */
            continue;
        }
        if (now - r->mark_us <= limit)
            continue;
        n_head_timeouts++;
        if (rx_bytes(r->fd) > r->rx_mark)
            send_json(r->fd, 408, "Request Timeout",
                      "{\"message\":\"The request did not arrive in time\","
                      "\"code\":\"REQUEST_TIMEOUT\"}");
        evhttp_connection_free(r->evcon); /* on_conn_close frees r */
    }
}

static struct crec *rec_of(struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon == NULL)
        return NULL;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    int fd = bev ? (int)bufferevent_getfd(bev) : -1;
    if (fd < 0 || (size_t)fd >= nby_fd || by_fd[fd] == NULL || by_fd[fd]->evcon != evcon)
        return NULL;
    return by_fd[fd];
}

void as_conns_request_begin(struct evhttp_request *req)
{
    struct crec *r = rec_of(req);
    if (r) {
        r->busy = true;
        r->rx_mark = rx_bytes(r->fd);
    }
}

void as_conns_request_end(struct evhttp_request *req)
{
    struct crec *r = rec_of(req);
    if (r) {
        r->busy = false;
        r->mark_us = pc_mono_us();
    }
}

int64_t as_conns_max(void)
{
    return max_conns;
}

void as_conns_start(struct event_base *b, struct evhttp *http, struct evhttp_bound_socket *bound)
{
    base = b;
    iptab = pc_iptable_new();
    for (size_t i = 0; i < OVF_SLOTS; i++)
        slots[i].fd = -1;
    max_conns = as_cfg.max_conns;
    if (max_conns == 0) {
        /* leave room for the workers' PostgreSQL and Redis connections,
         * the password pool, the health prober and the listener */
        struct rlimit rl;
        int64_t lim = 1024;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            lim = rl.rlim_cur == RLIM_INFINITY ? 1000000 : (int64_t)rl.rlim_cur;
        max_conns = lim - 64 - 4 * as_cfg.workers;
        if (max_conns < 16)
            max_conns = 16;
    }
    lev = evhttp_bound_socket_get_listener(bound);
    listen_fd = (int)evconnlistener_get_fd(lev);
    evconnlistener_set_error_cb(lev, on_listener_error);
    evhttp_set_bevcb(http, on_new_bev, NULL);
    check_ev = event_new(base, -1, 0, on_check, NULL);
    sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, NULL);
    ovf_accept_ev = event_new(base, listen_fd, EV_READ | EV_PERSIST, on_ovf_accept, NULL);
    if (check_ev == NULL || sweep_ev == NULL || ovf_accept_ev == NULL)
        pc_fatal("event_new failed");
    struct timeval tv = {0, SWEEP_MS * 1000};
    event_add(sweep_ev, &tv);
    reserve_open();
}

void as_conns_stop_accepting(void)
{
    ovf_accepting_set(false);
    ovf_mode = false;
    lev = NULL; /* evhttp_del_accept_socket frees it */
}

void as_conns_free(void)
{
    ovf_accepting_set(false);
    for (size_t i = 0; i < OVF_SLOTS; i++)
        if (slots[i].fd != -1)
            ovf_close(&slots[i]);
    while (live)
        rec_unlink(live);
    if (check_ev)
        event_free(check_ev);
    if (sweep_ev)
        event_free(sweep_ev);
    if (ovf_accept_ev)
        event_free(ovf_accept_ev);
    check_ev = sweep_ev = ovf_accept_ev = NULL;
    free(by_fd);
    by_fd = NULL;
    nby_fd = 0;
    free(pending);
    pending = NULL;
    npending = cap_pending = 0;
    pc_iptable_free(iptab);
    iptab = NULL;
    if (reserve_fd != -1)
        close(reserve_fd);
    reserve_fd = -1;
}

void as_conns_render(struct pc_buf *b)
{
    pc_buf_printf(b,
                  "# HELP portcullis_authsvc_accept_errors_total accept() failures for want of "
                  "file descriptors (EMFILE/ENFILE).\n"
                  "# TYPE portcullis_authsvc_accept_errors_total counter\n"
                  "portcullis_authsvc_accept_errors_total %llu\n"
                  "# HELP portcullis_authsvc_connections_refused_total Connections over a cap "
                  "(answered 503 or, for /health, /live, /ready, served, then closed).\n"
                  "# TYPE portcullis_authsvc_connections_refused_total counter\n"
                  "portcullis_authsvc_connections_refused_total{reason=\"max_conns\"} %llu\n"
                  "portcullis_authsvc_connections_refused_total{reason=\"per_ip\"} %llu\n"
                  "# HELP portcullis_authsvc_head_timeouts_total Connections closed for a request "
                  "not whole within AUTHSVC_HEAD_TIMEOUT_MS.\n"
                  "# TYPE portcullis_authsvc_head_timeouts_total counter\n"
                  "portcullis_authsvc_head_timeouts_total %llu\n"
                  "# HELP portcullis_authsvc_protocol_errors_total Requests refused by the HTTP "
                  "parser (bad or oversized head or body).\n"
                  "# TYPE portcullis_authsvc_protocol_errors_total counter\n"
                  "portcullis_authsvc_protocol_errors_total %llu\n"
                  "# HELP portcullis_authsvc_connections Client connections open.\n"
                  "# TYPE portcullis_authsvc_connections gauge\n"
                  "portcullis_authsvc_connections %zu\n"
                  "# HELP portcullis_authsvc_connections_max AUTHSVC_MAX_CONNS in effect.\n"
                  "# TYPE portcullis_authsvc_connections_max gauge\n"
                  "portcullis_authsvc_connections_max %lld\n"
                  "# HELP portcullis_authsvc_client_addresses Peer addresses with a connection "
                  "open.\n# TYPE portcullis_authsvc_client_addresses gauge\n"
                  "portcullis_authsvc_client_addresses %zu\n",
                  (unsigned long long)n_accept_errors, (unsigned long long)n_refused_max,
                  (unsigned long long)n_refused_ip, (unsigned long long)n_head_timeouts,
                  (unsigned long long)n_json_errors, nopen, (long long)max_conns,
                  iptab ? pc_iptable_addresses(iptab) : (size_t)0);
}
