// Random Moondream checkpoints made in memory, for benchmarks (`tycho bench`)
// and tests: every tensor the loader expects, at the real widths
// (moondream.md §2-3: Moondream 2 1.93 B parameters, Moondream 3 9.27 B) or
// tiny ones, with HF names, as a safetensors image that md_model_init_memory
// loads like a file. Outputs are meaningless; costs are those of the real model.
//
// Values (bf16): LayerNorm weights 1; every bias, LayerNorm ones included, 0;
// everything else (linear weights, embeddings, pos_emb, tau, the Fourier
// feature tables) zero-mean with std 1/sqrt(fan_in), fan_in the last dim (1
// for the 1-D tau.alpha). The distribution is Irwin-Hall of four 16-bit
// uniforms (bell-shaped, bounded at +-3.46 std): one 64-bit draw per value.
//
// Generation is spread over threads in fixed chunks, each seeded by (seed,
// tensor, chunk): the bytes depend on the config and the seed only, not on the
// thread count.
#ifndef TYCHO_MODEL_RANDOM_WEIGHTS_H
#define TYCHO_MODEL_RANDOM_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "model/config.h"

typedef enum { MD_RANDOM_REAL, MD_RANDOM_TINY } md_random_size;

typedef enum { MD_FILL_RANDOM, MD_FILL_ZERO, MD_FILL_ONE } md_random_fill;

typedef struct {
    char name[96];  // HF name ("model.text.blocks.3.attn.qkv.weight")
    int n_dims;
    int64_t shape[3];
    int64_t n_elements;
    md_random_fill fill;
    float std;      // MD_FILL_RANDOM: 1/sqrt(fan_in)
} md_random_tensor;

// The config of a random model: Moondream 2 (arch MD_ARCH_MD2) or 3, real or
// tiny widths (vision 64 wide x 4 layers, text 128 wide; md3 8 experts, top
// 3), n_layers text layers (0: the architecture's count, 24 real, 2 tiny md2,
// 3 tiny md3). Moondream 3's MoE starts at layer 4 (tiny: 1), or
// at the last layer when there are fewer. Templates and token ids are the
// real ones (vocab 51200 at both sizes, so the real-size tokenizer fits).
ty_status md_random_config(md_config *cfg, md_arch arch, md_random_size size, int n_layers, ty_err *err);

// Every tensor of cfg's checkpoint in name order (how HF writes them).
// *out is malloc'ed (free it).
ty_status md_random_tensors(const md_config *cfg, md_random_tensor **out, int *n, ty_err *err);

// The whole safetensors image: (8-byte header length, JSON header, data),
// data 64-byte aligned, tensors in name order. threads <= 0: every core.
// Free with md_random_checkpoint_free.
ty_status md_random_checkpoint(const md_config *cfg, uint64_t seed, int threads, uint8_t **out, size_t *len,
                               ty_err *err);
void md_random_checkpoint_free(uint8_t *buf, size_t len);

#endif
