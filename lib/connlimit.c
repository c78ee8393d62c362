/* Portcullis - MIT licence. See LICENSE.
 *
 * connlimit.c: a chained hash of address -> open connections, one mutex
 * (taken once per accept and once per close, never per request).
 */
#include "connlimit.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define NBUCKETS 4096

struct ipent {
    struct pc_ipkey k;
    int64_t n;
    struct ipent *next;
};

struct pc_iptable {
    pthread_mutex_t mu;
    struct ipent *b[NBUCKETS];
    size_t naddr;
    uint32_t seed;
};

bool pc_ipkey_from(const struct sockaddr *sa, struct pc_ipkey *k, char *text, size_t textsz)
{
    memset(k, 0, sizeof *k);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        k->a[10] = k->a[11] = 0xff;
        memcpy(k->a + 12, &s4->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(k->a, &s6->sin6_addr, 16);
    } else {
        if (textsz)
            text[0] = '\0';
        return false;
    }
    if (textsz) {
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(k->a, mapped, 12) == 0) {
            if (inet_ntop(AF_INET, k->a + 12, text, (socklen_t)textsz) == NULL)
                text[0] = '\0';
        } else if (inet_ntop(AF_INET6, k->a, text, (socklen_t)textsz) == NULL) {
            text[0] = '\0';
        }
    }
    return true;
}

bool pc_conn_fresh(int fd, unsigned ms)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return false;
    return ti.tcpi_last_ack_recv <= ms;
}

struct pc_iptable *pc_iptable_new(void)
{
    struct pc_iptable *t = pc_xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    t->seed = (uint32_t)random() | 1u;
    return t;
}

void pc_iptable_free(struct pc_iptable *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct ipent *e = t->b[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static size_t bucket(const struct pc_iptable *t, const struct pc_ipkey *k)
{
    uint32_t h = 2166136261u ^ t->seed;
    for (size_t i = 0; i < sizeof k->a; i++)
        h = (h ^ k->a[i]) * 16777619u;
    return h % NBUCKETS;
}

bool pc_iptable_acquire(struct pc_iptable *t, const struct pc_ipkey *k, int64_t max)
{
    size_t i = bucket(t, k);
    bool ok = true;
    pthread_mutex_lock(&t->mu);
    struct ipent *e = t->b[i];
    while (e && memcmp(&e->k, k, sizeof *k) != 0)
        e = e->next;
    if (e == NULL) {
        e = pc_xcalloc(1, sizeof *e);
        e->k = *k;
        e->next = t->b[i];
        t->b[i] = e;
        t->naddr++;
    }
    if (max > 0 && e->n >= max)
        ok = false; /* e->n >= max > 0: the entry stays */
    else
        e->n++;
    pthread_mutex_unlock(&t->mu);
    return ok;
}

void pc_iptable_release(struct pc_iptable *t, const struct pc_ipkey *k)
{
    size_t i = bucket(t, k);
    pthread_mutex_lock(&t->mu);
    for (struct ipent **pp = &t->b[i], *e; (e = *pp) != NULL; pp = &e->next) {
        if (memcmp(&e->k, k, sizeof *k) != 0)
            continue;
        if (--e->n <= 0) {
            *pp = e->next;
            free(e);
            t->naddr--;
        }
        break;
    }
    pthread_mutex_unlock(&t->mu);
}

size_t pc_iptable_addresses(struct pc_iptable *t)
{
    pthread_mutex_lock(&t->mu);
    size_t n = t->naddr;
    pthread_mutex_unlock(&t->mu);
    return n;
}
