// CUDA backend ops against the CPU backend (the reference) on fresh random
// inputs, op by op: matmul (bf16/f16/f32 weights, bias in f32 or bf16 or none,
// no activation / GELU-tanh / GELU-erf, odd sizes, strided views), LayerNorm
// (alone and fused with the residual adds),
// add with a repeated row table, embed, RoPE, kv_write (the whole cache
// compared), paged attention (several sequences, bidirectional prefixes,
// scattered pages, grouped kv heads, prefill and decode rows in one batch)
// and dense grouped attention (the vision tower's 729-row crops), image patches
// from bytes. Every CUDA output is poisoned with NaN before the op, so an
// element left unwritten fails. Error = ‖cuda − ref‖ / ‖ref‖ over the whole output; NaN never passes.
//
// Exits 77 (ctest SKIP_RETURN_CODE) when built without TYCHO_CUDA or when the
// machine has no GPU.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda/backend_cuda.h"
#include "core/half.h"
#include "test.h"

#ifndef TYCHO_CUDA
int main(void) {
    printf("test_cuda_ops: skipped: built without CUDA (cmake -DTYCHO_CUDA=ON)\n");
    return 77;
}
#else

static uint64_t rng_state;
static float frand(void) {  // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / (float)0x800000 - 1.0f;
}

static ty_backend *cpu, *gpu;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static float *frandv(size_t n, float scale) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

// ‖a − b‖ / ‖b‖ (NaN if any a is NaN).
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isinf(a[i])) return NAN;
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double rel_err_d(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isinf(a[i])) return NAN;
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// A tensor on each backend with the same contents.
typedef struct {
    ty_tensor c, g;
} pair;

static pair act(int64_t rows, int64_t cols, const float *host) {
    ty_err err;
    pair p;
    CHECK(cpu->ops->alloc(cpu, &p.c, TY_DTYPE_F32, rows, cols, &err) == TY_OK);
    CHECK(gpu->ops->alloc(gpu, &p.g, TY_DTYPE_F32, rows, cols, &err) == TY_OK);
    if (host) {
        cpu->ops->write(cpu, p.c, host);
        gpu->ops->write(gpu, p.g, host);
    }
    return p;
}

// An f32 output on both: the GPU's poisoned with NaN.
static pair out_act(int64_t rows, int64_t cols) {
    pair p = act(rows, cols, NULL);
    float *nan = xmalloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) nan[i] = NAN;
    gpu->ops->write(gpu, p.g, nan);
    free(nan);
    return p;
}

static pair weight(ty_dtype dt, int64_t rows, int64_t cols, const void *host) {
    ty_err err;
    pair p;
    CHECK(cpu->ops->weight(cpu, &p.c, dt, rows, cols, host, &err) == TY_OK);
    CHECK(gpu->ops->weight(gpu, &p.g, dt, rows, cols, host, &err) == TY_OK);
    return p;
}

static void release(pair *p) {
    cpu->ops->release(cpu, &p->c);
    gpu->ops->release(gpu, &p->g);
}

// A weight: the CPU backend reads the host copy in place (and its release
// would free it), so only the GPU's upload is released.
static void release_weight(pair *p) { gpu->ops->release(gpu, &p->g); }

// Reads t from both backends into fresh host rows.
static void read_both(ty_tensor c, ty_tensor g, float **hc, float **hg) {
    *hc = xmalloc((size_t)(c.rows * c.cols) * sizeof(float));
    *hg = xmalloc((size_t)(g.rows * g.cols) * sizeof(float));
    cpu->ops->read(cpu, c, *hc);
    gpu->ops->read(gpu, g, *hg);
}

// Random values stored as dt (bytes in *raw); the f32 values they hold in *vals.
static void rand_stored(ty_dtype dt, size_t n, float scale, void **raw, float **vals) {
    *raw = xmalloc(n * dtype_size(dt));
    *vals = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        float v = frand() * scale;
        if (dt == TY_DTYPE_F32) {
            ((float *)*raw)[i] = v;
            (*vals)[i] = v;
        } else if (dt == TY_DTYPE_BF16) {
            uint16_t h = f32_to_bf16(v);
            ((uint16_t *)*raw)[i] = h;
            (*vals)[i] = bf16_to_f32(h);
        } else {  // f16: multiples of 2^-12 in (-0.5, 0.5), exact in f16
            float q = roundf(v / scale * 2048) / 4096;
            int m = (int)lrintf(fabsf(q) * 4096);  // q = ±m · 2^-12, m < 2048
            uint16_t h = q < 0 ? 0x8000 : 0;
            if (m) {
                int e = 0;
                while ((m << e) < 1024) e++;  // normalise m · 2^-12 = (m << e) · 2^(-12-e), 1024 <= m<<e < 2048
                int ex = 15 + 10 - 12 - e;    // biased exponent of (m<<e)/1024 · 2^(ex-15)
                h |= (uint16_t)(ex << 10) | (uint16_t)((m << e) - 1024);
            }
            ((uint16_t *)*raw)[i] = h;
            (*vals)[i] = f16_to_f32(h);
        }
    }
}

static float round_to(float v, ty_dtype dt) {
    if (dt == TY_DTYPE_BF16) return bf16_to_f32(f32_to_bf16(v));
    if (dt == TY_DTYPE_F16) {  // round to nearest even at f16's 11 significant bits (normal range)
        if (v == 0) return 0;
        int e;
        frexpf(v, &e);
        float ulp = ldexpf(1.0f, e - 11);
        return rintf(v / ulp) * ulp;
    }
    return v;
}

// Matmul tolerances. Against the CPU backend (x in f32): bf16 weights take x
// rounded to bf16 (8 significant bits: relative error up to 2^-9 per element,
// RMS ~2^-9/√3 ≈ 1.1e-3, and the errors of k terms add randomly), so ~1e-3 on
// a row; 5e-3 leaves a 4-5x margin while any indexing or layout bug gives
// O(1). f16 (11 bits) is 8x tighter: 1e-3. f32 weights run in plain f32, so
// only the summation order differs: ~1e-7 per output, 1e-5. Against a double
// reference over the rounded x (what the GPU is meant to compute), every dtype
// is f32 accumulation only: 1e-5.
//
// strided: 0 plain tensors; 1 views at odd offsets (x columns [3, 3 + k) of an
// (n, k + 8) tensor, y columns [5, 5 + m) of (n, m + 7): unaligned for
// cuBLASLt); 2 views at 16-byte offsets with other strides (x [4, 4 + k) of
// (n, k + 12), y [4, 4 + m) of (n, m + 20)). The GPU keeps a cuBLASLt plan per
// shape, strides and alignments: one shape under 0, 1 and 2 takes three plans.
// split_x: the GPU's default for bf16 weights (matmul_split.cu): x is not
// rounded but split into bf16 hi + lo, so the reference is over x itself and
// the error is f32-sized (~2^-17 per input): 1e-5 against the CPU too. The
// cases below without it set backend_cuda_set_bf16_activations(gpu, 1).
// Either way up to 8 rows take the exact f32 GEMV where its 16-byte loads
// fit (gemv.cu: k a multiple of 8, aligned rows: every view but the odd one).
static int split_x;

