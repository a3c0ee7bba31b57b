// The region head (moondream.md §11): Fourier-feature encoders that turn a
// coordinate or a size into an input embedding, and decoders that turn a
// hidden state into coordinate / size bin logits: MLPs in Moondream 2, a
// LayerNorm and one Linear each in Moondream 3 (§8.3; applied to the raw
// hidden, as §17 item 3 decides).
#include <math.h>
#include <stdlib.h>

#include "model/moondream.h"

// Runs lin(in) for one row of host floats; act applies to the output.
static ty_status linear1(md_model *m, const md_linear *lin, const float *in, int64_t in_dim, float *out,
                         int64_t out_dim, ty_activation act, ty_err *err) {
    const ty_backend_ops *op = m->be->ops;
    ty_tensor x, y;
    ty_status s = op->alloc(m->be, &x, TY_DTYPE_F32, 1, in_dim, err);
    if (s != TY_OK) return s;
    s = op->alloc(m->be, &y, TY_DTYPE_F32, 1, out_dim, err);
    if (s == TY_OK) {
        op->write(m->be, x, in);
        op->matmul(m->be, y, x, lin->w, lin->b.data ? &lin->b : NULL, act);
        op->read(m->be, y, out);
        op->release(m->be, &y);
    }
    op->release(m->be, &x);
    return s;
}

// Fourier features of v (n_in values) through the (n_in, F) table: [cos f ; sin f],
// f_j = sum_i (2 pi v_i) * W[i, j]. out has 2F entries.
static ty_status fourier(md_model *m, ty_tensor table, const float *v, int n_in, float *out, ty_err *err) {
    int64_t F = table.cols;
    float *w = malloc((size_t)(n_in * F) * sizeof(float));
    if (!w) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    m->be->ops->read(m->be, table, w);
    for (int64_t j = 0; j < F; j++) {
        float f = 0;
        for (int i = 0; i < n_in; i++) f += (6.283185307179586f * v[i]) * w[i * F + j];
        out[j] = cosf(f);
        out[F + j] = sinf(f);
    }
    free(w);
    return TY_OK;
}

ty_status md_region_encode_coord(md_model *m, float x, float *out, ty_err *err) {
    const md_region_config *c = &m->cfg.region;
    if (!m->region.present) return ty_err_set(err, TY_E_UNSUPPORTED, "this model has no region head");
    float *feat = malloc((size_t)c->coord_feat_dim * sizeof(float));
    if (!feat) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    ty_status s = fourier(m, m->region.coord_features, &x, 1, feat, err);
    if (s == TY_OK)
        s = linear1(m, &m->region.coord_encoder, feat, c->coord_feat_dim, out, m->cfg.text.dim, TY_ACT_NONE, err);
    free(feat);
    return s;
}

ty_status md_region_encode_size(md_model *m, float w, float h, float *out, ty_err *err) {
    const md_region_config *c = &m->cfg.region;
    if (!m->region.present) return ty_err_set(err, TY_E_UNSUPPORTED, "this model has no region head");
    float wh[2] = {w, h};
    float *feat = malloc((size_t)c->size_feat_dim * sizeof(float));
    if (!feat) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    ty_status s = fourier(m, m->region.size_features, wh, 2, feat, err);
    if (s == TY_OK)
        s = linear1(m, &m->region.size_encoder, feat, c->size_feat_dim, out, m->cfg.text.dim, TY_ACT_NONE, err);
    free(feat);
    return s;
}

static ty_status mlp_decode(md_model *m, const md_linear *fc1, const md_linear *fc2, int64_t out_dim,
                            const float *hidden, float *logits, ty_err *err) {
    const md_region_config *c = &m->cfg.region;
    float *mid = malloc((size_t)c->inner_dim * sizeof(float));
    if (!mid) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    ty_status s = linear1(m, fc1, hidden, m->cfg.text.dim, mid, c->inner_dim, TY_ACT_GELU_TANH, err);
    if (s == TY_OK) s = linear1(m, fc2, mid, c->inner_dim, logits, out_dim, TY_ACT_NONE, err);
    free(mid);
    return s;
}

// region.ln of one hidden row into out (dim).
static ty_status region_ln(md_model *m, const float *hidden, float *out, ty_err *err) {
    const ty_backend_ops *op = m->be->ops;
    int64_t d = m->cfg.text.dim;
    ty_tensor x, h;
    ty_status s = op->alloc(m->be, &x, TY_DTYPE_F32, 1, d, err);
    if (s != TY_OK) return s;
    if ((s = op->alloc(m->be, &h, TY_DTYPE_F32, 1, d, err)) == TY_OK) {
        op->write(m->be, x, hidden);
        op->layernorm(m->be, h, x, m->region.ln.w, m->region.ln.b, 1e-5f);
        op->read(m->be, h, out);
        op->release(m->be, &h);
    }
    op->release(m->be, &x);
    return s;
}

// Moondream 2: an MLP; Moondream 3: one Linear (kept in fc2); either after
// region.ln when the checkpoint has it.
static ty_status decode(md_model *m, const md_linear *fc1, const md_linear *fc2, int64_t out_dim,
                        const float *hidden, float *logits, ty_err *err) {
    if (!m->region.present) return ty_err_set(err, TY_E_UNSUPPORTED, "this model has no region head");
    int64_t d = m->cfg.text.dim;
    float *normed = NULL;
    if (m->region.has_ln) {
        if (!(normed = malloc((size_t)d * sizeof(float)))) return ty_err_set(err, TY_E_NOMEM, "out of memory");
        ty_status s = region_ln(m, hidden, normed, err);
        if (s != TY_OK) {
            free(normed);
            return s;
        }
        hidden = normed;
    }
    ty_status s = m->region.single ? linear1(m, fc2, hidden, d, logits, out_dim, TY_ACT_NONE, err)
                                   : mlp_decode(m, fc1, fc2, out_dim, hidden, logits, err);
    free(normed);
    return s;
}

ty_status md_region_decode_coord(md_model *m, const float *hidden, float *logits, ty_err *err) {
    return decode(m, &m->region.coord_fc1, &m->region.coord_fc2, m->cfg.region.coord_out_dim, hidden, logits, err);
}

ty_status md_region_decode_size(md_model *m, const float *hidden, float *logits, ty_err *err) {
    return decode(m, &m->region.size_fc1, &m->region.size_fc2, m->cfg.region.size_out_dim, hidden, logits, err);
}
