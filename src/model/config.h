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

// Mixture of experts (Moondream 3, moondream.md §8.2). After loading,
// num_experts == 0 means a dense decoder; otherwise layers start_layer.. are
// MoE. In a parsed config a field is set only where config.json gives it (see
// md_config.given): the checkpoint's tensors decide the rest when it loads.
typedef struct {
    int num_experts, start_layer, experts_per_token, expert_inner_dim;
} md_moe_config;

typedef struct {
    int dim, ff_dim, n_layers, vocab_size, max_context, n_heads, n_kv_heads, prefix_attn;
    float rope_theta;
    md_moe_config moe;
    int tau;            // tau attention (§8.1) in every layer; set at load from the tensors
    int tau_gelu_tanh;  // the tau features' GELU: exact erf (the preview's) unless "tau_gelu": "tanh" (§17 item 2)
} md_text_config;

typedef struct {
    int dim, coord_feat_dim, coord_out_dim, size_feat_dim, size_out_dim, inner_dim;
} md_region_config;

// Which settings config.json gave explicitly; the loader fills the others
// from the checkpoint (MoE shape) or from the architecture it detects.
enum {
    MD_GIVEN_ROPE_THETA = 1 << 0,
    MD_GIVEN_MAX_CONTEXT = 1 << 1,
    MD_GIVEN_NUM_EXPERTS = 1 << 2,
    MD_GIVEN_START_LAYER = 1 << 3,
    MD_GIVEN_TOP_K = 1 << 4,
    MD_GIVEN_EXPERT_INNER = 1 << 5,
};

typedef struct {
    int bos_id, eos_id, answer_id, thinking_id, coord_id, size_id, start_ground_points_id, end_ground_id;
    md_template caption[3];  // short, normal, long
    md_template query_prefix, query_suffix, detect_prefix, detect_suffix, point_prefix, point_suffix;
} md_tokenizer_config;

typedef enum { MD_ARCH_MD2, MD_ARCH_MD3 } md_arch;

// Moondream 3 defaults (moondream.md §2.2) for what neither config.json nor
// the tensors say: 8 experts per token, RoPE theta 1.5e6, 4096 positions
// (the preview code's context; the model card's 32K is a config setting).
enum { MD3_DEFAULT_TOP_K = 8, MD3_DEFAULT_MAX_CONTEXT = 4096, MD_MAX_CONTEXT_LIMIT = 1 << 20 };
#define MD3_ROPE_THETA 1500000.0f

typedef struct {
    md_arch arch;  // MD3 when config.json says "moondream3" (the loader also detects it from the tensors)
    unsigned given;  // MD_GIVEN_* flags
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
