"""Writing files atomically: a temporary file beside the target, moved into place only when complete.

Every file the library and `export` write (TFLite and ONNX files, PNG pictures) goes through
`atomic_write`, so a failure never leaves a half-written file, and the file gets the mode any new file
gets: it is created with 0o666 and the umask (and a folder's default ACL) decide, as for `model.save`.
`tempfile.mkstemp` would make every file 0o600 whatever the umask.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def create_temporary(path) -> Path:
    """Creates an empty, hidden file beside `path` and returns its name; raises `OSError` when the
    folder cannot be written."""
    path = Path(path)
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(f"Cannot create a temporary file beside {str(path)!r}.")


@contextlib.contextmanager
def atomic_write(path):
    """Yields a temporary path beside `path`; moves it into place only if the block succeeds."""
    path = Path(path)
    tmp = create_temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
