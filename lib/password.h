/* Portcullis - MIT licence. See LICENSE.
 *
 * password.h: Better Auth's password hash format (better-auth-compat.md §3):
 * scrypt N=16384 r=16 p=1, 64-byte key, the salt is 16 random bytes written
 * as 32 lower-case hex chars whose *text* is the scrypt salt, the password is
 * NFKC-normalised UTF-8, stored as "<saltHex>:<keyHex>".
 *
 * Each call costs tens of milliseconds and 32 MiB (128 * r * N bytes): never
 * call these on an event loop. authsvc runs them on its password pool (authsvc/pwpool.c).
 */
#ifndef PC_PASSWORD_H
#define PC_PASSWORD_H

#include <stddef.h>
#include <stdbool.h>
#include "util.h"

/* "<32 hex>:<128 hex>" + NUL */
#define PC_PASSWORD_HASH_LEN (32 + 1 + 128)

/** Length of a UTF-8 string in UTF-16 code units, as JavaScript's .length
 * counts it (Better Auth's min/max password length rule). */
size_t pc_utf16_length(const char *s, size_t n);

/** Hashes password (UTF-8, n bytes) into out. Returns 0, or -1 if the input
 * is not valid UTF-8 or scrypt fails. */
PC_MUSTCHECK int pc_password_hash(const char *pw, size_t n, char out[PC_PASSWORD_HASH_LEN + 1]);

/** Checks pw against a stored "<salt>:<key>" string in constant time.
 * A malformed stored value never matches. */
bool pc_password_verify(const char *pw, size_t n, const char *stored);

/** Hashes with an explicit salt text (for tests and for the dummy hash that
 * makes unknown emails cost as much as a wrong password). */
PC_MUSTCHECK int pc_password_hash_with_salt(const char *pw, size_t n, const char *salt_hex,
                                            char out[PC_PASSWORD_HASH_LEN + 1]);

#endif
