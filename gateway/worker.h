/* Portcullis - MIT licence. See LICENSE.
 *
 * worker.h: the worker threads (worker.c): one event loop per
 * GATEWAY_WORKERS, each with its listener, tick, stores and pools, and the
 * order in which everything starts and stops.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "types.h"

/** Main thread: starts everything, serves until SIGTERM/SIGINT, stops.
 * Returns the exit code. */
int gw_worker_run(void);
/** Any worker's loop: all workers (for /metrics and /_stats); *n gets how
 * many. */
struct gw_worker *gw_workers(size_t *n);

#endif
