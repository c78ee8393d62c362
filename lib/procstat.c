/* Portcullis - MIT licence. See LICENSE.
 *
 * procstat.c: the process_* metrics (procstat.h), from /proc/self/stat
 * (utime, stime, starttime, vsize, rss: fields 14, 15, 22, 23, 24 of
 * proc(5)), /proc/stat's btime, /proc/self/fd and RLIMIT_NOFILE, as the
 * Prometheus client libraries read them.
 */
#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define STAT_MAX 4096

bool pc_procstat_parse(const char *stat, long ticks, long page, int64_t btime,
                       struct pc_procstat *st)
{
    memset(st, 0, sizeof *st);
    st->open_fds = st->max_fds = -1;
    if (ticks <= 0 || page <= 0)
        return false;
    /* "pid (comm) state ppid ...": comm may hold ") ", the last ')' ends it */
    const char *p = strrchr(stat, ')');
    if (p == NULL || p[1] != ' ')
        return false;
    p += 2;
    /* fields from 3 (state) on */
    unsigned long long v[25] = {0};
    for (int field = 3; field <= 24; field++) {
        while (*p == ' ')
            p++;
        if (*p == '\0' || *p == '\n')
            return false;
        if (field == 3) {
            p++; /* the state letter */
        } else {
            char *end;
            long long x = strtoll(p, &end, 10);
            if (end == p)
                return false;
            v[field] = (unsigned long long)(x < 0 ? 0 : x);
            p = end;
        }
        if (*p != ' ' && *p != '\n' && *p != '\0')
            return false;
    }
    st->cpu_seconds = (double)(v[14] + v[15]) / (double)ticks;
    st->start_time = (double)btime + (double)v[22] / (double)ticks;
    st->virtual_bytes = v[23];
    st->resident_bytes = v[24] * (unsigned long long)page;
    return true;
}

static bool read_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

static int64_t boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return 0;
    char line[256];
    long long bt = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lld", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

static int64_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

bool pc_procstat_read(struct pc_procstat *st)
{
    char buf[STAT_MAX];
    if (!read_file("/proc/self/stat", buf, sizeof buf) ||
        !pc_procstat_parse(buf, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), boot_time(), st))
        return false;
    st->open_fds = open_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        st->max_fds = (int64_t)rl.rlim_cur;
    return true;
}

/* One metric: HELP, TYPE and its value with prec decimals. */
static void gauge(struct pc_buf *b, const char *name, const char *type, const char *help,
                  int prec, double v)
{
    pc_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.*f\n", name, help, name, type, name,
                  prec, v);
}

void pc_procstat_metrics(struct pc_buf *b)
{
    struct pc_procstat st;
    if (!pc_procstat_read(&st))
        return;
    gauge(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
          2, st.cpu_seconds);
    gauge(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", 0,
          (double)st.resident_bytes);
    gauge(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", 0,
          (double)st.virtual_bytes);
    gauge(b, "process_start_time_seconds", "gauge",
          "Start time of the process since unix epoch in seconds.", 2, st.start_time);
    if (st.open_fds >= 0)
        gauge(b, "process_open_fds", "gauge", "Number of open file descriptors.", 0,
              (double)st.open_fds);
    if (st.max_fds >= 0)
        gauge(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.", 0,
              (double)st.max_fds);
}
