/* Portcullis - MIT licence. See LICENSE.
 *
 * test_http.c: the in-place HTTP/1.x head parser (requests and answers) and
 * the incremental chunked-body decoder (lib/http.h). Every input is copied
 * into a heap block of exactly its length, so that a read past the end shows
 * under AddressSanitizer.
 */
#include "../../lib/http.c"
#include "../../lib/util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

/* a string literal and its length (it may hold NUL bytes) */
#define S(s) s, sizeof(s) - 1

static struct pc_http_head head;
static char *msg; /* the message being parsed: head's pointers lie in it */

static char *copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, s, n);
    return p;
}

static enum pc_http_result req(const char *s, size_t n)
{
    free(msg);
    msg = copy(s, n);
    return pc_http_parse_request(msg, n, &head);
}

static enum pc_http_result resp(const char *s, size_t n, bool head_request)
{
    free(msg);
    msg = copy(s, n);
    return pc_http_parse_response(msg, n, head_request, &head);
}

static enum pc_http_result req_str(const char *s)
{
    return req(s, strlen(s));
}

static int teardown(void **state)
{
    free(msg);
    msg = NULL;
    return 0;
}

static void assert_header(size_t i, const char *name, const char *value)
{
    assert_true(i < head.nh);
    assert_string_equal(head.h[i].name, name);
    assert_string_equal(head.h[i].value, value);
    assert_int_equal(head.h[i].nlen, strlen(name));
    assert_int_equal(head.h[i].vlen, strlen(value));
}

/* A table of heads and what parsing each must give. */
struct head_case {
    const char *in;
    size_t len;
    enum pc_http_result want;
};

static void check_requests(const struct head_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        enum pc_http_result r = req(c[i].in, c[i].len);
        if (r != c[i].want)
            fail_msg("case %zu (%.*s): got %d, want %d", i, (int)c[i].len, c[i].in, r,
                     c[i].want);
    }
}

/* ---- requests ---- */

static void test_request_simple(void **state)
{
    static const char in[] = "GET /path?q=1 HTTP/1.1\r\n"
                             "Host: example.com\r\n"
                             "X-Spaces: \t a  b c \t \r\n"
                             "Accept:*/*\r\n"
                             "X-Empty:\r\n"
                             "X-Blank:   \r\n"
                             "\r\n";
    assert_int_equal(req(S(in)), PC_HTTP_OK);
    assert_string_equal(head.method, "GET");
    assert_string_equal(head.target, "/path?q=1");
    assert_int_equal(head.minor, 1);
    assert_int_equal(head.head_len, sizeof in - 1);
    assert_int_equal(head.nh, 5);
    assert_header(0, "Host", "example.com");
    assert_header(1, "X-Spaces", "a  b c");
    assert_header(2, "Accept", "*/*");
    assert_header(3, "X-Empty", "");
    assert_header(4, "X-Blank", "");
    assert_int_equal(head.framing, PC_HTTP_BODY_NONE);
    assert_int_equal(head.content_length, 0);
    assert_true(head.keep_alive);
    assert_false(head.expect_continue);
    /* in place: the pointers lie in the buffer */
    assert_ptr_equal(head.method, msg);
    assert_ptr_equal(head.target, msg + 4);
    assert_ptr_equal(head.h[0].name, msg + 24);
    assert_ptr_equal(head.h[0].value, msg + 30);
}

static void test_request_line_endings(void **state)
{
    static const char *const ins[] = {
        "POST /x HTTP/1.0\r\nA: 1\r\nB:  2 \r\n\r\n",
        "POST /x HTTP/1.0\nA: 1\nB:  2 \n\n",
        "POST /x HTTP/1.0\r\nA: 1\nB:  2 \r\n\n",
        "POST /x HTTP/1.0\nA: 1\r\nB:  2 \n\r\n",
        /* leading empty lines (at most four bytes of them) */
        "\r\nPOST /x HTTP/1.0\r\nA: 1\r\nB: 2\r\n\r\n",
        "\n\nPOST /x HTTP/1.0\r\nA: 1\r\nB: 2\r\n\r\n",
        "\r\n\r\nPOST /x HTTP/1.0\nA: 1\nB: 2\n\n",
        "\n\r\n\nPOST /x HTTP/1.0\nA: 1\nB: 2\n\n",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(ins); i++) {
        assert_int_equal(req_str(ins[i]), PC_HTTP_OK);
        assert_int_equal(head.head_len, strlen(ins[i]));
        assert_string_equal(head.method, "POST");
        assert_string_equal(head.target, "/x");
        assert_int_equal(head.minor, 0);
        assert_int_equal(head.nh, 2);
        assert_header(0, "A", "1");
        assert_header(1, "B", "2");
        assert_false(head.keep_alive);
    }
}

