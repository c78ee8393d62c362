/* Portcullis - MIT licence. See LICENSE.
 *
 * feed.h: the revocation feed (revocation.c). One thread subscribes to
 * REVOCATION_CHANNEL and drops revoked credentials from L1 for every worker
 * at once; it also keeps the table of revoked session ids that JWTs are
 * checked against (decide.c, verify.c). Off the request path.
 */
#ifndef GW_FEED_H
#define GW_FEED_H

#include "types.h"

/** Any thread: session id whose JWTs are refused from now on (sid claim). */
void gw_sid_revoke(const char *id);
/** Any thread: was this session id revoked? */
bool gw_sid_revoked(const char *id);
/** Main thread: starts and stops the subscriber thread. */
void gw_revocation_start(void);
void gw_revocation_stop(void);
/** Any thread: subscribed now (/ready, /metrics). */
bool gw_revocation_up(void);

#endif
