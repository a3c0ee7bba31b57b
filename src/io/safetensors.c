#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/half.h"

struct safetensors {
    file_map *maps;  // (n_shards) one mapping per file; empty when parsed from memory
    int n_shards;
    safetensors_tensor *tensors;  // (n) sorted by name once loading finishes
    size_t n, cap;
    cJSON *metadata;  // "__metadata__" of the first shard (owned), or NULL
};

// ---- header parsing -------------------------------------------------------

// A JSON number that is a non-negative integer representable exactly in a double.
static int json_to_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static ty_status push_tensor(safetensors *st, const safetensors_tensor *t, ty_err *err) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 64;
        safetensors_tensor *p = realloc(st->tensors, cap * sizeof *p);
        if (!p) return ty_err_set(err, TY_E_NOMEM, "out of memory for the tensor table");
        st->tensors = p;
        st->cap = cap;
    }
    st->tensors[st->n++] = *t;
    return TY_OK;
}

typedef struct {
    uint64_t begin, end;
    const char *name;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// Parses one tensor entry `e` (named e->string) whose data lives at data[0, data_len).
static ty_status parse_entry(const cJSON *e, const uint8_t *data, uint64_t data_len, int shard,
                             safetensors_tensor *t, span *sp, ty_err *err) {
    const char *name = e->string;
    memset(t, 0, sizeof *t);
    if (!cJSON_IsObject(e)) return ty_err_set(err, TY_E_FORMAT, "tensor '%s': entry is not an object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return ty_err_set(err, TY_E_FORMAT, "tensor '%s': missing string \"dtype\"", name);
    if (dtype_from_name(dt->valuestring, &t->dtype) != 0)
        return ty_err_set(err, TY_E_UNSUPPORTED, "tensor '%s': unknown dtype '%.32s'", name, dt->valuestring);
    if (!cJSON_IsArray(shape)) return ty_err_set(err, TY_E_FORMAT, "tensor '%s': missing array \"shape\"", name);
    int rank = cJSON_GetArraySize(shape);
    if (rank > SAFETENSORS_MAX_DIMS)
        return ty_err_set(err, TY_E_UNSUPPORTED, "tensor '%s': %d dimensions (at most %d)", name, rank,
                          SAFETENSORS_MAX_DIMS);
    uint64_t n_el = 1;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t dim;
        if (json_to_u64(v, &dim) != 0 || dim > INT64_MAX)
            return ty_err_set(err, TY_E_FORMAT, "tensor '%s': shape[%d] is not a non-negative integer", name, d);
        if (__builtin_mul_overflow(n_el, dim, &n_el) || n_el > INT64_MAX)
            return ty_err_set(err, TY_E_FORMAT, "tensor '%s': element count overflows", name);
        t->shape[d] = (int64_t)dim;
    }
    t->n_dims = rank;
    uint64_t n_bytes;
    if (__builtin_mul_overflow(n_el, (uint64_t)dtype_size(t->dtype), &n_bytes))
        return ty_err_set(err, TY_E_FORMAT, "tensor '%s': byte size overflows", name);
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_to_u64(offs->child, &b) != 0 ||
        json_to_u64(offs->child->next, &en) != 0)
        return ty_err_set(err, TY_E_FORMAT, "tensor '%s': \"data_offsets\" must be [begin, end]", name);
    if (b > en || en > data_len)
        return ty_err_set(err, TY_E_FORMAT,
                          "tensor '%s': data_offsets [%llu, %llu] outside the data area of %llu bytes", name,
                          (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_len);
    if (en - b != n_bytes)
        return ty_err_set(err, TY_E_FORMAT,
                          "tensor '%s': shape x %s needs %llu bytes but data_offsets span %llu", name,
                          dtype_name(t->dtype), (unsigned long long)n_bytes, (unsigned long long)(en - b));
    t->name = strdup(name);
    if (!t->name) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    t->n_elements = (int64_t)n_el;
    t->n_bytes = (size_t)n_bytes;
    t->data = data + b;
    t->shard = shard;
    sp->begin = b;
    sp->end = en;
    sp->name = t->name;
    return TY_OK;
}

