#!/usr/bin/env python3
"""Full int8 LSTM: tflrnn's `--quantize full-int8`, the fused op and the portable lowering, against the converter's, on
the same weights (issue 21).

The same seeded weights every way: the converter gets them in a legacy `tf_keras` Sequential (its fused
UNIDIRECTIONAL_SEQUENCE_LSTM), tflrnn in a Keras 3 `.keras` (`python -m tflrnn build --quantize full-int8`, and with
`--lowering portable`: TFLite's 16x8 ops), all the same calibration sequences; each test sequence runs from the zero state on LiteRT and TFLite Micro, and is compared
with tflrnn.reference's float64 recurrence. Also file sizes, the Micro arena and the Micro invoke time. Writes its
section of BENCHMARKS.md (between its markers; the section says how each is measured).

    .venv/bin/python scripts/bench_lstm_int8.py               # the battery, 3 seeds; writes BENCHMARKS.md
    .venv/bin/python scripts/bench_lstm_int8.py --quick       # 1 seed, fewer timing repeats; never written
    .venv/bin/python scripts/bench_lstm_int8.py --no-write    # print the section only
    .venv/bin/python scripts/bench_lstm_int8.py --networks U16,classifier --seeds 1 [--json rows.json]

Needs tf_keras of the installed TensorFlow's release (`.venv/bin/pip install --no-deps tf-keras==2.21.0`). The
`.keras` files and the converter's models are cached under build/bench_cache/lstm_int8/, keyed by a hash of the
weights, the structure, the calibration data and the TensorFlow and tf_keras versions; tflrnn's are built each run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_gru import on_runtime  # noqa: E402
from bench_int8 import _digest, _tensorflow_version  # noqa: E402
from bench_lstm import keras_weights  # noqa: E402
from int8_converter import _quiet as quiet  # noqa: E402

from tflrnn import reference  # noqa: E402
from tflrnn.arena import minimum_arena  # noqa: E402
from tflrnn.builder import network_of  # noqa: E402
from tflrnn.config import BuildOptions, resolve_build_options  # noqa: E402
from tflrnn.reader import read  # noqa: E402
from tflrnn.runners import micro_arena_bytes  # noqa: E402

BEGIN, END = "<!-- lstm-int8: scripts/bench_lstm_int8.py -->", "<!-- /lstm-int8 -->"
CACHE = ROOT / "build" / "bench_cache" / "lstm_int8"
GENERATION = 1  # bump when the weights' drawing or the Keras models change what a cached file holds
CALIBRATION, TESTS = 64, 256
RUNTIMES = ("LiteRT", "Micro")
# tflrnn's models: name -> build options
FORMS = {"tflrnn": [], "tflrnn portable": ["--lowering", "portable", "--recurrence", "unrolled"],
         "tflrnn portable loop": ["--lowering", "portable", "--recurrence", "loop"]}
SEEDS, QUICK_SEEDS = 3, 1


@dataclass(frozen=True)
class Net:
    """LSTM layers of `layers` units in a chain (the last one's final step only with `last_step`), then `head`
    Dense layers (units, activation); input [1, time_steps, input_size], standard normal."""

    name: str
    input_size: int
    time_steps: int
    layers: tuple
    last_step: bool = False
    head: tuple = ()


BATTERY = (
    Net("U16 I8 T8", 8, 8, (16,)),
    Net("U32 I16 T20", 16, 20, (32,)),
    Net("U64 I32 T50", 32, 50, (64,)),
    Net("U128 I64 T20", 64, 20, (128,)),
    Net("stack 32-32, I16 T20", 16, 20, (32, 32)),
    Net("classifier: 32 last step, Dense 5 softmax, I16 T20", 16, 20, (32,), last_step=True, head=((5, "softmax"),)),
)


def weights_of(net: Net, seed: int) -> list[np.ndarray]:
    """Keras' weight list: per LSTM scripts/bench_lstm.py's (glorot kernel, orthogonal recurrent kernel per gate,
    bias N(0, 0.1) + 1 on the forget gate); per Dense a glorot kernel and an N(0, 0.1) bias."""
    arrays, size = [], net.input_size
    for k, units in enumerate(net.layers):
        arrays += keras_weights(units, size, seed=[seed, k])
        size = units
    for j, (units, _) in enumerate(net.head):
        rng = np.random.default_rng([seed, 100 + j])
        limit = np.sqrt(6 / (size + units))
        arrays += [rng.uniform(-limit, limit, (size, units)).astype(np.float32),
                   (0.1 * rng.standard_normal(units)).astype(np.float32)]
        size = units
    return arrays


def sequential(net: Net, arrays, legacy: bool):
    """The Keras model with these weights: tf_keras's (legacy: the converter's input) or Keras 3's."""
    if legacy:
        import tf_keras as keras
        first = keras.layers.InputLayer(input_shape=(net.time_steps, net.input_size), batch_size=1)
    else:
        import keras
        first = keras.Input((net.time_steps, net.input_size), batch_size=1)
    layers = [first]
    for k, units in enumerate(net.layers):
        layers.append(keras.layers.LSTM(units, return_sequences=not (net.last_step and k == len(net.layers) - 1)))
    layers += [keras.layers.Dense(units, activation=activation) for units, activation in net.head]
    model = keras.Sequential(layers)
    model.set_weights(arrays)
    return model


