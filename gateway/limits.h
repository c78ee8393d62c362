/* Portcullis - MIT licence. See LICENSE.
 *
 * limits.h: API-key usage. Stage LIMIT (limit.c, in stages.h) counts each
 * request in Redis; usage.c's thread writes the changed counters back to
 * PostgreSQL once a second, off the request path.
 */
#ifndef GW_LIMITS_H
#define GW_LIMITS_H

#include "types.h"

/** On r's loop: remembers r's key, whose counters changed (no I/O). */
void gw_usage_touch(const struct gw_request *r);
/** Main thread: starts the write-back thread. */
void gw_usage_start(void);
/** Main thread: flushes every pending counter to PostgreSQL and stops. */
void gw_usage_stop(void);

#endif
