/* Portcullis - MIT licence. See LICENSE.
 *
 * streams.c: open tunnels and streamed answers, per worker (streams.h).
 *
 *   index     a hash table per worker from credential key (the SHA-256 the
 *             feed publishes: a session token's or an API key's; and for
 *             sessions and JWTs the key of their session id) to the streams
 *             opened with it. No polling: a revocation looks up one bucket.
 *   feed      the revocation thread calls gw_streams_revoked: the key is
 *             queued for every worker (a mutex and event_active), and each
 *             worker cuts its streams under that key on its own loop.
 *   timers    one libevent timer per stream, at the credential's expiry
 *             (expiresAt, JWT exp), the tunnel's lifetime or the end of its
 *             idle window, whichever is first. At a session's expiry its
 *             row is read again (store.h): a sliding refresh elsewhere
 *             moves the cut; gone, still past, or no answer from
 *             PostgreSQL ends the stream (fail closed). libevent's heap costs
 *             nothing while they wait. Traffic never touches the timer: it
 *             stamps s->active_us, and a timer that finds the tunnel was
 *             busy sets itself again for the rest of the window, so an idle
 *             tunnel costs one wake-up per window and a busy one no more.
 *   caps      open tunnels per worker (GATEWAY_MAX_TUNNELS) and per user
 *             across the process (GATEWAY_MAX_TUNNELS_PER_USER, a small
 *             table under one mutex, touched at handshake and close only).
 */
#include "streams.h"
#include "metrics.h"
#include "store.h"

#include "../lib/crypto.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#define BUCKETS 1024
#define QUEUE_MAX (1u << 20)   /* revocations queued for one worker at most */
#define USER_BUCKETS 1024

struct gw_streams {
    unsigned worker;
    struct gw_stream_link *bucket[BUCKETS];
    struct gw_stream *list;         /* every open stream */
    size_t ntunnels;
    pthread_mutex_t mu;             /* guards queue */
    unsigned char (*queue)[32];
    size_t nq, capq;
    int64_t cut_before_us;          /* gw_streams_cut_all: cut what began before (0: no) */
    struct event *ev;               /* the queue has keys */
};

/* Every worker's index, for the feed's thread: filled on the main thread
 * before the feed starts, emptied after it stopped. */
#define WORKERS_MAX 256
static struct gw_streams *registry[WORKERS_MAX];

/* ---- WebSocket frames ---- */

void gw_ws_follow(struct gw_wsframes *f, const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (f->left > 0) {
            size_t take = (uint64_t)n < f->left ? n : (size_t)f->left;
            f->left -= take;
            p += take;
            n -= take;
            continue;
        }
        f->hdr[f->hlen++] = *p++;
        n--;
        if (f->hlen < 2)
            continue;
        unsigned len7 = f->hdr[1] & 0x7f;
        unsigned need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((f->hdr[1] & 0x80) ? 4 : 0);
        if (f->hlen < need)
            continue;
        uint64_t len = len7;
        if (len7 == 126)
            len = (uint64_t)f->hdr[2] << 8 | f->hdr[3];
        else if (len7 == 127)
            for (int i = 0; i < 8; i++)
                len = len << 8 | f->hdr[2 + i];
        f->left = len;
        f->hlen = 0;
    }
}

bool gw_ws_at_boundary(const struct gw_wsframes *f)
{
    return f->left == 0 && f->hlen == 0;
}

void gw_ws_close_frame(struct pc_buf *b, int code, const char *reason)
{
    size_t rn = strlen(reason);
    if (rn > 123)
        rn = 123; /* a control frame's payload is at most 125 bytes */
    unsigned char h[4] = {0x88, (unsigned char)(2 + rn), (unsigned char)(code >> 8),
                          (unsigned char)(code & 0xff)};
    pc_buf_append(b, h, sizeof h);
    pc_buf_append(b, reason, rn);
}

int gw_cut_code(enum gw_cut why)
{
    if (why == GW_CUT_UNVERIFIED)
        return 1012; /* RFC 6455 7.4.1's registry: service restart, come back */
    return why == GW_CUT_REVOKED || why == GW_CUT_EXPIRED ? 4001 : 1001;
}

const char *gw_cut_reason(enum gw_cut why)
{
    switch (why) {
    case GW_CUT_REVOKED: return "credential revoked";
    case GW_CUT_EXPIRED: return "credential expired";
    case GW_CUT_LIFETIME: return "tunnel lifetime reached";
    case GW_CUT_IDLE: return "idle timeout";
    case GW_CUT_SHUTDOWN: return "gateway shutting down";
    case GW_CUT_UNVERIFIED: return "revocations could not be checked; reconnect";
    default: return "";
    }
}

