#include "io/unicode.h"

#include <string.h>

// White_Space (Unicode 14): short and stable, so listed here rather than in the table.
static int is_white_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

unsigned unicode_props(uint32_t cp) {
    if (cp < 0x80) {  // ASCII fast path: most of the text the models see
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return UNICODE_L | UNICODE_W;
        if (cp >= '0' && cp <= '9') return UNICODE_N | UNICODE_W;
        if (cp == '_') return UNICODE_W;
        return is_white_space(cp) ? UNICODE_WS : 0;
    }
    unsigned ws = is_white_space(cp) ? UNICODE_WS : 0;
    size_t lo = 0, hi = unicode_ranges_len;
    while (lo < hi) {  // first range whose hi >= cp
        size_t mid = lo + (hi - lo) / 2;
        if (unicode_ranges[mid].hi < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < unicode_ranges_len && unicode_ranges[lo].lo <= cp) return unicode_ranges[lo].flags | ws;
    return ws;
}

// Number of bytes a sequence starting with lead byte b needs, and the allowed
// range of its second byte (the first continuation), per Unicode Table 3-7.
// Returns 0 for bytes that can never start a sequence.
static size_t utf8_lead(uint8_t b, uint8_t *lo2, uint8_t *hi2) {
    *lo2 = 0x80;
    *hi2 = 0xBF;
    if (b < 0x80) return 1;
    if (b < 0xC2) return 0;
    if (b < 0xE0) return 2;
    if (b < 0xF0) {
        if (b == 0xE0) *lo2 = 0xA0;
        if (b == 0xED) *hi2 = 0x9F;  // excludes surrogates
        return 3;
    }
    if (b < 0xF5) {
        if (b == 0xF0) *lo2 = 0x90;
        if (b == 0xF4) *hi2 = 0x8F;  // nothing above U+10FFFF
        return 4;
    }
    return 0;
}

// Length of the valid prefix of the sequence at s (how many bytes match the
// table before the first mismatch or the end); sets *need to the full length.
static size_t utf8_match(const uint8_t *s, size_t n, size_t *need) {
    uint8_t lo2, hi2;
    *need = utf8_lead(s[0], &lo2, &hi2);
    if (*need == 0) return 0;
    size_t k = 1;
    for (; k < *need && k < n; k++) {
        uint8_t lo = k == 1 ? lo2 : 0x80, hi = k == 1 ? hi2 : 0xBF;
        if (s[k] < lo || s[k] > hi) break;
    }
    return k;
}

size_t unicode_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t need, got = utf8_match(s, n, &need);
    if (need == 0 || got < need) return 0;
    uint32_t v = s[0] & (0x7F >> need);
    for (size_t k = 1; k < need; k++) v = (v << 6) | (s[k] & 0x3F);
    *cp = v;
    return need;
}

size_t unicode_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t need, got = utf8_match(s + i, n - i, &need);
        if (need == 0 || got < need) return i;
        i += need;
    }
    return n;
}

size_t unicode_utf8_lossy(const uint8_t *s, size_t n, uint8_t *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        size_t need, got = utf8_match(s + i, n - i, &need);
        if (need != 0 && got == need) {
            memcpy(out + o, s + i, need);
            o += need;
            i += need;
            continue;
        }
        // A maximal invalid subpart: the lead byte plus the continuation bytes
        // that were still acceptable (at least one byte), as one U+FFFD.
        out[o++] = 0xEF;
        out[o++] = 0xBF;
        out[o++] = 0xBD;
        i += got ? got : 1;
    }
    return o;
}
