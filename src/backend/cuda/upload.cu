// Host->device copies of the ops (batch metadata, cuda_write) through a ring of
// pinned host memory and a matching ring of device memory.
//
// What it guarantees: the host bytes go to pinned memory first (the copy is a
// DMA ordered on the stream like a kernel) and each upload gets device memory
// of its own, so no copy can overwrite metadata a queued kernel has yet to read
// (every op used to copy from pageable memory into one buffer at offset 0).
// The rings are split into chunks; leaving a chunk records an event, and a
// chunk is refilled only once its event (all the work queued while it was in
// use) has completed, so neither the CPU (pinned bytes a queued copy has yet to
// read) nor a copy (device bytes a queued kernel has yet to read) overwrites
// anything still needed.
//
// It is NOT what fixed the engine's batching failures (wrong golden answers
// under batching and the prefix cache on an H200, nondeterministic, once an
// illegal address), though it was committed as that (b595262): measured after,
// on the H200, aade9f7 with this ring still failed (3 of 3 runs, 4-10 cases,
// and TYCHO_DEBUG_SHADOW caught wrong vision embeddings in the first tower run
// that were right when run again), while b595262's tree with exactly the old
// uploads passed (3 runs and a shadow-checked run). What removed the failures
// lies in d3655b0 (GEMV for <= 8 rows), df16f2d or f3e8bc9 (vision on the
// device); the race itself is not found yet.
#include <string.h>

#include "backend/cuda/cuda.h"

enum { RING_CHUNK = 1 << 20, RING_ALIGN = 256 };

static cudaError_t ring_alloc(cuda_ring *r, size_t chunk) {
    r->chunk = chunk;
    r->cur = 0;
    r->used = 0;
    memset(r->pending, 0, sizeof r->pending);
    cudaError_t e = cudaHostAlloc((void **)&r->host, CUDA_RING_CHUNKS * chunk, cudaHostAllocDefault);
    if (e == cudaSuccess) e = cudaMalloc((void **)&r->dev, CUDA_RING_CHUNKS * chunk);
    return e;
}

cudaError_t cuda_upload_init(cuda_backend *c) {
    cuda_ring *r = &c->up;
    for (int i = 0; i < CUDA_RING_CHUNKS; i++) {
        cudaError_t e = cudaEventCreateWithFlags(&r->ev[i], cudaEventDisableTiming);
        if (e != cudaSuccess) return e;
    }
    return ring_alloc(r, RING_CHUNK);
}

void cuda_upload_free(cuda_backend *c) {
    cuda_ring *r = &c->up;
    if (r->host) cudaFreeHost(r->host);
    if (r->dev) cudaFree(r->dev);
    for (int i = 0; i < CUDA_RING_CHUNKS; i++)
        if (r->ev[i]) cudaEventDestroy(r->ev[i]);
    memset(r, 0, sizeof *r);
    for (int i = 0; i < CUDA_META_SITES; i++) free(c->meta[i].host);
    memset(c->meta, 0, sizeof c->meta);
}

// Byte offset of n fresh bytes in both rings (n <= chunk after a grow).
static size_t ring_take(cuda_backend *c, size_t n) {
    cuda_ring *r = &c->up;
    n = (n + RING_ALIGN - 1) / RING_ALIGN * RING_ALIGN;
    if (n > r->chunk) {  // rare: a larger ring, once the queued work is done
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        size_t chunk = r->chunk;
        while (chunk < n) chunk *= 2;
        CUDA_CHECK(cudaFreeHost(r->host));
        CUDA_CHECK(cudaFree(r->dev));
        CUDA_CHECK(ring_alloc(r, chunk));
        r->laps += CUDA_RING_CHUNKS;  // every earlier region is gone
    }
    if (r->used + n > r->chunk) {
        // Everything that reads this chunk is queued by now: mark it, move on, and wait
        // for the next chunk's last round of work to finish before reusing it.
        CUDA_CHECK(cudaEventRecord(r->ev[r->cur], c->stream));
        r->pending[r->cur] = 1;
        r->cur = (r->cur + 1) % CUDA_RING_CHUNKS;
        r->used = 0;
        r->laps++;
        if (r->pending[r->cur]) {
            CUDA_CHECK(cudaEventSynchronize(r->ev[r->cur]));
            r->pending[r->cur] = 0;
        }
    }
    size_t off = (size_t)r->cur * r->chunk + r->used;
    r->used += n;
    return off;
}

void *cuda_meta_upload(cuda_backend *c, const void *host, size_t n) {
    if (!n) return c->up.dev;
    size_t off = ring_take(c, n);
    memcpy(c->up.host + off, host, n);
    CUDA_CHECK(cudaMemcpyAsync(c->up.dev + off, c->up.host + off, n, cudaMemcpyHostToDevice, c->stream));
    return c->up.dev + off;
}

// A region taken at lap L is refilled when the ring enters its chunk again,
// CUDA_RING_CHUNKS laps later: until then the device bytes are what was uploaded.
const void *cuda_meta_upload_cached(cuda_backend *c, int site, const void *host, size_t n) {
    cuda_meta_cache *m = &c->meta[site];
    if (m->dev && n == m->n && c->up.laps - m->laps < CUDA_RING_CHUNKS && !memcmp(m->host, host, n)) return m->dev;
    if (n > m->cap) {
        void *p = realloc(m->host, n);
        if (!p) abort();
        m->host = p;
        m->cap = n;
    }
    const void *dev = cuda_meta_upload(c, host, n);
    memcpy(m->host, host, n);
    m->n = n;
    m->dev = dev;
    m->laps = c->up.laps;  // after the upload: it may have left a chunk
    return dev;
}

void cuda_upload_rows(cuda_backend *c, ty_tensor dst, const float *host) {
    size_t row = (size_t)dst.cols * sizeof(float);
    int64_t per = (int64_t)(RING_CHUNK / row);  // rows per piece: big writes (image patches) go in pieces
    if (per < 1) per = 1;
    for (int64_t r0 = 0; r0 < dst.rows; r0 += per) {
        int64_t n = dst.rows - r0 < per ? dst.rows - r0 : per;
        size_t off = ring_take(c, (size_t)n * row);
        memcpy(c->up.host + off, host + r0 * dst.cols, (size_t)n * row);
        // Pinned source: a DMA after the queued work (e.g. the zeroing of a fresh dst).
        CUDA_CHECK(cudaMemcpy2DAsync((float *)dst.data + r0 * dst.stride, (size_t)dst.stride * sizeof(float),
                                     c->up.host + off, row, row, (size_t)n, cudaMemcpyHostToDevice, c->stream));
    }
}
