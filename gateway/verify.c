/* Portcullis - MIT licence. See LICENSE.
 *
 * verify.c: stage GW_STAGE_VERIFY, a JWT that L1 did not know. No store is
 * asked: the token is checked here against its issuer's keys (jwks.c) and
 * the result goes into L1 under the token's hash until it expires, so the
 * next request with it costs what an API key costs.
 *
 *   parse        three base64url parts, JSON objects, <= PC_JWT_MAX bytes
 *   issuer       iss must be a configured issuer
 *   key          by kid in that issuer's JWKS (an unknown kid waits for one
 *                refetch); the key decides the algorithm: none, HMAC and a
 *                header alg that does not fit the key are refused
 *   signature    OpenSSL (ES256, RS256, EdDSA)
 *   claims       exp (required), nbf, aud, with JWT_LEEWAY_SECONDS
 *   session      a token whose sid was revoked is refused (decide.c checks
 *                again on every L1 hit)
 *
 * A token that fails after its signature was checked (expired, wrong
 * audience) is cached as a negative entry carrying its error code; forged
 * or malformed ones are refused without caching anything.
 */
#include "stages.h"
#include "jwt.h"
#include "cache.h"
#include "../lib/jws.h"
#include "../lib/json.h"

#include <stdio.h>
#include <string.h>

#define NEG_TTL_MS 60000

/* The message for each refusal code. */
static const struct {
    const char *code, *msg;
} refusals[] = {
    {"JWT_MALFORMED", "Malformed JWT"},
    {"JWT_TOO_LARGE", "JWT too large"},
    {"JWT_ALG_NOT_ALLOWED", "JWT algorithm not allowed"},
    {"JWT_UNKNOWN_ISSUER", "JWT issuer not trusted"},
    {"JWT_UNKNOWN_KEY", "JWT signing key not found"},
    {"JWT_BAD_SIGNATURE", "Invalid JWT signature"},
    {"JWT_EXPIRED", "JWT expired"},
    {"JWT_NOT_YET_VALID", "JWT not yet valid"},
    {"JWT_BAD_AUDIENCE", "JWT audience not accepted"},
    {"JWT_REVOKED", "JWT session revoked"},
};

void gw_jwt_refuse(struct gw_request *r, const char *code)
{
    const char *msg = "Invalid JWT";
    for (size_t i = 0; i < PC_ARRAY_LEN(refusals); i++)
        if (strcmp(refusals[i].code, code) == 0)
            msg = refusals[i].msg;
    r->outcome = "deny";
    gw_fail(r, 401, code, msg);
}

/* Remembers an authentic but unacceptable token, so its next use costs a
 * lookup, not a signature check. */
static void refuse_cached(struct gw_request *r, const char *code, int64_t ttl_ms)
{
    struct gw_principal neg;
    memset(&neg, 0, sizeof neg);
    neg.kind = GW_CRED_JWT;
    neg.found = false;
    snprintf(neg.cred_id, sizeof neg.cred_id, "%s", code);
    gw_l1_put(r->hash, &neg, ttl_ms, r->l1_epoch);
    gw_jwt_refuse(r, code);
}

static struct gw_issuer *find_issuer(const struct gw_table *t, const char *iss)
{
    for (size_t i = 0; iss && i < t->nissuers; i++)
        if (strcmp(t->issuers[i]->issuer, iss) == 0)
            return t->issuers[i];
    return NULL;
}

/* Copies claim name into out; false when present but not a string that fits. */
static bool copy_claim(const struct pc_jwt *t, const char *name, char *out, size_t outsz)
{
    out[0] = '\0';
    yajl_val v = pc_json_get(t->claims, name);
    if (v == NULL)
        return true;
    if (!YAJL_IS_STRING(v) || strlen(v->u.string) >= outsz)
        return false;
    strcpy(out, v->u.string);
    return true;
}

/* Is claim a or b true? Better Auth's JWT plugin writes the user's
 * emailVerified; OIDC issuers (Google) write email_verified, some as the
 * string "true". */
static bool claim_true(const struct pc_jwt *t, const char *a, const char *b)
{
    yajl_val v = pc_json_get(t->claims, a);
    if (v == NULL)
        v = pc_json_get(t->claims, b);
    return YAJL_IS_TRUE(v) || (YAJL_IS_STRING(v) && strcmp(v->u.string, "true") == 0);
}

static bool claims_to_principal(const struct pc_jwt *t, struct gw_principal *p, int64_t exp)
{
    memset(p, 0, sizeof *p);
    p->kind = GW_CRED_JWT;
    p->found = true;
    p->enabled = true;
    p->expires_at = (exp + gw_cfg.jwt_leeway) * 1000;
    if (!copy_claim(t, "sub", p->user_id, sizeof p->user_id) || p->user_id[0] == '\0')
        return false;
    if (!copy_claim(t, "sid", p->cred_id, sizeof p->cred_id))
        return false;
    if (!copy_claim(t, "email", p->email, sizeof p->email))
        p->email[0] = '\0';     /* an odd email claim is not ours to forward */
    p->email_verified = p->email[0] && claim_true(t, "emailVerified", "email_verified");
    return true;
}

