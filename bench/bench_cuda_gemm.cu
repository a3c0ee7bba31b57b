// The CUDA backend's matmul at Moondream 2's decode shapes (one row) and the
// vision tower's fc1 over 9 crops, bf16 weights and biases as in a checkpoint.
// For each shape, cuda_matmul (x rounded to bf16 once) four ways: "before" (a
// cuBLASLt descriptor, layouts and heuristic made and destroyed every call,
// bias and GELU in a kernel after the GEMM: the first slice's path), "cache"
// (plans kept per shape), "+bias epi" (and the bias in cuBLASLt's BIAS
// epilogue, the GELU in the kernel) and "+gelu epi" (GELU_BIAS too: all of
// gemm.cu's defaults); then "split" the backend's default matmul for bf16
// weights (matmul_split.cu: x = hi + lo, its diff is that of not rounding x).
// Per call, medians in µs: host time to enqueue it ("enqueue"), wall time of
// the call plus a stream synchronize ("latency"), and wall time per call of a
// back-to-back run ("stream"). "diff" is ‖y − y_before‖/‖y_before‖, "maxdiff"
// max|y − y_before| / max|y_before|.
// Usage: bench_cuda_gemm [REPS]   (built by bench/cuda_gemm.sh or CMake with TYCHO_CUDA)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cuda/cuda.h"

