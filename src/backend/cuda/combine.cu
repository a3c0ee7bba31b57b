// Moondream 3's helpers on the GPU (backend.h: activate, scale_heads for tau
// attention; mul_plus_one, rows_weighted_sum for the MoE), so its activations
// stay in device memory: the host only routes (top-k of the router logits),
// computes the per-token tau scales and uploads them.
// Arithmetic as the CPU's: f32, each row's terms added in the given order.
#include "backend/cuda/cuda.h"

__global__ void activate_rows(float *y, int64_t ys, const float *x, int64_t xs, int64_t n, int64_t cols, int act) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    int64_t r = i / cols, j = i % cols;
    y[r * ys + j] = cuda_activate(x[r * xs + j], act);
}

void cuda_activate_op(ty_backend *be, ty_tensor y, ty_tensor x, ty_activation act) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t total = y.rows * y.cols;
    if (total == 0) return;
    activate_rows<<<cuda_blocks(total, 256), 256, 0, c->stream>>>((float *)y.data, y.stride, (const float *)x.data,
                                                                 x.stride, y.rows, y.cols, (int)act);
    CUDA_LAUNCHED();
}

__global__ void scale_heads_rows(float *x, int64_t xs, const float *s, int64_t ss, int64_t n, int64_t heads, int hd) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * heads * hd) return;
    int64_t r = i / (heads * hd), j = i % (heads * hd);
    x[r * xs + j] *= s[r * ss + j / hd];
}

void cuda_scale_heads(ty_backend *be, ty_tensor x, ty_tensor s, int head_dim) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t total = x.rows * s.cols * head_dim;
    if (total == 0) return;
    scale_heads_rows<<<cuda_blocks(total, 256), 256, 0, c->stream>>>((float *)x.data, x.stride, (const float *)s.data,
                                                                    s.stride, x.rows, s.cols, head_dim);
    CUDA_LAUNCHED();
}

__global__ void mul_plus_one_rows(float *y, int64_t ys, const float *a, int64_t as, const float *b, int64_t bs,
                                  int64_t n, int64_t cols) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    int64_t r = i / cols, j = i % cols;
    y[r * ys + j] = a[r * as + j] * (b[r * bs + j] + 1.0f);
}

void cuda_mul_plus_one(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t total = y.rows * y.cols;
    if (total == 0) return;
    mul_plus_one_rows<<<cuda_blocks(total, 256), 256, 0, c->stream>>>((float *)y.data, y.stride, (const float *)a.data,
                                                                     a.stride, (const float *)b.data, b.stride, y.rows,
                                                                     y.cols);
    CUDA_LAUNCHED();
}

// meta: (n·k) int32 rows, then (n·k) f32 weights.
__global__ void weighted_sum_rows(float *y, int64_t ys, const float *x, int64_t xs, const int32_t *rows,
                                  const float *w, int k, int64_t n, int64_t cols) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * cols) return;
    int64_t r = i / cols, j = i % cols;
    float acc = 0.0f;
    for (int t = 0; t < k; t++) acc += x[(int64_t)rows[r * k + t] * xs + j] * w[r * k + t];
    y[r * ys + j] = acc;
}

void cuda_rows_weighted_sum(ty_backend *be, ty_tensor y, ty_tensor x, const int32_t *rows, const float *w, int k) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t total = y.rows * y.cols, nk = y.rows * k;
    if (total == 0) return;
    size_t bytes = (size_t)nk * (sizeof(int32_t) + sizeof(float));
    int32_t *h = (int32_t *)malloc(bytes ? bytes : 1);
    if (!h) abort();
    memcpy(h, rows, (size_t)nk * sizeof(int32_t));
    memcpy(h + nk, w, (size_t)nk * sizeof(float));
    const int32_t *d = (const int32_t *)cuda_meta_upload(c, h, bytes);
    free(h);
    weighted_sum_rows<<<cuda_blocks(total, 256), 256, 0, c->stream>>>((float *)y.data, y.stride, (const float *)x.data,
                                                                      x.stride, d, (const float *)(d + nk), k, y.rows,
                                                                      y.cols);
    CUDA_LAUNCHED();
}
