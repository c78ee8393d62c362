/* Portcullis - MIT licence. See LICENSE.
 *
 * jwt.c: JWTs for sessions and the JWKS that verifies them, in the forms of
 * Better Auth's jwt plugin (better-auth-compat.md §7).
 *
 *   GET /api/auth/token        {"token": "<jwt>"} for the caller's session
 *   get-session                adds set-auth-jwt (sessions.c calls us)
 *   GET /api/auth/jwks         the public keys, cacheable for JWKS_MAX_AGE_SECONDS
 *   GET /.well-known/jwks.json the same
 *
 * Keys live in the shared "jwks" table, so every authsvc replica and every
 * Better Auth server signs with and publishes the same rows. The key ring
 * below is this process's copy of that table: re-read at most every
 * RELOAD_MS, and at once when the signing key retires.
 *
 *   signing key   the newest row of JWT_ALG that is current: expiresAt in the
 *                 future (or, with no expiresAt, created less than
 *                 JWT_ROTATE_DAYS ago) and whose private key opens with our
 *                 secret. None: one is created, under an advisory lock so
 *                 that replicas starting together make one.
 *   published     every row whose expiresAt is unset or less than JWT_EXPIRES_SECONDS
 *                 ago: a retired key stays until its last token has expired.
 */
#include "authsvc.h"
#include "jwt.h"
#include "job.h"
#include "../lib/ba_jwks.h"
#include "../lib/jws.h"
#include "../lib/log.h"
#include "../lib/crypto.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>

#define RELOAD_MS 10000
#define JWKS_LOCK_ID "7215000002"
#define KID_LEN 32

struct signer {
    struct pc_jwk key;
    int64_t retire_at;      /* ms: stop signing with it then */
    int refs;               /* guarded by mu */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct signer *current;  /* guarded by mu */
static char *jwks_json;         /* guarded by mu: the published document */
static int64_t loaded_at;       /* ms, guarded by mu */
static bool reloading;          /* guarded by mu */

static void signer_release(struct signer *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&mu);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&mu);
    if (last) {
        pc_jwk_free(&s->key);
        free(s);
    }
}

static bool private_member(const char *k)
{
    static const char *const priv[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
    for (size_t i = 0; i < PC_ARRAY_LEN(priv); i++)
        if (strcmp(k, priv[i]) == 0)
            return true;
    return false;
}

/* One published key: kid, alg and the stored public members (never a
 * private one, whatever the row holds). */
static void publish_row(struct pc_jw *w, const char *kid, const char *alg, yajl_val pub)
{
    pc_jw_obj_begin(w);
    for (size_t i = 0; i < pub->u.object.len; i++) {
        const char *k = pub->u.object.keys[i];
        yajl_val v = pub->u.object.values[i];
        if (private_member(k) || strcmp(k, "kid") == 0 || strcmp(k, "alg") == 0 ||
            !YAJL_IS_STRING(v))
            continue;
        pc_jw_key(w, k);
        pc_jw_str(w, v->u.string);
    }
    pc_jw_key(w, "alg");
    pc_jw_str(w, alg);
    pc_jw_key(w, "kid");
    pc_jw_str(w, kid);
    pc_jw_obj_end(w);
}

/* Our signing key from a row; NULL when it is not ours to use. */
static struct signer *open_row(const char *kid, const char *alg, const char *sealed,
                               int64_t retire_at)
{
    struct signer *s = pc_xcalloc(1, sizeof *s);
    if (pc_jwk_open_row(&as_cfg.secrets, kid, alg, sealed, &s->key) != 0) {
        free(s);
        return NULL;
    }
    s->retire_at = retire_at;
    s->refs = 1;
    return s;
}

#define ROWS_SQL "SELECT \"id\", \"publicKey\", \"privateKey\", \"alg\", " \
    "(extract(epoch from \"createdAt\")*1000)::bigint, " \
    "(extract(epoch from \"expiresAt\")*1000)::bigint FROM \"jwks\" " \
    "ORDER BY \"createdAt\" DESC, \"id\""

/* Reads the table: the published document and our signing key (NULL when
 * there is none). Returns 0, or -1 when the database failed. */
static int read_ring(struct pc_db *db, char **doc, struct signer **sig)
{
    *doc = NULL;
    *sig = NULL;
    PGresult *res = pc_db_exec(db, ROWS_SQL, 0, NULL);
    if (!pc_db_ok(res)) {
        if (res)
            PQclear(res);
        return -1;
    }
    int64_t now = pc_now_ms();
    int64_t life = as_cfg.jwt_expires * 1000, rotate = as_cfg.jwt_rotate_days * 86400000LL;
    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "keys");
    pc_jw_arr_begin(&w);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *kid = PQgetvalue(res, i, 0), *pubtxt = PQgetvalue(res, i, 1);
        const char *alg_col = PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3);
        int64_t created = pc_db_ms(PQgetvalue(res, i, 4));
        bool no_exp = PQgetisnull(res, i, 5);
        int64_t exp = no_exp ? 0 : pc_db_ms(PQgetvalue(res, i, 5));
        yajl_val pub = pc_json_parse(pubtxt, strlen(pubtxt));
        const char *alg = YAJL_IS_OBJECT(pub) ? pc_jwk_row_alg(alg_col, pub) : NULL;
        if (alg && (no_exp || exp + life > now))
            publish_row(&w, kid, alg, pub);
        int64_t retire = no_exp ? created + rotate : exp;
        if (*sig == NULL && alg && strcmp(alg, as_cfg.jwt_alg) == 0 && retire > now)
            *sig = open_row(kid, alg, PQgetvalue(res, i, 2), retire);
        yajl_tree_free(pub);
    }
    pc_jw_arr_end(&w);
    pc_jw_obj_end(&w);
    PQclear(res);
    *doc = pc_xstrdup(pc_buf_cstr(&b));
    pc_buf_free(&b);
    return 0;
}

