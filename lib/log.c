/* Portcullis - MIT licence. See LICENSE.
 *
 * log.c: JSON-lines logging shared by both programs. Every line written is
 * valid UTF-8: text from clients (paths, headers) may hold any byte, and a
 * byte that is not part of a well-formed sequence is written as \u00XX; a
 * message cut to fit is cut between sequences.
 */
#include "log.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistr.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int log_fd = 2;
static enum pc_log_level log_min = PC_LOG_INFO;
static const char *log_prog = "portcullis";
static const char *const level_names[PC_LOG_LEVEL_COUNT] = {"debug", "info", "warn", "error"};
/* One writer at a time: the lines of one batch stay together and no
 * thread's line lands inside another's, whatever the fd is. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong log_failures;

unsigned long long pc_log_write_failures(void)
{
    return atomic_load_explicit(&log_failures, memory_order_relaxed);
}

int pc_log_open(const char *path, enum pc_log_level min, const char *program)
{
    log_min = min;
    log_prog = program;
    if (path == NULL || path[0] == '\0')
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd == -1)
        return -1;
    log_fd = fd;
    return 0;
}

void pc_log_close(void)
{
    pthread_mutex_lock(&log_mu);
    if (log_fd > 2)
        close(log_fd);
    log_fd = 2;
    pthread_mutex_unlock(&log_mu);
}

int pc_log_level_parse(const char *s)
{
    for (int i = 0; i < PC_LOG_LEVEL_COUNT; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    ucs4_t uc;
    int len = u8_mbtoucr(&uc, s, n);
    return len > 0 ? (size_t)len : 0;
}

void pc_log_utf8(struct pc_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;      /* s[i - run .. i) is kept as it is */
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            run++;
            continue;
        }
        size_t len = utf8_seq(u + i, n - i);
        if (len) {
            i += len;
            run += len;
            continue;
        }
        pc_buf_append(b, s + i - run, run);
        run = 0;
        char e[6] = {'\\', 'u', '0', '0', hex[u[i] >> 4], hex[u[i] & 15]};
        pc_buf_append(b, e, 6);
        i++;
    }
    pc_buf_append(b, s + n - run, run);
}

size_t pc_utf8_cut(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    /* a sequence cut short has at most 3 of its bytes: find its lead */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = u[n - back];
        if (c < 0x80)
            return n;                       /* ASCII: nothing is cut */
        if (c >= 0xc0) {                    /* a lead byte: is its sequence whole? */
            if (c < 0xc2 || c > 0xf4)
                return n;                   /* leads nothing: escaped, not cut */
            size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            return want > back ? n - back : n;
        }
    }
    return n;
}

size_t pc_log_next_chunk(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    /* the last line end within max: whole lines only */
    for (size_t i = max; i > 0; i--)
        if (s[i - 1] == '\n')
            return i;
    /* one line longer than max: it goes whole, to its own end */
    const char *nl = memchr(s, '\n', n);
    return nl ? (size_t)(nl - s) + 1 : n;
}

/* Writes s[0..n) to the end, through partial writes, EINTR and a full
 * non-blocking pipe (waited on for up to a second at a time). 0 or -1. */
static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 1000) > 0)
                continue;
        }
        return -1;
    }
    return 0;
}

/* Each write(2) holds whole lines and at most PIPE_BUF bytes, which a pipe
 * takes in one piece: lines from other processes on the same pipe (a
 * container's stdout) never land inside ours. A line longer than PIPE_BUF
 * goes in a write of its own. A write that fails counts once per chunk. */
static void log_emit(const char *s, size_t n)
{
    pthread_mutex_lock(&log_mu);
    while (n > 0) {
        size_t c = pc_log_next_chunk(s, n, PIPE_BUF);
        if (write_all(log_fd, s, c) != 0)
            atomic_fetch_add_explicit(&log_failures, 1, memory_order_relaxed);
        s += c;
        n -= c;
    }
    pthread_mutex_unlock(&log_mu);
}

void pc_log_line(const char *json, size_t n)
{
    struct pc_buf b = {0};
    /* Bytes >= 0x80 can only be inside strings (the writer puts nothing
     * else there), where \u00XX is a valid stand-in for a stray one. */
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++)
        ascii = (unsigned char)json[i] < 0x80;
    if (ascii)
        pc_buf_append(&b, json, n);
    else
        pc_log_utf8(&b, json, n);
    pc_buf_putc(&b, '\n');
    log_emit(b.data, b.len);
    pc_buf_free(&b);
}

static void vlog(enum pc_log_level level, const char *req_id, const char *fmt, va_list ap)
    PC_PRINTF(3, 0);

static void vlog(enum pc_log_level level, const char *req_id, const char *fmt, va_list ap)
{
    char msg[1024];
    int full = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t len = strlen(msg);
    if (full > 0 && (size_t)full >= sizeof msg)
        len = pc_utf8_cut(msg, len);        /* cut short: at a sequence boundary */

    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "ts");
    pc_jw_date(&w, pc_now_ms());
    pc_jw_key(&w, "level");
    pc_jw_str(&w, level_names[level]);
    pc_jw_key(&w, "prog");
    pc_jw_str(&w, log_prog);
    if (req_id && req_id[0]) {
        pc_jw_key(&w, "req_id");
        pc_jw_str(&w, req_id);
    }
    pc_jw_key(&w, "msg");
    pc_jw_strn(&w, msg, len);
    pc_jw_obj_end(&w);
    pc_log_line(b.data, b.len);
    pc_buf_free(&b);
}

void pc_log(enum pc_log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void pc_log_req(enum pc_log_level level, const char *req_id, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, req_id, fmt, ap);
    va_end(ap);
}
