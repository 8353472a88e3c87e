#!/usr/bin/env python3
"""Full int8: tflrnn's `--quantize full-int8` against the converter's, on a battery of networks and a real task.

TensorFlow's converter makes its full int8 from the unrolled Keras model (scripts/int8_converter.py); both get the
same weights and the same calibration data, and run on LiteRT (builtin kernels, and with XNNPACK) and TFLite Micro.
Writes its section of BENCHMARKS.md (between the int8 markers).

    .venv/bin/python scripts/bench_int8.py                      # everything; writes BENCHMARKS.md
    .venv/bin/python scripts/bench_int8.py --battery [--quick] [--seeds N] [--no-write]
    .venv/bin/python scripts/bench_int8.py --task [--no-write]  # the real task (scripts/bench_int8_task.py)
    .venv/bin/python scripts/bench_int8.py --detail [--no-write]  # issue 13's network: size, invoke, arena

The battery: networks of 16-128 units, T 8-50, tanh and relu, a 2-layer stack, a bidirectional layer, classifiers
with a Dense head; each a Keras model with seeded weights (int8_converter.keras_network + seeded_weights), saved as
.keras, from which both models are made (tflrnn reads the file; the converter converts the loaded model), so the
weights are the same. Per seed: 64 calibration sequences and 16 held-out test sequences (standard normal unless the
network says otherwise). Error = |output - the float64 recurrence of the float weights| (tflrnn.reference), max and
mean over the test sequences. Both models start each invoke from zeros: the converter's has no state, and tflrnn's
is built with `state="zero"`, whose calibration also runs every sequence from zeros (as the converter's
representative dataset does); `--state carry` is reported for one network on its own.

The converter's models (and the .keras files) are cached under build/bench_cache/int8/, keyed by a hash of the
weights, the calibration data and the TensorFlow version: the converter is slow and does not change while tflrnn's
calibration does. From Python: `battery(quick=True)` returns the rows.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import int8_converter as conv  # noqa: E402

from tflrnn import reference  # noqa: E402
from tflrnn.builder import model_of, network_of  # noqa: E402
from tflrnn.config import BuildOptions, resolve_build_options  # noqa: E402
from tflrnn.reader import read  # noqa: E402
from tflrnn.runners import micro_arena_bytes  # noqa: E402
from tflrnn.writer import write  # noqa: E402

BEGIN, END = "<!-- int8: scripts/bench_int8.py -->", "<!-- /int8 -->"
PARTS = ("detail", "battery", "task")  # each a block inside the section: <!-- int8 NAME --> ... <!-- /int8 NAME -->
CACHE = ROOT / "build" / "bench_cache" / "int8"
GENERATION = 1  # bump when keras_network / seeded_weights / the data change what a cached .keras holds
CALIBRATION = 64
TESTS = 256  # held-out sequences: the max over fewer is decided by one or two values
RUNTIMES = ("LiteRT builtin", "LiteRT XNNPACK", "TFLite Micro")
QUICK_RUNTIMES = ("LiteRT builtin",)


@dataclass(frozen=True)
class Net:
    """One battery network: `layers` (units, activation, bidirectional) in a chain, the last one's final step only
    with `last_step`, then `head` (units, activation) Dense layers; its input data `data` x `scale`."""

    name: str
    input_size: int
    time_steps: int
    layers: tuple
    last_step: bool = False
    head: tuple = ()
    data: str = "normal"  # normal: N(0, scale^2); uniform: U(-scale, scale)
    scale: float = 1.0

    def keras(self) -> dict:
        return {"input_size": self.input_size, "time_steps": self.time_steps, "layers": list(self.layers),
                "last_step": self.last_step, "head": list(self.head)}

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        shape = (count, 1, self.time_steps, self.input_size)
        x = rng.standard_normal(shape) if self.data == "normal" else rng.uniform(-1, 1, shape)
        return (self.scale * x).astype(np.float32)


ISSUE13 = Net("U32 I16 T20 tanh (issue 13's)", 16, 20, ((32, "tanh", False),))
BATTERY = (
    Net("U16 I8 T8 tanh", 8, 8, ((16, "tanh", False),)),
    ISSUE13,
    Net("U64 I32 T50 tanh", 32, 50, ((64, "tanh", False),)),
    Net("U128 I64 T20 tanh", 64, 20, ((128, "tanh", False),)),
    Net("U32 I16 T20 relu", 16, 20, ((32, "relu", False),)),
    Net("U64 I32 T50 relu", 32, 50, ((64, "relu", False),)),
    Net("stack 32-32 tanh, I16 T20", 16, 20, ((32, "tanh", False), (32, "tanh", False))),
    Net("bidirectional 32 tanh (concat), I16 T20", 16, 20, ((32, "tanh", True),)),
    Net("classifier: 32 tanh last step, Dense 5 softmax, I16 T20", 16, 20, ((32, "tanh", False),), last_step=True,
        head=((5, "softmax"),)),
    Net("regressor: 32 tanh, Dense 3 linear per step, I8 T20, U(-2, 2) data", 8, 20, ((32, "tanh", False),),
        head=((3, "linear"),), data="uniform", scale=2.0),
)
QUICK_SEEDS, SEEDS = 1, 3


# ---------------------------------------------------------------------------------------------------------- models

def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _tensorflow_version() -> str:
    for name in ("tensorflow-cpu", "tensorflow"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "none"


def keras_file(net: Net, seed: int) -> Path:
    """The network's .keras with seed's weights (made with TensorFlow once, then read from the cache)."""
    path = CACHE / f"{_digest(GENERATION, net.keras(), seed)}.keras"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        model = conv.keras_network(**net.keras())
        conv.seeded_weights(model, seed)
        partial = path.with_suffix(".partial.keras")
        model.save(partial)
        partial.replace(path)
    return path


def network(path: Path, **options):
    """tflrnn's network from a .keras, as `tflrnn build --weights path --lowering portable ...` makes it."""
    plan = resolve_build_options(BuildOptions(weights=path, lowering="portable", **options), given_by="the bench")
    return network_of(**plan.options)


