#include "core/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[TY_DTYPE_COUNT] = {
    [TY_DTYPE_BF16] = {"BF16", 2},   [TY_DTYPE_F16] = {"F16", 2},
    [TY_DTYPE_F32] = {"F32", 4},     [TY_DTYPE_F64] = {"F64", 8},
    [TY_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [TY_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [TY_DTYPE_BOOL] = {"BOOL", 1},   [TY_DTYPE_U8] = {"U8", 1},
    [TY_DTYPE_I8] = {"I8", 1},       [TY_DTYPE_U16] = {"U16", 2},
    [TY_DTYPE_I16] = {"I16", 2},     [TY_DTYPE_U32] = {"U32", 4},
    [TY_DTYPE_I32] = {"I32", 4},     [TY_DTYPE_U64] = {"U64", 8},
    [TY_DTYPE_I64] = {"I64", 8},
};

size_t dtype_size(ty_dtype t) { return (unsigned)t < TY_DTYPE_COUNT ? dtypes[t].size : 0; }

const char *dtype_name(ty_dtype t) { return (unsigned)t < TY_DTYPE_COUNT ? dtypes[t].name : "?"; }

int dtype_from_name(const char *name, ty_dtype *out) {
    for (int i = 0; i < TY_DTYPE_COUNT; i++) {
        if (!strcmp(name, dtypes[i].name)) {
            *out = (ty_dtype)i;
            return 0;
        }
    }
    return -1;
}
