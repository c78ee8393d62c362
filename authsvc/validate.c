/* Portcullis - MIT licence. See LICENSE.
 *
 * validate.c: zod-style validation messages shared by the routes.
 */
#include "authsvc.h"
#include "validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void as_v_add(struct vcheck *v, const char *path, const char *text)
{
    if (v->msg.len)
        pc_buf_puts(&v->msg, "; ");
    pc_buf_printf(&v->msg, "[%s%s%s] %s", v->where ? v->where : "body", path[0] ? "." : "",
                  path, text);
}

void as_v_expected(struct vcheck *v, const char *path, const char *type, yajl_val got)
{
    char text[96];
    snprintf(text, sizeof text, "Invalid input: expected %s, received %s", type,
             as_json_type_name(got));
    as_v_add(v, path, text);
}

bool as_v_failed(struct as_job *job, struct vcheck *v)
{
    if (v->msg.len == 0)
        return false;
    as_error(job, 400, "VALIDATION_ERROR", v->msg.data);
    pc_buf_free(&v->msg);
    return true;
}

yajl_val as_v_str(struct vcheck *v, yajl_val body, const char *key, bool required, bool nullable)
{
    yajl_val x = pc_json_get(body, key);
    if (YAJL_IS_STRING(x))
        return x;
    if ((x == NULL && !required) || (YAJL_IS_NULL(x) && nullable))
        return NULL;
    as_v_expected(v, key, "string", x);
    return NULL;
}

bool as_v_email_body(struct as_job *job, const char *url_key, const char *url_code,
                     const char *url_msg, char **email, char **url)
{
    *email = *url = NULL;
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return false;
    struct vcheck v = {0};
    yajl_val e = as_v_str(&v, body, "email", true, false);
    yajl_val u = as_v_str(&v, body, url_key, false, false);
    if (e && !as_email_valid(e->u.string))
        as_v_add(&v, "email", "Invalid email address");
    bool ok = !as_v_failed(job, &v);
    if (ok && u && !as_redirect_allowed(u->u.string))
        ok = !as_error(job, 403, url_code, url_msg);
    if (ok) {
        *email = pc_xstrdup_lower(e->u.string);
        *url = u ? pc_xstrdup(u->u.string) : NULL;
    }
    yajl_tree_free(body);
    return ok;
}

char *as_v_body_str(struct as_job *job, const char *key)
{
    yajl_val body = as_body(job, true);
    if (body == NULL)
        return NULL;
    struct vcheck v = {0};
    yajl_val x = as_v_str(&v, body, key, true, false);
    char *out = NULL;
    if (!as_v_failed(job, &v)) {
        out = pc_xstrdup(x->u.string);
        pc_wipe(x->u.string, strlen(out));
    }
    yajl_tree_free(body);
    return out;
}
