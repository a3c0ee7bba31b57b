// Safetensors reader: the golden tiny checkpoints read with the names and
// shapes of moondream.md §3.1 at their config's widths; every kind of lying
// or broken header is refused with a clear message; sharded checkpoints.
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/half.h"
#include "io/safetensors.h"
#include "test.h"

// Builds a file image: u64 LE header length, header, data.
static uint8_t *build(const char *header, const void *data, size_t data_len, size_t *len) {
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    uint8_t *buf = malloc(*len ? *len : 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    if (data_len) memcpy(buf + 8 + h, data, data_len);
    return buf;
}

// Parses header+data; expects failure with `code` and `needle` in the message.
static void expect_error(const char *header, size_t data_len, ty_status code, const char *needle) {
    uint8_t data[256] = {0};
    size_t len;
    uint8_t *buf = build(header, data, data_len, &len);
    safetensors *st = NULL;
    ty_err err = {0};
    ty_status s = safetensors_init_from_memory(&st, buf, len, &err);
    CHECK_MSG(s == code, "header %s: status %s, want %s (%s)", header, ty_status_name(s), ty_status_name(code), err.msg);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "header %s: message '%s' lacks '%s'", header, err.msg, needle);
    CHECK(st == NULL);
    safetensors_free(st);
    free(buf);
}

