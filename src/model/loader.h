// Internals of weight loading shared by moondream.c (vision, region, model
// init) and load_text.c (the text decoder, dense or Moondream 3). Not an API.
#ifndef TYCHO_MODEL_LOADER_H
#define TYCHO_MODEL_LOADER_H

#include "model/moondream.h"
#include "model/weights.h"

typedef struct {
    md_model *m;
    md_names *names;
    ty_err *err;
} md_loader;

#define TRY(x)                          \
    do {                                \
        ty_status s_ = (x);             \
        if (s_ != TY_OK) return s_;     \
    } while (0)

// A tensor of n_dims (1-3) with shape (d0, d1, d2), bound as a 2-D weight:
// (1, d0), (d0, d1) or (d0 * d1, d2).
ty_status md_load_get(md_loader *L, const char *name, int n_dims, int64_t d0, int64_t d1, int64_t d2, ty_tensor *out);
// prefix.weight (out_dim, in_dim) and prefix.bias (out_dim).
ty_status md_load_linear(md_loader *L, const char *prefix, int64_t out_dim, int64_t in_dim, md_linear *lin);
// prefix.weight and prefix.bias, (dim) each.
ty_status md_load_norm(md_loader *L, const char *prefix, int64_t dim, md_norm *n);
// The tensor under a printf-formatted canonical name, or NULL (no error).
const safetensors_tensor *md_load_find(md_loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The text decoder (load_text.c): detects tau and MoE from the tensors,
// settles the config (m->cfg) and binds every block.
ty_status md_load_text(md_loader *L);

#endif
