// GEMM / GEMV throughput of the CPU backend at Moondream 2's real shapes, the
// current kernels against the portable C kernels measured in the same run.
// usage: bench_gemm [threads]     prints median GFLOP/s (and GB/s of weights)
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/backend.h"
#include "core/half.h"

#define RUNS 5

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Median seconds of RUNS matmuls y(n, m) = x(n, k) w(m, k)^T + b on backend be.
static double time_matmul(ty_backend *be, int n, int k, int m, const uint16_t *w_host, const uint16_t *b_host) {
    ty_err err;
    ty_tensor x, y, w, b;
    be->ops->alloc(be, &x, TY_DTYPE_F32, n, k, &err);
    be->ops->alloc(be, &y, TY_DTYPE_F32, n, m, &err);
    be->ops->weight(be, &w, TY_DTYPE_BF16, m, k, w_host, &err);
    be->ops->weight(be, &b, TY_DTYPE_BF16, 1, m, b_host, &err);
    float *xh = malloc((size_t)n * k * sizeof(float));
    for (size_t i = 0; i < (size_t)n * k; i++) xh[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    be->ops->write(be, x, xh);
    double t[RUNS];
    be->ops->matmul(be, y, x, w, &b, TY_ACT_NONE);  // warm caches and pages
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        be->ops->matmul(be, y, x, w, &b, TY_ACT_NONE);
        t[r] = now() - t0;
    }
    qsort(t, RUNS, sizeof t[0], cmp_double);
    be->ops->release(be, &x);
    be->ops->release(be, &y);
    free(xh);
    return t[RUNS / 2];
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    ty_err err;
    ty_backend *fast, *portable;
    if (backend_cpu_init(&fast, threads, &err) || backend_cpu_init_portable(&portable, threads, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    static const struct {
        const char *what;
        int n, k, m;
    } shapes[] = {
        {"vision qkv, 2 crops", 1458, 1152, 3456}, {"vision fc1, 2 crops", 1458, 1152, 4304},
        {"text fc1, 735-token prefill", 735, 2048, 8192}, {"text fc1, decode (GEMV)", 1, 2048, 8192},
        {"lm_head, decode (GEMV)", 1, 2048, 51200},
    };
    printf("%-30s %8s %8s %8s | %10s %10s %7s\n", "shape", "n", "k", "m", "tycho", "portable", "ratio");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int n = shapes[i].n, k = shapes[i].k, m = shapes[i].m;
        uint16_t *w = malloc((size_t)m * k * 2), *b = malloc((size_t)m * 2);
        for (size_t j = 0; j < (size_t)m * k; j++) w[j] = f32_to_bf16((float)((j * 40503u) % 2000) / 40000.0f - 0.025f);
        for (int j = 0; j < m; j++) b[j] = f32_to_bf16(0.01f * (j % 7));
        double tf = time_matmul(fast, n, k, m, w, b), tp = time_matmul(portable, n, k, m, w, b);
        double flop = 2.0 * n * k * m;
        if (n == 1)
            printf("%-30s %8d %8d %8d | %7.1f GB/s %7.1f GB/s %6.2fx\n", shapes[i].what, n, k, m,
                   m * k * 2 / tf / 1e9, m * k * 2 / tp / 1e9, tp / tf);
        else
            printf("%-30s %8d %8d %8d | %6.1f GF/s %6.1f GF/s %6.2fx\n", shapes[i].what, n, k, m, flop / tf / 1e9,
                   flop / tp / 1e9, tp / tf);
        free(w);
        free(b);
    }
    fast->ops->free(fast);
    portable->ops->free(portable);
    return 0;
}
