/* Portcullis - MIT licence. See LICENSE.
 *
 * l1cache.c: stage 4, the in-process cache of resolved credentials, shared by
 * every worker so that one revocation message clears an entry everywhere.
 *
 * Keyed by the SHA-256 of the credential (never the credential). 64 shards,
 * each a chained hash table with its own mutex and LRU list, bounded to
 * L1_MAX_ENTRIES in total: a full shard evicts its least recently used entry.
 * Entries carry an absolute expiry (the credential's own, capped by L1_TTL_SECONDS;
 * L1_NEGATIVE_TTL_SECONDS for unknown credentials). While the revocation feed is down
 * ("degraded"), no entry is trusted for longer than L1_DEGRADED_TTL_SECONDS after it
 * was stored, because a revocation may have been missed.
 *
 * L1_MAX_ENTRIES=0 turns the cache off: every get misses and nothing is put
 * (negative entries included); delete, flush and count still work on the
 * empty shards, so the revocation feed and /_stats need not know.
 */
#include "cache.h"
#include "metrics.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define L1_SHARDS 64

struct l1_entry {
    struct l1_entry *hnext;             /* bucket chain */
    struct l1_entry *prev, *next;       /* LRU list, most recent first */
    unsigned char key[32];              /* SHA-256 of the credential */
    int64_t expires_ms;                 /* absolute */
    int64_t stored_ms;                  /* when it was put */
    enum gw_cred_kind kind;
    bool found, enabled, email_verified;
    int64_t cred_expires_at, updated_at;
    struct gw_key_limits lim;
    uint64_t perm_gen;
    uint64_t perm_bits;
    uint16_t issuer;
    uint16_t len_user, len_email, len_cred, len_perm; /* lengths in strs */
    char strs[];                        /* user_id, email, cred_id, permissions */
};

struct l1_shard {
    pthread_mutex_t mu;
    struct l1_entry **buckets;
    size_t nbuckets;
    size_t count, max;
    struct l1_entry *head, *tail;       /* LRU ends */
};

static struct l1_shard shards[L1_SHARDS];
static atomic_bool degraded;
static atomic_size_t total;
static _Atomic uint64_t epoch;          /* bumped under the shard lock by delete, before flush */
static bool off;                        /* L1_MAX_ENTRIES=0; set once before the workers start */

static uint64_t key_bits(const unsigned char k[32])
{
    uint64_t v;
    memcpy(&v, k, sizeof v);
    return v;
}

static struct l1_shard *shard_of(const unsigned char k[32])
{
    return &shards[key_bits(k) % L1_SHARDS];
}

static size_t bucket_of(const struct l1_shard *s, const unsigned char k[32])
{
    return (size_t)((key_bits(k) / L1_SHARDS) % s->nbuckets);
}

void gw_l1_init(size_t max_entries)
{
    off = max_entries == 0;
    size_t per = max_entries / L1_SHARDS + 1;
    for (int i = 0; i < L1_SHARDS; i++) {
        struct l1_shard *s = &shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->max = per;
        s->nbuckets = per < 16 ? 16 : per;
        s->buckets = pc_xcalloc(s->nbuckets, sizeof *s->buckets);
        s->count = 0;
        s->head = s->tail = NULL;
    }
}

static void lru_unlink(struct l1_shard *s, struct l1_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct l1_shard *s, struct l1_entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (s->tail == NULL)
        s->tail = e;
}

