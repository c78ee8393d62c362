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
#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/hiredis.h>

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
};

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
    if (op->timer)
        event_free(op->timer);
    free(op);
    if (r == NULL)
        return;
    r->w->parked--;
    redisReply *rep = reply;
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
        char secs[32];
        snprintf(secs, sizeof secs, "%lld", (value + 999) / 1000);
        evhttp_add_header(evhttp_request_get_output_headers(r->req), "Retry-After", secs);
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

bool gw_limit_check(struct gw_request *r)
{
    const struct gw_principal *p = &r->p;
    if (r->kind != GW_CRED_API_KEY || (!has_quota(p) && !has_rate_limit(p)))
        return false;
    char key[128];
    snprintf(key, sizeof key, "%su:%s", gw_cfg.redis_prefix, r->hash_b64);
    char a[8][24];
    int64_t v[8] = {p->lim.remaining, p->lim.refill_interval, p->lim.refill_amount,
                    p->lim.last_refill_at, p->lim.created_at, has_rate_limit(p) ? 1 : 0,
                    p->lim.rl_window, p->lim.rl_max};
    const char *argv[12] = {"EVAL", script, "1", key};
    for (int i = 0; i < 8; i++) {
        snprintf(a[i], sizeof a[i], "%lld", (long long)v[i]);
        argv[4 + i] = a[i];
    }
    struct limit_op *op = pc_xcalloc(1, sizeof *op);
    op->r = r;
    if ((int64_t)r->w->parked >= gw_cfg.pending_max ||
        !gw_l2_command(r->w, on_reply, op, 12, argv, NULL)) {
        free(op);
        if (has_quota(p)) {
            gw_fail(r, 503, "USAGE_UNAVAILABLE",
                    "Cannot count this key's usage right now, try again");
            return true;
        }
        return false;
    }
    r->w->parked++;
    op->timer = evtimer_new(r->w->base, on_timeout, op);
    struct timeval tv = {gw_cfg.redis_timeout_ms / 1000, (gw_cfg.redis_timeout_ms % 1000) * 1000};
    evtimer_add(op->timer, &tv);
    return true;
}
