/* Portcullis - MIT licence. See LICENSE.
 *
 * url.c: see url.h. The parsing steps follow the WHATWG URL Standard's basic
 * URL parser for the special schemes http and https with no base URL:
 * scheme state, special authority (ignore) slashes, authority, host and
 * port states, and the host parser (percent-decoding, IPv4 and IPv6). What
 * a browser would map through IDNA (non-ASCII hosts) is refused instead, as
 * is any host character outside letters, digits, '-', '_' and '.'.
 */
#include "url.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_MAX 1024   /* longest authority looked at (a longer one is refused) */
#define LABELS_MAX 128  /* a 255-byte host has at most 128 labels */
#define PAT_STARS_MAX 4 /* '*' labels in one pattern (bounds the matcher) */

static bool is_tabnl(unsigned char c)
{
    return c == '\t' || c == '\n' || c == '\r';
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* WHATWG "IPv4 number parser": 0x.. hex, 0.. octal, else decimal. Values
 * saturate above 2^32 (every caller refuses those). */
static bool ipv4_number(const char *p, size_t n, uint64_t *out)
{
    if (n == 0)
        return false;
    unsigned radix = 10;
    if (n >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        radix = 16;
        p += 2;
        n -= 2;
    } else if (n >= 2 && p[0] == '0') {
        radix = 8;
        p++;
        n--;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = pc_hexval((char)p[i]);
        if (d < 0 || (unsigned)d >= radix)
            return false;
        v = v * radix + (unsigned)d;
        if (v > 0xffffffffULL)
            v = 0x100000000ULL; /* saturate: too big either way */
    }
    *out = v;
    return true;
}

/* WHATWG "ends in a number": the last label is all digits or 0x-hex. */
static bool ends_in_number(const char *d, size_t n)
{
    const char *last = d;
    for (size_t i = 0; i < n; i++)
        if (d[i] == '.')
            last = d + i + 1;
    size_t ln = (size_t)(d + n - last);
    if (ln == 0)
        return false;
    bool digits = true;
    for (size_t i = 0; i < ln; i++)
        digits = digits && is_digit((unsigned char)last[i]);
    if (digits)
        return true;
    if (ln >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
        for (size_t i = 2; i < ln; i++)
            if (pc_hexval((char)last[i]) < 0)
                return false;
        return true;
    }
    return false;
}

/* WHATWG "IPv4 parser" on d (no empty labels), dotted decimal into out. */
static bool parse_ipv4(const char *d, size_t n, char *out, size_t outsz)
{
    uint64_t nums[4];
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && d[i] != '.')
            continue;
        if (count == 4 || !ipv4_number(d + start, i - start, &nums[count]))
            return false;
        count++;
        start = i + 1;
    }
    for (size_t i = 0; i + 1 < count; i++)
        if (nums[i] > 255)
            return false;
    if (nums[count - 1] >= (1ULL << (8 * (5 - count))))
        return false;
    uint64_t a = nums[count - 1];
    for (size_t i = 0; i + 1 < count; i++)
        a += nums[i] << (8 * (3 - i));
    snprintf(out, outsz, "%u.%u.%u.%u", (unsigned)(a >> 24) & 255, (unsigned)(a >> 16) & 255,
             (unsigned)(a >> 8) & 255, (unsigned)a & 255);
    return true;
}

/* The inside of "[...]": inet_pton's IPv6 grammar (that of RFC 4291, as
 * WHATWG's), serialized as WHATWG does: lower-case hex, the first longest
 * run of two or more zero pieces as "::". */
