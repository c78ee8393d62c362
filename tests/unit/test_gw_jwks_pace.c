/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_jwks_pace.c: when the gateway fetches an issuer's JWKS
 * (gw_jwks_fetch_at) and whether a token with an unknown kid waits for the
 * fetch or is refused at once (gw_jwks_on_miss), the two pure decisions of
 * jwks.c (issue 16):
 *
 *   unasked        the set's expiry; after failures JWKS_REFETCH_MS doubling
 *                  per failure up to a minute
 *   asked          JWKS_KID_REFETCH_MS after the last fetch, however many
 *                  failed (never later than the unasked fetch)
 *   in flight      no second fetch; a token waits for the one in flight
 *   issuer failed  a token within JWKS_KID_REFETCH_MS of the failure is
 *                  refused and asks; later ones wait for a fetch at once
 *
 * Then both together, on a simulated clock: an issuer down at start and
 * back later is fetched within JWKS_KID_REFETCH_MS of its return though
 * JWKS_REFETCH_MS is 30 s, and a flood of unknown kids makes at most one
 * fetch per JWKS_KID_REFETCH_MS.
 */
#include "test_gw.h"

#define T0 1000000LL            /* ms: some monotonic time */
#define REFETCH 5000            /* JWKS_REFETCH_MS default */
#define KID 1000                /* JWKS_KID_REFETCH_MS default */

static struct gw_jwks_pace pace(int64_t last, unsigned fails, bool want)
{
    struct gw_jwks_pace p = {.last_attempt = last, .fails = fails, .want = want};
    return p;
}

static void test_first_fetch_at_once(void **state)
{
    (void)state;
    struct gw_jwks_pace p = pace(0, 0, false);
    assert_true(gw_jwks_fetch_at(&p, false, REFETCH, KID) <= T0);
    p.want = true;
    assert_true(gw_jwks_fetch_at(&p, false, REFETCH, KID) <= T0);
}

static void test_one_fetch_in_flight(void **state)
{
    (void)state;
    struct gw_jwks_pace p = pace(T0, 3, true);
    p.fetching = true;
    assert_int_equal(gw_jwks_fetch_at(&p, false, REFETCH, KID), INT64_MAX);
    assert_int_equal(gw_jwks_fetch_at(&p, true, REFETCH, KID), INT64_MAX);
    p.last_attempt = 0;     /* the very first fetch, under way */
    assert_int_equal(gw_jwks_fetch_at(&p, false, REFETCH, KID), INT64_MAX);
}

static void test_fresh_set(void **state)
{
    (void)state;
    struct gw_jwks_pace p = pace(T0, 0, false);
    p.expires_at = T0 + 600000;
    assert_int_equal(gw_jwks_fetch_at(&p, true, REFETCH, KID), T0 + 600000);
    p.want = true;          /* an unknown kid: KID after the last fetch */
    assert_int_equal(gw_jwks_fetch_at(&p, true, REFETCH, KID), T0 + KID);
    p.expires_at = T0 + 300;    /* expiring sooner anyway */
    assert_int_equal(gw_jwks_fetch_at(&p, true, REFETCH, KID), T0 + 300);
}

static void test_unasked_backoff_doubles_up_to_a_minute(void **state)
{
    (void)state;
    static const struct {
        int64_t refetch;
        unsigned fails;
        int64_t gap;
    } rows[] = {
        {5000, 1, 10000},   {5000, 2, 20000},   {5000, 3, 40000},   {5000, 4, 60000},
        {5000, 5, 60000},   {5000, 1000, 60000}, {100, 1, 200},     {100, 9, 51200},
        {100, 10, 60000},   {30000, 1, 60000},  {30000, 7, 60000},  {60000, 1, 60000},
        {3600000, 1, 3600000}, {3600000, 4, 3600000},
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(rows); i++) {
        struct gw_jwks_pace p = pace(T0, rows[i].fails, false);
        int64_t want = T0 + rows[i].gap;
        int64_t got = gw_jwks_fetch_at(&p, false, rows[i].refetch, KID);
        if (got != want)
            fail_msg("row %zu: refetch %lld, %u failures: at +%lld, want +%lld", i,
                     (long long)rows[i].refetch, rows[i].fails, (long long)(got - T0),
                     (long long)rows[i].gap);
        /* a set kept from before the failures backs off the same way */
        p.expires_at = T0 + 600000;
        assert_int_equal(gw_jwks_fetch_at(&p, true, rows[i].refetch, KID), want);
    }
}

