/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_jwk.c: JWK and JWK Set documents (lib/jws.c) as the gateway reads an
 * issuer's JWKS and authsvc reads Better Auth's jwks rows, and the sealed
 * private keys of those rows (lib/ba_jwks.c pc_unseal). First byte: the
 * alg hint (none, RS256, ES256, EdDSA). Checks: a key read writes a public
 * JWK that reads back as the same algorithm, a private one a private JWK
 * that does too; every key of a set has an algorithm; pc_unseal never opens
 * what we did not seal, and opens what we did.
 */
#include "fuzz.h"
#include "../../lib/jws.h"
#include "../../lib/json.h"
#include "../../lib/ba_jwks.h"

#include <stdbool.h>

#define SECRET "better-auth-secret-12345678901234567890"

static void key_round_trip(const struct pc_jwk *k)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jwk_write_public(k, &w);
    pc_jw_obj_end(&w);
    struct pc_jwk again;
    const char *err = NULL;
    FZ_CHECK(pc_jwk_from_text(b.data, b.len, "x", pc_jwk_alg_name(k->alg), &again, &err) == 0,
             "public JWK we wrote did not read back: %s", err);
    FZ_CHECK(again.alg == k->alg && !again.private_key, "public JWK read back differently");
    pc_jwk_free(&again);
    pc_buf_free(&b);
    if (k->private_key) {
        char *priv = pc_jwk_private_json(k);
        FZ_CHECK(priv != NULL, "private JWK");
        FZ_CHECK(pc_jwk_from_text(priv, strlen(priv), "x", pc_jwk_alg_name(k->alg), &again,
                                  &err) == 0 &&
                     again.private_key && again.alg == k->alg,
                 "private JWK we wrote did not read back: %s", err);
        pc_jwk_free(&again);
        pc_wipe(priv, strlen(priv));
        free(priv);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n < 1)
        return 0;
    static const char *const hints[] = {NULL, "RS256", "ES256", "EdDSA"};
    const char *hint = hints[data[0] & 3];
    char *s = fz_str(data + 1, n - 1);
    struct pc_jwk k;
    const char *err = NULL;
    if (pc_jwk_from_text(s, n - 1, NULL, hint, &k, &err) == 0) {
        FZ_CHECK(k.alg != PC_JWK_NONE && k.pkey != NULL, "key without alg");
        key_round_trip(&k);
        pc_jwk_free(&k);
    }
    struct pc_jwks set;
    if (pc_jwks_parse(s, n - 1, &set) == 0) {
        for (size_t i = 0; i < set.n; i++) {
            FZ_CHECK(set.keys[i].alg != PC_JWK_NONE, "set key without alg");
            FZ_CHECK(pc_jwks_find(&set, set.keys[i].kid) != NULL, "kid not found");
        }
        pc_jwks_free(&set);
    }
    yajl_val doc = pc_json_parse(s, n - 1);
    if (doc) {
        (void)pc_jwk_row_alg(hint, doc);
        (void)pc_jwk_row_alg(NULL, doc);
        yajl_tree_free(doc);
    }
    /* one secret, and Better Auth's versioned ones (current 2, then 1) */
    struct pc_secrets one, two;
    pc_secrets_single(&one, SECRET);
    char *hmac = pc_xstrdup("");
    char why[200];
    if (pc_secrets_load("2:" SECRET "x,1:" SECRET, &hmac, &two, why, sizeof why) != 0)
        abort();
    free(hmac);
    const struct pc_secrets *sets[2] = {&one, &two};
    for (int k = 0; k < 2; k++) {
        size_t pl = 0;
        char *plain = pc_unseal(sets[k], s, &pl);
        FZ_CHECK(plain == NULL, "pc_unseal opened what we did not seal");
        char *sealed = pc_seal(sets[k], s, n - 1);
        FZ_CHECK(sealed != NULL, "seal");
        plain = pc_unseal(sets[k], sealed, &pl);
        FZ_CHECK(plain != NULL && pl == n - 1 && memcmp(plain, s, pl) == 0, "seal round trip");
        free(plain);
        free(sealed);
    }
    pc_secrets_free(&one);
    pc_secrets_free(&two);
    free(s);
    return 0;
}
