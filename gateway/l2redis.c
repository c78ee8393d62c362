/* Portcullis - MIT licence. See LICENSE.
 *
 * l2redis.c: stage 5. Each worker keeps one async hiredis connection on its
 * loop. A lookup is GET <prefix>s:<hash> (sessions, written by authsvc) or
 * <prefix>k:<hash> (API keys, written here after a PostgreSQL fill), with a
 * budget of GATEWAY_REDIS_TIMEOUT_MS: when Redis is slow or gone the request
 * goes on to PostgreSQL and the late reply is dropped. A lost connection is
 * retried with back-off; commands are only sent while connected. A Redis
 * that hangs without closing (SIGSTOP, a partition) is found by a PING every
 * WATCH_EVERY_MS: one unanswered for GATEWAY_REDIS_DEADLINE_MS drops the
 * connection (every pending command's callback runs with no reply, so its
 * request moves on) and a new one is made.
 *
 * L2_ENABLED=false skips both the lookup and the write of credentials: every
 * L1 miss goes to PostgreSQL. The connection stays, for the rate limits and
 * quotas (gw_l2_command).
 */
#include "gateway.h"
#include "../lib/json.h"
#include "../lib/log.h"

#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

struct gw_l2 {
    struct gw_worker *w;
    redisAsyncContext *ac;      /* NULL while down */
    bool connected;             /* connect callback said yes */
    struct event *retry_ev;     /* reconnect timer */
    struct event *watch_ev;     /* the hang watchdog */
    int backoff_ms;
    bool ping_out;              /* a watchdog PING awaits its answer */
    int64_t ping_sent_ms;       /* when it was sent, mono ms */
};

#define WATCH_EVERY_MS 250

/* One GET in flight. r is NULL once the request gave up waiting. */
struct l2_op {
    struct gw_request *r;
    struct event *timer;
};

static void l2_connect(struct gw_l2 *l2);

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    l2_connect(arg);
}

static void schedule_retry(struct gw_l2 *l2)
{
    if (gw_stopping)
        return;
    struct timeval tv = {l2->backoff_ms / 1000, (l2->backoff_ms % 1000) * 1000};
    event_add(l2->retry_ev, &tv);
    l2->backoff_ms = l2->backoff_ms < 2000 ? l2->backoff_ms * 2 : 2000;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct gw_l2 *l2 = ac->data;
    if (status != REDIS_OK) {
        if (l2->w->id == 0)
            pc_log_warn("redis: connect failed: %s", ac->errstr);
        l2->ac = NULL; /* hiredis frees it after this callback */
        l2->connected = false;
        schedule_retry(l2);
        return;
    }
    l2->connected = true;
    l2->backoff_ms = 100;
    GW_STAT_INC(redis_connects);
    if (l2->w->id == 0)
        pc_log_info("redis: connected");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct gw_l2 *l2 = ac->data;
    if (l2 == NULL)
        return;
    l2->ac = NULL;
    l2->connected = false;
    if (status != REDIS_OK) {
        GW_STAT_INC(redis_errors);
        if (l2->w->id == 0)
            pc_log_warn("redis: connection lost");
        schedule_retry(l2);
    }
}

static void on_auth_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        pc_log_warn("redis: AUTH/SELECT failed");
}

static void l2_connect(struct gw_l2 *l2)
{
    const struct pc_redis_addr *a = &gw_cfg.redis_addr;
    redisAsyncContext *ac = a->path[0] ? redisAsyncConnectUnix(a->path)
                                       : redisAsyncConnect(a->host, a->port);
    if (ac == NULL || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(l2);
        return;
    }
    ac->data = l2;
    redisLibeventAttach(ac, l2->w->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (a->password[0])
        redisAsyncCommand(ac, on_auth_reply, NULL, "AUTH %s", a->password);
    if (a->db)
        redisAsyncCommand(ac, on_auth_reply, NULL, "SELECT %d", a->db);
    l2->ac = ac;
}

static void on_pong(redisAsyncContext *ac, void *reply, void *priv)
{
    struct gw_l2 *l2 = priv;
    l2->ping_out = false;
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    struct gw_l2 *l2 = arg;
    if (!l2->connected || l2->ac == NULL) {
        l2->ping_out = false;
        return;
    }
    int64_t now = pc_mono_us() / 1000;
    if (!l2->ping_out) {
        if (redisAsyncCommand(l2->ac, on_pong, l2, "PING") == REDIS_OK) {
            l2->ping_out = true;
            l2->ping_sent_ms = now;
        }
        return;
    }
    if (now - l2->ping_sent_ms <= gw_cfg.redis_deadline_ms)
        return;
    if (l2->w->id == 0)
        pc_log_warn("redis: no answer for %lld ms; reconnecting", (long long)(now - l2->ping_sent_ms));
    GW_STAT_INC(redis_errors);
    redisAsyncContext *ac = l2->ac;
    l2->ac = NULL;
    l2->connected = false;
    ac->data = NULL;            /* on_disconnect: nothing left to do */
    redisAsyncFree(ac);         /* pending callbacks run with NULL replies */
    l2->ping_out = false;
    schedule_retry(l2);
}

void gw_l2_start(struct gw_worker *w)
{
    struct gw_l2 *l2 = pc_xcalloc(1, sizeof *l2);
    l2->w = w;
    l2->backoff_ms = 100;
    l2->retry_ev = evtimer_new(w->base, on_retry, l2);
    l2->watch_ev = event_new(w->base, -1, EV_PERSIST, on_watch, l2);
    struct timeval tv = {0, WATCH_EVERY_MS * 1000};
    event_add(l2->watch_ev, &tv);
    w->l2 = l2;
    l2_connect(l2);
}

void gw_l2_stop(struct gw_worker *w)
{
    struct gw_l2 *l2 = w->l2;
    if (l2->ac) {
        redisAsyncContext *ac = l2->ac;
        l2->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac); /* pending callbacks run with NULL replies */
    }
    event_free(l2->retry_ev);
    event_free(l2->watch_ev);
    free(l2);
    w->l2 = NULL;
}

