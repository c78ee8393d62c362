/* Portcullis - MIT licence. See LICENSE.
 *
 * jwks.c: the JWT issuers' public keys, and our own signing key.
 *
 * One thread (started only when a route accepts JWTs or hands JWTs
 * upstream) fetches each issuer's JWKS with libcurl, discovering jwks_uri
 * from <issuer>/.well-known/openid-configuration when it is not configured.
 * A key set is kept for its Cache-Control max-age (clamped to
 * [JWKS_REFETCH_MS, 1 day], 5 min without one) and replaced whole;
 * workers take a reference to the set they verify with, so a swap never
 * frees a key in use.
 *
 * A token whose kid is not in the set (a rotation the cache has not seen)
 * parks its request on the issuer and asks for a fetch; the fetch (at once,
 * or JWKS_REFETCH_MS after the previous one) wakes every parked request,
 * which looks again once and then gives up. Fetches of one issuer are at
 * least JWKS_REFETCH_MS apart however many unknown kids arrive, at most
 * MAX_WAITERS requests wait on one, and no request waits on the network
 * while holding a worker.
 *
 * The same thread keeps the signing key for JWTs handed upstream (mint.c):
 * the newest current row of the shared jwks table that opens with our
 * secret, re-read every SIGNER_RELOAD_MS.
 */
#include "gateway.h"
#include "../lib/conf.h"
#include "../lib/db.h"
#include "../lib/ba_jwks.h"
#include "../lib/jws.h"
#include "../lib/json.h"
#include "../lib/log.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#define FETCH_TIMEOUT_MS 5000
#define FETCH_MAX_BYTES (1024 * 1024)
#define DEFAULT_TTL_MS (300 * 1000)
#define MAX_TTL_MS (86400 * 1000)
#define SIGNER_RELOAD_MS 30000
#define MAX_WAITERS 4096            /* requests parked on one issuer's next fetch */

struct gw_keyset {
    struct pc_jwks jwks;
    int refs;                       /* guarded by mu */
};

struct gw_iss_state {
    struct gw_keyset *set;          /* NULL until the first good fetch */
    char *jwks_uri;                 /* configured or discovered */
    int64_t expires_at;             /* ms: refetch then */
    int64_t last_attempt;           /* ms, 0 = never */
    unsigned fails;                 /* failed fetches in a row (backoff when nobody waits) */
    bool want;                      /* a worker asked for a fetch */
    bool fetching;
    struct gw_request *waiters;     /* parked on the next fetch (next_wake links) */
    size_t nwaiters;
};

struct gw_signer {
    struct pc_jwk key;
    int refs;                       /* guarded by mu */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_t thread;
static bool running, stop_flag;
static struct gw_signer *signer;    /* guarded by mu */
static atomic_uint signer_gen;      /* bumped whenever signer changes (mint.c's caches) */
static int64_t signer_loaded_at;

/* ---- references ---- */

void gw_keyset_release(struct gw_keyset *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&mu);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&mu);
    if (last) {
        pc_jwks_free(&s->jwks);
        free(s);
    }
}

static void signer_release_locked(struct gw_signer *s, struct gw_signer **to_free)
{
    if (s && --s->refs == 0)
        *to_free = s;
}

void gw_signer_release(struct gw_signer *s)
{
    struct gw_signer *dead = NULL;
    pthread_mutex_lock(&mu);
    signer_release_locked(s, &dead);
    pthread_mutex_unlock(&mu);
    if (dead) {
        pc_jwk_free(&dead->key);
        free(dead);
    }
}

unsigned gw_signer_gen(void)
{
    return atomic_load_explicit(&signer_gen, memory_order_acquire);
}

struct gw_signer *gw_signer_get(const struct pc_jwk **key)
{
    pthread_mutex_lock(&mu);
    struct gw_signer *s = signer;
    if (s)
        s->refs++;
    pthread_mutex_unlock(&mu);
    *key = s ? &s->key : NULL;
    return s;
}

/* ---- lookups from the workers ---- */

