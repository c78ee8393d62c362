/* Portcullis - MIT licence. See LICENSE.
 *
 * metrics.c: what the gateway counts, and how it shows it.
 *
 *   GET /metrics   Prometheus text format: requests by route and status, a
 *                  latency histogram, cache lookups by layer and result,
 *                  PostgreSQL/Redis errors, revocations, L1 flushes,
 *                  upstream errors and timeouts, rate-limit and quota
 *                  refusals, L1 size
 *   access log     one JSON line per request (request id, route, method,
 *                  status, auth method, principal, latency), appended to a
 *                  per-worker buffer and written in batches (every 100 ms or
 *                  64 KiB) off the request path; GATEWAY_ACCESS_LOG=off
 *
 * Per-request counters live in each worker's own arrays (no sharing on the
 * hot path); a scrape sums them with relaxed atomic loads.
 */
#include "metrics.h"
#include "request.h"
#include "cache.h"
#include "feed.h"
#include "../lib/json.h"
#include "../lib/log.h"
#include "../lib/procstat.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_MIN 100
#define STATUS_SLOTS 500            /* 100..599 */
#define ACCESS_FLUSH_BYTES 65536

static const double lat_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,    0.25,  0.5,    1,     2.5,  5,    10};
#define NLAT (sizeof lat_bounds / sizeof lat_bounds[0])

struct gw_stats gw_stats;

