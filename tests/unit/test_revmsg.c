/* Portcullis - MIT licence. See LICENSE.
 *
 * test_revmsg.c: the revocation feed's messages and tags, with golden
 * values (the hash is base64url SHA-256("abc"), from Python's hashlib).
 */
#include "../../lib/revmsg.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define H_ABC "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"

static bool parse(const char *m, struct pc_rev_msg *out)
{
    return pc_rev_parse(m, strlen(m), out);
}

static void test_parse_numbered_hash(void **state)
{
    struct pc_rev_msg m;
    assert_true(parse("#42 " H_ABC, &m));
    assert_int_equal(m.seq, 42);
    assert_int_equal(m.kind, 'h');
    assert_int_equal(m.id_len, 43);
    assert_memory_equal(m.id, H_ABC, 43);
    assert_int_equal(m.hash[0], 0xba);
    assert_int_equal(m.hash[31], 0xad);
}

static void test_parse_bare_forms(void **state)
{
    struct pc_rev_msg m;
    assert_true(parse(H_ABC, &m));          /* an operator's PUBLISH */
    assert_int_equal(m.seq, 0);
    assert_int_equal(m.kind, 'h');
    assert_true(parse("sid:AbC123_-x", &m));
    assert_int_equal(m.kind, 'i');
    assert_int_equal(m.id_len, 9);
    assert_true(parse("#7 sid:abc", &m));
    assert_int_equal(m.seq, 7);
    assert_int_equal(m.kind, 'i');
}

static void test_parse_refuses(void **state)
{
    struct pc_rev_msg m;
    const char *bad[] = {
        "", "#", "#1", "#1 ", "# " H_ABC, "#0 " H_ABC, "#-1 " H_ABC, "#1x " H_ABC,
        "#12345678901234567890 " H_ABC, "#1  " H_ABC, "hash1", H_ABC "A",
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa", "sid:", "sid:a b", "sid:a/b",
        "sid:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 65 */
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        if (parse(bad[i], &m))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    /* an embedded NUL is not the hash it hides */
    char nul[] = H_ABC;
    nul[5] = '\0';
    assert_false(pc_rev_parse(nul, 43, &m));
}

static void test_tags(void **state)
{
    assert_true(pc_rev_tag_ok("s:" H_ABC));
    assert_true(pc_rev_tag_ok("k:" H_ABC));
    assert_true(pc_rev_tag_ok("i:Zx81mQ0aWkS1"));
    assert_false(pc_rev_tag_ok("x:" H_ABC));
    assert_false(pc_rev_tag_ok("s:short"));
    assert_false(pc_rev_tag_ok("i:"));
    assert_false(pc_rev_tag_ok("i:has space"));
    assert_false(pc_rev_tag_ok("s" H_ABC));
    assert_false(pc_rev_tag_ok(""));
}

static void test_seq_check(void **state)
{
    int64_t last = 0;
    assert_false(pc_rev_seq_check(&last, 5));   /* the first after subscribing */
    assert_int_equal(last, 5);
    assert_false(pc_rev_seq_check(&last, 6));
    assert_true(pc_rev_seq_check(&last, 8));    /* 7 went missing */
    assert_int_equal(last, 8);
    assert_false(pc_rev_seq_check(&last, 9));
    assert_true(pc_rev_seq_check(&last, 1));    /* Redis lost its counter */
    assert_int_equal(last, 1);
    assert_true(pc_rev_seq_check(&last, 1));    /* a repeat is not the next one */
    assert_false(pc_rev_seq_check(&last, 0));   /* unnumbered: no opinion */
    assert_int_equal(last, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_numbered_hash),
        cmocka_unit_test(test_parse_bare_forms),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_seq_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
