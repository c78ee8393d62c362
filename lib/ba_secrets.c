/* Portcullis - MIT licence. See LICENSE.
 *
 * ba_secrets.c: Better Auth's versioned secrets (ba_secrets.h).
 */
#include "ba_secrets.h"
#include "conf.h"
#include "crypto.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

/* Splits one "<version>:<secret>" entry (spaces around each part trimmed,
 * as Better Auth's parseSecretsEnv does). 0, or -1 with *err set. */
static int entry(const char *p, size_t n, long *version, const char **val, size_t *vn,
                 const char **err)
{
    while (n > 0 && (*p == ' ' || *p == '\t'))
        p++, n--;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    const char *colon = memchr(p, ':', n);
    if (colon == NULL) {
        *err = "each entry is <version>:<secret>";
        return -1;
    }
    size_t dn = (size_t)(colon - p);
    long v = 0;
    if (dn == 0 || dn > 9) {
        *err = "a version is a non-negative integer";
        return -1;
    }
    for (size_t i = 0; i < dn; i++) {
        if (p[i] < '0' || p[i] > '9') {
            *err = "a version is a non-negative integer";
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    const char *s = colon + 1;
    size_t sn = n - dn - 1;
    while (sn > 0 && (*s == ' ' || *s == '\t'))
        s++, sn--;
    if (sn < 32) {
        *err = "each secret is at least 32 characters";
        return -1;
    }
    *version = v;
    *val = s;
    *vn = sn;
    return 0;
}

/* Parses list into out (values heap) when out is not NULL. */
static int parse(const char *list, struct pc_secrets *out, const char **err)
{
    size_t n = 0;
    long seen[PC_SECRETS_MAX];
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        long v;
        const char *val;
        size_t vn;
        if (n == PC_SECRETS_MAX) {
            *err = "at most 16 secrets";
            return -1;
        }
        if (entry(p, len, &v, &val, &vn, err) != 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (seen[i] == v) {
                *err = "a version is listed twice";
                return -1;
            }
        }
        seen[n] = v;
        if (out) {
            out->version[n] = v;
            out->value[n] = pc_xstrndup(val, vn);
        }
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        *err = "no secret listed";
        return -1;
    }
    if (out)
        out->n = n;
    return 0;
}

int pc_conf_check_secrets(const char *v, const char **err)
{
    return parse(v, NULL, err);
}

int pc_secrets_load(const char *list, char **secret, struct pc_secrets *out, char *err,
                    size_t errsz)
{
    memset(out, 0, sizeof *out);
    const char *why;
    bool have_list = list && list[0];
    bool have_secret = *secret && (*secret)[0];
    if (!have_list && !have_secret) {
        snprintf(err, errsz, "BETTER_AUTH_SECRET: is required and not set (or set "
                             "BETTER_AUTH_SECRETS, Better Auth's versioned secrets)");
        return -1;
    }
    if (have_secret)
        out->legacy = pc_xstrdup(*secret);
    if (!have_list)
        return 0;
    if (parse(list, out, &why) != 0) /* the row's validator passed it */
        pc_fatal("BETTER_AUTH_SECRETS: %s", why);
    free(*secret);
    *secret = pc_xstrdup(out->value[0]);
    return 0;
}

void pc_secrets_single(struct pc_secrets *out, const char *secret)
{
    memset(out, 0, sizeof *out);
    out->legacy = pc_xstrdup(secret);
}

const char *pc_secrets_version(const struct pc_secrets *s, long v)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->version[i] == v)
            return s->value[i];
    return NULL;
}

void pc_secrets_free(struct pc_secrets *s)
{
    for (size_t i = 0; i < s->n; i++) {
        sodium_memzero(s->value[i], strlen(s->value[i]));
        free(s->value[i]);
    }
    if (s->legacy) {
        sodium_memzero(s->legacy, strlen(s->legacy));
        free(s->legacy);
    }
    memset(s, 0, sizeof *s);
}

static char *purpose_secret(const char *secret, const char *purpose)
{
    static const char salt[] = "better-auth:oauth-encryption:v1";
    char info[160];
    unsigned char key[32];
    char *hex = pc_xmalloc(2 * sizeof key + 1);
    snprintf(info, sizeof info, "better-auth:%s:v1", purpose);
    pc_hkdf_sha256(secret, strlen(secret), salt, sizeof salt - 1, info, strlen(info), key,
                   sizeof key);
    pc_hex_encode(key, sizeof key, hex);
    sodium_memzero(key, sizeof key);
    return hex;
}

void pc_secrets_purpose(const struct pc_secrets *in, const char *purpose, struct pc_secrets *out)
{
    memset(out, 0, sizeof *out);
    out->n = in->n;
    for (size_t i = 0; i < in->n; i++) {
        out->version[i] = in->version[i];
        out->value[i] = purpose_secret(in->value[i], purpose);
    }
    if (in->legacy)
        out->legacy = purpose_secret(in->legacy, purpose);
}
