/* Portcullis - MIT licence. See LICENSE.
 *
 * validate.c: zod-style validation messages shared by the routes.
 */
#include "authsvc.h"
#include "validate.h"

#include <stdio.h>

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
