// CPU backend: f32 activations in host memory, weights read in place in their
// stored dtype, a thread pool of its own, SIMD kernels picked at init.
#include "backend/cpu/cpu.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

void cpu_convert_row(float *dst, const void *src, ty_dtype dtype, int64_t n) {
    switch (dtype) {
    case TY_DTYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case TY_DTYPE_BF16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
        break;
    }
    case TY_DTYPE_F16: {
        const uint16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
        break;
    }
    default: memset(dst, 0, (size_t)n * sizeof(float)); break;
    }
}

static void cpu_free(ty_backend *be) {
    cpu_backend *c = cpu_of(be);
    pool_free(c->pool);
    free(c);
}

// Large buffers (the KV cache above all) come from mmap: zero pages the kernel
// maps on first touch, so a generous KV budget costs memory only as it fills.
enum { MMAP_MIN_BYTES = 4 << 20 };

static size_t tensor_bytes(const ty_tensor *t) { return (size_t)(t->rows * t->cols) * sizeof(float); }

static ty_status cpu_alloc(ty_backend *be, ty_tensor *t, ty_dtype dtype, int64_t rows, int64_t cols, ty_err *err) {
    memset(t, 0, sizeof *t);
    if (dtype != TY_DTYPE_F32) return ty_err_set(err, TY_E_UNSUPPORTED, "cpu: activations are f32");
    if (rows < 0 || cols < 0 || (cols && rows > INT64_MAX / 4 / cols))
        return ty_err_set(err, TY_E_ARG, "cpu: bad tensor shape (%lld, %lld)", (long long)rows, (long long)cols);
    size_t bytes = (size_t)(rows * cols) * sizeof(float);
    void *p = NULL;
    if (bytes >= MMAP_MIN_BYTES) {
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return ty_err_set(err, TY_E_NOMEM, "cpu: cannot map %zu bytes", bytes);
    } else {
        // 64-byte aligned so SIMD rows start on cache lines when cols allows.
        if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
            return ty_err_set(err, TY_E_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
        memset(p, 0, bytes);
    }
    *t = (ty_tensor){.dtype = dtype, .rows = rows, .cols = cols, .stride = cols, .data = p};
    return TY_OK;
}

static void cpu_release(ty_backend *be, ty_tensor *t) {
    if (t->data && tensor_bytes(t) >= MMAP_MIN_BYTES) munmap(t->data, tensor_bytes(t));
    else free(t->data);
    memset(t, 0, sizeof *t);
}

static ty_status cpu_weight(ty_backend *be, ty_tensor *t, ty_dtype dtype, int64_t rows, int64_t cols,
                            const void *host, ty_err *err) {
    if (dtype != TY_DTYPE_F32 && dtype != TY_DTYPE_BF16 && dtype != TY_DTYPE_F16)
        return ty_err_set(err, TY_E_UNSUPPORTED, "cpu: weights must be BF16, F16 or F32, not %s", dtype_name(dtype));
    // Used in place: the mapping outlives the backend's use of it (the model owns both).
    *t = (ty_tensor){.dtype = dtype, .rows = rows, .cols = cols, .stride = cols, .data = (void *)host};
    return TY_OK;
}

static void cpu_write(ty_backend *be, ty_tensor dst, const float *host) {
    for (int64_t r = 0; r < dst.rows; r++) memcpy(cpu_row(dst, r), host + r * dst.cols, (size_t)dst.cols * 4);
}

static void cpu_read(ty_backend *be, ty_tensor src, float *host) {
    for (int64_t r = 0; r < src.rows; r++) {
        const char *row = (const char *)src.data + (size_t)(r * src.stride) * dtype_size(src.dtype);
        cpu_convert_row(host + r * src.cols, row, src.dtype, src.cols);
    }
}

static const ty_backend_ops cpu_ops = {
    .name = "cpu",
    .free = cpu_free,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .weight = cpu_weight,
    .write = cpu_write,
    .read = cpu_read,
    .matmul = cpu_matmul,
    .matmul_grouped = cpu_matmul_grouped,
    .layernorm = cpu_layernorm,
    .add = cpu_add,
    .add_layernorm = cpu_add_layernorm,
    .embed = cpu_embed,
    .activate = cpu_activate,
    .scale_heads = cpu_scale_heads,
    .mul_plus_one = cpu_mul_plus_one,
    .rows_weighted_sum = cpu_rows_weighted_sum,
    .rope = cpu_rope,
    .kv_write = cpu_kv_write,
    .attention = cpu_attention,
    .attention_dense = cpu_attention_dense,
    .patches = cpu_patches,
};

ty_status backend_cpu_init_simd(ty_backend **out, int n_threads, ty_cpu_simd max_simd, ty_err *err) {
    *out = NULL;
    cpu_backend *c = calloc(1, sizeof *c);
    if (!c) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    c->base.ops = &cpu_ops;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    ty_cpu_simd best = TY_CPU_PORTABLE;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = TY_CPU_AVX2;
    if (best == TY_CPU_AVX2 && __builtin_cpu_supports("avx512f")) best = TY_CPU_AVX512;
    c->simd = best < max_simd ? best : max_simd;
#elif defined(__aarch64__)
    c->simd = max_simd == TY_CPU_PORTABLE ? TY_CPU_PORTABLE : TY_CPU_NEON;  // every arm64 CPU has NEON
#endif
    ty_status s = pool_init(&c->pool, n_threads, err);
    if (s != TY_OK) {
        free(c);
        return s;
    }
    *out = &c->base;
    return TY_OK;
}

ty_status backend_cpu_init(ty_backend **out, int n_threads, ty_err *err) {
    return backend_cpu_init_simd(out, n_threads, TY_CPU_NEON, err);
}

ty_cpu_simd backend_cpu_simd(const ty_backend *be) { return ((const cpu_backend *)be)->simd; }
