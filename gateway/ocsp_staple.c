/* Portcullis - MIT licence. See LICENSE.
 *
 * ocsp_staple.c: OCSP stapling on the public listener (ocsp_staple.h).
 *
 * It owns the staples: one per listener certificate that names an http://
 * OCSP responder (Authority Information Access) and whose issuer is in its
 * chain file, each holding the last response the responder gave for it
 * that verified and said good.
 *
 *   main thread  gw_ocsp_attach, from tls_front.c for every context made
 *                (start, SIGHUP): finds the responder and the issuer (the
 *                chain certificate that issued the leaf, normally the second
 *                in the file) and hangs the staple on the context's ex_data
 *                (one reference). The same file, certificate and issuer
 *                loaded again share the staple, which is fetched again at
 *                once: a reload restaples without a gap and still asks.
 *   gw-ocsp      the fetch thread (lib/periodic.h), started by
 *                gw_ocsp_start: POSTs the DER OCSPRequest with libcurl
 *                (5 s, 64 KiB, http:// only, no redirects), checks the
 *                answer (check_response) and swaps it in under mu. Next
 *                fetch: gw_ocsp_next_fetch_s (half the time left before
 *                nextUpdate, at most GATEWAY_TLS_OCSP_REFRESH_SECONDS;
 *                after a failure 30 s doubling to 10 min)
 *   workers      on_status, in a handshake whose client asks (status_request):
 *                a copy of the response, taken under mu, unless it is past
 *                its nextUpdate; no staple otherwise
 *   any thread   the SSL_CTX_free that drops a staple's last context (a
 *                worker's, when the last connection of an old context ends)
 *                frees it; a fetch under way holds a reference of its own
 *
 * Fails closed: nothing that did not verify, say good and stand within its
 * thisUpdate/nextUpdate is stapled, and nothing past its nextUpdate. A fetch
 * that fails (network, HTTP, a response that does not verify or is out of
 * date) leaves the response before it, which is still the responder's signed
 * word until its nextUpdate; a verified response that says revoked or
 * unknown drops the staple at once. Each failure is logged with the
 * certificate file and the reason.
 */
#include "ocsp_staple.h"
#include "http_fetch.h"
#include "metrics.h"
#include "types.h"

#include "../lib/log.h"
#include "../lib/periodic.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define FETCH_TIMEOUT_MS 5000
#define RESPONSE_MAX_BYTES (64 * 1024)
#define URL_MAX 1024
#define RETRY_FIRST_S 30        /* after a failed fetch; doubling */
#define RETRY_MAX_S 600
#define SKEW_S 300              /* clock skew allowed on thisUpdate and nextUpdate */
#define NO_NEXT_UPDATE_S 3600   /* a response without nextUpdate: this long after thisUpdate */

struct gw_staple {
    char *path;                 /* the certificate file (logs) */
    char *url;                  /* the responder, http:// */
    X509 *cert, *issuer;        /* a reference each */
    OCSP_CERTID *id;            /* the certificate in requests and responses */
    /* the rest guarded by mu */
    unsigned char *der;         /* the response stapled, or NULL */
    size_t len;
    time_t expires;             /* wall clock: its nextUpdate */
    int64_t next_ms;            /* monotonic: when to fetch next (0: now) */
    unsigned fails;             /* fetches failed in a row */
    bool fetching;              /* the thread is on it (without mu) */
    bool again;                 /* a reload asked for a fetch while one was under way */
    int refs;                   /* contexts that hold it, +1 while fetched */
    struct gw_staple *next;     /* every staple */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct gw_staple *staples;   /* guarded by mu */
static struct pc_periodic *fetcher; /* main thread's */
static int staple_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

enum verdict {
    V_GOOD = 0,                 /* staple it */
    V_FAILED,                   /* no new word: the one before stays until its nextUpdate */
    V_DROP,                     /* the responder says revoked or unknown: no staple */
};

int64_t gw_ocsp_next_fetch_s(bool good, int64_t left_s, unsigned fails, int64_t refresh_s)
{
    int64_t least = refresh_s < RETRY_FIRST_S ? refresh_s : RETRY_FIRST_S;
    int64_t gap = RETRY_FIRST_S;
    if (good) {
        gap = left_s / 2;
    } else {
        for (unsigned f = 1; f < fails && gap < RETRY_MAX_S; f++)
            gap *= 2;
        gap = gap > RETRY_MAX_S ? RETRY_MAX_S : gap;
    }
    gap = gap > refresh_s ? refresh_s : gap;
    return gap < least ? least : gap;
}

/* ---- references ---- */

static void staple_release(struct gw_staple *st)
{
    if (st == NULL)
        return;
    pthread_mutex_lock(&mu);
    bool last = --st->refs == 0;
    if (last) {
        struct gw_staple **pp = &staples;
        while (*pp != st)
            pp = &(*pp)->next;
        *pp = st->next;
    }
    pthread_mutex_unlock(&mu);
    if (!last)
        return;
    free(st->path);
    free(st->url);
    X509_free(st->cert);
    X509_free(st->issuer);
    OCSP_CERTID_free(st->id);
    free(st->der);
    free(st);
}

/* SSL_CTX_free: the context's reference goes. */
static void on_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
    staple_release(ptr);
}

