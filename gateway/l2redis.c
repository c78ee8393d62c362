/* Portcullis - MIT licence. See LICENSE.
 *
 * l2redis.c: stage L2, Redis. A lookup is GET <prefix>s:<hash> (sessions,
 * written by authsvc) or <prefix>k:<hash> (API keys, written here after a
 * PostgreSQL fill) on the worker's connection (w->redis, lib/redis_async.c:
 * reconnects, the hang watchdog), with a budget of GATEWAY_REDIS_TIMEOUT_MS:
 * when Redis is slow or gone the request goes on to PostgreSQL and the late
 * reply is dropped. Keys and the cached principal's JSON are
 * lib/keyspace.h's, shared with authsvc.
 *
 * L2_ENABLED=false skips both the lookup and the write of credentials: every
 * L1 miss goes to PostgreSQL. The connection stays, for the rate limits and
 * quotas (limit.c).
 */
#include "stages.h"
#include "store.h"
#include "cache.h"
#include "metrics.h"
#include "../lib/json.h"
#include "../lib/keyspace.h"
#include "../lib/log.h"
#include "../lib/redis_async.h"

#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

/* ---- lookups ---- */

static enum pc_cache_kind cache_kind(enum gw_cred_kind k)
{
    return k == GW_CRED_SESSION ? PC_CACHE_SESSION : PC_CACHE_API_KEY;
}

/* Parses the cached JSON (lib/keyspace.h) into r->p. Returns false when it
 * is not usable. */
static bool parse_entry(struct gw_request *r, const char *s, size_t n)
{
    struct pc_cache_entry e;
    bool ok = pc_cache_entry_parse(s, n, cache_kind(r->kind), &e);
    /* a session entry from before emailVerified was written: ask PostgreSQL,
     * whose fill rewrites it (an allow rule must not read a missing flag) */
    if (ok && r->kind == GW_CRED_SESSION && !e.has_email_verified)
        ok = false;
    struct gw_principal *p = &r->p;
    memset(p, 0, sizeof *p);
    p->kind = r->kind;
    p->found = true;
    p->enabled = true;
    if (ok) {
        snprintf(p->cred_id, sizeof p->cred_id, "%s", e.id);
        snprintf(p->user_id, sizeof p->user_id, "%s", e.user_id);
        p->expires_at = e.expires_at;
        p->updated_at = e.updated_at;
        if (e.email)
            snprintf(p->email, sizeof p->email, "%s", e.email);
        p->email_verified = e.email_verified;
        p->enabled = e.enabled;
        if (e.permissions)
            snprintf(p->permissions, sizeof p->permissions, "%s", e.permissions);
        p->lim.remaining = e.lim.remaining;
        p->lim.refill_interval = e.lim.refill_interval;
        p->lim.refill_amount = e.lim.refill_amount;
        p->lim.last_refill_at = e.lim.last_refill_at;
        p->lim.created_at = e.lim.created_at;
        p->lim.rl_enabled = e.lim.rl_enabled;
        p->lim.rl_window = e.lim.rl_window;
        p->lim.rl_max = e.lim.rl_max;
    }
    pc_cache_entry_free(&e);
    return ok;
}

/* The GET's answer, or its timeout: a hit fills r->p (and L1); anything
 * else leaves r->lookup MISS, so PostgreSQL is asked. */
static void on_get(void *reply, const char *errstr, void *priv)
{
    struct gw_request *r = priv;
    redisReply *rep = reply;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        GW_STAT_INC(redis_errors);
    if (rep && rep->type == REDIS_REPLY_STRING && parse_entry(r, rep->str, rep->len)) {
        GW_STAT_INC(l2_hits);
        int64_t ttl = gw_cfg.l1_ttl * 1000;
        int64_t left = r->p.expires_at ? r->p.expires_at - pc_now_ms() : ttl;
        gw_l1_put(r->hash, &r->p, left < ttl ? left : ttl, r->l1_epoch);
        r->lookup = GW_LOOKUP_FOUND;
    }
    gw_resume(r);
}

enum gw_step gw_l2_lookup(struct gw_request *r)
{
    struct pc_ra *ra = r->w->redis;
    if (!gw_cfg.l2_enabled || !pc_ra_up(ra) || !gw_park(r))
        return GW_NEXT; /* straight to PostgreSQL */
    char key[PC_KEY_MAX];
    if (r->kind == GW_CRED_SESSION)
        (void)pc_key_session(key, sizeof key, gw_cfg.redis_prefix, r->hash_b64);
    else
        (void)pc_key_apikey(key, sizeof key, gw_cfg.redis_prefix, r->hash_b64);
    const char *argv[] = {"GET", key};
    if (!pc_ra_command(ra, gw_cfg.redis_timeout_ms, on_get, r, 2, argv, NULL))
        gw_wake(r); /* parked already: resumed from the inbox, lookup still MISS */
    return GW_ASYNC;
}

static void on_set(bool failed)
{
    if (failed)
        GW_STAT_INC(redis_errors);
}

void gw_l2_store(struct gw_worker *w, const char *hash_b64, const struct gw_principal *p,
                 int64_t ttl_ms)
{
    if (!gw_cfg.l2_enabled || !pc_ra_up(w->redis) || ttl_ms <= 0)
        return;
    struct pc_cache_entry e = {
        .kind = cache_kind(p->kind),
        .id = p->cred_id,
        .user_id = p->user_id,
        .expires_at = p->expires_at,
        .updated_at = p->updated_at,
        .email = p->email,
        .email_verified = p->email_verified,
        .enabled = p->enabled,
        .permissions = p->permissions,
        .lim = {p->lim.remaining, p->lim.refill_interval, p->lim.refill_amount,
                p->lim.last_refill_at, p->lim.created_at, p->lim.rl_enabled, p->lim.rl_window,
                p->lim.rl_max},
    };
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_cache_entry_write(&jw, &e);
    char key[PC_KEY_MAX], ttl[32];
    if (p->kind == GW_CRED_SESSION)
        (void)pc_key_session(key, sizeof key, gw_cfg.redis_prefix, hash_b64);
    else
        (void)pc_key_apikey(key, sizeof key, gw_cfg.redis_prefix, hash_b64);
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    const char *argv[] = {"SET", key, b.data, "PX", ttl};
    size_t lens[] = {3, strlen(key), b.len, 2, strlen(ttl)};
    (void)pc_ra_send(w->redis, on_set, 5, argv, lens);
    pc_buf_free(&b);
}
