// CUDA backend: f32 activations in device memory, weights uploaded once in
// their stored dtype, one stream per backend (ops are ordered on it; read
// waits for it), cuBLASLt for matmul and own kernels for the rest.
#include <string.h>

#include "backend/cuda/cuda.h"

extern "C" {
#include "core/half.h"
}

void *cuda_scratch_get(cuda_backend *c, cuda_scratch *s, size_t bytes) {
    if (bytes <= s->bytes) return s->p;
    size_t want = s->bytes * 2 > bytes ? s->bytes * 2 : bytes;
    if (s->p) {
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        CUDA_CHECK(cudaFree(s->p));
    }
    CUDA_CHECK(cudaMalloc(&s->p, want));
    s->bytes = want;
    return s->p;
}

static void track(cuda_backend *c, void *p, int pooled) {
    if (c->n_allocs == c->cap_allocs) {
        int cap = c->cap_allocs ? c->cap_allocs * 2 : 256;
        cuda_alloc_rec *a = (cuda_alloc_rec *)realloc(c->allocs, (size_t)cap * sizeof *a);
        if (!a) abort();
        c->allocs = a;
        c->cap_allocs = cap;
    }
    c->allocs[c->n_allocs++] = (cuda_alloc_rec){p, pooled};
}

// Activations are the newest allocations: the search from the end finds them at once.
static int untrack(cuda_backend *c, void *p, int *pooled) {
    for (int i = c->n_allocs - 1; i >= 0; i--)
        if (c->allocs[i].p == p) {
            *pooled = c->allocs[i].pooled;
            c->allocs[i] = c->allocs[--c->n_allocs];
            return 1;
        }
    return 0;
}

static void cuda_free_backend(ty_backend *be) {
    cuda_backend *c = cuda_of(be);
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int i = 0; i < c->n_allocs; i++)
        if (!c->allocs[i].pooled) cudaFree(c->allocs[i].p);
    free(c->allocs);
    if (c->pool) cudaMemPoolDestroy(c->pool);  // frees every pooled block still held
    cudaFree(c->act.p);
    cuda_upload_free(c);
    cudaFree(c->att.p);
    cudaFree(c->workspace);
    cuda_gemm_cache_free(c);
    if (c->lt) cublasLtDestroy(c->lt);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

// Weights (pool 0: plain cudaMalloc, kept for the backend's life) and
// activations (from the backend's stream-ordered pool: a release is
// cudaFreeAsync on the one stream, so the next forward reuses the memory
// without a device synchronisation or a driver call per buffer).
static ty_status dev_alloc(cuda_backend *c, void **p, size_t bytes, int pooled, ty_err *err) {
    CUDA_CHECK(cudaSetDevice(c->device));
    cudaError_t e = pooled ? cudaMallocFromPoolAsync(p, bytes ? bytes : 256, c->pool, c->stream)
                           : cudaMalloc(p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        cudaGetLastError();  // clear it: an allocation failure is the caller's to handle
        *p = NULL;
        return ty_err_set(err, TY_E_NOMEM, "cuda: cannot allocate %zu bytes on GPU %d: %s", bytes, c->device,
                          cudaGetErrorString(e));
    }
    track(c, *p, pooled);
    return TY_OK;
}

static ty_status cuda_alloc(ty_backend *be, ty_tensor *t, ty_dtype dtype, int64_t rows, int64_t cols, ty_err *err) {
    cuda_backend *c = cuda_of(be);
    memset(t, 0, sizeof *t);
    if (dtype != TY_DTYPE_F32) return ty_err_set(err, TY_E_UNSUPPORTED, "cuda: activations are f32");
    if (rows < 0 || cols < 0 || (cols && rows > INT64_MAX / 4 / cols))
        return ty_err_set(err, TY_E_ARG, "cuda: bad tensor shape (%lld, %lld)", (long long)rows, (long long)cols);
    size_t bytes = (size_t)(rows * cols) * sizeof(float);
    void *p;
    ty_status s = dev_alloc(c, &p, bytes, 1, err);
    if (s != TY_OK) return s;
    // Zeroed like the CPU backend's memory (a fresh KV cache reads as zeros).
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, c->stream));
    *t = (ty_tensor){.dtype = dtype, .rows = rows, .cols = cols, .stride = cols, .data = p};
    return TY_OK;
}

