// The vision tower (moondream.md §5) over a batch of crops, then stitching,
// pooling and projection to the 729 image embeddings (§6).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "model/moondream.h"

// (n_crops * 729, 588) f32 patches: patch rows major, then columns; inside a
// patch channel-major, then row, then column. Normalised in f32 as the
// reference's float32 path: (v / 255 - 0.5) / 0.5.
static void patchify(const uint8_t *crops, int n_crops, float *out) {
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - 0.5f) / 0.5f;
    for (int n = 0; n < n_crops; n++) {
        const uint8_t *crop = crops + (size_t)n * 378 * 378 * 3;
        for (int py = 0; py < MD_GRID; py++)
            for (int px = 0; px < MD_GRID; px++) {
                float *p = out + ((size_t)n * MD_PATCHES + py * MD_GRID + px) * MD_PATCH_DIM;
                for (int c = 0; c < 3; c++)
                    for (int dy = 0; dy < 14; dy++)
                        for (int dx = 0; dx < 14; dx++)
                            p[c * 196 + dy * 14 + dx] = lut[crop[((py * 14 + dy) * 378 + px * 14 + dx) * 3 + c]];
            }
    }
}

// Local crop features (n_local, 27, 27, d) stitched into a (19*rows + 8, 19*cols + 8)
// grid (each tile drops 4 overlapping patches on inner edges), then adaptive-average
// pooled to 27x27 with PyTorch's windows [floor(i*H/27), ceil((i+1)*H/27)).
static void stitch_and_pool(const float *local, int rows, int cols, int d, float *pooled) {
    int H = 19 * rows + 8, W = 19 * cols + 8;
    float *grid = malloc((size_t)H * W * d * sizeof(float));
    if (!grid) abort();
    for (int ty = 0; ty < rows; ty++)
        for (int tx = 0; tx < cols; tx++) {
            const float *tile = local + (size_t)(ty * cols + tx) * MD_PATCHES * d;
            int r0 = ty == 0 ? 0 : 4, r1 = ty == rows - 1 ? 27 : 23;
            int c0 = tx == 0 ? 0 : 4, c1 = tx == cols - 1 ? 27 : 23;
            for (int r = r0; r < r1; r++)
                for (int c = c0; c < c1; c++)
                    memcpy(grid + ((size_t)(ty * 19 + r) * W + tx * 19 + c) * d, tile + (size_t)(r * 27 + c) * d,
                           (size_t)d * sizeof(float));
        }
    double *acc = malloc((size_t)d * sizeof(double));
    if (!acc) abort();
    for (int i = 0; i < MD_GRID; i++) {
        int ya = i * H / MD_GRID, yb = ((i + 1) * H + MD_GRID - 1) / MD_GRID;
        for (int j = 0; j < MD_GRID; j++) {
            int xa = j * W / MD_GRID, xb = ((j + 1) * W + MD_GRID - 1) / MD_GRID;
            memset(acc, 0, (size_t)d * sizeof(double));
            for (int y = ya; y < yb; y++)
                for (int x = xa; x < xb; x++) {
                    const float *g = grid + ((size_t)y * W + x) * d;
                    for (int k = 0; k < d; k++) acc[k] += g[k];
                }
            float *o = pooled + (size_t)(i * MD_GRID + j) * d;
            double count = (double)(yb - ya) * (xb - xa);
            for (int k = 0; k < d; k++) o[k] = (float)(acc[k] / count);
        }
    }
    free(acc);
    free(grid);
}

// Scratch tensors of one vision forward, released together.
typedef struct {
    ty_tensor x, h, a, qkv, o, f;
} vision_bufs;

static void release_all(ty_backend *be, ty_tensor *t, int n) {
    for (int i = 0; i < n; i++)
        if (t[i].data) be->ops->release(be, &t[i]);
}

static ty_status tower(md_model *m, const uint8_t *crops, int n_crops, float *features, ty_err *err) {
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
    float *patches = s == TY_OK ? malloc((size_t)n * MD_PATCH_DIM * sizeof(float)) : NULL;
    if (s == TY_OK && !patches) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    if (s != TY_OK) {
        release_all(be, t, 6);
        free(patches);
        return s;
    }
    patchify(crops, n_crops, patches);
    op->write(be, t[X], patches);
    free(patches);
    const md_vision_weights *w = &m->vision;
    op->matmul(be, t[H], t[X], w->patch_emb.w, &w->patch_emb.b, TY_ACT_NONE);
    op->add(be, t[H], t[H], w->pos_emb);  // (729, d) repeated for every crop
    for (int l = 0; l < c->enc_n_layers; l++) {
        const md_vision_block *b = &w->blocks[l];
        op->layernorm(be, t[A], t[H], b->ln1.w, b->ln1.b, 1e-5f);
        op->matmul(be, t[QKV], t[A], b->qkv.w, &b->qkv.b, TY_ACT_NONE);
        op->attention_dense(be, t[O], tensor_cols(t[QKV], 0, d), tensor_cols(t[QKV], d, d),
                            tensor_cols(t[QKV], 2 * d, d), heads, hd, 1.0f / sqrtf((float)hd), MD_PATCHES);
        op->matmul(be, t[A], t[O], b->proj.w, &b->proj.b, TY_ACT_NONE);
        op->add(be, t[H], t[H], t[A]);
        op->layernorm(be, t[A], t[H], b->ln2.w, b->ln2.b, 1e-5f);
        op->matmul(be, t[F], t[A], b->fc1.w, &b->fc1.b, TY_ACT_GELU_TANH);
        op->matmul(be, t[A], t[F], b->fc2.w, &b->fc2.b, TY_ACT_NONE);
        op->add(be, t[H], t[H], t[A]);
    }
    op->layernorm(be, t[A], t[H], w->post_ln.w, w->post_ln.b, 1e-5f);
    op->read(be, t[A], features);
    release_all(be, t, 6);
    return TY_OK;
}

