/* Portcullis - MIT licence. See LICENSE.
 *
 * signer.c: our signing key for the JWTs handed upstream (mint.c): the
 * newest current row of the shared jwks table that opens with our secret,
 * re-read every SIGNER_RELOAD_MS by jwks.c's thread (gw_signer_tick).
 * Workers take a reference to the key they sign with, so a swap never
 * frees a key in use; a generation number tells mint.c's caches when the
 * key changed.
 */
#include "jwt.h"
#include "../lib/ba_jwks.h"
#include "../lib/ba_schema.h"
#include "../lib/db.h"
#include "../lib/jws.h"
#include "../lib/json.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define SIGNER_RELOAD_MS 30000

struct gw_signer {
    struct pc_jwk key;
    int refs;                       /* guarded by mu */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct gw_signer *signer;    /* guarded by mu */
static atomic_uint signer_gen;      /* bumped whenever signer changes (mint.c's caches) */
static int64_t signer_loaded_at;    /* the key thread's own */

static void signer_release_locked(struct gw_signer *s, struct gw_signer **to_free)
{
    if (s && --s->refs == 0)
        *to_free = s;
}

void gw_signer_release(struct gw_signer *s)
{
    struct gw_signer *dead = NULL;
    pthread_mutex_lock(&mu);
    signer_release_locked(s, &dead);
    pthread_mutex_unlock(&mu);
    if (dead) {
        pc_jwk_free(&dead->key);
        free(dead);
    }
}

unsigned gw_signer_gen(void)
{
    return atomic_load_explicit(&signer_gen, memory_order_acquire);
}

struct gw_signer *gw_signer_get(const struct pc_jwk **key)
{
    pthread_mutex_lock(&mu);
    struct gw_signer *s = signer;
    if (s)
        s->refs++;
    pthread_mutex_unlock(&mu);
    *key = s ? &s->key : NULL;
    return s;
}

static struct gw_signer *load_signer(struct pc_db *db)
{
    PGresult *res = pc_db_exec(db, PC_BA_SQL_JWKS_UNEXPIRED, 0, NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return NULL;
    }
    struct gw_signer *s = NULL;
    for (int i = 0; s == NULL && i < PQntuples(res); i++) {
        const char *pubtxt = PQgetvalue(res, i, 3);
        yajl_val pub = pc_json_parse(pubtxt, strlen(pubtxt));
        const char *alg = pc_jwk_row_alg(PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2),
                                         pub);
        struct gw_signer *c = pc_xcalloc(1, sizeof *c);
        if (alg && pc_jwk_alg_parse(alg) != PC_JWK_NONE &&
            pc_jwk_open_row(&gw_cfg.secrets, PQgetvalue(res, i, 0), alg, PQgetvalue(res, i, 1),
                            &c->key) == 0) {
            c->refs = 1;
            s = c;
        } else {
            free(c);
        }
        yajl_tree_free(pub);
    }
    PQclear(res);
    return s;
}

int64_t gw_signer_tick(struct pc_db *db, int64_t now)
{
    pthread_mutex_lock(&mu);
    bool due = signer == NULL || now - signer_loaded_at >= SIGNER_RELOAD_MS;
    pthread_mutex_unlock(&mu);
    if (!due)
        return INT64_MAX; /* as before the split: the thread's own pace decides */
    struct gw_signer *s = load_signer(db);
    pthread_mutex_lock(&mu);
    struct gw_signer *dead = NULL;
    if (s) {
        if (signer == NULL || strcmp(signer->key.kid, s->key.kid) != 0)
            atomic_fetch_add(&signer_gen, 1);   /* another key: re-sign */
        signer_release_locked(signer, &dead);
        signer = s;
        signer_loaded_at = now;
    } else {
        signer_loaded_at = now - SIGNER_RELOAD_MS + gw_cfg.jwt_refetch_ms;
    }
    pthread_mutex_unlock(&mu);
    if (dead) {
        pc_jwk_free(&dead->key);
        free(dead);
    }
    return signer_loaded_at + SIGNER_RELOAD_MS;
}

void gw_signer_free(void)
{
    gw_signer_release(signer);
    signer = NULL;
}
