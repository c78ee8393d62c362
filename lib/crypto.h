/* Portcullis - MIT licence. See LICENSE.
 *
 * crypto.h: hashing, MACs, encodings and random strings, in exactly the forms
 * Better Auth uses (better-auth-compat.md §1.3, §2.2, §4.1). OpenSSL does the
 * cryptography; this module only fixes the formats.
 */
#ifndef PC_CRYPTO_H
#define PC_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "util.h"

#define PC_SHA256_LEN 32
/* base64url without padding of 32 bytes */
#define PC_HASH_B64_LEN 43

void pc_sha256(const void *data, size_t n, unsigned char out[PC_SHA256_LEN]);
void pc_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t n,
                    unsigned char out[PC_SHA256_LEN]);

/** HKDF-SHA256 (RFC 5869) of ikm with salt and info into out (n bytes,
 * at most 255 * 32). */
void pc_hkdf_sha256(const void *ikm, size_t ikmlen, const void *salt, size_t saltlen,
                    const void *info, size_t infolen, unsigned char *out, size_t n);

/** Frees the calling thread's cached digest context (optional; for clean
 * leak reports from threads that exit). */
void pc_crypto_thread_cleanup(void);

/** base64 encoders. out must hold pc_b64_len(n, pad) + 1 bytes; NUL-terminated.
 * Return the encoded length. */
size_t pc_b64_len(size_t n, bool pad);
size_t pc_b64std_encode(const unsigned char *in, size_t n, char *out);       /* +/ with = */
size_t pc_b64url_encode(const unsigned char *in, size_t n, char *out);       /* -_ no pad */

/** Tolerant base64 decoder: accepts both alphabets, padding optional.
 * out must hold n*3/4+3 bytes. Returns decoded length, or -1 on bad input. */
PC_MUSTCHECK long pc_b64_decode(const char *in, size_t n, unsigned char *out);

/** Credential hash used as cache key everywhere: base64url-nopad(SHA-256(s)).
 * out receives 43 chars + NUL. Same as Better Auth's API key hash. */
void pc_cred_hash(const char *s, size_t n, char out[PC_HASH_B64_LEN + 1]);

/** Lower-case hex. out holds 2n+1 bytes. */
void pc_hex_encode(const unsigned char *in, size_t n, char *out);

/** Cryptographically secure random bytes; aborts if the RNG fails. */
void pc_random_bytes(void *out, size_t n);

/** n symbols of alphabet, uniformly, by rejection sampling (Better Auth's
 * generateRandomString). out holds n+1 bytes. */
void pc_random_string(char *out, size_t n, const char *alphabet);

/** Better Auth generateId(): n chars of [A-Za-z0-9] by rejection sampling.
 * out holds n+1 bytes. */
void pc_random_alnum(char *out, size_t n);

/** Constant-time equality of two byte strings (length is not secret). */
bool pc_ct_eq(const void *a, const void *b, size_t n);

#endif
