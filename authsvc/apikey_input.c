/* Portcullis - MIT licence. See LICENSE.
 *
 * apikey_input.c: the API-key routes' input read as @better-auth/api-key
 * 1.7.5's zod schemas read it: the same checks in the same order with the
 * same messages ("[body.field] Invalid input: ..."), for bodies (create,
 * update) and query strings (get, delete, list). Pure: no I/O.
 */
#include "authsvc.h"
#include "apikey_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <event2/http.h>

/* The API key routes take JSON only (Better Auth: 415 for any other type,
 * and a body without Content-Type is no body at all). Internal routes also
 * take JSON without a Content-Type. Answers and returns NULL on failure. */
yajl_val ak_body(struct as_job *job, bool lenient)
{
    const char *ct = as_header(job, "Content-Type");
    if (ct != NULL) {
        size_t n = strcspn(ct, ";");
        while (n > 0 && ct[n - 1] == ' ')
            n--;
        if (!(n == 16 && pc_strnieq(ct, "application/json", 16))) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "Content-Type \"%.*s\" is not allowed. Allowed types: application/json",
                     (int)(n > 100 ? 100 : n), ct);
            as_error(job, 415, "UNSUPPORTED_MEDIA_TYPE", msg);
            return NULL;
        }
    } else if (!lenient) {
        as_error(job, 400, "VALIDATION_ERROR",
                 "[body] Invalid input: expected object, received undefined");
        return NULL;
    }
    return as_body(job, true);
}


void ak_query_parse(const struct as_job *job, struct query *q)
{
    TAILQ_INIT(&q->q);
    if (job->query && evhttp_parse_query_str(job->query, &q->q) != 0) {
        evhttp_clear_headers(&q->q);
        TAILQ_INIT(&q->q);
    }
    /* %FF and the like read as U+FFFD, as URLSearchParams reads them (the
     * values go to PostgreSQL; libevent frees them with free()) */
    for (struct evkeyval *kv = q->q.tqh_first; kv; kv = kv->next.tqe_next) {
        if (!pc_utf8_valid(kv->value, strlen(kv->value))) {
            char *fixed = pc_utf8_fix(kv->value, strlen(kv->value));
            free(kv->value);
            kv->value = fixed;
        }
    }
}

/* The first value of name (or NULL) and how many times it occurs. */
const char *ak_query_get(struct query *q, const char *name, int *count)
{
    const char *first = NULL;
    *count = 0;
    for (struct evkeyval *kv = q->q.tqh_first; kv; kv = kv->next.tqe_next) {
        if (strcmp(kv->key, name) != 0)
            continue;
        if (first == NULL)
            first = kv->value;
        (*count)++;
    }
    return first;
}

void ak_query_free(struct query *q)
{
    evhttp_clear_headers(&q->q);
}

/* ---- validation: zod's order and messages ---- */

/* A boolean field: sets *has and *out when present. */
static void v_bool(struct vcheck *v, yajl_val body, const char *key, bool *has, bool *out)
{
    yajl_val x = pc_json_get(body, key);
    *has = false;
    if (x == NULL)
        return;
    if (YAJL_IS_TRUE(x) || YAJL_IS_FALSE(x)) {
        *has = true;
        *out = YAJL_IS_TRUE(x);
        return;
    }
    as_v_expected(v, key, "boolean", x);
}

/* A JSON number as JavaScript reads it (overflow is Infinity). */
static double json_number(yajl_val x)
{
    return strtod(x->u.number.r, NULL);
}

static void fmt_min(char *out, size_t n, double min)
{
    snprintf(out, n, "Too small: expected number to be >=%lld", (long long)min);
}

/* A number field with zod's z.number()[.min(m)][.nullable()]. */
static struct numfield v_num(struct vcheck *v, yajl_val body, const char *key, bool nullable,
                             bool has_min, double min)
{
    struct numfield f = {N_ABSENT, 0};
    yajl_val x = pc_json_get(body, key);
    if (x == NULL)
        return f;
    if (YAJL_IS_NULL(x) && nullable) {
        f.st = N_NULL;
        return f;
    }
    if (!YAJL_IS_NUMBER(x)) {
        as_v_expected(v, key, "number", x);
        f.st = N_BAD;
        return f;
    }
    f.d = json_number(x);
    if (!isfinite(f.d)) {
        as_v_add(v, key, f.d > 0 ? "Invalid input: expected number, received Infinity"
                              : "Invalid input: expected number, received -Infinity");
        f.st = N_BAD;
        return f;
    }
    if (has_min && f.d < min) {
        char text[96];
        fmt_min(text, sizeof text, min);
        as_v_add(v, key, text);
        f.st = N_BAD;
        return f;
    }
    f.st = N_OK;
    return f;
}

