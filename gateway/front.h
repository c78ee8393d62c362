/* Portcullis - MIT licence. See LICENSE.
 *
 * front.h: the HTTP/1.1 front (front.c). Accepts connections on each
 * worker's listener, reads and parses requests, creates each request
 * (gw_request_new) and hands it to intake (gw_intake); writes answers for
 * the response writer of request.h. Only request.c, intake.c and worker.c
 * include this: stages answer through request.h.
 */
#ifndef GW_FRONT_H
#define GW_FRONT_H

#include "types.h"

/** Main thread, before the workers start: the connection caps. */
void gw_front_init(void);
void gw_front_fini(void);
/** Any thread: the effective GATEWAY_MAX_CONNS. */
int64_t gw_front_max_conns(void);
/** Any thread: peer addresses with a connection open. */
size_t gw_front_addresses(void);
/** Worker start (its loop not yet running): accept on w->listen_fd. */
void gw_front_start(struct gw_worker *w);
/** On w's loop: closes the listener (draining). */
void gw_front_stop_accepting(struct gw_worker *w);
/** On w's loop, every 100 ms: idle and lingering connections; when
 * stopping, closes the connections that are between requests. */
void gw_front_tick(struct gw_worker *w, bool stopping);
/** Worker stop, loop stopped, every request ended: closes and frees all. */
void gw_front_free(struct gw_worker *w);
/** From gw_request_end only: r's connection goes on to its next request
 * (or closes). Does not free r. */
void gw_front_request_done(struct gw_request *r);

#endif
