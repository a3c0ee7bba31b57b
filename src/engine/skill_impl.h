// Internals shared by skill.c (prompts, lifecycle, dispatch) and
// skill_steps.c (the per-phase state transitions). Not part of the engine API.
#ifndef TYCHO_ENGINE_SKILL_IMPL_H
#define TYCHO_ENGINE_SKILL_IMPL_H

#include "engine/skill.h"

typedef enum {
    ST_PROMPT,         // the first prompt; its outputs give the first token
    ST_ANSWER,         // one answer token fed back per step
    ST_REASON,         // one reasoning token (or coordinate embedding) per step
    ST_ANSWER_PROMPT,  // the answer prompt after reasoning
    ST_OBJ_X,          // detect/point: x embedding fed, its hidden gives y
    ST_OBJ_Y,          // detect: y embedding fed, its hidden gives the size
    ST_OBJ_LAST,       // last embedding of an object fed: logits say whether another follows
    ST_DONE
} skill_state;

typedef struct {
    int32_t *ids;
    int n, cap;
} id_list;

typedef struct {
    id_list tokens;
    double *coords;
    int n_coords, cap_coords;
} reason_chunk;

struct skill_request {
    md_model *m;
    const tokenizer *tok;
    skill_params p;
    char *question, *object;  // owned copies
    skill_state state;
    finish_reason finish;
    int pos, dim, vocab;
    int start_pos;   // position of the first prompt row
    int next;        // token sampled from the last outputs
    int generated;   // tokens generated in the current phase
    int prompt_len;
    int output_tokens;
    float *hidden;   // (dim) the last hidden state the region head reads
    float *embeds;   // (rows, dim) embedding rows of the current feed
    int cap_embeds;  // rows
    id_list feed_ids, fed;
    skill_feed feed;
    float x;         // detect/point: coordinates of the object being decoded
    float y;
    int *scratch;    // (2 * vocab) for the sampler
    sampler_rng rng;
    text_stream answer;
    skill_text_fn on_text;
    void *user;
    reason_chunk *chunks;
    int n_chunks;
    char *reasoning;
    skill_grounding *grounding;
    int n_grounding;
    skill_object *objects;
    int n_objects, cap_objects;
};

ty_status skill_push_id(id_list *l, int32_t id, ty_err *err);
ty_status skill_push_ids(id_list *l, const int32_t *ids, int n, ty_err *err);
// Room for `rows` embedding rows in the feed.
ty_status skill_reserve_embeds(skill_request *r, int rows, ty_err *err);
void skill_set_feed(skill_request *r);
// Feeds one token back through the word embedding / one embedding row (already in r->embeds).
ty_status skill_feed_token(skill_request *r, int32_t id, ty_err *err);
ty_status skill_feed_embedding(skill_request *r, ty_err *err);
void skill_finish_as(skill_request *r, finish_reason why);
ty_status skill_emit_text(skill_request *r, const char *chunk, size_t len);
ty_status skill_new_chunk(skill_request *r, ty_err *err);

// Phase transitions (skill_steps.c): each decides the next feed or finishes.
ty_status skill_go_answer(skill_request *r, ty_err *err);
ty_status skill_go_reason(skill_request *r, ty_err *err);
ty_status skill_go_objects(skill_request *r, ty_err *err);
// The token that decides whether another object follows (EOS ends the list).
int skill_object_next(const skill_request *r, const float *logits);
ty_status skill_consume_object(skill_request *r, float *logits, const float *hidden, ty_err *err);

#endif
