// Skills as per-request state machines (moondream.md §10-12): caption, query
// (plain, reasoning with grounding, spatial refs, text-only), detect, point.
//
// A skill never runs the model itself. The runner (later the scheduler) asks
// it for its next input rows with skill_next_feed, runs them as part of a
// batch, and hands back the logits and raw hidden state of the feed's last
// row with skill_consume. The skill samples, applies the reference's
// suppression and stop rules, streams text and decodes regions. It needs the
// model only for the region head's small encoders and decoders.
#ifndef TYCHO_ENGINE_SKILL_H
#define TYCHO_ENGINE_SKILL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/sampler.h"
#include "engine/stream.h"
#include "io/tokenizer.h"
#include "model/moondream.h"

typedef enum { SKILL_CAPTION, SKILL_QUERY, SKILL_DETECT, SKILL_POINT } skill_kind;
typedef enum { CAPTION_SHORT, CAPTION_NORMAL, CAPTION_LONG } caption_length;
typedef enum { FINISH_NONE, FINISH_STOP, FINISH_LENGTH, FINISH_CANCELLED, FINISH_ERROR } finish_reason;

#define SKILL_MAX_REFS 16

typedef struct {
    int n;        // 2 (point x, y) or 4 (box x_min, y_min, x_max, y_max)
    double v[4];
} spatial_ref;

typedef struct {
    skill_kind kind;
    int has_image;             // query only: 0 = text-only
    caption_length length;     // caption
    const char *question;      // query
    int reasoning;             // query
    int n_refs;                // query, image only
    spatial_ref refs[SKILL_MAX_REFS];
    const char *object;        // detect, point
    int max_tokens;            // >= 1
    float temperature;         // >= 0
    float top_p;               // (0, 1]
    uint64_t seed;
    int max_objects;           // >= 1
    int ignore_eos;            // answers run to max_tokens: EOS is streamed like any token (benchmarks)
} skill_params;

// Defaults of the reference: 768 tokens, temperature 0.5, top_p 0.3, 50 objects.
void skill_params_default(skill_params *p, skill_kind kind);

typedef struct {
    double x_min, y_min, x_max, y_max;  // detect
    double x, y;                        // point
} skill_object;

typedef struct {
    int start_idx, end_idx;  // code point offsets into the reasoning text
    int n_points;
    double (*points)[2];
} skill_grounding;

// Called with each newly released piece of answer text (never empty).
typedef void (*skill_text_fn)(void *user, const char *text, size_t len);

typedef struct skill_request skill_request;

// Rows to run next, appended at the request's current position; the runner
// returns logits and hidden of the last row.
typedef struct {
    int n_rows;
    const int32_t *ids;    // (n_rows) token ids; -1 where the row is an embedding
    const float *embeds;   // (rows with id -1, dim)
} skill_feed;

// Validates params and builds the prompt. The request starts at position
// start_pos (730 after an image prefix, 0 without an image).
ty_status skill_init(skill_request **out, md_model *m, const tokenizer *tok, const skill_params *p, int start_pos,
                     skill_text_fn on_text, void *user, ty_err *err);
void skill_free(skill_request *r);

// The next rows to run, or NULL when the request is finished.
const skill_feed *skill_next_feed(skill_request *r);
// Position of the feed's first row.
int skill_pos(const skill_request *r);
// Consumes the outputs of the last feed: logits (vocab, modified) and hidden (dim).
ty_status skill_consume(skill_request *r, float *logits, const float *hidden, ty_err *err);
// Ends the request early (cancel, or an error elsewhere in the batch).
void skill_abort(skill_request *r, finish_reason why);

// Results, valid once skill_next_feed returns NULL.
finish_reason skill_finish(const skill_request *r);
const char *skill_text(const skill_request *r);            // caption or answer
const char *skill_reasoning(const skill_request *r);       // NULL unless reasoning
int skill_grounding_count(const skill_request *r);
const skill_grounding *skill_grounding_at(const skill_request *r, int i);
int skill_object_count(const skill_request *r);
const skill_object *skill_object_at(const skill_request *r, int i);
// Every token fed after the first prompt (the golden files' "emitted_ids").
const int32_t *skill_fed_ids(const skill_request *r, int *n);
int skill_prompt_tokens(const skill_request *r);   // tokens of the first prompt
// Most KV positions the request can fill (start, prompt, everything it may
// generate; capped by the context): what the scheduler reserves.
int skill_max_positions(const skill_request *r);
// Positions the prompt and the requested output need (start + prompt +
// max_tokens, or the object rows for detect/point): a request asking more than
// the context is refused.
int skill_requested_positions(const skill_request *r);
int skill_output_tokens(const skill_request *r);   // tokens generated

#endif
