"""Interpreters that run a model: LiteRT (ai_edge_litert, the default) and TensorFlow's deprecated
tf.lite.Interpreter. Each is imported only when a model is run on it.

A model under verification may be hostile, and the native runtimes are not hardened against that (LiteRT 2.3
segfaults on a time-major hybrid bidirectional RNN, for one). So `load` runs the interpreter in a child process of
its own by default: a fresh Python (not a fork: the parent may have imported TensorFlow and be multithreaded)
that imports only numpy and the runtime, caps its own data memory, and answers load/run/resize/reset over a pipe.
The parent gives every call a time limit. A crash, an abort, running out of memory or time becomes an
`IsolationError` (a RuntimeError) naming what happened, the child is killed and reaped, and the parent carries on.

Limits, per model (keyword arguments of `load`, else the environment, else the default):
    TFLRNN_VERIFY_TIMEOUT  seconds each call may take (load, invoke, resize, reset). Default: 30 s plus an
                           allowance for the call's work (the model's bytes times the steps it runs), so a
                           legitimately huge model is not cut short. A number makes it fixed; 0 or "none": no limit.
    TFLRNN_VERIFY_MEMORY   data memory the interpreter may allocate beyond the runtime's own start-up footprint,
                           the model's bytes included: "512M", "2G", a number of bytes; 0 or "none": no cap.
                           Default: the model's size plus 1 GiB. (Linux: RLIMIT_DATA. Elsewhere not enforced.)
The child's stderr (native logs) is kept from the terminal: its last line is quoted when the child dies, and
TFLRNN_DEBUG=1 (or `--debug`) lets it through. The frames, the memory cap, the limits' parsing and the child's
dying with this process are isolation.py's, shared with the native parsers' forked children.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .errors import TflrnnError
from .runners import LABELS, PACKAGES, RUNTIMES, _as_input, make_runner, open_runtime
from .isolation import MAX_HEADER, cap_memory, die_with_parent, frame, parse_header, seconds_setting, size_setting, \
    size_text, stop_child, unpack_arrays


TIMEOUT_SETTING, MEMORY_SETTING = "TFLRNN_VERIFY_TIMEOUT", "TFLRNN_VERIFY_MEMORY"
DEFAULT_TIMEOUT = 30.0  # seconds per call, before the allowance for the call's work
DEFAULT_MEMORY_HEADROOM = 1 << 30  # bytes beyond the model's own
STARTUP_TIMEOUT = 120.0  # to import the runtime in the child (TensorFlow takes seconds), not the model's fault
# Conservative rates for the default time allowance, ~20x below a plain CPU core: LiteRT invokes a float RNN at
# about 10 GB of weights per second per step, and takes a model in at memory speed.
WORK_BYTES_PER_SECOND = 5e8
LOAD_BYTES_PER_SECOND = 5e7
_STDERR_TAIL = 8192


class IsolationError(RuntimeError):
    """The interpreter's process failed on the model: it crashed, was killed, or ran out of time or memory."""


class InterpreterCrashed(IsolationError):
    """The child died by a signal (SIGSEGV, SIGABRT, ...) or exited on its own."""


class InterpreterTimeout(IsolationError):
    """A call did not finish within the time limit; the child was killed."""


class InterpreterOutOfMemory(IsolationError):
    """The interpreter exceeded the memory cap."""


