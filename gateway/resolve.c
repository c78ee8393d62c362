/* Portcullis - MIT licence. See LICENSE.
 *
 * resolve.c: upstream host names, resolved off the event loop (upstream.h).
 * An upstream whose host is an IP address is never resolved (routes_file.c
 * parsed it). For a name, each worker has one evdns resolver on its loop
 * (GATEWAY_RESOLVER's name servers, else /etc/resolv.conf's, with its
 * search list) and each of its pools keeps the name's addresses:
 *
 *   hosts     /etc/hosts first, as the C library would: a name found there
 *             is answered at once, and looked up there again after
 *             HOSTS_VALID_S (no network; the file is read at start).
 *   DNS       otherwise A and AAAA queries; the addresses are kept for the
 *             smallest TTL of the answer (at least 1 s, at most TTL_MAX_S),
 *             then resolved again in the background while the old ones
 *             still serve. IPv4 addresses when there are any, else IPv6;
 *             new connections take them in turn.
 *   failure   a name with no address: the exchanges waiting for it go on to
 *             the route's next target or fail (proxy.c); it is asked again
 *             after RETRY_S, old addresses (if any) still used meanwhile.
 *   change    when the addresses change, the pool's generation moves on:
 *             idle connections to the old ones are closed, busy ones are
 *             not reused.
 *
 * Everything runs on the pool's worker's loop.
 */
#include "upstream.h"
#include "proxy.h"

#include "../lib/log.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <event2/dns.h>
#include <event2/util.h>

#define HOSTS_VALID_S 60
#define TTL_MAX_S 3600
#define RETRY_S 1
#define ADDRS_MAX 16

struct gw_upres {
    struct gw_uppool *p;
    struct sockaddr_storage addr[ADDRS_MAX];   /* in use */
    socklen_t len[ADDRS_MAX];
    unsigned n, next;
    int64_t expires_us;             /* resolve again from then on */
    bool resolving;                 /* A/AAAA queries out */
    bool dns_only;                  /* not in /etc/hosts: straight to DNS */
    bool failed_logged;             /* the last failure was logged */
    bool in_probe, probe_done;      /* the hosts lookup (evdns_getaddrinfo) */
    bool done4, done6;
    struct sockaddr_storage fresh4[ADDRS_MAX], fresh6[ADDRS_MAX];
    unsigned n4, n6;
    int ttl, err;
};

static bool same_addrs(const struct gw_upres *s, const struct sockaddr_storage *a,
                       const socklen_t *len, unsigned n)
{
    if (n != s->n)
        return false;
    for (unsigned i = 0; i < n; i++)
        if (len[i] != s->len[i] || memcmp(&a[i], &s->addr[i], len[i]) != 0)
            return false;
    return true;
}

/* The addresses a[0..n) are the name's for valid_s seconds. */
static void install(struct gw_upres *s, const struct sockaddr_storage *a, const socklen_t *len,
                    unsigned n, int valid_s)
{
    struct gw_uppool *p = s->p;
    if (!same_addrs(s, a, len, n)) {
        if (s->n)
            pc_log_info("upstream %s: %s now resolves to %u address%s", p->up->url, p->up->host,
                        n, n == 1 ? "" : "es");
        memcpy(s->addr, a, n * sizeof *a);
        memcpy(s->len, len, n * sizeof *len);
        s->n = n;
        s->next = 0;
        p->gen++;
        while (p->idle) {
            struct upconn *c = p->idle;
            p->idle = c->next;
            gw_upconn_close(c);
        }
    }
    s->failed_logged = false;
    s->expires_us = pc_mono_us() + (int64_t)valid_s * 1000000;
}

static void failed(struct gw_upres *s, const char *why)
{
    if (!s->failed_logged)
        pc_log_warn("upstream %s: cannot resolve %s: %s%s", s->p->up->url, s->p->up->host, why,
                    s->n ? " (the last addresses are still used)" : "");
    s->failed_logged = true;
    s->expires_us = pc_mono_us() + RETRY_S * 1000000LL;
}

