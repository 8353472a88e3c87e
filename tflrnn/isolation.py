"""Child processes for work that may crash, hang or blow up on hostile input: one framing, one memory cap, one
reading of the limits, and children that die with their parent.

Two kinds of work use it. The interpreter (runtime.py) runs in a fresh Python that answers requests over a pipe:
not a fork, since the parent may hold TensorFlow's threads. A native file parser (HDF5, in sources/keras_files.py)
runs in a fork, which costs ~10 ms instead of ~95 ms, unless the parent has other threads. Both speak frames:

    4-byte little-endian length of a JSON header | the header | header["nbytes"] bytes of raw array data

where header["arrays"] lists [dtype, shape] of the arrays laid back to back in the payload. Never a pickle: a
child has just read a hostile file, so what it sends back is parsed as plain data only.
"""

from __future__ import annotations

import json
import os
import select
import struct
import sys
import threading
import time

import numpy as np

from .errors import TflrnnError

MAX_HEADER = 1 << 20
_OFF = ("0", "none", "off", "inf", "unlimited")
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


# ---- frames ------------------------------------------------------------------------------------------------------


def frame(header: dict, arrays=()) -> list:
    """The parts of one frame: length, header (with nbytes and the arrays' descriptors), then each array's bytes."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    header = {**header, "nbytes": sum(a.nbytes for a in arrays)}
    if arrays:
        header["arrays"] = [[a.dtype.str, list(a.shape)] for a in arrays]
    encoded = json.dumps(header).encode()
    return [struct.pack("<I", len(encoded)), encoded, *(memoryview(a).cast("B") for a in arrays if a.nbytes)]


def parse_header(data) -> dict:
    """A frame's JSON header; ValueError when it is not one."""
    header = json.loads(bytes(data))
    if not isinstance(header, dict) or int(header.get("nbytes", 0)) < 0:
        raise ValueError("not a frame header")
    return header


