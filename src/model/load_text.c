// Loading the text decoder: Moondream 2's dense blocks, or Moondream 3's
// blocks with tau attention and, from moe.start_layer on, mixture-of-experts
// MLPs (moondream.md §3.3, §3.4, §8). What the checkpoint holds decides the
// architecture; config.json fields, where given, override and are checked.
#include <stdio.h>
#include <stdlib.h>

#include "model/loader.h"

#define ROUTER "text.blocks.%d.mlp.router.weight"

// Settles the MoE shape: the config's fields where given, else the first
// layer with a router (start), its row count (experts) and the expert fc2's
// last dim (inner width); top-k has no tensor and defaults to Moondream 3's 8.
static ty_status settle_moe(md_loader *L) {
    md_config *cfg = &L->m->cfg;
    md_moe_config *moe = &cfg->text.moe;
    unsigned g = cfg->given;
    int first = -1;
    for (int i = 0; i < cfg->text.n_layers && first < 0; i++)
        if (md_load_find(L, ROUTER, i)) first = i;
    int asked = (g & (MD_GIVEN_NUM_EXPERTS | MD_GIVEN_START_LAYER | MD_GIVEN_TOP_K | MD_GIVEN_EXPERT_INNER)) != 0;
    if (first < 0 && !asked) {
        *moe = (md_moe_config){0};
        return TY_OK;
    }
    if (!(g & MD_GIVEN_START_LAYER)) {
        if (first < 0)
            return ty_err_set(L->err, TY_E_FORMAT, "checkpoint: config.json sets text.moe but no layer has a MoE "
                              "router ('text.blocks.<i>.mlp.router.weight')");
        moe->start_layer = first;
    }
    const safetensors_tensor *router = md_load_find(L, ROUTER, moe->start_layer);
    if (!router)
        return ty_err_set(L->err, TY_E_FORMAT, "checkpoint: missing MoE router 'text.blocks.%d.mlp.router.weight' "
                          "(MoE starts at layer %d)", moe->start_layer, moe->start_layer);
    if (first < moe->start_layer)
        return ty_err_set(L->err, TY_E_FORMAT, "checkpoint: layer %d has a MoE router but MoE starts at layer %d",
                          first, moe->start_layer);
    if (!(g & MD_GIVEN_NUM_EXPERTS)) moe->num_experts = router->n_dims == 2 ? (int)router->shape[0] : 0;
    if (!(g & MD_GIVEN_EXPERT_INNER)) {
        const safetensors_tensor *fc2 = md_load_find(L, "text.blocks.%d.mlp.fc2.weight", moe->start_layer);
        moe->expert_inner_dim = fc2 && fc2->n_dims == 3 ? (int)fc2->shape[2] : 0;
    }
    if (!(g & MD_GIVEN_TOP_K)) moe->experts_per_token = MD3_DEFAULT_TOP_K;
    if (moe->num_experts < 1 || moe->expert_inner_dim < 1)
        return ty_err_set(L->err, TY_E_FORMAT, "checkpoint: layer %d's MoE router or experts are not [experts, "
                          "...] tensors", moe->start_layer);
    if (moe->experts_per_token > moe->num_experts)
        return ty_err_set(L->err, TY_E_FORMAT, "checkpoint: text.moe.experts_per_token %d%s is larger than the %d "
                          "experts", moe->experts_per_token, g & MD_GIVEN_TOP_K ? "" : " (the default)",
                          moe->num_experts);
    return TY_OK;
}

// Moondream 3 is told by config.json or by its tau weights / routers; it
// brings tau in every layer, RoPE theta 1.5e6 and a longer default context.
static ty_status settle_arch(md_loader *L) {
    md_config *cfg = &L->m->cfg;
    int tau = md_load_find(L, "text.blocks.0.attn.tau.wq") || md_load_find(L, "text.blocks.0.attn.tau.wqwv");
    TRY(settle_moe(L));
    if (tau || cfg->text.moe.num_experts) cfg->arch = MD_ARCH_MD3;
    if (cfg->arch != MD_ARCH_MD3) return TY_OK;
    cfg->text.tau = 1;  // every MD3 layer has it: a missing tensor is reported by name
    if (!(cfg->given & MD_GIVEN_ROPE_THETA)) cfg->text.rope_theta = MD3_ROPE_THETA;
    if (!(cfg->given & MD_GIVEN_MAX_CONTEXT)) cfg->text.max_context = MD3_DEFAULT_MAX_CONTEXT;
    return TY_OK;
}

