/* Portcullis - MIT licence. See LICENSE.
 *
 * test_json.c: the JSON writer (escaping, nesting, commas) and the request
 * body parser (NUL refusal, invalid JSON, lookups, the depth limit, lone
 * surrogates).
 */
#include "../../lib/json.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static const char *quote(struct pc_buf *b, const char *s, size_t n)
{
    pc_buf_reset(b);
    pc_json_quote(b, s, n);
    return pc_buf_cstr(b);
}

#define Q(b, s) quote((b), (s), sizeof(s) - 1)

/* The string of v, failing the test when v is not a string. */
static const char *str_of(yajl_val v)
{
    if (!YAJL_IS_STRING(v))
        fail_msg("expected a JSON string");
    return v->u.string;
}

/* ---- escaping ---- */

static void test_quote_escaping(void **state)
{
    struct pc_buf b = {0};
    assert_string_equal(Q(&b, ""), "\"\"");
    assert_string_equal(Q(&b, "plain text"), "\"plain text\"");
    assert_string_equal(Q(&b, "say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(Q(&b, "C:\\path\\"), "\"C:\\\\path\\\\\"");
    assert_string_equal(Q(&b, "a\nb\rc\td"), "\"a\\nb\\rc\\td\"");
    assert_string_equal(Q(&b, "\x01\x1f"), "\"\\u0001\\u001f\"");
    assert_string_equal(Q(&b, "x\0y"), "\"x\\u0000y\"");
    /* JSON.stringify leaves '/', DEL and non-ASCII alone */
    assert_string_equal(Q(&b, "</script>"), "\"</script>\"");
    assert_string_equal(Q(&b, "\x7f"), "\"\x7f\"");
    assert_string_equal(Q(&b, "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80"),
                        "\"J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* escapes at the start, the end and back to back */
    assert_string_equal(Q(&b, "\"\\\"x\n"), "\"\\\"\\\\\\\"x\\n\"");
    /* only n bytes are quoted */
    pc_buf_reset(&b);
    pc_json_quote(&b, "abcdef", 3);
    assert_string_equal(pc_buf_cstr(&b), "\"abc\"");
    /* appends to what is already there */
    pc_buf_reset(&b);
    pc_buf_puts(&b, "x=");
    pc_json_quote(&b, "y", 1);
    assert_string_equal(pc_buf_cstr(&b), "x=\"y\"");
    pc_buf_free(&b);
}

static void test_quote_all_control_chars_roundtrip(void **state)
{
    /* every byte 0x01..0x7f survives a trip through the writer and yajl,
     * and no raw control byte is ever emitted */
    char in[127];
    for (int i = 0; i < 127; i++)
        in[i] = (char)(i + 1);
    struct pc_buf b = {0};
    pc_json_quote(&b, in, sizeof in);
    for (size_t i = 0; i < b.len; i++)
        assert_true((unsigned char)b.data[i] >= 0x20);
    yajl_val v = pc_json_parse(b.data, b.len);
    assert_non_null(v);
    assert_true(YAJL_IS_STRING(v));
    assert_int_equal(strlen(str_of(v)), sizeof in);
    assert_memory_equal(str_of(v), in, sizeof in);
    yajl_tree_free(v);
    pc_buf_free(&b);
}

/* ---- writer ---- */

static void test_writer_nesting_and_commas(void **state)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "user");
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "id");
    pc_jw_str(&w, "abc");
    pc_jw_key(&w, "emailVerified");
    pc_jw_bool(&w, false);
    pc_jw_key(&w, "image");
    pc_jw_str(&w, NULL);
    pc_jw_key(&w, "createdAt");
    pc_jw_date(&w, 1700000000123);
    pc_jw_obj_end(&w);
    pc_jw_key(&w, "list");
    pc_jw_arr_begin(&w);
    pc_jw_int(&w, 1);
    pc_jw_int(&w, -9223372036854775807 - 1);
    pc_jw_int(&w, INT64_MAX);
    pc_jw_bool(&w, true);
    pc_jw_null(&w);
    pc_jw_arr_begin(&w);
    pc_jw_arr_end(&w);
    pc_jw_obj_begin(&w);
    pc_jw_obj_end(&w);
    pc_jw_raw(&w, "{\"r\":[1,2]}");
    pc_jw_strn(&w, "a\"b", 3);
    pc_jw_arr_end(&w);
    pc_jw_key(&w, "empty");
    pc_jw_obj_begin(&w);
    pc_jw_obj_end(&w);
    pc_jw_key(&w, "k\"q");
    pc_jw_int(&w, 0);
    pc_jw_obj_end(&w);
    assert_int_equal(w.depth, 0);
    assert_string_equal(pc_buf_cstr(&b),
                        "{\"user\":{\"id\":\"abc\",\"emailVerified\":false,\"image\":null,"
                        "\"createdAt\":\"2023-11-14T22:13:20.123Z\"},"
                        "\"list\":[1,-9223372036854775808,9223372036854775807,true,null,[],{},"
                        "{\"r\":[1,2]},\"a\\\"b\"],"
                        "\"empty\":{},\"k\\\"q\":0}");

    /* the output is valid JSON that yajl reads back */
    yajl_val v = pc_json_parse(b.data, b.len);
    assert_non_null(v);
    yajl_val user = pc_json_get(v, "user");
    assert_string_equal(str_of(pc_json_get(user, "createdAt")),
                        "2023-11-14T22:13:20.123Z");
    yajl_tree_free(v);
    pc_buf_free(&b);
}

