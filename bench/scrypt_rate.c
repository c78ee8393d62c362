/* Portcullis - MIT licence. See LICENSE.
 *
 * scrypt_rate.c: the machine's raw password-hash rate. Runs pc_password_hash
 * (Better Auth's scrypt, N=16384 r=16 p=1, the exact code authsvc runs) on T
 * threads, for S seconds or for H hashes in total, and prints hashes/s.
 *
 *   scrypt_rate [-t THREADS] [-s SECONDS | -n HASHES] [-q]
 *
 * THREADS defaults to the number of online cores (what PASSWORD_WORKERS
 * defaults to), SECONDS to 3. The last line of output is machine readable:
 *
 *   scrypt_rate threads=2 hashes=60 seconds=3.012 rate=19.92 ms_per_hash=100.4
 *
 * rate is completed hashes / wall time from the start until the last thread
 * finished; ms_per_hash is the mean time of one hash on one thread.
 *
 * Built by bench/run.sh against the objects in build/obj/lib (not by the
 * Makefile).
 */
#include "password.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct worker {
    pthread_t tid;
    long hashes;
    double busy;        /* seconds spent hashing */
    int failed;
};

static double deadline;             /* monotonic seconds; 0 = count mode */
static atomic_long budget;          /* hashes left in count mode */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    static const char pw[] = "bench-password-1234";
    char out[PC_PASSWORD_HASH_LEN + 1];
    for (;;) {
        if (deadline > 0) {
            if (now() >= deadline)
                break;
        } else if (atomic_fetch_sub(&budget, 1) <= 0) {
            break;
        }
        double t0 = now();
        if (pc_password_hash(pw, sizeof pw - 1, out) != 0) {
            w->failed = 1;
            break;
        }
        w->busy += now() - t0;
        w->hashes++;
    }
    return NULL;
}

static long parse_pos(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v <= 0 || v > 1000000) {
        fprintf(stderr, "scrypt_rate: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    long seconds = 3, count = 0;
    int quiet = 0, opt;
    if (threads < 1)
        threads = 1;
    while ((opt = getopt(argc, argv, "t:s:n:qh")) != -1) {
        switch (opt) {
        case 't': threads = parse_pos(optarg, "thread count"); break;
        case 's': seconds = parse_pos(optarg, "seconds"); count = 0; break;
        case 'n': count = parse_pos(optarg, "hash count"); break;
        case 'q': quiet = 1; break;
        default:
            fprintf(stderr, "usage: %s [-t THREADS] [-s SECONDS | -n HASHES] [-q]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (threads > 1024)
        threads = 1024;
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    if (ws == NULL)
        return 1;

    /* One untimed hash first: page in the code and the allocator's arena. */
    char warm[PC_PASSWORD_HASH_LEN + 1];
    if (pc_password_hash("warm-up", 7, warm) != 0) {
        fprintf(stderr, "scrypt_rate: pc_password_hash failed\n");
        return 1;
    }

    double t0 = now();
    if (count > 0)
        atomic_store(&budget, count);
    else
        deadline = t0 + (double)seconds;
    for (long i = 0; i < threads; i++) {
        if (pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
            fprintf(stderr, "scrypt_rate: pthread_create failed\n");
            return 1;
        }
    }
    long total = 0;
    double busy = 0;
    int failed = 0;
    for (long i = 0; i < threads; i++) {
        pthread_join(ws[i].tid, NULL);
        total += ws[i].hashes;
        busy += ws[i].busy;
        failed |= ws[i].failed;
    }
    double wall = now() - t0;
    if (failed) {
        fprintf(stderr, "scrypt_rate: pc_password_hash failed\n");
        return 1;
    }
    double rate = wall > 0 ? (double)total / wall : 0;
    double ms = total > 0 ? busy / (double)total * 1e3 : 0;
    if (!quiet)
        printf("%ld hashes on %ld thread(s) in %.3f s: %.2f hashes/s (%.1f ms per hash per thread)\n",
               total, threads, wall, rate, ms);
    printf("scrypt_rate threads=%ld hashes=%ld seconds=%.3f rate=%.2f ms_per_hash=%.1f\n",
           threads, total, wall, rate, ms);
    free(ws);
    return 0;
}
