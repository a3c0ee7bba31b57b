// Element-wise and per-row helpers of Moondream 3's layers: GELU and per-head
// scaling (tau attention), GeGLU's product and the weighted sum of each row's
// expert outputs (MoE). One row per pool task; each row's arithmetic is fixed
// (terms in the given order), so results do not depend on the batch.
#include <math.h>

#include "backend/cpu/cpu.h"

typedef struct {
    ty_tensor y, a, b;
    const int32_t *rows;
    const float *w;
    int k;  // rows_weighted_sum: terms per row; scale_heads: head_dim; activate: the activation
} combine_job;

static void activate_row(void *ctx, int r) {
    const combine_job *j = ctx;
    const float *x = cpu_row(j->a, r);
    float *y = cpu_row(j->y, r);
    for (int64_t i = 0; i < j->y.cols; i++) {
        float v = x[i];
        y[i] = j->k == TY_ACT_GELU_TANH ? 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)))
               : j->k == TY_ACT_GELU_ERF ? cpu_gelu_erf(v)
                                         : v;
    }
}

void cpu_activate(ty_backend *be, ty_tensor y, ty_tensor x, ty_activation act) {
    combine_job j = {.y = y, .a = x, .k = (int)act};
    pool_run(cpu_of(be)->pool, (int)y.rows, activate_row, &j);
}

static void scale_heads_row(void *ctx, int r) {
    const combine_job *j = ctx;
    float *x = cpu_row(j->y, r);
    const float *s = cpu_row(j->a, r);
    for (int64_t h = 0; h < j->a.cols; h++)
        for (int64_t i = 0; i < j->k; i++) x[h * j->k + i] *= s[h];
}

void cpu_scale_heads(ty_backend *be, ty_tensor x, ty_tensor s, int head_dim) {
    combine_job j = {.y = x, .a = s, .k = head_dim};
    pool_run(cpu_of(be)->pool, (int)x.rows, scale_heads_row, &j);
}

static void mul_plus_one_row(void *ctx, int r) {
    const combine_job *j = ctx;
    const float *a = cpu_row(j->a, r), *b = cpu_row(j->b, r);
    float *y = cpu_row(j->y, r);
    for (int64_t i = 0; i < j->y.cols; i++) y[i] = a[i] * (b[i] + 1.0f);
}

void cpu_mul_plus_one(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b) {
    combine_job j = {.y = y, .a = a, .b = b};
    pool_run(cpu_of(be)->pool, (int)y.rows, mul_plus_one_row, &j);
}

static void weighted_sum_row(void *ctx, int r) {
    const combine_job *j = ctx;
    float *y = cpu_row(j->y, r);
    for (int64_t i = 0; i < j->y.cols; i++) y[i] = 0.0f;
    for (int t = 0; t < j->k; t++) {
        const float *x = cpu_row(j->a, j->rows[(int64_t)r * j->k + t]);
        float wt = j->w[(int64_t)r * j->k + t];
        for (int64_t i = 0; i < j->y.cols; i++) y[i] += x[i] * wt;
    }
}

void cpu_rows_weighted_sum(ty_backend *be, ty_tensor y, ty_tensor x, const int32_t *rows, const float *w, int k) {
    combine_job j = {.y = y, .a = x, .rows = rows, .w = w, .k = k};
    pool_run(cpu_of(be)->pool, (int)y.rows, weighted_sum_row, &j);
}
