/* Portcullis - MIT licence. See LICENSE.
 *
 * conns.h: connection caps, the request-head deadline, EMFILE handling and
 * JSON error pages for what evhttp answers itself (conns.c). Loop thread.
 */
#ifndef AS_CONNS_H
#define AS_CONNS_H

#include <stdint.h>

struct event_base;
struct evhttp;
struct evhttp_bound_socket;
struct evhttp_request;
struct pc_buf;

void as_conns_start(struct event_base *base, struct evhttp *http,
                    struct evhttp_bound_socket *bound);
/** Before evhttp_del_accept_socket (drain). */
void as_conns_stop_accepting(void);
/** After evhttp_free. */
void as_conns_free(void);
/** A request reached on_request / is being answered. */
void as_conns_request_begin(struct evhttp_request *req);
void as_conns_request_end(struct evhttp_request *req);
int64_t as_conns_max(void);
void as_conns_render(struct pc_buf *b);

#endif
