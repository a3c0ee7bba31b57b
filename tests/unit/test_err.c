// Error messages: set, wrap (prefix kept, long text cut without overflow), names.
#include <string.h>

#include "core/err.h"
#include "core/half.h"
#include "test.h"

int main(void) {
    ty_err e;
    CHECK(ty_err_set(&e, TY_E_FORMAT, "bad %d", 7) == TY_E_FORMAT);
    CHECK(!strcmp(e.msg, "bad 7"));
    CHECK(ty_err_wrap(&e, "file %s", "x") == TY_E_FORMAT);
    CHECK(!strcmp(e.msg, "file x: bad 7"));
    char long_text[2000];
    memset(long_text, 'a', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = 0;
    ty_err_set(&e, TY_E_IO, "%s", long_text);
    CHECK(strlen(e.msg) == sizeof e.msg - 1);
    ty_err_wrap(&e, "%s", long_text);
    CHECK(strlen(e.msg) == sizeof e.msg - 1 && !memcmp(e.msg + sizeof e.msg - 3, "a", 1));
    ty_err_clear(&e);
    CHECK(e.code == TY_OK && e.msg[0] == 0);
    CHECK(ty_err_set(NULL, TY_E_LIMIT, "x") == TY_E_LIMIT);
    CHECK(!strcmp(ty_status_name(TY_E_LIMIT), "limit"));
    // bf16 rounding is round-to-nearest-even; f16 decoding covers subnormals and infinities.
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f32_to_bf16(bf16_to_f32(0x3f80) + 0x1p-8f) == 0x3f80);        // tie -> even
    CHECK(f32_to_bf16(bf16_to_f32(0x3f81) + 0x1p-8f) == 0x3f82);        // tie -> even (up)
    CHECK(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);            // above the tie
    CHECK(f16_to_f32(0x7c00) > 3e38f && f16_to_f32(0xfc00) < -3e38f);
    CHECK(f16_to_f32(0x0400) == 0x1p-14f && f16_to_f32(0x03ff) == 0x3ffp-24f);
    return test_report("test_err");
}