static void index_init(void)
{
    staple_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, on_ctx_free);
}

/* ---- the handshake (workers) ---- */

/* OpenSSL asks, for a client that sent status_request, after SNI picked the
 * context. It frees what SSL_set_tlsext_status_ocsp_resp is given: a copy. */
static int on_status(SSL *s, void *arg)
{
    struct gw_staple *st = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(s), staple_index);
    unsigned char *copy = NULL;
    size_t len = 0;
    if (st == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    pthread_mutex_lock(&mu);
    if (st->der && time(NULL) < st->expires && (copy = OPENSSL_malloc(st->len)) != NULL) {
        memcpy(copy, st->der, st->len);
        len = st->len;
    }
    pthread_mutex_unlock(&mu);
    if (copy == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_set_tlsext_status_ocsp_resp(s, copy, (long)len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ---- attach (main thread) ---- */

/* The certificate's first usable responder URL (heap), or NULL: none named
 * (silently), or none http:// of printable ASCII under URL_MAX (logged). */
static char *responder_url(X509 *cert, const char *path)
{
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(cert);
    char *out = NULL;
    int n = urls ? sk_OPENSSL_STRING_num(urls) : 0;
    for (int i = 0; i < n && out == NULL; i++) {
        const char *u = sk_OPENSSL_STRING_value(urls, i);
        size_t len = strlen(u), ok = 0;
        while (ok < len && u[ok] > ' ' && u[ok] < 0x7f)
            ok++;
        if (len < URL_MAX && ok == len && strncasecmp(u, "http://", 7) == 0)
            out = pc_xstrdup(u);
    }
    if (out == NULL && n > 0)
        pc_log_warn("tls: OCSP stapling is off for %s: its OCSP responder URL is not http://",
                    path);
    X509_email_free(urls);
    return out;
}

/* The chain certificate that issued cert (and signed it), or NULL. */
static X509 *issuer_in_chain(SSL_CTX *ctx, X509 *cert)
{
    STACK_OF(X509) *chain = NULL;
    if (SSL_CTX_get0_chain_certs(ctx, &chain) != 1 || chain == NULL)
        return NULL;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        X509 *c = sk_X509_value(chain, i);
        EVP_PKEY *k = X509_get0_pubkey(c);
        if (X509_check_issued(c, cert) == X509_V_OK && k && X509_verify(cert, k) == 1)
            return c;
    }
    ERR_clear_error();
    return NULL;
}

void gw_ocsp_attach(struct ssl_ctx_st *ctx, const char *cert_path)
{
    if (!gw_cfg.tls_ocsp)
        return;
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    char *url = cert ? responder_url(cert, cert_path) : NULL;
    if (url == NULL)
        return;
    X509 *issuer = issuer_in_chain(ctx, cert);
    if (issuer == NULL) {
        pc_log_warn("tls: OCSP stapling is off for %s: the file has no issuer certificate of "
                    "it after the leaf (leaf first, then its issuer)", cert_path);
        free(url);
        return;
    }
    pthread_once(&index_once, index_init);
    if (staple_index < 0)
        pc_fatal("SSL_CTX_get_ex_new_index failed");
    pthread_mutex_lock(&mu);
    struct gw_staple *st = staples;
    while (st && (strcmp(st->path, cert_path) != 0 || X509_cmp(st->cert, cert) != 0 ||
                  X509_cmp(st->issuer, issuer) != 0))
        st = st->next;
    if (st) {
        st->refs++;
        st->next_ms = 0;        /* a reload: ask again now */
        st->again = st->again || st->fetching;
        free(url);
    } else {
        OCSP_CERTID *id = OCSP_cert_to_id(NULL, cert, issuer);
        if (id == NULL) {
            pthread_mutex_unlock(&mu);
            ERR_clear_error();
            pc_log_warn("tls: OCSP stapling is off for %s: no OCSP id for its certificate",
                        cert_path);
            free(url);
            return;
        }
        st = pc_xcalloc(1, sizeof *st);
        st->path = pc_xstrdup(cert_path);
        st->url = url;
        X509_up_ref(cert);
        st->cert = cert;
        X509_up_ref(issuer);
        st->issuer = issuer;
        st->id = id;
        st->refs = 1;
        st->next = staples;
        staples = st;
    }
    pthread_mutex_unlock(&mu);
    if (SSL_CTX_set_ex_data(ctx, staple_index, st) != 1)
        pc_fatal("SSL_CTX_set_ex_data failed");
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
    if (fetcher)
        pc_periodic_kick(fetcher);
}

/* ---- fetch and check (the OCSP thread, without mu) ---- */

/* libcurl, now and then during a transfer: stop at shutdown. */
static int on_progress(void *arg, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    return pc_periodic_stopping(arg) ? 1 : 0;
}

/* POSTs req to url; 0 with the body in *out (the caller frees it) on a
 * 200, -1 with why set otherwise. */
static int http_post(struct pc_periodic *p, const char *url, const unsigned char *req,
                     size_t reqlen, struct pc_buf *out, char *why, size_t whysz)
{
    struct pc_buf body = {0};
    struct pc_buf_capped cap = {.buf = &body, .max = RESPONSE_MAX_BYTES};
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/ocsp-request");
    if (c == NULL || h == NULL) {
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        snprintf(why, whysz, "libcurl cannot start a transfer");
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)req);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)reqlen);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
    long status = 0;
    int rc = gw_http_fetch(c, url, "http", FETCH_TIMEOUT_MS, &cap, &status);
    curl_slist_free_all(h);
    if (rc == CURLE_OK && status == 200) {
        *out = body;
        return 0;
    }
    if (cap.over)
        snprintf(why, whysz, "POST %s: the answer is over %d bytes", url, RESPONSE_MAX_BYTES);
    else if (rc != CURLE_OK)
        snprintf(why, whysz, "POST %s: %s", url, curl_easy_strerror((CURLcode)rc));
    else
        snprintf(why, whysz, "POST %s: status %ld", url, status);
    pc_buf_free(&body);
    return -1;
}

