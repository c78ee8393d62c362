/* Portcullis - MIT licence. See LICENSE.
 *
 * bgthread.h: what authsvc's background threads share (bgthread.c). The
 * listener (listener.c) and the mailer (mailer.c) each own one PostgreSQL
 * connection of their own (raw libpq: they LISTEN) and a stop flag that
 * main sets at shutdown.
 */
#ifndef AS_BGTHREAD_H
#define AS_BGTHREAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <libpq-fe.h>

/** Sleeps ms in 50 ms steps, returning early once *stop is set. */
void as_bg_nap(const atomic_bool *stop, int ms);
/** Runs sql with params on c; true when it succeeded. A failure is logged
 * as "<who>: <PostgreSQL's message>". */
bool as_bg_exec(PGconn *c, const char *who, const char *sql, int n, const char *const *params);
/** A new connection to DATABASE_URL (3 s connect timeout) named app that
 * LISTENs on channel, or NULL. */
PGconn *as_bg_listen(const char *app, const char *channel);

#endif
