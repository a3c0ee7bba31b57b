// Moondream hyper-parameters: config.json (bare or under "config") over the
// defaults of the real Moondream 2 (2025-06-21), whose HF wrapper always runs
// on those defaults. Everything a width or count can be is read from here;
// only what the architecture fixes (378-px crops, 14-px patches, the 27x27
// grid, rotary over 32 dims) is a constant.
#ifndef TYCHO_MODEL_CONFIG_H
#define TYCHO_MODEL_CONFIG_H

#include <stddef.h>

#include "core/err.h"

#define MD_MAX_TEMPLATE 16

typedef struct {
    int n;
    int ids[MD_MAX_TEMPLATE];
} md_template;

typedef struct {
    int enc_dim, enc_patch_size, enc_n_layers, enc_ff_dim, enc_n_heads;
    int proj_out_dim, proj_inner_dim, crop_size, in_channels, max_crops, overlap_margin;
} md_vision_config;

typedef struct {
    int num_experts, start_layer, experts_per_token, expert_inner_dim;  // num_experts == 0: dense
} md_moe_config;

typedef struct {
    int dim, ff_dim, n_layers, vocab_size, max_context, n_heads, n_kv_heads, prefix_attn;
    float rope_theta;
    md_moe_config moe;
} md_text_config;

typedef struct {
    int dim, coord_feat_dim, coord_out_dim, size_feat_dim, size_out_dim, inner_dim;
} md_region_config;

typedef struct {
    int bos_id, eos_id, answer_id, thinking_id, coord_id, size_id, start_ground_points_id, end_ground_id;
    md_template caption[3];  // short, normal, long
    md_template query_prefix, query_suffix, detect_prefix, detect_suffix, point_prefix, point_suffix;
} md_tokenizer_config;

typedef enum { MD_ARCH_MD2, MD_ARCH_MD3 } md_arch;

typedef struct {
    md_arch arch;
    md_vision_config vision;
    md_text_config text;
    md_region_config region;
    md_tokenizer_config tok;
} md_config;

// The real Moondream 2 (2025-06-21) values.
void md_config_defaults(md_config *c);
// Parses config.json text over the defaults; unknown keys are ignored, known
// keys of the wrong type or out of range are errors.
ty_status md_config_parse(md_config *c, const char *json, size_t len, ty_err *err);
ty_status md_config_load(md_config *c, const char *path, ty_err *err);

#endif
