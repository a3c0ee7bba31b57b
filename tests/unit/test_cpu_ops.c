// CPU backend ops on fresh random inputs: the SIMD kernels against the
// portable C kernels, and both against naive double-precision references
// (matmul with bias and activations over bf16/f16/f32 weights and odd sizes,
// the decode GEMV path, grouped matmul (MoE experts), LayerNorm, LayerNorm fused
// with the residual adds, RoPE, paged
// attention with a bidirectional prefix over a scattered page table, dense
// grouped attention, image patches from bytes); and batch invariance: each row's result bitwise the
// same however rows are batched.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "core/half.h"
#include "test.h"

static uint64_t rng_state;
static float frand(void) {  // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / (float)0x800000 - 1.0f;
}

static double max_rel(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double gelu_tanh(double x) { return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

// Random weights stored as `dtype` in w; wf gets the values the backend reads.
static void fill_weights(uint8_t *w, float *wf, size_t n, ty_dtype dtype) {
    for (size_t i = 0; i < n; i++) {
        float v = frand() * 0.2f;
        if (dtype == TY_DTYPE_BF16) {
            uint16_t h = f32_to_bf16(v);
            memcpy(w + i * 2, &h, 2);
            wf[i] = bf16_to_f32(h);
        } else if (dtype == TY_DTYPE_F16) {
            // f16 via bf16-exact values that f16 also represents: small integers over 1024
            float q = roundf(v * 1024) / 1024;
            uint16_t s = q < 0 ? 0x8000 : 0, h;
            float a = fabsf(q);
            if (a == 0) h = s;
            else {
                int e;
                float mnt = frexpf(a, &e);  // a = mnt * 2^e, mnt in [0.5, 1)
                int ex = e - 1 + 15;
                if (ex <= 0) h = s | (uint16_t)lrintf(a * 16777216.0f);  // subnormal: a / 2^-24
                else h = s | (uint16_t)(ex << 10) | (uint16_t)lrintf((mnt * 2 - 1) * 1024);
            }
            memcpy(w + i * 2, &h, 2);
            wf[i] = f16_to_f32(h);
        } else {
            memcpy(w + i * 4, &v, 4);
            wf[i] = v;
        }
    }
}

// Weights are stored as `dtype`; the reference uses the values the backend reads.
static void check_matmul(ty_backend *be, const char *name, int n, int k, int m, ty_dtype dtype, ty_activation act) {
    ty_err err;
    size_t es = dtype_size(dtype);
    uint8_t *w = malloc((size_t)m * k * es);
    float *wf = malloc((size_t)m * k * sizeof(float)), *x = malloc((size_t)n * k * sizeof(float));
    float bias[4096];
    fill_weights(w, wf, (size_t)m * k, dtype);
    for (int j = 0; j < m; j++) bias[j] = frand();
    for (size_t i = 0; i < (size_t)n * k; i++) x[i] = frand();
    ty_tensor tx, ty, tw, tb;
    be->ops->alloc(be, &tx, TY_DTYPE_F32, n, k, &err);
    be->ops->alloc(be, &ty, TY_DTYPE_F32, n, m, &err);
    be->ops->weight(be, &tw, dtype, m, k, w, &err);
    be->ops->weight(be, &tb, TY_DTYPE_F32, 1, m, bias, &err);
    be->ops->write(be, tx, x);
    be->ops->matmul(be, ty, tx, tw, &tb, act);
    float *got = malloc((size_t)n * m * sizeof(float));
    double *want = malloc((size_t)n * m * sizeof(double));
    be->ops->read(be, ty, got);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            double s = bias[j];
            for (int p = 0; p < k; p++) s += (double)x[(size_t)i * k + p] * wf[(size_t)j * k + p];
            want[(size_t)i * m + j] = act == TY_ACT_GELU_TANH ? gelu_tanh(s) : act == TY_ACT_GELU_ERF ? 0.5 * s * (1 + erf(s / sqrt(2))) : s;
        }
    double e = max_rel(got, want, (size_t)n * m);
    CHECK_MSG(e < 2e-6, "simd %d matmul %s n=%d k=%d m=%d act=%d: rel err %.3g", backend_cpu_simd(be), name, n, k, m, act, e);
    be->ops->release(be, &tx);
    be->ops->release(be, &ty);
    free(w);
    free(wf);
    free(x);
    free(got);
    free(want);
}

// y = matmul of n rows of x (n, k) into y (n, m), through the backend.
static void run_matmul(ty_backend *be, float *y, const float *x, int n, int k, ty_tensor w, const ty_tensor *bias,
                       ty_activation act) {
    ty_err err;
    ty_tensor tx, ty;
    be->ops->alloc(be, &tx, TY_DTYPE_F32, n, k, &err);
    be->ops->alloc(be, &ty, TY_DTYPE_F32, n, w.rows, &err);
    be->ops->write(be, tx, x);
    be->ops->matmul(be, ty, tx, w, bias, act);
    be->ops->read(be, ty, y);
    be->ops->release(be, &tx);
    be->ops->release(be, &ty);
}

// Batch invariance of matmul: every row of an n-row product is bitwise the row
// computed alone (the decode GEMV for bf16), in chunks of 3 rows, and at the
// mirrored position of the batch with its rows reversed. Called with k = 67
// (a tail after every family's lane count) and m = 45 (a partial panel), and
// k = 40, m = 150 (several of the decode GEMV's blocks of panels), and k = 40,
// m = 597 (38 panels: several panels per work item, the last group short).
static void check_matmul_invariance(ty_backend *be, const int K, const int M) {
    enum { NMAX = 17, KMAX = 67, MMAX = 16 * 37 + 5 };
    static const int ns[] = {1, 2, 3, 5, 8, 17};
    static const ty_dtype dtypes[] = {TY_DTYPE_BF16, TY_DTYPE_F16, TY_DTYPE_F32};
    static const ty_activation acts[] = {TY_ACT_NONE, TY_ACT_GELU_TANH, TY_ACT_GELU_ERF};
    ty_err err;
    if (K > KMAX || M > MMAX) abort();  // the static buffers below
    static uint8_t w[MMAX * KMAX * 4];
    static float wf[MMAX * KMAX], x[NMAX * KMAX], xr[NMAX * KMAX], full[NMAX * MMAX], part[NMAX * MMAX];
    float bias[MMAX];
    for (int j = 0; j < M; j++) bias[j] = frand();
    ty_tensor tb;
    be->ops->weight(be, &tb, TY_DTYPE_F32, 1, M, bias, &err);
    for (int di = 0; di < 3; di++) {
        fill_weights(w, wf, (size_t)M * K, dtypes[di]);
        ty_tensor tw;
        be->ops->weight(be, &tw, dtypes[di], M, K, w, &err);
        for (int ai = 0; ai < 3; ai++)
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                int n = ns[ni], bad_alone = 0, bad_split = 0, bad_rev = 0;
                for (int i = 0; i < n * K; i++) x[i] = frand() * 2;
                for (int i = 0; i < n; i++) memcpy(xr + (size_t)(n - 1 - i) * K, x + (size_t)i * K, K * sizeof(float));
                run_matmul(be, full, x, n, K, tw, &tb, acts[ai]);
                for (int i = 0; i < n; i++) {
                    run_matmul(be, part, x + (size_t)i * K, 1, K, tw, &tb, acts[ai]);
                    bad_alone += memcmp(part, full + (size_t)i * M, M * sizeof(float)) != 0;
                }
                for (int i0 = 0; i0 < n; i0 += 3) {
                    int c = n - i0 < 3 ? n - i0 : 3;
                    run_matmul(be, part, x + (size_t)i0 * K, c, K, tw, &tb, acts[ai]);
                    bad_split += memcmp(part, full + (size_t)i0 * M, (size_t)c * M * sizeof(float)) != 0;
                }
                run_matmul(be, part, xr, n, K, tw, &tb, acts[ai]);
                for (int i = 0; i < n; i++)
                    bad_rev += memcmp(part + (size_t)(n - 1 - i) * M, full + (size_t)i * M, M * sizeof(float)) != 0;
                CHECK_MSG(!bad_alone && !bad_split && !bad_rev,
                          "simd %d matmul invariance %s act %d n=%d: %d rows differ alone, %d chunks in 3s, %d reversed",
                          backend_cpu_simd(be), dtype_name(dtypes[di]), acts[ai], n, bad_alone, bad_split, bad_rev);
            }
    }
}

