/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_gw_routes.c: the routes file (gateway/routes_file.c gw_routes_load_text),
 * every key of every route and the jwt_issuers list. A table that loads is
 * asked for a route by a few requests (gw_route_find), then freed; one that
 * does not must say why. LeakSanitizer checks that a refused table leaves
 * nothing behind (SIGHUP reload will refuse tables while running).
 */
#include "fuzz_gw.h"
#include "../../lib/http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_gw_load(FZ_GW_ROUTES, NULL);
    gw_routes_free();
    return 0;
}

static void ask(const char *head)
{
    char *buf = fz_str((const uint8_t *)head, strlen(head));
    struct pc_http_head h;
    if (pc_http_parse_request(buf, strlen(buf), &h) != PC_HTTP_OK)
        abort();
    struct gw_request *r = calloc(1, sizeof *r);
    if (r == NULL)
        abort();
    gw_cred_init(r);
    r->table = gw_cfg.table; /* not counted: no worker (gw_table_take) here */
    r->head = &h;
    r->method = h.method;
    if (gw_target_split(h.target, &r->path, &r->query) != 0)
        abort();
    const struct gw_route *rt = gw_route_find(r);
    if (rt)
        FZ_CHECK(rt >= r->table->routes && rt < r->table->routes + r->table->nroutes, "route");
    r->table = NULL;
    gw_request_free(r);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char err[600];
    err[0] = '\0';
    if (gw_routes_load_text((const char *)data, n, "fuzz", err, sizeof err) == 0) {
        FZ_CHECK(gw_cfg.table->nroutes > 0, "a table without routes");
        ask("GET /a/b?c=d HTTP/1.1\r\nHost: x.b.test\r\n\r\n");
        ask("POST /oc/pc_key/session/list HTTP/1.1\r\nHost: a.test\r\n\r\n");
        ask("GET / HTTP/1.1\r\n\r\n");
    } else {
        FZ_CHECK(err[0] != '\0', "refused without a reason");
    }
    gw_routes_free();
    return 0;
}
