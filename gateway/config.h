/* Portcullis - MIT licence. See LICENSE.
 *
 * config.h: reading the configuration (config.c) into gw_cfg (types.h),
 * once, on the main thread, before any worker starts; and the routes file
 * (routes_file.c), read then and again on SIGHUP into a new table.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "types.h"

/** Main thread, at start: reads the environment and the routes file into
 * gw_cfg. -1 with a message naming the variable on stderr. */
PC_MUSTCHECK int gw_config_load(void);
/** Main thread: the routes file's text (JSON, docs/gateway.md) into a new
 * table, validated completely (where names the file in messages), which
 * then becomes gw_cfg.table; the one it replaces is freed once no worker
 * or request holds it. -1 with err set: nothing changed (the current table
 * stays). gw_routes_load calls it; so do the routes fuzz target and the
 * unit tests. */
PC_MUSTCHECK int gw_routes_load_text(const char *text, size_t len, const char *where, char *err,
                                     size_t errsz);
/** Main thread: reads GATEWAY_ROUTES (or makes UPSTREAM_URL's one route)
 * and loads it as gw_routes_load_text does. At start, and on SIGHUP. */
PC_MUSTCHECK int gw_routes_load(char *err, size_t errsz);
/** Main thread: can https upstreams use ca_file (UPSTREAM_CA_FILE)? */
PC_MUSTCHECK int gw_ca_file_check(const char *ca_file, char *err, size_t errsz);
/** Main thread, after the workers stopped: frees every table and the
 * registries (upstreams, TLS contexts, issuers, route slots). */
void gw_routes_free(void);
/** On w's loop: the current table for a new request, counted for w until
 * gw_table_drop; moving to it lets go of the ones w handed out before. */
struct gw_table *gw_table_take(struct gw_worker *w);
/** On w's loop: moves w to the current table (as gw_table_take, counting
 * nothing): a worker woken by a reload lets go of the old table even when
 * no request comes. */
struct gw_table *gw_table_adopt(struct gw_worker *w);
void gw_table_drop(struct gw_worker *w, struct gw_table *t);
/** Worker start (main thread) and stop (after its requests ended). */
void gw_table_worker_start(struct gw_worker *w);
void gw_table_worker_stop(struct gw_worker *w);
/** Prints the --help table of variables. */
void gw_config_help(void);
/** Main thread, after the workers stopped: frees gw_cfg and zeroes it. */
void gw_config_free(void);

#endif
