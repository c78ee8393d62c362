/* Portcullis - MIT licence. See LICENSE.
 *
 * decide.c: stage 7. Turns a lookup into a verdict, failing closed:
 *
 *   store unavailable          503 (never ALLOW)
 *   unknown credential         401
 *   expired                    401 (and dropped from L1)
 *   API key disabled           401
 *   missing permission         403 (API keys: every required action must be
 *                              granted; route permissions are an API-key
 *                              property and do not apply to sessions or JWTs)
 *   JWT expired, or its        401 JWT_EXPIRED / JWT_REVOKED (checked on every
 *   session (sid) revoked      request, L1 hit or not)
 *   the route's "allow"        403 EMAIL_NOT_ALLOWED (email not listed by
 *                              domain or whole) / EMAIL_NOT_VERIFIED (listed,
 *                              not verified); sessions and JWTs
 *
 * An allowed session that is due for Better Auth's sliding refresh gets an
 * async UPDATE here, at most once per updateAge: L1 then holds the new
 * expiry, so the next request does not ask again. The response path never
 * waits for it. A session that came in the cookie also gets the cookie
 * back with the new Max-Age, on this request's answer (r->refresh_cookie,
 * written by identity.c); a Bearer client holds its token, not a cookie.
 * Better Auth's dont_remember cookie (rememberMe:false) means no refresh
 * at all, as in Better Auth: the row keeps its day, the cookie stays a
 * browser-session cookie.
 */
#include "stages.h"
#include "cache.h"
#include "store.h"
#include "jwt.h"
#include "feed.h"
#include "../lib/json.h"

#include <string.h>
#include <strings.h>

/* Does the key's parsed permissions ({"files":["read","write"]}) grant
 * every action the route requires? */
static bool permitted_tree(const struct gw_route *rt, yajl_val v)
{
    if (v == NULL)
        return false;
    for (size_t i = 0; i < rt->nperms; i++) {
        yajl_val have = pc_json_get(v, rt->perms[i].resource);
        if (!YAJL_IS_ARRAY(have))
            return false;
        for (size_t a = 0; a < rt->perms[i].nactions; a++) {
            bool found = false;
            for (size_t k = 0; k < have->u.array.len && !found; k++) {
                yajl_val x = have->u.array.values[k];
                found = YAJL_IS_STRING(x) && strcmp(x->u.string, rt->perms[i].actions[a]) == 0;
            }
            if (!found)
                return false;
        }
    }
    return true;
}

static bool permitted(const struct gw_route *rt, const char *perms_json)
{
    if (rt->nperms == 0)
        return true;
    if (perms_json[0] == '\0')
        return false;
    yajl_val v = pc_json_parse(perms_json, strlen(perms_json));
    bool ok = permitted_tree(rt, v);
    yajl_tree_free(v);
    return ok;
}

uint64_t gw_perm_bits(const struct gw_table *t, const char *perms_json)
{
    yajl_val v = perms_json[0] ? pc_json_parse(perms_json, strlen(perms_json)) : NULL;
    uint64_t bits = 0;
    for (size_t i = 0; i < t->nroutes && i < 64; i++)
        if (t->routes[i].nperms == 0 || permitted_tree(&t->routes[i], v))
            bits |= 1ull << i;
    yajl_tree_free(v);
    return bits;
}

/* From the bits for r's table (perm_fill), or by parsing. */
static bool key_permitted(const struct gw_request *r, const struct gw_principal *p)
{
    size_t i = (size_t)(r->route - r->table->routes);
    if (r->route->nperms == 0)
        return true;
    if (p->perm_gen == r->table->gen && i < 64)
        return (p->perm_bits >> i) & 1;
    return permitted(r->route, p->permissions);
}

/* A key on a route with permissions whose bits are not for r's table (new
 * to L1, or the routes were reloaded): parsed once for every route of the
 * table and kept in L1, so that a key costs one parse per table, not one
 * per request. */
static void perm_fill(struct gw_request *r)
{
    struct gw_principal *p = &r->p;
    if (r->kind != GW_CRED_API_KEY || r->lookup != GW_LOOKUP_FOUND || !p->found ||
        r->route->nperms == 0 || p->perm_gen == r->table->gen ||
        r->route - r->table->routes >= 64)
        return;
    p->perm_bits = gw_perm_bits(r->table, p->permissions);
    p->perm_gen = r->table->gen;
    gw_l1_perms(r->hash, p->perm_gen, p->perm_bits);
}

/* Is iss (an index in gw_cfg.issuers) one that t accepts? A JWT that L1
 * knows from before a reload may name one the routes no longer list. */
static bool table_accepts(const struct gw_table *t, unsigned iss)
{
    for (size_t i = 0; i < t->nissuers; i++)
        if (t->issuers[i]->index == iss)
            return true;
    return false;
}

