/* Portcullis - MIT licence. See LICENSE.
 *
 * main.c: authsvc's entry point.
 *
 *   authsvc --help     the configuration table
 *   authsvc --version  the version, and exit
 *   authsvc --check    validate the environment and exit (0, or 2 naming the
 *                      bad variable; opens no connection)
 *   authsvc migrate    apply database migrations and exit
 *   authsvc            serve (server.c)
 *
 * Start-up order: configuration (exit 2 naming the bad variable), log, then
 * the server, which starts its prober and pools before it listens.
 */
#include "authsvc.h"
#include "server.h"
#include "../lib/log.h"
#include "../lib/redis_sentinel.h"

#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        as_config_help();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("authsvc %s\n", PC_VERSION);
        return 0;
    }
    bool migrate = argc > 1 && strcmp(argv[1], "migrate") == 0;
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    if (argc > 2 || (argc > 1 && !migrate && !check)) {
        fprintf(stderr, "authsvc: unknown argument \"%s\" (try --help)\n", argv[argc - 1]);
        return 2;
    }
    if (as_config_load() != 0) {
        as_config_free();
        return 2;
    }
    int rc;
    if (check) {
        printf("authsvc: configuration ok\n");
        rc = 0;
    } else if (migrate) {
        rc = as_migrate_run(as_direct_url());   /* its advisory lock needs a session */
    } else {
        if (pc_log_open(as_cfg.log_path, (enum pc_log_level)pc_log_level_parse(as_cfg.log_level),
                        "authsvc") != 0) {
            fprintf(stderr, "authsvc: cannot open AUTHSVC_LOG %s\n", as_cfg.log_path);
            as_config_free();
            return 2;
        }
        pc_sentinel_start(as_cfg.redis_sentinels, as_cfg.redis_sentinel_master,
                          as_cfg.redis_sentinel_password, SENTINEL_WAIT_MS);
        rc = as_server_run();
        pc_sentinel_stop();
        pc_log_close();
    }
    as_config_free();
    OPENSSL_cleanup();
    return rc;
}
