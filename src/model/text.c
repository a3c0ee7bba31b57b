// The text decoder (moondream.md §7): Phi-style blocks with parallel
// attention and MLP, partial half-split RoPE, a paged KV cache; and the LM
// head. Moondream 3 blocks add tau attention and MoE MLPs (§8; tau.c, moe.c).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/text_ops.h"

ty_status md_kv_cache_init(md_model *m, md_kv_cache *kv, int n_pages, int page_size, ty_err *err) {
    memset(kv, 0, sizeof *kv);
    const md_text_config *c = &m->cfg.text;
    if (n_pages < 1 || page_size < 1)
        return ty_err_set(err, TY_E_ARG, "kv cache: %d pages of %d positions", n_pages, page_size);
    int64_t width = (int64_t)c->n_kv_heads * (c->dim / c->n_heads);
    kv->layers = calloc((size_t)c->n_layers, sizeof *kv->layers);
    if (!kv->layers) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    kv->n_layers = c->n_layers;
    kv->n_pages = n_pages;
    kv->page_size = page_size;
    for (int l = 0; l < c->n_layers; l++) {
        ty_kv_layer *L = &kv->layers[l];
        L->page_size = page_size;
        ty_status s = m->be->ops->alloc(m->be, &L->k, TY_DTYPE_F32, (int64_t)n_pages * page_size, width, err);
        if (s == TY_OK) s = m->be->ops->alloc(m->be, &L->v, TY_DTYPE_F32, (int64_t)n_pages * page_size, width, err);
        if (s != TY_OK) {
            md_kv_cache_free(m, kv);
            return s;
        }
    }
    return TY_OK;
}

void md_kv_cache_free(md_model *m, md_kv_cache *kv) {
    for (int l = 0; l < kv->n_layers && kv->layers; l++) {
        if (kv->layers[l].k.data) m->be->ops->release(m->be, &kv->layers[l].k);
        if (kv->layers[l].v.data) m->be->ops->release(m->be, &kv->layers[l].v);
    }
    free(kv->layers);
    memset(kv, 0, sizeof *kv);
}

enum { X, L, QKV, O, A, F, M, N_BUFS };

ty_status md_text_forward(md_model *m, md_kv_cache *kv, const md_text_step *step, ty_err *err) {
    ty_backend *be = m->be;
    const ty_backend_ops *op = be->ops;
    const md_text_config *c = &m->cfg.text;
    const ty_batch *b = step->batch;
    int64_t n = b->n_rows, d = c->dim, hd = d / c->n_heads, kvw = (int64_t)c->n_kv_heads * hd;
    if (n < 1) return ty_err_set(err, TY_E_ARG, "text: empty batch");
    for (int64_t r = 0; r < n; r++)
        if (step->ids[r] >= c->vocab_size)
            return ty_err_set(err, TY_E_ARG, "text: token id %d outside the vocabulary of %d", step->ids[r],
                              c->vocab_size);
    ty_tensor t[N_BUFS] = {{0}};
    int64_t widths[N_BUFS] = {d, d, d + 2 * kvw, d, d, c->ff_dim, d};
    ty_status s = TY_OK;
    for (int i = 0; i < N_BUFS && s == TY_OK; i++) s = op->alloc(be, &t[i], TY_DTYPE_F32, n, widths[i], err);
    if (s != TY_OK) goto done;

    // Inputs: token rows from wte, the rest from the given embeddings, one op
    // per run of consecutive rows of a kind (an image prefix is 730 rows of
    // embeddings: one copy, not 730; on a GPU each op is a launch or a copy).
    int64_t next_embed = 0;
    for (int64_t r = 0, end; r < n; r = end) {
        int token = step->ids[r] >= 0;
        for (end = r + 1; end < n && (step->ids[end] >= 0) == token; end++) {
        }
        if (token) {
            op->embed(be, tensor_rows(t[X], r, end - r), m->text.wte, &step->ids[r]);
        } else {
            op->write(be, tensor_rows(t[X], r, end - r), step->embeds + next_embed * d);
            next_embed += end - r;
        }
    }
    for (int l = 0; l < c->n_layers; l++) {
        const md_text_block *blk = &m->text.blocks[l];
        // Layers after the first get their LN from the previous layer's residual adds (below).
        if (l == 0) op->layernorm(be, t[L], t[X], blk->ln.w, blk->ln.b, 1e-5f);
        op->matmul(be, t[QKV], t[L], blk->qkv.w, &blk->qkv.b, TY_ACT_NONE);
        if (c->tau && (s = md_tau_apply(m, &blk->tau, t[QKV], b, err)) != TY_OK) goto done;
        ty_tensor q = tensor_cols(t[QKV], 0, d), k = tensor_cols(t[QKV], d, kvw), v = tensor_cols(t[QKV], d + kvw, kvw);
        // q's heads and k's are adjacent columns: one rope over both (one op, not two).
        op->rope(be, tensor_cols(t[QKV], 0, d + kvw), c->n_heads + c->n_kv_heads, (int)hd, MD_ROT_DIMS,
                 c->rope_theta, b);
        op->kv_write(be, &kv->layers[l], k, v, b);
        op->attention(be, t[O], q, &kv->layers[l], c->n_heads, c->n_kv_heads, (int)hd, 1.0f / sqrtf((float)hd), b);
        op->matmul(be, t[A], t[O], blk->proj.w, &blk->proj.b, TY_ACT_NONE);
        if (blk->is_moe) {
            if ((s = md_moe_forward(m, &blk->moe, t[M], t[L], err)) != TY_OK) goto done;
        } else {
            op->matmul(be, t[F], t[L], blk->fc1.w, &blk->fc1.b, TY_ACT_GELU_TANH);
            op->matmul(be, t[M], t[F], blk->fc2.w, &blk->fc2.b, TY_ACT_NONE);
        }
        // (x + attn) + mlp: two roundings, as the reference. Fused with the next layer's LN
        // (one op, not three: decode on a GPU is bound by launches); the last layer's sum
        // goes to post_ln only on the gathered output rows, so it stays two adds.
        if (l + 1 < c->n_layers) {
            const md_text_block *next = &m->text.blocks[l + 1];
            op->add_layernorm(be, t[L], t[X], t[A], &t[M], next->ln.w, next->ln.b, 1e-5f);
        } else {
            op->add(be, t[X], t[X], t[A]);
            op->add(be, t[X], t[X], t[M]);
        }
    }
    if (step->n_out > 0) {
        // Gather the rows that want outputs (embed's row gather, on the device),
        // then post_ln + lm_head on those only.
        ty_tensor h = tensor_rows(t[L], 0, step->n_out), hn = tensor_rows(t[A], 0, step->n_out);
        op->embed(be, h, t[X], step->out_rows);
        if (step->hidden) op->read(be, h, step->hidden);
        if (step->logits) {
            ty_tensor logits;
            s = op->alloc(be, &logits, TY_DTYPE_F32, step->n_out, c->vocab_size, err);
            if (s == TY_OK) {
                op->layernorm(be, hn, h, m->text.post_ln.w, m->text.post_ln.b, 1e-5f);
                op->matmul(be, logits, hn, m->text.lm_head.w, &m->text.lm_head.b, TY_ACT_NONE);
                op->read(be, logits, step->logits);
                op->release(be, &logits);
            }
        }
    }
done:
    for (int i = 0; i < N_BUFS; i++)
        if (t[i].data) op->release(be, &t[i]);
    return s;
}
