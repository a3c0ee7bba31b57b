// Whole-file reads with a size bound, and read-only memory maps.
#ifndef TYCHO_CORE_FILE_H
#define TYCHO_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

// Reads path into a malloc'd buffer (NUL-terminated one past *len, so text
// parsers may use it as a C string). Fails with TY_E_LIMIT above max_bytes.
ty_status file_read_all(const char *path, size_t max_bytes, uint8_t **out, size_t *len, ty_err *err);

// A read-only, private mapping of a whole file. An empty file maps to data = NULL, size = 0.
typedef struct {
    const uint8_t *data;
    size_t size;
} file_map;

ty_status file_map_init(file_map *m, const char *path, ty_err *err);
void file_map_free(file_map *m);

#endif
