/* Portcullis - MIT licence. See LICENSE.
 *
 * metrics.c: GET /metrics in Prometheus text format. Requests are counted
 * on the event loop thread as their answers are sent (server.c), so those
 * counters need no locks; the counts that workers and the prober see
 * (PostgreSQL/Redis failures) are atomics. The connection counters live in
 * conns.c (loop thread too).
 */
#include "authsvc.h"
#include "../lib/log.h"
#include "../lib/procstat.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define NROUTES_MAX 64
#define NSTATUS 500     /* 100..599 */

static const double lat_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25,  0.5,    1,     2.5,  5,     10};
#define NLAT (sizeof lat_bounds / sizeof lat_bounds[0])

static const char *route_names[NROUTES_MAX];
static size_t nroute_names;
static uint64_t by_route_status[NROUTES_MAX + 1][NSTATUS]; /* loop thread only */
static uint64_t lat[NLAT + 1], lat_sum_us, lat_count;       /* loop thread only */
static atomic_uint_fast64_t pg_failures, redis_failures;

void as_metrics_route_name(size_t i, const char *path)
{
    if (i < NROUTES_MAX) {
        route_names[i] = path;
        if (i + 1 > nroute_names)
            nroute_names = i + 1;
    }
}

void as_metrics_note_failure(bool pg)
{
    atomic_fetch_add(pg ? &pg_failures : &redis_failures, 1);
}

void as_metrics_observe(int route, int status, int64_t us)
{
    size_t r = route >= 0 && (size_t)route < nroute_names ? (size_t)route : NROUTES_MAX;
    int s = status >= 100 && status < 600 ? status - 100 : NSTATUS - 1;
    by_route_status[r][s]++;
    size_t b = 0;
    while (b < NLAT && (double)us / 1e6 > lat_bounds[b])
        b++;
    lat[b]++;
    lat_sum_us += (uint64_t)(us > 0 ? us : 0);
    lat_count++;
}

void as_metrics_render(struct pc_buf *b)
{
    pc_build_info_metric(b, "authsvc");
    pc_procstat_metrics(b);
    pc_buf_puts(b, "# HELP portcullis_authsvc_requests_total Requests answered, by route and "
                   "status.\n# TYPE portcullis_authsvc_requests_total counter\n");
    for (size_t r = 0; r <= NROUTES_MAX; r++) {
        if (r < NROUTES_MAX && r >= nroute_names)
            continue;
        for (size_t s = 0; s < NSTATUS; s++) {
            if (by_route_status[r][s] == 0)
                continue;
            pc_buf_printf(b, "portcullis_authsvc_requests_total{route=\"%s\",status=\"%zu\"} "
                             "%llu\n",
                          r < NROUTES_MAX ? route_names[r] : "other", s + 100,
                          (unsigned long long)by_route_status[r][s]);
        }
    }
    pc_buf_puts(b, "# HELP portcullis_authsvc_request_duration_seconds Time from request to "
                   "answer.\n# TYPE portcullis_authsvc_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (size_t k = 0; k <= NLAT; k++) {
        cum += lat[k];
        if (k < NLAT)
            pc_buf_printf(b, "portcullis_authsvc_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                          lat_bounds[k], (unsigned long long)cum);
        else
            pc_buf_printf(b, "portcullis_authsvc_request_duration_seconds_bucket{le=\"+Inf\"} "
                             "%llu\n", (unsigned long long)cum);
    }
    pc_buf_printf(b, "portcullis_authsvc_request_duration_seconds_sum %.6f\n"
                     "portcullis_authsvc_request_duration_seconds_count %llu\n",
                  (double)lat_sum_us / 1e6, (unsigned long long)lat_count);
    pc_buf_printf(b, "# HELP portcullis_authsvc_password_queue_depth Hashes waiting for a "
                     "password thread.\n# TYPE portcullis_authsvc_password_queue_depth gauge\n"
                     "portcullis_authsvc_password_queue_depth %zu\n",
                  as_pwpool_depth());
    pc_buf_printf(b, "# HELP portcullis_authsvc_backend_failures_total PostgreSQL and Redis "
                     "failures seen.\n# TYPE portcullis_authsvc_backend_failures_total counter\n"
                     "portcullis_authsvc_backend_failures_total{backend=\"postgres\"} %llu\n"
                     "portcullis_authsvc_backend_failures_total{backend=\"redis\"} %llu\n",
                  (unsigned long long)atomic_load(&pg_failures),
                  (unsigned long long)atomic_load(&redis_failures));
    pc_buf_printf(b, "# HELP portcullis_authsvc_backend_up 1 while the backend answers.\n"
                     "# TYPE portcullis_authsvc_backend_up gauge\n"
                     "portcullis_authsvc_backend_up{backend=\"postgres\"} %d\n"
                     "portcullis_authsvc_backend_up{backend=\"redis\"} %d\n"
                     "portcullis_authsvc_backend_up{backend=\"listener\"} %d\n",
                  as_health_pg_ok(), as_health_redis_ok(), as_listener_up());
    pc_buf_printf(b, "# HELP portcullis_authsvc_log_write_failures_total Log writes the log "
                     "file or pipe refused (those lines are lost).\n"
                     "# TYPE portcullis_authsvc_log_write_failures_total counter\n"
                     "portcullis_authsvc_log_write_failures_total %llu\n",
                  pc_log_write_failures());
    as_conns_render(b); /* connections: caps, deadlines, accept errors */
}