struct gw_wmetrics {
    uint64_t *by_route_status;      /* [(GW_ROUTE_SLOTS_MAX + 1) * STATUS_SLOTS]: by the
                                     * route's prefix slot (reloads keep them), the last
                                     * for no route; pages never counted in stay unmapped */
    uint64_t lat[NLAT + 1];         /* histogram, last = +Inf */
    uint64_t lat_sum_us, lat_count;
    uint64_t by_kind[GW_CRED_KIND_COUNT];
    struct pc_buf access;           /* pending access-log lines */
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define BUMP(x, n) __atomic_store_n(&(x), LOAD(x) + (n), __ATOMIC_RELAXED)

void gw_metrics_init(struct gw_worker *w)
{
    w->m = pc_xcalloc(1, sizeof *w->m);
    w->m->by_route_status = pc_xcalloc((GW_ROUTE_SLOTS_MAX + 1) * STATUS_SLOTS, sizeof(uint64_t));
}

void gw_access_flush(struct gw_worker *w)
{
    struct pc_buf *b = &w->m->access;
    if (b->len == 0)
        return;
    /* lines are complete JSON objects separated by '\n'; the last one has
     * no newline yet because pc_log_line adds one */
    pc_log_line(b->data, b->len - 1);
    pc_buf_reset(b);
}

void gw_metrics_free(struct gw_worker *w)
{
    gw_access_flush(w);
    pc_buf_free(&w->m->access);
    free(w->m->by_route_status);
    free(w->m);
    w->m = NULL;
}

static const char *kind_name(enum gw_cred_kind k)
{
    switch (k) {
    case GW_CRED_SESSION: return "session";
    case GW_CRED_API_KEY: return "api_key";
    case GW_CRED_JWT: return "jwt";
    default: return "none";
    }
}

/* Better Auth's password-reset link carries its token as a path segment
 * (.../reset-password/<token>, authsvc or Better Auth behind a route): it is
 * logged as ":token", as authsvc's own log does. */
static void jw_path(struct pc_jw *jw, const char *path)
{
    static const char seg[] = "/reset-password/";
    const char *t = strstr(path, seg);
    size_t n = t ? strcspn(t + sizeof seg - 1, "/") : 0;
    if (n == 0) {
        pc_jw_str(jw, path);
        return;
    }
    struct pc_buf b = {0};
    pc_buf_append(&b, path, (size_t)(t - path) + sizeof seg - 1);
    pc_buf_puts(&b, ":token");
    pc_buf_puts(&b, t + sizeof seg - 1 + n);
    pc_jw_str(jw, b.data);
    pc_buf_free(&b);
}

static void access_line(struct gw_request *r, int64_t us)
{
    const char *m = r->method;
    struct pc_buf *b = &r->w->m->access;
    struct pc_jw jw = {.b = b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "ts");
    pc_jw_date(&jw, pc_now_ms());
    pc_jw_key(&jw, "level");
    pc_jw_str(&jw, "info");
    pc_jw_key(&jw, "prog");
    pc_jw_str(&jw, "gateway");
    pc_jw_key(&jw, "event");
    pc_jw_str(&jw, "access");
    pc_jw_key(&jw, "req_id");
    pc_jw_str(&jw, r->request_id);
    pc_jw_key(&jw, "client_ip");
    pc_jw_str(&jw, r->client_ip);
    pc_jw_key(&jw, "route");
    pc_jw_str(&jw, r->route ? r->route->prefix : NULL);
    pc_jw_key(&jw, "method");
    pc_jw_str(&jw, m);
    pc_jw_key(&jw, "path");
    /* the :apiKey segment is a credential: log the path without it (bytes
     * that are not UTF-8 are escaped when pc_log_line writes the batch);
     * so is a reset link's token (jw_path) */
    jw_path(&jw, r->upstream_path ? r->upstream_path : r->path);
    if (r->fa_method[0]) {
        pc_jw_key(&jw, "orig_method");
        pc_jw_str(&jw, r->fa_method);
    }
    if (r->fa_host[0]) {
        pc_jw_key(&jw, "orig_host");
        pc_jw_str(&jw, r->fa_host);
    }
    pc_jw_key(&jw, "status");
    pc_jw_int(&jw, r->status);
    pc_jw_key(&jw, "auth");
    pc_jw_str(&jw, kind_name(r->kind));
    if (r->p.found && r->p.user_id[0]) {
        pc_jw_key(&jw, "user_id");
        pc_jw_str(&jw, r->p.user_id);
    }
    if (r->p.found && r->p.cred_id[0]) {
        /* the session id or the key id: never the secret */
        pc_jw_key(&jw, "cred_id");
        pc_jw_str(&jw, r->p.cred_id);
    }
    const char *ua = r->user_agent ? r->user_agent : gw_header(r, "User-Agent");
    if (ua) {
        pc_jw_key(&jw, "user_agent");
        pc_jw_strn(&jw, ua, strnlen(ua, GW_LOG_UA_MAX));
    }
    pc_jw_key(&jw, "bytes_in");
    pc_jw_int(&jw, (int64_t)r->bytes_in);
    pc_jw_key(&jw, "bytes_out");
    pc_jw_int(&jw, (int64_t)r->bytes_out);
    if (r->upstream_url) {
        pc_jw_key(&jw, "upstream");
        pc_jw_str(&jw, r->upstream_url);
    }
    if (r->outcome) {
        pc_jw_key(&jw, "outcome");
        pc_jw_str(&jw, r->outcome);
    }
    pc_jw_key(&jw, "latency_us");
    pc_jw_int(&jw, us);
    if (r->closed_by) {
        /* a tunnel or a streamed answer: latency_us is how long it was open */
        pc_jw_key(&jw, "tunnel");
        pc_jw_bool(&jw, r->tunnel);
        pc_jw_key(&jw, "closed_by");
        pc_jw_str(&jw, r->closed_by);
        pc_jw_key(&jw, "bytes_up");
        pc_jw_int(&jw, (int64_t)r->bytes_up);
        pc_jw_key(&jw, "bytes_down");
        pc_jw_int(&jw, (int64_t)r->bytes_down);
    }
    pc_jw_obj_end(&jw);
    pc_buf_putc(b, '\n');
    if (b->len >= ACCESS_FLUSH_BYTES)
        gw_access_flush(r->w);
}

void gw_metrics_observe(struct gw_request *r)
{
    struct gw_wmetrics *m = r->w->m;
    if (m == NULL)
        return;
    int64_t us = pc_mono_us() - r->start_us;
    size_t route = r->route ? r->route->slot : GW_ROUTE_SLOTS_MAX;
    int st = r->status >= STATUS_MIN && r->status < STATUS_MIN + STATUS_SLOTS ? r->status : 599;
    BUMP(m->by_route_status[route * STATUS_SLOTS + (size_t)(st - STATUS_MIN)], 1);
    size_t b = 0;
    while (b < NLAT && (double)us / 1e6 > lat_bounds[b])
        b++;
    BUMP(m->lat[b], 1);
    BUMP(m->lat_sum_us, (uint64_t)(us > 0 ? us : 0));
    BUMP(m->lat_count, 1);
    BUMP(m->by_kind[r->kind], 1);
    if (gw_cfg.access_log)
        access_line(r, us);
}

/* ---- exposition ---- */

static void label_escape(struct pc_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            pc_buf_putc(b, '\\');
        if (*s == '\n') {
            pc_buf_puts(b, "\\n");
            continue;
        }
        pc_buf_putc(b, *s);
    }
}

