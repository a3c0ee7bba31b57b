// Safetensors checkpoints, read in place: every file is mmapped read-only and
// tensors point into the mapping in their stored dtype (nothing is expanded).
//
// A checkpoint is one .safetensors file, a sharded set described by
// model.safetensors.index.json, or a directory holding either. Every header is
// validated before any tensor is handed out: header length bound, JSON shape,
// known dtypes, shape x dtype size == byte length (overflow-checked), offsets
// inside the data area and tiling it exactly (no overlap, no gap, as the
// reference `safetensors` library requires), unique names.
#ifndef TYCHO_IO_SAFETENSORS_H
#define TYCHO_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/err.h"

#define SAFETENSORS_MAX_DIMS 8
#define SAFETENSORS_MAX_HEADER ((uint64_t)100 << 20)  // the reference library's bound
#define SAFETENSORS_MAX_INDEX_BYTES ((size_t)64 << 20)

typedef struct {
    char *name;
    ty_dtype dtype;
    int n_dims;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    int64_t n_elements;
    const void *data;  // inside the mapping; aligned only as the file happens to be (see safetensors_is_aligned)
    size_t n_bytes;
    int shard;         // which file of the checkpoint holds it
} safetensors_tensor;

typedef struct safetensors safetensors;

// path: a .safetensors file, a *.index.json, or a directory containing
// model.safetensors.index.json or model.safetensors.
ty_status safetensors_init(safetensors **out, const char *path, ty_err *err);
// Parses a whole single-file checkpoint already in memory (not copied: buf
// must outlive the handle). Used by the fuzz target and tests.
ty_status safetensors_init_from_memory(safetensors **out, const uint8_t *buf, size_t len, ty_err *err);
void safetensors_free(safetensors *st);

size_t safetensors_count(const safetensors *st);
int safetensors_shard_count(const safetensors *st);
// Tensors in name order.
const safetensors_tensor *safetensors_at(const safetensors *st, size_t i);
// NULL if absent.
const safetensors_tensor *safetensors_find(const safetensors *st, const char *name);
// A value of the "__metadata__" map of the first shard, or NULL.
const char *safetensors_metadata(const safetensors *st, const char *key);

// True when the tensor's data pointer is aligned to its element size (kernels
// that load whole elements need this; the loader copies tensors that are not).
int safetensors_is_aligned(const safetensors_tensor *t);

// Element i of a float tensor (BF16, F16, F32, F64) as float; 0 for other dtypes.
float safetensors_get_f32(const safetensors_tensor *t, int64_t i);

#endif
