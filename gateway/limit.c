/* Portcullis - MIT licence. See LICENSE.
 *
 * limit.c: stage LIMIT, API-key usage. One Lua script per request, on the
 * worker's Redis connection (w->redis), applies both rules atomically, so they hold
 * exactly across any number of gateway replicas:
 *
 *   rate limit  rateLimitMax requests per rateLimitTimeWindow, counted in a
 *               fixed window that opens at the first request after the
 *               previous one closed (docs/gateway.md explains why this
 *               differs from Better Auth's) -> 429 RATE_LIMITED + Retry-After
 *   quota       `remaining`, refilled to refillAmount every refillInterval,
 *               one per allowed request -> 429 USAGE_EXCEEDED when spent
 *
 * A rate-limited request does not spend quota. The state lives in
 * <prefix>u:<hash> (lib/keyspace.h: its fields are PC_USAGE_*), seeded
 * from PostgreSQL's values when absent, and is
 * written back to PostgreSQL by usage.c. Redis down: rate limits are
 * skipped, but a key with a quota answers 503, since its use cannot be
 * counted.
 */
#include "stages.h"
#include "limits.h"
#include "store.h"
#include "metrics.h"
#include "../lib/keyspace.h"
#include "../lib/log.h"
#include "../lib/redis_async.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>

/* KEYS[1] state hash. ARGV: remaining (-1 none), refillInterval, refillAmount
 * (-1 none), lastRefillAt (0 none), createdAt, rl on (0/1), window, max.
 * Returns {verdict, value}: {0, remaining or -1}, {1, ms to wait} rate
 * limited, {2, 0} usage exceeded. */
static const char script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local k = KEYS[1]\n"
    "local rem0 = tonumber(ARGV[1])\n"
    "local ri, ra = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local lr0, created = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local rl, win, max = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])\n"
    "local s = redis.call('HMGET', k, '" PC_USAGE_REMAINING "', '" PC_USAGE_LAST_REFILL "', '"
    PC_USAGE_WINDOW_START "', '" PC_USAGE_WINDOW_COUNT "')\n"
    "local ws, wc = tonumber(s[3]), tonumber(s[4])\n"
    "if rl == 1 and win > 0 and max > 0 then\n"
    "  if ws == nil or now - ws >= win then ws = now; wc = 0 end\n"
    "  if wc >= max then return {1, win - (now - ws)} end\n"
    "  wc = wc + 1\n"
    "  redis.call('HSET', k, '" PC_USAGE_WINDOW_START "', ws, '" PC_USAGE_WINDOW_COUNT "', wc)\n"
    "end\n"
    "local rem = -1\n"
    "if rem0 >= 0 then\n"
    "  rem = tonumber(s[1])\n"
    "  local lr = tonumber(s[2])\n"
    "  if rem == nil then rem = rem0; lr = lr0 end\n"
    "  if lr == nil or lr == 0 then lr = created end\n"
    "  if ri > 0 and ra >= 0 and now - lr > ri then rem = ra; lr = now end\n"
    "  if rem <= 0 then\n"
    "    if wc ~= nil and rl == 1 and win > 0 and max > 0 then\n"
    "      redis.call('HSET', k, '" PC_USAGE_WINDOW_COUNT "', wc - 1)\n"
    "    end\n"
    "    redis.call('HSET', k, '" PC_USAGE_REMAINING "', rem, '" PC_USAGE_LAST_REFILL "', lr)\n"
    "    return {2, 0}\n"
    "  end\n"
    "  rem = rem - 1\n"
    "  redis.call('HSET', k, '" PC_USAGE_REMAINING "', rem, '" PC_USAGE_LAST_REFILL "', lr)\n"
    "end\n"
    "redis.call('HSET', k, '" PC_USAGE_LAST_REQUEST "', now)\n"
    "redis.call('PEXPIRE', k, " PC_USAGE_KEEP_MS_STR ")\n"
    "return {0, rem}\n";

/* The script goes by its SHA-1 (EVALSHA): Redis keeps it after the first
 * EVAL, and each request then carries 40 bytes instead of the script. */
static char script_sha[41];
static pthread_once_t sha_once = PTHREAD_ONCE_INIT;

static void sha_init(void)
{
    unsigned char d[20];
    SHA1((const unsigned char *)script, sizeof script - 1, d);
    pc_hex_encode(d, sizeof d, script_sha);
}

static bool send_script(struct gw_request *r, bool by_sha);

static bool has_quota(const struct gw_principal *p)
{
    return p->lim.remaining >= 0;
}

