/* Portcullis - MIT licence. See LICENSE.
 *
 * jws.h: JSON Web Keys and signed JWTs (RFC 7515/7517/7519), the forms
 * Better Auth's JWT plugin uses (better-auth-compat.md §7).
 *
 *   keys      ES256 (P-256), RS256 (RSA >= 2048) and EdDSA (Ed25519), as
 *             OpenSSL EVP_PKEYs, read from and written to JWK JSON.
 *   verify    OpenSSL directly, for all three (libjwt 1.10 has no EdDSA).
 *             The algorithm comes from the key, never from the token alone:
 *             "none", HMAC and an alg that does not fit the key are refused.
 *   sign      OpenSSL too, with the key parsed once (EVP_PKEY), for all three.
 *
 * Better Auth's jwks rows and its symmetricEncrypt seal are lib/ba_jwks.h.
 */
#ifndef PC_JWS_H
#define PC_JWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>
#include "util.h"

struct pc_jw;
typedef struct evp_pkey_st EVP_PKEY;

enum pc_jwk_alg {
    PC_JWK_NONE = 0,
    PC_JWK_ES256,
    PC_JWK_RS256,
    PC_JWK_EDDSA,
};

/** One key. pkey holds the public half, and the private half when the JWK
 * had it ("d"). */
struct pc_jwk {
    char kid[128];
    enum pc_jwk_alg alg;
    bool private_key;
    EVP_PKEY *pkey;
};

struct pc_jwks {
    struct pc_jwk *keys;
    size_t n;
};

/** "ES256" -> PC_JWK_ES256 ...; PC_JWK_NONE for anything else. */
enum pc_jwk_alg pc_jwk_alg_parse(const char *s);
const char *pc_jwk_alg_name(enum pc_jwk_alg a);

/** Reads one JWK object (kty EC/P-256, RSA, OKP/Ed25519; with "d" it is a
 * private key). kid_override, when not NULL, replaces the JWK's "kid";
 * alg_hint, when the JWK has no "alg", names it (RSA keys need one: "RS256"
 * is assumed). Returns 0, or -1 with *err set to a static message. */
PC_MUSTCHECK int pc_jwk_from_json(yajl_val obj, const char *kid_override, const char *alg_hint,
                                  struct pc_jwk *out, const char **err);
/** Same from JSON text. */
PC_MUSTCHECK int pc_jwk_from_text(const char *json, size_t n, const char *kid_override,
                                  const char *alg_hint, struct pc_jwk *out, const char **err);
/** New key pair. RSA keys are 2048 bits. Returns 0 or -1. */
PC_MUSTCHECK int pc_jwk_generate(enum pc_jwk_alg alg, const char *kid, struct pc_jwk *out);
void pc_jwk_free(struct pc_jwk *k);

/** Writes the public JWK members (kty, crv/x/y or n/e) into an open object,
 * without kid/alg: Better Auth's publicKey column. */
void pc_jwk_write_public(const struct pc_jwk *k, struct pc_jw *w);
/** Same with the private members ("d" ...): the text Better Auth encrypts.
 * Returns a heap string the caller wipes and frees. */
char *pc_jwk_private_json(const struct pc_jwk *k);

/** Parses {"keys":[...]}; keys of unsupported types are skipped. Returns 0,
 * or -1 when the document is not a JWK set. */
PC_MUSTCHECK int pc_jwks_parse(const char *json, size_t n, struct pc_jwks *out);
const struct pc_jwk *pc_jwks_find(const struct pc_jwks *s, const char *kid);
void pc_jwks_free(struct pc_jwks *s);

/* ---- tokens ---- */

#define PC_JWT_MAX 8192

/** A token split and decoded, signature not yet checked. */
struct pc_jwt {
    enum pc_jwk_alg alg;    /* PC_JWK_NONE when the header's alg is not one we accept */
    char alg_name[16];      /* as the header says (for messages) */
    char kid[128];          /* "" when absent */
    yajl_val header;        /* parsed header object */
    yajl_val claims;        /* parsed payload object */
    size_t signing_len;     /* bytes of "header.payload" at the start of the token */
    unsigned char sig[512];
    size_t sig_len;
};

/** Splits and decodes tok (compact form). Returns 0, or -1 with *err set:
 * bad shape, oversized, bad base64url, header or payload not a JSON object.
 * On 0 release with pc_jwt_free. */
PC_MUSTCHECK int pc_jwt_parse(const char *tok, size_t n, struct pc_jwt *out, const char **err);
void pc_jwt_free(struct pc_jwt *t);

/** Checks t's signature over tok with key. The header's alg must be the
 * key's alg (and never none/HS*). Returns true only for a good signature. */
bool pc_jwt_verify(const struct pc_jwt *t, const char *tok, const struct pc_jwk *key,
                   const char **err);

/** The signature primitive under pc_jwt_verify, over any bytes: msg is the
 * JWS Signing Input (for a token, "header.payload"), sig the decoded JWS
 * Signature. alg must be key's alg (never none/HS*). ES256 wants exactly 64
 * bytes, r || s (RFC 7518 §3.4; DER and other lengths are refused), RS256
 * is RSASSA-PKCS1-v1_5 with SHA-256, EdDSA is Ed25519 over msg itself.
 * Returns true only for a good signature; else *err says why. Exposed so
 * that standard vectors over arbitrary messages (tests/vectors/jose/) run
 * through the same code as tokens. */
bool pc_jws_verify_sig(const struct pc_jwk *key, enum pc_jwk_alg alg, const unsigned char *msg,
                       size_t msg_len, const unsigned char *sig, size_t sig_len, const char **err);

/** What pc_jwt_check_claims expects. NULL/0 fields are not checked. */
struct pc_jwt_expect {
    const char *issuer;         /* iss must equal it */
    const char *const *audiences;   /* aud (string or array) must contain one */
    size_t naudiences;
    int64_t now;                /* seconds since epoch */
    int64_t leeway;             /* seconds */
    bool require_exp;           /* a token without exp is refused */
};

enum pc_jwt_claims_result {
    PC_JWT_CLAIMS_OK = 0,
    PC_JWT_CLAIMS_EXPIRED,
    PC_JWT_CLAIMS_NOT_YET_VALID,
    PC_JWT_CLAIMS_BAD_ISSUER,
    PC_JWT_CLAIMS_BAD_AUDIENCE,
    PC_JWT_CLAIMS_MALFORMED,    /* exp/nbf/iat not numbers, missing exp ... */
};

enum pc_jwt_claims_result pc_jwt_check_claims(const struct pc_jwt *t,
                                              const struct pc_jwt_expect *e);
/** A string claim or NULL. */
const char *pc_jwt_claim_str(const struct pc_jwt *t, const char *name);
/** A numeric claim (seconds); false when absent or not a number. */
bool pc_jwt_claim_num(const struct pc_jwt *t, const char *name, int64_t *out);

/** Signs payload_json (a JSON object) with header {"alg","kid","typ":"JWT"}.
 * Returns the compact token (heap) or NULL. */
char *pc_jwt_sign(const struct pc_jwk *key, const char *payload_json);

#endif
