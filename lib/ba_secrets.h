/* Portcullis - MIT licence. See LICENSE.
 *
 * ba_secrets.h: Better Auth's secrets (1.7's rotation, better-auth's
 * context/secret-utils and crypto/index): BETTER_AUTH_SECRETS is
 * "<version>:<secret>,..." with the current one first. Used exactly where
 * Better Auth uses them:
 *
 *   HMAC        cookies (session token, dont_remember, OAuth state) are
 *               signed and checked with the current secret only
 *               (pc_secrets_current), as Better Auth's ctx.secret
 *   seal        what Better Auth encrypts with symmetricEncrypt (the jwks
 *               table's private keys) is sealed under the current version
 *               as "$ba$<version>$<hex>", and opened with the version the
 *               envelope names; a bare-hex value (sealed before there were
 *               versions) opens with BETTER_AUTH_SECRET, the legacy secret
 *
 * Without BETTER_AUTH_SECRETS there is one secret (BETTER_AUTH_SECRET), as
 * before: bare hex, and an envelope opened with it too.
 */
#ifndef PC_BA_SECRETS_H
#define PC_BA_SECRETS_H

#include <stddef.h>
#include "util.h"

#define PC_SECRETS_MAX 16

struct pc_secrets {
    size_t n;                           /* 0: no BETTER_AUTH_SECRETS */
    long version[PC_SECRETS_MAX];       /* [0] is the current one */
    char *value[PC_SECRETS_MAX];
    char *legacy;                       /* BETTER_AUTH_SECRET (AUTH_SECRET), or NULL */
};

/** Validator of BETTER_AUTH_SECRETS (lib/conf.h): Better Auth's format, each
 * version a non-negative integer given once, each secret at least 32
 * characters (as BETTER_AUTH_SECRET), at most PC_SECRETS_MAX of them. */
int pc_conf_check_secrets(const char *v, const char **err);

/** After pc_conf_load: builds *out from the BETTER_AUTH_SECRETS text (list,
 * "" when unset) and BETTER_AUTH_SECRET (*secret, "" when unset), and makes
 * *secret (heap, the conf table's) the HMAC secret: the current version's
 * when there is a list. -1 with err set when neither is set. */
PC_MUSTCHECK int pc_secrets_load(const char *list, char **secret, struct pc_secrets *out,
                                 char *err, size_t errsz);
/** A one-secret set (no versions): what a program without a list uses, and
 * the unit tests. */
void pc_secrets_single(struct pc_secrets *out, const char *secret);
/** The secret of version v, or NULL. */
const char *pc_secrets_version(const struct pc_secrets *s, long v);
void pc_secrets_free(struct pc_secrets *s);
/** Better Auth's derivePurposeKey (crypto/purpose): *out is in with every
 * secret (each version's and the legacy one) replaced by the hex of
 * HKDF-SHA256(secret, "better-auth:oauth-encryption:v1",
 * "better-auth:<purpose>:v1", 32 bytes). What Better Auth seals for one
 * OAuth purpose (the link state's session token) is pc_seal'ed under it. */
void pc_secrets_purpose(const struct pc_secrets *in, const char *purpose, struct pc_secrets *out);

#endif
