/* Portcullis - MIT licence. See LICENSE.
 *
 * test_keyspace.c: the shared Redis keyspace with golden values: the keys,
 * the usage-hash field names, and the cached-principal JSON exactly as
 * authsvc's write-through and the gateway's fill put it in Redis today (a
 * change to any golden string here is a protocol change, keyspace.h).
 */
#include "../../lib/keyspace.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define H_ABC "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"

static void test_keys(void **state)
{
    char k[PC_KEY_MAX];
    assert_true(pc_key_session(k, sizeof k, "pc:", H_ABC));
    assert_string_equal(k, "pc:s:" H_ABC);
    assert_true(pc_key_apikey(k, sizeof k, "pc:", H_ABC));
    assert_string_equal(k, "pc:k:" H_ABC);
    assert_true(pc_key_usage(k, sizeof k, "app1:", H_ABC));
    assert_string_equal(k, "app1:u:" H_ABC);
    assert_true(pc_key_revoked_sid(k, sizeof k, "pc:", "AbC123_-x"));
    assert_string_equal(k, "pc:rsid:AbC123_-x");
    assert_true(pc_key_revoked_sid_pattern(k, sizeof k, "pc:"));
    assert_string_equal(k, "pc:rsid:*");
    assert_true(pc_key_revseq(k, sizeof k, "pc:"));
    assert_string_equal(k, "pc:revseq");
    assert_true(pc_key_revseq(k, sizeof k, ""));
    assert_string_equal(k, "revseq");
    /* a hash that is not NUL-ended: a revocation message's */
    const char msg[] = H_ABC "trailing";
    assert_true(pc_key_cred(k, sizeof k, "pc:", PC_CACHE_SESSION, msg, 43));
    assert_string_equal(k, "pc:s:" H_ABC);
    assert_true(pc_key_cred(k, sizeof k, "pc:", PC_CACHE_API_KEY, msg, 43));
    assert_string_equal(k, "pc:k:" H_ABC);
}

static void test_key_room(void **state)
{
    /* the longest prefix with the longest tail (a 64-character sid) fits */
    char prefix[PC_REDIS_PREFIX_MAX + 1], sid[65], k[PC_KEY_MAX];
    memset(prefix, 'p', PC_REDIS_PREFIX_MAX);
    prefix[PC_REDIS_PREFIX_MAX] = '\0';
    memset(sid, 'i', 64);
    sid[64] = '\0';
    assert_true(pc_key_revoked_sid(k, sizeof k, prefix, sid));
    assert_int_equal(strlen(k), PC_REDIS_PREFIX_MAX + 5 + 64);
    assert_true(pc_key_session(k, sizeof k, prefix, H_ABC));
    /* too small a buffer says so */
    char small[16];
    assert_false(pc_key_session(small, sizeof small, "pc:", H_ABC));
    assert_string_equal(small, "");
    assert_false(pc_key_revseq(small, 9, "pc:"));     /* "pc:revseq" needs 10 */
    assert_true(pc_key_revseq(small, 10, "pc:"));
}

static void test_usage_fields(void **state)
{
    /* gateway/limit.c's script, gateway/usage.c's HMGET and authsvc/apikeys.c's
     * HSET/HDEL name these; data in Redis has them */
    assert_string_equal(PC_USAGE_REMAINING, "rem");
    assert_string_equal(PC_USAGE_LAST_REFILL, "lr");
    assert_string_equal(PC_USAGE_WINDOW_START, "ws");
    assert_string_equal(PC_USAGE_WINDOW_COUNT, "wc");
    assert_string_equal(PC_USAGE_LAST_REQUEST, "last");
    assert_int_equal(PC_USAGE_KEEP_MS, 604800000);
    assert_string_equal(PC_USAGE_KEEP_MS_STR, "604800000");
    /* the way limit.c builds its Lua from them */
    static const char lua[] = "redis.call('HMGET', k, '" PC_USAGE_REMAINING "', '"
                              PC_USAGE_LAST_REFILL "', '" PC_USAGE_WINDOW_START "', '"
                              PC_USAGE_WINDOW_COUNT "')";
    assert_string_equal(lua, "redis.call('HMGET', k, 'rem', 'lr', 'ws', 'wc')");
}

static char *write_entry(const struct pc_cache_entry *e, struct pc_buf *b)
{
    struct pc_jw w = {.b = b};
    pc_cache_entry_write(&w, e);
    return (char *)pc_buf_cstr(b);
}

/* authsvc/sessions.c as_session_cache_put */
#define GOLD_AUTHSVC_SESSION                                                            \
    "{\"kind\":\"session\",\"id\":\"sid1\",\"userId\":\"uid1\",\"expiresAt\":1700000604800," \
    "\"updatedAt\":1700000000000,\"user\":{\"id\":\"uid1\",\"email\":\"a@example.com\","  \
    "\"name\":\"A \\\"q\\\"\",\"emailVerified\":true}}"
