// The vision tower (moondream.md §5) over a batch of crops, then stitching,
// pooling and projection to the 729 image embeddings (§6).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "model/moondream.h"

// The pooled local features as a weighted sum of feature rows (moondream.md
// §6): the local crops' (27, 27) patch grids stitched into a (19*rows + 8,
// 19*cols + 8) grid (each tile drops 4 overlapping patches on inner edges),
// then adaptive-average pooled to 27x27 with PyTorch's windows
// [floor(i*H/27), ceil((i+1)*H/27)). Output patch o averages the cells of its
// window: rows[o*k + t] is the feature row (tile * 729 + r * 27 + c, counted
// from the first local crop) of its t-th cell, w[o*k + t] = 1 / cells; windows
// smaller than k are padded with row 0 at weight 0. Returns k (0: no memory).
static int pool_windows(int rows, int cols, int32_t **out_rows, float **out_w) {
    int H = 19 * rows + 8, W = 19 * cols + 8, k = 0;
    for (int i = 0; i < MD_GRID; i++)
        for (int j = 0; j < MD_GRID; j++) {
            int ya = i * H / MD_GRID, yb = ((i + 1) * H + MD_GRID - 1) / MD_GRID;
            int xa = j * W / MD_GRID, xb = ((j + 1) * W + MD_GRID - 1) / MD_GRID;
            if ((yb - ya) * (xb - xa) > k) k = (yb - ya) * (xb - xa);
        }
    int32_t *idx = calloc((size_t)MD_PATCHES * k, sizeof(int32_t));
    float *w = calloc((size_t)MD_PATCHES * k, sizeof(float));
    if (!idx || !w) {
        free(idx);
        free(w);
        return 0;
    }
    for (int i = 0; i < MD_GRID; i++)
        for (int j = 0; j < MD_GRID; j++) {
            int ya = i * H / MD_GRID, yb = ((i + 1) * H + MD_GRID - 1) / MD_GRID;
            int xa = j * W / MD_GRID, xb = ((j + 1) * W + MD_GRID - 1) / MD_GRID, t = 0;
            float wt = 1.0f / (float)((yb - ya) * (xb - xa));
            int32_t *o = idx + (size_t)(i * MD_GRID + j) * k;
            float *ow = w + (size_t)(i * MD_GRID + j) * k;
            for (int y = ya; y < yb; y++)
                for (int x = xa; x < xb; x++, t++) {
                    // Grid cell (y, x) comes from the tile whose kept patches hold it.
                    int ty = y < 23 ? 0 : (y - 4) / 19, tx = x < 23 ? 0 : (x - 4) / 19;
                    if (ty > rows - 1) ty = rows - 1;
                    if (tx > cols - 1) tx = cols - 1;
                    o[t] = (ty * cols + tx) * MD_PATCHES + (y - ty * 19) * MD_GRID + (x - tx * 19);
                    ow[t] = wt;
                }
        }
    *out_rows = idx;
    *out_w = w;
    return k;
}

// Scratch tensors of one vision forward, released together.
typedef struct {
    ty_tensor x, h, a, qkv, o, f;
} vision_bufs;

static void release_all(ty_backend *be, ty_tensor *t, int n) {
    for (int i = 0; i < n; i++)
        if (t[i].data) be->ops->release(be, &t[i]);
}

// A 1x1 tiling's only local crop is pixel-identical to the global crop
// (moondream.md §4.6): the tower runs once and its features are copied.
static int tower_crops(const md_vision_image *im) {
    int same = im->n_crops == 2 && im->rows == 1 && im->cols == 1 &&
               !memcmp(im->crops, im->crops + (size_t)378 * 378 * 3, (size_t)378 * 378 * 3);
    return same ? 1 : im->n_crops;
}

