/* Portcullis - MIT licence. See LICENSE.
 *
 * apikeys.c: the five API-key routes, as @better-auth/api-key 1.7.5 serves them
 * (better-auth-compat.md §4; AK dist/index.mjs and dist/version-*.mjs for
 * the error codes). Rows live in the `apikey` table Better Auth uses, so
 * either side lists, changes and verifies the other's keys.
 *
 *   create   validate (zod's order and messages) -> server-only fields are
 *            refused over HTTP -> session -> Better Auth's checks -> a key of
 *            prefix + 64 letters; only its SHA-256 (base64url) is stored.
 *            The plaintext is in this one answer and nowhere else.
 *   get/list/update/delete   the caller's own keys; anyone else's is 404
 *   internal internal.c: the same bodies plus server-only fields, and
 *            /api/internal/validate
 *   revoke   every update and delete: PostgreSQL first, then DEL
 *            <REDIS_PREFIX>k:<hash> and PUBLISH <hash>, so every gateway
 *            re-reads the row (as_revoke_hash retries what Redis missed).
 *
 * Validation is in apikey_input.c, the insert/update SQL, rows to JSON and
 * revocation in apikey_store.c (apikey_int.h); get, delete and list keep
 * their one query each here.
 */
#include "authsvc.h"
#include "apikeys.h"
#include "apikey_int.h"
#include "job.h"

#include <stdlib.h>
#include <string.h>

bool as_route_apikey_create(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if ((in.body = ak_body(job, false)) == NULL)
        return true;
    struct vcheck v = {.where = "body"};
    ak_validate_create(&v, &in, false);
    if (as_v_failed(job, &v)) {
        ak_input_free(&in);
        return true;
    }
    if (ak_server_only_create(&in)) {
        ak_input_free(&in);
        return as_error(job, 400, "SERVER_ONLY_PROPERTY", E_SERVER_ONLY);
    }
    if (in.user_id != NULL) {
        ak_input_free(&in);
        return as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    }
    struct as_session s = {0};
    struct as_user u = {0};
    enum as_lookup lk = as_session_resolve(job, w, &s, &u);
    if (lk != AS_LOOKUP_OK) {
        ak_input_free(&in);
        if (lk == AS_LOOKUP_UNAVAILABLE)
            return as_fail_db(job);
        return as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    }
    ak_create_key(job, w, &in, u.id);
    as_session_free(&s);
    as_user_free(&u);
    ak_input_free(&in);
    return true;
}

/* ---- get / delete / list ---- */

bool as_route_apikey_get(struct as_job *job, struct as_worker *w)
{
    struct query q;
    ak_query_parse(job, &q);
    struct vcheck v = {.where = "query"};
    (void)ak_q_str(&v, &q, "configId", false);
    const char *id = ak_q_str(&v, &q, "id", true);
    if (as_v_failed(job, &v)) {
        ak_query_free(&q);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        ak_query_free(&q);
        return true;
    }
    const char *params[] = {id, u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "SELECT " AK_COLS " FROM \"apikey\" WHERE \"id\" = $1 AND "
                               "\"referenceId\" = $2 AND " DEFAULT_CONFIG,
                               2, params);
    ak_query_free(&q);
    as_session_free(&s);
    as_user_free(&u);
    bool ok = pc_db_ok(res);
    if (ok && PQntuples(res) == 1) {
        ak_sweep_expired(w);
        ak_reply_row(job, res, NULL, NULL);
    } else if (ok) {
        as_error(job, 404, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    } else {
        as_fail_db(job);
    }
    if (res)
        PQclear(res);
    return true;
}

bool as_route_apikey_delete(struct as_job *job, struct as_worker *w)
{
    yajl_val body = ak_body(job, false);
    if (body == NULL)
        return true;
    struct vcheck v = {.where = "body"};
    (void)as_v_str(&v, body, "configId", false, false);
    yajl_val key_id = as_v_str(&v, body, "keyId", true, false);
    if (as_v_failed(job, &v)) {
        yajl_tree_free(body);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        yajl_tree_free(body);
        return true;
    }
    const char *params[] = {key_id->u.string, u.id};
    PGresult *res = pc_db_exec(&w->db,
                               "DELETE FROM \"apikey\" WHERE \"id\" = $1 AND \"referenceId\" = $2 "
                               "AND " DEFAULT_CONFIG " RETURNING \"key\"",
                               2, params);
    yajl_tree_free(body);
    as_session_free(&s);
    as_user_free(&u);
    bool ok = pc_db_ok(res), found = ok && PQntuples(res) > 0;
    if (found)
        ak_revoke_result(w, res, 0);
    if (res)
        PQclear(res);
    if (!ok)
        return as_fail_db(job);
    if (!found)
        return as_error(job, 404, "KEY_NOT_FOUND", E_KEY_NOT_FOUND);
    ak_sweep_expired(w);
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"success\":true}");
    return as_reply(job, 200, &b);
}

/* Columns a list may be sorted by: the apikey model's fields. */
static const char *const sortable[] = {
    "id", "configId", "name", "start", "referenceId", "prefix", "key", "refillInterval",
    "refillAmount", "lastRefillAt", "enabled", "rateLimitEnabled", "rateLimitTimeWindow",
    "rateLimitMax", "requestCount", "remaining", "lastRequest", "expiresAt", "createdAt",
    "updatedAt", "permissions", "metadata",
};