def _versions() -> str:
    return f"TensorFlow {_tensorflow_version()}, tf_keras {importlib.metadata.version('tf_keras')}"


def _cached(path: Path, make) -> Path:
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_name("partial-" + path.name)
        make(partial)
        partial.replace(path)
    return path


def keras_file(net: Net, arrays) -> Path:
    """The Keras 3 .keras of the weights (tflrnn's source)."""
    key = _digest(GENERATION, asdict(net), *[a.tobytes() for a in arrays])
    with quiet():
        return _cached(CACHE / f"{key}.keras", lambda p: sequential(net, arrays, legacy=False).save(p))


def converter_int8(net: Net, arrays, calibration, x0, y0) -> bytes:
    """The converter's full int8 (float interface) of the tf_keras model; on a fresh conversion the tf_keras
    model's output is first checked against the float64 recurrence (the same weights, the same gate order)."""
    key = _digest(GENERATION, asdict(net), *[a.tobytes() for a in arrays], calibration.tobytes(), _versions())

    def make(path: Path):
        import warnings

        import tensorflow as tf

        with quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = sequential(net, arrays, legacy=True)
            off = float(np.abs(model.predict(x0, verbose=0) - y0).max())
            if off > 1e-4:
                raise RuntimeError(f"tf_keras's output is {off:.1e} from the float64 recurrence")
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([sample] for sample in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            path.write_bytes(bytes(converter.convert()))  # inference_input/output_type: float32, the default

    return _cached(CACHE / f"converter-{key}.tflite", make).read_bytes()


def tflrnn_int8(path: Path, calibration, work: Path, options=()) -> tuple[bytes | None, str]:
    """tflrnn's model from its CLI (a fresh process: tflrnn as it is on disk now), or None and the CLI's own words
    why not."""
    cal, out = work / "cal.npy", work / "tflrnn.tflite"
    np.save(cal, calibration)
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tflrnn", "build", "--weights", str(path), "--quantize", "full-int8",
               "--calibration", str(cal), *options, "-o", str(out)]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)  # cwd: not shadowing PYTHONPATH
    if done.returncode != 0 or not out.exists():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return None, " ".join((lines[-1] if lines else f"exit {done.returncode}").split())[:300]
    return out.read_bytes(), ""


def output_format(data: bytes) -> tuple[float, int]:
    """The (scale, zero point) of a float-interface int8 model's output: the input of the DEQUANTIZE that writes it."""
    graph = read(data).subgraphs[0]
    dequantize = next(op for op in graph.operators if op.outputs[0] == graph.outputs[0])
    q = graph.tensors[dequantize.inputs[0]].quantization
    return float(q.scale[0]), int(q.zero_point[0])


def rounding_floor(expected, fmt: tuple[float, int]) -> dict:
    """The error of a model that computes exactly and writes its output in `fmt`: the float64 outputs rounded to
    that int8 grid (clipped to its range), max and mean against themselves."""
    from tflrnn.quantization import Int8Format, dequantize_values, quantize_values

    exact = np.stack(expected)
    output = Int8Format(*fmt)
    error = np.abs(dequantize_values(quantize_values(exact, output), output) - exact)
    return {"max": float(error.max()), "mean": float(error.mean())}


def op_types(data: bytes) -> str:
    from tflrnn.model import op_name

    return ", ".join(sorted({op_name(o.code) for g in read(data).subgraphs for o in g.operators}))


