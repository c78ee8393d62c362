/* Portcullis - MIT licence. See LICENSE.
 *
 * test_redis.c: REDIS_URL parsing, plus the "unreachable means NULL, then
 * back off" rule against a port nobody listens on. No Redis server needed.
 */
#include "../../lib/redis.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

struct url_case {
    const char *url;
    const char *host;
    int port;
    const char *path;
    const char *password;
    int db;
};

static void test_parse_ok(void **state)
{
    static const struct url_case cases[] = {
        {"redis://localhost", "localhost", 6379, "", "", 0},
        {"redis://localhost/", "localhost", 6379, "", "", 0},
        {"redis://127.0.0.1:6380", "127.0.0.1", 6380, "", "", 0},
        {"redis://127.0.0.1:6380/2", "127.0.0.1", 6380, "", "", 2},
        {"redis://cache.internal/15", "cache.internal", 6379, "", "", 15},
        {"redis://:s3cret@host:1234/5", "host", 1234, "", "s3cret", 5},
        {"redis://default:s3cret@host", "host", 6379, "", "s3cret", 0},
        {"redis://user:p@ss@host:7000", "host", 7000, "", "p@ss", 0}, /* last '@' splits */
        {"redis://:pw:with:colons@h", "h", 6379, "", "pw:with:colons", 0},
        {"redis://[::1]:6390/3", "::1", 6390, "", "", 3},
        {"redis://[::1]", "::1", 6379, "", "", 0},
        {"redis://[::1]/1", "::1", 6379, "", "", 1},
        {"redis://:pw@[fe80::2]:1", "fe80::2", 1, "", "pw", 0},
        {"redis://h:65535/1000", "h", 65535, "", "", 1000},
        {"unix:///run/redis/redis.sock", "", 6379, "/run/redis/redis.sock", "", 0},
        {"unix:///tmp/r.sock?db=4", "", 6379, "/tmp/r.sock", "", 4},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        const struct url_case *c = &cases[i];
        struct pc_redis_addr a;
        memset(&a, 0x5a, sizeof a);
        const char *err = NULL;
        if (pc_redis_parse_url(c->url, &a, &err) != 0)
            fail_msg("%s: rejected (%s)", c->url, err ? err : "?");
        assert_string_equal(a.host, c->host);
        assert_int_equal(a.port, c->port);
        assert_string_equal(a.path, c->path);
        assert_string_equal(a.password, c->password);
        assert_int_equal(a.db, c->db);
    }
}

static void test_parse_bad(void **state)
{
    char longhost[400], longpw[400];
    snprintf(longhost, sizeof longhost, "redis://%0300d:6379", 0);
    snprintf(longpw, sizeof longpw, "redis://:%0300d@h", 0);
    const char *const bad[] = {
        "",
        "http://localhost:6379",
        "rediss://localhost",
        "localhost:6379",
        "redis://",
        "redis:///0",
        "redis://:pw@",
        "redis://:pw@/1",
        "redis://host:",
        "redis://host:0",
        "redis://host:65536",
        "redis://host:-1",
        "redis://host:port",
        "redis://host/abc",
        "redis://host/-1",
        "redis://host/1001",
        "redis://host/1x",
        "redis://[::1",
        "redis://[]:6379",
        "redis://[::1]:",
        "unix://",
        "unix://relative/path.sock",
        "unix://?db=1",
        "unix:///tmp/r.sock?db=",
        "unix:///tmp/r.sock?db=x",
        "unix:///tmp/r.sock?db=-1",
        longhost,
        longpw,
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        struct pc_redis_addr a;
        const char *err = NULL;
        if (pc_redis_parse_url(bad[i], &a, &err) != -1)
            fail_msg("accepted \"%s\" (host=%s port=%d db=%d)", bad[i], a.host, a.port, a.db);
        if (err == NULL || err[0] == '\0')
            fail_msg("\"%s\": no error message", bad[i]);
    }
}

static void test_parse_resets_previous(void **state)
{
    struct pc_redis_addr a;
    const char *err;
    assert_int_equal(pc_redis_parse_url("redis://:pw@h:1/3", &a, &err), 0);
    assert_int_equal(pc_redis_parse_url("unix:///s.sock", &a, &err), 0);
    assert_string_equal(a.host, "");
    assert_string_equal(a.password, "");
    assert_int_equal(a.db, 0);
    assert_string_equal(a.path, "/s.sock");
}

/* A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_unreachable_is_null_then_backoff(void **state)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", closed_port());
    struct pc_redis_addr a;
    const char *err;
    assert_int_equal(pc_redis_parse_url(url, &a, &err), 0);
    struct pc_redis r;
    pc_redis_init(&r, &a, 200);
    assert_null(r.c);
    assert_int_equal(r.timeout_ms, 200);
    assert_int_equal(r.addr.port, a.port);

    const char *argv[] = {"PING"};
    int64_t t0 = pc_mono_us();
    assert_null(pc_redis_cmd(&r, 1, argv, NULL));
    assert_null(r.c);
    assert_true(r.retry_at_ms > pc_now_ms());  /* backing off */
    /* within the back-off no connection is attempted */
    int64_t retry = r.retry_at_ms;
    assert_false(pc_redis_ok(&r, 1, argv));
    assert_int_equal(r.retry_at_ms, retry);
    assert_true(pc_mono_us() - t0 < 1000000); /* refused at once, no timeout wait */
    pc_redis_close(&r);
    pc_redis_close(&r); /* idempotent */
}

static void test_rediss_says_why(void **state)
{
    (void)state;
    struct pc_redis_addr a;
    const char *err = NULL;
    assert_int_equal(pc_redis_parse_url("rediss://h:6380", &a, &err), -1);
    assert_non_null(strstr(err, "TLS"));
}

int main(void)
{
    /* the connect warnings are expected: keep the output clean */
    if (pc_log_open(NULL, PC_LOG_ERROR, "test_redis") != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_resets_previous),
        cmocka_unit_test(test_unreachable_is_null_then_backoff),
        cmocka_unit_test(test_rediss_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
