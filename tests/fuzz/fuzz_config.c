// libFuzzer target: arbitrary bytes as a model's config.json. Whatever parses
// must satisfy the relations the model code relies on.
#include <stdint.h>
#include <stdlib.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    md_config c;
    ty_err err;
    if (md_config_parse(&c, (const char *)data, size, &err) != TY_OK) return 0;
    if (c.text.dim % c.text.n_heads || c.text.n_heads % c.text.n_kv_heads || c.vision.enc_dim % c.vision.enc_n_heads)
        abort();
    if (c.text.moe.num_experts && c.text.moe.experts_per_token > c.text.moe.num_experts) abort();
    for (int i = 0; i < 3; i++)
        if (c.tok.caption[i].n < 0 || c.tok.caption[i].n > MD_MAX_TEMPLATE) abort();
    return 0;
}