enum gw_step gw_jwt_verify(struct gw_request *r)
{
    struct pc_jwt t;
    const char *err;
    if (r->cred_len > PC_JWT_MAX) {
        gw_jwt_refuse(r, "JWT_TOO_LARGE");
        return GW_ENDED;
    }
    if (pc_jwt_parse(r->cred, r->cred_len, &t, &err) != 0) {
        gw_jwt_refuse(r, "JWT_MALFORMED");
        return GW_ENDED;
    }
    const char *code = NULL;
    struct gw_keyset *set = NULL;
    const struct pc_jwk *key = NULL;
    struct gw_issuer *iss = find_issuer(r->table, pc_jwt_claim_str(&t, "iss"));
    if (t.alg == PC_JWK_NONE)
        code = "JWT_ALG_NOT_ALLOWED";
    else if (iss == NULL)
        code = "JWT_UNKNOWN_ISSUER";
    if (code) {
        pc_jwt_free(&t);
        gw_jwt_refuse(r, code);
        return GW_ENDED;
    }
    switch (gw_jwks_key(iss, t.kid, r, &set, &key)) {
    case GW_KEY_WAIT:
        pc_jwt_free(&t);
        return GW_ASYNC;    /* parked: jwks.c wakes r after the fetch */
    case GW_KEY_BUSY:
        pc_jwt_free(&t);
        r->outcome = "unavailable";
        gw_fail(r, 503, "OVERLOADED", "Too many requests waiting for the issuer's keys");
        return GW_ENDED;
    case GW_KEY_UNKNOWN:
        pc_jwt_free(&t);
        gw_jwt_refuse(r, "JWT_UNKNOWN_KEY");
        return GW_ENDED;
    case GW_KEY_UNAVAILABLE:
        pc_jwt_free(&t);
        r->outcome = "unavailable";
        gw_fail(r, 503, "JWKS_UNAVAILABLE", "Cannot fetch the issuer's keys, try again");
        return GW_ENDED;
    default:
        break;
    }
    bool good = pc_jwt_verify(&t, r->cred, key, &err);
    bool alg_mismatch = !good && t.alg != key->alg;
    gw_keyset_release(set);
    if (!good) {
        pc_jwt_free(&t);
        gw_jwt_refuse(r, alg_mismatch ? "JWT_ALG_NOT_ALLOWED" : "JWT_BAD_SIGNATURE");
        return GW_ENDED;
    }
    /* authentic from here on */
    struct pc_jwt_expect e = {
        .issuer = iss->issuer,
        .audiences = (const char *const *)iss->audiences,
        .naudiences = iss->naudiences,
        .now = pc_now_ms() / 1000,
        .leeway = gw_cfg.jwt_leeway,
        .require_exp = true,
    };
    enum pc_jwt_claims_result cr = pc_jwt_check_claims(&t, &e);
    int64_t exp = 0;
    (void)pc_jwt_claim_num(&t, "exp", &exp);
    struct gw_principal p;
    bool ok = cr == PC_JWT_CLAIMS_OK && claims_to_principal(&t, &p, exp);
    pc_jwt_free(&t);
    switch (cr) {
    case PC_JWT_CLAIMS_OK:
        break;
    case PC_JWT_CLAIMS_EXPIRED:
        refuse_cached(r, "JWT_EXPIRED", NEG_TTL_MS);
        return GW_ENDED;
    case PC_JWT_CLAIMS_NOT_YET_VALID:   /* it will become valid: do not cache */
        gw_jwt_refuse(r, "JWT_NOT_YET_VALID");
        return GW_ENDED;
    case PC_JWT_CLAIMS_BAD_AUDIENCE:
        refuse_cached(r, "JWT_BAD_AUDIENCE", NEG_TTL_MS);
        return GW_ENDED;
    default:
        refuse_cached(r, "JWT_MALFORMED", NEG_TTL_MS);
        return GW_ENDED;
    }
    if (!ok) {
        refuse_cached(r, "JWT_MALFORMED", NEG_TTL_MS);
        return GW_ENDED;
    }
    p.issuer = (uint16_t)iss->index;
    r->p = p;
    r->lookup = GW_LOOKUP_FOUND;
    int64_t ttl = p.expires_at - pc_now_ms();
    if (ttl > 0)
        gw_l1_put(r->hash, &p, ttl, r->l1_epoch);
    return GW_NEXT;
}