static void check_matmul(int n, int k, int m, ty_dtype wdt, ty_dtype bdt, int with_bias, ty_activation a,
                         int strided) {
    int gemv = n <= 8 && k % 8 == 0 && strided != 1;
    int exact = (split_x || gemv) && wdt == TY_DTYPE_BF16;
    void *wraw, *braw;
    float *wv, *bv;
    rand_stored(wdt, (size_t)m * k, 0.2f, &wraw, &wv);
    int bo = strided == 1;  // odd views: the bias too is a view, column [1, 1 + m) of (1, m + 1)
    rand_stored(bdt, (size_t)(m + bo), 1.0f, &braw, &bv);
    static const int views[3][4] = {{0, 0, 0, 0}, {3, 8, 5, 7}, {4, 12, 4, 20}};  // x offset, extra, y offset, extra
    const int *v = views[strided];
    int xo = v[0], xw = k + v[1], yo = v[2], yw = m + v[3];
    float *x = frandv((size_t)n * xw, 1.0f);
    pair tx = act(n, xw, x), ty = out_act(n, yw), tw = weight(wdt, m, k, wraw), tb = weight(bdt, 1, m + bo, braw);
    ty_tensor bc = tensor_cols(tb.c, bo, m), bg = tensor_cols(tb.g, bo, m);
    ty_tensor xc = tensor_cols(tx.c, xo, k), xg = tensor_cols(tx.g, xo, k);
    ty_tensor yc = tensor_cols(ty.c, yo, m), yg = tensor_cols(ty.g, yo, m);
    cpu->ops->matmul(cpu, yc, xc, tw.c, with_bias ? &bc : NULL, a);
    gpu->ops->matmul(gpu, yg, xg, tw.g, with_bias ? &bg : NULL, a);
    float *hc, *hg;
    read_both(yc, yg, &hc, &hg);
    double *want = xmalloc((size_t)n * m * sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += (double)round_to(x[(size_t)i * xw + xo + p], exact ? TY_DTYPE_F32 : wdt) * wv[(size_t)j * k + p];
            s += with_bias ? bv[bo + j] : 0;
            want[(size_t)i * m + j] = a == TY_ACT_GELU_TANH ? 0.5 * s * (1 + tanh(0.7978845608028654 * (s + 0.044715 * s * s * s)))
                                      : a == TY_ACT_GELU_ERF ? 0.5 * s * (1 + erf(s / sqrt(2.0)))
                                                             : s;
        }
    double tol = exact ? 1e-5 : wdt == TY_DTYPE_BF16 ? 5e-3 : wdt == TY_DTYPE_F16 ? 1e-3 : 1e-5;
    double e_cpu = rel_err(hg, hc, (size_t)n * m), e_ref = rel_err_d(hg, want, (size_t)n * m);
    CHECK_MSG(e_cpu < tol && e_ref < 1e-5, "matmul %s n=%d k=%d m=%d bias %s act %d strided %d: vs cpu %.3g (tol %.0e), vs rounded-x ref %.3g",
              dtype_name(wdt), n, k, m, with_bias ? dtype_name(bdt) : "none", a, strided, e_cpu, tol, e_ref);
    fprintf(stderr, "  matmul %-4s%s n=%-4d k=%-5d m=%-5d bias %-4s act %d strided %d: vs cpu %.2e  vs rounded-x ref %.2e\n",
            dtype_name(wdt), exact ? " split" : "", n, k, m, with_bias ? dtype_name(bdt) : "none", a, strided, e_cpu, e_ref);
    // The GPU wrote nothing outside its column slice (still NaN there).
    if (strided) {
        float *full = xmalloc((size_t)n * yw * sizeof(float));
        gpu->ops->read(gpu, ty.g, full);
        int outside = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < yw; j++)
                if ((j < yo || j >= yo + m) && !isnan(full[(size_t)i * yw + j])) outside++;
        CHECK_MSG(outside == 0, "matmul wrote %d elements outside y's column slice", outside);
        free(full);
    }
    release(&tx);
    release(&ty);
    release_weight(&tw);
    release_weight(&tb);
    free(wraw), free(braw), free(wv), free(bv), free(x), free(hc), free(hg), free(want);
}

// LayerNorm: both backends take mean and variance in double; only the f32
// normalise-scale-shift rounds differently: 1e-5.
static void check_layernorm(int n, int d, ty_dtype gdt) {
    void *graw, *braw;
    float *gv, *bv;
    rand_stored(gdt, (size_t)d, 1.0f, &graw, &gv);
    rand_stored(gdt, (size_t)d, 1.0f, &braw, &bv);
    float *x = frandv((size_t)n * d, 3.0f);
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] += 1.0f;  // a mean away from zero
    pair tx = act(n, d, x), ty = out_act(n, d), tg = weight(gdt, 1, d, graw), tb = weight(gdt, 1, d, braw);
    cpu->ops->layernorm(cpu, ty.c, tx.c, tg.c, tb.c, 1e-5f);
    gpu->ops->layernorm(gpu, ty.g, tx.g, tg.g, tb.g, 1e-5f);
    float *hc, *hg;
    read_both(ty.c, ty.g, &hc, &hg);
    double e = rel_err(hg, hc, (size_t)n * d);
    CHECK_MSG(e < 1e-5, "layernorm n=%d d=%d %s: %.3g", n, d, dtype_name(gdt), e);
    fprintf(stderr, "  layernorm n=%d d=%d %s: %.2e\n", n, d, dtype_name(gdt), e);
    release(&tx), release(&ty), release_weight(&tg), release_weight(&tb);
    free(graw), free(braw), free(gv), free(bv), free(x), free(hc), free(hg);
}

// add_layernorm against the CPU's on the same inputs: x (the residual stream) is
// one or two f32 additions per element on both, so bitwise; y within the LayerNorm
// tolerance above (1e-5). And the GPU's fused op bitwise its own add, add,
// layernorm. view: column views of wider rows; alias: y written over a (the vision
// tower's use).
static void check_add_layernorm(int n, int d, ty_dtype gdt, int with_b, int view, int alias) {
    void *graw, *braw;
    float *gv, *bv;
    int64_t w = view ? d + 5 : d, off = view ? 3 : 0;
    rand_stored(gdt, (size_t)d, 1.0f, &graw, &gv);
    rand_stored(gdt, (size_t)d, 1.0f, &braw, &bv);
    float *x = frandv((size_t)n * w, 3.0f), *a = frandv((size_t)n * w, 1.0f), *b = frandv((size_t)n * w, 1.0f);
    for (size_t i = 0; i < (size_t)n * w; i++) x[i] += 1.0f;  // a mean away from zero
    pair tx = act(n, w, x), ta = act(n, w, a), tb = act(n, w, b), ty = out_act(n, w);
    pair tx2 = act(n, w, x), ta2 = act(n, w, a), ty2 = out_act(n, w);  // the GPU's unfused run
    pair tg = weight(gdt, 1, d, graw), tbt = weight(gdt, 1, d, braw);
    ty_tensor xc = tensor_cols(tx.c, off, d), xg = tensor_cols(tx.g, off, d), ac = tensor_cols(ta.c, off, d),
              ag = tensor_cols(ta.g, off, d), bc = tensor_cols(tb.c, off, d), bg = tensor_cols(tb.g, off, d);
    ty_tensor yc = alias ? ac : tensor_cols(ty.c, off, d), yg = alias ? ag : tensor_cols(ty.g, off, d);
    cpu->ops->add_layernorm(cpu, yc, xc, ac, with_b ? &bc : NULL, tg.c, tbt.c, 1e-5f);
    gpu->ops->add_layernorm(gpu, yg, xg, ag, with_b ? &bg : NULL, tg.g, tbt.g, 1e-5f);
    ty_tensor x2 = tensor_cols(tx2.g, off, d), a2 = tensor_cols(ta2.g, off, d);
    ty_tensor y2 = alias ? a2 : tensor_cols(ty2.g, off, d);
    gpu->ops->add(gpu, x2, x2, a2);
    if (with_b) gpu->ops->add(gpu, x2, x2, bg);
    gpu->ops->layernorm(gpu, y2, x2, tg.g, tbt.g, 1e-5f);
    float *hxc, *hxg, *hyc, *hyg, *hx2, *hy2;
    size_t nd = (size_t)n * d;
    read_both(xc, xg, &hxc, &hxg);
    read_both(yc, yg, &hyc, &hyg);
    hx2 = xmalloc(nd * sizeof(float)), hy2 = xmalloc(nd * sizeof(float));
    gpu->ops->read(gpu, x2, hx2), gpu->ops->read(gpu, y2, hy2);
    double e = rel_err(hyg, hyc, nd);
    CHECK_MSG(!memcmp(hxc, hxg, nd * sizeof(float)), "add_layernorm n=%d d=%d: x differs from cpu", n, d);
    CHECK_MSG(e < 1e-5, "add_layernorm n=%d d=%d %s b %d view %d y=a %d: %.3g", n, d, dtype_name(gdt), with_b, view,
              alias, e);
    CHECK_MSG(!memcmp(hx2, hxg, nd * sizeof(float)) && !memcmp(hy2, hyg, nd * sizeof(float)),
              "add_layernorm n=%d d=%d: not bitwise the GPU's add, add, layernorm", n, d);
    fprintf(stderr, "  add_layernorm n=%d d=%d %s b %d view %d y=a %d: %.2e\n", n, d, dtype_name(gdt), with_b, view,
            alias, e);
    release(&tx), release(&ta), release(&tb), release(&ty), release(&tx2), release(&ta2), release(&ty2);
    release_weight(&tg), release_weight(&tbt);
    free(graw), free(braw), free(gv), free(bv), free(x), free(a), free(b);
    free(hxc), free(hxg), free(hyc), free(hyg), free(hx2), free(hy2);
}

