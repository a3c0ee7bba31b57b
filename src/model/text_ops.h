// The Moondream 3 parts of a text block (tau.c, moe.c), called by text.c's
// md_text_forward on the same flat batch of rows. Not part of the model API.
#ifndef TYCHO_MODEL_TEXT_OPS_H
#define TYCHO_MODEL_TEXT_OPS_H

#include "model/moondream.h"

// Tau attention (moondream.md §8.1) on the fused qkv rows (n, q + k + v), in
// place, before RoPE: q and v of head h scaled by tanh(GELU(qkv) · w_h) plus
// the positional 1 + (sigmoid(alpha_h · ln(pos + 1)) - 0.5).
ty_status md_tau_apply(md_model *m, const md_tau *tau, ty_tensor qkv, const ty_batch *batch, ty_err *err);

// The MoE MLP (§8.2) of x (n, dim) into y (n, dim).
ty_status md_moe_forward(md_model *m, const md_moe *moe, ty_tensor y, ty_tensor x, ty_err *err);

#endif