bool as_route_apikey_list(struct as_job *job, struct as_worker *w)
{
    struct query q;
    ak_query_parse(job, &q);
    struct vcheck v = {.where = "query"};
    const char *config_id = ak_q_str(&v, &q, "configId", false);
    const char *org_id = ak_q_str(&v, &q, "organizationId", false);
    int64_t limit = 0, offset = 0;
    bool has_limit = ak_q_count(&v, &q, "limit", &limit);
    bool has_offset = ak_q_count(&v, &q, "offset", &offset);
    const char *sort_by = ak_q_str(&v, &q, "sortBy", false);
    int dcount;
    const char *dir = ak_query_get(&q, "sortDirection", &dcount);
    if (dcount > 1 || (dcount == 1 && strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0))
        as_v_add(&v, "sortDirection", "Invalid option: expected one of \"asc\"|\"desc\"");
    const char *sort_col = NULL;
    if (sort_by && sort_by[0]) {
        for (size_t i = 0; i < PC_ARRAY_LEN(sortable) && !sort_col; i++)
            if (strcmp(sort_by, sortable[i]) == 0)
                sort_col = sortable[i];
        if (sort_col == NULL)
            as_v_add(&v, "sortBy", "Invalid input: not a field of the apikey model");
    }
    if (as_v_failed(job, &v)) {
        ak_query_free(&q);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u)) {
        ak_query_free(&q);
        return true;
    }
    if (org_id && org_id[0]) {
        ak_query_free(&q);
        as_session_free(&s);
        as_user_free(&u);
        return as_error(job, 400, "ORGANIZATION_PLUGIN_REQUIRED",
                        "Organization plugin is required for organization-owned API keys. "
                        "Please install and configure the organization plugin.");
    }
    /* configId filters with Better Auth's configIdMatches: null, "" and
     * "default" are one configuration. */
    struct pc_buf where = {0}, sql = {0};
    const char *params[4] = {u.id};
    int np = 1;
    pc_buf_puts(&where, "\"referenceId\" = $1");
    if (config_id && config_id[0]) {
        if (strcmp(config_id, "default") == 0) {
            pc_buf_puts(&where, " AND " DEFAULT_CONFIG);
        } else {
            params[np++] = config_id;
            pc_buf_printf(&where, " AND \"configId\" = $%d", np);
        }
    }
    int nwhere = np; /* parameters the WHERE clause uses */
    pc_buf_printf(&sql, "SELECT " AK_COLS " FROM \"apikey\" WHERE %s ORDER BY ", where.data);
    if (sort_col)
        pc_buf_printf(&sql, "\"%s\" %s, ", sort_col,
                      dir && strcmp(dir, "desc") == 0 ? "DESC" : "ASC");
    pc_buf_puts(&sql, "\"createdAt\", \"id\"");
    char lims[32], offs[32];
    if (has_offset) {
        snprintf(offs, sizeof offs, "%lld", (long long)offset);
        params[np++] = offs;
        pc_buf_printf(&sql, " OFFSET $%d", np);
    }
    if (has_limit) {
        snprintf(lims, sizeof lims, "%lld", (long long)limit);
        params[np++] = lims;
        pc_buf_printf(&sql, " LIMIT $%d", np);
    }
    PGresult *res = pc_db_exec(&w->db, sql.data, np, params);
    pc_buf_reset(&sql);
    pc_buf_printf(&sql, "SELECT count(*) FROM \"apikey\" WHERE %s", where.data);
    PGresult *cnt = pc_db_ok(res) ? pc_db_exec(&w->db, sql.data, nwhere, params) : NULL;
    pc_buf_free(&sql);
    pc_buf_free(&where);
    bool ok = pc_db_ok(res) && pc_db_ok(cnt) && PQntuples(cnt) == 1;
    if (ok) {
        struct pc_buf b = {0};
        struct pc_jw jw = {.b = &b};
        pc_jw_obj_begin(&jw);
        pc_jw_key(&jw, "apiKeys");
        pc_jw_arr_begin(&jw);
        for (int i = 0; i < PQntuples(res); i++)
            ak_jw_row(&jw, res, i, NULL, NULL);
        pc_jw_arr_end(&jw);
        pc_jw_key(&jw, "total");
        pc_jw_int(&jw, strtoll(PQgetvalue(cnt, 0, 0), NULL, 10));
        if (has_limit) {
            pc_jw_key(&jw, "limit");
            pc_jw_int(&jw, limit);
        }
        if (has_offset) {
            pc_jw_key(&jw, "offset");
            pc_jw_int(&jw, offset);
        }
        pc_jw_obj_end(&jw);
        as_reply(job, 200, &b);
    }
    if (res)
        PQclear(res);
    if (cnt)
        PQclear(cnt);
    ak_query_free(&q);
    as_session_free(&s);
    as_user_free(&u);
    if (!ok)
        return as_fail_db(job);
    ak_sweep_expired(w);
    return true;
}

bool as_route_apikey_update(struct as_job *job, struct as_worker *w)
{
    struct ak_input in = {0};
    if ((in.body = ak_body(job, false)) == NULL)
        return true;
    struct vcheck v = {.where = "body"};
    ak_validate_update(&v, &in, false);
    if (as_v_failed(job, &v)) {
        ak_input_free(&in);
        return true;
    }
    struct as_session s = {0};
    struct as_user u = {0};
    enum as_lookup lk = as_session_resolve(job, w, &s, &u);
    if (lk != AS_LOOKUP_OK) {
        ak_input_free(&in);
        if (lk == AS_LOOKUP_UNAVAILABLE)
            return as_fail_db(job);
        return as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    }
    if (in.user_id && in.user_id[0] && strcmp(in.user_id, u.id) != 0)
        as_error(job, 401, "UNAUTHORIZED_SESSION", E_UNAUTHORIZED_SESSION);
    else if (ak_server_only_update(&in))
        as_error(job, 400, "SERVER_ONLY_PROPERTY", E_SERVER_ONLY);
    else
        ak_update_key(job, w, &in, u.id);
    as_session_free(&s);
    as_user_free(&u);
    ak_input_free(&in);
    return true;
}
