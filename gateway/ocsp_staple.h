/* Portcullis - MIT licence. See LICENSE.
 *
 * ocsp_staple.h: OCSP stapling for the certificates of the public listener
 * (ocsp_staple.c). tls_front.c hands over every context it makes; a
 * context whose certificate names an http:// OCSP responder, and whose
 * chain file holds the issuer, staples the last verified good response the
 * OCSP thread fetched for it. Every other context is left as it is.
 */
#ifndef GW_OCSP_STAPLE_H
#define GW_OCSP_STAPLE_H

#include <stdbool.h>
#include <stdint.h>

struct ssl_ctx_st;

/** Main thread, once per context tls_front.c made (at start, on SIGHUP and
 * for --check), after its certificate chain is in: with GATEWAY_TLS_OCSP
 * on, a certificate with an http:// responder and its issuer in the chain
 * gets a staple (shared with an earlier context of the same file,
 * certificate and issuer; fetched again at once either way) that lives as
 * long as ctx. Logs why stapling is off for cert_path when the certificate
 * names a responder that cannot be used. Never fails the load. */
void gw_ocsp_attach(struct ssl_ctx_st *ctx, const char *cert_path);

/** Main thread, before the workers start: the OCSP fetch thread (with TLS
 * and GATEWAY_TLS_OCSP on). Staples attached before and after it are
 * fetched by it. */
void gw_ocsp_start(void);
/** Main thread, after the workers stopped: ends the thread (a fetch under
 * way is cut short). The staples go with their contexts. */
void gw_ocsp_stop(void);

/** Pure: seconds until a staple's next fetch. After a good response with
 * left_s seconds to its nextUpdate: half of that. After fails (>= 1)
 * failed fetches in a row: 30 s doubling per failure up to 10 minutes.
 * Always within [min(30, refresh_s), refresh_s]
 * (GATEWAY_TLS_OCSP_REFRESH_SECONDS). */
int64_t gw_ocsp_next_fetch_s(bool good, int64_t left_s, unsigned fails, int64_t refresh_s);

#endif
