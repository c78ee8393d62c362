/* Portcullis - MIT licence. See LICENSE.
 *
 * flight.c: concurrent PostgreSQL misses for one credential share one
 * query, across all workers (store.h). The first request to miss starts a
 * flight (keyed by the credential hash) and queries; later ones join it.
 * When the answer comes, L1 is filled (negatively for an unknown
 * credential, so a flood of random keys costs one query per distinct key),
 * every waiter gets a copy of the outcome and is woken on its own worker's
 * loop (gw_wake).
 *
 * Lock: flights_mu guards the table, taken once to join and once to land;
 * L1's own lock is taken inside it (join looks L1 up under it, so a request
 * that finds no flight finds the answer in L1 instead). Waiters are parked
 * (gw_park) under it too, before another thread can wake them.
 */
#include "store.h"
#include "request.h"
#include "cache.h"

#include <stdlib.h>
#include <string.h>

struct flight {
    struct flight *next;            /* hash chain */
    unsigned char hash[32];
    struct gw_request *waiters;     /* linked through next_wake */
    uint64_t epoch;                 /* gw_l1_epoch() when the leader's lookup began */
};

#define FLIGHT_BUCKETS 1024
static pthread_mutex_t flights_mu = PTHREAD_MUTEX_INITIALIZER;
static struct flight *flights[FLIGHT_BUCKETS];

void gw_flights_init(void)
{
    memset(flights, 0, sizeof flights);
}

void gw_flights_free(void)
{
    pthread_mutex_lock(&flights_mu);
    for (size_t i = 0; i < FLIGHT_BUCKETS; i++) {
        while (flights[i]) {
            struct flight *f = flights[i];
            flights[i] = f->next;
            free(f);
        }
    }
    pthread_mutex_unlock(&flights_mu);
}

static size_t flight_bucket(const unsigned char h[32])
{
    uint32_t v;
    memcpy(&v, h, sizeof v);
    return v % FLIGHT_BUCKETS;
}

enum gw_join gw_flight_join(struct gw_request *r)
{
    size_t b = flight_bucket(r->hash);
    pthread_mutex_lock(&flights_mu);
    struct flight *f = flights[b];
    while (f && memcmp(f->hash, r->hash, 32) != 0)
        f = f->next;
    bool leader = f == NULL;
    if (leader && gw_l1_get(r->hash, &r->p)) {
        pthread_mutex_unlock(&flights_mu);
        return GW_JOIN_CACHED;
    }
    /* counted before it can be woken, and before a flight exists for it */
    if (!gw_park(r)) {
        pthread_mutex_unlock(&flights_mu);
        return GW_JOIN_FULL;
    }
    if (leader) {
        f = pc_xcalloc(1, sizeof *f);
        memcpy(f->hash, r->hash, 32);
        f->epoch = r->l1_epoch; /* the leader's lookup began then */
        f->next = flights[b];
        flights[b] = f;
    }
    r->next_wake = f->waiters;
    f->waiters = r;
    pthread_mutex_unlock(&flights_mu);
    return leader ? GW_JOIN_LEAD : GW_JOIN_WAIT;
}

void gw_flight_land(const unsigned char hash[32], enum gw_lookup outcome,
                        const struct gw_principal *p)
{
    size_t b = flight_bucket(hash);
    uint64_t since = 0;
    pthread_mutex_lock(&flights_mu);
    struct flight *fl = flights[b];
    while (fl && memcmp(fl->hash, hash, 32) != 0)
        fl = fl->next;
    bool known = fl != NULL;
    if (known)
        since = fl->epoch;
    pthread_mutex_unlock(&flights_mu);
    if (known && outcome == GW_LOOKUP_FOUND) {
        int64_t ttl = gw_cfg.l1_ttl * 1000;
        int64_t left = p->expires_at ? p->expires_at - pc_now_ms() : ttl;
        gw_l1_put(hash, p, left < ttl ? left : ttl, since);
    } else if (known && outcome == GW_LOOKUP_UNKNOWN) {
        struct gw_principal neg = {.kind = p->kind, .found = false};
        gw_l1_put(hash, &neg, gw_cfg.l1_negative_ttl * 1000, since);
    }
    pthread_mutex_lock(&flights_mu);
    struct flight **pp = &flights[b];
    while (*pp && memcmp((*pp)->hash, hash, 32) != 0)
        pp = &(*pp)->next;
    struct flight *f = *pp;
    if (f)
        *pp = f->next;
    pthread_mutex_unlock(&flights_mu);
    if (f == NULL)
        return;
    struct gw_request *r = f->waiters;
    free(f);
    while (r) {
        struct gw_request *next = r->next_wake;
        r->lookup = outcome;
        if (outcome == GW_LOOKUP_FOUND)
            r->p = *p;
        else
            memset(&r->p, 0, sizeof r->p);
        r->p.kind = r->kind;
        gw_wake(r);
        r = next;
    }
}