// matmul_grouped as a MoE layer uses it: row slices of one input against row
// blocks of one expert tensor, outputs in column halves of one buffer, mixed
// row counts (the decode GEMV for 1), activations, with and without bias.
// Each group bitwise equal to matmul alone, and within 2e-6 of double.
static void check_matmul_grouped(ty_backend *be, ty_dtype dtype) {
    enum { K = 67, R = 21, E = 5, G = 7, NMAX = 9 };
    static const int rows[G] = {1, 3, 0, 9, 1, 2, 5}, expert[G] = {0, 2, 1, 2, 4, 3, 0};
    static const ty_activation acts[G] = {TY_ACT_GELU_ERF, TY_ACT_NONE, TY_ACT_NONE, TY_ACT_GELU_TANH,
                                          TY_ACT_NONE, TY_ACT_GELU_ERF, TY_ACT_NONE};
    ty_err err;
    static uint8_t w[E * R * K * 4];
    static float wf[E * R * K], x[G * NMAX * K], got[G * NMAX * 2 * R], alone[NMAX * 2 * R];
    float bias[R];
    fill_weights(w, wf, (size_t)E * R * K, dtype);
    for (int j = 0; j < R; j++) bias[j] = frand();
    for (int i = 0; i < G * NMAX * K; i++) x[i] = frand() * 2;
    ty_tensor tw, tb, tx, ty, t1;
    be->ops->weight(be, &tw, dtype, E * R, K, w, &err);
    be->ops->weight(be, &tb, TY_DTYPE_F32, 1, R, bias, &err);
    be->ops->alloc(be, &tx, TY_DTYPE_F32, G * NMAX, K, &err);
    be->ops->alloc(be, &ty, TY_DTYPE_F32, G * NMAX, 2 * R, &err);  // group g writes half g % 2 of its rows
    be->ops->alloc(be, &t1, TY_DTYPE_F32, NMAX, R, &err);
    be->ops->write(be, tx, x);
    ty_matmul_group groups[G];
    for (int g = 0; g < G; g++)
        groups[g] = (ty_matmul_group){.y = tensor_cols(tensor_rows(ty, g * NMAX, rows[g]), (g % 2) * R, R),
                                      .x = tensor_rows(tx, g * NMAX, rows[g]),
                                      .w = tensor_rows(tw, expert[g] * R, R),
                                      .bias = g % 3 ? &tb : NULL,
                                      .act = acts[g]};
    be->ops->matmul_grouped(be, G, groups);
    be->ops->read(be, ty, got);
    int bad_alone = 0;
    double num = 0, den = 0;
    for (int g = 0; g < G; g++) {
        if (!rows[g]) continue;
        ty_tensor y1 = tensor_rows(t1, 0, rows[g]);
        be->ops->matmul(be, y1, groups[g].x, groups[g].w, groups[g].bias, groups[g].act);
        be->ops->read(be, y1, alone);
        for (int i = 0; i < rows[g]; i++) {
            const float *row = got + (size_t)(g * NMAX + i) * 2 * R + (g % 2) * R;
            bad_alone += memcmp(row, alone + (size_t)i * R, R * sizeof(float)) != 0;
            for (int j = 0; j < R; j++) {
                double acc = g % 3 ? bias[j] : 0;
                for (int p = 0; p < K; p++)
                    acc += (double)x[(size_t)(g * NMAX + i) * K + p] * wf[(size_t)(expert[g] * R + j) * K + p];
                double want = acts[g] == TY_ACT_GELU_TANH  ? gelu_tanh(acc)
                              : acts[g] == TY_ACT_GELU_ERF ? 0.5 * acc * (1 + erf(acc / sqrt(2)))
                                                           : acc;
                num += (row[j] - want) * (row[j] - want);
                den += want * want;
            }
        }
    }
    CHECK_MSG(!bad_alone, "simd %d matmul_grouped %s: %d rows differ from matmul alone", backend_cpu_simd(be),
              dtype_name(dtype), bad_alone);
    CHECK_MSG(sqrt(num / den) < 2e-6, "simd %d matmul_grouped %s: rel err %.3g", backend_cpu_simd(be),
              dtype_name(dtype), sqrt(num / den));
    be->ops->release(be, &tx);
    be->ops->release(be, &ty);
    be->ops->release(be, &t1);
}

