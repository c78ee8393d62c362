/* Portcullis - MIT licence. See LICENSE.
 *
 * proxy.h: the exchange with the upstream, after the request was allowed.
 * Stage ANSWER starts it (gw_proxy_start, in stages.h); here is what the
 * front and the worker ask of it, and what its three files share:
 *
 *   upstream.c  each worker's pool of connections per upstream
 *   streams.c   tunnels and streamed answers by credential (streams.h)
 *   identity.c  the header policy: hop-by-hop and identity headers, the
 *               cookie filter, the identity we add (also for forward.c)
 *   proxy.c     the exchange: send, relay the answer, stream, fail
 */
#ifndef GW_PROXY_H
#define GW_PROXY_H

#include "types.h"

struct pc_buf;

/** Worker start/stop (worker.c): w's upstream pools. Stopping ends every
 * exchange still running. */
void gw_proxy_init(struct gw_worker *w);
void gw_proxy_stop(struct gw_worker *w);
/** On w's loop: pools for gw_cfg.upstreams[w->npools..n), which a
 * reloaded table added (names start resolving). */
void gw_proxy_grow(struct gw_worker *w, size_t n);
/** On w's loop, every 100 ms: upstream connect and read timeouts (may end
 * requests). */
void gw_proxy_tick(struct gw_worker *w);
/** Front, on r's loop: the client can take more of a streamed answer. */
void gw_proxy_resume(struct gw_request *r);
/** Front, on r's loop: n bytes from a tunnel's client, for the upstream.
 * 1: taken; 0: taken, but the upstream has TUNNEL_BACKLOG unsent, so the
 * client is not to be read until gw_front_tunnel_resume; -1: the tunnel
 * failed and r has ended. */
int gw_proxy_tunnel_in(struct gw_request *r, const char *data, size_t n);
/** Front, on r's loop: r's streamed body has new bytes (or ended, or
 * failed) for gw_front_body_peek. May end r. */
void gw_proxy_body_ready(struct gw_request *r);
/** Front, on r's loop: the client has gone; the exchange is cancelled from
 * the loop, later, and ends r. */
void gw_proxy_client_gone(struct gw_request *r);

/* ---- identity.c ---- */

/** The identity headers' names unless IDENTITY_HEADER_NAMES renames them. */
extern const char *const gw_idh_default[GW_IDH_COUNT];
/** Appends X-User-Id, X-User-Email, X-Auth-Method and X-Session-Id or
 * X-Api-Key-Id (and the rest of enum gw_idh that applies) for r's principal,
 * under gw_cfg.idh's names, as header lines to b (nothing on anonymous
 * routes). Does not end r. */
void gw_identity_headers(struct gw_request *r, struct pc_buf *b);
/** Main thread, at start: IDENTITY_HEADER_NAMES (docs/gateway.md) into out: the default names,
 * renamed or emptied (not sent) as spec says. -1 with err set: an unknown
 * identity header, one named twice, a bad or reserved new name, or two sent
 * under one name. */
PC_MUSTCHECK int gw_identity_names_parse(const char *spec, struct gw_idnames *out, char *err,
                                         size_t errsz);
/** A hop-by-hop header (RFC 9110 7.6.1), never relayed. */
bool gw_hop_by_hop(const char *h, size_t n);
/** A header we set (X-User-Id, ...): a client's or upstream's is dropped. */
bool gw_identity_header(const char *h, size_t n);
/** Does one of rules (a route's request_headers or response_headers) name
 * the header h (n bytes, any case)? Its lines are then not relayed. */
bool gw_hdr_ruled(const struct gw_hdr_rules *rules, const char *h, size_t n);
/** Appends the "set" lines of rules to b, in the file's order. */
void gw_hdr_rules_set(const struct gw_hdr_rules *rules, struct pc_buf *b);
/** Is header h named in the Connection header value conn? */
bool gw_named_in_connection(const char *conn, const char *h);
/** The Cookie value without our session cookies (heap), or NULL when
 * nothing is left. */
char *gw_filter_cookies(const char *cookie);
/** After a sliding refresh of a session that came in a cookie (decide.c
 * set r->refresh_cookie): appends "Set-Cookie: <session cookie>=<the
 * token signed again>; Max-Age=<SESSION_EXPIRES_IN_SECONDS>; Path=/; HttpOnly[;
 * Secure]; SameSite=Lax" (lib/cookie.h pc_set_cookie_value) to b and
 * clears the flag, so that one answer carries it; otherwise nothing. Does
 * not end r. */
void gw_refresh_cookie_header(struct gw_request *r, struct pc_buf *b);
/** Does the Set-Cookie value v (n bytes) set our session cookie (its name,
 * exactly, before the '=')? Then an upstream's answer carries its own, and
 * the refresh's is left out. Pure. */
bool gw_sets_session_cookie(const char *v, size_t n);

#endif
