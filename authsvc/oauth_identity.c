/* Portcullis - MIT licence. See LICENSE.
 *
 * oauth_identity.c: who the provider says signed in, on the loop thread: the
 * ID token's signature (the provider's JWKS), iss, aud, exp/nbf with
 * LEEWAY_S, nonce; userinfo when the ID token lacks the email; then the
 * domain rules (ALLOWED_DOMAINS, Google's hd claim, a verified email). Only
 * an identity that passes them goes to a worker for the rows.
 */
#include "authsvc.h"
#include "oauth_int.h"
#include "validate.h"
#include "../lib/cookie.h"
#include "../lib/crypto.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <event2/http.h>

static bool claim_true(yajl_val v)
{
    return YAJL_IS_TRUE(v) || (YAJL_IS_STRING(v) && strcmp(v->u.string, "true") == 0);
}

static void set_str(char **dst, yajl_val obj, const char *key)
{
    if (*dst == NULL)
        *dst = oa_json_str(obj, key);
}

static void identity_check(struct as_job *job);
static void on_userinfo(void *arg, const struct as_http_resp *r, const char *err)
{
    struct as_job *job = arg;
    struct flow *f = job->state;
    if (err || r->status != 200) {
        oa_fail_on_loop(job, err == AS_HTTP_ESHUTDOWN ? "shutting_down" : "unable_to_get_user_info");
        return;
    }
    yajl_val doc = pc_json_parse(r->body, r->len);
    char *sub = oa_json_str(doc, "sub");
    /* OIDC Core 5.3.2: the userinfo sub must be the ID token's */
    bool same = sub && strcmp(sub, f->sub) == 0;
    if (same) {
        if (f->email == NULL) {
            f->email = oa_json_str(doc, "email");
            f->email_verified = claim_true(pc_json_get(doc, "email_verified"));
        }
        set_str(&f->name, doc, "name");
        set_str(&f->picture, doc, "picture");
        set_str(&f->hd, doc, "hd");
    }
    free(sub);
    if (doc)
        yajl_tree_free(doc);
    if (!same) {
        oa_fail_on_loop(job, "unable_to_get_user_info");
        return;
    }
    identity_check(job);
}

/* The key for t: by kid, or the only key of t's algorithm when t has none. */
static const struct pc_jwk *key_for(const struct provider *p, const struct pc_jwt *t)
{
    if (t->kid[0])
        return pc_jwks_find(&p->jwks, t->kid);
    const struct pc_jwk *found = NULL;
    for (size_t i = 0; i < p->jwks.n; i++) {
        if (p->jwks.keys[i].alg != t->alg)
            continue;
        if (found)
            return NULL;
        found = &p->jwks.keys[i];
    }
    return found;
}

/* Loop: checks the ID token (signature against the provider's JWKS, iss,
 * aud, exp, nonce) and takes the identity from it. */
