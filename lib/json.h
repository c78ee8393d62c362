/* Portcullis - MIT licence. See LICENSE.
 *
 * json.h: a small JSON writer into a pc_buf, and lookups over yajl's tree
 * parser for request bodies.
 */
#ifndef PC_JSON_H
#define PC_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <yajl/yajl_tree.h>
#include "util.h"

#define PC_JW_MAX_DEPTH 16
/** Deepest nesting of arrays and objects pc_json_parse accepts (the top
 * level counts as one). Deeper text is refused before any tree is built. */
#define PC_JSON_MAX_DEPTH 64

/** Writer state. Zero it, set .b, then call the functions below in document
 * order; commas and quoting are handled here. */
struct pc_jw {
    struct pc_buf *b;                   /* output; owned by the caller */
    unsigned depth;                     /* current nesting */
    bool started[PC_JW_MAX_DEPTH];      /* a value was written at this depth */
    bool after_key;                     /* the next value follows a key */
};

void pc_jw_obj_begin(struct pc_jw *w);
void pc_jw_obj_end(struct pc_jw *w);
void pc_jw_arr_begin(struct pc_jw *w);
void pc_jw_arr_end(struct pc_jw *w);
void pc_jw_key(struct pc_jw *w, const char *k);
void pc_jw_str(struct pc_jw *w, const char *s);     /* NULL writes null */
void pc_jw_strn(struct pc_jw *w, const char *s, size_t n);
void pc_jw_int(struct pc_jw *w, int64_t v);
void pc_jw_bool(struct pc_jw *w, bool v);
void pc_jw_null(struct pc_jw *w);
/** Writes an ISO-8601 date string for epoch ms. */
void pc_jw_date(struct pc_jw *w, int64_t ms);
/** Writes already-serialised JSON verbatim. */
void pc_jw_raw(struct pc_jw *w, const char *json);

/** Appends s as a quoted, escaped JSON string. */
void pc_json_quote(struct pc_buf *b, const char *s, size_t n);

/** Parses JSON text (a request body, a provider's document, a stored
 * column): the one way the programs read JSON. Returns the tree (free with
 * yajl_tree_free) or NULL when the text is not JSON as JSON.parse reads it
 * (invalid UTF-8, comments), holds a NUL byte or an escaped NUL (yajl would
 * cut strings there), or nests deeper than PC_JSON_MAX_DEPTH. A lone
 * surrogate escape reads as U+FFFD, as it ends up in Node once encoded as
 * UTF-8; every string in the tree is well-formed UTF-8. */
yajl_val pc_json_parse(const char *s, size_t n);

/** Why pc_json_parse refused s (n bytes), for a person fixing a file: the
 * line and column (1-based) where the syntax breaks, or which of the extra
 * rules it broke. Writes a sentence to out. */
void pc_json_explain(const char *s, size_t n, char *out, size_t outsz);

/** The value of key in object obj (last occurrence, as JSON.parse keeps), or NULL when obj is
 * not an object or has no such key. */
yajl_val pc_json_get(yajl_val obj, const char *key);

#endif