/* The integer columns take 32-bit integers; Better Auth would pass 1.5 or
 * 3e9 to PostgreSQL and answer 500. Checked on the internal routes only,
 * after the server-only refusal, so HTTP callers see Better Auth's answers. */
static void v_int32(struct vcheck *v, const char *key, const struct numfield *f)
{
    if (f->st != N_OK)
        return;
    if (f->d != floor(f->d))
        as_v_add(v, key, "Invalid input: expected int, received number");
    else if (f->d > 2147483647.0)
        as_v_add(v, key, "Too big: expected int to be <=2147483647");
    else if (f->d < -2147483648.0)
        as_v_add(v, key, "Too small: expected int to be >=-2147483648");
}

/* z.record(z.string(), z.array(z.string())), optionally nullable. Returns
 * the value (NULL when absent or null). */
yajl_val ak_v_perms(struct vcheck *v, yajl_val body, const char *key, bool nullable,
                        bool *present)
{
    yajl_val x = pc_json_get(body, key);
    *present = x != NULL;
    if (x == NULL || (YAJL_IS_NULL(x) && nullable))
        return NULL;
    if (!YAJL_IS_OBJECT(x)) {
        as_v_expected(v, key, "record", x);
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i < x->u.object.len; i++) {
        yajl_val a = x->u.object.values[i];
        struct pc_buf path = {0};
        pc_buf_printf(&path, "%s.%s", key, x->u.object.keys[i]);
        if (!YAJL_IS_ARRAY(a)) {
            as_v_expected(v, path.data, "array", a);
            ok = false;
        } else {
            for (size_t j = 0; j < a->u.array.len; j++) {
                if (!YAJL_IS_STRING(a->u.array.values[j])) {
                    struct pc_buf p2 = {0};
                    pc_buf_printf(&p2, "%s.%zu", path.data, j);
                    as_v_expected(v, p2.data, "string", a->u.array.values[j]);
                    pc_buf_free(&p2);
                    ok = false;
                }
            }
        }
        pc_buf_free(&path);
    }
    return ok ? x : NULL;
}

/* zod's z.coerce.string() for userId. Returns a heap string or NULL when
 * absent. Strict (internal routes): only strings and integers; anything
 * else is recorded. Lenient (HTTP): what JavaScript's String() gives, which
 * matters only in that it is present and names no real user. */
static char *v_user_id(struct vcheck *v, yajl_val body, bool strict)
{
    yajl_val x = pc_json_get(body, "userId");
    if (x == NULL)
        return NULL;
    if (YAJL_IS_STRING(x))
        return pc_xstrdup(x->u.string);
    if (YAJL_IS_INTEGER(x)) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)x->u.number.i);
        return pc_xstrdup(b);
    }
    if (strict) {
        as_v_expected(v, "userId", "string", x);
        return NULL;
    }
    switch (x->type) {
    case yajl_t_number: return pc_xstrdup(x->u.number.r);
    case yajl_t_true: return pc_xstrdup("true");
    case yajl_t_false: return pc_xstrdup("false");
    case yajl_t_object: return pc_xstrdup("[object Object]");
    case yajl_t_array: return pc_xstrdup("[array]");
    default: return pc_xstrdup("null");
    }
}

static bool prefix_chars_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

/* JavaScript truthiness of a JSON value (absent is falsy). */
bool ak_truthy(yajl_val x)
{
    if (x == NULL || YAJL_IS_NULL(x) || YAJL_IS_FALSE(x))
        return false;
    if (YAJL_IS_STRING(x))
        return x->u.string[0] != '\0';
    if (YAJL_IS_NUMBER(x)) {
        double d = json_number(x);
        return d != 0 && !isnan(d);
    }
    return true;
}

