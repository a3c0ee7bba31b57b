// Loading: config, checkpoint, every weight found by name, shape-checked
// against the config and bound to the backend in its stored dtype.
#include "model/moondream.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/loader.h"

typedef md_loader loader;

#define get md_load_get
#define get_linear md_load_linear
#define get_norm md_load_norm

static ty_status keep_owned(md_model *m, void *p, ty_err *err) {
    void **o = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *o);
    if (!o) {
        free(p);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    m->owned = o;
    m->owned[m->n_owned++] = p;
    return TY_OK;
}

// Binds tensor t as a (rows, cols) weight; misaligned data is copied first
// because kernels load whole elements.
static ty_status bind(loader *L, const safetensors_tensor *t, int64_t rows, int64_t cols, ty_tensor *out) {
    const void *data = t->data;
    if (!safetensors_is_aligned(t)) {
        void *copy = malloc(t->n_bytes ? t->n_bytes : 1);
        if (!copy) return ty_err_set(L->err, TY_E_NOMEM, "out of memory");
        memcpy(copy, t->data, t->n_bytes);
        ty_status s = keep_owned(L->m, copy, L->err);
        if (s != TY_OK) return s;
        data = copy;
    }
    return L->m->be->ops->weight(L->m->be, out, t->dtype, rows, cols, data, L->err);
}

ty_status md_load_get(loader *L, const char *name, int n_dims, int64_t d0, int64_t d1, int64_t d2, ty_tensor *out) {
    int64_t dims[3] = {d0, d1, d2};
    const safetensors_tensor *t;
    ty_status s = md_names_get(L->names, name, n_dims, dims, &t, NULL, L->err);
    if (s != TY_OK) return s;
    int64_t rows = n_dims == 1 ? 1 : n_dims == 2 ? d0 : d0 * d1;
    return bind(L, t, rows, n_dims == 1 ? d0 : n_dims == 2 ? d1 : d2, out);
}

ty_status md_load_linear(loader *L, const char *prefix, int64_t out_dim, int64_t in_dim, md_linear *lin) {
    char name[160];
    snprintf(name, sizeof name, "%s.weight", prefix);
    ty_status s = get(L, name, 2, out_dim, in_dim, 0, &lin->w);
    if (s != TY_OK) return s;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return get(L, name, 1, out_dim, 0, 0, &lin->b);
}

ty_status md_load_norm(loader *L, const char *prefix, int64_t dim, md_norm *n) {
    char name[160];
    snprintf(name, sizeof name, "%s.weight", prefix);
    ty_status s = get(L, name, 1, dim, 0, 0, &n->w);
    if (s != TY_OK) return s;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return get(L, name, 1, dim, 0, 0, &n->b);
}

const safetensors_tensor *md_load_find(loader *L, const char *fmt, ...) {
    char name[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return md_names_find(L->names, name, NULL);
}

static ty_status load_vision(loader *L) {
    const md_vision_config *c = &L->m->cfg.vision;
    md_vision_weights *v = &L->m->vision;
    int64_t d = c->enc_dim;
    TRY(get_linear(L, "vision.patch_emb", d, MD_PATCH_DIM, &v->patch_emb));
    TRY(get(L, "vision.pos_emb", 3, 1, MD_PATCHES, d, &v->pos_emb));
    v->blocks = calloc((size_t)c->enc_n_layers, sizeof *v->blocks);
    if (!v->blocks) return ty_err_set(L->err, TY_E_NOMEM, "out of memory");
    for (int i = 0; i < c->enc_n_layers; i++) {
        md_vision_block *b = &v->blocks[i];
        char p[96];
#define BLOCK(sub) (snprintf(p, sizeof p, "vision.blocks.%d." sub, i), p)
        TRY(get_norm(L, BLOCK("ln1"), d, &b->ln1));
        TRY(get_norm(L, BLOCK("ln2"), d, &b->ln2));
        TRY(get_linear(L, BLOCK("attn.qkv"), 3 * d, d, &b->qkv));
        TRY(get_linear(L, BLOCK("attn.proj"), d, d, &b->proj));
        TRY(get_linear(L, BLOCK("mlp.fc1"), c->enc_ff_dim, d, &b->fc1));
        TRY(get_linear(L, BLOCK("mlp.fc2"), d, c->enc_ff_dim, &b->fc2));
#undef BLOCK
    }
    TRY(get_norm(L, "vision.post_ln", d, &v->post_ln));
    TRY(get_linear(L, "vision.proj_mlp.fc1", c->proj_inner_dim, 2 * d, &v->proj_fc1));
    return get_linear(L, "vision.proj_mlp.fc2", c->proj_out_dim, c->proj_inner_dim, &v->proj_fc2);
}

// The Fourier feature tables: (1, F) / (2, F) in HF files, stored transposed
// under their legacy names.
static ty_status get_features(loader *L, const char *name, int64_t rows, int64_t cols, ty_tensor *out) {
    int legacy;
    const safetensors_tensor *t = md_names_find(L->names, name, &legacy);
    if (!t || !legacy) return get(L, name, 2, rows, cols, 0, out);
    int64_t dims[2] = {cols, rows};
    TRY(md_names_get(L->names, name, 2, dims, &t, &legacy, L->err));
    float *f = malloc((size_t)(rows * cols) * sizeof(float));
    if (!f) return ty_err_set(L->err, TY_E_NOMEM, "out of memory");
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) f[r * cols + c] = safetensors_get_f32(t, c * rows + r);
    TRY(keep_owned(L->m, f, L->err));
    return L->m->be->ops->weight(L->m->be, out, TY_DTYPE_F32, rows, cols, f, L->err);
}

