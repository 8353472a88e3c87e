#!/usr/bin/env python3
"""tflrnn's LSTM against TensorFlow's converter, side by side in one run, on the same Keras 3 LSTM weights (issue 21).

One LSTM, T = 50, batch 1, return_sequences, the same weights every way: the converter's forms, that is the legacy
`tf_keras` LSTM converted to TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM (the fastest thing the converter makes of an
LSTM), the Keras 3 LSTM's default conversion (a WHILE loop) and its unroll=True graph (all three
`TFLiteConverter.from_keras_model`, a fixed batch-1 input); and tflrnn's, that is the portable LSTM unrolled and as a
WHILE loop of one and of five steps a pass (`LSTMWeights.from_keras` of the same weights) and the fused op (`lowering="fused"`), when
`tflrnn.cells.kind("lstm").fused` says tflrnn writes it. At 64 units (input 32), 256 (input 256) and 1024 (input
256): invoke on LiteRT with its default XNNPACK delegate and without, on the CompiledModel API and on TFLite Micro
(each model on its own in a fresh process, as scripts/bench_gru.py times them), the memory the runtime adds, the
file size, the raw float32 weights, the XNNPACK partitions, and the largest error of each runtime's output against
Keras 3's `model.predict` on the same input (a form whose output is off is marked and not counted for a target).
The LiteRT default is also timed pair by pair (tflrnn.benchmark.bench, the state reset before each invoke) for
issue 21's invoke targets. Float only: full int8 is scripts/bench_lstm_int8.py's.

Needs the bench extra (`.venv/bin/pip install -e '.[bench]' -c scripts/constraints.txt`) and, for the fused
conversion, tf_keras of the installed TensorFlow's release: `.venv/bin/pip install --no-deps tf-keras==2.21.0`
(--no-deps: it asks for the `tensorflow` package, which would install beside the extras' `tensorflow-cpu` and share
its files). Without it that form is left out, and the section says why.

    .venv/bin/python scripts/bench_lstm.py            # writes the LSTM section of BENCHMARKS.md
    .venv/bin/python scripts/bench_lstm.py --quick    # 64 units only, fewer repeats
    .venv/bin/python scripts/bench_lstm.py --no-write # print the section only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# The GRU bench's machinery, shared: the fresh-process probe of one model on one runtime (with XNNPACK's partition
# log), the converter call (under the fd-level quiet of scripts/int8_converter.py), the machine facts line
# (scripts/bench.py) and the table's cells.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import machine, replace_section  # noqa: E402
from bench_gru import (  # noqa: E402
    RUNTIME_LABELS,
    RUNTIMES,
    SKIP_ABOVE_BYTES,
    TIME_STEPS,
    _partitions,
    _us,
    convert,
    memory_target_kb,
    on_runtime,
    op_count,
    severity_symbol,
)
from int8_converter import _quiet as quiet  # noqa: E402

SIZES = ((64, 32), (256, 256), (1024, 256))  # (units, input)
GATES = 4
CONVERTER_FORMS = ("tf_keras fused", "converter (WHILE)", "converter (unroll=True)")
# tflrnn's forms: the build options of each
TFLRNN_OPTIONS = {"tflrnn unrolled": {"lowering": "portable", "recurrence": "unrolled"},
                  "tflrnn loop": {"lowering": "portable", "recurrence": "loop"},
                  "tflrnn loop (5 a pass)": {"lowering": "portable", "recurrence": "loop", "steps_per_iteration": 5},
                  "tflrnn fused": {"lowering": "fused"}}
TFLRNN_FORMS = tuple(TFLRNN_OPTIONS)
SHORT = {"tf_keras fused": "tf_keras fused", "converter (WHILE)": "converter WHILE",
         "converter (unroll=True)": "converter unroll=True", "tflrnn unrolled": "tflrnn unrolled",
         "tflrnn loop": "tflrnn loop", "tflrnn loop (5 a pass)": "tflrnn loop, 5 a pass",
         "tflrnn fused": "tflrnn fused"}
TF_KERAS_PIN = "tf-keras==2.21.0"  # the release of the TensorFlow the test extra installs
# A correct float model differs from Keras by rounding (~1e-6 here); a wrong one (a gate mixed up, a state not
# carried) by ~0.1. A form off by more than this is marked in the table and not counted for a target.
ERROR_LIMIT = 1e-4
# Issue 21's targets
INVOKE_GOAL_SMALL = 1.0  # at 64 units: at most the converter's fastest form
INVOKE_GOAL = 0.8  # at 256 and 1024 units: at most 0.8x the converter's fastest form
FILE_GOAL_FUSED = 1024  # the fused model: at most the raw weights + 1 KiB (at every size)
FILE_GOAL_PORTABLE = 16384  # a portable model: at most the raw weights + 16 KiB (at 64 units)
SECTION_START, SECTION_END = "<!-- lstm: scripts/bench_lstm.py -->", "<!-- /lstm -->"


def keras_weights(units: int, input_size: int, seed: int = 0) -> list[np.ndarray]:
    """A Keras LSTM's weights: kernel [I, 4U] glorot-uniform, recurrent_kernel [U, 4U] orthogonal per gate, bias
    [4U] N(0, 0.1) plus Keras' unit forget bias (1 on the forget gate), so every gate's bias is exercised."""
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6 / (input_size + GATES * units))
    kernel = rng.uniform(-limit, limit, (input_size, GATES * units)).astype(np.float32)
    blocks = []
    for _ in range(GATES):
        q, r = np.linalg.qr(rng.standard_normal((units, units)))
        blocks.append(q * np.sign(np.diag(r)))
    recurrent = np.concatenate(blocks, axis=1).astype(np.float32)
    bias = rng.standard_normal(GATES * units) * 0.1
    bias[units:2 * units] += 1.0  # gates i, f, c, o: the forget gate's
    return [kernel, recurrent, bias.astype(np.float32)]


def keras_model(weights, time_steps: int, unroll: bool = False, legacy: bool = False):
    """Keras 3's LSTM (the reference and two converter forms), or with legacy=True the tf_keras one, which the
    converter turns into its fused UNIDIRECTIONAL_SEQUENCE_LSTM (tf_keras is imported only here)."""
    if legacy:
        import tf_keras as keras
    else:
        import keras

    units = weights[1].shape[0]
    layer = keras.layers.LSTM(units, return_sequences=True, unroll=unroll)
    model = keras.Sequential([keras.Input((time_steps, weights[0].shape[0]), batch_size=1), layer])
    layer.set_weights(weights)
    return model


def tf_keras_missing() -> str | None:
    """Why the tf_keras form cannot be built here, or None."""
    try:
        import tensorflow as tf
        import tf_keras
    except ImportError as exc:
        return f"not built: tf_keras is not installed ({exc}; `pip install --no-deps {TF_KERAS_PIN}`)"
    if tf_keras.__version__.split(".")[:2] != tf.__version__.split(".")[:2]:
        return (f"not built: tf_keras {tf_keras.__version__} does not match TensorFlow {tf.__version__} (install the "
                "matching tf-keras release)")
    return None


def fused_available() -> bool:
    from tflrnn.cells import kind

    return bool(kind("lstm").fused)


def build_tflrnn(weights, time_steps: int, options: dict) -> bytes:
    from tflrnn.builder import build
    from tflrnn.cells.lstm import LSTMCell, LSTMWeights

    lstm = LSTMWeights.from_keras(*weights)
    return build(LSTMCell(lstm.num_units), weights=lstm, input_size=lstm.input_size, time_steps=time_steps,
                 **options)


def default_form(weights) -> str:
    """What tflrnn writes for this LSTM when told neither the lowering nor the recurrence: "fused", "loop" or
    "unrolled"."""
    from tflrnn.builder import build
    from tflrnn.cells.lstm import LSTMCell, LSTMWeights

    lstm = LSTMWeights.from_keras(*weights)
    types = op_types(build(LSTMCell(lstm.num_units), weights=lstm, input_size=lstm.input_size,
                           time_steps=TIME_STEPS))
    return "fused" if "UNIDIRECTIONAL_SEQUENCE_LSTM" in types else "loop" if "WHILE" in types else "unrolled"


def op_types(data: bytes) -> list[str]:
    import tflrnn
    from tflrnn.model import op_name

    return sorted({op_name(o.code) for g in tflrnn.inspect(data).model.subgraphs for o in g.operators})


def skip_reason(form: str, units: int) -> str | None:
    """Why a form is not built at this size: an unrolled graph gets one FULLY_CONNECTED by R per step, and XNNPACK
    packs each on its own, T copies of R at run time; past the GRU bench's limit it is not built."""
    if "unroll" not in form:
        return None
    packed = TIME_STEPS * GATES * units * units * 4
    if packed > SKIP_ABOVE_BYTES:
        return f"not built: XNNPACK would pack R once per step, {packed / 2**20:,.0f} MiB"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def correct(result: dict) -> bool:
    """A runtime's result ran and its output matched Keras (max error within ERROR_LIMIT)."""
    return "error" not in result and result.get("max_error") is not None and result["max_error"] <= ERROR_LIMIT