/* Every proper prefix of a whole head is INCOMPLETE and left untouched. */
static void check_prefixes(const char *in, bool response)
{
    size_t n = strlen(in);
    for (size_t k = 0; k < n; k++) {
        char *p = copy(in, k);
        enum pc_http_result r = response ? pc_http_parse_response(p, k, false, &head)
                                         : pc_http_parse_request(p, k, &head);
        if (r != PC_HTTP_INCOMPLETE)
            fail_msg("%s prefix %zu of %zu: got %d", response ? "answer" : "request", k, n, r);
        assert_memory_equal(p, in, k);
        free(p);
    }
    assert_int_equal(response ? resp(in, n, false) : req(in, n), PC_HTTP_OK);
    assert_int_equal(head.head_len, n);
}

static void test_request_prefixes(void **state)
{
    static const char *const ins[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: h\r\nX: \xe9t\xe9\r\nY:\r\n\r\n",
        "GET /a HTTP/1.1\nHost: h\nY:\n\n",
        "\r\n\r\nPUT /a HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
        "\n\nPOST /a HTTP/1.1\nTransfer-Encoding: chunked\r\n\n",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(ins); i++)
        check_prefixes(ins[i], false);
}

static void test_request_body_and_pipelining(void **state)
{
    static const char in[] = "POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                             "GET /next HTTP/1.1\r\nHost: n\r\n\r\nGET";
    const size_t first = strlen("POST /up HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
    assert_int_equal(req(S(in)), PC_HTTP_OK);
    assert_int_equal(head.head_len, first);
    assert_int_equal(head.framing, PC_HTTP_BODY_LENGTH);
    assert_int_equal(head.content_length, 5);
    assert_memory_equal(msg + first, "helloGET /next", 14); /* the body is untouched */

    /* the next request, from where the body ends */
    char *next = msg + first + 5;
    size_t left = sizeof in - 1 - first - 5;
    assert_int_equal(pc_http_parse_request(next, left, &head), PC_HTTP_OK);
    assert_string_equal(head.method, "GET");
    assert_string_equal(head.target, "/next");
    assert_int_equal(head.nh, 1);
    assert_header(0, "Host", "n");
    assert_int_equal(head.head_len, left - 3);
    /* and the third is not all here */
    assert_int_equal(pc_http_parse_request(next + head.head_len, 3, &head), PC_HTTP_INCOMPLETE);
}

struct flag_case {
    const char *in;
    bool want;
};

/* Each request parses, and sets *flag (a field of head) as the case says. */
static void check_flag(const struct flag_case *c, size_t n, const bool *flag)
{
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(req_str(c[i].in), PC_HTTP_OK);
        if (*flag != c[i].want)
            fail_msg("case %zu (%s): got %d", i, c[i].in, *flag);
    }
}

static void test_request_keep_alive(void **state)
{
    static const struct flag_case cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: Upgrade, close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: keep-alive\r\nconnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, Upgrade\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Upgrade,keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", false},
    };
    check_flag(cases, PC_ARRAY_LEN(cases), &head.keep_alive);
}

/* RFC 9112 3.2: the Host rule the front applies (pc_http_host_ok). */
static void test_request_host(void **state)
{
    static const struct {
        const char *in;
        bool ok;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nhost: a.example.com:8080\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: \r\n\r\n", true},  /* empty: no authority (RFC 9112 3.2) */
        {"GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a:1234567\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: []\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\xc3\xa9\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", false},
    };
    (void)state;
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        assert_int_equal(req_str(cases[i].in), PC_HTTP_OK);
        if (pc_http_host_ok(&head) != cases[i].ok)
            fail_msg("case %zu (%s): want %d", i, cases[i].in, cases[i].ok);
    }
}

static void test_request_expect(void **state)
{
    static const struct flag_case cases[] = {
        {"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", true},
        {"POST / HTTP/1.1\r\nexpect:  100-Continue \r\nContent-Length: 1\r\n\r\n", true},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nExpect: 100-continuex\r\nContent-Length: 1\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nX-Expect: 100-continue\r\nContent-Length: 1\r\n\r\n", false},
    };
    check_flag(cases, PC_ARRAY_LEN(cases), &head.expect_continue);
}

/* Body framing of a request: its headers, and what they give. */
struct framing_case {
    const char *in;
    enum pc_http_result want;
    enum pc_http_framing framing;
    uint64_t length;
};

static void check_framing(const struct framing_case *c, size_t n, bool response,
                          bool head_request)
{
    for (size_t i = 0; i < n; i++) {
        enum pc_http_result r = response ? resp(c[i].in, strlen(c[i].in), head_request)
                                         : req_str(c[i].in);
        if (r != c[i].want)
            fail_msg("case %zu (%s): got %d, want %d", i, c[i].in, r, c[i].want);
        if (r != PC_HTTP_OK)
            continue;
        if (head.framing != c[i].framing || head.content_length != c[i].length)
            fail_msg("case %zu (%s): framing %d length %llu", i, c[i].in, head.framing,
                     (unsigned long long)head.content_length);
    }
}

