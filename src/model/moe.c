// The mixture-of-experts MLP of Moondream 3 (moondream.md §8.2).
//
// Per row: router logits (n_experts), the top k by logit (ties: the lower
// expert id), weights = softmax over those k logits in f32. Expert e computes
// a = GELU_erf(x · h_eᵀ) · (x · g_eᵀ + 1), y_e = a · fc2_eᵀ (no biases); the
// row's output sums w_e · y_e over its experts in ascending expert id, the
// order of the reference's multi-token path.
//
// Rows are grouped by expert: the host routes (reads the router logits, takes
// each row's top k) and lists each expert's rows; the backend gathers each
// chosen expert's rows into one block (embed as a row gather) and runs it
// through that expert's weights once, so a step reads each chosen expert's
// bytes once and never an unchosen one's (a decode row reads its k experts
// only). All experts' blocks of a step go to the backend as one grouped matmul
// for fc1 and one for fc2; the GeGLU product and the weighted sum of each
// row's k outputs are backend ops too, so no block crosses to the host (on a
// GPU the logits are the only read). fc1's blocks are cut into chunks of
// CHUNK_ROWS rows to bound the scratch memory of a long prefill.
//
// Batch invariance: the GEMM kernels give a row the same result whatever
// other rows share its block, routing and softmax are per row, and each row
// sums its experts in the fixed ascending order; so a row's output never
// depends on which other rows are in the batch.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/text_ops.h"

enum { CHUNK_ROWS = 2048 };  // expert-block rows per grouped call (at least one expert's rows)

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
    int64_t n, cap;           // rows; block rows per chunk
    float *logits;            // host: (n, E) router logits
    int *idx, *start, *next;  // (n, k) experts per row, (E + 1) group starts, (E)
    int32_t *order, *at;      // (n·k) rows grouped by expert; where row r's j-th choice sits in order
    float *w;                 // (n, k) weights, in choice order
    int32_t *sum_rows;        // (n, k) each row's positions in order, ascending expert id
    float *sum_w;             // (n, k) their weights
    ty_matmul_group *groups;  // (2E)
    ty_tensor r, xb, hg, a, yb;  // backend: (n, E), (cap, dim), (cap, 2I), (cap, I), (n·k, dim)
} moe_scratch;

// Routes every row and lists the rows of each expert (ascending row order):
// expert e's rows are order[start[e] .. start[e + 1]). Then each row's k
// places in that order with their weights, in ascending expert id (the order
// its outputs are summed in).
static void route(const md_moe_config *c, moe_scratch *s) {
    int E = c->num_experts, k = c->experts_per_token;
    for (int64_t r = 0; r < s->n; r++) route_row(s->logits + r * E, E, k, s->idx + r * k, s->w + r * k);
    for (int64_t i = 0; i < s->n * k; i++) s->start[s->idx[i] + 1]++;
    for (int e = 0; e < E; e++) s->start[e + 1] += s->start[e];
    for (int64_t r = 0; r < s->n; r++)
        for (int j = 0; j < k; j++) {
            int e = s->idx[r * k + j], at = s->start[e] + s->next[e]++;
            s->order[at] = (int32_t)r;
            s->at[r * k + j] = at;
        }
    for (int64_t r = 0; r < s->n; r++) {
        int32_t *rows = s->sum_rows + r * k;
        float *w = s->sum_w + r * k;
        // Places in `order` rise with the expert id: sorting the places (insertion, k is
        // small) sorts the row's experts.
        for (int j = 0; j < k; j++) rows[j] = s->at[r * k + j], w[j] = s->w[r * k + j];
        for (int j = 1; j < k; j++)
            for (int i = j; i > 0 && rows[i] < rows[i - 1]; i--) {
                int32_t tr = rows[i];
                float tw = w[i];
                rows[i] = rows[i - 1], w[i] = w[i - 1];
                rows[i - 1] = tr, w[i - 1] = tw;
            }
    }
}

static ty_status scratch_init(md_model *m, moe_scratch *s, int64_t n, ty_err *err) {
    const ty_backend_ops *op = m->be->ops;
    const md_moe_config *c = &m->cfg.text.moe;
    int64_t E = c->num_experts, k = c->experts_per_token;
    memset(s, 0, sizeof *s);
    s->n = n;
    s->logits = malloc((size_t)(n * E) * sizeof(float));
    s->idx = malloc((size_t)(n * k) * sizeof(int));
    s->start = calloc((size_t)E + 1, sizeof(int));
    s->next = calloc((size_t)E, sizeof(int));
    s->order = malloc((size_t)(n * k) * sizeof(int32_t));
    s->at = malloc((size_t)(n * k) * sizeof(int32_t));
    s->w = malloc((size_t)(n * k) * sizeof(float));
    s->sum_rows = malloc((size_t)(n * k) * sizeof(int32_t));
    s->sum_w = malloc((size_t)(n * k) * sizeof(float));
    s->groups = malloc((size_t)(2 * E) * sizeof *s->groups);
    if (!s->logits || !s->idx || !s->start || !s->next || !s->order || !s->at || !s->w || !s->sum_rows || !s->sum_w ||
        !s->groups)
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    return op->alloc(m->be, &s->r, TY_DTYPE_F32, n, E, err);
}

