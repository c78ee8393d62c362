/* Portcullis - MIT licence. See LICENSE.
 *
 * redis_sentinel.c: the watcher thread behind redis_sentinel.h. It holds two
 * connections to one sentinel: q for SENTINEL get-master-addr-by-name, s
 * subscribed to +switch-master and read with poll() so the thread can stop,
 * re-ask on suspicion and re-ask every ASK_EVERY_MS. When its sentinel fails
 * it moves to the next one in the list.
 */
#include "redis_sentinel.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/hiredis.h>

#define ASK_EVERY_MS 5000       /* ask even without news */
#define POLL_MS 100             /* how often the thread looks at stop/suspect */
#define RETRY_MS 500            /* no sentinel answered: wait, then try them all again */
#define TIMEOUT_MS 500          /* connect and command timeout on a sentinel */

struct hp {
    char host[256];
    int port;
};

static struct {
    bool on;
    struct hp sentinel[PC_SENTINELS_MAX];
    size_t n;
    char master_name[128];
    char password[256];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hp master;           /* under mu */
    bool known;                 /* under mu */
    uint64_t gen;               /* atomic: bumped on every master change */
    int stop;                   /* atomic */
    int suspect;                /* atomic */
} W = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* ---- the configuration ---- */

/* "host:port" or "[v6]:port" (n bytes) into *out. */
static bool parse_hp(const char *s, size_t n, struct hp *out)
{
    const char *colon = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ':')
            colon = s + i;
    if (colon == NULL || colon == s)
        return false;
    const char *h = s;
    size_t hn = (size_t)(colon - s);
    if (h[0] == '[') {
        if (hn < 3 || h[hn - 1] != ']')
            return false;
        h++;
        hn -= 2;
    }
    if (hn == 0 || hn >= sizeof out->host || memchr(h, ' ', hn))
        return false;
    char port[8];
    size_t pn = n - (size_t)(colon + 1 - s);
    if (pn == 0 || pn >= sizeof port)
        return false;
    memcpy(port, colon + 1, pn);
    port[pn] = '\0';
    int64_t p;
    if (pc_parse_int64(port, 1, 65535, &p) != 0)
        return false;
    memcpy(out->host, h, hn);
    out->host[hn] = '\0';
    out->port = (int)p;
    return true;
}

/* Splits list into out (n set); false on a bad entry or too many. */
static bool parse_list(const char *list, struct hp *out, size_t *n)
{
    *n = 0;
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        while (len > 0 && p[len - 1] == ' ')
            len--;
        if (len == 0)
            break;
        if (*n == PC_SENTINELS_MAX || !parse_hp(p, len, &out[*n]))
            return false;
        (*n)++;
        p += len;
    }
    return true;
}

int pc_conf_check_sentinels(const char *v, const char **err)
{
    struct hp tmp[PC_SENTINELS_MAX];
    size_t n;
    if (!parse_list(v, tmp, &n)) {
        *err = "must be host:port,... (at most 16; [v6]:port for IPv6)";
        return -1;
    }
    return 0;
}

int pc_conf_check_sentinel_master(const char *v, const char **err)
{
    size_t n = strlen(v);
    bool ok = n > 0 && n < sizeof W.master_name;
    for (size_t i = 0; ok && i < n; i++)
        ok = v[i] > ' ' && v[i] < 0x7f;
    if (!ok) {
        *err = "must be a Sentinel master name: printable, no spaces, at most 127 characters";
        return -1;
    }
    return 0;
}

/* ---- the master (any thread) ---- */

bool pc_sentinel_on(void)
{
    return W.on;
}

bool pc_sentinel_resolve(const struct pc_redis_addr *configured, struct pc_redis_addr *out,
                         uint64_t *gen)
{
    *out = *configured;
    if (!W.on) {
        if (gen)
            *gen = 0;
        return true;
    }
    pthread_mutex_lock(&W.mu);
    bool known = W.known;
    if (known) {
        snprintf(out->host, sizeof out->host, "%s", W.master.host);
        out->port = W.master.port;
        out->path[0] = '\0';
    }
    if (gen)
        *gen = __atomic_load_n(&W.gen, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&W.mu);
    return known;
}

bool pc_sentinel_moved(uint64_t gen)
{
    return W.on && __atomic_load_n(&W.gen, __ATOMIC_ACQUIRE) != gen;
}

void pc_sentinel_suspect(void)
{
    if (W.on)
        __atomic_store_n(&W.suspect, 1, __ATOMIC_RELEASE);
}

bool pc_redis_reply_readonly(const char *errstr, size_t n)
{
    return n >= 8 && memcmp(errstr, "READONLY", 8) == 0;
}

static void set_master(const char *host, size_t hn, int port, const char *how)
{
    if (hn == 0 || hn >= sizeof W.master.host || port <= 0 || port > 65535)
        return;
    pthread_mutex_lock(&W.mu);
    bool changed = !W.known || W.master.port != port || strlen(W.master.host) != hn ||
                   memcmp(W.master.host, host, hn) != 0;
    if (changed) {
        memcpy(W.master.host, host, hn);
        W.master.host[hn] = '\0';
        W.master.port = port;
        W.known = true;
        __atomic_add_fetch(&W.gen, 1, __ATOMIC_ACQ_REL);
        pthread_cond_broadcast(&W.cv);
    }
    pthread_mutex_unlock(&W.mu);
    if (changed)
        pc_log_info("redis: master %s is %.*s:%d (%s)", W.master_name, (int)hn, host, port, how);
}

/* ---- talking to a sentinel (the watcher thread) ---- */

