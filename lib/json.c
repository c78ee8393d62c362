/* Portcullis - MIT licence. See LICENSE.
 *
 * json.c: writer and parse helpers. The writer is hand-rolled because every
 * response is small and built in one pass; yajl's tree parser reads bodies
 * and validates UTF-8 for us.
 */
#include "json.h"

#include <yajl/yajl_parse.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pc_json_quote(struct pc_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    pc_buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        pc_buf_append(b, s + i - run, run);
        run = 0;
        switch (c) {
        case '"': pc_buf_puts(b, "\\\""); break;
        case '\\': pc_buf_puts(b, "\\\\"); break;
        case '\n': pc_buf_puts(b, "\\n"); break;
        case '\r': pc_buf_puts(b, "\\r"); break;
        case '\t': pc_buf_puts(b, "\\t"); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            pc_buf_append(b, e, 6);
        }
        }
    }
    pc_buf_append(b, s + n - run, run);
    pc_buf_putc(b, '"');
}

/* Emits the separator a new value needs at the current depth. */
static void jw_value_prefix(struct pc_jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->started[w->depth])
        pc_buf_putc(w->b, ',');
    w->started[w->depth] = true;
}

static void jw_open(struct pc_jw *w, char c)
{
    jw_value_prefix(w);
    pc_buf_putc(w->b, c);
    if (++w->depth >= PC_JW_MAX_DEPTH)
        pc_fatal("json writer: nesting too deep");
    w->started[w->depth] = false;
}

static void jw_close(struct pc_jw *w, char c)
{
    if (w->depth == 0)
        pc_fatal("json writer: unbalanced close");
    w->depth--;
    pc_buf_putc(w->b, c);
}

void pc_jw_obj_begin(struct pc_jw *w) { jw_open(w, '{'); }
void pc_jw_obj_end(struct pc_jw *w) { jw_close(w, '}'); }
void pc_jw_arr_begin(struct pc_jw *w) { jw_open(w, '['); }
void pc_jw_arr_end(struct pc_jw *w) { jw_close(w, ']'); }

void pc_jw_key(struct pc_jw *w, const char *k)
{
    if (w->started[w->depth])
        pc_buf_putc(w->b, ',');
    w->started[w->depth] = true;
    pc_json_quote(w->b, k, strlen(k));
    pc_buf_putc(w->b, ':');
    w->after_key = true;
}

void pc_jw_str(struct pc_jw *w, const char *s)
{
    if (s == NULL) {
        pc_jw_null(w);
        return;
    }
    pc_jw_strn(w, s, strlen(s));
}

void pc_jw_strn(struct pc_jw *w, const char *s, size_t n)
{
    jw_value_prefix(w);
    pc_json_quote(w->b, s, n);
}

void pc_jw_int(struct pc_jw *w, int64_t v)
{
    jw_value_prefix(w);
    pc_buf_printf(w->b, "%" PRId64, v);
}

void pc_jw_bool(struct pc_jw *w, bool v)
{
    jw_value_prefix(w);
    pc_buf_puts(w->b, v ? "true" : "false");
}

void pc_jw_null(struct pc_jw *w)
{
    jw_value_prefix(w);
    pc_buf_puts(w->b, "null");
}

void pc_jw_date(struct pc_jw *w, int64_t ms)
{
    char iso[32];
    pc_iso8601(ms, iso);
    pc_jw_str(w, iso);
}

void pc_jw_raw(struct pc_jw *w, const char *json)
{
    jw_value_prefix(w);
    pc_buf_puts(w->b, json);
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int h = pc_hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* One pass over the text before yajl sees it (s is our own copy, n bytes):
 *  - a '/' outside a string is a comment, which yajl's tree parser always
 *    allows and JSON.parse does not: refused;
 *  - more than PC_JSON_MAX_DEPTH open arrays/objects: refused, before yajl
 *    builds a tree (yajl_tree_free recurses once per level, so depth is
 *    stack);
 *  - \u0000: refused (yajl hands strings back NUL-terminated, so it would
 *    cut a password or an email short in silence);
 *  - a lone surrogate escape (\ud800 without a low half, or a stray
 *    \udc00) becomes \ufffd in place: yajl would write '?' or bytes that
 *    are not UTF-8, where Node turns it into U+FFFD the moment the string
 *    meets UTF-8 (TextEncoder before scrypt, node-postgres before a query).
 * Strings are left to yajl to judge otherwise. */
static bool prescan(char *s, size_t n)
{
    unsigned depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!in_str) {
            if (c == '"') {
                in_str = true;
            } else if (c == '/') {
                return false;
            } else if (c == '[' || c == '{') {
                if (++depth > PC_JSON_MAX_DEPTH)
                    return false;
            } else if ((c == ']' || c == '}') && depth > 0) {
                depth--;
            }
            continue;
        }
        if (c == '"') {
            in_str = false;
            continue;
        }
        if (c != '\\')
            continue;
        if (i + 1 >= n)
            return false;
        if (s[i + 1] != 'u') {
            i++;    /* a one-character escape; yajl checks which */
            continue;
        }
        int cp = i + 6 <= n ? hex4(s + i + 2) : -1;
        if (cp < 0)
            return false;
        if (cp == 0)
            return false;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = i + 12 <= n && s[i + 6] == '\\' && s[i + 7] == 'u' ? hex4(s + i + 8) : -1;
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                i += 11;    /* a pair: both halves are fine */
                continue;
            }
            memcpy(s + i + 2, "fffd", 4);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            memcpy(s + i + 2, "fffd", 4);
        }
        i += 5;
    }
    return true;
}

yajl_val pc_json_parse(const char *s, size_t n)
{
    if (!pc_utf8_valid(s, n) || memchr(s, '\0', n) != NULL)
        return NULL;
    char *copy = pc_xstrndup(s, n);
    yajl_val v = NULL;
    if (prescan(copy, n)) {
        char err[128];
        v = yajl_tree_parse(copy, err, sizeof err);
    }
    pc_wipe(copy, n);
    free(copy);
    return v;
}

void pc_json_explain(const char *s, size_t n, char *out, size_t outsz)
{
    yajl_handle h = yajl_alloc(NULL, NULL, NULL);
    yajl_status st = yajl_parse(h, (const unsigned char *)s, n);
    /* yajl counts the byte it stopped at as consumed */
    size_t at = yajl_get_bytes_consumed(h);
    at -= at > 0;
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        at = n; /* what is wrong is that it stops here */
    }
    yajl_free(h);
    if (st == yajl_status_ok) {
        snprintf(out, outsz, "not JSON as read here: nesting deeper than %d, a \\u0000 escape "
                             "or a NUL byte", PC_JSON_MAX_DEPTH);
        return;
    }
    if (at > n)
        at = n;
    unsigned line = 1, col = 1;
    for (size_t i = 0; i < at; i++) {
        if (s[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            col++;  /* columns count characters, not UTF-8 continuation bytes */
        }
    }
    snprintf(out, outsz, "JSON syntax error at line %u, column %u%s", line, col,
             at >= n ? " (the text ends too soon)" : "");
}

yajl_val pc_json_get(yajl_val obj, const char *key)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    /* The last occurrence wins, as in JSON.parse. */
    for (size_t i = obj->u.object.len; i > 0; i--)
        if (strcmp(obj->u.object.keys[i - 1], key) == 0)
            return obj->u.object.values[i - 1];
    return NULL;
}