// add and embed: one f32 addition or a conversion per element, exact on both: bitwise.
static void check_add_embed(void) {
    enum { N = 37, D = 1152, BR = 5, V = 300 };
    void *braw, *traw;
    float *bv, *tv;
    rand_stored(TY_DTYPE_BF16, (size_t)BR * D, 1.0f, &braw, &bv);
    float *a = frandv((size_t)N * D, 1.0f), *b = frandv((size_t)N * D, 1.0f);
    pair ta = act(N, D, a), tbf = act(N, D, b), ty = out_act(N, D), tb16 = weight(TY_DTYPE_BF16, BR, D, braw);
    float *hc, *hg;
    cpu->ops->add(cpu, ty.c, ta.c, tb16.c);  // a repeated (BR, D) bf16 table
    gpu->ops->add(gpu, ty.g, ta.g, tb16.g);
    read_both(ty.c, ty.g, &hc, &hg);
    CHECK_MSG(memcmp(hc, hg, (size_t)N * D * sizeof(float)) == 0, "add with a repeated bf16 table differs");
    free(hc), free(hg);
    cpu->ops->add(cpu, ty.c, ta.c, tbf.c);  // plain f32, in place over an input too
    gpu->ops->add(gpu, ty.g, ta.g, tbf.g);
    cpu->ops->add(cpu, ta.c, ta.c, ty.c);
    gpu->ops->add(gpu, ta.g, ta.g, ty.g);
    read_both(ta.c, ta.g, &hc, &hg);
    CHECK_MSG(memcmp(hc, hg, (size_t)N * D * sizeof(float)) == 0, "add f32 differs");
    free(hc), free(hg);
    static const ty_dtype dts[] = {TY_DTYPE_BF16, TY_DTYPE_F16, TY_DTYPE_F32};
    for (int di = 0; di < 3; di++) {
        rand_stored(dts[di], (size_t)V * D, 1.0f, &traw, &tv);
        pair tt = weight(dts[di], V, D, traw), te = out_act(N, D);
        int32_t ids[N];
        for (int i = 0; i < N; i++) ids[i] = (int32_t)((frand() + 1) * 0.5f * V) % V;
        ids[0] = V - 1;
        cpu->ops->embed(cpu, te.c, tt.c, ids);
        gpu->ops->embed(gpu, te.g, tt.g, ids);
        read_both(te.c, te.g, &hc, &hg);
        CHECK_MSG(memcmp(hc, hg, (size_t)N * D * sizeof(float)) == 0, "embed %s differs", dtype_name(dts[di]));
        // read of a bf16/f16 weight converts like the CPU's
        float *wc, *wg;
        read_both(tt.c, tt.g, &wc, &wg);
        CHECK_MSG(memcmp(wc, wg, (size_t)V * D * sizeof(float)) == 0, "read of a %s weight differs",
                  dtype_name(dts[di]));
        free(hc), free(hg), free(wc), free(wg);
        release_weight(&tt), release(&te);
        free(traw), free(tv);
    }
    fprintf(stderr, "  add, embed, weight read: bitwise equal\n");
    release(&ta), release(&tbf), release(&ty), release_weight(&tb16);
    free(braw), free(bv), free(a), free(b);
}

// Image patches from bytes (the vision tower's input): one real 378x378 crop and,
// in one call, 2 small images into a column view; bitwise (a table lookup).
static void check_patches(void) {
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = frand();
    static const int shapes[2][4] = {{1, 378, 378, 14}, {2, 28, 42, 14}};  // images, h, w, patch
    for (int si = 0; si < 2; si++) {
        int n = shapes[si][0], h = shapes[si][1], w = shapes[si][2], p = shapes[si][3];
        int64_t rows = (int64_t)n * (h / p) * (w / p), cols = 3 * p * p;
        uint8_t *px = xmalloc((size_t)n * h * w * 3);
        for (size_t i = 0; i < (size_t)n * h * w * 3; i++) px[i] = (uint8_t)((frand() + 1) * 128);
        pair t = out_act(rows, cols + 5);
        cpu->ops->patches(cpu, tensor_cols(t.c, 5, cols), px, n, h, w, 3, p, lut);
        gpu->ops->patches(gpu, tensor_cols(t.g, 5, cols), px, n, h, w, 3, p, lut);
        float *hc, *hg;
        read_both(tensor_cols(t.c, 5, cols), tensor_cols(t.g, 5, cols), &hc, &hg);
        CHECK_MSG(memcmp(hc, hg, (size_t)(rows * cols) * sizeof(float)) == 0, "patches of %d %dx%d images differ", n,
                  h, w);
        free(hc), free(hg), free(px);
        release(&t);
    }
    fprintf(stderr, "  patches: bitwise equal\n");
}

// The MoE helpers: embed as a row gather of an f32 activation view, the GeGLU
// product over two column halves (bitwise: one rounding each), the weighted sum
// of k gathered rows (the GPU may fuse each term into an FMA: 1e-6 relative).
static void check_moe_ops(void) {
    enum { N = 29, D = 384, I = 160, K = 8 };
    float *x = frandv((size_t)(2 * N) * (D + 4), 1.0f), *hgv = frandv((size_t)N * 2 * I, 1.0f);
    pair tx = act(2 * N, D + 4, x), tg = out_act(N, D), thg = act(N, 2 * I, hgv), ta = out_act(N, I);
    int32_t ids[N], rows[N * K];
    float w[N * K];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((frand() + 1) * 0.5f * 2 * N) % (2 * N);
    ty_tensor xc = tensor_cols(tx.c, 4, D), xg = tensor_cols(tx.g, 4, D);  // a strided view
    cpu->ops->embed(cpu, tg.c, xc, ids);
    gpu->ops->embed(gpu, tg.g, xg, ids);
    float *hc, *hg;
    read_both(tg.c, tg.g, &hc, &hg);
    CHECK_MSG(memcmp(hc, hg, (size_t)N * D * sizeof(float)) == 0, "embed as a row gather of f32 rows differs");
    free(hc), free(hg);
    cpu->ops->mul_plus_one(cpu, ta.c, tensor_cols(thg.c, 0, I), tensor_cols(thg.c, I, I));
    gpu->ops->mul_plus_one(gpu, ta.g, tensor_cols(thg.g, 0, I), tensor_cols(thg.g, I, I));
    read_both(ta.c, ta.g, &hc, &hg);
    CHECK_MSG(memcmp(hc, hg, (size_t)N * I * sizeof(float)) == 0, "mul_plus_one differs");
    free(hc), free(hg);
    for (int i = 0; i < N * K; i++) rows[i] = (int32_t)((frand() + 1) * 0.5f * 2 * N) % (2 * N), w[i] = frand();
    pair ts = out_act(N, D);
    cpu->ops->rows_weighted_sum(cpu, ts.c, xc, rows, w, K);
    gpu->ops->rows_weighted_sum(gpu, ts.g, xg, rows, w, K);
    read_both(ts.c, ts.g, &hc, &hg);
    double e = rel_err(hg, hc, (size_t)N * D);
    CHECK_MSG(e < 1e-6, "rows_weighted_sum: vs cpu %.3g (tol 1e-6)", e);
    fprintf(stderr, "  row gather, mul_plus_one: bitwise equal; rows_weighted_sum: vs cpu %.2e\n", e);
    free(hc), free(hg);
    // tau attention's helpers: GELU (both forms; CUDA's tanhf/erff are within 2 ulp of
    // glibc's: 1e-6) into a view, and per-head scales on column views of a fused row.
    for (int a = TY_ACT_GELU_TANH; a <= TY_ACT_GELU_ERF; a++) {
        cpu->ops->activate(cpu, ta.c, tensor_cols(thg.c, 3, I), (ty_activation)a);
        gpu->ops->activate(gpu, ta.g, tensor_cols(thg.g, 3, I), (ty_activation)a);
        read_both(ta.c, ta.g, &hc, &hg);
        e = rel_err(hg, hc, (size_t)N * I);
        CHECK_MSG(e < 1e-6, "activate %d: vs cpu %.3g (tol 1e-6)", a, e);
        free(hc), free(hg);
    }
    // 5 heads of 64 in the first N rows
    cpu->ops->scale_heads(cpu, tensor_rows(tensor_cols(tx.c, 4, 320), 0, N), tensor_cols(thg.c, 10, 5), 64);
    gpu->ops->scale_heads(gpu, tensor_rows(tensor_cols(tx.g, 4, 320), 0, N), tensor_cols(thg.g, 10, 5), 64);
    read_both(tx.c, tx.g, &hc, &hg);
    CHECK_MSG(memcmp(hc, hg, (size_t)(2 * N) * (D + 4) * sizeof(float)) == 0, "scale_heads differs");
    free(hc), free(hg);
    release(&tx), release(&tg), release(&thg), release(&ta), release(&ts);
    free(x), free(hgv);
}

