/* Portcullis - MIT licence. See LICENSE.
 *
 * tls_front.c: TLS on the public listener (tls_front.h).
 *
 *   context   one SSL_CTX at a time, swapped under ctx_mu on SIGHUP; every
 *             SSL holds a reference to the context it was made with, so
 *             the old one is freed when its last connection closes
 *   policy    TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE and AEAD ciphers
 *             only (Mozilla's "intermediate" list); no renegotiation, no
 *             compression; the server's cipher order
 *   SNI       GATEWAY_TLS_CERT may list several certificates (keys in the
 *             same order): a client's server_name picks the first whose
 *             names match it (X509_check_host), else the first one
 *   ALPN      h2 first (GATEWAY_HTTP2; front.c hands such a connection to
 *             h2_front.c), then http/1.1
 *   resume    session tickets (stateless) under process-wide keys that
 *             rotate every GATEWAY_TLS_TICKET_ROTATE_SECONDS: a ticket made
 *             under the current key is taken, one under either of the two
 *             before it too (and renewed), older ones mean a full handshake.
 *             Reloads keep the keys; replicas do not share them
 *   I/O       non-blocking: SSL_ERROR_WANT_READ/WRITE become EAGAIN, and
 *             the handshake runs inside the first reads. Read-ahead on: a
 *             read(2) takes what the socket has, whole records and more.
 *             Partial writes and a moving write buffer are allowed
 *             (front.c compacts its output buffer between writes)
 */
#include "tls_front.h"
#include "ocsp_staple.h"
#include "types.h"

#include "../lib/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *cur;

/* Mozilla's intermediate TLS 1.2 list (TLS 1.3's suites are OpenSSL's). */
static const char ciphers12[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

bool gw_tls_front_on(void)
{
    return gw_cfg.tls_cert && gw_cfg.tls_cert[0];
}

static void ssl_why(const char *what, const char *path, char *err, size_t errsz)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(err, errsz, "%s: %s: %s", what, path, e ? buf : "cannot be used");
}

/* ---- ticket keys ---- */

#define TICKET_KEYS 3 /* the current one and the two before it */

struct ticket_key {
    unsigned char name[16], aes[32], hmac[32];
    bool set;
};
static pthread_mutex_t tk_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key tkeys[TICKET_KEYS]; /* [0] is the current one */
static int64_t tk_rotated_ms;

/* Under tk_mu: one new current key per rotation period gone by since the
 * last (a quiet hour or two still retires what it should), or the first. */
static void tk_rotate_if_due(void)
{
    int64_t now = pc_now_ms(), period = gw_cfg.tls_ticket_rotate_s * 1000;
    int64_t due = tkeys[0].set ? (now - tk_rotated_ms) / period : 1;
    if (due <= 0)
        return;
    for (int64_t i = 0; i < due && i < TICKET_KEYS; i++) {
        memmove(&tkeys[1], &tkeys[0], (TICKET_KEYS - 1) * sizeof tkeys[0]);
        if (RAND_bytes(tkeys[0].name, sizeof tkeys[0].name) != 1 ||
            RAND_bytes(tkeys[0].aes, sizeof tkeys[0].aes) != 1 ||
            RAND_bytes(tkeys[0].hmac, sizeof tkeys[0].hmac) != 1)
            pc_fatal("RAND_bytes failed");
        tkeys[0].set = true;
    }
    tk_rotated_ms = now;
}

/* OpenSSL's ticket callback: enc 1 seals a new ticket under the current
 * key; enc 0 opens one by its key name (2: taken, but renew it). */
static int on_ticket_key(SSL *s, unsigned char name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    struct ticket_key k;
    int rc = 0;
    pthread_mutex_lock(&tk_mu);
    tk_rotate_if_due();
    int at = -1;
    if (enc) {
        at = 0;
    } else {
        for (int i = 0; i < TICKET_KEYS && at < 0; i++)
            if (tkeys[i].set && memcmp(tkeys[i].name, name, 16) == 0)
                at = i;
    }
    if (at >= 0)
        k = tkeys[at];
    pthread_mutex_unlock(&tk_mu);
    if (at < 0)
        return 0; /* unknown or retired key: a full handshake */
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
            EVP_MAC_CTX_set_params(hctx, params) != 1)
            rc = -1;
        else
            rc = 1;
    } else if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
               EVP_MAC_CTX_set_params(hctx, params) != 1) {
        rc = -1;
    } else {
        rc = at == 0 ? 1 : 2;
    }
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