def tflrnn_int8(path: Path, calibration: np.ndarray, state: str = "zero", input_precision: str = "int16") -> bytes:
    return write(model_of(network(path, quantize="full-int8", calibration=calibration, state=state,
                                  input_precision=input_precision)))


def network_digest(float_network) -> str:
    """The float network's weights and structure (activations, directions, last step, head, sizes)."""
    arrays = [a for layer in float_network.layers for a in layer.weights.arrays()]
    arrays += [a for dense in float_network.head for a in (dense.weights, dense.bias)]
    structure = {"layers": [[str(layer.name), int(layer.activation)] for layer in float_network.layers],
                 "stages": [len(s) if isinstance(s, tuple) else 1 for s in float_network.stages],
                 "head": [[d.units, d.activation] for d in float_network.head],
                 "last_step": float_network.last_step, "merge": float_network.merge,
                 "time_steps": float_network.time_steps, "batch_size": float_network.batch_size}
    return _digest(structure, *[np.ascontiguousarray(a, np.float32).tobytes() for a in arrays])


def converter_int8(path: Path, float_network, calibration: np.ndarray) -> bytes:
    """The converter's full int8 of the .keras, cached by the network (weights and structure), the calibration data,
    the TensorFlow version and int8_converter.py itself."""
    key = _digest(network_digest(float_network), np.ascontiguousarray(calibration).tobytes(), calibration.shape,
                  _tensorflow_version(), Path(conv.__file__).read_bytes())
    cached = CACHE / f"converter-{key}.tflite"
    if cached.exists():
        return cached.read_bytes()
    data = conv.converter_full_int8_keras(path, calibration)
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(cached)
    return data


# -------------------------------------------------------------------------------------------------------- running

def outputs(data: bytes, xs, runtime: str, carried: bool = False) -> list[np.ndarray]:
    """The model's (first) output for each x on one runtime, one invoke each, in order; a model with a state
    carries it from one invoke to the next (a zero-state model and the converter's have none: each from zeros)."""
    if runtime.startswith("LiteRT"):
        interpreter = conv._litert(data, runtime == "LiteRT XNNPACK")
        x_index = interpreter.get_input_details()[0]["index"]
        y_index = interpreter.get_output_details()[0]["index"]
        found = []
        for x in xs:
            interpreter.set_tensor(x_index, np.asarray(x, np.float32))
            interpreter.invoke()
            found.append(interpreter.get_tensor(y_index).astype(np.float64))
        return found
    from tflite_micro.python.tflite_micro import runtime as tflm

    micro = tflm.Interpreter.from_bytes(data, arena_size=micro_arena_bytes(read(data)))
    found = []
    for x in xs:
        if not carried:
            micro.reset()
        micro.set_input(np.asarray(x, np.float32), 0)
        micro.invoke()
        found.append(np.array(micro.get_output(0), np.float64))
    return found