# -------------------------------------------------------------------------------------------------------- running

class Runner:
    """One model on one runtime in this process: run(x) -> the first output as float64; reset() zeroes the state."""

    def __init__(self, data: bytes, runtime: str):
        if runtime == "LiteRT":
            from ai_edge_litert.interpreter import Interpreter

            self.interpreter = Interpreter(model_content=data, num_threads=1)
            self.interpreter.allocate_tensors()
            x_index = self.interpreter.get_input_details()[0]["index"]
            y_index = self.interpreter.get_output_details()[0]["index"]
            self.set = lambda x: self.interpreter.set_tensor(x_index, x)
            self.get = lambda: self.interpreter.get_tensor(y_index)
            # reset_all_variables() leaves resource variables (the portable lowering's state) as they are: its
            # `reset` signature zeroes them
            if "reset" in self.interpreter.get_signature_list():
                self.reset = lambda: self.interpreter.get_signature_runner("reset")()
            else:
                self.reset = self.interpreter.reset_all_variables
        else:
            from tflite_micro.python.tflite_micro import runtime as tflm

            self.interpreter = tflm.Interpreter.from_bytes(data, arena_size=micro_arena_bytes(read(data)))
            self.set = lambda x: self.interpreter.set_input(x, 0)
            self.get = lambda: self.interpreter.get_output(0)
            self.reset = self.interpreter.reset

    def run(self, x) -> np.ndarray:
        self.set(np.ascontiguousarray(x, np.float32))
        self.interpreter.invoke()
        return np.array(self.get(), np.float64)


def state_check(data: bytes, runtime: str, before: list, b) -> dict:
    """Whether the model carries its state from one invoke to the next (b after the sequences `before` differs from
    b in a fresh interpreter: several, as an int8 classifier's output may not show one sequence's state), and
    whether reset() gives back the fresh interpreter's output exactly."""
    fresh = Runner(data, runtime).run(b)
    runner = Runner(data, runtime)
    for a in before:
        runner.run(a)
    carried = runner.run(b)
    runner.reset()
    for a in before:
        runner.run(a)
    runner.reset()
    return {"carries": not np.array_equal(carried, fresh), "reset_ok": bool(np.array_equal(runner.run(b), fresh))}


def errors(data: bytes, runtime: str, tests, expected) -> dict:
    """Max and mean |output - float64| over the tests, each from the zero state: reset before each, or a fresh
    interpreter per sequence if the reset does not give a fresh interpreter's output."""
    check = state_check(data, runtime, list(tests[2:6]), tests[1])
    runner, found = Runner(data, runtime), []
    for x in tests:
        if check["reset_ok"]:
            runner.reset()
        else:
            runner = Runner(data, runtime)
        found.append(runner.run(x))
    error = np.abs(np.stack([f.reshape(e.shape) for f, e in zip(found, expected)]) - np.stack(expected))
    return {"max": float(error.max()), "mean": float(error.mean()), **check}


def micro_times(models: dict[str, bytes], x, expected, runs: int, rounds: int, work: Path) -> dict:
    """Each model's Micro invoke time, the median over `rounds` fresh processes per model, alternating ABBA (each
    scripts/bench_gru.py's probe: a warm-up, then the median of `runs` invokes)."""
    times = {who: [] for who in models}
    for r in range(rounds):
        for who, data in (reversed if r % 2 else list)(list(models.items())):
            path = work / f"{who}.tflite"
            path.write_bytes(data)
            result = on_runtime(path, "micro", runs, x, expected, work)
            times[who].append(result.get("median_us", float("nan")))
    return {who: float(np.median(t)) for who, t in times.items()}