def bare_bytes(data: bytes) -> int:
    """The model's size with nothing but its graph: no tensor names, signature, metadata or description (tflrnn's
    writer leaves each empty field out). What the schema itself costs beyond the weights."""
    from tflrnn.reader import read
    from tflrnn.writer import write

    model = read(data)
    for graph in model.subgraphs:
        graph.name = ""
        for tensor in graph.tensors:
            tensor.name = ""
    model.signatures, model.metadata, model.description = [], {}, ""
    return len(write(model))


def compare(units: int, input_size: int, runs: int, forms: tuple[str, ...], work: Path) -> dict:
    import tflrnn.benchmark

    weights = keras_weights(units, input_size)
    weight_bytes = sum(w.nbytes for w in weights)
    x = np.random.default_rng(1).standard_normal((1, TIME_STEPS, input_size)).astype(np.float32)
    with quiet():
        reference = keras_model(weights, TIME_STEPS).predict(x, verbose=0)
    legacy_missing = tf_keras_missing()
    ways = {}
    for form in forms:
        reason = skip_reason(form, units) or (legacy_missing if form == "tf_keras fused" else None)
        if reason:
            ways[form] = {"skipped": reason}
            continue
        print(f"  {units} units: {form}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            if form == "tf_keras fused":
                with quiet():
                    model = keras_model(weights, TIME_STEPS, legacy=True)
                data = convert(model)
            elif form.startswith("converter"):
                data = convert(keras_model(weights, TIME_STEPS, unroll="unroll" in form))
            else:
                data = build_tflrnn(weights, TIME_STEPS, TFLRNN_OPTIONS[form])
        except Exception as exc:  # noqa: BLE001 - the table says why
            verb = "does not build" if form.startswith("tflrnn") else "does not convert"
            ways[form] = {"skipped": f"{verb}: {_one_line(exc)}"}
            continue
        seconds = time.perf_counter() - start
        path = work / f"{re.sub(r'[^a-z0-9]+', '_', form.lower()).strip('_')}_{units}.tflite"
        path.write_bytes(data)
        ways[form] = {"path": str(path), "build_s": seconds, "bytes": len(data), "ops": op_count(data),
                      "op_types": op_types(data), "bare_bytes": bare_bytes(data) if form == "tflrnn fused" else None,
                      "runtimes": {runtime: on_runtime(path, runtime, runs if runtime != "micro" else
                                                       max(5, runs // 4), x, reference, work)
                                   for runtime in RUNTIMES}}
    # The invoke targets: each tflrnn form against each converter form, pair by pair in one process (LiteRT default,
    # the state reset before each invoke), so the ratio is measured, not derived from separate runs. Only forms
    # whose output matched Keras on that runtime are timed so.
    pairs = {}
    for mine in (f for f in forms if f in TFLRNN_FORMS):
        for theirs in (f for f in forms if f in CONVERTER_FORMS):
            if all("path" in ways[f] and correct(ways[f]["runtimes"]["litert"]) for f in (mine, theirs)):
                print(f"  {units} units: pair by pair, {mine} against {theirs}", file=sys.stderr, flush=True)
                timed = tflrnn.benchmark.bench(ways[mine]["path"], vs=ways[theirs]["path"], runs=runs,
                                               warmup=max(2, runs // 10))
                pairs[f"{mine} | {theirs}"] = {"mine_us": timed["model"]["median_us"],
                                               "theirs_us": timed["vs"]["median_us"],
                                               "ratio": 1 / timed["ratio"]["median"]}  # tflrnn's time / theirs
    return {"units": units, "input_size": input_size, "weight_bytes": weight_bytes, "ways": ways, "pairs": pairs,
            "default": default_form(weights)}


def _cell(result: dict, show) -> str:
    """A runtime's cell: the value, `not run: why` (the child's own words), and a mark when the output is off."""
    if "error" in result:
        return f"not run: {result['error']}"
    text = show(result)
    if result.get("max_error") is None:
        return f"{text} (output not compared)"
    if result["max_error"] > ERROR_LIMIT:
        return f"{text} (**wrong output**: off by {result['max_error']:.1e})"
    return text


def _partitions_cell(result: dict) -> str:
    if "error" in result:
        return "n/a"
    if not result.get("partitions"):
        # TFLite logs a line per subgraph XNNPACK took nodes of; none: it took none (when the log was found)
        return "none: XNNPACK took no node" if severity_symbol()[1] else "n/a: TFLite's log level not found"
    total = sum(p["partitions"] for p in result["partitions"] if p["name"] not in ("init", "reset"))
    return f"{total}: " + _partitions(result)


def markdown(points: list[dict], forms: tuple[str, ...], left_out: dict[str, str], facts: str, command: str,
             elapsed: float) -> str:
    lines = [
        SECTION_START,
        "",
        "## LSTM against the converter's (issue 21)",
        "",
        f"Machine: {facts}.",
        "",
        f"Reproduce: `{command}` ({elapsed / 60:,.1f} minutes here; numbers vary by a few percent between runs).",
        "",
        "One LSTM, T = 50, batch 1, return_sequences, the same Keras 3 weights every way. The converter's "
        "(`TFLiteConverter.from_keras_model`, a fixed batch-1 input): the legacy `tf_keras` LSTM, which it converts "
        "to its fused UNIDIRECTIONAL_SEQUENCE_LSTM op (`tf_keras fused`), and the Keras 3 LSTM, which it converts "
        "to a WHILE loop by default and to a flat graph with `unroll=True`. tflrnn's (`LSTMWeights.from_keras`): "
        "the portable LSTM (state carried in resource variables) unrolled and as a WHILE loop (`--recurrence`) of "
        "one step a pass and of five (`--steps-per-iteration 5`)"
        + (", and the fused op (`lowering=\"fused\"`)" if "tflrnn fused" in forms else "") + ". Weights: kernel "
        "glorot-uniform, recurrent kernel orthogonal per gate, bias N(0, 0.1) plus 1 on the forget gate. Each model "
        "runs on each runtime on its own in a fresh process: the median invoke after a warm-up (the state carries "
        "between invokes), the peak memory the runtime adds over the process after its imports, the model's bytes "
        "included (VmHWM), and the largest |output - Keras 3 `model.predict`| of its first invoke (from the zero "
        f"state) on the same input; a form off by more than {ERROR_LIMIT:.0e} is marked **wrong output** and not "
        "counted for a target. `not run` gives the runtime's own reason. Partitions: TFLite's own log of what the "
        "default XNNPACK delegate took, the total over the subgraphs, then per subgraph (n of m nodes; the "
        "partitions count both the delegated and the refused runs of nodes).",
        "",
    ]
    if left_out:
        lines += ["Left out: " + "; ".join(f"{SHORT[f]}: {why}" for f, why in left_out.items()) + ".", ""]
    for point in points:
        ways = point["ways"]
        weight_bytes = point["weight_bytes"]
        lines += [
            f"### {point['units']:,} units, input {point['input_size']:,}",
            "",
            f"Raw float32 weights: {weight_bytes:,} B. tflrnn's default (no `lowering` nor `recurrence` given) "
            f"writes the {point['default']} form at this size.",
            "",
            "| | " + " | ".join(SHORT[f] for f in forms) + " |",
            "| --- | " + " | ".join("---:" for _ in forms) + " |",
        ]

        def row(label, show):
            cells = []
            for form in forms:
                way = ways[form]
                cells.append("n/a" if "skipped" in way else show(way))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

        row("build / convert", lambda w: f"{w['build_s'] * 1000:,.1f} ms" if w["build_s"] < 1 else
            f"{w['build_s']:,.2f} s")
        row("file size", lambda w: f"{w['bytes']:,} B")
        row("file - raw weights", lambda w: f"{w['bytes'] - weight_bytes:+,} B")
        row("ops (all subgraphs)", lambda w: f"{w['ops']:,}")
        for runtime in RUNTIMES:
            row(f"invoke, {RUNTIME_LABELS[runtime]}",
                lambda w, r=runtime: _cell(w["runtimes"][r], lambda x: _us(x["median_us"])))
            row(f"memory, {RUNTIME_LABELS[runtime]}",
                lambda w, r=runtime: f"{w['runtimes'][r]['memory_kb'] / 1024:,.1f} MiB"
                if "error" not in w["runtimes"][r] else "n/a")
        for runtime in RUNTIMES:
            row(f"max error vs Keras, {RUNTIME_LABELS[runtime]}",
                lambda w, r=runtime: "n/a" if "error" in w["runtimes"][r] or w["runtimes"][r]["max_error"] is None
                else f"{w['runtimes'][r]['max_error']:.1e}")
        row("XNNPACK partitions", lambda w: _partitions_cell(w["runtimes"]["litert"]))
        lines.append("")
        skipped = [f"{SHORT[f]}: {ways[f]['skipped'].removeprefix('not built: ')}" for f in forms
                   if "skipped" in ways[f]]
        if skipped:
            lines += ["Not built: " + "; ".join(skipped) + ".", ""]
        lines += ["Op types: " + "; ".join(f"{SHORT[f]} {', '.join(ways[f]['op_types'])}" for f in forms
                                           if "op_types" in ways[f]) + ".", ""]
        if point["pairs"]:
            lines += ["Pair by pair on LiteRT (XNNPACK), the state reset before each invoke (tflrnn.benchmark.bench), "
                      "tflrnn's median against the converter's:", ""]
            for name, pair in point["pairs"].items():
                mine, theirs = name.split(" | ")
                lines.append(f"- {mine} {_us(pair['mine_us'])} against {SHORT[theirs]} {_us(pair['theirs_us'])}: "
                             f"**{pair['ratio']:.2f}x**")
            lines.append("")
    lines += targets(points, forms)
    lines += ["### Full int8", "",
              "Float only here: full int8 (the fused op on the integer LSTM kernel) against the converter's is "
              "measured by scripts/bench_lstm_int8.py, in its own section below.", "",
              SECTION_END, ""]
    return "\n".join(lines)


def _met(value: float, goal: float) -> str:
    return "met" if value <= goal else f"missed by {value / goal:.2f}x"


def targets(points: list[dict], forms: tuple[str, ...]) -> list[str]:
    """Issue 21's targets against the results: invoke (pair by pair, LiteRT default) of tflrnn's fastest LSTM at
    most the converter's fastest form at 64 units and at most 0.8x it at 256 and 1024; memory (LiteRT default) at
    most 2x the weights + 16 MiB; the fused model's file at most the raw weights + 1 KiB, the portable ones' at most
    the raw weights + 16 KiB at 64 units."""
    mine_forms = [f for f in forms if f in TFLRNN_FORMS]
    lines = ["### Targets", "",
             "Invoke: tflrnn's fastest LSTM against the converter's fastest form (of those that ran and matched "
             "Keras), pair by pair on LiteRT (XNNPACK): at most 1x at 64 units, at most 0.80x at 256 and 1,024. "
             "Memory: LiteRT (XNNPACK), at most 2x the weights + 16 MiB. File: the fused model at most the raw "
             "weights + 1 KiB (every size), the portable ones at most the raw weights + 16 KiB (64 units).", ""]
    for point in points:
        ways, units, pairs = point["ways"], point["units"], point["pairs"]
        parts = []
        wrong = [SHORT[f] for f in forms if "runtimes" in ways[f] and not correct(ways[f]["runtimes"]["litert"])]
        if pairs:
            best_mine = min(mine_forms, key=lambda m: min((p["mine_us"] for n, p in pairs.items()
                                                           if n.startswith(m + " |")), default=float("inf")))
            theirs = {n.split(" | ")[1]: p for n, p in pairs.items() if n.startswith(best_mine + " |")}
            fastest = min(theirs, key=lambda t: theirs[t]["theirs_us"])
            ratio = theirs[fastest]["ratio"]
            goal = INVOKE_GOAL_SMALL if units == 64 else INVOKE_GOAL
            unbuilt = [SHORT[f] for f in CONVERTER_FORMS if f in ways and "skipped" in ways[f]]
            parts.append(f"invoke: {best_mine} {_us(theirs[fastest]['mine_us'])} is **{ratio:.2f}x** "
                         f"{SHORT[fastest]} {_us(theirs[fastest]['theirs_us'])}" + "".join(
                             f", {p['ratio']:.2f}x {SHORT[t]}" for t, p in theirs.items() if t != fastest)
                         + f" (target <= {goal:.2f}x: {_met(ratio, goal)}"
                         + (f"; {', '.join(unbuilt)} not built" if unbuilt else "") + ")")
        else:
            parts.append("invoke: no pair timed (no tflrnn form and converter form both ran and matched Keras): "
                         "missed")
        if wrong:
            parts.append(f"not counted, wrong output or not run on LiteRT (XNNPACK): {', '.join(wrong)}")
        fresh = {f: ways[f]["runtimes"]["litert"]["median_us"] for f in forms
                 if "runtimes" in ways[f] and correct(ways[f]["runtimes"]["litert"])}
        mine = [f for f in fresh if f in TFLRNN_FORMS]
        theirs_fresh = [f for f in fresh if f in CONVERTER_FORMS]
        if mine and theirs_fresh:
            best, rival = min(mine, key=fresh.get), min(theirs_fresh, key=fresh.get)
            parts.append(f"timed in fresh processes instead (the table): {best} {fresh[best] / fresh[rival]:.2f}x "
                         f"{SHORT[rival]}")
        goal_kb = memory_target_kb(point["weight_bytes"])
        counted = [f for f in mine_forms if "runtimes" in ways[f] and correct(ways[f]["runtimes"]["litert"])]
        for form in counted:
            result = ways[form]["runtimes"]["litert"]
            if "memory_kb" in result:
                parts.append(f"{form} memory {result['memory_kb'] / 1024:,.1f} MiB against {goal_kb / 1024:,.1f} "
                             f"MiB ({'met' if result['memory_kb'] <= goal_kb else 'missed'})")
        for form in counted:
            over = ways[form]["bytes"] - point["weight_bytes"]
            goal = FILE_GOAL_FUSED if form == "tflrnn fused" else FILE_GOAL_PORTABLE if units == 64 else None
            if goal is not None:
                bare = ways[form].get("bare_bytes")
                parts.append(f"{form} file {over:+,} B over the weights (target <= {goal:,} B: "
                             f"{'met' if over <= goal else f'missed by {over - goal:,} B'})" + (
                                 f", {bare - point['weight_bytes']:+,} B with no tensor names, signature, metadata "
                                 "or description" if bare else ""))
        if "tflrnn fused" not in forms:
            parts.append("fused file: no tflrnn fused form (see above)")
        lines.append(f"- {units:,} units: " + "; ".join(parts))
    return lines + [""]


def write_section(path: Path, text: str) -> None:
    """Replace the LSTM section (between its markers) or append it; the other sections are left as they are."""
    replace_section(path, text, SECTION_START, SECTION_END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 units only, fewer repeats")
    parser.add_argument("--no-write", action="store_true", help="print the section; leave BENCHMARKS.md alone")
    parser.add_argument("--sizes", help="units:input pairs, comma separated (default 64:32,256:256,1024:256)")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    sizes = ([tuple(int(v) for v in s.split(":")) for s in args.sizes.split(",")] if args.sizes else
             SIZES[:1] if args.quick else SIZES)
    left_out = {}
    forms = CONVERTER_FORMS + TFLRNN_FORMS
    if not fused_available():
        forms = tuple(f for f in forms if f != "tflrnn fused")
        left_out["tflrnn fused"] = ('tflrnn does not write the fused LSTM yet (`tflrnn.cells.kind("lstm").fused` is '
                                    'False: `lowering="fused"` refuses an LSTM)')
    missing = tf_keras_missing()
    if missing:
        print(f"tf_keras fused: {missing}", file=sys.stderr)
    started = time.perf_counter()
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for units, input_size in sizes:
            print(f"LSTM: units {units}, input {input_size}, T {TIME_STEPS}", file=sys.stderr, flush=True)
            runs = (50 if args.quick else 200) // (1 if units <= 64 else 2 if units <= 256 else 10)
            points.append(compare(units, input_size, runs, forms, work))
    elapsed = time.perf_counter() - started
    command = "scripts/bench_lstm.py" + (" --quick" if args.quick else "") + (
        f" --sizes {args.sizes}" if args.sizes else "")
    text = markdown(points, forms, left_out, machine(), command, elapsed)
    if args.json:
        args.json.write_text(json.dumps({"points": points, "left_out": left_out}, indent=2))
    if args.no_write:
        print(text)
    else:
        write_section(args.out, text)
        print(text)
        print(f"wrote the LSTM section of {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