// The reference library requires the tensors to tile the data area exactly.
static ty_status check_tiling(span *spans, size_t n, uint64_t data_len, ty_err *err) {
    qsort(spans, n, sizeof *spans, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (spans[i].begin < at)
            return ty_err_set(err, TY_E_FORMAT, "tensor '%s' overlaps the previous tensor", spans[i].name);
        if (spans[i].begin > at)
            return ty_err_set(err, TY_E_FORMAT, "gap of %llu bytes before tensor '%s'",
                              (unsigned long long)(spans[i].begin - at), spans[i].name);
        at = spans[i].end;
    }
    if (at != data_len)
        return ty_err_set(err, TY_E_FORMAT, "%llu bytes after the last tensor are not described by the header",
                          (unsigned long long)(data_len - at));
    return TY_OK;
}

// "__metadata__" is a string -> string map; the first shard's is kept.
static ty_status parse_metadata(safetensors *st, const cJSON *e, int shard, ty_err *err) {
    if (!cJSON_IsObject(e)) return ty_err_set(err, TY_E_FORMAT, "__metadata__ is not an object");
    for (const cJSON *m = e->child; m; m = m->next)
        if (!cJSON_IsString(m)) return ty_err_set(err, TY_E_FORMAT, "__metadata__ values must be strings");
    if (shard != 0) return TY_OK;
    if (st->metadata) return ty_err_set(err, TY_E_FORMAT, "duplicate __metadata__");
    st->metadata = cJSON_Duplicate(e, 1);
    return st->metadata ? TY_OK : ty_err_set(err, TY_E_NOMEM, "out of memory");
}

// Parses one safetensors file held in buf and appends its tensors as `shard`.
static ty_status parse_file(safetensors *st, const uint8_t *buf, size_t len, int shard, ty_err *err) {
    if (len < 8) return ty_err_set(err, TY_E_FORMAT, "%zu bytes is too short for a safetensors file", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > SAFETENSORS_MAX_HEADER)
        return ty_err_set(err, TY_E_LIMIT, "header length %llu exceeds the limit of %llu bytes",
                          (unsigned long long)hlen, (unsigned long long)SAFETENSORS_MAX_HEADER);
    if (hlen > len - 8)
        return ty_err_set(err, TY_E_FORMAT, "header length %llu runs past the end of the %zu-byte file",
                          (unsigned long long)hlen, len);
    const char *hdr = (const char *)buf + 8;
    if (hlen < 2 || hdr[0] != '{') return ty_err_set(err, TY_E_FORMAT, "header is not a JSON object");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ty_err_set(err, TY_E_FORMAT, "header is not valid JSON");
    }
    for (; end && end < hdr + hlen; end++) {  // writers pad the header with spaces
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            cJSON_Delete(root);
            return ty_err_set(err, TY_E_FORMAT, "trailing bytes after the header JSON");
        }
    }
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    int n_entries = cJSON_GetArraySize(root);
    span *spans = calloc((size_t)n_entries + 1, sizeof *spans);
    if (!spans) {
        cJSON_Delete(root);
        return ty_err_set(err, TY_E_NOMEM, "out of memory");
    }
    size_t n_spans = 0;
    ty_status s = TY_OK;
    for (cJSON *e = root->child; e && s == TY_OK; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            s = parse_metadata(st, e, shard, err);
            continue;
        }
        safetensors_tensor t;
        s = parse_entry(e, data, data_len, shard, &t, &spans[n_spans], err);
        if (s == TY_OK) {
            s = push_tensor(st, &t, err);
            if (s == TY_OK)
                n_spans++;
            else
                free(t.name);
        }
    }
    if (s == TY_OK) s = check_tiling(spans, n_spans, data_len, err);
    free(spans);
    cJSON_Delete(root);
    return s;
}