// The tower over the tower_crops() crops of images [0, n_images), n_crops in
// all; *features (n_crops * 729, d) stays on the device for the caller to read,
// project and release.
static ty_status tower(md_model *m, const md_vision_image *imgs, int n_images, int n_crops, ty_tensor *features,
                       ty_err *err) {
    ty_backend *be = m->be;
    const ty_backend_ops *op = be->ops;
    const md_vision_config *c = &m->cfg.vision;
    int64_t n = (int64_t)n_crops * MD_PATCHES, d = c->enc_dim;
    int heads = c->enc_n_heads, hd = c->enc_dim / heads;
    ty_tensor t[6] = {{0}};
    enum { X, H, A, QKV, O, F };
    ty_status s = TY_OK;
    int64_t widths[6] = {MD_PATCH_DIM, d, d, 3 * d, d, c->enc_ff_dim};
    for (int i = 0; i < 6 && s == TY_OK; i++) s = op->alloc(be, &t[i], TY_DTYPE_F32, n, widths[i], err);
    if (s != TY_OK) {
        release_all(be, t, 6);
        return s;
    }
    // (n_crops * 729, 588) patches: patch rows major, then columns; inside a patch
    // channel-major, then row, then column. Normalised in f32 as the reference's
    // float32 path: (v / 255 - 0.5) / 0.5. Expanded from the bytes by the backend.
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - 0.5f) / 0.5f;
    for (int i = 0, at = 0; i < n_images; at += tower_crops(&imgs[i]), i++)
        op->patches(be, tensor_rows(t[X], (int64_t)at * MD_PATCHES, (int64_t)tower_crops(&imgs[i]) * MD_PATCHES),
                    imgs[i].crops, tower_crops(&imgs[i]), 378, 378, 3, 14, lut);
    const md_vision_weights *w = &m->vision;
    op->matmul(be, t[H], t[X], w->patch_emb.w, &w->patch_emb.b, TY_ACT_NONE);
    op->add(be, t[H], t[H], w->pos_emb);  // (729, d) repeated for every crop
    // Pre-LN blocks: every residual add is fused with the LayerNorm that reads its sum
    // (ln2, the next block's ln1, post_ln): one pass over the (n, d) rows, not two.
    const md_norm *ln0 = c->enc_n_layers > 0 ? &w->blocks[0].ln1 : &w->post_ln;
    op->layernorm(be, t[A], t[H], ln0->w, ln0->b, 1e-5f);
    for (int l = 0; l < c->enc_n_layers; l++) {
        const md_vision_block *b = &w->blocks[l];
        const md_norm *ln_next = l + 1 < c->enc_n_layers ? &w->blocks[l + 1].ln1 : &w->post_ln;
        op->matmul(be, t[QKV], t[A], b->qkv.w, &b->qkv.b, TY_ACT_NONE);
        op->attention_dense(be, t[O], tensor_cols(t[QKV], 0, d), tensor_cols(t[QKV], d, d),
                            tensor_cols(t[QKV], 2 * d, d), heads, hd, 1.0f / sqrtf((float)hd), MD_PATCHES);
        op->matmul(be, t[A], t[O], b->proj.w, &b->proj.b, TY_ACT_NONE);
        op->add_layernorm(be, t[A], t[H], t[A], NULL, b->ln2.w, b->ln2.b, 1e-5f);  // A: attn out, then LN2(h)
        op->matmul(be, t[F], t[A], b->fc1.w, &b->fc1.b, TY_ACT_GELU_TANH);
        op->matmul(be, t[A], t[F], b->fc2.w, &b->fc2.b, TY_ACT_NONE);
        op->add_layernorm(be, t[A], t[H], t[A], NULL, ln_next->w, ln_next->b, 1e-5f);
    }
    *features = t[A];
    t[A] = (ty_tensor){0};
    release_all(be, t, 6);
    return TY_OK;
}

