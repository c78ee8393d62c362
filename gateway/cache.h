/* Portcullis - MIT licence. See LICENSE.
 *
 * cache.h: L1 (l1cache.c), the in-process cache of resolved principals,
 * shared by every worker (sharded locks). Stage L1 reads it (request.c);
 * L2, PostgreSQL and JWT verification fill it; decide.c and the revocation
 * feed drop from it. Entries are copies: nothing here holds a request.
 */
#ifndef GW_CACHE_H
#define GW_CACHE_H

#include "types.h"

/** Main thread, before the workers: an L1 of max_entries (0: off). */
void gw_l1_init(size_t max_entries);
/** Main thread, after the workers stopped. */
void gw_l1_free(void);
/** Any thread: copies the entry for hash into *p if present and fresh. */
bool gw_l1_get(const unsigned char hash[32], struct gw_principal *p);
/** Any thread: the revocation epoch, bumped by every delete and flush. A
 * lookup takes it before it asks L1 (r->l1_epoch) and hands it to its put. */
uint64_t gw_l1_epoch(void);
/** Any thread: stores a copy of p for hash for ttl_ms (capped while the
 * revocation feed is down), unless a delete or flush came after epoch
 * (gw_l1_epoch at the lookup's start): what was read before a revocation
 * answers its own request but is never cached past it. */
void gw_l1_put(const unsigned char hash[32], const struct gw_principal *p, int64_t ttl_ms,
               uint64_t epoch);
/** Any thread: the API key hash's permission bits for the routes table of
 * generation gen (decide.c), kept on its entry if it is still there. */
void gw_l1_perms(const unsigned char hash[32], uint64_t gen, uint64_t bits);
/** Any thread: drops hash from L1. */
void gw_l1_delete(const unsigned char hash[32]);
/** Any thread: drops everything. */
void gw_l1_flush(void);
/** Any thread: entries held now. */
size_t gw_l1_count(void);
/** Revocation thread: while true, new entries live at most l1_degraded_ttl
 * and older ones are treated as expired past it. */
void gw_l1_set_degraded(bool degraded);

#endif
