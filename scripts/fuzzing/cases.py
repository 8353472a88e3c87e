"""Cases, results and seeds: what a fuzz case is, what running it gave, and the harness's constants."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field


TARGETS = ("inspect", "verify", "export", "build-weights", "build-config", "build-calibration")
TARGET_SHARE = {"inspect": 0.24, "verify": 0.16, "export": 0.06, "build-weights": 0.34, "build-config": 0.20,
                "build-calibration": 0.10}
MODES = ("inprocess", "fork", "subprocess")
# verify runs the native interpreter: a model that crashes it must not take the harness down (switch to
# "inprocess" once verify isolates the interpreter in a child process itself).
DEFAULT_MODES = {"inspect": "inprocess", "verify": "fork", "export": "inprocess", "build-weights": "fork",
                 "build-config": "inprocess", "build-calibration": "fork"}
DEFAULT_TIMEOUT = 20.0  # seconds per case (in-process / forked); a subprocess gets SUBPROCESS_SLACK more
SUBPROCESS_SLACK = 20.0
SLOW_CASE = 5.0  # a passing case slower than this is listed as a note
MEMORY_HEADROOM = 3 * 2**30  # a case may allocate this much address space beyond the harness's own
HASH_CHARS = 12
NPZ_PLACEHOLDER = "@npz"  # in args: a valid 4-unit, 3-input .npz the runner writes beside the input


@dataclass
class Case:
    target: str
    data: bytes
    suffix: str  # of the input file: decides the weights format and config syntax
    args: list[str] = field(default_factory=list)  # extra command-line arguments
    seed: str = ""  # the seed input it came from
    mutation: str = "none"  # "family:detail"
    index: int = -1

    @property
    def family(self) -> str:
        return self.mutation.split(":", 1)[0]

    def digest(self) -> str:
        h = hashlib.sha256(self.target.encode() + b"\0" + self.data + b"\0" + json.dumps(self.args).encode())
        return h.hexdigest()[:HASH_CHARS]

    def file_name(self) -> str:
        return f"{self.target}-{self.digest()}{self.suffix}"


@dataclass
class Result:
    code: int | None  # exit code; None on a timeout; negative: killed by that signal
    out: str
    err: str
    seconds: float
    mode: str
    argv: list[str]
    problems: list[str] = field(default_factory=list)  # pass-criteria violations
    notes: list[str] = field(default_factory=list)  # passing, but worth a look
    detail: str = ""  # where it was raised (from a --debug re-run) and the exception
    trace: str = ""  # the whole traceback

    @property
    def passed(self) -> bool:
        return not self.problems

    def signature(self, case: Case) -> tuple:
        """What makes two failures the same bug: the target, the problem and, for exceptions, where it was raised."""
        where = _innermost(self.trace or self.err)
        return (case.target, tuple(sorted(p.split(":")[0] for p in self.problems)), where or case.family)


def _frames(text: str) -> list[tuple[str, str, str]]:
    return re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text)


def _exception_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith(" ")]
    return lines[-1] if lines else ""


def _innermost(text: str) -> str:
    """`ExcType @ file:line` of the innermost tflrnn frame of a traceback (else the innermost frame)."""
    frames = _frames(text)
    if not frames:
        m = re.search(r"internal error: (\w+)", text)
        return m.group(1) if m else ""
    ours = [f for f in frames if "/tflrnn/" in f[0]] or frames
    path, line, _ = ours[-1]
    exc = _exception_line(text).split(":")[0]
    short = "tflrnn/" + path.split("/tflrnn/", 1)[1] if "/tflrnn/" in path else path.rsplit("/", 2)[-1]
    return f"{exc} @ {short}:{line}"


def _explain(trace: str) -> str:
    """A traceback, short: the innermost tflrnn frame, the innermost frame, and the exception."""
    frames = _frames(trace)
    if not frames:
        return _tail(trace, 6)
    ours = [f for f in frames if "/tflrnn/" in f[0]]
    shown = []
    for path, line, func in ([ours[-1]] if ours else []) + ([frames[-1]] if not ours or frames[-1] != ours[-1] else []):
        shown.append(f"{path.split('/site-packages/')[-1]}:{line} in {func}")
    return "\n".join([" -> ".join(shown), _exception_line(trace)[:400]])


@dataclass
class Seed:
    name: str
    kind: str  # "model" | "npz" | "safetensors" | "onnx" | "keras" | "config" | "calibration"
    data: bytes
    suffix: str
    args: list[str] = field(default_factory=list)  # arguments it needs to build (e.g. --bidirectional)
    spec: object = None  # format-specific structure the structured mutators rebuild from
    positions: dict | None = None  # models: flatbuffer positions the reader dereferences
    description: object = None  # models: tflrnn's Model description


def _tail(text: str, lines: int) -> str:
    kept = [ln for ln in text.rstrip().splitlines() if ln.strip(" ^~") or not ln.strip()]  # no caret lines
    return "\n".join(kept[-lines:])