/* OpenSSL's reason for the last failure, for a log line. */
static const char *ssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    snprintf(buf, n, "%s", e ? ERR_reason_error_string(e) : "");
    ERR_clear_error();
    return buf[0] ? buf : "no reason given";
}

/* Reads der (len bytes) as the responder's answer for st: V_GOOD with
 * *expires (wall clock) when it verifies against st's issuer, says good for
 * st's certificate and is current; V_DROP when it verifies and says revoked
 * or unknown; V_FAILED otherwise. why says what was wrong. */
static enum verdict check_response(const struct gw_staple *st, const unsigned char *der,
                                   size_t len, time_t *expires, char *why, size_t whysz)
{
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = len > 0 && len <= RESPONSE_MAX_BYTES
                              ? d2i_OCSP_RESPONSE(NULL, &p, (long)len) : NULL;
    OCSP_BASICRESP *bs = NULL;
    X509_STORE *store = NULL;
    STACK_OF(X509) *certs = NULL;
    enum verdict v = V_FAILED;
    char reason[160];
    int rs, status = -1, crl_reason = -1;
    ASN1_GENERALIZEDTIME *revoked_at = NULL, *this_upd = NULL, *next_upd = NULL;
    if (resp == NULL || p != der + len) {
        snprintf(why, whysz, "the answer is not one DER OCSP response");
        goto out;
    }
    if ((rs = OCSP_response_status(resp)) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        snprintf(why, whysz, "the responder answered %s", OCSP_response_status_str(rs));
        goto out;
    }
    if ((bs = OCSP_response_get1_basic(resp)) == NULL) {
        snprintf(why, whysz, "the answer is not a basic OCSP response");
        goto out;
    }
    /* The issuer is the one trust anchor (an intermediate too: partial
     * chain), and may have signed the response itself without sending a
     * certificate; a delegated responder must chain to it (and be marked
     * for OCSP signing, which OCSP_basic_verify checks). */
    store = X509_STORE_new();
    certs = sk_X509_new_null();
    if (store == NULL || certs == NULL || X509_STORE_add_cert(store, st->issuer) != 1 ||
        X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN) != 1 ||
        sk_X509_push(certs, st->issuer) <= 0) {
        snprintf(why, whysz, "out of memory");
        goto out;
    }
    if (OCSP_basic_verify(bs, certs, store, 0) != 1) {
        snprintf(why, whysz, "the response does not verify against the issuer: %s",
                 ssl_reason(reason, sizeof reason));
        goto out;
    }
    if (OCSP_resp_find_status(bs, st->id, &status, &crl_reason, &revoked_at, &this_upd,
                              &next_upd) != 1) {
        snprintf(why, whysz, "the response says nothing of the certificate");
        goto out;
    }
    if (status != V_OCSP_CERTSTATUS_GOOD) {
        v = V_DROP;     /* revoked stays revoked, however old the word */
        snprintf(why, whysz, "the responder says %s%s%s", OCSP_cert_status_str(status),
                 status == V_OCSP_CERTSTATUS_REVOKED && crl_reason >= 0 ? ": " : "",
                 status == V_OCSP_CERTSTATUS_REVOKED && crl_reason >= 0
                     ? OCSP_crl_reason_str(crl_reason) : "");
        goto out;
    }
    if (OCSP_check_validity(this_upd, next_upd, SKEW_S, next_upd ? -1 : NO_NEXT_UPDATE_S) != 1) {
        snprintf(why, whysz, "the response is not current (thisUpdate in the future, or "
                             "nextUpdate past or before thisUpdate)");
        ERR_clear_error();
        goto out;
    }
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, next_upd ? next_upd : this_upd) != 1) {
        snprintf(why, whysz, "the response's times cannot be read");
        goto out;
    }
    int64_t left = (int64_t)days * 86400 + secs + (next_upd ? 0 : NO_NEXT_UPDATE_S);
    if (left <= 0) {
        snprintf(why, whysz, "the response is past its nextUpdate");
        goto out;
    }
    *expires = time(NULL) + (time_t)left;
    v = V_GOOD;
