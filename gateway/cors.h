/* Portcullis - MIT licence. See LICENSE.
 *
 * cors.h: a route's "cors" (cors.c): preflights answered at the route
 * stage, before any credential is asked for, and the Access-Control-*
 * lines every answer on such a route carries for an allowed Origin.
 */
#ifndef GW_CORS_H
#define GW_CORS_H

#include "types.h"

struct pc_buf;

/** Route stage: when r is a CORS preflight (OPTIONS with Origin and
 * Access-Control-Request-Method) on a route with cors, answers it 204 (with
 * the Access-Control-Allow-* lines only when the origin, the method and
 * every header asked for are allowed), ends r and returns true. */
bool gw_cors_preflight(struct gw_request *r);

/** Any answer's head (front.c, before its end): on a route with cors and
 * an allowed Origin, Access-Control-Allow-Origin (+ -Credentials,
 * -Expose-Headers); on every cors route, Vary: Origin. Not for forward
 * auth (the proxy, not a browser, reads /_auth's answers). */
void gw_cors_headers(const struct gw_request *r, struct pc_buf *b);

/** Is this upstream header an Access-Control-* line (proxy.c drops them on
 * cors routes: the route's policy is the only one)? */
bool gw_cors_header_name(const char *name, size_t n);

void gw_cors_free(struct gw_cors *c);

#endif
