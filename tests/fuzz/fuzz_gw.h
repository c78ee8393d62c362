/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_gw.h: the gateway targets' configuration. gw_cfg is loaded once, by
 * gw_config_load, from a cleared environment and a routes file written to a
 * temporary file (as tests/unit/test_gw.h does); the database is never
 * asked. FZ_GW_ROUTES covers every kind of match: prefixes with and without
 * an :apiKey segment, hosts (exact and wildcard), methods, strip_prefix,
 * public and authenticated routes.
 */
#ifndef FUZZ_GW_H
#define FUZZ_GW_H

#include "fuzz.h"
#include "../../gateway/types.h"
#include "../../gateway/config.h"
#include "../../gateway/request.h"
#include "../../gateway/stages.h"

#include <unistd.h>

#define FZ_GW_SECRET "better-auth-secret-12345678901234567890"
#define FZ_UP "\"upstream\": \"http://127.0.0.1:9\""
#define FZ_GW_ROUTES                                                                          \
    "{\"routes\": ["                                                                          \
    "{\"prefix\": \"/s/\", " FZ_UP ", \"auth\": [\"session\"]},"                               \
    "{\"prefix\": \"/k/\", " FZ_UP ", \"auth\": [\"api_key\"]},"                               \
    "{\"prefix\": \"/mj/\", " FZ_UP ", \"auth\": [\"session\", \"jwt\", \"api_key\"]},"        \
    "{\"prefix\": \"/j/\", " FZ_UP ", \"auth\": [\"jwt\"]},"                                   \
    "{\"prefix\": \"/pub/\", " FZ_UP ", \"auth\": [\"none\"]},"                                \
    "{\"prefix\": \"/perm/\", " FZ_UP ", \"auth\": [\"api_key\"],"                             \
    " \"permissions\": {\"files\": [\"read\", \"write\"]}},"                                   \
    "{\"prefix\": \"/oc/:apiKey/\", " FZ_UP ", \"auth\": [\"api_key\"], \"strip_prefix\": true}," \
    "{\"prefix\": \"/v/:apiKey/sub/\", " FZ_UP ", \"auth\": [\"api_key\"]},"                   \
    "{\"prefix\": \"/based/\", \"upstream\": \"http://127.0.0.1:9/base\","                      \
    " \"auth\": [\"session\", \"api_key\"], \"strip_prefix\": true},"                          \
    "{\"prefix\": \"/h/\", " FZ_UP ", \"auth\": [\"none\"], \"hosts\": [\"a.test\", \"*.b.test\"]}," \
    "{\"prefix\": \"/h/\", " FZ_UP ", \"auth\": [\"session\"], \"methods\": [\"POST\"]},"      \
    "{\"prefix\": \"/\", " FZ_UP ", \"auth\": [\"session\", \"api_key\", \"jwt\"]}"           \
    "]}"

/* Loads gw_cfg once; env: extra "NAME=value" strings, NULL-ended. */
static inline void fz_gw_load(const char *routes_json, const char *const *env)
{
    char path[] = "/tmp/pc-fuzz-routes-XXXXXX";
    int fd = mkstemp(path);
    size_t n = strlen(routes_json);
    if (fd < 0 || write(fd, routes_json, n) != (ssize_t)n)
        abort();
    close(fd);
    if (clearenv() != 0)
        abort();
    setenv("DATABASE_URL", "postgres://127.0.0.1:1/fuzz", 1);
    setenv("BETTER_AUTH_SECRET", FZ_GW_SECRET, 1);
    setenv("GATEWAY_ROUTES", path, 1);
    for (size_t i = 0; env && env[i]; i++)
        setenv(env[i], env[i] + strlen(env[i]) + 1, 1);
    int rc = gw_config_load();
    unlink(path);
    if (rc != 0)
        abort();
}

#endif
