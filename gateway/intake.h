/* Portcullis - MIT licence. See LICENSE.
 *
 * intake.h: a parsed request's way in (intake.c), before any stage: its
 * request id, the request target and path check, and the local routes
 * answered without a stage: /health, /live and /ready (under
 * GATEWAY_HEALTH_PREFIX) on both listeners; /metrics and /_stats on the
 * admin listener (GATEWAY_ADMIN_LISTEN) only, which answers nothing else.
 */
#ifndef GW_INTAKE_H
#define GW_INTAKE_H

#include "types.h"

/** Front, on r's loop: a parsed request with its body. Answers a local
 * route or a bad target (ending r), else starts the stages. */
void gw_intake(struct gw_request *r);
/* The local answers. */
enum gw_local {
    GW_LOCAL_NONE = 0,  /* not a local path: routed (public), 404 (admin) */
    GW_LOCAL_HEALTH,
    GW_LOCAL_LIVE,
    GW_LOCAL_READY,
    GW_LOCAL_METRICS,   /* admin only, with GATEWAY_METRICS */
    GW_LOCAL_STATS,
};

/** Which local answer path (no query) is on the public listener (admin
 * false) or the admin one. */
enum gw_local gw_local_path(const char *path, bool admin);

/* gw_path_plain, defined in intake.c, is declared in stages.h: route.c
 * applies it to a forward-auth request's original URI too. */

#endif
