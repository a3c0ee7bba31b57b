// Error reporting shared by every layer: a status code plus a one-line message.
// Functions that can fail return ty_status and fill a caller-owned ty_err, so a
// failing request carries its own message and nothing is global.
#ifndef TYCHO_CORE_ERR_H
#define TYCHO_CORE_ERR_H

typedef enum {
    TY_OK = 0,
    TY_E_ARG,          // caller passed something invalid (NULL, out of range)
    TY_E_IO,           // file could not be opened, read or mapped
    TY_E_FORMAT,       // input bytes do not follow their format
    TY_E_UNSUPPORTED,  // well-formed input that uses something tycho does not implement
    TY_E_LIMIT,        // input exceeds a configured limit (bytes, pixels, tokens)
    TY_E_NOMEM,        // allocation failed
    TY_E_NOT_FOUND,    // a named item (tensor, file) does not exist
    TY_E_BUSY,         // a queue is full: retry later
    TY_E_TIMEOUT,      // a wait ran out of time
    TY_E_CANCELLED,    // the work was cancelled
} ty_status;

typedef struct {
    ty_status code;
    char msg[512];
} ty_err;

// Records code and a printf-style message in err (err may be NULL); returns code.
ty_status ty_err_set(ty_err *err, ty_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Prefixes the message already in err with "context: " (keeps the code).
ty_status ty_err_wrap(ty_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void ty_err_clear(ty_err *err);

// Short stable name of a status ("format", "limit", ...), for logs and APIs.
const char *ty_status_name(ty_status code);

#endif
