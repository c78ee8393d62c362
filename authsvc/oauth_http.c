/* Portcullis - MIT licence. See LICENSE.
 *
 * oauth_http.c: libcurl's multi interface on authsvc's event loop (the
 * structure of curl's docs/examples/hiperfifo.c), for the calls OIDC sign-in
 * makes to providers: discovery, JWKS, code exchange, userinfo.
 *
 *   as_http_request   easy handle -> multi; curl tells us which sockets to
 *                     watch (on_socket) and when to wake it (on_timer_set)
 *   on_event/on_timer curl_multi_socket_action, then reap finished transfers
 *   reap              exactly one callback per request, then the handle goes
 *
 * Everything here runs on the loop thread. Each transfer has a total time
 * bound (OAUTH_HTTP_TIMEOUT_MS), follows no redirects, speaks only HTTP(S)
 * and keeps at most 1 MiB of body. Nothing of a request or an answer is
 * logged but the URL's scheme, host and path.
 */
#include "authsvc.h"
#include "oauth.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#define BODY_MAX (1024 * 1024)

const char *const AS_HTTP_ETIMEOUT = "provider timed out";
const char *const AS_HTTP_EFAILED = "provider unreachable";
const char *const AS_HTTP_ETOOBIG = "provider answer too large";
const char *const AS_HTTP_ESHUTDOWN = "shutting down";

/* One transfer. */
struct xfer {
    CURL *easy;
    struct curl_slist *hdrs;    /* request headers (Authorization wiped on free) */
    char *form;                 /* POST body (wiped on free: codes, secrets) */
    struct pc_buf body;         /* response body */
    bool too_big;               /* body passed BODY_MAX */
    as_http_cb cb;
    void *arg;
    char url_log[256];          /* scheme://host/path, for the log */
    struct xfer *prev, *next;   /* live list, for shutdown */
};

/* One socket curl wants watched. Freed late (see reap_dead): a socket may be
 * removed from inside its own event's callback. */
struct sock {
    struct event ev;            /* embedded: re-assigned in place, as hiperfifo.c does */
    struct sock *next_dead;
};

static struct event_base *ev_base;
static CURLM *multi;
static struct event *timer_ev;
static struct xfer *live;           /* transfers in flight */
static struct sock *dead;           /* sockets waiting to be freed */
static int64_t timeout_ms;
static bool closed = true;

static void reap_dead(void)
{
    while (dead) {
        struct sock *s = dead;
        dead = s->next_dead;
        free(s);
    }
}

static void xfer_free(struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        live = x->next;
    if (x->next)
        x->next->prev = x->prev;
    curl_multi_remove_handle(multi, x->easy);
    curl_easy_cleanup(x->easy);
    for (struct curl_slist *h = x->hdrs; h; h = h->next)
        pc_wipe(h->data, strlen(h->data));
    curl_slist_free_all(x->hdrs);
    if (x->form) {
        pc_wipe(x->form, strlen(x->form));
        free(x->form);
    }
    if (x->body.data)
        pc_wipe(x->body.data, x->body.cap);
    pc_buf_free(&x->body);
    free(x);
}

/* Hands every finished transfer to its callback. */
static void reap(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode rc = m->data.result;
        const char *err = NULL;
        struct as_http_resp r = {0};
        if (rc == CURLE_OK) {
            curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
            r.body = x->body.data ? x->body.data : "";
            r.len = x->body.len;
        } else {
            err = x->too_big ? AS_HTTP_ETOOBIG
                  : rc == CURLE_OPERATION_TIMEDOUT ? AS_HTTP_ETIMEOUT : AS_HTTP_EFAILED;
            pc_log_warn("oauth: %s: %s (%s)", x->url_log, err, curl_easy_strerror(rc));
        }
        /* Detach first so the callback may start new transfers freely. */
        as_http_cb cb = x->cb;
        void *arg = x->arg;
        curl_multi_remove_handle(multi, x->easy);
        cb(arg, err ? NULL : &r, err);
        xfer_free(x);
    }
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    reap_dead();
    int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(multi, fd, action, &running);
    reap();
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    reap_dead();
    int running;
    curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    reap();
}

