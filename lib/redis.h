/* Portcullis - MIT licence. See LICENSE.
 *
 * redis.h: Redis addresses from REDIS_URL, and a blocking hiredis connection
 * for worker threads with short timeouts and a reconnect back-off. Redis only
 * holds caches and counters, so every caller must treat NULL (unavailable) as
 * "carry on without Redis", never as a decision.
 */
#ifndef PC_REDIS_H
#define PC_REDIS_H

#include <stdbool.h>
#include <stdint.h>
#include "util.h"

struct redisContext;
struct redisReply;

struct pc_redis_addr {
    char host[256];         /* TCP host, or "" for a unix socket */
    int port;               /* TCP port */
    char path[256];         /* unix socket path, or "" */
    char password[256];     /* AUTH password, or "" */
    int db;                 /* SELECT index */
};

struct pc_redis {
    struct pc_redis_addr addr;  /* where to connect */
    struct redisContext *c;     /* NULL while disconnected */
    int64_t retry_at_ms;        /* no reconnect before this time */
    int timeout_ms;             /* connect and command timeout */
    uint64_t gen;               /* the Sentinel master generation it connected to */
};

/** Parses redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N].
 * Returns 0, or -1 with *err set to a static message. */
PC_MUSTCHECK int pc_redis_parse_url(const char *url, struct pc_redis_addr *a, const char **err);

void pc_redis_init(struct pc_redis *r, const struct pc_redis_addr *a, int timeout_ms);
void pc_redis_close(struct pc_redis *r);

/** Runs one command (argv form). Returns the reply (free with
 * freeReplyObject) or NULL when Redis is unreachable; a reply of type
 * REDIS_REPLY_ERROR is returned as is. */
struct redisReply *pc_redis_cmd(struct pc_redis *r, int argc, const char **argv,
                                const size_t *argvlen);

/** Convenience: runs a command and reports only success. */
bool pc_redis_ok(struct pc_redis *r, int argc, const char **argv);

#endif
