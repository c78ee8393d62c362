/* Portcullis - MIT licence. See LICENSE.
 *
 * test_gw_reload.c: the routes tables' life (gateway/routes_file.c), as
 * SIGHUP drives it: a table is published whole or not at all, each worker
 * hands out the current one and lets go of the older ones it handed out,
 * and a replaced table is freed once the last worker has let go of it and
 * its last request has ended (and not before). Two workers, without loops:
 * gw_table_take/drop/adopt are called as request.c and worker.c call them.
 * The same seen end to end: tests/e2e/gateway/test_gw_reload.py.
 */
#include "test_gw.h"

#define ROUTES(p) "{\"routes\": [{\"prefix\": \"" p "\", " GWT_UP ", \"auth\": [\"none\"]}]}"

static uint64_t live(void)
{
    return __atomic_load_n(&gw_stats.route_tables, __ATOMIC_RELAXED);
}

static int reload(const char *json, char *err, size_t n)
{
    return gw_routes_load_text(json, strlen(json), "unit", err, n);
}

static void test_tables_live_until_their_last_holder(void **state)
{
    (void)state;
    static const char *const env[] = {"GATEWAY_WORKERS=2", NULL};
    gwt_load(ROUTES("/a/"), env);
    struct gw_worker w[2] = {{.id = 0}, {.id = 1}};
    gw_table_worker_start(&w[0]);
    gw_table_worker_start(&w[1]);
    struct gw_table *a = gw_table_take(&w[0]);   /* a request on worker 0 */
    assert_int_equal(a->gen, 1);
    assert_int_equal(live(), 1);

    char err[600] = "";
    assert_int_equal(reload(ROUTES("/b/"), err, sizeof err), 0);
    struct gw_table *b = gw_cfg.table;
    assert_int_equal(b->gen, 2);
    assert_string_equal(b->routes[0].prefix, "/b/");
    assert_int_equal(live(), 2);
    /* worker 1 moves on; worker 0 still has a request on a */
    struct gw_table *t1 = gw_table_take(&w[1]);
    assert_ptr_equal(t1, b);
    gw_table_drop(&w[1], t1);
    assert_ptr_equal(gw_table_adopt(&w[0]), b);
    assert_int_equal(live(), 2);
    assert_string_equal(a->routes[0].prefix, "/a/"); /* still whole for its request */

    /* a third table while worker 1 never saw the second change hands */
    assert_int_equal(reload(ROUTES("/c/"), err, sizeof err), 0);
    assert_int_equal(live(), 3);
    gw_table_drop(&w[0], a);                      /* a's last request ends */
    assert_int_equal(live(), 2);
    gw_table_adopt(&w[0]);
    gw_table_adopt(&w[1]);                        /* b: nobody holds it now */
    assert_int_equal(live(), 1);
    assert_int_equal(gw_cfg.table->gen, 3);

    gw_table_worker_stop(&w[0]);
    gw_table_worker_stop(&w[1]);
    gwt_unload();
    assert_int_equal(live(), 0);
}

static void test_a_refused_table_changes_nothing(void **state)
{
    (void)state;
    static const char *const env[] = {"GATEWAY_WORKERS=1", NULL};
    gwt_load(ROUTES("/a/"), env);
    struct gw_table *a = gw_cfg.table;
    size_t ups = gw_cfg.nupstreams;
    char err[600] = "";
    /* a new upstream, then an error: the upstream is dropped again */
    const char *bad = "{\"routes\": [{\"prefix\": \"/n/\", \"upstream\": \"http://127.0.0.1:9\", "
                      "\"auth\": [\"none\"]}, {\"prefix\": \"/x/\", " GWT_UP ", \"auth\": [\"nope\"]}]}";
    assert_int_not_equal(reload(bad, err, sizeof err), 0);
    assert_non_null(strstr(err, "routes[1].auth[0]: unknown kind"));
    assert_ptr_equal(gw_cfg.table, a);
    assert_int_equal(gw_cfg.nupstreams, ups);
    assert_int_equal(live(), 1);
    /* a syntax error names its line */
    assert_int_not_equal(reload("{\"routes\": [\n{,}]}", err, sizeof err), 0);
    assert_non_null(strstr(err, "line 2"));
    assert_ptr_equal(gw_cfg.table, a);
    /* the same upstream in a good table is the registry's entry, not a new one */
    assert_int_equal(reload(ROUTES("/b/"), err, sizeof err), 0);
    assert_int_equal(gw_cfg.nupstreams, ups);
    assert_ptr_equal(gw_cfg.table->routes[0].targets[0], a->routes[0].targets[0]);
    gwt_unload();
}

static void test_prefix_slots_outlive_tables(void **state)
{
    (void)state;
    gwt_load(ROUTES("/a/"), NULL);
    unsigned slot_a = gw_cfg.table->routes[0].slot;
    char err[600] = "";
    assert_int_equal(reload("{\"routes\": [{\"prefix\": \"/b/\", " GWT_UP ", \"auth\": [\"none\"]},"
                            "{\"prefix\": \"/a/\", " GWT_UP ", \"auth\": [\"none\"]}]}",
                            err, sizeof err), 0);
    assert_int_equal(gwt_route("/a/")->slot, slot_a); /* its counters go on */
    assert_int_not_equal(gwt_route("/b/")->slot, slot_a);
    assert_int_equal(atomic_load(&gw_cfg.nroute_slots), 2);
    gwt_unload();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_live_until_their_last_holder),
        cmocka_unit_test(test_a_refused_table_changes_nothing),
        cmocka_unit_test(test_prefix_slots_outlive_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
