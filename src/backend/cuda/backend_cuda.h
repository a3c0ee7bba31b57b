// The CUDA backend's entry point. Declared in every build; defined by the
// CUDA sources with -DTYCHO_CUDA=ON, and by stub.c (an error saying so)
// without them, so callers need no #ifdef.
#ifndef TYCHO_BACKEND_CUDA_BACKEND_CUDA_H
#define TYCHO_BACKEND_CUDA_BACKEND_CUDA_H

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CUDA backend on GPU `device` (0-based). Activations are f32 in device
// memory; weights are uploaded once in their stored dtype (bf16/f16/f32);
// matmul runs on cuBLASLt with the activations rounded to the weight's dtype
// (see src/backend/cuda/NOTES.md). TY_E_UNSUPPORTED without CUDA or a GPU.
ty_status backend_cuda_init(ty_backend **out, int device, ty_err *err);

// How bf16-weight GEMMs take the f32 activations. 0 (the default): exactly,
// as a bf16 hi + lo pair (one GEMM of twice the rows), so answers equal the
// CPU backend's except at near ties; 1: rounded to bf16 once, about half the
// tensor-core work in prefill and vision, ~3e-3 relative error in logits.
// Either way products of up to 8 rows (decode) take an exact f32 GEMV.
// A no-op without CUDA.
void backend_cuda_set_bf16_activations(ty_backend *be, int on);

// "NVIDIA H100 80GB HBM3, driver 580.65.06, CUDA 13.0" for GPU `device`, or "" (no CUDA, no such GPU).
void backend_cuda_device_name(int device, char *out, size_t cap);

// How many CUDA GPUs this process sees (0 without CUDA, a driver or a GPU).
int backend_cuda_device_count(void);

#ifdef __cplusplus
}
#endif

#endif
