"""tycho's exceptions: one class per tycho_status, all under TychoError."""

from . import _lib


class TychoError(Exception):
    """An error of the engine (or of arguments it would refuse).

    code: the tycho_status number (tycho.E_ARG, ...); status: its short name
    ("invalid_argument", "format", ...); message: one line for people.
    """

    def __init__(self, code, message):
        super().__init__(message)
        self.code = int(code)
        self.status = _lib.STATUS_NAMES.get(self.code, "unknown")
        self.message = message

    def __str__(self):
        return "%s (%s)" % (self.message, self.status)

    def __reduce__(self):
        return (type(self), (self.code, self.message))


class InvalidArgumentError(TychoError, ValueError):
    """TYCHO_E_ARG: a bad argument or setting."""


class TychoIOError(TychoError, OSError):
    """TYCHO_E_IO: a file could not be opened or read."""


class FormatError(TychoError, ValueError):
    """TYCHO_E_FORMAT: bytes that do not follow their format (a bad image, checkpoint)."""


class UnsupportedError(TychoError, ValueError):
    """TYCHO_E_UNSUPPORTED: well-formed input tycho does not implement."""


class LimitError(TychoError, ValueError):
    """TYCHO_E_LIMIT: over a limit (image size, prompt length, KV budget)."""


class OutOfMemoryError(TychoError, MemoryError):
    """TYCHO_E_NOMEM."""


class NotFoundError(TychoError, LookupError):
    """TYCHO_E_NOT_FOUND: a model file, or an image key no longer cached."""


class BusyError(TychoError):
    """TYCHO_E_BUSY: the engine's queue is full; retry later."""


class TychoTimeoutError(TychoError, TimeoutError):
    """TYCHO_E_TIMEOUT."""


class CancelledError(TychoError):
    """TYCHO_E_CANCELLED: the request was cancelled (for example by vl.close())."""


_BY_CODE = {
    _lib.E_ARG: InvalidArgumentError,
    _lib.E_IO: TychoIOError,
    _lib.E_FORMAT: FormatError,
    _lib.E_UNSUPPORTED: UnsupportedError,
    _lib.E_LIMIT: LimitError,
    _lib.E_NOMEM: OutOfMemoryError,
    _lib.E_NOT_FOUND: NotFoundError,
    _lib.E_BUSY: BusyError,
    _lib.E_TIMEOUT: TychoTimeoutError,
    _lib.E_CANCELLED: CancelledError,
}


def error(code, message):
    """The exception for a tycho_status code."""
    return _BY_CODE.get(int(code), TychoError)(code, message)


def from_c(code, err):
    """The exception for a failed call that filled the tycho_error err."""
    msg = bytes(err.message).split(b"\0", 1)[0].decode("utf-8", "replace")
    if not msg:
        msg = _lib.STATUS_NAMES.get(int(code), "error")
    return error(code, msg)
