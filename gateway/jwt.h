/* Portcullis - MIT licence. See LICENSE.
 *
 * jwt.h: JWTs. Stage VERIFY (verify.c) checks a bearer JWT against its
 * issuer's key set, which jwks.c's thread keeps; stage MINT (mint.c) signs
 * a JWT for the upstream with our key, which signer.c loads from the shared
 * jwks table (on the same thread). Stage entry points are in stages.h.
 */
#ifndef GW_JWT_H
#define GW_JWT_H

#include "types.h"

struct gw_keyset;
struct gw_signer;
struct pc_jwk;
struct pc_db;

enum gw_key_result {
    GW_KEY_FOUND = 0,       /* *key is in *set (release the set after use) */
    GW_KEY_WAIT,            /* r was parked (gw_park) until a fetch; it will be woken */
    GW_KEY_BUSY,            /* it would wait, but GATEWAY_PENDING_MAX is reached: not parked */
    GW_KEY_UNKNOWN,         /* no such kid, even after a fetch */
    GW_KEY_UNAVAILABLE,     /* no keys could be fetched from this issuer */
};

/* When one issuer's keys are fetched. jwks.c keeps one per issuer under its
 * lock; what it decides from it is the two pure functions below (unit
 * tested). Times are monotonic ms. */
struct gw_jwks_pace {
    int64_t expires_at;     /* the set's max-age runs out: refetch then */
    int64_t last_attempt;   /* the last fetch began; 0 = never */
    unsigned fails;         /* failed fetches in a row */
    bool want;              /* a token with an unknown kid asked for a fetch */
    bool fetching;          /* a fetch is in flight (never two for one issuer) */
};

/* What a token whose kid is not in the issuer's set does. */
enum gw_jwks_miss {
    GW_MISS_WAIT = 0,       /* park on the fetch in flight, or the next (at most kid_ms away) */
    GW_MISS_ASK,            /* the last fetch failed less than kid_ms ago: refuse now, ask
                             * for the next fetch (then at last_attempt + kid_ms) */
};

/** Pure: when the next fetch of the issuer should begin (<= now: at once;
 * INT64_MAX while one is in flight). have_set: a set was fetched once.
 * Unasked, a fetch comes when the set expires, or JWKS_REFETCH_MS
 * (refetch_ms) after a failure, doubling per failure in a row up to a
 * minute. Asked (p->want), it comes kid_ms (JWKS_KID_REFETCH_MS) after the
 * last one, however many failed: so an issuer that is reachable again is
 * fetched within kid_ms of the next unknown kid. */
int64_t gw_jwks_fetch_at(const struct gw_jwks_pace *p, bool have_set, int64_t refetch_ms,
                         int64_t kid_ms);
/** Pure: what a token with an unknown kid does at now_ms (the caller has
 * already refused a request that waited once). */
enum gw_jwks_miss gw_jwks_on_miss(const struct gw_jwks_pace *p, int64_t now_ms, int64_t kid_ms);

/** On r's loop: answers 401 with a JWT_* code. Ends r. */
void gw_jwt_refuse(struct gw_request *r, const char *code);
/** On r's loop: the key kid of issuer iss (empty kid: the only key), with a
 * reference on its set; or parks r on the issuer's next fetch (at most once
 * per request: r->jwks_waited). Never ends r. */
enum gw_key_result gw_jwks_key(const struct gw_issuer *iss, const char *kid, struct gw_request *r,
                               struct gw_keyset **set, const struct pc_jwk **key);
/** Any thread: drops a reference gw_jwks_key took (NULL: nothing). */
void gw_keyset_release(struct gw_keyset *s);
/** Main thread: starts the key thread (when a route takes or mints JWTs). */
void gw_jwks_start(void);
/** Main thread, after a reload: new issuers are fetched now; the thread
 * starts if this is the first table that takes or mints JWTs. */
void gw_jwks_reloaded(void);
/** Main thread (routes_file.c): the key state of a new issuer, and its end. */
void gw_jwks_issuer_init(struct gw_issuer *iss);
void gw_jwks_issuer_free(struct gw_issuer *iss);
/** Main thread, loops stopped: stops fetching and wakes every parked
 * request (to its inbox, where worker.c ends it). */
void gw_jwks_stop(void);
void gw_jwks_free(void);

/** Any thread: our signing key (authsvc's current row), referenced; NULL
 * when none yet. */
struct gw_signer *gw_signer_get(const struct pc_jwk **key);
void gw_signer_release(struct gw_signer *s);
/** Any thread: changes whenever the signing key does: a token minted
 * under the same generation was signed by the current key. */
unsigned gw_signer_gen(void);
/** Key thread: reloads the key from db when due (every 30 s, sooner
 * while none could be loaded). Returns when to call again (monotonic ms;
 * INT64_MAX: when the thread next wakes anyway). */
int64_t gw_signer_tick(struct pc_db *db, int64_t now_ms);
/** Main thread, after the key thread stopped. */
void gw_signer_free(void);

/** Worker stop: frees w's cache of minted tokens. */
void gw_mint_free(struct gw_worker *w);

#endif
