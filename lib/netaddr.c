/* Portcullis - MIT licence. See LICENSE.
 *
 * netaddr.c: see netaddr.h.
 */
#include "netaddr.h"
#include "util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* ":digits" to the end, a port 0..65535 */
static bool port_ok(const char *p, size_t n)
{
    if (n < 2 || n > 6 || p[0] != ':')
        return false;
    long v = 0;
    for (size_t i = 1; i < n; i++) {
        if (!is_digit(p[i]))
            return false;
        v = v * 10 + (p[i] - '0');
    }
    return v <= 65535;
}

static void unmap(struct pc_addr *a)
{
    if (a->family == AF_INET6 && memcmp(a->b, mapped_prefix, 12) == 0) {
        memmove(a->b, a->b + 12, 4);
        memset(a->b + 4, 0, 12);
        a->family = AF_INET;
    }
}

bool pc_addr_parse(const char *s, size_t n, struct pc_addr *a)
{
    memset(a, 0, sizeof *a);
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return false;
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL)
            return false;
        size_t in = (size_t)(rb - s) - 1, rest = n - in - 2;
        if (rest > 0 && !port_ok(rb + 1, rest))
            return false;
        memcpy(tmp, s + 1, in);
        tmp[in] = '\0';
        if (inet_pton(AF_INET6, tmp, a->b) != 1)
            return false;
        a->family = AF_INET6;
        unmap(a);
        return true;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    const char *colon = strchr(tmp, ':');
    if (colon && strchr(colon + 1, ':') == NULL) { /* a.b.c.d:port */
        if (!port_ok(colon, strlen(colon)))
            return false;
        tmp[colon - tmp] = '\0';
        if (inet_pton(AF_INET, tmp, a->b) != 1)
            return false;
        a->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET, tmp, a->b) == 1) {
        a->family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, tmp, a->b) == 1) {
        a->family = AF_INET6;
        unmap(a);
        return true;
    }
    return false;
}

void pc_addr_format(const struct pc_addr *a, char *out, size_t outsz)
{
    char t[INET6_ADDRSTRLEN];
    if (inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->b, t, sizeof t) == NULL)
        t[0] = '\0';
    snprintf(out, outsz, "%s", t);
}

void pc_addr_limit_key(const struct pc_addr *a, char *out, size_t outsz)
{
    if (a->family == AF_INET) {
        pc_addr_format(a, out, outsz);
        return;
    }
    struct pc_addr p = *a;
    memset(p.b + 8, 0, 8);
    char t[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, p.b, t, sizeof t) == NULL)
        t[0] = '\0';
    snprintf(out, outsz, "%s/64", t);
}

static bool prefix_eq(const uint8_t *x, const uint8_t *y, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(x, y, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t m = (uint8_t)(0xff << (8 - rest));
    return (x[full] & m) == (y[full] & m);
}

bool pc_cidr_parse(const char *s, size_t n, struct pc_cidr *c)
{
    memset(c, 0, sizeof *c);
    const char *slash = memchr(s, '/', n);
    size_t an = slash ? (size_t)(slash - s) : n;
    if (an == 0)
        return false;
    char tmp[64];
    if (an >= sizeof tmp)
        return false;
    memcpy(tmp, s, an);
    tmp[an] = '\0';
    struct pc_addr a = {0};
    if (inet_pton(AF_INET, tmp, a.b) == 1)
        a.family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, a.b) == 1)
        a.family = AF_INET6;
    else
        return false;
    int max = a.family == AF_INET ? 32 : 128, bits = max;
    if (slash) {
        size_t bn = n - an - 1;
        if (bn == 0 || bn > 3)
            return false;
        bits = 0;
        for (size_t i = 0; i < bn; i++) {
            if (!is_digit(slash[1 + i]))
                return false;
            bits = bits * 10 + (slash[1 + i] - '0');
        }
        if (bits > max)
            return false;
    }
    if (a.family == AF_INET6 && bits >= 96 && memcmp(a.b, mapped_prefix, 12) == 0) {
        unmap(&a);
        bits -= 96;
    }
    /* host bits must be zero: 10.0.0.1/8 is a typo, not a network */
    struct pc_addr z = a;
    int bytes = a.family == AF_INET ? 4 : 16;
    for (int i = 0; i < bytes; i++) {
        int lo = i * 8;
        uint8_t keep = bits >= lo + 8 ? 0xff : bits <= lo ? 0 : (uint8_t)(0xff << (8 - (bits - lo)));
        z.b[i] &= keep;
    }
    if (memcmp(z.b, a.b, 16) != 0)
        return false;
    c->a = a;
    c->bits = bits;
    return true;
}

bool pc_cidr_contains(const struct pc_cidr *c, const struct pc_addr *a)
{
    return c->a.family == a->family && prefix_eq(c->a.b, a->b, c->bits);
}

bool pc_cidr_list_contains(const struct pc_cidr *l, size_t n, const struct pc_addr *a)
{
    for (size_t i = 0; i < n; i++)
        if (pc_cidr_contains(&l[i], a))
            return true;
    return false;
}

int pc_cidr_list_parse(const char *s, struct pc_cidr **out, size_t *n, const char **err)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    while (*s) {
        while (*s == ',' || *s == ' ' || *s == '\t')
            s++;
        size_t len = strcspn(s, ", \t");
        if (len == 0)
            break;
        struct pc_cidr c;
        if (!pc_cidr_parse(s, len, &c)) {
            free(*out);
            *out = NULL;
            *n = 0;
            *err = "each entry must be an IP address or a network like 10.0.0.0/8 or "
                   "fd00::/8 (host bits zero)";
            return -1;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 4;
            *out = pc_xrealloc(*out, cap * sizeof **out);
        }
        (*out)[(*n)++] = c;
        s += len;
    }
    return 0;
}

void pc_xff_client(const struct pc_cidr *trusted, size_t ntrusted, const struct pc_addr *peer,
                   const char *const *values, size_t nvalues, struct pc_addr *client)
{
    *client = *peer;
    if (!pc_cidr_list_contains(trusted, ntrusted, peer))
        return;
    /* right to left over every entry of every line, last line first */
    for (size_t v = nvalues; v-- > 0;) {
        const char *line = values[v];
        size_t end = strlen(line);
        for (;;) {
            size_t start = end;
            while (start > 0 && line[start - 1] != ',')
                start--;
            struct pc_addr a;
            if (!pc_addr_parse(line + start, end - start, &a))
                return; /* garbage: the hop that handed it to us is the client */
            *client = a;
            if (!pc_cidr_list_contains(trusted, ntrusted, &a))
                return;
            if (start == 0)
                break;
            end = start - 1;
        }
    }
}
