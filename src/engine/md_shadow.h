// A debugging check of a device's text forward against the CPU backend
// (TYCHO_DEBUG_SHADOW=<model dir>): md_runner runs every forward step a
// second time on a CPU copy of the model with its own KV cache of the same
// pages, and compares the step's outputs (logits, hidden rows) and the KV rows
// the step wrote. On the first relative error above TYCHO_DEBUG_SHADOW_TOL
// (default 1e-3; a GPU's normal error is ~1e-5) it prints the step (rows,
// sequences, positions, prefix, kv_len, page tables, output rows), where the
// first wrong values are (KV of every visible position of the batch's
// sequences, layer by layer), and aborts. The vision tower's image embeddings
// are checked the same way.
#ifndef TYCHO_ENGINE_MD_SHADOW_H
#define TYCHO_ENGINE_MD_SHADOW_H

#include "model/moondream.h"

typedef struct md_shadow md_shadow;

// NULL (and no error) when TYCHO_DEBUG_SHADOW is unset (on the CPU it checks itself: a test of the tool).
ty_status md_shadow_init(md_shadow **out, const md_model *m, int n_pages, int page_size, ty_err *err);
void md_shadow_free(md_shadow *sh);
// Before the device runs step: with TYCHO_DEBUG_SHADOW_TRACE, prints it (a crash names its step).
void md_shadow_before(md_shadow *sh, md_kv_cache *kv, const md_text_step *step);
// After the device ran step on (m, kv): runs it on the CPU copy and compares.
void md_shadow_check(md_shadow *sh, md_model *m, md_kv_cache *kv, const md_text_step *step);

// After the device's vision tower gave embeds[i] ((729, text dim) host f32) for the n
// images: the CPU copy's tower over the same crops, compared.
void md_shadow_vision(md_shadow *sh, md_model *m, int n, const md_vision_image *ims, float *const *embeds);

#endif
