/* Portcullis - MIT licence. See LICENSE.
 *
 * bearer.c: the one rule for Authorization: Bearer values (bearer.h).
 */
#include "bearer.h"

#include <string.h>
#include <strings.h>

static bool is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
    return is_letter(c) || (c >= '0' && c <= '9');
}

const char *pc_bearer_value(const char *auth, size_t *n)
{
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return NULL;
    const char *v = auth + 7;
    while (*v == ' ')
        v++;
    size_t l = strlen(v);
    while (l > 0 && v[l - 1] == ' ')
        l--;
    *n = l;
    return v;
}

bool pc_bearer_session_token_shape(const char *v, size_t n)
{
    if (n != PC_BEARER_SESSION_TOKEN_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(v[i]))
            return false;
    return true;
}

bool pc_bearer_api_key_shape(const char *v, size_t n)
{
    if (n < PC_BEARER_API_KEY_BODY || n > PC_BEARER_API_KEY_BODY + PC_BEARER_API_PREFIX_MAX)
        return false;
    size_t plen = n - PC_BEARER_API_KEY_BODY;
    for (size_t i = 0; i < plen; i++)
        if (!is_alnum(v[i]) && v[i] != '_' && v[i] != '-')
            return false;
    for (size_t i = plen; i < n; i++)
        if (!is_letter(v[i]))
            return false;
    return true;
}

enum pc_bearer_kind pc_bearer_classify(const char *v, size_t n, bool require_signature)
{
    if (n == 0)
        return PC_BEARER_MALFORMED;
    const char *dot = memchr(v, '.', n);
    if (dot != NULL) {
        bool signed_shape = (size_t)(dot - v) == PC_BEARER_SESSION_TOKEN_LEN &&
                            pc_bearer_session_token_shape(v, PC_BEARER_SESSION_TOKEN_LEN);
        if (n >= 4 && memcmp(v, "eyJ", 3) == 0 && !signed_shape)
            return PC_BEARER_JWT;
        return PC_BEARER_SESSION_SIGNED;
    }
    if (pc_bearer_api_key_shape(v, n))
        return PC_BEARER_API_KEY;
    if (pc_bearer_session_token_shape(v, n))
        return require_signature ? PC_BEARER_SESSION_UNSIGNED : PC_BEARER_SESSION_RAW;
    return PC_BEARER_MALFORMED;
}

const char *pc_bearer_kind_name(enum pc_bearer_kind k)
{
    switch (k) {
    case PC_BEARER_JWT: return "jwt";
    case PC_BEARER_API_KEY: return "api_key";
    case PC_BEARER_SESSION_SIGNED: return "session_signed";
    case PC_BEARER_SESSION_RAW: return "session_raw";
    case PC_BEARER_SESSION_UNSIGNED: return "session_unsigned";
    default: return "malformed";
    }
}
