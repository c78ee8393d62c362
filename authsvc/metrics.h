/* Portcullis - MIT licence. See LICENSE.
 *
 * metrics.h: the Prometheus counters of /metrics (metrics.c).
 */
#ifndef AS_METRICS_H
#define AS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pc_buf;

/** Main thread, at start: names route i (its path) in the counters. */
void as_metrics_route_name(size_t i, const char *path);
/** Loop thread: counts an answered request (route -1: none). */
void as_metrics_observe(int route, int status, int64_t us);
/** Any thread: counts a PostgreSQL (pg) or Redis failure. */
void as_metrics_note_failure(bool pg);
/** Loop thread: appends the Prometheus text to b. */
void as_metrics_render(struct pc_buf *b);

#endif