/* ALPN (RFC 7301): h2 when the client offers it and GATEWAY_HTTP2 is on,
 * else http/1.1; a client that offers neither goes on without ALPN
 * (HTTP/1.1), as it would with a server that has none. */
static int on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s;
    (void)arg;
    static const unsigned char both[] = "\x02h2\x08http/1.1", h1[] = "\x08http/1.1";
    const unsigned char *ours = gw_cfg.http2 ? both : h1;
    unsigned int n = gw_cfg.http2 ? sizeof both - 1 : sizeof h1 - 1;
    unsigned char *pick;
    if (SSL_select_next_proto(&pick, outlen, ours, n, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = pick;
    return SSL_TLSEXT_ERR_OK;
}

/* One context for cert and key, with the policy above; NULL with err set. */
static SSL_CTX *ctx_for(const char *cert, const char *key, char *err, size_t errsz)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        pc_fatal("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_cipher_list(ctx, ciphers12) != 1)
        pc_fatal("SSL_CTX_set_cipher_list failed");
    SSL_CTX_set_read_ahead(ctx, 1); /* a record in one read(2), not header then body */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* tickets only */
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        ssl_why("GATEWAY_TLS_CERT", cert, err, errsz);
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
             SSL_CTX_check_private_key(ctx) != 1)
        ssl_why("GATEWAY_TLS_KEY (a PEM key, of GATEWAY_TLS_CERT's certificate)", key, err,
                errsz);
    else {
        gw_ocsp_attach(ctx, cert); /* stapling, when the certificate names a responder */
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

/* SNI: the contexts of the other certificates hang on the first one's
 * ex_data (each referenced), so they live as long as it, that is as long
 * as the last connection made with it. */
struct alts {
    size_t n;
    SSL_CTX *ctx[GW_TLS_CERTS_MAX];
};
static int alts_index = -1;
static pthread_once_t alts_once = PTHREAD_ONCE_INIT;

static void alts_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp)
{
    struct alts *a = ptr;
    for (size_t i = 0; a && i < a->n; i++)
        SSL_CTX_free(a->ctx[i]);
    free(a);
}

static void alts_init(void)
{
    alts_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alts_free);
}

/* The client's server_name picks the first certificate that names it
 * (X509_check_host: exact or a wildcard); none, or no SNI: the first. */
