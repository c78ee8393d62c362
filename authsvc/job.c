/* Portcullis - MIT licence. See LICENSE.
 *
 * job.c: the handler API of job.h. A job is made and freed on the loop
 * thread (job_new, job_free); everything else here runs on whichever thread
 * owns the job and touches only the job.
 */
#include "job.h"
#include "ratelimit.h"
#include "../lib/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

/* ---- reading the request ---- */

const char *as_header(const struct as_job *job, const char *name)
{
    for (size_t i = 0; i < job->nhdrs; i++)
        if (pc_strieq(job->hdrs[i].name, name))
            return job->hdrs[i].value;
    return NULL;
}

char *as_query_param(const struct as_job *job, const char *name)
{
    if (job->query == NULL)
        return NULL;
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(job->query, &q) != 0) {
        evhttp_clear_headers(&q);
        return NULL;
    }
    /* names compare exactly, as URLSearchParams.get compares them
     * (evhttp_find_header ignores case: ?TOKEN= would read as token) */
    const char *v = NULL;
    for (struct evkeyval *kv = q.tqh_first; kv && v == NULL; kv = kv->next.tqe_next)
        if (strcmp(kv->key, name) == 0)
            v = kv->value;
    /* %FF and the like decode as URLSearchParams decodes them: U+FFFD */
    char *out = v ? pc_utf8_fix(v, strlen(v)) : NULL;
    evhttp_clear_headers(&q);
    return out;
}

const char *as_json_type_name(yajl_val v)
{
    if (v == NULL)
        return "undefined";
    switch (v->type) {
    case yajl_t_string: return "string";
    case yajl_t_number: return "number";
    case yajl_t_object: return "object";
    case yajl_t_array: return "array";
    case yajl_t_true:
    case yajl_t_false: return "boolean";
    default: return "null";
    }
}

/* Turns an application/x-www-form-urlencoded body into a JSON object of
 * strings, so routes see one shape whatever the client sent. */
char *form_to_json(const char *body)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (evhttp_parse_query_str(body, &q) != 0) {
        evhttp_clear_headers(&q);
        return NULL;
    }
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    for (struct evkeyval *kv = q.tqh_first; kv; kv = kv->next.tqe_next) {
        /* bytes that are not UTF-8 read as U+FFFD, as URLSearchParams reads them */
        char *k = pc_utf8_fix(kv->key, strlen(kv->key));
        char *v = pc_utf8_fix(kv->value, strlen(kv->value));
        pc_jw_key(&w, k);
        pc_jw_str(&w, v);
        pc_wipe(kv->value, strlen(kv->value));
        pc_wipe(v, strlen(v));
        free(k);
        free(v);
    }
    pc_jw_obj_end(&w);
    evhttp_clear_headers(&q);
    return b.data ? b.data : pc_xstrdup("{}");
}

yajl_val as_body(struct as_job *job, bool required)
{
    const char *ct = as_header(job, "Content-Type");
    bool form = false;
    if (ct != NULL) {
        size_t n = strcspn(ct, ";");
        while (n > 0 && ct[n - 1] == ' ')
            n--;
        form = n == 33 && pc_strnieq(ct, "application/x-www-form-urlencoded", 33);
        if (!form && !(n == 16 && pc_strnieq(ct, "application/json", 16))) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "Content-Type \"%.*s\" is not allowed. Allowed types: "
                     "application/x-www-form-urlencoded, application/json",
                     (int)(n > 100 ? 100 : n), ct);
            as_error(job, 415, "UNSUPPORTED_MEDIA_TYPE", msg);
            return NULL;
        }
    }
    const char *p = job->body;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p == '\0') {
        if (required) {
            as_error(job, 400, "VALIDATION_ERROR",
                     "[body] Invalid input: expected object, received undefined");
            return NULL;
        }
        return pc_json_parse("{}", 2);
    }
    yajl_val v;
    if (form) {
        char *json = form_to_json(job->body);
        v = json ? pc_json_parse(json, strlen(json)) : NULL;
        if (json) {
            pc_wipe(json, strlen(json));
            free(json);
        }
    } else {
        v = pc_json_parse(job->body, job->body_len);
    }
    if (v == NULL) {
        as_error(job, 400, "BAD_REQUEST", "Invalid JSON in request body");
        return NULL;
    }
    if (!YAJL_IS_OBJECT(v)) {
        char msg[128];
        snprintf(msg, sizeof msg, "[body] Invalid input: expected object, received %s",
                 as_json_type_name(v));
        yajl_tree_free(v);
        as_error(job, 400, "VALIDATION_ERROR", msg);
        return NULL;
    }
    return v;
}

