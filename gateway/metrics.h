/* Portcullis - MIT licence. See LICENSE.
 *
 * metrics.h: what the gateway counts (metrics.c): the process-wide counters
 * below, each declared once (GW_STATS) and shown on /_stats and /metrics,
 * plus each worker's per-request arrays and access-log buffer.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include "types.h"

struct pc_buf;

/* Every process-wide counter, once: X(field, Prometheus name, help). A NULL
 * name: metrics.c renders it by hand (a label or a gauge). /_stats shows
 * them all under their field names. */
#define GW_STATS(X)                                                                        \
    X(requests, NULL, NULL)                                                                \
    X(l1_hits, NULL, NULL)                                                                 \
    X(l1_negative_hits, NULL, NULL)                                                        \
    X(l2_hits, NULL, NULL)                                                                 \
    X(pg_queries, NULL, NULL)                                                              \
    X(pg_batched, "portcullis_gateway_postgres_batched_lookups_total",                     \
      "Lookups that rode along another's PostgreSQL round trip.")                          \
    X(pg_read_queries, "portcullis_gateway_postgres_replica_lookups_total",                \
      "Lookups offered to the replicas (DATABASE_READ_URL).")                              \
    X(pg_read_fallbacks, "portcullis_gateway_postgres_replica_fallbacks_total",            \
      "Lookups the replicas could not take (down, lagging) that went to the primary.")     \
    X(pg_read_misses, "portcullis_gateway_postgres_replica_misses_total",                  \
      "Credentials a replica did not find (or did not answer for), asked of the primary.") \
    X(pg_errors, "portcullis_gateway_postgres_errors_total",                               \
      "PostgreSQL failures and timeouts.")                                                 \
    X(pg_connects, "portcullis_gateway_postgres_connects_total", "PostgreSQL connections made.") \
    X(redis_errors, "portcullis_gateway_redis_errors_total", "Redis failures and timeouts.")   \
    X(redis_connects, "portcullis_gateway_redis_connects_total", "Redis connections made.")    \
    X(revocations, "portcullis_gateway_revocations_total", "Revocation messages received.")    \
    X(l1_flushes, "portcullis_gateway_l1_flushes_total",                                   \
      "L1 flushes after the revocation feed came back.")                                   \
    X(upstream_errors, "portcullis_gateway_upstream_errors_total",                         \
      "Upstream refused or broke (502).")                                                  \
    X(upstream_timeouts, "portcullis_gateway_upstream_timeouts_total",                     \
      "Upstream timed out (504).")                                                         \
    X(upstream_skips, "portcullis_gateway_upstream_skips_total",                           \
      "Upstream targets skipped for UPSTREAM_FAIL_TIMEOUT_MS after a failed connection.")  \
    X(h2_conns, "portcullis_gateway_http2_connections_total",                             \
      "Connections that chose HTTP/2 (ALPN h2).")                                          \
    X(h2_streams, "portcullis_gateway_http2_streams_total",                                \
      "HTTP/2 streams that became requests.")                                              \
    X(h2_refused, "portcullis_gateway_http2_refused_total",                                \
      "HTTP/2 streams refused for a limit, and sessions ended for a protocol error or an " \
      "attack (rapid resets, a header list too large).")                                   \
    X(upstream_cancels, "portcullis_gateway_upstream_cancels_total",                       \
      "Exchanges cancelled upstream because the client left.")                             \
    X(rate_limited, "portcullis_gateway_rate_limited_total",                               \
      "API-key requests refused by rate limit.")                                           \
    X(usage_exceeded, "portcullis_gateway_usage_exceeded_total",                           \
      "API-key requests refused by quota.")                                                \
    X(usage_flushes, NULL, NULL)                                                           \
    X(accept_errors, "portcullis_gateway_accept_errors_total",                             \
      "accept() failures for want of file descriptors (EMFILE/ENFILE).")                   \
    X(conns_reclaimed, "portcullis_gateway_connections_reclaimed_total",                   \
      "Idle keep-alive connections closed to get a descriptor back at the open file limit.") \
    X(conns_refused_max, NULL, NULL) /* over GATEWAY_MAX_CONNS */                          \
    X(conns_refused_ip, NULL, NULL)  /* over GATEWAY_MAX_CONNS_PER_IP */                   \
    X(head_timeouts, "portcullis_gateway_head_timeouts_total",                             \
      "Connections closed for a request head not whole within GATEWAY_HEAD_TIMEOUT_MS.")   \
    X(jwks_fetches, "portcullis_gateway_jwks_fetches_total",                               \
      "JWKS fetches begun, of any issuer, failed or not.")                                 \
    X(jwks_fetch_errors, "portcullis_gateway_jwks_fetch_errors_total",                     \
      "JWKS fetches that failed (the last good keys stay in use).")                        \
    X(jwks_kid_fetches, "portcullis_gateway_jwks_kid_fetches_total",                       \
      "JWKS fetches that a token with an unknown kid asked for.")                          \
    X(jwks_kid_refused, "portcullis_gateway_jwks_kid_refused_total",                       \
      "Unknown kids refused without a wait (the issuer failed less than "                  \
      "JWKS_KID_REFETCH_MS ago, or too many wait).")                                       \
    X(tunnels_open, NULL, NULL)      /* gauge: WebSocket tunnels open */                   \
    X(streams_open, NULL, NULL)      /* gauge: streamed answers being relayed */           \
    X(tunnels_opened, "portcullis_gateway_tunnels_total", "WebSocket tunnels opened.")    \
    X(tunnels_refused, "portcullis_gateway_tunnels_refused_total",                         \
      "WebSocket handshakes refused over GATEWAY_MAX_TUNNELS or _PER_USER (429).")         \
    X(streams_cut_revoked, "portcullis_gateway_streams_cut_revoked_total",                 \
      "Tunnels and streamed answers ended because their credential was revoked.")         \
    X(streams_cut_expired, "portcullis_gateway_streams_cut_expired_total",                 \
      "Tunnels and streamed answers ended because their credential expired.")             \
    X(streams_cut_unverified, "portcullis_gateway_streams_cut_unverified_total",           \
      "Tunnels and streamed answers ended because revocations missed while the feed was "   \
      "down could not be read back.")                                                      \
    X(revocations_replayed, "portcullis_gateway_revocations_replayed_total",               \
      "Revocations read back from PostgreSQL's log after the feed was lost.")             \
    X(ocsp_fetches, "portcullis_gateway_ocsp_fetches_total",                               \
      "OCSP responses asked for, for stapling, failed or not.")                            \
    X(ocsp_fetch_errors, "portcullis_gateway_ocsp_fetch_errors_total",                     \
      "OCSP fetches that gave no good response (failed, did not verify, or not good).")    \
    X(reloads, "portcullis_gateway_reloads_total",                                         \
      "Routes files loaded on SIGHUP and put in use.")                                     \
    X(reloads_failed, "portcullis_gateway_reloads_failed_total",                           \
      "SIGHUP reloads refused (the routes in use stayed).")                                \
    X(route_tables, NULL, NULL)      /* gauge: routes tables not yet freed */              \
    X(conns_open, NULL, NULL)        /* gauge: client connections within the caps */

