/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_jwt.c: JWTs in compact form (lib/jws.c), as the gateway's verify
 * stage and authsvc read them. First byte even: the rest is a token,
 * parsed, verified with each of three keys (ES256, RS256, EdDSA; made at
 * start, so no input can carry a good signature) and its claims read; it
 * must never verify. Odd: the rest is a payload; when it is a JSON object
 * it is signed with the ES256 and EdDSA keys and must parse, verify with
 * its own key only, and give back its claims.
 */
#include "fuzz.h"
#include "../../lib/jws.h"
#include "../../lib/json.h"

#include <stdbool.h>

static struct pc_jwk keys[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (pc_jwk_generate(PC_JWK_ES256, "es", &keys[0]) != 0 ||
        pc_jwk_generate(PC_JWK_RS256, "rs", &keys[1]) != 0 ||
        pc_jwk_generate(PC_JWK_EDDSA, "ed", &keys[2]) != 0)
        abort();
    return 0;
}

static void claims(const struct pc_jwt *t)
{
    static const char *const auds[] = {"a", "b"};
    struct pc_jwt_expect e = {.issuer = "https://issuer.test", .audiences = auds,
                              .naudiences = 2, .now = 1700000000, .leeway = 5,
                              .require_exp = true};
    (void)pc_jwt_check_claims(t, &e);
    struct pc_jwt_expect none = {0};
    (void)pc_jwt_check_claims(t, &none);
    (void)pc_jwt_claim_str(t, "sub");
    int64_t v;
    (void)pc_jwt_claim_num(t, "exp", &v);
}

static void token(const char *tok, size_t n)
{
    struct pc_jwt t;
    const char *err = NULL;
    if (pc_jwt_parse(tok, n, &t, &err) != 0) {
        FZ_CHECK(err != NULL, "refused without a reason");
        return;
    }
    FZ_CHECK(t.signing_len < n && tok[t.signing_len] == '.', "signing input");
    FZ_CHECK(t.sig_len <= sizeof t.sig, "signature length");
    for (size_t i = 0; i < 3; i++)
        FZ_CHECK(!pc_jwt_verify(&t, tok, &keys[i], &err), "a token verified with key %zu", i);
    claims(&t);
    pc_jwt_free(&t);
}

static void round_trip(const char *payload, size_t n)
{
    yajl_val doc = pc_json_parse(payload, n);
    bool object = doc && YAJL_IS_OBJECT(doc);
    if (doc)
        yajl_tree_free(doc);
    if (!object)
        return;
    for (size_t k = 0; k < 3; k += 2) {
        char *tok = pc_jwt_sign(&keys[k], payload);
        if (tok == NULL)
            continue; /* too large for a token */
        struct pc_jwt t;
        const char *err = NULL;
        FZ_CHECK(pc_jwt_parse(tok, strlen(tok), &t, &err) == 0, "our token did not parse: %s",
                 err);
        for (size_t i = 0; i < 3; i++)
            FZ_CHECK(pc_jwt_verify(&t, tok, &keys[i], &err) == (i == k),
                     "token of key %zu with key %zu", k, i);
        FZ_CHECK(strcmp(t.kid, keys[k].kid) == 0, "kid");
        claims(&t);
        pc_jwt_free(&t);
        free(tok);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n < 1)
        return 0;
    char *s = fz_str(data + 1, n - 1);
    if (data[0] & 1)
        round_trip(s, n - 1);
    else
        token(s, n - 1);
    free(s);
    return 0;
}
