/* Portcullis - MIT licence. See LICENSE.
 *
 * health.h: what /ready reports (health.c). A prober thread checks
 * PostgreSQL and Redis; workers report what they see between probes. And
 * which paths the health checks and /metrics answer on.
 */
#ifndef AS_HEALTH_H
#define AS_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

/* The local answers, on the loop without a route. */
enum as_local { AS_LOCAL_NONE = 0, AS_LOCAL_HEALTH, AS_LOCAL_LIVE, AS_LOCAL_READY,
                AS_LOCAL_METRICS };

/** What path[0..n) asks for: /health, /live, /ready after
 * AUTHSVC_HEALTH_PREFIX on the public listener (admin false); on the admin
 * listener those with or without the prefix, and /metrics. Any thread. */
enum as_local as_local_path(const char *path, size_t n, bool admin);

/** Main thread, at start / at stop. */
void as_health_start(void);
void as_health_stop(void);
/** Any thread: the last known state. */
bool as_health_pg_ok(void);
bool as_health_redis_ok(void);
/** Any thread: records an outcome seen by a worker, so /ready reacts before
 * the prober. */
void as_health_note_pg(bool ok);
void as_health_note_redis(bool ok);

#endif
