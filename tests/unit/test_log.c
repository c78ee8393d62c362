/* Portcullis - MIT licence. See LICENSE.
 *
 * test_log.c: every log line is valid UTF-8 and valid JSON, whatever bytes
 * a client put in a path or header: stray bytes become \u00XX, and a
 * message cut to fit its 1 KiB is cut between sequences. And the writer
 * never breaks or mixes lines on a pipe, and counts the writes that fail.
 */
#include "../../lib/log.c"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

static char *escaped(const char *s, size_t n)
{
    struct pc_buf b = {0};
    pc_log_utf8(&b, s, n);
    pc_buf_putc(&b, '\0');
    return b.data;
}

#define ESC_EQ(in, want)                                   \
    do {                                                   \
        char *got_ = escaped(in, sizeof(in) - 1);          \
        assert_string_equal(got_, want);                   \
        free(got_);                                        \
    } while (0)

static void test_escape_golden(void **state)
{
    (void)state;
    ESC_EQ("plain /path?x=1", "plain /path?x=1");
    ESC_EQ("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91");
    ESC_EQ("/a\xff\x80z", "/a\\u00ff\\u0080z");             /* stray bytes */
    ESC_EQ("\xc0\xaf", "\\u00c0\\u00af");                   /* overlong '/' */
    ESC_EQ("\xe0\x80\xaf", "\\u00e0\\u0080\\u00af");        /* overlong, 3 bytes */
    ESC_EQ("\xed\xa0\x80", "\\u00ed\\u00a0\\u0080");        /* a surrogate */
    ESC_EQ("\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080"); /* above U+10FFFF */
    ESC_EQ("x\xc3", "x\\u00c3");                            /* cut at the end */
    ESC_EQ("\xe2\x82z", "\\u00e2\\u0082z");                 /* cut in the middle */
    ESC_EQ("\xc3\xa9\xa9", "\xc3\xa9\\u00a9");              /* one continuation too many */
}

static void test_cut_golden(void **state)
{
    (void)state;
    const char *s = "ab\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91";   /* a b é € 🔑 */
    size_t want[] = {0, 1, 2, 2, 4, 4, 4, 7, 7, 7, 7, 11};
    for (size_t n = 0; n <= 11; n++)
        if (pc_utf8_cut(s, n) != want[n])
            fail_msg("cut at %zu: got %zu, want %zu", n, pc_utf8_cut(s, n), want[n]);
    /* stray bytes are not sequences to keep whole */
    assert_int_equal(pc_utf8_cut("a\x80\x80\x80\x80", 5), 5);
    assert_int_equal(pc_utf8_cut("a\xff", 2), 2);
}

/* Reads the log file written so far. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 16);
    *n = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    return buf;
}

static void check_lines(const char *buf, size_t n, size_t want_lines)
{
    assert_null(u8_check((const uint8_t *)buf, n));
    size_t lines = 0;
    for (const char *p = buf; p < buf + n;) {
        const char *nl = memchr(p, '\n', (size_t)(buf + n - p));
        assert_non_null(nl);
        yajl_val v = pc_json_parse(p, (size_t)(nl - p));
        if (v == NULL)
            fail_msg("not JSON: %.*s", (int)(nl - p), p);
        yajl_tree_free(v);
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, want_lines);
}

static const char *big_a(void)
{
    static char a[1100];
    memset(a, 'a', sizeof a - 1);
    return a;
}

static const char *big_b(void)
{
    static char b[1100];
    memset(b, 'b', sizeof b - 1);
    return b;
}

static void test_lines_are_utf8(void **state)
{
    (void)state;
    char path[] = "/tmp/pc-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pc_log_open(path, PC_LOG_DEBUG, "test"), 0);

    /* a raw path as a client may send it */
    pc_log_info("bad path %s", "/x\xff\xfe\xc3(");
    /* a message over 1 KiB whose cut falls inside "é" (2 bytes): 1022
     * ASCII bytes, then é at bytes 1022-1023, where the cut is at 1023 */
    char big[1200];
    memset(big, 'a', 1022);
    strcpy(big + 1022, "\xc3\xa9 and more after the cut");
    pc_log_warn("%s", big);
    /* and one whose cut falls inside a 4-byte sequence */
    memset(big, 'b', 1021);
    strcpy(big + 1021, "\xf0\x9f\x94\x91 tail");
    pc_log_warn("%s", big);
    /* the gateway's access log: a batch of JSON lines through pc_log_line */
    const char *batch = "{\"path\":\"/p\xe9\"}\n{\"path\":\"/ok\xc3\xa9\"}";
    pc_log_line(batch, strlen(batch));
    pc_log_close();

    size_t n;
    char *buf = slurp(path, &n);
    check_lines(buf, n, 5);
    assert_non_null(strstr(buf, "bad path /x\\u00ff\\u00fe\\u00c3("));
    /* the cut messages end before the sequence the cut fell in */
    char want[1100];
    snprintf(want, sizeof want, "\"msg\":\"%.*s\"}", 1022, big_a());
    assert_non_null(strstr(buf, want));
    snprintf(want, sizeof want, "\"msg\":\"%.*s\"}", 1021, big_b());
    assert_non_null(strstr(buf, want));
    assert_null(strstr(buf, "\\u00c3\\u00a9"));
    assert_null(strstr(buf, "\\u00f0"));
    assert_non_null(strstr(buf, "\"/p\\u00e9\""));
    assert_non_null(strstr(buf, "\"/ok\xc3\xa9\""));
    free(buf);
    unlink(path);
}