bool gw_l2_up(struct gw_worker *w)
{
    return w->l2 && w->l2->connected;
}

/* ---- lookups ---- */

static const char *key_tag(enum gw_cred_kind k)
{
    return k == GW_CRED_SESSION ? "s" : "k";
}

/* Parses the cached JSON into r->p. Returns false when it is not usable. */
static bool parse_entry(struct gw_request *r, const char *s, size_t n)
{
    yajl_val v = pc_json_parse(s, n);
    if (v == NULL)
        return false;
    struct gw_principal *p = &r->p;
    memset(p, 0, sizeof *p);
    p->kind = r->kind;
    p->found = true;
    p->enabled = true;
    yajl_val id = pc_json_get(v, "id"), uid = pc_json_get(v, "userId");
    yajl_val exp = pc_json_get(v, "expiresAt"), upd = pc_json_get(v, "updatedAt");
    yajl_val user = pc_json_get(v, "user");
    yajl_val email = user ? pc_json_get(user, "email") : pc_json_get(v, "email");
    yajl_val en = pc_json_get(v, "enabled"), perms = pc_json_get(v, "permissions");
    bool ok = YAJL_IS_STRING(id) && YAJL_IS_STRING(uid) && YAJL_IS_INTEGER(exp);
    if (ok) {
        snprintf(p->cred_id, sizeof p->cred_id, "%s", id->u.string);
        snprintf(p->user_id, sizeof p->user_id, "%s", uid->u.string);
        p->expires_at = YAJL_GET_INTEGER(exp);
        p->updated_at = YAJL_IS_INTEGER(upd) ? YAJL_GET_INTEGER(upd) : 0;
        if (YAJL_IS_STRING(email))
            snprintf(p->email, sizeof p->email, "%s", email->u.string);
        if (YAJL_IS_FALSE(en))
            p->enabled = false;
        if (YAJL_IS_STRING(perms))
            snprintf(p->permissions, sizeof p->permissions, "%s", perms->u.string);
        p->lim.remaining = -1;
        p->lim.refill_amount = -1;
        yajl_val lim = pc_json_get(v, "limits");
        if (YAJL_IS_ARRAY(lim) && lim->u.array.len == 8) {
            int64_t x[8];
            for (size_t i = 0; i < 8; i++)
                x[i] = YAJL_IS_INTEGER(lim->u.array.values[i])
                           ? YAJL_GET_INTEGER(lim->u.array.values[i]) : 0;
            p->lim.remaining = x[0];
            p->lim.refill_interval = x[1];
            p->lim.refill_amount = x[2];
            p->lim.last_refill_at = x[3];
            p->lim.created_at = x[4];
            p->lim.rl_enabled = x[5] != 0;
            p->lim.rl_window = x[6];
            p->lim.rl_max = x[7];
        } else if (r->kind == GW_CRED_API_KEY) {
            ok = false; /* an entry without limits cannot be enforced */
        }
    }
    yajl_tree_free(v);
    return ok;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct l2_op *op = arg;
    struct gw_request *r = op->r;
    op->r = NULL;
    event_free(op->timer);
    op->timer = NULL;
    if (r) {
        GW_STAT_INC(redis_errors);
        r->w->parked--;
        r->stage = GW_STAGE_PG;
        gw_advance(r);
    }
}