static bool parse_ipv6(const char *p, size_t n, char *out, size_t outsz)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return false;
    for (size_t i = 0; i < n; i++)
        if (pc_hexval((char)p[i]) < 0 && p[i] != ':' && p[i] != '.')
            return false;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    unsigned char b[16];
    if (inet_pton(AF_INET6, tmp, b) != 1)
        return false;
    unsigned pieces[8];
    for (int i = 0; i < 8; i++)
        pieces[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
    int best = -1, best_len = 1;
    for (int i = 0; i < 8;) {
        if (pieces[i] != 0) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && pieces[j] == 0)
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j;
    }
    size_t o = 0;
    out[o++] = '[';
    for (int i = 0; i < 8; i++) {
        if (i == best) {
            out[o++] = ':';
            if (i == 0)
                out[o++] = ':';
            i += best_len - 1;
            continue;
        }
        o += (size_t)snprintf(out + o, outsz - o, "%x", pieces[i]);
        if (i < 7)
            out[o++] = ':';
    }
    out[o++] = ']';
    out[o] = '\0';
    return true;
}

/* A non-bracketed host: percent-decoded, lower-cased, then IPv4 when it ends
 * in a number, else a domain of letters, digits, '-', '_' and dots. */
static bool parse_host(const char *p, size_t n, struct pc_url *u)
{
    char d[PC_URL_HOST_MAX];
    size_t dl = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '%' && i + 2 < n && pc_hexval((char)p[i + 1]) >= 0 &&
            pc_hexval((char)p[i + 2]) >= 0) {
            c = (unsigned char)(pc_hexval((char)p[i + 1]) * 16 +
                                pc_hexval((char)p[i + 2]));
            i += 2;
        }
        c = lower(c);
        if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.'))
            return false; /* forbidden, '%', or non-ASCII (IDNA not done) */
        if (dl >= sizeof d - 1)
            return false;
        d[dl++] = (char)c;
    }
    d[dl] = '\0';
    if (dl == 0 || d[0] == '.' || d[dl - 1] == '.' || strstr(d, "..") != NULL)
        return false; /* empty labels, a trailing dot included */
    if (ends_in_number(d, dl)) {
        u->kind = PC_URL_IPV4;
        return parse_ipv4(d, dl, u->host, sizeof u->host);
    }
    u->kind = PC_URL_DOMAIN;
    memcpy(u->host, d, dl + 1);
    return true;
}

enum pc_url_rc pc_url_parse(const char *s, size_t n, struct pc_url *u)
{
    memset(u, 0, sizeof *u);
    u->port = -1;
    size_t i = 0, end = n;
    while (i < end && (unsigned char)s[i] <= 0x20) /* C0 control or space */
        i++;
    while (end > i && (unsigned char)s[end - 1] <= 0x20)
        end--;

    /* scheme state */
    char scheme[8];
    size_t sl = 0;
    bool colon = false;
    for (; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_tabnl(c))
            continue;
        if (c == ':') {
            colon = sl > 0;
            break;
        }
        if (!(is_alpha(c) || (sl > 0 && (is_digit(c) || c == '+' || c == '-' || c == '.'))))
            break;
        if (sl < sizeof scheme - 1)
            scheme[sl] = (char)lower(c);
        sl++;
    }
    if (!colon)
        return PC_URL_NO_SCHEME;
    if (sl == 4 && memcmp(scheme, "http", 4) == 0)
        u->https = false;
    else if (sl == 5 && memcmp(scheme, "https", 5) == 0)
        u->https = true;
    else
        return PC_URL_SCHEME;
    i++;

    /* special authority (ignore) slashes state: any run of '/' and '\' */
    while (i < end && (s[i] == '/' || s[i] == '\\' || is_tabnl((unsigned char)s[i])))
        i++;

    /* authority state: up to '/', '\', '?' or '#' */
    char auth[AUTH_MAX];
    size_t al = 0;
    for (; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (is_tabnl(c))
            continue;
        if (c == '/' || c == '\\' || c == '?' || c == '#')
            break;
        if (al >= sizeof auth)
            return PC_URL_BAD;
        auth[al++] = (char)c;
    }
    u->tail = i;

    /* the host starts after the last '@' */
    size_t hs = 0;
    for (size_t k = 0; k < al; k++)
        if (auth[k] == '@')
            hs = k + 1;
    u->userinfo = hs > 0;
    const char *hp = auth + hs;
    size_t hn = al - hs, hl;
    if (hn == 0)
        return PC_URL_BAD;
    if (hp[0] == '[') {
        const char *rb = memchr(hp, ']', hn);
        if (rb == NULL)
            return PC_URL_BAD;
        hl = (size_t)(rb - hp) + 1;
        if (hl < hn && hp[hl] != ':')
            return PC_URL_BAD;
        u->kind = PC_URL_IPV6;
        if (!parse_ipv6(hp + 1, hl - 2, u->host, sizeof u->host))
            return PC_URL_BAD;
    } else {
        const char *c = memchr(hp, ':', hn);
        hl = c ? (size_t)(c - hp) : hn;
        if (hl == 0 || !parse_host(hp, hl, u))
            return PC_URL_BAD;
    }

    /* port state: digits, possibly none; the scheme's default is no port */
    if (hl < hn) {
        long port = 0;
        bool any = false;
        for (size_t k = hl + 1; k < hn; k++) {
            if (!is_digit((unsigned char)hp[k]))
                return PC_URL_BAD;
            port = port * 10 + (hp[k] - '0');
            if (port > 65535)
                return PC_URL_BAD;
            any = true;
        }
        if (any && port != (u->https ? 443 : 80))
            u->port = (int)port;
    }
    return PC_URL_OK;
}

