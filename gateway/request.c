/* Portcullis - MIT licence. See LICENSE.
 *
 * request.c: the state machine every request walks (memcached's
 * drive_machine). Each stage either finishes synchronously and moves on,
 * answers the request (which ends it), or starts async work whose completion
 * stores its result and calls gw_advance again.
 */
#include "gateway.h"
#include "../lib/log.h"

volatile int gw_stopping;

void gw_advance(struct gw_request *r)
{
    if (gw_stopping) {
        /* Shutting down: the connection is about to close anyway. */
        gw_request_finish(r);
        return;
    }
    for (;;) {
        switch (r->stage) {
        case GW_STAGE_ROUTE:
            if (!gw_route_match(r))
                return;
            r->stage = GW_STAGE_EXTRACT;
            break;
        case GW_STAGE_EXTRACT:
            switch (gw_extract(r)) {
            case GW_EXTRACT_ANSWERED:
                return;
            case GW_EXTRACT_ANONYMOUS:
                r->stage = GW_STAGE_PROXY;
                break;
            default:
                r->stage = GW_STAGE_L1;
            }
            break;
        case GW_STAGE_L1:
            if (gw_l1_get(r->hash, &r->p)) {
                if (r->p.found)
                    GW_STAT_INC(l1_hits);
                else
                    GW_STAT_INC(l1_negative_hits);
                r->lookup = r->p.found ? GW_LOOKUP_FOUND : GW_LOOKUP_UNKNOWN;
                r->stage = GW_STAGE_DECIDE;
            } else {
                /* a JWT is checked here, not looked up */
                r->stage = r->kind == GW_CRED_JWT ? GW_STAGE_VERIFY : GW_STAGE_L2;
            }
            break;
        case GW_STAGE_L2:
            /* l2redis.c calls back with r->stage set to DECIDE (hit) or PG. */
            if (gw_l2_lookup(r))
                return;
            r->stage = GW_STAGE_PG;
            break;
        case GW_STAGE_PG:
            /* pgstore.c wakes r with r->stage = DECIDE and r->lookup set. */
            gw_pg_lookup(r);
            return;
        case GW_STAGE_VERIFY:
            /* jwks.c wakes a parked r with the stage unchanged */
            if (!gw_jwt_verify(r))
                return;
            r->stage = GW_STAGE_DECIDE;
            break;
        case GW_STAGE_DECIDE:
            if (gw_decide(r) != GW_ALLOW || !gw_mint(r))
                return;
            r->stage = GW_STAGE_LIMIT;
            break;
        case GW_STAGE_LIMIT:
            /* limit.c calls back with r->stage = PROXY, or answers 429/503 */
            if (gw_limit_check(r))
                return;
            r->stage = GW_STAGE_PROXY;
            break;
        case GW_STAGE_PROXY:
            if (r->forward_auth)
                gw_forward_auth_reply(r);
            else
                gw_proxy_start(r);
            return;
        default:
            pc_fatal("gw_advance: bad stage %d", (int)r->stage);
        }
    }
}
