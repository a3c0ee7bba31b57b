// The tensor-core attention path, for many query rows over the same keys (a
// vision crop's 729 rows, a prefill chunk): per chunk of query rows
//   S = Q·Kᵀ          cuBLASLt, batched over heads, TF32 products, f32 sums  (heads, rows, keys)
//   P = softmax(S·scale) per row over its visible keys, f32, zeros past them (in place)
//   O = P·V           cuBLASLt, batched over heads, written into out with its row stride
// q, k, v are column slices with a row stride (a fused qkv row): head h is the
// column offset h*hd, so the batch stride is hd and nothing is copied.
//
// TF32, not bf16 (NOTES.md has the errors measured): inputs stay f32 (no
// conversion pass), its 11 significant bits give ~3e-4 relative error against
// the f32 path where bf16's 8 give ~3e-3, and the products are a small part of
// this path's time next to writing and reading S.
#include <math.h>
#include <string.h>

#include "backend/cuda/attention.h"

enum {
    SCORES_MAX_FLOATS = 32 << 20,  // 128 MB of scores at most; longer sequences run in chunks of rows
    SOFTMAX_WARPS = 8,
};

// One strided-batched product in cuBLASLt's column-major terms: D (m, n) =
// op(A) · B, op(A) = Aᵀ when trans_a (A stored (k, m)) else A (stored (m, k)).
typedef struct {
    int trans_a, m, n, k, batch;
    int64_t lda, sa, ldb, sb, ldd, sd;  // leading dimensions and batch strides, in elements
    uint32_t align;                     // bytes every pointer and stride is a multiple of (<= 16)
} bgemm_shape;

typedef struct {
    bgemm_shape shape;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
    int ok;  // cuBLASLt offered an algorithm
} bgemm_plan;

enum { MAX_PLANS = 8 };
struct att_gemm_plans {
    bgemm_plan p[MAX_PLANS];
    int n;
};

static int same_shape(const bgemm_shape *x, const bgemm_shape *y) {
    return x->trans_a == y->trans_a && x->m == y->m && x->n == y->n && x->k == y->k && x->batch == y->batch &&
           x->lda == y->lda && x->sa == y->sa && x->ldb == y->ldb && x->sb == y->sb && x->ldd == y->ldd &&
           x->sd == y->sd && x->align == y->align;
}

static cublasLtMatrixLayout_t layout(int64_t rows, int64_t cols, int64_t ld, int batch, int64_t stride) {
    cublasLtMatrixLayout_t l;
    LT_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, (uint64_t)rows, (uint64_t)cols, ld));
    int32_t b = batch;
    LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b));
    LT_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    return l;
}

static void plan_destroy(bgemm_plan *p) {
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->d);
    cublasLtMatmulDescDestroy(p->desc);
}

att_gemm_plans *att_gemm_plans_new(void) {
    att_gemm_plans *p = (att_gemm_plans *)calloc(1, sizeof *p);
    if (!p) abort();
    return p;
}

void att_gemm_plans_free(att_gemm_plans *p) {
    for (int i = 0; i < p->n; i++) plan_destroy(&p->p[i]);
    free(p);
}

static bgemm_plan *plan_get(cuda_backend *c, att_gemm_plans *ps, const bgemm_shape *s) {
    for (int i = 0; i < ps->n; i++)
        if (same_shape(&ps->p[i].shape, s)) return &ps->p[i];
    bgemm_plan *p = &ps->p[ps->n++];
    memset(p, 0, sizeof *p);
    p->shape = *s;
    cublasOperation_t ta = s->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    p->a = s->trans_a ? layout(s->k, s->m, s->lda, s->batch, s->sa) : layout(s->m, s->k, s->lda, s->batch, s->sa);
    p->b = layout(s->k, s->n, s->ldb, s->batch, s->sb);
    p->d = layout(s->m, s->n, s->ldd, s->batch, s->sd);
    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t wsb = CUDA_LT_WORKSPACE;
    uint32_t al = s->align;
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al));
    LT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &res, &found);
    p->ok = st == CUBLAS_STATUS_SUCCESS && found > 0;
    if (p->ok) p->algo = res.algo;
    cublasLtMatmulPreferenceDestroy(pref);
    return p;
}