def case(net: Net, seed: int, quick: bool, work: Path) -> dict:
    arrays = weights_of(net, seed)
    calibration, tests = (np.random.default_rng([seed, k]).standard_normal(
        (n, 1, net.time_steps, net.input_size)).astype(np.float32) for k, n in ((1, CALIBRATION), (2, TESTS)))
    path = keras_file(net, arrays)
    float_network = network_of(**resolve_build_options(BuildOptions(weights=path), given_by="the bench").options)
    expected = [reference.run_network(float_network, x)[0][0] for x in tests]
    models, why = {}, {}
    for form, options in FORMS.items():
        mine, why[form] = tflrnn_int8(path, calibration, work, options)
        if mine is not None:
            models[form] = mine
    models["converter"] = converter_int8(net, arrays, calibration, tests[0], expected[0])
    row = {"network": net.name, "seed": seed, "not_built": {f: w for f, w in why.items() if w},
           "ops": {w: op_types(d) for w, d in models.items()},
           "bytes": {w: len(d) for w, d in models.items()}, "errors": {r: {} for r in RUNTIMES}}
    for runtime in RUNTIMES:
        for who, data in models.items():
            row["errors"][runtime][who] = errors(data, runtime, tests, expected)
    row["floor"] = rounding_floor(expected, output_format(models["converter"]))
    row["arena"] = {w: minimum_arena(d, micro_arena_bytes(read(d))) for w, d in models.items()}
    row["micro_rounds"] = 3 if quick else 5
    row["micro_us"] = micro_times(models, tests[0], expected[0], 100 if quick else 200, row["micro_rounds"], work)
    b, e = row["bytes"], row["errors"]
    row["fails"] = {form: ["not built"] if form not in models else [
        f"{k} on {r}" for r in RUNTIMES for k in ("max", "mean") if e[r][form][k] > e[r]["converter"][k]] + (
        ["file"] if b[form] > b["converter"] else []) for form in FORMS}
    row["meets"] = {form: not fails for form, fails in row["fails"].items()}
    return row


# ------------------------------------------------------------------------------------------------------- the text

def _pair(e: dict | None) -> str:
    return "n/a" if e is None else f"{e['max']:.4f} / {e['mean']:.5f}"


def _ratio(e: dict, form: str) -> str:
    return " / ".join(f"{e[form][k] / e['converter'][k]:.3f}" for k in ("max", "mean")) if form in e else "n/a"


def _n(value, unit: str) -> str:
    return "n/a" if value is None or value != value else f"{value:,.0f} {unit}"


def tflrnn_revision() -> str:
    """The commit tflrnn was built from, and whether tflrnn/ had uncommitted changes then."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"tflrnn {commit}" + (" with uncommitted changes to tflrnn/" if git("status", "--short", "tflrnn") else "")


def summary(rows: list[dict]) -> list[str]:
    """Per tflrnn form and network: the cases met, its error over the converter's (the worst and the geometric mean
    over seeds and runtimes), max and mean, and the largest file ratio."""
    lines = ["| tflrnn | network | cases met | max error ratio: worst, geo. mean | mean error ratio: worst, geo. mean "
             "| file ratio |", "|---|---|---|---|---|---|"]
    for form in FORMS:
        for name in dict.fromkeys(row["network"] for row in rows):
            mine = [row for row in rows if row["network"] == name and form in row["bytes"]]
            if not mine:
                continue
            ratios = [[e[form][k] / e["converter"][k] for row in mine for e in row["errors"].values()]
                      for k in ("max", "mean")]
            lines.append(f"| {form.replace('tflrnn', '').strip() or 'fused'} | {name} | "
                         f"{sum(row['meets'][form] for row in mine)} of {len(mine)} | " + " | ".join(
                             f"{max(r):.3f}, {np.exp(np.mean(np.log(r))):.3f}" for r in ratios)
                         + f" | {max(row['bytes'][form] / row['bytes']['converter'] for row in mine):.3f} |")
    return lines + ["", "(A ratio above 1: tflrnn's is larger.)", ""] if rows else []


def int8_weight_bytes(net_name: str) -> int:
    """The bytes of a network's int8 W, R and Dense kernels: one byte a weight, whatever the form."""
    net = next(n for n in BATTERY if n.name == net_name)
    total, size = 0, net.input_size
    for units in net.layers:
        total, size = total + 4 * units * (size + units), units
    for units, _ in net.head:
        total, size = total + size * units, units
    return total


def beyond_weights(rows: list[dict], who: list[str]) -> list[str]:
    """Each form's file beyond its int8 weights, per network (the largest over the seeds, which differ by a few
    bytes at most): what the file target leaves a form for everything else is the converter's column."""
    lines = ["Bytes beyond the int8 weights (the file less one byte a weight): everything else a model holds, its "
             "biases, scales and zero points, tensors, ops, subgraphs, names and metadata (the largest over the "
             "seeds).", "",
             "| network | int8 weights | " + " | ".join(w for w in who) + " |", "|---|---" + "|---" * len(who) + "|"]
    for name in dict.fromkeys(row["network"] for row in rows):
        mine = [r for r in rows if r["network"] == name]
        weights = int8_weight_bytes(name)
        lines.append(f"| {name} | {weights:,} B | " + " | ".join(
            _n(max(r["bytes"][w] for r in mine) - weights if all(w in r["bytes"] for r in mine) else None, "B")
            for w in who) + " |")
    return lines + [""]