def unpack_arrays(header: dict, body) -> list[np.ndarray]:
    """The arrays a frame's payload holds, as its header describes them; ValueError when it does not add up."""
    arrays, offset = [], 0
    try:
        for dtype, shape in header.get("arrays", []):
            dtype = np.dtype(dtype)
            shape = tuple(int(n) for n in shape)
            if dtype.kind not in "biuf" or dtype.hasobject or any(n < 0 for n in shape):
                raise ValueError(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            arrays.append(np.frombuffer(body, dtype, count, offset).reshape(shape))
            offset += count * dtype.itemsize
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if offset != len(body):
        raise ValueError("the payload does not match its header")
    return arrays


def pack_value(value) -> tuple[dict, list[np.ndarray]]:
    """A JSON-able value with numpy arrays anywhere inside lists and dicts, as a header value and its arrays."""
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

    return strip(value), arrays


def unpack_value(value, arrays: list[np.ndarray]):
    def restore(v):
        if isinstance(v, dict):
            return arrays[v["__array__"]] if set(v) == {"__array__"} else {k: restore(x) for k, x in v.items()}
        if isinstance(v, list):
            return [restore(x) for x in v]
        return v

    return restore(value)


# ---- limits ------------------------------------------------------------------------------------------------------


def seconds_setting(name: str, value=None, *, off_allowed: bool = True, error=TflrnnError) -> float | None:
    """A time limit from `value`, else the environment variable `name`: None = not set (the caller's default);
    math.inf = no limit (0 or "none", and "12s" for 12, where `off_allowed`). Without `off_allowed` the variable,
    when set, must be a plain positive number."""
    if value is None and not off_allowed:
        raw = os.environ.get(name)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 < value < float("inf"):
            raise error(f"{name} must be a positive number of seconds, got {raw!r}")
    if value is None:
        text = os.environ.get(name, "").strip().lower()
        if not text:
            return None
        if text in _OFF:
            return float("inf")
        try:
            value = float(text.removesuffix("s"))
        except ValueError:
            value = float("nan")
        if not value >= 0 or value != value:
            raise error(f"{name} must be a number of seconds (or 0 for no limit), got {text!r}")
    value = float(value)
    if not value >= 0:
        raise error(f"the time limit must be a non-negative number of seconds, got {value}")
    return float("inf") if value == 0 else value


def size_setting(name: str, value=None, *, error=TflrnnError) -> int | float | None:
    """A memory size ("512M", "2G", bytes) from `value`, else the environment variable `name`: None = not set;
    math.inf = no cap (0 or "none")."""
    if value is None:
        value = os.environ.get(name, "").strip()
        if not value:
            return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _OFF:
            return float("inf")
        number, unit = text.rstrip("ib"), ""
        if number and number[-1] in _UNITS:
            number, unit = number[:-1], number[-1]
        try:
            value = float(number) * _UNITS[unit]
        except ValueError:
            raise error(f"{name} must be a size such as 512M or 2G (or 0 for no cap), got {value!r}") from None
    if not value >= 0:
        raise error(f"the memory cap must be a non-negative number of bytes, got {value}")
    return float("inf") if value == 0 or value == float("inf") else int(value)


def size_text(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


# ---- in the child ------------------------------------------------------------------------------------------------


def cap_memory(beyond: int | None) -> None:
    """Cap this process's data memory (RLIMIT_DATA, which counts the heap and private mappings) at what it holds
    now plus `beyond` bytes. Not Linux: no cap (the time limit still holds)."""
    if beyond is None:
        return
    try:
        import resource

        with open("/proc/self/status") as f:
            held = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
    except (ImportError, OSError, StopIteration, ValueError):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = held + beyond
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when the parent dies, however it dies (SIGKILL included)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(0)


def write_all(fd: int, parts) -> None:
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            view = view[os.write(fd, view):]


def stop_child(proc, owner: int) -> None:
    """Kill and reap the child, and close our ends of its pipes. Also runs at garbage collection and at exit
    (not in a fork of the process that started it: the child is not that copy's to stop)."""
    if os.getpid() != owner:
        return
    try:
        if proc.poll() is None:
            proc.kill()
    except OSError:
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    try:
        proc.wait()
    except OSError:
        pass


# ---- a call in a fork --------------------------------------------------------------------------------------------


class ChildFailed(Exception):
    """The forked call did not answer: it died; `status` is its wait status."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status

    @property
    def reason(self) -> str:
        return f"signal {os.WTERMSIG(self.status)}" if os.WIFSIGNALED(self.status) else \
            f"exit {os.WEXITSTATUS(self.status)}"


class ChildRaised(Exception):
    """The forked call raised: its exception's type name and message, and whether it was a TflrnnError."""

    def __init__(self, kind: str, message: str, user_error: bool):
        super().__init__(message)
        self.kind, self.message, self.user_error = kind, message, user_error


def call_in_fork(function, argument, *, seconds, memory: int | None):
    """function(argument) in a forked child with a time limit and a data-memory cap; its result (JSON-able data
    with numpy arrays inside, writable). An exception it raises comes back as ChildRaised; a child that dies raises
    ChildFailed, one that runs out of time TimeoutError (it is killed). `seconds` may be a function, asked only
    when there is a child to time. Without fork (Windows), or in a parent with other threads (a fork would leave
    their locks held), the call runs in this process, unguarded."""
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return function(argument)
    if callable(seconds):
        seconds = seconds()
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: call, send, and leave without running the parent's code or clean-up, whatever happens
        try:
            os.close(read_end)
            die_with_parent(parent)
            try:
                cap_memory(memory)
                value, arrays = pack_value(function(argument))
                parts = frame({"result": value}, arrays)
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent as a message
                parts = frame({"error": [type(exc).__name__, _text(exc), isinstance(exc, TflrnnError)]})
            write_all(write_end, parts)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = _read_all(read_end, time.monotonic() + seconds)
    except BaseException:  # the time limit, or Ctrl-C / SIGTERM in this process: the child goes too
        os.kill(pid, 9)
        raise
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if not data:
        raise ChildFailed(status)
    data = bytearray(data)  # the arrays are views of it: writable, as arrays read in this process would be
    (size,) = struct.unpack_from("<I", data)
    header = parse_header(data[4:4 + size])
    body = memoryview(data)[4 + size:]
    if "error" in header:
        raise ChildRaised(*header["error"])
    return unpack_value(header["result"], unpack_arrays(header, body))


def _text(exc: BaseException) -> str:
    try:
        return " ".join(str(exc).split())[:200]
    except BaseException:  # noqa: BLE001 - an exception whose str() fails still gets reported
        return ""


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
