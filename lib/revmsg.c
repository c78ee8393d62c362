/* Portcullis - MIT licence. See LICENSE.
 *
 * revmsg.c: the revocation feed's wire format (see revmsg.h).
 */
#include "revmsg.h"
#include "keyspace.h"
#include "redis.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <hiredis/hiredis.h>

/* KEYS[1] the counter, KEYS[2] the key to drop (or the rsid key to set);
 * ARGV[1] the channel, ARGV[2] the payload, ARGV[3] "del" or "set",
 * ARGV[4] the rsid TTL in seconds. */
static const char relay_script[] =
    "if ARGV[3] == 'set' then redis.call('SET', KEYS[2], '1', 'EX', ARGV[4]) "
    "else redis.call('DEL', KEYS[2]) end "
    "local n = redis.call('INCR', KEYS[1]) "
    "redis.call('PUBLISH', ARGV[1], '#' .. n .. ' ' .. ARGV[2]) "
    "return n";

static bool url_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool sid_ok(const char *s, size_t n)
{
    return n > 0 && n <= PC_REV_SID_MAX && url_chars(s, n);
}

static bool hash_ok(const char *s, size_t n, unsigned char out[32])
{
    unsigned char h[40];
    if (n != PC_HASH_B64_LEN || !url_chars(s, n) || pc_b64_decode(s, n, h) != 32)
        return false;
    if (out)
        memcpy(out, h, 32);
    return true;
}

bool pc_rev_tag_ok(const char *tag)
{
    size_t n = strlen(tag);
    if (n < 3 || tag[1] != ':')
        return false;
    if (tag[0] == 'i')
        return sid_ok(tag + 2, n - 2);
    return (tag[0] == 's' || tag[0] == 'k') && hash_ok(tag + 2, n - 2, NULL);
}

bool pc_rev_parse(const char *m, size_t len, struct pc_rev_msg *out)
{
    memset(out, 0, sizeof *out);
    if (len > 0 && m[0] == '#') {
        size_t i = 1;
        int64_t seq = 0;
        while (i < len && i <= 19 && m[i] >= '0' && m[i] <= '9')
            seq = seq * 10 + (m[i++] - '0');
        if (i == 1 || i >= len || m[i] != ' ' || seq <= 0)
            return false;
        out->seq = seq;
        m += i + 1;
        len -= i + 1;
    }
    if (len > 4 && memcmp(m, "sid:", 4) == 0) {
        if (!sid_ok(m + 4, len - 4))
            return false;
        out->kind = 'i';
        out->id = m + 4;
        out->id_len = len - 4;
        return true;
    }
    if (!hash_ok(m, len, out->hash))
        return false;
    out->kind = 'h';
    out->id = m;
    out->id_len = len;
    return true;
}

bool pc_rev_relay(struct pc_redis *r, const char *prefix, const char *channel, const char *tag,
                  int64_t sid_keep_s)
{
    if (!pc_rev_tag_ok(tag))
        return false;
    bool sid = tag[0] == 'i';
    char seqkey[PC_KEY_MAX], key[PC_KEY_MAX], payload[96], ttl[24];
    bool fits = pc_key_revseq(seqkey, sizeof seqkey, prefix);
    if (sid) {
        fits = fits && pc_key_revoked_sid(key, sizeof key, prefix, tag + 2);
        snprintf(payload, sizeof payload, "sid:%s", tag + 2);
    } else {
        fits = fits && pc_key_cred(key, sizeof key, prefix,
                                   tag[0] == 's' ? PC_CACHE_SESSION : PC_CACHE_API_KEY, tag + 2,
                                   strlen(tag + 2));
        snprintf(payload, sizeof payload, "%s", tag + 2);
    }
    if (!fits)
        return false;
    snprintf(ttl, sizeof ttl, "%lld", (long long)(sid_keep_s > 0 ? sid_keep_s : 1));
    const char *argv[] = {"EVAL", relay_script, "2", seqkey, key, channel, payload,
                          sid ? "set" : "del", ttl};
    redisReply *rep = pc_redis_cmd(r, 9, argv, NULL);
    bool ok = rep != NULL && rep->type == REDIS_REPLY_INTEGER;
    if (rep)
        freeReplyObject(rep);
    return ok;
}

bool pc_rev_seq_check(int64_t *last, int64_t seq)
{
    if (seq <= 0)
        return false;           /* an unnumbered message says nothing */
    bool flush = *last != 0 && seq != *last + 1;
    *last = seq;
    return flush;
}