static void test_asked_gap_never_grows(void **state)
{
    (void)state;
    for (unsigned fails = 0; fails <= 64; fails++) {
        struct gw_jwks_pace p = pace(T0, fails, true);
        p.expires_at = T0 + 600000;
        assert_int_equal(gw_jwks_fetch_at(&p, fails == 0, 30000, KID), T0 + KID);
        assert_int_equal(gw_jwks_fetch_at(&p, true, 30000, KID), T0 + KID);
        assert_int_equal(gw_jwks_fetch_at(&p, true, 30000, 250), T0 + 250);
    }
    /* asking never makes a fetch later than it would come unasked */
    struct gw_jwks_pace p = pace(T0, 1, true);
    assert_int_equal(gw_jwks_fetch_at(&p, false, 200, KID), T0 + 400);
}

static void test_on_miss(void **state)
{
    (void)state;
    struct gw_jwks_pace p = pace(0, 0, false);
    assert_int_equal(gw_jwks_on_miss(&p, T0, KID), GW_MISS_WAIT);    /* first fetch to come */
    p = pace(T0, 0, false);                                           /* answered at T0 */
    assert_int_equal(gw_jwks_on_miss(&p, T0 + 1, KID), GW_MISS_WAIT);
    assert_int_equal(gw_jwks_on_miss(&p, T0 + 5 * KID, KID), GW_MISS_WAIT);
    p = pace(T0, 2, false);                                           /* failed at T0 */
    assert_int_equal(gw_jwks_on_miss(&p, T0, KID), GW_MISS_ASK);
    assert_int_equal(gw_jwks_on_miss(&p, T0 + KID - 1, KID), GW_MISS_ASK);
    assert_int_equal(gw_jwks_on_miss(&p, T0 + KID, KID), GW_MISS_WAIT);
    assert_int_equal(gw_jwks_on_miss(&p, T0 + 60 * KID, KID), GW_MISS_WAIT);
    p.fetching = true;                                                /* a retry under way */
    assert_int_equal(gw_jwks_on_miss(&p, T0 + 1, KID), GW_MISS_WAIT);
}

/* ---- both together, as jwks.c uses them, on a simulated clock ---- */

struct sim {
    struct gw_jwks_pace p;
    bool have_set;
    int64_t refetch, kid;
    int fetches, asked_fetches, ok_fetches;
    int64_t first_ok;       /* when a fetch first succeeded, 0: never */
    int waits, refusals;
};

/* The key thread's turn at now: a fetch takes fetch_ms and succeeds when up.
 * Returns the time after it. */
static int64_t sim_thread(struct sim *s, int64_t now, bool up, int64_t fetch_ms)
{
    if (gw_jwks_fetch_at(&s->p, s->have_set, s->refetch, s->kid) > now)
        return now;
    s->fetches++;
    s->asked_fetches += s->p.want;
    s->p.want = false;
    s->p.last_attempt = now;
    if (up) {
        s->have_set = true;
        s->p.expires_at = now + 600000;
        s->p.fails = 0;
        s->ok_fetches++;
        if (s->first_ok == 0)
            s->first_ok = now + fetch_ms;
    } else {
        s->p.fails++;
    }
    return now + fetch_ms;
}

/* A token whose kid is unknown arrives at now (no fetch in flight). */
static void sim_miss(struct sim *s, int64_t now)
{
    if (gw_jwks_on_miss(&s->p, now, s->kid) == GW_MISS_WAIT)
        s->waits++;
    else
        s->refusals++;
    s->p.want = true;
}