static void test_writer_top_level_array_and_scalars(void **state)
{
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_arr_begin(&w);
    for (int i = 0; i < 3; i++) {
        pc_jw_obj_begin(&w);
        pc_jw_key(&w, "i");
        pc_jw_int(&w, i);
        pc_jw_key(&w, "s");
        pc_jw_arr_begin(&w);
        pc_jw_str(&w, "x");
        pc_jw_str(&w, "y");
        pc_jw_arr_end(&w);
        pc_jw_obj_end(&w);
    }
    pc_jw_arr_end(&w);
    assert_string_equal(pc_buf_cstr(&b), "[{\"i\":0,\"s\":[\"x\",\"y\"]},{\"i\":1,\"s\":[\"x\",\"y\"]},"
                                         "{\"i\":2,\"s\":[\"x\",\"y\"]}]");

    /* a lone scalar document */
    pc_buf_reset(&b);
    struct pc_jw w2 = {.b = &b};
    pc_jw_str(&w2, "only");
    assert_string_equal(pc_buf_cstr(&b), "\"only\"");
    pc_buf_free(&b);
}

static void test_writer_deep_nesting(void **state)
{
    /* PC_JW_MAX_DEPTH - 1 levels are allowed */
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    for (int i = 0; i < PC_JW_MAX_DEPTH - 1; i++) {
        pc_jw_arr_begin(&w);
        pc_jw_int(&w, i);
    }
    for (int i = 0; i < PC_JW_MAX_DEPTH - 1; i++)
        pc_jw_arr_end(&w);
    assert_int_equal(w.depth, 0);
    assert_string_equal(pc_buf_cstr(&b),
                        "[0,[1,[2,[3,[4,[5,[6,[7,[8,[9,[10,[11,[12,[13,[14]]]]]]]]]]]]]]]");
    pc_buf_free(&b);
}

/* ---- parsing ---- */

