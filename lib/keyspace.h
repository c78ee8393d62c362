/* Portcullis - MIT licence. See LICENSE.
 *
 * keyspace.h: the Redis keyspace authsvc and the gateway share, and the
 * formats of what lives in it.
 *
 * Everything here is a wire format shared by authsvc, every gateway replica
 * and the data already in Redis. A change is a protocol change: keep readers
 * tolerant of the old form for one release.
 *
 *   <prefix>s:<hash>     a session: the cached principal below, JSON (authsvc
 *                        writes it through on sign-in; the gateway after a
 *                        PostgreSQL fill); TTL = the session's life
 *   <prefix>k:<hash>     an API key: the cached principal, JSON (the gateway,
 *                        after a PostgreSQL fill); TTL L2_TTL_SECONDS
 *   <prefix>u:<hash>     an API key's live usage: a hash with the PC_USAGE_*
 *                        fields (gateway/limit.c's script counts, usage.c
 *                        writes back to PostgreSQL, authsvc/apikeys.c resets)
 *   <prefix>rsid:<id>    a revoked session id (its JWTs are refused); TTL
 *   <prefix>revseq       the revocation feed's counter (lib/revmsg.h)
 *   <prefix>rl:<ip>|<p>  authsvc's sign-in rate limit (authsvc only)
 *
 * <prefix> is REDIS_PREFIX (lib/conf_common.h validates it: at most
 * PC_REDIS_PREFIX_MAX printable characters), <hash> base64url-nopad of
 * SHA-256(credential) (pc_cred_hash, 43 characters). The revocation feed's
 * messages and relay script are lib/revmsg.h, which builds its keys here.
 *
 * Where it sits: the gateway's L2 stage (l2redis.c) and limit stage
 * (limit.c) build keys on the request path, so the builders write into the
 * caller's buffer and never allocate.
 */
#ifndef PC_KEYSPACE_H
#define PC_KEYSPACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>
#include "util.h"

struct pc_jw;

#define PC_REDIS_PREFIX_MAX 64      /* longest REDIS_PREFIX (conf_common.c) */
#define PC_REDIS_CHANNEL_MAX 128    /* longest REVOCATION_CHANNEL */
/** Room for any key below, built from a valid prefix (a 64-character sid
 * being the longest tail), with its NUL. */
#define PC_KEY_MAX 160

/* The tags after the prefix. */
#define PC_KEY_TAG_SESSION "s:"
#define PC_KEY_TAG_APIKEY "k:"
#define PC_KEY_TAG_USAGE "u:"
#define PC_KEY_TAG_REVOKED_SID "rsid:"
#define PC_KEY_REVSEQ "revseq"
#define PC_KEY_TAG_RATELIMIT "rl:"

/* The fields of the <prefix>u:<hash> usage hash. String literals, so that
 * gateway/limit.c's Lua script is built from them at compile time:
 *   "redis.call('HMGET', k, '" PC_USAGE_REMAINING "', '" PC_USAGE_LAST_REFILL "')" */
#define PC_USAGE_REMAINING "rem"        /* requests left (quota) */
#define PC_USAGE_LAST_REFILL "lr"       /* ms of the last refill, 0: never */
#define PC_USAGE_WINDOW_START "ws"      /* ms the rate-limit window opened */
#define PC_USAGE_WINDOW_COUNT "wc"      /* requests in that window */
#define PC_USAGE_LAST_REQUEST "last"    /* ms of the last allowed request */
/** How long an untouched usage hash lives (the script's PEXPIRE), ms. */
#define PC_USAGE_KEEP_MS 604800000
#define PC_USAGE_KEEP_MS_STR "604800000"

/** What a cached principal is; the tag of its key. */
enum pc_cache_kind {
    PC_CACHE_SESSION = 0,
    PC_CACHE_API_KEY,
};

/* ---- key builders ----
 * Each writes "<prefix><tag><tail>" into out[0..cap) and returns true, or
 * returns false (out is "" when cap > 0) when it does not fit. With a PC_KEY_MAX buffer and a validated prefix it always fits.
 * Any thread; no allocation. */

/** <prefix>s:<hash>: a session's cached principal. */
bool pc_key_session(char *out, size_t cap, const char *prefix, const char *hash);
/** <prefix>k:<hash>: an API key's cached principal. */
bool pc_key_apikey(char *out, size_t cap, const char *prefix, const char *hash);
/** <prefix>s:<hash> or <prefix>k:<hash> by kind, hash[0..n) not NUL-ended
 * (a revocation message's hash, say). */
