/* Portcullis - MIT licence. See LICENSE.
 *
 * request.c: one client request, from intake to its last byte (request.h
 * states the contract). It creates the request (gw_request_new, called by
 * the front), drives it through the stages (memcached's drive_machine) and
 * ends it (gw_request_end, gw_fail). It is the only file that
 *
 *   - writes r->stage: each stage returns GW_NEXT, GW_ASYNC or GW_ENDED and
 *     next_stage() below picks what follows from what the stage recorded in
 *     r (every edge of the flow graph is in that one function);
 *   - counts a request as parked on a store or a key fetch (gw_park, the only
 *     increment of w->parked, refused at GATEWAY_PENDING_MAX) and un-parks it
 *     (gw_resume, the only decrement), so the bound cannot drift;
 *   - takes requests woken from other threads off the worker's inbox.
 *
 * Request ids (X-Request-Id) are made here too.
 */
#include "request.h"
#include "stages.h"
#include "front.h"
#include "config.h"
#include "cache.h"
#include "metrics.h"
#include "proxy.h"
#include "../lib/http.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/netaddr.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/event.h>

volatile int gw_stopping;

/* ---- life ---- */

struct gw_request *gw_request_new(struct gw_worker *w, struct gw_client *c,
                                  const struct pc_http_head *head, const char *client_ip)
{
    w->active++;
    /* Zero the small fields only: cred and p are written before use. */
    struct gw_request *r = pc_xmalloc(sizeof *r);
    memset(r, 0, offsetof(struct gw_request, p));
    r->p.found = false;
    gw_cred_init(r);
    r->w = w;
    r->c = c;
    r->head = head;
    r->start_us = pc_mono_us();
    r->table = gw_table_take(w);
    if (r->table->nupstreams > w->npools)
        gw_proxy_grow(w, r->table->nupstreams); /* a reload added upstreams */
    size_t n = strnlen(client_ip, sizeof r->client_ip - 1);
    memcpy(r->client_ip, client_ip, n);
    r->client_ip[n] = '\0';
    GW_STAT_INC(requests);
    return r;
}

void gw_request_end(struct gw_request *r)
{
    r->w->active--;
    if (!gw_stopping)
        gw_metrics_observe(r);
    gw_front_request_done(r);
    gw_request_free(r);
}

void gw_cred_init(struct gw_request *r)
{
    r->cred = r->cred_inline;
    r->cred[0] = '\0';
    r->cred_len = 0;
}

/* Wipes the credential and gives back its heap block, if it had one. */
static void cred_drop(struct gw_request *r)
{
    if (r->cred == NULL)
        return;
    pc_wipe(r->cred, r->cred_len);
    if (r->cred != r->cred_inline)
        free(r->cred);
    gw_cred_init(r);
}

void gw_cred_set(struct gw_request *r, const char *v, size_t n)
{
    cred_drop(r);
    if (n >= GW_CRED_INLINE)
        r->cred = pc_xmalloc(n + 1);
    memcpy(r->cred, v, n);
    r->cred[n] = '\0';
    r->cred_len = n;
}

void gw_request_free(struct gw_request *r)
{
    cred_drop(r);
    free(r->path);
    free(r->query);
    free(r->upstream_path);
    free(r->forwarded_prefix);
    free(r->upstream_jwt);
    free(r->fa_uri);
    free(r->user_agent);
    if (r->table)
        gw_table_drop(r->w, r->table);
    free(r);
}

void gw_fail(struct gw_request *r, int status, const char *code, const char *msg)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "message");
    pc_jw_str(&w, msg);
    pc_jw_key(&w, "code");
    pc_jw_str(&w, code);
    pc_jw_key(&w, "requestId");
    pc_jw_str(&w, r->request_id);
    pc_jw_obj_end(&w);
    if (r->outcome == NULL)
        r->outcome = code;
    /* nginx's auth_request takes 2xx, 401 and 403 and makes anything else a
     * 500: with FORWARD_AUTH_REFUSAL=403 it gets a 403, and X-Auth-Status
     * (always sent by /_auth) says what the refusal was. */
    int sent = status;
    if (r->forward_auth && gw_cfg.fa_refuse_403 && status != 401)
        sent = 403;
    /* a browser without a valid credential on a redirect route: to the
     * sign-in page (forward auth: a 401 that names it, for the proxy) */
    struct pc_buf loc = {0};
    bool signin = status == 401 && gw_signin_location(r, &loc);
    if (signin && !r->forward_auth)
        sent = 302;
    struct pc_buf *h = gw_resp_begin(r, sent, NULL);
    if (signin) {
        gw_hdr_append(h, r->forward_auth ? "X-Auth-Redirect" : "Location", loc.data);
        gw_hdr_append(h, "Cache-Control", "no-store");
        pc_buf_free(&loc);
    }
    if (r->forward_auth) {
        char st[8];
        snprintf(st, sizeof st, "%d", status);
        gw_hdr_append(h, "X-Auth-Status", st);
        gw_hdr_append(h, "X-Auth-Code", code);
    }
    gw_hdr_append(h, "Content-Type", "application/json");
    gw_hdr_append(h, "X-Request-Id", r->request_id);
    if (sent == 401)
        gw_hdr_append(h, "WWW-Authenticate", "Bearer realm=\"portcullis\"");
    if (r->retry_after > 0) {
        char secs[24];
        snprintf(secs, sizeof secs, "%d", r->retry_after);
        gw_hdr_append(h, "Retry-After", secs);
    }
    /* an allowed request that refreshed its session and then failed
     * upstream (502, 503 UPSTREAM_BUSY, 504) still tells the browser */
    gw_refresh_cookie_header(r, h);
    gw_resp_end_head(r, (int64_t)b.len, true);
    gw_resp_body(r, b.data, b.len);
    gw_resp_send(r);
    pc_buf_free(&b);
    gw_request_end(r);
}