const char *gw_cut_name(enum gw_cut why)
{
    static const char *const names[] = {"", "client", "upstream", "revoked", "expired",
                                        "lifetime", "idle", "shutdown", "unverified"};
    return (size_t)why < PC_ARRAY_LEN(names) ? names[why] : "";
}

/* ---- tunnels per user (the whole process) ---- */

struct user_count {
    struct user_count *next;
    size_t n;
    char id[64];
};

static pthread_mutex_t users_mu = PTHREAD_MUTEX_INITIALIZER;
static struct user_count *users[USER_BUCKETS];

static struct user_count **user_slot(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    struct user_count **pp = &users[h % USER_BUCKETS];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

/* Adds d (+1 or -1) to id's open tunnels; false (nothing added) when +1
 * would pass the cap. */
static bool user_add(const char *id, int d)
{
    pthread_mutex_lock(&users_mu);
    struct user_count **pp = user_slot(id);
    bool ok = true;
    if (d > 0) {
        if (*pp == NULL) {
            *pp = pc_xcalloc(1, sizeof **pp);
            snprintf((*pp)->id, sizeof (*pp)->id, "%s", id);
        }
        ok = (int64_t)(*pp)->n < gw_cfg.max_tunnels_per_user;
        if (ok)
            (*pp)->n++;
    } else if (*pp && --(*pp)->n == 0) {
        struct user_count *dead = *pp;
        *pp = dead->next;
        free(dead);
    }
    if (d > 0 && *pp && (*pp)->n == 0) {
        struct user_count *dead = *pp;
        *pp = dead->next;
        free(dead);
    }
    pthread_mutex_unlock(&users_mu);
    return ok;
}

bool gw_tunnel_over_cap(const struct gw_request *r)
{
    if ((int64_t)r->w->streams->ntunnels >= gw_cfg.max_tunnels)
        return true;
    if (!r->p.found || r->p.user_id[0] == '\0' || gw_cfg.max_tunnels_per_user == 0)
        return false;
    pthread_mutex_lock(&users_mu);
    struct user_count **pp = user_slot(r->p.user_id);
    bool over = *pp && (int64_t)(*pp)->n >= gw_cfg.max_tunnels_per_user;
    pthread_mutex_unlock(&users_mu);
    return over;
}

/* ---- the index ---- */

static size_t bucket_of(const unsigned char key[32])
{
    size_t b;
    memcpy(&b, key, sizeof b);
    return b % BUCKETS;
}

static void link_add(struct gw_streams *ss, struct gw_stream *s, const unsigned char key[32])
{
    struct gw_stream_link *l = &s->link[s->nlinks++];
    memcpy(l->key, key, 32);
    l->s = s;
    struct gw_stream_link **head = &ss->bucket[bucket_of(key)];
    l->next = *head;
    l->pprev = head;
    if (*head)
        (*head)->pprev = &l->next;
    *head = l;
}

void gw_stream_sid_key(const char *sid, size_t n, unsigned char key[32])
{
    char buf[4 + 128];
    if (n > 128)
        n = 128;
    memcpy(buf, "sid:", 4);
    memcpy(buf + 4, sid, n);
    pc_sha256((const unsigned char *)buf, 4 + n, key);
}

/* s's timer at the first of its cut and the end of its idle window. */
static void arm(struct gw_stream *s)
{
    int64_t us = INT64_MAX;
    if (s->cut_at_ms > 0)
        us = (s->cut_at_ms - pc_now_ms()) * 1000;
    if (s->idle_us > 0 && s->active_us + s->idle_us - pc_mono_us() < us)
        us = s->active_us + s->idle_us - pc_mono_us();
    if (us == INT64_MAX)
        return;
    if (us < 0)
        us = 0;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    event_add(s->timer, &tv);
}

/* A session's expiry being read again; outlives its stream when the
 * stream ends first (s NULL then: the answer is dropped). */
struct gw_recheck {
    struct gw_stream *s;
};

static void on_recheck(void *arg, int64_t at_ms, bool answered)
{
    struct gw_recheck *rc = arg;
    struct gw_stream *s = rc->s;
    free(rc);
    if (s == NULL)
        return;
    s->recheck = NULL;
    if (!answered || at_ms <= pc_now_ms()) {
        gw_proxy_cut(s, GW_CUT_EXPIRED);
        return;
    }
    s->r->p.expires_at = at_ms; /* slid: a refresh happened elsewhere */
    s->cut_at_ms = at_ms;
    int64_t life = s->tunnel ? s->r->route->tunnel_lifetime_s : 0;
    if (life > 0) {
        int64_t end = pc_now_ms() + (s->opened_us + life * 1000000 - pc_mono_us()) / 1000;
        if (end < at_ms) {
            s->cut_at_ms = end;
            s->timer_cut = GW_CUT_LIFETIME;
        }
    }
    arm(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct gw_stream *s = arg;
    if (s->cut_at_ms > 0 && pc_now_ms() >= s->cut_at_ms) {
        if (s->timer_cut == GW_CUT_EXPIRED && s->r->kind == GW_CRED_SESSION) {
            if (s->recheck == NULL) {
                s->recheck = pc_xcalloc(1, sizeof *s->recheck);
                s->recheck->s = s;
                gw_pg_session_expiry(s->r->w, s->r->p.cred_id, on_recheck, s->recheck);
            }
            return;
        }
        gw_proxy_cut(s, s->timer_cut);
        return;
    }
    int64_t now = pc_mono_us();
    if (s->idle_us > 0 && now - s->active_us >= s->idle_us) {
        if (gw_proxy_tunnel_idle(s))
            return;
        s->active_us = now; /* held by something else: look again a window later */
    }
    arm(s);
}

void gw_stream_open(struct gw_stream *s, struct gw_request *r, bool tunnel)
{
    struct gw_streams *ss = r->w->streams;
    memset(s, 0, sizeof *s);
    s->r = r;
    s->open = true;
    s->tunnel = tunnel;
    s->opened_us = pc_mono_us();
    s->next = ss->list;
    if (ss->list)
        ss->list->prev = s;
    ss->list = s;
    if (r->kind == GW_CRED_SESSION || r->kind == GW_CRED_API_KEY)
        link_add(ss, s, r->hash);
    if ((r->kind == GW_CRED_SESSION || r->kind == GW_CRED_JWT) && r->p.cred_id[0]) {
        unsigned char k[32];
        gw_stream_sid_key(r->p.cred_id, strlen(r->p.cred_id), k);
        link_add(ss, s, k);
    }
    if (tunnel) {
        ss->ntunnels++;
        GW_STAT_INC(tunnels_open);
        GW_STAT_INC(tunnels_opened);
        if (r->p.found && r->p.user_id[0] && gw_cfg.max_tunnels_per_user > 0)
            s->user_counted = user_add(r->p.user_id, 1);
    } else {
        GW_STAT_INC(streams_open);
    }
    /* the first of: the credential's expiry, the tunnel's lifetime; and
     * for a tunnel, the end of its idle window */
    int64_t now_ms = pc_now_ms(), at = 0;
    if (r->kind != GW_CRED_NONE && r->p.found && r->p.expires_at > 0) {
        at = r->p.expires_at;
        s->timer_cut = GW_CUT_EXPIRED;
    }
    int64_t life = tunnel ? r->route->tunnel_lifetime_s : 0;
    if (life > 0 && (at == 0 || now_ms + life * 1000 < at)) {
        at = now_ms + life * 1000;
        s->timer_cut = GW_CUT_LIFETIME;
    }
    s->cut_at_ms = at;
    if (tunnel) {
        int64_t ms = r->route->tunnel_idle_ms;
        s->idle_us = (ms > 0 ? ms : gw_cfg.read_timeout * 1000) * 1000;
        s->active_us = s->opened_us;
    }
    if (at > 0 || s->idle_us > 0) {
        s->timer = event_new(r->w->base, -1, 0, on_timer, s);
        if (s->timer == NULL)
            pc_fatal("event_new failed");
        arm(s);
    }
}

void gw_stream_close(struct gw_stream *s, enum gw_cut why)
{
    if (!s->open)
        return;
    s->open = false;
    s->cut = why;
    struct gw_request *r = s->r;
    r->closed_by = gw_cut_name(why);
    r->tunnel = s->tunnel;
    r->bytes_up = s->bytes_up;
    r->bytes_down = s->bytes_down;
    struct gw_streams *ss = r->w->streams;
    for (unsigned i = 0; i < s->nlinks; i++) {
        struct gw_stream_link *l = &s->link[i];
        *l->pprev = l->next;
        if (l->next)
            l->next->pprev = l->pprev;
    }
    s->nlinks = 0;
    if (s->prev)
        s->prev->next = s->next;
    else
        ss->list = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->timer)
        event_free(s->timer);
    s->timer = NULL;
    if (s->recheck)
        s->recheck->s = NULL; /* its answer finds the stream gone */
    s->recheck = NULL;
    if (s->tunnel) {
        ss->ntunnels--;
        __atomic_sub_fetch(&gw_stats.tunnels_open, 1, __ATOMIC_RELAXED);
        if (s->user_counted)
            (void)user_add(s->r->p.user_id, -1);
    } else {
        __atomic_sub_fetch(&gw_stats.streams_open, 1, __ATOMIC_RELAXED);
    }
    if (why == GW_CUT_REVOKED)
        GW_STAT_INC(streams_cut_revoked);
    else if (why == GW_CUT_EXPIRED)
        GW_STAT_INC(streams_cut_expired);
    else if (why == GW_CUT_UNVERIFIED)
        GW_STAT_INC(streams_cut_unverified);
}

/* ---- the feed ---- */

/* The first open stream under key, or NULL. */
static struct gw_stream *find(struct gw_streams *ss, const unsigned char key[32])
{
    for (struct gw_stream_link *l = ss->bucket[bucket_of(key)]; l; l = l->next)
        if (memcmp(l->key, key, 32) == 0)
            return l->s;
    return NULL;
}

static void on_revoked(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    struct gw_streams *ss = w->streams;
    pthread_mutex_lock(&ss->mu);
    unsigned char (*q)[32] = ss->queue;
    size_t n = ss->nq;
    int64_t before = ss->cut_before_us;
    ss->queue = NULL;
    ss->nq = ss->capq = 0;
    ss->cut_before_us = 0;
    pthread_mutex_unlock(&ss->mu);
    for (struct gw_stream *s = ss->list, *next; before && s; s = next) {
        next = s->next;
        /* an anonymous stream has nothing a revocation could end */
        if (s->r->start_us < before && s->r->kind != GW_CRED_NONE)
            gw_proxy_cut(s, GW_CUT_UNVERIFIED);
    }
    for (size_t i = 0; i < n; i++) {
        struct gw_stream *s;
        /* each cut takes the stream out of the index: look again */
        while ((s = find(ss, q[i])) != NULL)
            gw_proxy_cut(s, GW_CUT_REVOKED);
    }
    free(q);
}

void gw_streams_revoked(const unsigned char key[32])
{
    for (size_t i = 0; i < WORKERS_MAX; i++) {
        struct gw_streams *ss = registry[i];
        if (ss == NULL)
            continue;
        pthread_mutex_lock(&ss->mu);
        if (ss->nq == ss->capq && ss->capq < QUEUE_MAX) {
            ss->capq = ss->capq ? ss->capq * 2 : 16;
            ss->queue = pc_xrealloc(ss->queue, ss->capq * sizeof *ss->queue);
        }
        if (ss->nq < ss->capq)
            memcpy(ss->queue[ss->nq++], key, 32);
        else
            pc_log_error("revocations: worker %u has %u queued; one dropped", ss->worker,
                         QUEUE_MAX);
        pthread_mutex_unlock(&ss->mu);
        event_active(ss->ev, EV_READ, 0);
    }
}

void gw_streams_cut_all(int64_t before_us)
{
    for (size_t i = 0; i < WORKERS_MAX; i++) {
        struct gw_streams *ss = registry[i];
        if (ss == NULL)
            continue;
        pthread_mutex_lock(&ss->mu);
        if (before_us > ss->cut_before_us)
            ss->cut_before_us = before_us;
        pthread_mutex_unlock(&ss->mu);
        event_active(ss->ev, EV_READ, 0);
    }
}

void gw_streams_drain(struct gw_worker *w)
{
    struct gw_streams *ss = w->streams;
    for (struct gw_stream *s = ss->list, *next; s; s = next) {
        next = s->next;
        if (s->tunnel)
            gw_proxy_cut(s, GW_CUT_SHUTDOWN);
    }
}

void gw_streams_init(struct gw_worker *w)
{
    struct gw_streams *ss = pc_xcalloc(1, sizeof *ss);
    pthread_mutex_init(&ss->mu, NULL);
    ss->ev = event_new(w->base, -1, 0, on_revoked, w);
    if (ss->ev == NULL)
        pc_fatal("event_new failed");
    ss->worker = w->id;
    w->streams = ss;
    if (w->id < WORKERS_MAX)
        registry[w->id] = ss;
}

void gw_streams_stop(struct gw_worker *w)
{
    struct gw_streams *ss = w->streams;
    if (ss == NULL)
        return;
    if (w->id < WORKERS_MAX)
        registry[w->id] = NULL;
    event_free(ss->ev);
    pthread_mutex_destroy(&ss->mu);
    free(ss->queue);
    free(ss);
    w->streams = NULL;
}