static int tensor_name_cmp(const void *a, const void *b) {
    return strcmp(((const safetensors_tensor *)a)->name, ((const safetensors_tensor *)b)->name);
}

// Sorts the table by name (for safetensors_find) and refuses duplicate names,
// inside one header (JSON allows repeated keys) or across shards.
static ty_status finish_table(safetensors *st, ty_err *err) {
    if (st->n > 1) qsort(st->tensors, st->n, sizeof *st->tensors, tensor_name_cmp);
    for (size_t i = 1; i < st->n; i++)
        if (!strcmp(st->tensors[i - 1].name, st->tensors[i].name))
            return ty_err_set(err, TY_E_FORMAT, "tensor '%s' is defined twice", st->tensors[i].name);
    return TY_OK;
}

static safetensors *alloc_handle(int n_shards) {
    safetensors *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (n_shards > 0) {
        st->maps = calloc((size_t)n_shards, sizeof *st->maps);
        if (!st->maps) {
            free(st);
            return NULL;
        }
    }
    st->n_shards = n_shards;
    return st;
}

ty_status safetensors_init_from_memory(safetensors **out, const uint8_t *buf, size_t len, ty_err *err) {
    *out = NULL;
    safetensors *st = alloc_handle(0);
    if (!st) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    st->n_shards = 1;
    ty_status s = parse_file(st, buf, len, 0, err);
    if (s == TY_OK) s = finish_table(st, err);
    if (s != TY_OK) {
        safetensors_free(st);
        return s;
    }
    *out = st;
    return TY_OK;
}

static ty_status open_shard(safetensors *st, int shard, const char *path, ty_err *err) {
    ty_status s = file_map_init(&st->maps[shard], path, err);
    if (s != TY_OK) return s;
    s = parse_file(st, st->maps[shard].data, st->maps[shard].size, shard, err);
    if (s != TY_OK) ty_err_wrap(err, "%s", path);
    return s;
}

// A shard name from an index must name a file beside the index, nothing else.
static int is_plain_file_name(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\');
}

static int has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// Loads the shards named by a model.safetensors.index.json and checks that
// every tensor its weight_map names is in the file it says.
static ty_status init_from_index(safetensors **out, const char *index_path, ty_err *err) {
    uint8_t *buf;
    size_t len;
    ty_status s = file_read_all(index_path, SAFETENSORS_MAX_INDEX_BYTES, &buf, &len, err);
    if (s != TY_OK) return s;
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map) || !map->child) {
        cJSON_Delete(root);
        return ty_err_set(err, TY_E_FORMAT, "%s: no \"weight_map\" object", index_path);
    }
    // Distinct shard files, in order of first appearance.
    const char **files = calloc((size_t)cJSON_GetArraySize(map), sizeof *files);
    int n_files = 0;
    s = files ? TY_OK : ty_err_set(err, TY_E_NOMEM, "out of memory");
    for (const cJSON *e = map->child; e && s == TY_OK; e = e->next) {
        if (!cJSON_IsString(e) || !is_plain_file_name(e->valuestring)) {
            s = ty_err_set(err, TY_E_FORMAT, "%s: tensor '%s' maps to an invalid file name", index_path, e->string);
            break;
        }
        int k = 0;
        while (k < n_files && strcmp(files[k], e->valuestring)) k++;
        if (k == n_files) files[n_files++] = e->valuestring;
    }
    safetensors *st = NULL;
    if (s == TY_OK && !(st = alloc_handle(n_files))) s = ty_err_set(err, TY_E_NOMEM, "out of memory");
    size_t dir_len = strrchr(index_path, '/') ? (size_t)(strrchr(index_path, '/') - index_path + 1) : 0;
    for (int k = 0; k < n_files && s == TY_OK; k++) {
        size_t n = dir_len + strlen(files[k]) + 1;
        char *path = malloc(n);
        if (!path) {
            s = ty_err_set(err, TY_E_NOMEM, "out of memory");
            break;
        }
        snprintf(path, n, "%.*s%s", (int)dir_len, index_path, files[k]);
        s = open_shard(st, k, path, err);
        free(path);
    }
    if (s == TY_OK) s = finish_table(st, err);
    for (const cJSON *e = map->child; e && s == TY_OK; e = e->next) {
        const safetensors_tensor *t = safetensors_find(st, e->string);
        if (!t || strcmp(files[t->shard], e->valuestring))
            s = ty_err_set(err, TY_E_FORMAT, "%s: tensor '%s' is not in %s", index_path, e->string, e->valuestring);
    }
    free(files);
    cJSON_Delete(root);
    if (s != TY_OK) {
        safetensors_free(st);
        return s;
    }
    *out = st;
    return TY_OK;
}

