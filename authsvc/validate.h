/* Portcullis - MIT licence. See LICENSE.
 *
 * validate.h: request-body validation that reports the way Better Auth's zod
 * schemas do: "[body.field] Invalid input: expected string, received
 * number", several failures joined by "; " into one 400 VALIDATION_ERROR.
 */
#ifndef AS_VALIDATE_H
#define AS_VALIDATE_H

#include <stdbool.h>
#include <yajl/yajl_tree.h>
#include "../lib/util.h"

struct as_job;

/* Caps on a user's name and image URL: Better Auth has none, but both
 * travel in every get-session answer and every JWT (the set-auth-jwt
 * header), so 60,000 characters would make 80 KB headers. Counted in UTF-16
 * units, as JavaScript's .length counts. Sign-up and update-user refuse
 * longer ones (400 NAME_TOO_LONG / IMAGE_URL_TOO_LONG); a provider's
 * profile is cut to fit (name) or dropped (picture). */
#define AS_NAME_MAX 256
#define AS_IMAGE_MAX 2048

struct vcheck {
    struct pc_buf msg;      /* the joined message so far */
    const char *where;      /* "body" (default when NULL) or "query" */
};

/** Records "[<where>.<path>] <text>". */
void as_v_add(struct vcheck *v, const char *path, const char *text);
/** Records "Invalid input: expected <type>, received <zod type of got>". */
void as_v_expected(struct vcheck *v, const char *path, const char *type, yajl_val got);
/** Answers 400 VALIDATION_ERROR when anything was recorded; true if it did. */
bool as_v_failed(struct as_job *job, struct vcheck *v);
/** A string field: the value, or NULL when absent (allowed unless required),
 * null (allowed when nullable) or of the wrong type (recorded). */
yajl_val as_v_str(struct vcheck *v, yajl_val body, const char *key, bool required,
                  bool nullable);

/** A body of one required string field key: its value on the heap (the
 * tree's copy wiped: it may be a password), or NULL when the answer is set. */
char *as_v_body_str(struct as_job *job, const char *key);
/** The body of the mail-sending routes: {"email": required, a valid
 * address; url_key: optional, a trusted redirect target, else 403
 * url_code/url_msg}. True with *email (lower case) and *url (NULL when
 * absent) on the heap; false when the answer is set. */
bool as_v_email_body(struct as_job *job, const char *url_key, const char *url_code,
                     const char *url_msg, char **email, char **url);

#endif