/* Unlinks e from its bucket and the LRU list and frees it. */
static void entry_remove(struct l1_shard *s, struct l1_entry *e)
{
    struct l1_entry **pp = &s->buckets[bucket_of(s, e->key)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    atomic_fetch_sub(&total, 1);
    free(e);
}

static struct l1_entry *find(struct l1_shard *s, const unsigned char k[32])
{
    for (struct l1_entry *e = s->buckets[bucket_of(s, k)]; e; e = e->hnext)
        if (memcmp(e->key, k, 32) == 0)
            return e;
    return NULL;
}

static void copy_out(const struct l1_entry *e, struct gw_principal *p)
{
    memset(p, 0, sizeof *p);
    p->kind = e->kind;
    p->found = e->found;
    p->enabled = e->enabled;
    p->email_verified = e->email_verified;
    p->expires_at = e->cred_expires_at;
    p->updated_at = e->updated_at;
    p->lim = e->lim;
    p->perm_gen = e->perm_gen;
    p->perm_bits = e->perm_bits;
    p->issuer = e->issuer;
    const char *s = e->strs;
    memcpy(p->user_id, s, e->len_user);
    s += e->len_user;
    memcpy(p->email, s, e->len_email);
    s += e->len_email;
    memcpy(p->cred_id, s, e->len_cred);
    s += e->len_cred;
    memcpy(p->permissions, s, e->len_perm);
}

bool gw_l1_get(const unsigned char hash[32], struct gw_principal *p)
{
    if (off)
        return false;
    struct l1_shard *s = shard_of(hash);
    int64_t now = pc_now_ms();
    bool hit = false;
    pthread_mutex_lock(&s->mu);
    struct l1_entry *e = find(s, hash);
    if (e) {
        bool stale = e->expires_ms <= now ||
                     (atomic_load(&degraded) &&
                      now - e->stored_ms > gw_cfg.l1_degraded_ttl * 1000);
        if (stale) {
            entry_remove(s, e);
        } else {
            copy_out(e, p);
            lru_unlink(s, e);
            lru_push_front(s, e);
            hit = true;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return hit;
}

static uint16_t clamp_len(const char *str, size_t cap)
{
    size_t n = strnlen(str, cap);
    return (uint16_t)(n >= cap ? cap - 1 : n);
}

uint64_t gw_l1_epoch(void)
{
    return atomic_load(&epoch);
}

void gw_l1_put(const unsigned char hash[32], const struct gw_principal *p, int64_t ttl_ms,
               uint64_t since)
{
    if (off || ttl_ms <= 0 || atomic_load(&epoch) != since)
        return;
    if (atomic_load(&degraded) && ttl_ms > gw_cfg.l1_degraded_ttl * 1000)
        ttl_ms = gw_cfg.l1_degraded_ttl * 1000;
    uint16_t lu = clamp_len(p->user_id, sizeof p->user_id);
    uint16_t le = clamp_len(p->email, sizeof p->email);
    uint16_t lc = clamp_len(p->cred_id, sizeof p->cred_id);
    uint16_t lp = clamp_len(p->permissions, sizeof p->permissions);
    struct l1_entry *n = pc_xmalloc(sizeof *n + (size_t)lu + le + lc + lp);
    memset(n, 0, sizeof *n);
    memcpy(n->key, hash, 32);
    int64_t now = pc_now_ms();
    n->stored_ms = now;
    n->expires_ms = now + ttl_ms;
    n->kind = p->kind;
    n->found = p->found;
    n->enabled = p->enabled;
    n->email_verified = p->email_verified;
    n->cred_expires_at = p->expires_at;
    n->updated_at = p->updated_at;
    n->lim = p->lim;
    n->perm_gen = p->perm_gen;
    n->perm_bits = p->perm_bits;
    n->issuer = p->issuer;
    n->len_user = lu;
    n->len_email = le;
    n->len_cred = lc;
    n->len_perm = lp;
    char *d = n->strs;
    memcpy(d, p->user_id, lu);
    d += lu;
    memcpy(d, p->email, le);
    d += le;
    memcpy(d, p->cred_id, lc);
    d += lc;
    memcpy(d, p->permissions, lp);

    struct l1_shard *s = shard_of(hash);
    pthread_mutex_lock(&s->mu);
    if (atomic_load(&epoch) != since) {
        /* a revocation between the lookup and now (checked again under the
         * lock the delete takes, so none slips in between) */
        pthread_mutex_unlock(&s->mu);
        free(n);
        return;
    }
    struct l1_entry *old = find(s, hash);
    if (old)
        entry_remove(s, old);
    while (s->count >= s->max && s->tail)
        entry_remove(s, s->tail);
    size_t b = bucket_of(s, hash);
    n->hnext = s->buckets[b];
    s->buckets[b] = n;
    lru_push_front(s, n);
    s->count++;
    atomic_fetch_add(&total, 1);
    pthread_mutex_unlock(&s->mu);
}

void gw_l1_delete(const unsigned char hash[32])
{
    struct l1_shard *s = shard_of(hash);
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add(&epoch, 1);
    struct l1_entry *e = find(s, hash);
    if (e)
        entry_remove(s, e);
    pthread_mutex_unlock(&s->mu);
}

void gw_l1_perms(const unsigned char hash[32], uint64_t gen, uint64_t bits)
{
    if (off)
        return;
    struct l1_shard *s = shard_of(hash);
    pthread_mutex_lock(&s->mu);
    struct l1_entry *e = find(s, hash);
    if (e && e->found && e->kind == GW_CRED_API_KEY) {
        e->perm_gen = gen;
        e->perm_bits = bits;
    }
    pthread_mutex_unlock(&s->mu);
}

void gw_l1_flush(void)
{
    atomic_fetch_add(&epoch, 1);
    for (int i = 0; i < L1_SHARDS; i++) {
        struct l1_shard *s = &shards[i];
        pthread_mutex_lock(&s->mu);
        while (s->head)
            entry_remove(s, s->head);
        pthread_mutex_unlock(&s->mu);
    }
}

size_t gw_l1_count(void)
{
    return atomic_load(&total);
}

void gw_l1_set_degraded(bool on)
{
    atomic_store(&degraded, on);
}

void gw_l1_free(void)
{
    gw_l1_flush();
    for (int i = 0; i < L1_SHARDS; i++) {
        free(shards[i].buckets);
        shards[i].buckets = NULL;
        pthread_mutex_destroy(&shards[i].mu);
    }
}
