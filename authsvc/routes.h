/* Portcullis - MIT licence. See LICENSE.
 *
 * routes.h: the route table (routes.c), read by the server loop (server.c)
 * to pick a job's handler, and by metrics (route names). Server internals:
 * handlers never include this; they are listed here, not the other way.
 */
#ifndef AS_ROUTES_H
#define AS_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include "job.h"

/* Route flags */
#define R_LOOP 0x1u         /* answered on the loop thread, no I/O */
#define R_LIMITED 0x2u      /* subject to Better Auth's per-IP rate limit (ratelimit.c) */
#define R_PREFIX 0x4u       /* path is a prefix: /api/auth/callback/<provider> */

enum as_loop_kind { LOOP_NONE = 0, LOOP_OK, LOOP_HEALTH, LOOP_LIVE, LOOP_READY, LOOP_METRICS };

struct as_route {
    int method;             /* EVHTTP_REQ_GET / _POST */
    const char *path;       /* exact path (R_PREFIX: prefix of one more segment) */
    as_handler handler;     /* worker handler, or NULL for loop routes */
    unsigned flags;
    enum as_loop_kind loop;
};

extern const struct as_route as_routes[];
extern const size_t as_nroutes;

/** Any thread: the route for (method, path), or NULL. *index is the table
 * index of the last route whose path matched (any method; -1 if none), so a
 * NULL with *index >= 0 means 405 and with -1 means 404. */
const struct as_route *as_route_match(int method, const char *path, int *index);

#endif
