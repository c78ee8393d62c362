/* Portcullis - MIT licence. See LICENSE.
 *
 * periodic.h: one background thread that runs a round of work every so
 * often until it is stopped: authsvc's health prober (health.c) and
 * revocation-log listener (listener.c), the gateway's usage write-back
 * (usage.c) and JWKS/signer refresher (jwks.c). The thread waits on a
 * monotonic clock, and a stop (or a kick) wakes it at once rather than at
 * the end of its wait. Off every request path: kicking takes one mutex.
 *
 *   start   pc_periodic_start(): the thread runs fn(arg) at once, then
 *           again after interval_ms (or the delay fn returned), ...
 *   kick    pc_periodic_kick(): the next round starts now (a request waits)
 *   stop    pc_periodic_stop(): sets the stop flag, wakes the thread, waits
 *           for the round under way to end, joins and frees. fn is not
 *           called again; a final flush is the caller's, after stop.
 */
#ifndef PC_PERIODIC_H
#define PC_PERIODIC_H

#include <stdbool.h>
#include <stdint.h>
#include "util.h"

struct pc_periodic;

/** Returned by a round: wait the interval given to pc_periodic_start. */
#define PC_PERIODIC_INTERVAL (-1)

/** One round, on the periodic thread. Returns the ms to wait before the
 * next one (0: at once), or PC_PERIODIC_INTERVAL. A long round should look
 * at pc_periodic_stopping() now and then. */
typedef int64_t pc_periodic_fn(struct pc_periodic *p, void *arg);

/** Starts the thread (named name, for ps/top; at most 15 characters are
 * kept). interval_ms >= 1. Never NULL: a thread that cannot start is fatal,
 * as the loops this replaces treat it. Caller's thread. */
struct pc_periodic *pc_periodic_start(const char *name, int64_t interval_ms, pc_periodic_fn *fn,
                                      void *arg);

/** From any thread: the next round starts without waiting out the delay
 * (at once if the thread is waiting; right after the round under way). */
void pc_periodic_kick(struct pc_periodic *p);

/** True once pc_periodic_stop was called. Any thread. */
bool pc_periodic_stopping(struct pc_periodic *p);

/** Waits up to ms on the periodic thread (inside a round), waking early at
 * stop. Returns false when stopping. */
bool pc_periodic_sleep(struct pc_periodic *p, int64_t ms);

/** Stops and joins the thread, then frees p. NULL-safe. Not from the
 * periodic thread itself. */
void pc_periodic_stop(struct pc_periodic *p);

#endif
