/* Portcullis - MIT licence. See LICENSE.
 *
 * keyspace.c: the shared Redis keys and the cached-principal codec (see
 * keyspace.h).
 */
#include "keyspace.h"
#include "json.h"

#include <string.h>

/* out = prefix tag tail[0..tail_len), or false (out = "") when it does not fit. */
static bool key3(char *out, size_t cap, const char *prefix, const char *tag, const char *tail,
                 size_t tail_len)
{
    size_t pl = strlen(prefix), tl = strlen(tag);
    if (cap == 0)
        return false;
    if (pl + tl + tail_len >= cap) {
        out[0] = '\0';
        return false;
    }
    memcpy(out, prefix, pl);
    memcpy(out + pl, tag, tl);
    memcpy(out + pl + tl, tail, tail_len);
    out[pl + tl + tail_len] = '\0';
    return true;
}

bool pc_key_session(char *out, size_t cap, const char *prefix, const char *hash)
{
    return key3(out, cap, prefix, PC_KEY_TAG_SESSION, hash, strlen(hash));
}

bool pc_key_apikey(char *out, size_t cap, const char *prefix, const char *hash)
{
    return key3(out, cap, prefix, PC_KEY_TAG_APIKEY, hash, strlen(hash));
}

bool pc_key_cred(char *out, size_t cap, const char *prefix, enum pc_cache_kind kind,
                 const char *hash, size_t n)
{
    return key3(out, cap, prefix, kind == PC_CACHE_SESSION ? PC_KEY_TAG_SESSION : PC_KEY_TAG_APIKEY,
                hash, n);
}

bool pc_key_usage(char *out, size_t cap, const char *prefix, const char *hash)
{
    return key3(out, cap, prefix, PC_KEY_TAG_USAGE, hash, strlen(hash));
}

bool pc_key_revoked_sid(char *out, size_t cap, const char *prefix, const char *sid)
{
    return key3(out, cap, prefix, PC_KEY_TAG_REVOKED_SID, sid, strlen(sid));
}

bool pc_key_revoked_sid_pattern(char *out, size_t cap, const char *prefix)
{
    return key3(out, cap, prefix, PC_KEY_TAG_REVOKED_SID, "*", 1);
}

bool pc_key_revseq(char *out, size_t cap, const char *prefix)
{
    return key3(out, cap, prefix, PC_KEY_REVSEQ, "", 0);
}

/* ---- the cached principal ---- */

void pc_cache_entry_write(struct pc_jw *w, const struct pc_cache_entry *e)
{
    bool session = e->kind == PC_CACHE_SESSION;
    pc_jw_obj_begin(w);
    pc_jw_key(w, "kind");
    pc_jw_str(w, session ? "session" : "api_key");
    pc_jw_key(w, "id");
    pc_jw_str(w, e->id);
    pc_jw_key(w, "userId");
    pc_jw_str(w, e->user_id);
    pc_jw_key(w, "expiresAt");
    pc_jw_int(w, e->expires_at);
    pc_jw_key(w, "updatedAt");
    pc_jw_int(w, e->updated_at);
    if (session) {
        pc_jw_key(w, "user");
        pc_jw_obj_begin(w);
        pc_jw_key(w, "id");
        pc_jw_str(w, e->user_obj_id ? e->user_obj_id : e->user_id);
        pc_jw_key(w, "email");
        pc_jw_str(w, e->email);
        if (e->user_profile) {
            pc_jw_key(w, "name");
            pc_jw_str(w, e->name);
        }
        pc_jw_key(w, "emailVerified");
        pc_jw_bool(w, e->email_verified);
        pc_jw_obj_end(w);
    } else {
        pc_jw_key(w, "enabled");
        pc_jw_bool(w, e->enabled);
        pc_jw_key(w, "permissions");
        pc_jw_str(w, e->permissions);
        pc_jw_key(w, "limits");
        pc_jw_arr_begin(w);
        const struct pc_cache_limits *l = &e->lim;
        int64_t x[8] = {l->remaining, l->refill_interval, l->refill_amount, l->last_refill_at,
                        l->created_at, l->rl_enabled, l->rl_window, l->rl_max};
        for (size_t i = 0; i < 8; i++)
            pc_jw_int(w, x[i]);
        pc_jw_arr_end(w);
    }
    pc_jw_obj_end(w);
}

static const char *str_or_null(yajl_val v)
{
    return YAJL_IS_STRING(v) ? v->u.string : NULL;
}

bool pc_cache_entry_parse(const char *s, size_t n, enum pc_cache_kind kind,
                          struct pc_cache_entry *out)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->enabled = true;
    out->lim.remaining = -1;
    out->lim.refill_amount = -1;
    yajl_val v = pc_json_parse(s, n);
    if (v == NULL)
        return false;
    out->tree = v;
    yajl_val id = pc_json_get(v, "id"), uid = pc_json_get(v, "userId");
    yajl_val exp = pc_json_get(v, "expiresAt"), upd = pc_json_get(v, "updatedAt");
    if (!YAJL_IS_STRING(id) || !YAJL_IS_STRING(uid) || !YAJL_IS_INTEGER(exp))
        return false;
    out->id = id->u.string;
    out->user_id = uid->u.string;
    out->expires_at = YAJL_GET_INTEGER(exp);
    out->updated_at = YAJL_IS_INTEGER(upd) ? YAJL_GET_INTEGER(upd) : 0;
    yajl_val user = pc_json_get(v, "user");
    if (user) {
        out->user_obj_id = str_or_null(pc_json_get(user, "id"));
        out->email = str_or_null(pc_json_get(user, "email"));
        out->name = str_or_null(pc_json_get(user, "name"));
        yajl_val ev = pc_json_get(user, "emailVerified");
        out->email_verified = YAJL_IS_TRUE(ev);
        out->has_email_verified = YAJL_IS_TRUE(ev) || YAJL_IS_FALSE(ev);
        out->user_profile = out->name != NULL;
    } else {
        out->email = str_or_null(pc_json_get(v, "email"));
    }
    if (YAJL_IS_FALSE(pc_json_get(v, "enabled")))
        out->enabled = false;
    out->permissions = str_or_null(pc_json_get(v, "permissions"));
    yajl_val lim = pc_json_get(v, "limits");
    if (YAJL_IS_ARRAY(lim) && lim->u.array.len == 8) {
        int64_t x[8];
        for (size_t i = 0; i < 8; i++)
            x[i] = YAJL_IS_INTEGER(lim->u.array.values[i])
                       ? YAJL_GET_INTEGER(lim->u.array.values[i]) : 0;
        out->lim = (struct pc_cache_limits){
            .remaining = x[0], .refill_interval = x[1], .refill_amount = x[2],
            .last_refill_at = x[3], .created_at = x[4], .rl_enabled = x[5] != 0,
            .rl_window = x[6], .rl_max = x[7],
        };
        out->has_limits = true;
    } else if (kind == PC_CACHE_API_KEY) {
        return false;   /* an entry without limits cannot be enforced */
    }
    return true;
}

void pc_cache_entry_free(struct pc_cache_entry *e)
{
    if (e == NULL)
        return;
    if (e->tree)
        yajl_tree_free(e->tree);
    e->tree = NULL;
    e->id = e->user_id = e->user_obj_id = e->email = e->name = e->permissions = NULL;
}