static ty_status project(md_model *m, const float *features, int n_crops, int rows, int cols, float *embeds,
                         ty_err *err) {
    ty_backend *be = m->be;
    const ty_backend_ops *op = be->ops;
    int d = m->cfg.vision.enc_dim;
    float *joined = malloc((size_t)MD_PATCHES * 2 * d * sizeof(float));  // (729, 2d): [global ; pooled]
    float *pooled = malloc((size_t)MD_PATCHES * d * sizeof(float));
    if (!joined || !pooled) {
        free(joined);
        free(pooled);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    if (n_crops == 1)  // no local tiles: the global crop stands in for them
        memcpy(pooled, features, (size_t)MD_PATCHES * d * sizeof(float));
    else
        stitch_and_pool(features + (size_t)MD_PATCHES * d, rows, cols, d, pooled);
    for (int p = 0; p < MD_PATCHES; p++) {
        memcpy(joined + (size_t)p * 2 * d, features + (size_t)p * d, (size_t)d * sizeof(float));
        memcpy(joined + (size_t)p * 2 * d + d, pooled + (size_t)p * d, (size_t)d * sizeof(float));
    }
    free(pooled);
    ty_tensor t[3] = {{0}};
    const md_vision_config *c = &m->cfg.vision;
    ty_status s = op->alloc(be, &t[0], TY_DTYPE_F32, MD_PATCHES, 2 * d, err);
    if (s == TY_OK) s = op->alloc(be, &t[1], TY_DTYPE_F32, MD_PATCHES, c->proj_inner_dim, err);
    if (s == TY_OK) s = op->alloc(be, &t[2], TY_DTYPE_F32, MD_PATCHES, c->proj_out_dim, err);
    if (s == TY_OK) {
        op->write(be, t[0], joined);
        op->matmul(be, t[1], t[0], m->vision.proj_fc1.w, &m->vision.proj_fc1.b, TY_ACT_GELU_TANH);
        op->matmul(be, t[2], t[1], m->vision.proj_fc2.w, &m->vision.proj_fc2.b, TY_ACT_NONE);
        op->read(be, t[2], embeds);
    }
    release_all(be, t, 3);
    free(joined);
    return s;
}

// A 1x1 tiling's only local crop is pixel-identical to the global crop
// (moondream.md §4.6): the tower runs once and its features are copied.
static int tower_crops(const md_vision_image *im) {
    int same = im->n_crops == 2 && im->rows == 1 && im->cols == 1 &&
               !memcmp(im->crops, im->crops + (size_t)378 * 378 * 3, (size_t)378 * 378 * 3);
    return same ? 1 : im->n_crops;
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
    size_t crop_bytes = (size_t)378 * 378 * 3, crop_feats = (size_t)MD_PATCHES * d;
    ty_status s = TY_OK;
    for (int i0 = 0; i0 < n && s == TY_OK;) {
        // The images of this forward: as many as fit TOWER_MAX_CROPS (at least one).
        int i1 = i0, total = 0;
        while (i1 < n && (i1 == i0 || total + tower_crops(&imgs[i1]) <= TOWER_MAX_CROPS)) total += tower_crops(&imgs[i1++]);
        uint8_t *pix = malloc(crop_bytes * (size_t)total);
        float *feat = malloc(crop_feats * sizeof(float) * (size_t)total);
        if (!pix || !feat) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
        for (int i = i0, at = 0; s == TY_OK && i < i1; at += tower_crops(&imgs[i]), i++)
            memcpy(pix + crop_bytes * (size_t)at, imgs[i].crops, crop_bytes * (size_t)tower_crops(&imgs[i]));
        if (s == TY_OK) s = tower(m, pix, total, feat, err);
        free(pix);
        for (int i = i0, at = 0; s == TY_OK && i < i1; at += tower_crops(&imgs[i]), i++) {
            const md_vision_image *im = &imgs[i];
            float *f = features && features[i] ? features[i] : malloc(crop_feats * sizeof(float) * (size_t)im->n_crops);
            if (!f) {
                s = ty_err_set(err, TY_E_NOMEM, "out of memory");
                break;
            }
            memcpy(f, feat + crop_feats * (size_t)at, crop_feats * sizeof(float) * (size_t)tower_crops(im));
            if (tower_crops(im) != im->n_crops) memcpy(f + crop_feats, f, crop_feats * sizeof(float));
            if (embeds && embeds[i]) s = project(m, f, im->n_crops, im->rows, im->cols, embeds[i], err);
            if (f != (features ? features[i] : NULL)) free(f);
        }
        free(feat);
        i0 = i1;
    }
    return s;
}

ty_status md_vision_encode(md_model *m, const uint8_t *crops, int n_crops, int rows, int cols, float *features,
                           float *embeds, ty_err *err) {
    md_vision_image im = {crops, n_crops, rows, cols};
    return md_vision_encode_batch(m, 1, &im, &features, &embeds, err);
}