#define RQ(h) "POST / HTTP/1.1\r\n" h "\r\n"
#define RQ0(h) "POST / HTTP/1.0\r\n" h "\r\n"

static void test_request_content_length(void **state)
{
    static const struct framing_case cases[] = {
        {RQ(""), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {RQ("Content-Length: 5\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 5},
        {RQ("content-length:12\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 12},
        {RQ("Content-Length: 0\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {RQ("Content-Length: 007\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 7},
        {RQ("Content-Length: 999999999999999999\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH,
         999999999999999999ULL},
        {RQ0("Content-Length: 3\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 3},
        {RQ("Content-Length: 5\r\nContent-Length: 5\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 5},
        {RQ("Content-Length: 5\r\nCONTENT-LENGTH: 05\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 5},
        {RQ("Content-Length: 5\r\nContent-Length: 6\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 0\r\nContent-Length: 1\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 1000000000000000000\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 99999999999999999999999\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length:\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: +5\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: -5\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: -0\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 5a\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 0x5\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 5 5\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 5, 5\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 5.0\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
    };
    check_framing(cases, PC_ARRAY_LEN(cases), false, false);
}

static void test_request_transfer_encoding(void **state)
{
    static const struct framing_case cases[] = {
        {RQ("Transfer-Encoding: chunked\r\n"), PC_HTTP_OK, PC_HTTP_BODY_CHUNKED, 0},
        {RQ("transfer-encoding: Chunked\r\n"), PC_HTTP_OK, PC_HTTP_BODY_CHUNKED, 0},
        {RQ("Transfer-Encoding:  CHUNKED \t\r\n"), PC_HTTP_OK, PC_HTTP_BODY_CHUNKED, 0},
        {RQ("Transfer-Encoding: gzip\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding: identity\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding: gzip, chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding: chunked, chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding: chunked;q=1\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding: chunkedx\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding:\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
         PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), PC_HTTP_BAD_FRAMING,
         0, 0},
        {RQ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {RQ0("Transfer-Encoding: chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        /* a header whose name only starts like one of them */
        {RQ("Transfer-Encodings: gzip\r\nContent-Lengthx: 1\r\n"), PC_HTTP_OK,
         PC_HTTP_BODY_NONE, 0},
    };
    check_framing(cases, PC_ARRAY_LEN(cases), false, false);
}

#define GET(h) "GET / HTTP/1.1\r\n" h "\r\n"

static void test_request_malformed_headers(void **state)
{
    static const struct head_case cases[] = {
        /* bare CR, anywhere */
        {S("GET / HTTP/1.1\rX\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / HTTP/1.1\r\r\n\r\n"), PC_HTTP_BAD},
        {S(GET("Host: a\rb\r\n")), PC_HTTP_BAD},
        {S(GET("Host: a\r\r\n")), PC_HTTP_BAD},
        {S(GET("Ho\rst: a\r\n")), PC_HTTP_BAD},
        {S(GET("\rHost: a\r\n")), PC_HTTP_BAD},
        {S(GET("Host: a\r\n\r\r\n")), PC_HTTP_BAD},
        {S("\rGET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("\r\rGET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("\r\r\nGET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("\n\rGET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        /* more than four bytes of empty lines first */
        {S("\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("\n\n\n\n\nGET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        /* obs-fold */
        {S(GET("X: a\r\n b\r\n")), PC_HTTP_BAD},
        {S(GET("X: a\r\n\tb\r\n")), PC_HTTP_BAD},
        {S(GET(" X: a\r\n")), PC_HTTP_BAD},
        /* the name */
        {S(GET("Host : a\r\n")), PC_HTTP_BAD},
        {S(GET("Host\t: a\r\n")), PC_HTTP_BAD},
        {S(GET(": a\r\n")), PC_HTTP_BAD},
        {S(GET("Host a\r\n")), PC_HTTP_BAD},
        {S(GET("Ho(st: a\r\n")), PC_HTTP_BAD},
        {S(GET("Ho\"st: a\r\n")), PC_HTTP_BAD},
        {S(GET("H\xc3\xb6st: a\r\n")), PC_HTTP_BAD},
        {S(GET("Ho\0st: a\r\n")), PC_HTTP_BAD},
        /* control bytes in a value */
        {S(GET("X: a\0b\r\n")), PC_HTTP_BAD},
        {S(GET("X: a\0\r\n")), PC_HTTP_BAD},
        {S(GET("X: \0\r\n")), PC_HTTP_BAD},
        {S(GET("X: a\x01z\r\n")), PC_HTTP_BAD},
        {S(GET("X: a\x1b\r\n")), PC_HTTP_BAD},
        {S(GET("X: a\x7f\r\n")), PC_HTTP_BAD},
        {S(GET("X: \x7f\r\n")), PC_HTTP_BAD},
        /* a line of one NUL is not the end of the head */
        {S(GET("\0\r\nTransfer-Encoding: gzip\r\n")), PC_HTTP_BAD},
        {S(GET("Host: a\r\n\0\r\n")), PC_HTTP_BAD},
        {S(GET("Host: a\n\0\n")), PC_HTTP_BAD},
    };
    check_requests(cases, PC_ARRAY_LEN(cases));
}

static void test_request_malformed_line(void **state)
{
    static const struct head_case cases[] = {
        /* method */
        {S(" / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S(" GET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("G(ET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("G:ET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("G\0ET / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("G\x80T / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET\t/ HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET\r\n\r\n"), PC_HTTP_BAD},
        /* target */
        {S("GET  / HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET /a b HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET /a\tb HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET /a\x01 HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET /a\0 HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET /\x7f HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET /\x80 HTTP/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET /\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / \r\n\r\n"), PC_HTTP_BAD},
        /* version */
        {S("GET / HTTP/1.1 \r\n\r\n"), PC_HTTP_BAD},
        {S("GET / HTTP/1.1x\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / HTTP/1.10\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / HTTP/1.1\0\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / HTTP/1.1\0junk\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / http/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / FOO/1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / HTTP\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / 1.1\r\n\r\n"), PC_HTTP_BAD},
        {S("GET / HTTP/2.0\r\n\r\n"), PC_HTTP_BAD_VERSION},
        {S("GET / HTTP/1.2\r\n\r\n"), PC_HTTP_BAD_VERSION},
        {S("GET / HTTP/0.9\r\n\r\n"), PC_HTTP_BAD_VERSION},
        {S("GET / HTTP/3\r\n\r\n"), PC_HTTP_BAD_VERSION},
    };
    check_requests(cases, PC_ARRAY_LEN(cases));
}

static void test_request_obs_text(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9 \x80\xff\t!~\r\n\r\n";
    assert_int_equal(req(S(in)), PC_HTTP_OK);
    assert_int_equal(head.nh, 1);
    assert_header(0, "X-Name", "caf\xc3\xa9 \x80\xff\t!~");
    /* every tchar is a name byte */
    assert_int_equal(req_str(GET("!#$%&'*+-.^_`|~09azAZ: v\r\n")), PC_HTTP_OK);
    assert_header(0, "!#$%&'*+-.^_`|~09azAZ", "v");
    /* the methods are tokens, any case */
    assert_int_equal(req_str("m-SEARCH * HTTP/1.1\r\n\r\n"), PC_HTTP_OK);
    assert_string_equal(head.method, "m-SEARCH");
    assert_string_equal(head.target, "*");
}

/* "GET / HTTP/1.1" and n headers "H<i>: v<i>" */
static char *many_headers(size_t n, size_t *len)
{
    size_t cap = 64 + n * 32, o = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    o += (size_t)snprintf(s + o, cap - o, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(s + o, cap - o, "H%zu: v%zu\r\n", i, i);
    o += (size_t)snprintf(s + o, cap - o, "\r\n");
    *len = o;
    return s;
}

static void test_request_header_count(void **state)
{
    size_t len;
    char *s = many_headers(PC_HTTP_MAX_HEADERS, &len);
    assert_int_equal(req(s, len), PC_HTTP_OK);
    assert_int_equal(head.nh, PC_HTTP_MAX_HEADERS);
    assert_int_equal(head.head_len, len);
    assert_header(0, "H0", "v0");
    assert_header(PC_HTTP_MAX_HEADERS - 1, "H127", "v127");
    free(s);

    s = many_headers(PC_HTTP_MAX_HEADERS + 1, &len);
    assert_int_equal(req(s, len), PC_HTTP_TOO_MANY);
    free(s);
    s = many_headers(PC_HTTP_MAX_HEADERS * 3, &len);
    assert_int_equal(req(s, len), PC_HTTP_TOO_MANY);
    free(s);
}

/* ---- looking headers up ---- */

static void test_get(void **state)
{
    assert_int_equal(req_str(GET("Host: a\r\nX-Dup: 1\r\nx-dup: 2\r\nX-Empty:\r\n")),
                     PC_HTTP_OK);
    assert_string_equal(pc_http_get(&head, "Host"), "a");
    assert_string_equal(pc_http_get(&head, "hOST"), "a");
    assert_string_equal(pc_http_get(&head, "x-DUP"), "1");
    assert_string_equal(pc_http_get(&head, "X-Empty"), "");
    assert_null(pc_http_get(&head, "X-Du"));
    assert_null(pc_http_get(&head, "X-Dupe"));
    assert_null(pc_http_get(&head, "Missing"));
    assert_null(pc_http_get(&head, ""));
    assert_int_equal(req_str("GET / HTTP/1.1\r\n\r\n"), PC_HTTP_OK);
    assert_int_equal(head.nh, 0);
    assert_null(pc_http_get(&head, "Host"));
}

static void test_list_has(void **state)
{
    static const struct {
        const char *value, *token;
        bool want;
    } cases[] = {
        {"keep-alive, Upgrade", "upgrade", true},
        {"keep-alive, Upgrade", "keep-alive", true},
        {"keep-alive,Upgrade", "UPGRADE", true},
        {"close", "close", true},
        {" , close ,", "close", true},
        {"a ,\tclose\t", "close", true},
        {",,a,,b,,", "b", true},
        {"closed", "close", false},
        {"close", "closed", false},
        {"xclose, y", "close", false},
        {"up grade", "grade", false},
        {"up grade", "up grade", true},
        {"", "close", false},
        {" , ", "close", false},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++)
        if (pc_http_list_has(cases[i].value, cases[i].token, strlen(cases[i].token)) !=
            cases[i].want)
            fail_msg("case %zu: \"%s\" has \"%s\"", i, cases[i].value, cases[i].token);
    /* tlen bounds the token */
    assert_true(pc_http_list_has("a, close", "closex", 5));
}

/* ---- answers ---- */

static void test_response_status_line(void **state)
{
    static const struct {
        const char *in;
        enum pc_http_result want;
        int status, minor;
        const char *reason;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\n\r\n", PC_HTTP_OK, 200, 1, "OK"},
        {"HTTP/1.0 404 Not Found\r\n\r\n", PC_HTTP_OK, 404, 0, "Not Found"},
        {"HTTP/1.1 200\r\n\r\n", PC_HTTP_OK, 200, 1, ""},
        {"HTTP/1.1 200 \r\n\r\n", PC_HTTP_OK, 200, 1, ""},
        {"HTTP/1.1 599  two  spaces \r\n\r\n", PC_HTTP_OK, 599, 1, " two  spaces "},
        {"HTTP/1.1 100 Continue\n\n", PC_HTTP_OK, 100, 1, "Continue"},
        {"HTTP/1.1 200 d\xe9j\xe0\tvu\r\n\r\n", PC_HTTP_OK, 200, 1, "d\xe9j\xe0\tvu"},
        {"HTTP/1.1 20 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 2000 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 099 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 2x0 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 -20 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1  200 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1\t200 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 200\tOK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 200 O\x01K\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 200 O\x7fK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 200 O\rK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 \r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.10 200 OK\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 200 OK\r\nX : y\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", PC_HTTP_BAD, 0, 0, NULL},
        {"HTTP/1.2 200 OK\r\n\r\n", PC_HTTP_BAD_VERSION, 0, 0, NULL},
        {"HTTP/2 200\r\n\r\n", PC_HTTP_BAD_VERSION, 0, 0, NULL},
        {"http/1.1 200 OK\r\n\r\n", PC_HTTP_BAD_VERSION, 0, 0, NULL},
        {"\r\nHTTP/1.1 200 OK\r\n\r\n", PC_HTTP_BAD_VERSION, 0, 0, NULL},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        enum pc_http_result r = resp(cases[i].in, strlen(cases[i].in), false);
        if (r != cases[i].want)
            fail_msg("case %zu (%s): got %d, want %d", i, cases[i].in, r, cases[i].want);
        if (r != PC_HTTP_OK)
            continue;
        assert_int_equal(head.status, cases[i].status);
        assert_int_equal(head.minor, cases[i].minor);
        assert_string_equal(head.reason, cases[i].reason);
        assert_int_equal(head.head_len, strlen(cases[i].in));
        assert_null(head.method);
    }
    /* a NUL in the reason or after the status */
    assert_int_equal(resp(S("HTTP/1.1 200 O\0K\r\n\r\n"), false), PC_HTTP_BAD);
    assert_int_equal(resp(S("HTTP/1.1 200\0\r\n\r\n"), false), PC_HTTP_BAD);
    assert_int_equal(resp(S("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n"), false), PC_HTTP_BAD);
}

static void test_response_headers_and_prefixes(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Type:  text/plain \r\n"
                             "Content-Length: 4\r\n\r\nbody";
    assert_int_equal(resp(S(in), false), PC_HTTP_OK);
    assert_int_equal(head.head_len, sizeof in - 1 - 4);
    assert_int_equal(head.nh, 2);
    assert_header(0, "Content-Type", "text/plain");
    assert_string_equal(pc_http_get(&head, "content-length"), "4");
    assert_memory_equal(msg + head.head_len, "body", 4);
    assert_true(head.keep_alive);
    assert_false(head.expect_continue);

    check_prefixes("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX:\r\n\r\n", true);
    check_prefixes("HTTP/1.0 204\nA: b\n\n", true);

    assert_int_equal(resp(S("HTTP/1.0 200 OK\r\n\r\n"), false), PC_HTTP_OK);
    assert_false(head.keep_alive);
    assert_int_equal(resp(S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), false),
                     PC_HTTP_OK);
    assert_true(head.keep_alive);
    assert_int_equal(resp(S("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"), false),
                     PC_HTTP_OK);
    assert_false(head.keep_alive);
    /* Expect means nothing in an answer */
    assert_int_equal(resp(S("HTTP/1.1 200 OK\r\nExpect: 100-continue\r\n\r\n"), false),
                     PC_HTTP_OK);
    assert_false(head.expect_continue);
}

#define AN(status, h) "HTTP/1.1 " status "\r\n" h "\r\n"
#define AN0(status, h) "HTTP/1.0 " status "\r\n" h "\r\n"

static void test_response_framing(void **state)
{
    static const struct framing_case get[] = {
        {AN("200 OK", ""), PC_HTTP_OK, PC_HTTP_BODY_CLOSE, 0},
        {AN("200 OK", "Content-Length: 10\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 10},
        {AN("200 OK", "Content-Length: 0\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {AN("200 OK", "Transfer-Encoding: chunked\r\n"), PC_HTTP_OK, PC_HTTP_BODY_CHUNKED, 0},
        {AN("500 Oops", "transfer-encoding: CHUNKED\r\n"), PC_HTTP_OK, PC_HTTP_BODY_CHUNKED, 0},
        {AN("404 No", "Content-Length: 3\r\nContent-Length: 3\r\n"), PC_HTTP_OK,
         PC_HTTP_BODY_LENGTH, 3},
        {AN("100 Continue", ""), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {AN("101 Switching", "Content-Length: 5\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 5},
        {AN("199 x", "Transfer-Encoding: chunked\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {AN("204 No Content", ""), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {AN("204 No Content", "Content-Length: 5\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 5},
        {AN("304 Not Modified", "Content-Length: 5\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 5},
        {AN("304 Not Modified", "Transfer-Encoding: chunked\r\n"), PC_HTTP_OK,
         PC_HTTP_BODY_NONE, 0},
        {AN("205 Reset", ""), PC_HTTP_OK, PC_HTTP_BODY_CLOSE, 0},
        {AN("200 OK", "Transfer-Encoding: gzip\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {AN("200 OK", "Transfer-Encoding: gzip, chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {AN("200 OK", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
         PC_HTTP_BAD_FRAMING, 0, 0},
        {AN("200 OK", "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"),
         PC_HTTP_BAD_FRAMING, 0, 0},
        {AN("200 OK", "Content-Length: 3\r\nContent-Length: 4\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {AN("200 OK", "Content-Length: abc\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {AN("200 OK", "Content-Length: -1\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {AN("204 No Content", "Transfer-Encoding: gzip\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        /* HTTP/1.0: until the close, or faulty with Transfer-Encoding (RFC 9112 6.1) */
        {AN0("200 OK", ""), PC_HTTP_OK, PC_HTTP_BODY_CLOSE, 0},
        {AN0("200 OK", "Connection: keep-alive\r\n"), PC_HTTP_OK, PC_HTTP_BODY_CLOSE, 0},
        {AN0("200 OK", "Content-Length: 4\r\n"), PC_HTTP_OK, PC_HTTP_BODY_LENGTH, 4},
        {AN0("200 OK", "Transfer-Encoding: chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
        {AN0("200 OK", "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n"),
         PC_HTTP_BAD_FRAMING, 0, 0},
        {AN0("204 No Content", "Transfer-Encoding: chunked\r\n"), PC_HTTP_BAD_FRAMING, 0, 0},
    };
    check_framing(get, PC_ARRAY_LEN(get), true, false);

    /* the answer to a HEAD has no body, whatever it says */
    static const struct framing_case head_req[] = {
        {AN("200 OK", ""), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {AN("200 OK", "Content-Length: 10\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 10},
        {AN("200 OK", "Transfer-Encoding: chunked\r\n"), PC_HTTP_OK, PC_HTTP_BODY_NONE, 0},
        {AN("404 No", "Content-Length: 3\r\nContent-Length: 4\r\n"), PC_HTTP_BAD_FRAMING, 0,
         0},
    };
    check_framing(head_req, PC_ARRAY_LEN(head_req), true, true);
}

/* ---- chunked bodies ---- */

#define CHUNKED_BODY                                                                         \
    "5\r\nhello\r\n"                                                                       \
    "6;name=value;x\r\n world\r\n"                                                         \
    "1A \t; ext = \"q\"\r\n0123456789abcdefghijklmnop\r\n"                                 \
    "00001\r\nZ\r\n"                                                                       \
    "0;last\r\nTrailer-One: x\r\nt2:\xe9 y\r\n\r\n"
#define CHUNKED_DATA "hello world0123456789abcdefghijklmnopZ"
#define NEXT "GET / HTTP/1.1\r\n\r\n"

/* Decodes in[0..n) given in pieces ending at cuts[] (the last is n), into
 * out; returns the bytes consumed in all, or -1. *done: the body ended. */
static ssize_t decode_pieces(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                             char *out, size_t *outn, bool *done)
{
    struct pc_chunked c = {0};
    size_t at = 0, o = 0;
    *done = false;
    for (size_t k = 0; k < ncuts && !*done; k++) {
        size_t part = cuts[k] - at, got = 99999;
        char *p = copy(in + at, part);
        ssize_t r = pc_chunked_decode(&c, p, part, out + o, &got, done);
        free(p);
        if (r < 0)
            return -1;
        assert_true(got <= part);
        if (!*done)
            assert_int_equal(r, part); /* all of it, unless the body ended */
        else
            assert_int_equal(c.state, CH_DONE);
        at += (size_t)r;
        o += got;
    }
    *outn = o;
    return (ssize_t)at;
}

static void check_chunked(const char *in, size_t n, size_t body_len, const char *want,
                          size_t want_len)
{
    char out[512];
    size_t outn;
    bool done;
    assert_true(n < sizeof out);

    /* in one piece */
    assert_int_equal(decode_pieces(in, n, &n, 1, out, &outn, &done), body_len);
    assert_true(done);
    assert_int_equal(outn, want_len);
    assert_memory_equal(out, want, want_len);

    /* in every split into two */
    for (size_t k = 0; k <= n; k++) {
        size_t cuts[2] = {k, n};
        memset(out, '#', sizeof out);
        if (decode_pieces(in, n, cuts, 2, out, &outn, &done) != (ssize_t)body_len)
            fail_msg("split at %zu", k);
        assert_true(done);
        assert_int_equal(outn, want_len);
        assert_memory_equal(out, want, want_len);
    }

    /* one byte at a time: the end comes with the body's last byte */
    size_t cuts[512];
    for (size_t k = 0; k < n; k++)
        cuts[k] = k + 1;
    memset(out, '#', sizeof out);
    assert_int_equal(decode_pieces(in, n, cuts, n, out, &outn, &done), body_len);
    assert_true(done);
    assert_int_equal(outn, want_len);
    assert_memory_equal(out, want, want_len);
}

static void test_chunked_body(void **state)
{
    check_chunked(S(CHUNKED_BODY), sizeof CHUNKED_BODY - 1, S(CHUNKED_DATA));
    /* what follows the body is not consumed */
    check_chunked(S(CHUNKED_BODY NEXT), sizeof CHUNKED_BODY - 1, S(CHUNKED_DATA));
    check_chunked(S(CHUNKED_BODY "0\r\n\r\n"), sizeof CHUNKED_BODY - 1, S(CHUNKED_DATA));
    /* empty bodies */
    check_chunked(S("0\r\n\r\n"), 5, S(""));
    check_chunked(S("000;a=b\r\nX: y\r\n\r\nmore"), 17, S(""));
    /* fifteen digits is the most */
    check_chunked(S("000000000000003\r\nabc\r\n0\r\n\r\n"), 27, S("abc"));
    check_chunked(S("a\r\n\r\n\r\n\r\n\r\n\r\n\r\n0\r\n\r\n"), 20, S("\r\n\r\n\r\n\r\n\r\n"));
}

static void test_chunked_in_place(void **state)
{
    char buf[] = CHUNKED_BODY NEXT;
    struct pc_chunked c = {0};
    size_t outn = 12345;
    bool done = false;
    ssize_t r = pc_chunked_decode(&c, buf, sizeof buf - 1, buf, &outn, &done);
    assert_int_equal(r, sizeof CHUNKED_BODY - 1);
    assert_true(done);
    assert_int_equal(outn, sizeof CHUNKED_DATA - 1);
    assert_memory_equal(buf, CHUNKED_DATA, outn);
    assert_string_equal(buf + r, NEXT); /* left as it was */

    /* out before in, in two calls, as the gateway compacts its buffer */
    char b2[sizeof CHUNKED_BODY + 8];
    memset(b2, '#', 8);
    memcpy(b2 + 8, CHUNKED_BODY, sizeof CHUNKED_BODY);
    memset(&c, 0, sizeof c);
    size_t half = 20, o = 0;
    r = pc_chunked_decode(&c, b2 + 8, half, b2, &outn, &done);
    assert_int_equal(r, half);
    assert_false(done);
    o += outn;
    r = pc_chunked_decode(&c, b2 + 8 + half, sizeof CHUNKED_BODY - 1 - half, b2 + o, &outn,
                          &done);
    assert_int_equal(r, sizeof CHUNKED_BODY - 1 - half);
    assert_true(done);
    o += outn;
    assert_int_equal(o, sizeof CHUNKED_DATA - 1);
    assert_memory_equal(b2, CHUNKED_DATA, o);

    /* nothing to read: nothing done */
    memset(&c, 0, sizeof c);
    outn = 7;
    done = true;
    assert_int_equal(pc_chunked_decode(&c, buf, 0, buf, &outn, &done), 0);
    assert_int_equal(outn, 0);
    assert_false(done);
}

static void test_chunked_malformed(void **state)
{
    static const struct {
        const char *in;
        size_t len;
    } cases[] = {
        {S("\r\n")},                          /* no digits */
        {S("\n")},
        /* bare LF ends no chunked line (RFC 9112 7.1; the h11 differential,
         * docs/http-framing.md): size line, extension, after the data,
         * trailer, the last line */
        {S("3\nabc\r\n0\r\n\r\n")},
        {S("3;x\nabc\r\n0\r\n\r\n")},
        {S("3\r\nabc\n0\r\n\r\n")},
        {S("0\r\nT: 1\n\r\n")},
        {S("0\r\n\n")},
        {S("0\n\n")},
        {S(";x\r\n")},
        {S(" 5\r\n")},
        {S("g\r\n")},                         /* not hex */
        {S("5g\r\n")},
        {S("0x5\r\n")},
        {S("-5\r\n")},
        {S("+5\r\n")},
        {S("1000000000000000\r\n")},          /* sixteen digits */
        {S("0000000000000000\r\n")},
        {S("5\rX")},                          /* bare CR after the size */
        {S("5;a\rb\r\n")},
        {S("5;a\0b\r\n")},                    /* control bytes in an extension */
        {S("5;a\x01\r\n")},
        {S("5;a\x7f\r\n")},
        {S("3\r\nabcX")},                     /* no CRLF after the data */
        {S("3\r\nabc\rX")},
        {S("3\r\nabcd\r\n")},
        {S("3\r\nab\r\n\r\n")},
        {S("0\r\n X: y\r\n\r\n")},            /* trailers */
        {S("0\r\n\tX: y\r\n\r\n")},
        {S("0\r\n:x\r\n\r\n")},
        {S("0\r\nX: a\x01\r\n\r\n")},
        {S("0\r\nX: a\0\r\n\r\n")},
        {S("0\r\nX: a\rb\r\n\r\n")},
        {S("0\r\nX: a\r\n\x01\r\n")},
        {S("0\r\n\rX")},                      /* the final line */
        {S("0\r\r\n")},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(cases); i++) {
        char out[64];
        size_t outn, n = cases[i].len;
        bool done;
        if (decode_pieces(cases[i].in, n, &n, 1, out, &outn, &done) != -1)
            fail_msg("case %zu (%s): not refused in one piece", i, cases[i].in);
        size_t cuts[64];
        for (size_t k = 0; k < n; k++)
            cuts[k] = k + 1;
        if (decode_pieces(cases[i].in, n, cuts, n, out, &outn, &done) != -1)
            fail_msg("case %zu (%s): not refused byte by byte", i, cases[i].in);
    }

    /* a decoder whose body has ended reads no more */
    struct pc_chunked c = {0};
    char out[16];
    size_t outn;
    bool done;
    assert_int_equal(pc_chunked_decode(&c, "0\r\n\r\n", 5, out, &outn, &done), 5);
    assert_true(done);
    assert_int_equal(pc_chunked_decode(&c, "0\r\n\r\n", 5, out, &outn, &done), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_request_simple, teardown),
        cmocka_unit_test_teardown(test_request_line_endings, teardown),
        cmocka_unit_test_teardown(test_request_prefixes, teardown),
        cmocka_unit_test_teardown(test_request_body_and_pipelining, teardown),
        cmocka_unit_test_teardown(test_request_keep_alive, teardown),
        cmocka_unit_test_teardown(test_request_host, teardown),
        cmocka_unit_test_teardown(test_request_expect, teardown),
        cmocka_unit_test_teardown(test_request_content_length, teardown),
        cmocka_unit_test_teardown(test_request_transfer_encoding, teardown),
        cmocka_unit_test_teardown(test_request_malformed_headers, teardown),
        cmocka_unit_test_teardown(test_request_malformed_line, teardown),
        cmocka_unit_test_teardown(test_request_obs_text, teardown),
        cmocka_unit_test_teardown(test_request_header_count, teardown),
        cmocka_unit_test_teardown(test_get, teardown),
        cmocka_unit_test(test_list_has),
        cmocka_unit_test_teardown(test_response_status_line, teardown),
        cmocka_unit_test_teardown(test_response_headers_and_prefixes, teardown),
        cmocka_unit_test_teardown(test_response_framing, teardown),
        cmocka_unit_test(test_chunked_body),
        cmocka_unit_test(test_chunked_in_place),
        cmocka_unit_test(test_chunked_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
