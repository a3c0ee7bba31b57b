// Finds Moondream tensors by canonical name ("vision.blocks.3.ln1.weight") in
// any naming the reference loader accepts: HF ("model." + canonical), bare
// canonical, or the legacy training-checkpoint names of moondream.md §3.2
// (with "._orig_mod" stripped), and checks their shapes.
#ifndef TYCHO_MODEL_WEIGHTS_H
#define TYCHO_MODEL_WEIGHTS_H

#include "core/err.h"
#include "io/safetensors.h"

typedef struct md_names md_names;

ty_status md_names_init(md_names **out, const safetensors *st, ty_err *err);
void md_names_free(md_names *n);

// The tensor for a canonical name, or NULL. *legacy is set when it was found
// under its legacy name (the two feature tables are stored transposed there).
const safetensors_tensor *md_names_find(const md_names *n, const char *canonical, int *legacy);

// Whether any tensor's name (without "model." and "._orig_mod") starts with prefix.
int md_names_any(const md_names *n, const char *prefix);

// Finds canonical and checks that its shape is `dims` (n_dims entries);
// a clear error names the tensor and both shapes otherwise.
ty_status md_names_get(const md_names *n, const char *canonical, int n_dims, const int64_t *dims,
                       const safetensors_tensor **out, int *legacy, ty_err *err);

#endif
