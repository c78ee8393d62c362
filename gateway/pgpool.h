/* Portcullis - MIT licence. See LICENSE.
 *
 * pgpool.h: each worker's pool of non-blocking PostgreSQL connections
 * (pgpool.c), for pgstore.c's queries. (Start, stop and "up" are in
 * store.h.) Everything runs on the worker's loop.
 */
#ifndef GW_PGPOOL_H
#define GW_PGPOOL_H

#include "types.h"

struct pg_result;

/** One query; the caller owns it (embedded in its own record) until done. */
struct gw_pgq {
    struct gw_pgq *next;            /* the pool's queue */
    struct gw_worker *w;            /* set by gw_pgpool_submit */
    int64_t queued_at;              /* when it joined a queue, ms (the pool's) */
    const char *sql;
    int nparams;
    const char *params[4];
    /** Called exactly once, on w's loop: answered with res (NULL: no
     * result at all; freed by the pool after the call), or not answered
     * (timeout, lost connection, every connection down, queue full). The
     * callee may free q. */
    void (*done)(struct gw_pgq *q, const struct pg_result *res, bool answered);
    /** Optional, for lookups that can ride one round trip: when q leaves
     * the queue for a connection, the pool offers it each later queued
     * query with the same absorb; true: q takes that one along (it leaves
     * the queue, and q's done completes it too). Last, with other NULL: q
     * goes now, its sql and params final. */
    bool (*absorb)(struct gw_pgq *q, struct gw_pgq *other);
};

/** On w's loop: queues q for w's pool on the primary (may complete it at
 * once). Every write goes here. */
void gw_pgpool_submit(struct gw_worker *w, struct gw_pgq *q);
/** The same on w's replica pool (DATABASE_READ_URL), for a lookup the
 * replicas may answer; without replicas, or when none can take it now (down,
 * lagging past READ_MAX_LAG_MS), the primary's. pgstore.c asks the primary
 * again when a replica does not find the credential. */
void gw_pgpool_submit_read(struct gw_worker *w, struct gw_pgq *q);

#endif