/* ---- setting the answer ---- */

void as_add_header(struct as_job *job, const char *name, const char *value)
{
    job->rhdrs = pc_xrealloc(job->rhdrs, (job->nrhdrs + 1) * sizeof *job->rhdrs);
    job->rhdrs[job->nrhdrs].name = pc_xstrdup(name);
    job->rhdrs[job->nrhdrs].value = pc_xstrdup(value);
    job->nrhdrs++;
}

bool as_reply(struct as_job *job, int status, struct pc_buf *buf)
{
    job->status = status;
    pc_buf_free(&job->out);
    job->out = *buf;
    memset(buf, 0, sizeof *buf);
    return true;
}

bool as_error(struct as_job *job, int status, const char *code, const char *msg)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "message");
    pc_jw_str(&w, msg);
    pc_jw_key(&w, "code");
    pc_jw_str(&w, code);
    pc_jw_obj_end(&w);
    job->err_code = code;
    return as_reply(job, status, &b);
}

bool as_reply_json(struct as_job *job, int status, const char *json)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, json);
    return as_reply(job, status, &b);
}

bool as_redirect(struct as_job *job, const char *location)
{
    as_add_header(job, "Location", location);
    as_add_header(job, "Cache-Control", "no-store");
    job->out_empty = true;
    job->status = 302;
    return true;
}

void as_answer_floor(struct as_job *job)
{
    job->not_before_us = job->start_us + AS_ANSWER_FLOOR_US;
}

bool as_fail_db(struct as_job *job)
{
    return as_error(job, 503, "DATABASE_UNAVAILABLE", "The database is unavailable, try again");
}

/* ---- life (loop thread) ---- */

static bool request_id_ok(const char *s)
{
    return pc_token_chars(s, 64, "-_.");
}

static void job_client_ip(struct as_job *job)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(job->req), &addr, &port);
    as_client_ip(job, addr ? addr : ""); /* ratelimit.c */
}

struct as_job *job_new(struct evhttp_request *req)
{
    struct as_job *job = pc_xcalloc(1, sizeof *job);
    job->req = req;
    job->route = -1;
    job->start_us = pc_mono_us();
    job->method = (int)evhttp_request_get_command(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    job->path = pc_xstrdup(path && *path ? path : "/");
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    job->query = q ? pc_xstrdup(q) : NULL;

    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next)
        job->nhdrs++;
    job->hdrs = pc_xcalloc(job->nhdrs, sizeof *job->hdrs);
    size_t i = 0;
    for (struct evkeyval *kv = ih->tqh_first; kv; kv = kv->next.tqe_next, i++) {
        job->hdrs[i].name = pc_xstrdup(kv->key);
        job->hdrs[i].value = pc_xstrdup(kv->value);
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    job->body_len = evbuffer_get_length(in);
    job->body = pc_xmalloc(job->body_len + 1);
    if (job->body_len)
        evbuffer_copyout(in, job->body, job->body_len);
    job->body[job->body_len] = '\0';

    const char *rid = as_header(job, "X-Request-Id");
    if (rid && request_id_ok(rid)) {
        snprintf(job->request_id, sizeof job->request_id, "%s", rid);
    } else {
        unsigned char r[16];
        pc_random_bytes(r, sizeof r);
        pc_hex_encode(r, sizeof r, job->request_id);
    }
    job_client_ip(job);
    return job;
}

void job_free(struct as_job *job)
{
    free(job->path);
    free(job->query);
    for (size_t i = 0; i < job->nhdrs; i++) {
        free(job->hdrs[i].name);
        free(job->hdrs[i].value);
    }
    free(job->hdrs);
    if (job->body) {
        pc_wipe(job->body, job->body_len);
        free(job->body);
    }
    as_pw_req_clear(&job->pw);
    if (job->state_free)
        job->state_free(job->state);
    /* answers can hold a plaintext API key or a session token */
    if (job->out.data)
        pc_wipe(job->out.data, job->out.cap);
    pc_buf_free(&job->out);
    for (size_t i = 0; i < job->nrhdrs; i++) {
        free(job->rhdrs[i].name);
        free(job->rhdrs[i].value);
    }
    free(job->rhdrs);
    pc_wipe(job->new_session, sizeof job->new_session);
    free(job);
}