const char *gw_header(const struct gw_request *r, const char *name)
{
    return pc_http_get(r->head, name);
}

bool gw_peer_trusted(const struct gw_request *r)
{
    struct pc_addr peer;
    return gw_cfg.nproxies && pc_addr_parse(r->client_ip, strlen(r->client_ip), &peer) &&
           pc_cidr_list_contains(gw_cfg.proxies, gw_cfg.nproxies, &peer);
}

size_t gw_header_all(const struct gw_request *r, const char *name, const char **out, size_t max)
{
    const struct pc_http_head *h = r->head;
    size_t nl = strlen(name), k = 0;
    for (size_t i = 0; i < h->nh; i++) {
        if (h->h[i].nlen != nl || strncasecmp(h->h[i].name, name, nl) != 0)
            continue;
        if (k < max)
            out[k] = h->h[i].value;
        k++;
    }
    return k;
}

/* ---- request ids ---- */

static bool request_id_ok(const char *s)
{
    return pc_token_chars(s, 64, "-_.");
}

/* A new request id: 16 random bytes fixed per worker, then a counter, as
 * 32 hex characters. Unique without a syscall or a lock per request. */
static void new_request_id(char out[72])
{
    static __thread unsigned char seed[8];
    static __thread uint64_t counter;
    if (counter == 0)
        pc_random_bytes(seed, sizeof seed);
    counter++;
    unsigned char id[16];
    memcpy(id, seed, 8);
    for (int i = 0; i < 8; i++)
        id[15 - i] = (unsigned char)(counter >> (8 * i));
    pc_hex_encode(id, sizeof id, out);
}

void gw_request_id(struct gw_request *r)
{
    const char *rid = gw_header(r, "X-Request-Id");
    if (rid && request_id_ok(rid)) {
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    } else {
        new_request_id(r->request_id);
    }
}

/* ---- the stages ---- */

static const char *const stage_names[GW_STAGE_COUNT] = {
    [GW_STAGE_ROUTE] = "route",   [GW_STAGE_EXTRACT] = "extract", [GW_STAGE_L1] = "l1",
    [GW_STAGE_L2] = "l2",         [GW_STAGE_PG] = "pg",           [GW_STAGE_VERIFY] = "verify",
    [GW_STAGE_DECIDE] = "decide", [GW_STAGE_MINT] = "mint",       [GW_STAGE_LIMIT] = "limit",
    [GW_STAGE_ANSWER] = "answer",
};

const char *gw_stage_name(enum gw_stage s)
{
    return (unsigned)s < GW_STAGE_COUNT ? stage_names[s] : "?";
}

/* L1: a hit (negative entries and JWTs included) goes straight to DECIDE. */
static enum gw_step l1_lookup(struct gw_request *r)
{
    r->l1_epoch = gw_l1_epoch();
    if (gw_l1_get(r->hash, &r->p)) {
        if (r->p.found)
            GW_STAT_INC(l1_hits);
        else
            GW_STAT_INC(l1_negative_hits);
        r->lookup = r->p.found ? GW_LOOKUP_FOUND : GW_LOOKUP_UNKNOWN;
    } else {
        r->lookup = GW_LOOKUP_MISS;
    }
    return GW_NEXT;
}

/* Runs r->stage once. */
static enum gw_step run_stage(struct gw_request *r)
{
    switch (r->stage) {
    case GW_STAGE_ROUTE:
        return gw_route_match(r) ? GW_NEXT : GW_ENDED;
    case GW_STAGE_EXTRACT:
        return gw_extract(r) == GW_EXTRACT_ANSWERED ? GW_ENDED : GW_NEXT;
    case GW_STAGE_L1:
        return l1_lookup(r);
    case GW_STAGE_L2:
        return gw_l2_lookup(r);
    case GW_STAGE_PG:
        return gw_pg_lookup(r);
    case GW_STAGE_VERIFY:
        return gw_jwt_verify(r);
    case GW_STAGE_DECIDE:
        return gw_decide(r) == GW_ALLOW ? GW_NEXT : GW_ENDED;
    case GW_STAGE_MINT:
        return gw_mint(r);
    case GW_STAGE_LIMIT:
        return gw_limit_check(r);
    case GW_STAGE_ANSWER:
        if (r->forward_auth)
            gw_forward_auth_reply(r);
        else
            gw_proxy_start(r);
        return GW_ENDED;
    default:
        pc_fatal("request: bad stage %d", (int)r->stage);
    }
}

