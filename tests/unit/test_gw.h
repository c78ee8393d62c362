/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw.h: what the gateway unit tests (test_gw_*.c) share. They call the
 * gateway's own functions (linked from every gateway object but main.o, see
 * the Makefile), never include a gateway .c, and build their input the way
 * the gateway does:
 *
 *   routes    a routes file (JSON, docs/gateway.md) written to a temporary
 *             file and loaded by gw_config_load from a clean environment
 *   requests  a request head parsed in place by lib/http.c, its path cut at
 *             '?' or '#' as intake does (gw_request.path: "no query")
 *
 * The one place that names gateway headers: if they move, only this changes.
 */
#ifndef TEST_GW_H
#define TEST_GW_H

#include "../../gateway/types.h"
#include "../../gateway/config.h"
#include "../../gateway/request.h"
#include "../../gateway/stages.h"
#include "../../gateway/cache.h"
#include "../../gateway/store.h"
#include "../../gateway/feed.h"
#include "../../gateway/jwt.h"
#include "../../gateway/proxy.h"
#include "../../gateway/metrics.h"
#include "../../gateway/ocsp_staple.h"
#include "../../lib/http.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* lib/cookie's Python-computed vectors (tests/unit/test_cookie.c): HMAC-SHA256
 * of TOK1 under SECRET, base64 (GWT_SIG1) and its encodeURIComponent form. */
#define GWT_SECRET "better-auth-secret-12345678901234567890"
#define GWT_TOK1 "iFyoN4aCvxqZ8XUUYsFb9xyc8h09PA3y"
#define GWT_SIG1 "xoggXqalwlracZy2yf4Z833SSNtU6th13A/wH8huacE="
#define GWT_SIG1_ENC "xoggXqalwlracZy2yf4Z833SSNtU6th13A%2FwH8huacE%3D"
#define GWT_SIG1_URL "xoggXqalwlracZy2yf4Z833SSNtU6th13A_wH8huacE="

/* 64 letters: an API key's body (Better Auth's shape) */
#define GWT_L64 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkl"

/* The e2e suite's standard routes (tests/e2e/gateway/gwlib.py make_routes),
 * every upstream on a port nothing is asked on. */
#define GWT_UP "\"upstream\": \"http://127.0.0.1:9\""
#define GWT_E2E_ROUTES                                                                        \
    "{\"prefix\": \"/s/\", " GWT_UP ", \"auth\": [\"session\"]},"                              \
    "{\"prefix\": \"/k/\", " GWT_UP ", \"auth\": [\"api_key\"]},"                              \
    "{\"prefix\": \"/m/\", " GWT_UP ", \"auth\": [\"session\", \"api_key\"]},"                 \
    "{\"prefix\": \"/mj/\", " GWT_UP ", \"auth\": [\"session\", \"jwt\", \"api_key\"]},"       \
    "{\"prefix\": \"/j/\", " GWT_UP ", \"auth\": [\"jwt\"]},"                                  \
    "{\"prefix\": \"/pub/\", " GWT_UP ", \"auth\": [\"none\"]},"                               \
    "{\"prefix\": \"/perm/\", " GWT_UP ", \"auth\": [\"api_key\"],"                            \
    " \"permissions\": {\"files\": [\"read\", \"write\"], \"projects\": [\"list\"]}},"         \
    "{\"prefix\": \"/mperm/\", " GWT_UP ", \"auth\": [\"session\", \"api_key\"],"              \
    " \"permissions\": {\"files\": [\"read\"]}},"                                              \
    "{\"prefix\": \"/oc/:apiKey/\", " GWT_UP ", \"auth\": [\"api_key\"]},"                     \
    "{\"prefix\": \"/fc/\", " GWT_UP ", \"auth\": [\"session\"], \"forward_cookies\": true},"  \
    "{\"prefix\": \"/based/\", \"upstream\": \"http://127.0.0.1:9/base\","                     \
    " \"auth\": [\"session\", \"api_key\"]},"                                                  \
    "{\"prefix\": \"/dead/\", " GWT_UP ", \"auth\": [\"none\"]},"                              \
    "{\"prefix\": \"/status/\", " GWT_UP ", \"auth\": [\"session\", \"api_key\"]},"            \
    "{\"prefix\": \"/sse\", " GWT_UP ", \"auth\": [\"none\"]},"                                \
    "{\"prefix\": \"/slow\", " GWT_UP ", \"auth\": [\"none\"]},"                               \
    "{\"prefix\": \"/big\", " GWT_UP ", \"auth\": [\"none\"]}"

/* Loads gw_cfg from routes_json (a whole routes file) and env, a NULL-ended
 * list of "NAME=value" on top of a cleared environment with the two required
 * variables set (the database is never asked). */
static inline void gwt_load(const char *routes_json, const char *const *env)
{
    char path[] = "/tmp/pc-unit-routes-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(routes_json);
    assert_int_equal(write(fd, routes_json, n), (ssize_t)n);
    close(fd);
    assert_int_equal(clearenv(), 0);
    setenv("DATABASE_URL", "postgres://127.0.0.1:1/unit", 1);
    setenv("BETTER_AUTH_SECRET", GWT_SECRET, 1);
    setenv("GATEWAY_ROUTES", path, 1);
    for (size_t i = 0; env && env[i]; i++)
        assert_int_equal(putenv((char *)env[i]), 0);
    int rc = gw_config_load();
    unlink(path);
    assert_int_equal(rc, 0);
}

