// Encode (and decode) throughput of the tokenizer on one core.
// usage: bench_tokenizer [tokenizer.json [corpus.txt]]
// Defaults: the GPT-2 tokenizer of tests/data and a generated English corpus
// (a paragraph varied and repeated to 4 MB), encoded in 2 KB chunks the size
// of a long prompt; also the (mostly non-English) texts of the HF vectors, x64.
// Prints the median MB/s over the runs.
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#include "core/file.h"
#include "io/tokenizer.h"

#define RUNS 7
#define CHUNK 2048

static char *english_corpus(size_t target, size_t *len) {
    static const char *sentences[] = {
        "The quick brown fox jumps over the lazy dog while the farmer's children watch from the porch.",
        " In 2024, researchers reported that vision-language models can describe images in detail,",
        " answer questions about charts, and point at objects; it's a remarkable change from a decade ago.",
        " \"What is in this image?\" she asked, and the model replied: a red bicycle leaning against a wall.",
        " Prices rose 3.5% in March, then fell to $1,299.99 by June - analysts weren't surprised.\n",
        " We'll need to check the results again tomorrow morning before the 10:30 meeting.\n\n",
    };
    char *buf = malloc(target + 256);
    size_t n = 0;
    for (unsigned i = 0; buf && n < target; i = i * 7 + 3) {
        const char *s = sentences[i % 6];
        size_t l = strlen(s);
        memcpy(buf + n, s, l);
        n += l;
    }
    *len = n;
    return buf;
}

static char *vectors_corpus(const char *path, size_t *len) {
    uint8_t *text;
    size_t n;
    ty_err err = {0};
    if (file_read_all(path, (size_t)64 << 20, &text, &n, &err)) return NULL;
    cJSON *root = cJSON_ParseWithLength((const char *)text, n);
    free(text);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    size_t total = 0;
    for (const cJSON *e = v ? v->child : NULL; e; e = e->next)
        total += strlen(cJSON_GetObjectItemCaseSensitive(e, "text")->valuestring) + 1;
    char *buf = malloc(64 * total + 1);  // repeated 64 times, for stable timings
    *len = 0;
    for (int r = 0; r < 64; r++)
        for (const cJSON *e = v ? v->child : NULL; buf && e; e = e->next) {
            const char *s = cJSON_GetObjectItemCaseSensitive(e, "text")->valuestring;
            memcpy(buf + *len, s, strlen(s));
            *len += strlen(s);
            buf[(*len)++] = '\n';
        }
    cJSON_Delete(root);
    return buf;
}

static void bench(const tokenizer *t, const char *name, const char *text, size_t len) {
    double enc[RUNS], dec[RUNS];
    size_t n_tokens = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now(), t_dec = 0;
        n_tokens = 0;
        for (size_t off = 0; off < len;) {
            size_t n = len - off < CHUNK ? len - off : CHUNK;
            while (off + n < len && (text[off + n] & 0xC0) == 0x80) n++;  // whole characters
            int32_t *ids;
            size_t n_ids;
            ty_err err;
            if (tokenizer_encode(t, text + off, n, &ids, &n_ids, &err)) {
                fprintf(stderr, "encode failed: %s\n", err.msg);
                exit(1);
            }
            double t1 = bench_now();
            char *out;
            size_t out_len;
            if (tokenizer_decode(t, ids, n_ids, &out, &out_len, &err)) {
                fprintf(stderr, "decode failed: %s\n", err.msg);
                exit(1);
            }
            t_dec += bench_now() - t1;
            free(out);
            free(ids);
            n_tokens += n_ids;
            off += n;
        }
        dec[r] = len / 1e6 / t_dec;
        enc[r] = len / 1e6 / (bench_now() - t0 - t_dec);
    }
    qsort(enc, RUNS, sizeof enc[0], bench_cmp_double);
    qsort(dec, RUNS, sizeof dec[0], bench_cmp_double);
    printf("%-22s %8.2f MB  %9zu tokens  encode %7.2f MB/s (min %.2f max %.2f)  decode %8.2f MB/s\n", name, len / 1e6,
           n_tokens, enc[RUNS / 2], enc[0], enc[RUNS - 1], dec[RUNS / 2]);
}

int main(int argc, char **argv) {
    const char *tok_path = argc > 1 ? argv[1] : TYCHO_TEST_DATA "/golden/tokenizer/gpt2.json";
    ty_err err = {0};
    tokenizer *t;
    double t0 = bench_now();
    if (tokenizer_init_from_file(&t, tok_path, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    printf("load %s: %.1f ms, vocab %d; median of %d runs, %d-byte chunks, one thread\n", tok_path,
           (bench_now() - t0) * 1e3, tokenizer_vocab_size(t), RUNS, CHUNK);
    size_t len;
    char *text;
    if (argc > 2) {
        if (file_read_all(argv[2], (size_t)1 << 30, (uint8_t **)&text, &len, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        bench(t, argv[2], text, len);
    } else {
        text = english_corpus((size_t)4 << 20, &len);
        bench(t, "english (generated)", text, len);
        free(text);
        text = vectors_corpus(TYCHO_TEST_DATA "/golden/tokenizer/gpt2.vectors.json", &len);
        if (text) bench(t, "vectors texts", text, len);
    }
    free(text);
    tokenizer_free(t);
    return 0;
}
