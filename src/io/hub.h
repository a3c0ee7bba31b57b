// Resolves a model argument to local files: a directory holding the
// checkpoint, config.json and tokenizer.json, or a Hugging Face repo id
// ("vikhyatk/moondream2[@revision]") found in the local HF cache
// ($HF_HOME/hub, default ~/.cache/huggingface/hub). Nothing is downloaded.
#ifndef TYCHO_IO_HUB_H
#define TYCHO_IO_HUB_H

#include "core/err.h"

#define HUB_PATH_MAX 4096

typedef struct {
    char model_dir[HUB_PATH_MAX];  // checkpoint + config.json
    char tokenizer[HUB_PATH_MAX];  // tokenizer.json
} hub_paths;

ty_status hub_resolve(const char *model, hub_paths *out, ty_err *err);

#endif
