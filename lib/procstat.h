/* Portcullis - MIT licence. See LICENSE.
 *
 * procstat.h: the process's own figures from /proc (procstat.c), as the
 * Prometheus client libraries export them: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds. Named and
 * computed alike in both programs' /metrics.
 */
#ifndef PC_PROCSTAT_H
#define PC_PROCSTAT_H

#include "util.h"

#include <stdbool.h>
#include <stdint.h>

struct pc_procstat {
    double cpu_seconds;         /* user + system */
    uint64_t resident_bytes;
    uint64_t virtual_bytes;
    int64_t open_fds;           /* -1: unknown */
    int64_t max_fds;            /* RLIMIT_NOFILE's soft limit; -1: none */
    double start_time;          /* seconds since the epoch */
};

/** Reads the calling process's figures. False when /proc/self/stat cannot
 * be read or parsed (then *st is zeroed). Any thread. */
bool pc_procstat_read(struct pc_procstat *st);

/** Parses the text of /proc/<pid>/stat (the comm field may hold spaces and
 * parentheses) with the clock tick rate, the page size and /proc/stat's
 * btime. False when it is malformed. For the tests, and for the above. */
bool pc_procstat_parse(const char *stat, long ticks, long page, int64_t btime,
                       struct pc_procstat *st);

/** Appends the process_* metrics (HELP and TYPE lines included); nothing
 * when /proc cannot be read. */
void pc_procstat_metrics(struct pc_buf *b);

#endif
