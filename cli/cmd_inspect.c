// tycho inspect MODEL [--json] [--values N]
// Lists the tensors of a checkpoint (file, index or directory): name, dtype,
// shape; with --json one object per line including the first N values and the
// float64 sum of all values, so a checkpoint can be compared with other tools.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/safetensors.h"

static int is_float(ty_dtype t) {
    return t == TY_DTYPE_BF16 || t == TY_DTYPE_F16 || t == TY_DTYPE_F32 || t == TY_DTYPE_F64;
}

static void print_json(const safetensors_tensor *t, long n_values) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "dtype", dtype_name(t->dtype));
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->n_dims; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
    if (is_float(t->dtype)) {
        cJSON *vals = cJSON_AddArrayToObject(o, "values");
        double sum = 0.0;
        for (int64_t i = 0; i < t->n_elements; i++) {
            float v = safetensors_get_f32(t, i);
            sum += v;
            if (i < n_values) cJSON_AddItemToArray(vals, cJSON_CreateNumber(v));
        }
        // %.17g round-trips a double exactly; cJSON prints only 15 digits.
        char buf[64];
        snprintf(buf, sizeof buf, "%.17g", sum);
        cJSON_AddStringToObject(o, "sum", buf);
    }
    char *s = cJSON_PrintUnformatted(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    long n_values = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--values") && i + 1 < argc) {
            char *end;
            n_values = strtol(argv[++i], &end, 10);
            if (*end || n_values < 0) {
                fprintf(stderr, "tycho inspect: --values needs a non-negative integer\n");
                return 2;
            }
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "tycho inspect: unexpected argument '%s'\nusage: tycho inspect MODEL [--json] [--values N]\n",
                    argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: tycho inspect MODEL [--json] [--values N]\n");
        return 2;
    }
    ty_err err = {0};
    safetensors *st;
    if (safetensors_init(&st, path, &err) != TY_OK) return cli_fail("inspect", &err);
    for (size_t i = 0; i < safetensors_count(st); i++) {
        const safetensors_tensor *t = safetensors_at(st, i);
        if (json) {
            print_json(t, n_values);
            continue;
        }
        printf("%-60s %-7s [", t->name, dtype_name(t->dtype));
        for (int d = 0; d < t->n_dims; d++) printf(d ? ", %lld" : "%lld", (long long)t->shape[d]);
        printf("]\n");
    }
    if (!json)
        fprintf(stderr, "%zu tensors in %d file(s)\n", safetensors_count(st), safetensors_shard_count(st));
    safetensors_free(st);
    return 0;
}