static void check_layernorm_rope(ty_backend *be) {
    ty_err err;
    enum { N = 5, D = 96, H = 3, HD = 32 };
    float x[N * D], g[D], b[D], got[N * D];
    double want[N * D];
    for (int i = 0; i < N * D; i++) x[i] = frand() * 3 + 1;
    for (int i = 0; i < D; i++) g[i] = frand(), b[i] = frand();
    ty_tensor tx, ty, tg, tb;
    be->ops->alloc(be, &tx, TY_DTYPE_F32, N, D, &err);
    be->ops->alloc(be, &ty, TY_DTYPE_F32, N, D, &err);
    be->ops->weight(be, &tg, TY_DTYPE_F32, 1, D, g, &err);
    be->ops->weight(be, &tb, TY_DTYPE_F32, 1, D, b, &err);
    be->ops->write(be, tx, x);
    be->ops->layernorm(be, ty, tx, tg, tb, 1e-5f);
    be->ops->read(be, ty, got);
    for (int r = 0; r < N; r++) {
        double mu = 0, var = 0;
        for (int i = 0; i < D; i++) mu += x[r * D + i];
        mu /= D;
        for (int i = 0; i < D; i++) var += (x[r * D + i] - mu) * (x[r * D + i] - mu);
        var /= D;
        for (int i = 0; i < D; i++) want[r * D + i] = (x[r * D + i] - mu) / sqrt(var + 1e-5) * g[i] + b[i];
    }
    CHECK_MSG(max_rel(got, want, N * D) < 1e-6, "%s layernorm", be->ops->name);
    // RoPE over the first 32 dims of each 32-wide head, positions 0, 7, 100, 729, 2047.
    int32_t pos[N] = {0, 7, 100, 729, 2047}, seq[N] = {0};
    ty_batch batch = {.n_rows = N, .seq = seq, .pos = pos, .n_seqs = 1};
    be->ops->rope(be, tx, H, HD, 32, 10000.0f, &batch);
    be->ops->read(be, tx, got);
    for (int r = 0; r < N; r++)
        for (int h = 0; h < H; h++)
            for (int j = 0; j < 16; j++) {
                double ang = pos[r] * pow(10000.0, -2.0 * j / 32);
                double a = x[r * D + h * HD + j], c = x[r * D + h * HD + j + 16];
                want[r * D + h * HD + j] = a * cos(ang) - c * sin(ang);
                want[r * D + h * HD + j + 16] = a * sin(ang) + c * cos(ang);
            }
    CHECK_MSG(max_rel(got, want, N * D) < 1e-5, "%s rope", be->ops->name);
    be->ops->release(be, &tx);
    be->ops->release(be, &ty);
}