void oa_verify_id_token(struct as_job *job)
{
    struct flow *f = job->state;
    struct provider *p = f->p;
    if (!oa_provider_ready(job, p))
        return;
    struct pc_jwt t;
    const char *why = NULL;
    if (pc_jwt_parse(f->id_token, strlen(f->id_token), &t, &why) != 0) {
        pc_logr_warn(job->request_id, "oauth: %s: ID token refused: %s", p->id, why);
        oa_fail_on_loop(job, f->idtoken_mode ? "invalid_token" : "unable_to_get_user_info");
        return;
    }
    const struct pc_jwk *key = key_for(p, &t);
    if (key == NULL && !f->keys_refetched && p->keys != P_RUNNING &&
        pc_now_ms() - p->keys_at_ms >= KEYS_REFETCH_MIN_MS) {
        /* a key we have not seen: the provider may have rotated */
        pc_jwt_free(&t);
        f->keys_refetched = true;
        p->keys_at_ms = 0;
        oa_provider_ensure(p, true, job, oa_verify_id_token);
        return;
    }
    enum pc_jwt_claims_result cr = PC_JWT_CLAIMS_OK;
    const char *aud[] = {p->client_id};
    struct pc_jwt_expect e = {.audiences = aud, .naudiences = 1, .now = pc_now_ms() / 1000,
                              .leeway = LEEWAY_S, .require_exp = true};
    const char *iss = NULL;
    bool ok = key != NULL && pc_jwt_verify(&t, f->id_token, key, &why);
    if (key == NULL)
        why = "no key with this kid";
    if (ok) {
        cr = pc_jwt_check_claims(&t, &e);
        iss = pc_jwt_claim_str(&t, "iss");
        ok = cr == PC_JWT_CLAIMS_OK;
        why = ok ? NULL : "claims (exp, nbf or aud)";
    }
    if (ok) {
        /* Google signs "https://accounts.google.com" or "accounts.google.com" */
        ok = iss && (strcmp(iss, p->issuer) == 0 ||
                     (p->google && strcmp(p->issuer, "https://accounts.google.com") == 0 &&
                      strcmp(iss, "accounts.google.com") == 0));
        why = ok ? NULL : "issuer";
    }
    yajl_val audv = pc_json_get(t.claims, "aud");
    if (ok && YAJL_IS_ARRAY(audv) && audv->u.array.len > 1) {
        const char *azp = pc_jwt_claim_str(&t, "azp");
        ok = azp && strcmp(azp, p->client_id) == 0;
        why = ok ? NULL : "azp";
    }
    if (ok && f->nonce) {
        const char *n = pc_jwt_claim_str(&t, "nonce");
        ok = n && strcmp(n, f->nonce) == 0;
        why = ok ? NULL : "nonce";
    }
    const char *sub = ok ? pc_jwt_claim_str(&t, "sub") : NULL;
    if (ok && (sub == NULL || sub[0] == '\0' || strlen(sub) > 255)) {
        ok = false;
        why = "sub";
    }
    if (!ok) {
        pc_logr_warn(job->request_id, "oauth: %s: ID token refused: %s", p->id, why ? why : "signature");
        pc_jwt_free(&t);
        oa_fail_on_loop(job, f->idtoken_mode ? "invalid_token" : "unable_to_get_user_info");
        return;
    }
    f->sub = pc_xstrdup(sub);
    f->email = oa_json_str(t.claims, "email");
    f->email_verified = claim_true(pc_json_get(t.claims, "email_verified"));
    f->name = oa_json_str(t.claims, "name");
    f->picture = oa_json_str(t.claims, "picture");
    f->hd = oa_json_str(t.claims, "hd");
    pc_jwt_free(&t);
    if (f->email == NULL && p->userinfo_url && f->access_token) {
        if (as_http_request(p->userinfo_url, NULL, f->access_token, on_userinfo, job) != 0)
            oa_fail_on_loop(job, "provider_unavailable");
        return;
    }
    identity_check(job);
}

/* Loop: the rules of issue 8. Nothing has been written yet; a refusal here
 * leaves the database as it was (but for the consumed state row). */
/* Cuts s (UTF-8) after max UTF-16 units, at a character boundary. */
static void cut_utf16(char *s, size_t max)
{
    size_t units = 0;
    for (size_t i = 0; s[i];) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        units += len == 4 ? 2 : 1;
        if (units > max) {
            s[i] = '\0';
            return;
        }
        for (size_t k = 0; k < len && s[i]; k++)
            i++;
    }
}

static void identity_check(struct as_job *job)
{
    struct flow *f = job->state;
    /* the profile's caps (validate.h): a provider's long name is cut, a
     * picture URL too long to be one is left out */
    if (f->name)
        cut_utf16(f->name, AS_NAME_MAX);
    if (f->picture && pc_utf16_length(f->picture, strlen(f->picture)) > AS_IMAGE_MAX) {
        free(f->picture);
        f->picture = NULL;
    }
    if (f->email == NULL || !as_email_valid(f->email)) {
        oa_fail_on_loop(job, f->link && f->idtoken_mode ? "user_email_not_found" : "email_not_found");
        return;
    }
    /* a link has its own rule for an unverified email (oa_link_finish) */
    if (!f->email_verified && !f->link) {
        oa_fail_on_loop(job, "email_not_verified");
        return;
    }
    char *lower = pc_xstrdup_lower(f->email);
    free(f->email);
    f->email = lower;
    const char *domain = strrchr(f->email, '@') + 1;
    bool ok = oa_domain_allowed(domain);
    /* Google: only Workspace accounts of an allowed domain carry hd; an
     * email on the domain alone can be a consumer account. */
    if (ok && oa_ndomains > 0 && (f->p->google || f->hd))
        ok = f->hd && oa_domain_allowed(f->hd);
    if (!ok) {
        pc_logr_info(job->request_id, "oauth: %s: sign-in refused for domain %s", f->p->id, domain);
        oa_fail_on_loop(job, "domain_not_allowed");
        return;
    }
    oa_to_worker(job, oa_finish_db);
}