/* Inserts a new key of JWT_ALG unless another replica just did. */
static int create_key(struct pc_db *db)
{
    if (pc_db_simple(db, "BEGIN") != 0)
        return -1;
    PGresult *res = pc_db_exec(db, "SELECT pg_advisory_xact_lock(" JWKS_LOCK_ID ")", 0, NULL);
    bool ok = pc_db_ok(res);
    if (res)
        PQclear(res);
    /* a row another replica made while we waited for the lock */
    char days[32];
    snprintf(days, sizeof days, "%lld", (long long)as_cfg.jwt_rotate_days);
    const char *p2[] = {as_cfg.jwt_alg, days};
    res = ok ? pc_db_exec(db, "SELECT 1 FROM \"jwks\" WHERE \"alg\" = $1 AND (\"expiresAt\" > now() "
                              "OR (\"expiresAt\" IS NULL AND \"createdAt\" > now() - "
                              "make_interval(days => $2::int)))", 2, p2)
             : NULL;
    ok = pc_db_ok(res);
    bool exists = ok && PQntuples(res) > 0;
    if (res)
        PQclear(res);
    if (ok && !exists) {
        char kid[KID_LEN + 1];
        pc_random_alnum(kid, KID_LEN);
        struct pc_jwk k;
        if (pc_jwk_generate(pc_jwk_alg_parse(as_cfg.jwt_alg), kid, &k) != 0)
            pc_fatal("jwt: cannot generate a %s key", as_cfg.jwt_alg);
        struct pc_buf pub = {0};
        struct pc_jw w = {.b = &pub};
        pc_jw_obj_begin(&w);
        pc_jwk_write_public(&k, &w);
        pc_jw_obj_end(&w);
        char *priv = pc_jwk_private_json(&k);
        char *hex = pc_seal(&as_cfg.secrets, priv, strlen(priv));
        pc_wipe(priv, strlen(priv));
        free(priv);
        struct pc_buf quoted = {0};
        pc_buf_printf(&quoted, "\"%s\"", hex);
        free(hex);
        const char *crv = k.alg == PC_JWK_ES256 ? "P-256" : k.alg == PC_JWK_EDDSA ? "Ed25519" : NULL;
        const char *p[] = {kid, pc_buf_cstr(&pub), pc_buf_cstr(&quoted), days, as_cfg.jwt_alg, crv};
        res = pc_db_exec(db, "INSERT INTO \"jwks\" (\"id\", \"publicKey\", \"privateKey\", "
                             "\"createdAt\", \"expiresAt\", \"alg\", \"crv\") VALUES ($1, $2, $3, "
                             "now(), now() + make_interval(days => $4::int), $5, $6)", 6, p);
        ok = pc_db_ok(res);
        if (res)
            PQclear(res);
        if (ok)
            pc_log_info("jwt: created signing key %s (%s)", kid, as_cfg.jwt_alg);
        pc_buf_free(&pub);
        pc_buf_free(&quoted);
        pc_jwk_free(&k);
    }
    if (ok && pc_db_simple(db, "COMMIT") == 0)
        return 0;
    if (pc_db_simple(db, "ROLLBACK") != 0)
        pc_db_close(db);
    return -1;
}

