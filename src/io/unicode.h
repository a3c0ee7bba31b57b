// The few Unicode facts the tokenizer needs: strict UTF-8 decoding, the
// property bits its pre-tokenizer regex and added-token rules test, and the
// lossy UTF-8 repair Rust's String::from_utf8_lossy performs.
//
// Properties come from a generated range table (unicode_tables.c, Unicode
// 14.0, the version of the Oniguruma 6.9.8 bundled by the `onig` crate that HF
// tokenizers uses), so no ICU/utf8proc dependency is needed.
#ifndef TYCHO_IO_UNICODE_H
#define TYCHO_IO_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    UNICODE_L = 1,   // \p{L}: General_Category Lu, Ll, Lt, Lm, Lo
    UNICODE_N = 2,   // \p{N}: General_Category Nd, Nl, No
    UNICODE_WS = 4,  // \s: the White_Space property (Oniguruma and Rust regex agree)
    UNICODE_W = 8,   // \w of Rust's regex crate: Alphabetic, M*, Nd, Pc, Join_Control
};

// One row of the generated table: code points lo..hi (inclusive) have flags.
typedef struct {
    uint32_t lo, hi;
    uint8_t flags;
} unicode_range;

extern const unicode_range unicode_ranges[];  // sorted, non-overlapping
extern const size_t unicode_ranges_len;

// UNICODE_* bits of code point cp (0 for unassigned and out-of-range values).
unsigned unicode_props(uint32_t cp);

// Decodes one UTF-8 scalar value at s[0..n) (n >= 1) as Rust's str accepts it:
// no overlong forms, no surrogates, nothing above U+10FFFF. Returns its byte
// length (1..4) and sets *cp, or returns 0 if the bytes there are not valid.
size_t unicode_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

// Returns n when s[0..n) is valid UTF-8, else the offset of the first bad byte.
size_t unicode_utf8_check(const uint8_t *s, size_t n);

// Copies s[0..n) to out, replacing each maximal invalid subsequence by U+FFFD
// (EF BF BD) exactly as String::from_utf8_lossy (the WHATWG / Unicode "maximal
// subpart" rule). out must hold 3 * n bytes; returns the bytes written.
size_t unicode_utf8_lossy(const uint8_t *s, size_t n, uint8_t *out);

#endif