bool pc_key_cred(char *out, size_t cap, const char *prefix, enum pc_cache_kind kind,
                 const char *hash, size_t n);
/** <prefix>u:<hash>: an API key's usage hash (PC_USAGE_* fields). */
bool pc_key_usage(char *out, size_t cap, const char *prefix, const char *hash);
/** <prefix>rsid:<id>: a revoked session id. */
bool pc_key_revoked_sid(char *out, size_t cap, const char *prefix, const char *sid);
/** <prefix>rsid:*: the SCAN pattern of every revoked session id; the id
 * starts at strlen(prefix) + strlen(PC_KEY_TAG_REVOKED_SID) in each key. */
bool pc_key_revoked_sid_pattern(char *out, size_t cap, const char *prefix);
/** <prefix>revseq: the revocation feed's sequence counter. */
bool pc_key_revseq(char *out, size_t cap, const char *prefix);

/* ---- the cached principal ----
 *
 * The JSON under <prefix>s: and <prefix>k:, members in this order:
 *
 *   session  {"kind":"session","id","userId","expiresAt","updatedAt",
 *             "user":{"id","email"[,"name"],"emailVerified"}}
 *   api key  {"kind":"api_key","id","userId","expiresAt","updatedAt",
 *             "enabled","permissions","limits":[remaining, refillInterval,
 *             refillAmount, lastRefillAt, createdAt, rateLimitEnabled (0/1),
 *             rateLimitTimeWindow, rateLimitMax]}
 *
 * Times are epoch ms integers. authsvc's write-through adds the user's name
 * (user_profile); the gateway's fill does not. Entries written before
 * emailVerified was always there lack it (has_email_verified). Readers
 * ignore "kind" (the key's tag says it) and take a top-level "email" when
 * there is no "user" object (older entries). */

struct pc_cache_limits {
    int64_t remaining;          /* requests left, -1 = unlimited */
    int64_t refill_interval;    /* ms, 0 = none */
    int64_t refill_amount;      /* -1 = none */
    int64_t last_refill_at;     /* ms, 0 = never */
    int64_t created_at;         /* ms */
    bool rl_enabled;            /* rateLimitEnabled */
    int64_t rl_window;          /* ms, 0 = no limit */
    int64_t rl_max;             /* 0 = no limit */
};

/** One cached principal. The writer reads the strings (NULL writes null);
 * the parser points them into tree, which pc_cache_entry_free releases. */
struct pc_cache_entry {
    enum pc_cache_kind kind;
    const char *id;             /* session id or API key id */
    const char *user_id;        /* userId (an API key's referenceId) */
    int64_t expires_at;         /* ms; 0 = never */
    int64_t updated_at;         /* ms; 0 when absent */
    /* sessions */
    const char *user_obj_id;    /* user.id; the writer uses user_id when NULL */
    const char *email;          /* user.email; NULL when absent */
    bool user_profile;          /* writer: also user.name and user.emailVerified */
    const char *name;           /* user.name (written only with user_profile;
                                 * the parser sets user_profile when it is a string) */
    bool email_verified;        /* user.emailVerified */
    bool has_email_verified;    /* parser: user.emailVerified was a boolean */
    /* API keys */
    bool enabled;               /* false only when the entry says false */
    const char *permissions;    /* the permissions JSON text; NULL when absent */
    bool has_limits;            /* parser: "limits" was the 8-array */
    struct pc_cache_limits lim; /* parser without limits: remaining and
                                 * refill_amount -1, the rest 0 */
    yajl_val tree;              /* parser: owns the strings above */
};

/** Writes e as the JSON above (one object) into w. Any thread. */
void pc_cache_entry_write(struct pc_jw *w, const struct pc_cache_entry *e);

/** Parses the JSON of a cached principal found under a key of kind. True
 * when it is usable: id and userId strings, expiresAt an integer, and, for
 * an API key, the limits array (an entry whose limits cannot be enforced is
 * not usable). Either way call pc_cache_entry_free(out) afterwards; the
 * strings in *out live until then. Any thread; allocates the parse tree
 * only. */
PC_MUSTCHECK bool pc_cache_entry_parse(const char *s, size_t n, enum pc_cache_kind kind,
                                       struct pc_cache_entry *out);

/** Releases what pc_cache_entry_parse holds (its strings die). NULL-safe. */
void pc_cache_entry_free(struct pc_cache_entry *e);

#endif
