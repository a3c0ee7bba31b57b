// TYCHO_CUDA_PROFILE=1: where a CUDA backend's time goes, op by op. Every op
// is bracketed by two CUDA events on the stream (its GPU time) and by the host
// clock (the CPU time spent issuing it: launches, cuBLASLt, metadata, copies);
// totals per op kind are printed to stderr when the backend is freed. GPU
// time summed over ops against the wall time shows how long the GPU idled
// waiting for the host. A developer's tool: it adds two event records per op.
#include <string.h>
#include <time.h>

#include "backend/cuda/cuda.h"

enum { PROF_KINDS = 24, PROF_PENDING = 8192 };

typedef struct {
    const char *name;
    long calls;
    double gpu_ms, host_ms;
} prof_kind;

struct cuda_profile {
    const ty_backend_ops *real;
    ty_backend_ops wrapped;  // real's entries with the timed ones in place
    prof_kind kinds[PROF_KINDS];
    int n_kinds;
    cudaEvent_t ev[2 * PROF_PENDING];
    int pending_kind[PROF_PENDING], n_pending, n_events;
    double t_first, t_last;  // host clock of the first and the last op (ms)
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int kind_of(cuda_profile *p, const char *name) {
    for (int i = 0; i < p->n_kinds; i++)
        if (!strcmp(p->kinds[i].name, name)) return i;
    if (p->n_kinds == PROF_KINDS) return PROF_KINDS - 1;
    p->kinds[p->n_kinds].name = name;
    return p->n_kinds++;
}

// Waits for the recorded events and adds their GPU times.
static void drain(cuda_profile *p) {
    for (int i = 0; i < p->n_pending; i++) {
        float ms = 0;
        CUDA_CHECK(cudaEventSynchronize(p->ev[2 * i + 1]));
        CUDA_CHECK(cudaEventElapsedTime(&ms, p->ev[2 * i], p->ev[2 * i + 1]));
        p->kinds[p->pending_kind[i]].gpu_ms += ms;
    }
    p->n_pending = 0;
}

typedef struct {
    cuda_profile *p;
    int kind, slot;
    double t0;
} prof_op;

static prof_op op_begin(ty_backend *be, const char *name) {
    cuda_backend *c = cuda_of(be);
    cuda_profile *p = c->prof;
    if (p->n_pending == PROF_PENDING) drain(p);
    int slot = p->n_pending++;
    for (; p->n_events <= 2 * slot + 1; p->n_events++) CUDA_CHECK(cudaEventCreate(&p->ev[p->n_events]));
    prof_op o = {p, kind_of(p, name), slot, now_ms()};
    if (!p->t_first) p->t_first = o.t0;
    p->pending_kind[slot] = o.kind;
    CUDA_CHECK(cudaEventRecord(p->ev[2 * slot], c->stream));
    return o;
}

static void op_end(ty_backend *be, prof_op o) {
    CUDA_CHECK(cudaEventRecord(o.p->ev[2 * o.slot + 1], cuda_of(be)->stream));
    double t = now_ms();
    o.p->kinds[o.kind].calls++;
    o.p->kinds[o.kind].host_ms += t - o.t0;
    o.p->t_last = t;
}

#define REAL cuda_of(be)->prof->real
static void p_write(ty_backend *be, ty_tensor dst, const float *host) {
    prof_op o = op_begin(be, "write");
    REAL->write(be, dst, host);
    op_end(be, o);
}
static void p_read(ty_backend *be, ty_tensor src, float *host) {
    prof_op o = op_begin(be, "read");
    REAL->read(be, src, host);
    op_end(be, o);
}
static void p_patches(ty_backend *be, ty_tensor y, const uint8_t *px, int n, int h, int w, int ch, int p,
                      const float lut[256]) {
    prof_op o = op_begin(be, "patches");
    REAL->patches(be, y, px, n, h, w, ch, p, lut);
    op_end(be, o);
}
static void p_matmul(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor w, const ty_tensor *bias, ty_activation act) {
    prof_op o = op_begin(be, x.rows <= 64 ? "matmul n<=64" : x.rows <= 1024 ? "matmul n<=1024" : "matmul n>1024");
    REAL->matmul(be, y, x, w, bias, act);
    op_end(be, o);
}
static void p_matmul_grouped(ty_backend *be, int n, const ty_matmul_group *g) {
    prof_op o = op_begin(be, "matmul_grouped");
    REAL->matmul_grouped(be, n, g);
    op_end(be, o);
}
static void p_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor g, ty_tensor b, float eps) {
    prof_op o = op_begin(be, "layernorm");
    REAL->layernorm(be, y, x, g, b, eps);
    op_end(be, o);
}
static void p_add_layernorm(ty_backend *be, ty_tensor y, ty_tensor x, ty_tensor a, const ty_tensor *b, ty_tensor g,
                            ty_tensor beta, float eps) {
    prof_op o = op_begin(be, "add_layernorm");
    REAL->add_layernorm(be, y, x, a, b, g, beta, eps);
    op_end(be, o);
}
static void p_add(ty_backend *be, ty_tensor y, ty_tensor a, ty_tensor b) {
    prof_op o = op_begin(be, "add");
    REAL->add(be, y, a, b);
    op_end(be, o);
}
static void p_embed(ty_backend *be, ty_tensor y, ty_tensor t, const int32_t *ids) {
    prof_op o = op_begin(be, "embed");
    REAL->embed(be, y, t, ids);
    op_end(be, o);
}
static void p_rope(ty_backend *be, ty_tensor x, int nh, int hd, int rd, float th, const ty_batch *b) {
    prof_op o = op_begin(be, "rope");
    REAL->rope(be, x, nh, hd, rd, th, b);
    op_end(be, o);
}
static void p_kv_write(ty_backend *be, ty_kv_layer *kv, ty_tensor k, ty_tensor v, const ty_batch *b) {
    prof_op o = op_begin(be, "kv_write");
    REAL->kv_write(be, kv, k, v, b);
    op_end(be, o);
}
static void p_attention(ty_backend *be, ty_tensor out, ty_tensor q, const ty_kv_layer *kv, int nh, int nkv, int hd,
                        float scale, const ty_batch *b) {
    prof_op o = op_begin(be, q.rows <= 64 ? "attention n<=64" : "attention n>64");
    REAL->attention(be, out, q, kv, nh, nkv, hd, scale, b);
    op_end(be, o);
}
static void p_attention_dense(ty_backend *be, ty_tensor out, ty_tensor q, ty_tensor k, ty_tensor v, int nh, int hd,
                              float scale, int group) {
    prof_op o = op_begin(be, "attention_dense");
    REAL->attention_dense(be, out, q, k, v, nh, hd, scale, group);
    op_end(be, o);
}
static ty_status p_alloc(ty_backend *be, ty_tensor *t, ty_dtype dt, int64_t r, int64_t cols, ty_err *err) {
    prof_op o = op_begin(be, "alloc");
    ty_status s = REAL->alloc(be, t, dt, r, cols, err);
    op_end(be, o);
    return s;
}
static void p_release(ty_backend *be, ty_tensor *t) {
    prof_op o = op_begin(be, "release");
    REAL->release(be, t);
    op_end(be, o);
}

