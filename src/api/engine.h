// Internals of the public API (include/tycho.h): the engine and request
// structs, shared by engine.c (the thread, the scheduler glue) and tycho.c
// (parameters, results, JSON). Not installed.
#ifndef TYCHO_API_ENGINE_H
#define TYCHO_API_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/crop_pool.h"
#include "engine/md_runner.h"
#include "engine/scheduler.h"
#include "engine/skill.h"
#include "io/image.h"
#include "io/tokenizer.h"
#include "model/moondream.h"
#include "tycho.h"

// What tycho bench asks beyond tycho_options. With a checkpoint, the model
// comes from memory instead of options.model (random weights): the config, a
// safetensors image (borrowed: it must outlive the engine), a tokenizer.json
// path and a name. ignore_eos: answers run to max_tokens whatever they sample
// (vLLM's ignore_eos), so a benchmark's token counts are exact.
typedef struct {
    const md_config *cfg;
    const uint8_t *checkpoint;
    size_t checkpoint_len;
    const char *tokenizer;
    const char *name;  // seeds the model fingerprint (image keys)
    int ignore_eos;
} engine_model_source;

struct tycho_engine {
    ty_backend *be;
    md_model *m;
    tokenizer *tok;
    md_runner run;
    scheduler sch;
    int sch_ready;
    uint64_t model_key;  // seeds image hashes: keys of one model never match another's
    crop_pool *crops;  // makes submitted images' crops ahead of the vision tower
    pthread_t thread;
    int thread_running;
    pthread_mutex_t mu;  // guards what follows
    pthread_cond_t wake;
    int stop, wake_pending;
    tycho_request *incoming, *incoming_tail;  // submitted, not yet seen by the engine thread
    int n_incoming, sched_waiting, max_queue;
    pc_key recent_keys[64];  // images whose crops were queued last (a repeat will hit the prefix cache)
    int n_recent, recent_next;
    tycho_engine_stats stats;  // published after every step
    // Engine thread only:
    tycho_request *inflight;       // in the scheduler
    tycho_engine_stats counters;   // request and token counters
    _Atomic uint64_t seed_counter;
    int ignore_eos;         // engine_model_source.ignore_eos (set at init, read by tycho_submit)
    double t_memory;        // when device memory was last asked (sched_now_ms)
};

struct tycho_request {
    tycho_engine *e;
    tycho_skill skill;
    skill_request *sk;  // NULL for TYCHO_SKILL_ENCODE_IMAGE
    sched_seq seq;
    image_rgb img;
    md_runner_image image;  // what the scheduler hands the vision tower
    crop_job crop;          // the crops of img; released when the vision ran or the request ends
    char image_key[33];
    _Atomic int cancel;
    tycho_request *next, *prev;  // incoming queue, then the engine's in-flight list
    double t_submit, t_done;
    // Under mu:
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done;
    ty_status status;
    ty_err err;
};

ty_status engine_init(tycho_engine **out, const tycho_options *o, ty_err *err);
// engine_init with src's settings and, when src->checkpoint is set, its model (o->model is then ignored).
ty_status engine_init_source(tycho_engine **out, const tycho_options *o, const engine_model_source *src, ty_err *err);
void engine_free(tycho_engine *e);
// Queues a prepared request (skill built, image decoded, seq filled in).
ty_status engine_submit(tycho_engine *e, tycho_request *r, ty_err *err);
void engine_wake(tycho_engine *e);
void engine_get_stats(tycho_engine *e, tycho_engine_stats *s);
// The prefix-cache key of decoded pixels for this engine's model.
pc_key engine_image_key(const tycho_engine *e, const image_rgb *img);

#endif