static void test_parse_and_get(void **state)
{
    const char *s = "{\"email\":\"a@b.co\",\"n\":42,\"ok\":true,\"nil\":null,"
                    "\"o\":{\"x\":[1,\"two\"]},\"email\":\"second@b.co\","
                    "\"u\":\"J\\u00fcrgen \\ud83d\\ude00\"}";
    yajl_val v = pc_json_parse(s, strlen(s));
    assert_non_null(v);
    assert_true(YAJL_IS_OBJECT(v));
    /* last occurrence of a duplicate key wins, as in JSON.parse */
    assert_string_equal(str_of(pc_json_get(v, "email")), "second@b.co");
    yajl_val n = pc_json_get(v, "n");
    assert_true(YAJL_IS_INTEGER(n));
    assert_int_equal(YAJL_GET_INTEGER(n), 42);
    assert_true(YAJL_IS_TRUE(pc_json_get(v, "ok")));
    yajl_val nil = pc_json_get(v, "nil");
    assert_non_null(nil);           /* present ... */
    assert_true(YAJL_IS_NULL(nil)); /* ... and null */
    assert_null(pc_json_get(v, "missing"));
    assert_null(pc_json_get(v, "EMAIL"));   /* keys are case-sensitive */
    yajl_val o = pc_json_get(v, "o");
    assert_true(YAJL_IS_ARRAY(pc_json_get(o, "x")));
    /* not an object: no lookup */
    assert_null(pc_json_get(pc_json_get(o, "x"), "0"));
    assert_null(pc_json_get(n, "x"));
    assert_null(pc_json_get(NULL, "x"));
    /* \u escapes decode to UTF-8, including surrogate pairs */
    assert_string_equal(str_of(pc_json_get(v, "u")), "J\xc3\xbcrgen \xf0\x9f\x98\x80");
    yajl_tree_free(v);

    /* n bounds the text; it need not be NUL-terminated */
    char buf[16];
    memcpy(buf, "{\"a\":1}GARBAGE!", 16);
    v = pc_json_parse(buf, 7);
    assert_non_null(v);
    assert_int_equal(YAJL_GET_INTEGER(pc_json_get(v, "a")), 1);
    yajl_tree_free(v);

    /* raw UTF-8 passes */
    const char *u = "{\"name\":\"J\xc3\xbcrgen \xf0\x9f\x98\x80\"}";
    v = pc_json_parse(u, strlen(u));
    assert_non_null(v);
    assert_string_equal(str_of(pc_json_get(v, "name")), "J\xc3\xbcrgen \xf0\x9f\x98\x80");
    yajl_tree_free(v);
}

/* Returns 1 (and says so) when pc_json_parse accepts s, else 0. */
static int accepted(const char *s, size_t n, const char *what)
{
    yajl_val v = pc_json_parse(s, n);
    if (v == NULL)
        return 0;
    yajl_tree_free(v);
    print_error("pc_json_parse accepted %s\n", what);
    return 1;
}

#define ACC(lit, what) accepted((lit), sizeof(lit) - 1, (what))
#define REJ(lit, what) assert_int_equal(ACC(lit, what), 0)

static void test_parse_rejects_nul(void **state)
{
    REJ("{\"password\":\"abc\0def\"}", "a raw NUL inside a string");
    REJ("{\"a\":1}\0", "a raw NUL after the document");
    REJ("\0{\"a\":1}", "a raw NUL before the document");
    REJ("{\"password\":\"abc\\u0000def\"}", "an escaped \\u0000");
    REJ("{\"pass\\u0000word\":\"x\"}", "an escaped \\u0000 in a key");
}

static void test_parse_rejects_invalid_json(void **state)
{
    REJ("", "empty text");
    REJ("   ", "whitespace only");
    REJ("{", "an unterminated object");
    REJ("{\"a\":1", "an unterminated object after a value");
    REJ("{\"a\":\"x}", "an unterminated string");
    REJ("{'a':1}", "single quotes");
    REJ("{a:1}", "a bare key");
    REJ("[1,]", "a trailing comma in an array");
    REJ("{\"a\":1,}", "a trailing comma in an object");
    REJ("{\"a\":1} x", "trailing garbage");
    REJ("{} {}", "two documents");
    REJ("nul", "a truncated literal");
    REJ("{\"a\":01}", "a leading zero");
    REJ("{\"a\":NaN}", "NaN");
    REJ("{\"a\":\"\\x41\"}", "a bad escape");
    REJ("{\"a\":\"tab\there\"}", "a raw control character in a string");
    REJ("{\"a\":\"\xff\"}", "the byte 0xFF");
    REJ("{\"a\":\"\xc3\"}", "a truncated UTF-8 sequence");
}

