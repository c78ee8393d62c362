/* Portcullis - MIT licence. See LICENSE.
 *
 * ba_jwks.h: Better Auth's jwks table (the jwt plugin, better-auth-compat.md
 * §7): what a row's alg is, how its private key is sealed (symmetricEncrypt:
 * XChaCha20-Poly1305 under SHA-256(secret), hex nonce || ciphertext || tag),
 * and which row is our signing key. authsvc/jwt.c signs session JWTs with
 * it and creates rows; gateway/jwks.c's signer mints the JWTs it hands
 * upstream (upstream_jwt). Both read the rows with lib/ba_schema.h's SQL.
 * Off the request path: the key is chosen on a reload, then shared.
 */
#ifndef PC_BA_JWKS_H
#define PC_BA_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>
#include "ba_secrets.h"
#include "jws.h"
#include "util.h"

/* ---- rows of Better Auth's jwks table ---- */

/** The alg of a jwks row: its alg column, or (rows from Better Auth before
 * 1.7 have none) what its public JWK (object pub) implies. NULL if neither.
 * Any thread. */
const char *pc_jwk_row_alg(const char *alg_col, yajl_val pub);
/** Opens a row's private key: privateKey sealed with secrets (or, with
 * Better Auth's disablePrivateKeyEncryption, the JWK itself), as key kid
 * of alg. Returns 0 (*out is the caller's, pc_jwk_free), or -1 when it is
 * not ours to use. Any thread. */
PC_MUSTCHECK int pc_jwk_open_row(const struct pc_secrets *secrets, const char *kid, const char *alg,
                                 const char *private_col, struct pc_jwk *out);

/* ---- which row signs ---- */

/** One row as read from the table (strings owned by the caller). */
struct pc_jwks_row {
    const char *kid;            /* id */
    const char *alg;            /* the alg column; NULL or "" when null */
    const char *public_key;     /* publicKey (JWK JSON): must be an object; gives the
                                 * alg when the column is absent */
    const char *private_key;    /* privateKey (sealed, or a plain JWK) */
    int64_t created_at;         /* ms */
    int64_t expires_at;         /* ms; 0 when null */
};

/** Is row current at now_ms, and until when (*retire_at, ms; INT64_MAX for
 * never)? A row with expiresAt retires then; one without, rotate_days after
 * createdAt, or never when rotate_days is 0. Pure. */
bool pc_jwks_row_current(const struct pc_jwks_row *row, int64_t rotate_days, int64_t now_ms,
                         int64_t *retire_at);

/** Our signing key: the first of rows (newest first, as lib/ba_schema.h's
 * jwks queries order them: createdAt DESC, id) that is current at now_ms
 * (pc_jwks_row_current), whose publicKey is a JWK object (as a published
 * row's is), whose alg (column, else the public key's) is alg (NULL: any
 * alg we can sign with) and whose private key opens with secret. Returns its index with the key
 * in *out (the caller's, pc_jwk_free) and *retire_at set, or -1 (nothing
 * usable: authsvc creates a row, the gateway keeps its old key). Any
 * thread; reads only its arguments. */
PC_MUSTCHECK int pc_jwks_pick_signer(const struct pc_jwks_row *rows, size_t n, const char *alg,
                                     int64_t rotate_days, const struct pc_secrets *secrets,
                                     int64_t now_ms,
                                     struct pc_jwk *out, int64_t *retire_at);

/* ---- Better Auth's symmetricEncrypt ---- */

/** XChaCha20-Poly1305 under SHA-256(secret); returns heap hex of
 * nonce(24) || ciphertext || tag(16): with versioned secrets, under the
 * current one and wrapped "$ba$<version>$<hex>"; without, bare hex under
 * the one secret (ba_secrets.h). Any thread. */
char *pc_seal(const struct pc_secrets *secrets, const void *plain, size_t n);
/** Reverses pc_seal, also for a JSON-quoted value: an envelope opens with
 * the version it names (without versioned secrets, with the one secret),
 * bare hex with the legacy secret. Returns heap plaintext (NUL-terminated,
 * *outlen set; the caller wipes and frees it) or NULL. Any thread. */
char *pc_unseal(const struct pc_secrets *secrets, const char *hex, size_t *outlen);

#endif
