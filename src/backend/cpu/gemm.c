// y = act(x · wᵀ + bias): x (n, k) f32, w (m, k) bf16/f16/f32 read in place.
// Kernel families: portable C, AVX2+FMA, AVX-512, NEON (chosen at backend init).
//
// Batch invariance: y[i][j] is bitwise the same whatever n is and wherever row
// i sits in x, so a serving engine batching requests (continuous batching,
// chunked prefill) gives each one exactly what it would get alone. That holds
// because every kernel sums a dot product in the one way dot.c describes (the
// decode GEMV included), the bias is added after the sum, and the activation
// runs over the same span of a row (a panel's outputs) whatever n is: the
// vectorised GELU treats a span's tail differently from its body.
//
// Work is split over groups of panels of PANEL weight rows. A group's panels
// are converted to f32 once (when n > 1) and reused for every row of x; each
// 4 rows of x (in L1) then meet every panel of the group (in L2) before the
// next 4 are read, so x streams from L3 once per group rather than once per
// panel (vision shapes +4-6% on dev-2c, bench_gemm). A 4x4 block of dot
// products loads 8 vectors per 16 FMAs. With n == 1 (decode) bf16 weights are
// streamed once and converted on the fly, four rows at a time (gemv_bf16):
// that case is bandwidth-bound.
#include <stdlib.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/vec.h"

// GROUP_BYTES: the f32 weights of a group, held in L2 (1 MB per core on
// dev-2c's Zen 4; groups of 1 MB, 8 panels at k = 2048, measured 2% slower
// than single panels).
enum { PANEL = 16, GEMV_PANELS = 4, MAX_GROUP = 8, GROUP_BYTES = 512 << 10, ITEMS_PER_THREAD = 4 };

typedef struct {
    ty_tensor y, x, w;
    const ty_tensor *bias;
    ty_activation act;
    ty_cpu_simd simd;
    int group;  // panels per work item (n > 1)
} gemm_job;

static void activate_span(float *y, int64_t n, const gemm_job *g) {
    if (g->act == TY_ACT_GELU_TANH)
        vec_gelu_tanh(y, n, g->simd == TY_CPU_AVX2 || g->simd == TY_CPU_AVX512);
    else if (g->act == TY_ACT_GELU_ERF)
        for (int64_t i = 0; i < n; i++) y[i] = cpu_gelu_erf(y[i]);
}

static const void *weight_row(ty_tensor w, int64_t r) {
    return (const char *)w.data + (size_t)(r * w.stride) * dtype_size(w.dtype);
}

// Bias of the panel's outputs [j0, j0 + nj) as f32 (zeros without one).
static void panel_bias(float *bias, const gemm_job *g, int64_t j0, int64_t nj) {
    for (int64_t j = 0; j < PANEL; j++) bias[j] = 0.0f;
    if (g->bias)
        cpu_convert_row(bias, (const char *)g->bias->data + (size_t)j0 * dtype_size(g->bias->dtype), g->bias->dtype,
                        nj);
}

// Decode (n == 1, bf16): one row of x against GEMV_PANELS = 4 panels of
// weight rows, four rows at a time, the four a panel apart: on dev-2c, four
// rows streamed side by side from adjacent rows (4 KB apart) read memory ~25%
// slower than one row at a time, and rows 16 apart ~10% faster. Bias and
// activation then go panel by panel, over the same spans as for n > 1.
static void gemv_bf16(void *ctx, int block) {
    const gemm_job *g = ctx;
    int64_t k = g->x.cols, m = g->w.rows, j0 = (int64_t)block * GEMV_PANELS * PANEL;
    const float *x = cpu_row(g->x, 0);
    float *y = cpu_row(g->y, 0);
    for (int64_t i = j0; i < j0 + PANEL && i < m; i++) {
        const uint16_t *w[4];  // rows i + q * PANEL; past the end, row i again
        for (int q = 0; q < 4; q++) w[q] = weight_row(g->w, i + q * PANEL < m ? i + q * PANEL : i);
        float out[4];
        cpu_dot_rows_bf16(out, x, w, k, g->simd);
        for (int q = 0; q < 4 && i + q * PANEL < m; q++) y[i + q * PANEL] = out[q];
    }
    for (int64_t p0 = j0; p0 < j0 + GEMV_PANELS * PANEL && p0 < m; p0 += PANEL) {
        int64_t nj = m - p0 < PANEL ? m - p0 : PANEL;
        float bias[PANEL];
        panel_bias(bias, g, p0, nj);
        for (int64_t j = 0; j < nj; j++) y[p0 + j] += bias[j];
        activate_span(y + p0, nj, g);
    }
}

// Converts panel j0's weight rows to f32 into buf (or points at f32 weights).
static void panel_rows(const float **wrows, float *buf, const gemm_job *g, int64_t j0, int64_t nj) {
    int64_t k = g->x.cols;
    for (int64_t j = 0; j < nj; j++) {
        if (g->w.dtype == TY_DTYPE_F32) {
            wrows[j] = weight_row(g->w, j0 + j);
        } else {
            cpu_convert_row(buf + j * k, weight_row(g->w, j0 + j), g->w.dtype, k);
            wrows[j] = buf + j * k;
        }
    }
}