void ak_input_free(struct ak_input *in)
{
    if (in->body)
        yajl_tree_free(in->body);
    free(in->user_id);
    memset(in, 0, sizeof *in);
}

/* createApiKeyBodySchema, field by field in its order. */
void ak_validate_create(struct vcheck *v, struct ak_input *in, bool internal)
{
    yajl_val b = in->body;
    in->config_id = as_v_str(v, b, "configId", false, false);
    in->name = as_v_str(v, b, "name", false, false);
    in->expires_in = v_num(v, b, "expiresIn", true, true, 1);
    in->prefix = as_v_str(v, b, "prefix", false, false);
    if (in->prefix && !prefix_chars_ok(in->prefix->u.string))
        as_v_add(v, "prefix", "Invalid prefix format, must be alphanumeric and contain only "
                           "underscores and hyphens.");
    in->remaining = v_num(v, b, "remaining", true, true, 0);
    in->metadata = pc_json_get(b, "metadata");
    in->refill_amount = v_num(v, b, "refillAmount", false, true, 1);
    in->refill_interval = v_num(v, b, "refillInterval", false, false, 0);
    in->rl_window = v_num(v, b, "rateLimitTimeWindow", false, false, 0);
    in->rl_max = v_num(v, b, "rateLimitMax", false, false, 0);
    v_bool(v, b, "rateLimitEnabled", &in->has_rl_enabled, &in->rl_enabled);
    in->permissions = ak_v_perms(v, b, "permissions", false, &in->has_permissions);
    in->user_id = v_user_id(v, b, internal);
    /* organizationId: z.coerce.string() accepts anything; with keys that
     * belong to users (references:"user") Better Auth ignores it. */
}

void ak_validate_int_columns(struct vcheck *v, const struct ak_input *in)
{
    v_int32(v, "remaining", &in->remaining);
    v_int32(v, "refillAmount", &in->refill_amount);
    v_int32(v, "refillInterval", &in->refill_interval);
    v_int32(v, "rateLimitTimeWindow", &in->rl_window);
    v_int32(v, "rateLimitMax", &in->rl_max);
}

void ak_fmt_int(char *out, size_t n, const struct numfield *f)
{
    snprintf(out, n, "%lld", (long long)f->d);
}

bool ak_expires_in_bounds(struct as_job *job, double secs)
{
    double days = secs / 86400.0;
    if (days < EXPIRES_MIN_DAYS)
        return !as_error(job, 400, "EXPIRES_IN_IS_TOO_SMALL",
                         "The expiresIn is smaller than the predefined minimum value.");
    if (days > EXPIRES_MAX_DAYS)
        return !as_error(job, 400, "EXPIRES_IN_IS_TOO_LARGE",
                         "The expiresIn is larger than the predefined maximum value.");
    return true;
}

bool ak_name_length_ok(struct as_job *job, const char *name)
{
    size_t n = pc_utf16_length(name, strlen(name));
    if (n < NAME_MIN || n > NAME_MAX)
        return !as_error(job, 400, "INVALID_NAME_LENGTH",
                         "The name length is either too large or too small.");
    return true;
}

/* Server-only fields sent over HTTP (create: `remaining` only when not null). */
bool ak_server_only_create(const struct ak_input *in)
{
    return in->refill_amount.st != N_ABSENT || in->refill_interval.st != N_ABSENT ||
           in->rl_max.st != N_ABSENT || in->rl_window.st != N_ABSENT || in->has_rl_enabled ||
           in->has_permissions || in->remaining.st == N_OK;
}

/* A query string parameter that must be a single string (zod's
 * z.string(); a repeated name is an array). */
const char *ak_q_str(struct vcheck *v, struct query *q, const char *name, bool required)
{
    int count;
    const char *val = ak_query_get(q, name, &count);
    if (count == 1)
        return val;
    if (count > 1)
        as_v_add(v, name, "Invalid input: expected string, received array");
    else if (required)
        as_v_add(v, name, "Invalid input: expected string, received undefined");
    return NULL;
}

