// HF tokenizer.json byte-level BPE (GPT-2 style), run exactly as the Rust
// `tokenizers` library runs it: added tokens are split out first, the rest
// goes through the ByteLevel pre-tokenizer (GPT-2 split regex, Unicode
// categories) and the BPE model; decoding is the ByteLevel decoder with
// special tokens skipped and invalid UTF-8 replaced as from_utf8_lossy does.
//
// Supported tokenizer.json (anything else is refused at load with a message
// that names it, never silently ignored):
//   normalizer      null (or an empty Sequence)
//   pre_tokenizer   ByteLevel (add_prefix_space, use_regex honoured)
//   model           BPE: merges as "a b" or ["a", "b"], unk_token, fuse_unk,
//                   ignore_merges; dropout null or 0; no
//                   continuing_subword_prefix / end_of_word_suffix / byte_fallback
//   post_processor  null or ByteLevel (only changes offsets, never ids)
//   decoder         ByteLevel
//   added_tokens    single_word, lstrip, rstrip, normalized, special honoured
//   truncation / padding  null
//
// A tokenizer is immutable after init: any number of threads may call
// encode/decode on the same one concurrently (there is no shared cache).
#ifndef TYCHO_IO_TOKENIZER_H
#define TYCHO_IO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

typedef struct tokenizer tokenizer;

// Largest tokenizer.json tokenizer_init_from_file reads (real ones are < 20 MB).
#define TOKENIZER_MAX_FILE_BYTES ((size_t)64 << 20)
// Token ids must be below this (real vocabularies have < 300k tokens).
#define TOKENIZER_MAX_ID (1 << 22)
// Longest text tokenizer_encode accepts (far beyond any context window). BPE
// needs scratch memory in proportion to the longest run of letters, so this
// bounds what one request can allocate (about 36 bytes per byte of that run).
#define TOKENIZER_MAX_TEXT_BYTES ((size_t)16 << 20)

// Loads a tokenizer.json file. On failure *out is NULL and err says why
// (TY_E_IO, TY_E_LIMIT, TY_E_FORMAT, TY_E_UNSUPPORTED, TY_E_NOMEM).
ty_status tokenizer_init_from_file(tokenizer **out, const char *path, ty_err *err);

// The same from tokenizer.json bytes in memory (json need not be NUL-terminated).
ty_status tokenizer_init_from_json(tokenizer **out, const char *json, size_t len, ty_err *err);

void tokenizer_free(tokenizer *t);

// Encodes len bytes of UTF-8 text as HF's Tokenizer.encode(text).ids (added
// tokens recognised; nothing is prepended or appended since post-processors
// that add tokens are refused). *ids is malloc'd (free() it; NULL when
// *n_ids == 0). Invalid UTF-8 (which a Rust &str can never hold) fails with
// TY_E_ARG naming the byte offset; text over TOKENIZER_MAX_TEXT_BYTES with TY_E_LIMIT.
ty_status tokenizer_encode(const tokenizer *t, const char *text, size_t len, int32_t **ids,
                           size_t *n_ids, ty_err *err);

// Decodes ids as HF's Tokenizer.decode(ids) with skip_special_tokens=True:
// special tokens are dropped, invalid UTF-8 in the bytes becomes U+FFFD per
// maximal invalid subsequence. *text is malloc'd and NUL-terminated (free()
// it); *len excludes the NUL. Ids the tokenizer does not know are dropped, as
// HF does (a model's vocabulary may have more rows than the tokenizer).
ty_status tokenizer_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
                           ty_err *err);

// One past the largest token id (vocab and added tokens): the number of rows
// an embedding table needs. For GPT-2 style files this is the token count.
int32_t tokenizer_vocab_size(const tokenizer *t);

// Id of a token by its tokenizer.json spelling (e.g. "Ġthe", "<|endoftext|>"),
// added tokens first as HF's token_to_id; -1 if absent.
int32_t tokenizer_token_id(const tokenizer *t, const char *token_string);

// Whether id is a special token (skipped by decode); 0 for unknown ids.
int tokenizer_is_special(const tokenizer *t, int32_t id);

#endif