static void on_get(redisAsyncContext *ac, void *reply, void *priv)
{
    struct l2_op *op = priv;
    struct gw_request *r = op->r;
    if (op->timer)
        event_free(op->timer);
    free(op);
    if (r == NULL)
        return; /* the request went on without us */
    r->w->parked--;
    redisReply *rep = reply;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        GW_STAT_INC(redis_errors);
    if (rep && rep->type == REDIS_REPLY_STRING && parse_entry(r, rep->str, rep->len)) {
        GW_STAT_INC(l2_hits);
        int64_t ttl = gw_cfg.l1_ttl * 1000;
        int64_t left = r->p.expires_at ? r->p.expires_at - pc_now_ms() : ttl;
        gw_l1_put(r->hash, &r->p, left < ttl ? left : ttl);
        r->lookup = GW_LOOKUP_FOUND;
        r->stage = GW_STAGE_DECIDE;
    } else {
        r->stage = GW_STAGE_PG;
    }
    gw_advance(r);
}

bool gw_l2_lookup(struct gw_request *r)
{
    struct gw_l2 *l2 = r->w->l2;
    if (!gw_cfg.l2_enabled || !l2->connected || l2->ac == NULL)
        return false;
    if ((int64_t)r->w->parked >= gw_cfg.pending_max)
        return false;
    struct l2_op *op = pc_xcalloc(1, sizeof *op);
    op->r = r;
    char key[128];
    snprintf(key, sizeof key, "%s%s:%s", gw_cfg.redis_prefix, key_tag(r->kind), r->hash_b64);
    if (redisAsyncCommand(l2->ac, on_get, op, "GET %s", key) != REDIS_OK) {
        free(op);
        return false;
    }
    op->timer = evtimer_new(r->w->base, on_timeout, op);
    struct timeval tv = {gw_cfg.redis_timeout_ms / 1000, (gw_cfg.redis_timeout_ms % 1000) * 1000};
    evtimer_add(op->timer, &tv);
    r->w->parked++;
    return true;
}

static void on_set(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        GW_STAT_INC(redis_errors);
}

void gw_l2_store(struct gw_worker *w, const char *hash_b64, const struct gw_principal *p,
                 int64_t ttl_ms)
{
    struct gw_l2 *l2 = w->l2;
    if (!gw_cfg.l2_enabled || l2 == NULL || !l2->connected || l2->ac == NULL || ttl_ms <= 0)
        return;
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "kind");
    pc_jw_str(&jw, p->kind == GW_CRED_SESSION ? "session" : "api_key");
    pc_jw_key(&jw, "id");
    pc_jw_str(&jw, p->cred_id);
    pc_jw_key(&jw, "userId");
    pc_jw_str(&jw, p->user_id);
    pc_jw_key(&jw, "expiresAt");
    pc_jw_int(&jw, p->expires_at);
    pc_jw_key(&jw, "updatedAt");
    pc_jw_int(&jw, p->updated_at);
    if (p->kind == GW_CRED_SESSION) {
        pc_jw_key(&jw, "user");
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "id");
        pc_jw_str(&jw, p->user_id);
        pc_jw_key(&jw, "email");
        pc_jw_str(&jw, p->email);
        pc_jw_obj_end(&jw);
    } else {
        pc_jw_key(&jw, "enabled");
        pc_jw_bool(&jw, p->enabled);
        pc_jw_key(&jw, "permissions");
        pc_jw_str(&jw, p->permissions);
        pc_jw_key(&jw, "limits");
        pc_jw_arr_begin(&jw);
        const struct gw_key_limits *l = &p->lim;
        int64_t x[8] = {l->remaining, l->refill_interval, l->refill_amount, l->last_refill_at,
                        l->created_at, l->rl_enabled, l->rl_window, l->rl_max};
        for (size_t i = 0; i < 8; i++)
            pc_jw_int(&jw, x[i]);
        pc_jw_arr_end(&jw);
    }
    pc_jw_obj_end(&jw);
    char key[128], ttl[32];
    snprintf(key, sizeof key, "%s%s:%s", gw_cfg.redis_prefix, key_tag(p->kind), hash_b64);
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_ms);
    const char *argv[] = {"SET", key, b.data, "PX", ttl};
    size_t lens[] = {3, strlen(key), b.len, 2, strlen(ttl)};
    redisAsyncCommandArgv(l2->ac, on_set, NULL, 5, argv, lens);
    pc_buf_free(&b);
}

bool gw_l2_command(struct gw_worker *w, gw_redis_cb *cb, void *priv, int argc, const char **argv,
                   const size_t *lens)
{
    struct gw_l2 *l2 = w->l2;
    if (!l2->connected || l2->ac == NULL)
        return false;
    return redisAsyncCommandArgv(l2->ac, (redisCallbackFn *)cb, priv, argc, argv, lens) == REDIS_OK;
}
