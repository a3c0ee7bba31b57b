// A loaded Moondream model: config, weights bound to a backend, and the
// forward passes the engine drives (vision tower, text decoder, region head).
// The model knows no requests or scheduler: it runs batches it is given.
#ifndef TYCHO_MODEL_MOONDREAM_H
#define TYCHO_MODEL_MOONDREAM_H

#include <stdint.h>

#include "backend/backend.h"
#include "io/safetensors.h"
#include "model/config.h"

typedef struct {
    ty_tensor w, b;  // w (out, in); b (1, out), absent (data NULL) when the layer has no bias
} md_linear;

typedef struct {
    ty_tensor w, b;  // (1, dim) each
} md_norm;

typedef struct {
    md_norm ln1, ln2;
    md_linear qkv, proj, fc1, fc2;
} md_vision_block;

typedef struct {
    md_linear patch_emb;  // (enc_dim, 3*14*14)
    ty_tensor pos_emb;    // (729, enc_dim)
    md_vision_block *blocks;
    md_norm post_ln;
    md_linear proj_fc1, proj_fc2;  // (proj_inner, 2*enc_dim), (proj_out, proj_inner)
} md_vision_weights;

// Tau attention (§8.1): per-head token and position scales of q and v.
typedef struct {
    ty_tensor wq, wv;  // (n_heads, qkv width) each
    ty_tensor wqwv;    // (2 n_heads, qkv width): wq then wv when they lie back to back (fused, or adjacent
                       // in the file as HF writes them), so one matmul does both; data NULL otherwise
    ty_tensor alpha;   // (1, n_heads)
} md_tau;

// A MoE MLP (§8.2): the router and every expert's weights, bound in place.
typedef struct {
    md_linear router;  // (n_experts, dim) + bias
    ty_tensor fc1;     // (n_experts * 2 * inner, dim): expert e's rows e*2*inner.., "h" then "g" halves
    ty_tensor fc2;     // (n_experts * dim, inner): expert e's rows e*dim..
} md_moe;

typedef struct {
    md_norm ln;
    md_linear qkv, proj;
    md_tau tau;       // data NULL without tau attention
    md_linear fc1, fc2;  // the dense MLP (layers before moe.start_layer)
    md_moe moe;       // layers from moe.start_layer on
    int is_moe;
} md_text_block;

typedef struct {
    ty_tensor wte;  // (vocab, dim)
    md_text_block *blocks;
    md_norm post_ln;
    md_linear lm_head;
} md_text_weights;

// The region head. Moondream 2 decodes with MLPs (fc1, GELU, fc2); Moondream
// 3 with one Linear each (region.coord_decoder.weight), kept in coord_fc2 /
// size_fc2 (coord_fc1 / size_fc1 unused), after region.ln when the
// checkpoint has it (moondream.md §17 item 3: LN iff its tensors exist).
typedef struct {
    int present;               // a checkpoint without region tensors has no region head
    int single;                // one Linear per decoder (Moondream 3)
    int has_ln;                // region.ln before the decoders
    ty_tensor coord_features;  // (1, coord_feat_dim / 2)
    ty_tensor size_features;   // (2, size_feat_dim / 2)
    md_norm ln;
    md_linear coord_encoder, coord_fc1, coord_fc2;
    md_linear size_encoder, size_fc1, size_fc2;
} md_region_weights;

typedef struct md_model {
    md_config cfg;
    ty_backend *be;
    safetensors *st;
    md_vision_weights vision;
    md_text_weights text;
    md_region_weights region;
    void **owned;  // host copies made for misaligned or transposed tensors
    int n_owned;
} md_model;

enum {
    MD_GRID = 27,                     // patches per crop side: 378 / 14
    MD_PATCHES = MD_GRID * MD_GRID,   // 729 image tokens
    MD_PATCH_DIM = 3 * 14 * 14,       // 588 values per patch
    MD_ROT_DIMS = 32,                 // rotary dims of every text head
};

// Loads dir/config.json (optional: defaults are the real Moondream 2) and the
// checkpoint in dir (model.safetensors or shards) onto the backend. The
// architecture comes from the tensors: tau weights make it Moondream 3, a
// router makes that layer and every later one MoE; config.json fields
// override, and every tensor must then agree with them.
ty_status md_model_init(md_model **out, const char *dir, ty_backend *be, ty_err *err);
// The same from a whole single-file safetensors image in memory (a random
// checkpoint, src/model/random_weights.h) and a config (the loader settles it
// against the tensors as it does config.json). buf is used in place: it must
// outlive the model.
ty_status md_model_init_memory(md_model **out, const md_config *cfg, const uint8_t *buf, size_t len, ty_backend *be,
                               ty_err *err);
void md_model_free(md_model *m);

// Vision tower over n_crops crops (n_crops, 378, 378, 3) uint8 RGB, crop 0
// global, then rows x cols local tiles. out: (n_crops * 729, enc_dim) f32 host,
// may be NULL. embeds: (729, text dim) image embeddings, host f32.
ty_status md_vision_encode(md_model *m, const uint8_t *crops, int n_crops, int rows, int cols, float *features,
                           float *embeds, ty_err *err);

// Several images in one tower forward (crops of all of them batched; results
// are bitwise those of one image at a time). features[i] / embeds[i] as
// above for image i; either array (or an entry) may be NULL.
typedef struct {
    const uint8_t *crops;  // (n_crops, 378, 378, 3)
    int n_crops, rows, cols;
} md_vision_image;

ty_status md_vision_encode_batch(md_model *m, int n, const md_vision_image *imgs, float *const *features,
                                 float *const *embeds, ty_err *err);

// ---- text decoder --------------------------------------------------------

// The KV cache of every layer, in pages the engine hands out by index.
typedef struct {
    ty_kv_layer *layers;  // (n_layers)
    int n_layers, n_pages, page_size;
} md_kv_cache;

ty_status md_kv_cache_init(md_model *m, md_kv_cache *kv, int n_pages, int page_size, ty_err *err);
void md_kv_cache_free(md_model *m, md_kv_cache *kv);

// One forward of the text decoder over a flat batch of rows (any mix of
// sequences, prefill and decode). Row r's input is wte[ids[r]] when
// ids[r] >= 0, else the next unused row of `embeds` (host f32, (n, dim)).
// For the n_out rows listed in out_rows, writes logits (n_out, vocab) and the
// raw last-layer hidden states (n_out, dim) to host memory (either may be NULL).
typedef struct {
    const ty_batch *batch;
    const int32_t *ids;     // (batch->n_rows)
    const float *embeds;    // (rows with id < 0, dim)
    int n_out;
    const int32_t *out_rows;  // (n_out)
    float *logits;            // (n_out, vocab) or NULL
    float *hidden;            // (n_out, dim) or NULL
} md_text_step;

ty_status md_text_forward(md_model *m, md_kv_cache *kv, const md_text_step *step, ty_err *err);

// ---- region head ---------------------------------------------------------
// (Only on a model whose region.present is set.)

// Embedding of a coordinate value in [0, 1]: (dim) host f32.
ty_status md_region_encode_coord(md_model *m, float x, float *out, ty_err *err);
// Embedding of a (width, height) size: (dim) host f32.
ty_status md_region_encode_size(md_model *m, float w, float h, float *out, ty_err *err);
// Coordinate logits (coord_out_dim) from a raw hidden state (dim).
ty_status md_region_decode_coord(md_model *m, const float *hidden, float *logits, ty_err *err);
// Size logits (2, size_out_dim / 2): width bins then height bins.
ty_status md_region_decode_size(md_model *m, const float *hidden, float *logits, ty_err *err);

#endif
