/* Portcullis - MIT licence. See LICENSE.
 *
 * redis_sentinel.h: where the Redis master is, when Redis Sentinel says so
 * (REDIS_SENTINELS, REDIS_SENTINEL_MASTER). One watcher thread per program
 * asks the sentinels for the master (SENTINEL get-master-addr-by-name, the
 * first sentinel that answers), then listens on that sentinel for
 * +switch-master; it asks again when its sentinel goes away, when a
 * connection reports an error or READONLY (pc_sentinel_suspect), and every
 * few seconds anyway.
 *
 * Every Redis connection of the program (redis.c, redis_async.c, the
 * gateway's revocation feed) takes its host and port from
 * pc_sentinel_resolve at connect time and drops itself when the master's
 * generation moves on, so after a failover all of them are on the new
 * master: the feed resubscribes as after any lost subscription (L1 TTL
 * capped meanwhile, flushed on subscribe, the revocation log replayed).
 *
 * Without REDIS_SENTINELS none of this runs and REDIS_URL's host is used.
 */
#ifndef PC_REDIS_SENTINEL_H
#define PC_REDIS_SENTINEL_H

#include <stdbool.h>
#include <stdint.h>
#include "redis.h"

#define PC_SENTINELS_MAX 16
/* how long a program waits at start for a first answer from the sentinels */
#define SENTINEL_WAIT_MS 3000

/** Validator of REDIS_SENTINELS (lib/conf.h): "host:port,..." ("" = off),
 * at most PC_SENTINELS_MAX, [v6]:port allowed. */
int pc_conf_check_sentinels(const char *v, const char **err);
/** Validator of REDIS_SENTINEL_MASTER: Sentinel's name rules (no space). */
int pc_conf_check_sentinel_master(const char *v, const char **err);

/** Starts the watcher (list as validated; master the name; password the
 * sentinels' AUTH, "" none). Waits up to wait_ms for a first answer, so the
 * program starts on the master when the sentinels are up; logs and goes on
 * without one otherwise (connections fail until a sentinel answers). */
void pc_sentinel_start(const char *list, const char *master, const char *password,
                       int64_t wait_ms);
/** Stops and joins the watcher (no-op when not started). */
void pc_sentinel_stop(void);
/** True when the watcher runs (REDIS_SENTINELS set). */
bool pc_sentinel_on(void);

/** The address to connect to now: *configured, with the master's host and
 * port when Sentinel is on (password and db stay the configured ones). *gen
 * (may be NULL) receives the master's generation, for pc_sentinel_moved.
 * False when Sentinel is on and no master is known yet. Any thread. */
bool pc_sentinel_resolve(const struct pc_redis_addr *configured, struct pc_redis_addr *out,
                         uint64_t *gen);
/** True when the master changed since a connection took generation gen:
 * that connection must be dropped. Any thread; one atomic load. */
bool pc_sentinel_moved(uint64_t gen);
/** A connection failed or was answered READONLY: the watcher asks the
 * sentinels again now. Any thread. */
void pc_sentinel_suspect(void);
/** A reply that says this node is not (or no longer) the master. */
bool pc_redis_reply_readonly(const char *errstr, size_t n);

#endif
