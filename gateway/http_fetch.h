/* Portcullis - MIT licence. See LICENSE.
 *
 * http_fetch.h: one blocking HTTP exchange with libcurl under the gateway's
 * bounds (http_fetch.c), for its background threads: the JWKS thread
 * (jwks.c) and the OCSP thread (ocsp_staple.c). Never on a worker.
 */
#ifndef GW_HTTP_FETCH_H
#define GW_HTTP_FETCH_H

#include "../lib/util.h"

/** Runs the exchange curl (a CURL * from curl_easy_init, with the caller's
 * own options already set: method and body, headers, a progress callback)
 * to url, over protocols only (libcurl's list: "http" or "http,https"), no
 * signals, timeout_ms to connect and timeout_ms in all, the body appended
 * to cap (the transfer stops past its max), no redirects. Cleans curl up.
 * Returns libcurl's result (0: the exchange happened; *status is its HTTP
 * status, else 0). */
int gw_http_fetch(void *curl, const char *url, const char *protocols, long timeout_ms,
                  struct pc_buf_capped *cap, long *status);

#endif
