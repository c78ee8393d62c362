/* Portcullis - MIT licence. See LICENSE.
 *
 * pwpool.h: scrypt on its own bounded thread pool (pwpool.c). A handler that
 * needs a password hashed or checked hands its job here with a continuation;
 * the pool does the work in the job's struct as_pw_req and sends the job back
 * to a request worker (as_server_resume), where the continuation runs.
 */
#ifndef AS_PWPOOL_H
#define AS_PWPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include "../lib/util.h"
#include "../lib/password.h"

struct as_job;
struct as_worker;

enum as_pw_op {
    AS_PW_HASH = 0,     /* pw -> out */
    AS_PW_VERIFY,       /* pw vs stored -> match */
};

/** The password work of one job (as_job.pw). Written by the handler before
 * as_pw_submit and read by its continuation; the pool owns it in between. */
struct as_pw_req {
    enum as_pw_op op;
    char *pw;                   /* the password; wiped and freed after use */
    size_t len;
    char stored[PC_PASSWORD_HASH_LEN + 64]; /* hash to verify against */
    char out[PC_PASSWORD_HASH_LEN + 1];     /* new hash */
    bool match;                 /* verify result */
    bool failed;                /* hashing itself failed */
};

/** Main thread, at start / at stop (stop finishes what the queue holds). */
void as_pwpool_start(void);
void as_pwpool_stop(void);
/** Any thread: jobs waiting in the pool (metrics). */
size_t as_pwpool_depth(void);
/** Worker: true when a new hash would be refused, so a route can answer 503
 * before doing any database work for it. */
bool as_pwpool_full(void);
/** Worker: hands the job to the pool; `then` runs on a worker afterwards.
 * Returns 0 (the job is no longer the caller's: its handler returns false),
 * or -1 when the queue is full (the caller answers 503). On 0 the job owns
 * pw (a heap copy of n bytes); on -1 the caller still does and must wipe and
 * free it. */
PC_MUSTCHECK int as_pw_submit(struct as_job *job, enum as_pw_op op, char *pw, size_t n,
                              bool (*then)(struct as_job *, struct as_worker *));
/** Wipes the password work of a finished job (job_free). */
void as_pw_req_clear(struct as_pw_req *p);

#endif
