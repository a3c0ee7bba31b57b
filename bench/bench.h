// What the benchmark programs share: a monotonic clock and the median of a
// set of timings. Include after defining _POSIX_C_SOURCE (clock_gettime).
#ifndef TYCHO_BENCH_H
#define TYCHO_BENCH_H

#include <stddef.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Sorts the n timings t and returns their median (the upper one for even n).
static inline double bench_median(double *t, size_t n) {
    qsort(t, n, sizeof *t, bench_cmp_double);
    return t[n / 2];
}

#endif
