/* Portcullis - MIT licence. See LICENSE.
 *
 * revmsg.h: the revocation feed's wire format, the one rule authsvc (which
 * publishes) and the gateway (which subscribes) share.
 *
 * A revocation is a tag: "s:<hash>" (a session token), "k:<hash>" (an API
 * key) or "i:<session id>" (that session's JWTs), <hash> being
 * base64url-nopad(SHA-256(credential)). The tag is what migration 0005's
 * log rows and NOTIFY payloads hold.
 *
 * Relaying a tag is one atomic script in Redis, on the keys of
 * lib/keyspace.h: DEL <prefix><tag> (for "i:", SET <prefix>rsid:<id> with a
 * TTL instead), INCR <prefix>revseq, and
 * PUBLISH "#<seq> <payload>" where <payload> is the bare hash, or
 * "sid:<id>". Because the counter and the PUBLISH happen together, every
 * subscriber sees the numbers in order with no holes: a hole means a lost
 * message, a smaller number a Redis that lost its data; either way a
 * gateway flushes L1. Messages without "#<seq> " (an operator's own
 * PUBLISH, an older authsvc) are still accepted, without that check.
 */
#ifndef PC_REVMSG_H
#define PC_REVMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "crypto.h"

struct pc_redis;

#define PC_REV_SID_MAX 64      /* longest session id we accept in "i:" / "sid:" */

/** A parsed feed message. Points into the message; nothing is owned. */
struct pc_rev_msg {
    int64_t seq;                /* the "#<seq> " number, 0 when absent */
    char kind;                  /* 'h' a credential hash, 'i' a session id */
    const char *id;             /* the hash (43 chars) or the session id */
    size_t id_len;
    unsigned char hash[32];     /* the decoded hash, for kind 'h' */
};

/** Parses one message from the channel. Returns false for anything that is
 * not a revocation (the caller ignores it). */
PC_MUSTCHECK bool pc_rev_parse(const char *m, size_t len, struct pc_rev_msg *out);

/** True when tag is a well-formed "s:"/"k:" hash tag or "i:" session id. */
bool pc_rev_tag_ok(const char *tag);

/** Relays one tag on r: the atomic DEL (or SET rsid) + INCR + PUBLISH above.
 * sid_keep_s is how long "rsid:" keys live. Returns false when Redis did
 * not run it (unreachable, or a refusal), or when a key would not fit
 * PC_KEY_MAX (a prefix longer than REDIS_PREFIX allows); the caller tries
 * again later. */
PC_MUSTCHECK bool pc_rev_relay(struct pc_redis *r, const char *prefix, const char *channel,
                               const char *tag, int64_t sid_keep_s);

/** What the gateway does with a message's sequence number, given the last
 * one it saw on this subscription (0: none yet). Returns true when L1 must
 * be flushed (a hole or a step back), and updates *last. */
bool pc_rev_seq_check(int64_t *last, int64_t seq);

#endif
