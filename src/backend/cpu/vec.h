// Vector kernels over contiguous f32 arrays, AVX2+FMA when the CPU has it and
// portable C otherwise; the attention and softmax inner loops use them.
#ifndef TYCHO_BACKEND_CPU_VEC_H
#define TYCHO_BACKEND_CPU_VEC_H

#include <stdint.h>

// y[i] += a * x[i]
void vec_axpy(float *y, float a, const float *x, int64_t n, int avx2);
// sum of x[i] * y[i]
float vec_dot(const float *x, const float *y, int64_t n, int avx2);
// x[i] = exp(x[i] - shift), returns the sum; max relative error ~2e-7 on the AVX2 path.
float vec_exp_sum(float *x, float shift, int64_t n, int avx2);
float vec_max(const float *x, int64_t n);
// One query against n key/value rows given by pointers (decode attention):
// o = softmax(scale * q·k_t) · v_t over t < n. scores: scratch of n floats.
// With AVX2 and hd == 64 the query and the output stay in registers.
void vec_attend_one(const float *q, const float *const *k, const float *const *v, int n, int hd, float scale,
                    float *scores, float *o, int avx2);
// x[i] = GELU_tanh(x[i]) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); the AVX2
// path evaluates tanh(z) as 1 - 2 / (e^2z + 1), within ~1e-7 of 1 + tanh.
void vec_gelu_tanh(float *x, int64_t n, int avx2);

#endif
