// Vector kernels over contiguous f32 arrays, AVX2+FMA when the CPU has it and
// portable C otherwise: the softmax of attention and the GELU of the GEMM epilogue.
#ifndef TYCHO_BACKEND_CPU_VEC_H
#define TYCHO_BACKEND_CPU_VEC_H

#include <stdint.h>

// x[i] = exp(x[i] - shift), returns the sum; max relative error ~2e-7 on the AVX2 path.
float vec_exp_sum(float *x, float shift, int64_t n, int avx2);
float vec_max(const float *x, int64_t n);
// x[i] = GELU_tanh(x[i]) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); the AVX2
// path evaluates tanh(z) as 1 - 2 / (e^2z + 1), within ~1e-7 of 1 + tanh.
void vec_gelu_tanh(float *x, int64_t n, int avx2);

#endif