def floor_table(rows: list[dict]) -> list[str]:
    """Per case, the rounding floor of the converter's output format against the converter's own error (LiteRT)."""
    shares = [row["floor"]["mean"] / row["errors"]["LiteRT"]["converter"]["mean"] for row in rows]
    # at the floor: equal but for float32's rounding of the DEQUANTIZE (the floor is float64)
    at_floor = [row for row in rows if row["floor"]["max"] >= row["errors"]["LiteRT"]["converter"]["max"] * (1 - 1e-4)]
    lines = ["**The output's rounding floor.** Each model's output is int8 before its DEQUANTIZE; the fused ops' is "
             "their h, over the range calibration saw (the converter's and tflrnn's fused op alike; a classifier's is "
             "SOFTMAX's fixed format). The floor: the "
             "exact outputs (float64) rounded to the converter's output format, what a model that computed every "
             f"step exactly and wrote that format would score. It is {min(shares):.0%}-{max(shares):.0%} of the "
             f"converter's mean error, and in {len(at_floor)} of {len(rows)} cases the converter's max error is the "
             "floor's: an output past the calibrated range, clipped at its edge, which no model writing that format "
             "can do better on, while a wider format has a coarser step and so a larger mean. tflrnn's fused op "
             "takes the same kind of format from its own calibration run (over its int8 weights' values, so the edge "
             "can differ in the last bits) and is judged on the rest of the error.", "",
             "| network | seed | floor: max / mean | LiteRT: converter | floor / converter, mean | converter's max "
             "at the floor |", "|---|---|---|---|---|---|"]
    for row, share in zip(rows, shares):
        converter = row["errors"]["LiteRT"]["converter"]
        lines.append(f"| {row['network']} | {row['seed']} | {_pair(row['floor'])} | {_pair(converter)} | "
                     f"{share:.2f} | {'yes' if row in at_floor else 'no'} |")
    return lines + [""] if rows else []


