/* Portcullis - MIT licence. See LICENSE.
 *
 * workq.h: a fixed pool of threads draining a bounded FIFO. Used by authsvc
 * for request handlers (blocking libpq/hiredis) and for password hashing,
 * which must never run on an event loop. A full queue refuses work at once so
 * the caller can answer 503 instead of growing memory.
 */
#ifndef PC_WORKQ_H
#define PC_WORKQ_H

#include <stddef.h>
#include "util.h"

struct pc_workq;

/** Runs one item on a pool thread. tctx is that thread's context. */
typedef void (*pc_work_fn)(void *item, void *tctx);
/** Creates / destroys a thread's context (may be NULL). */
typedef void *(*pc_work_init_fn)(void *arg);
typedef void (*pc_work_fini_fn)(void *tctx);

/** Starts nthreads threads. max_queue bounds pc_workq_push. */
struct pc_workq *pc_workq_new(const char *name, int nthreads, size_t max_queue, pc_work_fn fn,
                              pc_work_init_fn init, pc_work_fini_fn fini, void *arg);

/** Queues item. Returns 0, or -1 when max_queue items are already waiting
 * (the item is not taken; the caller still owns it). */
PC_MUSTCHECK int pc_workq_push(struct pc_workq *q, void *item);

/** Queues item even past the bound: for continuations of work that was
 * already admitted, which must not be dropped half-way. */
void pc_workq_push_force(struct pc_workq *q, void *item);

/** Items waiting (not running). */
size_t pc_workq_depth(struct pc_workq *q);

/** Lets the threads finish every queued item, joins them and frees q. */
void pc_workq_free(struct pc_workq *q);

#endif