def load(runtime: str, model: bytes, input_index: int, output_indices: list[int], *, timeout: float | None = None,
         memory: int | str | None = None, isolate: bool = True, extra_inputs: list[int] = (),
         reset_key: str | None = None, **wiring):
    """An interpreter over `model` that keeps every tensor after invoke, so intermediate outputs can be read.

    By default it runs in a child process (see the module's docstring): `timeout` in seconds per call and
    `memory` in bytes beyond the runtime's footprint override TFLRNN_VERIFY_TIMEOUT / TFLRNN_VERIFY_MEMORY
    (0 or math.inf: no limit). `isolate=False` runs it in this process, without limits. `extra_inputs`: more
    input tensors `run` fills (a state given as an input); `reset_key`: the signature that resets the state;
    the rest of `wiring` as runners.py says (names, positions, XNNPACK).
    """
    if runtime not in RUNTIMES:
        raise TflrnnError(f"unknown runtime '{runtime}'; one of {', '.join(RUNTIMES)}, all")
    package, extra = PACKAGES[runtime]
    if extra is not None:
        import importlib.util

        if importlib.util.find_spec(package) is None:
            from .sources import require

            require(package, extra, f"--runtime {runtime} runs {LABELS[runtime]}")  # raises
    wiring = {**wiring, "extra_inputs": [int(i) for i in extra_inputs], "reset_key": reset_key}
    if not isolate:
        return make_runner(runtime, open_runtime(runtime), bytes(model), int(input_index),
                           [int(i) for i in output_indices], wiring)
    return IsolatedInterpreter(runtime, bytes(model), int(input_index), [int(i) for i in output_indices],
                               timeout=seconds_setting(TIMEOUT_SETTING, timeout),  # None: the default
                               memory=size_setting(MEMORY_SETTING, memory), wiring=wiring)


def _debug() -> bool:
    if os.environ.get("TFLRNN_DEBUG", "").lower() not in ("", "0", "false", "no"):
        return True
    cli = sys.modules.get("tflrnn.cli")
    return bool(getattr(cli, "_debug", False))


# ---- the parent's side -------------------------------------------------------------------------------------------


