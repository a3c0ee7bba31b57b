"""tycho: Moondream vision-language models in process, on tycho's C engine.

    import tycho
    md = tycho.vl(model="models/shapes")          # a model directory or an HF repo id
    md.caption("photo.jpg")                        # {"caption": "..."}
    for chunk in md.caption(img, stream=True)["caption"]:
        print(chunk, end="", flush=True)
    md.query(img, "How many circles?")             # {"answer": "..."}
    md.detect(img, "circle")                       # {"objects": [{"x_min", "y_min", "x_max", "y_max"}]}
    md.point(img, "circle")                        # {"points": [{"x", "y"}]}
    enc = md.encode_image(img)                     # reuse the image across calls

The methods, arguments and return shapes are those of Moondream's Python
client (`moondream.vl`). The package is ctypes over libtycho.so (stdlib only;
PIL images are accepted when PIL is installed).
"""

from ._client import VL, EncodedImage, Result, vl
from ._lib import (
    E_ARG,
    E_BUSY,
    E_CANCELLED,
    E_FORMAT,
    E_IO,
    E_LIMIT,
    E_NOMEM,
    E_NOT_FOUND,
    E_TIMEOUT,
    E_UNSUPPORTED,
    OK,
)
from .errors import (
    BusyError,
    CancelledError,
    FormatError,
    InvalidArgumentError,
    LimitError,
    NotFoundError,
    OutOfMemoryError,
    TychoError,
    TychoIOError,
    TychoTimeoutError,
    UnsupportedError,
)

__version__ = "0.1.0"

__all__ = [
    "vl",
    "VL",
    "EncodedImage",
    "Result",
    "TychoError",
    "InvalidArgumentError",
    "TychoIOError",
    "FormatError",
    "UnsupportedError",
    "LimitError",
    "OutOfMemoryError",
    "NotFoundError",
    "BusyError",
    "TychoTimeoutError",
    "CancelledError",
    "OK",
    "E_ARG",
    "E_IO",
    "E_FORMAT",
    "E_UNSUPPORTED",
    "E_LIMIT",
    "E_NOMEM",
    "E_NOT_FOUND",
    "E_BUSY",
    "E_TIMEOUT",
    "E_CANCELLED",
    "__version__",
]
