/* Portcullis - MIT licence. See LICENSE.
 *
 * periodic.c: one background thread per periodic job (see periodic.h).
 */
#include "periodic.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct pc_periodic {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* on CLOCK_MONOTONIC */
    atomic_bool stop;
    bool kicked;                /* guarded by mu */
    int64_t interval_ms;
    pc_periodic_fn *fn;
    void *arg;
    char name[16];
};

static void deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits up to ms, until stop or (when kicks count) a kick. Caller holds mu. */
static void wait_locked(struct pc_periodic *p, int64_t ms, bool kicks)
{
    struct timespec ts;
    deadline(&ts, ms);
    while (!atomic_load(&p->stop) && !(kicks && p->kicked)) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0)
            break;              /* ETIMEDOUT */
    }
}

static void *periodic_main(void *arg)
{
    struct pc_periodic *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    while (!atomic_load(&p->stop)) {
        pthread_mutex_lock(&p->mu);
        p->kicked = false;
        pthread_mutex_unlock(&p->mu);
        int64_t next = p->fn(p, p->arg);
        if (next < 0)
            next = p->interval_ms;
        pthread_mutex_lock(&p->mu);
        if (next > 0)
            wait_locked(p, next, true);
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

struct pc_periodic *pc_periodic_start(const char *name, int64_t interval_ms, pc_periodic_fn *fn,
                                      void *arg)
{
    struct pc_periodic *p = pc_xcalloc(1, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->interval_ms = interval_ms > 0 ? interval_ms : 1;
    p->fn = fn;
    p->arg = arg;
    atomic_init(&p->stop, false);
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&p->thread, NULL, periodic_main, p) != 0)
        pc_fatal("%s: pthread_create failed", p->name);
    return p;
}

void pc_periodic_kick(struct pc_periodic *p)
{
    pthread_mutex_lock(&p->mu);
    p->kicked = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

bool pc_periodic_stopping(struct pc_periodic *p)
{
    return atomic_load(&p->stop);
}

bool pc_periodic_sleep(struct pc_periodic *p, int64_t ms)
{
    pthread_mutex_lock(&p->mu);
    if (ms > 0)
        wait_locked(p, ms, false);
    pthread_mutex_unlock(&p->mu);
    return !atomic_load(&p->stop);
}

void pc_periodic_stop(struct pc_periodic *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
