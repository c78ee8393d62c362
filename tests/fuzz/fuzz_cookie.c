/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz_cookie.c: the Cookie header and Better Auth's signed values
 * (lib/cookie.c), as the extract stage and authsvc read them. Input: a
 * cookie name, a NUL, then Cookie header lines separated by '\n'. Each line
 * alone and all lines together are searched (pc_cookie_get,
 * pc_cookie_get_lines); a value found is percent-decoded and its signature
 * checked in both modes. Checks: a value found lies in the header; the
 * lines' search finds what the first line holding it holds; a value signed
 * here (a token of one byte or more) verifies and gives back its token,
 * and a changed signature never does.
 */
#include "fuzz.h"
#include "../../lib/cookie.h"

#include <stdbool.h>

#define SECRET "better-auth-secret-12345678901234567890"

static void check_value(const char *raw)
{
    char *dec = pc_url_decode(raw, strlen(raw));
    if (dec == NULL)
        return;
    char tok[256];
    size_t dl = strlen(dec);
    for (int mode = 0; mode < 2; mode++) {
        enum pc_sig_mode m = mode ? PC_SIG_TOLERANT : PC_SIG_COOKIE;
        if (!pc_verify_signed(SECRET, dec, dl, m, tok, sizeof tok))
            continue;
        /* a value that verifies (the unit tests' own vectors do) is
         * token "." MAC, and the same with its MAC changed does not */
        char *dot = strrchr(dec, '.');
        FZ_CHECK(dot && (size_t)(dot - dec) == strlen(tok) && memcmp(tok, dec, strlen(tok)) == 0,
                 "verified token is not the part before the last '.'");
        dot[1] = (char)(dot[1] == 'A' ? 'B' : 'A');
        FZ_CHECK(!pc_verify_signed(SECRET, dec, dl, m, tok, sizeof tok), "a changed MAC verified");
    }
    /* the value's part before its last '.', signed by us, must verify */
    const char *dot = strrchr(dec, '.');
    size_t tl = dot ? (size_t)(dot - dec) : dl;
    if (tl > 0 && tl < 200) {
        char t[201];
        memcpy(t, dec, tl);
        t[tl] = '\0';
        if (strlen(t) == tl) {
            char signed_v[201 + 1 + PC_SIG_B64_LEN + 1];
            pc_sign_value(SECRET, t, signed_v);
            size_t sl = strlen(signed_v);
            FZ_CHECK(pc_verify_signed(SECRET, signed_v, sl, PC_SIG_COOKIE, tok, sizeof tok) &&
                         strcmp(tok, t) == 0,
                     "our own signature did not verify");
            char *mac = strrchr(signed_v, '.') + 1;
            *mac = (char)(*mac == 'A' ? 'B' : 'A'); /* the MAC's first 6 bits */
            FZ_CHECK(!pc_verify_signed(SECRET, signed_v, sl, PC_SIG_TOLERANT, tok, sizeof tok),
                     "a changed MAC verified");
        }
    }
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    const uint8_t *name, *rest;
    size_t nn, rn;
    fz_cut(data, n, 0, &name, &nn, &rest, &rn);
    char *nm = fz_str(name, nn);
    char *hdr = fz_str(rest, rn);
    const char *lines[8];
    size_t nl = 0;
    for (char *p = hdr; nl < 8;) {
        lines[nl++] = p;
        char *e = strchr(p, '\n');
        if (e == NULL)
            break;
        *e = '\0';
        p = e + 1;
    }
    char *first = NULL;
    for (size_t i = 0; i < nl; i++) {
        char *v = pc_cookie_get(lines[i], nm);
        if (v) {
            FZ_CHECK(strstr(lines[i], v) != NULL, "value not in its line");
            check_value(v);
            if (first == NULL)
                first = v;
            else
                free(v);
        }
    }
    char *all = pc_cookie_get_lines(lines, nl, nm);
    FZ_CHECK((all == NULL) == (first == NULL) && (all == NULL || strcmp(all, first) == 0),
             "lines read together differ from the first line that has the cookie");
    free(all);
    free(first);
    free(hdr);
    free(nm);
    return 0;
}