static void cuda_release(ty_backend *be, ty_tensor *t) {
    cuda_backend *c = cuda_of(be);
    int pooled;
    if (t->data && untrack(c, t->data, &pooled)) {
        CUDA_CHECK(cudaSetDevice(c->device));
        if (pooled) {
            CUDA_CHECK(cudaFreeAsync(t->data, c->stream));  // after the queued ops that read it
        } else {
            CUDA_CHECK(cudaStreamSynchronize(c->stream));  // ops queued on it may still read it
            cuda_gemm_forget(c, t->data, (size_t)(t->rows * t->stride) * dtype_size(t->dtype));  // its bias copy
            CUDA_CHECK(cudaFree(t->data));
        }
    }
    memset(t, 0, sizeof *t);
}

static ty_status cuda_weight(ty_backend *be, ty_tensor *t, ty_dtype dtype, int64_t rows, int64_t cols,
                             const void *host, ty_err *err) {
    cuda_backend *c = cuda_of(be);
    memset(t, 0, sizeof *t);
    if (dtype != TY_DTYPE_F32 && dtype != TY_DTYPE_BF16 && dtype != TY_DTYPE_F16)
        return ty_err_set(err, TY_E_UNSUPPORTED, "cuda: weights must be BF16, F16 or F32, not %s", dtype_name(dtype));
    if (rows < 0 || cols < 0 || (cols && rows > INT64_MAX / 4 / cols))
        return ty_err_set(err, TY_E_ARG, "cuda: bad weight shape (%lld, %lld)", (long long)rows, (long long)cols);
    size_t bytes = (size_t)(rows * cols) * dtype_size(dtype);
    void *p;
    ty_status s = dev_alloc(c, &p, bytes, 0, err);
    if (s != TY_OK) return s;
    // Uploaded once, synchronously: the host mapping may go away after this.
    CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    *t = (ty_tensor){.dtype = dtype, .rows = rows, .cols = cols, .stride = cols, .data = p};
    return TY_OK;
}

static void cuda_write(ty_backend *be, ty_tensor dst, const float *host) {
    cuda_backend *c = cuda_of(be);
    if (dst.rows == 0 || dst.cols == 0) return;
    CUDA_CHECK(cudaSetDevice(c->device));
    if (dst.dtype != TY_DTYPE_F32) {
        fprintf(stderr, "tycho cuda: write into a %s tensor (activations are f32)\n", dtype_name(dst.dtype));
        abort();
    }
    cuda_upload_rows(c, dst, host);  // through pinned memory (upload.cu: why)
}

