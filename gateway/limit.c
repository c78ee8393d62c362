/* Portcullis - MIT licence. See LICENSE.
 *
 * limit.c: stage 7b, API-key usage. One Lua script per request, on the
 * worker's Redis connection, applies both rules atomically, so they hold
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
 * <prefix>u:<hash> (seeded from PostgreSQL's values when absent) and is
 * written back to PostgreSQL by usage.c. Redis down: rate limits are
 * skipped, but a key with a quota answers 503, since its use cannot be
 * counted.
 */
#include "gateway.h"
#include "../lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <event2/event.h>
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
    "local s = redis.call('HMGET', k, 'rem', 'lr', 'ws', 'wc')\n"
    "local ws, wc = tonumber(s[3]), tonumber(s[4])\n"
    "if rl == 1 and win > 0 and max > 0 then\n"
    "  if ws == nil or now - ws >= win then ws = now; wc = 0 end\n"
    "  if wc >= max then return {1, win - (now - ws)} end\n"
    "  wc = wc + 1\n"
    "  redis.call('HSET', k, 'ws', ws, 'wc', wc)\n"
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
    "      redis.call('HSET', k, 'wc', wc - 1)\n"
    "    end\n"
    "    redis.call('HSET', k, 'rem', rem, 'lr', lr)\n"
    "    return {2, 0}\n"
    "  end\n"
    "  rem = rem - 1\n"
    "  redis.call('HSET', k, 'rem', rem, 'lr', lr)\n"
    "end\n"
    "redis.call('HSET', k, 'last', now)\n"
    "redis.call('PEXPIRE', k, 604800000)\n"
    "return {0, rem}\n";

struct limit_op {
    struct gw_request *r;   /* NULL once the request stopped waiting */
    struct event *timer;
    bool by_sha;            /* sent as EVALSHA: NOSCRIPT means send it whole */
};

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

static bool start(struct gw_request *r, bool by_sha);

static bool has_quota(const struct gw_principal *p)
{
    return p->lim.remaining >= 0;
}

static bool has_rate_limit(const struct gw_principal *p)
{
    return p->lim.rl_enabled && p->lim.rl_window > 0 && p->lim.rl_max > 0;
}

/* Redis could not count this request. */
static void counting_unavailable(struct gw_request *r)
{
    if (has_quota(&r->p)) {
        gw_fail(r, 503, "USAGE_UNAVAILABLE", "Cannot count this key's usage right now, try again");
        return;
    }
    r->stage = GW_STAGE_PROXY; /* a rate limit alone fails open */
    gw_advance(r);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct limit_op *op = arg;
    struct gw_request *r = op->r;
    op->r = NULL;
    event_free(op->timer);
    op->timer = NULL;
    if (r) {
        GW_STAT_INC(redis_errors);
        r->w->parked--;
        counting_unavailable(r);
    }
}

static void on_reply(struct redisAsyncContext *ac, void *reply, void *priv)
{
    struct limit_op *op = priv;
    struct gw_request *r = op->r;
    if (r == NULL) {
        if (op->timer)
            event_free(op->timer);
        free(op);
        return;
    }
    redisReply *rep = reply;
    if (op->by_sha && rep && rep->type == REDIS_REPLY_ERROR &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* Redis does not have it yet (or was restarted): send it whole */
        event_free(op->timer);
        free(op);
        if (!start(r, false)) {
            r->w->parked--;
            counting_unavailable(r);
        }
        return;
    }
    if (op->timer)
        event_free(op->timer);
    free(op);
    r->w->parked--;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER) {
        GW_STAT_INC(redis_errors);
        if (rep && rep->type == REDIS_REPLY_ERROR)
            pc_log_error("limit script failed: %s", rep->str);
        counting_unavailable(r);
        return;
    }
    long long verdict = rep->element[0]->integer;
    long long value = rep->element[1]->integer;
    gw_usage_touch(r);
    if (verdict == 1) {
        GW_STAT_INC(rate_limited);
        r->retry_after = value > 1000 ? (int)((value + 999) / 1000) : 1;
        gw_fail(r, 429, "RATE_LIMITED", "Rate limit exceeded");
        return;
    }
    if (verdict == 2) {
        GW_STAT_INC(usage_exceeded);
        gw_fail(r, 429, "USAGE_EXCEEDED", "API key has no requests left");
        return;
    }
    r->stage = GW_STAGE_PROXY;
    gw_advance(r);
}

/* Sends the script for r (by SHA or whole). Returns false when Redis is not
 * connected. */
static bool send_script(struct gw_request *r, struct limit_op *op, bool by_sha)
{
    const struct gw_principal *p = &r->p;
    char key[128];
    snprintf(key, sizeof key, "%su:%s", gw_cfg.redis_prefix, r->hash_b64);
    char a[8][24];
    int64_t v[8] = {p->lim.remaining, p->lim.refill_interval, p->lim.refill_amount,
                    p->lim.last_refill_at, p->lim.created_at, has_rate_limit(p) ? 1 : 0,
                    p->lim.rl_window, p->lim.rl_max};
    const char *argv[12] = {by_sha ? "EVALSHA" : "EVAL", by_sha ? script_sha : script, "1", key};
    for (int i = 0; i < 8; i++) {
        snprintf(a[i], sizeof a[i], "%lld", (long long)v[i]);
        argv[4 + i] = a[i];
    }
    op->by_sha = by_sha;
    return gw_l2_command(r->w, on_reply, op, 12, argv, NULL);
}

/* Sends the script with a timeout. Returns false (nothing pending) when
 * Redis is not connected. */
static bool start(struct gw_request *r, bool by_sha)
{
    struct limit_op *op = pc_xcalloc(1, sizeof *op);
    op->r = r;
    if (!send_script(r, op, by_sha)) {
        free(op);
        return false;
    }
    op->timer = evtimer_new(r->w->base, on_timeout, op);
    struct timeval tv = {gw_cfg.redis_timeout_ms / 1000, (gw_cfg.redis_timeout_ms % 1000) * 1000};
    evtimer_add(op->timer, &tv);
    return true;
}

bool gw_limit_check(struct gw_request *r)
{
    const struct gw_principal *p = &r->p;
    if (r->kind != GW_CRED_API_KEY || (!has_quota(p) && !has_rate_limit(p)))
        return false;
    pthread_once(&sha_once, sha_init);
    if ((int64_t)r->w->parked >= gw_cfg.pending_max || !start(r, true)) {
        if (has_quota(p)) {
            gw_fail(r, 503, "USAGE_UNAVAILABLE",
                    "Cannot count this key's usage right now, try again");
            return true;
        }
        return false;
    }
    r->w->parked++;
    return true;
}
