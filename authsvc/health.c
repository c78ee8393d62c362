/* Portcullis - MIT licence. See LICENSE.
 *
 * health.c: what /ready reports. A prober thread checks PostgreSQL
 * (SELECT 1) and Redis (PING) every second on its own connections, and
 * workers report what they see in between, so /ready is answered on the
 * event loop from two flags without any I/O. When Redis answers again the
 * prober also delivers revocations that could not reach it.
 */
#include "authsvc.h"
#include "health.h"
#include "../lib/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <hiredis/hiredis.h>

#define PROBE_INTERVAL_MS 1000

static atomic_bool pg_ok, redis_ok;
static pthread_t prober;
static pthread_mutex_t stop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cv = PTHREAD_COND_INITIALIZER;
static bool stopping, started;

bool as_health_pg_ok(void) { return atomic_load(&pg_ok); }
bool as_health_redis_ok(void) { return atomic_load(&redis_ok); }

static void note(atomic_bool *flag, bool ok, const char *what)
{
    if (!ok)
        as_metrics_note_failure(flag == &pg_ok);
    bool was = atomic_exchange(flag, ok);
    if (was != ok) {
        if (ok)
            pc_log_info("%s is reachable", what);
        else
            pc_log_warn("%s is unreachable", what);
    }
}

void as_health_note_pg(bool ok) { note(&pg_ok, ok, "postgres"); }
void as_health_note_redis(bool ok) { note(&redis_ok, ok, "redis"); }

static void *prober_main(void *arg)
{
    struct pc_db db;
    struct pc_redis r;
    pc_db_init(&db, as_cfg.database_url);
    pc_redis_init(&r, &as_cfg.redis_addr, 500);
    pthread_mutex_lock(&stop_mu);
    while (!stopping) {
        pthread_mutex_unlock(&stop_mu);
        /* A dropped connection is retried at once, not after a back-off. */
        db.retry_at_ms = 0;
        r.retry_at_ms = 0;
        PGresult *res = pc_db_exec(&db, "SELECT 1", 0, NULL);
        as_health_note_pg(pc_db_ok(res));
        if (res)
            PQclear(res);
        const char *ping[] = {"PING"};
        as_health_note_redis(pc_redis_ok(&r, 1, ping));

        pthread_mutex_lock(&stop_mu);
        if (stopping)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (PROBE_INTERVAL_MS % 1000) * 1000000L;
        ts.tv_sec += PROBE_INTERVAL_MS / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&stop_cv, &stop_mu, &ts);
    }
    pthread_mutex_unlock(&stop_mu);
    pc_db_close(&db);
    pc_redis_close(&r);
    return NULL;
}

void as_health_start(void)
{
    if (pthread_create(&prober, NULL, prober_main, NULL) != 0)
        pc_fatal("health: pthread_create failed");
    started = true;
}

void as_health_stop(void)
{
    if (!started)
        return;
    pthread_mutex_lock(&stop_mu);
    stopping = true;
    pthread_cond_broadcast(&stop_cv);
    pthread_mutex_unlock(&stop_mu);
    pthread_join(prober, NULL);
    started = false;
}

/* ---- the paths ---- */

enum as_local as_local_path(const char *path, size_t n, bool admin)
{
    static const struct {
        const char *name;
        enum as_local kind;
    } names[] = {{"/health", AS_LOCAL_HEALTH}, {"/live", AS_LOCAL_LIVE},
                 {"/ready", AS_LOCAL_READY}, {"/metrics", AS_LOCAL_METRICS}};
    const char *pre = as_cfg.health_prefix ? as_cfg.health_prefix : "";
    size_t pn = strlen(pre);
    bool prefixed = n >= pn && memcmp(path, pre, pn) == 0;
    for (size_t i = 0; i < PC_ARRAY_LEN(names); i++) {
        size_t k = strlen(names[i].name);
        bool health = names[i].kind != AS_LOCAL_METRICS;
        if (!health && !admin)
            continue;
        if ((health && prefixed && n - pn == k && memcmp(path + pn, names[i].name, k) == 0) ||
            ((admin || pn == 0) && n == k && memcmp(path, names[i].name, k) == 0))
            return names[i].kind;
    }
    return AS_LOCAL_NONE;
}
