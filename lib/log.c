/* Portcullis - MIT licence. See LICENSE.
 *
 * log.c: JSON-lines logging shared by both programs.
 */
#include "log.h"
#include "json.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int log_fd = 2;
static enum pc_log_level log_min = PC_LOG_INFO;
static const char *log_prog = "portcullis";
static const char *const level_names[PC_LOG_LEVEL_COUNT] = {"debug", "info", "warn", "error"};

int pc_log_open(const char *path, enum pc_log_level min, const char *program)
{
    log_min = min;
    log_prog = program;
    if (path == NULL || path[0] == '\0')
        return 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd == -1)
        return -1;
    log_fd = fd;
    return 0;
}

void pc_log_close(void)
{
    if (log_fd > 2)
        close(log_fd);
    log_fd = 2;
}

int pc_log_level_parse(const char *s)
{
    for (int i = 0; i < PC_LOG_LEVEL_COUNT; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void pc_log_line(const char *json, size_t n)
{
    struct pc_buf b = {0};
    pc_buf_append(&b, json, n);
    pc_buf_putc(&b, '\n');
    ssize_t w = write(log_fd, b.data, b.len);
    (void)w; /* nowhere left to report a failed log write */
    pc_buf_free(&b);
}

void pc_log(enum pc_log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct pc_buf b = {0};
    struct pc_jw w = {.b = &b};
    pc_jw_obj_begin(&w);
    pc_jw_key(&w, "ts");
    pc_jw_date(&w, pc_now_ms());
    pc_jw_key(&w, "level");
    pc_jw_str(&w, level_names[level]);
    pc_jw_key(&w, "prog");
    pc_jw_str(&w, log_prog);
    pc_jw_key(&w, "msg");
    pc_jw_str(&w, msg);
    pc_jw_obj_end(&w);
    pc_log_line(b.data, b.len);
    pc_buf_free(&b);
}
