/* Portcullis - MIT licence. See LICENSE.
 *
 * log.h: one JSON object per line, to stderr or a file. Thread-safe: a line is
 * formatted in memory; writers take turns, and each write(2) holds whole
 * lines and at most PIPE_BUF bytes, so lines never interleave or break on a
 * pipe (a line longer than PIPE_BUF is written alone). Partial writes and
 * EINTR are continued; a write that still fails is counted.
 *
 * Never pass a password, token, cookie or secret to these functions.
 */
#ifndef PC_LOG_H
#define PC_LOG_H

#include "util.h"

enum pc_log_level {
    PC_LOG_DEBUG = 0,
    PC_LOG_INFO,
    PC_LOG_WARN,
    PC_LOG_ERROR,
    PC_LOG_LEVEL_COUNT
};

/** Opens path for appending ("" or NULL: stderr). Returns 0 or -1. */
PC_MUSTCHECK int pc_log_open(const char *path, enum pc_log_level min, const char *program);
void pc_log_close(void);

/** {"ts":..,"level":..,"prog":..,"msg":<formatted>} */
void pc_log(enum pc_log_level level, const char *fmt, ...) PC_PRINTF(2, 3);
/** The same about one request: "req_id" (as its access line has it) after
 * "prog"; req_id NULL or "" writes none. */
void pc_log_req(enum pc_log_level level, const char *req_id, const char *fmt, ...)
    PC_PRINTF(3, 4);

/** Writes a complete JSON object (no trailing newline) as one line. */
void pc_log_line(const char *json, size_t n);

/** Writes that failed (the fd refused them) since start: for /metrics. */
unsigned long long pc_log_write_failures(void);

/** The length of the next write of s[0..n): n when n <= max, else the
 * whole lines that fit in max, else (one line longer than max) that line. */
size_t pc_log_next_chunk(const char *s, size_t n, size_t max);

/** Appends s[0..n) to b with every byte that is not part of a well-formed
 * UTF-8 sequence (a stray 0x80-0xff, an overlong form, a surrogate, a cut
 * sequence) written as \u00XX: for text inside a JSON string, which then
 * stays valid JSON and valid UTF-8. pc_log_line does this to every line. */
void pc_log_utf8(struct pc_buf *b, const char *s, size_t n);

/** The longest length <= n at which s can be cut without splitting a UTF-8
 * sequence (s[0..n) ends with whole sequences, or with bytes that belong to
 * none). */
size_t pc_utf8_cut(const char *s, size_t n);

/** Parses "debug|info|warn|error". Returns -1 when unknown. */
int pc_log_level_parse(const char *s);

#define pc_log_debug(...) pc_log(PC_LOG_DEBUG, __VA_ARGS__)
#define pc_log_info(...) pc_log(PC_LOG_INFO, __VA_ARGS__)
#define pc_log_warn(...) pc_log(PC_LOG_WARN, __VA_ARGS__)
#define pc_log_error(...) pc_log(PC_LOG_ERROR, __VA_ARGS__)
#define pc_logr_info(rid, ...) pc_log_req(PC_LOG_INFO, (rid), __VA_ARGS__)
#define pc_logr_warn(rid, ...) pc_log_req(PC_LOG_WARN, (rid), __VA_ARGS__)
#define pc_logr_error(rid, ...) pc_log_req(PC_LOG_ERROR, (rid), __VA_ARGS__)

#endif
