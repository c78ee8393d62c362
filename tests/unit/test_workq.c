/* Portcullis - MIT licence. See LICENSE.
 *
 * test_workq.c: the bounded work queue with real threads: a full queue
 * refuses at once, push_force goes past the bound, every admitted item runs
 * exactly once (FIFO on one thread), per-thread contexts, and free drains.
 * Pool threads never call cmocka assertions; they record into atomics that
 * the main thread checks.
 */
#include "../../lib/workq.c"

#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

/* ---- a gate that holds a worker until the test opens it ---- */

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered;   /* the blocker item is running */
    bool open;      /* the blocker may return */
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->entered = g->open = false;
}

static void gate_destroy(struct gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

static void gate_wait_entered(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->entered)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---- bounded queue, single thread ---- */

#define NITEMS 16

struct rec {
    struct gate gate;
    atomic_int runs[NITEMS];    /* times each item ran */
    atomic_int order[NITEMS];   /* item ids in the order they ran */
    atomic_int next;            /* index into order */
};

struct item {
    struct rec *rec;
    int id;
    bool blocker;
};

static void rec_fn(void *p, void *tctx)
{
    struct item *it = p;
    struct rec *r = it->rec;
    atomic_fetch_add(&r->runs[it->id], 1);
    int pos = atomic_fetch_add(&r->next, 1);
    if (pos < NITEMS)
        atomic_store(&r->order[pos], it->id);
    if (it->blocker) {
        pthread_mutex_lock(&r->gate.mu);
        r->gate.entered = true;
        pthread_cond_broadcast(&r->gate.cv);
        while (!r->gate.open)
            pthread_cond_wait(&r->gate.cv, &r->gate.mu);
        pthread_mutex_unlock(&r->gate.mu);
    }
}

static void test_bounded_refuses_and_force(void **state)
{
    static struct rec r;
    memset(&r, 0, sizeof r);
    gate_init(&r.gate);
    struct item items[NITEMS];
    for (int i = 0; i < NITEMS; i++)
        items[i] = (struct item){.rec = &r, .id = i, .blocker = i == 0};

    struct pc_workq *q = pc_workq_new("t-bound", 1, 3, rec_fn, NULL, NULL, NULL);
    assert_non_null(q);
    assert_int_equal(pc_workq_push(q, &items[0]), 0);
    gate_wait_entered(&r.gate);             /* the only worker is now busy */
    assert_int_equal(pc_workq_depth(q), 0); /* running items are not counted */

    assert_int_equal(pc_workq_push(q, &items[1]), 0);
    assert_int_equal(pc_workq_push(q, &items[2]), 0);
    assert_int_equal(pc_workq_push(q, &items[3]), 0);
    assert_int_equal(pc_workq_depth(q), 3);
    /* full: refused at once, and the item is not taken */
    assert_int_equal(pc_workq_push(q, &items[4]), -1);
    assert_int_equal(pc_workq_depth(q), 3);
    /* force goes past the bound */
    pc_workq_push_force(q, &items[5]);
    pc_workq_push_force(q, &items[6]);
    assert_int_equal(pc_workq_depth(q), 5);
    /* and the bound still holds for ordinary pushes */
    assert_int_equal(pc_workq_push(q, &items[7]), -1);
    assert_int_equal(atomic_load(&r.next), 1); /* nothing else ran meanwhile */

    gate_open(&r.gate);
    pc_workq_free(q);   /* drains */

    static const int want_order[] = {0, 1, 2, 3, 5, 6};
    assert_int_equal(atomic_load(&r.next), PC_ARRAY_LEN(want_order));
    for (size_t i = 0; i < PC_ARRAY_LEN(want_order); i++)
        assert_int_equal(atomic_load(&r.order[i]), want_order[i]);
    for (int i = 0; i < NITEMS; i++) {
        int want = (i == 4 || i >= 7) ? 0 : 1;
        if (atomic_load(&r.runs[i]) != want)
            fail_msg("item %d ran %d times, want %d", i, atomic_load(&r.runs[i]), want);
    }
    gate_destroy(&r.gate);
}

static void test_zero_bound_only_force(void **state)
{
    static struct rec r;
    memset(&r, 0, sizeof r);
    gate_init(&r.gate);
    struct item a = {.rec = &r, .id = 1}, b = {.rec = &r, .id = 2};
    struct pc_workq *q = pc_workq_new("t-zero", 2, 0, rec_fn, NULL, NULL, NULL);
    assert_int_equal(pc_workq_push(q, &a), -1);
    pc_workq_push_force(q, &b);
    pc_workq_free(q);
    assert_int_equal(atomic_load(&r.runs[1]), 0);
    assert_int_equal(atomic_load(&r.runs[2]), 1);
    gate_destroy(&r.gate);
}

/* ---- many threads, many items: exactly once ---- */

#define MANY 20000
#define PRODUCERS 3

static atomic_int many_runs[MANY];
static atomic_int many_refused;

static void many_fn(void *p, void *tctx)
{
    atomic_fetch_add(&many_runs[(intptr_t)p], 1);
}

struct producer {
    struct pc_workq *q;
    int first, count;
};

static void *producer_main(void *p)
{
    struct producer *pr = p;
    for (int i = pr->first; i < pr->first + pr->count; i++) {
        /* a small bound makes refusals happen; the caller keeps the item
         * and retries, so each item is admitted exactly once */
        while (pc_workq_push(pr->q, (void *)(intptr_t)i) != 0) {
            atomic_fetch_add(&many_refused, 1);
            sched_yield();
        }
    }
    return NULL;
}

static void test_every_item_runs_once(void **state)
{
    for (int i = 0; i < MANY; i++)
        atomic_store(&many_runs[i], 0);
    atomic_store(&many_refused, 0);
    struct pc_workq *q = pc_workq_new("t-many", 4, 32, many_fn, NULL, NULL, NULL);
    pthread_t th[PRODUCERS];
    struct producer pr[PRODUCERS];
    int per = MANY / PRODUCERS;
    for (int i = 0; i < PRODUCERS; i++) {
        pr[i] = (struct producer){.q = q, .first = i * per,
                                  .count = i == PRODUCERS - 1 ? MANY - i * per : per};
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &pr[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    pc_workq_free(q);
    int wrong = 0;
    for (int i = 0; i < MANY; i++)
        if (atomic_load(&many_runs[i]) != 1)
            wrong++;
    if (wrong)
        fail_msg("%d of %d items did not run exactly once", wrong, MANY);
    print_message("      (%d pushes were refused and retried)\n", atomic_load(&many_refused));
}

/* ---- free drains a deep queue ---- */

static atomic_int drained;

static void slow_fn(void *p, void *tctx)
{
    struct timespec ts = {0, 200 * 1000}; /* 0.2 ms */
    nanosleep(&ts, NULL);
    atomic_fetch_add(&drained, 1);
}

static void test_free_drains(void **state)
{
    atomic_store(&drained, 0);
    struct pc_workq *q = pc_workq_new("t-drain", 2, 1000, slow_fn, NULL, NULL, NULL);
    for (int i = 0; i < 500; i++)
        assert_int_equal(pc_workq_push(q, NULL), 0);
    for (int i = 0; i < 100; i++)
        pc_workq_push_force(q, NULL);
    assert_true(pc_workq_depth(q) > 0); /* 600 items x 0.2 ms cannot be done yet */
    pc_workq_free(q);
    assert_int_equal(atomic_load(&drained), 600);
}

/* ---- per-thread contexts ---- */

struct tctx {
    pthread_t self;
    int magic;
    int items;
};

static atomic_int inits, finis, ctx_mismatch, ctx_items;

static void *ctx_init(void *arg)
{
    if (arg != (void *)&inits)
        atomic_fetch_add(&ctx_mismatch, 1);
    atomic_fetch_add(&inits, 1);
    struct tctx *t = pc_xcalloc(1, sizeof *t);
    t->self = pthread_self();
    t->magic = 0x5ca1ab1e;
    return t;
}

static void ctx_fn(void *p, void *tctx)
{
    struct tctx *t = tctx;
    if (t == NULL || t->magic != 0x5ca1ab1e || !pthread_equal(t->self, pthread_self()))
        atomic_fetch_add(&ctx_mismatch, 1);
    else
        t->items++;
}

static void ctx_fini(void *tctx)
{
    struct tctx *t = tctx;
    if (t == NULL || !pthread_equal(t->self, pthread_self()))
        atomic_fetch_add(&ctx_mismatch, 1);
    else
        atomic_fetch_add(&ctx_items, t->items);
    atomic_fetch_add(&finis, 1);
    free(t);
}

static void test_thread_contexts(void **state)
{
    atomic_store(&inits, 0);
    atomic_store(&finis, 0);
    atomic_store(&ctx_mismatch, 0);
    atomic_store(&ctx_items, 0);
    struct pc_workq *q = pc_workq_new("t-ctx", 3, 10000, ctx_fn, ctx_init, ctx_fini, &inits);
    for (int i = 0; i < 3000; i++)
        assert_int_equal(pc_workq_push(q, NULL), 0);
    pc_workq_free(q);
    assert_int_equal(atomic_load(&inits), 3);
    assert_int_equal(atomic_load(&finis), 3);
    assert_int_equal(atomic_load(&ctx_mismatch), 0);
    assert_int_equal(atomic_load(&ctx_items), 3000);
}

static void test_free_idle(void **state)
{
    /* a pool that never got work shuts down promptly */
    atomic_store(&inits, 0);
    atomic_store(&finis, 0);
    struct pc_workq *q = pc_workq_new("a-rather-long-thread-name", 4, 8, ctx_fn, ctx_init,
                                      ctx_fini, &inits);
    assert_int_equal(pc_workq_depth(q), 0);
    pc_workq_free(q);
    assert_int_equal(atomic_load(&finis), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_refuses_and_force),
        cmocka_unit_test(test_zero_bound_only_force),
        cmocka_unit_test(test_every_item_runs_once),
        cmocka_unit_test(test_free_drains),
        cmocka_unit_test(test_thread_contexts),
        cmocka_unit_test(test_free_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