static bool has_rate_limit(const struct gw_principal *p)
{
    return p->lim.rl_enabled && p->lim.rl_window > 0 && p->lim.rl_max > 0;
}

/* Redis could not count this request: a key with a quota fails closed, a
 * rate limit alone fails open. */
static enum gw_limit uncounted(const struct gw_request *r)
{
    return has_quota(&r->p) ? GW_LIMIT_UNCOUNTED : GW_LIMIT_PASS;
}

/* The script's answer (by SHA: sent again whole on NOSCRIPT), or its
 * timeout: records the outcome and resumes r, which answers it. */
static void on_reply(void *reply, const char *errstr, void *priv)
{
    struct gw_request *r = priv;
    redisReply *rep = reply;
    bool by_sha = r->limit == GW_LIMIT_NONE;
    if (by_sha && rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* Redis does not have it yet (or was restarted): send it whole */
        r->limit = GW_LIMIT_UNCOUNTED; /* marks the second try */
        if (send_script(r, false))
            return;
        r->limit = uncounted(r);
        gw_resume(r);
        return;
    }
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
        GW_STAT_INC(redis_errors);
        if (rep && rep->type == REDIS_REPLY_ERROR)
            pc_logr_error(r->request_id, "limit script failed: %s", rep->str);
        r->limit = uncounted(r);
        gw_resume(r);
        return;
    }
    long long verdict = rep->element[0]->integer;
    long long value = rep->element[1]->integer;
    gw_usage_touch(r);
    if (verdict == 1) {
        r->retry_after = value > 1000 ? (int)((value + 999) / 1000) : 1;
        r->limit = GW_LIMIT_RATE;
    } else if (verdict == 2) {
        r->limit = GW_LIMIT_SPENT;
    } else {
        r->limit = GW_LIMIT_PASS;
    }
    gw_resume(r);
}

/* Sends the script for r (by SHA or whole) with the Redis timeout. Returns
 * false when Redis is not connected. */
static bool send_script(struct gw_request *r, bool by_sha)
{
    const struct gw_principal *p = &r->p;
    char key[PC_KEY_MAX];
    (void)pc_key_usage(key, sizeof key, gw_cfg.redis_prefix, r->hash_b64);
    char a[8][24];
    int64_t v[8] = {p->lim.remaining, p->lim.refill_interval, p->lim.refill_amount,
                    p->lim.last_refill_at, p->lim.created_at, has_rate_limit(p) ? 1 : 0,
                    p->lim.rl_window, p->lim.rl_max};
    const char *argv[12] = {by_sha ? "EVALSHA" : "EVAL", by_sha ? script_sha : script, "1", key};
    for (int i = 0; i < 8; i++) {
        snprintf(a[i], sizeof a[i], "%lld", (long long)v[i]);
        argv[4 + i] = a[i];
    }
    return pc_ra_command(r->w->redis, gw_cfg.redis_timeout_ms, on_reply, r, 12, argv, NULL);
}

/* Resumed with a recorded outcome: answer it. */
static enum gw_step answer(struct gw_request *r)
{
    switch (r->limit) {
    case GW_LIMIT_RATE:
        GW_STAT_INC(rate_limited);
        gw_fail(r, 429, "RATE_LIMITED", "Rate limit exceeded");
        return GW_ENDED;
    case GW_LIMIT_SPENT:
        GW_STAT_INC(usage_exceeded);
        gw_fail(r, 429, "USAGE_EXCEEDED", "API key has no requests left");
        return GW_ENDED;
    case GW_LIMIT_UNCOUNTED:
        gw_fail(r, 503, "USAGE_UNAVAILABLE", "Cannot count this key's usage right now, try again");
        return GW_ENDED;
    default:
        return GW_NEXT;
    }
}

enum gw_step gw_limit_check(struct gw_request *r)
{
    if (r->limit != GW_LIMIT_NONE)
        return answer(r);
    const struct gw_principal *p = &r->p;
    if (r->kind != GW_CRED_API_KEY || (!has_quota(p) && !has_rate_limit(p))) {
        r->limit = GW_LIMIT_PASS;
        return GW_NEXT;
    }
    pthread_once(&sha_once, sha_init);
    if (!pc_ra_up(r->w->redis) || !gw_park(r)) {
        r->limit = uncounted(r);
        return answer(r);
    }
    if (!send_script(r, true)) {
        r->limit = uncounted(r);
        gw_wake(r); /* parked already: answered from the inbox */
    }
    return GW_ASYNC;
}
