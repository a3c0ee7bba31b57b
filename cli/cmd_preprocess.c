// tycho preprocess IMAGE --out DIR: decodes IMAGE, computes Moondream's tiling
// and crops, writes DIR/global.png (crop 0) and DIR/resized.png (the image the
// local crops are windows of) and prints one JSON line describing them.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "io/image.h"

static const char usage_text[] = "usage: tycho preprocess IMAGE --out DIR\n"
                                 "  writes DIR/global.png and DIR/resized.png (DIR is created if missing) and prints\n"
                                 "  {\"tiling\": [rows, cols], \"n_crops\": n, \"resized\": [h, w]}\n";

// mkdir -p: creates dir and any missing parents; an existing directory is fine.
static ty_status make_dirs(const char *dir, ty_err *err) {
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return ty_err_set(err, TY_E_NOMEM, "out of memory");
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char saved = p[i];
        p[i] = '\0';
        struct stat st;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            ty_err_set(err, TY_E_IO, "cannot create directory %s: %s", p, strerror(errno));
            free(p);
            return TY_E_IO;
        }
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            ty_err_set(err, TY_E_IO, "%s is not a directory", p);
            free(p);
            return TY_E_IO;
        }
        p[i] = saved;
    }
    free(p);
    return TY_OK;
}

int cmd_preprocess(int argc, char **argv) {
    const char *image = NULL, *out = NULL;
    ty_err err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--out")) {
            if (i + 1 >= argc) {
                ty_err_set(&err, TY_E_ARG, "--out needs a directory");
                return cli_fail("preprocess", &err);
            }
            out = argv[++i];
        } else if (!strncmp(a, "--out=", 6)) {
            out = a + 6;
        } else if (a[0] == '-' && a[1] != '\0') {
            ty_err_set(&err, TY_E_ARG, "unknown option '%s' (see tycho preprocess --help)", a);
            return cli_fail("preprocess", &err);
        } else if (!image) {
            image = a;
        } else {
            ty_err_set(&err, TY_E_ARG, "more than one IMAGE given ('%s', '%s')", image, a);
            return cli_fail("preprocess", &err);
        }
    }
    if (!image || !out || !out[0]) {
        ty_err_set(&err, TY_E_ARG, "%s (usage: tycho preprocess IMAGE --out DIR)",
                   !image ? "no IMAGE given" : "no --out DIR given");
        return cli_fail("preprocess", &err);
    }

    image_rgb img;
    if (image_load_file(&img, image, NULL, &err)) return cli_fail("preprocess", &err);
    image_crops crops;
    ty_status st = image_make_crops(&crops, &img, &err);
    image_rgb_free(&img);
    if (st) return cli_fail("preprocess", &err);

    size_t n = strlen(out) + sizeof "/resized.png";
    char *path = malloc(n);
    st = path ? make_dirs(out, &err) : ty_err_set(&err, TY_E_NOMEM, "out of memory");
    if (!st) {
        snprintf(path, n, "%s/global.png", out);
        st = image_write_png(&crops.global, path, &err);
    }
    if (!st) {
        snprintf(path, n, "%s/resized.png", out);
        st = image_write_png(&crops.resized, path, &err);
    }
    if (!st)
        printf("{\"tiling\": [%d, %d], \"n_crops\": %d, \"resized\": [%d, %d]}\n", crops.tiling.rows, crops.tiling.cols,
               crops.n_crops, crops.resized.height, crops.resized.width);
    free(path);
    image_crops_free(&crops);
    return st ? cli_fail("preprocess", &err) : 0;
}