static void test_parse_rejects_comments(void **state)
{
    /* JSON.parse refuses comments; yajl_tree_parse enables them by default */
    int bad = 0;
    bad += ACC("{\"a\":1 /* note */}", "a block comment");
    bad += ACC("{\"a\":1} // note", "a line comment");
    bad += ACC("/**/{\"email\":\"a@b.co\"}", "a leading comment");
    assert_int_equal(bad, 0);
}

static void test_parse_rejects_non_utf8_forms(void **state)
{
    /* json.h: NULL for "invalid UTF-8". yajl checks only the lead/continuation
     * bit pattern, so overlong forms and encoded surrogates need their own check. */
    int bad = 0;
    bad += ACC("{\"a\":\"\xc0\xaf\"}", "an overlong encoding of '/'");
    bad += ACC("{\"a\":\"\xed\xa0\x80\"}", "an encoded UTF-16 surrogate");
    bad += ACC("{\"a\":\"\xf4\x90\x80\x80\"}", "a code point above U+10FFFF");
    bad += ACC("{\"a\":\"\xf7\xbf\xbf\xbf\"}", "a 4-byte form with lead byte 0xF7");
    assert_int_equal(bad, 0);
}

/* Text nested d deep: {"a":[[[...1...]]]} with the object as level 1. */
static char *nested(size_t d, size_t *len)
{
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"a\":");
    for (size_t i = 1; i < d; i++)
        pc_buf_putc(&b, '[');
    pc_buf_putc(&b, '1');
    for (size_t i = 1; i < d; i++)
        pc_buf_putc(&b, ']');
    pc_buf_putc(&b, '}');
    *len = b.len;
    return b.data;
}

static void test_parse_depth_limit(void **state)
{
    size_t n;
    char *t = nested(PC_JSON_MAX_DEPTH, &n);
    yajl_val v = pc_json_parse(t, n);
    assert_non_null(v);             /* exactly the limit: fine */
    yajl_tree_free(v);
    free(t);
    t = nested(PC_JSON_MAX_DEPTH + 1, &n);
    assert_null(pc_json_parse(t, n));
    free(t);
    /* the body: 400,000 deep would overflow yajl_tree_free's stack */
    t = nested(400000, &n);
    assert_null(pc_json_parse(t, n));
    free(t);
    /* unbalanced: only opening brackets */
    char *open = pc_xmalloc(200001);
    memset(open, '[', 200000);
    open[200000] = '\0';
    assert_null(pc_json_parse(open, 200000));
    free(open);
    /* brackets inside strings (escaped quotes too) are text, not nesting */
    struct pc_buf b = {0};
    pc_buf_puts(&b, "{\"a\":\"");
    for (int i = 0; i < 1000; i++)
        pc_buf_puts(&b, "[{\\\"");
    pc_buf_puts(&b, "\",\"b\":[[1]]}");
    v = pc_json_parse(b.data, b.len);
    assert_non_null(v);
    assert_int_equal(strlen(str_of(pc_json_get(v, "a"))), 3000);
    yajl_tree_free(v);
    pc_buf_free(&b);
    /* many siblings are not depth */
    pc_buf_puts(&b, "[");
    for (int i = 0; i < 10000; i++)
        pc_buf_puts(&b, i ? ",[]" : "[]");
    pc_buf_puts(&b, "]");
    v = pc_json_parse(b.data, b.len);
    assert_non_null(v);
    assert_int_equal(v->u.array.len, 10000);
    yajl_tree_free(v);
    pc_buf_free(&b);
}

/* The string value of key "a" in s, or NULL when s is refused. */
static char *value_a(const char *s)
{
    yajl_val v = pc_json_parse(s, strlen(s));
    if (v == NULL)
        return NULL;
    char *out = pc_xstrdup(str_of(pc_json_get(v, "a")));
    yajl_tree_free(v);
    return out;
}

#define ASSERT_A(json, want)                        \
    do {                                            \
        char *got_ = value_a(json);                 \
        assert_non_null(got_);                      \
        assert_string_equal(got_, (want));          \
        free(got_);                                 \
    } while (0)