/* gateway/l2redis.c gw_l2_store, a session */
#define GOLD_GATEWAY_SESSION                                                            \
    "{\"kind\":\"session\",\"id\":\"sid1\",\"userId\":\"uid1\",\"expiresAt\":1700000604800," \
    "\"updatedAt\":1700000000000,\"user\":{\"id\":\"uid1\",\"email\":\"a@example.com\","   \
    "\"emailVerified\":true}}"
/* gateway/l2redis.c gw_l2_store, an API key */
#define GOLD_GATEWAY_APIKEY                                                             \
    "{\"kind\":\"api_key\",\"id\":\"kid1\",\"userId\":\"uid1\",\"expiresAt\":0,"           \
    "\"updatedAt\":1700000000001,\"enabled\":false,"                                      \
    "\"permissions\":\"{\\\"files\\\":[\\\"read\\\"]}\","                                 \
    "\"limits\":[5,86400000,100,1700000000002,1699999999999,1,60000,10]}"

static void test_write_session(void **state)
{
    struct pc_buf b = {0};
    struct pc_cache_entry e = {
        .kind = PC_CACHE_SESSION, .id = "sid1", .user_id = "uid1",
        .expires_at = 1700000604800, .updated_at = 1700000000000, .user_obj_id = "uid1",
        .email = "a@example.com", .user_profile = true, .name = "A \"q\"",
        .email_verified = true,
    };
    assert_string_equal(write_entry(&e, &b), GOLD_AUTHSVC_SESSION);
    pc_buf_free(&b);
    e.user_profile = false;
    e.user_obj_id = NULL;       /* the gateway's: user.id is userId */
    assert_string_equal(write_entry(&e, &b), GOLD_GATEWAY_SESSION);
    pc_buf_free(&b);
    /* a NULL name writes null, as pc_jw_str does */
    e.user_profile = true;
    e.name = NULL;
    e.email_verified = false;
    assert_string_equal(write_entry(&e, &b),
                        "{\"kind\":\"session\",\"id\":\"sid1\",\"userId\":\"uid1\","
                        "\"expiresAt\":1700000604800,\"updatedAt\":1700000000000,"
                        "\"user\":{\"id\":\"uid1\",\"email\":\"a@example.com\",\"name\":null,"
                        "\"emailVerified\":false}}");
    pc_buf_free(&b);
}

static void test_write_apikey(void **state)
{
    struct pc_buf b = {0};
    struct pc_cache_entry e = {
        .kind = PC_CACHE_API_KEY, .id = "kid1", .user_id = "uid1", .expires_at = 0,
        .updated_at = 1700000000001, .enabled = false, .permissions = "{\"files\":[\"read\"]}",
        .lim = {5, 86400000, 100, 1700000000002, 1699999999999, true, 60000, 10},
    };
    assert_string_equal(write_entry(&e, &b), GOLD_GATEWAY_APIKEY);
    pc_buf_free(&b);
}

static bool parse(const char *s, enum pc_cache_kind kind, struct pc_cache_entry *e)
{
    return pc_cache_entry_parse(s, strlen(s), kind, e);
}

static void test_parse_golden(void **state)
{
    struct pc_cache_entry e;
    assert_true(parse(GOLD_AUTHSVC_SESSION, PC_CACHE_SESSION, &e));
    assert_string_equal(e.id, "sid1");
    assert_string_equal(e.user_id, "uid1");
    assert_int_equal(e.expires_at, 1700000604800);
    assert_int_equal(e.updated_at, 1700000000000);
    assert_string_equal(e.user_obj_id, "uid1");
    assert_string_equal(e.email, "a@example.com");
    assert_true(e.user_profile);
    assert_string_equal(e.name, "A \"q\"");
    assert_true(e.email_verified);
    assert_false(e.has_limits);
    assert_int_equal(e.lim.remaining, -1);
    assert_int_equal(e.lim.refill_amount, -1);
    assert_true(e.enabled);
    pc_cache_entry_free(&e);
    assert_null(e.tree);

    assert_true(parse(GOLD_GATEWAY_SESSION, PC_CACHE_SESSION, &e));
    assert_string_equal(e.email, "a@example.com");
    assert_false(e.user_profile);
    assert_true(e.has_email_verified && e.email_verified);
    pc_cache_entry_free(&e);
    /* an entry from before emailVerified was always written */
    assert_true(parse("{\"id\":\"s\",\"userId\":\"u\",\"expiresAt\":1,"
                      "\"user\":{\"id\":\"u\",\"email\":\"a@b.c\"}}", PC_CACHE_SESSION, &e));
    assert_false(e.has_email_verified || e.email_verified);
    pc_cache_entry_free(&e);

    assert_true(parse(GOLD_GATEWAY_APIKEY, PC_CACHE_API_KEY, &e));
    assert_int_equal(e.kind, PC_CACHE_API_KEY);
    assert_string_equal(e.id, "kid1");
    assert_int_equal(e.expires_at, 0);
    assert_false(e.enabled);
    assert_string_equal(e.permissions, "{\"files\":[\"read\"]}");
    assert_true(e.has_limits);
    assert_int_equal(e.lim.remaining, 5);
    assert_int_equal(e.lim.refill_interval, 86400000);
    assert_int_equal(e.lim.refill_amount, 100);
    assert_int_equal(e.lim.last_refill_at, 1700000000002);
    assert_int_equal(e.lim.created_at, 1699999999999);
    assert_true(e.lim.rl_enabled);
    assert_int_equal(e.lim.rl_window, 60000);
    assert_int_equal(e.lim.rl_max, 10);
    pc_cache_entry_free(&e);
}