enum gw_key_result gw_jwks_key(struct gw_issuer *iss, const char *kid, struct gw_request *r,
                               struct gw_keyset **set, const struct pc_jwk **key)
{
    struct gw_iss_state *st = iss->st;
    *set = NULL;
    *key = NULL;
    pthread_mutex_lock(&mu);
    if (st->set) {
        const struct pc_jwk *k = kid[0] ? pc_jwks_find(&st->set->jwks, kid)
                                        : st->set->jwks.n == 1 ? &st->set->jwks.keys[0] : NULL;
        if (k) {
            st->set->refs++;
            *set = st->set;
            *key = k;
            pthread_mutex_unlock(&mu);
            return GW_KEY_FOUND;
        }
    }
    /* Wait for the next fetch, which comes at once or JWKS_REFETCH_MS after
     * the last one: a key published just after a fetch costs its first
     * requests that wait, not a refusal. An issuer that could not be
     * reached lately, or a crowd of waiters (random kids), is not waited on. */
    enum gw_key_result res;
    bool failing = st->set == NULL && st->last_attempt != 0 && !st->fetching;
    if (r->jwks_waited || !running || failing || st->nwaiters >= MAX_WAITERS) {
        res = st->set ? GW_KEY_UNKNOWN : GW_KEY_UNAVAILABLE;
    } else {
        r->next_wake = st->waiters;
        st->waiters = r;
        st->nwaiters++;
        st->want = true;
        pthread_cond_signal(&cv);
        res = GW_KEY_WAIT;
    }
    pthread_mutex_unlock(&mu);
    return res;
}

/* ---- HTTP ---- */

struct fetch {
    struct pc_buf body;
    int64_t max_age;        /* seconds, -1 = none */
    bool too_big;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct fetch *f = arg;
    size_t len = size * n;
    if (f->body.len + len > FETCH_MAX_BYTES) {
        f->too_big = true;
        return 0;
    }
    pc_buf_append(&f->body, p, len);
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct fetch *f = arg;
    size_t len = size * n;
    if (len > 14 && strncasecmp(p, "cache-control:", 14) == 0) {
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len - 14), p + 14);
        for (char *c = line; *c; c++)
            *c = (char)((*c >= 'A' && *c <= 'Z') ? *c - 'A' + 'a' : *c);
        const char *m = strstr(line, "max-age=");
        if (strstr(line, "no-store") || strstr(line, "no-cache"))
            f->max_age = 0;
        else if (m)
            f->max_age = strtoll(m + 8, NULL, 10);
    }
    return len;
}

/* GET url; 0 with f filled on a 200, -1 otherwise (logged). */
static int http_get(const char *url, struct fetch *f)
{
    memset(f, 0, sizeof *f);
    f->max_age = -1;
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "portcullis-gateway");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status != 200) {
        pc_log_warn("jwks: GET %s failed: %s", url,
                    rc != CURLE_OK ? curl_easy_strerror(rc) : "status is not 200");
        pc_buf_free(&f->body);
        return -1;
    }
    return 0;
}

/* jwks_uri from the issuer's discovery document (heap) or NULL. */
static char *discover(const char *issuer)
{
    struct pc_buf u = {0};
    size_t n = strlen(issuer);
    while (n > 0 && issuer[n - 1] == '/')
        n--;
    pc_buf_printf(&u, "%.*s/.well-known/openid-configuration", (int)n, issuer);
    struct fetch f;
    char *out = NULL;
    if (http_get(pc_buf_cstr(&u), &f) == 0) {
        yajl_val doc = pc_json_parse(f.body.data ? f.body.data : "", f.body.len);
        yajl_val ju = pc_json_get(doc, "jwks_uri");
        yajl_val iss = pc_json_get(doc, "issuer");
        const char *why;
        /* OpenID Discovery §4.3: the document must name the same issuer */
        if (YAJL_IS_STRING(ju) && pc_conf_check_http_url(ju->u.string, &why) == 0 &&
            YAJL_IS_STRING(iss) && strcmp(iss->u.string, issuer) == 0)
            out = pc_xstrdup(ju->u.string);
        else
            pc_log_warn("jwks: discovery document of %s has no usable jwks_uri (or is not "
                        "JSON nested at most %d levels)", issuer, PC_JSON_MAX_DEPTH);
        yajl_tree_free(doc);
        pc_buf_free(&f.body);
    }
    pc_buf_free(&u);
    return out;
}