struct gw_stats {
#define GW_STAT_FIELD(f, name, help) uint64_t f;
    GW_STATS(GW_STAT_FIELD)
#undef GW_STAT_FIELD
};
extern struct gw_stats gw_stats;
/** Any thread: bumps a counter (relaxed atomic). */
#define GW_STAT_INC(f) __atomic_add_fetch(&gw_stats.f, 1, __ATOMIC_RELAXED)

/** On w's loop, at worker start and stop. */
void gw_metrics_init(struct gw_worker *w);
void gw_metrics_free(struct gw_worker *w);
/** On r's loop, from gw_request_end: counts r and appends its access-log
 * line. Does not end r. */
void gw_metrics_observe(struct gw_request *r);
/** On w's loop (tick): writes the buffered access-log lines. */
void gw_access_flush(struct gw_worker *w);
/** Any worker's loop: appends the Prometheus text of all workers' counters
 * to b; max_conns and addresses come from the front. */
void gw_metrics_render(struct gw_worker *all, size_t nworkers, int64_t max_conns,
                       size_t addresses, struct pc_buf *b);
/** Any worker's loop: appends the /_stats JSON members (every counter, the
 * parked gauge) to the object jw is writing. */
struct pc_jw;
void gw_stats_json(struct gw_worker *all, size_t nworkers, struct pc_jw *jw);

#endif
