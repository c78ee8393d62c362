/* Portcullis - MIT licence. See LICENSE.
 *
 * connlimit.h: open connections counted by client address, for the
 * per-address connection caps of authsvc and the gateway. The address is
 * the TCP peer's (never a header), an IPv4-mapped IPv6 address counts as
 * its IPv4 address. A table may be shared by threads (locked).
 */
#ifndef PC_CONNLIMIT_H
#define PC_CONNLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/** An address as 16 bytes: IPv4 as ::ffff:a.b.c.d. */
struct pc_ipkey {
    unsigned char a[16];
};

/** Fills *k (and text, "1.2.3.4" or "::1", when textsz > 0) from a peer
 * address. False for a family other than AF_INET/AF_INET6. */
bool pc_ipkey_from(const struct sockaddr *sa, struct pc_ipkey *k, char *text, size_t textsz);

/** True when fd's peer has sent anything (a handshake ACK counts) within the
 * last ms: a connection just made, not one that waited in the backlog. */
bool pc_conn_fresh(int fd, unsigned ms);

struct pc_iptable;
struct pc_iptable *pc_iptable_new(void);
void pc_iptable_free(struct pc_iptable *t);
/** Counts one more connection from k unless max (> 0) are open already;
 * max 0: no cap. True when counted. */
bool pc_iptable_acquire(struct pc_iptable *t, const struct pc_ipkey *k, int64_t max);
/** Forgets one connection from k (counted by pc_iptable_acquire). */
void pc_iptable_release(struct pc_iptable *t, const struct pc_ipkey *k);
/** Addresses with at least one connection open. */
size_t pc_iptable_addresses(struct pc_iptable *t);

#endif