static void plan_run(cuda_backend *c, const bgemm_plan *p, const float *a, const float *b, float *d) {
    float alpha = 1.0f, beta = 0.0f;
    LT_CHECK(cublasLtMatmul(c->lt, p->desc, &alpha, a, p->a, b, p->b, &beta, d, p->d, d, p->d, &p->algo, c->workspace,
                            CUDA_LT_WORKSPACE, c->stream));
}

// One warp per score row (head, i): p = softmax(s · scale) over the row's first
// visible keys in one online pass (running max and sum), then written
// normalised, with zeros past the visible keys. Rows are (n_rows, ld), n = nk.
__global__ void softmax_rows(float *s, int64_t ld, int n_rows, int rows_per_head, int nk, const int32_t *visible,
                             float scale) {
    int row = (int)((blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (row >= n_rows) return;
    int nv = nk;
    if (visible && visible[row % rows_per_head] < nk) nv = visible[row % rows_per_head];
    float *x = s + (int64_t)row * ld;
    float m = -INFINITY, l = 0.0f;
    for (int t = lane; t < nv; t += 32) {
        float v = x[t] * scale;
        if (v > m) {
            l = l * expf(m - v) + 1.0f;  // m = -inf at first: exp(-inf) = 0
            m = v;
        } else {
            l += expf(v - m);
        }
    }
    for (int o = 16; o > 0; o /= 2) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), l2 = __shfl_xor_sync(0xffffffffu, l, o);
        float mm = fmaxf(m, m2);
        l = (l > 0.0f ? l * expf(m - mm) : 0.0f) + (l2 > 0.0f ? l2 * expf(m2 - mm) : 0.0f);
        m = mm;
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int t = lane; t < nk; t += 32) x[t] = t < nv ? expf(x[t] * scale - m) * inv : 0.0f;
}

static int64_t round4(int64_t n) { return (n + 3) / 4 * 4; }

// TYCHO_CUDA_ATTENTION_SCORES_FLOATS lowers the cap (the test runs chunks of rows with it).
static size_t scores_cap(void) {
    const char *e = getenv("TYCHO_CUDA_ATTENTION_SCORES_FLOATS");
    long long n = e ? atoll(e) : 0;
    return n > 0 && n < SCORES_MAX_FLOATS ? (size_t)n : (size_t)SCORES_MAX_FLOATS;
}

size_t att_gemm_scratch(int nq, int nk, int n_heads) {
    size_t per_row = (size_t)n_heads * round4(nk), cap = scores_cap();  // per_row: one query row's scores, all heads
    size_t rows = (size_t)nq;
    if (per_row * rows > cap) rows = cap / per_row > 0 ? cap / per_row : 1;
    return per_row * rows;
}

// The largest power of two up to 16 that divides every address and byte stride in xs.
static uint32_t common_alignment(const uint64_t *xs, int n) {
    uint64_t bits = 16;
    for (int i = 0; i < n; i++) bits |= xs[i];
    return (uint32_t)(bits & (~bits + 1));
}