def errors(found, expected) -> tuple[float, float]:
    error = np.abs(np.stack(found) - np.stack(expected))
    return float(error.max()), float(error.mean())


def case(net: Net, seed: int, runtimes=RUNTIMES) -> dict:
    """One network and seed: each model's (max, mean) error on each runtime, and the verdict."""
    path = keras_file(net, seed)
    calibration = net.draw(np.random.default_rng([seed, 1]), CALIBRATION)
    tests = net.draw(np.random.default_rng([seed, 2]), TESTS)
    float_network = network(path)
    expected = [reference.run_network(float_network, x)[0][0] for x in tests]
    started = time.perf_counter()
    mine = tflrnn_int8(path, calibration)
    build_seconds = time.perf_counter() - started
    theirs = converter_int8(path, float_network, calibration)
    row = {"network": net.name, "seed": seed, "tflrnn_bytes": len(mine), "converter_bytes": len(theirs),
           "tflrnn_build_s": build_seconds, "errors": {}, "fails": []}
    for runtime in runtimes:
        t, c = errors(outputs(mine, tests, runtime), expected), errors(outputs(theirs, tests, runtime), expected)
        row["errors"][runtime] = {"tflrnn": t, "converter": c}
        row["fails"] += [f"{what} on {runtime}" for what, k in (("max", 0), ("mean", 1)) if t[k] > c[k]]
    row["meets"] = not row["fails"]
    return row


def carry_case(net: Net = ISSUE13, seed: int = 0, runtimes=RUNTIMES) -> dict:
    """tflrnn --state carry (calibrated with the state carried over the calibration sequences), the state carried
    over the test invokes, against the float recurrence carried the same way; beside it the zero-state models."""
    path = keras_file(net, seed)
    calibration = net.draw(np.random.default_rng([seed, 1]), CALIBRATION)
    tests = net.draw(np.random.default_rng([seed, 2]), TESTS)
    float_network = network(path)
    carried, states = [], None
    for x in tests:
        found, states = reference.run_network(float_network, x, states)
        carried.append(found[0])
    carry = tflrnn_int8(path, calibration, state="carry")
    return {"network": net.name, "seed": seed,
            "errors": {runtime: errors(outputs(carry, tests, runtime, carried=True), carried)
                       for runtime in runtimes}}


def battery(quick: bool = True, seeds: int | None = None, networks=BATTERY, carry: bool | None = None,
            progress=None) -> list[dict]:
    """The battery's rows, one per network and seed (see `case`); `quick`: LiteRT builtin only and one seed.
    `carry` (default: not quick) appends the carry row of issue 13's network (row["carry"] = True)."""
    runtimes = QUICK_RUNTIMES if quick else RUNTIMES
    seeds = seeds if seeds is not None else (QUICK_SEEDS if quick else SEEDS)
    rows = []
    for net in networks:
        for seed in range(seeds):
            started = time.perf_counter()
            rows.append(case(net, seed, runtimes))
            rows[-1]["seconds"] = time.perf_counter() - started
            if progress:
                progress(rows[-1])
    if carry if carry is not None else not quick:
        rows.append({**carry_case(runtimes=runtimes), "carry": True})
    return rows


def task(quick: bool = True, **options) -> list[dict]:
    """The real task's rows (scripts/bench_int8_task.py: one per data set and training seed); `quick`: LiteRT
    builtin only."""
    import bench_int8_task

    return bench_int8_task.task(runtimes=QUICK_RUNTIMES if quick else RUNTIMES, **options)


# ------------------------------------------------------------------------------------------------------- the text

def _pair(pair) -> str:
    return f"{pair[0]:.4f} / {pair[1]:.5f}"


