/* Portcullis - MIT licence. See LICENSE.
 *
 * http.c: HTTP/1.x heads and chunked bodies (RFC 9112), parsed in place.
 * See http.h for what is refused and why.
 */
#include "http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* tchar (RFC 9110 5.6.2) */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

/* field-value bytes: HTAB, SP, VCHAR, obs-text */
static bool value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Checks a field value v[0..n): HTAB, SP, VCHAR and obs-text only. Eight
 * bytes at a time: a word with no byte below 0x20 and none equal to 0x7f
 * is all value bytes (obs-text, >= 0x80, included). */
static bool value_ok(const char *v, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, v + i, sizeof x);
        uint64_t y = x ^ (ones * 0x7f);
        if ((((x - ones * 0x20) & ~x) | ((y - ones) & ~y)) & highs)
            break; /* look closer, byte by byte */
    }
    for (; i < n; i++)
        if (!value_byte((unsigned char)v[i]))
            return false;
    return true;
}

/* Length of the head (through its empty line), or 0 when not all here. */
static size_t head_end(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            return 0;
        p = nl + 1;
        if (p < end && *p == '\n')
            return (size_t)(p + 1 - buf);
        if (p + 1 < end && p[0] == '\r' && p[1] == '\n')
            return (size_t)(p + 2 - buf);
        if (p + 1 >= end)
            return 0;
    }
    return 0;
}

/* Cuts the line at *p (ending in LF or CRLF), sets *n to its length and
 * returns its start; *p moves past it. NULL on a bare CR or a NUL byte (which would end the line early
 * for whoever reads it as a string: what follows it would go unchecked). */
static char *take_line(char **p, size_t *len, size_t *n)
{
    char *s = *p;
    char *nl = memchr(s, '\n', *len); /* present: head_end found the end */
    char *e = nl;
    if (e > s && e[-1] == '\r')
        e--;
    *e = '\0';
    *n = (size_t)(e - s);
    *len -= (size_t)(nl + 1 - s);
    *p = nl + 1;
    if (memchr(s, '\r', (size_t)(e - s)) != NULL || memchr(s, '\0', (size_t)(e - s)) != NULL)
        return NULL;
    return s;
}

/* "HTTP/1.x" at s: returns x (0 or 1), or -1. */
static int version(const char *s)
{
    if (strncmp(s, "HTTP/1.", 7) != 0)
        return -1;
    if ((s[7] == '0' || s[7] == '1'))
        return s[7] - '0';
    return -1;
}

static enum pc_http_result parse_headers(char *p, size_t left, struct pc_http_head *h)
{
    h->nh = 0;
    for (;;) {
        size_t ll;
        char *line = take_line(&p, &left, &ll);
        if (line == NULL)
            return PC_HTTP_BAD;
        if (line[0] == '\0')
            return PC_HTTP_OK;
        if (!tchar[(unsigned char)line[0]])
            return PC_HTTP_BAD; /* obs-fold, or a name that is not a token */
        char *c = line;
        while (tchar[(unsigned char)*c])
            c++;
        if (*c != ':')
            return PC_HTTP_BAD; /* includes whitespace before the colon */
        if (h->nh == PC_HTTP_MAX_HEADERS)
            return PC_HTTP_TOO_MANY;
        struct pc_http_header *f = &h->h[h->nh++];
        f->name = line;
        f->nlen = (size_t)(c - line);
        *c++ = '\0';
        while (*c == ' ' || *c == '\t')
            c++;
        char *v = c;
        if (!value_ok(v, (size_t)(line + ll - v)))
            return PC_HTTP_BAD;
        c = line + ll;
        while (c > v && (c[-1] == ' ' || c[-1] == '\t'))
            c--;
        *c = '\0';
        f->value = v;
        f->vlen = (size_t)(c - v);
    }
}

/* A Host value: host [ ":" port ], host a reg-name or IPv4 (unreserved,
 * pct-encoded and sub-delims) or an [IP-literal]; port digits only. */
static bool host_value_ok(const char *v, size_t n)
{
    size_t i = 0;
    if (n > 0 && v[0] == '[') {
        while (i < n && v[i] != ']')
            i++;
        if (i == n || i < 3)
            return false;
        for (size_t k = 1; k < i; k++)
            if (!isxdigit((unsigned char)v[k]) && v[k] != ':' && v[k] != '.')
                return false;
        i++;
    } else {
        while (i < n && v[i] != ':') {
            unsigned char ch = (unsigned char)v[i];
            if (!isalnum(ch) && strchr("-._~%!$&'()*+,;=", ch) == NULL)
                return false;
            i++;
        }
    }
    if (i == n)
        return true;
    if (v[i] != ':' || n - i > 6)
        return false;
    for (i++; i < n; i++)
        if (!isdigit((unsigned char)v[i]))
            return false;
    return true;
}

