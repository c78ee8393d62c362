/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_url.c: URLs as a browser reads their origin (lib/url.c), redirect
 * targets and trusted-origin patterns, and percent-decoding (lib/cookie.c
 * pc_url_decode, used for query values and cookies). Input: a URL, a NUL,
 * a pattern. Checks: a parsed host is canonical (lower case, no '/', '\',
 * '@' or space); the serialized origin parses back to the same origin; a
 * relative target that is "ok" starts with one '/' and holds no '\'; an
 * origin matches the exact pattern made of itself.
 */
#include "fuzz.h"
#include "../../lib/url.h"
#include "../../lib/cookie.h"

#include <ctype.h>
#include <stdbool.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const uint8_t *a, *b;
    size_t an, bn;
    fz_cut(data, n, 0, &a, &an, &b, &bn);
    const char *s = (const char *)a;
    struct pc_url u;
    if (pc_url_parse(s, an, &u) == PC_URL_OK) {
        for (const char *h = u.host; *h; h++)
            FZ_CHECK(!isupper((unsigned char)*h) && *h != '/' && *h != '\\' && *h != '@' &&
                         *h != ' ',
                     "host byte %02x", (unsigned char)*h);
        FZ_CHECK(u.tail <= an, "tail");
        char origin[320], again[320];
        pc_url_origin(&u, origin, sizeof origin);
        struct pc_url v;
        FZ_CHECK(pc_url_parse(origin, strlen(origin), &v) == PC_URL_OK, "origin %s", origin);
        pc_url_origin(&v, again, sizeof again);
        FZ_CHECK(strcmp(origin, again) == 0, "origin %s read back as %s", origin, again);
        struct pc_origin_pat self;
        const char *err;
        if (!u.userinfo && pc_origin_pat_parse(origin, strlen(origin), &self, &err) == 0)
            FZ_CHECK(pc_origin_pat_match(&self, &u), "%s does not match itself", origin);
    }
    if (pc_url_relative_ok(s, an))
        FZ_CHECK(an >= 1 && s[0] == '/' && (an == 1 || (s[1] != '/' && s[1] != '\\')) &&
                     memchr(s, '\\', an) == NULL,
                 "relative target");
    struct pc_origin_pat p;
    const char *err = NULL;
    if (pc_origin_pat_parse((const char *)b, bn, &p, &err) == 0) {
        if (pc_url_parse(s, an, &u) == PC_URL_OK)
            (void)pc_origin_pat_match(&p, &u);
    } else {
        FZ_CHECK(err != NULL, "pattern refused without a reason");
    }
    char *dec = pc_url_decode(s, an);
    if (dec) {
        FZ_CHECK(strlen(dec) <= an, "decoded longer than encoded");
        free(dec);
    }
    return 0;
}
