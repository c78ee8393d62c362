/* Portcullis - MIT licence. See LICENSE.
 *
 * test_procstat.c: the process_* figures. The parser against proc(5)'s
 * layout (a comm with spaces and parentheses, short and bad lines); the
 * reader against what this process really does (descriptors opened, CPU
 * burnt, memory touched).
 */
#include "../../lib/procstat.c"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

/* fields 1..24 of a stat line: utime 250, stime 150, starttime 1000,
 * vsize 123456789, rss 300 pages */
#define TAIL "S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0 1000 123456789 300 0 0\n"

static void test_parse(void **state)
{
    struct pc_procstat st;
    assert_true(pc_procstat_parse("4242 (gateway) " TAIL, 100, 4096, 1700000000, &st));
    assert_true(st.cpu_seconds > 3.999 && st.cpu_seconds < 4.001);
    assert_true(st.start_time > 1700000009.99 && st.start_time < 1700000010.01);
    assert_int_equal(st.virtual_bytes, 123456789);
    assert_int_equal(st.resident_bytes, 300 * 4096);
    /* a comm that looks like more fields, with ") " inside */
    assert_true(pc_procstat_parse("7 (a) b (c) 9 9) " TAIL, 100, 4096, 0, &st));
    assert_int_equal(st.resident_bytes, 300 * 4096);
}

static void test_parse_refuses(void **state)
{
    struct pc_procstat st;
    assert_false(pc_procstat_parse("", 100, 4096, 0, &st));
    assert_false(pc_procstat_parse("1 gateway S 1 2 3", 100, 4096, 0, &st));
    assert_false(pc_procstat_parse("1 (gateway) S 1 2 3 4\n", 100, 4096, 0, &st)); /* short */
    assert_false(pc_procstat_parse("1 (g) S 1 2 3 4 5 6 7 8 9 10 x 150 0 0 20 0 1 0 1000 1 3\n",
                                   100, 4096, 0, &st));
    assert_false(pc_procstat_parse("1 (g) " TAIL, 0, 4096, 0, &st));
    assert_int_equal(st.resident_bytes, 0);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_read_follows_the_process(void **state)
{
    struct pc_procstat a, b;
    assert_true(pc_procstat_read(&a));
    assert_true(a.open_fds >= 3);
    assert_true(a.max_fds >= a.open_fds);
    assert_true(a.resident_bytes > 0 && a.virtual_bytes >= a.resident_bytes);
    assert_true(a.start_time <= now_s() + 1 && a.start_time > now_s() - 3600);
    int fds[10];
    for (int i = 0; i < 10; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* 64 MiB touched, and CPU burnt until the clock moves at least 0.2 s */
    size_t big = 64u << 20;
    volatile char *m = malloc(big);
    assert_non_null(m);
    for (size_t i = 0; i < big; i += 4096)
        m[i] = 1;
    volatile double x = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    do {
        for (int i = 0; i < 100000; i++)
            x += i * 0.5;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    } while ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9 < 0.2);
    assert_true(pc_procstat_read(&b));
    assert_int_equal(b.open_fds, a.open_fds + 10);
    assert_true(b.resident_bytes >= a.resident_bytes + (48u << 20));
    assert_true(b.cpu_seconds >= a.cpu_seconds + 0.15);
    assert_true(b.start_time > a.start_time - 0.011 && b.start_time < a.start_time + 0.011);
    for (int i = 0; i < 10; i++)
        close(fds[i]);
    free((void *)m);
}

static void test_metrics_text(void **state)
{
    struct pc_buf b = {0};
    pc_procstat_metrics(&b);
    const char *names[] = {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_start_time_seconds",
                           "process_open_fds", "process_max_fds"};
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++) {
        char want[128];
        snprintf(want, sizeof want, "\n%s ", names[i]);
        assert_non_null(strstr(b.data, want));
        snprintf(want, sizeof want, "# TYPE %s %s\n", names[i],
                 i == 0 ? "counter" : "gauge");
        assert_non_null(strstr(b.data, want));
    }
    pc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_read_follows_the_process),
        cmocka_unit_test(test_metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
