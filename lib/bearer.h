/* Portcullis - MIT licence. See LICENSE.
 *
 * bearer.h: what an Authorization: Bearer value is. One rule for both
 * programs, so that authsvc and the gateway never read one value two ways:
 *
 *   JWT             "eyJ" (a base64url JSON header), a '.', and not a signed
 *                   session token (32 alphanumerics and a '.')
 *   API key         an optional prefix [A-Za-z0-9_-]{0,32} and 64 letters
 *                   (Better Auth's shape; a prefix list is the caller's)
 *   signed session  anything else holding a '.': "token.sig" as the bearer
 *                   plugin takes it, maybe percent-encoded; the HMAC is the
 *                   caller's to check
 *   raw session     32 alphanumerics; refused when BEARER_REQUIRE_SIGNATURE
 *   malformed       everything else
 */
#ifndef PC_BEARER_H
#define PC_BEARER_H

#include <stdbool.h>
#include <stddef.h>

#define PC_BEARER_SESSION_TOKEN_LEN 32  /* Better Auth: generateId(32) */
#define PC_BEARER_API_KEY_BODY 64       /* letters after the prefix */
#define PC_BEARER_API_PREFIX_MAX 32

enum pc_bearer_kind {
    PC_BEARER_MALFORMED = 0,        /* no known shape (or empty) */
    PC_BEARER_JWT,
    PC_BEARER_API_KEY,
    PC_BEARER_SESSION_SIGNED,
    PC_BEARER_SESSION_RAW,
    PC_BEARER_SESSION_UNSIGNED,     /* a raw session token while signatures are required */
};

/** The value of an Authorization header with the Bearer scheme (any case),
 * spaces around it removed: a pointer into auth and its length in *n; NULL
 * for another scheme or no header. *n may be 0. */
const char *pc_bearer_value(const char *auth, size_t *n);

/** What v[0..n) is (see above). require_signature: BEARER_REQUIRE_SIGNATURE,
 * which turns a raw session token into PC_BEARER_SESSION_UNSIGNED. */
enum pc_bearer_kind pc_bearer_classify(const char *v, size_t n, bool require_signature);

/** Is v[0..n) 32 alphanumerics (a session token)? */
bool pc_bearer_session_token_shape(const char *v, size_t n);

/** Is v[0..n) an optional prefix and 64 letters (an API key)? */
bool pc_bearer_api_key_shape(const char *v, size_t n);

/** Short name of a kind, for logs and tests. */
const char *pc_bearer_kind_name(enum pc_bearer_kind k);

/* BEARER_REQUIRE_SIGNATURE, the same row in both programs' tables (lib/conf.h). */
#define PC_BEARER_REQUIRE_SIGNATURE_ROW(boolptr)                                            \
    {"BEARER_REQUIRE_SIGNATURE", PC_CONF_BOOL, (boolptr), "false", 0, 0, 0, NULL,         \
     "refuse raw (unsigned) session tokens in Authorization: Bearer (authsvc and gateway " \
     "alike)"}

#endif