static void cuda_read(ty_backend *be, ty_tensor src, float *host) {
    cuda_backend *c = cuda_of(be);
    if (src.rows == 0 || src.cols == 0) return;
    CUDA_CHECK(cudaSetDevice(c->device));
    size_t es = dtype_size(src.dtype);
    if (src.dtype == TY_DTYPE_F32) {
        CUDA_CHECK(cudaMemcpy2DAsync(host, (size_t)src.cols * 4, src.data, (size_t)src.stride * 4,
                                     (size_t)src.cols * 4, (size_t)src.rows, cudaMemcpyDeviceToHost, c->stream));
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        return;
    }
    // bf16/f16 (a weight): raw rows, converted here.
    uint16_t *raw = (uint16_t *)malloc((size_t)(src.rows * src.cols) * es);
    if (!raw) abort();
    CUDA_CHECK(cudaMemcpy2DAsync(raw, (size_t)src.cols * es, src.data, (size_t)src.stride * es, (size_t)src.cols * es,
                                 (size_t)src.rows, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    for (int64_t i = 0; i < src.rows * src.cols; i++)
        host[i] = src.dtype == TY_DTYPE_BF16 ? bf16_to_f32(raw[i]) : f16_to_f32(raw[i]);
    free(raw);
}

// The groups one after another on the stream: each is exactly cuda_matmul
// (the CPU needs the grouped form to share one round of its workers; a GPU
// launch is already asynchronous).
static void cuda_matmul_grouped(ty_backend *be, int n, const ty_matmul_group *groups) {
    for (int i = 0; i < n; i++) cuda_matmul_exact(be, groups[i].y, groups[i].x, groups[i].w, groups[i].bias, groups[i].act);
}

static void cuda_memory(ty_backend *be, size_t *used, size_t *total) {
    cuda_backend *c = cuda_of(be);
    size_t fr = 0, tot = 0;
    if (cudaSetDevice(c->device) != cudaSuccess || cudaMemGetInfo(&fr, &tot) != cudaSuccess) {
        cudaGetLastError();
        fr = tot = 0;
    }
    *used = tot - fr;
    *total = tot;
}

static const ty_backend_ops cuda_ops = {
    .name = "cuda",
    .free = cuda_free_backend,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .weight = cuda_weight,
    .write = cuda_write,
    .read = cuda_read,
    .matmul = cuda_matmul_exact,
    .matmul_grouped = cuda_matmul_grouped,
    .layernorm = cuda_layernorm,
    .add = cuda_add,
    .add_layernorm = cuda_add_layernorm,
    .embed = cuda_embed,
    .rope = cuda_rope,
    .kv_write = cuda_kv_write,
    .attention = cuda_attention,
    .attention_dense = cuda_attention_dense,
    .activate = cuda_activate_op,
    .scale_heads = cuda_scale_heads,
    .mul_plus_one = cuda_mul_plus_one,
    .rows_weighted_sum = cuda_rows_weighted_sum,
    .memory = cuda_memory,
    .patches = cuda_patches,
};

// The backend's own stream-ordered pool: freed blocks stay with it (release
// threshold: never give memory back between forwards).
static cudaError_t make_pool(cuda_backend *c) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = c->device;
    cudaError_t e = cudaMemPoolCreate(&c->pool, &props);
    if (e != cudaSuccess) {
        c->pool = NULL;
        return e;
    }
    uint64_t keep = UINT64_MAX;
    return cudaMemPoolSetAttribute(c->pool, cudaMemPoolAttrReleaseThreshold, &keep);
}

// The NVIDIA kernel driver's version ("580.65.06") from /proc, or "".
static void nvidia_driver(char *out, size_t cap) {
    out[0] = '\0';
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    char line[512];
    if (f && fgets(line, sizeof line, f)) {
        const char *k = strstr(line, "Kernel Module");
        // "... Kernel Module  580.65.06  ..." or "... Open Kernel Module for x86_64  580.65.06  ...".
        for (k = k ? k + strlen("Kernel Module") : NULL; k && *k && *k != '\n'; k += strcspn(k, " \t\n")) {
            k += strspn(k, " \t");
            if (*k >= '0' && *k <= '9') {
                snprintf(out, cap, "%.*s", (int)strcspn(k, " \t\n"), k);
                break;
            }
        }
    }
    if (f) fclose(f);
}

extern "C" void backend_cuda_device_name(int device, char *out, size_t cap) {
    out[0] = '\0';
    cudaDeviceProp prop;
    int cuda = 0;
    char driver[64];
    nvidia_driver(driver, sizeof driver);
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    cudaDriverGetVersion(&cuda);
    snprintf(out, cap, "%s, driver %s, CUDA %d.%d", prop.name, driver[0] ? driver : "?", cuda / 1000,
             cuda % 1000 / 10);
}

extern "C" int backend_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" ty_status backend_cuda_init(ty_backend **out, int device, ty_err *err) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        return ty_err_set(err, TY_E_UNSUPPORTED, "cuda: no GPU (%s)",
                          e != cudaSuccess ? cudaGetErrorString(e) : "no device");
    }
    if (device < 0 || device >= n)
        return ty_err_set(err, TY_E_ARG, "cuda: no GPU %d (this process sees %d)", device, n);
    cuda_backend *c = (cuda_backend *)calloc(1, sizeof *c);
    if (!c) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    c->base.ops = &cuda_ops;
    c->device = device;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc(&c->workspace, CUDA_LT_WORKSPACE)) != cudaSuccess || (e = make_pool(c)) != cudaSuccess ||
        (e = cuda_upload_init(c)) != cudaSuccess) {
        cudaGetLastError();
        cuda_free_backend(&c->base);
        return ty_err_set(err, TY_E_UNSUPPORTED, "cuda: cannot set up GPU %d: %s", device, cudaGetErrorString(e));
    }
    c->smem_optin = prop.sharedMemPerBlockOptin;
    if (cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS) {
        c->lt = NULL;
        cuda_free_backend(&c->base);
        return ty_err_set(err, TY_E_UNSUPPORTED, "cuda: cannot create a cuBLASLt handle");
    }
    cuda_profile_wrap(c);
    *out = &c->base;
    return TY_OK;
}
