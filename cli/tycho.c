#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *help;
} commands[] = {
    {"caption", cmd_caption, "caption --model M IMAGE [--length short|normal|long]"},
    {"query", cmd_query, "query --model M [IMAGE] --question TEXT [--reasoning] [--spatial-ref x,y[,x2,y2]]"},
    {"detect", cmd_detect, "detect --model M IMAGE --object NAME [--max-objects N] [--draw OUT.png]"},
    {"point", cmd_point, "point --model M IMAGE --object NAME [--max-objects N] [--draw OUT.png]"},
    {"batch", cmd_batch, "batch --model M FILE.jsonl [--max-batch-size N] [--kv-pages N] [--no-prefix-cache] [--seed S]\n"
                         "                                   JSON lines of API requests -> one result line each, in order"},
    {"serve", cmd_serve, "serve --model M [--host 127.0.0.1] [--port 2020] [--api-key K]\n"
                         "                                   HTTP server: Moondream API + OpenAI chat (serve --help)"},
    {"bench", cmd_bench, "bench --model md2|md3|DIR [--mode direct|cot] [--batch 1,4,16,64] [--json]\n"
                         "                                   the benchmark workload through the engine (bench --help)"},
    {"tokenize", cmd_tokenize, "tokenize --tokenizer FILE.json   JSON lines {\"text\"} on stdin -> {\"ids\",\"decoded\"}"},
    {"preprocess", cmd_preprocess, "preprocess IMAGE --out DIR        tiling and crops of an image"},
    {"inspect", cmd_inspect, "inspect MODEL [--values N]        list the tensors of a safetensors checkpoint"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: tycho <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) fprintf(f, "  %s\n", commands[i].help);
    fprintf(f, "\nskills take: --max-tokens N --temperature T --top-p P --seed S --device cpu|cuda[:N] --precision f32|bf16 --threads N --stream --json\n");
}

int cli_fail(const char *cmd, const ty_err *err) {
    fprintf(stderr, "tycho %s: %s\n", cmd, err->msg[0] ? err->msg : ty_status_name(err->code));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "tycho: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
