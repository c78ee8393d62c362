/* Portcullis - MIT licence. See LICENSE.
 *
 * forward.c: GET /_auth, forward authentication for proxies that keep their
 * own data path: nginx auth_request, Traefik ForwardAuth, Envoy ext_authz
 * (HTTP). The route policy comes from the original URI (route.c); a request
 * that gets this far is allowed: 200 with the identity headers and no body,
 * and after a sliding refresh of a cookie session its Set-Cookie, for the
 * proxy to pass to the client (nginx: auth_request_set and add_header).
 * Refusals (401, 403, 503) were answered by the earlier stages, as JSON.
 */
#include "stages.h"
#include "proxy.h"

void gw_forward_auth_reply(struct gw_request *r)
{
    struct pc_buf *b = gw_resp_begin(r, 200, NULL);
    gw_identity_headers(r, b);
    gw_refresh_cookie_header(r, b);
    gw_hdr_append(b, "X-Request-Id", r->request_id);
    gw_resp_end_head(r, 0, true);
    gw_resp_send(r);
    gw_request_end(r);
}
