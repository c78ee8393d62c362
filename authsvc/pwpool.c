/* Portcullis - MIT licence. See LICENSE.
 *
 * pwpool.c: scrypt off the event loop and off the request workers. A fixed
 * pool (PASSWORD_WORKERS, default one per core) drains a bounded queue
 * (PASSWORD_QUEUE); a full queue refuses at once and the route answers 503,
 * so a sign-in storm costs bounded memory and leaves the loop free.
 */
#include "authsvc.h"
#include "pwpool.h"
#include "job.h"
#include "../lib/log.h"
#include "../lib/workq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct pc_workq *pool;        /* NULL once stopped */
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER; /* guards pool */

static void pw_run(void *item, void *tctx)
{
    struct as_job *job = item;
    struct as_pw_req *p = &job->pw;
    p->failed = false;
    if (p->op == AS_PW_HASH) {
        p->failed = pc_password_hash(p->pw, p->len, p->out) != 0;
    } else {
        p->match = pc_password_verify(p->pw, p->len, p->stored);
    }
    pc_wipe(p->pw, p->len);
    free(p->pw);
    p->pw = NULL;
    p->len = 0;
    as_server_resume(job);
}

void as_pw_req_clear(struct as_pw_req *p)
{
    if (p->pw) {
        pc_wipe(p->pw, p->len);
        free(p->pw);
        p->pw = NULL;
        p->len = 0;
    }
    pc_wipe(p->stored, sizeof p->stored);
    pc_wipe(p->out, sizeof p->out);
}

int as_pw_submit(struct as_job *job, enum as_pw_op op, char *pw, size_t n,
                 bool (*then)(struct as_job *, struct as_worker *))
{
    struct as_pw_req *p = &job->pw;
    if (p->pw) {
        pc_wipe(p->pw, p->len);
        free(p->pw);
    }
    p->op = op;
    p->pw = pw;
    p->len = n;
    job->handler = then;
    pthread_mutex_lock(&pool_mu);
    int rc = pool ? pc_workq_push(pool, job) : -1;
    pthread_mutex_unlock(&pool_mu);
    if (rc != 0) {
        /* refused: pw stays the caller's */
        job->handler = NULL;
        p->pw = NULL;
        p->len = 0;
    }
    return rc;
}

void as_pwpool_start(void)
{
    long n = as_cfg.pw_workers;
    if (n == 0) {
        n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
            n = 1;
    }
    pool = pc_workq_new("as-password", (int)n, (size_t)as_cfg.pw_queue, pw_run, NULL, NULL, NULL);
    pc_log_info("password pool: %ld thread(s), queue %lld", n, (long long)as_cfg.pw_queue);
}

void as_pwpool_stop(void)
{
    pthread_mutex_lock(&pool_mu);
    struct pc_workq *q = pool;
    pool = NULL;
    pthread_mutex_unlock(&pool_mu);
    if (q)
        pc_workq_free(q);
}

size_t as_pwpool_depth(void)
{
    pthread_mutex_lock(&pool_mu);
    size_t d = pool ? pc_workq_depth(pool) : 0;
    pthread_mutex_unlock(&pool_mu);
    return d;
}

bool as_pwpool_full(void)
{
    return (int64_t)as_pwpool_depth() >= as_cfg.pw_queue;
}