static int on_servername(SSL *s, int *alert, void *arg)
{
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *first = SSL_get_SSL_CTX(s);
    struct alts *a = SSL_CTX_get_ex_data(first, alts_index);
    if (name == NULL || a == NULL || X509_check_host(SSL_CTX_get0_certificate(first), name, 0, 0,
                                                     NULL) == 1)
        return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < a->n; i++) {
        if (X509_check_host(SSL_CTX_get0_certificate(a->ctx[i]), name, 0, 0, NULL) == 1) {
            SSL_set_SSL_CTX(s, a->ctx[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/* The i-th entry of a comma list (heap), or NULL past its end. */
static char *nth(const char *list, size_t i)
{
    const char *p = list;
    for (size_t k = 0; k < i; k++) {
        p = strchr(p, ',');
        if (p == NULL)
            return NULL;
        p++;
    }
    size_t n = strcspn(p, ",");
    while (n > 0 && p[n - 1] == ' ')
        n--;
    while (n > 0 && *p == ' ')
        p++, n--;
    return pc_xstrndup(p, n);
}

static size_t count(const char *list)
{
    size_t n = 1;
    for (const char *p = list; (p = strchr(p, ',')) != NULL; p++)
        n++;
    return n;
}

int gw_tls_front_load(char *err, size_t errsz)
{
    if (!gw_tls_front_on())
        return 0;
    if (!gw_cfg.tls_key || !gw_cfg.tls_key[0]) {
        snprintf(err, errsz, "GATEWAY_TLS_KEY: required with GATEWAY_TLS_CERT");
        return -1;
    }
    size_t n = count(gw_cfg.tls_cert);
    if (n != count(gw_cfg.tls_key) || n > GW_TLS_CERTS_MAX) {
        snprintf(err, errsz, "GATEWAY_TLS_KEY: one key per certificate of GATEWAY_TLS_CERT, in "
                             "its order (at most %d)", GW_TLS_CERTS_MAX);
        return -1;
    }
    pthread_once(&alts_once, alts_init);
    SSL_CTX *first = NULL;
    struct alts *a = pc_xcalloc(1, sizeof *a);
    for (size_t i = 0; i < n; i++) {
        char *cert = nth(gw_cfg.tls_cert, i), *key = nth(gw_cfg.tls_key, i);
        SSL_CTX *ctx = ctx_for(cert, key, err, errsz);
        free(cert);
        free(key);
        if (ctx == NULL) {
            alts_free(NULL, a, NULL, 0, 0, NULL);
            SSL_CTX_free(first);
            return -1;
        }
        if (first == NULL)
            first = ctx;
        else
            a->ctx[a->n++] = ctx;
    }
    SSL_CTX_set_ex_data(first, alts_index, a); /* freed with first (alts_free) */
    SSL_CTX_set_tlsext_servername_callback(first, on_servername);
    pthread_mutex_lock(&ctx_mu);
    SSL_CTX *old = cur;
    cur = first;
    pthread_mutex_unlock(&ctx_mu);
    SSL_CTX_free(old); /* connections made with it hold their own references */
    return 0;
}

void gw_tls_front_free(void)
{
    pthread_mutex_lock(&ctx_mu);
    SSL_CTX *old = cur;
    cur = NULL;
    pthread_mutex_unlock(&ctx_mu);
    SSL_CTX_free(old);
}

struct ssl_st *gw_tls_front_new(int fd)
{
    pthread_mutex_lock(&ctx_mu);
    SSL *s = cur ? SSL_new(cur) : NULL;
    pthread_mutex_unlock(&ctx_mu);
    if (s == NULL)
        return NULL;
    if (SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        return NULL;
    }
    SSL_set_accept_state(s);
    return s;
}

/* errno for an SSL call that returned rc <= 0. */
static ssize_t fail(SSL *s, int rc, bool *other_way, int other)
{
    int e = SSL_get_error(s, rc);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *other_way = e == other;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0; /* close_notify */
    if (e == SSL_ERROR_SYSCALL && errno == 0)
        return 0; /* EOF without close_notify: the client went */
    errno = EPROTO;
    return -1;
}

ssize_t gw_tls_front_read(struct ssl_st *s, void *buf, size_t n, bool *want_write)
{
    *want_write = false;
    errno = 0;
    size_t got = 0;
    int rc = SSL_read_ex(s, buf, n, &got);
    if (rc == 1)
        return (ssize_t)got;
    return fail(s, 0, want_write, SSL_ERROR_WANT_WRITE);
}

ssize_t gw_tls_front_write(struct ssl_st *s, const void *buf, size_t n, bool *want_read)
{
    *want_read = false;
    errno = 0;
    size_t put = 0;
    int rc = SSL_write_ex(s, buf, n, &put);
    if (rc == 1)
        return (ssize_t)put;
    ssize_t r = fail(s, 0, want_read, SSL_ERROR_WANT_READ);
    if (r == 0) {
        errno = EPIPE;
        r = -1;
    }
    return r;
}

bool gw_tls_front_pending(const struct ssl_st *s)
{
    /* read-ahead: records read from the socket and not yet decrypted count
     * too (a partial one makes the next read EAGAIN, once) */
    return SSL_has_pending(s) == 1;
}

bool gw_tls_front_is_h2(const struct ssl_st *s)
{
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(s, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

bool gw_tls_front_established(const struct ssl_st *s)
{
    return SSL_is_init_finished(s);
}

void gw_tls_front_shutdown(struct ssl_st *s)
{
    if (SSL_is_init_finished(s))
        (void)SSL_shutdown(s);
    ERR_clear_error();
}

void gw_tls_front_release(struct ssl_st *s)
{
    SSL_free(s);
}
