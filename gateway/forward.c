/* Portcullis - MIT licence. See LICENSE.
 *
 * forward.c: GET /_auth, forward authentication for proxies that keep their
 * own data path: nginx auth_request, Traefik ForwardAuth, Envoy ext_authz
 * (HTTP). The route policy comes from the original URI (route.c); a request
 * that gets this far is allowed: 200 with the identity headers and no body.
 * Refusals (401, 403, 503) were answered by the earlier stages, as JSON.
 */
#include "gateway.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

void gw_forward_auth_reply(struct gw_request *r)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(r->req);
    gw_set_identity_headers(r, oh);
    evhttp_add_header(oh, "X-Request-Id", r->request_id);
    r->status = 200;
    evhttp_send_reply(r->req, 200, "OK", NULL);
    gw_request_finish(r);
}