extern "C" {
#include "core/half.h"
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

__global__ void empty_kernel(float *p) {
    if (p) p[0] = 0.0f;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {  // uniform in [-1, 1)
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffffff) / (float)0x800000 - 1.0f;
}

typedef struct {
    const char *name;
    int n, k, m;
    ty_activation act;
} gemm_shape;

static const gemm_shape shapes[] = {
    {"decode qkv", 1, 2048, 6144, TY_ACT_NONE},
    {"decode fc1+gelu", 1, 2048, 8192, TY_ACT_GELU_TANH},
    {"decode proj", 1, 2048, 2048, TY_ACT_NONE},
    {"decode fc2", 1, 8192, 2048, TY_ACT_NONE},
    {"vision fc1+gelu", 6561, 1152, 4304, TY_ACT_GELU_TANH},
};

static const struct {
    const char *name;
    int flags;
} modes[] = {
    {"before", CUDA_GEMM_NO_CACHE | CUDA_GEMM_NO_EPILOGUE},
    {"cache", CUDA_GEMM_NO_EPILOGUE},
    {"+bias epi", CUDA_GEMM_NO_GELU_EPILOGUE},
    {"+gelu epi", 0},
    {"split", 0},  // through the ops table: cuda_matmul_exact
};
enum { MODE_SPLIT = 4 };

static void run_matmul(ty_backend *be, size_t mode, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *b,
                       ty_activation act) {
    if (mode == MODE_SPLIT)
        be->ops->matmul(be, y, x, w, b, act);
    else
        cuda_matmul(be, y, x, w, b, act);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 200;
    ty_backend *be;
    ty_err err;
    if (backend_cuda_init(&be, 0, &err) != TY_OK) {
        fprintf(stderr, "bench_cuda_gemm: %s\n", err.msg);
        return 1;
    }
    cuda_backend *c = cuda_of(be);
    cudaDeviceProp prop;
    int drv = 0, rt = 0;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    printf("%s, sm_%d%d, driver API %d, runtime %d, cuBLASLt %zu\n", prop.name, prop.major, prop.minor, drv, rt,
           cublasLtGetVersion());
    {  // what one kernel launch costs the host here: the floor under every op
        double t[200];
        for (int i = 0; i < 200; i++) {
            double t0 = now_us();
            empty_kernel<<<1, 32, 0, c->stream>>>(NULL);
            t[i] = now_us() - t0;
            CUDA_CHECK(cudaStreamSynchronize(c->stream));
        }
        printf("one empty kernel launch: %.1f us of host time (median)\n", median(t, 200));
    }
    printf("%-16s %5s %5s %5s  %-9s %8s %8s %8s  %-8s %s\n", "shape", "n", "k", "m", "path", "enqueue", "latency",
           "stream", "diff", "maxdiff");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const gemm_shape *s = &shapes[si];
        int r = s->n > 64 ? reps / 10 + 1 : reps;
        size_t nx = (size_t)s->n * s->k, nw = (size_t)s->m * s->k, ny = (size_t)s->n * s->m;
        float *x = (float *)malloc(nx * 4), *y0 = (float *)malloc(ny * 4), *y = (float *)malloc(ny * 4);
        uint16_t *w = (uint16_t *)malloc(nw * 2), *b = (uint16_t *)malloc((size_t)s->m * 2);
        if (!x || !y0 || !y || !w || !b) abort();
        for (size_t i = 0; i < nx; i++) x[i] = frand();
        for (size_t i = 0; i < nw; i++) w[i] = f32_to_bf16(frand() * 0.05f);
        for (int i = 0; i < s->m; i++) b[i] = f32_to_bf16(frand());
        ty_tensor tx, ty, tw, tb;
        if (be->ops->alloc(be, &tx, TY_DTYPE_F32, s->n, s->k, &err) || be->ops->alloc(be, &ty, TY_DTYPE_F32, s->n, s->m, &err) ||
            be->ops->weight(be, &tw, TY_DTYPE_BF16, s->m, s->k, w, &err) ||
            be->ops->weight(be, &tb, TY_DTYPE_BF16, 1, s->m, b, &err)) {
            fprintf(stderr, "bench_cuda_gemm: %s\n", err.msg);
            return 1;
        }
        be->ops->write(be, tx, x);
        double *t = (double *)malloc((size_t)r * sizeof *t);
        for (size_t mi = 0; mi < sizeof modes / sizeof *modes; mi++) {
            cuda_gemm_set_flags(c, modes[mi].flags);
            for (int i = 0; i < 5; i++) run_matmul(be, mi, ty, tx, tw, &tb, s->act);  // warm: plans, bias copy
            CUDA_CHECK(cudaStreamSynchronize(c->stream));
            for (int i = 0; i < r; i++) {
                double t0 = now_us();
                run_matmul(be, mi, ty, tx, tw, &tb, s->act);
                t[i] = now_us() - t0;
                CUDA_CHECK(cudaStreamSynchronize(c->stream));
            }
            double enq = median(t, r);
            for (int i = 0; i < r; i++) {
                double t0 = now_us();
                run_matmul(be, mi, ty, tx, tw, &tb, s->act);
                CUDA_CHECK(cudaStreamSynchronize(c->stream));
                t[i] = now_us() - t0;
            }
            double lat = median(t, r);
            double t0 = now_us();
            for (int i = 0; i < r; i++) run_matmul(be, mi, ty, tx, tw, &tb, s->act);
            CUDA_CHECK(cudaStreamSynchronize(c->stream));
            double stream = (now_us() - t0) / r;
            be->ops->read(be, ty, mi == 0 ? y0 : y);
            double num = 0, den = 0, dmax = 0, ymax = 0;
            if (mi > 0)
                for (size_t i = 0; i < ny; i++) {
                    double d = fabs((double)y[i] - y0[i]);
                    num += d * d, den += (double)y0[i] * y0[i];
                    dmax = d > dmax ? d : dmax, ymax = fabs(y0[i]) > ymax ? fabs(y0[i]) : ymax;
                }
            printf("%-16s %5d %5d %5d  %-9s %8.1f %8.1f %8.1f  %.2e %.2e\n", s->name, s->n, s->k, s->m, modes[mi].name,
                   enq, lat, stream, den > 0 ? sqrt(num / den) : 0.0, ymax > 0 ? dmax / ymax : 0.0);
        }
        be->ops->release(be, &tx), be->ops->release(be, &ty), be->ops->release(be, &tw), be->ops->release(be, &tb);
        free(x), free(y0), free(y), free(w), free(b), free(t);
    }
    cuda_gemm_set_flags(c, 0);
    be->ops->free(be);
    return 0;
}