// Image patches from bytes: 2 images of 28x42 RGB, 14x14 patches (2 x 3 each),
// into columns [3, 3 + 588) of a wider tensor, against the index arithmetic
// written out; the columns outside stay untouched. Exact: a table lookup.
static void check_patches(ty_backend *be) {
    ty_err err;
    enum { N = 2, H = 28, W = 42, C = 3, P = 14, ROWS = N * (H / P) * (W / P), COLS = C * P * P, WIDE = COLS + 7 };
    static uint8_t px[N * H * W * C];
    static float lut[256], got[ROWS * WIDE];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(frand() * 128 + 128);
    for (int v = 0; v < 256; v++) lut[v] = frand();
    ty_tensor t;
    CHECK(be->ops->alloc(be, &t, TY_DTYPE_F32, ROWS, WIDE, &err) == TY_OK);
    for (int i = 0; i < ROWS * WIDE; i++) got[i] = -7.0f;
    be->ops->write(be, t, got);
    be->ops->patches(be, tensor_cols(t, 3, COLS), px, N, H, W, C, P, lut);
    be->ops->read(be, t, got);
    int bad = 0;
    for (int r = 0; r < ROWS; r++) {
        int img = r / 6, py = r % 6 / 3, pxl = r % 3;
        for (int col = 0; col < WIDE; col++) {
            float want = -7.0f;
            if (col >= 3 && col < 3 + COLS) {
                int k = col - 3, c = k / (P * P), dy = k / P % P, dx = k % P;
                want = lut[px[((img * H + py * P + dy) * W + pxl * P + dx) * C + c]];
            }
            bad += got[r * WIDE + col] != want;
        }
    }
    CHECK_MSG(bad == 0, "%s patches: %d values differ", be->ops->name, bad);
    be->ops->release(be, &t);
}

// add_layernorm: bitwise what add, add (when b is given), layernorm give on the
// same backend, for x and y: widths odd, of one element and across the norm's
// 256-element gamma chunks, bf16 and f32 gamma/beta, column views of wider
// rows, and y written over a (as the vision tower does).
static void check_add_layernorm(ty_backend *be) {
    ty_err err;
    enum { N = 6, W = 700, OFF = 3 };
    static const int widths[] = {1, 37, 256, 300, 651};
    static float x[N * W], a[N * W], b[N * W], ref_x[N * W], ref_y[N * W], got_x[N * W], got_y[N * W];
    static uint8_t g[W * 4], bt[W * 4];
    static float gf[W], btf[W];
    int bad = 0, cases = 0;
    for (int wi = 0; wi < (int)(sizeof widths / sizeof widths[0]); wi++)
        for (int c = 0; c < 8; c++) {
            int d = widths[wi], with_b = c & 1, view = c >> 1 & 1, alias = c >> 2 & 1;
            ty_dtype gdt = (wi + c) % 2 ? TY_DTYPE_BF16 : TY_DTYPE_F32;
            for (int i = 0; i < N * W; i++) x[i] = frand() * 3 + 1, a[i] = frand(), b[i] = frand() * 0.5f;
            fill_weights(g, gf, (size_t)d, gdt);
            fill_weights(bt, btf, (size_t)d, gdt);
            ty_tensor t[2][4], tg, tbt;  // [reference, fused][x, a, b, y]
            be->ops->weight(be, &tg, gdt, 1, d, g, &err);
            be->ops->weight(be, &tbt, gdt, 1, d, bt, &err);
            for (int k = 0; k < 2; k++)
                for (int i = 0; i < 4; i++) {
                    be->ops->alloc(be, &t[k][i], TY_DTYPE_F32, N, view ? W : d, &err);
                    be->ops->write(be, t[k][i], i == 0 ? x : i == 1 ? a : b);  // y starts as b: any garbage
                }
            ty_tensor v[2][4];
            for (int k = 0; k < 2; k++)
                for (int i = 0; i < 4; i++) v[k][i] = tensor_cols(t[k][i], view ? OFF : 0, d);
            ty_tensor *r = v[0], *f = v[1];
            ty_tensor ry = alias ? r[1] : r[3], fy = alias ? f[1] : f[3];
            be->ops->add(be, r[0], r[0], r[1]);
            if (with_b) be->ops->add(be, r[0], r[0], r[2]);
            be->ops->layernorm(be, ry, r[0], tg, tbt, 1e-5f);
            be->ops->add_layernorm(be, fy, f[0], f[1], with_b ? &f[2] : NULL, tg, tbt, 1e-5f);
            be->ops->read(be, r[0], ref_x), be->ops->read(be, ry, ref_y);
            be->ops->read(be, f[0], got_x), be->ops->read(be, fy, got_y);
            size_t bytes = (size_t)N * d * sizeof(float);
            if (memcmp(ref_x, got_x, bytes) || memcmp(ref_y, got_y, bytes)) {
                bad++;
                fprintf(stderr, "add_layernorm d=%d b %d view %d y=a %d %s: differs\n", d, with_b, view, alias,
                        dtype_name(gdt));
            }
            cases++;
            for (int k = 0; k < 2; k++)
                for (int i = 0; i < 4; i++) be->ops->release(be, &t[k][i]);
        }
    CHECK_MSG(!bad, "simd %d add_layernorm: %d of %d cases differ from add, add, layernorm", backend_cpu_simd(be), bad,
              cases);
}