static inline void gwt_unload(void)
{
    gw_config_free();
    memset(&gw_cfg, 0, sizeof gw_cfg);
}

/* A routes file the gateway must refuse, and a part of the error it must
 * give (the place named: routes[1].ca_file, ...). */
struct gwt_bad_case {
    const char *json;
    const char *want;
};

/* Loads each of cases[0..n) with gw_routes_load_text; prints every one
 * that loads or names the wrong thing, and returns how many did. */
static inline int gwt_refusals(const struct gwt_bad_case *cases, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char err[600] = "";
        int rc = gw_routes_load_text(cases[i].json, strlen(cases[i].json), "unit", err,
                                     sizeof err);
        if (rc == 0 || strstr(err, cases[i].want) == NULL) {
            print_error("case %zu: rc %d, error \"%s\"\n  want a part \"%s\"\n", i, rc, err,
                        cases[i].want);
            bad++;
        }
        gw_routes_free(); /* what was parsed before the error */
    }
    return bad;
}

/* The loaded route whose prefix is prefix (fails the test without one). */
static inline const struct gw_route *gwt_route(const char *prefix)
{
    const struct gw_table *t = gw_cfg.table;
    for (size_t i = 0; i < t->nroutes; i++)
        if (strcmp(t->routes[i].prefix, prefix) == 0)
            return &t->routes[i];
    fail_msg("no route %s", prefix);
    abort(); /* fail_msg does not return */
}

/* A request with its parsed head; free with gwt_req_free. */
struct gwt_req {
    struct gw_request r;
    struct pc_http_head head;
    char *buf;
};

/* "GET target HTTP/1.1", Host (unless headers has one), then headers:
 * lines separated by '\n' (NULL: none). */
static inline struct gwt_req *gwt_req_new(const char *target, const char *headers)
{
    struct gwt_req *q = calloc(1, sizeof *q);
    assert_non_null(q);
    size_t cap = strlen(target) + (headers ? 2 * strlen(headers) : 0) + 64;
    q->buf = malloc(cap);
    assert_non_null(q->buf);
    bool own_host = headers && (strncasecmp(headers, "Host:", 5) == 0 ||
                                strcasestr(headers, "\nHost:") != NULL);
    size_t n = (size_t)snprintf(q->buf, cap, "GET %s HTTP/1.1\r\n%s", target,
                                own_host ? "" : "Host: unit\r\n");
    for (const char *h = headers; h && *h;) {
        size_t l = strcspn(h, "\n");
        memcpy(q->buf + n, h, l);
        n += l;
        q->buf[n++] = '\r';
        q->buf[n++] = '\n';
        h += l;
        if (*h == '\n')
            h++;
    }
    q->buf[n++] = '\r';
    q->buf[n++] = '\n';
    enum pc_http_result pr = pc_http_parse_request(q->buf, n, &q->head);
    if (pr != PC_HTTP_OK)
        fail_msg("request head for %s did not parse (%d)", target, (int)pr);
    gw_cred_init(&q->r);
    q->r.table = gw_cfg.table;
    q->r.head = &q->head;
    q->r.method = q->head.method;
    q->r.path = strndup(q->head.target, strcspn(q->head.target, "?#"));
    assert_non_null(q->r.path);
    return q;
}

static inline void gwt_req_free(struct gwt_req *q)
{
    if (q->r.cred != q->r.cred_inline)
        free(q->r.cred);
    free(q->r.path);
    free(q->r.query);
    free(q->r.upstream_path);
    free(q->r.forwarded_prefix);
    free(q->buf);
    free(q);
}

/* Judges one table row. A row whose expectation the gateway does not meet
 * today carries the finding (a sentence) instead of a changed expectation:
 * it is printed as KNOWN FINDING and does not fail the run, and it fails
 * once the gateway meets the expectation, so that the mark is removed with
 * the fix. Returns whether the row is as the table says. */
#define GWT_CHECK(ok, finding, ...) gwt_check((ok), (finding), __VA_ARGS__)
static inline PC_PRINTF(3, 4) bool gwt_check(bool ok, const char *finding, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (ok && finding == NULL)
        return true;
    if (!ok && finding) {
        print_message("KNOWN FINDING: %s\n  %s\n", finding, what);
        return true;
    }
    if (ok)
        print_error("%s\n  now as the table says: drop its finding mark (\"%s\")\n", what,
                    finding);
    else
        print_error("%s\n", what);
    return false;
}

static inline const char *gwt_kind_name(enum gw_cred_kind k)
{
    static const char *const names[] = {"none", "session", "api_key", "jwt"};
    return (unsigned)k < PC_ARRAY_LEN(names) ? names[k] : "?";
}

static inline const char *gwt_src_name(enum gw_cred_src s)
{
    static const char *const names[] = {"none", "path", "x-api-key", "bearer", "cookie"};
    return (unsigned)s < PC_ARRAY_LEN(names) ? names[s] : "?";
}

#endif
