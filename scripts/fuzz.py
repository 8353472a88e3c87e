#!/usr/bin/env python
"""Fuzz harness for the tflrnn command line.

Mutates valid inputs and feeds them to the commands that read files from other people:

| target          | command                                         | seed inputs                                   |
| --------------- | ----------------------------------------------- | --------------------------------------------- |
| `inspect`       | `tflrnn inspect MODEL`                          | models written by `tflrnn build`              |
| `verify`        | `tflrnn verify MODEL --sequences 2`             | the same models                               |
| `export`        | `tflrnn weights MODEL -o OUT.npz`               | the same models                               |
| `build-weights` | `tflrnn build --weights FILE -o OUT.tflite`     | npz, safetensors, onnx, .keras/.h5 files      |
| `build-config`  | `tflrnn build --config FILE -o OUT.tflite`      | JSON and TOML cell configs                    |

Mutations: byte flips, truncation, splices; flatbuffer-aware ones at the positions the reader really dereferences
(root and vtable offsets, uoffsets, vector lengths, int32 vector elements, string bytes, weight data), a wrong file
identifier, and semantic edits made through tflrnn's own reader and writer; for weights, array-level edits (NaN,
inf, wrong dtypes and shapes), format-level ones (npy headers, safetensors headers, ONNX attributes and
initializers, HDF5 attributes and datasets, Keras configs), non-UTF-8 names; for configs, type confusion, huge
numbers, NaN/inf, deep nesting in JSON and TOML.

Pass criteria for every case: exit code 0, 1 (verify only) or 2 within the time limit; no traceback; on exit 2 one
line on stderr (`tflrnn: error: ...`) and nothing on stdout; nothing on stderr otherwise; no output file (and no
stray `.part` temporary) when the command fails; an output file that tflrnn can read when `build` succeeds.

Cases run in-process through `tflrnn.cli.main` (fast), in a forked child of this process (fast, and isolated
from a native crash, a hang inside C code, or a huge allocation: `verify` runs a native interpreter, `build
--weights` reads HDF5 through its C library), or as a real `python -m tflrnn` subprocess (a few per run, end to
end). `--mode` switches, e.g. `--mode verify=inprocess` now that verify runs the interpreter in a child process of
its own, or `--mode subprocess` for everything (slow: ~0.3 s a case). Each case's address space is capped at the
harness's own plus 3 GiB: an input that needs more fails as `memory` instead of swapping the machine.

    python scripts/fuzz.py --cases 300 --seed 0        # the quick run tests/test_fuzz.py does (~15 s)
    python scripts/fuzz.py --long --seed 2 --save-failures /tmp/found --json /tmp/long.json
                                                       # the long run: ~17,000 cases in 9 minutes (--time-budget)
    python scripts/fuzz.py --replay tests/fuzz_corpus  # re-run the regression corpus
    python scripts/fuzz.py --long --seed 2 --show 1234 --keep /tmp/k   # one case: argv, output, traceback

A long run prints counts per target, exit code and mutation family, and each distinct failure (by target, problem
and the innermost tflrnn frame) with its command and, for an internal error, the traceback from a `--debug`
re-run. `--save-failures DIR` writes one input per distinct failure (shrunk where cheap: config lines dropped,
seed bytes restored) as `<target>-<hash><suffix>` (+ `.args`), the naming tests/fuzz_corpus uses; review and copy
new ones there. The same `--seed` (and `--long` or not) gives the same cases.

Exit code: 0 when every case passed, 1 when any failed.
"""

from __future__ import annotations

import argparse
import copy
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TARGETS = ("inspect", "verify", "export", "build-weights", "build-config")
TARGET_SHARE = {"inspect": 0.24, "verify": 0.16, "export": 0.06, "build-weights": 0.34, "build-config": 0.20}
MODES = ("inprocess", "fork", "subprocess")
# verify runs the native interpreter: a model that crashes it must not take the harness down (switch to
# "inprocess" once verify isolates the interpreter in a child process itself).
DEFAULT_MODES = {"inspect": "inprocess", "verify": "fork", "export": "inprocess", "build-weights": "fork",
                 "build-config": "inprocess"}
DEFAULT_TIMEOUT = 20.0  # seconds per case (in-process / forked); a subprocess gets SUBPROCESS_SLACK more
SUBPROCESS_SLACK = 20.0
SLOW_CASE = 5.0  # a passing case slower than this is listed as a note
MEMORY_HEADROOM = 3 * 2**30  # a case may allocate this much address space beyond the harness's own
HASH_CHARS = 12
NPZ_PLACEHOLDER = "@npz"  # in args: a valid 4-unit, 3-input .npz the runner writes beside the input

ROOT = Path(__file__).resolve().parent.parent


# Cases and results ----------------------------------------------------------------------------------------------


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


# Seeds ---------------------------------------------------------------------------------------------------------


@dataclass
class Seed:
    name: str
    kind: str  # "model" | "npz" | "safetensors" | "onnx" | "keras" | "config"
    data: bytes
    suffix: str
    args: list[str] = field(default_factory=list)  # arguments it needs to build (e.g. --bidirectional)
    spec: object = None  # format-specific structure the structured mutators rebuild from
    positions: dict | None = None  # models: flatbuffer positions the reader dereferences
    description: object = None  # models: tflrnn's Model description


def _weights(units=4, input_size=3, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal((units, input_size)) * 0.4).astype(np.float32),
            (rng.standard_normal((units, units)) * 0.3).astype(np.float32),
            (rng.standard_normal(units) * 0.1).astype(np.float32))


def valid_npz_bytes() -> bytes:
    w, r, b = _weights()
    return npz_bytes({"input_weights": w, "recurrent_weights": r, "bias": b})


def generate_seeds(workdir: Path) -> dict[str, list[Seed]]:
    """Valid inputs for every target, written and read back here: models by `tflrnn build` itself."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    models = []
    builds = {
        "basic": ["--units", "4", "--input-size", "3", "--time-steps", "2"],
        "relu-time-major": ["--units", "3", "--input-size", "2", "--time-steps", "3", "--batch-size", "2",
                            "--activation", "relu", "--time-major"],
        "stack-last-step": ["--units", "3", "--input-size", "2", "--time-steps", "2", "--layers", "2",
                            "--last-step"],
        "bidirectional": ["--units", "3", "--input-size", "2", "--time-steps", "2", "--bidirectional"],
        "bidirectional-separate": ["--units", "2", "--input-size", "2", "--time-steps", "2", "--bidirectional",
                                   "--merge", "none"],
        "int8": ["--units", "4", "--input-size", "3", "--time-steps", "2", "--quantize", "int8"],
        "int8-asymmetric": ["--units", "3", "--input-size", "3", "--quantize", "int8", "--asymmetric-inputs"],
        "dynamic-time": ["--units", "3", "--input-size", "2", "--time-steps", "dynamic"],
        "sign-bit": ["--units", "3", "--input-size", "2", "--activation", "sign_bit", "--name", "enc/cell.x-1"],
    }
    from tflrnn import reader

    for name, args in builds.items():
        out = workdir / f"{name}.tflite"
        result = run_argv(["build", *args, "-o", str(out)], "inprocess", DEFAULT_TIMEOUT)
        if result.code != 0:
            raise RuntimeError(f"seed model {name}: tflrnn build failed: {result.err}")
        data = out.read_bytes()
        models.append(Seed(name, "model", data, ".tflite", positions=flatbuffer_positions(data),
                           description=reader.read(data)))

    weights = []
    w, r, b = _weights()
    w2, r2, b2 = _weights(seed=1)
    w3, r3, b3 = _weights(units=4, input_size=4, seed=2)
    for name, arrays, args in [
        ("npz-tflite", {"input_weights": w, "recurrent_weights": r, "bias": b}, []),
        ("npz-keras", {"kernel": w.T.copy(), "recurrent_kernel": r.T.copy(), "bias": b}, []),
        ("npz-scoped", {"enc/input_weights": w, "enc/recurrent_weights": r, "enc/bias": b,
                        "dense/kernel": w.T.copy(), "dense/bias": b}, ["--scope", "enc"]),
        ("npz-stack", {"rnn/cell_0/input_weights": w, "rnn/cell_0/recurrent_weights": r, "rnn/cell_0/bias": b,
                       "rnn/cell_1/input_weights": w3, "rnn/cell_1/recurrent_weights": r3, "rnn/cell_1/bias": b3},
         ["--layers", "2", "--units", "4"]),
        ("npz-bidirectional", {"rnn/fw/input_weights": w, "rnn/fw/recurrent_weights": r, "rnn/fw/bias": b,
                               "rnn/bw/input_weights": w2, "rnn/bw/recurrent_weights": r2, "rnn/bw/bias": b2},
         ["--bidirectional", "--units", "4"]),
    ]:
        spec = {"arrays": arrays, "compressed": name == "npz-keras"}
        weights.append(Seed(name, "npz", npz_bytes(arrays, spec["compressed"]), ".npz", args, spec))

    state1 = {"rnn.weight_ih_l0": w, "rnn.weight_hh_l0": r, "rnn.bias_ih_l0": b, "rnn.bias_hh_l0": b2}
    state2 = {**state1, "rnn.weight_ih_l1": w3, "rnn.weight_hh_l1": r3, "rnn.bias_ih_l1": b3, "rnn.bias_hh_l1": b3}
    state_bi = {**state1, "rnn.weight_ih_l0_reverse": w2, "rnn.weight_hh_l0_reverse": r2,
                "rnn.bias_ih_l0_reverse": b2, "rnn.bias_hh_l0_reverse": b}
    for name, state in (("safetensors-1", state1), ("safetensors-2layers", state2), ("safetensors-bi", state_bi)):
        spec = safetensors_spec(state)
        weights.append(Seed(name, "safetensors", safetensors_bytes(spec), ".safetensors", [], spec))

    for name, spec in (
        ("onnx-forward", onnx_spec(w, r, b, b2)),
        ("onnx-bidirectional", onnx_spec(np.stack([w, w2]), np.stack([r, r2]), np.stack([b, b2]),
                                         np.stack([b2, b]), direction="bidirectional", layout=1)),
        ("onnx-constant-state", onnx_spec(w, r, b, b2, zero_state="ConstantOfShape", activation="Relu",
                                          constant_node=True)),
    ):
        weights.append(Seed(name, "onnx", onnx_bytes(spec), ".onnx", [], spec))

    for name, suffix, spec in (
        ("keras3-model", ".keras", keras_spec("keras3", [("SimpleRNN", "rnn", [w.T, r.T, b])])),
        ("keras3-weights", ".weights.h5", keras_spec("keras3-weights", [("SimpleRNN", "rnn", [w.T, r.T, b])])),
        ("keras3-stack", ".keras", keras_spec("keras3", [("SimpleRNN", "rnn_a", [w.T, r.T, b]),
                                                         ("SimpleRNN", "rnn_b", [w3.T, r3.T, b3])],
                                              return_sequences=[True, False])),
        ("keras3-bidirectional", ".keras", keras_spec("keras3", [("Bidirectional", "bi", [w.T, r.T, b, w2.T, r2.T,
                                                                                         b2])])),
        ("keras2-h5", ".h5", keras_spec("legacy", [("SimpleRNN", "rnn", [w.T, r.T, b]), ("Dense", "dense", [r, b])],
                                        activation="relu")),
        ("keras2-weights-h5", ".h5", keras_spec("legacy-weights", [("SimpleRNN", "rnn", [w.T, r.T])])),
    ):
        weights.append(Seed(name, "keras", keras_bytes(spec), suffix, [], spec))

    configs = []
    keras_config = {
        "name": "rnn", "trainable": True,
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}},
        "return_sequences": True, "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
        "zero_output_for_mask": False, "units": 4, "activation": "tanh", "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "kernel_regularizer": None, "dropout": 0.0, "recurrent_dropout": 0.0,
    }
    for name, doc in (
        ("tflite-cell", {"num_units": 4, "activation": "relu", "name": "rnn", "input_size": 3, "time_steps": 2}),
        ("keras-simple-rnn", keras_config),
        ("keras-wrapped", {"class_name": "SimpleRNN", "config": {**keras_config, "return_sequences": False}}),
        ("keras2-batch-shape", {"units": 3, "batch_input_shape": [2, 3, 5], "activation": "linear"}),
        ("stack", {"cells": [{"num_units": 4, "activation": "relu", "name": "enc/l0"},
                             {"num_units": 3, "name": "enc/l1"}],
                   "input_size": 3, "time_steps": 2, "return_sequences": False}),
        ("bidirectional", {"num_units": 3, "bidirectional": True, "merge": "none", "time_steps": "dynamic"}),
        ("int8", {"num_units": 3, "quantize": "int8", "asymmetric_inputs": True, "seed": 7, "time_major": True}),
    ):
        for suffix in (".json", ".toml"):
            text = render_json(doc) if suffix == ".json" else render_toml(doc)
            configs.append(Seed(f"{name}{suffix}", "config", text.encode(), suffix, [], doc))
    return {"model": models, "weights": weights, "config": configs}


# Running one case ----------------------------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised by the alarm in an in-process case (a BaseException: tflrnn's `except Exception` must not eat it)."""


def _output_path(case: Case, outdir: Path) -> Path | None:
    if case.target.startswith("build"):
        return outdir / "model.tflite"
    if case.target == "export":
        return outdir / "weights.npz"
    return None