static void test_parse_lone_surrogates_become_fffd(void **state)
{
    /* Node: JSON.parse keeps a lone surrogate, TextEncoder / Buffer.from
     * (scrypt's input, node-postgres's parameters) make it EF BF BD */
    ASSERT_A("{\"a\":\"\\ud800\"}", "\xef\xbf\xbd");
    ASSERT_A("{\"a\":\"\\udc00\"}", "\xef\xbf\xbd");
    ASSERT_A("{\"a\":\"\\uDBFF\"}", "\xef\xbf\xbd");
    ASSERT_A("{\"a\":\"x\\ud800y\"}", "x\xef\xbf\xbdy");
    /* a high half followed by something that is not a low half */
    ASSERT_A("{\"a\":\"\\ud800\\u0041\"}", "\xef\xbf\xbd" "A");
    ASSERT_A("{\"a\":\"\\ud800\\ud800\"}", "\xef\xbf\xbd\xef\xbf\xbd");
    ASSERT_A("{\"a\":\"\\ud800\\n\"}", "\xef\xbf\xbd\n");
    /* reversed halves are two lone ones */
    ASSERT_A("{\"a\":\"\\ude00\\ud83d\"}", "\xef\xbf\xbd\xef\xbf\xbd");
    /* a lone half, then a real pair */
    ASSERT_A("{\"a\":\"\\ud800\\ud83d\\ude00\"}", "\xef\xbf\xbd\xf0\x9f\x98\x80");
    /* pairs stay pairs, in either case of hex digits */
    ASSERT_A("{\"a\":\"\\uD83D\\uDE00\"}", "\xf0\x9f\x98\x80");
    ASSERT_A("{\"a\":\"\\udbff\\udfff\"}", "\xf4\x8f\xbf\xbf");
    /* in keys too */
    yajl_val v = pc_json_parse("{\"\\ud800\":1}", 12);
    assert_non_null(v);
    assert_string_equal(v->u.object.keys[0], "\xef\xbf\xbd");
    yajl_tree_free(v);
    /* an escaped backslash before "ud800" is text, not an escape */
    ASSERT_A("{\"a\":\"\\\\ud800\"}", "\\ud800");
    ASSERT_A("{\"a\":\"\\\\u0000\"}", "\\u0000");
    /* every string in any tree is well-formed UTF-8 */
    const char *t = "[\"\\udfff\",\"\\ud800\\udbff\\udc00\",{\"k\\udc01\":\"\\ud801z\"}]";
    v = pc_json_parse(t, strlen(t));
    assert_non_null(v);
    for (size_t i = 0; i < 2; i++)
        assert_true(pc_utf8_valid(v->u.array.values[i]->u.string,
                                  strlen(v->u.array.values[i]->u.string)));
    yajl_val o = v->u.array.values[2];
    assert_true(pc_utf8_valid(o->u.object.keys[0], strlen(o->u.object.keys[0])));
    assert_string_equal(o->u.object.values[0]->u.string, "\xef\xbf\xbdz");
    yajl_tree_free(v);
    /* a truncated escape is still refused */
    REJ("{\"a\":\"\\ud80\"}", "a three-digit \\u escape");
    REJ("{\"a\":\"\\ud800\\u12\"}", "a truncated low half");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_escaping),
        cmocka_unit_test(test_quote_all_control_chars_roundtrip),
        cmocka_unit_test(test_writer_nesting_and_commas),
        cmocka_unit_test(test_writer_top_level_array_and_scalars),
        cmocka_unit_test(test_writer_deep_nesting),
        cmocka_unit_test(test_parse_and_get),
        cmocka_unit_test(test_parse_rejects_nul),
        cmocka_unit_test(test_parse_rejects_invalid_json),
        cmocka_unit_test(test_parse_rejects_comments),
        cmocka_unit_test(test_parse_rejects_non_utf8_forms),
        cmocka_unit_test(test_parse_depth_limit),
        cmocka_unit_test(test_parse_lone_surrogates_become_fffd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
