/* Portcullis - MIT licence. See LICENSE.
 *
 * ratelimit.c: Better Auth's default limits for credential routes
 * (better-auth-compat.md §8): per client IP and path, 3 requests per 10 s on
 * /sign-in*, /sign-up*, /change-password*, /change-email*, and 3 per 60 s
 * on /request-password-reset and /send-verification-email, and the twoFactor
 * plugin's 3 per 10 s on /two-factor/.... The window is
 * Better Auth's: it restarts when a request comes after a full window of
 * quiet. State lives in Redis, one hash per key, updated by one script so
 * any number of authsvc replicas share it. Redis down: the limit is skipped
 * (logged), since Redis is a cache and sign-in must keep working.
 *
 * The client is the TCP peer. Only when the peer is one of TRUSTED_PROXIES
 * is IP_ADDRESS_HEADER believed, X-Forwarded-For style: every line of it in
 * order, read from the right, and the first address that is not itself a
 * trusted proxy is the client. Addresses are kept in one spelling (IPv4-
 * mapped IPv6 is IPv4) and an IPv6 client is limited by its /64.
 */
#include "authsvc.h"
#include "../lib/log.h"

#include <stdio.h>
#include <string.h>
#include <hiredis/hiredis.h>

#define XFF_LINES_MAX 16 /* header lines looked at; more are not needed */

#define RL_MAX 3

/* Returns 0 when allowed, else the milliseconds until the next allowed try. */
static const char rl_script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local win = tonumber(ARGV[1])\n"
    "local max = tonumber(ARGV[2])\n"
    "local v = redis.call('HMGET', KEYS[1], 'c', 't')\n"
    "local count = tonumber(v[1])\n"
    "local last = tonumber(v[2])\n"
    "if count == nil or last == nil or now - last >= win then\n"
    "  redis.call('HSET', KEYS[1], 'c', 1, 't', now)\n"
    "  redis.call('PEXPIRE', KEYS[1], win)\n"
    "  return 0\n"
    "end\n"
    "if count >= max then return win - (now - last) end\n"
    "redis.call('HSET', KEYS[1], 'c', count + 1, 't', now)\n"
    "redis.call('PEXPIRE', KEYS[1], win)\n"
    "return 0\n";

/* The rule's window in ms, or 0 when the path has none. */
static int limited_path(const char *p)
{
    static const char *const prefixes[] = {"/sign-in", "/sign-up", "/change-password",
                                           "/change-email"};
    for (size_t i = 0; i < PC_ARRAY_LEN(prefixes); i++)
        if (pc_starts_with(p, prefixes[i]))
            return 10000;
    if (pc_starts_with(p, "/two-factor/"))  /* the twoFactor plugin's rule */
        return 10000;
    if (strcmp(p, "/request-password-reset") == 0 || strcmp(p, "/send-verification-email") == 0)
        return 60000;
    return 0;
}

void as_client_ip(struct as_job *job, const char *peer)
{
    struct pc_addr pa, client;
    if (!pc_addr_parse(peer, strlen(peer), &pa)) {
        snprintf(job->ip, sizeof job->ip, "%s", peer);
        return;
    }
    const char *lines[XFF_LINES_MAX];
    size_t n = 0;
    if (as_cfg.ip_header[0] && as_cfg.nproxies > 0) {
        /* the last lines are the ones our proxies added */
        size_t total = 0;
        for (size_t i = 0; i < job->nhdrs; i++)
            total += pc_strieq(job->hdrs[i].name, as_cfg.ip_header);
        size_t skip = total > XFF_LINES_MAX ? total - XFF_LINES_MAX : 0;
        for (size_t i = 0; i < job->nhdrs; i++) {
            if (!pc_strieq(job->hdrs[i].name, as_cfg.ip_header))
                continue;
            if (skip > 0)
                skip--;
            else
                lines[n++] = job->hdrs[i].value;
        }
    }
    pc_xff_client(as_cfg.proxies, as_cfg.nproxies, &pa, lines, n, &client);
    pc_addr_format(&client, job->ip, sizeof job->ip);
}

bool as_ratelimit_check(struct as_job *job, struct as_worker *w)
{
    if (!as_cfg.rate_limit)
        return true;
    const char *rel = job->path;
    if (pc_starts_with(rel, "/api/auth"))
        rel += strlen("/api/auth");
    int window_ms = limited_path(rel);
    if (window_ms == 0)
        return true;
    char who[PC_ADDR_STRLEN];
    struct pc_addr a;
    if (pc_addr_parse(job->ip, strlen(job->ip), &a))
        pc_addr_limit_key(&a, who, sizeof who);
    else
        snprintf(who, sizeof who, "%s", "no-ip");
    struct pc_buf key = {0};
    pc_buf_printf(&key, "%srl:%s|%s", as_cfg.redis_prefix, who, rel);
    char win[16], max[16];
    snprintf(win, sizeof win, "%d", window_ms);
    snprintf(max, sizeof max, "%d", RL_MAX);
    const char *argv[] = {"EVAL", rl_script, "1", key.data, win, max};
    redisReply *rep = pc_redis_cmd(&w->redis, 6, argv, NULL);
    pc_buf_free(&key);
    as_health_note_redis(rep != NULL);
    if (rep == NULL || rep->type != REDIS_REPLY_INTEGER) {
        if (rep && rep->type == REDIS_REPLY_ERROR)
            pc_logr_error(job->request_id, "rate limit script failed: %s", rep->str);
        if (rep)
            freeReplyObject(rep);
        return true;
    }
    long long wait_ms = rep->integer;
    freeReplyObject(rep);
    if (wait_ms <= 0)
        return true;
    char secs[32];
    snprintf(secs, sizeof secs, "%lld", (wait_ms + 999) / 1000);
    as_add_header(job, "X-Retry-After", secs);
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"message\":\"Too many requests. Please try again later.\"}");
    job->err_code = "RATE_LIMITED";
    as_reply(job, 429, &b);
    return false;
}