/* JavaScript's Number(string), for z.coerce.number(). */
static double js_number(const char *s)
{
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || (s[n - 1] >= '\t' && s[n - 1] <= '\r')))
        n--;
    if (n == 0)
        return 0;
    char buf[128];
    if (n >= sizeof buf)
        return NAN;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (buf[0] == '0' && (buf[1] == 'x' || buf[1] == 'X' || buf[1] == 'o' || buf[1] == 'O' ||
                          buf[1] == 'b' || buf[1] == 'B')) {
        int radix = (buf[1] | 0x20) == 'x' ? 16 : (buf[1] | 0x20) == 'o' ? 8 : 2;
        if (buf[2] == '\0')
            return NAN;
        double d = 0;
        for (const char *p = buf + 2; *p; p++) {
            int dv = (*p >= '0' && *p <= '9') ? *p - '0'
                     : ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f') ? (*p | 0x20) - 'a' + 10
                                                                  : 99;
            if (dv >= radix)
                return NAN;
            d = d * radix + dv;
        }
        return d;
    }
    const char *p = buf;
    if (*p == '+' || *p == '-')
        p++;
    if (strcmp(p, "Infinity") == 0)
        return buf[0] == '-' ? -INFINITY : INFINITY;
    /* digits [. digits] | . digits, then an optional exponent */
    const char *q = p;
    size_t digits = 0;
    while (*q >= '0' && *q <= '9')
        q++, digits++;
    if (*q == '.') {
        q++;
        while (*q >= '0' && *q <= '9')
            q++, digits++;
    }
    if (digits == 0)
        return NAN;
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!(*q >= '0' && *q <= '9'))
            return NAN;
        while (*q >= '0' && *q <= '9')
            q++;
    }
    if (*q != '\0')
        return NAN;
    return strtod(buf, NULL);
}

/* z.coerce.number().int().nonnegative() on a query parameter. Returns true
 * and sets *out when present and valid. */
bool ak_q_count(struct vcheck *v, struct query *q, const char *name, int64_t *out)
{
    int count;
    const char *val = ak_query_get(q, name, &count);
    if (count == 0)
        return false;
    double d = count > 1 ? NAN : js_number(val);
    if (isnan(d)) {
        as_v_add(v, name, "Invalid input: expected number, received NaN");
        return false;
    }
    if (isinf(d)) {
        as_v_add(v, name, d > 0 ? "Invalid input: expected number, received Infinity"
                             : "Invalid input: expected number, received -Infinity");
        return false;
    }
    if (d != floor(d)) {
        as_v_add(v, name, "Invalid input: expected int, received number");
        return false;
    }
    if (d > 9007199254740991.0) {
        as_v_add(v, name, "Too big: expected int to be <=9007199254740991");
        return false;
    }
    if (d < 0) {
        as_v_add(v, name, "Too small: expected number to be >=0");
        return false;
    }
    *out = (int64_t)d;
    return true;
}

/* updateApiKeyBodySchema, field by field in its order. */
void ak_validate_update(struct vcheck *v, struct ak_input *in, bool internal)
{
    yajl_val b = in->body;
    in->config_id = as_v_str(v, b, "configId", false, false);
    in->key_id = as_v_str(v, b, "keyId", true, false);
    in->user_id = v_user_id(v, b, internal);
    in->name = as_v_str(v, b, "name", false, false);
    v_bool(v, b, "enabled", &in->has_enabled, &in->enabled);
    in->remaining = v_num(v, b, "remaining", false, true, 1);
    in->refill_amount = v_num(v, b, "refillAmount", false, false, 0);
    in->refill_interval = v_num(v, b, "refillInterval", false, false, 0);
    in->metadata = pc_json_get(b, "metadata");
    in->expires_in = v_num(v, b, "expiresIn", true, true, 1);
    v_bool(v, b, "rateLimitEnabled", &in->has_rl_enabled, &in->rl_enabled);
    in->rl_window = v_num(v, b, "rateLimitTimeWindow", false, false, 0);
    in->rl_max = v_num(v, b, "rateLimitMax", false, false, 0);
    in->permissions = ak_v_perms(v, b, "permissions", true, &in->has_permissions);
}

bool ak_server_only_update(const struct ak_input *in)
{
    return in->refill_amount.st != N_ABSENT || in->refill_interval.st != N_ABSENT ||
           in->rl_max.st != N_ABSENT || in->rl_window.st != N_ABSENT || in->has_rl_enabled ||
           in->remaining.st != N_ABSENT || in->has_permissions;
}