// The 729 embeddings of one image from its tower features on the device:
// global (729, d) rows and local rows (rows * cols crops, or the global crop
// again for a 1x1 tiling) -> joined (729, 2d) = [global ; pooled local] -> the
// projection MLP. Only the embeddings come back to the host.
static ty_status project(md_model *m, ty_tensor global, ty_tensor local, int n_crops, int rows, int cols,
                         float *embeds, ty_err *err) {
    ty_backend *be = m->be;
    const ty_backend_ops *op = be->ops;
    const md_vision_config *c = &m->cfg.vision;
    int d = c->enc_dim;
    int32_t *ids = malloc((size_t)MD_PATCHES * sizeof(int32_t)), *pool_rows = NULL;
    float *pool_w = NULL;
    int k = n_crops == 1 ? 1 : pool_windows(rows, cols, &pool_rows, &pool_w);
    if (!ids || !k) {
        free(ids);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    for (int p = 0; p < MD_PATCHES; p++) ids[p] = p;
    ty_tensor t[3] = {{0}};
    ty_status s = op->alloc(be, &t[0], TY_DTYPE_F32, MD_PATCHES, 2 * d, err);
    if (s == TY_OK) s = op->alloc(be, &t[1], TY_DTYPE_F32, MD_PATCHES, c->proj_inner_dim, err);
    if (s == TY_OK) s = op->alloc(be, &t[2], TY_DTYPE_F32, MD_PATCHES, c->proj_out_dim, err);
    if (s == TY_OK) {
        op->embed(be, tensor_cols(t[0], 0, d), global, ids);
        if (n_crops == 1)  // no local tiles: the global crop stands in for them
            op->embed(be, tensor_cols(t[0], d, d), global, ids);
        else
            op->rows_weighted_sum(be, tensor_cols(t[0], d, d), local, pool_rows, pool_w, k);
        op->matmul(be, t[1], t[0], m->vision.proj_fc1.w, &m->vision.proj_fc1.b, TY_ACT_GELU_TANH);
        op->matmul(be, t[2], t[1], m->vision.proj_fc2.w, &m->vision.proj_fc2.b, TY_ACT_NONE);
        op->read(be, t[2], embeds);
    }
    release_all(be, t, 3);
    free(ids);
    free(pool_rows);
    free(pool_w);
    return s;
}

enum { TOWER_MAX_CROPS = 32 };  // crops per tower forward: bounds the activations (~14 MB per crop at real width)

ty_status md_vision_encode_batch(md_model *m, int n, const md_vision_image *imgs, float *const *features,
                                 float *const *embeds, ty_err *err) {
    for (int i = 0; i < n; i++) {
        const md_vision_image *im = &imgs[i];
        if (im->n_crops < 1 || im->n_crops > 1 + IMAGE_MAX_CROPS || (im->n_crops > 1 && im->n_crops != 1 + im->rows * im->cols))
            return ty_err_set(err, TY_E_ARG, "vision: %d crops for a %dx%d tiling", im->n_crops, im->rows, im->cols);
    }
    int d = m->cfg.vision.enc_dim;
    size_t crop_feats = (size_t)MD_PATCHES * d;
    ty_status s = TY_OK;
    for (int i0 = 0; i0 < n && s == TY_OK;) {
        // The images of this forward: as many as fit TOWER_MAX_CROPS (at least one).
        int i1 = i0, total = 0;
        while (i1 < n && (i1 == i0 || total + tower_crops(&imgs[i1]) <= TOWER_MAX_CROPS)) total += tower_crops(&imgs[i1++]);
        ty_tensor feat = {0};  // (total * 729, d) on the device
        s = tower(m, imgs + i0, i1 - i0, total, &feat, err);
        for (int i = i0, at = 0; s == TY_OK && i < i1; at += tower_crops(&imgs[i]), i++) {
            const md_vision_image *im = &imgs[i];
            ty_tensor global = tensor_rows(feat, (int64_t)at * MD_PATCHES, MD_PATCHES);
            // A deduplicated 1x1 tiling's local crop is its global crop.
            ty_tensor local = tower_crops(im) == im->n_crops
                                  ? tensor_rows(feat, (int64_t)(at + 1) * MD_PATCHES, (int64_t)(im->n_crops - 1) * MD_PATCHES)
                                  : global;
            if (features && features[i]) {
                m->be->ops->read(m->be, tensor_rows(feat, (int64_t)at * MD_PATCHES, (int64_t)tower_crops(im) * MD_PATCHES),
                                 features[i]);
                if (tower_crops(im) != im->n_crops) memcpy(features[i] + crop_feats, features[i], crop_feats * sizeof(float));
            }
            if (embeds && embeds[i]) s = project(m, global, local, im->n_crops, im->rows, im->cols, embeds[i], err);
        }
        if (feat.data) m->be->ops->release(m->be, &feat);
        i0 = i1;
    }
    return s;
}

ty_status md_vision_encode(md_model *m, const uint8_t *crops, int n_crops, int rows, int cols, float *features,
                           float *embeds, ty_err *err) {
    md_vision_image im = {crops, n_crops, rows, cols};
    return md_vision_encode_batch(m, 1, &im, &features, &embeds, err);
}