// The region head, when the checkpoint has one (md3-tiny-like checkpoints
// have none): Fourier encoders, then MLP decoders (Moondream 2) or single
// Linear decoders (Moondream 3), after region.ln when that exists.
static ty_status load_region(loader *L) {
    const md_region_config *c = &L->m->cfg.region;
    md_region_weights *r = &L->m->region;
    int64_t d = L->m->cfg.text.dim;
    if (!md_names_any(L->names, "region.") && !md_names_any(L->names, "region_model.")) return TY_OK;
    if (c->coord_feat_dim % 2 || c->size_feat_dim % 2)
        return ty_err_set(L->err, TY_E_FORMAT, "config: region feature dims must be even");
    TRY(get_features(L, "region.coord_features", 1, c->coord_feat_dim / 2, &r->coord_features));
    TRY(get_features(L, "region.size_features", 2, c->size_feat_dim / 2, &r->size_features));
    TRY(get_linear(L, "region.coord_encoder", d, c->coord_feat_dim, &r->coord_encoder));
    TRY(get_linear(L, "region.size_encoder", d, c->size_feat_dim, &r->size_encoder));
    r->has_ln = md_load_find(L, "region.ln.weight") != NULL;
    r->single = md_load_find(L, "region.coord_decoder.weight") != NULL;
    if (r->has_ln) TRY(get_norm(L, "region.ln", d, &r->ln));
    if (r->single) {
        TRY(get_linear(L, "region.coord_decoder", c->coord_out_dim, d, &r->coord_fc2));
        TRY(get_linear(L, "region.size_decoder", c->size_out_dim, d, &r->size_fc2));
    } else {
        TRY(get_linear(L, "region.coord_decoder.fc1", c->inner_dim, d, &r->coord_fc1));
        TRY(get_linear(L, "region.coord_decoder.fc2", c->coord_out_dim, c->inner_dim, &r->coord_fc2));
        TRY(get_linear(L, "region.size_decoder.fc1", c->inner_dim, d, &r->size_fc1));
        TRY(get_linear(L, "region.size_decoder.fc2", c->size_out_dim, c->inner_dim, &r->size_fc2));
    }
    if (c->size_out_dim % 2) return ty_err_set(L->err, TY_E_FORMAT, "config: region.size_out_dim must be even");
    r->present = 1;
    return TY_OK;
}

// Binds every weight of m->st (the config in m->cfg) and, on failure, frees m.
static ty_status model_bind(md_model *m, md_model **out, ty_status s, ty_err *err) {
    md_names *names = NULL;
    if (s == TY_OK) s = md_names_init(&names, m->st, err);
    loader L = {m, names, err};
    if (s == TY_OK) s = load_vision(&L);
    if (s == TY_OK) s = md_load_text(&L);
    if (s == TY_OK) s = load_region(&L);
    md_names_free(names);
    if (s != TY_OK) {
        md_model_free(m);
        return s;
    }
    *out = m;
    return TY_OK;
}

ty_status md_model_init(md_model **out, const char *dir, ty_backend *be, ty_err *err) {
    *out = NULL;
    md_model *m = calloc(1, sizeof *m);
    if (!m) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    m->be = be;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat sb;
    ty_status s = TY_OK;
    if (stat(path, &sb) == 0)
        s = md_config_load(&m->cfg, path, err);
    else
        md_config_defaults(&m->cfg);
    if (s == TY_OK) s = safetensors_init(&m->st, dir, err);
    return model_bind(m, out, s, err);
}

ty_status md_model_init_memory(md_model **out, const md_config *cfg, const uint8_t *buf, size_t len, ty_backend *be,
                               ty_err *err) {
    *out = NULL;
    md_model *m = calloc(1, sizeof *m);
    if (!m) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    m->be = be;
    m->cfg = *cfg;
    return model_bind(m, out, safetensors_init_from_memory(&m->st, buf, len, err), err);
}

void md_model_free(md_model *m) {
    if (!m) return;
    free(m->vision.blocks);
    free(m->text.blocks);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    safetensors_free(m->st);
    free(m);
}