/* parse(write(e)) == e, for both kinds */
static void test_round_trip(void **state)
{
    struct pc_cache_entry in = {
        .kind = PC_CACHE_API_KEY, .id = "k", .user_id = "u", .expires_at = 42,
        .updated_at = 7, .enabled = true, .permissions = "",
        .lim = {-1, 0, -1, 0, 1, false, 0, 0},
    }, out;
    struct pc_buf b = {0};
    const char *s = write_entry(&in, &b);
    assert_true(parse(s, PC_CACHE_API_KEY, &out));
    assert_string_equal(out.id, "k");
    assert_string_equal(out.permissions, "");
    assert_true(out.enabled);
    assert_memory_equal(&out.lim, &in.lim, sizeof in.lim);
    pc_cache_entry_free(&out);
    pc_buf_free(&b);
}

static void test_parse_tolerant(void **state)
{
    struct pc_cache_entry e;
    /* an older entry: email at the top level, no updatedAt, no kind */
    assert_true(parse("{\"id\":\"s\",\"userId\":\"u\",\"expiresAt\":1,\"email\":\"x@y\"}",
                      PC_CACHE_SESSION, &e));
    assert_string_equal(e.email, "x@y");
    assert_int_equal(e.updated_at, 0);
    assert_null(e.user_obj_id);
    pc_cache_entry_free(&e);
    /* limits members that are not integers read as 0; enabled only false counts */
    assert_true(parse("{\"id\":\"k\",\"userId\":\"u\",\"expiresAt\":1,\"enabled\":0,"
                      "\"permissions\":5,\"limits\":[\"9\",1,2,3,4,5,6,null]}",
                      PC_CACHE_API_KEY, &e));
    assert_true(e.enabled);
    assert_null(e.permissions);
    assert_int_equal(e.lim.remaining, 0);
    assert_true(e.lim.rl_enabled);
    assert_int_equal(e.lim.rl_max, 0);
    pc_cache_entry_free(&e);
}

static void test_parse_refuses(void **state)
{
    static const char *const bad[] = {
        "", "not json", "[]", "{\"userId\":\"u\",\"expiresAt\":1}",
        "{\"id\":1,\"userId\":\"u\",\"expiresAt\":1}",
        "{\"id\":\"s\",\"userId\":\"u\"}",
        "{\"id\":\"s\",\"userId\":\"u\",\"expiresAt\":\"1\"}",
        "{\"id\":\"s\",\"userId\":\"u\",\"expiresAt\":1.5}",
    };
    struct pc_cache_entry e;
    for (size_t i = 0; i < PC_ARRAY_LEN(bad); i++) {
        for (int kind = 0; kind < 2; kind++) {
            if (parse(bad[i], (enum pc_cache_kind)kind, &e))
                fail_msg("accepted \"%s\"", bad[i]);
            pc_cache_entry_free(&e);
        }
    }
    /* an API key whose limits cannot be enforced */
    static const char *const nolim[] = {
        "{\"id\":\"k\",\"userId\":\"u\",\"expiresAt\":1}",
        "{\"id\":\"k\",\"userId\":\"u\",\"expiresAt\":1,\"limits\":[1,2,3,4,5,6,7]}",
        "{\"id\":\"k\",\"userId\":\"u\",\"expiresAt\":1,\"limits\":{\"remaining\":1}}",
    };
    for (size_t i = 0; i < PC_ARRAY_LEN(nolim); i++) {
        assert_false(parse(nolim[i], PC_CACHE_API_KEY, &e));
        pc_cache_entry_free(&e);
        assert_true(parse(nolim[i], PC_CACHE_SESSION, &e));    /* a session needs none */
        pc_cache_entry_free(&e);
    }
    pc_cache_entry_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_key_room),
        cmocka_unit_test(test_usage_fields),
        cmocka_unit_test(test_write_session),
        cmocka_unit_test(test_write_apikey),
        cmocka_unit_test(test_parse_golden),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_parse_tolerant),
        cmocka_unit_test(test_parse_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
