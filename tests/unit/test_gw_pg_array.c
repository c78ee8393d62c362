/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_pg_array.c: the text[] literal a batched PostgreSQL lookup sends
 * as $1 (gw_pg_text_array, pgstore.c). PostgreSQL's array input (the
 * manual's "Array Value Input"): a double-quoted element is taken as it is
 * but for backslash escapes, so braces, commas, spaces, NULL and empty
 * strings inside quotes are plain text; '"' and '\' need a backslash.
 */
#include "test_gw.h"

static void check(const char *const *vals, size_t n, const char *want)
{
    char *got = gw_pg_text_array(vals, n);
    assert_string_equal(got, want);
    free(got);
}

static void test_plain_values(void **state)
{
    (void)state;
    const char *one[] = {"abc"};
    check(one, 1, "{\"abc\"}");
    const char *three[] = {"k1_-A", "Zz09", "x"};
    check(three, 3, "{\"k1_-A\",\"Zz09\",\"x\"}");
    check(NULL, 0, "{}");
}

static void test_values_that_need_quoting(void **state)
{
    (void)state;
    const char *v[] = {"a\"b", "c\\d", "{e,f}", "NULL", "", " g "};
    check(v, 6, "{\"a\\\"b\",\"c\\\\d\",\"{e,f}\",\"NULL\",\"\",\" g \"}");
}

static void test_long_values(void **state)
{
    (void)state;
    /* every byte escaped: the worst case of the size bound */
    char big[GW_CRED_MAX];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *v[] = {big, big};
    char *got = gw_pg_text_array(v, 2);
    assert_int_equal(strlen(got), 2 * (2 * (sizeof big - 1) + 2) + 1 + 2);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_values),
        cmocka_unit_test(test_values_that_need_quoting),
        cmocka_unit_test(test_long_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
