// Element types of stored tensors, named as safetensors names them.
#ifndef TYCHO_CORE_DTYPE_H
#define TYCHO_CORE_DTYPE_H

#include <stddef.h>

typedef enum {
    TY_DTYPE_BF16,
    TY_DTYPE_F16,
    TY_DTYPE_F32,
    TY_DTYPE_F64,
    TY_DTYPE_F8_E4M3,
    TY_DTYPE_F8_E5M2,
    TY_DTYPE_BOOL,
    TY_DTYPE_U8,
    TY_DTYPE_I8,
    TY_DTYPE_U16,
    TY_DTYPE_I16,
    TY_DTYPE_U32,
    TY_DTYPE_I32,
    TY_DTYPE_U64,
    TY_DTYPE_I64,
    TY_DTYPE_COUNT
} ty_dtype;

// Bytes per element.
size_t dtype_size(ty_dtype t);
// The safetensors spelling ("BF16", "F8_E4M3", ...).
const char *dtype_name(ty_dtype t);
// Parses a safetensors dtype string; returns 0 on success, -1 if unknown.
int dtype_from_name(const char *name, ty_dtype *out);

#endif
