// Image patches from 8-bit host pixels (backend.h: patches): each image's bytes
// go up through the upload ring (a 378x378 RGB crop is 0.43 MB, a quarter of
// its f32 patches) and a kernel expands them, so the host neither converts nor
// copies floats (with f32 patches made on the host, a 9-crop image cost ~8 ms
// of CPU before the tower could start, the GPU idle meanwhile).
#include "backend/cuda/cuda.h"

// One thread per output value of one image's patch rows.
__global__ void patch_values(float *y, int64_t ys, const uint8_t *px, int h, int w, int ch, int p,
                             const float *lut) {
    int gw = w / p, cols = ch * p * p;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)(h / p) * gw * cols) return;
    int r = (int)(i / cols), col = (int)(i % cols);
    int py = r / gw, pxl = r % gw, c = col / (p * p), dy = col / p % p, dx = col % p;
    y[r * ys + col] = lut[px[((int64_t)(py * p + dy) * w + pxl * p + dx) * ch + c]];
}

void cuda_patches(ty_backend *be, ty_tensor y, const uint8_t *pixels, int n, int h, int w, int ch, int p,
                  const float lut[256]) {
    cuda_backend *c = cuda_of(be);
    CUDA_CHECK(cudaSetDevice(c->device));
    int64_t rows = (int64_t)(h / p) * (w / p), cols = (int64_t)ch * p * p;
    size_t bytes = (size_t)h * w * ch;
    if (n == 0 || rows == 0) return;
    const float *d_lut = (const float *)cuda_meta_upload(c, lut, 256 * sizeof(float));
    for (int i = 0; i < n; i++) {
        const uint8_t *d_px = (const uint8_t *)cuda_meta_upload(c, pixels + bytes * (size_t)i, bytes);
        patch_values<<<cuda_blocks(rows * cols, 256), 256, 0, c->stream>>>((float *)y.data + i * rows * y.stride,
                                                                           y.stride, d_px, h, w, ch, p, d_lut);
        CUDA_LAUNCHED();
    }
}
