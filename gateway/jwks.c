/* Portcullis - MIT licence. See LICENSE.
 *
 * jwks.c: the JWT issuers' public keys.
 *
 * One thread (started only when a route accepts JWTs or hands JWTs
 * upstream) fetches each issuer's JWKS with libcurl, discovering jwks_uri
 * from <issuer>/.well-known/openid-configuration when it is not configured.
 * A key set is kept for its Cache-Control max-age (clamped to
 * [JWKS_REFETCH_MS, 1 day], 5 min without one) and replaced whole;
 * workers take a reference to the set they verify with, so a swap never
 * frees a key in use.
 *
 * A token whose kid is not in the set (a rotation the cache has not seen,
 * or no set yet because the issuer was down) parks its request on the
 * issuer (gw_park: it counts toward GATEWAY_PENDING_MAX) and asks for a
 * fetch; the fetch (at once, or JWKS_KID_REFETCH_MS after the previous
 * one) wakes every parked request, which looks again once and then gives
 * up. Fetches that unknown kids ask for are at least JWKS_KID_REFETCH_MS
 * apart however many arrive, and that gap does not grow while the issuer
 * fails: the next unknown kid after the issuer is back is fetched for
 * within it. While the issuer's last fetch failed less than that long ago
 * a request does not wait for the next, which would likely fail too: it is
 * refused at once, and its ask brings the fetch. At most one fetch per
 * issuer is in flight, at most MAX_WAITERS requests wait on one, and no
 * request waits on the network while holding a worker. A token whose kid
 * is in the set never waits.
 *
 * The same thread keeps the signing key for JWTs handed upstream
 * (signer.c's gw_signer_tick, for mint.c).
 */
#include "jwt.h"
#include "http_fetch.h"
#include "metrics.h"
#include "request.h"
#include "../lib/conf.h"
#include "../lib/db.h"
#include "../lib/jws.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/periodic.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#define FETCH_TIMEOUT_MS 5000
#define FETCH_MAX_BYTES (1024 * 1024)
#define DEFAULT_TTL_MS (300 * 1000)
#define MAX_TTL_MS (86400 * 1000)
#define MAX_WAITERS 4096            /* requests parked on one issuer's next fetch */
#define BACKOFF_MAX_MS 60000        /* unasked retries after failures: at most this apart */

struct gw_keyset {
    struct pc_jwks jwks;
    int refs;                       /* guarded by mu */
};

