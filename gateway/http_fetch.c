/* Portcullis - MIT licence. See LICENSE.
 *
 * http_fetch.c: the options every fetch of the gateway's background threads
 * shares (http_fetch.h), in one place: protocols, timeouts, the bounded
 * body, the user agent.
 */
#include "http_fetch.h"

#include <curl/curl.h>

int gw_http_fetch(void *curl, const char *url, const char *protocols, long timeout_ms,
                  struct pc_buf_capped *cap, long *status)
{
    CURL *c = curl;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, pc_buf_capped_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, cap);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "portcullis-gateway");
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    return (int)rc;
}