/* Both queries answered. */
static void dns_done(struct gw_upres *s)
{
    s->resolving = false;
    bool v4 = s->n4 > 0;
    unsigned n = v4 ? s->n4 : s->n6;
    if (n == 0) {
        failed(s, evdns_err_to_string(s->err ? s->err : DNS_ERR_NOTEXIST));
    } else {
        socklen_t len[ADDRS_MAX];
        for (unsigned i = 0; i < n; i++)
            len[i] = v4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        int ttl = s->ttl < 1 ? 1 : s->ttl > TTL_MAX_S ? TTL_MAX_S : s->ttl;
        install(s, v4 ? s->fresh4 : s->fresh6, len, n, ttl);
    }
    gw_proxy_resolved(s->p);
}

/* One query's answer (v6: the AAAA one). evdns gives no type on a
 * failure, hence one callback per query. */
static void on_answer(struct gw_upres *s, bool v6, int result, int count, int ttl,
                      const void *addresses)
{
    uint16_t port = htons((uint16_t)s->p->up->port);
    for (int i = 0; result == DNS_ERR_NONE && i < count; i++) {
        if (!v6 && s->n4 < ADDRS_MAX) {
            struct sockaddr_in *a = (struct sockaddr_in *)&s->fresh4[s->n4++];
            memset(a, 0, sizeof *a);
            a->sin_family = AF_INET;
            a->sin_port = port;
            memcpy(&a->sin_addr, (const char *)addresses + 4 * i, 4);
        } else if (v6 && s->n6 < ADDRS_MAX) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&s->fresh6[s->n6++];
            memset(a, 0, sizeof *a);
            a->sin6_family = AF_INET6;
            a->sin6_port = port;
            memcpy(&a->sin6_addr, (const char *)addresses + 16 * i, 16);
        }
    }
    if (result == DNS_ERR_NONE && count > 0 && ttl < s->ttl)
        s->ttl = ttl;
    /* "no such name" says less than a timeout or a refusal */
    if (result != DNS_ERR_NONE && (s->err == 0 || s->err == DNS_ERR_NOTEXIST))
        s->err = result;
    if (v6)
        s->done6 = true;
    else
        s->done4 = true;
    if (s->done4 && s->done6)
        dns_done(s);
}

static void on_a(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    (void)type;
    on_answer(arg, false, result, count, ttl, addresses);
}

static void on_aaaa(int result, char type, int count, int ttl, void *addresses, void *arg)
{
    (void)type;
    on_answer(arg, true, result, count, ttl, addresses);
}

/* evdns_getaddrinfo's answer: at once from /etc/hosts (in_probe), or a
 * cancelled DNS lookup (ignored: the A/AAAA queries are ours). */
static void on_hosts(int err, struct evutil_addrinfo *ai, void *arg)
{
    struct gw_upres *s = arg;
    if (!s->in_probe) {
        if (ai)
            evutil_freeaddrinfo(ai);
        return;
    }
    s->probe_done = true;
    struct sockaddr_storage a[ADDRS_MAX];
    socklen_t len[ADDRS_MAX];
    unsigned n = 0;
    for (int pass = 0; pass < 2 && n == 0; pass++) {
        for (struct evutil_addrinfo *x = err == 0 ? ai : NULL; x && n < ADDRS_MAX; x = x->ai_next) {
            if (x->ai_family != (pass == 0 ? AF_INET : AF_INET6) ||
                x->ai_addrlen > sizeof a[0])
                continue;
            memcpy(&a[n], x->ai_addr, x->ai_addrlen);
            len[n] = (socklen_t)x->ai_addrlen;
            if (pass == 0)
                ((struct sockaddr_in *)&a[n])->sin_port = htons((uint16_t)s->p->up->port);
            else
                ((struct sockaddr_in6 *)&a[n])->sin6_port = htons((uint16_t)s->p->up->port);
            n++;
        }
    }
    if (ai)
        evutil_freeaddrinfo(ai);
    if (n)
        install(s, a, len, n, HOSTS_VALID_S);
    else
        failed(s, err ? evutil_gai_strerror(err) : "no address");
}

/* Starts resolving s's name unless it is already: at once from
 * /etc/hosts, or A and AAAA queries. */