// Two sequences in one batch: seq 0 prefills 9 rows with a 6-row bidirectional
// prefix; seq 1 decodes one row at position 12 over keys written earlier.
// hd 16 takes the generic kernels; hd 64 the register-resident decode kernel.
static void check_attention(ty_backend *be, const int HD) {
    ty_err err;
    enum { H = 2, KVH = 1, PAGE = 4, PAGES = 8, MAXHD = 64 };
    const int W = KVH * HD;
    int32_t pages0[3] = {5, 1, 6}, pages1[4] = {0, 7, 2, 3};
    const int32_t *tables[2] = {pages0, pages1};
    ty_kv_layer kv = {.page_size = PAGE};
    be->ops->alloc(be, &kv.k, TY_DTYPE_F32, PAGES * PAGE, W, &err);
    be->ops->alloc(be, &kv.v, TY_DTYPE_F32, PAGES * PAGE, W, &err);
    // Seq 1 history: positions 0..11 written by an earlier step.
    float hk[13][MAXHD], hv[13][MAXHD];
    for (int p = 0; p < 13; p++)
        for (int d = 0; d < W; d++) hk[p][d] = frand(), hv[p][d] = frand();
    {
        int32_t pos[12], seq[12];
        for (int p = 0; p < 12; p++) pos[p] = p, seq[p] = 1;
        int32_t prefix[2] = {6, 0}, kv_len[2] = {0, 12};
        ty_batch b = {.n_rows = 12, .seq = seq, .pos = pos, .n_seqs = 2, .prefix = prefix, .kv_len = kv_len, .pages = tables};
        ty_tensor tk, tv;
        be->ops->alloc(be, &tk, TY_DTYPE_F32, 12, W, &err);
        be->ops->alloc(be, &tv, TY_DTYPE_F32, 12, W, &err);
        float kbuf[12 * MAXHD], vbuf[12 * MAXHD];
        for (int p = 0; p < 12; p++)
            for (int d = 0; d < W; d++) kbuf[p * W + d] = hk[p][d], vbuf[p * W + d] = hv[p][d];
        be->ops->write(be, tk, kbuf);
        be->ops->write(be, tv, vbuf);
        be->ops->kv_write(be, &kv, tk, tv, &b);
        be->ops->release(be, &tk);
        be->ops->release(be, &tv);
    }
    enum { R = 10 };
    int32_t pos[R] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 12}, seq[R] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    int32_t prefix[2] = {6, 0}, kv_len[2] = {9, 13};
    ty_batch b = {.n_rows = R, .seq = seq, .pos = pos, .n_seqs = 2, .prefix = prefix, .kv_len = kv_len, .pages = tables};
    float q[R][H * MAXHD], k[R][MAXHD], v[R][MAXHD], got[R][H * MAXHD];
    double want[R][H * MAXHD];
    float qbuf[R * H * MAXHD], kbuf[R * MAXHD], vbuf[R * MAXHD], obuf[R * H * MAXHD];
    for (int r = 0; r < R; r++) {
        for (int d = 0; d < H * HD; d++) q[r][d] = frand();
        for (int d = 0; d < W; d++) k[r][d] = frand(), v[r][d] = frand();
    }
    memcpy(hk[12], k[R - 1], sizeof hk[12]);
    memcpy(hv[12], v[R - 1], sizeof hv[12]);
    ty_tensor tq, tk, tv, to;
    be->ops->alloc(be, &tq, TY_DTYPE_F32, R, H * HD, &err);
    be->ops->alloc(be, &tk, TY_DTYPE_F32, R, W, &err);
    be->ops->alloc(be, &tv, TY_DTYPE_F32, R, W, &err);
    be->ops->alloc(be, &to, TY_DTYPE_F32, R, H * HD, &err);
    for (int r = 0; r < R; r++) {
        for (int d = 0; d < H * HD; d++) qbuf[r * H * HD + d] = q[r][d];
        for (int d = 0; d < W; d++) kbuf[r * W + d] = k[r][d], vbuf[r * W + d] = v[r][d];
    }
    be->ops->write(be, tq, qbuf);
    be->ops->write(be, tk, kbuf);
    be->ops->write(be, tv, vbuf);
    be->ops->kv_write(be, &kv, tk, tv, &b);
    be->ops->attention(be, to, tq, &kv, H, KVH, HD, 0.25f, &b);
    be->ops->read(be, to, obuf);
    for (int r = 0; r < R; r++)
        for (int d = 0; d < H * HD; d++) got[r][d] = obuf[r * H * HD + d];
    for (int r = 0; r < R; r++) {
        int s = seq[r], p = pos[r];
        int visible = s == 0 ? (p < 6 ? 6 : p + 1) : p + 1;
        for (int h = 0; h < H; h++) {
            double sc[16], mx = -1e300, sum = 0;
            for (int t = 0; t < visible; t++) {
                const float *kt = s == 0 ? k[t] : hk[t];
                double d = 0;
                for (int i = 0; i < HD; i++) d += (double)q[r][h * HD + i] * kt[i];
                sc[t] = d * 0.25;
                mx = sc[t] > mx ? sc[t] : mx;
            }
            for (int t = 0; t < visible; t++) sum += sc[t] = exp(sc[t] - mx);
            for (int i = 0; i < HD; i++) {
                double o = 0;
                for (int t = 0; t < visible; t++) o += sc[t] / sum * (s == 0 ? v[t] : hv[t])[i];
                want[r][h * HD + i] = o;
            }
        }
    }
    double num = 0, den = 0;
    for (int r = 0; r < R; r++)
        for (int d = 0; d < H * HD; d++) {
            num += (got[r][d] - want[r][d]) * (got[r][d] - want[r][d]);
            den += want[r][d] * want[r][d];
        }
    CHECK_MSG(sqrt(num / den) < 1e-6, "simd %d paged attention hd %d: rel err %.3g", backend_cpu_simd(be), HD,
              sqrt(num / den));
    // Dense grouped attention: two groups of 5 rows, full attention within each.
    be->ops->attention_dense(be, to, tq, tk, tv, 1, HD, 0.25f, 5);
    be->ops->read(be, to, obuf);
    for (int r = 0; r < R; r++)
        for (int d = 0; d < H * HD; d++) got[r][d] = obuf[r * H * HD + d];
    for (int r = 0; r < R; r++) {
        int g0 = r / 5 * 5;
        double sc[5], mx = -1e300, sum = 0;
        for (int t = 0; t < 5; t++) {
            double d = 0;
            for (int i = 0; i < HD; i++) d += (double)q[r][i] * k[g0 + t][i];
            sc[t] = d * 0.25;
            mx = sc[t] > mx ? sc[t] : mx;
        }
        for (int t = 0; t < 5; t++) sum += sc[t] = exp(sc[t] - mx);
        for (int i = 0; i < HD; i++) {
            double o = 0;
            for (int t = 0; t < 5; t++) o += sc[t] / sum * v[g0 + t][i];
            CHECK_MSG(fabs(got[r][i] - o) < 1e-5, "%s dense attention row %d", be->ops->name, r);
        }
    }
    be->ops->release(be, &tq);
    be->ops->release(be, &tk);
    be->ops->release(be, &tv);
    be->ops->release(be, &to);
    be->ops->release(be, &kv.k);
    be->ops->release(be, &kv.v);
}

