/* Portcullis - MIT licence. See LICENSE.
 *
 * conf_common.c: the validators and derived values of the configuration
 * rows both programs read (see conf_common.h).
 */
#include "conf_common.h"
#include "url.h"
#include "netaddr.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A Redis key prefix or channel name: it goes into keys, SCAN patterns and
 * SUBSCRIBE, so printable ASCII without spaces, and bounded so that every
 * key fits PC_KEY_MAX. */
static int check_redis_name(const char *v, size_t max, const char *too_long, const char **err)
{
    for (const char *p = v; *p; p++) {
        if (*p < 0x21 || *p > 0x7e) {
            *err = "must be printable ASCII without spaces";
            return -1;
        }
    }
    if (strlen(v) > max) {
        *err = too_long;
        return -1;
    }
    return 0;
}

int pc_conf_check_redis_prefix(const char *v, const char **err)
{
    return check_redis_name(v, PC_REDIS_PREFIX_MAX, "must be at most 64 characters", err);
}

int pc_conf_check_redis_channel(const char *v, const char **err)
{
    return check_redis_name(v, PC_REDIS_CHANNEL_MAX, "must be at most 128 characters", err);
}

int pc_conf_check_origin_list(const char *v, const char **err)
{
    static char msg[200];
    struct pc_origin_list l = {0};
    int rc = pc_origin_list_add(&l, v, msg, sizeof msg);
    pc_origin_list_free(&l);
    if (rc != 0)
        *err = msg;
    return rc;
}

int pc_conf_check_cidr_list(const char *v, const char **err)
{
    struct pc_cidr *l;
    size_t n;
    if (pc_cidr_list_parse(v, &l, &n, err) != 0)
        return -1;
    free(l);
    return 0;
}

bool pc_conf_secure_cookies(const char *base_url)
{
    return pc_starts_with(base_url, "https://");
}

bool pc_conf_cookie_name(char *out, size_t cap, const char *base_url, const char *name)
{
    const char *pfx = pc_conf_secure_cookies(base_url) ? "__Secure-" : "";
    static const char ba[] = "better-auth.";
    size_t pl = strlen(pfx), nl = strlen(name);
    if (cap == 0)
        return false;
    if (pl + sizeof ba - 1 + nl >= cap) {
        out[0] = '\0';
        return false;
    }
    memcpy(out, pfx, pl);
    memcpy(out + pl, ba, sizeof ba - 1);
    memcpy(out + pl + sizeof ba - 1, name, nl + 1);
    return true;
}

void pc_conf_url_origin(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    snprintf(out, cap, "%.*s", (int)((size_t)(p - url) + n), url);
    for (char *c = out; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
}

void pc_conf_jwt_defaults(char **issuer, char **audience, const char *base_url)
{
    if ((*issuer)[0] == '\0') {
        char origin[512];
        pc_conf_url_origin(base_url, origin, sizeof origin);
        free(*issuer);
        *issuer = pc_xstrdup(origin);
    }
    if ((*audience)[0] == '\0') {
        free(*audience);
        *audience = pc_xstrdup(*issuer);
    }
}