def case_argv(case: Case, input_path: Path, outdir: Path) -> list[str]:
    args = [str(outdir.parent / "valid.npz") if a == NPZ_PLACEHOLDER else a for a in case.args]
    output = _output_path(case, outdir)
    if case.target == "inspect":
        return ["inspect", str(input_path), *args]
    if case.target == "verify":
        return ["verify", str(input_path), "--sequences", "2", *args]
    if case.target == "export":
        return ["weights", str(input_path), "-o", str(output), *args]
    if case.target == "build-weights":
        return ["build", "--weights", str(input_path), "-o", str(output), *args]
    if case.target == "build-config":
        return ["build", "--config", str(input_path), "-o", str(output), *args]
    raise ValueError(f"unknown target {case.target}")


def run_case(case: Case, workdir: Path, mode: str | None = None, timeout: float = DEFAULT_TIMEOUT,
             explain: bool = True) -> Result:
    """Run one case in a fresh directory under `workdir` and judge it against the pass criteria."""
    mode = mode or DEFAULT_MODES[case.target]
    casedir = Path(tempfile.mkdtemp(prefix="case-", dir=workdir))
    try:
        input_path = casedir / f"input{case.suffix}"
        input_path.write_bytes(case.data)
        if any(a == NPZ_PLACEHOLDER for a in case.args):
            (casedir / "valid.npz").write_bytes(valid_npz_bytes())
        outdir = casedir / "out"
        outdir.mkdir()
        argv = case_argv(case, input_path, outdir)
        result = run_argv(argv, mode, timeout + (SUBPROCESS_SLACK if mode == "subprocess" else 0))
        judge(case, result, outdir)
        if explain and result.problems and result.code not in (None, 0, 1, 2) and result.code > 0:
            # the one-line "internal error" hides where: run again with --debug for the traceback
            for path in outdir.iterdir():
                _remove(path)
            debug = run_argv(["--debug", *argv], "fork" if mode == "inprocess" else mode,
                             timeout + (SUBPROCESS_SLACK if mode == "subprocess" else 0))
            result.trace = debug.err or debug.out
            result.detail = _explain(result.trace)
        elif result.problems and "Traceback" in result.err + result.out:
            result.trace = result.err + result.out
            result.detail = _explain(result.trace)
        return result
    finally:
        shutil.rmtree(casedir, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _tail(text: str, lines: int) -> str:
    kept = [ln for ln in text.rstrip().splitlines() if ln.strip(" ^~") or not ln.strip()]  # no caret lines
    return "\n".join(kept[-lines:])


def judge(case: Case, result: Result, outdir: Path) -> None:
    """The pass criteria: result.problems gets every violation, result.notes what passed but looks odd."""
    code = result.code
    problems, notes = result.problems, result.notes
    if code is None:
        problems.append(f"timeout: no exit after {result.seconds:.1f} s")
    elif code < 0:
        problems.append(f"crash: killed by signal {-code} ({_signal_name(-code)})")
    elif code not in (0, 1, 2):
        problems.append(f"exit-{code}: " + _first_line(result.err))
    elif code == 1 and case.target != "verify":
        problems.append(f"exit-1: unexpected exit 1 from {case.target}")
    if "Traceback (most recent call last)" in result.out + result.err:
        problems.append("traceback")
    err_lines = result.err.strip().splitlines()
    if code == 2:
        if len(err_lines) != 1 or not err_lines[0].startswith("tflrnn: error: "):
            problems.append(f"stderr: exit 2 with {len(err_lines)} stderr lines: {_first_line(result.err)!r}")
        if result.out.strip():
            problems.append(f"stdout-on-error: {_first_line(result.out)!r}")
        if "not enough memory" in result.err:
            # the harness caps each case's address space: without the cap this input would have the process
            # swap or be killed by the kernel
            problems.append("memory: needed more than the harness's cap "
                            f"({MEMORY_HEADROOM >> 30} GiB above its own size)")
    elif code in (0, 1) and result.err.strip():
        problems.append(f"stderr: output on stderr with exit {code}: {_first_line(result.err)!r}")
    output = _output_path(case, outdir)
    present = sorted(p.name for p in outdir.iterdir()) if outdir.exists() else []
    if output is not None and output.name in present and code != 0:
        problems.append(f"output-on-failure: {output.name} exists after exit {code}")
    stray = [name for name in present if output is None or name != output.name]
    if stray:
        problems.append(f"stray-file: {', '.join(stray)} left in the output directory")
    if output is not None and code == 0:
        if not output.exists():
            problems.append("no-output: exit 0 but no output file")
        elif case.target.startswith("build"):
            try:
                from tflrnn import reader

                reader.read(output.read_bytes())
            except Exception as exc:  # noqa: BLE001 - anything: the built file must read back
                problems.append(f"unreadable-output: {type(exc).__name__}: {exc}")
    if not problems and result.seconds > SLOW_CASE:
        notes.append(f"slow: {result.seconds:.1f} s")


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "?"


def run_argv(argv: list[str], mode: str, timeout: float) -> Result:
    """Run `tflrnn ARGV` in-process, in a forked child or as a subprocess: exit code, stdout, stderr, seconds."""
    start = time.monotonic()
    if mode == "inprocess":
        code, out, err = _run_inprocess(argv, timeout)
    elif mode == "fork":
        code, out, err = _run_forked(argv, timeout)
    elif mode == "subprocess":
        code, out, err = _run_subprocess(argv, timeout)
    else:
        raise ValueError(f"unknown mode {mode}")
    return Result(code, out, err, time.monotonic() - start, mode, argv)


def _memory_limit() -> int | None:
    """Address space for one case: the harness's own plus MEMORY_HEADROOM."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE") + MEMORY_HEADROOM
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _limited_memory():
    limit = _memory_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if limit is not None and (hard == resource.RLIM_INFINITY or limit < hard):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _cli_warnings():
    """Warning filters as a fresh `python -m tflrnn` has them (pytest and this harness change them)."""
    with warnings.catch_warnings():
        # printed to stderr as Python does (pytest, for one, records them instead)
        warnings.formatwarning = warnings._formatwarning_orig
        warnings.showwarning = _show_warning
        warnings.resetwarnings()
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        yield


def _call_cli(argv: list[str]) -> int:
    """tflrnn's own entry point; its exit code. An exception escaping main() is printed, as Python would."""
    import tflrnn.cli

    tflrnn.cli._debug = False
    try:
        tflrnn.cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


def _run_inprocess(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    # As a real process's streams: stdout strict UTF-8, stderr backslashreplace.
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace", write_through=True)
    saved = sys.stdout, sys.stderr
    alarm = signal.getsignal(signal.SIGALRM)
    in_main = _is_main_thread()

    def expire(signum, frame):
        raise CaseTimeout

    code: int | None = None
    sys.stdout, sys.stderr = out, err
    try:
        if in_main:
            signal.signal(signal.SIGALRM, expire)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        with _limited_memory(), _cli_warnings():
            code = _call_cli(argv)
    except CaseTimeout:
        code = None
    except BaseException:  # noqa: BLE001 - escaped tflrnn's main(): as Python would print it
        traceback.print_exc(file=err)
        code = 1
    finally:
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, alarm)
        sys.stdout, sys.stderr = saved
    return code, _decode(out_bytes.getvalue()), _decode(err_bytes.getvalue())


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="backslashreplace")


def _run_forked(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 70
            try:
                os.dup2(out_file.fileno(), 1)
                os.dup2(err_file.fileno(), 2)
                sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="strict",
                                              write_through=True)
                sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                              errors="backslashreplace", write_through=True)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                limit = _memory_limit()
                if limit is not None:
                    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
                with _cli_warnings():
                    code = _call_cli(argv)
            except BaseException:  # noqa: BLE001
                with contextlib.suppress(BaseException):
                    traceback.print_exc()
                code = 1
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code if isinstance(code, int) and 0 <= code < 256 else 1)
        timed_out = not _wait_for(pid, timeout)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        code = None if timed_out else os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        return code, _decode(out_file.read()), _decode(err_file.read())