// Batch invariance of paged attention. Three sequences (bidirectional prefixes
// of 6, 0 and 17 positions, then causal rows) over scattered pages. Reference:
// every row of every sequence in one call. Then the same rows as chunked
// prefill does it, in chunks of 1, 3 and 5 rows: each sequence's prefix keys
// are written first and its prefix rows attend in chunks; then each chunk of
// causal rows writes its keys and attends to the cache so far (kv_len = the
// chunk's end). Once with each sequence alone, once with every sequence's next
// chunk in the same call (listed last sequence first). Every output row must
// be bitwise the reference's: chunks of up to 4 rows take the direct path,
// longer ones the blocked path, with other neighbours. Up to 150 keys wrap
// every family's lanes many times; 12 query heads share 4 kv heads.
enum { AI_SEQS = 3, AI_PAGE = 4, AI_PAGES = 64, AI_MAXLEN = 152, AI_MAXW = 4 * 72 };
static const int ai_len[AI_SEQS] = {23, 13, 150}, ai_prefix[AI_SEQS] = {6, 0, 17};
static int32_t ai_pages[AI_SEQS][AI_MAXLEN / AI_PAGE];
static float ai_q[AI_SEQS][AI_MAXLEN][AI_MAXW], ai_k[AI_SEQS][AI_MAXLEN][AI_MAXW], ai_v[AI_SEQS][AI_MAXLEN][AI_MAXW];
static float ai_ref[AI_SEQS][AI_MAXLEN][AI_MAXW], ai_got[AI_SEQS][AI_MAXLEN][AI_MAXW];