out:
    sk_X509_free(certs);        /* the issuer is st's */
    X509_STORE_free(store);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    return v;
}

/* One fetch for st: *der (heap) and *expires on V_GOOD. */
static enum verdict fetch(struct pc_periodic *p, const struct gw_staple *st, unsigned char **der,
                          size_t *len, time_t *expires, char *why, size_t whysz)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_CERTID_dup(st->id);
    unsigned char *reqder = NULL;
    int reqlen = -1;
    if (req && id && OCSP_request_add0_id(req, id) != NULL) {
        id = NULL;              /* the request's now */
        reqlen = i2d_OCSP_REQUEST(req, &reqder);
    }
    OCSP_CERTID_free(id);
    OCSP_REQUEST_free(req);
    if (reqlen <= 0) {
        ERR_clear_error();
        snprintf(why, whysz, "the OCSP request cannot be made");
        return V_FAILED;
    }
    struct pc_buf body = {0};
    int rc = http_post(p, st->url, reqder, (size_t)reqlen, &body, why, whysz);
    OPENSSL_free(reqder);
    if (rc != 0)
        return V_FAILED;
    enum verdict v = check_response(st, (const unsigned char *)body.data, body.len, expires, why,
                                    whysz);
    if (v == V_GOOD) {
        *der = (unsigned char *)body.data;  /* pc_buf's heap block, freed with free() */
        *len = body.len;
    } else {
        pc_buf_free(&body);
    }
    return v;
}