def _wait_for(pid: int, timeout: float) -> bool:
    """True when the child exited within `timeout` (it is not reaped here)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            return bool(ready)
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(0.005)
    return False


def _run_subprocess(argv: list[str], timeout: float) -> tuple[int | None, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TFLRNN_DEBUG"}
    try:
        proc = subprocess.run([sys.executable, "-m", "tflrnn", *argv], capture_output=True, timeout=timeout,
                              env=env, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired as exc:
        return None, _decode(exc.stdout or b""), _decode(exc.stderr or b"")
    return proc.returncode, _decode(proc.stdout), _decode(proc.stderr)


# Byte-level mutations ------------------------------------------------------------------------------------------


U32_HUGE = (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 0xFFFFFFFC, 0x40000000, 0x3FFFFFFF, 0x10000, 0xFFFF)


def bitflip(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    if not data:
        return "bitflip:empty", b"\x00"
    buf = bytearray(data)
    flips = rng.choice((1, 1, 2, 4, 8, 32))
    for _ in range(flips):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return f"bitflip:{flips}", bytes(buf)


def byteset(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    if not data:
        return "byteset:empty", b"\xff"
    buf = bytearray(data)
    for _ in range(rng.choice((1, 2, 6))):
        buf[rng.randrange(len(buf))] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x01, rng.randrange(256)))
    return "byteset", bytes(buf)


def truncate(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    n = len(data)
    how = rng.choice(("random", "random", "tail", "head", "tiny", "empty"))
    if how == "random":
        cut = rng.randrange(n) if n else 0
    elif how == "tail":
        cut = max(0, n - rng.randint(1, 16))
    elif how == "head":
        cut = min(n, rng.randint(1, 64))
    elif how == "tiny":
        cut = min(n, rng.randint(0, 8))
    else:
        cut = 0
    return f"truncate:{how}", data[:cut]


def extend(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    how = rng.choice(("zeros", "random", "self", "ff"))
    k = rng.choice((1, 3, 4, 16, 1000))
    tail = {"zeros": b"\0" * k, "random": rng.randbytes(k), "self": data[:k], "ff": b"\xff" * k}[how]
    return f"extend:{how}", data + tail


def chunk(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    n = len(data)
    if n < 8:
        return "chunk:short", data + data
    a = rng.randrange(n)
    b = min(n, a + rng.choice((1, 4, 16, 64, 256)))
    how = rng.choice(("delete", "duplicate", "zero", "move", "insert"))
    if how == "delete":
        return "chunk:delete", data[:a] + data[b:]
    if how == "duplicate":
        return "chunk:duplicate", data[:b] + data[a:b] + data[b:]
    if how == "zero":
        return "chunk:zero", data[:a] + b"\0" * (b - a) + data[b:]
    if how == "insert":
        return "chunk:insert", data[:a] + rng.randbytes(rng.choice((1, 4, 8))) + data[a:]
    c = rng.randrange(n)
    return "chunk:move", data[:a] + data[b:c] + data[a:b] + data[c:] if c > b else data[:c] + data[a:b] + data[c:a] + data[b:]


def splice(rng: random.Random, data: bytes, other: bytes) -> tuple[str, bytes]:
    if not data or not other:
        return "splice:empty", data or other
    a = rng.randrange(len(data))
    b = rng.randrange(len(other))
    return "splice", data[:a] + other[b:]


BYTE_MUTATORS = (bitflip, byteset, truncate, extend, chunk)


# Flatbuffer-aware mutations ------------------------------------------------------------------------------------


def flatbuffer_positions(data: bytes) -> dict[str, list]:
    """Where tflrnn's reader dereferences this file: uoffsets, vector lengths, soffsets to vtables, vtable slots
    and headers, int32 vector elements, string bytes and uint8 data, recorded by wrapping flatbuffers' Table while
    tflrnn.reader.read runs."""
    from flatbuffers import encode
    from flatbuffers import number_types as N
    from flatbuffers import table as fbtable

    from tflrnn import reader

    Table = fbtable.Table
    found: dict[str, set] = defaultdict(set)
    saved = {name: getattr(Table, name) for name in ("Offset", "Indirect", "String", "VectorLen", "Vector", "Union",
                                                      "GetVectorAsNumpy")}

    def get_u32(buf, pos):
        return encode.Get(N.UOffsetTFlags.packer_type, buf, pos)

    def Offset(self, vtable_offset):
        found["soffset"].add(self.Pos)
        vtable = self.Pos - self.Get(N.SOffsetTFlags, self.Pos)
        found["vtable_header"].add(vtable)
        if vtable_offset < self.Get(N.VOffsetTFlags, vtable):
            found["vtable"].add(vtable + vtable_offset)
        return saved["Offset"](self, vtable_offset)

    def Indirect(self, off):
        found["uoffset"].add(off)
        return saved["Indirect"](self, off)

    def String(self, off):
        found["uoffset"].add(off)
        start = off + get_u32(self.Bytes, off)
        found["length"].add(start)
        found["string"].add((start + 4, get_u32(self.Bytes, start)))
        return saved["String"](self, off)

    def VectorLen(self, off):
        at = off + self.Pos
        found["uoffset"].add(at)
        found["length"].add(at + get_u32(self.Bytes, at))
        return saved["VectorLen"](self, off)

    def Vector(self, off):
        found["uoffset"].add(off + self.Pos)
        return saved["Vector"](self, off)

    def Union(self, t2, off):
        found["uoffset"].add(off + self.Pos)
        return saved["Union"](self, t2, off)

    def GetVectorAsNumpy(self, flags, off):
        array = saved["GetVectorAsNumpy"](self, flags, off)
        start = self.Vector(off)
        if array.dtype.itemsize == 4:
            for k in range(min(len(array), 64)):
                found["elem32"].add(start + 4 * k)
        elif array.dtype.itemsize == 1 and len(array) >= 4:
            found["data"].add((start, len(array)))
        return array

    patched = {"Offset": Offset, "Indirect": Indirect, "String": String, "VectorLen": VectorLen, "Vector": Vector,
               "Union": Union, "GetVectorAsNumpy": GetVectorAsNumpy}
    try:
        for name, fn in patched.items():
            setattr(Table, name, fn)
        reader.read(data)
    finally:
        for name, fn in saved.items():
            setattr(Table, name, fn)
    found["uoffset"].add(0)  # the root table offset
    n = len(data)
    return {k: sorted(p for p in v if (p[0] if isinstance(p, tuple) else p) < n) for k, v in found.items()}


def _put(buf: bytearray, pos: int, fmt: str, value: int) -> None:
    size = struct.calcsize(fmt)
    if 0 <= pos <= len(buf) - size:
        struct.pack_into(fmt, buf, pos, value)


def _u32_values(rng, n, pos, orig):
    return [0, 1, 2, 3, *U32_HUGE, n, n - pos, n - pos - 4, n - pos + 4, (orig + 4) & 0xFFFFFFFF,
            (orig - 4) & 0xFFFFFFFF, (orig * 2) & 0xFFFFFFFF, orig ^ (1 << rng.randrange(32)), rng.getrandbits(32)]


def fb_mutate(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    """One flatbuffer-aware edit at a position the reader really uses."""
    data, pos_map = seed.data, seed.positions or {}
    buf = bytearray(data)
    n = len(buf)
    kinds = [k for k in ("uoffset", "length", "soffset", "vtable", "vtable_header", "elem32", "data", "string")
             if pos_map.get(k)] + ["root", "identifier", "word"]
    kind = rng.choice(kinds)
    if kind == "identifier":
        ident = rng.choice((b"TFL2", b"tfl3", b"\0\0\0\0", b"TFL4", b"\xff\xff\xff\xff", rng.randbytes(4), b"3LFT"))
        buf[4:8] = ident
        return f"fb:identifier={ident!r}", bytes(buf)
    if kind == "root":
        value = rng.choice(_u32_values(rng, n, 0, struct.unpack_from("<I", buf, 0)[0]) + [n - 1, n - 4, 4, 8])
        _put(buf, 0, "<I", value & 0xFFFFFFFF)
        return f"fb:root={value & 0xFFFFFFFF:#x}", bytes(buf)
    if kind == "word":  # any aligned word: catches fields the reader does not visit
        pos = rng.randrange(0, max(1, n - 3), 4)
        value = rng.choice([*U32_HUGE, n, n + rng.randint(1, 64), 0, rng.getrandbits(32)])
        _put(buf, pos, "<I", value)
        return f"fb:word={value:#x}", bytes(buf)
    choice = rng.choice(pos_map[kind])
    if kind in ("uoffset", "length"):
        pos = choice
        orig = struct.unpack_from("<I", buf, pos)[0] if pos + 4 <= n else 0
        if kind == "uoffset":
            value = rng.choice(_u32_values(rng, n, pos, orig))
        else:
            value = rng.choice([0, 1, *U32_HUGE, n // 4, n // 4 + 1, n, orig + 1, orig * 2 + 1, 1 << 20,
                                rng.getrandbits(32)])
        _put(buf, pos, "<I", value & 0xFFFFFFFF)
        return f"fb:{kind}={value & 0xFFFFFFFF:#x}", bytes(buf)
    if kind == "soffset":
        pos = choice
        orig = struct.unpack_from("<i", buf, pos)[0] if pos + 4 <= n else 0
        value = rng.choice([0, pos, pos + 1, pos - n, -n, 0x7FFFFFFF, -0x80000000, orig + 2, orig - 2, orig + 4,
                            orig - 4, -4, 4, rng.randint(-0x80000000, 0x7FFFFFFF)])
        value = max(-0x80000000, min(0x7FFFFFFF, value))
        _put(buf, pos, "<i", value)
        return f"fb:soffset={value}", bytes(buf)
    if kind in ("vtable", "vtable_header"):
        pos = choice + (2 * rng.randrange(2) if kind == "vtable_header" else 0)
        orig = struct.unpack_from("<H", buf, pos)[0] if pos + 2 <= n else 0
        value = rng.choice([0, 1, 2, 3, 4, 0xFFFF, 0x8000, 0x7FFF, orig + 2, orig + 4, orig - 2, orig * 2,
                            rng.getrandbits(16)]) & 0xFFFF
        _put(buf, pos, "<H", value)
        return f"fb:{kind}={value:#x}", bytes(buf)
    if kind == "elem32":
        pos = choice
        orig = struct.unpack_from("<i", buf, pos)[0] if pos + 4 <= n else 0
        value = rng.choice([-1, -2, 0, 1, 2, 3, 5, 6, 7, 9, 100, 2**31 - 1, -(2**31), 2**16, 2**20, orig + 1,
                            orig - 1, orig * 2, -orig, 46341])
        value = max(-(2**31), min(2**31 - 1, value))
        _put(buf, pos, "<i", value)
        return f"fb:elem32={value}", bytes(buf)
    if kind == "data":
        start, length = choice
        pos = start + 4 * rng.randrange(max(1, length // 4))
        value = rng.choice([float("nan"), float("inf"), float("-inf"), 3.4028235e38, -3.4028235e38, 1e-45, -0.0,
                            1e30])
        if pos + 4 <= n:
            struct.pack_into("<f", buf, pos, value)
        return f"fb:data={value}", bytes(buf)
    # string bytes: invalid UTF-8, NUL, control characters
    start, length = choice
    if length == 0 or start >= n:
        return "fb:string-empty", bytes(buf)
    pos = start + rng.randrange(min(length, n - start))
    junk = rng.choice((b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80", b"\n", b"\x1b", b"/"))
    buf[pos:pos + len(junk)] = junk[: max(0, min(len(junk), n - pos))]
    return f"fb:string={junk!r}", bytes(buf[:n])


# Semantic model mutations, through tflrnn's own reader and writer ----------------------------------------------


SEMANTIC_KINDS = ("shape", "dtype", "data", "variable", "shape_signature", "quantization", "op_inputs",
                  "op_outputs", "op_version", "op_code", "options", "graph_io", "signature", "metadata",
                  "subgraphs", "operators", "description")


def semantic_mutate(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    """Edit the model description (tensors, op, options, signature, metadata) and write it back: well-formed
    flatbuffers whose content is wrong, the kind of file that gets past the reader to the checks and runtime."""
    from tflrnn import model as m
    from tflrnn import writer

    for _ in range(8):
        model = copy.deepcopy(seed.description)
        kind = rng.choice(SEMANTIC_KINDS)
        try:
            label = _semantic_edit(rng, model, kind, m)
            return f"semantic:{kind}:{label}", writer.write(model)
        except Exception:  # noqa: BLE001 - the writer refused this edit: try another
            continue
    return bitflip(rng, seed.data)


def _semantic_edit(rng, model, kind, m) -> str:
    g = model.subgraphs[0]
    tensors = g.tensors
    t = rng.choice(tensors)
    ops = g.operators
    op = rng.choice(ops)
    n = len(tensors)
    if kind == "shape":
        dims = list(t.shape)
        how = rng.choice(("zero", "negative", "huge", "plus", "drop", "add", "swap"))
        if how == "drop" and dims:
            dims.pop(rng.randrange(len(dims)))
        elif how == "add":
            dims.insert(rng.randrange(len(dims) + 1), rng.choice((1, 2, 0)))
        elif how == "swap" and len(dims) > 1:
            dims.reverse()
        elif dims:
            i = rng.randrange(len(dims))
            dims[i] = {"zero": 0, "negative": rng.choice((-1, -2)), "huge": rng.choice((2**31 - 1, 2**20, 46341)),
                       "plus": dims[i] + 1}.get(how, dims[i])
        t.shape = tuple(dims)
        return f"{t.name}={dims}"
    if kind == "dtype":
        t.dtype = rng.choice([d for d in m.TENSOR_TYPES if d != t.dtype])
        return f"{t.name}={t.dtype}"
    if kind == "data":
        how = rng.choice(("nan", "inf", "none", "add", "empty", "huge"))
        if how == "none":
            t.data = None
        elif how == "add":
            t.data = np.zeros(max(1, int(np.prod([d for d in t.shape if d > 0] or [1]))), np.float32)
        elif how == "empty":
            t.data = np.zeros(0, np.float32)
        elif t.data is not None and t.data.size:
            data = t.data.copy()
            if data.dtype.kind == "f":
                data.flat[rng.randrange(data.size)] = {"nan": np.nan, "inf": np.inf, "huge": 3.4e38}[how]
            else:
                data.flat[rng.randrange(data.size)] = np.iinfo(data.dtype).min
            t.data = data
        return f"{t.name}:{how}"
    if kind == "variable":
        t.is_variable = not t.is_variable
        return f"{t.name}={t.is_variable}"
    if kind == "shape_signature":
        t.shape_signature = tuple(rng.choice((-1, d, 0, -2)) for d in t.shape) if rng.random() < 0.7 else (-1,)
        return f"{t.name}={t.shape_signature}"
    if kind == "quantization":
        q = m.Quantization(scale=tuple(rng.choice((float("nan"), 0.0, -1.0, float("inf"), 1e-30, 1.0))
                                       for _ in range(rng.choice((1, 1, 2, 4)))),
                           zero_point=tuple(rng.choice((0, 127, -128, 2**31 - 1)) for _ in range(rng.choice((0, 1, 4)))),
                           quantized_dimension=rng.choice((0, 1, 5, -1)))
        t.quantization = q if rng.random() < 0.8 else None
        return f"{t.name}"
    if kind in ("op_inputs", "op_outputs"):
        vector = op.inputs if kind == "op_inputs" else op.outputs
        how = rng.choice(("index", "swap", "drop", "add", "duplicate"))
        if how == "index" and vector:
            vector[rng.randrange(len(vector))] = rng.choice((-1, -2, n, n + 5, 2**31 - 1, rng.randrange(n)))
        elif how == "swap" and len(vector) > 1:
            i, j = rng.sample(range(len(vector)), 2)
            vector[i], vector[j] = vector[j], vector[i]
        elif how == "drop" and vector:
            vector.pop(rng.randrange(len(vector)))
        elif how == "add":
            vector.append(rng.choice((-1, 0, n - 1, n)))
        elif vector:
            vector[rng.randrange(len(vector))] = vector[0]
        return f"{how}"
    if kind == "op_version":
        op.version = rng.choice((0, 2, 3, 4, 99, -1, 2**31 - 1))
        return str(op.version)
    if kind == "op_code":
        code = rng.choice((0, 35, 44, 45, 46, 127, 150, 200, 2**31 - 1))
        if rng.random() < 0.5:
            op.builtin_code = code
        else:
            op.deprecated_builtin_code = code if code < 128 else 127
        return str(code)
    if kind == "options":
        how = rng.choice(("none", "activation", "time_major", "merge", "asymmetric", "swap", "type"))
        if how == "none":
            op.options = None
        elif how == "activation" and op.options is not None and hasattr(op.options, "activation"):
            op.options.activation = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 127, 255, -1))
        elif how == "time_major" and hasattr(op.options, "time_major"):
            op.options.time_major = not op.options.time_major
        elif how == "merge" and hasattr(op.options, "merge_outputs"):
            op.options.merge_outputs = not op.options.merge_outputs
        elif how == "asymmetric" and hasattr(op.options, "asymmetric_quantize_inputs"):
            op.options.asymmetric_quantize_inputs = not op.options.asymmetric_quantize_inputs
        elif how == "swap":
            op.options = rng.choice((m.SequenceRNNOptions(), m.BidirectionalSequenceRNNOptions(merge_outputs=True),
                                     m.StridedSliceOptions(shrink_axis_mask=7)))
        else:
            op.options_type = rng.choice((0, 31, 32, 70, 99, 255))
        return how
    if kind == "graph_io":
        vector = rng.choice((g.inputs, g.outputs))
        if vector and rng.random() < 0.7:
            vector[rng.randrange(len(vector))] = rng.choice((-1, n, rng.randrange(n)))
        else:
            vector.append(rng.randrange(n))
        return ""
    if kind == "signature":
        if not model.signatures or rng.random() < 0.15:
            model.signatures = [] if model.signatures else [m.Signature("serving_default", {"input": 0}, {"output": 1})]
            return "toggle"
        s = rng.choice(model.signatures)
        how = rng.choice(("key", "input", "output", "subgraph", "names", "duplicate"))
        if how == "key":
            s.key = rng.choice(("", "serving", "serving_default\x00", "x" * 300))
        elif how in ("input", "output"):
            target = s.inputs if how == "input" else s.outputs
            if target:
                key = rng.choice(sorted(target))
                target[key] = rng.choice((-1, n, 2**31 - 1, rng.randrange(n)))
        elif how == "subgraph":
            s.subgraph = rng.choice((1, 5, 2**31 - 1, -1))
        elif how == "names":
            target = s.inputs if rng.random() < 0.5 else s.outputs
            if target:
                target[rng.choice(("", "output_fw", "input", "x"))] = target.pop(rng.choice(sorted(target)))
        else:
            model.signatures.append(copy.deepcopy(s))
        return how
    if kind == "metadata":
        how = rng.choice(("tflrnn", "tflrnn", "tflrnn", "runtime", "drop", "add"))
        if how == "tflrnn" and "tflrnn" in model.metadata:
            try:
                doc = json.loads(model.metadata["tflrnn"])
            except ValueError:
                doc = {}
            label, text = mutate_config_text(rng, doc, ".json", structured_only=rng.random() < 0.7)
            model.metadata["tflrnn"] = text
            return label
        if how == "runtime":
            model.metadata["min_runtime_version"] = rng.choice((b"", b"\xff\xfe", b"99.0.0", b"1.14", b"x" * 1000,
                                                                b"1.14.0\x00junk", b"2.3.0"))
            return "runtime"
        if how == "drop" and model.metadata:
            model.metadata.pop(rng.choice(sorted(model.metadata)))
            return "drop"
        model.metadata[rng.choice(("tflrnn", "extra", "", "\u00e9"))] = rng.choice((b"{}", b"null", b"[]", b"\xff"))
        return "add"
    if kind == "subgraphs":
        how = rng.choice(("duplicate", "empty", "drop-all"))
        if how == "duplicate":
            model.subgraphs.append(copy.deepcopy(g))
        elif how == "empty":
            model.subgraphs.insert(0, m.Subgraph([], [], [], []))
        else:
            model.subgraphs = []
        return how
    if kind == "operators":
        how = rng.choice(("duplicate", "drop", "clear"))
        if how == "duplicate":
            ops.append(copy.deepcopy(op))
        elif how == "drop":
            ops.remove(op)
        else:
            ops.clear()
        return how
    model.description = rng.choice(("", "x" * 5000, "\x00", "tflrnn \u2603"))
    model.version = rng.choice((0, 2, 4, 2**31 - 1, 3))
    return "description/version"


# Weights formats: writers with every field under the harness's control -------------------------------------


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(array), allow_pickle=True)
    return buf.getvalue()


def npy_raw(header: str, payload: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy with a hand-written header (version 1.0: u16 length; 2.0/3.0: u32)."""
    length_format = "<H" if version == (1, 0) else "<I"
    prefix = 6 + 2 + struct.calcsize(length_format)
    text = header.encode("latin1", errors="replace")
    pad = (64 - (prefix + len(text) + 1) % 64) % 64
    text = text + b" " * pad + b"\n"
    length = len(text) if len(text) < (1 << (8 * struct.calcsize(length_format))) else 0xFFFF
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, length) + text + payload


