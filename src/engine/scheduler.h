// The scheduler: continuous batching of many sequences over one model.
//
// Each step runs ONE forward that mixes the decode rows of running sequences
// with prefill chunks of new ones under a row budget; the vision tower runs
// once per step over every newly admitted image that is not cached. A
// sequence is admitted only when the KV pages of its worst case (prompt plus
// everything it may generate, capped by the context) are free or reclaimable
// from the prefix cache, so a running sequence never waits for a page and
// nothing can deadlock: requests that do not fit yet wait in FIFO order, and
// a request that could never fit is refused at submit.
//
// The scheduler knows no skill and no device: it drives sequences through
// sched_seq_ops (the engine's skill requests, or a test's scripts) and a model
// through sched_model (the Moondream model, or a test's fake). It is not
// thread safe: one thread (the engine's) calls everything here.
#ifndef TYCHO_ENGINE_SCHEDULER_H
#define TYCHO_ENGINE_SCHEDULER_H

#include "engine/kv_pages.h"
#include "engine/prefix_cache.h"
#include "engine/skill.h"

typedef struct {
    void *ctx;
    int dim, vocab, max_context;
    int prefix_len;  // BOS + image rows: 730
    int32_t bos_id;
    // Image embeddings for n images: (prefix_len - 1, dim) host f32 each.
    ty_status (*encode_images)(void *ctx, int n, void *const *images, float *const *embeds, ty_err *err);
    // Optional: readies one image for encode_images (its crops), called for
    // each image just before the tower runs, so an image that cannot be
    // prepared fails its own request alone.
    ty_status (*prepare_image)(void *ctx, void *image, ty_err *err);
    // One text forward (model/moondream.h semantics).
    ty_status (*forward)(void *ctx, const md_text_step *step, ty_err *err);
} sched_model;

typedef struct {
    // The next rows to run, or NULL when the sequence is finished.
    const skill_feed *(*next_feed)(void *owner);
    // The logits (vocab, may be modified) and hidden state (dim) of the feed's last row.
    ty_status (*consume)(void *owner, float *logits, const float *hidden, ty_err *err);
    // The sequence left the scheduler (finished, failed or cancelled); its
    // pages are released. status/err: TY_OK, TY_E_CANCELLED, or the failure.
    void (*done)(void *owner, ty_status status, const ty_err *err);
    // Optional: the image will not be read again (the tower ran, or the
    // prefix came from the cache), so its pixels can be freed.
    void (*image_used)(void *owner);
} sched_seq_ops;

typedef enum { SEQ_NEW, SEQ_WAITING, SEQ_RUNNING, SEQ_DONE } sched_seq_state;

typedef struct sched_seq sched_seq;
struct sched_seq {
    // Set by the owner before sched_submit.
    const sched_seq_ops *ops;
    void *owner;
    int has_image;
    pc_key image_key;   // hash of the decoded pixels and the model
    void *image;        // handed to sched_model.encode_images on a cache miss
    int max_positions;  // worst-case KV positions (prompt + generation, <= max_context)
    int prefix_only;    // only compute the image prefix into the cache (no feeds)

    // Scheduler state.
    sched_seq_state state;
    sched_seq *next;         // waiting queue
    int32_t *pages;          // page table: position p in pages[p / page_size]
    int n_pages, own_pages;  // pages in the table; of them, taken by this sequence (not shared)
    int reserved;            // pages this sequence may still take
    int prefix;              // bidirectional prefix: prefix_len with an image, else 0
    int pos;                 // positions written
    pc_node *root;           // prefix cache root (image, or the text-only root)
    int computing_root;      // this sequence computes root's image prefix
    int need_vision;
    float *embeds;           // (prefix_len - 1, dim) own image embeddings on a miss
    const skill_feed *feed;  // feed being run
    int feed_base;           // position of the feed's first row
    int feed_off;            // rows of the feed already run
    int feeds_done;          // feeds consumed (0: the prompt is being prefilled)
    int cached_tokens;       // positions reused from the prefix cache
    int step_rows;           // rows in the current step
    int step_feed_rows;      // of them, rows of the feed
    int step_completes;      // the step runs the feed's last row
    double t_admit, t_first; // ms (scheduler clock): admission, first output consumed
};

typedef struct {
    uint64_t steps, rows, vision_images, cached_tokens;
} sched_stats;

typedef struct {
    sched_model model;
    kv_pages pool;
    prefix_cache cache;
    int use_cache;
    int max_batch, max_rows;
    sched_seq *wait_head, *wait_tail;
    int n_waiting;
    sched_seq **running;  // (max_batch)
    int n_running;
    sched_stats stats;
    // Per-step buffers, grown as needed.
    int32_t *ids, *seq_of, *pos, *out_rows, *prefix, *kv_len;
    const int32_t **page_tables;
    float *embeds, *logits, *hidden;
    int cap_rows, cap_embeds, cap_out;
    sched_seq **step_seqs;
} scheduler;

typedef struct {
    int n_pages, page_size;
    int max_batch;  // running sequences
    int max_rows;   // rows per forward (>= prefix_len)
    int use_cache;
} sched_options;

ty_status sched_init(scheduler *s, const sched_model *m, const sched_options *o, ty_err *err);
// Every sequence must have left (done) before this.
void sched_free(scheduler *s);

// Queues seq. Fails (and does not queue it) when it can never fit.
ty_status sched_submit(scheduler *s, sched_seq *seq, ty_err *err);
// Removes seq wherever it is; its done callback runs with TY_E_CANCELLED.
void sched_cancel(scheduler *s, sched_seq *seq);
// Runs one step. *idle is set when there was nothing to run.
void sched_step(scheduler *s, int *idle);

// Scheduler clock in ms (monotonic).
double sched_now_ms(void);

#endif
