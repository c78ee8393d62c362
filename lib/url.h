/* Portcullis - MIT licence. See LICENSE.
 *
 * url.h: the origin of an http(s) URL as a browser reads it (the WHATWG URL
 * Standard's basic URL parser, cut down to what an origin needs), safe
 * relative paths, and trusted-origin patterns.
 *
 * Why a browser's reading: a redirect target or an Origin is checked here and
 * then followed by a browser, so the two must agree on the host. In the
 * special schemes http and https a backslash ends the authority like a slash,
 * the host is what follows the last '@', the host is percent-decoded and
 * lower-cased, IPv4 hosts may be written in hex, octal or fewer parts, tabs
 * and newlines anywhere are dropped, and any run of '/' and '\' after the
 * scheme is skipped ("https:/\evil.test" is https://evil.test).
 *
 * Everything here is bounded by the input length and allocates nothing.
 */
#ifndef PC_URL_H
#define PC_URL_H

#include <stdbool.h>
#include <stddef.h>

#define PC_URL_HOST_MAX 256 /* canonical host, NUL included */

enum pc_url_host_kind {
    PC_URL_DOMAIN = 0,  /* LDH (and '_') labels, lower case */
    PC_URL_IPV4,        /* dotted decimal */
    PC_URL_IPV6,        /* "[...]", compressed, lower case */
};

struct pc_url {
    bool https;                     /* scheme https, else http */
    bool userinfo;                  /* the authority had user[:password]@ */
    enum pc_url_host_kind kind;
    char host[PC_URL_HOST_MAX];     /* canonical host */
    int port;                       /* explicit non-default port, else -1 */
    size_t tail;                    /* offset of the path/query/fragment in the
                                     * input with tabs and newlines removed */
};

enum pc_url_rc {
    PC_URL_OK = 0,
    PC_URL_NO_SCHEME,   /* no "scheme:" (relative, or not a URL) */
    PC_URL_SCHEME,      /* a scheme other than http or https */
    PC_URL_BAD,         /* http(s) but no valid host or port */
};

/** Parses s (n bytes) as an absolute http or https URL. Returns PC_URL_OK and
 * fills u, or the reason it is not one. */
enum pc_url_rc pc_url_parse(const char *s, size_t n, struct pc_url *u);

/** Writes the serialized origin "scheme://host[:port]" (>= 300 bytes). */
void pc_url_origin(const struct pc_url *u, char *out, size_t outsz);

/** A root-relative redirect target that every reader keeps on this origin:
 * one leading '/', then printable ASCII without '\'; in the path (before '?'
 * or '#') no "//", no "." or ".." segment and no encoded '/' or '\'
 * (%2f, %5c) or '.' segment (%2e). */
bool pc_url_relative_ok(const char *s, size_t n);

/* A trusted-origin pattern (TRUSTED_ORIGINS, better-auth-compat.md §5):
 *   https://app.example.com[:port]    exact origin (trailing '/' allowed)
 *   https://STAR.example.com[:port]   any subdomain, this scheme only
 *                                     (port ":STAR": any port)
 *   STAR.example.com                  any subdomain, http or https, default port
 * (STAR is '*'; it cannot be written next to a '/' in a C comment.)
 * A '*' stands for a whole label and matches one or more labels; it may not
 * sit inside a label or be the last label, except in an IPv4 pattern
 * (10.*, 192.168.*.*) which matches only IPv4 hosts. */
struct pc_origin_pat {
    int scheme;                     /* 0: http or https, 1: http, 2: https */
    bool wild;
    bool ipv4;                      /* wildcard IPv4 pattern: IPv4 hosts only */
    char host[PC_URL_HOST_MAX];     /* canonical host or lower-case pattern */
    int port;                       /* -1: default port, -2: any (":*") */
};

/** Parses one pattern. Returns 0, or -1 with *err saying what is wrong. */
int pc_origin_pat_parse(const char *s, size_t n, struct pc_origin_pat *p, const char **err);

/** True when u's origin matches p. Userinfo never matches. */
bool pc_origin_pat_match(const struct pc_origin_pat *p, const struct pc_url *u);

/** A set of trusted-origin patterns (TRUSTED_ORIGINS, a route's list). */
struct pc_origin_list {
    struct pc_origin_pat *pats;
    size_t n;
};

/** Appends each pattern of a comma-separated list (spaces around items
 * ignored; empty items skipped). Returns 0, or -1 with what is wrong and
 * the item in err (l keeps what it had). */
int pc_origin_list_add(struct pc_origin_list *l, const char *s, char *err, size_t errsz);

/** Appends one pattern of n bytes. Returns 0, or -1 with *why. */
int pc_origin_list_add1(struct pc_origin_list *l, const char *s, size_t n, const char **why);

/** True when u (no userinfo) matches a pattern of l. */
bool pc_origin_list_match(const struct pc_origin_list *l, const struct pc_url *u);

/** True when the origin or URL in s[0..n) parses, has no userinfo and
 * matches a pattern of l. */
bool pc_origin_list_trusts(const struct pc_origin_list *l, const char *s, size_t n);

void pc_origin_list_free(struct pc_origin_list *l);

#endif