struct gw_iss_state {
    struct gw_keyset *set;          /* NULL until the first good fetch */
    char *jwks_uri;                 /* configured or discovered */
    struct gw_jwks_pace pace;       /* when to fetch (gw_jwks_fetch_at) */
    struct gw_request *waiters;     /* parked on the next fetch (next_wake links) */
    size_t nwaiters;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct pc_periodic *fetcher; /* the key thread */
static struct pc_db db;             /* its connection (signer.c's queries) */
static bool running;                /* guarded by mu */

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

/* ---- the pace of fetches ---- */

int64_t gw_jwks_fetch_at(const struct gw_jwks_pace *p, bool have_set, int64_t refetch_ms,
                         int64_t kid_ms)
{
    if (p->fetching)
        return INT64_MAX;
    if (p->last_attempt == 0)
        return 0;
    int64_t at;
    if (!have_set || p->fails) {
        int64_t gap = refetch_ms;
        for (unsigned f = 0; f < p->fails && gap < BACKOFF_MAX_MS; f++)
            gap *= 2;
        if (gap > BACKOFF_MAX_MS && refetch_ms < BACKOFF_MAX_MS)
            gap = BACKOFF_MAX_MS;
        at = p->last_attempt + gap;
    } else {
        at = p->expires_at;
    }
    /* an ask never waits longer than the unasked fetch would */
    if (p->want && p->last_attempt + kid_ms < at)
        at = p->last_attempt + kid_ms;
    return at;
}

enum gw_jwks_miss gw_jwks_on_miss(const struct gw_jwks_pace *p, int64_t now_ms, int64_t kid_ms)
{
    if (p->fetching || p->fails == 0 || p->last_attempt == 0)
        return GW_MISS_WAIT;    /* in flight, or the issuer answered lately: worth waiting */
    return now_ms - p->last_attempt < kid_ms ? GW_MISS_ASK : GW_MISS_WAIT;
}

/* Under mu: a token asks for the issuer's next fetch. The thread is kicked
 * once per ask, not once per token; a token that comes while a fetch is in
 * flight is answered by that fetch and asks for none. */
static void ask_locked(struct gw_iss_state *st)
{
    if (!st->pace.want && !st->pace.fetching) {
        st->pace.want = true;
        pc_periodic_kick(fetcher);
    }
}

/* ---- lookups from the workers ---- */

enum gw_key_result gw_jwks_key(const struct gw_issuer *iss, const char *kid, struct gw_request *r,
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
    /* Wait for the next fetch, which comes at once or JWKS_KID_REFETCH_MS
     * after the last one: a key published just after a fetch costs its
     * first requests a wait, not a refusal. An issuer whose last fetch
     * failed just now, or a crowd of waiters (random kids), is not waited
     * on; the refusal still asks for the next fetch. */
    enum gw_key_result res = st->set ? GW_KEY_UNKNOWN : GW_KEY_UNAVAILABLE;
    if (r->jwks_waited || !running) {
        /* looked again after its fetch: refused */
    } else if (st->nwaiters >= MAX_WAITERS ||
               gw_jwks_on_miss(&st->pace, pc_mono_us() / 1000, gw_cfg.jwt_kid_refetch_ms) ==
                   GW_MISS_ASK) {
        GW_STAT_INC(jwks_kid_refused);
        ask_locked(st);
    } else if (!gw_park(r)) {
        res = GW_KEY_BUSY; /* a wait counts toward GATEWAY_PENDING_MAX like any other */
    } else {
        r->next_wake = st->waiters;
        st->waiters = r;
        st->nwaiters++;
        ask_locked(st);
        res = GW_KEY_WAIT;
    }
    pthread_mutex_unlock(&mu);
    return res;
}

/* ---- HTTP ---- */

struct fetch {
    struct pc_buf body;
    struct pc_buf_capped cap;   /* body, at most FETCH_MAX_BYTES */
    int64_t max_age;        /* seconds, -1 = none */
};

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
    f->cap = (struct pc_buf_capped){.buf = &f->body, .max = FETCH_MAX_BYTES};
    f->max_age = -1;
    CURL *c = curl_easy_init();
    if (c == NULL)
        return -1;
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, f);
    long status = 0;
    int rc = gw_http_fetch(c, url, "http,https", FETCH_TIMEOUT_MS, &f->cap, &status);
    if (rc != CURLE_OK || status != 200) {
        pc_log_warn("jwks: GET %s failed: %s", url,
                    rc != CURLE_OK ? curl_easy_strerror((CURLcode)rc) : "status is not 200");
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

/* One round of the key thread (lib/periodic.h): fetches what is due,
 * reloads the signer when due, and says how long to wait; a worker that
 * parks a request kicks it. */
static int64_t jwks_round(struct pc_periodic *p, void *arg)
{
    pthread_mutex_lock(&mu);
    {
        int64_t now = pc_mono_us() / 1000;
        int64_t next = now + 60000;
        size_t n = atomic_load(&gw_cfg.issuers_published);
        for (size_t i = 0; i < n && atomic_load(&gw_cfg.jwt_used) && !pc_periodic_stopping(p);
             i++) {
            struct gw_issuer *iss = gw_cfg.issuers[i];
            struct gw_iss_state *st = iss->st;
            int64_t at = gw_jwks_fetch_at(&st->pace, st->set != NULL, gw_cfg.jwt_refetch_ms,
                                          gw_cfg.jwt_kid_refetch_ms);
            if (at > now) {
                next = at < next ? at : next;
                continue;
            }
            GW_STAT_INC(jwks_fetches);
            if (st->pace.want)
                GW_STAT_INC(jwks_kid_fetches);
            st->pace.fetching = true;
            st->pace.want = false;      /* a token asking from now on asks for the next */
            st->pace.last_attempt = now;
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
                st->pace.expires_at = now + ttl;
                st->pace.fails = 0;
            } else {
                GW_STAT_INC(jwks_fetch_errors);
                st->pace.fails++;   /* the old set, if any, stays in use */
            }
            st->pace.fetching = false;
            struct gw_request *waiters = st->waiters;
            st->waiters = NULL;
            st->nwaiters = 0;
            pthread_mutex_unlock(&mu);
            gw_keyset_release(old);
            wake_all(waiters);
            pthread_mutex_lock(&mu);
            at = gw_jwks_fetch_at(&st->pace, st->set != NULL, gw_cfg.jwt_refetch_ms,
                                  gw_cfg.jwt_kid_refetch_ms);
            next = at < next ? at : next;
            now = pc_mono_us() / 1000;
        }
        if (atomic_load(&gw_cfg.mint_used) && !pc_periodic_stopping(p)) {
            pthread_mutex_unlock(&mu);
            int64_t at = gw_signer_tick(&db, now);
            pthread_mutex_lock(&mu);
            next = at < next ? at : next;
        }
        pthread_mutex_unlock(&mu);
        if (pc_periodic_stopping(p))
            return 0;
        now = pc_mono_us() / 1000;
        return next > now ? next - now : 0;
    }
}

void gw_jwks_issuer_init(struct gw_issuer *iss)
{
    iss->st = pc_xcalloc(1, sizeof(struct gw_iss_state));
    if (iss->jwks_uri)
        iss->st->jwks_uri = pc_xstrdup(iss->jwks_uri);
}

void gw_jwks_issuer_free(struct gw_issuer *iss)
{
    struct gw_iss_state *st = iss->st;
    if (st == NULL)
        return;
    gw_keyset_release(st->set);
    free(st->jwks_uri);
    free(st);
    iss->st = NULL;
}

void gw_jwks_reloaded(void)
{
    if (fetcher)
        pc_periodic_kick(fetcher); /* new issuers are fetched now */
    else
        gw_jwks_start();
}

void gw_jwks_start(void)
{
    if (!atomic_load(&gw_cfg.jwt_used) && !atomic_load(&gw_cfg.mint_used))
        return;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        pc_fatal("curl_global_init failed");
    pc_db_init(&db, gw_cfg.database_url);
    fetcher = pc_periodic_start("gw-jwks", 60000, jwks_round, NULL);
    pthread_mutex_lock(&mu);
    running = true;     /* workers start after this: they may kick it from now on */
    pthread_mutex_unlock(&mu);
}

void gw_jwks_stop(void)
{
    if (fetcher) {
        pc_periodic_stop(fetcher);
        fetcher = NULL;
        pc_db_close(&db);
        curl_global_cleanup();
    }
    pthread_mutex_lock(&mu);
    running = false;
    struct gw_request *waiters = NULL;
    for (size_t i = 0; i < gw_cfg.nissuers; i++) {
        struct gw_iss_state *st = gw_cfg.issuers[i]->st;
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
    gw_signer_free(); /* the issuers' states go with them (gw_routes_free) */
}
