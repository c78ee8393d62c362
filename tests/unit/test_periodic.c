/* Portcullis - MIT licence. See LICENSE.
 *
 * test_periodic.c: the background-thread helper: a round at once, then one
 * per interval; a kick skips the wait; a stop wakes the thread at once (in
 * its wait and inside a round's pc_periodic_sleep) and no round runs after
 * it. Every wait here is bounded.
 */
#include "../../lib/periodic.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <cmocka.h>

struct counter {
    atomic_int rounds;
    int64_t ret;                /* what the round returns */
    int64_t sleep_ms;           /* pc_periodic_sleep inside the round */
    atomic_bool slept_false;    /* that sleep said "stopping" */
};

static int64_t mono_ms(void)
{
    return pc_mono_us() / 1000;
}

static int64_t round_fn(struct pc_periodic *p, void *arg)
{
    struct counter *c = arg;
    atomic_fetch_add(&c->rounds, 1);
    if (c->sleep_ms > 0 && !pc_periodic_sleep(p, c->sleep_ms))
        atomic_store(&c->slept_false, true);
    return c->ret;
}

/* Waits (at most 5 s) for at least n rounds. */
static bool wait_rounds(struct counter *c, int n)
{
    int64_t end = mono_ms() + 5000;
    while (atomic_load(&c->rounds) < n && mono_ms() < end)
        usleep(1000);
    return atomic_load(&c->rounds) >= n;
}

static void test_first_round_at_once_and_stop_wakes(void **state)
{
    struct counter c = {.ret = PC_PERIODIC_INTERVAL};
    int64_t t0 = mono_ms();
    struct pc_periodic *p = pc_periodic_start("pc-test", 60000, round_fn, &c);
    assert_true(wait_rounds(&c, 1));
    assert_true(mono_ms() - t0 < 2000);
    usleep(20000);
    assert_int_equal(atomic_load(&c.rounds), 1);    /* then it waits its minute */
    int64_t t1 = mono_ms();
    pc_periodic_stop(p);
    assert_true(mono_ms() - t1 < 1000);             /* woken, not timed out */
    usleep(20000);
    assert_int_equal(atomic_load(&c.rounds), 1);    /* nothing after stop */
}

static void test_interval(void **state)
{
    struct counter c = {.ret = PC_PERIODIC_INTERVAL};
    struct pc_periodic *p = pc_periodic_start("pc-test", 10, round_fn, &c);
    int64_t t0 = mono_ms();
    assert_true(wait_rounds(&c, 5));
    int64_t took = mono_ms() - t0;
    pc_periodic_stop(p);
    int n = atomic_load(&c.rounds);
    assert_true(took >= 30);                        /* four waits of 10 ms at least */
    usleep(30000);
    assert_int_equal(atomic_load(&c.rounds), n);
}

static void test_returned_delay(void **state)
{
    struct counter c = {.ret = 0};                  /* 0: again at once */
    struct pc_periodic *p = pc_periodic_start("pc-test", 60000, round_fn, &c);
    assert_true(wait_rounds(&c, 50));
    pc_periodic_stop(p);
}

static void test_kick(void **state)
{
    struct counter c = {.ret = PC_PERIODIC_INTERVAL};
    struct pc_periodic *p = pc_periodic_start("pc-test", 60000, round_fn, &c);
    assert_true(wait_rounds(&c, 1));
    usleep(10000);
    pc_periodic_kick(p);
    assert_true(wait_rounds(&c, 2));
    usleep(10000);
    pc_periodic_kick(p);
    assert_true(wait_rounds(&c, 3));
    assert_false(pc_periodic_stopping(p));
    pc_periodic_stop(p);
}

static void test_stop_wakes_sleep_in_round(void **state)
{
    struct counter c = {.ret = PC_PERIODIC_INTERVAL, .sleep_ms = 60000};
    struct pc_periodic *p = pc_periodic_start("a-name-longer-than-fifteen", 60000, round_fn, &c);
    assert_true(wait_rounds(&c, 1));
    usleep(10000);
    int64_t t0 = mono_ms();
    pc_periodic_stop(p);
    assert_true(mono_ms() - t0 < 1000);
    assert_true(atomic_load(&c.slept_false));
    assert_int_equal(atomic_load(&c.rounds), 1);
    pc_periodic_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_round_at_once_and_stop_wakes),
        cmocka_unit_test(test_interval),
        cmocka_unit_test(test_returned_delay),
        cmocka_unit_test(test_kick),
        cmocka_unit_test(test_stop_wakes_sleep_in_round),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