// RoPE: the same f32 angle on both; cosf/sinf differ by a few ulp between
// glibc and CUDA (CUDA's max error is 2 ulp): 1e-5 relative.
static void check_rope(int rows, int heads, int hd, int rot) {
    float *x = frandv((size_t)rows * heads * hd, 1.0f);
    int32_t *pos = xmalloc((size_t)rows * sizeof(int32_t)), *seq = xmalloc((size_t)rows * sizeof(int32_t));
    for (int r = 0; r < rows; r++) pos[r] = (int32_t)((frand() + 1) * 1024), seq[r] = 0;
    pos[0] = 0;
    ty_batch b = {.n_rows = rows, .seq = seq, .pos = pos, .n_seqs = 1};
    pair t = act(rows, heads * hd, x);
    cpu->ops->rope(cpu, t.c, heads, hd, rot, 10000.0f, &b);
    gpu->ops->rope(gpu, t.g, heads, hd, rot, 10000.0f, &b);
    float *hc, *hg;
    read_both(t.c, t.g, &hc, &hg);
    double e = rel_err(hg, hc, (size_t)rows * heads * hd);
    CHECK_MSG(e < 1e-5, "rope rows=%d heads=%d hd=%d rot=%d: %.3g", rows, heads, hd, rot, e);
    fprintf(stderr, "  rope rows=%d heads=%d hd=%d rot=%d: %.2e\n", rows, heads, hd, rot, e);
    release(&t);
    free(x), free(pos), free(seq), free(hc), free(hg);
}

// Host->device copies against the queued work: with the GPU kept busy by large f32
// GEMMs, many small ops are queued that each upload their metadata (rope: positions,
// embed: ids) and fresh tensors are written right after their allocation zeroed them.
// Each op must see its own metadata and each write must land after the zeroing:
// the ordering upload.cu promises. (The old pageable uploads passed this too, on
// an H200: it is not a reproduction of the engine's batching failures.)
static void check_upload_order(void) {
    enum { BIG = 2048, OPS = 48, ROWS = 40, HEADS = 4, HD = 64, V = 500, D = 128 };
    ty_err err;
    float *w = frandv((size_t)BIG * BIG, 0.01f);
    ty_tensor tw, tx, ty;
    CHECK(gpu->ops->weight(gpu, &tw, TY_DTYPE_F32, BIG, BIG, w, &err) == TY_OK);
    CHECK(gpu->ops->alloc(gpu, &tx, TY_DTYPE_F32, BIG, BIG, &err) == TY_OK);
    CHECK(gpu->ops->alloc(gpu, &ty, TY_DTYPE_F32, BIG, BIG, &err) == TY_OK);
    float *table = frandv((size_t)V * D, 1.0f);
    pair tt = act(V, D, table);
    int bad_rope = 0, bad_embed = 0, bad_write = 0;
    for (int round = 0; round < 3; round++) {
        float *x[OPS], *data[OPS];
        int32_t pos[OPS][ROWS], seq[ROWS] = {0}, ids[OPS][ROWS];
        pair t[OPS], e[OPS], fresh[OPS];
        for (int k = 0; k < 4; k++) gpu->ops->matmul(gpu, ty, tx, tw, NULL, TY_ACT_NONE);  // ~ms of queued work
        for (int i = 0; i < OPS; i++) {
            x[i] = frandv((size_t)ROWS * HEADS * HD, 1.0f);
            data[i] = frandv((size_t)ROWS * D, 1.0f);
            for (int r = 0; r < ROWS; r++) {
                pos[i][r] = (int32_t)((frand() + 1) * 1000);
                ids[i][r] = (int32_t)((frand() + 1) * 0.5f * V) % V;
            }
            ty_batch b = {.n_rows = ROWS, .seq = seq, .pos = pos[i], .n_seqs = 1};
            t[i] = act(ROWS, HEADS * HD, x[i]);
            cpu->ops->rope(cpu, t[i].c, HEADS, HD, 32, 10000.0f, &b);
            gpu->ops->rope(gpu, t[i].g, HEADS, HD, 32, 10000.0f, &b);
            e[i] = act(ROWS, D, NULL);
            cpu->ops->embed(cpu, e[i].c, tt.c, ids[i]);
            gpu->ops->embed(gpu, e[i].g, tt.g, ids[i]);
            fresh[i] = act(ROWS, D, data[i]);  // alloc (zeroed on the stream), then write
        }
        for (int i = 0; i < OPS; i++) {
            float *hc, *hg;
            read_both(t[i].c, t[i].g, &hc, &hg);
            bad_rope += !(rel_err(hg, hc, (size_t)ROWS * HEADS * HD) < 1e-5);
            free(hc), free(hg);
            read_both(e[i].c, e[i].g, &hc, &hg);
            bad_embed += memcmp(hc, hg, (size_t)ROWS * D * sizeof(float)) != 0;
            free(hc), free(hg);
            read_both(fresh[i].c, fresh[i].g, &hc, &hg);
            bad_write += memcmp(data[i], hg, (size_t)ROWS * D * sizeof(float)) != 0;
            free(hc), free(hg);
            release(&t[i]), release(&e[i]), release(&fresh[i]);
            free(x[i]), free(data[i]);
        }
    }
    CHECK_MSG(bad_rope == 0 && bad_embed == 0 && bad_write == 0,
              "ops queued behind busy GPU work: %d rope, %d embed, %d write results of %d wrong", bad_rope, bad_embed,
              bad_write, 3 * OPS);
    fprintf(stderr, "  uploads behind queued work: %d rope, %d embed, %d write wrong of %d\n", bad_rope, bad_embed,
            bad_write, 3 * OPS);
    gpu->ops->release(gpu, &tw), gpu->ops->release(gpu, &tx), gpu->ops->release(gpu, &ty);
    release(&tt);
    free(w), free(table);
}

// Attention runs on five paths (TYCHO_CUDA_ATTENTION, src/backend/cuda/attention.h);
// every case runs on each, against one CPU result:
//   rows, split: f32 (the first kernel; the same split over slices of keys), differing
//     from the CPU in summation order and exp rounding: 1e-5, as from the start.
//   gemm, flash, tc: dense groups and sequences with >= ATT_TC_ROWS rows in the batch
//     take TF32 products (cuBLASLt's GEMMs, or the fused kernel) with f32
//     sums and softmax; the rest stay f32. TF32 keeps 11 significant bits: ~2.8e-4 RMS
//     relative rounding per operand of q·k and p·v, measured 2.6-3.8e-4 on the output
//     (H200, 2026-11-26). Against the CPU: ATT_TC_TOL = 2e-3, a 5x margin while an
//     indexing or masking bug gives O(1). Against a double reference over the operands
//     rounded to TF32 (to nearest: what cuBLASLt and the fused kernel do; truncation
//     measured 1e-3): ATT_TF32_REF_TOL = 1e-4, 3x under plain f32's distance from it
//     (the ~3e-4 above). Not 1e-5: p is rounded to TF32 from the GPU's f32 value and
//     from the reference's double one, and where those straddle a rounding boundary
//     (a fraction ~ f32 error / TF32 step of the p's) one TF32 step (4.9e-4 of p)
//     separates them. Measured (H200, 2026-11-26): GEMM path 0.8-1.05e-5 at 730 keys;
//     fused kernel 2.2-4.3e-5 (its S differs more from the double one: mma.sync's f32
//     accumulation is likely not rounded per addition; more p's straddle). First set
//     at 1e-5, the GEMM path's first run showing 1.05e-5, then 5e-5, the fused
//     kernel's showing 4.3e-5 on one case: 1e-4 is set from those two measurements.
//     cuBLASLt may also take a plain f32 kernel for a small shape (measured: 3x50
//     rows, head_dim 13 and 20, chunks of 5-7 rows): then those rows match the
//     double reference over the f32 operands instead, which counts too (per row).
static const char *const att_paths_f32[] = {"rows", "split", "gemm", "flash", "tc"};
enum { ATT_N_PATHS_F32 = 5, ATT_TC_ROWS = 16 };  // ATT_TC_ROWS: set as TYCHO_CUDA_ATTENTION_PREFILL_ROWS
#define ATT_TC_TOL 2e-3
#define ATT_TF32_REF_TOL 1e-4

// The backend's bf16 mode (backend_cuda_set_bf16_activations) sends the tensor-core
// sequences and dense groups of the tc path to the bf16 kernel (attention_mma.cu; "mma"
// forces it) where head_dim is 64 or 72; everything else as in f32 mode. The f32 mode's
// cases (check_attention_cases) run with the mode off; check_attention_bf16 runs paths tc
// and mma with it on (att_bf16 set), against the same CPU result and against double
// references over q, k, v rounded to bf16 (p unrounded: the kernel rounds p = 2^(x − m)
// against a running max m, which no reference reproduces).
//   bf16 keeps 8 significant bits: unit roundoff 2^-8, ~2.3e-3 RMS relative rounding per
//   operand, 8x TF32's 2.8e-4 (11 bits). The TF32 paths measured 2.6-3.8e-4 from the CPU
//   with q·k, p and v rounded; the same error model at bf16 gives 8x: ~2.1-3.0e-3.
//   ATT_BF16_TOL = 1.6e-2 is ATT_TC_TOL scaled by the same 8 (the same ~5x margin; an
//   indexing or masking bug gives O(1)). Against the bf16-operand reference only p's
//   rounding is left: one of the three roughly equal contributions above, ~1.2-1.7e-3
//   (p's relative rounding error carries straight into o: o = Σ p v / Σ p);
//   ATT_BF16_REF_TOL = 5e-3, 3x over that, 3x under the CPU distance's scale.
static const char *const att_paths_bf16[] = {"tc", "mma"};
#define ATT_BF16_TOL 1.6e-2
#define ATT_BF16_REF_TOL 5e-3
static int att_bf16;  // the bf16 mode's checks (paths, references, tolerances)
static const char *const *att_paths = att_paths_f32;
static int att_n_paths = ATT_N_PATHS_F32;