class IsolatedInterpreter:
    """An interpreter in a child process, with a runner's interface (runners.py). Closed (the child killed and reaped)
    by `close()`, on leaving a `with` block, when garbage-collected, at exit, and after any failure."""

    def __init__(self, runtime: str, model: bytes, input_index: int, output_indices: list[int], *,
                 timeout: float | None = None, memory: int | float | None = None, wiring: dict | None = None):
        import subprocess
        import weakref

        self.runtime, self.label = runtime, LABELS[runtime]
        self.name, self.version = runtime, ""
        self._model_bytes = len(model)
        self._timeout = timeout
        self._memory = memory
        self._debug = _debug()
        self._stderr_tail = bytearray()
        self._memory_cap = float("inf")
        self._proc = None
        if not sys.executable:
            raise RuntimeError("cannot run the interpreter in a child process: sys.executable is not set")
        env = dict(os.environ)
        # The child needs no BLAS threads of its own (each reserves memory), nor TensorFlow's start-up log.
        for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(key, "1")
        if runtime == "tensorflow":
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # The child searches this process's sys.path (and this package's root, for an editable install), so it
        # imports the same numpy, runtime and tflrnn; -S skips site's .pth processing, which that makes redundant
        # (an editable install's finder alone costs 40 ms).
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = "import sys; sys.path[:] = sys.argv[3:]; from tflrnn.runtime import _serve; _serve()"
        argv = [sys.executable, "-S", "-c", code, runtime, str(os.getpid()), *map(str, sys.path), package_root]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=None if self._debug else subprocess.PIPE, env=env)
        self._finalizer = weakref.finalize(self, stop_child, self._proc, os.getpid())
        self._buffer = bytearray()
        try:
            import selectors

            self._selector = selectors.DefaultSelector()
            self._out = self._proc.stdout.fileno()
            self._in = self._proc.stdin.fileno()
            os.set_blocking(self._out, False)
            os.set_blocking(self._in, False)
            self._selector.register(self._out, selectors.EVENT_READ)
            if self._proc.stderr is not None:
                self._err = self._proc.stderr.fileno()
                os.set_blocking(self._err, False)
                self._selector.register(self._err, selectors.EVENT_READ)
            else:
                self._err = None
            hello, _ = self._exchange(None, (), "starting up", max(STARTUP_TIMEOUT, self._limit(0)))
            self.version = hello["version"]
            memory = self._memory
            if memory is None:
                memory = len(model) + DEFAULT_MEMORY_HEADROOM
            self._memory_cap = memory
            header = {"op": "load", "input": input_index, "outputs": output_indices, "nbytes": len(model),
                      "memory": None if memory == float("inf") else int(memory), "wiring": wiring or {}}
            self._exchange(header, (model,), "loading the model", self._limit(len(model) / LOAD_BYTES_PER_SECOND))
        except BaseException:
            self.close()
            raise

    # The interface of a runner.

    def run(self, x: np.ndarray, *extra: np.ndarray) -> list[np.ndarray]:
        x, *extra = (_as_input(a) for a in (x, *extra))
        steps = x.size // max(1, x.shape[-1]) if x.ndim else 1
        header = {"op": "run", "shape": list(x.shape), "extra": [list(e.shape) for e in extra]}
        _, arrays = self._exchange(header, (x, *extra), "invoke",
                                   self._limit(self._model_bytes * steps / WORK_BYTES_PER_SECOND))
        return arrays

    def resize(self, input_shape: list[int]) -> None:
        self._exchange({"op": "resize", "shape": [int(n) for n in input_shape]}, (), "resizing the input",
                       self._limit(self._model_bytes / LOAD_BYTES_PER_SECOND))

    def reset(self) -> None:
        self._exchange({"op": "reset"}, (), "reset_all_variables", self._limit(0))

    def close(self) -> None:
        """Kill the child (it holds nothing worth a graceful exit) and reap it. Idempotent."""
        if self._proc is not None:
            self._finalizer()
            if getattr(self, "_selector", None) is not None:
                self._selector.close()
                self._selector = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def pid(self) -> int:
        return self._proc.pid

    # The protocol: a frame is a 4-byte little-endian header length, a JSON header, then header["nbytes"] bytes
    # of payload (the model, an input, or the outputs back to back, as the header describes). Never pickle:
    # the child runs a hostile model, so what it sends back is parsed as plain data only.

    def _limit(self, allowance: float) -> float:
        if self._timeout is not None:
            return self._timeout
        return DEFAULT_TIMEOUT + allowance

    def _exchange(self, header: dict | None, payload, doing: str, limit: float):
        import selectors
        import struct
        import time

        if not self._finalizer.alive:
            raise IsolationError(f"the {self.label} interpreter process has already stopped")
        deadline = None if limit == float("inf") else time.monotonic() + limit
        self._drain_stderr()
        self._stderr_tail.clear()  # a failure quotes what the child wrote while handling this request only
        pending = []
        if header is not None:
            parts = frame(header, [np.frombuffer(p, np.uint8) if isinstance(p, bytes) else p for p in payload])
            total = sum(len(p) for p in parts)
            # A small frame goes in one write (one wake-up of the child); a model is written from its own memory.
            pending = [memoryview(b"".join(parts))] if total <= 1 << 20 else [memoryview(p) for p in parts if len(p)]
            pending = self._write(pending)  # most requests fit in the pipe at once: no need to wait for it
            if pending:
                self._selector.register(self._in, selectors.EVENT_WRITE)
        writing = bool(pending)
        buffer = self._buffer
        reply = None
        try:
            while True:
                # A whole reply read? (header, then its payload)
                if reply is None and len(buffer) >= 4:
                    (size,) = struct.unpack_from("<I", buffer)
                    if size > MAX_HEADER:
                        raise self._broken("sent a malformed reply")
                    if len(buffer) >= 4 + size:
                        try:
                            reply = parse_header(buffer[4:4 + size])
                            need = int(reply.get("nbytes", 0))
                        except (ValueError, TypeError, AttributeError):
                            raise self._broken("sent a malformed reply") from None
                        del buffer[:4 + size]
                        body = bytearray(need)
                        take = min(need, len(buffer))
                        body[:take] = buffer[:take]
                        del buffer[:take]
                        got = take
                if reply is not None and got == len(body):
                    break
                timeout = None if deadline is None else deadline - time.monotonic()
                if timeout is not None and timeout <= 0:
                    raise self._timed_out(doing, limit)
                for key, _ in self._selector.select(timeout):
                    fd = key.fd
                    if fd == self._in:
                        pending = self._write(pending)
                        if not pending:
                            self._selector.unregister(fd)
                            writing = False
                    elif fd == self._err:
                        try:
                            chunk = os.read(fd, 65536)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            self._selector.unregister(fd)
                            self._err = None
                        else:
                            self._stderr_tail += chunk
                            del self._stderr_tail[:-_STDERR_TAIL]
                    elif fd == self._out:
                        if reply is None:
                            try:
                                chunk = os.read(fd, 1 << 20)
                            except BlockingIOError:
                                continue
                            if not chunk:
                                raise self._died(doing)
                            buffer += chunk
                        else:
                            try:
                                n = os.readv(fd, [memoryview(body)[got:]])
                            except BlockingIOError:
                                continue
                            if not n:
                                raise self._died(doing)
                            got += n
        except BaseException:
            # A timeout, a dead child, a malformed reply, or KeyboardInterrupt / SIGTERM in this process: the
            # child's state is unknown (it may be mid-invoke), so it goes.
            if writing:
                try:
                    self._selector.unregister(self._in)
                except (KeyError, ValueError):
                    pass
            self.close()
            raise
        if writing:  # it answered before taking the whole request (an error): out of step, so it goes
            self.close()
        if "error" in reply:
            raise self._error(reply, doing)
        return reply, self._arrays(reply, body)

    def _write(self, pending: list) -> list:
        """Write what the pipe takes now; what is left."""
        try:
            while pending:
                n = os.write(self._in, pending[0][:1 << 20])
                pending[0] = pending[0][n:]
                if not len(pending[0]):
                    pending.pop(0)
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the child is gone; its exit status, read at EOF, tells why
            pending = []
        return pending

    def _arrays(self, reply: dict, body: bytearray) -> list[np.ndarray]:
        try:
            return unpack_arrays(reply, body)
        except ValueError:
            self.close()
            raise self._broken("sent a malformed reply") from None

    def _error(self, reply: dict, doing: str) -> BaseException:
        kind, message = str(reply.get("error")), str(reply.get("message", ""))
        if doing == "loading the model" and self.runtime in ("compiled", "micro"):
            # Their exceptions say only that loading failed; the reason is in their log (e.g. "Variable tensors
            # not yet supported", "Didn't find op for builtin opcode 'UNIDIRECTIONAL_SEQUENCE_RNN'").
            self._drain_stderr()
            reason = next((" ".join(line.split()) for line in self._stderr_tail.decode("utf-8", "replace").splitlines()
                           if "not yet supported" in line or "Didn't find op" in line), "")
            message = f"{' '.join(message.split())}: {reason}" if reason else message
        if kind == "MemoryError":
            self.close()
            text = f"the {self.label} interpreter ran out of memory {self._while(doing)}"
            if self._memory_cap != float("inf"):
                text += (f": over its cap of {size_text(self._memory_cap)} beyond its start-up footprint "
                         f"(TFLRNN_VERIFY_MEMORY)")
            return InterpreterOutOfMemory(text)
        if kind == "RuntimeError" and not message.strip():
            # LiteRT reports nothing when the allocator fails (as under the cap: RLIMIT_DATA makes malloc fail).
            if self._memory_cap != float("inf"):
                self.close()
                return InterpreterOutOfMemory(
                    f"the {self.label} interpreter failed {self._while(doing)} without a message, as it does when "
                    f"memory cannot be allocated: probably over its cap of {size_text(self._memory_cap)} beyond its "
                    f"start-up footprint (TFLRNN_VERIFY_MEMORY)"
                )
            message = f"failed {self._while(doing)} without a message"
        # The exception the runtime raised, as it would have been raised in this process: ValueError and
        # RuntimeError are the model's (verify reports them); anything else is a bug and stays one.
        import builtins

        cls = getattr(builtins, kind, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                return cls(message)
            except TypeError:  # e.g. UnicodeDecodeError, which takes five arguments
                pass
        return RuntimeError(f"{kind}: {message}")

    def _while(self, doing: str) -> str:
        return f"while {doing}" if doing.endswith("ing") or " " in doing else f"during {doing}"

    def _timed_out(self, doing: str, limit: float) -> BaseException:
        self.close()
        return InterpreterTimeout(
            f"the {self.label} interpreter did not finish {doing} within {limit:.3g} s and was stopped "
            f"(time limit per call: TFLRNN_VERIFY_TIMEOUT)"
        )

    def _broken(self, what: str) -> BaseException:
        self.close()
        return InterpreterCrashed(f"the {self.label} interpreter process {what}")

    def _died(self, doing: str) -> BaseException:
        """The child closed its end: wait for its exit status and say what it was."""
        import signal
        import subprocess

        proc = self._proc
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self._drain_stderr()
        self.close()
        last = self._last_stderr_line()
        where = self._while(doing)
        model = "" if doing == "starting up" else " on this model"
        if code is None:
            text = f"the {self.label} interpreter process stopped answering {where}"
        elif code < 0:
            number = -code
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            description = signal.strsignal(number) if hasattr(signal, "strsignal") else None
            named = f"{name}, {description}" if description else name
            if number == getattr(signal, "SIGKILL", None):
                text = (f"the {self.label} interpreter was killed ({named}) {where}, perhaps by the system for "
                        f"lack of memory")
            elif name == "SIGABRT":
                text = f"the {self.label} interpreter aborted ({named}) {where}{model}"
            elif name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGTRAP", "SIGSYS"):
                text = f"the {self.label} interpreter crashed ({named}) {where}{model}"
            else:
                text = f"the {self.label} interpreter was stopped by {named} {where}"
        else:
            text = f"the {self.label} interpreter exited unexpectedly (status {code}) {where}"
        if last:
            text += f": {last}"
        return InterpreterCrashed(text)

    def _drain_stderr(self) -> None:
        if self._err is None:
            return
        try:
            while True:
                chunk = os.read(self._err, 65536)
                if not chunk:
                    break
                self._stderr_tail += chunk
                del self._stderr_tail[:-_STDERR_TAIL]
        except (BlockingIOError, OSError):
            pass

    def _last_stderr_line(self) -> str:
        for line in reversed(self._stderr_tail.decode("utf-8", "replace").splitlines()):
            line = " ".join(line.split())
            if line:
                return line if len(line) <= 300 else line[:297] + "..."
        return ""


# ---- the child's side --------------------------------------------------------------------------------------------


def _serve() -> None:
    """The child: `python -c ... RUNTIME PARENT_PID PATH...`. Speaks the protocol on the original stdin/stdout;
    everything else written to fd 1 or 2 (native logs included) goes to stderr, which the parent keeps."""
    import signal
    import struct

    runtime, parent = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    die_with_parent(parent)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer

    def send(header: dict, arrays=()) -> None:
        parts = frame(header, arrays)
        if sum(len(p) for p in parts) <= 1 << 20:
            parts = [b"".join(parts)]  # one write, one wake-up of the parent
        for part in parts:
            out.write(part)
        out.flush()

    def receive():
        head = inp.read(4)
        if len(head) < 4:
            os._exit(0)  # the parent closed the pipe: done
        (size,) = struct.unpack("<I", head)
        header = parse_header(inp.read(size))
        return header, header.get("nbytes", 0)

    try:
        version = open_runtime(runtime)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        send({"error": type(exc).__name__, "message": str(exc)})
        os._exit(0)
    send({"version": version})

    interpreter = None
    while True:
        header, n = receive()
        op = header.get("op")
        read = [n == 0]

        def payload() -> bytes:
            data = inp.read(n)  # one bytes object of n bytes, read in place: the model is never copied
            if len(data) < n:
                os._exit(0)
            read[0] = True
            return data

        try:
            if op == "load":
                cap_memory(header.get("memory"))
                model = payload()
                interpreter = make_runner(runtime, version, model, header["input"], header["outputs"],
                                          header.get("wiring"))
                send({})
            elif op == "run":
                ys = interpreter.run(*unpack_arrays(header, payload()))  # x, then the extra inputs
                send({}, ys)
            elif op == "resize":
                interpreter.resize(header["shape"])
                send({})
            elif op == "reset":
                interpreter.reset()
                send({})
            else:
                send({"error": "RuntimeError", "message": f"unknown request {op!r}"})
        except Exception as exc:  # noqa: BLE001 - the runtime's own errors go back to the parent
            send({"error": type(exc).__name__, "message": str(exc)})
            if not read[0]:  # the request's payload is still in the pipe: out of step, so stop
                os._exit(0)