static void test_sim_issuer_down_at_start(void **state)
{
    (void)state;
    /* JWKS_REFETCH_MS 30 s: unasked, the gateway would not look again for a
     * minute; tokens every 50 ms while it is down (10.37 s), then it is back */
    struct sim s = {.refetch = 30000, .kid = KID};
    const int64_t up_at = T0 + 10370;
    for (int64_t t = T0; t < T0 + 20000; t += 10) {
        if ((t - T0) % 50 == 0 && !s.have_set)
            sim_miss(&s, t);
        sim_thread(&s, t, t >= up_at, 0);
    }
    assert_true(s.first_ok != 0);
    if (s.first_ok > up_at + KID)
        fail_msg("fetched %lld ms after the issuer was back", (long long)(s.first_ok - up_at));
    /* while down: one fetch a KID at most, and one to start with */
    if (s.fetches > 10000 / KID + 2)
        fail_msg("%d fetches in 10 s down, one per %d ms allowed", s.fetches, KID);
    assert_true(s.fetches >= 10000 / KID);  /* and they do come: one per KID */
    assert_true(s.refusals > 0 && s.waits > 0);
    /* at least one fetch is asked for; refusals are most tokens, waits one per fetch */
    assert_true(s.asked_fetches >= s.fetches - 1);
    assert_true(s.waits <= s.fetches);
}

static void test_sim_down_with_slow_failures(void **state)
{
    (void)state;
    /* a failing fetch that takes 300 ms (a timeout): asked fetches still
     * begin KID apart, and the issuer back at 7.3 s is fetched within KID */
    struct sim s = {.refetch = 30000, .kid = KID};
    const int64_t up_at = T0 + 7300;
    int64_t busy_until = 0;
    for (int64_t t = T0; t < T0 + 15000; t += 10) {
        if (t < busy_until)
            continue;       /* the thread is in a fetch: tokens wait on it */
        if ((t - T0) % 50 == 0 && !s.have_set)
            sim_miss(&s, t);
        busy_until = sim_thread(&s, t, t >= up_at, 300);
    }
    assert_true(s.first_ok != 0);
    if (s.first_ok > up_at + KID + 300)
        fail_msg("fetched %lld ms after the issuer was back", (long long)(s.first_ok - up_at));
}

static void test_sim_flood_of_unknown_kids(void **state)
{
    (void)state;
    /* a healthy issuer, an unknown kid every millisecond for 10 s */
    struct sim s = {.refetch = REFETCH, .kid = KID, .have_set = true};
    s.p = pace(T0 - 2 * KID, 0, false);
    s.p.expires_at = T0 + 600000;
    for (int64_t t = T0; t < T0 + 10000; t++) {
        sim_miss(&s, t);
        sim_thread(&s, t, true, 0);
    }
    if (s.fetches > 10000 / KID + 1)
        fail_msg("%d fetches for 10000 unknown kids in 10 s", s.fetches);
    assert_int_equal(s.refusals, 0);    /* a healthy issuer: each waits for a fetch */
    /* and a failing one: the same bound */
    struct sim d = {.refetch = REFETCH, .kid = KID, .have_set = true};
    d.p = pace(T0 - 2 * KID, 1, false);
    for (int64_t t = T0; t < T0 + 10000; t++) {
        sim_miss(&d, t);
        sim_thread(&d, t, false, 0);
    }
    if (d.fetches > 10000 / KID + 1)
        fail_msg("%d fetches for 10000 unknown kids in 10 s, issuer down", d.fetches);
    assert_true(d.refusals > 9000);     /* almost all refused at once, not parked */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_fetch_at_once),
        cmocka_unit_test(test_one_fetch_in_flight),
        cmocka_unit_test(test_fresh_set),
        cmocka_unit_test(test_unasked_backoff_doubles_up_to_a_minute),
        cmocka_unit_test(test_asked_gap_never_grows),
        cmocka_unit_test(test_on_miss),
        cmocka_unit_test(test_sim_issuer_down_at_start),
        cmocka_unit_test(test_sim_down_with_slow_failures),
        cmocka_unit_test(test_sim_flood_of_unknown_kids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