static void p_free(ty_backend *be) {
    cuda_backend *c = cuda_of(be);
    cuda_profile *p = c->prof;
    drain(p);
    double gpu = 0, host = 0, wall = p->t_last - p->t_first;
    for (int i = 0; i < p->n_kinds; i++) gpu += p->kinds[i].gpu_ms, host += p->kinds[i].host_ms;
    fprintf(stderr, "tycho cuda profile (GPU %d): %.1f ms from the first op to the last; GPU busy in ops %.1f ms (%.0f%%), "
                    "host issuing ops %.1f ms\n", c->device, wall, gpu, wall > 0 ? 100 * gpu / wall : 0, host);
    fprintf(stderr, "  %-18s %9s %11s %9s %11s %9s\n", "op", "calls", "GPU ms", "GPU us/op", "host ms", "host us/op");
    for (int i = 0; i < p->n_kinds; i++) {
        prof_kind *k = &p->kinds[i];
        fprintf(stderr, "  %-18s %9ld %11.2f %9.1f %11.2f %9.1f\n", k->name, k->calls, k->gpu_ms,
                k->calls ? 1e3 * k->gpu_ms / k->calls : 0, k->host_ms, k->calls ? 1e3 * k->host_ms / k->calls : 0);
    }
    for (int i = 0; i < p->n_events; i++) cudaEventDestroy(p->ev[i]);
    const ty_backend_ops *real = p->real;
    free(p);
    c->prof = NULL;
    real->free(be);
}

void cuda_profile_wrap(cuda_backend *c) {
    const char *e = getenv("TYCHO_CUDA_PROFILE");
    if (!e || !*e || !strcmp(e, "0")) return;
    cuda_profile *p = (cuda_profile *)calloc(1, sizeof *p);
    if (!p) return;
    p->real = c->base.ops;
    ty_backend_ops *ops = &p->wrapped;
    *ops = *p->real;
    ops->free = p_free;
    ops->write = p_write;
    ops->read = p_read;
    ops->patches = p_patches;
    ops->matmul = p_matmul;
    ops->matmul_grouped = p_matmul_grouped;
    ops->layernorm = p_layernorm;
    ops->add = p_add;
    ops->add_layernorm = p_add_layernorm;
    ops->embed = p_embed;
    ops->rope = p_rope;
    ops->kv_write = p_kv_write;
    ops->attention = p_attention;
    ops->attention_dense = p_attention_dense;
    ops->alloc = p_alloc;
    ops->release = p_release;
    c->prof = p;
    c->base.ops = ops;
}
