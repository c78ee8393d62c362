/* Portcullis - MIT licence. See LICENSE.
 *
 * mint.c: stage MINT, JWTs the gateway hands upstream on routes with "upstream_jwt", so
 * a service behind a session or API-key route still gets a token it can
 * verify against authsvc's JWKS without calling us.
 *
 * The token is signed with authsvc's current key (signer.c reads it
 * from the shared jwks table), lives MINT_LIFE_S and is reused for the same
 * credential until less than MINT_REUSE_MIN_S is left: one signature per
 * principal every few minutes, not one per request. Each worker keeps its
 * own small direct-mapped cache, so nothing here is locked.
 *
 * Claims: iss/aud as authsvc's (JWT_ISSUER, JWT_AUDIENCE), sub, email, sid
 * (sessions and session JWTs), api_key_id (API keys), auth_method, iat, exp.
 */
#include "stages.h"
#include "jwt.h"
#include "../lib/jws.h"
#include "../lib/json.h"
#include "../lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MINT_LIFE_S 300
#define MINT_REUSE_MIN_S 60
#define MINT_SLOTS 1024

struct mint_slot {
    unsigned char hash[32];     /* credential hash */
    int64_t exp;                /* s; 0 = empty */
    unsigned gen;               /* gw_signer_gen() when it was signed */
    char *token;
};

struct gw_mintcache {
    struct mint_slot slots[MINT_SLOTS];
};

static const char *method_name(enum gw_cred_kind k)
{
    switch (k) {
    case GW_CRED_SESSION:
        return "session";
    case GW_CRED_API_KEY:
        return "api_key";
    default:
        return "jwt";
    }
}

static char *sign_for(const struct gw_request *r, const struct pc_jwk *key, int64_t iat)
{
    const struct gw_principal *p = &r->p;
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "iss");
    pc_jw_str(&w, gw_cfg.jwt_issuer);
    pc_jw_key(&w, "aud");
    pc_jw_str(&w, gw_cfg.jwt_audience);
    pc_jw_key(&w, "sub");
    pc_jw_str(&w, p->user_id);
    if (p->email[0]) {
        pc_jw_key(&w, "email");
        pc_jw_str(&w, p->email);
    }
    if (r->kind == GW_CRED_API_KEY) {
        pc_jw_key(&w, "api_key_id");
        pc_jw_str(&w, p->cred_id);
    } else if (p->cred_id[0]) {
        pc_jw_key(&w, "sid");
        pc_jw_str(&w, p->cred_id);
    }
    pc_jw_key(&w, "auth_method");
    pc_jw_str(&w, method_name(r->kind));
    pc_jw_key(&w, "iat");
    pc_jw_int(&w, iat);
    pc_jw_key(&w, "exp");
    pc_jw_int(&w, iat + MINT_LIFE_S);
    pc_jw_obj_end(&w);
    char *tok = pc_jwt_sign(key, pc_buf_cstr(&b));
    pc_buf_free(&b);
    return tok;
}

enum gw_step gw_mint(struct gw_request *r)
{
    if (r->route->upstream_jwt == GW_UPJWT_NONE || r->route->anonymous)
        return GW_NEXT;
    struct gw_worker *w = r->w;
    if (w->mint == NULL)
        w->mint = pc_xcalloc(1, sizeof *w->mint);
    struct mint_slot *s = &w->mint->slots[(r->hash[0] | (unsigned)r->hash[1] << 8) % MINT_SLOTS];
    int64_t now = pc_now_ms() / 1000;
    /* The common case takes no lock: the same credential, the same key. */
    unsigned gen = gw_signer_gen();
    bool hit = s->token && s->exp - now >= MINT_REUSE_MIN_S && s->gen == gen &&
               memcmp(s->hash, r->hash, 32) == 0;
    if (!hit) {
        const struct pc_jwk *key;
        struct gw_signer *sg = gw_signer_get(&key);
        if (sg == NULL) {
            r->outcome = "unavailable";
            gw_fail(r, 503, "UPSTREAM_JWT_UNAVAILABLE", "No signing key for the upstream JWT yet");
            return GW_ENDED;
        }
        char *tok = sign_for(r, key, now);
        if (tok == NULL)
            pc_logr_error(r->request_id, "mint: signing with key %s failed", key->kid);
        gw_signer_release(sg);
        if (tok == NULL) {
            r->outcome = "unavailable";
            gw_fail(r, 503, "UPSTREAM_JWT_UNAVAILABLE", "Cannot sign the upstream JWT");
            return GW_ENDED;
        }
        free(s->token);
        s->token = tok;
        s->exp = now + MINT_LIFE_S;
        s->gen = gen;
        memcpy(s->hash, r->hash, 32);
    }
    r->upstream_jwt = pc_xstrdup(s->token);
    return GW_NEXT;
}

void gw_mint_free(struct gw_worker *w)
{
    if (w->mint == NULL)
        return;
    for (size_t i = 0; i < MINT_SLOTS; i++)
        free(w->mint->slots[i].token);
    free(w->mint);
    w->mint = NULL;
}