def markdown(rows: list[dict], command: str, elapsed: float) -> str:
    seeds = len({row["seed"] for row in rows})
    met = {form: sum(row["meets"][form] for row in rows) for form in FORMS}
    lines = [BEGIN, "", "## Full-int8 LSTM against the converter's (issue 21)", "",
             f"{tflrnn_revision()}; {platform.machine()}, Python {platform.python_version()}, {_versions()}, "
             f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}. Reproduce: `{command}` "
             f"({elapsed / 60:.1f} min).", "",
             f"{len({row['network'] for row in rows})} networks x {seeds} seeds. Per seed, Keras weights drawn from "
             "numpy (kernels glorot-uniform, recurrent kernels orthogonal per gate, biases N(0, 0.1) + 1 on the "
             "forget gate; Dense: glorot, N(0, 0.1)). The converter's: the `tf_keras` Sequential (batch 1) with "
             "those weights, `TFLiteConverter.from_keras_model`, `optimizations=[DEFAULT]`, `TFLITE_BUILTINS_INT8`, "
             "the float interface (the default inference types). tflrnn's: the same weights as a Keras 3 `.keras`, "
             "`python -m tflrnn build --weights FILE --quantize full-int8 --calibration cal.npy`: the fused op (the "
             "default; `--io float`), and `--lowering portable` (TFLite's 16x8 ops: int8 weights, int16 values) with the "
             f"steps unrolled and as a WHILE loop (`--recurrence`). All calibrated on the same {CALIBRATION} standard-normal sequences. "
             f"Error = |output - the float64 recurrence of the float weights| (`tflrnn.reference`) over {TESTS} "
             "held-out sequences, max / mean, each from the zero state (the state reset before each sequence; the "
             "reset checked to give a fresh interpreter's output, else a fresh interpreter per sequence). LiteRT: "
             "ai_edge_litert's Interpreter, default resolver, 1 thread. Micro arena: the smallest that allocates and "
             "invokes twice (tflrnn.arena, all the same way). Micro invoke: each model in its own fresh process "
             f"(scripts/bench_gru.py's probe), {rows[0]['micro_rounds']} processes per model, alternating, the "
             "median of their medians. Target: tflrnn's max and mean at most the converter's on both runtimes, its "
             "file at most the converter's.", ""]
    for form in FORMS:
        reasons = sorted({row["not_built"][form] for row in rows if form in row["not_built"]})
        if reasons:
            lines += [f"**{form}'s model not built for {sum(form in row['not_built'] for row in rows)} of "
                      f"{len(rows)} cases:** " + "; ".join(f"`{r}`" for r in reasons), ""]
    lines += ["**Cases (network x seed) that meet the target: " + ", ".join(
        f"{form} {met[form]} of {len(rows)}" for form in FORMS) + ".**", ""] + summary(rows) + floor_table(rows)
    for form in FORMS:
        lines += [f"{form}:", "", f"| network | seed | LiteRT: {form} | LiteRT: converter | ratio max / mean "
                  f"| Micro: {form} | Micro: converter | ratio max / mean | target |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            cells = []
            for runtime in RUNTIMES:
                e = row["errors"][runtime]
                cells += [_pair(e.get(form)), _pair(e["converter"]), _ratio(e, form)]
            verdict = "yes" if row["meets"][form] else "**no**: " + ", ".join(row["fails"][form])
            lines.append(f"| {row['network']} | {row['seed']} | " + " | ".join(cells) + f" | {verdict} |")
        lines.append("")
    who = [*FORMS, "converter"]
    lines += beyond_weights(rows, who)
    lines += ["| network | seed | " + " | ".join(f"file: {w}" for w in who) + " | "
              + " | ".join(f"Micro arena: {w}" for w in who) + " | " + " | ".join(f"Micro invoke: {w}" for w in who)
              + " |", "|---|---|" + "---|" * (3 * len(who))]
    for row in rows:
        cells = [_n(row[what].get(w), unit) for what, unit in (("bytes", "B"), ("arena", "B"), ("micro_us", "us"))
                 for w in who]
        lines.append(f"| {row['network']} | {row['seed']} | " + " | ".join(cells) + " |")
    groups = {}
    for row in rows:
        for w, ops in row["ops"].items():
            groups.setdefault(f"Ops, {w}: {ops}", {})[row["network"]] = None
    for row in rows:
        for runtime, e in row["errors"].items():
            for w, found in e.items():
                groups.setdefault(f"State, {'carried across invokes' if found['carries'] else 'none kept'}, reset "
                                  + ("= a fresh interpreter" if found["reset_ok"] else "is not a fresh interpreter "
                                     "(a fresh one per sequence instead)"), {})[f"{w} on {runtime}"] = None
    lines += [""] + [f"- {text}: {'; '.join(names)}." for text, names in groups.items()] + ["", END]
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    current = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.S)
    path.write_text(pattern.sub(lambda _: text, current, count=1) if pattern.search(current)
                    else current.rstrip("\n") + "\n\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SEEDS} seed, fewer timing repeats; never "
                        "written to BENCHMARKS.md")
    parser.add_argument("--seeds", type=int, help=f"seeds per network (default {SEEDS})")
    parser.add_argument("--networks", help="only the networks whose name contains one of these (comma-separated)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--no-write", action="store_true", help="print the section; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    networks = BATTERY
    if args.networks:
        words = [w.strip() for w in args.networks.split(",")]
        networks = tuple(n for n in BATTERY if any(w in n.name for w in words))
    seeds = args.seeds or (QUICK_SEEDS if args.quick else SEEDS)
    started, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory() as tmp:
        for net in networks:
            for seed in range(seeds):
                rows.append(row := case(net, seed, args.quick, Path(tmp)))
                print(f"{net.name} seed {seed}: " + "; ".join(
                    f"{r} " + ", ".join(f"{w} {_pair(found)}" for w, found in e.items()) for r, e in row["errors"].items())
                    + f"; bytes {row['bytes']}; micro us {row['micro_us']}; fails {row['fails']} {row['not_built']}",
                    flush=True)
    command = " ".join([".venv/bin/python scripts/bench_lstm_int8.py", *sys.argv[1:]])
    text = markdown(rows, command, time.perf_counter() - started)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.quick or args.networks:
        print("(--quick / --networks: not written to BENCHMARKS.md)")
    elif not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
