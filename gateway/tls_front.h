/* Portcullis - MIT licence. See LICENSE.
 *
 * tls_front.h: TLS on the gateway's public listener (tls_front.c), with
 * OpenSSL: GATEWAY_TLS_CERT (a PEM chain, leaf first) and GATEWAY_TLS_KEY.
 * The context is made on the main thread at start and again on SIGHUP;
 * a new connection takes the current one, an open connection keeps the one
 * it began with. front.c calls the read and write wrappers in place of
 * read(2) and write(2) on a connection that has an SSL.
 */
#ifndef GW_TLS_FRONT_H
#define GW_TLS_FRONT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssl_st;

#define GW_TLS_CERTS_MAX 32 /* certificates GATEWAY_TLS_CERT may list (SNI) */

/** Main thread, at start and on SIGHUP: reads GATEWAY_TLS_CERT and
 * GATEWAY_TLS_KEY into a new context (TLS 1.2 and 1.3 only, forward-secret
 * AEAD ciphers, session tickets under a key of this context) that new
 * connections use from now on. 0 (also when TLS is off); -1 with err set:
 * the context in use stays. */
int gw_tls_front_load(char *err, size_t errsz);
/** Is TLS on (GATEWAY_TLS_CERT set)? */
bool gw_tls_front_on(void);
/** Main thread, after the workers: frees the current context. */
void gw_tls_front_free(void);

/** On a worker: a server-side SSL on fd with the current context (its
 * handshake runs in the first reads), or NULL when it cannot be made. */
struct ssl_st *gw_tls_front_new(int fd);
/** As read(2): > 0 bytes; 0 the client closed (close_notify or EOF); -1
 * with errno: EAGAIN when OpenSSL waits on the socket (*want_write: for
 * writability), anything else is a broken connection. */
ssize_t gw_tls_front_read(struct ssl_st *s, void *buf, size_t n, bool *want_write);
/** As write(2); EAGAIN with *want_read when OpenSSL needs to read first. */
ssize_t gw_tls_front_write(struct ssl_st *s, const void *buf, size_t n, bool *want_read);
/** Bytes OpenSSL holds that no read has taken yet, decrypted or still
 * records (the socket will not say so). */
bool gw_tls_front_pending(const struct ssl_st *s);
/** Sends close_notify, best effort (before the front shuts its side). */
void gw_tls_front_shutdown(struct ssl_st *s);
/** Did ALPN choose h2 (HTTP/2) for this connection (its handshake done)? */
bool gw_tls_front_is_h2(const struct ssl_st *s);
/** Did the connection's handshake finish (a request came over TLS)? */
bool gw_tls_front_established(const struct ssl_st *s);
void gw_tls_front_release(struct ssl_st *s);

#endif
