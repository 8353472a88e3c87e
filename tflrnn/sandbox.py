"""Run a parser of untrusted files in a forked child, with a time limit and a memory cap.

Native parsers are not hardened against hostile files: a few flipped bits in an HDF5 file can make the HDF5 library
spin forever inside one C call, where no Python signal handler or thread can stop it. So the parse happens in a
child process that the parent kills when its time is up; the result comes back as JSON plus raw numpy arrays (never
a pickle: the child has just read a hostile file).
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import threading
import time

import numpy as np

from .errors import WeightsError

READ_SECONDS = 10.0  # for any file (TFLRNN_READ_TIMEOUT overrides), plus the time to read it at this rate:
READ_BYTES_PER_SECOND = 20e6
MEMORY_HEADROOM = 2 << 30  # the child's address space beyond what it had at the fork, plus 4x the file


def run_parser(parse, path, *, what: str):
    """parse(path) in a forked child; its result (JSON-able data, numpy arrays anywhere inside lists and dicts).
    A TflrnnError raised by parse comes back as a WeightsError with its message; a hang, a crash or a blow-up of
    memory becomes a WeightsError naming the file. Without fork (Windows), parse runs in this process."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return parse(path)  # no fork, or a parent whose other threads a fork would leave holding their locks
    size = os.path.getsize(path)
    limit = _base_seconds() + size / READ_BYTES_PER_SECOND
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: parse, send, and leave without running the parent's code or clean-up, whatever happens
        try:
            os.close(read_end)
            try:
                _cap_memory(MEMORY_HEADROOM + 4 * size)
                message = _encode({"result": parse(path)})
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a message
                message = _encode({"error": _text(exc) if _is_user_error(exc) else
                                   f"cannot read {what} {path}: {type(exc).__name__} {_text(exc)}".rstrip()})
            _write_all(write_end, message)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = _read_all(read_end, time.monotonic() + limit)
    except BaseException as exc:  # the time limit, or Ctrl-C / SIGTERM in this process: the child goes too
        os.kill(pid, 9)
        if isinstance(exc, TimeoutError):
            raise WeightsError(f"reading {what} {path} did not finish within {limit:.0f} s: the file is malformed "
                               "(its parser hangs on it)") from None
        raise
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if not data:
        reason = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        raise WeightsError(f"cannot read {what} {path}: its parser died ({reason}); the file is malformed or too large")
    message = _decode(data)
    if "error" in message:
        raise WeightsError(message["error"])
    return message["result"]


def _base_seconds() -> float:
    raw = os.environ.get("TFLRNN_READ_TIMEOUT")
    if raw is None:
        return READ_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise WeightsError(f"TFLRNN_READ_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return seconds


def _text(exc: BaseException) -> str:
    try:
        return " ".join(str(exc).split())[:200]
    except BaseException:  # noqa: BLE001 - an exception whose str() fails still gets reported
        return ""


def _is_user_error(exc: BaseException) -> bool:
    from .errors import TflrnnError

    return isinstance(exc, TflrnnError)


def _cap_memory(headroom: int) -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        limit = pages * os.sysconf("SC_PAGE_SIZE") + headroom
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass  # not Linux: no cap, the time limit still holds


# A message: 4-byte length of a JSON document, the document (arrays replaced by {"__array__": k}), then an .npz of
# the arrays.


def _encode(value) -> bytes:
    arrays = []

    def strip(v):
        if isinstance(v, np.ndarray):
            arrays.append(v)
            return {"__array__": len(arrays) - 1}
        if isinstance(v, dict):
            return {str(k): strip(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [strip(x) for x in v]
        return v

    document = json.dumps(strip(value)).encode()
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return struct.pack("<I", len(document)) + document + buffer.getvalue()


def _decode(data: bytes):
    (length,) = struct.unpack("<I", data[:4])
    document = json.loads(data[4:4 + length])
    with np.load(io.BytesIO(data[4 + length:]), allow_pickle=False) as npz:
        arrays = [npz[f"arr_{k}"] for k in range(len(npz.files))]

    def restore(v):
        if isinstance(v, dict):
            return arrays[v["__array__"]] if set(v) == {"__array__"} else {k: restore(x) for k, x in v.items()}
        if isinstance(v, list):
            return [restore(x) for x in v]
        return v

    return restore(document)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int, deadline: float) -> bytes:
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