/* Re-reads the ring when it is stale. Returns 0 when a ring is there (maybe
 * a slightly old one while another thread reads), -1 when none could be had. */
static int refresh(struct pc_db *db, bool force)
{
    int64_t now = pc_now_ms();
    pthread_mutex_lock(&mu);
    bool stale = force || jwks_json == NULL || current == NULL || now - loaded_at >= RELOAD_MS ||
                 current->retire_at <= now;
    if (!stale || reloading) {
        bool have = jwks_json != NULL;
        pthread_mutex_unlock(&mu);
        return have ? 0 : -1;
    }
    reloading = true;
    pthread_mutex_unlock(&mu);

    char *doc;
    struct signer *sig;
    int rc = read_ring(db, &doc, &sig);
    if (rc == 0 && sig == NULL) {
        free(doc);
        rc = create_key(db) == 0 ? read_ring(db, &doc, &sig) : -1;
    }
    if (rc != 0)
        as_health_note_pg(false);

    pthread_mutex_lock(&mu);
    reloading = false;
    struct signer *old = NULL;
    if (rc == 0) {
        free(jwks_json);
        jwks_json = doc;
        old = current;
        current = sig;
        loaded_at = now;
    }
    bool have = jwks_json != NULL;
    pthread_mutex_unlock(&mu);
    signer_release(old);
    return have ? 0 : -1;
}

int as_jwt_init(struct pc_db *db)
{
    return refresh(db, true);
}

void as_jwt_free(void)
{
    pthread_mutex_lock(&mu);
    struct signer *s = current;
    current = NULL;
    free(jwks_json);
    jwks_json = NULL;
    pthread_mutex_unlock(&mu);
    signer_release(s);
}

char *as_jwt_mint(struct as_worker *w, const struct as_session *s, const struct as_user *u)
{
    if (refresh(&w->db, false) != 0)
        return NULL;
    pthread_mutex_lock(&mu);
    struct signer *sig = current;
    if (sig)
        sig->refs++;
    pthread_mutex_unlock(&mu);
    if (sig == NULL)
        return NULL;
    int64_t iat = pc_now_ms() / 1000;
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    as_jw_user_fields(&jw, u);
    pc_jw_key(&jw, "iat");
    pc_jw_int(&jw, iat);
    pc_jw_key(&jw, "sub");
    pc_jw_str(&jw, u->id);
    pc_jw_key(&jw, "sid");
    pc_jw_str(&jw, s->id);
    pc_jw_key(&jw, "exp");
    pc_jw_int(&jw, iat + as_cfg.jwt_expires);
    pc_jw_key(&jw, "iss");
    pc_jw_str(&jw, as_cfg.jwt_issuer);
    pc_jw_key(&jw, "aud");
    pc_jw_str(&jw, as_cfg.jwt_audience);
    pc_jw_obj_end(&jw);
    char *tok = pc_jwt_sign(&sig->key, pc_buf_cstr(&b));
    pc_buf_free(&b);
    if (tok == NULL)
        pc_log_error("jwt: signing with key %s failed", sig->key.kid);
    signer_release(sig);
    return tok;
}

#define KID_REREAD_MS 10000

/* The key of kid in the published document, parsed into *set. */
static const struct pc_jwk *published_key(struct pc_jwks *set, const char *kid)
{
    pthread_mutex_lock(&mu);
    char *doc = jwks_json ? pc_xstrdup(jwks_json) : NULL;
    pthread_mutex_unlock(&mu);
    if (doc == NULL)
        return NULL;
    int rc = pc_jwks_parse(doc, strlen(doc), set);
    free(doc);
    return rc == 0 ? pc_jwks_find(set, kid) : NULL;
}

