/* Portcullis - MIT licence. See LICENSE.
 *
 * l2redis.c: stage L2, Redis. A lookup is GET <prefix>s:<hash> (sessions,
 * written by authsvc) or <prefix>k:<hash> (API keys, written here after a
 * PostgreSQL fill) on the worker's connection (w->redis, lib/redis_async.c:
 * reconnects, the hang watchdog), with a budget of GATEWAY_REDIS_TIMEOUT_MS:
 * when Redis is slow or gone the request goes on to PostgreSQL and the late
 * reply is dropped.
 *
 * L2_ENABLED=false skips both the lookup and the write of credentials: every
 * L1 miss goes to PostgreSQL. The connection stays, for the rate limits and
 * quotas (limit.c).
 */
#include "stages.h"
#include "store.h"
#include "cache.h"
#include "metrics.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/redis_async.h"

#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

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

/* The GET's answer, or its timeout: a hit fills r->p (and L1); anything
 * else leaves r->lookup MISS, so PostgreSQL is asked. */
static void on_get(void *reply, const char *errstr, void *priv)
{
    struct gw_request *r = priv;
    redisReply *rep = reply;
    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        GW_STAT_INC(redis_errors);
    if (rep && rep->type == REDIS_REPLY_STRING && parse_entry(r, rep->str, rep->len)) {
        GW_STAT_INC(l2_hits);
        int64_t ttl = gw_cfg.l1_ttl * 1000;
        int64_t left = r->p.expires_at ? r->p.expires_at - pc_now_ms() : ttl;
        gw_l1_put(r->hash, &r->p, left < ttl ? left : ttl);
        r->lookup = GW_LOOKUP_FOUND;
    }
    gw_resume(r);
}

enum gw_step gw_l2_lookup(struct gw_request *r)
{
    struct pc_ra *ra = r->w->redis;
    if (!gw_cfg.l2_enabled || !pc_ra_up(ra) || !gw_park(r))
        return GW_NEXT; /* straight to PostgreSQL */
    char key[128];
    snprintf(key, sizeof key, "%s%s:%s", gw_cfg.redis_prefix, key_tag(r->kind), r->hash_b64);
    const char *argv[] = {"GET", key};
    if (!pc_ra_command(ra, gw_cfg.redis_timeout_ms, on_get, r, 2, argv, NULL))
        gw_wake(r); /* parked already: resumed from the inbox, lookup still MISS */
    return GW_ASYNC;
}

static void on_set(bool failed)
{
    if (failed)
        GW_STAT_INC(redis_errors);
}

void gw_l2_store(struct gw_worker *w, const char *hash_b64, const struct gw_principal *p,
                 int64_t ttl_ms)
{
    if (!gw_cfg.l2_enabled || !pc_ra_up(w->redis) || ttl_ms <= 0)
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
    (void)pc_ra_send(w->redis, on_set, 5, argv, lens);
    pc_buf_free(&b);
}
