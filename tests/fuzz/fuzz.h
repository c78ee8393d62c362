/* Portcullis - MIT licence. See LICENSE.
 *
 * fuzz.h: what the libFuzzer targets (tests/fuzz/fuzz_*.c) share. Each
 * target defines LLVMFuzzerTestOneInput, feeds the bytes to one parser the
 * way the program does, and checks the parser's own promises (bounds, round
 * trips, one reading whatever the split): a broken promise is FZ_CHECK, an
 * abort libFuzzer reports like a crash. Built and run by `make fuzz` and
 * `make fuzz-replay` (tests/fuzz/README.md).
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FZ_CHECK(cond, ...)                                                   \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__,     \
                    __LINE__, #cond);                                         \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* A heap copy of data with a NUL after it (parsers that take C strings). */
static inline char *fz_str(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        abort();
    if (n)
        memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* Splits data at the first byte equal to sep: a (an bytes) before it, b (bn) after
 * (b empty when there is none). */
static inline void fz_cut(const uint8_t *data, size_t n, uint8_t sep, const uint8_t **a,
                          size_t *an, const uint8_t **b, size_t *bn)
{
    const uint8_t *p = n ? memchr(data, sep, n) : NULL;
    *a = data;
    *an = p ? (size_t)(p - data) : n;
    *b = p ? p + 1 : data + n;
    *bn = p ? n - *an - 1 : 0;
}

#endif
