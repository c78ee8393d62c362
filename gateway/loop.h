/* Portcullis - MIT licence. See LICENSE.
 *
 * loop.h: the one way the gateway adds or deletes an fd event on a
 * worker's loop (front.c, proxy.c, upstream.c).
 */
#ifndef GW_LOOP_H
#define GW_LOOP_H

#include <stdbool.h>
#include <event2/event.h>

/** On ev's loop: adds (on) or deletes ev unless *active already says so. */
static inline void gw_watch(struct event *ev, bool *active, bool on)
{
    if (on == *active)
        return;
    *active = on;
    if (on)
        event_add(ev, NULL);
    else
        event_del(ev);
}

#endif
