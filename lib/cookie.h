/* Portcullis - MIT licence. See LICENSE.
 *
 * cookie.h: Better Auth's signed values (better-call signCookieValue,
 * better-auth-compat.md §2.2 and §6) and Cookie header parsing.
 *
 * A signed value is  token "." base64std(HMAC-SHA256(secret, token))  and in
 * a Set-Cookie it is additionally encodeURIComponent'd. HMAC is
 * deterministic: signing the same token again gives the same value, which
 * is how a sliding refresh re-sends the cookie the client already holds.
 */
#ifndef PC_COOKIE_H
#define PC_COOKIE_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include "util.h"

/* 44 = padded base64 of a 32-byte MAC */
#define PC_SIG_B64_LEN 44

/** Writes "value.sig" for value into out (caller's buffer of
 * strlen(value) + 1 + 44 + 1 bytes). */
void pc_sign_value(const char *secret, const char *value, char *out);

enum pc_sig_mode {
    PC_SIG_COOKIE = 0,  /* better-call: exactly 44 chars ending in '=' */
    PC_SIG_TOLERANT,    /* bearer plugin: std or url alphabet, padding optional */
};

/** Verifies a decoded signed value ("token.sig", split at the last '.').
 * On success copies the token (NUL-terminated) into tok (tokcap bytes) and
 * returns true. Any malformed or forged input returns false. */
bool pc_verify_signed(const char *secret, const char *v, size_t n, enum pc_sig_mode mode,
                      char *tok, size_t tokcap);

/** Verifies a cookie's raw value as pc_cookie_get returns it: percent-
 * decoded when it holds a '%' (as better-call reads it), then
 * pc_verify_signed in PC_SIG_COOKIE mode, with the same result and tok. */
bool pc_cookie_verify(const char *secret, const char *raw, char *tok, size_t tokcap);

/** Finds cookie `name` in a Cookie header. Returns a heap copy of its raw
 * (still percent-encoded) value that the caller frees, or NULL. */
char *pc_cookie_get(const char *header, const char *name);

/** As pc_cookie_get over every Cookie header line of a request, in order
 * (as if they were joined with "; ", which is how HTTP/2 and some proxies
 * split one Cookie header): the first line that has the cookie wins. */
char *pc_cookie_get_lines(const char *const *lines, size_t nlines, const char *name);

/** Percent-decodes in place semantics: returns a heap string the caller
 * frees, or NULL when a %XX escape is malformed or decodes to NUL. */
char *pc_url_decode(const char *s, size_t n);

/** Appends encodeURIComponent(s) to b. */
void pc_url_encode_component(struct pc_buf *b, const char *s);

/** Appends the value of a Set-Cookie header for one of Better Auth's
 * cookies to b, as better-call serializes it (better-auth-compat.md §2.1:
 * attributes in the order Max-Age, Path, HttpOnly, Secure, SameSite):
 *
 *   name=encodeURIComponent(signed_value)[; Max-Age=N]; Path=/; HttpOnly[; Secure]; SameSite=Lax
 *
 * signed_value NULL: an empty value (with max_age 0, the cookie's deletion).
 * max_age < 0: no Max-Age (a browser-session cookie, rememberMe:false).
 * secure: the Secure attribute, which the __Secure- name prefix requires
 * (pc_conf_secure_cookies). No Domain: nothing here configures one
 * (Better Auth's crossSubDomainCookies). The caller owns b, and should wipe
 * it: the value is a credential. Pure. */
void pc_set_cookie_value(struct pc_buf *b, const char *name, const char *signed_value,
                         int64_t max_age, bool secure);

#endif
