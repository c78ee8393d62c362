/* Portcullis - MIT licence. See LICENSE.
 *
 * usage.c: writes API-key usage back to PostgreSQL. limit.c keeps the live
 * counters in Redis (<prefix>u:<hash>); each gateway remembers which keys it
 * touched, and a thread (lib/periodic.h) copies their counters into the apikey row
 * (`remaining`, `lastRefillAt`, `requestCount`, `lastRequest`) once a second.
 * The values are absolute, so replicas writing the same key agree. A failed
 * write keeps the key for the next round; shutdown flushes what is left.
 */
#include "limits.h"
#include "metrics.h"
#include "../lib/keyspace.h"
#include "../lib/db.h"
#include "../lib/log.h"
#include "../lib/periodic.h"

#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <hiredis/hiredis.h>

#define FLUSH_INTERVAL_MS 1000

struct touched {
    struct touched *next;           /* pending list */
    struct touched *hnext;          /* bucket chain */
    char hash[PC_HASH_B64_LEN + 1];
    char key_id[64];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct touched *pending;     /* keys to write back */
static size_t npending;
#define BUCKETS 4096
static struct touched *buckets[BUCKETS]; /* the same keys, for de-duplication */

static size_t bucket_of(const char *h)
{
    size_t v = 5381;
    for (int i = 0; i < 12 && h[i]; i++)
        v = v * 33 + (unsigned char)h[i];
    return v % BUCKETS;
}

/* Links t into the list and the table. Caller holds mu. */
static void pending_add(struct touched *t)
{
    size_t b = bucket_of(t->hash);
    t->hnext = buckets[b];
    buckets[b] = t;
    t->next = pending;
    pending = t;
    npending++;
}

#define PENDING_MAX 1000000

void gw_usage_touch(const struct gw_request *r)
{
    pthread_mutex_lock(&mu);
    for (struct touched *t = buckets[bucket_of(r->hash_b64)]; t; t = t->hnext) {
        if (strcmp(t->hash, r->hash_b64) == 0) {
            pthread_mutex_unlock(&mu);
            return;
        }
    }
    if (npending < PENDING_MAX) {
        struct touched *t = pc_xcalloc(1, sizeof *t);
        memcpy(t->hash, r->hash_b64, sizeof t->hash);
        snprintf(t->key_id, sizeof t->key_id, "%s", r->p.cred_id);
        pending_add(t);
    }
    pthread_mutex_unlock(&mu);
}

/* Writes one key's counters. Returns false when it should be retried. */
static bool write_back(struct pc_db *db, struct pc_redis *rd, const struct touched *t)
{
    char key[PC_KEY_MAX];
    (void)pc_key_usage(key, sizeof key, gw_cfg.redis_prefix, t->hash);
    const char *argv[] = {"HMGET", key, PC_USAGE_REMAINING, PC_USAGE_LAST_REFILL,
                          PC_USAGE_WINDOW_COUNT, PC_USAGE_LAST_REQUEST};
    redisReply *rep = pc_redis_cmd(rd, 6, argv, NULL);
    if (rep == NULL)
        return false;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 4) {
        freeReplyObject(rep);
        return true; /* nothing usable: drop */
    }
    const char *v[4];
    for (int i = 0; i < 4; i++)
        v[i] = rep->element[i]->type == REDIS_REPLY_STRING ? rep->element[i]->str : NULL;
    const char *params[] = {t->key_id, v[0], v[1], v[2], v[3]};
    PGresult *res = pc_db_exec(
        db,
        "UPDATE \"apikey\" SET "
        "\"remaining\" = COALESCE($2::integer, \"remaining\"), "
        "\"lastRefillAt\" = COALESCE(to_timestamp($3::double precision / 1000), "
        "\"lastRefillAt\"), "
        "\"requestCount\" = COALESCE($4::integer, \"requestCount\"), "
        "\"lastRequest\" = COALESCE(to_timestamp($5::double precision / 1000), "
        "\"lastRequest\"), "
        "\"updatedAt\" = now() WHERE \"id\" = $1",
        5, params);
    freeReplyObject(rep);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    return ok;
}

static void flush_once(struct pc_db *db, struct pc_redis *rd)
{
    pthread_mutex_lock(&mu);
    struct touched *list = pending;
    pending = NULL;
    npending = 0;
    memset(buckets, 0, sizeof buckets);
    pthread_mutex_unlock(&mu);
    if (list == NULL)
        return;
    struct touched *retry = NULL;
    size_t n = 0;
    while (list) {
        struct touched *t = list;
        list = t->next;
        if (write_back(db, rd, t)) {
            free(t);
            n++;
        } else {
            t->next = retry;
            retry = t;
        }
    }
    GW_STAT_INC(usage_flushes);
    if (retry) {
        /* put them back for the next round (merging with new touches) */
        pthread_mutex_lock(&mu);
        while (retry) {
            struct touched *t = retry;
            retry = t->next;
            bool dup = false;
            for (struct touched *x = buckets[bucket_of(t->hash)]; x && !dup; x = x->hnext)
                dup = strcmp(x->hash, t->hash) == 0;
            if (dup)
                free(t);
            else
                pending_add(t);
        }
        pthread_mutex_unlock(&mu);
    }
    pc_log_debug("usage: wrote back %zu key(s)", n);
}

static struct pc_periodic *flusher;
static struct pc_db db;             /* the flusher's, then the last flush's */
static struct pc_redis rd;

static int64_t flush_round(struct pc_periodic *p, void *arg)
{
    flush_once(&db, &rd);
    return PC_PERIODIC_INTERVAL;
}

void gw_usage_start(void)
{
    pc_db_init(&db, gw_cfg.database_url);
    pc_redis_init(&rd, &gw_cfg.redis_addr, 500);
    flusher = pc_periodic_start("gw-usage", FLUSH_INTERVAL_MS, flush_round, NULL);
}

void gw_usage_stop(void)
{
    if (flusher == NULL)
        return;
    pc_periodic_stop(flusher);
    flusher = NULL;
    /* last round on the way out: no count is lost to a clean shutdown */
    db.retry_at_ms = 0;
    rd.retry_at_ms = 0;
    flush_once(&db, &rd);
    pthread_mutex_lock(&mu);
    if (npending)
        pc_log_error("usage: %zu key(s) could not be written back", npending);
    while (pending) {
        struct touched *t = pending;
        pending = t->next;
        free(t);
    }
    npending = 0;
    memset(buckets, 0, sizeof buckets);
    pthread_mutex_unlock(&mu);
    pc_db_close(&db);
    pc_redis_close(&rd);
}