static void test_bad_headers(void) {
    const char *t = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":";
    char h[512];
    expect_error("[]", 0, TY_E_FORMAT, "not a JSON object");
    expect_error("{\"t\":", 0, TY_E_FORMAT, "not valid JSON");
    expect_error("{}  x", 0, TY_E_FORMAT, "trailing bytes");
    expect_error("{\"t\":3}", 0, TY_E_FORMAT, "not an object");
    expect_error("{\"t\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, TY_E_UNSUPPORTED, "unknown dtype");
    expect_error("{\"t\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, TY_E_FORMAT, "dtype");
    expect_error("{\"t\":{\"dtype\":\"U8\",\"shape\":3,\"data_offsets\":[0,3]}}", 3, TY_E_FORMAT, "shape");
    expect_error("{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, TY_E_FORMAT, "non-negative");
    expect_error("{\"t\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}", 1, TY_E_FORMAT, "non-negative");
    expect_error("{\"t\":{\"dtype\":\"U8\",\"shape\":[\"2\"],\"data_offsets\":[0,2]}}", 2, TY_E_FORMAT, "non-negative");
    expect_error("{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, TY_E_UNSUPPORTED,
                 "dimensions");
    // 2^31 * 2^31 * 2^31 elements overflows 64 bits; 2^62 F64 elements overflow the byte count.
    expect_error("{\"t\":{\"dtype\":\"U8\",\"shape\":[2147483648,2147483648,2147483648],\"data_offsets\":[0,1]}}", 1,
                 TY_E_FORMAT, "overflows");
    expect_error("{\"t\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,1]}}", 1, TY_E_FORMAT,
                 "overflows");
    snprintf(h, sizeof h, "{%s[0,9]}}", t);
    expect_error(h, 8, TY_E_FORMAT, "outside the data area");
    snprintf(h, sizeof h, "{%s[8,0]}}", t);
    expect_error(h, 8, TY_E_FORMAT, "outside the data area");
    snprintf(h, sizeof h, "{%s[0,4]}}", t);
    expect_error(h, 4, TY_E_FORMAT, "needs 8 bytes");
    snprintf(h, sizeof h, "{%s[0]}}", t);
    expect_error(h, 8, TY_E_FORMAT, "data_offsets");
    snprintf(h, sizeof h, "{%s[0,8]}}", t);
    expect_error(h, 12, TY_E_FORMAT, "4 bytes after the last tensor");
    snprintf(h, sizeof h, "{%s[4,12]}}", t);
    expect_error(h, 12, TY_E_FORMAT, "gap of 4 bytes");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                 12, TY_E_FORMAT, "overlaps");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, TY_E_FORMAT, "defined twice");
    expect_error("{\"__metadata__\":{\"k\":1}}", 0, TY_E_FORMAT, "must be strings");
    expect_error("{\"__metadata__\":[]}", 0, TY_E_FORMAT, "not an object");
}

static void test_bad_framing(void) {
    safetensors *st = NULL;
    ty_err err = {0};
    uint8_t small[5] = {1, 2, 3, 4, 5};
    CHECK(safetensors_init_from_memory(&st, small, sizeof small, &err) == TY_E_FORMAT);
    CHECK(strstr(err.msg, "too short") != NULL);
    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    CHECK(safetensors_init_from_memory(&st, big, sizeof big, &err) == TY_E_LIMIT);
    uint8_t past[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(safetensors_init_from_memory(&st, past, sizeof past, &err) == TY_E_FORMAT);
    CHECK(strstr(err.msg, "runs past the end") != NULL);
    CHECK(st == NULL);
}

static void test_dtypes_and_values(void) {
    // F16 1.0, -2.5, smallest subnormal 2^-24; F32 3.25; I32 -7; U8 200; BF16 -0.5 (padded header).
    uint8_t data[19];
    uint16_t f16[3] = {0x3c00, 0xc100, 0x0001};
    float f32 = 3.25f;
    int32_t i32 = -7;
    uint16_t bf = f32_to_bf16(-0.5f);
    memcpy(data, f16, 6);
    memcpy(data + 6, &f32, 4);
    memcpy(data + 10, &i32, 4);
    data[14] = 200;
    memcpy(data + 15, &bf, 2);
    data[17] = data[18] = 0;
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                    "\"f\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[6,10]},"
                    "\"i\":{\"dtype\":\"I32\",\"shape\":[1,1],\"data_offsets\":[10,14]},"
                    "\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[14,15]},"
                    "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[15,17]},"
                    "\"e\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[17,17]},"
                    "\"z\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[17,19]}}    ";
    size_t len;
    uint8_t *buf = build(h, data, sizeof data, &len);
    safetensors *st = NULL;
    ty_err err = {0};
    CHECK_MSG(safetensors_init_from_memory(&st, buf, len, &err) == TY_OK, "%s", err.msg);
    if (st) {
        CHECK(safetensors_count(st) == 7);
        CHECK(!strcmp(safetensors_at(st, 0)->name, "b"));  // name order
        CHECK(safetensors_metadata(st, "format") && !strcmp(safetensors_metadata(st, "format"), "pt"));
        CHECK(safetensors_metadata(st, "other") == NULL);
        const safetensors_tensor *t = safetensors_find(st, "h");
        CHECK(t && t->dtype == TY_DTYPE_F16 && t->n_elements == 3);
        CHECK(t && safetensors_get_f32(t, 0) == 1.0f && safetensors_get_f32(t, 1) == -2.5f);
        CHECK(t && safetensors_get_f32(t, 2) == 0x1p-24f);
        t = safetensors_find(st, "f");
        CHECK(t && t->n_dims == 0 && t->n_elements == 1 && safetensors_get_f32(t, 0) == 3.25f);
        t = safetensors_find(st, "i");
        int32_t iv = 0;
        if (t) memcpy(&iv, t->data, 4);
        CHECK(t && t->dtype == TY_DTYPE_I32 && iv == -7 && t->shape[0] == 1 && t->shape[1] == 1);
        t = safetensors_find(st, "u");
        CHECK(t && t->dtype == TY_DTYPE_U8 && *(const uint8_t *)t->data == 200);
        t = safetensors_find(st, "b");
        CHECK(t && safetensors_get_f32(t, 0) == -0.5f && safetensors_get_f32(t, 1) == 0.0f);
        t = safetensors_find(st, "e");
        CHECK(t && t->n_elements == 0 && t->n_bytes == 0);
        CHECK(safetensors_find(st, "missing") == NULL);
        CHECK(safetensors_find(st, "") == NULL);
    }
    safetensors_free(st);
    free(buf);
}

// The golden md2-tiny checkpoint has every tensor of moondream.md §3.1 with
// the shapes its config.json implies, in bf16, nothing else.
static void test_md2_tiny(void) {
    safetensors *st = NULL;
    ty_err err = {0};
    CHECK_MSG(safetensors_init(&st, TEST_DATA("golden/md2-tiny"), &err) == TY_OK, "%s", err.msg);
    uint8_t *cfg_buf;
    size_t cfg_len;
    CHECK(file_read_all(TEST_DATA("golden/md2-tiny/config.json"), 1 << 20, &cfg_buf, &cfg_len, &err) == TY_OK);
    cJSON *cfg = cJSON_Parse((const char *)cfg_buf);
    free(cfg_buf);
    if (!st || !cfg) {
        safetensors_free(st);
        cJSON_Delete(cfg);
        return;
    }
    cJSON *c = cJSON_GetObjectItem(cfg, "config");
#define DIM(sec, key) cJSON_GetObjectItem(cJSON_GetObjectItem(c, sec), key)->valueint
    int64_t td = DIM("text", "dim"), tff = DIM("text", "ff_dim"), tl = DIM("text", "n_layers");
    int64_t voc = DIM("text", "vocab_size");
    int64_t vd = DIM("vision", "enc_dim"), vff = DIM("vision", "enc_ff_dim"), vl = DIM("vision", "enc_n_layers");
    int64_t pin = DIM("vision", "proj_inner_dim"), pout = DIM("vision", "proj_out_dim");
    int64_t rin = DIM("region", "inner_dim");
    int64_t patch = 3 * 14 * 14, grid = 27 * 27;
    struct {
        const char *name;
        int64_t s0, s1, s2;  // -1 = absent dimension
    } want[] = {
        {"model.vision.patch_emb.weight", vd, patch, -1}, {"model.vision.patch_emb.bias", vd, -1, -1},
        {"model.vision.pos_emb", 1, grid, vd},            {"model.vision.post_ln.weight", vd, -1, -1},
        {"model.vision.post_ln.bias", vd, -1, -1},        {"model.vision.proj_mlp.fc1.weight", pin, 2 * vd, -1},
        {"model.vision.proj_mlp.fc1.bias", pin, -1, -1},  {"model.vision.proj_mlp.fc2.weight", pout, pin, -1},
        {"model.vision.proj_mlp.fc2.bias", pout, -1, -1}, {"model.text.wte", voc, td, -1},
        {"model.text.post_ln.weight", td, -1, -1},        {"model.text.post_ln.bias", td, -1, -1},
        {"model.text.lm_head.weight", voc, td, -1},       {"model.text.lm_head.bias", voc, -1, -1},
        {"model.region.coord_features", 1, 128, -1},      {"model.region.coord_encoder.weight", td, 256, -1},
        {"model.region.coord_encoder.bias", td, -1, -1},  {"model.region.coord_decoder.fc1.weight", rin, td, -1},
        {"model.region.coord_decoder.fc1.bias", rin, -1, -1}, {"model.region.coord_decoder.fc2.weight", 1024, rin, -1},
        {"model.region.coord_decoder.fc2.bias", 1024, -1, -1}, {"model.region.size_features", 2, 256, -1},
        {"model.region.size_encoder.weight", td, 512, -1}, {"model.region.size_encoder.bias", td, -1, -1},
        {"model.region.size_decoder.fc1.weight", rin, td, -1}, {"model.region.size_decoder.fc1.bias", rin, -1, -1},
        {"model.region.size_decoder.fc2.weight", 2048, rin, -1}, {"model.region.size_decoder.fc2.bias", 2048, -1, -1},
    };
    size_t n_want = sizeof want / sizeof want[0];
    size_t matched = 0;
    for (size_t i = 0; i < n_want; i++) {
        const safetensors_tensor *t = safetensors_find(st, want[i].name);
        CHECK_MSG(t != NULL, "missing %s", want[i].name);
        if (!t) continue;
        int rank = want[i].s1 < 0 ? 1 : want[i].s2 < 0 ? 2 : 3;
        CHECK_MSG(t->n_dims == rank && t->shape[0] == want[i].s0 && (rank < 2 || t->shape[1] == want[i].s1) &&
                      (rank < 3 || t->shape[2] == want[i].s2),
                  "%s has the wrong shape", want[i].name);
        matched++;
    }
    struct {
        const char *fmt;
        int64_t s0, s1;
    } block[] = {
        {"model.vision.blocks.%d.ln1.weight", vd, -1}, {"model.vision.blocks.%d.ln1.bias", vd, -1},
        {"model.vision.blocks.%d.attn.qkv.weight", 3 * vd, vd}, {"model.vision.blocks.%d.attn.qkv.bias", 3 * vd, -1},
        {"model.vision.blocks.%d.attn.proj.weight", vd, vd}, {"model.vision.blocks.%d.attn.proj.bias", vd, -1},
        {"model.vision.blocks.%d.ln2.weight", vd, -1}, {"model.vision.blocks.%d.ln2.bias", vd, -1},
        {"model.vision.blocks.%d.mlp.fc1.weight", vff, vd}, {"model.vision.blocks.%d.mlp.fc1.bias", vff, -1},
        {"model.vision.blocks.%d.mlp.fc2.weight", vd, vff}, {"model.vision.blocks.%d.mlp.fc2.bias", vd, -1},
        {"model.text.blocks.%d.ln.weight", td, -1}, {"model.text.blocks.%d.ln.bias", td, -1},
        {"model.text.blocks.%d.attn.qkv.weight", 3 * td, td}, {"model.text.blocks.%d.attn.qkv.bias", 3 * td, -1},
        {"model.text.blocks.%d.attn.proj.weight", td, td}, {"model.text.blocks.%d.attn.proj.bias", td, -1},
        {"model.text.blocks.%d.mlp.fc1.weight", tff, td}, {"model.text.blocks.%d.mlp.fc1.bias", tff, -1},
        {"model.text.blocks.%d.mlp.fc2.weight", td, tff}, {"model.text.blocks.%d.mlp.fc2.bias", td, -1},
    };
    for (size_t k = 0; k < sizeof block / sizeof block[0]; k++) {
        int n_layers = (int)(strstr(block[k].fmt, "vision") ? vl : tl);
        for (int l = 0; l < n_layers; l++) {
            char name[128];
            snprintf(name, sizeof name, block[k].fmt, l);
            const safetensors_tensor *t = safetensors_find(st, name);
            CHECK_MSG(t && t->dtype == TY_DTYPE_BF16 && t->shape[0] == block[k].s0 &&
                          t->n_dims == (block[k].s1 < 0 ? 1 : 2) && (block[k].s1 < 0 || t->shape[1] == block[k].s1),
                      "%s missing or misshapen", name);
            matched += t != NULL;
        }
    }
    CHECK_MSG(matched == safetensors_count(st), "%zu tensors matched the spec, file has %zu", matched,
              safetensors_count(st));
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const safetensors_tensor *t = safetensors_at(st, i);
        CHECK(t->dtype == TY_DTYPE_BF16 && safetensors_is_aligned(t));
    }
    cJSON_Delete(cfg);
    safetensors_free(st);
}

// Every prefix of the real file and every single-byte corruption of its header
// area either loads or fails cleanly (the sanitizer build checks "cleanly").
static void test_truncated_and_corrupted(void) {
    uint8_t *buf;
    size_t len;
    ty_err err = {0};
    CHECK(file_read_all(TEST_DATA("golden/md2-tiny/model.safetensors"), 64 << 20, &buf, &len, &err) == TY_OK);
    if (!buf) return;
    int failures = 0;
    for (size_t cut = 0; cut < len; cut += cut < 64 ? 1 : 997) {
        safetensors *st = NULL;
        if (safetensors_init_from_memory(&st, buf, cut, &err) != TY_OK) failures++;
        safetensors_free(st);
    }
    CHECK(failures > 100);  // every strict prefix must fail: the data area no longer fits
    uint8_t *copy = malloc(len);
    int loaded = 0, total = 0;
    for (size_t pos = 0; pos < 8 + 2048; pos += 7) {
        memcpy(copy, buf, len);
        copy[pos] ^= 0x5a;
        safetensors *st = NULL;
        if (safetensors_init_from_memory(&st, copy, len, &err) == TY_OK) loaded++;
        safetensors_free(st);
        total++;
    }
    CHECK(loaded < total);
    free(copy);
    free(buf);
}

static void write_file(const char *path, const uint8_t *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(buf, 1, len, f) == len);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_file(path, (const uint8_t *)text, strlen(text)); }