static void gemm_panels(void *ctx, int item) {
    const gemm_job *g = ctx;
    int64_t k = g->x.cols, m = g->w.rows, n = g->x.rows;
    int64_t p0 = (int64_t)item * g->group * PANEL;
    int np = (int)((m - p0 + PANEL - 1) / PANEL);
    if (np > g->group) np = g->group;
    float bias[MAX_GROUP][PANEL];
    const float *wrows[MAX_GROUP][PANEL];  // the group's rows, f32
    int64_t njs[MAX_GROUP];
    float *buf = NULL;  // (np * PANEL, k) the group's rows widened, unless f32 already
    if (g->w.dtype != TY_DTYPE_F32) {
        buf = malloc((size_t)(np * PANEL * k) * sizeof(float));
        if (!buf) abort();  // at most GROUP_BYTES; failure here means the machine is out of memory
    }
    for (int q = 0; q < np; q++) {
        int64_t j0 = p0 + q * PANEL;
        njs[q] = m - j0 < PANEL ? m - j0 : PANEL;
        panel_bias(bias[q], g, j0, njs[q]);
        panel_rows(wrows[q], buf ? buf + q * PANEL * k : NULL, g, j0, njs[q]);
    }
    float out[16];
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
        int ni = n - i0 < 4 ? (int)(n - i0) : 4;
        const float *xrows[4];
        for (int i = 0; i < ni; i++) xrows[i] = cpu_row(g->x, i0 + i);
        for (int q = 0; q < np; q++) {
            int64_t j0 = p0 + q * PANEL, nj = njs[q];
            for (int64_t jb = 0; jb < nj; jb += 4) {
                int nb = nj - jb < 4 ? (int)(nj - jb) : 4;
                cpu_dot_block(out, xrows, ni, wrows[q] + jb, nb, k, g->simd);
                for (int i = 0; i < ni; i++) {
                    float *y = cpu_row(g->y, i0 + i) + j0 + jb;
                    for (int j = 0; j < nb; j++) y[j] = out[i * 4 + j] + bias[q][jb + j];
                }
            }
            for (int i = 0; i < ni; i++) activate_span(cpu_row(g->y, i0 + i) + j0, nj, g);
        }
    }
    free(buf);
}

// Panels per work item: as many as fit GROUP_BYTES, while every thread still
// gets ITEMS_PER_THREAD items to balance over.
static int panel_group(int64_t k, int64_t m, int threads) {
    int64_t panels = (m + PANEL - 1) / PANEL;
    int64_t fit = GROUP_BYTES / (PANEL * k * (int64_t)sizeof(float));
    int64_t spread = panels / ((int64_t)threads * ITEMS_PER_THREAD);
    int64_t group = fit < spread ? fit : spread;
    return group < 1 ? 1 : group > MAX_GROUP ? MAX_GROUP : (int)group;
}

// The work items of one product: blocks of GEMV_PANELS panels for the decode
// GEMV, else groups of panels.
static int is_gemv(const gemm_job *g) { return g->x.rows == 1 && g->w.dtype == TY_DTYPE_BF16; }
static int job_items(const gemm_job *g) {
    int n_panels = (int)((g->w.rows + PANEL - 1) / PANEL);
    if (g->x.rows < 1) return 0;
    int per_item = is_gemv(g) ? GEMV_PANELS : g->group;
    return (n_panels + per_item - 1) / per_item;
}
static void job_item(const gemm_job *g, int item) {
    if (is_gemv(g)) gemv_bf16((void *)g, item);
    else gemm_panels((void *)g, item);
}

void cpu_matmul(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    cpu_backend *c = cpu_of(be);
    gemm_job g = {y, x, w, bias, act, c->simd, panel_group(x.cols, w.rows, pool_size(c->pool))};
    pool_run(c->pool, job_items(&g), is_gemv(&g) ? gemv_bf16 : gemm_panels, &g);
}

// Several products as one pool round: the items of all groups in a row, each
// run exactly as cpu_matmul runs it (so a group's result is the same bits).
typedef struct {
    const gemm_job *jobs;
    const int *start;  // (n + 1) first item of each group
    int n;
} grouped_jobs;

static void grouped_item(void *ctx, int item) {
    const grouped_jobs *G = ctx;
    int lo = 0, hi = G->n - 1;  // the last group starting at or before item
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (G->start[mid] <= item) lo = mid;
        else hi = mid - 1;
    }
    job_item(&G->jobs[lo], item - G->start[lo]);
}

void cpu_matmul_grouped(ty_backend *be, int n, const ty_matmul_group *groups) {
    cpu_backend *c = cpu_of(be);
    if (n < 1) return;
    gemm_job *jobs = malloc((size_t)n * sizeof *jobs);
    int *start = malloc((size_t)(n + 1) * sizeof *start);
    if (!jobs || !start) abort();  // a few bytes per group; failure here means the machine is out of memory
    start[0] = 0;
    for (int i = 0; i < n; i++) {
        const ty_matmul_group *q = &groups[i];
        jobs[i] = (gemm_job){q->y, q->x, q->w, q->bias, q->act, c->simd,
                             panel_group(q->x.cols, q->w.rows, pool_size(c->pool))};
        start[i + 1] = start[i] + job_items(&jobs[i]);
    }
    grouped_jobs G = {jobs, start, n};
    pool_run(c->pool, start[n], grouped_item, &G);
    free(jobs);
    free(start);
}
