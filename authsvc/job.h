/* Portcullis - MIT licence. See LICENSE.
 *
 * job.h: one request in flight (struct as_job) and the API every route
 * handler uses on it (job.c).
 *
 * Where a job sits in the request flow:
 *
 *   loop    server.c: job_new() copies the evhttp request into a job; the
 *           route table (routes.c) picks a handler; origin.c checks Origin
 *           and redirect targets; the job goes to the worker pool
 *   worker  the handler reads the job (as_header, as_query_param, as_body),
 *           talks to PostgreSQL/Redis on its struct as_worker, and sets the
 *           answer (as_reply, as_error, as_add_header). It may hand the job
 *           on instead: to the password pool (as_pw_submit) or to the loop
 *           (as_server_to_loop, OIDC sign-in)
 *   loop    server.c sends the answer, logs it and calls job_free()
 *
 * Contract: a handler runs on a worker thread and owns the job exclusively
 * until it returns. as_reply and as_error set the answer; they never send.
 * A handler returns true when the job is answered, false when it was handed
 * on, after which it must not touch the job again.
 */
#ifndef AS_JOB_H
#define AS_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../lib/util.h"
#include "../lib/db.h"
#include "../lib/redis.h"
#include "../lib/json.h"
#include "pwpool.h"
#include "oauth.h"

struct evhttp_request;
struct as_job;

/** A request worker's own connections (one per pool thread). */
struct as_worker {
    struct pc_db db;        /* this thread's PostgreSQL connection */
    struct pc_redis redis;  /* this thread's Redis connection */
};

struct as_header {
    char *name;     /* owned */
    char *value;    /* owned */
};

/** Runs one step of a request on a worker. Returns true when the job is
 * answered (status set); false when it was handed on (password pool, loop)
 * and must not be touched any more. */
typedef bool (*as_handler)(struct as_job *job, struct as_worker *w);

/** One request in flight. Created and destroyed on the loop thread; between
 * dispatch and completion it belongs to exactly one thread at a time. */
struct as_job {
    struct evhttp_request *req; /* loop thread only */
    int method;                 /* enum evhttp_cmd_type */
    char *path;                 /* decoded path, no query */
    char *query;                /* raw query string or NULL */
    struct as_header *hdrs;     /* request headers (copied) */
    size_t nhdrs;
    char *body;                 /* request body, NUL-terminated */
    size_t body_len;
    char ip[64];                /* client address for logs and limits */
    char request_id[72];        /* X-Request-Id or generated */
    int64_t start_us;           /* monotonic arrival time */
    int64_t not_before_us;      /* 0, or the answer waits on the loop until
                                 * then (monotonic): the time floor of a route
                                 * whose speed would tell whether an address
                                 * has an account (AS_ANSWER_FLOOR_US) */

    as_handler handler;         /* what the worker runs next */
    bool rate_limited;          /* check the rate limit before handler */
    void *state;                /* handler-private state */
    void (*state_free)(void *); /* frees state (or NULL) */

    struct as_pw_req pw;        /* password work (pwpool.h) */
    struct as_loop_hop hop;     /* a step on the loop (oauth.h) */

    /* response, filled by handlers */
    int status;                 /* 0 until answered */
    struct pc_buf out;          /* body */
    bool out_empty;             /* no body at all (204 preflight) */
    struct as_header *rhdrs;    /* extra response headers */
    size_t nrhdrs;
    char user_id[64];           /* principal for the access log */
    char cred_id[64];           /* its session id or API key id (never the secret) */
    char new_session[64];       /* token of a session cookie this answer sets (wiped) */
    const char *err_code;       /* error code for the access log */
    int route;                  /* index in the route table, -1 if none */
    const char *content_type;   /* of the answer; NULL: application/json */

    struct as_job *next_done;   /* completion list link (server.c) */
};

/* ---- reading the request (any thread that owns the job) ---- */

/** The first request header named name (case-insensitive), or NULL. */
const char *as_header(const struct as_job *job, const char *name);
/** The value of query parameter name (decoded, heap: free it) or NULL. */
char *as_query_param(const struct as_job *job, const char *name);
/** Parses the body (JSON, or a form turned into a JSON object of strings).
 * An empty body is {} unless required. On an unsupported Content-Type (415),
 * bad JSON or a non-object (400) it answers and returns NULL. Free the tree
 * with yajl_tree_free. */
yajl_val as_body(struct as_job *job, bool required);
/** zod's name for a JSON value's type ("undefined" for NULL). */
const char *as_json_type_name(yajl_val v);
/** An application/x-www-form-urlencoded body as a JSON object of strings
 * (heap), or NULL when it does not parse. */
char *form_to_json(const char *body);

/* ---- setting the answer (never sends) ---- */

/** Adds a response header (copied). */
void as_add_header(struct as_job *job, const char *name, const char *value);
/** Answers with a JSON body taken from buf (buf is moved into the job).
 * Returns true. */
bool as_reply(struct as_job *job, int status, struct pc_buf *buf);
/** Answers with {"message": msg, "code": code}. Returns true. */
bool as_error(struct as_job *job, int status, const char *code, const char *msg);
/** Answers status with the JSON text json (copied). Returns true. */
bool as_reply_json(struct as_job *job, int status, const char *json);
/** Answers 302 to location, no body, Cache-Control: no-store. Returns true. */
bool as_redirect(struct as_job *job, const char *location);
/** Answers 503 DATABASE_UNAVAILABLE (PostgreSQL failed). Returns true. */
bool as_fail_db(struct as_job *job);
/** Better Auth's floor on send-verification-email without a session: the
 * answer leaves no sooner than this after the request came in, whether the
 * address has an account or not. No thread waits: the loop holds the answer. */
#define AS_ANSWER_FLOOR_US 500000
void as_answer_floor(struct as_job *job);

/* ---- handing a job on (server.c); the handler then returns false ---- */

/** Worker: hands the job to the loop thread, where fn(job) runs (OIDC
 * sign-in's HTTP calls). Like as_pw_submit, the caller's handler returns
 * false and must not touch the job again. */
void as_server_to_loop(struct as_job *job, void (*fn)(struct as_job *));
/** Loop: the job is answered; send it (ends the request). */
void as_server_finish(struct as_job *job);
/** Any thread: the job's next step (job->handler) runs on a worker. */
void as_server_resume(struct as_job *job);

/* ---- life (loop thread) ---- */

/** Copies req (method, path, query, headers, body), sets the request id and
 * the client address. Never NULL. */
struct as_job *job_new(struct evhttp_request *req);
/** Frees the job, wiping the body, passwords and the answer. */
void job_free(struct as_job *job);

#endif