def npz_bytes(arrays: dict, compressed: bool = False, raw: dict | None = None) -> bytes:
    """A zip of name.npy members; `raw` maps member names to ready-made bytes (hand-written headers)."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, array in arrays.items():
            archive.writestr(name + ".npy", npy_bytes(array))
        for name, data in (raw or {}).items():
            archive.writestr(name, data)
    return buf.getvalue()


SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "float64": "F64", "int8": "I8", "int16": "I16",
                      "int32": "I32", "int64": "I64", "uint8": "U8", "bool": "BOOL"}


def safetensors_spec(state: dict) -> dict:
    header, chunks, offset = {}, [], 0
    for name, array in state.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES.get(array.dtype.name, "F32"), "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    return {"header": header, "data": b"".join(chunks), "header_text": None, "length": None}


def safetensors_bytes(spec: dict) -> bytes:
    text = spec["header_text"]
    if text is None:
        text = json.dumps(spec["header"], separators=(",", ":")).encode()
    text = text + b" " * ((8 - len(text) % 8) % 8)
    length = spec["length"] if spec["length"] is not None else len(text)
    return struct.pack("<Q", length & 0xFFFFFFFFFFFFFFFF) + text + spec["data"]


def safetensors_from_arrays(state: dict) -> dict:
    """A spec for arbitrary arrays (dtypes safetensors does not have are written as raw bytes with a made-up code)."""
    spec = safetensors_spec({})
    offset, chunks = 0, []
    header = {}
    for name, array in state.items():
        array = np.asarray(array)
        raw = array.tobytes() if array.dtype.kind not in "OU" else str(array.tolist()).encode()
        header[name] = {"dtype": SAFETENSORS_DTYPES.get(array.dtype.name, array.dtype.str),
                        "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    spec["header"] = {**header, "__metadata__": {"format": "pt"}}
    spec["data"] = b"".join(chunks)
    return spec


def onnx_spec(w, r, wb, rb, direction=None, layout=None, zero_state=None, activation="Tanh",
              constant_node=False) -> dict:
    w, r = np.asarray(w), np.asarray(r)
    directions = 2 if direction == "bidirectional" else 1
    w3 = w if w.ndim == 3 else w[None]
    r3 = r if r.ndim == 3 else r[None]
    bias = np.concatenate([np.asarray(wb).reshape(directions, -1), np.asarray(rb).reshape(directions, -1)], axis=1)
    attrs = {"hidden_size": int(r3.shape[1]), "activations": [activation] * directions}
    if direction is not None:
        attrs["direction"] = direction
    if layout is not None:
        attrs["layout"] = layout
    return {"W": w3.astype(np.float32), "R": r3.astype(np.float32), "B": bias.astype(np.float32), "attrs": attrs,
            "zero_state": zero_state, "constant_node": constant_node, "extra_nodes": 0, "post": []}


def onnx_model(spec: dict):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inputs = ["X", "W", "R", "B", "", ""]
    initializers, nodes = [], []
    for name in ("W", "R", "B"):
        value = spec[name]
        if value is None:
            if name == "B":
                inputs[3] = ""
            continue
        tensor = numpy_helper.from_array(np.asarray(value), name)
        if spec["constant_node"] and name == "W":
            nodes.append(helper.make_node("Constant", [], ["W"], value=tensor))
        else:
            initializers.append(tensor)
    units = spec["R"].shape[1] if spec["R"] is not None and np.ndim(spec["R"]) == 3 else 1
    directions = spec["R"].shape[0] if spec["R"] is not None and np.ndim(spec["R"]) == 3 else 1
    if spec["zero_state"] == "ConstantOfShape":
        initializers.append(numpy_helper.from_array(np.array([directions, 1, units], np.int64), "h0_shape"))
        nodes.append(helper.make_node("ConstantOfShape", ["h0_shape"], ["H0"],
                                      value=numpy_helper.from_array(np.zeros(1, np.float32))))
        inputs[5] = "H0"
    elif spec["zero_state"] == "initializer":
        initializers.append(numpy_helper.from_array(np.zeros((directions, 1, units), np.float32), "H0"))
        inputs[5] = "H0"
    nodes.append(helper.make_node("RNN", inputs, ["Y", "Y_h"], name="rnn", **spec["attrs"]))
    for k in range(spec["extra_nodes"]):
        nodes.append(helper.make_node("Identity", ["Y" if k == 0 else f"I{k - 1}"], [f"I{k}"], name=f"id{k}"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", 3])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    for edit in spec["post"]:
        edit(model, onnx)
    return model


def onnx_bytes(spec: dict) -> bytes:
    return onnx_model(spec).SerializeToString()


def keras_spec(layout: str, layers: list, activation="tanh", return_sequences=None) -> dict:
    """A Keras file: layout "keras3" (.keras zip), "keras3-weights" (.weights.h5), "legacy" (Keras 2 .h5 with
    model_config) or "legacy-weights" (save_weights .h5); layers (class, name, arrays)."""
    config_layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, None, 3], "name": "input"}}]
    for k, (cls, name, _) in enumerate(layers):
        rs = True if return_sequences is None else return_sequences[k]
        rnn = {"name": name, "units": 4, "activation": activation, "use_bias": True, "return_sequences": rs,
               "go_backwards": False, "dtype": "float32", "trainable": True}
        if cls == "Bidirectional":
            entry = {"class_name": "Bidirectional", "config": {
                "name": name, "merge_mode": "concat", "trainable": True, "dtype": "float32",
                "layer": {"class_name": "SimpleRNN", "config": {**rnn, "name": "inner", "return_sequences": True}}}}
        elif cls == "Dense":
            entry = {"class_name": "Dense", "config": {"name": name, "units": 4, "dtype": "float32",
                                                       "trainable": True}}
        else:
            entry = {"class_name": cls, "config": rnn}
        config_layers.append(entry)
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": config_layers}}
    return {"layout": layout, "layers": [(c, n, [np.asarray(a) for a in arrays]) for c, n, arrays in layers],
            "config": config, "config_text": None, "attrs": [], "datasets": [], "h5_post": []}


def keras_h5_bytes(spec: dict) -> bytes:
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        if spec["layout"].startswith("keras3"):
            layers = h5.create_group("layers")
            for k, (cls, name, arrays) in enumerate(spec["layers"]):
                key = {"SimpleRNN": "simple_rnn", "Bidirectional": "bidirectional", "Dense": "dense"}[cls]
                key = key if k == 0 else f"{key}_{k}"
                group = layers.create_group(key)
                group.create_group("vars").attrs["name"] = name
                if cls == "Bidirectional":
                    for half, part in (("forward_layer", arrays[:3]), ("backward_layer", arrays[3:])):
                        cell = group.create_group(half).create_group("cell").create_group("vars")
                        for i, a in enumerate(part):
                            cell.create_dataset(str(i), data=a)
                elif cls == "Dense":
                    for i, a in enumerate(arrays):
                        group["vars"].create_dataset(str(i), data=a)
                else:
                    cell = group.create_group("cell").create_group("vars")
                    for i, a in enumerate(arrays):
                        cell.create_dataset(str(i), data=a)
            h5.create_group("vars").attrs["name"] = "sequential"
        else:
            if spec["layout"] == "legacy":
                h5.attrs["model_config"] = spec["config_text"] if spec["config_text"] is not None else \
                    render_json(spec["config"])
                h5.attrs["keras_version"] = "2.15.0"
                root = h5.create_group("model_weights")
            else:
                root = h5
            root.attrs["layer_names"] = [n.encode() for _, n, _ in spec["layers"]]
            for cls, name, arrays in spec["layers"]:
                group = root.create_group(name)
                roles = ("kernel", "recurrent_kernel", "bias") if cls == "SimpleRNN" else ("kernel", "bias")
                names = [f"{name}/{'simple_rnn_cell' if cls == 'SimpleRNN' else name}/{role}:0"
                         for role in roles[: len(arrays)]]
                group.attrs["weight_names"] = [n.encode() for n in names]
                for weight_name, a in zip(names, arrays):
                    group.create_dataset(weight_name, data=a)
        for edit in spec["h5_post"]:
            edit(h5)
    return buf.getvalue()


def keras_bytes(spec: dict) -> bytes:
    h5 = keras_h5_bytes(spec)
    if spec["layout"] != "keras3":
        return h5
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.10.0"}))
        config = spec["config_text"] if spec["config_text"] is not None else render_json(spec["config"]).encode()
        archive.writestr("config.json", config)
        archive.writestr("model.weights.h5", h5)
    return buf.getvalue()


# Array-level mutations, shared by every weights format ---------------------------------------------------------


def mutate_array(rng: random.Random, a: np.ndarray) -> tuple[str, np.ndarray]:
    a = np.asarray(a)
    how = rng.choice(("nan", "inf", "-inf", "beyond-f32", "f32max", "denormal", "dtype", "dtype", "transpose",
                      "flatten", "add-axis", "scalar", "empty", "grow", "shrink", "int-extreme"))
    if how in ("nan", "inf", "-inf", "beyond-f32", "f32max", "denormal"):
        out = a.astype(np.float64 if how == "beyond-f32" else np.float32, copy=True)
        if out.size:
            out.flat[rng.randrange(out.size)] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "beyond-f32": 1e39,
                                                 "f32max": 3.4028235e38, "denormal": 1e-45}[how]
        return f"array:{how}", out
    if how == "dtype":
        dtype = rng.choice(("float16", "float64", "int8", "int32", "int64", "uint8", "bool", "complex64", ">f4",
                            "U3", "object", "datetime64[s]", "V4"))
        try:
            if dtype == "object":
                return "array:dtype=object", np.array(a.tolist() if a.ndim else [a.item()], dtype=object)
            if dtype == "V4":
                return "array:dtype=V4", np.frombuffer(a.astype(np.float32).tobytes(), "V4").reshape(a.shape)
            return f"array:dtype={dtype}", a.astype(dtype)
        except (TypeError, ValueError):
            return "array:dtype=float64", a.astype(np.float64)
    if how == "transpose":
        return "array:transpose", a.T.copy()
    if how == "flatten":
        return "array:flatten", a.reshape(-1)
    if how == "add-axis":
        return "array:add-axis", a[None]
    if how == "scalar":
        return "array:scalar", np.array(a.flat[0] if a.size else 0, dtype=a.dtype)
    if how == "empty":
        return "array:empty", np.zeros((0,) * max(1, a.ndim), a.dtype)
    if how == "grow":
        return "array:grow", np.pad(a, [(0, 1)] * a.ndim) if a.ndim else a
    if how == "shrink":
        return "array:shrink", a[tuple(slice(0, max(0, d - 1)) for d in a.shape)] if a.ndim else a
    return "array:int-extreme", np.full(a.shape, rng.choice((2**62, -(2**63), 2**31)), np.int64)


def _mutate_named_arrays(rng, arrays: dict) -> tuple[str, dict]:
    arrays = dict(arrays)
    how = rng.choice(("array", "array", "array", "drop", "rename", "duplicate", "extra", "many", "non-utf8"))
    if how == "array" and arrays:
        key = rng.choice(sorted(arrays))
        label, arrays[key] = mutate_array(rng, arrays[key])
        return f"{label}@{key}", arrays
    if how == "drop" and arrays:
        arrays.pop(rng.choice(sorted(arrays)))
        return "names:drop", arrays
    if how == "rename" and arrays:
        key = rng.choice(sorted(arrays))
        new = rng.choice((key.upper(), key + "_", "/" + key, key.replace("/", "//"), "a/" + key, key + "/x",
                          key.replace("_l0", "_l1"), key.replace("_l0", "_l99999999999999999999"),
                          key.replace("weight", "bias"), "", "x" * 300, "\u00e9" + key))
        arrays[new] = arrays.pop(key)
        return "names:rename", arrays
    if how == "duplicate" and arrays:
        key = rng.choice(sorted(arrays))
        arrays[key.replace("rnn", "rnn2", 1) if "rnn" in key else "other/" + key] = arrays[key]
        return "names:duplicate", arrays
    if how == "many":
        for k in range(rng.choice((50, 500))):
            arrays[f"junk/{k}"] = np.zeros(1, np.float32)
        return "names:many", arrays
    if how == "non-utf8":
        key = rng.choice(sorted(arrays)) if arrays else "bias"
        arrays[key + "\udcff"] = arrays.get(key, np.zeros(3, np.float32))  # a surrogate: written as raw bytes
        return "names:non-utf8", arrays
    for name, value in (("input_weights", np.zeros((4, 3))), ("kernel", np.zeros((3, 4))),
                        ("recurrent_weights", np.zeros((5, 5))), ("bias", np.zeros(4))):
        if rng.random() < 0.3:
            arrays[name] = value
    return "names:extra", arrays


def mutate_npz(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = seed.spec
    arrays = dict(spec["arrays"])
    how = rng.choice(("arrays", "arrays", "arrays", "header", "header", "zip-names", "pickle", "member"))
    if how == "arrays":
        label, arrays = _mutate_named_arrays(rng, arrays)
        try:
            return f"npz:{label}", _npz_with_names(arrays, spec["compressed"])
        except (ValueError, TypeError, UnicodeError):
            return bitflip(rng, seed.data)
    if how == "header":
        key = rng.choice(sorted(arrays))
        array = arrays.pop(key)
        label, raw = _mutated_npy(rng, np.asarray(array))
        return f"npz:header:{label}@{key}", npz_bytes(arrays, spec["compressed"], {key + ".npy": raw})
    if how == "zip-names":
        data = bytearray(seed.data)
        names = [n.encode() for n in arrays]
        name = rng.choice(names)
        junk = rng.choice((b"\xff", b"\x80", b"\xc3\x28", b"/"))
        replacement = name[:-1] + junk if len(name) > 1 else junk
        replacement = (replacement + b"?" * len(name))[: len(name)]
        data = bytes(data).replace(name + b".npy", replacement + b".npy")
        if rng.random() < 0.5:  # claim UTF-8 names (bit 11): a strict decoder must refuse these bytes
            data = _set_zip_utf8_flag(data)
        return f"npz:zip-names:{junk!r}", data
    if how == "pickle":
        key = rng.choice(sorted(arrays))
        arrays[key] = np.array([{"a": 1}, None], dtype=object)
        return f"npz:pickle@{key}", npz_bytes(arrays, spec["compressed"])
    # member: not an .npy, or a huge declared size, or a directory entry
    what = rng.choice(("not-npy", "dir", "empty", "nested-zip", "huge-claim"))
    raw = {"not-npy": {"bias.npy": b"not an array"}, "dir": {"bias.npy/": b""}, "empty": {"bias.npy": b""},
           "nested-zip": {"bias.npy": seed.data},
           "huge-claim": {"bias.npy": npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000,), }",
                                              b"\0" * 16)}}[what]
    arrays.pop("bias", None)
    return f"npz:member:{what}", npz_bytes(arrays, spec["compressed"], raw)


def _npz_with_names(arrays: dict, compressed: bool) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo("placeholder")
            info.compress_type = method
            raw_name = name.encode("utf-8", errors="surrogateescape") + b".npy"
            try:
                info.filename = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                info.filename = raw_name.decode("cp437")  # written back as these bytes, without the UTF-8 flag
            archive.writestr(info, npy_bytes(array))
    return buf.getvalue()


def _set_zip_utf8_flag(data: bytes) -> bytes:
    buf = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (i := buf.find(signature, start)) >= 0:
            if i + flag_at + 2 <= len(buf):
                flags = struct.unpack_from("<H", buf, i + flag_at)[0] | 0x800
                struct.pack_into("<H", buf, i + flag_at, flags)
            start = i + 4
    return bytes(buf)


def _mutated_npy(rng: random.Random, array: np.ndarray) -> tuple[str, bytes]:
    array = np.ascontiguousarray(array, dtype=np.float32)
    payload = array.tobytes()
    descr, fortran, shape = "'<f4'", "False", repr(tuple(array.shape))
    version = (1, 0)
    how = rng.choice(("descr", "shape", "shape", "fortran", "payload", "syntax", "version", "length", "magic"))
    if how == "descr":
        descr = rng.choice(("'>f4'", "'<f8'", "'<f2'", "'|i1'", "'<i8'", "'|b1'", "'<c8'", "'|O'", "'<U4'", "'|V12'",
                            "'<M8[s]'", "[('a', '<f4')]", "'garbage'", "'<f4", "None", "3"))
    elif how == "shape":
        shape = rng.choice(("(4294967296, 3)", "(1099511627776,)", "(-1, 3)", "()", "(0, 3)", "(4, 3, 1)",
                            "(4, 3.0)", "('a',)", "(2**40,)", "(3, 4)", "(9223372036854775807, 2)",
                            "(65536, 65536)", "(" * 200 + ")" * 200, "[4, 3]", "(4,3,) + (1,)"))
    elif how == "fortran":
        fortran = rng.choice(("True", "1", "'no'"))
    elif how == "payload":
        payload = rng.choice((payload[: len(payload) // 2], payload + b"\0" * 8, b"", payload * 3))
    elif how == "version":
        version = rng.choice(((2, 0), (3, 0), (9, 9), (0, 0)))
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    if how == "syntax":
        header = rng.choice(("[1, 2]", "{'descr': '<f4'}", "{" * 500, "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (4, 3), 'extra': 1}", "__import__('os')", "", "\xff\xfe"))
    raw = npy_raw(header, payload, version if version in ((1, 0), (2, 0), (3, 0)) else (1, 0))
    if how == "version" and version not in ((1, 0), (2, 0), (3, 0)):
        raw = raw[:6] + bytes(version) + raw[8:]
    if how == "length":
        raw = raw[:8] + struct.pack("<H", rng.choice((0, 1, 0xFFFF, 0x7FFF))) + raw[10:]
    if how == "magic":
        raw = b"\x93NUMPX" + raw[6:]
    return f"{how}", raw


def mutate_safetensors(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = copy.deepcopy(seed.spec)
    header = spec["header"]
    names = [k for k in header if k != "__metadata__"]
    how = rng.choice(("arrays", "arrays", "dtype", "shape", "offsets", "length", "json", "names", "metadata",
                      "data"))
    if how == "arrays":
        arrays = _safetensors_arrays(seed.spec)
        label, arrays = _mutate_named_arrays(rng, arrays)
        try:
            spec = safetensors_from_arrays({k.encode("utf-8", "surrogateescape").decode("utf-8", "replace"): v
                                            for k, v in arrays.items()})
        except (ValueError, TypeError):
            return bitflip(rng, seed.data)
        return f"safetensors:{label}", safetensors_bytes(spec)
    name = rng.choice(names)
    entry = header[name]
    if how == "dtype":
        entry["dtype"] = rng.choice(("F16", "BF16", "F64", "I8", "I64", "U8", "BOOL", "F8_E4M3", "X", "f32", "", 3,
                                     None, ["F32"], "C64", "U64", "I4"))
    elif how == "shape":
        entry["shape"] = rng.choice(([2**40], [-1, 3], [4, 3, 1], [], [0], [4.0, 3], ["4", "3"], [[4], [3]],
                                     [2**64], None, 12, [4] * 64, [1, 2**32 + 4]))
    elif how == "offsets":
        lo, hi = entry["data_offsets"]
        entry["data_offsets"] = rng.choice(([hi, lo], [lo, hi + 4], [lo, 2**40], [-4, hi], [lo], [lo, hi, 0],
                                            [0, 0], [lo + 1, hi + 1], [2**64 - 1, 2**64 - 1], None, [lo, hi * 100],
                                            ["0", "4"]))
    elif how == "length":
        spec["length"] = rng.choice((0, 1, 7, 2**63, 2**64 - 1, 2**32, 100_000_000, len(seed.data), 8 * 10**9))
    elif how == "json":
        text = json.dumps(header).encode()
        spec["header_text"] = rng.choice((
            text[: len(text) // 2], b"[" * 100000 + b"]" * 100000, b"{\"a\":" * 5000 + b"1" + b"}" * 5000,
            text.replace(b'"', b"'", 1), text + b"garbage", b"\xff\xfe" + text, b"null", b"[]", b"1",
            text.replace(name.encode(), name.encode() + b"\xff"), text.replace(b"{", b'{"' + name.encode()
                                                                          + b'":{"dtype":"F32"},', 1),
            text.replace(b"F32", b"F32\\ud800", 1), b'{"a":' + b"1" * 5000 + b"}"))
    elif how == "names":
        header[rng.choice((name + "\udcff", "", "x" * 10000, name.replace("l0", "l-1"), "weight_ih_l0"))] = \
            header.pop(name)
        try:
            json.dumps(header).encode()
        except UnicodeEncodeError:
            pass
    elif how == "metadata":
        header["__metadata__"] = rng.choice(({"a": 1}, [], "x", None, {"format": {"nested": True}}, {"": ""}))
    else:
        data = bytearray(spec["data"])
        lo = entry["data_offsets"][0]
        value = rng.choice((float("nan"), float("inf"), -float("inf"), 3.4028235e38))
        if lo + 4 <= len(data):
            struct.pack_into("<f", data, lo, value)
        spec["data"] = bytes(data)
    try:
        return f"safetensors:{how}", safetensors_bytes(spec)
    except (TypeError, ValueError, UnicodeEncodeError):
        text = json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogateescape")
        spec["header_text"] = text
        return f"safetensors:{how}", safetensors_bytes(spec)


def _safetensors_arrays(spec: dict) -> dict:
    arrays = {}
    for name, entry in spec["header"].items():
        if name == "__metadata__":
            continue
        lo, hi = entry["data_offsets"]
        arrays[name] = np.frombuffer(spec["data"][lo:hi], np.float32).reshape(entry["shape"])
    return arrays


def mutate_onnx(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = copy.deepcopy({k: v for k, v in seed.spec.items() if k != "post"})
    spec["post"] = []
    how = rng.choice(("array", "array", "attr", "attr", "attr-type", "initializer", "initializer", "graph",
                      "state", "deep", "external"))
    label = how
    if how == "array":
        role = rng.choice(("W", "R", "B"))
        label, spec[role] = mutate_array(rng, spec[role])
        label = f"{label}@{role}"
        if spec[role].dtype.kind in "OUMV":
            spec[role] = spec[role].astype(np.float64) if spec[role].dtype.kind not in "OUMV" else np.zeros(3, np.int64)
    elif how == "attr":
        attrs = spec["attrs"]
        key = rng.choice(("hidden_size", "activations", "direction", "layout", "clip", "activation_alpha", "extra"))
        value = {
            "hidden_size": rng.choice((0, -1, 5, 2**40, 1)),
            "activations": rng.choice((["Sigmoid"], ["Tanh", "Relu"], [], ["tanh"], ["Tanh"] * 5, ["Relu"])),
            "direction": rng.choice(("reverse", "BIDIRECTIONAL", "", "forward\x00", "bidirectional")),
            "layout": rng.choice((0, 1, 2, -1, 2**62)),
            "clip": rng.choice((0.0, float("nan"), 1.0)),
            "activation_alpha": [0.5],
            "extra": "x",
        }[key]
        attrs[key] = value
        label = f"attr:{key}"
    elif how == "attr-type":  # the right attribute names with the wrong types or undecodable bytes
        key = rng.choice(("direction", "activations", "hidden_size", "layout"))
        value = rng.choice((b"\xff\xfe", [b"\xffTanh"], 1.5, [1, 2], "Tanh", [3.0], b"forward", b"\xc3"))
        spec["post"].append(_onnx_set_attribute(key, value))
        label = f"attr-type:{key}={value!r}"
    elif how == "initializer":
        what = rng.choice(("dims", "dims", "data_type", "raw-truncated", "raw-extra", "float_data", "segment",
                           "string", "name"))
        role = rng.choice(("W", "R", "B"))
        spec["post"].append(_onnx_edit_initializer(role, what, rng.random()))
        label = f"initializer:{what}@{role}"
    elif how == "graph":
        what = rng.choice(("no-rnn", "two-rnn", "no-bias", "w-input", "short-inputs", "long-inputs", "lens",
                           "identity-chain", "cycle", "op-type"))
        if what == "no-bias":
            spec["B"] = None
        else:
            spec["post"].append(_onnx_edit_graph(what))
        label = f"graph:{what}"
    elif how == "state":
        spec["zero_state"] = rng.choice(("ConstantOfShape", "initializer"))
        if rng.random() < 0.5:
            spec["post"].append(_onnx_nonzero_state(rng.choice(("value", "fill", "cycle", "deep"))))
        label = "state"
    elif how == "deep":  # subgraph attributes nested beyond protobuf's recursion limit
        depth = rng.choice((10, 90, 101, 200))
        spec["post"].append(_onnx_deep(depth))
        label = f"deep:{depth}"
    else:
        spec["post"].append(_onnx_external(rng.choice(("missing", "absolute", "parent", "huge-offset", "self"))))
        label = "external"
    try:
        return f"onnx:{label}", onnx_bytes(spec)
    except Exception:  # noqa: BLE001 - the onnx helper refused this edit
        return bitflip(rng, seed.data)


def _find_tensor(model, name):
    for t in model.graph.initializer:
        if t.name == name:
            return t
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            return node.attribute[0].t
    return None


def _onnx_set_attribute(key, value):
    def edit(model, onnx):
        node = next(n for n in model.graph.node if n.op_type == "RNN")
        for a in list(node.attribute):
            if a.name == key:
                node.attribute.remove(a)
        attr = onnx.AttributeProto()
        attr.name = key
        if isinstance(value, bytes):
            attr.type = onnx.AttributeProto.STRING
            attr.s = value
        elif isinstance(value, str):
            attr.type = onnx.AttributeProto.STRING
            attr.s = value.encode()
        elif isinstance(value, float):
            attr.type = onnx.AttributeProto.FLOAT
            attr.f = value
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            attr.type = onnx.AttributeProto.STRINGS
            attr.strings.extend(value)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            attr.type = onnx.AttributeProto.FLOATS
            attr.floats.extend(value)
        elif isinstance(value, list):
            attr.type = onnx.AttributeProto.INTS
            attr.ints.extend(value)
        else:
            attr.type = onnx.AttributeProto.INT
            attr.i = value
        node.attribute.append(attr)
    return edit


def _onnx_edit_initializer(role, what, r):
    def edit(model, onnx):
        t = _find_tensor(model, role)
        if t is None:
            return
        if what == "dims":
            dims = list(t.dims)
            choice = int(r * 6)
            new = [[2**31, *dims[1:]], [*dims, 1], dims[::-1], [0] * len(dims), [-1, *dims[1:]], [2**40]][choice]
            del t.dims[:]
            t.dims.extend(new)
        elif what == "data_type":
            t.data_type = [onnx.TensorProto.DOUBLE, onnx.TensorProto.INT64, onnx.TensorProto.FLOAT16,
                           onnx.TensorProto.STRING, onnx.TensorProto.BOOL, onnx.TensorProto.COMPLEX64,
                           onnx.TensorProto.BFLOAT16, 0, 99][int(r * 9)]
        elif what == "raw-truncated":
            t.raw_data = t.raw_data[: len(t.raw_data) // 2]
        elif what == "raw-extra":
            t.raw_data = t.raw_data + b"\0" * 12
        elif what == "float_data":
            values = np.frombuffer(t.raw_data, np.float32).tolist()
            t.ClearField("raw_data")
            t.float_data.extend(values[: int(len(values) * r)])
        elif what == "segment":
            t.segment.begin = 0
            t.segment.end = 2
        elif what == "string":
            t.data_type = onnx.TensorProto.STRING
            t.ClearField("raw_data")
            t.string_data.extend([b"\xff"] * int(np.prod(t.dims)))
        else:
            t.name = t.name + "_renamed"
    return edit


def _onnx_edit_graph(what):
    def edit(model, onnx):
        from onnx import helper

        graph = model.graph
        node = next(n for n in graph.node if n.op_type == "RNN")
        if what == "no-rnn":
            node.op_type = "LSTM"
        elif what == "two-rnn":
            graph.node.append(copy.deepcopy(node))
            graph.node[-1].output[0] = "Y2"
        elif what == "w-input":
            graph.input.append(helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, [1, 4, 3]))
            for t in list(graph.initializer):
                if t.name == "W":
                    graph.initializer.remove(t)
        elif what == "short-inputs":
            del node.input[2:]
        elif what == "long-inputs":
            node.input.extend(["", "", "extra"])
        elif what == "lens":
            while len(node.input) < 5:
                node.input.append("")
            node.input[4] = "lens"
        elif what == "identity-chain":
            for k in range(50):
                graph.node.append(helper.make_node("Identity", [f"c{k}"], [f"c{k + 1}"]))
        elif what == "cycle":
            graph.node.append(helper.make_node("Identity", ["loop"], ["loop"]))
            while len(node.input) < 6:
                node.input.append("")
            node.input[5] = "loop"
        else:
            node.op_type = "rnn"
            node.domain = "com.example"
    return edit


def _onnx_nonzero_state(what):
    def edit(model, onnx):
        from onnx import helper, numpy_helper

        graph = model.graph
        node = next(n for n in graph.node if n.op_type == "RNN")
        if what == "value":
            t = _find_tensor(model, "H0")
            if t is not None:
                t.CopyFrom(numpy_helper.from_array(np.ones((1, 1, 4), np.float32), "H0"))
        elif what == "fill":
            for n in graph.node:
                if n.op_type == "ConstantOfShape":
                    del n.attribute[:]
                    n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(
                        np.array([np.nan], np.float32))))
        elif what == "cycle":
            graph.node.append(helper.make_node("Expand", ["H1", "s"], ["H1"]))
            node.input[5] = "H1"
        else:
            prev = "H0"
            for k in range(40):
                graph.node.append(helper.make_node("Reshape", [prev, "s"], [f"R{k}"]))
                prev = f"R{k}"
            node.input[5] = prev
    return edit


def _onnx_deep(depth):
    def edit(model, onnx):
        from onnx import helper

        leaf = helper.make_graph([], "leaf", [], [])
        inner = leaf
        for k in range(depth):  # nested through then_branch only: one copy per level
            n = helper.make_node("If", ["c"], ["o"], then_branch=inner, else_branch=leaf)
            inner = helper.make_graph([n], f"g{k}", [], [])
        model.graph.node.append(helper.make_node("If", ["c"], ["o2"], then_branch=inner, else_branch=leaf))
    return edit


def _onnx_external(what):
    def edit(model, onnx):
        t = _find_tensor(model, "W")
        if t is None:
            return
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        location = {"missing": "nope.bin", "absolute": "/etc/hostname", "parent": "../../../../etc/hostname",
                    "huge-offset": "input.onnx", "self": "input.onnx"}[what]
        entries = [("location", location)]
        if what == "huge-offset":
            entries += [("offset", str(2**40)), ("length", str(2**40))]
        for key, value in entries:
            e = t.external_data.add()
            e.key, e.value = key, value
    return edit


def mutate_keras(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    spec = copy.deepcopy({k: v for k, v in seed.spec.items() if k != "h5_post"})
    spec["h5_post"] = []
    how = rng.choice(("array", "array", "config", "config", "attrs", "dataset", "structure", "zip"))
    label = how
    if how == "array":
        k = rng.randrange(len(spec["layers"]))
        cls, name, arrays = spec["layers"][k]
        i = rng.randrange(len(arrays))
        label, arrays[i] = mutate_array(rng, arrays[i])
        if arrays[i].dtype.kind == "O":
            arrays[i] = arrays[i].astype(str).astype("S")
        spec["layers"][k] = (cls, name, arrays)
        label = f"{label}@{name}[{i}]"
    elif how == "config":
        if spec["layout"] in ("keras3", "legacy"):
            label, text = mutate_config_text(rng, spec["config"], ".json", structured_only=rng.random() < 0.8,
                                             keras=True)
            spec["config_text"] = text
        else:
            spec["h5_post"].append(_h5_attr("/", "model_config", rng.choice((b"{}", b"\xff", b"[", b"null"))))
            label = "config:weights-only"
    elif how == "attrs":
        attr = rng.choice(("layer_names", "weight_names", "name", "model_config"))
        value = rng.choice((5, 2.5, np.array([1, 2]), [b"\xff\xfe"], [b"missing"], b"rnn", "rnn", [b""],
                            np.array([[b"rnn"]]), [b"rnn/../rnn"], np.array([], dtype="S1")))
        spec["h5_post"].append(_h5_attr_any(attr, value))
        label = f"attrs:{attr}={type(value).__name__}"
    elif how == "dataset":
        what = rng.choice(("string", "group", "compound", "huge", "scalar", "link-missing", "external-link",
                           "vlen", "empty"))
        spec["h5_post"].append(_h5_dataset(what))
        label = f"dataset:{what}"
    elif how == "structure":
        what = rng.choice(("drop-layer", "extra-rnn", "unicode-name", "three-vars", "four-vars"))
        if what == "drop-layer":
            spec["layers"] = spec["layers"][:-1] or spec["layers"]
            if len(seed.spec["layers"]) == 1:
                spec["h5_post"].append(_h5_dataset("drop"))
        elif what == "extra-rnn":
            spec["layers"].append(("SimpleRNN", "rnn_extra", [np.zeros((3, 2), np.float32),
                                                              np.zeros((2, 2), np.float32)]))
        elif what == "unicode-name":
            cls, name, arrays = spec["layers"][0]
            spec["layers"][0] = (cls, name + "\u00e9/\u2603", arrays)
        elif what == "three-vars":
            cls, name, arrays = spec["layers"][0]
            spec["layers"][0] = (cls, name, arrays[:2])
        else:
            cls, name, arrays = spec["layers"][0]
            spec["layers"][0] = (cls, name, [*arrays, np.zeros(4, np.float32)])
        label = f"structure:{what}"
    else:
        if spec["layout"] == "keras3":
            return f"keras:zip:{rng.choice(('no-weights', 'no-config'))}", _keras_zip_variant(rng, seed.data)
        return bitflip(rng, seed.data)
    try:
        return f"keras:{label}", keras_bytes(spec)
    except Exception:  # noqa: BLE001 - h5py refused the edit
        return bitflip(rng, seed.data)


def _keras_zip_variant(rng, data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    drop = rng.choice(("model.weights.h5", "config.json"))
    members.pop(drop, None)
    if rng.random() < 0.5:
        members["model.weights.h5" if drop == "model.weights.h5" else "config.json"] = rng.choice(
            (b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 100, b"{", b"\xff"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, member in members.items():
            archive.writestr(name, member)
    return buf.getvalue()


def _h5_first_group_with(h5, attr):
    found = []

    def visit(name, obj):
        if attr in obj.attrs:
            found.append(obj)

    h5.visititems(visit)
    return found[0] if found else h5


def _h5_attr(path, key, value):
    def edit(h5):
        h5[path].attrs[key] = value
    return edit


def _h5_attr_any(attr, value):
    def edit(h5):
        obj = h5 if attr == "model_config" else _h5_first_group_with(h5, attr)
        obj.attrs[attr] = value
    return edit


def _h5_datasets(h5):
    import h5py

    found = []
    h5.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _h5_dataset(what):
    def edit(h5):
        import h5py

        names = _h5_datasets(h5)
        if not names:
            return
        name = names[0] if what != "drop" else names[-1]
        shape = h5[name].shape
        del h5[name]
        if what == "string":
            h5[name] = "not a tensor"
        elif what == "group":
            h5.create_group(name)
        elif what == "compound":
            h5.create_dataset(name, data=np.zeros(shape, dtype=[("a", "<f4"), ("b", "<i4")]))
        elif what == "huge":  # chunked and never written: a tiny file declaring ~16 GiB
            h5.create_dataset(name, shape=(65536, 65536), dtype="<f4", chunks=(64, 64))
        elif what == "scalar":
            h5[name] = np.float32(1.0)
        elif what == "link-missing":
            h5[name] = h5py.SoftLink("/does/not/exist")
        elif what == "external-link":
            h5[name] = h5py.ExternalLink("/etc/hostname", "/x")
        elif what == "vlen":
            h5.create_dataset(name, data=np.array([np.zeros(3, np.float32)] * 2, dtype=object),
                              dtype=h5py.vlen_dtype(np.float32))
        elif what == "empty":
            h5.create_dataset(name, data=h5py.Empty("f4"))
    return edit


# Configs -------------------------------------------------------------------------------------------------------


class Raw:
    """A literal written into the config text as is (a huge number, NaN, a deep nest)."""

    def __init__(self, json_text: str, toml_text: str | None = None):
        self.json_text, self.toml_text = json_text, toml_text if toml_text is not None else json_text

    def __repr__(self):
        return f"Raw({self.json_text[:20]!r})"


def render_json(value) -> str:
    if isinstance(value, Raw):
        return value.json_text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {render_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_json(v) for v in value) + "]"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return json.dumps(value)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value) -> str:
    if isinstance(value, Raw):
        return value.toml_text
    if value is None:
        return '"null"'  # TOML has no null; a string the schema will refuse where null was allowed
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"


def render_toml(doc) -> str:
    if not isinstance(doc, dict):
        return f"value = {_toml_value(doc)}\n"
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items()]
    return "\n".join(lines) + "\n"


CONFIG_KEYS = ("num_units", "units", "activation", "name", "reuse", "dtype", "input_size", "time_steps",
               "batch_size", "time_major", "seed", "use_bias", "batch_input_shape", "return_sequences",
               "return_state", "go_backwards", "stateful", "unroll", "cells", "layers", "quantize",
               "asymmetric_inputs", "bidirectional", "merge", "class_name", "config", "dropout")


def _deep(kind: str, depth: int, leaf: str = "1") -> Raw:
    if kind == "list":
        return Raw("[" * depth + leaf + "]" * depth)
    return Raw('{"a": ' * depth + leaf + "}" * depth, "{a = " * depth + leaf + "}" * depth)


def random_value(rng: random.Random, depth: int = 0):
    choices = [None, True, False, 0, -1, 1, 3, 2**31, 2**63, 10**30, -(2**63), 1.0, 1.5, -0.0, 4.0,
               float("nan"), float("inf"), float("-inf"), 1e308, 5e-324, "", "dynamic", "tanh", "relu", "int8",
               "concat", "none", "sigmoid", "x" * 10000, "\ud800", "\x00", "enc/../x", "\u00e9\u2603", [], [1, 2, 3],
               [None, None, None], [4, 3], {}, {"a": 1}, {"class_name": "Activation", "config": "relu"},
               {"config": {"name": "float16"}}, Raw("1" * 5000, "1" * 5000), Raw("1e999"), Raw("-0"),
               Raw("123456789012345678901234567890"), Raw("0.1e-999999")]
    if depth < 2 and rng.random() < 0.1:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if rng.random() < 0.05:
        return _deep(rng.choice(("list", "dict")), rng.choice((50, 500, 990, 2000, 100000)))
    return rng.choice(choices)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _set_path(doc, path, value):
    if not path:
        return value
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def mutate_config_doc(rng: random.Random, doc, keras: bool = False) -> tuple[str, object]:
    doc = copy.deepcopy(doc)
    how = rng.choice(("type", "type", "type", "add-key", "add-key", "del-key", "wrap", "root", "deep", "cells",
                      "huge"))
    if how == "type":
        paths = list(_paths(doc))[1:] or [()]
        path = rng.choice(paths)
        return f"type@{'/'.join(map(str, path))}", _set_path(doc, path, random_value(rng))
    if how == "add-key" and isinstance(doc, dict):
        target = _random_dict(rng, doc)
        key = rng.choice(CONFIG_KEYS + ("unknown", "", "\u00e9", "num_units ", "x" * 1000))
        target[key] = random_value(rng)
        return f"add-key:{key[:20]}", doc
    if how == "del-key" and isinstance(doc, dict):
        target = _random_dict(rng, doc)
        if target:
            key = rng.choice(list(target))
            del target[key]
            return f"del-key:{str(key)[:20]}", doc
    if how == "wrap":
        return "wrap", rng.choice(({"class_name": "SimpleRNN", "config": doc}, {"class_name": "LSTM", "config": doc},
                                   {"class_name": "SimpleRNN", "config": [doc]}, {"config": doc}, [doc]))
    if how == "root":
        return "root", random_value(rng)
    if how == "deep":
        depth = rng.choice((100, 900, 990, 1000, 3000, 100000))
        kind = rng.choice(("list", "dict"))
        if isinstance(doc, dict):
            target = _random_dict(rng, doc)
            target[rng.choice(CONFIG_KEYS)] = _deep(kind, depth)
            return f"deep:{kind}:{depth}", doc
        return f"deep-root:{kind}:{depth}", _deep(kind, depth)
    if how == "cells" and isinstance(doc, dict):
        cells = [{"num_units": random_value(rng) if rng.random() < 0.3 else 3,
                  **({"name": random_value(rng)} if rng.random() < 0.3 else {}),
                  **({"reuse": random_value(rng)} if rng.random() < 0.2 else {}),
                  **({rng.choice(CONFIG_KEYS): random_value(rng)} if rng.random() < 0.3 else {})}
                 for _ in range(rng.choice((0, 1, 2, 3, 300)))]
        if rng.random() < 0.3 and cells:
            cells[-1] = random_value(rng)
        doc["cells"] = cells
        return "cells", doc
    if how == "huge" and isinstance(doc, dict):
        key = rng.choice(("num_units", "units", "input_size", "time_steps", "batch_size", "seed", "layers"))
        # Just past the limits, not at them: a legal 16383-unit cell is a 1-2 GiB build whose memory (about twice
        # the weights) is the benchmark's to measure, beyond this harness's 3 GiB cap.
        doc[key] = rng.choice((2**31 - 1, 2**31, 2**63, 10**20, Raw("1" * 4301), Raw("1" * 100000), 16384,
                               46341, 2**24 + 1))
        return f"huge:{key}", doc
    return "type@root", random_value(rng)


def _random_dict(rng, doc):
    dicts = [doc] + [d for d in _walk_dicts(doc)]
    return rng.choice(dicts[:20])


def _walk_dicts(value):
    if isinstance(value, dict):
        for v in value.values():
            if isinstance(v, dict):
                yield v
            yield from _walk_dicts(v)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict):
                yield v
            yield from _walk_dicts(v)


def mutate_config_text(rng: random.Random, doc, suffix: str, structured_only: bool = False,
                       keras: bool = False) -> tuple[str, bytes]:
    """A mutated config as bytes: a structural edit, then sometimes a textual one."""
    label, mutated = mutate_config_doc(rng, doc, keras)
    try:
        text = (render_json(mutated) if suffix != ".toml" else render_toml(mutated)).encode("utf-8", "surrogatepass")
    except (RecursionError, ValueError):
        text = b"{}"
    if not structured_only and rng.random() < 0.35:
        tlabel, text = _mutate_text(rng, text, suffix)
        label = f"{label}+{tlabel}"
    return label, text


def _mutate_text(rng: random.Random, text: bytes, suffix: str) -> tuple[str, bytes]:
    how = rng.choice(("bitflip", "truncate", "invalid-utf8", "bom", "nul", "duplicate-key", "comment", "crlf",
                      "toml-special"))
    if how == "bitflip":
        return bitflip(rng, text)
    if how == "truncate":
        return truncate(rng, text)
    if how == "invalid-utf8":
        i = rng.randrange(len(text) + 1)
        return how, text[:i] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80")) + text[i:]
    if how == "bom":
        return how, rng.choice((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")) + text
    if how == "nul":
        i = rng.randrange(len(text) + 1)
        return how, text[:i] + b"\0" + text[i:]
    if how == "duplicate-key":
        if suffix == ".toml":
            return how, text + b"num_units = 5\n"
        return how, text.replace(b"{", b'{"num_units": 9, ', 1)
    if how == "comment":
        return how, (b"# comment\n" if suffix == ".toml" else b"// comment\n") + text
    if how == "crlf":
        return how, text.replace(b"\n", b"\r\n").replace(b", ", b",\r")
    return "toml-special", toml_special(rng)


DEPTHS = {"quick": (10, 500, 1000, 3000, 5000), "long": (10, 500, 1000, 5000, 30000, 100000)}
_depths = DEPTHS["quick"]  # set by make_case: the quick run stays fast, the long run goes deeper


def toml_special(rng: random.Random) -> bytes:
    """TOML-only shapes: deep tables, dotted keys, inline nests, dates, arrays of tables, oversize integers."""
    depth = rng.choice(_depths)
    how = rng.choice(("table", "dotted", "inline-array", "inline-table", "date", "array-of-tables", "bigint",
                      "redefine"))
    if how == "table":
        return f"num_units = 4\n[{'.'.join(['a'] * depth)}]\nx = 1\n".encode()
    if how == "dotted":
        return f"num_units = 4\n{'.'.join(['a'] * depth)} = 1\n".encode()
    if how == "inline-array":
        return f"num_units = {'[' * depth}1{']' * depth}\n".encode()
    if how == "inline-table":
        return f"num_units = 4\ncells = [{'{a = ' * depth}1{'}' * depth}]\n".encode()
    if how == "date":
        return rng.choice((b"num_units = 1979-05-27\n", b"num_units = 4\nname = 07:32:00\n",
                           b"num_units = 4\nseed = 1979-05-27T07:32:00Z\n", b"num_units = 4\ncells = [1979-05-27]\n"))
    if how == "array-of-tables":
        return b"[[cells]]\nnum_units = 3\n" * rng.choice((1, 2, 1000)) + b"[[cells]]\nnum_units = 1979-05-27\n"
    if how == "bigint":
        return f"num_units = {'9' * rng.choice((19, 4301, 100000))}\n".encode()
    return b"num_units = 4\n[cells]\nx = 1\n[[cells]]\ny = 2\n"


def mutate_config(rng: random.Random, seed: Seed) -> tuple[str, bytes]:
    if seed.suffix == ".toml" and rng.random() < 0.12:
        return "toml-special", toml_special(rng)
    label, text = mutate_config_text(rng, seed.spec, seed.suffix)
    return f"config:{label}", text


# Case generation -----------------------------------------------------------------------------------------------


VERIFY_EXTRA = ([], [], [], ["--json"], ["--weights", NPZ_PLACEHOLDER], ["--seed", "3", "--atol", "1e-3"])
EXPORT_EXTRA = ([], ["--format", "keras"], ["--json"])
BUILD_EXTRA = ([], ["--activation", "relu"], ["--time-steps", "3"], ["--time-steps", "dynamic"], ["--last-step"],
               ["--quantize", "int8"], ["--json"], ["--units", "4"], ["--batch-size", "2", "--time-major"],
               ["--name", "enc/x"])
WEIGHTS_EXTRA = (["--format", "npz"], ["--format", "keras"], ["--format", "safetensors"], ["--format", "onnx"],
                 ["--layer", "rnn"], ["--layer-index", "0"], ["--layer-index", "1"], ["--scope", "rnn"],
                 ["--bidirectional", "--units", "4"], ["--layers", "2", "--units", "4"], ["--activation", "tanh"])
CONFIG_EXTRA = (["--weights", NPZ_PLACEHOLDER], ["--units", "4"], ["--layers", "2"], ["--bidirectional"],
                ["--time-steps", "2"])


def make_case(seeds: dict[str, list[Seed]], run_seed: int, index: int, targets=TARGETS, long: bool = False) -> Case:
    """Case `index` of run `run_seed`: the same pair always gives the same case."""
    global _depths
    _depths = DEPTHS["long" if long else "quick"]
    rng = random.Random(f"tflrnn-fuzz:{run_seed}:{index}")
    shares = [TARGET_SHARE[t] for t in targets]
    target = rng.choices(list(targets), shares)[0]
    if target in ("inspect", "verify", "export"):
        pool = seeds["model"]
    elif target == "build-weights":
        pool = seeds["weights"]
    else:
        pool = seeds["config"]
    seed = rng.choice(pool)
    label, data = mutate_once(rng, seed, pool)
    stack = 0.35 if long else 0.2
    while rng.random() < stack and len(label) < 200:  # a second edit on top (byte level)
        extra, data = rng.choice(BYTE_MUTATORS)(rng, data)
        label = f"{label}+{extra}"
        stack /= 2
    args = list(seed.args)
    if target == "verify":
        args += rng.choice(VERIFY_EXTRA)
    elif target == "export":
        args += rng.choice(EXPORT_EXTRA)
    elif target == "build-weights" and rng.random() < 0.3:
        args += rng.choice(WEIGHTS_EXTRA + BUILD_EXTRA)
    elif target == "build-config" and rng.random() < 0.25:
        args += rng.choice(CONFIG_EXTRA + BUILD_EXTRA)
    suffix = seed.suffix
    if target == "build-weights" and rng.random() < 0.04:  # content and suffix disagree
        suffix = rng.choice((".npz", ".h5", ".keras", ".onnx", ".safetensors", ".weights.h5", ".bin", ""))
        label += f"+suffix{suffix or '-none'}"
    return Case(target, data, suffix, args, seed.name, label, index)


def mutate_once(rng: random.Random, seed: Seed, pool: list[Seed]) -> tuple[str, bytes]:
    if rng.random() < 0.02:
        return "none", seed.data
    if rng.random() < 0.04:
        return splice(rng, seed.data, rng.choice(pool).data)
    if seed.kind == "model":
        r = rng.random()
        if r < 0.40:
            return fb_mutate(rng, seed)
        if r < 0.70:
            return semantic_mutate(rng, seed)
        return rng.choice(BYTE_MUTATORS)(rng, seed.data)
    structured = {"npz": mutate_npz, "safetensors": mutate_safetensors, "onnx": mutate_onnx, "keras": mutate_keras,
                  "config": mutate_config}[seed.kind]
    if rng.random() < 0.7:
        return structured(rng, seed)
    return rng.choice(BYTE_MUTATORS)(rng, seed.data)


# Corpus --------------------------------------------------------------------------------------------------------


def save_case(case: Case, directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / case.file_name()
    path.write_bytes(case.data)
    if case.args:
        args = [a for a in case.args]
        Path(f"{path}.args").write_text(json.dumps(args) + "\n")
    return path


def load_corpus(directory: Path) -> list[Case]:
    """Every case saved under `directory`: <target>-<hash><suffix>, with the arguments in <file>.args if any."""
    cases = []
    for path in sorted(Path(directory).iterdir()):
        if path.name.startswith(".") or path.name.endswith(".args") or path.suffix == ".md":
            continue
        target = next((t for t in sorted(TARGETS, key=len, reverse=True) if path.name.startswith(t + "-")), None)
        if target is None:
            continue
        suffix = path.name[len(target) + 1 + HASH_CHARS:]
        args_file = Path(f"{path}.args")
        args = json.loads(args_file.read_text()) if args_file.exists() else []
        cases.append(Case(target, path.read_bytes(), suffix, args, seed="corpus", mutation=f"corpus:{path.name}"))
    return cases


def minimize(case: Case, result: Result, workdir: Path, seeds: dict | None, budget: int = 48) -> Case:
    """Cheaply smaller: for a config, drop lines and characters while the failure stays the same; for a binary
    input of a seed's length, put the seed's bytes back wherever that keeps the failure."""
    if result.code is None or any(p.startswith("crash") for p in result.problems):
        return case
    want = result.signature(case)
    runs = 0

    def still_fails(candidate: Case) -> bool:
        nonlocal runs
        runs += 1
        r = run_case(candidate, workdir)
        return not r.passed and r.signature(candidate) == want

    original = None
    if seeds is not None:
        for pool in seeds.values():
            for seed in pool:
                if seed.name == case.seed and len(seed.data) == len(case.data):
                    original = seed.data
    data = case.data
    if original is not None:  # ddmin over the changed positions: revert groups of them
        diff = [i for i in range(len(data)) if data[i] != original[i]]
        chunk_size = max(1, len(diff) // 2)
        while chunk_size >= 1 and runs < budget and len(diff) > 1:
            changed = False
            for k in range(0, len(diff), chunk_size):
                if runs >= budget:
                    break
                group = set(diff[k:k + chunk_size])
                trial = bytes(original[i] if i in group else data[i] for i in range(len(data)))
                candidate = dataclasses.replace(case, data=trial)
                if still_fails(candidate):
                    data, diff, changed = trial, [i for i in diff if i not in group], True
                    break
            if not changed:
                if chunk_size == 1:
                    break
                chunk_size //= 2
        return dataclasses.replace(case, data=data)
    if case.target == "build-config" and len(data) < 20000:
        for unit in (b"\n", None):
            pieces = data.split(b"\n") if unit else [bytes([c]) for c in data]
            if not unit and len(pieces) > 400:
                break
            i = 0
            while i < len(pieces) and runs < budget:
                trial = (unit or b"").join(pieces[:i] + pieces[i + 1:])
                if trial and still_fails(dataclasses.replace(case, data=trial)):
                    pieces.pop(i)
                else:
                    i += 1
            data = (unit or b"").join(pieces)
        return dataclasses.replace(case, data=data)
    return case


# The run -------------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    cases: int = 0
    seconds: float = 0.0
    by_target: Counter = field(default_factory=Counter)
    by_mutation: Counter = field(default_factory=Counter)  # (target, family)
    codes: Counter = field(default_factory=Counter)  # (target, code)
    modes: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)  # (case, result)
    notes: list = field(default_factory=list)  # (case, result)
    signatures: dict = field(default_factory=dict)  # signature -> (case, result, count)
    slowest: list = field(default_factory=list)

    def add(self, case: Case, result: Result) -> None:
        self.cases += 1
        self.by_target[case.target] += 1
        self.by_mutation[(case.target, case.family)] += 1
        self.codes[(case.target, "timeout" if result.code is None else str(result.code))] += 1
        self.modes[result.mode] += 1
        self.slowest = sorted(self.slowest + [(result.seconds, case.target, f"#{case.index} {case.mutation}")],
                              reverse=True)[:5]
        if result.notes:
            self.notes.append((case, result))
        if not result.passed:
            self.failures.append((case, result))
            sig = result.signature(case)
            first = self.signatures.get(sig)
            self.signatures[sig] = (first[0], first[1], first[2] + 1) if first else (case, result, 1)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_dict(self) -> dict:
        return {
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "by_target": dict(self.by_target),
            "exit_codes": {f"{t} {c}": n for (t, c), n in sorted(self.codes.items())},
            "by_mutation": {f"{t} {m}": n for (t, m), n in sorted(self.by_mutation.items())},
            "modes": dict(self.modes),
            "failures": self.failed,
            "distinct_failures": [
                {"target": c.target, "problems": r.problems, "where": _innermost(r.trace or r.err), "count": n,
                 "mutation": c.mutation, "seed": c.seed, "argv": r.argv, "detail": r.detail,
                 "traceback_tail": _tail(r.trace, 12)}
                for (c, r, n) in self.signatures.values()
            ],
            "notes": [{"target": c.target, "mutation": c.mutation, "notes": r.notes} for c, r in self.notes[:50]],
        }


def fuzz(cases, workdir: Path, modes: dict | None = None, timeout: float = DEFAULT_TIMEOUT,
         save_failures: Path | None = None, seeds: dict | None = None, time_budget: float | None = None,
         verbose: bool = False, progress: bool = False, minimize_failures: bool = True,
         subprocess_checks: int = 0) -> Summary:
    """Run cases; keep counts and failures. `subprocess_checks`: also run that many cases (spread over the
    targets) as real `python -m tflrnn` processes."""
    modes = {**DEFAULT_MODES, **(modes or {})}
    summary = Summary()
    start = time.monotonic()
    chosen_for_subprocess: dict[str, int] = Counter()
    saved_signatures = set()
    last_report = start
    for case in cases:
        if time_budget is not None and time.monotonic() - start > time_budget:
            break
        result = run_case(case, workdir, modes[case.target], timeout)
        summary.add(case, result)
        if verbose or not result.passed:
            status = "ok" if result.passed else "FAIL " + "; ".join(result.problems)
            print(f"[{case.index}] {case.target} {case.seed} {case.mutation} -> {result.code} "
                  f"({result.seconds:.2f}s) {status}", file=sys.stderr, flush=True)
        if not result.passed and save_failures is not None:
            sig = result.signature(case)
            if sig not in saved_signatures:
                saved_signatures.add(sig)
                small = minimize(case, result, workdir, seeds) if minimize_failures else case
                path = save_case(small, save_failures)
                print(f"    saved {path}", file=sys.stderr, flush=True)
        if subprocess_checks and chosen_for_subprocess[case.target] < max(1, subprocess_checks // len(TARGETS)) \
                and sum(chosen_for_subprocess.values()) < subprocess_checks:
            chosen_for_subprocess[case.target] += 1
            end_to_end = run_case(case, workdir, "subprocess", timeout)
            summary.add(case, end_to_end)
            if not end_to_end.passed:
                print(f"[{case.index}] {case.target} {case.mutation} (subprocess) -> {end_to_end.code} FAIL "
                      + "; ".join(end_to_end.problems), file=sys.stderr, flush=True)
        if progress and time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            print(f"... {summary.cases} cases, {summary.failed} failures, {last_report - start:.0f} s",
                  file=sys.stderr, flush=True)
    summary.seconds = time.monotonic() - start
    return summary


def print_summary(summary: Summary, file=sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"{summary.cases} cases in {summary.seconds:.1f} s ({', '.join(f'{m} {n}' for m, n in summary.modes.items())})")
    p("\ncases and exit codes per target:")
    for target in TARGETS:
        if summary.by_target[target]:
            codes = ", ".join(f"{c}: {n}" for (t, c), n in sorted(summary.codes.items()) if t == target)
            p(f"  {target:<14} {summary.by_target[target]:>6}   exit {codes}")
    p("\ncases per target and mutation family:")
    for target in TARGETS:
        fams = sorted(((m, n) for (t, m), n in summary.by_mutation.items() if t == target), key=lambda x: -x[1])
        if fams:
            p(f"  {target:<14} " + ", ".join(f"{m} {n}" for m, n in fams))
    p("\nslowest: " + "; ".join(f"{s:.2f}s {t} {m[:60]}" for s, t, m in summary.slowest))
    if summary.notes:
        kinds = Counter(n.split(":")[0] for _, r in summary.notes for n in r.notes)
        p("\nnotes (passing): " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    p(f"\nfailures: {summary.failed} ({len(summary.signatures)} distinct)")
    for (case, result, count) in summary.signatures.values():
        p(f"\n- {case.target}: {'; '.join(result.problems)}  [x{count}]")
        p(f"  mutation: {case.mutation} (seed {case.seed}, index {case.index})")
        p(f"  argv: tflrnn {' '.join(result.argv)}")
        if result.detail:
            p("  " + result.detail.replace("\n", "\n  "))


def prepare(workdir: Path) -> dict[str, list[Seed]]:
    """Seeds, with the modules the cases use imported once here (forked children then start warm)."""
    import tflrnn.cli  # noqa: F401
    import tflrnn.describe  # noqa: F401
    import tflrnn.verification  # noqa: F401
    import tflrnn.config  # noqa: F401
    import tflrnn.sources  # noqa: F401

    for module in ("jsonschema", "h5py", "onnx", "safetensors.numpy", "ai_edge_litert.interpreter",
                   "tflrnn.sources.npz", "tflrnn.sources.keras_files", "tflrnn.sources.onnx_graph",
                   "tflrnn.sources.pytorch", "tflrnn.runtime"):
        with contextlib.suppress(ImportError):
            __import__(module)
    return generate_seeds(Path(workdir) / "seeds")


def quick_run(n: int = 300, seed: int = 0, workdir: Path | None = None, subprocess_checks: int = 5,
              save_failures: Path | None = None) -> Summary:
    """The seeded run the test suite does."""
    with tempfile.TemporaryDirectory(prefix="tflrnn-fuzz-") as tmp:
        work = Path(workdir or tmp)
        seeds = prepare(work)
        cases = (make_case(seeds, seed, i) for i in range(n))
        return fuzz(cases, work, seeds=seeds, subprocess_checks=subprocess_checks, save_failures=save_failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, help="number of cases (default 300; --long: 100000, time-bounded)")
    parser.add_argument("--seed", type=int, default=0, help="run seed: the same seed gives the same cases")
    parser.add_argument("--long", action="store_true", help="many cases with more stacked edits, until "
                        "--time-budget (default 540 s)")
    parser.add_argument("--time-budget", type=float, help="stop starting cases after this many seconds")
    parser.add_argument("--targets", help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--mode", action="append", default=[],
                        help="MODE or TARGET=MODE (inprocess, fork, subprocess); repeatable")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per case")
    parser.add_argument("--save-failures", type=Path, help="save one input per distinct failure here (a corpus)")
    parser.add_argument("--no-minimize", action="store_true", help="save failing inputs as found")
    parser.add_argument("--subprocess-checks", type=int, default=5,
                        help="cases also run as real subprocesses, spread over the targets (default 5)")
    parser.add_argument("--replay", type=Path, help="run the corpus in this directory instead of generating cases")
    parser.add_argument("--show", type=int, help="run only case number N of the seeded run and print everything")
    parser.add_argument("--keep", type=Path, help="with --show: also write the case's input file here")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    options = parser.parse_args(argv)

    modes = {}
    for item in options.mode:
        if "=" in item:
            target, mode = item.split("=", 1)
            modes[target] = mode
        else:
            modes.update({t: item for t in TARGETS})
    if any(m not in MODES for m in modes.values()) or any(t not in TARGETS for t in modes):
        parser.error(f"--mode takes MODE or TARGET=MODE with MODE in {', '.join(MODES)}")
    targets = tuple(options.targets.split(",")) if options.targets else TARGETS
    if any(t not in TARGETS for t in targets):
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")

    with tempfile.TemporaryDirectory(prefix="tflrnn-fuzz-") as tmp:
        work = options.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        seeds = prepare(work)
        if options.show is not None:
            case = make_case(seeds, options.seed, options.show, targets, options.long)
            result = run_case(case, work, modes.get(case.target), options.timeout)
            print(f"case {case.index}: {case.target} seed {case.seed}, mutation {case.mutation}, args {case.args}")
            print(f"argv: tflrnn {' '.join(result.argv)}  ({result.mode}, {result.seconds:.2f} s)")
            print(f"exit: {result.code}\n--- stdout\n{result.out[-3000:]}\n--- stderr\n{result.err[-3000:]}")
            print(f"problems: {result.problems or 'none'}; notes: {result.notes or 'none'}")
            if result.trace:
                print(f"--- traceback (from a --debug re-run where the exit was 3)\n{_tail(result.trace, 40)}")
            if options.keep:
                print(f"kept {save_case(case, options.keep)}")
            return 0 if result.passed else 1
        if options.replay is not None:
            cases = load_corpus(options.replay)
            print(f"replaying {len(cases)} cases from {options.replay}", file=sys.stderr)
        else:
            count = options.cases if options.cases is not None else (100000 if options.long else 300)
            cases = (make_case(seeds, options.seed, i, targets, options.long) for i in range(count))
        budget = options.time_budget if options.time_budget is not None else (540.0 if options.long else None)
        summary = fuzz(cases, work, modes, options.timeout, options.save_failures, seeds, budget, options.verbose,
                       progress=options.long, minimize_failures=not options.no_minimize,
                       subprocess_checks=0 if options.replay else options.subprocess_checks)
    print_summary(summary)
    if options.json:
        options.json.write_text(json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
    return 0 if summary.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