/* CURLMOPT_TIMERFUNCTION: curl wants to be called after ms (-1: never). */
static int on_timer_set(CURLM *m, long ms, void *userp)
{
    if (ms < 0) {
        evtimer_del(timer_ev);
    } else {
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(timer_ev, &tv);
    }
    return 0;
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what. */
static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct sock *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk) {
            event_del(&sk->ev);
            sk->next_dead = dead;
            dead = sk;
            curl_multi_assign(multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (sk == NULL) {
        sk = pc_xcalloc(1, sizeof *sk);
        curl_multi_assign(multi, s, sk);
    } else {
        event_del(&sk->ev);
    }
    event_assign(&sk->ev, ev_base, s, kind, on_event, NULL);
    event_add(&sk->ev, NULL);
    return 0;
}

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = size * n;
    if (x->body.len + len > BODY_MAX) {
        x->too_big = true;
        return 0;   /* aborts the transfer */
    }
    pc_buf_append(&x->body, p, len);
    return len;
}

int as_http_init(struct event_base *base, int64_t tmo_ms)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -1;
    ev_base = base;
    timeout_ms = tmo_ms;
    multi = curl_multi_init();
    timer_ev = evtimer_new(base, on_timer, NULL);
    if (multi == NULL || timer_ev == NULL)
        pc_fatal("curl_multi_init failed");
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
    closed = false;
    return 0;
}

void as_http_shutdown(void)
{
    if (multi == NULL)
        return;
    closed = true;
    while (live) {
        struct xfer *x = live;
        curl_multi_remove_handle(multi, x->easy);
        x->cb(x->arg, NULL, AS_HTTP_ESHUTDOWN);
        xfer_free(x);
    }
    curl_multi_cleanup(multi);
    multi = NULL;
    reap_dead();
    event_free(timer_ev);
    timer_ev = NULL;
    curl_global_cleanup();
}

/* scheme://host/path of url, without query or userinfo, for logs. */
static void url_for_log(const char *url, char *out, size_t cap)
{
    const char *h = strstr(url, "://");
    const char *start = h ? h + 3 : url;
    const char *at = strchr(start, '@');
    size_t hostlen = strcspn(start, "/?#");
    if (at && (size_t)(at - start) < hostlen)
        start = at + 1;
    snprintf(out, cap, "%.*s%.*s", h ? (int)(h + 3 - url) : 0, url,
             (int)strcspn(start, "?#"), start);
}

int as_http_request(const char *url, const char *form, const char *bearer, as_http_cb cb,
                    void *arg)
{
    if (closed)
        return -1;
    struct xfer *x = pc_xcalloc(1, sizeof *x);
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        free(x);
        return -1;
    }
    x->cb = cb;
    x->arg = arg;
    url_for_log(url, x->url_log, sizeof x->url_log);
    x->hdrs = curl_slist_append(NULL, "Accept: application/json");
    if (bearer) {
        struct pc_buf h = {0};
        pc_buf_printf(&h, "Authorization: Bearer %s", bearer);
        x->hdrs = curl_slist_append(x->hdrs, h.data);
        pc_wipe(h.data, h.len);
        pc_buf_free(&h);
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "portcullis-authsvc");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (form) {
        x->form = pc_xstrdup(form);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->form);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(x->form));
    }
    if (curl_multi_add_handle(multi, e) != CURLM_OK) {
        x->prev = x->next = NULL;
        curl_easy_cleanup(e);
        curl_slist_free_all(x->hdrs);
        free(x->form);
        free(x);
        return -1;
    }
    x->next = live;
    if (live)
        live->prev = x;
    live = x;
    return 0;
}
