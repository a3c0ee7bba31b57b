// GEMM / GEMV throughput of the CPU backend at Moondream 2's real shapes: the
// best kernels of this CPU and the AVX2 kernels against the portable C kernels
// and, where the build found OpenBLAS, against OpenBLAS sgemm (benchmark.md's
// CPU GEMM baseline: >= 0.9x), all measured in the same run.
// usage: bench_gemm [threads]     prints median GFLOP/s (and GB/s of weights)
//
// OpenBLAS gets the same x and the same weights widened to f32 (twice the
// bytes: sgemm has no bf16 operand), and no bias (beta 0), so it does a little
// less work than tycho's matmul.
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

#ifdef TYCHO_BENCH_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int num_threads);  // OpenBLAS's own; not in every cblas.h
#endif

#include "backend/backend.h"
#include "core/half.h"

#define RUNS 5

// Median seconds of RUNS matmuls y(n, m) = x(n, k) w(m, k)^T + b on backend be.
static float *bench_input(int n, int k) {
    float *xh = malloc((size_t)n * k * sizeof(float));
    for (size_t i = 0; i < (size_t)n * k; i++) xh[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return xh;
}

static double time_matmul(ty_backend *be, int n, int k, int m, const uint16_t *w_host, const uint16_t *b_host) {
    ty_err err;
    ty_tensor x, y, w, b;
    be->ops->alloc(be, &x, TY_DTYPE_F32, n, k, &err);
    be->ops->alloc(be, &y, TY_DTYPE_F32, n, m, &err);
    be->ops->weight(be, &w, TY_DTYPE_BF16, m, k, w_host, &err);
    be->ops->weight(be, &b, TY_DTYPE_BF16, 1, m, b_host, &err);
    float *xh = bench_input(n, k);
    be->ops->write(be, x, xh);
    double t[RUNS];
    be->ops->matmul(be, y, x, w, &b, TY_ACT_NONE);  // warm caches and pages
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now();
        be->ops->matmul(be, y, x, w, &b, TY_ACT_NONE);
        t[r] = bench_now() - t0;
    }
    be->ops->release(be, &x);
    be->ops->release(be, &y);
    free(xh);
    return bench_median(t, RUNS);
}

#ifdef TYCHO_BENCH_OPENBLAS
// Median seconds of RUNS sgemm y(n, m) = x(n, k) w(m, k)^T, w the same bf16 weights widened.
static double time_openblas(int n, int k, int m, const uint16_t *w_host) {
    float *x = bench_input(n, k), *w = malloc((size_t)m * k * sizeof(float));
    float *y = malloc((size_t)n * m * sizeof(float));
    for (size_t i = 0; i < (size_t)m * k; i++) w[i] = bf16_to_f32(w_host[i]);
    double t[RUNS];
    for (int r = -1; r < RUNS; r++) {  // r = -1 warms caches and pages
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f, x, k, w, k, 0.0f, y, m);
        if (r >= 0) t[r] = bench_now() - t0;
    }
    free(x);
    free(w);
    free(y);
    return bench_median(t, RUNS);
}
#endif

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    ty_err err;
    ty_backend *fast, *avx2, *portable;
    if (backend_cpu_init(&fast, threads, &err) || backend_cpu_init_simd(&avx2, threads, TY_CPU_AVX2, &err) ||
        backend_cpu_init_simd(&portable, threads, TY_CPU_PORTABLE, &err)) {
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
    printf("best kernels: family %d (0 portable, 1 AVX2, 2 AVX-512)\n", backend_cpu_simd(fast));
#ifdef TYCHO_BENCH_OPENBLAS
    if (threads > 0) openblas_set_num_threads(threads);
    printf("OpenBLAS: sgemm on f32 copies of the weights; \"vs blas\" = its time / best's time\n");
#endif
    printf("%-30s %5s %5s %6s | %12s %12s %12s %7s", "shape", "n", "k", "m", "best", "avx2", "portable", "ratio");
#ifdef TYCHO_BENCH_OPENBLAS
    printf(" %12s %8s", "openblas", "vs blas");
#endif
    printf("\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int n = shapes[i].n, k = shapes[i].k, m = shapes[i].m;
        uint16_t *w = malloc((size_t)m * k * 2), *b = malloc((size_t)m * 2);
        for (size_t j = 0; j < (size_t)m * k; j++) w[j] = f32_to_bf16((float)((j * 40503u) % 2000) / 40000.0f - 0.025f);
        for (int j = 0; j < m; j++) b[j] = f32_to_bf16(0.01f * (j % 7));
        double tf = time_matmul(fast, n, k, m, w, b), ta = time_matmul(avx2, n, k, m, w, b);
        double tp = time_matmul(portable, n, k, m, w, b);
        double work = n == 1 ? (double)m * k * 2 : 2.0 * n * k * m;  // weight bytes (GEMV) or flops
        const char *unit = n == 1 ? "GB/s" : "GF/s";
        printf("%-30s %5d %5d %6d | %7.1f %s %7.1f %s %7.1f %s %6.2fx", shapes[i].what, n, k, m, work / tf / 1e9,
               unit, work / ta / 1e9, unit, work / tp / 1e9, unit, tp / tf);
#ifdef TYCHO_BENCH_OPENBLAS
        double tb = time_openblas(n, k, m, w);  // its GEMV reads f32: GB/s of its own (2x) weight bytes
        printf(" %7.1f %s %7.2fx", (n == 1 ? 2 * work : work) / tb / 1e9, unit, tb / tf);
#endif
        printf("\n");
        free(w);
        free(b);
    }
    fast->ops->free(fast);
    avx2->ops->free(avx2);
    portable->ops->free(portable);
    return 0;
}
