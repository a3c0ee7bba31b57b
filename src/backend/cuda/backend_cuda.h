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

// How many CUDA GPUs this process sees (0 without CUDA, a driver or a GPU).
int backend_cuda_device_count(void);

#ifdef __cplusplus
}
#endif

#endif
