/* Portcullis - MIT licence. See LICENSE.
 *
 * stages.h: the stage entry points, in flow order. request.c calls them,
 * and only request.c: it writes r->stage and picks each next stage
 * (next_stage()) from what the stage recorded in r.
 *
 * Every entry runs on r's loop. Those returning enum gw_step follow
 * request.h: GW_NEXT (go on), GW_ASYNC (parked with gw_park; a completion
 * records its outcome and resumes r), GW_ENDED (r is gone). Three keep the
 * shape unit tests call them by (gw_route_match, gw_extract, gw_decide);
 * request.c maps their results onto the same three steps.
 */
#ifndef GW_STAGES_H
#define GW_STAGES_H

#include "request.h"

/** A refusal decided but not yet answered: what the pure halves of the
 * stages below (gw_route_find, gw_extract_cred, gw_verdict_of) hand their
 * stage, which answers it with gw_fail (and the unit tests read). */
struct gw_refusal {
    int status;
    const char *code;
    const char *msg;        /* NULL for a JWT code: gw_jwt_refuse words it */
    bool expired;           /* decide: the principal has expired (drop it from L1) */
    char text[200];         /* a message composed for this refusal (msg points here) */
};

/** ROUTE (route.c): sets r->route and r->upstream_path (and, for a
 * forward-auth request, r->path from the original URI). False: answered
 * 404 (or 400 for a bad forward-auth request); r has ended. */
bool gw_route_match(struct gw_request *r);
/** Route stage, forward auth (/_auth): reads the original request's path,
 * method and host, each from the one header FORWARD_AUTH_* names (Envoy:
 * the /_auth/<original path> itself), every candidate header agreeing, into
 * r->path, r->fa_method and r->fa_host. False: refused, *why says how (400);
 * nothing sent (gw_route_match answers it). No I/O. */
bool gw_forward_auth_read(struct gw_request *r, struct gw_refusal *why);
/** Route stage without its answer (no forward auth, no I/O; never ends r):
 * the route r->path falls under, also set in r->route with r->upstream_path
 * (heap) and an :apiKey segment in r->cred/r->src; NULL: no route (404). */
const struct gw_route *gw_route_find(struct gw_request *r);
/** Pure (intake.c): splits a request target (origin-form, or absolute-form
 * as proxies send) into its path ("/" when empty) and query (NULL when
 * none), both heap; the fragment is dropped. -1: neither form (400). */
int gw_target_split(const char *target, char **path, char **query);
/** Pure (intake.c): is the path one the router and an upstream read alike
 * (no dot segment, empty segment or encoded separator)? Intake applies it
 * to every request, route.c to a forward-auth request's original URI. */
bool gw_path_plain(const char *path);
/** Intake: is path the forward-auth endpoint (/_auth; with Envoy also
 * /_auth/...)? Pure. */
bool gw_forward_auth_target(const char *path);

/** EXTRACT (extract.c): finds the credential the route accepts (r->kind,
 * r->cred, r->hash). ANONYMOUS: the route needs none (r->kind stays NONE).
 * ANSWERED: refused with 401; r has ended. No I/O. */
enum gw_extract_result { GW_EXTRACT_OK = 0, GW_EXTRACT_ANONYMOUS, GW_EXTRACT_ANSWERED };
enum gw_extract_result gw_extract(struct gw_request *r);
/** Extract stage without its answer (no I/O; never ends r): fills r's
 * kind, src, cred and hash; GW_EXTRACT_ANSWERED means refused, *why says
 * how, and nothing has been sent yet (gw_extract sends it). */
enum gw_extract_result gw_extract_cred(struct gw_request *r, struct gw_refusal *why);
/** Extract stage, origin.c: may a cookie-authenticated request with an
 * unsafe method go on (its Origin, or Referer, trusted or its own)? False:
 * refused with 403, *why says how; nothing sent. No I/O; never ends r. */
bool gw_origin_ok(const struct gw_request *r, struct gw_refusal *why);
/** Does r hold Better Auth's dont_remember cookie (rememberMe:false), well
 * signed? Such a session is never refreshed (decide.c), as in Better Auth.
 * No I/O; never ends r. */
bool gw_dont_remember(const struct gw_request *r);

/* L1 is looked up by request.c itself (cache.h): a hit sets r->lookup. */

/** L2 (l2redis.c): GET of r's credential in Redis. NEXT when Redis cannot
 * be used now or the bound is full (r->lookup stays MISS: PostgreSQL next);
 * ASYNC: the reply (or GATEWAY_REDIS_TIMEOUT_MS) sets r->lookup to FOUND
 * (r->p filled, L1 too) or leaves MISS, and resumes r. Never ends r. */
enum gw_step gw_l2_lookup(struct gw_request *r);
/** PG (pgstore.c): joins or starts the flight for r's credential. ASYNC:
 * woken with r->lookup FOUND, UNKNOWN or UNAVAILABLE; NEXT: the flight had
 * just landed (r->lookup set from L1); ENDED: the bound is full (503). */
enum gw_step gw_pg_lookup(struct gw_request *r);
/** VERIFY (verify.c): a JWT that L1 did not know. NEXT with r->lookup =
 * FOUND; ASYNC: parked on its issuer's JWKS fetch (resumed into VERIFY
 * once more); ENDED: refused (401, or 503 without keys or over the bound). */
enum gw_step gw_jwt_verify(struct gw_request *r);

/** DECIDE (decide.c): the policy on r->lookup and r->p. ALLOW: go on;
 * anything else has been answered and r has ended. May start a sliding
 * session refresh (fire and forget). */
enum gw_verdict { GW_ALLOW = 0, GW_DENY, GW_UNAVAILABLE };
enum gw_verdict gw_decide(struct gw_request *r);
/** The policy alone (any thread; never ends r, writes nothing, reads the
 * revoked-sid set): the verdict on r's kind, lookup and principal at now_ms;
 * on anything but ALLOW *why is the answer gw_decide gives. */
enum gw_verdict gw_verdict_of(const struct gw_request *r, int64_t now_ms, struct gw_refusal *why);
/** Any thread: which of the first 64 routes' required permissions
 * perms_json grants (one parse, when a key enters L1). Pure. */
uint64_t gw_perm_bits(const struct gw_table *t, const char *perms_json);

/** MINT (mint.c): sets r->upstream_jwt on routes with upstream_jwt. NEXT,
 * or ENDED with 503 when no key can sign. */
enum gw_step gw_mint(struct gw_request *r);

/** LIMIT (limit.c): API-key quota and rate limit in Redis. First call:
 * NEXT with r->limit = PASS when nothing is to be counted (or Redis is
 * down and the key has no quota), ASYNC while the script runs, ENDED with
 * 503 when a quota cannot be counted. Resumed with r->limit set to a
 * refusal: answers it (429 or 503) and ends r. */
enum gw_step gw_limit_check(struct gw_request *r);

/** ANSWER (proxy.c): starts the upstream exchange; it, or the 502/503 it
 * answers, ends r. */
void gw_proxy_start(struct gw_request *r);
/** ANSWER for GET /_auth (forward.c): 200 with the identity headers. Ends r. */
void gw_forward_auth_reply(struct gw_request *r);

#endif
