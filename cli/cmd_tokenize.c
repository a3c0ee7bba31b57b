// tycho tokenize --tokenizer FILE.json
//
// Reads JSON lines {"text": "..."} on stdin and writes, per line, one line
// {"ids": [...], "decoded": "..."} on stdout, where ids = encode(text) and
// decoded = decode(ids) (special tokens skipped), as HF tokenizers computes
// them. Empty lines are skipped. At the first bad line (not JSON, no string
// "text", invalid UTF-8, ...) it prints "tycho tokenize: line N: why" on
// stderr and exits 1 without reading further, so every output line always
// answers the input line at the same position.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/tokenizer.h"

#define MAX_LINE_BYTES ((size_t)64 << 20)

static void usage(FILE *f) {
    fprintf(f, "usage: tycho tokenize --tokenizer FILE.json < lines.jsonl\n"
               "  each input line {\"text\": \"...\"} gives one output line {\"ids\": [...], \"decoded\": \"...\"}\n");
}

// cJSON strings end at NUL, so "\u0000" would be read short: refuse it instead
// (raw NUL bytes in a line are refused too).
static int has_nul_escape(const char *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return 1;
        i++;  // skip the escaped character ("\\u0000" is a backslash and "u0000")
    }
    return 0;
}

// Encodes one input line and prints its answer; on failure fills err.
static ty_status tokenize_line(const tokenizer *t, const char *line, size_t len, ty_err *err) {
    if (has_nul_escape(line, len)) return ty_err_set(err, TY_E_UNSUPPORTED, "text with \\u0000 is not supported");
    if (memchr(line, '\0', len)) return ty_err_set(err, TY_E_FORMAT, "line contains a NUL byte");
    const char *end = line;
    cJSON *in = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    while (in && end < line + len && strchr(" \t", *end)) end++;
    if (in && end != line + len) {  // "{...} junk" is not one JSON value
        cJSON_Delete(in);
        in = NULL;
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(in, "text");
    if (!cJSON_IsString(text)) {
        cJSON_Delete(in);
        return ty_err_set(err, TY_E_FORMAT, in ? "expected an object with a string \"text\"" : "not valid JSON");
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *decoded = NULL;
    size_t dec_len = 0;
    ty_status st = tokenizer_encode(t, text->valuestring, strlen(text->valuestring), &ids, &n_ids, err);
    cJSON_Delete(in);
    if (!st) st = tokenizer_decode(t, ids, n_ids, &decoded, &dec_len, err);
    cJSON *out = st ? NULL : cJSON_CreateObject();
    cJSON *arr = out ? cJSON_AddArrayToObject(out, "ids") : NULL;
    for (size_t i = 0; arr && i < n_ids; i++) {
        cJSON *num = cJSON_CreateNumber(ids[i]);
        if (!num || !cJSON_AddItemToArray(arr, num)) arr = NULL;
    }
    char *json = arr && cJSON_AddStringToObject(out, "decoded", decoded) ? cJSON_PrintUnformatted(out) : NULL;
    if (!st && !json) st = ty_err_set(err, TY_E_NOMEM, "out of memory");
    if (json) printf("%s\n", json);
    free(json);
    cJSON_Delete(out);
    free(ids);
    free(decoded);
    return st;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strncmp(argv[i], "--tokenizer=", 12)) {
            path = argv[i] + 12;
        } else {
            fprintf(stderr, "tycho tokenize: unexpected argument '%s' (see tycho tokenize --help)\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "tycho tokenize: missing --tokenizer FILE.json (see tycho tokenize --help)\n");
        return 2;
    }
    ty_err err = {0};
    tokenizer *t;
    if (tokenizer_init_from_file(&t, path, &err)) return cli_fail("tokenize", &err);

    char *line = NULL;
    size_t cap = 0, line_no = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &cap, stdin)) >= 0) {
        line_no++;
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 0) continue;
        ty_status st = len > MAX_LINE_BYTES
                           ? ty_err_set(&err, TY_E_LIMIT, "%zu bytes exceeds the limit of %zu", len, MAX_LINE_BYTES)
                           : tokenize_line(t, line, len, &err);
        if (st) {
            fflush(stdout);
            fprintf(stderr, "tycho tokenize: line %zu: %s\n", line_no, err.msg);
            rc = 1;
            break;
        }
    }
    free(line);
    tokenizer_free(t);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tycho tokenize: cannot write the output\n");
        rc = 1;
    }
    return rc;
}