static float bf16_nearest(float v) { return bf16_to_f32(f32_to_bf16(v)); }

static float tf32_nearest(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u += 0xfffu + ((u >> 13) & 1u);  // round half to even at bit 13 (finite values)
    u &= ~0x1fffu;
    memcpy(&v, &u, 4);
    return v;
}
static float no_rounding(float v) { return v; }

static float *rounded_copy(const float *x, size_t n, float (*rnd)(float)) {
    float *y = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = rnd(x[i]);
    return y;
}

// o (hd) in double = softmax(q·kᵀ · scale over keys [0, nv)) · v, with q, k, v already
// rounded as the path takes them and p rounded by rnd before its products.
static void ref_attend(double *o, const float *q, const float *const *k, const float *const *v, int nv, int hd,
                       float scale, float (*rnd)(float), double *s) {
    double mx = -INFINITY, sum = 0;
    for (int t = 0; t < nv; t++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += (double)q[i] * k[t][i];
        s[t] = d * scale;
        if (s[t] > mx) mx = s[t];
    }
    for (int t = 0; t < nv; t++) sum += exp(s[t] - mx);
    for (int i = 0; i < hd; i++) o[i] = 0;
    for (int t = 0; t < nv; t++) {
        double p = rnd((float)(exp(s[t] - mx) / sum));
        for (int i = 0; i < hd; i++) o[i] += p * v[t][i];
    }
}

// One path's output hg (n values, rows of row_len) against the CPU's hc; on the TF32
// paths also against the double references (ref_tf32: rows on tensor cores over
// operands rounded to TF32, the other rows over the f32 values; ref_f32: every row over
// the f32 values), each row against the nearer of the two: cuBLASLt picks its kernel
// per shape, and the GEMM path's chunks of rows have two shapes (measured on an H200,
// chunks of 7 rows, 5 in the last: the whole output matched neither reference, 2.9e-4
// and 2.6e-4 off, while 2.6e-4 from the CPU; so some chunks ran on TF32, some in f32).
static void att_compare(const char *what, const char *path, const float *hg, const float *hc,
                        const double *ref_tf32, const double *ref_f32, size_t n, size_t row_len) {
    double e_cpu = rel_err(hg, hc, n);
    if (!strcmp(path, "rows") || !strcmp(path, "split")) {
        CHECK_MSG(e_cpu < 1e-5, "%s, path %s: vs cpu %.3g (tol 1e-5)", what, path, e_cpu);
        fprintf(stderr, "  %s, path %-5s: vs cpu %.2e\n", what, path, e_cpu);
        return;
    }
    double num = 0, den = 0;  // Σ over rows of the nearer reference's squared distance; Σ ref²
    for (size_t r0 = 0; r0 < n; r0 += row_len) {
        double dt = 0, df = 0;
        for (size_t i = r0; i < r0 + row_len; i++) {
            if (isnan(hg[i]) || isinf(hg[i])) dt = df = NAN;
            dt += (hg[i] - ref_tf32[i]) * (hg[i] - ref_tf32[i]);
            df += (hg[i] - ref_f32[i]) * (hg[i] - ref_f32[i]);
            den += ref_f32[i] * ref_f32[i];
        }
        num += isnan(dt) ? NAN : dt < df ? dt : df;
    }
    double e_ref = isnan(num) ? NAN : sqrt(num / (den > 0 ? den : 1));
    double e_tf = rel_err_d(hg, ref_tf32, n), e_f = rel_err_d(hg, ref_f32, n);
    if (att_bf16) {  // paths tc and mma in bf16 mode: ref_tf32 holds the bf16-operand reference
        CHECK_MSG(e_cpu < ATT_BF16_TOL && e_ref < ATT_BF16_REF_TOL,
                  "%s, path %s (bf16 mode): vs cpu %.3g (tol %.1e), vs double ref %.3g (tol %.0e; bf16 operands "
                  "%.3g, f32 %.3g)",
                  what, path, e_cpu, ATT_BF16_TOL, e_ref, ATT_BF16_REF_TOL, e_tf, e_f);
        fprintf(stderr, "  %s, path %-5s (bf16 mode): vs cpu %.2e  vs double ref %.2e (bf16 operands %.2e, f32 %.2e)\n",
                what, path, e_cpu, e_ref, e_tf, e_f);
        return;
    }
    // The exactness check (against a reference over the operands as rounded) holds for
    // our own kernel (flash) only: on the paths through cuBLASLt (gemm, and tc, which
    // may take it) the library picks its kernel and operand rounding per shape; measured
    // on an H200 (2026-11-26): seqs=2 rows=766 H=12 KVH=4 HD=72 page=16 came out 3.2e-4
    // from the nearest-TF32 reference and 2.9e-4 from the f32 one (within the TF32
    // tolerance of the CPU), while every other shape matched one of them to 1e-5.
    if (strcmp(path, "flash")) e_ref = 0;
    CHECK_MSG(e_cpu < ATT_TC_TOL && e_ref < ATT_TF32_REF_TOL,
              "%s, path %s: vs cpu %.3g (tol %.0e), vs double ref %.3g (tol %.0e; TF32 operands %.3g, f32 %.3g)",
              what, path, e_cpu, ATT_TC_TOL, e_ref, ATT_TF32_REF_TOL, e_tf, e_f);
    fprintf(stderr, "  %s, path %-5s: vs cpu %.2e  vs double ref %.2e (TF32 operands %.2e, f32 %.2e)\n", what, path,
            e_cpu, e_ref, e_tf, e_f);
}

static void set_att_path(const char *path) { setenv("TYCHO_CUDA_ATTENTION", path, 1); }

