// Attention on the CUDA backend at Moondream 2's real shapes, every path timed
// in the same run (TYCHO_CUDA_ATTENTION, src/backend/cuda/attention.h):
//   rows   the first kernel: a block per (query row, head), exact f32
//   split  the same kernel split over slices of keys when rows are few (decode)
//   gemm   tensor cores (TF32 GEMMs around an f32 softmax) for vision groups and
//          prefill sequences; split rows for the rest
//   flash  as gemm, with the fused kernel (attention_flash.cu) for head_dim 64 and 72
//   tc     the default: gemm or flash per att_flash_wins
// Each number is the median over REPS calls of device time between events on
// the backend's stream around one call (host work in the call, e.g. metadata
// uploads, counts where it leaves the GPU idle). Inputs are random.
// Build and run: bench/bench_cuda_attention.sh (after src/backend/cuda/build_test.sh).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"

enum { REPS = 25, WARMUP = 3, PAGE = 16 };

static ty_backend *gpu;
static uint64_t rng = 88172645463325252ull;

static float frand(void) {  // uniform in [-1, 1)
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) & 0xffffff) / (float)0x800000 - 1.0f;
}

static ty_tensor rand_tensor(int64_t rows, int64_t cols, float scale) {
    ty_err err;
    ty_tensor t;
    if (gpu->ops->alloc(gpu, &t, TY_DTYPE_F32, rows, cols, &err) != TY_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    float *h = (float *)malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++) h[i] = frand() * scale;
    gpu->ops->write(gpu, t, h);
    free(h);
    return t;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef void (*call_fn)(const void *ctx);

// Median ms of one call on the given path.
static float time_ms(const char *path, call_fn call, const void *ctx) {
    setenv("TYCHO_CUDA_ATTENTION", path, 1);
    cudaStream_t st = cuda_of(gpu)->stream;
    for (int i = 0; i < WARMUP; i++) call(ctx);
    cudaEvent_t ev[2 * REPS];
    for (int i = 0; i < 2 * REPS; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));
    for (int i = 0; i < REPS; i++) {
        CUDA_CHECK(cudaEventRecord(ev[2 * i], st));
        call(ctx);
        CUDA_CHECK(cudaEventRecord(ev[2 * i + 1], st));
    }
    CUDA_CHECK(cudaStreamSynchronize(st));
    float ms[REPS];
    for (int i = 0; i < REPS; i++) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
    for (int i = 0; i < 2 * REPS; i++) CUDA_CHECK(cudaEventDestroy(ev[i]));
    qsort(ms, REPS, sizeof ms[0], cmp_float);
    return ms[REPS / 2];
}

// ---- vision: groups of 729 rows, q/k/v column slices of one qkv tensor ----
typedef struct {
    ty_tensor qkv, out;
    int H, HD, group;
} dense_case;

static void dense_call(const void *p) {
    const dense_case *d = (const dense_case *)p;
    int W = d->H * d->HD;
    gpu->ops->attention_dense(gpu, d->out, tensor_cols(d->qkv, 0, W), tensor_cols(d->qkv, W, W),
                              tensor_cols(d->qkv, 2 * W, W), d->H, d->HD, 1.0f / sqrtf((float)d->HD), d->group);
}

static void bench_dense(int crops) {
    dense_case d;
    d.H = 16, d.HD = 72, d.group = 729;
    int R = crops * d.group, W = d.H * d.HD;
    d.qkv = rand_tensor(R, 3 * W, 1.0f);
    d.out = rand_tensor(R, W, 1.0f);
    double flops = 4.0 * crops * d.H * (double)d.group * d.group * d.HD;
    printf("vision  %2d crops x 729 rows, 16 heads, hd 72 (x27 layers):", crops);
    static const char *paths[] = {"rows", "split", "gemm", "flash"};
    for (int i = 0; i < 4; i++) {
        float ms = time_ms(paths[i], dense_call, &d);
        printf("  %s %.3f ms (%.1f/image, %.0f TFLOP/s)", paths[i], ms, 27 * ms, flops / ms * 1e-9);
        fflush(stdout);
    }
    printf("\n");
    gpu->ops->release(gpu, &d.qkv);
    gpu->ops->release(gpu, &d.out);
}

// ---- paged: sequences over a shared cache of random keys ----
typedef struct {
    ty_kv_layer kv;
    ty_tensor qkv, out;
    int H, KVH, HD;
    ty_batch b;
} paged_case;

static void paged_call(const void *p) {
    const paged_case *c = (const paged_case *)p;
    gpu->ops->attention(gpu, c->out, tensor_cols(c->qkv, 0, c->H * c->HD), &c->kv, c->H, c->KVH, c->HD,
                        1.0f / sqrtf((float)c->HD), &c->b);
}

