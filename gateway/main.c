/* Portcullis - MIT licence. See LICENSE.
 *
 * main.c: the gateway's entry point.
 *
 *   gateway --help      the configuration table
 *   gateway --version   the version, and exit
 *   gateway --check     validate the environment and the routes file, and exit
 *                       (0, or 2 naming the bad variable or route; opens no
 *                       connection, like nginx -t)
 *   gateway             serve
 *
 * Start-up order: configuration (exit 2
 * naming the bad variable or route), log, libevent threading, then
 * worker.c starts L1, the workers (each connecting to Redis and PostgreSQL)
 * and the revocation feed, and waits for SIGTERM/SIGINT.
 */
#include "config.h"
#include "worker.h"
#include "../lib/log.h"
#include "../lib/redis_sentinel.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/crypto.h>

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        gw_config_help();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("gateway %s\n", PC_VERSION);
        return 0;
    }
    bool check = argc > 1 && strcmp(argv[1], "--check") == 0;
    if (argc > 2 || (argc > 1 && !check)) {
        fprintf(stderr, "gateway: unknown argument \"%s\" (try --help)\n", argv[argc - 1]);
        return 2;
    }
    if (gw_config_load() != 0) {
        gw_config_free();
        return 2;
    }
    if (check) {
        printf("gateway: configuration ok: %zu routes, %zu JWT issuers\n", gw_cfg.table->nroutes,
               gw_cfg.table->nissuers);
        gw_config_free();
        OPENSSL_cleanup();
        return 0;
    }
    if (pc_log_open(gw_cfg.log_path, (enum pc_log_level)pc_log_level_parse(gw_cfg.log_level),
                    "gateway") != 0) {
        fprintf(stderr, "gateway: cannot open GATEWAY_LOG %s\n", gw_cfg.log_path);
        gw_config_free();
        return 2;
    }
    if (evthread_use_pthreads() != 0)
        pc_fatal("evthread_use_pthreads failed");
    pc_sentinel_start(gw_cfg.redis_sentinels, gw_cfg.redis_sentinel_master,
                      gw_cfg.redis_sentinel_password, SENTINEL_WAIT_MS);
    int rc = gw_worker_run();
    pc_sentinel_stop();
    pc_log_close();
    gw_config_free();
    libevent_global_shutdown();
    OPENSSL_cleanup();
    return rc;
}