static void maybe_refresh(struct gw_request *r, int64_t now)
{
    struct gw_principal *p = &r->p;
    if (gw_cfg.update_age <= 0 || p->expires_at == 0)
        return;
    bool due = p->expires_at - gw_cfg.expires_in * 1000 + gw_cfg.update_age * 1000 <= now;
    if (!due || gw_dont_remember(r))
        return;
    int64_t exp = now + gw_cfg.expires_in * 1000;
    gw_pg_refresh_session(r->w, p->cred_id, exp, now);
    r->refresh_cookie = r->src == GW_SRC_COOKIE;
    p->expires_at = exp;
    p->updated_at = now;
    int64_t ttl = gw_cfg.l1_ttl * 1000;
    gw_l1_put(r->hash, p, ttl, r->l1_epoch);
    gw_l2_store(r->w, r->hash_b64, p, exp - now);
}

static enum gw_verdict refuse(struct gw_refusal *why, enum gw_verdict v, int status,
                              const char *code, const char *msg, bool expired)
{
    why->status = status;
    why->code = code;
    why->msg = msg;
    why->expired = expired;
    return v;
}

/* A route's "allow": is the principal's email listed, by domain or whole,
 * and verified? Emails compare without case (Better Auth stores them lower
 * case; an issuer may not). */
static bool email_listed(const struct gw_allow *a, const char *email)
{
    const char *at = strrchr(email, '@');
    if (at == NULL || at == email || at[1] == '\0')
        return false;
    for (size_t i = 0; i < a->ndomains; i++)
        if (strcasecmp(at + 1, a->domains[i]) == 0)
            return true;
    for (size_t i = 0; i < a->nemails; i++)
        if (strcasecmp(email, a->emails[i]) == 0)
            return true;
    return false;
}

static enum gw_verdict verdict_allow(const struct gw_request *r, struct gw_refusal *why)
{
    const struct gw_allow *a = r->route ? r->route->allow : NULL;
    if (a == NULL)
        return GW_ALLOW;
    if (!email_listed(a, r->p.email))
        return refuse(why, GW_DENY, 403, "EMAIL_NOT_ALLOWED",
                      "This account's email is not allowed on this route", false);
    if (!r->p.email_verified)
        return refuse(why, GW_DENY, 403, "EMAIL_NOT_VERIFIED", "Email not verified", false);
    return GW_ALLOW;
}

/* A JWT was verified (verify.c) or found in L1: what is left is its expiry
 * and its session. A negative entry carries the code it was refused with.
 * The message is gw_jwt_refuse's. */
static enum gw_verdict verdict_jwt(const struct gw_request *r, int64_t now,
                                   struct gw_refusal *why)
{
    const struct gw_principal *p = &r->p;
    if (!p->found || p->kind != GW_CRED_JWT)
        return refuse(why, GW_DENY, 401,
                      p->kind == GW_CRED_JWT && p->cred_id[0] ? p->cred_id : "JWT_MALFORMED",
                      NULL, false);
    if (p->expires_at <= now)
        return refuse(why, GW_DENY, 401, "JWT_EXPIRED", NULL, true);
    if (!table_accepts(r->table, p->issuer))
        return refuse(why, GW_DENY, 401, "JWT_UNKNOWN_ISSUER", NULL, false);
    if (gw_sid_revoked(p->cred_id))
        return refuse(why, GW_DENY, 401, "JWT_REVOKED", NULL, false);
    return verdict_allow(r, why);
}

enum gw_verdict gw_verdict_of(const struct gw_request *r, int64_t now, struct gw_refusal *why)
{
    const struct gw_principal *p = &r->p;
    bool session = r->kind == GW_CRED_SESSION;
    if (r->kind == GW_CRED_JWT)
        return verdict_jwt(r, now, why);
    if (r->lookup == GW_LOOKUP_UNAVAILABLE)
        return refuse(why, GW_UNAVAILABLE, 503, "AUTH_UNAVAILABLE",
                      "Cannot check credentials right now, try again", false);
    if (r->lookup != GW_LOOKUP_FOUND || !p->found || p->kind != r->kind)
        return session ? refuse(why, GW_DENY, 401, "INVALID_SESSION",
                                "Session not found or expired", false)
                       : refuse(why, GW_DENY, 401, "INVALID_API_KEY", "Invalid API key", false);
    if (p->expires_at != 0 && p->expires_at <= now)
        return session ? refuse(why, GW_DENY, 401, "SESSION_EXPIRED", "Session expired", true)
                       : refuse(why, GW_DENY, 401, "KEY_EXPIRED", "API key expired", true);
    if (!session && !p->enabled)
        return refuse(why, GW_DENY, 401, "KEY_DISABLED", "API key is disabled", false);
    if (!session && !key_permitted(r, p))
        return refuse(why, GW_DENY, 403, "INSUFFICIENT_PERMISSIONS",
                      "API key lacks a required permission", false);
    return session ? verdict_allow(r, why) : GW_ALLOW;
}

enum gw_verdict gw_decide(struct gw_request *r)
{
    int64_t now = pc_now_ms();
    struct gw_refusal why;
    perm_fill(r);
    enum gw_verdict v = gw_verdict_of(r, now, &why);
    if (v == GW_ALLOW) {
        if (r->kind == GW_CRED_SESSION)
            maybe_refresh(r, now);
        r->outcome = "allow";
        return GW_ALLOW;
    }
    if (why.expired)
        gw_l1_delete(r->hash);
    if (r->kind == GW_CRED_JWT && why.msg == NULL)
        gw_jwt_refuse(r, why.code);
    else
        gw_fail(r, why.status, why.code, why.msg);
    return v;
}
