/* Portcullis - MIT licence. See LICENSE.
 *
 * test_ba_schema.c: Better Auth's column lists and lookups (lib/ba_schema.h)
 * are, character for character, the SQL the two programs ran before they
 * shared them: the golden strings below are copied from authsvc/authsvc.h,
 * authsvc/sessions.c, authsvc/apikeys.c, authsvc/jwt.c, gateway/pgstore.c
 * and gateway/jwks.c as they were at the time of the move.
 */
#include "../../lib/ba_schema.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

/* authsvc/authsvc.h USER_COLS */
#define OLD_USER_COLS "u.\"id\", u.\"name\", u.\"email\", u.\"emailVerified\", u.\"image\", " \
    "(extract(epoch from u.\"createdAt\")*1000)::bigint, " \
    "(extract(epoch from u.\"updatedAt\")*1000)::bigint"
/* authsvc/sessions.c SESSION_COLS */
#define OLD_SESSION_COLS "s.\"id\", s.\"token\", s.\"userId\", s.\"ipAddress\", s.\"userAgent\", " \
    "(extract(epoch from s.\"expiresAt\")*1000)::bigint, " \
    "(extract(epoch from s.\"createdAt\")*1000)::bigint, " \
    "(extract(epoch from s.\"updatedAt\")*1000)::bigint"
/* authsvc/apikeys.c MS() and AK_COLS */
#define MS(c) "floor(extract(epoch from \"" c "\") * 1000)::bigint"
#define OLD_AK_COLS "\"configId\", \"name\", \"start\", \"referenceId\", \"prefix\", " \
    "\"refillInterval\", \"refillAmount\", " MS("lastRefillAt") ", \"enabled\", " \
    "\"rateLimitEnabled\", \"rateLimitTimeWindow\", \"rateLimitMax\", \"requestCount\", " \
    "\"remaining\", " MS("lastRequest") ", " MS("expiresAt") ", " MS("createdAt") ", " \
    MS("updatedAt") ", \"permissions\", \"metadata\", \"id\", \"key\""

static void test_columns(void **state)
{
    assert_string_equal(PC_BA_USER_COLS, OLD_USER_COLS);
    assert_int_equal(PC_BA_USER_NCOLS, 7);
    assert_string_equal(PC_BA_SESSION_COLS, OLD_SESSION_COLS);
    assert_int_equal(PC_BA_SESSION_NCOLS, 8);
    assert_string_equal(PC_BA_APIKEY_COLS, OLD_AK_COLS);
    assert_int_equal(PC_BA_AK_NCOLS, 22);
    assert_int_equal(PC_BA_AK_ID, 20);
    assert_int_equal(PC_BA_AK_KEY, 21);
    assert_int_equal(PC_BA_AK_PERMISSIONS, 18);
    assert_string_equal(PC_BA_MS_FLOOR("x"), MS("x"));
    assert_string_equal(PC_BA_NOW_MS, "date_trunc('milliseconds', now())");
    assert_string_equal(PC_BA_APIKEY_DEFAULT_CONFIG,
                        "(\"configId\" IS NULL OR \"configId\" IN ('', 'default'))");
}

static void test_session_lookups(void **state)
{
    /* authsvc/sessions.c as_session_resolve */
    assert_string_equal(PC_BA_SQL_SESSION_FULL,
                        "SELECT " OLD_SESSION_COLS ", " OLD_USER_COLS
                        " FROM \"session\" s JOIN \"user\" u ON u.\"id\" = s.\"userId\""
                        " WHERE s.\"token\" = $1");
    /* gateway/pgstore.c sql_session */
    assert_string_equal(PC_BA_SQL_SESSION_PRINCIPAL,
        "SELECT s.\"id\", s.\"userId\", (extract(epoch from s.\"expiresAt\")*1000)::bigint, "
        "(extract(epoch from s.\"updatedAt\")*1000)::bigint, u.\"email\", u.\"emailVerified\" "
        "FROM \"session\" s JOIN \"user\" u ON u.\"id\" = s.\"userId\" WHERE s.\"token\" = $1");
    /* authsvc/apikeys.c internal validate */
    assert_string_equal(PC_BA_SQL_SESSION_VALIDATE,
                        "SELECT s.\"id\", s.\"userId\", "
                        "floor(extract(epoch from s.\"expiresAt\") * 1000)::bigint "
                        "FROM \"session\" s JOIN \"user\" u ON u.\"id\" = s.\"userId\" "
                        "WHERE s.\"token\" = $1");
}

static void test_apikey_lookups(void **state)
{
    /* gateway/pgstore.c sql_api_key */
    assert_string_equal(PC_BA_SQL_APIKEY_PRINCIPAL,
        "SELECT \"id\", \"referenceId\", COALESCE(\"enabled\", true), "
        "COALESCE((extract(epoch from \"expiresAt\")*1000)::bigint, 0), "
        "COALESCE(\"permissions\", ''), COALESCE(\"remaining\", -1), "
        "COALESCE(\"refillInterval\", 0), COALESCE(\"refillAmount\", -1), "
        "COALESCE((extract(epoch from \"lastRefillAt\")*1000)::bigint, 0), "
        "(extract(epoch from \"createdAt\")*1000)::bigint, COALESCE(\"rateLimitEnabled\", true), "
        "COALESCE(\"rateLimitTimeWindow\", 0), COALESCE(\"rateLimitMax\", 0) "
        "FROM \"apikey\" WHERE \"key\" = $1");
    /* authsvc/apikeys.c verify */
    assert_string_equal(PC_BA_SQL_APIKEY_BY_HASH,
                        "SELECT " OLD_AK_COLS " FROM \"apikey\" WHERE \"key\" = $1 LIMIT 1");
}

static void test_jwks_lookups(void **state)
{
    /* authsvc/jwt.c ROWS_SQL */
    assert_string_equal(PC_BA_SQL_JWKS_ROWS,
        "SELECT \"id\", \"publicKey\", \"privateKey\", \"alg\", "
        "(extract(epoch from \"createdAt\")*1000)::bigint, "
        "(extract(epoch from \"expiresAt\")*1000)::bigint FROM \"jwks\" "
        "ORDER BY \"createdAt\" DESC, \"id\"");
    /* gateway/jwks.c load_signer */
    assert_string_equal(PC_BA_SQL_JWKS_UNEXPIRED,
        "SELECT \"id\", \"privateKey\", \"alg\", \"publicKey\" FROM \"jwks\" "
        "WHERE \"expiresAt\" IS NULL OR \"expiresAt\" > now() "
        "ORDER BY \"createdAt\" DESC, \"id\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_columns),
        cmocka_unit_test(test_session_lookups),
        cmocka_unit_test(test_apikey_lookups),
        cmocka_unit_test(test_jwks_lookups),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
