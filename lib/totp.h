/* Portcullis - MIT licence. See LICENSE.
 *
 * totp.h: one-time passwords as Better Auth's twoFactor plugin makes them
 * (@better-auth/utils otp.mjs): HOTP per RFC 4226 (HMAC-SHA-1, dynamic
 * truncation, 1..8 digits), TOTP per RFC 6238 (counter = floor(now /
 * period)), and the otpauth:// URI an authenticator app scans. The key is
 * the secret's bytes as given: Better Auth's secrets are 32-character
 * strings used as their UTF-8 bytes (the URI carries them in RFC 4648
 * base32 without padding). Pure functions; any thread.
 */
#ifndef PC_TOTP_H
#define PC_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "util.h"

/** RFC 4648 base32 (A-Z2-7) without padding of n bytes; heap, NUL-terminated. */
char *pc_base32_encode(const void *in, size_t n);
/** Decodes base32 (A-Z2-7, upper case; '=' ends it). Returns heap bytes
 * (*outlen set, NUL-terminated) or NULL on a character outside the alphabet. */
unsigned char *pc_base32_decode(const char *in, size_t *outlen);

/** HOTP(key, counter) as `digits` decimal digits (1..8) into out (digits+1
 * bytes). */
void pc_hotp(const void *key, size_t keylen, uint64_t counter, int digits, char *out);

/** Checks code against the counters floor(now_ms / 1000 / period) - window
 * .. + window, every one of them (no early exit), comparing in constant time
 * over the expected length. Returns true when one matches and sets
 * *matched (may be NULL) to that counter. */
bool pc_totp_verify(const void *key, size_t keylen, const char *code, int64_t now_ms,
                    int period, int digits, int window, uint64_t *matched);

/** otpauth://totp/<issuer>:<account>?secret=<base32>&issuer=<issuer>&digits=
 * <d>&period=<p>, the path parts as JS encodeURIComponent, the query as
 * URLSearchParams: Better Auth's createOTP(...).url(issuer, account). Heap. */
char *pc_totp_uri(const char *issuer, const char *account, const void *key, size_t keylen,
                  int digits, int period);

#endif
