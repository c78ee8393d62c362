/* Portcullis - MIT licence. See LICENSE.
 *
 * origin.h: Better Auth's origin rules (origin.c, better-auth-compat.md §5):
 * the trusted-origin list, the Origin/Referer check of a state-changing
 * request, the redirect-target checks, and CORS (preflight and the
 * Access-Control-* headers of every answer). The server loop runs the checks
 * before a job reaches a worker.
 */
#ifndef AS_ORIGIN_H
#define AS_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>
#include "../lib/util.h"

struct as_job;
struct evkeyvalq;

/** Main thread, at start: builds the trusted list from base_origin,
 * TRUSTED_ORIGINS and BETTER_AUTH_TRUSTED_ORIGINS; -1 after naming a bad
 * entry on stderr. */
PC_MUSTCHECK int as_origins_load(void);
void as_origins_free(void);
/** Any thread: true when the URL or origin (n bytes), read as a browser
 * reads it, is an http(s) origin matching a trusted pattern. */
bool as_origin_trusted(const char *origin, size_t n);
/** Any thread: checks callbackURL-like values: a safe root-relative path, or
 * an http(s) URL without userinfo whose origin is trusted. */
bool as_redirect_allowed(const char *url);
/** Loop thread: the Origin/Referer check of a state-changing request; false
 * when it set a 403 answer (the caller sends it). */
bool as_origin_check(struct as_job *job);
/** Loop thread: callbackURL, redirectTo, errorCallbackURL and
 * newUserCallbackURL in the query or body; false when it set a 403 answer. */
bool as_redirects_check(struct as_job *job);
/** Loop thread: answers an OPTIONS preflight (204; the Allow-* headers when
 * the Origin is trusted). Sets the answer; the caller sends it. */
void as_cors_preflight(struct as_job *job);
/** Loop thread: the CORS headers of an answer to a trusted Origin, into the
 * evhttp output headers oh. */
void as_cors_add(struct evkeyvalq *oh, const struct as_job *job);

#endif
