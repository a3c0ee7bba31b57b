// libFuzzer target: arbitrary bytes as a single-file safetensors checkpoint.
// Anything that loads must describe tensors that lie inside the input.
#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    safetensors *st = NULL;
    ty_err err;
    if (safetensors_init_from_memory(&st, data, size, &err) != TY_OK) return 0;
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const safetensors_tensor *t = safetensors_at(st, i);
        const uint8_t *p = t->data;
        if (p < data || p + t->n_bytes > data + size) abort();
        if (safetensors_find(st, t->name) != t) abort();
        if (t->n_elements > 0) (void)safetensors_get_f32(t, t->n_elements - 1);
    }
    safetensors_free(st);
    return 0;
}