static redisContext *sentinel_connect(const struct hp *s)
{
    struct timeval tv = {0, TIMEOUT_MS * 1000};
    redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (W.password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", W.password);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            pc_log_warn("redis: sentinel %s:%d refused AUTH", s->host, s->port);
            redisFree(c);
            return NULL;
        }
    }
    return c;
}

/* SENTINEL get-master-addr-by-name: true when it answered with an address. */
static bool ask(redisContext *q)
{
    redisReply *r = redisCommand(q, "SENTINEL get-master-addr-by-name %s", W.master_name);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              r->element[1]->type == REDIS_REPLY_STRING;
    int64_t port = 0;
    ok = ok && pc_parse_int64(r->element[1]->str, 1, 65535, &port) == 0;
    if (ok)
        set_master(r->element[0]->str, r->element[0]->len, (int)port, "asked");
    if (r)
        freeReplyObject(r);
    return ok;
}

/* "+switch-master" payload: "<name> <old-ip> <old-port> <new-ip> <new-port>". */
static void on_switch(const char *m, size_t n)
{
    const char *f[5];
    size_t fl[5], k = 0;
    for (size_t i = 0; i < n && k < 5;) {
        while (i < n && m[i] == ' ')
            i++;
        size_t j = i;
        while (j < n && m[j] != ' ')
            j++;
        if (j > i) {
            f[k] = m + i;
            fl[k++] = j - i;
        }
        i = j;
    }
    if (k != 5 || fl[0] != strlen(W.master_name) || memcmp(f[0], W.master_name, fl[0]) != 0)
        return;
    char port[8];
    int64_t p;
    if (fl[4] >= sizeof port)
        return;
    memcpy(port, f[4], fl[4]);
    port[fl[4]] = '\0';
    if (pc_parse_int64(port, 1, 65535, &p) == 0)
        set_master(f[3], fl[3], (int)p, "+switch-master");
}

static bool stopping(void)
{
    return __atomic_load_n(&W.stop, __ATOMIC_ACQUIRE) != 0;
}

/* Listens on s until the sentinel fails or the thread stops; asks on q
 * every ASK_EVERY_MS and on suspicion. */
static void listen_on(redisContext *q, redisContext *s)
{
    redisReply *r = redisCommand(s, "SUBSCRIBE +switch-master");
    if (r == NULL)
        return;
    freeReplyObject(r);
    int64_t next_ask = pc_mono_us() / 1000 + ASK_EVERY_MS;
    while (!stopping()) {
        void *rep = NULL;
        if (redisGetReplyFromReader(s, &rep) != REDIS_OK)
            return;
        if (rep) {
            redisReply *m = rep;
            if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
                m->element[2]->type == REDIS_REPLY_STRING)
                on_switch(m->element[2]->str, m->element[2]->len);
            freeReplyObject(m);
            continue;
        }
        int64_t now = pc_mono_us() / 1000;
        if (__atomic_exchange_n(&W.suspect, 0, __ATOMIC_ACQ_REL) || now >= next_ask) {
            if (!ask(q))
                return;
            next_ask = now + ASK_EVERY_MS;
        }
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, POLL_MS);
        if (pr < 0 && errno != EINTR)
            return;
        if (pr > 0 && redisBufferRead(s) != REDIS_OK)
            return;
    }
}

static void nap(int ms)
{
    for (int t = 0; t < ms && !stopping(); t += POLL_MS) {
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void *watch_main(void *arg)
{
    (void)arg;
    size_t cur = 0;
    bool told = false;
    while (!stopping()) {
        redisContext *q = NULL, *s = NULL;
        for (size_t k = 0; k < W.n && q == NULL && !stopping(); k++) {
            size_t i = (cur + k) % W.n;
            q = sentinel_connect(&W.sentinel[i]);
            if (q && !ask(q)) {
                redisFree(q);
                q = NULL;
            }
            if (q)
                cur = i;
        }
        if (q)
            s = sentinel_connect(&W.sentinel[cur]);
        if (q && s) {
            told = false;
            listen_on(q, s);
            pc_log_warn("redis: lost sentinel %s:%d; asking the others",
                        W.sentinel[cur].host, W.sentinel[cur].port);
            cur = (cur + 1) % W.n;
        } else if (!told && !stopping()) {
            pc_log_warn("redis: no sentinel of %zu knows master %s; retrying", W.n,
                        W.master_name);
            told = true;
        }
        if (q)
            redisFree(q);
        if (s)
            redisFree(s);
        nap(RETRY_MS);
    }
    return NULL;
}

void pc_sentinel_start(const char *list, const char *master, const char *password,
                       int64_t wait_ms)
{
    if (list == NULL || list[0] == '\0')
        return;
    if (!parse_list(list, W.sentinel, &W.n) || W.n == 0)
        pc_fatal("validated REDIS_SENTINELS failed to parse");
    snprintf(W.master_name, sizeof W.master_name, "%s", master);
    snprintf(W.password, sizeof W.password, "%s", password ? password : "");
    W.on = true;
    if (pthread_create(&W.thread, NULL, watch_main, NULL) != 0)
        pc_fatal("pthread_create failed");
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&W.mu);
    while (!W.known)
        if (pthread_cond_timedwait(&W.cv, &W.mu, &until) != 0)
            break;
    bool known = W.known;
    pthread_mutex_unlock(&W.mu);
    if (!known)
        pc_log_warn("redis: no sentinel answered for master %s within %lld ms; starting "
                    "without Redis until one does", W.master_name, (long long)wait_ms);
}

void pc_sentinel_stop(void)
{
    if (!W.on)
        return;
    __atomic_store_n(&W.stop, 1, __ATOMIC_RELEASE);
    pthread_join(W.thread, NULL);
    W.on = false;
    memset(W.password, 0, sizeof W.password);
}
