/* Portcullis - MIT licence. See LICENSE.
 *
 * netaddr.h: client IP addresses: one spelling per address, CIDR lists
 * (TRUSTED_PROXIES), and the X-Forwarded-For walk that picks the client
 * behind trusted proxies.
 *
 * One address, one spelling: text is parsed to binary, an IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) becomes the IPv4 address, and the canonical text
 * is inet_ntop's (lower-case, compressed). For rate limiting an IPv6 client
 * is its /64, since one host is routinely given a whole /64.
 */
#ifndef PC_NETADDR_H
#define PC_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PC_ADDR_STRLEN 48 /* INET6_ADDRSTRLEN + "/64" */

struct pc_addr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t b[16];    /* network order; IPv4 in the first 4 bytes */
};

struct pc_cidr {
    struct pc_addr a; /* masked to bits */
    int bits;
};

/** Parses an address: a.b.c.d, IPv6 (any case, "::", embedded IPv4), either
 * optionally with a port (a.b.c.d:p, [v6]:p) or brackets ([v6]). Spaces
 * around it are skipped. Mapped IPv6 becomes IPv4. False on anything else. */
bool pc_addr_parse(const char *s, size_t n, struct pc_addr *a);
/** The canonical text of a (>= PC_ADDR_STRLEN bytes). */
void pc_addr_format(const struct pc_addr *a, char *out, size_t outsz);
/** The rate-limit key of a: IPv4 as text, IPv6 as its /64 ("2001:db8:1:2::/64"). */
void pc_addr_limit_key(const struct pc_addr *a, char *out, size_t outsz);

/** Parses "addr" or "addr/bits" (bits beyond the prefix must be zero).
 * An IPv4-mapped IPv6 prefix of 96 bits or more is taken as IPv4. */
bool pc_cidr_parse(const char *s, size_t n, struct pc_cidr *c);
bool pc_cidr_contains(const struct pc_cidr *c, const struct pc_addr *a);

/** Parses a comma/space separated CIDR list into a new array (*out, *n;
 * free() it). Returns 0, or -1 with *err naming the problem. "" is empty. */
int pc_cidr_list_parse(const char *s, struct pc_cidr **out, size_t *n, const char **err);
bool pc_cidr_list_contains(const struct pc_cidr *l, size_t n, const struct pc_addr *a);

/** The client behind trusted proxies: when peer is in trusted, the values
 * (header lines in order, each a comma list) are walked from the right and
 * the first address not in trusted is the client; an unparseable entry
 * stops the walk at the last trusted hop, and an all-trusted chain gives its
 * left-most address. Otherwise (peer not trusted, or no values) the peer. */
void pc_xff_client(const struct pc_cidr *trusted, size_t ntrusted, const struct pc_addr *peer,
                   const char *const *values, size_t nvalues, struct pc_addr *client);

#endif
