/* Portcullis - MIT licence. See LICENSE.
 *
 * config.h: reading the configuration (config.c) into gw_cfg (types.h),
 * once, on the main thread, before any worker starts.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "types.h"

/** Main thread, at start: reads the environment and the routes file into
 * gw_cfg. -1 with a message naming the variable on stderr. */
PC_MUSTCHECK int gw_config_load(void);
/** The routes file's text (JSON, docs/gateway.md) into gw_cfg's routes,
 * upstreams and issuers, validated completely; where names the file in
 * messages. -1 with err set; what was read so far stays for gw_routes_free.
 * gw_config_load calls it; so does the routes fuzz target. */
PC_MUSTCHECK int gw_routes_load_text(const char *text, size_t len, const char *where, char *err,
                                     size_t errsz);
/** Frees the routes, upstreams and issuers (and zeroes their counts). */
void gw_routes_free(void);
/** Prints the --help table of variables. */
void gw_config_help(void);
/** Main thread, after the workers stopped: frees gw_cfg and zeroes it. */
void gw_config_free(void);

#endif