void pc_url_origin(const struct pc_url *u, char *out, size_t outsz)
{
    if (u->port >= 0)
        snprintf(out, outsz, "%s://%s:%d", u->https ? "https" : "http", u->host, u->port);
    else
        snprintf(out, outsz, "%s://%s", u->https ? "https" : "http", u->host);
}

/* A path segment that some reader resolves as "." or "..". */
static bool dot_segment(const char *p, size_t n)
{
    size_t dots = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] == '.') {
            i++;
        } else if (n - i >= 3 && p[i] == '%' && p[i + 1] == '2' &&
                   (p[i + 2] == 'e' || p[i + 2] == 'E')) {
            i += 3;
        } else {
            return false;
        }
        dots++;
    }
    return dots == 1 || dots == 2;
}

bool pc_url_relative_ok(const char *s, size_t n)
{
    if (n == 0 || s[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return false;
    }
    size_t pend = 0;
    while (pend < n && s[pend] != '?' && s[pend] != '#')
        pend++;
    /* the path: no empty segment ("//"), no dot segment, no %2f or %5c */
    size_t seg = 1;
    for (size_t i = 1; i <= pend; i++) {
        if (i < pend && s[i] != '/')
            continue;
        if (i < pend && s[i - 1] == '/')
            return false;
        if (dot_segment(s + seg, i - seg))
            return false;
        seg = i + 1;
    }
    for (size_t i = 0; i + 3 <= pend; i++)
        if (s[i] == '%' && ((s[i + 1] == '2' && (s[i + 2] == 'f' || s[i + 2] == 'F')) ||
                            (s[i + 1] == '5' && (s[i + 2] == 'c' || s[i + 2] == 'C'))))
            return false;
    return true;
}

/* ---- trusted-origin patterns ---- */

struct labels {
    size_t n;
    const char *p[LABELS_MAX];
    size_t len[LABELS_MAX];
};

static bool split_labels(const char *h, struct labels *l)
{
    l->n = 0;
    const char *start = h;
    for (const char *c = h;; c++) {
        if (*c != '.' && *c != '\0')
            continue;
        if (l->n == LABELS_MAX)
            return false;
        l->p[l->n] = start;
        l->len[l->n] = (size_t)(c - start);
        l->n++;
        if (*c == '\0')
            return true;
        start = c + 1;
    }
}

static bool is_star(const struct labels *l, size_t i)
{
    return l->len[i] == 1 && l->p[i][0] == '*';
}

/* pattern labels [pi..] against host labels [hi..]; '*' takes one or more */
static bool labels_match(const struct labels *pat, size_t pi, const struct labels *h, size_t hi)
{
    if (pi == pat->n)
        return hi == h->n;
    if (hi == h->n)
        return false;
    if (is_star(pat, pi)) {
        for (size_t take = 1; hi + take <= h->n; take++)
            if (labels_match(pat, pi + 1, h, hi + take))
                return true;
        return false;
    }
    return pat->len[pi] == h->len[hi] && memcmp(pat->p[pi], h->p[hi], h->len[hi]) == 0 &&
           labels_match(pat, pi + 1, h, hi + 1);
}

static bool strnieq_ascii(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

/* the value of up to 3 decimal digits */
static int small_num(const char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n && i < 3; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

static int pat_err(const char **err, const char *msg)
{
    *err = msg;
    return -1;
}

static int parse_wild(const char *s, size_t n, struct pc_origin_pat *p, const char **err)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(s + i, "://", 3) == 0) {
            sep = s + i;
            break;
        }
    const char *h = s;
    size_t hn = n;
    p->scheme = 0;
    if (sep) {
        size_t sl = (size_t)(sep - s);
        if (sl == 4 && strnieq_ascii(s, "http", 4))
            p->scheme = 1;
        else if (sl == 5 && strnieq_ascii(s, "https", 5))
            p->scheme = 2;
        else
            return pat_err(err, "only http:// and https:// origins can be trusted");
        h = sep + 3;
        hn = n - sl - 3;
    }
    if (hn > 0 && h[hn - 1] == '/')
        hn--;
    /* port: ":*" (any) or digits */
    const char *colon = memchr(h, ':', hn);
    if (colon) {
        const char *ps = colon + 1;
        size_t pn = (size_t)(h + hn - ps);
        if (pn == 1 && ps[0] == '*') {
            p->port = -2;
        } else {
            long port = 0;
            if (pn == 0 || pn > 5)
                return pat_err(err, "the port must be a number from 1 to 65535 or *");
            for (size_t i = 0; i < pn; i++) {
                if (!is_digit((unsigned char)ps[i]))
                    return pat_err(err, "the port must be a number from 1 to 65535 or *");
                port = port * 10 + (ps[i] - '0');
            }
            if (port < 1 || port > 65535)
                return pat_err(err, "the port must be a number from 1 to 65535 or *");
            p->port = (int)port;
        }
        hn = (size_t)(colon - h);
    }
    if (hn == 0 || hn >= sizeof p->host)
        return pat_err(err, "needs a host, like https://*.example.com");
    for (size_t i = 0; i < hn; i++) {
        unsigned char c = lower((unsigned char)h[i]);
        if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_' || c == '.' || c == '*'))
            return pat_err(err, "must be scheme://host[:port] (no path, query, '@' or "
                                "backslash), like https://*.example.com");
        p->host[i] = (char)c;
    }
    p->host[hn] = '\0';
    struct labels l;
    if (!split_labels(p->host, &l))
        return pat_err(err, "has too many labels");
    size_t stars = 0, literal = 0;
    bool ip = true;
    for (size_t i = 0; i < l.n; i++) {
        if (l.len[i] == 0)
            return pat_err(err, "has an empty label");
        if (is_star(&l, i)) {
            stars++;
            continue;
        }
        if (memchr(l.p[i], '*', l.len[i]))
            return pat_err(err, "a * must be a whole label, like https://*.example.com");
        literal++;
        bool digits = l.len[i] <= 3;
        for (size_t k = 0; k < l.len[i]; k++)
            digits = digits && is_digit((unsigned char)l.p[i][k]);
        if (!digits || (l.len[i] > 1 && l.p[i][0] == '0') || small_num(l.p[i], l.len[i]) > 255)
            ip = false;
    }
    if (literal == 0)
        return pat_err(err, "would trust every host; name the domain, like "
                            "https://*.example.com");
    if (stars > PAT_STARS_MAX)
        return pat_err(err, "has more than 4 * labels");
    p->ipv4 = ip && stars > 0;
    if (p->ipv4) {
        if (l.n > 4)
            return pat_err(err, "an IPv4 pattern has at most 4 parts");
    } else if (is_star(&l, l.n - 1)) {
        return pat_err(err, "the last label must not be *");
    }
    p->wild = stars > 0;
    if (!p->wild && p->scheme == 0)
        return pat_err(err, "must be an origin like https://app.example.com");
    return 0;
}

int pc_origin_pat_parse(const char *s, size_t n, struct pc_origin_pat *p, const char **err)
{
    memset(p, 0, sizeof *p);
    p->port = -1;
    if (n == 0)
        return pat_err(err, "is empty");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return pat_err(err, "must be printable ASCII without spaces");
        if (c == '?')
            return pat_err(err, "? wildcards are not supported; a * stands for whole labels");
        if (c == '\\')
            return pat_err(err, "must not contain a backslash");
    }
    if (memchr(s, '*', n))
        return parse_wild(s, n, p, err);
    const char *sep = NULL;
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(s + i, "://", 3) == 0) {
            sep = s + i;
            break;
        }
    if (sep == NULL)
        return pat_err(err, "each origin must look like https://app.example.com (wildcards like "
                            "https://*.example.com are allowed)");
    struct pc_url u;
    enum pc_url_rc rc = pc_url_parse(s, n, &u);
    if (rc == PC_URL_SCHEME)
        return pat_err(err, "only http:// and https:// origins can be trusted");
    if (rc != PC_URL_OK || sep != s + (u.https ? 5 : 4))
        return pat_err(err, "is not a valid http(s) origin");
    if (u.userinfo)
        return pat_err(err, "must not contain user:password@");
    if (!(u.tail == n || (u.tail + 1 == n && s[u.tail] == '/')))
        return pat_err(err, "must be an origin (scheme://host[:port]) without a path, query "
                            "or fragment");
    p->scheme = u.https ? 2 : 1;
    p->wild = false;
    memcpy(p->host, u.host, sizeof p->host);
    p->port = u.port;
    return 0;
}

