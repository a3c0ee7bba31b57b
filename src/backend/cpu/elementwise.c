// Row-wise and element-wise ops: LayerNorm, add, the two fused (residual adds then
// LayerNorm), embedding gather; the exact GELU.
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"

float cpu_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

typedef struct {
    ty_tensor y, x, a, gamma, beta;
    const ty_tensor *b;  // add_layernorm's second addend (NULL: none)
    float eps;
} rows_job;

// y = LayerNorm(x) · gamma + beta over one row of n.
static void layernorm_one(float *y, const float *x, int64_t n, ty_tensor gamma, ty_tensor beta, float eps) {
    // Two passes in double: the mean and variance are exact enough that the
    // result depends only on the f32 inputs, not on summation order.
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    float inv = (float)(1.0 / sqrt(var + eps)), m = (float)mean;
    float g[256], b[256];
    for (int64_t i0 = 0; i0 < n; i0 += 256) {
        int64_t c = n - i0 < 256 ? n - i0 : 256;
        cpu_convert_row(g, (const char *)gamma.data + (size_t)i0 * dtype_size(gamma.dtype), gamma.dtype, c);
        cpu_convert_row(b, (const char *)beta.data + (size_t)i0 * dtype_size(beta.dtype), beta.dtype, c);
        for (int64_t i = 0; i < c; i++) y[i0 + i] = (x[i0 + i] - m) * inv * g[i] + b[i];
    }
}

static void layernorm_row(void *ctx, int r) {
    const rows_job *j = ctx;
    layernorm_one(cpu_row(j->y, r), cpu_row(j->x, r), j->x.cols, j->gamma, j->beta, j->eps);
}

void cpu_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor gamma, ty_tensor beta, float eps) {
    rows_job j = {.y = y, .x = x, .gamma = gamma, .beta = beta, .eps = eps};
    pool_run(cpu_of(be)->pool, (int)x.rows, layernorm_row, &j);
}

// The same float operations as cpu_add (f32 a + b per element, one rounding
// each) then layernorm_one, per row on the pool: bitwise add, add, layernorm,
// with the row still in cache for the norm.
static void add_layernorm_row(void *ctx, int r) {
    const rows_job *j = ctx;
    float *x = cpu_row(j->x, r);
    const float *a = cpu_row(j->a, r), *b = j->b ? cpu_row(*j->b, r) : NULL;
    int64_t n = j->x.cols;
    for (int64_t i = 0; i < n; i++) x[i] = x[i] + a[i];
    if (b)
        for (int64_t i = 0; i < n; i++) x[i] = x[i] + b[i];
    layernorm_one(cpu_row(j->y, r), x, n, j->gamma, j->beta, j->eps);
}

void cpu_add_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor a, const ty_tensor *b, ty_tensor gamma,
                       ty_tensor beta, float eps) {
    rows_job j = {.y = y, .x = x, .a = a, .b = b, .gamma = gamma, .beta = beta, .eps = eps};
    pool_run(cpu_of(be)->pool, (int)x.rows, add_layernorm_row, &j);
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
