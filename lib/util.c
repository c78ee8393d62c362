/* Portcullis - MIT licence. See LICENSE.
 *
 * util.c: allocation, buffers, clocks and string helpers used everywhere.
 * Out of memory aborts: callback-heavy code stays simple, and a process that
 * cannot allocate cannot decide anything safely either.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void pc_fatal(const char *fmt, ...)
{
    va_list ap;
    fputs("fatal: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *pc_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        pc_fatal("out of memory (%zu bytes)", n);
    return p;
}

void *pc_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        pc_fatal("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

void *pc_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        pc_fatal("out of memory (%zu bytes)", n);
    return q;
}

char *pc_xstrdup(const char *s)
{
    return pc_xstrndup(s, strlen(s));
}

char *pc_xstrndup(const char *s, size_t n)
{
    char *p = pc_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *pc_xstrdup_lower(const char *s)
{
    char *d = pc_xstrdup(s);
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

static void buf_reserve(struct pc_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = pc_xrealloc(b->data, cap);
    b->cap = cap;
}

void pc_buf_append(struct pc_buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

size_t pc_buf_capped_write(char *p, size_t size, size_t n, void *capped)
{
    struct pc_buf_capped *c = capped;
    size_t len = size * n;
    if (len > c->max || c->buf->len > c->max - len) {
        c->over = true;
        return 0;
    }
    pc_buf_append(c->buf, p, len);
    return len;
}

void pc_buf_puts(struct pc_buf *b, const char *s)
{
    pc_buf_append(b, s, strlen(s));
}

void pc_buf_putc(struct pc_buf *b, char c)
{
    pc_buf_append(b, &c, 1);
}

void pc_buf_putu(struct pc_buf *b, uint64_t v)
{
    char d[20];
    size_t i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    pc_buf_append(b, d + i, sizeof d - i);
}

void pc_buf_printf(struct pc_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        pc_fatal("vsnprintf failed");
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

const char *pc_buf_cstr(struct pc_buf *b)
{
    if (b->data == NULL)
        return "";
    return b->data;
}

void pc_buf_reset(struct pc_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void pc_buf_free(struct pc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int64_t pc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pc_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void pc_iso8601(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    int msec = (int)(ms % 1000);
    if (msec < 0) {
        msec += 1000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
    snprintf(out, 32, "%.31s", tmp);
}

bool pc_strieq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

bool pc_strnieq(const char *a, const char *b, size_t n)
{
    return strncasecmp(a, b, n) == 0;
}

bool pc_starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

int pc_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int pc_parse_hostport(const char *s, char *host, size_t hostsz, int *port, const char **err)
{
    const char *colon;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            *err = "expected [ipv6]:port";
            return -1;
        }
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= hostsz) {
            *err = "bad host";
            return -1;
        }
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            *err = "expected host:port";
            return -1;
        }
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen >= hostsz) {
            *err = "bad host";
            return -1;
        }
        memcpy(host, s, hlen);
        host[hlen] = '\0';
    }
    int64_t p;
    if (pc_parse_int64(colon + 1, 1, 65535, &p) != 0) {
        *err = "port must be 1-65535";
        return -1;
    }
    *port = (int)p;
    return 0;
}

void pc_wipe(void *p, size_t n)
{
    explicit_bzero(p, n); /* a memset the compiler may not drop */
}

bool pc_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* Length of the well-formed sequence at s[0..n), or 0 with *sub set to the
 * length of its maximal ill-formed subpart (Unicode 3.9, Table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *sub)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;    /* range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *sub = 1;
        return 0;
    }
    size_t k = 1;
    for (; k < len && k < n; k++) {
        unsigned char x = s[k];
        bool ok = k == 1 ? x >= lo && x <= hi : (x & 0xC0) == 0x80;
        if (!ok)
            break;
    }
    if (k == len)
        return len;
    *sub = k;
    return 0;
}

char *pc_utf8_fix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    struct pc_buf b = {0};
    size_t i = 0, run = 0;
    while (i < n) {
        size_t sub = 0, len = utf8_seq(s + i, n - i, &sub);
        if (len) {
            i += len;
            run += len;
            continue;
        }
        pc_buf_append(&b, s + i - run, run);
        run = 0;
        pc_buf_puts(&b, "\xef\xbf\xbd");
        i += sub;
    }
    pc_buf_append(&b, s + n - run, run);
    return b.data ? b.data : pc_xstrdup("");
}

int pc_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool pc_token_chars(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr(extra, *s) != NULL))
            return false;
    return true;
}

#ifndef PC_VERSION
#define PC_VERSION "unknown"
#endif

void pc_build_info_metric(struct pc_buf *b, const char *program)
{
    pc_buf_printf(b, "# HELP portcullis_build_info The program and version serving.\n"
                     "# TYPE portcullis_build_info gauge\n"
                     "portcullis_build_info{program=\"%s\",version=\"%s\"} 1\n",
                  program, PC_VERSION);
}