// Writes the K/V rows (s, p) for p in [p0[s], p1[s]) into the cache, or runs
// attention for those query rows into out, with the given kv_len per sequence.
static void ai_step(ty_backend *be, ty_kv_layer *kv, int attend, const int *p0, const int *p1, const int32_t *kv_len,
                    int h, int kvh, int hd, float (*out)[AI_MAXLEN][AI_MAXW]) {
    ty_err err;
    int32_t seq[AI_SEQS * AI_MAXLEN], pos[AI_SEQS * AI_MAXLEN], prefix[AI_SEQS];
    const int32_t *tables[AI_SEQS];
    static float buf[3][AI_SEQS * AI_MAXLEN * AI_MAXW];
    int r = 0, wq = h * hd, wk = kvh * hd;
    for (int s = AI_SEQS - 1; s >= 0; s--) {
        prefix[s] = ai_prefix[s];
        tables[s] = ai_pages[s];
        for (int p = p0[s]; p < p1[s]; p++, r++) {
            seq[r] = s;
            pos[r] = p;
            memcpy(buf[0] + (size_t)r * wq, ai_q[s][p], (size_t)wq * sizeof(float));
            memcpy(buf[1] + (size_t)r * wk, ai_k[s][p], (size_t)wk * sizeof(float));
            memcpy(buf[2] + (size_t)r * wk, ai_v[s][p], (size_t)wk * sizeof(float));
        }
    }
    if (r == 0) return;
    ty_batch b = {.n_rows = r, .seq = seq, .pos = pos, .n_seqs = AI_SEQS, .prefix = prefix, .kv_len = kv_len,
                  .pages = tables};
    ty_tensor tq, tk, tv, to;
    be->ops->alloc(be, &tq, TY_DTYPE_F32, r, wq, &err);
    be->ops->alloc(be, &tk, TY_DTYPE_F32, r, wk, &err);
    be->ops->alloc(be, &tv, TY_DTYPE_F32, r, wk, &err);
    be->ops->alloc(be, &to, TY_DTYPE_F32, r, wq, &err);
    be->ops->write(be, tq, buf[0]);
    be->ops->write(be, tk, buf[1]);
    be->ops->write(be, tv, buf[2]);
    if (!attend) {
        be->ops->kv_write(be, kv, tk, tv, &b);
    } else {
        be->ops->attention(be, to, tq, kv, h, kvh, hd, 0.3f, &b);
        be->ops->read(be, to, buf[0]);
        for (int i = 0; i < r; i++) memcpy(out[seq[i]][pos[i]], buf[0] + (size_t)i * wq, (size_t)wq * sizeof(float));
    }
    be->ops->release(be, &tq);
    be->ops->release(be, &tk);
    be->ops->release(be, &tv);
    be->ops->release(be, &to);
}

static void check_attention_invariance(ty_backend *be, int h, int kvh, int hd) {
    ty_err err;
    // Scattered pages: sequence s owns pages perm[off_s ...].
    int perm[AI_PAGES];
    for (int i = 0; i < AI_PAGES; i++) perm[i] = (i * 7 + 3) % AI_PAGES;
    for (int s = 0, off = 0; s < AI_SEQS; s++)
        for (int i = 0; i < (ai_len[s] + AI_PAGE - 1) / AI_PAGE; i++) ai_pages[s][i] = perm[off++];
    for (int s = 0; s < AI_SEQS; s++)
        for (int p = 0; p < ai_len[s]; p++)
            for (int d = 0; d < h * hd; d++) {
                ai_q[s][p][d] = frand() * 2;
                ai_k[s][p][d] = frand();
                ai_v[s][p][d] = frand();
            }
    ty_kv_layer kv = {.page_size = AI_PAGE};
    be->ops->alloc(be, &kv.k, TY_DTYPE_F32, AI_PAGES * AI_PAGE, kvh * hd, &err);
    be->ops->alloc(be, &kv.v, TY_DTYPE_F32, AI_PAGES * AI_PAGE, kvh * hd, &err);
    int zero[AI_SEQS] = {0}, len[AI_SEQS];
    int32_t kv_len[AI_SEQS];
    for (int s = 0; s < AI_SEQS; s++) len[s] = kv_len[s] = ai_len[s];
    ai_step(be, &kv, 0, zero, len, kv_len, h, kvh, hd, NULL);
    ai_step(be, &kv, 1, zero, len, kv_len, h, kvh, hd, ai_ref);
    static const int chunks[] = {1, 3, 5};
    for (int ci = 0; ci < 3; ci++)
        for (int together = 0; together < 2; together++) {
            int c = chunks[ci];
            float *kz = kv.k.data, *vz = kv.v.data;  // a fresh cache
            memset(kz, 0, (size_t)AI_PAGES * AI_PAGE * kvh * hd * sizeof(float));
            memset(vz, 0, (size_t)AI_PAGES * AI_PAGE * kvh * hd * sizeof(float));
            memset(ai_got, 0xff, sizeof ai_got);
            for (int s0 = 0; s0 < AI_SEQS; s0++) {
                // The sequences of this pass: all of them together, or s0 alone.
                int lo = together ? 0 : s0, hi = together ? AI_SEQS : s0 + 1;
                int p0[AI_SEQS] = {0}, p1[AI_SEQS] = {0};
                for (int s = lo; s < hi; s++) p1[s] = kv_len[s] = ai_prefix[s];
                ai_step(be, &kv, 0, p0, p1, kv_len, h, kvh, hd, NULL);  // prefix keys
                for (int start = 0;; start += c) {  // prefix rows in chunks
                    int any = 0;
                    for (int s = 0; s < AI_SEQS; s++) {
                        int in = s >= lo && s < hi && start < ai_prefix[s];
                        p0[s] = in ? start : 0;
                        p1[s] = !in ? 0 : start + c < ai_prefix[s] ? start + c : ai_prefix[s];
                        any |= in;
                    }
                    if (!any) break;
                    ai_step(be, &kv, 1, p0, p1, kv_len, h, kvh, hd, ai_got);
                }
                for (int start = 0;; start += c) {  // causal rows in chunks: keys, then queries
                    int any = 0;
                    for (int s = 0; s < AI_SEQS; s++) {
                        p0[s] = p1[s] = 0;
                        int b0 = ai_prefix[s] + start;
                        if (s >= lo && s < hi && b0 < ai_len[s]) {
                            p0[s] = b0;
                            p1[s] = kv_len[s] = b0 + c < ai_len[s] ? b0 + c : ai_len[s];
                            any = 1;
                        }
                    }
                    if (!any) break;
                    ai_step(be, &kv, 0, p0, p1, kv_len, h, kvh, hd, NULL);
                    ai_step(be, &kv, 1, p0, p1, kv_len, h, kvh, hd, ai_got);
                }
                if (together) break;
            }
            int bad = 0, first_s = -1, first_p = -1;
            for (int s = 0; s < AI_SEQS; s++)
                for (int p = 0; p < ai_len[s]; p++)
                    if (memcmp(ai_got[s][p], ai_ref[s][p], (size_t)h * hd * sizeof(float)) != 0) {
                        if (!bad++) first_s = s, first_p = p;
                    }
            CHECK_MSG(!bad, "simd %d attention invariance h %d kvh %d hd %d, chunks of %d%s: %d rows differ (first: seq %d pos %d)",
                      backend_cpu_simd(be), h, kvh, hd, c, together ? " together" : " alone", bad, first_s, first_p);
        }
    be->ops->release(be, &kv.k);
    be->ops->release(be, &kv.v);
}

