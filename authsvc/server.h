/* Portcullis - MIT licence. See LICENSE.
 *
 * server.h: the event loop (server.c): intake, dispatch to the worker pool,
 * the completion queue, sending, drain. Only main.c calls in here; handlers
 * use job.h.
 */
#ifndef AS_SERVER_H
#define AS_SERVER_H

/** Main thread: serves until SIGTERM/SIGINT, then drains. Returns the exit
 * code. */
int as_server_run(void);

#endif