ty_status safetensors_init(safetensors **out, const char *path, ty_err *err) {
    *out = NULL;
    if (!path || !*path) return ty_err_set(err, TY_E_ARG, "no checkpoint path given");
    struct stat sb;
    if (stat(path, &sb) != 0) return ty_err_set(err, TY_E_IO, "%s: no such file or directory", path);
    if (S_ISDIR(sb.st_mode)) {
        static const char *candidates[] = {"model.safetensors.index.json", "model.safetensors"};
        for (int i = 0; i < 2; i++) {
            size_t n = strlen(path) + strlen(candidates[i]) + 2;
            char *p = malloc(n);
            if (!p) return ty_err_set(err, TY_E_NOMEM, "out of memory");
            snprintf(p, n, "%s/%s", path, candidates[i]);
            ty_status s = stat(p, &sb) == 0 ? safetensors_init(out, p, err) : TY_E_NOT_FOUND;
            free(p);
            if (s != TY_E_NOT_FOUND) return s;
        }
        return ty_err_set(err, TY_E_NOT_FOUND, "%s: holds neither model.safetensors.index.json nor model.safetensors",
                          path);
    }
    if (has_suffix(path, ".json")) return init_from_index(out, path, err);
    safetensors *st = alloc_handle(1);
    if (!st) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    ty_status s = open_shard(st, 0, path, err);
    if (s == TY_OK) s = finish_table(st, err);
    if (s != TY_OK) {
        safetensors_free(st);
        return s;
    }
    *out = st;
    return TY_OK;
}

void safetensors_free(safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free(st->tensors[i].name);
    free(st->tensors);
    if (st->maps)
        for (int k = 0; k < st->n_shards; k++) file_map_free(&st->maps[k]);
    free(st->maps);
    cJSON_Delete(st->metadata);
    free(st);
}

size_t safetensors_count(const safetensors *st) { return st->n; }

int safetensors_shard_count(const safetensors *st) { return st->n_shards; }

const safetensors_tensor *safetensors_at(const safetensors *st, size_t i) {
    return i < st->n ? &st->tensors[i] : NULL;
}

const safetensors_tensor *safetensors_find(const safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->tensors[mid].name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *safetensors_metadata(const safetensors *st, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int safetensors_is_aligned(const safetensors_tensor *t) {
    return ((uintptr_t)t->data % dtype_size(t->dtype)) == 0;
}

float safetensors_get_f32(const safetensors_tensor *t, int64_t i) {
    if (i < 0 || i >= t->n_elements) return 0.0f;
    const uint8_t *p = (const uint8_t *)t->data + (size_t)i * dtype_size(t->dtype);
    uint16_t h;
    float f;
    double d;
    switch (t->dtype) {
    case TY_DTYPE_BF16: memcpy(&h, p, 2); return bf16_to_f32(h);
    case TY_DTYPE_F16: memcpy(&h, p, 2); return f16_to_f32(h);
    case TY_DTYPE_F32: memcpy(&f, p, 4); return f;
    case TY_DTYPE_F64: memcpy(&d, p, 8); return (float)d;
    default: return 0.0f;
    }
}
