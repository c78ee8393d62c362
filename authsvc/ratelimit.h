/* Portcullis - MIT licence. See LICENSE.
 *
 * ratelimit.h: the client address (TRUSTED_PROXIES) and Better Auth's
 * per-IP sign-in/sign-up limits in Redis (ratelimit.c).
 */
#ifndef AS_RATELIMIT_H
#define AS_RATELIMIT_H

#include <stdbool.h>

struct as_job;
struct as_worker;

/** Worker, before an R_LIMITED route: applies Better Auth's default rules to
 * the job's path. True when the request may go on; otherwise the 429 has
 * been set in the job (not sent). */
bool as_ratelimit_check(struct as_job *job, struct as_worker *w);
/** Loop thread: sets job->ip from the TCP peer, or from IP_ADDRESS_HEADER
 * when the peer is one of TRUSTED_PROXIES (canonical text, IPv4-mapped
 * IPv6 as IPv4). */
void as_client_ip(struct as_job *job, const char *peer);

#endif
