/* Portcullis - MIT licence. See LICENSE.
 *
 * redis.c: URL parsing and the blocking connection used by authsvc workers.
 */
#include "redis.h"
#include "cookie.h"
#include "log.h"
#include "redis_sentinel.h"

#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#define REDIS_BACKOFF_MS 1000

int pc_redis_parse_url(const char *url, struct pc_redis_addr *a, const char **err)
{
    memset(a, 0, sizeof *a);
    a->port = 6379;
    if (pc_starts_with(url, "unix://")) {
        const char *p = url + 7;
        const char *q = strchr(p, '?');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 0 || n >= sizeof a->path || p[0] != '/') {
            *err = "unix:// URL needs an absolute socket path";
            return -1;
        }
        memcpy(a->path, p, n);
        if (q && pc_starts_with(q, "?db=")) {
            int64_t db;
            if (pc_parse_int64(q + 4, 0, 1000, &db) != 0) {
                *err = "bad db number";
                return -1;
            }
            a->db = (int)db;
        }
        return 0;
    }
    if (pc_starts_with(url, "rediss://")) {
        *err = "rediss:// (TLS) is not possible: this build's hiredis (Debian 12's 0.14) has no "
               "TLS; reach Redis over a unix socket or a local TLS tunnel (stunnel, haproxy)";
        return -1;
    }
    if (!pc_starts_with(url, "redis://")) {
        *err = "must start with redis:// or unix://";
        return -1;
    }
    const char *p = url + 8;
    const char *slash = strchr(p, '/');
    size_t hostpart = slash ? (size_t)(slash - p) : strlen(p);
    char hp[512];
    if (hostpart == 0 || hostpart >= sizeof hp) {
        *err = "has no host";
        return -1;
    }
    memcpy(hp, p, hostpart);
    hp[hostpart] = '\0';
    char *hostport = hp;
    char *at = strrchr(hp, '@');
    if (at) {
        *at = '\0';
        /* redis://[user]:password@host; a bare "user@" has no password */
        char *colon = strchr(hp, ':');
        const char *pw = colon ? colon + 1 : "";
        char *dec = pc_url_decode(pw, strlen(pw));
        if (dec == NULL || strlen(dec) >= sizeof a->password) {
            free(dec);
            *err = "bad or too long password";
            return -1;
        }
        strcpy(a->password, dec);
        free(dec);
        hostport = at + 1;
    }
    char *colon = strrchr(hostport, ':');
    if (colon && strchr(hostport, ']') < colon) {
        *colon = '\0';
        int64_t port;
        if (pc_parse_int64(colon + 1, 1, 65535, &port) != 0) {
            *err = "port must be 1-65535";
            return -1;
        }
        a->port = (int)port;
    }
    if (hostport[0] == '[') {
        size_t n = strlen(hostport);
        if (n < 3 || hostport[n - 1] != ']') {
            *err = "bad [ipv6] host";
            return -1;
        }
        hostport[n - 1] = '\0';
        hostport++;
    }
    if (hostport[0] == '\0' || strlen(hostport) >= sizeof a->host) {
        *err = "has no host";
        return -1;
    }
    strcpy(a->host, hostport);
    if (slash && slash[1] != '\0') {
        int64_t db;
        if (pc_parse_int64(slash + 1, 0, 1000, &db) != 0) {
            *err = "database index must be a number";
            return -1;
        }
        a->db = (int)db;
    }
    return 0;
}

void pc_redis_init(struct pc_redis *r, const struct pc_redis_addr *a, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    r->addr = *a;
    r->timeout_ms = timeout_ms;
}

static void redis_drop(struct pc_redis *r)
{
    if (r->c)
        redisFree(r->c);
    r->c = NULL;
    r->retry_at_ms = pc_now_ms() + REDIS_BACKOFF_MS;
}

void pc_redis_close(struct pc_redis *r)
{
    if (r->c)
        redisFree(r->c);
    r->c = NULL;
}

static bool redis_simple(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *rep = redisCommand(c, fmt, arg);
    bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
    if (rep)
        freeReplyObject(rep);
    return ok;
}

static int redis_connect(struct pc_redis *r)
{
    if (r->c && pc_sentinel_moved(r->gen))
        pc_redis_close(r);      /* a failover: to the new master, at once */
    if (r->c)
        return 0;
    if (pc_now_ms() < r->retry_at_ms && !pc_sentinel_moved(r->gen))
        return -1;
    struct pc_redis_addr a;
    if (!pc_sentinel_resolve(&r->addr, &a, &r->gen)) {
        redis_drop(r);
        return -1;
    }
    struct timeval tv = {r->timeout_ms / 1000, (r->timeout_ms % 1000) * 1000};
    if (a.path[0])
        r->c = redisConnectUnixWithTimeout(a.path, tv);
    else
        r->c = redisConnectWithTimeout(a.host, a.port, tv);
    if (r->c == NULL || r->c->err) {
        pc_log_warn("redis: connect failed: %s", r->c ? r->c->errstr : "out of memory");
        redis_drop(r);
        pc_sentinel_suspect();
        return -1;
    }
    redisSetTimeout(r->c, tv);
    if (a.password[0] && !redis_simple(r->c, "AUTH %s", a.password)) {
        pc_log_warn("redis: AUTH failed");
        redis_drop(r);
        return -1;
    }
    if (a.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", a.db);
        if (!redis_simple(r->c, "SELECT %s", db)) {
            pc_log_warn("redis: SELECT failed");
            redis_drop(r);
            return -1;
        }
    }
    return 0;
}

struct redisReply *pc_redis_cmd(struct pc_redis *r, int argc, const char **argv,
                                const size_t *argvlen)
{
    /* A connection that sat idle may have died with a Redis restart: when
     * it fails, try once more on a fresh one before backing off. */
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = r->c != NULL;
        if (redis_connect(r) != 0)
            return NULL;
        redisReply *rep = redisCommandArgv(r->c, argc, argv, argvlen);
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR &&
            pc_redis_reply_readonly(rep->str, rep->len)) {
            /* a master demoted under us: ask the sentinels, reconnect */
            pc_log_warn("redis: READONLY: this node is no longer the master");
            pc_sentinel_suspect();
            redis_drop(r);
        }
        if (rep != NULL)
            return rep;
        pc_sentinel_suspect();
        pc_log_warn("redis: command failed: %s", r->c->errstr);
        redis_drop(r);
        if (!reused)
            break;
        r->retry_at_ms = 0;
    }
    return NULL;
}

bool pc_redis_ok(struct pc_redis *r, int argc, const char **argv)
{
    redisReply *rep = pc_redis_cmd(r, argc, argv, NULL);
    bool ok = rep != NULL && rep->type != REDIS_REPLY_ERROR;
    if (rep)
        freeReplyObject(rep);
    return ok;
}