/* The whole flow graph: after r->stage returned GW_NEXT, or after a
 * completion resumed r, what runs next, from what the stage recorded in r.
 * A stage is chosen again when its completion left it something to do:
 * VERIFY after a JWKS fetch looks the key up once more, LIMIT answers the
 * refusal its Redis reply recorded. */
static enum gw_stage next_stage(const struct gw_request *r)
{
    switch (r->stage) {
    case GW_STAGE_ROUTE:
        return GW_STAGE_EXTRACT;
    case GW_STAGE_EXTRACT:
        /* an anonymous route has no credential: nothing to look up */
        return r->kind == GW_CRED_NONE ? GW_STAGE_ANSWER : GW_STAGE_L1;
    case GW_STAGE_L1:
        if (r->lookup != GW_LOOKUP_MISS)
            return GW_STAGE_DECIDE;
        /* a JWT is checked, not looked up */
        return r->kind == GW_CRED_JWT ? GW_STAGE_VERIFY : GW_STAGE_L2;
    case GW_STAGE_L2:
        /* a miss, an error, a timeout or no Redis: the source of truth */
        return r->lookup == GW_LOOKUP_FOUND ? GW_STAGE_DECIDE : GW_STAGE_PG;
    case GW_STAGE_PG:
        return GW_STAGE_DECIDE;
    case GW_STAGE_VERIFY:
        return r->lookup == GW_LOOKUP_FOUND ? GW_STAGE_DECIDE : GW_STAGE_VERIFY;
    case GW_STAGE_DECIDE:
        return GW_STAGE_MINT;
    case GW_STAGE_MINT:
        return GW_STAGE_LIMIT;
    case GW_STAGE_LIMIT:
        return r->limit == GW_LIMIT_PASS ? GW_STAGE_ANSWER : GW_STAGE_LIMIT;
    default:
        pc_fatal("request: no stage after %s", gw_stage_name(r->stage));
    }
}

static void drive(struct gw_request *r)
{
    while (run_stage(r) == GW_NEXT)
        r->stage = next_stage(r);
}

void gw_request_start(struct gw_request *r)
{
    if (gw_stopping) {
        gw_request_end(r); /* shutting down: the connection is about to close */
        return;
    }
    r->stage = GW_STAGE_ROUTE;
    drive(r);
}

/* ---- parking ---- */

bool gw_park(struct gw_request *r)
{
    struct gw_worker *w = r->w;
    if (r->parked)
        pc_fatal("request: parked twice at stage %s", gw_stage_name(r->stage));
    if ((int64_t)w->parked >= gw_cfg.pending_max)
        return false;
    r->parked = true;
    /* one writer (this loop); /_stats reads it from another */
    __atomic_store_n(&w->parked, w->parked + 1, __ATOMIC_RELAXED);
    return true;
}

void gw_resume(struct gw_request *r)
{
    struct gw_worker *w = r->w;
    if (!r->parked)
        pc_fatal("request: resumed at stage %s without being parked", gw_stage_name(r->stage));
    r->parked = false;
    __atomic_store_n(&w->parked, w->parked - 1, __ATOMIC_RELAXED);
    if (gw_stopping) {
        gw_request_end(r);
        return;
    }
    r->stage = next_stage(r);
    drive(r);
}

size_t gw_parked(const struct gw_worker *w)
{
    return __atomic_load_n(&w->parked, __ATOMIC_RELAXED);
}

/* ---- cross-thread wake-ups ---- */

void gw_wake(struct gw_request *r)
{
    struct gw_worker *w = r->w;
    pthread_mutex_lock(&w->inbox_mu);
    r->next_wake = w->inbox;
    w->inbox = r;
    pthread_mutex_unlock(&w->inbox_mu);
    event_active(w->inbox_ev, EV_READ, 0);
}

static void on_inbox(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    pthread_mutex_lock(&w->inbox_mu);
    struct gw_request *list = w->inbox;
    w->inbox = NULL;
    pthread_mutex_unlock(&w->inbox_mu);
    while (list) {
        struct gw_request *r = list;
        list = r->next_wake;
        gw_resume(r);
    }
}

void gw_inbox_start(struct gw_worker *w)
{
    pthread_mutex_init(&w->inbox_mu, NULL);
    w->inbox_ev = event_new(w->base, -1, EV_PERSIST, on_inbox, w);
    if (w->inbox_ev == NULL)
        pc_fatal("event_new failed");
}

void gw_inbox_stop(struct gw_worker *w)
{
    /* the loop has stopped: what is still queued is ended unanswered */
    while (w->inbox) {
        struct gw_request *r = w->inbox;
        w->inbox = r->next_wake;
        gw_request_end(r);
    }
    event_free(w->inbox_ev);
    w->inbox_ev = NULL;
    pthread_mutex_destroy(&w->inbox_mu);
}