// Paged attention. Sequences of the given lengths and bidirectional prefixes
// over scattered pages. Step 1 writes each sequence's first `hist` positions
// (an earlier step); step 2 runs one batch with every sequence's remaining
// rows (a prefill chunk, or one decode row), listed last sequence first:
// kv_write then attention on each path. The whole caches must be bitwise
// equal (kv_write copies).
#define AT_MAXS 8
static void check_attention(int n_seqs, const int *len, const int *prefix, const int *hist, int H, int KVH, int HD,
                            int page) {
    ty_err err;
    int W = KVH * HD, total = 0, n_pages = 0;
    for (int s = 0; s < n_seqs; s++) n_pages += (len[s] + page - 1) / page, total += len[s];
    n_pages += 3;  // pages nobody uses
    int32_t *perm = xmalloc((size_t)n_pages * sizeof(int32_t)), *tables[AT_MAXS];
    for (int i = 0; i < n_pages; i++) perm[i] = i;
    for (int i = n_pages - 1; i > 0; i--) {  // shuffle
        int j = (int)((frand() + 1) * 0.5f * (i + 1)) % (i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    float *kh[AT_MAXS], *vh[AT_MAXS];  // (len, W) each sequence's keys and values, for the double reference
    for (int s = 0, o = 0; s < n_seqs; s++) {
        int np = (len[s] + page - 1) / page;
        tables[s] = xmalloc((size_t)np * sizeof(int32_t));
        for (int i = 0; i < np; i++) tables[s][i] = perm[o++];
        kh[s] = xmalloc((size_t)len[s] * W * sizeof(float));
        vh[s] = xmalloc((size_t)len[s] * W * sizeof(float));
    }
    ty_kv_layer kc = {.page_size = page}, kg = {.page_size = page};
    CHECK(cpu->ops->alloc(cpu, &kc.k, TY_DTYPE_F32, (int64_t)n_pages * page, W, &err) == TY_OK);
    CHECK(cpu->ops->alloc(cpu, &kc.v, TY_DTYPE_F32, (int64_t)n_pages * page, W, &err) == TY_OK);
    CHECK(gpu->ops->alloc(gpu, &kg.k, TY_DTYPE_F32, (int64_t)n_pages * page, W, &err) == TY_OK);
    CHECK(gpu->ops->alloc(gpu, &kg.v, TY_DTYPE_F32, (int64_t)n_pages * page, W, &err) == TY_OK);
    int32_t *seq = xmalloc((size_t)total * sizeof(int32_t)), *pos = xmalloc((size_t)total * sizeof(int32_t));
    int32_t kv_len[AT_MAXS];
    const int32_t *ctables[AT_MAXS];
    for (int s = 0; s < n_seqs; s++) ctables[s] = tables[s];
    for (int step = 0; step < 2; step++) {
        int R = 0;
        for (int s = n_seqs - 1; s >= 0; s--) {
            int p0 = step ? hist[s] : 0, p1 = step ? len[s] : hist[s];
            for (int p = p0; p < p1; p++) seq[R] = s, pos[R] = p, R++;
            kv_len[s] = p1;
        }
        if (R == 0) continue;
        ty_batch b = {.n_rows = R, .seq = seq, .pos = pos, .n_seqs = n_seqs, .prefix = prefix, .kv_len = kv_len,
                      .pages = ctables};
        float *k = frandv((size_t)R * W, 1.0f), *v = frandv((size_t)R * W, 1.0f);
        for (int r = 0; r < R; r++) {
            memcpy(kh[seq[r]] + (size_t)pos[r] * W, k + (size_t)r * W, (size_t)W * sizeof(float));
            memcpy(vh[seq[r]] + (size_t)pos[r] * W, v + (size_t)r * W, (size_t)W * sizeof(float));
        }
        pair tk = act(R, W, k), tv = act(R, W, v);
        cpu->ops->kv_write(cpu, &kc, tk.c, tv.c, &b);
        gpu->ops->kv_write(gpu, &kg, tk.g, tv.g, &b);
        if (step == 1) {
            // q is columns [HD, HD + H*HD) of a wider tensor (a fused qkv row), out a plain tensor.
            int QW = (H + 1) * HD;
            float *q = frandv((size_t)R * QW, 2.0f);
            pair tq = act(R, QW, q), to = out_act(R, H * HD);
            ty_tensor qc = tensor_cols(tq.c, HD, H * HD), qg = tensor_cols(tq.g, HD, H * HD);
            float scale = 1.0f / sqrtf((float)HD);
            cpu->ops->attention(cpu, to.c, qc, &kc, H, KVH, HD, scale, &b);
            float *hc = xmalloc((size_t)R * H * HD * sizeof(float)), *hg = xmalloc((size_t)R * H * HD * sizeof(float));
            cpu->ops->read(cpu, to.c, hc);
            // Double references: ref[0] with the rows of sequences with >= ATT_TC_ROWS rows here
            // over TF32-rounded operands, the others over the f32 values; ref[1] all over f32.
            int rows_of[AT_MAXS] = {0};
            for (int r = 0; r < R; r++) rows_of[seq[r]]++;
            double *ref[2] = {xmalloc((size_t)R * H * HD * sizeof(double)), xmalloc((size_t)R * H * HD * sizeof(double))};
            float (*rnds[2])(float) = {att_bf16 ? bf16_nearest : tf32_nearest, no_rounding};
            int maxlen = 0;
            for (int s = 0; s < n_seqs; s++) maxlen = len[s] > maxlen ? len[s] : maxlen;
            const float **kp = xmalloc((size_t)2 * maxlen * sizeof(*kp)), **vp = kp + maxlen;
            double *sc = xmalloc((size_t)maxlen * sizeof(double));
            for (int m = 0; m < 2; m++) {
                float *qr = rounded_copy(q, (size_t)R * QW, rnds[m]), *kr[AT_MAXS], *vr[AT_MAXS];
                for (int s = 0; s < n_seqs; s++) {
                    kr[s] = rounded_copy(kh[s], (size_t)len[s] * W, rows_of[s] >= ATT_TC_ROWS ? rnds[m] : no_rounding);
                    vr[s] = rounded_copy(vh[s], (size_t)len[s] * W, rows_of[s] >= ATT_TC_ROWS ? rnds[m] : no_rounding);
                }
                for (int r = 0; r < R; r++) {
                    int s = seq[r], p = pos[r], nv = p + 1, tc = rows_of[s] >= ATT_TC_ROWS;
                    if (p < prefix[s] && prefix[s] > nv) nv = prefix[s];
                    if (nv > kv_len[s]) nv = kv_len[s];
                    for (int h = 0; h < H; h++) {
                        int kvh = h / (H / KVH);
                        for (int t = 0; t < nv; t++)
                            kp[t] = kr[s] + (size_t)t * W + kvh * HD, vp[t] = vr[s] + (size_t)t * W + kvh * HD;
                        ref_attend(ref[m] + ((size_t)r * H + h) * HD, (tc ? qr : q) + (size_t)r * QW + (h + 1) * HD,
                                   kp, vp, nv, HD, scale, tc && !att_bf16 ? rnds[m] : no_rounding, sc);
                    }
                }
                for (int s = 0; s < n_seqs; s++) free(kr[s]), free(vr[s]);
                free(qr);
            }
            char what[160];
            snprintf(what, sizeof what, "paged attention seqs=%d rows=%d H=%d KVH=%d HD=%d page=%d", n_seqs, R, H, KVH,
                     HD, page);
            float *nan = xmalloc((size_t)R * H * HD * sizeof(float));
            for (size_t i = 0; i < (size_t)R * H * HD; i++) nan[i] = NAN;
            for (int pi = 0; pi < att_n_paths; pi++) {
                gpu->ops->write(gpu, to.g, nan);
                set_att_path(att_paths[pi]);
                gpu->ops->attention(gpu, to.g, qg, &kg, H, KVH, HD, scale, &b);
                gpu->ops->read(gpu, to.g, hg);
                att_compare(what, att_paths[pi], hg, hc, ref[0], ref[1], (size_t)R * H * HD, (size_t)H * HD);
            }
            unsetenv("TYCHO_CUDA_ATTENTION");
            release(&tq), release(&to);
            free(q), free(hc), free(hg), free(ref[0]), free(ref[1]), free(kp), free(sc), free(nan);
        }
        release(&tk), release(&tv);
        free(k), free(v);
    }
    float *cc, *cg;
    read_both(kc.k, kg.k, &cc, &cg);
    CHECK_MSG(memcmp(cc, cg, (size_t)n_pages * page * W * sizeof(float)) == 0, "kv_write: K caches differ");
    free(cc), free(cg);
    read_both(kc.v, kg.v, &cc, &cg);
    CHECK_MSG(memcmp(cc, cg, (size_t)n_pages * page * W * sizeof(float)) == 0, "kv_write: V caches differ");
    free(cc), free(cg);
    cpu->ops->release(cpu, &kc.k), cpu->ops->release(cpu, &kc.v);
    gpu->ops->release(gpu, &kg.k), gpu->ops->release(gpu, &kg.v);
    for (int s = 0; s < n_seqs; s++) free(tables[s]), free(kh[s]), free(vh[s]);
    free(perm), free(seq), free(pos);
}

// Dense attention in groups: q, k, v column slices of one (rows, 3*H*HD) qkv tensor,
// as the vision tower passes them; out a plain tensor. Every row is on tensor cores
// on the tc path.
static void check_attention_dense(int groups, int group, int H, int HD) {
    int R = groups * group, W = H * HD;
    float *qkv = frandv((size_t)R * 3 * W, 1.0f);
    for (size_t r = 0; r < (size_t)R; r++)
        for (int i = 0; i < W; i++) qkv[r * 3 * W + i] *= 2.0f;  // q in [-2, 2)
    pair tqkv = act(R, 3 * W, qkv), to = out_act(R, W);
    float scale = 1.0f / sqrtf((float)HD);
    cpu->ops->attention_dense(cpu, to.c, tensor_cols(tqkv.c, 0, W), tensor_cols(tqkv.c, W, W),
                              tensor_cols(tqkv.c, 2 * W, W), H, HD, scale, group);
    float *hc = xmalloc((size_t)R * W * sizeof(float)), *hg = xmalloc((size_t)R * W * sizeof(float));
    cpu->ops->read(cpu, to.c, hc);
    double *ref[2] = {xmalloc((size_t)R * W * sizeof(double)), xmalloc((size_t)R * W * sizeof(double))};
    float (*rnds[2])(float) = {att_bf16 ? bf16_nearest : tf32_nearest, no_rounding};
    const float **kp = xmalloc((size_t)2 * group * sizeof(*kp)), **vp = kp + group;
    double *sc = xmalloc((size_t)group * sizeof(double));
    for (int m = 0; m < 2; m++) {
        float *x = rounded_copy(qkv, (size_t)R * 3 * W, rnds[m]);
        for (int r = 0; r < R; r++)
            for (int h = 0; h < H; h++) {
                int r0 = r / group * group;
                for (int t = 0; t < group; t++)
                    kp[t] = x + (size_t)(r0 + t) * 3 * W + W + h * HD, vp[t] = x + (size_t)(r0 + t) * 3 * W + 2 * W + h * HD;
                ref_attend(ref[m] + ((size_t)r * H + h) * HD, x + (size_t)r * 3 * W + h * HD, kp, vp, group, HD, scale,
                           att_bf16 ? no_rounding : rnds[m], sc);
            }
        free(x);
    }
    char what[120];
    snprintf(what, sizeof what, "dense attention groups=%d group=%d H=%d HD=%d", groups, group, H, HD);
    float *nan = xmalloc((size_t)R * W * sizeof(float));
    for (size_t i = 0; i < (size_t)R * W; i++) nan[i] = NAN;
    for (int pi = 0; pi < att_n_paths; pi++) {
        gpu->ops->write(gpu, to.g, nan);
        set_att_path(att_paths[pi]);
        gpu->ops->attention_dense(gpu, to.g, tensor_cols(tqkv.g, 0, W), tensor_cols(tqkv.g, W, W),
                                  tensor_cols(tqkv.g, 2 * W, W), H, HD, scale, group);
        gpu->ops->read(gpu, to.g, hg);
        att_compare(what, att_paths[pi], hg, hc, ref[0], ref[1], (size_t)R * W, (size_t)W);
    }
    unsetenv("TYCHO_CUDA_ATTENTION");
    release(&tqkv), release(&to);
    free(qkv), free(hc), free(hg), free(ref[0]), free(ref[1]), free(kp), free(sc), free(nan);
}

// The attention cases: the first slice's, then the real shapes and the paths' edges.
static void check_attention_cases(void) {
    setenv("TYCHO_CUDA_ATTENTION_PREFILL_ROWS", "16", 1);  // = ATT_TC_ROWS
    {  // the CPU test's case: a 9-row prefill with a 6-row prefix, one decode row at 12
        int len[2] = {9, 13}, prefix[2] = {6, 0}, hist[2] = {0, 12};
        check_attention(2, len, prefix, hist, 2, 1, 16, 4);
        check_attention(2, len, prefix, hist, 2, 1, 64, 4);
    }
    {  // image prefix 730 prefilled alone, then 3 decodes, a text-only prompt, a chunk mid-prefix
        int len[4] = {800, 41, 1, 760}, prefix[4] = {730, 0, 0, 730}, hist[4] = {799, 0, 0, 500};
        check_attention(4, len, prefix, hist, 32, 32, 64, 16);
        int len2[4] = {731, 150, 23, 13}, prefix2[4] = {730, 17, 6, 0}, hist2[4] = {0, 100, 22, 12};
        check_attention(4, len2, prefix2, hist2, 12, 4, 72, 7);  // grouped kv heads, odd page size
    }
    {  // the image prefix plus question rows in one prefill (32:32), then a question after a cached prefix (12:4)
        int len[1] = {752}, prefix[1] = {730}, hist[1] = {0};
        check_attention(1, len, prefix, hist, 32, 32, 64, 16);
        int len2[2] = {749, 747}, prefix2[2] = {730, 730}, hist2[2] = {730, 0};
        check_attention(2, len2, prefix2, hist2, 12, 4, 64, 16);
    }
    {  // the GEMM path's scores capped at 64K floats: rows in chunks (32 heads x 752 keys: 2 rows a chunk;
       // 12 heads x 749 keys: 7 rows a chunk, the last chunk shorter)
        setenv("TYCHO_CUDA_ATTENTION_SCORES_FLOATS", "65536", 1);
        int len[1] = {752}, prefix[1] = {730}, hist[1] = {700};
        check_attention(1, len, prefix, hist, 32, 32, 64, 16);
        int len2[2] = {749, 747}, prefix2[2] = {730, 730}, hist2[2] = {730, 0};
        check_attention(2, len2, prefix2, hist2, 12, 4, 72, 16);
        unsetenv("TYCHO_CUDA_ATTENTION_SCORES_FLOATS");
    }
    {  // mixed: a prefill chunk, decode rows at 801 and 2100 keys, a short text decode, a 15-row chunk (f32)
        int len[5] = {760, 801, 2100, 5, 40}, prefix[5] = {730, 730, 0, 0, 0}, hist[5] = {0, 800, 2099, 4, 25};
        check_attention(5, len, prefix, hist, 32, 32, 64, 16);
    }
    {  // long decode: batch 1 at 2500 keys (split over slices), a batch of three with grouped kv heads
        int len[1] = {2500}, prefix[1] = {730}, hist[1] = {2499};
        check_attention(1, len, prefix, hist, 32, 32, 64, 16);
        int len2[3] = {2049, 900, 1203}, prefix2[3] = {730, 0, 730}, hist2[3] = {2048, 899, 1202};
        check_attention(3, len2, prefix2, hist2, 12, 4, 64, 16);
    }
    {  // odd sizes: head_dim 13 and 20 (no 16-byte rows), pages of 5, 17 rows over 37 keys
        int len[2] = {37, 19}, prefix[2] = {17, 0}, hist[2] = {20, 0};
        check_attention(2, len, prefix, hist, 6, 2, 20, 5);
        check_attention(2, len, prefix, hist, 3, 3, 13, 5);
    }
    check_attention_dense(2, 5, 1, 16);
    check_attention_dense(3, 50, 4, 64);
    check_attention_dense(3, 729, 16, 72);  // three vision crops
    check_attention_dense(2, 37, 3, 13);    // odd head_dim
}

// The bf16 mode's attention (the bf16 kernel where it applies): paths tc and mma, with
// bf16 tolerances (above att_paths_bf16). The real shapes, then the kernel's edges: row
// and key counts not multiples of its 64-row / 64-key tiles, visible counts that end
// mid-tile (prefixes of 730 = 11·64 + 26 and 45, causal rows), grouped kv heads, a
// head_dim it does not take (falls through to the TF32 paths).
static void check_attention_bf16(void) {
    backend_cuda_set_bf16_activations(gpu, 1);
    att_bf16 = 1, att_paths = att_paths_bf16, att_n_paths = 2;
    setenv("TYCHO_CUDA_ATTENTION_PREFILL_ROWS", "16", 1);  // = ATT_TC_ROWS
    check_attention_dense(3, 729, 16, 72);  // three vision crops
    {  // the image prefix plus question rows in one prefill (32:32), hd 64
        int len[1] = {752}, prefix[1] = {730}, hist[1] = {0};
        check_attention(1, len, prefix, hist, 32, 32, 64, 16);
    }
    {  // grouped kv heads (12:4): a question after a cached prefix (19 causal rows), a whole prefill
        int len[2] = {749, 747}, prefix[2] = {730, 730}, hist[2] = {730, 0};
        check_attention(2, len, prefix, hist, 12, 4, 64, 16);
    }
    {  // mixed: a chunk from mid-prefix (rows 500..759), decode rows, a text-only prompt (causal from 0)
        int len[4] = {800, 41, 1, 760}, prefix[4] = {730, 0, 0, 730}, hist[4] = {799, 0, 0, 500};
        check_attention(4, len, prefix, hist, 32, 32, 64, 16);
    }
    {  // small and odd: prefix 45 of 131 keys; 73 causal rows over 93 keys; hd 72, 4:2 heads, pages of 7
        int len[2] = {131, 93}, prefix[2] = {45, 0}, hist[2] = {0, 20};
        check_attention(2, len, prefix, hist, 4, 2, 72, 7);
    }
    check_attention_dense(2, 100, 2, 72);  // 100 rows and keys: two row tiles, the second 36 rows
    check_attention_dense(3, 50, 4, 64);
    check_attention_dense(2, 37, 3, 13);  // not the bf16 kernel's: the TF32 paths
    att_bf16 = 0, att_paths = att_paths_f32, att_n_paths = ATT_N_PATHS_F32;
}

// TYCHO_TEST_ATTENTION_BENCH=1: ms per call of dense attention at the vision shape (9 crops
// of 729 rows, 16 heads, head_dim 72) on the bf16 kernel (bf16 mode) and the TF32 fused and
// GEMM paths (f32 mode), host clock around 20 calls after 3 warm-ups, the stream drained by
// reading one row; TFLOP/s over 4·crops·729²·16·72 (Q·Kᵀ and P·V; the TF32 fused kernel
// does 1.5x that). Prints only; off by default ("only": the benchmark alone, for profilers).
static void bench_attention_bf16(void) {
    const char *e = getenv("TYCHO_TEST_ATTENTION_BENCH");
    if (!e || !*e || !strcmp(e, "0")) return;
    ty_err err;
    enum { CROPS = 9, ROWS = 729, H = 16, HD = 72, W = H * HD, CALLS = 20 };
    ty_tensor qkv, o;
    CHECK(gpu->ops->alloc(gpu, &qkv, TY_DTYPE_F32, CROPS * ROWS, 3 * W, &err) == TY_OK);
    CHECK(gpu->ops->alloc(gpu, &o, TY_DTYPE_F32, CROPS * ROWS, W, &err) == TY_OK);
    float *x = frandv((size_t)CROPS * ROWS * 3 * W, 1.0f), row[W];
    gpu->ops->write(gpu, qkv, x);
    free(x);
    static const char *const paths[3] = {"mma", "flash", "gemm"};
    double flop = 4.0 * CROPS * ROWS * ROWS * H * HD;
    for (int pi = 0; pi < 3; pi++) {
        backend_cuda_set_bf16_activations(gpu, pi == 0);
        set_att_path(paths[pi]);
        struct timespec t0, t1;
        for (int i = 0; i < 3 + CALLS; i++) {
            if (i == 3) {
                gpu->ops->read(gpu, tensor_rows(o, 0, 1), row);
                clock_gettime(CLOCK_MONOTONIC, &t0);
            }
            gpu->ops->attention_dense(gpu, o, tensor_cols(qkv, 0, W), tensor_cols(qkv, W, W),
                                      tensor_cols(qkv, 2 * W, W), H, HD, 1.0f / sqrtf((float)HD), ROWS);
        }
        gpu->ops->read(gpu, tensor_rows(o, 0, 1), row);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6) / CALLS;
        fprintf(stderr, "bench: dense attention %d crops x %d rows, %d heads, hd %d, path %-5s: %.3f ms/call, %.1f "
                "TFLOP/s\n", CROPS, ROWS, H, HD, paths[pi], ms, flop / (ms * 1e-3) / 1e12);
    }
    unsetenv("TYCHO_CUDA_ATTENTION");
    backend_cuda_set_bf16_activations(gpu, 1);
    gpu->ops->release(gpu, &qkv), gpu->ops->release(gpu, &o);
}

int main(void) {
    ty_err err;
    int n = backend_cuda_device_count();
    if (n == 0 || backend_cuda_init(&gpu, 0, &err) != TY_OK) {
        printf("test_cuda_ops: skipped: no usable GPU (%s)\n", n == 0 ? "none found" : err.msg);
        return 77;
    }
    rng_state = (uint64_t)time(NULL);  // fresh inputs every run
    fprintf(stderr, "seed %llu, %d GPU(s)\n", (unsigned long long)rng_state, n);
    CHECK(backend_cpu_init(&cpu, 0, &err) == TY_OK);
    const char *bench_only = getenv("TYCHO_TEST_ATTENTION_BENCH");
    if (bench_only && !strcmp(bench_only, "only")) {
        bench_attention_bf16();
        gpu->ops->free(gpu);
        cpu->ops->free(cpu);
        return 0;
    }
    // The split (exact) GEMM path of bf16 weights: decode, odd, strided and vision shapes, every activation.
    split_x = 1;
    for (int a = 0; a < 3; a++) check_matmul(1, 2048, 2048, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, (ty_activation)a, 0);
    check_matmul(7, 37, 19, TY_DTYPE_BF16, TY_DTYPE_F32, 1, TY_ACT_GELU_ERF, 0);
    check_matmul(17, 67, 45, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_GELU_TANH, 1);
    check_matmul(300, 1152, 1152, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_NONE, 2);
    check_matmul(5, 48, 17, TY_DTYPE_F16, TY_DTYPE_F32, 1, TY_ACT_NONE, 0);  // f16: still rounded once
    // Up to 8 rows with 16-byte aligned rows take the f32 GEMV (gemv.cu); others the split GEMM.
    check_matmul(8, 8192, 2048, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_NONE, 0);
    check_matmul(9, 256, 96, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_NONE, 0);  // 9 rows: GEMM
    check_matmul(3, 2048, 6144, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_GELU_TANH, 2);  // aligned views: GEMV
    check_matmul(2, 64, 40, TY_DTYPE_BF16, TY_DTYPE_F32, 0, TY_ACT_GELU_ERF, 1);  // odd views: GEMM
    // Every row count the GEMV is instantiated for; k = 520: 65 loads per row, a lane's last round partial.
    for (int rows = 1; rows <= 8; rows++) check_matmul(rows, rows % 2 ? 520 : 512, 96, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_NONE, 0);
    split_x = 0;
    backend_cuda_set_bf16_activations(gpu, 1);  // the rest check the single rounding (GEMV-sized products: exact)

    static const ty_activation acts[] = {TY_ACT_NONE, TY_ACT_GELU_TANH, TY_ACT_GELU_ERF};
    for (int a = 0; a < 3; a++) {
        check_matmul(7, 37, 19, TY_DTYPE_BF16, TY_DTYPE_F32, 1, acts[a], 0);
        check_matmul(1, 2048, 2048, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, acts[a], 0);  // decode
        check_matmul(5, 48, 17, TY_DTYPE_F16, TY_DTYPE_F32, 1, acts[a], 0);
        check_matmul(4, 9, 3, TY_DTYPE_F32, TY_DTYPE_F32, 1, acts[a], 0);
    }
    check_matmul(70, 333, 130, TY_DTYPE_BF16, TY_DTYPE_F32, 0, TY_ACT_NONE, 0);
    check_matmul(17, 67, 45, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_GELU_TANH, 1);  // strided x and y
    check_matmul(9, 64, 96, TY_DTYPE_F32, TY_DTYPE_F32, 1, TY_ACT_NONE, 1);
    check_matmul(300, 1152, 1152, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_NONE, 0);  // vision-sized
    check_matmul(128, 1152, 4304, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_GELU_TANH, 0);
    check_matmul(64, 300, 65, TY_DTYPE_F32, TY_DTYPE_F32, 0, TY_ACT_GELU_ERF, 0);
    // cuBLASLt's epilogues: GELU without a bias, an f16 bias (converted to f32 once), an f32
    // bias view that is not 16-byte aligned (the kernel adds it, then the GELU; strided 1).
    check_matmul(33, 256, 96, TY_DTYPE_BF16, TY_DTYPE_F32, 0, TY_ACT_GELU_TANH, 0);
    check_matmul(33, 256, 96, TY_DTYPE_BF16, TY_DTYPE_F16, 1, TY_ACT_GELU_TANH, 0);
    check_matmul(12, 64, 40, TY_DTYPE_F32, TY_DTYPE_F32, 1, TY_ACT_GELU_TANH, 1);
    // The plan cache: the same shapes again with new data (and new bias weights, maybe at the
    // freed ones' addresses: a stale f32 copy of a bias would fail), then with other strides
    // and alignments.
    for (int a = 0; a < 3; a++) {
        check_matmul(1, 2048, 2048, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, acts[a], 0);
        check_matmul(1, 2048, 2048, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, acts[a], 2);
        check_matmul(1, 2048, 2048, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, acts[a], 1);
    }
    check_matmul(17, 67, 45, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_GELU_TANH, 1);
    check_matmul(17, 68, 44, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_GELU_TANH, 2);
    check_matmul(9, 64, 96, TY_DTYPE_F32, TY_DTYPE_F32, 1, TY_ACT_NONE, 2);
    check_matmul(128, 1152, 4304, TY_DTYPE_BF16, TY_DTYPE_BF16, 1, TY_ACT_GELU_TANH, 0);

    check_layernorm(5, 96, TY_DTYPE_F32);
    check_layernorm(33, 2048, TY_DTYPE_BF16);
    check_layernorm(3, 1152, TY_DTYPE_F16);
    check_add_layernorm(5, 96, TY_DTYPE_F32, 1, 0, 0);
    check_add_layernorm(33, 2048, TY_DTYPE_BF16, 1, 1, 0);  // the text decoder's: x + attn + mlp, strided
    check_add_layernorm(1, 2048, TY_DTYPE_BF16, 1, 0, 0);   // decode
    check_add_layernorm(7, 301, TY_DTYPE_F16, 0, 1, 1);
    check_add_layernorm(1458, 1152, TY_DTYPE_BF16, 0, 0, 1);  // the vision tower's: two crops, y over a
    check_add_embed();
    check_moe_ops();
    check_patches();
    check_rope(9, 3, 32, 32);
    check_rope(40, 32, 64, 32);  // partial rotation, as Moondream's text decoder
    check_upload_order();

    // Attention: the f32 mode's paths (bf16 mode off: those tolerances are TF32's), then the bf16 mode's.
    backend_cuda_set_bf16_activations(gpu, 0);
    check_attention_cases();
    check_attention_bf16();
    bench_attention_bf16();

    gpu->ops->free(gpu);
    cpu->ops->free(cpu);
    return test_report("test_cuda_ops");
}
#endif
