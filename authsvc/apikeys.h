/* Portcullis - MIT licence. See LICENSE.
 *
 * apikeys.h: Better Auth's API-key plugin routes (apikeys.c) and the
 * service-to-service routes under /api/internal (internal.c).
 */
#ifndef AS_APIKEYS_H
#define AS_APIKEYS_H

#include <stdbool.h>

struct as_job;
struct as_worker;

/* ---- routes (worker threads; job.h contract) ---- */
bool as_route_apikey_create(struct as_job *job, struct as_worker *w);
bool as_route_apikey_get(struct as_job *job, struct as_worker *w);
bool as_route_apikey_update(struct as_job *job, struct as_worker *w);
bool as_route_apikey_delete(struct as_job *job, struct as_worker *w);
bool as_route_apikey_list(struct as_job *job, struct as_worker *w);
bool as_route_internal_apikey_create(struct as_job *job, struct as_worker *w);
bool as_route_internal_apikey_update(struct as_job *job, struct as_worker *w);
bool as_route_internal_validate(struct as_job *job, struct as_worker *w);

#endif
