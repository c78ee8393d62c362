/* Portcullis - MIT licence. See LICENSE.
 *
 * intake.h: a parsed request's way in (intake.c), before any stage: its
 * request id, the request target and path check, and the local routes
 * (/health, /live, /ready, /_stats, /metrics) answered without a stage.
 */
#ifndef GW_INTAKE_H
#define GW_INTAKE_H

#include "types.h"

/** Front, on r's loop: a parsed request with its body. Answers a local
 * route or a bad target (ending r), else starts the stages. */
void gw_intake(struct gw_request *r);
/* gw_path_plain, defined in intake.c, is declared in stages.h: route.c
 * applies it to a forward-auth request's original URI too. */

#endif