static void test_sharded(void) {
    char dir[] = "/tmp/tycho-st-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p[512];
    float a[2] = {1, 2}, b[1] = {3};
    size_t len;
    uint8_t *s1 = build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", a, 8, &len);
    snprintf(p, sizeof p, "%s/one.safetensors", dir);
    write_file(p, s1, len);
    free(s1);
    uint8_t *s2 = build("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", b, 4, &len);
    snprintf(p, sizeof p, "%s/two.safetensors", dir);
    write_file(p, s2, len);
    free(s2);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"metadata\":{},\"weight_map\":{\"a\":\"one.safetensors\",\"b\":\"two.safetensors\"}}");

    safetensors *st = NULL;
    ty_err err = {0};
    CHECK_MSG(safetensors_init(&st, dir, &err) == TY_OK, "%s", err.msg);
    if (st) {
        CHECK(safetensors_count(st) == 2 && safetensors_shard_count(st) == 2);
        const safetensors_tensor *t = safetensors_find(st, "b");
        CHECK(t && t->shard == 1 && safetensors_get_f32(t, 0) == 3.0f);
        t = safetensors_find(st, "a");
        CHECK(t && t->shard == 0 && safetensors_get_f32(t, 1) == 2.0f);
    }
    safetensors_free(st);

    struct {
        const char *index, *needle;
    } bad[] = {
        {"{\"weight_map\":{\"a\":\"one.safetensors\",\"b\":\"one.safetensors\"}}", "'b' is not in one.safetensors"},
        {"{\"weight_map\":{\"a\":\"../one.safetensors\"}}", "invalid file name"},
        {"{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "invalid file name"},
        {"{\"weight_map\":{\"a\":\"nothere.safetensors\"}}", "nothere.safetensors"},
        {"{\"weight_map\":{\"a\":\"one.safetensors\",\"c\":\"two.safetensors\"}}", "'c' is not in two.safetensors"},
        {"{\"weight_map\":{\"a\":\"one.safetensors\",\"b\":\"dup.safetensors\",\"x\":\"two.safetensors\"}}", "twice"},
        {"{\"weight_map\":{}}", "weight_map"},
        {"{\"weight_map\":{\"a\":3}}", "invalid file name"},
        {"not json", "weight_map"},
        {"", "weight_map"},
    };
    uint8_t *dup = build("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", b, 4, &len);
    snprintf(p, sizeof p, "%s/dup.safetensors", dir);
    write_file(p, dup, len);
    free(dup);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(p, bad[i].index);
        st = NULL;
        ty_status s = safetensors_init(&st, dir, &err);
        CHECK_MSG(s != TY_OK && strstr(err.msg, bad[i].needle), "index %s: got '%s'", bad[i].index, err.msg);
        safetensors_free(st);
    }
    unlink(p);
    // Without an index, a directory needs model.safetensors.
    CHECK(safetensors_init(&st, dir, &err) == TY_E_NOT_FOUND);
    CHECK(strstr(err.msg, "model.safetensors") != NULL);
    const char *names[] = {"one.safetensors", "two.safetensors", "dup.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    CHECK(safetensors_init(&st, "/nonexistent/x.safetensors", &err) == TY_E_IO);
    CHECK(safetensors_init(&st, "", &err) == TY_E_ARG);
}

int main(void) {
    test_bad_headers();
    test_bad_framing();
    test_dtypes_and_values();
    test_md2_tiny();
    test_truncated_and_corrupted();
    test_sharded();
    return test_report("test_safetensors");
}
