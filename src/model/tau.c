// Tau attention (moondream.md §8.1). Each head's q and v are scaled per token
// by tau = tanh(GELU(qkv) · w) + 1 + (sigmoid(alpha · ln(pos + 1)) - 0.5), the
// first part learned from the token's whole fused qkv row, the second from its
// position. The model layer does the element-wise parts on host rows (the
// two (n, n_heads) projections run on the backend): the work is O(n · qkv
// width), small beside the qkv projection itself, and each row's result
// depends on that row alone (batch invariance).
#include <math.h>
#include <stdlib.h>

#include "model/text_ops.h"

static float gelu(float x, int tanh_form) {
    if (tanh_form) return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

ty_status md_tau_apply(md_model *m, const md_tau *tau, ty_tensor qkv, const ty_batch *batch, ty_err *err) {
    ty_backend *be = m->be;
    const ty_backend_ops *op = be->ops;
    const md_text_config *c = &m->cfg.text;
    int64_t n = qkv.rows, w = qkv.cols, H = c->n_heads, hd = c->dim / c->n_heads, d = c->dim;
    float *rows = malloc((size_t)(n * w) * sizeof(float));   // (n, w) the qkv rows
    float *feat = malloc((size_t)(n * w) * sizeof(float));   // (n, w) their GELU
    float *tok = malloc((size_t)(n * 2 * H) * sizeof(float));  // (n, 2H) q then v projections
    float *alpha = malloc((size_t)H * sizeof(float));
    ty_tensor f = {0}, t = {0};
    ty_status s = TY_OK;
    if (!rows || !feat || !tok || !alpha) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    if (s == TY_OK) s = op->alloc(be, &f, TY_DTYPE_F32, n, w, err);
    if (s == TY_OK) s = op->alloc(be, &t, TY_DTYPE_F32, n, 2 * H, err);
    if (s != TY_OK) goto done;
    op->read(be, qkv, rows);
    for (int64_t i = 0; i < n * w; i++) feat[i] = gelu(rows[i], c->tau_gelu_tanh);
    op->write(be, f, feat);
    if (tau->wqwv.data) {  // one pass over both (decode runs many small ops: each costs a thread-pool round)
        op->matmul(be, t, f, tau->wqwv, NULL, TY_ACT_NONE);
    } else {
        op->matmul(be, tensor_cols(t, 0, H), f, tau->wq, NULL, TY_ACT_NONE);
        op->matmul(be, tensor_cols(t, H, H), f, tau->wv, NULL, TY_ACT_NONE);
    }
    op->read(be, t, tok);
    op->read(be, tau->alpha, alpha);
    for (int64_t r = 0; r < n; r++) {
        float *row = rows + r * w;
        float lp = logf((float)batch->pos[r] + 1.0f);
        for (int64_t h = 0; h < H; h++) {
            float pos_part = 1.0f + (1.0f / (1.0f + expf(-alpha[h] * lp)) - 0.5f);
            float tq = tanhf(tok[r * 2 * H + h]) + pos_part, tv = tanhf(tok[r * 2 * H + H + h]) + pos_part;
            float *q = row + h * hd, *v = row + 2 * d + h * hd;  // n_kv_heads == n_heads (checked at load)
            for (int64_t i = 0; i < hd; i++) {
                q[i] *= tq;
                v[i] *= tv;
            }
        }
    }
    op->write(be, qkv, rows);
done:
    if (f.data) op->release(be, &f);
    if (t.data) op->release(be, &t);
    free(rows);
    free(feat);
    free(tok);
    free(alpha);
    return s;
}