static ty_status load_tau(md_loader *L, int layer, int64_t qkv_width, md_tau *tau) {
    int64_t h = L->m->cfg.text.n_heads;
    char name[96];
    snprintf(name, sizeof name, "text.blocks.%d.attn.tau.wqwv", layer);
    if (md_load_find(L, "%s", name)) {  // fused (Kestrel): wq rows, then wv rows
        TRY(md_load_get(L, name, 2, 2 * h, qkv_width, 0, &tau->wqwv));
        tau->wq = tensor_rows(tau->wqwv, 0, h);
        tau->wv = tensor_rows(tau->wqwv, h, h);
    } else {
        snprintf(name, sizeof name, "text.blocks.%d.attn.tau.wq", layer);
        TRY(md_load_get(L, name, 2, h, qkv_width, 0, &tau->wq));
        snprintf(name, sizeof name, "text.blocks.%d.attn.tau.wv", layer);
        TRY(md_load_get(L, name, 2, h, qkv_width, 0, &tau->wv));
        // HF files store tensors in name order, so wv usually follows wq directly: one (2h, width) view.
        if (tau->wq.dtype == tau->wv.dtype &&
            (char *)tau->wq.data + (size_t)(h * qkv_width) * dtype_size(tau->wq.dtype) == (char *)tau->wv.data) {
            tau->wqwv = tau->wq;
            tau->wqwv.rows = 2 * h;
        }
    }
    snprintf(name, sizeof name, "text.blocks.%d.attn.tau.alpha", layer);
    return md_load_get(L, name, 1, h, 0, 0, &tau->alpha);
}

static ty_status load_moe(md_loader *L, int layer, md_moe *moe) {
    const md_moe_config *c = &L->m->cfg.text.moe;
    int64_t d = L->m->cfg.text.dim, e = c->num_experts, inner = c->expert_inner_dim;
    char name[96];
    snprintf(name, sizeof name, "text.blocks.%d.mlp.router", layer);
    if (!md_load_find(L, "%s.weight", name))
        return ty_err_set(L->err, TY_E_FORMAT, "checkpoint: missing MoE router '%s.weight' (MoE starts at layer %d)",
                          name, c->start_layer);
    TRY(md_load_linear(L, name, e, d, &moe->router));
    snprintf(name, sizeof name, "text.blocks.%d.mlp.fc1.weight", layer);
    TRY(md_load_get(L, name, 3, e, 2 * inner, d, &moe->fc1));
    snprintf(name, sizeof name, "text.blocks.%d.mlp.fc2.weight", layer);
    return md_load_get(L, name, 3, e, d, inner, &moe->fc2);
}

ty_status md_load_text(md_loader *L) {
    const md_text_config *c = &L->m->cfg.text;
    md_text_weights *t = &L->m->text;
    int64_t d = c->dim, kv = (int64_t)c->n_kv_heads * (c->dim / c->n_heads);
    if (L->m->cfg.vision.proj_out_dim != c->dim)
        return ty_err_set(L->err, TY_E_FORMAT, "config: vision.proj_out_dim %d differs from text.dim %d",
                          L->m->cfg.vision.proj_out_dim, c->dim);
    TRY(settle_arch(L));
    if (c->tau && c->n_kv_heads != c->n_heads)
        return ty_err_set(L->err, TY_E_UNSUPPORTED, "config: tau attention needs n_kv_heads == n_heads (%d, %d)",
                          c->n_kv_heads, c->n_heads);
    TRY(md_load_get(L, "text.wte", 2, c->vocab_size, d, 0, &t->wte));
    t->blocks = calloc((size_t)c->n_layers, sizeof *t->blocks);
    if (!t->blocks) return ty_err_set(L->err, TY_E_NOMEM, "out of memory");
    for (int i = 0; i < c->n_layers; i++) {
        md_text_block *b = &t->blocks[i];
        char p[96];
#define BLOCK(sub) (snprintf(p, sizeof p, "text.blocks.%d." sub, i), p)
        TRY(md_load_norm(L, BLOCK("ln"), d, &b->ln));
        TRY(md_load_linear(L, BLOCK("attn.qkv"), d + 2 * kv, d, &b->qkv));
        TRY(md_load_linear(L, BLOCK("attn.proj"), d, d, &b->proj));
        if (c->tau) TRY(load_tau(L, i, d + 2 * kv, &b->tau));
        b->is_moe = c->moe.num_experts && i >= c->moe.start_layer;
        if (b->is_moe) {
            TRY(load_moe(L, i, &b->moe));
        } else {
            if (md_load_find(L, ROUTER, i))
                return ty_err_set(L->err, TY_E_FORMAT, "checkpoint: layer %d has a MoE router but is a dense layer "
                                  "(MoE starts at layer %d)", i, c->moe.num_experts ? c->moe.start_layer : c->n_layers);
            TRY(md_load_linear(L, BLOCK("mlp.fc1"), c->ff_dim, d, &b->fc1));
            TRY(md_load_linear(L, BLOCK("mlp.fc2"), d, c->ff_dim, &b->fc2));
        }
#undef BLOCK
    }
    TRY(md_load_norm(L, "text.post_ln", d, &t->post_ln));
    return md_load_linear(L, "text.lm_head", c->vocab_size, d, &t->lm_head);
}
