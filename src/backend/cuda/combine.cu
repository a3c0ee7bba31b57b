// The mixture-of-experts helpers on the GPU (backend.h: mul_plus_one,
// rows_weighted_sum), so Moondream 3's expert blocks stay in device memory:
// the host only routes (top-k of the router logits) and uploads the row lists.
// Arithmetic as the CPU's: f32, each row's terms added in the given order.
#include "backend/cuda/cuda.h"

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
