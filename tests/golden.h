// Helpers for golden-parity tests: the JSON files (expected.json, images.json),
// reference tensors from expected.safetensors and the relative error the
// golden README's tolerance is stated in.
#ifndef TYCHO_TESTS_GOLDEN_H
#define TYCHO_TESTS_GOLDEN_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/file.h"
#include "io/safetensors.h"

// A golden JSON file parsed, or NULL when it cannot be read or parsed.
static inline cJSON *golden_load_json(const char *path) {
    uint8_t *buf;
    size_t len;
    ty_err err;
    if (file_read_all(path, 16 << 20, &buf, &len, &err) != TY_OK) return NULL;
    cJSON *j = cJSON_Parse((char *)buf);
    free(buf);
    return j;
}

// ||a - b|| / ||b|| over n values of a and the f32 reference tensor ref.
static inline double golden_rel_err(const float *a, const safetensors_tensor *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double b = safetensors_get_f32(ref, i), d = a[i] - b;
        num += d * d;
        den += b * b;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
