/* Portcullis - MIT licence. See LICENSE.
 *
 * listener.h: the LISTEN thread (listener.c). It relays the revocation log
 * (migration 0005) to Redis at start, on every reconnect and on every
 * pc_revoked notice, so a revocation Redis missed at the time still lands.
 */
#ifndef AS_LISTENER_H
#define AS_LISTENER_H

#include <stdbool.h>

/** Main thread, at start / at stop. */
void as_listener_start(void);
void as_listener_stop(void);
/** Any thread: its PostgreSQL connection is up and listening. */
bool as_listener_up(void);

#endif