bool pc_http_host_ok(const struct pc_http_head *h)
{
    const struct pc_http_header *host = NULL;
    for (size_t i = 0; i < h->nh; i++) {
        if (h->h[i].nlen != 4 || strcasecmp(h->h[i].name, "host") != 0)
            continue;
        if (host != NULL)
            return false;
        host = &h->h[i];
    }
    if (host == NULL)
        return h->minor == 0;
    return host->vlen <= 261 && host_value_ok(host->value, host->vlen);
}

const char *pc_http_get(const struct pc_http_head *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->nh; i++)
        if (h->h[i].nlen == n && strncasecmp(h->h[i].name, name, n) == 0)
            return h->h[i].value;
    return NULL;
}

bool pc_http_list_has(const char *v, const char *token, size_t tlen)
{
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *s = v;
        while (*v && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tlen && strncasecmp(s, token, tlen) == 0)
            return true;
    }
    return false;
}

/* Content-Length, Transfer-Encoding, Connection and Expect. */
static enum pc_http_result derive(struct pc_http_head *h, bool response)
{
    bool have_cl = false, have_te = false, chunked = false, close = false, ka = false;
    uint64_t cl = 0;
    for (size_t i = 0; i < h->nh; i++) {
        const struct pc_http_header *f = &h->h[i];
        if (f->nlen == 14 && strcasecmp(f->name, "content-length") == 0) {
            if (f->vlen == 0 || f->vlen > 18)
                return PC_HTTP_BAD_FRAMING;
            uint64_t n = 0;
            for (size_t k = 0; k < f->vlen; k++) {
                if (f->value[k] < '0' || f->value[k] > '9')
                    return PC_HTTP_BAD_FRAMING;
                n = n * 10 + (uint64_t)(f->value[k] - '0');
            }
            if (have_cl && n != cl)
                return PC_HTTP_BAD_FRAMING;
            have_cl = true;
            cl = n;
        } else if (f->nlen == 17 && strcasecmp(f->name, "transfer-encoding") == 0) {
            if (have_te || strcasecmp(f->value, "chunked") != 0)
                return PC_HTTP_BAD_FRAMING;
            have_te = chunked = true;
        } else if (f->nlen == 10 && strcasecmp(f->name, "connection") == 0) {
            close |= pc_http_list_has(f->value, "close", 5);
            ka |= pc_http_list_has(f->value, "keep-alive", 10);
        } else if (!response && f->nlen == 6 && strcasecmp(f->name, "expect") == 0) {
            h->expect_continue = strcasecmp(f->value, "100-continue") == 0;
        }
    }
    if (have_te && have_cl)
        return PC_HTTP_BAD_FRAMING;
    /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message (request or
     * answer) is faulty framing; the sender may not mean what we would read */
    if (have_te && h->minor == 0)
        return PC_HTTP_BAD_FRAMING;
    h->keep_alive = h->minor == 1 ? !close : (ka && !close);
    h->content_length = cl;
    if (chunked)
        h->framing = PC_HTTP_BODY_CHUNKED;
    else if (have_cl)
        h->framing = cl ? PC_HTTP_BODY_LENGTH : PC_HTTP_BODY_NONE;
    else
        h->framing = response ? PC_HTTP_BODY_CLOSE : PC_HTTP_BODY_NONE;
    return PC_HTTP_OK;
}

static void head_reset(struct pc_http_head *h)
{
    h->method = h->reason = NULL;
    h->target = NULL;
    h->status = 0;
    h->minor = 1;
    h->nh = 0;
    h->head_len = 0;
    h->framing = PC_HTTP_BODY_NONE;
    h->content_length = 0;
    h->keep_alive = false;
    h->expect_continue = false;
}

enum pc_http_result pc_http_parse_request(char *buf, size_t len, struct pc_http_head *h)
{
    head_reset(h);
    /* RFC 9112 2.2: empty lines (LF or CRLF) before the request line are
     * ignored; a bare CR is not one (take_line refuses it) */
    size_t skip = 0;
    for (;;) {
        if (skip < len && buf[skip] == '\n')
            skip++;
        else if (skip + 1 < len && buf[skip] == '\r' && buf[skip + 1] == '\n')
            skip += 2;
        else
            break;
    }
    if (skip > 4)
        return PC_HTTP_BAD;
    size_t end = head_end(buf + skip, len - skip);
    if (end == 0)
        return PC_HTTP_INCOMPLETE;
    char *p = buf + skip;
    size_t left = end;
    size_t ll;
    char *line = take_line(&p, &left, &ll);
    if (line == NULL)
        return PC_HTTP_BAD;
    char *s = line;
    while (tchar[(unsigned char)*s])
        s++;
    if (s == line || *s != ' ')
        return PC_HTTP_BAD;
    *s++ = '\0';
    h->method = line;
    char *t = s;
    while ((unsigned char)*s > 0x20 && (unsigned char)*s < 0x7f)
        s++;
    if (s == t || *s != ' ')
        return PC_HTTP_BAD;
    *s++ = '\0';
    h->target = t;
    h->minor = version(s);
    if (h->minor < 0) {
        h->minor = 1;
        return strncmp(s, "HTTP/", 5) == 0 ? PC_HTTP_BAD_VERSION : PC_HTTP_BAD;
    }
    if (s[8] != '\0')
        return PC_HTTP_BAD;
    enum pc_http_result res = parse_headers(p, left, h);
    if (res != PC_HTTP_OK)
        return res;
    h->head_len = skip + end;
    return derive(h, false);
}

