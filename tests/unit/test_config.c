// Moondream config parsing: real Moondream 2 defaults when fields are absent,
// bare or nested under "config", Moondream 3 detection, and clear errors for
// wrong types, values that cannot go together, and MoE settings that cannot work.
#include <string.h>

#include "model/config.h"
#include "test.h"

static ty_status parse(md_config *c, const char *json, ty_err *err) { return md_config_parse(c, json, strlen(json), err); }

int main(void) {
    md_config c;
    ty_err err;
    CHECK(parse(&c, "{}", &err) == TY_OK);
    CHECK(c.arch == MD_ARCH_MD2 && c.text.dim == 2048 && c.text.n_layers == 24 && c.vision.enc_dim == 1152);
    CHECK(c.text.rope_theta == 10000.0f && c.region.inner_dim == 8192 && c.tok.caption[0].ids[3] == 12492);
    CHECK(c.tok.query_prefix.n == 3 && c.tok.query_prefix.ids[1] == 15381 && c.tok.detect_prefix.ids[2] == 476);

    CHECK(parse(&c, "{\"text\": {\"dim\": 256, \"n_heads\": 4, \"n_kv_heads\": 4}}", &err) == TY_OK);
    CHECK(c.text.dim == 256 && c.text.ff_dim == 8192);
    CHECK(parse(&c, "{\"config\": {\"text\": {\"dim\": 256, \"n_heads\": 4, \"n_kv_heads\": 4}}}", &err) == TY_OK);
    CHECK(c.text.dim == 256);
    CHECK(parse(&c, "{\"config\": {\"tokenizer\": {\"templates\": {\"caption\": {\"short\": [1, 2, 3]}, "
                    "\"query\": {\"prefix\": [9], \"suffix\": [8]}}}}}", &err) == TY_OK);
    CHECK(c.tok.caption[0].n == 3 && c.tok.caption[1].n == 5 && c.tok.query_prefix.ids[0] == 9);

    CHECK(parse(&c, "{\"model_type\": \"moondream3\", \"config\": {\"text\": {\"moe\": {\"num_experts\": 8, "
                    "\"start_layer\": 2, \"experts_per_token\": 3, \"expert_inner_dim\": 64}}}}", &err) == TY_OK);
    CHECK(c.arch == MD_ARCH_MD3 && c.text.rope_theta == 1500000.0f && c.text.moe.num_experts == 8);
    CHECK(c.text.max_context == 4096 && !c.text.tau_gelu_tanh);
    CHECK(c.given == (MD_GIVEN_NUM_EXPERTS | MD_GIVEN_START_LAYER | MD_GIVEN_TOP_K | MD_GIVEN_EXPERT_INNER));
    // Settings given explicitly are marked so the loader keeps them; the rest come from the tensors.
    CHECK(parse(&c, "{\"model_type\": \"moondream3\", \"config\": {\"skills\": [\"query\"]}}", &err) == TY_OK);
    CHECK(c.arch == MD_ARCH_MD3 && c.given == 0 && c.text.moe.num_experts == 0 && c.text.dim == 2048);
    CHECK(parse(&c, "{\"config\": {\"text\": {\"max_context\": 32768, \"tau_gelu\": \"tanh\", \"moe\": "
                    "{\"experts_per_token\": 4}}, \"rope_theta\": 1e6}}", &err) == TY_OK);
    CHECK(c.arch == MD_ARCH_MD2 && c.text.max_context == 32768 && c.text.tau_gelu_tanh && c.text.rope_theta == 1e6f);
    CHECK(c.given == (MD_GIVEN_MAX_CONTEXT | MD_GIVEN_TOP_K | MD_GIVEN_ROPE_THETA) && c.text.moe.experts_per_token == 4);

    struct {
        const char *json, *needle;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{\"text\": {\"dim\": \"big\"}}", "text.dim must be an integer"},
        {"{\"text\": {\"dim\": 2.5}}", "text.dim must be an integer"},
        {"{\"text\": {\"n_layers\": 0}}", "text.n_layers must be an integer"},
        {"{\"text\": {\"dim\": 1.4e124}}", "text.dim must be an integer"},
        {"{\"text\": {\"dim\": -1e300}}", "text.dim must be an integer"},
        {"{\"text\": 3}", "must be objects"},
        {"{\"text\": {\"dim\": 100, \"n_heads\": 3}}", "do not divide"},
        {"{\"text\": {\"dim\": 64, \"n_heads\": 4, \"n_kv_heads\": 4}}", "below the 32 rotary dims"},
        {"{\"vision\": {\"crop_size\": 224}}", "378 px"},
        {"{\"vision\": {\"enc_dim\": 100}}", "enc_n_heads"},
        {"{\"text\": {\"moe\": {\"num_experts\": 4, \"experts_per_token\": 5}}}", "experts_per_token 5 > num_experts 4"},
        {"{\"text\": {\"moe\": 7}}", "text.moe must be an object"},
        {"{\"text\": {\"n_layers\": 4, \"moe\": {\"start_layer\": 4}}}", "start_layer 4 is past the last of 4 layers"},
        {"{\"text\": {\"moe\": {\"num_experts\": 0}}}", "text.moe.num_experts must be an integer"},
        {"{\"text\": {\"tau_gelu\": \"relu\"}}", "tau_gelu must be"},
        {"{\"text\": {\"max_context\": 2000000}}", "text.max_context must be an integer"},
        {"{\"tokenizer\": {\"templates\": {\"query\": {\"prefix\": [1, -2]}}}}", "holds a non-id"},
        {"{\"tokenizer\": {\"templates\": {\"caption\": {\"short\": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}}}",
         "at most 16"},
        {"{\"rope_theta\": 0.5}", "rope_theta"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ty_status s = parse(&c, bad[i].json, &err);
        CHECK_MSG(s != TY_OK && strstr(err.msg, bad[i].needle), "%s -> '%s'", bad[i].json, s ? err.msg : "ok");
    }
    CHECK(md_config_load(&c, TEST_DATA("golden/md2-tiny/config.json"), &err) == TY_OK && c.text.dim == 128);
    CHECK(md_config_load(&c, TEST_DATA("nope.json"), &err) == TY_E_IO);
    return test_report("test_config");
}
