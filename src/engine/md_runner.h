// The Moondream model as the scheduler sees it (sched_model): its KV cache in
// pages, the vision tower over a batch of images, and the text forward.
#ifndef TYCHO_ENGINE_MD_RUNNER_H
#define TYCHO_ENGINE_MD_RUNNER_H

#include "engine/crop_pool.h"
#include "engine/md_shadow.h"
#include "engine/scheduler.h"
#include "io/image.h"
#include "model/moondream.h"

// What a sequence hands the scheduler as its image: decoded pixels, or image
// embeddings computed before ((729, text dim), used as they are). With a crop
// job (the engine's requests), the crops come from it (made ahead on the
// engine's crop threads, or here when none has started; the owner releases
// it); without one, they are made here from rgb.
typedef struct {
    const image_rgb *rgb;
    const float *embeds;
    crop_job *crops;
} md_runner_image;

typedef struct {
    md_model *m;
    md_kv_cache kv;
    md_shadow *shadow;  // TYCHO_DEBUG_SHADOW: each forward checked against the CPU (md_shadow.h)
} md_runner;

ty_status md_runner_init(md_runner *r, md_model *m, int n_pages, int page_size, ty_err *err);
void md_runner_free(md_runner *r);
// The sched_model of r (r must outlive the scheduler using it).
sched_model md_runner_model(md_runner *r);

#endif