static void test_request_lines(void **state)
{
    (void)state;
    char path[] = "/tmp/pc-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pc_log_open(path, PC_LOG_INFO, "test"), 0);
    pc_logr_warn("abc123", "upstream %s: refused", "http://u");
    pc_logr_info(NULL, "no request");
    pc_logr_error("", "empty id");
    pc_log_req(PC_LOG_DEBUG, "dropped", "below the level");
    pc_log_close();
    size_t n;
    char *buf = slurp(path, &n);
    check_lines(buf, n, 3);
    assert_non_null(strstr(buf, "\"level\":\"warn\",\"prog\":\"test\",\"req_id\":\"abc123\","
                                "\"msg\":\"upstream http://u: refused\"}"));
    assert_non_null(strstr(buf, "\"prog\":\"test\",\"msg\":\"no request\"}"));
    assert_non_null(strstr(buf, "\"prog\":\"test\",\"msg\":\"empty id\"}"));
    assert_null(strstr(buf, "dropped"));
    free(buf);
    unlink(path);
}

static void test_next_chunk(void **state)
{
    (void)state;
    assert_int_equal(pc_log_next_chunk("a\nb\n", 4, 10), 4);       /* fits */
    assert_int_equal(pc_log_next_chunk("aa\nbb\ncc\n", 9, 7), 6);  /* whole lines */
    assert_int_equal(pc_log_next_chunk("aa\nbb\ncc\n", 9, 6), 6);  /* line end at max */
    assert_int_equal(pc_log_next_chunk("aaaaaa\nb\n", 9, 4), 7);    /* one long line */
    assert_int_equal(pc_log_next_chunk("aaaaaaaa", 8, 4), 8);         /* no end at all */
}

/* Four threads write batches of lines longer in all than PIPE_BUF into one
 * pipe that a slow reader drains: every line read back is whole and ends
 * with its own checksum-free marker, and none is lost. */
enum { LT_THREADS = 4, LT_BATCHES = 40, LT_PER_BATCH = 30 };

static void *log_thread(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int b = 0; b < LT_BATCHES; b++) {
        struct pc_buf buf = {0};
        for (int i = 0; i < LT_PER_BATCH; i++) {
            pc_buf_printf(&buf, "{\"t\":%d,\"b\":%d,\"i\":%d,\"pad\":\"", id, b, i);
            for (int k = 0; k < 40 + 7 * i; k++)
                pc_buf_putc(&buf, (char)('a' + id));
            pc_buf_printf(&buf, "\",\"end\":%d}\n", id);
        }
        pc_log_line(buf.data, buf.len - 1);     /* pc_log_line adds the last \n */
        pc_buf_free(&buf);
    }
    return NULL;
}

struct reader {
    int fd;
    struct pc_buf got;
};

static void *slow_reader(void *arg)
{
    struct reader *r = arg;
    char chunk[512];
    ssize_t n;
    while ((n = read(r->fd, chunk, sizeof chunk)) > 0) {   /* small reads, slowly */
        pc_buf_append(&r->got, chunk, (size_t)n);
        usleep(20);
    }
    return NULL;
}

static void test_pipe_lines_whole(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int saved = log_fd;
    log_fd = p[1];
    struct reader rd = {.fd = p[0]};
    pthread_t rt, th[LT_THREADS];
    assert_int_equal(pthread_create(&rt, NULL, slow_reader, &rd), 0);
    for (int i = 0; i < LT_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, log_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < LT_THREADS; i++)
        pthread_join(th[i], NULL);
    log_fd = saved;
    close(p[1]);
    pthread_join(rt, NULL);
    close(p[0]);
    struct pc_buf got = rd.got;

    /* every line: {"t":N,...,"pad":"<N's letter only>","end":N} */
    size_t lines = 0;
    const char *s = got.data, *end = got.data + got.len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        assert_non_null(nl);
        int t = -1, e = -2;
        assert_int_equal(sscanf(s, "{\"t\":%d,", &t), 1);
        const char *pad = strstr(s, "\"pad\":\"");
        assert_true(pad && pad < nl);
        pad += 7;
        while (*pad == 'a' + t)
            pad++;
        assert_int_equal(sscanf(pad, "\",\"end\":%d}", &e), 1);
        assert_int_equal(e, t);
        assert_ptr_equal(strchr(pad, '}') + 1, nl);
        lines++;
        s = nl + 1;
    }
    assert_int_equal(lines, LT_THREADS * LT_BATCHES * LT_PER_BATCH);
    pc_buf_free(&got);
}

static void test_failed_writes_counted(void **state)
{
    (void)state;
    unsigned long long before = pc_log_write_failures();
    assert_int_equal(pc_log_open("/dev/full", PC_LOG_DEBUG, "test"), 0);
    pc_log_info("this cannot be written");
    pc_log_info("nor this");
    pc_log_close();
    assert_int_equal(pc_log_write_failures() - before, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_golden),
        cmocka_unit_test(test_cut_golden),
        cmocka_unit_test(test_lines_are_utf8),
        cmocka_unit_test(test_request_lines),
        cmocka_unit_test(test_next_chunk),
        cmocka_unit_test(test_pipe_lines_whole),
        cmocka_unit_test(test_failed_writes_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