def _runtimes_of(rows) -> list[str]:
    return [r for r in RUNTIMES if any(r in row["errors"] for row in rows)]


def battery_table(rows: list[dict]) -> list[str]:
    cases = [row for row in rows if not row.get("carry")]
    runtimes = _runtimes_of(cases)
    head = ("| network | seed | " + " | ".join(f"{r}: tflrnn | {r}: converter" for r in runtimes)
            + " | tflrnn <= converter |")
    lines = [head, "|" + "---|" * (3 + 2 * len(runtimes))]
    for row in cases:
        cells = []
        for r in runtimes:
            e = row["errors"][r]
            cells += [_pair(e["tflrnn"]), _pair(e["converter"])]
        short = {"LiteRT builtin": "builtin", "LiteRT XNNPACK": "XNNPACK", "TFLite Micro": "Micro"}
        lost = {what: [short[r] for r in runtimes if f"{what} on {r}" in row["fails"]] for what in ("max", "mean")}
        verdict = "yes" if row["meets"] else "**no**: " + "; ".join(f"{what} ({', '.join(where)})"
                                                                    for what, where in lost.items() if where)
        lines.append(f"| {row['network']} | {row['seed']} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def summary_table(rows: list[dict]) -> list[str]:
    """Per network: the cases that meet the target, and tflrnn's error over the converter's (worst seed and
    runtime, and the geometric mean over them), max and mean."""
    cases = [row for row in rows if not row.get("carry")]
    lines = ["| network | cases met | max: tflrnn / converter (worst, geo. mean) "
             "| mean: tflrnn / converter (worst, geo. mean) |", "|---|---|---|---|"]
    for name in dict.fromkeys(row["network"] for row in cases):
        mine = [row for row in cases if row["network"] == name]
        ratios = {k: [e["tflrnn"][k] / e["converter"][k] for row in mine for e in row["errors"].values()]
                  for k in (0, 1)}
        met = sum(row["meets"] for row in mine)
        lines.append(f"| {name} | {met} of {len(mine)} | "
                     + " | ".join(f"{max(ratios[k]):.2f}, {np.exp(np.mean(np.log(ratios[k]))):.2f}" for k in (0, 1))
                     + " |")
    return lines


def battery_summary(rows: list[dict]) -> str:
    cases = [row for row in rows if not row.get("carry")]
    met = sum(row["meets"] for row in cases)
    nets = {row["network"] for row in cases}
    nets_met = {n for n in nets if all(row["meets"] for row in cases if row["network"] == n)}
    return (f"{met} of {len(cases)} cases (network x seed) meet the target on every runtime measured "
            f"({', '.join(_runtimes_of(cases))}); {len(nets_met)} of {len(nets)} networks on every seed.")


def battery_markdown(rows: list[dict]) -> str:
    cases = [row for row in rows if not row.get("carry")]
    seeds = len({row["seed"] for row in cases})
    lines = ["### The battery (issue 18)", "",
             f"{len({row['network'] for row in cases})} networks x {seeds} seeds. Each network is a Keras model with "
             "seeded weights (glorot-uniform kernels, orthogonal recurrent kernels, N(0, 0.1) biases) saved as "
             "`.keras`; tflrnn builds from that file (`--lowering portable --quantize full-int8 --state zero "
             "--calibration`, the input QUANTIZEd to int16 for the first projection, the default) and the converter "
             "converts the same model unrolled, both calibrated on the same "
             f"{CALIBRATION} sequences (standard normal unless the network says otherwise). Error = |output - the "
             f"float64 recurrence of the float weights| over {TESTS} held-out test sequences, max / mean; each invoke "
             "starts from zeros in both (the converter's model has no state; tflrnn's `--state zero` calibrates "
             "each sequence from zeros too). Target: tflrnn's max and mean at most the converter's, on every "
             "runtime.", "", "**" + battery_summary(rows) + "**", ""]
    lines += summary_table(rows) + ["", "(A ratio above 1 is where tflrnn's error is larger.)", ""]
    lines += battery_table(rows)
    carry = [row for row in rows if row.get("carry")]
    if carry:
        row = carry[0]
        zero = next((c for c in cases if c["network"] == row["network"] and c["seed"] == row["seed"]), None)
        lines += ["", f"The state carried ({row['network']}, seed {row['seed']}): tflrnn `--state carry`, "
                  "calibrated with the state carried over the calibration sequences, run over the test sequences "
                  "with the state carried, against the float recurrence carried the same way (the converter's "
                  "model cannot carry a state).", "",
                  "| model | " + " | ".join(row["errors"]) + " |", "|---|" + "---|" * len(row["errors"]),
                  "| tflrnn --state carry, carried | " + " | ".join(_pair(e) for e in row["errors"].values()) + " |"]
        if zero:
            for who in ("tflrnn", "converter"):
                label = "tflrnn --state zero" if who == "tflrnn" else "converter"
                lines.append(f"| {label}, each invoke from zeros | "
                             + " | ".join(_pair(zero["errors"][r][who]) for r in row["errors"]) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ issue 13's network in more detail

def detail() -> dict:
    """Issue 13's network, seed 0: file size, error, LiteRT invoke time and the smallest TFLite Micro arena of the
    converter's model, tflrnn --state zero (its input int16, and int8) and tflrnn --state carry."""
    from tflrnn.arena import minimum_arena

    net, seed = ISSUE13, 0
    path = keras_file(net, seed)
    calibration = net.draw(np.random.default_rng([seed, 1]), CALIBRATION)
    tests = net.draw(np.random.default_rng([seed, 2]), TESTS)
    float_network = network(path)
    from_zeros = [reference.run_network(float_network, x)[0][0] for x in tests]
    carried, states = [], None
    for x in tests:
        found, states = reference.run_network(float_network, x, states)
        carried.append(found[0])
    rows = []
    for label, data, expected, keeps in (
            ("converter (unrolled Keras, full int8), each invoke from zeros",
             converter_int8(path, float_network, calibration), from_zeros, False),
            ("tflrnn --state zero, each invoke from zeros", tflrnn_int8(path, calibration, "zero"), from_zeros, False),
            ("tflrnn --state zero --input-precision int8 (every value int8), each invoke from zeros",
             tflrnn_int8(path, calibration, "zero", "int8"), from_zeros, False),
            (f"tflrnn --state carry, the state carried over the {TESTS} invokes",
             tflrnn_int8(path, calibration, "carry"), carried, True)):
        rows.append({
            "model": label, "bytes": len(data),
            "errors": {r: errors(outputs(data, tests, r, keeps), expected) for r in RUNTIMES},
            "invoke_us": {r: conv._median_invoke_us(data, tests[0], r == "LiteRT XNNPACK")
                          for r in ("LiteRT XNNPACK", "LiteRT builtin")},
            "micro_arena": minimum_arena(data, micro_arena_bytes(read(data))),
        })
    return {"rows": rows, "float_weight_bytes": 4 * sum(a.size for a in float_network.layers[0].weights.arrays())}


def detail_markdown(result: dict) -> str:
    lines = [f"U=32, I=16, T=20, batch 1, seed 0 of the battery below: the same float weights "
             f"({result['float_weight_bytes']:,} bytes as float32, from one `.keras`) and the same {CALIBRATION} "
             f"calibration sequences for both; error = |output - the float64 recurrence of the float weights| over "
             f"{TESTS} test sequences (20 x 32 values each), max / mean.", "",
             "| model | file | " + " | ".join(RUNTIMES) + " | LiteRT invoke (XNNPACK / builtin) | Micro arena |",
             "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['model']} | {row['bytes']:,} B | "
                     + " | ".join(_pair(row["errors"][r]) for r in RUNTIMES)
                     + f" | {row['invoke_us']['LiteRT XNNPACK']:.1f} / {row['invoke_us']['LiteRT builtin']:.1f} us"
                     f" | {row['micro_arena']:,} B |")
    lines += ["", "The converter's model keeps no state (each invoke starts from zeros); tflrnn's `--state carry` "
              "carries it, and its error over carried invokes is measured against the float recurrence carried the "
              "same way. tflrnn's input is QUANTIZEd to int16 for its first projection (TFLite's 16x8 "
              "FULLY_CONNECTED, which LiteRT runs on its reference kernel and XNNPACK does not take) unless "
              "`--input-precision int8`: the speed that costs on LiteRT is the difference between those two rows."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- the section

def _block(part: str, body: str) -> str:
    return f"<!-- int8 {part} -->\n\n{body.strip()}\n\n<!-- /int8 {part} -->"


def section(blocks: dict[str, str]) -> str:
    lines = [BEGIN, "", "## Full int8 against the converter's (issue 13)", "",
             f"{platform.machine()}, Python {platform.python_version()}, TensorFlow {_tensorflow_version()}; "
             "`.venv/bin/python scripts/bench_int8.py` (parts: `--detail`, `--battery`, `--task`).", ""]
    for part in PARTS:
        if part in blocks:
            lines += [_block(part, blocks[part]), ""]
    return "\n".join(lines + [END]) + "\n"


def write_blocks(blocks: dict[str, str], path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Write the parts' blocks into BENCHMARKS.md's int8 section: the whole section when every part is given (or
    there is none yet); else each given part's block is replaced (or added before the section's end), the other
    parts' blocks kept as they are."""
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.S)
    found = pattern.search(text)
    if found is None or set(blocks) == set(PARTS):
        new = section(blocks)
    else:
        new = found.group(0)
        if not new.endswith("\n"):
            new += "\n"
        for part, body in blocks.items():
            block = re.compile(re.escape(f"<!-- int8 {part} -->") + ".*?" + re.escape(f"<!-- /int8 {part} -->"), re.S)
            if block.search(new):
                new = block.sub(lambda _: _block(part, body), new)
            else:
                new = new.replace(END, _block(part, body) + "\n\n" + END)
    text = text[:found.start()] + new + text[found.end():] if found else text.rstrip("\n") + "\n\n" + new
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--battery", action="store_true", help="The battery of networks x seeds.")
    parser.add_argument("--task", action="store_true", help="The real task (scripts/bench_int8_task.py).")
    parser.add_argument("--detail", action="store_true", help="Issue 13's network: size, invoke time, arena.")
    parser.add_argument("--quick", action="store_true",
                        help=f"LiteRT builtin only; the battery {QUICK_SEEDS} seed (unless --seeds). Never written.")
    parser.add_argument("--seeds", type=int, help=f"Battery: seeds per network (default {SEEDS}).")
    parser.add_argument("--networks", help="Battery: only the networks whose name contains this (comma-separated).")
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    parser.add_argument("--no-write", action="store_true", help="Print the section; leave BENCHMARKS.md as it is.")
    args = parser.parse_args()
    chosen = [p for p in PARTS if getattr(args, p)] or list(PARTS)
    blocks, results = {}, {}
    if "battery" in chosen:
        networks = BATTERY
        if args.networks:
            words = [w.strip() for w in args.networks.split(",")]
            networks = tuple(n for n in BATTERY if any(w in n.name for w in words))
        started = time.perf_counter()

        def progress(row):
            e = row["errors"]
            print(f"{row['network']:<70} seed {row['seed']}  "
                  + "  ".join(f"{r}: {_pair(v['tflrnn'])} vs {_pair(v['converter'])}" for r, v in e.items())
                  + f"  {'ok' if row['meets'] else 'NO'}  ({row['seconds']:.1f} s)", flush=True)

        rows = battery(quick=args.quick, seeds=args.seeds, networks=networks, progress=progress)
        print(f"battery: {time.perf_counter() - started:.0f} s\n")
        results["battery"] = rows
        blocks["battery"] = battery_markdown(rows)
    if "task" in chosen:
        import bench_int8_task

        found = bench_int8_task.task(runtimes=QUICK_RUNTIMES if args.quick else RUNTIMES,
                                     progress=lambda line: print(line, flush=True))
        results["task"] = found
        blocks["task"] = bench_int8_task.markdown(found)
    if "detail" in chosen:
        found = detail()
        results["detail"] = found
        blocks["detail"] = detail_markdown(found)
    for part in PARTS:
        if part in blocks:
            print(_block(part, blocks[part]) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1,
                                        default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    if args.quick or args.networks:
        print("(--quick / --networks: not written to BENCHMARKS.md)")
    elif not args.no_write:
        write_blocks(blocks)


if __name__ == "__main__":
    main()
