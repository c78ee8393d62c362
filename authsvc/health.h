/* Portcullis - MIT licence. See LICENSE.
 *
 * health.h: what /ready reports (health.c). A prober thread checks
 * PostgreSQL and Redis; workers report what they see between probes.
 */
#ifndef AS_HEALTH_H
#define AS_HEALTH_H

#include <stdbool.h>

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
