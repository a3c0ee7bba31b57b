// The mixture-of-experts MLP of Moondream 3 (moondream.md §8.2).
//
// Per row: router logits (n_experts), the top k by logit (ties: the lower
// expert id), weights = softmax over those k logits in f32. Expert e computes
// a = GELU_erf(x · h_eᵀ) · (x · g_eᵀ + 1), y_e = a · fc2_eᵀ (no biases); the
// row's output sums w_e · y_e over its experts in ascending expert id, the
// order of the reference's multi-token path.
//
// Rows are grouped by expert on the host side: each chosen expert's rows are
// gathered into one block and run through that expert's weights once, so a
// step reads each chosen expert's bytes once and never an unchosen one's (a
// decode row reads its k experts only). The gather and scatter cost
// O(rows · k · dim) copies, small beside the expert GEMMs; a device backend
// would want gather/scatter ops instead (see README).
//
// Batch invariance: the GEMM kernels give a row the same result whatever
// other rows share its block, routing and softmax are per row, and each row
// accumulates its experts in the fixed ascending order; so a row's output
// never depends on which other rows are in the batch.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/text_ops.h"

// The k largest of n logits (ties to the lower index), in descending order,
// and their softmax weights.
static void route_row(const float *logits, int n, int k, int *idx, float *w) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n; e++) {
            int taken = 0;
            for (int i = 0; i < j && !taken; i++) taken = idx[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
        }
        idx[j] = best;
    }
    float mx = logits[idx[0]], sum = 0;
    for (int j = 0; j < k; j++) sum += w[j] = expf(logits[idx[j]] - mx);
    for (int j = 0; j < k; j++) w[j] /= sum;
}

typedef struct {
    float *xh, *logits, *acc, *block;  // host: (n, dim) input, (n, E) router logits, (n, dim) output, (n, max) block
    int *idx, *order, *start, *next;   // (n, k) experts per row, rows grouped by expert, (E + 1) group starts, (E)
    float *w, *order_w;                // (n, k) weights; the weight of each grouped row
    ty_tensor r, xb, hg, a, yb;        // backend: (n, E), (n, dim), (n, 2 inner), (n, inner), (n, dim)
} moe_scratch;

static ty_status scratch_init(md_model *m, moe_scratch *s, int64_t n, ty_err *err) {
    const ty_backend_ops *op = m->be->ops;
    const md_moe_config *c = &m->cfg.text.moe;
    int64_t d = m->cfg.text.dim, E = c->num_experts, k = c->experts_per_token, I = c->expert_inner_dim;
    int64_t block = d > 2 * I ? d : 2 * I;
    memset(s, 0, sizeof *s);
    s->xh = malloc((size_t)(n * d) * sizeof(float));
    s->logits = malloc((size_t)(n * E) * sizeof(float));
    s->acc = calloc((size_t)(n * d), sizeof(float));
    s->block = malloc((size_t)(n * block) * sizeof(float));
    s->idx = malloc((size_t)(n * k) * sizeof(int));
    s->order = malloc((size_t)(n * k) * sizeof(int));
    s->start = calloc((size_t)E + 1, sizeof(int));
    s->next = calloc((size_t)E, sizeof(int));
    s->w = malloc((size_t)(n * k) * sizeof(float));
    s->order_w = malloc((size_t)(n * k) * sizeof(float));
    if (!s->xh || !s->logits || !s->acc || !s->block || !s->idx || !s->order || !s->start || !s->next || !s->w || !s->order_w)
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    ty_status st = op->alloc(m->be, &s->r, TY_DTYPE_F32, n, E, err);
    if (st == TY_OK) st = op->alloc(m->be, &s->xb, TY_DTYPE_F32, n, d, err);
    if (st == TY_OK) st = op->alloc(m->be, &s->hg, TY_DTYPE_F32, n, 2 * I, err);
    if (st == TY_OK) st = op->alloc(m->be, &s->a, TY_DTYPE_F32, n, I, err);
    if (st == TY_OK) st = op->alloc(m->be, &s->yb, TY_DTYPE_F32, n, d, err);
    return st;
}

