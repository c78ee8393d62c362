/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_ocsp_pace.c: when the gateway fetches a certificate's OCSP
 * response again (gw_ocsp_next_fetch_s, ocsp_staple.c's one pure decision):
 *
 *   good      at half the time left before nextUpdate, at most
 *             GATEWAY_TLS_OCSP_REFRESH_SECONDS, at least 30 s (or the
 *             refresh period when that is shorter)
 *   failed    30 s, doubling per failure in a row, up to 10 minutes; never
 *             more than the refresh period apart
 */
#include "test_gw.h"

#define HOUR 3600

static void test_good_half_the_time_left(void **state)
{
    (void)state;
    assert_int_equal(gw_ocsp_next_fetch_s(true, 7200, 0, HOUR), HOUR);   /* capped */
    assert_int_equal(gw_ocsp_next_fetch_s(true, 3000, 0, HOUR), 1500);
    assert_int_equal(gw_ocsp_next_fetch_s(true, 60, 0, HOUR), 30);
    assert_int_equal(gw_ocsp_next_fetch_s(true, 20, 0, HOUR), 30);       /* the least gap */
    assert_int_equal(gw_ocsp_next_fetch_s(true, 0, 0, HOUR), 30);
    assert_int_equal(gw_ocsp_next_fetch_s(true, 7 * 86400, 0, 86400), 86400);
}

static void test_failures_back_off_to_ten_minutes(void **state)
{
    (void)state;
    static const int64_t want[] = {30, 60, 120, 240, 480, 600, 600};
    for (unsigned f = 1; f <= PC_ARRAY_LEN(want); f++)
        assert_int_equal(gw_ocsp_next_fetch_s(false, 0, f, HOUR), want[f - 1]);
    assert_int_equal(gw_ocsp_next_fetch_s(false, 0, 1000000, HOUR), 600);
    /* the time left of a response kept from before does not matter */
    assert_int_equal(gw_ocsp_next_fetch_s(false, 5000, 2, HOUR), 60);
}

static void test_short_refresh_period_bounds_both(void **state)
{
    (void)state;
    for (unsigned f = 0; f < 40; f++) {
        assert_int_equal(gw_ocsp_next_fetch_s(false, 0, f, 1), 1);
        assert_int_equal(gw_ocsp_next_fetch_s(true, f * 1000, 0, 1), 1);
    }
    assert_int_equal(gw_ocsp_next_fetch_s(false, 0, 3, 100), 100);
    assert_int_equal(gw_ocsp_next_fetch_s(true, 150, 0, 100), 75);
    assert_int_equal(gw_ocsp_next_fetch_s(true, 10, 0, 20), 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_half_the_time_left),
        cmocka_unit_test(test_failures_back_off_to_ten_minutes),
        cmocka_unit_test(test_short_refresh_period_bounds_both),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
