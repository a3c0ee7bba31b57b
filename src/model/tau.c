// Tau attention (moondream.md §8.1). Each head's q and v are scaled per token
// by tau = tanh(GELU(qkv) · w) + 1 + (sigmoid(alpha · ln(pos + 1)) - 0.5), the
// first part learned from the token's whole fused qkv row, the second from its
// position. The GELU, the (n, 2·n_heads) projection and the scaling run on
// the backend; only the projection's small result crosses to the host, where
// the tanh and the position part make the (n, 2·n_heads) scales. Each row's
// result depends on that row alone (batch invariance).
#include <math.h>
#include <stdlib.h>

#include "model/text_ops.h"

ty_status md_tau_apply(md_model *m, const md_tau *tau, ty_tensor qkv, const ty_batch *batch, ty_err *err) {
    ty_backend *be = m->be;
    const ty_backend_ops *op = be->ops;
    const md_text_config *c = &m->cfg.text;
    int64_t n = qkv.rows, w = qkv.cols, H = c->n_heads, hd = c->dim / c->n_heads, d = c->dim;
    float *tok = malloc((size_t)(n * 2 * H) * sizeof(float));  // (n, 2H) q then v projections, then the scales
    float *alpha = malloc((size_t)H * sizeof(float));
    ty_tensor f = {0}, t = {0};
    ty_status s = TY_OK;
    if (!tok || !alpha) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    if (s == TY_OK) s = op->alloc(be, &f, TY_DTYPE_F32, n, w, err);
    if (s == TY_OK) s = op->alloc(be, &t, TY_DTYPE_F32, n, 2 * H, err);
    if (s != TY_OK) goto done;
    op->activate(be, f, qkv, c->tau_gelu_tanh ? TY_ACT_GELU_TANH : TY_ACT_GELU_ERF);
    if (tau->wqwv.data) {  // one pass over both (decode runs many small ops: each costs a thread-pool round)
        op->matmul(be, t, f, tau->wqwv, NULL, TY_ACT_NONE);
    } else {
        op->matmul(be, tensor_cols(t, 0, H), f, tau->wq, NULL, TY_ACT_NONE);
        op->matmul(be, tensor_cols(t, H, H), f, tau->wv, NULL, TY_ACT_NONE);
    }
    op->read(be, t, tok);
    op->read(be, tau->alpha, alpha);
    for (int64_t r = 0; r < n; r++) {
        float lp = logf((float)batch->pos[r] + 1.0f), *row = tok + r * 2 * H;
        for (int64_t h = 0; h < H; h++) {
            float pos_part = 1.0f + (1.0f / (1.0f + expf(-alpha[h] * lp)) - 0.5f);
            row[h] = tanhf(row[h]) + pos_part;
            row[H + h] = tanhf(row[H + h]) + pos_part;
        }
    }
    op->write(be, t, tok);
    // n_kv_heads == n_heads (checked at load): q is columns [0, d), v [2d, 3d).
    op->scale_heads(be, tensor_cols(qkv, 0, d), tensor_cols(t, 0, H), (int)hd);
    op->scale_heads(be, tensor_cols(qkv, 2 * d, d), tensor_cols(t, H, H), (int)hd);
done:
    if (f.data) op->release(be, &f);
    if (t.data) op->release(be, &t);
    free(tok);
    free(alpha);
    return s;
}