// Block buffers for chunks of up to cap rows (known once rows are routed), and
// every expert output row (n·k) for the weighted sum.
static ty_status scratch_blocks(md_model *m, moe_scratch *s, ty_err *err) {
    const ty_backend_ops *op = m->be->ops;
    const md_moe_config *c = &m->cfg.text.moe;
    int64_t d = m->cfg.text.dim, I = c->expert_inner_dim, largest = 0;
    for (int e = 0; e < c->num_experts; e++)
        if (s->start[e + 1] - s->start[e] > largest) largest = s->start[e + 1] - s->start[e];
    int64_t total = s->n * c->experts_per_token;
    s->cap = total < CHUNK_ROWS ? total : CHUNK_ROWS;
    if (s->cap < largest) s->cap = largest;
    ty_status st = op->alloc(m->be, &s->xb, TY_DTYPE_F32, s->cap, d, err);
    if (st == TY_OK) st = op->alloc(m->be, &s->hg, TY_DTYPE_F32, s->cap, 2 * I, err);
    if (st == TY_OK) st = op->alloc(m->be, &s->a, TY_DTYPE_F32, s->cap, I, err);
    if (st == TY_OK) st = op->alloc(m->be, &s->yb, TY_DTYPE_F32, total, d, err);
    return st;
}

static void scratch_free(md_model *m, moe_scratch *s) {
    ty_tensor *t[] = {&s->r, &s->xb, &s->hg, &s->a, &s->yb};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i]->data) m->be->ops->release(m->be, t[i]);
    void *p[] = {s->logits, s->idx, s->start, s->next, s->order, s->at, s->w, s->sum_rows, s->sum_w, s->groups};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
}

static void run_groups(md_model *m, const ty_matmul_group *g, int n) {
    const ty_backend_ops *op = m->be->ops;
    if (op->matmul_grouped) {
        op->matmul_grouped(m->be, n, g);
        return;
    }
    for (int i = 0; i < n; i++) op->matmul(m->be, g[i].y, g[i].x, g[i].w, g[i].bias, g[i].act);
}

// Experts [e0, e1), whose blocks fit one chunk: gather their rows of x, fc1 (h
// through the exact GELU in the GEMM epilogue, g as is), GeGLU, fc2 into
// their places in yb.
static void run_chunk(md_model *m, const md_moe *moe, moe_scratch *s, ty_tensor x, int e0, int e1) {
    const ty_backend_ops *op = m->be->ops;
    const md_moe_config *c = &m->cfg.text.moe;
    int64_t d = m->cfg.text.dim, I = c->expert_inner_dim, base = s->start[e0], rows = s->start[e1] - base;
    if (!rows) return;
    op->embed(m->be, tensor_rows(s->xb, 0, rows), x, s->order + base);
    int ng = 0;
    for (int e = e0; e < e1; e++) {
        int64_t n = s->start[e + 1] - s->start[e], at = s->start[e] - base;
        if (!n) continue;  // an expert no row chose: its weights are never read
        ty_tensor xe = tensor_rows(s->xb, at, n), he = tensor_rows(s->hg, at, n);
        ty_tensor up = tensor_rows(moe->fc1, (int64_t)e * 2 * I, 2 * I);
        s->groups[ng++] = (ty_matmul_group){tensor_cols(he, 0, I), xe, tensor_rows(up, 0, I), NULL, TY_ACT_GELU_ERF};
        s->groups[ng++] = (ty_matmul_group){tensor_cols(he, I, I), xe, tensor_rows(up, I, I), NULL, TY_ACT_NONE};
    }
    run_groups(m, s->groups, ng);
    ty_tensor hg = tensor_rows(s->hg, 0, rows);
    op->mul_plus_one(m->be, tensor_rows(s->a, 0, rows), tensor_cols(hg, 0, I), tensor_cols(hg, I, I));
    ng = 0;
    for (int e = e0; e < e1; e++) {
        int64_t n = s->start[e + 1] - s->start[e], at = s->start[e] - base;
        if (!n) continue;
        s->groups[ng++] = (ty_matmul_group){tensor_rows(s->yb, s->start[e], n), tensor_rows(s->a, at, n),
                                            tensor_rows(moe->fc2, (int64_t)e * d, d), NULL, TY_ACT_NONE};
    }
    run_groups(m, s->groups, ng);
}

ty_status md_moe_forward(md_model *m, const md_moe *moe, ty_tensor y, ty_tensor x, ty_err *err) {
    const ty_backend_ops *op = m->be->ops;
    const md_moe_config *c = &m->cfg.text.moe;
    moe_scratch s;
    ty_status st = scratch_init(m, &s, x.rows, err);
    if (st == TY_OK) {
        op->matmul(m->be, s.r, x, moe->router.w, &moe->router.b, TY_ACT_NONE);
        op->read(m->be, s.r, s.logits);
        route(c, &s);
        st = scratch_blocks(m, &s, err);
    }
    for (int e0 = 0; st == TY_OK && e0 < c->num_experts;) {
        int e1 = e0 + 1;
        while (e1 < c->num_experts && s.start[e1 + 1] - s.start[e0] <= s.cap) e1++;
        run_chunk(m, moe, &s, x, e0, e1);
        e0 = e1;
    }
    if (st == TY_OK) op->rows_weighted_sum(m->be, y, s.yb, s.sum_rows, s.sum_w, c->experts_per_token);
    scratch_free(m, &s);
    return st;
}