// n_seqs sequences, each with `rows` query rows at the end of `keys` positions, prefix 730.
static void bench_paged(const char *label, int n_seqs, int rows, int keys, const char *const *paths, int n_paths,
                        int layers) {
    paged_case c;
    c.H = 32, c.KVH = 32, c.HD = 64;
    int W = c.KVH * c.HD, np = (keys + PAGE - 1) / PAGE, R = n_seqs * rows;
    c.kv.page_size = PAGE;
    c.kv.k = rand_tensor((int64_t)n_seqs * np * PAGE, W, 1.0f);
    c.kv.v = rand_tensor((int64_t)n_seqs * np * PAGE, W, 1.0f);
    c.qkv = rand_tensor(R, 3 * c.H * c.HD, 2.0f);
    c.out = rand_tensor(R, c.H * c.HD, 1.0f);
    int32_t *seq = (int32_t *)malloc((size_t)R * 4), *pos = (int32_t *)malloc((size_t)R * 4);
    int32_t *prefix = (int32_t *)malloc((size_t)n_seqs * 4), *kv_len = (int32_t *)malloc((size_t)n_seqs * 4);
    int32_t *pages = (int32_t *)malloc((size_t)n_seqs * np * 4);
    const int32_t **tables = (const int32_t **)malloc((size_t)n_seqs * sizeof *tables);
    for (int i = 0; i < n_seqs * np; i++) pages[i] = i;
    for (int i = n_seqs * np - 1; i > 0; i--) {  // scattered pages
        int j = (int)(rng % (uint64_t)(i + 1)), t = pages[i];
        frand();
        pages[i] = pages[j], pages[j] = t;
    }
    for (int s = 0, r = 0; s < n_seqs; s++) {
        prefix[s] = 730, kv_len[s] = keys, tables[s] = pages + s * np;
        for (int i = 0; i < rows; i++, r++) seq[r] = s, pos[r] = keys - rows + i;
    }
    memset(&c.b, 0, sizeof c.b);
    c.b.n_rows = R, c.b.seq = seq, c.b.pos = pos, c.b.n_seqs = n_seqs;
    c.b.prefix = prefix, c.b.kv_len = kv_len, c.b.pages = tables;
    printf("%-44s", label);
    for (int i = 0; i < n_paths; i++) {
        float ms = time_ms(paths[i], paged_call, &c);
        printf("  %s %.3f ms (%.2f/forward)", paths[i], ms, layers * ms);
        fflush(stdout);
    }
    printf("\n");
    gpu->ops->release(gpu, &c.kv.k), gpu->ops->release(gpu, &c.kv.v);
    gpu->ops->release(gpu, &c.qkv), gpu->ops->release(gpu, &c.out);
    free(seq), free(pos), free(prefix), free(kv_len), free(pages), free(tables);
}

int main(void) {
    ty_err err;
    if (backend_cuda_init(&gpu, 0, &err) != TY_OK) {
        fprintf(stderr, "bench_cuda_attention: %s\n", err.msg);
        return 1;
    }
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("%s, %d SMs; median of %d calls, ms per call (per image or forward: x layers)\n", prop.name,
           prop.multiProcessorCount, REPS);
    bench_dense(1);
    bench_dense(4);
    bench_dense(9);
    bench_dense(32);
    static const char *all[] = {"rows", "split", "gemm", "flash"}, *f32[] = {"rows", "split"},
                      *st[] = {"split", "gemm", "flash"};
    bench_paged("prefill: image prefix, 730 rows (x24)", 1, 730, 730, all, 4, 24);
    bench_paged("prefill: prefix + question, 752 rows (x24)", 1, 752, 752, all, 4, 24);
    // The tensor-core threshold: a question chunk after a cached prefix, split vs gemm and flash
    // (every row count on tensor cores here).
    setenv("TYCHO_CUDA_ATTENTION_PREFILL_ROWS", "1", 1);
    static const int chunk[] = {1, 2, 4, 8, 16, 32, 64};
    for (int i = 0; i < 7; i++) {
        char label[64];
        snprintf(label, sizeof label, "chunk after prefix: %d rows, 750 keys (x24)", chunk[i]);
        bench_paged(label, 1, chunk[i], 730 + 20, st, 3, 24);
    }
    unsetenv("TYCHO_CUDA_ATTENTION_PREFILL_ROWS");
    // Decode: split over keys until the launch has W blocks per SM (TYCHO_CUDA_ATTENTION_SPLIT_WAVES).
    static const char *waves[] = {"1", "2", "4", "8"};
    for (int w = 0; w < 4; w++) {
        setenv("TYCHO_CUDA_ATTENTION_SPLIT_WAVES", waves[w], 1);
        printf("split waves %s:\n", waves[w]);
        bench_paged("decode: batch 1, 800 keys (x24)", 1, 1, 800, f32, 2, 24);
        bench_paged("decode: batch 1, 2000 keys (x24)", 1, 1, 2000, f32, 2, 24);
        bench_paged("decode: batch 8, 800 keys (x24)", 8, 1, 800, f32, 2, 24);
        bench_paged("decode: batch 32, 800 keys (x24)", 32, 1, 800, f32, 2, 24);
    }
    unsetenv("TYCHO_CUDA_ATTENTION_SPLIT_WAVES");
    gpu->ops->free(gpu);
    return 0;
}