int att_gemm(cuda_backend *c, att_gemm_plans *plans, float *scores, size_t scores_floats, float *out, int64_t os,
             const float *q, int64_t qs, const float *k, int64_t ks, const float *v, int64_t vs, int nq, int nk,
             int n_heads, int n_kv_heads, int hd, float scale, const int32_t *visible) {
    int g = n_heads / n_kv_heads;  // query heads per kv head
    int64_t ld = round4(nk);       // a score row's stride: 16-byte aligned rows
    int chunk = (int)(scores_floats / ((size_t)n_heads * ld));
    if (chunk > nq) chunk = nq;
    if (chunk < 1) return 0;
    const uint64_t addrs[] = {(uintptr_t)q, (uintptr_t)k, (uintptr_t)v, (uintptr_t)out, (uintptr_t)scores,
                              (uint64_t)qs * 4, (uint64_t)ks * 4, (uint64_t)vs * 4, (uint64_t)os * 4,
                              (uint64_t)hd * 4, (uint64_t)ld * 4};
    uint32_t al = common_alignment(addrs, (int)(sizeof addrs / sizeof addrs[0]));
    if (plans->n > MAX_PLANS - 4) {  // room for this call's four plans (more shapes than a call should make)
        for (int i = 0; i < plans->n; i++) plan_destroy(&plans->p[i]);
        plans->n = 0;
    }
    // Every plan first (the full chunk and the last one), so a missing algorithm launches nothing.
    bgemm_plan *qk[2], *pv[2];
    for (int last = 0; last < 2; last++) {
        int rows = last ? (nq % chunk ? nq % chunk : chunk) : chunk;
        // S (heads, rows, ld): head h's (rows, nk) scores are Sᵀ (nk, rows) column-major = Kᵀᵀ · Qᵀ.
        bgemm_shape s1 = {1, nk, rows, hd, n_kv_heads, ks, hd, qs, (int64_t)g * hd, ld, (int64_t)g * rows * ld, al};
        // O rows (rows, hd) are Oᵀ (hd, rows) column-major = Vᵀ (hd, nk) · Pᵀ (nk, rows).
        bgemm_shape s2 = {0, hd, rows, nk, n_kv_heads, vs, hd, ld, (int64_t)g * rows * ld, os, (int64_t)g * hd, al};
        qk[last] = plan_get(c, plans, &s1);
        pv[last] = plan_get(c, plans, &s2);
    }
    if (!qk[0]->ok || !qk[1]->ok || !pv[0]->ok || !pv[1]->ok) return 0;
    for (int i0 = 0; i0 < nq; i0 += chunk) {
        int rows = nq - i0 < chunk ? nq - i0 : chunk, last = i0 + chunk >= nq;
        // Batch b is kv head b; query head b*g + j is the j-th call's batch b.
        for (int j = 0; j < g; j++)
            plan_run(c, qk[last], k, q + (int64_t)i0 * qs + (int64_t)j * hd, scores + (int64_t)j * rows * ld);
        int n_rows = n_heads * rows;
        softmax_rows<<<cuda_blocks((int64_t)n_rows * 32, SOFTMAX_WARPS * 32), SOFTMAX_WARPS * 32, 0, c->stream>>>(
            scores, ld, n_rows, rows, nk, visible ? visible + i0 : NULL, scale);
        CUDA_LAUNCHED();
        for (int j = 0; j < g; j++)
            plan_run(c, pv[last], v, scores + (int64_t)j * rows * ld, out + (int64_t)i0 * os + (int64_t)j * hd);
    }
    return 1;
}

// One thread per 4 columns of a gathered row (cols % 4 == 0, 16-byte aligned rows) or per column.
template <int W>
__global__ void gather_rows(float *kd, float *vd, const float *kc, int64_t kcs, const float *vc, int64_t vcs,
                            int cols, const int32_t *page_off, const int32_t *pages, int s, int n, int ps) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, per_row = cols / W;
    if (i >= (int64_t)n * per_row) return;
    int t = (int)(i / per_row), d = (int)(i % per_row) * W;
    int64_t row = att_cache_row(page_off, pages, s, t, ps);
    if (W == 4) {
        *(float4 *)(kd + (int64_t)t * cols + d) = *(const float4 *)(kc + row * kcs + d);
        *(float4 *)(vd + (int64_t)t * cols + d) = *(const float4 *)(vc + row * vcs + d);
    } else {
        kd[(int64_t)t * cols + d] = kc[row * kcs + d];
        vd[(int64_t)t * cols + d] = vc[row * vcs + d];
    }
}

void att_gather(cuda_backend *c, float *k_dst, float *v_dst, const ty_kv_layer *kv, int cols, const int32_t *page_off,
                const int32_t *pages, int s, int n) {
    const float *kc = (const float *)kv->k.data, *vc = (const float *)kv->v.data;
    int vec = cols % 4 == 0 && kv->k.stride % 4 == 0 && kv->v.stride % 4 == 0 && (uintptr_t)kc % 16 == 0 &&
              (uintptr_t)vc % 16 == 0 && (uintptr_t)k_dst % 16 == 0 && (uintptr_t)v_dst % 16 == 0;
    int64_t threads = (int64_t)n * (vec ? cols / 4 : cols);
    if (vec)
        gather_rows<4><<<cuda_blocks(threads, 256), 256, 0, c->stream>>>(k_dst, v_dst, kc, kv->k.stride, vc,
                                                                        kv->v.stride, cols, page_off, pages, s, n,
                                                                        kv->page_size);
    else
        gather_rows<1><<<cuda_blocks(threads, 256), 256, 0, c->stream>>>(k_dst, v_dst, kc, kv->k.stride, vc,
                                                                        kv->v.stride, cols, page_off, pages, s, n,
                                                                        kv->page_size);
    CUDA_LAUNCHED();
}
