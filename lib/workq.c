/* Portcullis - MIT licence. See LICENSE.
 *
 * workq.c: mutex + condition variable FIFO of opaque items.
 */
#include "workq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct workq_node {
    struct workq_node *next;
    void *item;
};

struct pc_workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct workq_node *head, *tail; /* FIFO */
    size_t depth;                   /* nodes in the FIFO */
    size_t max_queue;               /* bound for pc_workq_push */
    bool stopping;                  /* threads exit once the FIFO is empty */
    pc_work_fn fn;
    pc_work_init_fn init;
    pc_work_fini_fn fini;
    void *arg;
    int nthreads;
    pthread_t *threads;
    char name[16];
};

static void *workq_main(void *p)
{
    struct pc_workq *q = p;
    void *tctx = q->init ? q->init(q->arg) : NULL;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (q->head == NULL && !q->stopping)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->head == NULL)
            break;
        struct workq_node *n = q->head;
        q->head = n->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->depth--;
        pthread_mutex_unlock(&q->mu);
        void *item = n->item;
        free(n);
        q->fn(item, tctx);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    if (q->fini)
        q->fini(tctx);
    return NULL;
}

struct pc_workq *pc_workq_new(const char *name, int nthreads, size_t max_queue, pc_work_fn fn,
                              pc_work_init_fn init, pc_work_fini_fn fini, void *arg)
{
    struct pc_workq *q = pc_xcalloc(1, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_queue = max_queue;
    q->fn = fn;
    q->init = init;
    q->fini = fini;
    q->arg = arg;
    q->nthreads = nthreads;
    snprintf(q->name, sizeof q->name, "%s", name);
    q->threads = pc_xcalloc((size_t)nthreads, sizeof *q->threads);
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&q->threads[i], NULL, workq_main, q) != 0)
            pc_fatal("workq %s: pthread_create failed", name);
        pthread_setname_np(q->threads[i], q->name);
    }
    return q;
}

static void workq_append(struct pc_workq *q, struct workq_node *n)
{
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->depth++;
    pthread_cond_signal(&q->cv);
}

int pc_workq_push(struct pc_workq *q, void *item)
{
    struct workq_node *n = pc_xmalloc(sizeof *n);
    n->next = NULL;
    n->item = item;
    pthread_mutex_lock(&q->mu);
    if (q->depth >= q->max_queue || q->stopping) {
        pthread_mutex_unlock(&q->mu);
        free(n);
        return -1;
    }
    workq_append(q, n);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void pc_workq_push_force(struct pc_workq *q, void *item)
{
    struct workq_node *n = pc_xmalloc(sizeof *n);
    n->next = NULL;
    n->item = item;
    pthread_mutex_lock(&q->mu);
    workq_append(q, n);
    pthread_mutex_unlock(&q->mu);
}

size_t pc_workq_depth(struct pc_workq *q)
{
    pthread_mutex_lock(&q->mu);
    size_t d = q->depth;
    pthread_mutex_unlock(&q->mu);
    return d;
}

void pc_workq_free(struct pc_workq *q)
{
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (int i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    free(q->threads);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}