/* Fetches st (which the caller holds a reference to and marked fetching)
 * and puts the outcome in. */
static void fetch_one(struct pc_periodic *p, struct gw_staple *st)
{
    GW_STAT_INC(ocsp_fetches);
    char why[400] = "";
    unsigned char *der = NULL;
    size_t len = 0;
    time_t expires = 0;
    enum verdict v = fetch(p, st, &der, &len, &expires, why, sizeof why);
    if (pc_periodic_stopping(p)) {
        free(der);
        return;
    }
    time_t now = time(NULL);
    pthread_mutex_lock(&mu);
    bool had = st->der != NULL && now < st->expires;
    if (v == V_GOOD) {
        free(st->der);
        st->der = der;
        st->len = len;
        st->expires = expires;
        st->fails = 0;
    } else {
        st->fails++;
        if (v == V_DROP || !had) {
            free(st->der);
            st->der = NULL;
        }
    }
    bool kept = v == V_FAILED && had;
    int64_t left = kept || v == V_GOOD ? (int64_t)(st->expires - now) : 0;
    int64_t gap = gw_ocsp_next_fetch_s(v == V_GOOD, left, st->fails, gw_cfg.tls_ocsp_refresh_s);
    st->next_ms = st->again ? 0 : pc_mono_us() / 1000 + gap * 1000;
    st->again = false;
    st->fetching = false;
    pthread_mutex_unlock(&mu);
    if (v == V_GOOD) {
        if (had)
            pc_log_debug("tls: OCSP response for %s renewed (good for %lld s more)", st->path,
                         (long long)left);
        else
            pc_log_info("tls: OCSP response for %s stapled (good for %lld s, next fetch in "
                        "%lld s)", st->path, (long long)left, (long long)gap);
        return;
    }
    GW_STAT_INC(ocsp_fetch_errors);
    if (kept)
        pc_log_warn("tls: OCSP response for %s not renewed: %s; the one stapled stays until "
                    "its nextUpdate (%lld s), next fetch in %lld s", st->path, why,
                    (long long)left, (long long)gap);
    else
        pc_log_warn("tls: no OCSP staple for %s: %s; next fetch in %lld s", st->path, why,
                    (long long)gap);
}

/* One round of the OCSP thread: every staple that is due, one at a time
 * (the list is looked at again after each, under mu), then the wait until
 * the next one is due. A reload kicks it. */
static int64_t ocsp_round(struct pc_periodic *p, void *arg)
{
    while (!pc_periodic_stopping(p)) {
        int64_t now = pc_mono_us() / 1000, next = now + RETRY_MAX_S * 1000;
        struct gw_staple *due = NULL;
        pthread_mutex_lock(&mu);
        for (struct gw_staple *st = staples; st && due == NULL; st = st->next) {
            if (st->fetching)
                continue;
            if (st->next_ms <= now)
                due = st;
            else if (st->next_ms < next)
                next = st->next_ms;
        }
        if (due) {
            due->refs++;
            due->fetching = true;
        }
        pthread_mutex_unlock(&mu);
        if (due == NULL)
            return next - now;
        fetch_one(p, due);
        staple_release(due);
    }
    return 0;
}

void gw_ocsp_start(void)
{
    if (!gw_cfg.tls_cert || !gw_cfg.tls_cert[0] || !gw_cfg.tls_ocsp)
        return;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        pc_fatal("curl_global_init failed");
    fetcher = pc_periodic_start("gw-ocsp", RETRY_MAX_S * 1000, ocsp_round, NULL);
}

void gw_ocsp_stop(void)
{
    if (fetcher == NULL)
        return;
    pc_periodic_stop(fetcher);
    fetcher = NULL;
    curl_global_cleanup();
}