int main(void) {
    rng_state = (uint64_t)time(NULL);  // fresh inputs every run
    fprintf(stderr, "seed %llu\n", (unsigned long long)rng_state);
    ty_err err;
    // Every kernel family this CPU has, each against the same references.
    ty_backend *bes[4];
    for (int i = 0; i < 4; i++) {
        CHECK(backend_cpu_init_simd(&bes[i], 2 + i % 2, (ty_cpu_simd)i, &err) == TY_OK);
        fprintf(stderr, "backend %d runs kernel family %d\n", i, backend_cpu_simd(bes[i]));
    }
    for (int i = 0; i < 4; i++) {
        ty_backend *be = bes[i];
        check_matmul(be, "bf16", 7, 37, 19, TY_DTYPE_BF16, TY_ACT_NONE);
        check_matmul(be, "bf16 gelu", 13, 64, 40, TY_DTYPE_BF16, TY_ACT_GELU_TANH);
        check_matmul(be, "bf16 gemv", 1, 100, 33, TY_DTYPE_BF16, TY_ACT_NONE);
        check_matmul(be, "bf16 gemv erf", 1, 2048, 70, TY_DTYPE_BF16, TY_ACT_GELU_ERF);
        check_matmul(be, "f16", 5, 48, 17, TY_DTYPE_F16, TY_ACT_NONE);
        check_matmul(be, "f32", 4, 9, 3, TY_DTYPE_F32, TY_ACT_GELU_TANH);
        check_matmul(be, "f32 gemv", 1, 300, 65, TY_DTYPE_F32, TY_ACT_NONE);
        check_matmul(be, "large", 70, 333, 130, TY_DTYPE_BF16, TY_ACT_NONE);
        // 38 panels: several panels per work item (gemm.c's groups), the last group and panel short
        check_matmul(be, "panel groups", 9, 40, 16 * 37 + 5, TY_DTYPE_BF16, TY_ACT_GELU_TANH);
        check_matmul_grouped(be, TY_DTYPE_BF16);
        check_matmul_grouped(be, TY_DTYPE_F32);
        check_layernorm_rope(be);
        check_add_layernorm(be);
        check_patches(be);
        check_attention(be, 16);
        check_attention(be, 64);
        check_matmul_invariance(be, 67, 45);
        check_matmul_invariance(be, 40, 150);
        check_matmul_invariance(be, 40, 16 * 37 + 5);
        check_attention_invariance(be, 12, 4, 16);
        check_attention_invariance(be, 4, 1, 64);
        check_attention_invariance(be, 2, 2, 72);
    }
    for (int i = 0; i < 4; i++) bes[i]->ops->free(bes[i]);
    return test_report("test_cpu_ops");
}
