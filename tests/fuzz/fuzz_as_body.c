/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_as_body.c: authsvc request bodies through the path the routes use
 * (authsvc/job.c as_body, with form_to_json for
 * application/x-www-form-urlencoded; apikey_input.c ak_body and the API
 * key routes' field validation; validate.c for the sign-in and sign-up
 * fields). First byte: the Content-Type (none, JSON, form, form with a
 * charset, another type) and whether a body is required; the rest is the
 * body. Checks: a body read is an object; a refusal is answered (a status
 * and a JSON message); a form body always reads as an object of strings.
 */
#include "fuzz.h"
#include "../../authsvc/job.h"
#include "../../authsvc/validate.h"
#include "../../authsvc/apikey_int.h"

#include <stdbool.h>

static struct as_job *job_of(const char *ct, const uint8_t *body, size_t n, const char *query)
{
    struct as_job *job = pc_xcalloc(1, sizeof *job);
    job->route = -1;
    job->path = pc_xstrdup("/api/auth/fuzz");
    job->query = query ? pc_xstrdup(query) : NULL;
    if (ct) {
        job->hdrs = pc_xcalloc(1, sizeof *job->hdrs);
        job->hdrs[0].name = pc_xstrdup("Content-Type");
        job->hdrs[0].value = pc_xstrdup(ct);
        job->nhdrs = 1;
    }
    job->body = fz_str(body, n);
    job->body_len = n;
    return job;
}

static void answered(struct as_job *job)
{
    FZ_CHECK(job->status >= 400 && job->status < 500 && job->out.len > 0,
             "refused without an answer (%d)", job->status);
    yajl_val v = pc_json_parse(job->out.data, job->out.len);
    FZ_CHECK(v != NULL && YAJL_IS_OBJECT(v), "error answer is not a JSON object");
    yajl_tree_free(v);
}

static void fields(yajl_val body)
{
    struct vcheck v = {0};
    static const char *const keys[] = {"email", "password", "name", "image", "callbackURL",
                                       "token", "newPassword", "currentPassword"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        (void)as_v_str(&v, body, keys[i], i < 2, i == 3);
    pc_buf_free(&v.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    if (n < 1)
        return 0;
    static const char *const types[] = {NULL, "application/json",
                                        "application/x-www-form-urlencoded",
                                        "application/x-www-form-urlencoded; charset=utf-8",
                                        "text/plain", "application/json; charset=utf-8",
                                        "APPLICATION/JSON", "multipart/form-data"};
    const char *ct = types[data[0] & 7];
    bool required = data[0] & 8;
    bool form = ct && strstr(ct, "x-www-form") != NULL;

    struct as_job *job = job_of(ct, data + 1, n - 1, NULL);
    yajl_val body = as_body(job, required);
    if (body) {
        FZ_CHECK(YAJL_IS_OBJECT(body), "body is not an object");
        if (form)
            for (size_t i = 0; i < body->u.object.len; i++)
                FZ_CHECK(YAJL_IS_STRING(body->u.object.values[i]), "form value not a string");
        fields(body);
        yajl_tree_free(body);
    } else {
        answered(job);
    }
    job_free(job);

    /* the API key routes: JSON only, then createApiKey/updateApiKey's fields */
    job = job_of(ct, data + 1, n - 1, NULL);
    struct ak_input in = {0};
    in.body = ak_body(job, data[0] & 16);
    if (in.body) {
        struct vcheck v = {0};
        if (data[0] & 32)
            ak_validate_update(&v, &in, data[0] & 64);
        else
            ak_validate_create(&v, &in, data[0] & 64);
        ak_validate_int_columns(&v, &in);
        (void)ak_server_only_create(&in);
        (void)ak_server_only_update(&in);
        pc_buf_free(&v.msg);
    } else {
        answered(job);
    }
    ak_input_free(&in);
    job_free(job);

    if (form && n > 1) {
        char *s = fz_str(data + 1, n - 1);
        char *json = form_to_json(s);
        if (json) {
            yajl_val v = pc_json_parse(json, strlen(json));
            FZ_CHECK(v != NULL && YAJL_IS_OBJECT(v), "form_to_json wrote bad JSON: %s", json);
            yajl_tree_free(v);
            free(json);
        }
        free(s);
    }
    return 0;
}