static void counter(struct pc_buf *b, const char *name, const char *help, uint64_t v)
{
    pc_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                  (unsigned long long)v);
}

/* The counters of GW_STATS with a name of their own, in its order. */
static const struct {
    const char *name, *help;
    size_t off;
} plain_counters[] = {
#define GW_STAT_ROW(f, name, help) {name, help, offsetof(struct gw_stats, f)},
    GW_STATS(GW_STAT_ROW)
#undef GW_STAT_ROW
};

#define G(f) ((unsigned long long)__atomic_load_n(&gw_stats.f, __ATOMIC_RELAXED))

void gw_metrics_render(struct gw_worker *all, size_t nworkers, int64_t max_conns,
                       size_t addresses, struct pc_buf *b)
{
    pc_build_info_metric(b, "gateway");
    pc_procstat_metrics(b);
    pc_buf_puts(b, "# HELP portcullis_gateway_requests_total Requests answered, by route and "
                   "status.\n# TYPE portcullis_gateway_requests_total counter\n");
    size_t nslots = atomic_load(&gw_cfg.nroute_slots);
    for (size_t rt = 0; rt <= GW_ROUTE_SLOTS_MAX; rt++) {
        if (rt == nslots && rt < GW_ROUTE_SLOTS_MAX - 1)
            rt = GW_ROUTE_SLOTS_MAX - 1; /* the slots in between were never given out */
        for (size_t s = 0; s < STATUS_SLOTS; s++) {
            uint64_t v = 0;
            for (size_t i = 0; i < nworkers; i++)
                v += LOAD(all[i].m->by_route_status[rt * STATUS_SLOTS + s]);
            if (v == 0)
                continue;
            pc_buf_puts(b, "portcullis_gateway_requests_total{route=\"");
            label_escape(b, rt < nslots ? gw_cfg.route_slots[rt]
                            : rt < GW_ROUTE_SLOTS_MAX ? "other" : "");
            pc_buf_printf(b, "\",status=\"%zu\"} %llu\n", s + STATUS_MIN, (unsigned long long)v);
        }
    }
    pc_buf_puts(b, "# HELP portcullis_gateway_credential_requests_total Requests by credential kind."
                   "\n# TYPE portcullis_gateway_credential_requests_total counter\n");
    for (int k = 0; k < GW_CRED_KIND_COUNT; k++) {
        uint64_t v = 0;
        for (size_t i = 0; i < nworkers; i++)
            v += LOAD(all[i].m->by_kind[k]);
        pc_buf_printf(b, "portcullis_gateway_credential_requests_total{auth=\"%s\"} %llu\n",
                      kind_name((enum gw_cred_kind)k), (unsigned long long)v);
    }
    pc_buf_puts(b, "# HELP portcullis_gateway_request_duration_seconds Time from request to "
                   "answer.\n# TYPE portcullis_gateway_request_duration_seconds histogram\n");
    uint64_t cum = 0, sum = 0, count = 0;
    for (size_t k = 0; k <= NLAT; k++) {
        for (size_t i = 0; i < nworkers; i++)
            cum += LOAD(all[i].m->lat[k]);
        if (k < NLAT)
            pc_buf_printf(b, "portcullis_gateway_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                          lat_bounds[k], (unsigned long long)cum);
        else
            pc_buf_printf(b, "portcullis_gateway_request_duration_seconds_bucket{le=\"+Inf\"} "
                             "%llu\n", (unsigned long long)cum);
    }
    for (size_t i = 0; i < nworkers; i++) {
        sum += LOAD(all[i].m->lat_sum_us);
        count += LOAD(all[i].m->lat_count);
    }
    pc_buf_printf(b, "portcullis_gateway_request_duration_seconds_sum %.6f\n"
                     "portcullis_gateway_request_duration_seconds_count %llu\n",
                  (double)sum / 1e6, (unsigned long long)count);
    pc_buf_printf(b, "# HELP portcullis_gateway_cache_lookups_total Credential lookups by layer "
                     "and result.\n# TYPE portcullis_gateway_cache_lookups_total counter\n"
                     "portcullis_gateway_cache_lookups_total{layer=\"l1\",result=\"hit\"} %llu\n"
                     "portcullis_gateway_cache_lookups_total{layer=\"l1\",result=\"negative\"} "
                     "%llu\n"
                     "portcullis_gateway_cache_lookups_total{layer=\"redis\",result=\"hit\"} %llu\n"
                     "portcullis_gateway_cache_lookups_total{layer=\"postgres\",result=\"query\"} "
                     "%llu\n",
                  G(l1_hits), G(l1_negative_hits), G(l2_hits), G(pg_queries));
    for (size_t i = 0; i < PC_ARRAY_LEN(plain_counters); i++)
        if (plain_counters[i].name)
            counter(b, plain_counters[i].name, plain_counters[i].help,
                    __atomic_load_n((const uint64_t *)((const char *)&gw_stats +
                                                       plain_counters[i].off),
                                    __ATOMIC_RELAXED));
    counter(b, "portcullis_gateway_log_write_failures_total",
            "Log writes the log file or pipe refused (those lines are lost).",
            pc_log_write_failures());
    pc_buf_printf(b, "# HELP portcullis_gateway_connections_refused_total Connections over a cap "
                     "(answered 503 or, for /health, /live, /ready, served, then closed).\n"
                     "# TYPE portcullis_gateway_connections_refused_total counter\n"
                     "portcullis_gateway_connections_refused_total{reason=\"max_conns\"} %llu\n"
                     "portcullis_gateway_connections_refused_total{reason=\"per_ip\"} %llu\n",
                  G(conns_refused_max), G(conns_refused_ip));
    pc_buf_printf(b, "# HELP portcullis_gateway_connections Client connections open within the "
                     "caps.\n# TYPE portcullis_gateway_connections gauge\n"
                     "portcullis_gateway_connections %llu\n"
                     "# HELP portcullis_gateway_connections_max GATEWAY_MAX_CONNS in effect.\n"
                     "# TYPE portcullis_gateway_connections_max gauge\n"
                     "portcullis_gateway_connections_max %lld\n"
                     "# HELP portcullis_gateway_client_addresses Peer addresses with a connection "
                     "open.\n# TYPE portcullis_gateway_client_addresses gauge\n"
                     "portcullis_gateway_client_addresses %zu\n",
                  G(conns_open), (long long)max_conns, addresses);
    pc_buf_printf(b, "# HELP portcullis_gateway_l1_entries Credentials in L1.\n"
                     "# TYPE portcullis_gateway_l1_entries gauge\nportcullis_gateway_l1_entries "
                     "%zu\n",
                  gw_l1_count());
    pc_buf_printf(b, "# HELP portcullis_gateway_revocation_feed_up 1 while subscribed.\n"
                     "# TYPE portcullis_gateway_revocation_feed_up gauge\n"
                     "portcullis_gateway_revocation_feed_up %d\n",
                  gw_revocation_up() ? 1 : 0);
    pc_buf_printf(b, "# HELP portcullis_gateway_tunnels_open WebSocket tunnels open.\n"
                     "# TYPE portcullis_gateway_tunnels_open gauge\n"
                     "portcullis_gateway_tunnels_open %llu\n"
                     "# HELP portcullis_gateway_streams_open Streamed answers (SSE, chunked) "
                     "being relayed with a credential.\n"
                     "# TYPE portcullis_gateway_streams_open gauge\n"
                     "portcullis_gateway_streams_open %llu\n",
                  G(tunnels_open), G(streams_open));
    size_t parked = 0;
    for (size_t i = 0; i < nworkers; i++)
        parked += gw_parked(&all[i]);
    pc_buf_printf(b, "# HELP portcullis_gateway_parked Requests waiting on Redis, PostgreSQL or "
                     "a JWKS fetch (bounded by GATEWAY_PENDING_MAX per worker).\n"
                     "# TYPE portcullis_gateway_parked gauge\nportcullis_gateway_parked %zu\n",
                  parked);
}

void gw_stats_json(struct gw_worker *all, size_t nworkers, struct pc_jw *jw)
{
#define GW_STAT_JSON(f, name, help)                                                        \
    pc_jw_key(jw, #f);                                                                     \
    pc_jw_int(jw, (int64_t)__atomic_load_n(&gw_stats.f, __ATOMIC_RELAXED));
    GW_STATS(GW_STAT_JSON)
#undef GW_STAT_JSON
    pc_jw_key(jw, "l1_entries");
    pc_jw_int(jw, (int64_t)gw_l1_count());
    size_t parked = 0;
    for (size_t i = 0; i < nworkers; i++)
        parked += gw_parked(&all[i]);
    pc_jw_key(jw, "parked");
    pc_jw_int(jw, (int64_t)parked);
}