/* Fetches one issuer's set (no lock held). NULL on failure. */
static struct gw_keyset *fetch_set(struct gw_issuer *iss, char **uri, int64_t *ttl_ms)
{
    if (*uri == NULL && (*uri = discover(iss->issuer)) == NULL)
        return NULL;
    struct fetch f;
    if (http_get(*uri, &f) != 0)
        return NULL;
    struct gw_keyset *s = pc_xcalloc(1, sizeof *s);
    if (pc_jwks_parse(f.body.data ? f.body.data : "", f.body.len, &s->jwks) != 0) {
        pc_log_warn("jwks: %s is not a JWK set (not JSON, nested deeper than %d levels, "
                    "or no \"keys\" array)", *uri, PC_JSON_MAX_DEPTH);
        pc_buf_free(&f.body);
        free(s);
        return NULL;
    }
    pc_buf_free(&f.body);
    s->refs = 1;
    int64_t t = f.max_age < 0 ? DEFAULT_TTL_MS : f.max_age * 1000;
    if (t < gw_cfg.jwt_refetch_ms)
        t = gw_cfg.jwt_refetch_ms;
    *ttl_ms = t > MAX_TTL_MS ? MAX_TTL_MS : t;
    return s;
}

/* ---- our signing key, from PostgreSQL ---- */

static struct gw_signer *load_signer(struct pc_db *db)
{
    PGresult *res = pc_db_exec(db,
                               "SELECT \"id\", \"privateKey\", \"alg\", \"publicKey\" FROM \"jwks\" "
                               "WHERE \"expiresAt\" IS NULL OR \"expiresAt\" > now() "
                               "ORDER BY \"createdAt\" DESC, \"id\"", 0, NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return NULL;
    }
    struct gw_signer *s = NULL;
    for (int i = 0; s == NULL && i < PQntuples(res); i++) {
        const char *pubtxt = PQgetvalue(res, i, 3);
        yajl_val pub = pc_json_parse(pubtxt, strlen(pubtxt));
        const char *alg = pc_jwk_row_alg(PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2),
                                         pub);
        struct gw_signer *c = pc_xcalloc(1, sizeof *c);
        if (alg && pc_jwk_alg_parse(alg) != PC_JWK_NONE &&
            pc_jwk_open_row(gw_cfg.secret, PQgetvalue(res, i, 0), alg, PQgetvalue(res, i, 1),
                            &c->key) == 0) {
            c->refs = 1;
            s = c;
        } else {
            free(c);
        }
        yajl_tree_free(pub);
    }
    PQclear(res);
    return s;
}

/* ---- the thread ---- */

static void wake_all(struct gw_request *list)
{
    while (list) {
        struct gw_request *next = list->next_wake;
        list->jwks_waited = true;
        gw_wake(list);
        list = next;
    }
}

