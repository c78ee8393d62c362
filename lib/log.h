/* Portcullis - MIT licence. See LICENSE.
 *
 * log.h: one JSON object per line, to stderr or a file. Thread-safe: a line is
 * formatted in memory and written with one write(2) on an O_APPEND fd.
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

/** Writes a complete JSON object (no trailing newline) as one line. */
void pc_log_line(const char *json, size_t n);

/** Parses "debug|info|warn|error". Returns -1 when unknown. */
int pc_log_level_parse(const char *s);

#define pc_log_debug(...) pc_log(PC_LOG_DEBUG, __VA_ARGS__)
#define pc_log_info(...) pc_log(PC_LOG_INFO, __VA_ARGS__)
#define pc_log_warn(...) pc_log(PC_LOG_WARN, __VA_ARGS__)
#define pc_log_error(...) pc_log(PC_LOG_ERROR, __VA_ARGS__)

#endif
