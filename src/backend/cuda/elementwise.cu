// Row-wise and element-wise ops: LayerNorm, add (with a repeated second
// operand), the residual adds fused with LayerNorm, embedding gather. f32 activations; gamma, beta, the added table
// and the embedding table in any float dtype.
#include "backend/cuda/cuda.h"

enum { LN_THREADS = 256 };

// Sum over the block (blockDim.x == LN_THREADS) of one double per thread.
__device__ double block_sum(double v, double *sh) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
    int w = threadIdx.x / 32, l = threadIdx.x % 32;
    __syncthreads();  // sh may still be read from the previous call
    if (l == 0) sh[w] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < LN_THREADS / 32; i++) s += sh[i];
    return s;
}

// One row's LayerNorm, by one block. Mean and variance in two passes in
// double, as the CPU backend does, so the statistics agree to far below f32
// rounding. Thread t reads only elements t, t + LN_THREADS, ...: those a fused
// caller wrote itself just before (no barrier needed), and y may alias what
// that caller read. Shared by both kernels so the fused op is bitwise the
// unfused one (same sums, same contraction of the last line).
__device__ __forceinline__ void layernorm_row(float *yr, const float *xr, int64_t n, const void *g, ty_dtype gdt,
                                              const void *b, ty_dtype bdt, float eps, double *sh) {
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += LN_THREADS) s += xr[i];
    double mean = block_sum(s, sh) / (double)n;
    s = 0;
    for (int64_t i = threadIdx.x; i < n; i += LN_THREADS) s += (xr[i] - mean) * (xr[i] - mean);
    double var = block_sum(s, sh) / (double)n;
    float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
    for (int64_t i = threadIdx.x; i < n; i += LN_THREADS)
        yr[i] = (xr[i] - m) * inv * cuda_load(g, gdt, i) + cuda_load(b, bdt, i);
}

// One block per row.
__global__ void layernorm_rows(float *y, int64_t ys, const float *x, int64_t xs, int64_t n, const void *g,
                               ty_dtype gdt, const void *b, ty_dtype bdt, float eps) {
    __shared__ double sh[LN_THREADS / 32];
    layernorm_row(y + (int64_t)blockIdx.x * ys, x + (int64_t)blockIdx.x * xs, n, g, gdt, b, bdt, eps, sh);
}

void cuda_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor gamma, ty_tensor beta, float eps) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    if (x.rows == 0) return;
    layernorm_rows<<<(unsigned)x.rows, LN_THREADS, 0, c->stream>>>((float *)y.data, y.stride, (const float *)x.data,
                                                                   x.stride, x.cols, gamma.data, gamma.dtype,
                                                                   beta.data, beta.dtype, eps);
    CUDA_LAUNCHED();
}

// x += a (+= b), then y = LayerNorm(x): one block per row, one launch and one
// pass over the rows where add, add, layernorm took three (decode is bound by
// launches; the vision tower by its 6561 x 1152 passes). b == NULL: no second add.
__global__ void add_layernorm_rows(float *y, int64_t ys, float *x, int64_t xs, const float *a, int64_t as,
                                   const float *b, int64_t bs, int64_t n, const void *g, ty_dtype gdt,
                                   const void *beta, ty_dtype bdt, float eps) {
    __shared__ double sh[LN_THREADS / 32];
    float *xr = x + (int64_t)blockIdx.x * xs;
    const float *ar = a + (int64_t)blockIdx.x * as, *br = b ? b + (int64_t)blockIdx.x * bs : NULL;
    for (int64_t i = threadIdx.x; i < n; i += LN_THREADS) {
        float v = xr[i] + ar[i];  // rounded to f32 per add, as add_rows: (x + a) + b
        if (br) v = v + br[i];
        xr[i] = v;
    }
    layernorm_row(y + (int64_t)blockIdx.x * ys, xr, n, g, gdt, beta, bdt, eps, sh);
}

void cuda_add_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor a, const ty_tensor *b, ty_tensor gamma,
                        ty_tensor beta, float eps) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    if (x.rows == 0) return;
    add_layernorm_rows<<<(unsigned)x.rows, LN_THREADS, 0, c->stream>>>(
        (float *)y.data, y.stride, (float *)x.data, x.stride, (const float *)a.data, a.stride,
        b ? (const float *)b->data : NULL, b ? b->stride : 0, x.cols, gamma.data, gamma.dtype, beta.data, beta.dtype,
        eps);
    CUDA_LAUNCHED();
}

__global__ void add_rows(float *y, int64_t ys, const float *a, int64_t as, const void *b, ty_dtype bdt, int64_t bs,
                         int64_t brows, int64_t n, int64_t cols) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    int64_t r = i / cols, j = i % cols;
    y[r * ys + j] = a[r * as + j] + cuda_load(b, bdt, (r % brows) * bs + j);
}

void cuda_add(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t total = y.rows * y.cols;
    if (total == 0) return;
    add_rows<<<cuda_blocks(total, 256), 256, 0, c->stream>>>((float *)y.data, y.stride, (const float *)a.data,
                                                             a.stride, b.data, b.dtype, b.stride, b.rows, y.rows,
                                                             y.cols);
    CUDA_LAUNCHED();
}

__global__ void embed_rows(float *y, int64_t ys, const void *table, ty_dtype tdt, int64_t ts, const int32_t *ids,
                           int64_t n, int64_t cols) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    int64_t r = i / cols, j = i % cols;
    y[r * ys + j] = cuda_load(table, tdt, (int64_t)ids[r] * ts + j);
}

void cuda_embed(ty_backend *be, ty_tensor y, ty_tensor table, const int32_t *ids) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t total = y.rows * y.cols;
    if (total == 0) return;
    const int32_t *d_ids = (const int32_t *)cuda_meta_upload(c, ids, (size_t)y.rows * sizeof(int32_t));
    embed_rows<<<cuda_blocks(total, 256), 256, 0, c->stream>>>((float *)y.data, y.stride, table.data, table.dtype,
                                                               table.stride, d_ids, y.rows, y.cols);
    CUDA_LAUNCHED();
}