enum as_jwt_verdict as_jwt_verify(struct as_worker *w, const char *tok, char **sub, char **sid,
                                  int64_t *exp_s)
{
    *sub = *sid = NULL;
    struct pc_jwt t;
    const char *why = NULL;
    if (pc_jwt_parse(tok, strlen(tok), &t, &why) != 0)
        return AS_JWT_INVALID;
    enum as_jwt_verdict v = AS_JWT_INVALID;
    struct pc_jwks set = {0};
    const struct pc_jwk *key = NULL;
    if (t.alg == PC_JWK_NONE || t.kid[0] == '\0')
        goto out;
    if (refresh(&w->db, false) != 0) {
        v = AS_JWT_UNAVAILABLE;
        goto out;
    }
    key = published_key(&set, t.kid);
    static int64_t forced_at;       /* atomic: the last read for an unknown kid */
    int64_t now = pc_now_ms(), last = __atomic_load_n(&forced_at, __ATOMIC_RELAXED);
    if (key == NULL && now - last >= KID_REREAD_MS &&
        __atomic_compare_exchange_n(&forced_at, &last, now, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
        /* a key another replica made a moment ago (at most every 10 s, so
         * made-up kids cannot make every call read the table) */
        pc_jwks_free(&set);
        memset(&set, 0, sizeof set);
        if (refresh(&w->db, true) != 0) {
            v = AS_JWT_UNAVAILABLE;
            goto out;
        }
        key = published_key(&set, t.kid);
    }
    if (key == NULL || !pc_jwt_verify(&t, tok, key, &why))
        goto out;
    const char *aud[] = {as_cfg.jwt_audience};
    struct pc_jwt_expect e = {.issuer = as_cfg.jwt_issuer, .audiences = aud, .naudiences = 1,
                              .now = pc_now_ms() / 1000, .leeway = 0, .require_exp = true};
    enum pc_jwt_claims_result cr = pc_jwt_check_claims(&t, &e);
    const char *s = pc_jwt_claim_str(&t, "sub"), *si = pc_jwt_claim_str(&t, "sid");
    if (cr == PC_JWT_CLAIMS_EXPIRED || cr == PC_JWT_CLAIMS_NOT_YET_VALID) {
        v = AS_JWT_EXPIRED;
    } else if (cr == PC_JWT_CLAIMS_OK && s && s[0] && pc_jwt_claim_num(&t, "exp", exp_s)) {
        *sub = pc_xstrdup(s);
        *sid = si && si[0] ? pc_xstrdup(si) : NULL;
        v = AS_JWT_OK;
    }
out:
    pc_jwks_free(&set);
    pc_jwt_free(&t);
    return v;
}

bool as_route_token(struct as_job *job, struct as_worker *w)
{
    struct as_session s = {0};
    struct as_user u = {0};
    if (!as_require_session(job, w, &s, &u))
        return true;
    char *tok = as_jwt_mint(w, &s, &u);
    as_session_free(&s);
    as_user_free(&u);
    if (tok == NULL)
        return as_error(job, 503, "JWT_UNAVAILABLE", "Cannot sign a token right now, try again");
    struct pc_buf b = {0};
    struct pc_jw jw = {.b = &b};
    pc_jw_obj_begin(&jw);
    pc_jw_key(&jw, "token");
    pc_jw_str(&jw, tok);
    pc_jw_obj_end(&jw);
    free(tok);
    return as_reply(job, 200, &b);
}

bool as_route_jwks(struct as_job *job, struct as_worker *w)
{
    if (refresh(&w->db, false) != 0)
        return as_fail_db(job);
    struct pc_buf b = {0};
    pthread_mutex_lock(&mu);
    pc_buf_puts(&b, jwks_json);
    pthread_mutex_unlock(&mu);
    char cc[64];
    snprintf(cc, sizeof cc, "public, max-age=%lld", (long long)as_cfg.jwks_max_age);
    as_add_header(job, "Cache-Control", cc);
    return as_reply(job, 200, &b);
}
