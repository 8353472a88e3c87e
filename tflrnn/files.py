"""File input and output with user-facing errors; outputs are replaced atomically."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from .errors import TflrnnError


def model_bytes(model) -> tuple[bytes, str]:
    """A model given as bytes or as a path: its bytes, and how to name it in a report ("<bytes>", or the path)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "<bytes>"
    return read_bytes(model, "model file"), str(Path(model))


def read_bytes(path, what: str = "file") -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TflrnnError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise TflrnnError(f"{what} is a directory: {path}") from None
    except OSError as exc:
        raise TflrnnError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def write_atomic(path, data: bytes) -> Path:
    """Write to a temporary file beside `path`, then rename over it: readers see the old file or the new one."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()  # write the file the link points to, and keep the link
    directory = path.parent
    if path.is_dir():
        raise TflrnnError(f"output path is a directory: {path}")
    if path.exists() and not path.is_file():
        raise TflrnnError(f"output path is not a regular file: {path}")
    if not directory.is_dir():
        raise TflrnnError(f"output directory does not exist: {directory}")
    # A unique name in the same directory, so the rename cannot cross file systems. (os.open rather than
    # tempfile: the umask applies as for any new file, and the import is not paid on every build.)
    tmp = directory / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise TflrnnError(f"cannot write to {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise TflrnnError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 to /dev/null, for native code that logs there (Python's own sys.stderr is untouched)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