static void *jwks_main(void *arg)
{
    struct pc_db db;
    pc_db_init(&db, gw_cfg.database_url);
    pthread_mutex_lock(&mu);
    while (!stop_flag) {
        int64_t now = pc_mono_us() / 1000;
        int64_t next = now + 60000;
        for (size_t i = 0; i < gw_cfg.nissuers && gw_cfg.jwt_used && !stop_flag; i++) {
            struct gw_issuer *iss = &gw_cfg.issuers[i];
            struct gw_iss_state *st = iss->st;
            /* after failures, and unless a request waits, back off up to a minute */
            int64_t gap = gw_cfg.jwt_refetch_ms;
            for (unsigned f = 0; !st->want && f < st->fails && gap < 60000; f++)
                gap *= 2;
            bool spaced = st->last_attempt == 0 || now - st->last_attempt >= gap;
            bool due = st->set == NULL || now >= st->expires_at || st->want || st->fails;
            if (!(due && spaced)) {
                int64_t at = st->want || st->set == NULL || st->fails ? st->last_attempt + gap
                                                                      : st->expires_at;
                next = at < next ? at : next;
                continue;
            }
            st->fetching = true;
            st->want = false;
            st->last_attempt = now;
            char *uri = st->jwks_uri;
            pthread_mutex_unlock(&mu);
            int64_t ttl = 0;
            struct gw_keyset *fresh = fetch_set(iss, &uri, &ttl);
            pthread_mutex_lock(&mu);
            st->jwks_uri = uri;
            struct gw_keyset *old = NULL;
            if (fresh) {
                old = st->set;
                st->set = fresh;
                st->expires_at = now + ttl;
                st->fails = 0;
            } else {
                st->fails++;    /* the old set, if any, stays in use */
            }
            st->fetching = false;
            struct gw_request *waiters = st->waiters;
            st->waiters = NULL;
            st->nwaiters = 0;
            pthread_mutex_unlock(&mu);
            gw_keyset_release(old);
            wake_all(waiters);
            pthread_mutex_lock(&mu);
            now = pc_mono_us() / 1000;
            int64_t at = fresh ? st->expires_at : now + gw_cfg.jwt_refetch_ms;
            next = at < next ? at : next;
        }
        if (gw_cfg.mint_used && !stop_flag &&
            (signer == NULL || now - signer_loaded_at >= SIGNER_RELOAD_MS)) {
            pthread_mutex_unlock(&mu);
            struct gw_signer *s = load_signer(&db);
            pthread_mutex_lock(&mu);
            struct gw_signer *dead = NULL;
            if (s) {
                if (signer == NULL || strcmp(signer->key.kid, s->key.kid) != 0)
                    atomic_fetch_add(&signer_gen, 1);   /* another key: re-sign */
                signer_release_locked(signer, &dead);
                signer = s;
                signer_loaded_at = now;
            } else {
                signer_loaded_at = now - SIGNER_RELOAD_MS + gw_cfg.jwt_refetch_ms;
            }
            if (dead) {
                pc_jwk_free(&dead->key);
                free(dead);
            }
            int64_t at = signer_loaded_at + SIGNER_RELOAD_MS;
            next = at < next ? at : next;
        }
        if (stop_flag)
            break;
        now = pc_mono_us() / 1000;
        if (next > now) {
            /* the condition variable runs on CLOCK_REALTIME: wait a span */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t wait = next - now;
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&cv, &mu, &ts);
        }
    }
    pthread_mutex_unlock(&mu);
    pc_db_close(&db);
    pc_crypto_thread_cleanup();
    return NULL;
}

void gw_jwks_start(void)
{
    for (size_t i = 0; i < gw_cfg.nissuers; i++) {
        gw_cfg.issuers[i].st = pc_xcalloc(1, sizeof(struct gw_iss_state));
        if (gw_cfg.issuers[i].jwks_uri)
            gw_cfg.issuers[i].st->jwks_uri = pc_xstrdup(gw_cfg.issuers[i].jwks_uri);
    }
    if (!gw_cfg.jwt_used && !gw_cfg.mint_used)
        return;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        pc_fatal("curl_global_init failed");
    running = true;
    if (pthread_create(&thread, NULL, jwks_main, NULL) != 0)
        pc_fatal("pthread_create failed");
}

void gw_jwks_stop(void)
{
    if (running) {
        pthread_mutex_lock(&mu);
        stop_flag = true;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
        pthread_join(thread, NULL);
        curl_global_cleanup();
    }
    pthread_mutex_lock(&mu);
    running = false;
    struct gw_request *waiters = NULL;
    for (size_t i = 0; i < gw_cfg.nissuers; i++) {
        struct gw_iss_state *st = gw_cfg.issuers[i].st;
        if (st == NULL)
            continue;
        for (struct gw_request *r = st->waiters, *next; r; r = next) {
            next = r->next_wake;
            r->next_wake = waiters;
            waiters = r;
        }
        st->waiters = NULL;
        st->nwaiters = 0;
    }
    pthread_mutex_unlock(&mu);
    wake_all(waiters);
}

void gw_jwks_free(void)
{
    for (size_t i = 0; i < gw_cfg.nissuers; i++) {
        struct gw_iss_state *st = gw_cfg.issuers[i].st;
        if (st == NULL)
            continue;
        gw_keyset_release(st->set);
        free(st->jwks_uri);
        free(st);
        gw_cfg.issuers[i].st = NULL;
    }
    gw_signer_release(signer);
    signer = NULL;
}

bool gw_jwks_ready(void)
{
    pthread_mutex_lock(&mu);
    bool ok = true;
    for (size_t i = 0; gw_cfg.jwt_used && i < gw_cfg.nissuers; i++)
        ok = ok && gw_cfg.issuers[i].st && gw_cfg.issuers[i].st->set;
    pthread_mutex_unlock(&mu);
    return ok;
}
