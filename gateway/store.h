/* Portcullis - MIT licence. See LICENSE.
 *
 * store.h: the credential stores behind L1, on each worker's loop. Their
 * stage entry points (gw_l2_lookup, gw_pg_lookup) are in stages.h; here is
 * what the rest of the gateway asks of them.
 *
 *   l2redis.c   Redis, the cache authsvc writes (and we fill for API keys),
 *               on the worker's connection w->redis (lib/redis_async.c)
 *   flight.c    one PostgreSQL query per credential, however many workers
 *               wait for it (its own lock)
 *   pgpool.c    the worker's non-blocking libpq connections and queue
 *   pgstore.c   the SQL and rows -> principal
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include "types.h"

/** On w's loop: writes a resolved principal to Redis for the other
 * replicas (async, fire and forget; nothing when L2 is off or Redis down). */
void gw_l2_store(struct gw_worker *w, const char *hash_b64, const struct gw_principal *p,
                 int64_t ttl_ms);
/** On w's loop: fire-and-forget sliding refresh of a session (at most once
 * per updateAge: the caller checks). */
void gw_pg_refresh_session(struct gw_worker *w, const char *session_id, int64_t new_exp_ms,
                           int64_t now_ms);
/** On w's loop: reads the session's "expiresAt" (ms) again; done(arg, at,
 * answered) is called exactly once on w's loop: at 0 when there is no such
 * session (or its user is gone), answered false when PostgreSQL did not
 * answer. */
void gw_pg_session_expiry(struct gw_worker *w, const char *session_id,
                          void (*done)(void *arg, int64_t at_ms, bool answered), void *arg);
/** Worker start/stop (worker.c). Stopping fails every query, which lands
 * its flight: waiters go to their inboxes. */
void gw_pg_start(struct gw_worker *w);
/** Any thread (the revocation feed's): a revoked credential's hash. For
 * READ_MAX_LAG_MS plus a margin its lookups go to the primary, since a
 * replica may not have replayed the revocation yet. */
void gw_pg_revoked(const unsigned char hash[32]);
/** Any thread: false when the revocation feed is lost (every lookup goes to
 * the primary: a revocation may be missed); true when it is back (the
 * primary still, for the margin above, while the log replays). */
void gw_pg_replicas_trusted(bool trusted);
void gw_pg_stop(struct gw_worker *w);
/** On w's loop, every 100 ms (worker.c): a query that has waited in a queue
 * longer than GATEWAY_PG_TIMEOUT_MS completes without an answer. */
void gw_pg_tick(struct gw_worker *w);
/** On w's loop: one connection of w's pool is up (/ready). */
bool gw_pg_up(struct gw_worker *w);
/* ---- flight.c ---- */

enum gw_join {
    GW_JOIN_WAIT = 0,   /* joined a flight: r is parked, woken when it lands */
    GW_JOIN_LEAD,       /* started one: r is parked, the caller queries */
    GW_JOIN_CACHED,     /* it had just landed: r->p filled from L1, not parked */
    GW_JOIN_FULL,       /* GATEWAY_PENDING_MAX reached: not parked, no flight */
};
/** On r's loop: joins or starts the flight for r->hash, parking r. */
enum gw_join gw_flight_join(struct gw_request *r);
/** Any thread: ends the flight for hash: fills L1 (negatively unless
 * FOUND or UNAVAILABLE), copies outcome (and p) into every waiter and wakes
 * it on its own loop. */
void gw_flight_land(const unsigned char hash[32], enum gw_lookup outcome,
                    const struct gw_principal *p);
/** Pure (pgstore.c): vals as a PostgreSQL text[] literal, each element
 * double-quoted with '"' and '\' escaped (heap): the $1 of a batched
 * lookup. */
char *gw_pg_text_array(const char *const *vals, size_t n);
/** Main thread, around the workers' life: the shared in-flight table. */
void gw_flights_init(void);
void gw_flights_free(void);

#endif