static void resolve(struct gw_upres *s)
{
    if (s->resolving)
        return;
    struct evdns_base *dns = s->p->w->dns;
    const char *host = s->p->up->host;
    if (!s->dns_only) {
        struct evutil_addrinfo hints = {0};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        s->in_probe = true;
        s->probe_done = false;
        struct evdns_getaddrinfo_request *q = evdns_getaddrinfo(dns, host, NULL, &hints, on_hosts, s);
        s->in_probe = false;
        if (q == NULL)
            return; /* answered (on_hosts ran): from the hosts file, or a failure */
        /* not in /etc/hosts: from now on our own queries, which carry TTLs */
        evdns_getaddrinfo_cancel(q);
        s->dns_only = true;
    }
    s->resolving = true;
    s->done4 = s->done6 = false;
    s->n4 = s->n6 = 0;
    s->ttl = INT_MAX;
    s->err = 0;
    if (evdns_base_resolve_ipv4(dns, host, 0, on_a, s) == NULL && !s->done4) {
        s->done4 = true;
        s->err = DNS_ERR_UNKNOWN;
    }
    if (!s->resolving)
        return;
    if (evdns_base_resolve_ipv6(dns, host, 0, on_aaaa, s) == NULL && !s->done6) {
        s->done6 = true;
        s->err = s->err ? s->err : DNS_ERR_UNKNOWN;
        if (s->done4)
            dns_done(s);
    }
}

void gw_upstream_fresh(struct gw_uppool *p)
{
    if (p->res && pc_mono_us() >= p->res->expires_us)
        resolve(p->res);
}

int gw_upstream_addr(struct gw_uppool *p, struct sockaddr_storage *sa, socklen_t *len)
{
    const struct gw_upstream *up = p->up;
    if (up->numeric) {
        memcpy(sa, &up->addr, up->addrlen);
        *len = up->addrlen;
        return 1;
    }
    struct gw_upres *s = p->res;
    if (pc_mono_us() >= s->expires_us)
        resolve(s);
    if (s->n) {
        unsigned i = s->next++ % s->n;
        memcpy(sa, &s->addr[i], s->len[i]);
        *len = s->len[i];
        return 1;
    }
    return s->resolving ? 0 : -1;
}

/* evdns's own diagnostics, at debug level. */
static void evdns_log(int is_warn, const char *msg)
{
    if (is_warn)
        pc_log_debug("evdns: %s", msg);
}

/* w's resolver, made with the first upstream that has a name. */
static void dns_base(struct gw_worker *w)
{
    if (w->dns)
        return;
    evdns_set_log_fn(evdns_log);
    bool own = gw_cfg.resolver && gw_cfg.resolver[0];
    w->dns = evdns_base_new(w->base, own ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (w->dns == NULL) /* no usable /etc/resolv.conf: libevent's default is 127.0.0.1 */
        w->dns = evdns_base_new(w->base, 0);
    if (w->dns == NULL)
        pc_fatal("evdns_base_new failed");
    if (own) {
        char one[80];
        for (const char *p = gw_cfg.resolver; *p;) {
            size_t n = strcspn(p, ",");
            memcpy(one, p, n); /* checked at start: shorter than one */
            one[n] = '\0';
            if (evdns_base_nameserver_ip_add(w->dns, one) != 0)
                pc_fatal("GATEWAY_RESOLVER: cannot use %s", one);
            p += n + (p[n] == ',');
        }
    }
    evdns_base_load_hosts(w->dns, NULL);
}

void gw_resolve_pool(struct gw_worker *w, struct gw_uppool *p)
{
    if (p->up->numeric)
        return;
    dns_base(w);
    p->res = pc_xcalloc(1, sizeof *p->res);
    p->res->p = p;
    resolve(p->res);
}

void gw_resolve_stop(struct gw_worker *w)
{
    if (w->dns == NULL)
        return;
    evdns_base_free(w->dns, 0);
    w->dns = NULL;
    for (size_t i = 0; i < w->npools; i++) {
        free(w->pools[i].res);
        w->pools[i].res = NULL;
    }
}
