// Row-wise and element-wise ops: LayerNorm, add, embedding gather; the exact GELU.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"

float cpu_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

typedef struct {
    ty_tensor y, x, gamma, beta;
    float eps;
} rows_job;

static void layernorm_row(void *ctx, int r) {
    const rows_job *j = ctx;
    const float *x = cpu_row(j->x, r);
    float *y = cpu_row(j->y, r);
    int64_t n = j->x.cols;
    // Two passes in double: the mean and variance are exact enough that the
    // result depends only on the f32 inputs, not on summation order.
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    float inv = (float)(1.0 / sqrt(var + j->eps)), m = (float)mean;
    float g[256], b[256];
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t c = n - i0 < 256 ? n - i0 : 256;
        cpu_convert_row(g, (const char *)j->gamma.data + (size_t)i0 * dtype_size(j->gamma.dtype), j->gamma.dtype, c);
        cpu_convert_row(b, (const char *)j->beta.data + (size_t)i0 * dtype_size(j->beta.dtype), j->beta.dtype, c);
        for (int64_t i = 0; i < c; i++) y[i0 + i] = (x[i0 + i] - m) * inv * g[i] + b[i];
    }
}

void cpu_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor gamma, ty_tensor beta, float eps) {
    rows_job j = {.y = y, .x = x, .gamma = gamma, .beta = beta, .eps = eps};
    pool_run(cpu_of(be)->pool, (int)x.rows, layernorm_row, &j);
}

// y = a + b, where b may have fewer rows than a and is repeated (row r uses
// b's row r % b.rows: a per-position table added to every crop) and may be a
// weight in any float dtype.
void cpu_add(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b) {
    float tmp[512];
    for (int64_t r = 0; r < y.rows; r++) {
        float *yr = cpu_row(y, r);
        const float *ar = cpu_row(a, r);
        const char *br = (const char *)b.data + (size_t)((r % b.rows) * b.stride) * dtype_size(b.dtype);
        for (int64_t i0 = 0; i0 < y.cols; i0 += 512) {
            int64_t n = y.cols - i0 < 512 ? y.cols - i0 : 512;
            cpu_convert_row(tmp, br + (size_t)i0 * dtype_size(b.dtype), b.dtype, n);
            for (int64_t i = 0; i < n; i++) yr[i0 + i] = ar[i0 + i] + tmp[i];
        }
    }
}

void cpu_embed(ty_backend *be, ty_tensor y, ty_tensor table, const int32_t *ids) {
    for (int64_t r = 0; r < y.rows; r++) {
        const char *src = (const char *)table.data + (size_t)(ids[r] * table.stride) * dtype_size(table.dtype);
        cpu_convert_row(cpu_row(y, r), src, table.dtype, y.cols);
    }
}
