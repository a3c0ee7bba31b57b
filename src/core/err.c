#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

ty_status ty_err_set(ty_err *err, ty_status code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

ty_status ty_err_wrap(ty_err *err, const char *fmt, ...) {
    if (!err) return TY_E_ARG;
    char prefix[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    // New message = prefix + ": " + old message, cut to fit.
    size_t cap = sizeof err->msg, pl = strlen(prefix), ol = strnlen(err->msg, cap - 1);
    if (pl > cap - 3) pl = cap - 3;
    if (ol > cap - 3 - pl) ol = cap - 3 - pl;
    memmove(err->msg + pl + 2, err->msg, ol);
    memcpy(err->msg, prefix, pl);
    err->msg[pl] = ':';
    err->msg[pl + 1] = ' ';
    err->msg[pl + 2 + ol] = '\0';
    return err->code;
}

void ty_err_clear(ty_err *err) {
    if (!err) return;
    err->code = TY_OK;
    err->msg[0] = '\0';
}

const char *ty_status_name(ty_status code) {
    switch (code) {
    case TY_OK: return "ok";
    case TY_E_ARG: return "invalid_argument";
    case TY_E_IO: return "io";
    case TY_E_FORMAT: return "format";
    case TY_E_UNSUPPORTED: return "unsupported";
    case TY_E_LIMIT: return "limit";
    case TY_E_NOMEM: return "out_of_memory";
    case TY_E_NOT_FOUND: return "not_found";
    case TY_E_BUSY: return "busy";
    case TY_E_TIMEOUT: return "timeout";
    case TY_E_CANCELLED: return "cancelled";
    }
    return "unknown";
}