static void scratch_free(md_model *m, moe_scratch *s) {
    ty_tensor *t[] = {&s->r, &s->xb, &s->hg, &s->a, &s->yb};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i]->data) m->be->ops->release(m->be, t[i]);
    free(s->xh);
    free(s->logits);
    free(s->acc);
    free(s->block);
    free(s->idx);
    free(s->order);
    free(s->start);
    free(s->next);
    free(s->w);
    free(s->order_w);
}

// Routes every row and lists the rows of each expert (ascending row order)
// with their weights: expert e's rows are order[start[e] .. start[e + 1]).
static void route(const md_moe_config *c, moe_scratch *s, int64_t n) {
    int E = c->num_experts, k = c->experts_per_token;
    for (int64_t r = 0; r < n; r++) route_row(s->logits + r * E, E, k, s->idx + r * k, s->w + r * k);
    for (int64_t i = 0; i < n * k; i++) s->start[s->idx[i] + 1]++;
    for (int e = 0; e < E; e++) s->start[e + 1] += s->start[e];
    for (int64_t r = 0; r < n; r++)
        for (int j = 0; j < k; j++) {
            int e = s->idx[r * k + j], at = s->start[e] + s->next[e]++;
            s->order[at] = (int)r;
            s->order_w[at] = s->w[r * k + j];
        }
}

ty_status md_moe_forward(md_model *m, const md_moe *moe, ty_tensor y, ty_tensor x, ty_err *err) {
    ty_backend *be = m->be;
    const ty_backend_ops *op = be->ops;
    const md_moe_config *c = &m->cfg.text.moe;
    int64_t n = x.rows, d = m->cfg.text.dim, I = c->expert_inner_dim;
    moe_scratch s;
    ty_status st = scratch_init(m, &s, n, err);
    if (st != TY_OK) {
        scratch_free(m, &s);
        return st;
    }
    op->matmul(be, s.r, x, moe->router.w, &moe->router.b, TY_ACT_NONE);
    op->read(be, s.r, s.logits);
    op->read(be, x, s.xh);
    route(c, &s, n);
    for (int e = 0; e < c->num_experts; e++) {
        int64_t rows = s.start[e + 1] - s.start[e];
        if (!rows) continue;  // an expert no row chose: its weights are never read
        const int *who = s.order + s.start[e];
        const float *wt = s.order_w + s.start[e];
        for (int64_t i = 0; i < rows; i++) memcpy(s.block + i * d, s.xh + who[i] * d, (size_t)d * sizeof(float));
        ty_tensor xb = tensor_rows(s.xb, 0, rows), hg = tensor_rows(s.hg, 0, rows);
        ty_tensor a = tensor_rows(s.a, 0, rows), yb = tensor_rows(s.yb, 0, rows);
        ty_tensor up = tensor_rows(moe->fc1, (int64_t)e * 2 * I, 2 * I), down = tensor_rows(moe->fc2, (int64_t)e * d, d);
        op->write(be, xb, s.block);
        // h through the exact GELU in the GEMM epilogue, g as is: one pass over the expert's fc1 rows each.
        op->matmul(be, tensor_cols(hg, 0, I), xb, tensor_rows(up, 0, I), NULL, TY_ACT_GELU_ERF);
        op->matmul(be, tensor_cols(hg, I, I), xb, tensor_rows(up, I, I), NULL, TY_ACT_NONE);
        op->read(be, hg, s.block);
        for (int64_t i = 0; i < rows; i++) {
            float *h = s.block + i * 2 * I, *g = h + I, *out = s.block + i * I;  // out trails h: safe in place
            for (int64_t j = 0; j < I; j++) out[j] = h[j] * (g[j] + 1.0f);
        }
        op->write(be, a, s.block);
        op->matmul(be, yb, a, down, NULL, TY_ACT_NONE);
        op->read(be, yb, s.block);
        for (int64_t i = 0; i < rows; i++) {
            float *acc = s.acc + who[i] * d;
            const float *v = s.block + i * d;
            for (int64_t j = 0; j < d; j++) acc[j] += v[j] * wt[i];
        }
    }
    op->write(be, y, s.acc);
    scratch_free(m, &s);
    return TY_OK;
}
