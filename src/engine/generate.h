// Runs one request to completion, synchronously on the calling thread,
// through the scheduler as a batch of one (the engine's path, without its
// thread, queue or prefix cache): for tests and tools that want the first
// logits or precomputed image embeddings.
#ifndef TYCHO_ENGINE_GENERATE_H
#define TYCHO_ENGINE_GENERATE_H

#include "engine/skill.h"
#include "io/image.h"

typedef struct {
    double prefill_ms, decode_ms, ttft_ms;  // prefill includes the vision tower
    int prefix_tokens;
    float *first_logits;  // in: NULL or (vocab) to receive the logits of the first generated position
} generate_stats;

// The request's image: decoded pixels, or image embeddings computed before
// (generate_image_embeds), or neither for a text-only query.
typedef struct {
    const image_rgb *rgb;
    const float *embeds;  // (729, text dim), used instead of rgb when set
} generate_image;

// *out receives the finished request (skill_free it) even when a step failed
// midway, so partial output is kept. image and stats may be NULL.
ty_status generate_one(md_model *m, const tokenizer *tok, const generate_image *image, const skill_params *p,
                       skill_text_fn on_text, void *user, skill_request **out, generate_stats *stats, ty_err *err);

// Vision tower + projection for one image: (729, text dim) embeddings, host f32.
ty_status generate_image_embeds(md_model *m, const image_rgb *img, float *embeds, ty_err *err);

#endif
