// The mixture-of-experts helpers: GeGLU's product and the weighted sum of
// each row's expert outputs. One row per pool task; each row's arithmetic is
// fixed (terms in the given order), so results do not depend on the batch.
#include "backend/cpu/cpu.h"

typedef struct {
    ty_tensor y, a, b;
    const int32_t *rows;
    const float *w;
    int k;
} combine_job;

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
