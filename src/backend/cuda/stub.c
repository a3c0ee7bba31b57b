// Without -DTYCHO_CUDA=ON: the CUDA backend's entry points say it is absent.
#ifndef TYCHO_CUDA
#include "backend/cuda/backend_cuda.h"

ty_status backend_cuda_init(ty_backend **out, int device, ty_err *err) {
    *out = NULL;
    return ty_err_set(err, TY_E_UNSUPPORTED, "cuda: tycho was built without CUDA (cmake -DTYCHO_CUDA=ON)");
}

int backend_cuda_device_count(void) { return 0; }

void backend_cuda_device_name(int device, char *out, size_t cap) {
    if (cap) out[0] = '\0';
}

void backend_cuda_set_bf16_activations(ty_backend *be, int on) {}
#endif
#ifdef TYCHO_CUDA
typedef int cuda_stub_unused;  // the CUDA sources define the entry points
#endif
