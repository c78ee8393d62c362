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
/** Prints the --help table of variables. */
void gw_config_help(void);
/** Main thread, after the workers stopped: frees gw_cfg. */
void gw_config_free(void);

#endif