enum pc_http_result pc_http_parse_response(char *buf, size_t len, bool head_request,
                                           struct pc_http_head *h)
{
    head_reset(h);
    size_t end = head_end(buf, len);
    if (end == 0)
        return PC_HTTP_INCOMPLETE;
    char *p = buf;
    size_t left = end;
    size_t ll;
    char *line = take_line(&p, &left, &ll);
    if (line == NULL)
        return PC_HTTP_BAD;
    h->minor = version(line);
    if (h->minor < 0) {
        h->minor = 1;
        return PC_HTTP_BAD_VERSION;
    }
    const char *s = line + 8;
    if (s[0] != ' ' || s[1] < '1' || s[1] > '9' || s[2] < '0' || s[2] > '9' || s[3] < '0' ||
        s[3] > '9' || (s[4] != ' ' && s[4] != '\0'))
        return PC_HTTP_BAD;
    h->status = (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    h->reason = s[4] ? s + 5 : "";
    for (const char *r = h->reason; *r; r++)
        if (!value_byte((unsigned char)*r))
            return PC_HTTP_BAD;
    enum pc_http_result res = parse_headers(p, left, h);
    if (res != PC_HTTP_OK)
        return res;
    h->head_len = end;
    res = derive(h, true);
    if (res != PC_HTTP_OK)
        return res;
    if (head_request || h->status < 200 || h->status == 204 || h->status == 304)
        h->framing = PC_HTTP_BODY_NONE;
    return PC_HTTP_OK;
}

/* ---- chunked ---- */

enum {
    CH_SIZE = 0,    /* hex digits */
    CH_EXT,         /* ;extensions up to the line end */
    CH_SIZE_LF,     /* CR seen after the size line */
    CH_DATA,
    CH_DATA_CR,     /* CRLF after the data */
    CH_DATA_LF,
    CH_TRAILER,     /* start of a trailer line (or the final empty line) */
    CH_TRAILER_LINE,
    CH_TRAILER_LF,  /* CR seen inside a trailer line */
    CH_END_LF,      /* CR of the final empty line seen */
    CH_DONE,
};

ssize_t pc_chunked_decode(struct pc_chunked *c, const char *in, size_t n, char *out, size_t *outn,
                          bool *done)
{
    size_t i = 0, o = 0;
    *done = false;
    while (i < n) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case CH_SIZE: {
            int v = (ch >= '0' && ch <= '9')   ? ch - '0'
                    : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                    : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                               : -1;
            if (v >= 0) {
                if (++c->digits > 15)
                    return -1;
                c->left = c->left * 16 + (uint64_t)v;
                i++;
                break;
            }
            if (c->digits == 0)
                return -1;
            if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = CH_EXT;
                i++;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
                i++;
            } else {
                return -1; /* a bare LF too: chunked lines end in CRLF */
            }
            break;
        }
        case CH_EXT:
            if (ch == '\r') {
                c->state = CH_SIZE_LF;
                i++;
            } else if (!value_byte(ch)) {
                return -1;
            } else {
                i++;
            }
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                return -1;
            i++;
            c->digits = 0;
            c->state = c->left ? CH_DATA : CH_TRAILER;
            break;
        case CH_DATA: {
            size_t take = n - i;
            if ((uint64_t)take > c->left)
                take = (size_t)c->left;
            memmove(out + o, in + i, take);
            o += take;
            i += take;
            c->left -= take;
            if (c->left == 0)
                c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (ch != '\r')
                return -1;
            c->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                return -1;
            i++;
            c->state = CH_SIZE;
            break;
        case CH_TRAILER:
            if (ch == '\r') {
                c->state = CH_END_LF;
                i++;
            } else if (tchar[ch]) {
                c->state = CH_TRAILER_LINE;
            } else {
                return -1;
            }
            break;
        case CH_TRAILER_LINE:
            if (ch == '\r')
                c->state = CH_TRAILER_LF;
            else if (!value_byte(ch))
                return -1;
            i++;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                return -1;
            i++;
            c->state = CH_TRAILER;
            break;
        case CH_END_LF:
            if (ch != '\n')
                return -1;
            i++;
            c->state = CH_DONE;
            *outn = o;
            *done = true;
            return (ssize_t)i;
        default:
            return -1;
        }
    }
    *outn = o;
    return (ssize_t)i;
}
