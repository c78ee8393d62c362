/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_gw_request.c: a request head through the gateway's pure stages, in
 * the front's order: pc_http_parse_request (front.c), the target split and
 * the path rule (intake.c gw_target_split, gw_path_plain), forward auth
 * (route.c gw_forward_auth_read for /_auth: the original URI, method and
 * host from nginx's, Traefik's or Envoy's headers, the proxy chosen by the
 * input's length), the route (gw_route_find over FZ_GW_ROUTES, hosts,
 * methods, :apiKey and strip_prefix included) and the credential (extract.c gw_extract_cred:
 * :apiKey segment, x-api-key, Authorization, every Cookie line). Checks: a
 * path that passes is plain and under its route's prefix; an upstream path
 * starts with '/'; a credential is as long as it says and r->hash is its
 * SHA-256; a refusal is a 401 with a code.
 */
#include "fuzz_gw.h"
#include "../../lib/http.h"
#include "../../lib/crypto.h"

/* FORWARD_AUTH_PROXY nginx, traefik, envoy: what gw_config_load made of each */
static struct {
    enum gw_fa_proxy mode;
    const char *uri, *method, *host;
} proxies[3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char *const names[3] = {"nginx", "traefik", "envoy"};
    for (int i = 2; i >= 0; i--) {
        const char *env[] = {"API_KEY_PREFIXES\0pc_,sk_", NULL, NULL};
        char fa[64];
        snprintf(fa, sizeof fa, "FORWARD_AUTH_PROXY%c%s", 0, names[i]);
        env[1] = fa;
        if (i < 2)
            gw_config_free(); /* the names kept are the built-in ones, not freed */
        fz_gw_load(FZ_GW_ROUTES, env);
        proxies[i].mode = gw_cfg.fa_mode;
        proxies[i].uri = gw_cfg.fa_uri_name;
        proxies[i].method = gw_cfg.fa_method_name;
        proxies[i].host = gw_cfg.fa_host_name;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    char *buf = fz_str(data, n);
    struct pc_http_head h;
    if (pc_http_parse_request(buf, n, &h) != PC_HTTP_OK) {
        free(buf);
        return 0;
    }
    struct gw_request *r = calloc(1, sizeof *r);
    if (r == NULL)
        abort();
    gw_cred_init(r);
    r->table = gw_cfg.table; /* not counted: no worker (gw_table_take) here */
    r->head = &h;
    r->method = h.method;
    r->head_method = strcmp(h.method, "HEAD") == 0;
    if (gw_target_split(h.target, &r->path, &r->query) == 0) {
        FZ_CHECK(r->path[0] == '/' && strchr(r->path, '?') == NULL, "path %s", r->path);
        int p = (int)(n % 3);
        gw_cfg.fa_mode = proxies[p].mode;
        gw_cfg.fa_uri_name = proxies[p].uri;
        gw_cfg.fa_method_name = proxies[p].method;
        gw_cfg.fa_host_name = proxies[p].host;
        bool plain = gw_path_plain(r->path);
        if (plain && gw_forward_auth_target(r->path)) {
            r->forward_auth = true;
            struct gw_refusal why = {0};
            plain = gw_forward_auth_read(r, &why);
            if (plain)
                FZ_CHECK(gw_path_plain(r->path) && r->path[0] == '/', "original path %s", r->path);
            else
                FZ_CHECK(why.status == 400 && why.code && why.msg, "forward auth refusal");
        }
        if (plain) {
            FZ_CHECK(strstr(r->path, "//") == NULL && strstr(r->path, "/../") == NULL,
                     "plain path %s", r->path);
            const struct gw_route *rt = gw_route_find(r);
            if (rt != NULL) {
                FZ_CHECK(r->route == rt, "route not recorded");
                if (r->upstream_path)
                    FZ_CHECK(r->upstream_path[0] == '/', "upstream path %s", r->upstream_path);
                struct gw_refusal why = {0};
                enum gw_extract_result x = gw_extract_cred(r, &why);
                if (x == GW_EXTRACT_OK) {
                    FZ_CHECK(r->cred_len > 0 && r->cred_len < GW_CRED_MAX &&
                                 strlen(r->cred) == r->cred_len,
                             "credential length");
                    unsigned char hash[32];
                    pc_sha256(r->cred, r->cred_len, hash);
                    FZ_CHECK(memcmp(hash, r->hash, 32) == 0, "hash is not SHA-256(cred)");
                } else if (x == GW_EXTRACT_ANSWERED) {
                    FZ_CHECK(why.status == 401 && why.code != NULL, "refusal %d", why.status);
                }
            }
        }
    }
    r->table = NULL;
    gw_request_free(r);
    free(buf);
    return 0;
}