bool pc_origin_pat_match(const struct pc_origin_pat *p, const struct pc_url *u)
{
    if (u->userinfo)
        return false;
    if ((p->scheme == 1 && u->https) || (p->scheme == 2 && !u->https))
        return false;
    if (p->port == -1) {
        if (u->port != -1)
            return false;
    } else if (p->port != -2) {
        int eff = u->port >= 0 ? u->port : (u->https ? 443 : 80);
        if (eff != p->port)
            return false;
    }
    if (!p->wild)
        return strcmp(p->host, u->host) == 0;
    if (u->kind != (p->ipv4 ? PC_URL_IPV4 : PC_URL_DOMAIN))
        return false;
    struct labels pl, hl;
    if (!split_labels(p->host, &pl) || !split_labels(u->host, &hl))
        return false;
    return labels_match(&pl, 0, &hl, 0);
}

/* ---- lists of patterns ---- */

int pc_origin_list_add1(struct pc_origin_list *l, const char *s, size_t n, const char **why)
{
    struct pc_origin_pat p;
    if (pc_origin_pat_parse(s, n, &p, why) != 0)
        return -1;
    l->pats = pc_xrealloc(l->pats, (l->n + 1) * sizeof *l->pats);
    l->pats[l->n++] = p;
    return 0;
}

int pc_origin_list_add(struct pc_origin_list *l, const char *s, char *err, size_t errsz)
{
    size_t had = l->n;
    while (s && *s) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t n = strcspn(s, ",");
        size_t m = n;
        while (m > 0 && s[m - 1] == ' ')
            m--;
        const char *why;
        if (m > 0 && pc_origin_list_add1(l, s, m, &why) != 0) {
            snprintf(err, errsz, "\"%.*s\" %s", (int)(m > 100 ? 100 : m), s, why);
            l->n = had;
            return -1;
        }
        s += n;
    }
    return 0;
}

bool pc_origin_list_match(const struct pc_origin_list *l, const struct pc_url *u)
{
    if (u->userinfo)
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (pc_origin_pat_match(&l->pats[i], u))
            return true;
    return false;
}

bool pc_origin_list_trusts(const struct pc_origin_list *l, const char *s, size_t n)
{
    struct pc_url u;
    return pc_url_parse(s, n, &u) == PC_URL_OK && pc_origin_list_match(l, &u);
}

void pc_origin_list_free(struct pc_origin_list *l)
{
    free(l->pats);
    l->pats = NULL;
    l->n = 0;
}
