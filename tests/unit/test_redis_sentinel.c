/* Portcullis - MIT licence. See LICENSE.
 *
 * test_redis_sentinel.c: REDIS_SENTINELS and REDIS_SENTINEL_MASTER as
 * validated, and what a +switch-master message does to the address every
 * connection resolves. No sentinel needed: the failover itself is
 * tests/e2e/cluster/test_redis_sentinel.py's.
 */
#include "../../lib/redis_sentinel.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void test_sentinel_list(void **state)
{
    (void)state;
    const char *err;
    struct hp l[PC_SENTINELS_MAX];
    size_t n;
    assert_true(parse_list("127.0.0.1:26379, [::1]:26380,h3:1", l, &n));
    assert_int_equal(n, 3);
    assert_string_equal(l[1].host, "::1");
    assert_int_equal(l[1].port, 26380);
    assert_int_equal(pc_conf_check_sentinels("", &err), 0);
    static const char *const bad[] = {"h", "h:", ":1", "h:0", "h:70000", "[::1:5", "a b:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pc_conf_check_sentinels(bad[i], &err), -1);
    char many[400] = "";
    for (int i = 0; i < 17; i++)
        strcat(many, "h:1,");
    assert_int_equal(pc_conf_check_sentinels(many, &err), -1);
    assert_int_equal(pc_conf_check_sentinel_master("my master", &err), -1);
    assert_int_equal(pc_conf_check_sentinel_master("mymaster", &err), 0);
}

static void test_switch_master_message(void **state)
{
    (void)state;
    struct pc_redis_addr conf = {.port = 6379}, out;
    uint64_t g0, g1;
    strcpy(conf.host, "configured");
    assert_true(pc_sentinel_resolve(&conf, &out, &g0));     /* off: the configured host */
    assert_string_equal(out.host, "configured");
    assert_false(pc_sentinel_moved(g0));
    W.on = true;                                             /* as pc_sentinel_start would */
    snprintf(W.master_name, sizeof W.master_name, "pcm");
    assert_false(pc_sentinel_resolve(&conf, &out, &g0));    /* no master known yet */
    const char *other = "other 10.0.0.1 6379 10.0.0.2 6380";
    on_switch(other, strlen(other));
    assert_false(pc_sentinel_resolve(&conf, &out, &g0));    /* not our master's name */
    const char *m = "pcm 127.0.0.1 7001 127.0.0.2 7002";
    on_switch(m, strlen(m));
    assert_true(pc_sentinel_resolve(&conf, &out, &g1));
    assert_string_equal(out.host, "127.0.0.2");
    assert_int_equal(out.port, 7002);
    assert_true(pc_sentinel_moved(g0));
    assert_false(pc_sentinel_moved(g1));
    on_switch(m, strlen(m));                                 /* the same again: no move */
    assert_false(pc_sentinel_moved(g1));
    assert_true(pc_redis_reply_readonly("READONLY You can't write", 24));
    assert_false(pc_redis_reply_readonly("ERR", 3));
    W.on = false;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sentinel_list),
        cmocka_unit_test(test_switch_master_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
