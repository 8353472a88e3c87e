#!/usr/bin/env python3
"""tflrnn against TensorFlow's converter, side by side in one run, on the same Keras SimpleRNN weights.

Three ways to ship one SimpleRNN (batch 1, return_sequences=True): tflrnn's fused op, the converter's default
(a WHILE loop) and the converter with unroll=True. For each: build time (in-process and whole-process), peak
memory, file size and its ratio to the raw weights, op count, invoke latency (pair by pair against tflrnn's
model, state reset before each invoke) and the largest error against Keras. Then a sweep of units (input = units,
T = 50) for build time, peak RSS, size and latency. Writes BENCHMARKS.md and a plot.

    scripts/test.sh -q && .venv/bin/pip install -e '.[bench]' && .venv/bin/python scripts/bench.py

Needs TensorFlow (the test extra) and matplotlib (the bench extra). --quick runs a smaller sweep.
"""

from __future__ import annotations

import argparse
import json
import re
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = {"units": 64, "input_size": 32, "time_steps": 50}
# litert: the classic Interpreter with its default delegate (XNNPACK); litert-builtin: without it
HEADLINE_RUNTIMES = ("litert", "litert-builtin", "compiled", "micro")
EVERY_RUNTIME_AT = (64, 256, 1024)  # sweep sizes also run on the CompiledModel API and TFLite Micro
RUNTIME_LABELS = {"litert": "LiteRT", "litert-builtin": "LiteRT, no XNNPACK", "compiled": "CompiledModel",
                  "micro": "TFLite Micro"}


def keras_weights(units: int, input_size: int, seed: int = 0) -> list[np.ndarray]:
    """SimpleRNN weights as Keras lays them out: kernel [I,U], recurrent_kernel [U,U], bias [U]."""
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6 / (input_size + units))
    kernel = rng.uniform(-limit, limit, (input_size, units)).astype(np.float32)
    q, r = np.linalg.qr(rng.standard_normal((units, units)))
    recurrent = (q * np.sign(np.diag(r))).astype(np.float32)
    bias = (rng.standard_normal(units) * 0.1).astype(np.float32)
    return [kernel, recurrent, bias]


def keras_model(weights, time_steps: int, unroll: bool = False):
    import keras

    units = weights[2].shape[0]
    layer = keras.layers.SimpleRNN(units, return_sequences=True, unroll=unroll)
    model = keras.Sequential([keras.Input((time_steps, weights[0].shape[0]), batch_size=1), layer])
    layer.set_weights(weights)
    return model


def convert(model) -> bytes:
    import tensorflow as tf

    with open(os.devnull, "w") as devnull:  # the converter prints its SavedModel signature to stdout
        saved, sys.stdout = sys.stdout, devnull
        try:
            return tf.lite.TFLiteConverter.from_keras_model(model).convert()
        finally:
            sys.stdout = saved


def median_time(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def in_process(weights, time_steps: int) -> dict[str, tuple[float, bytes]]:
    """Build time in this process, for each way; weights are already in memory for all of them."""
    import tflrnn

    cell = tflrnn.RNNCell(weights[2].shape[0])
    cell_weights = tflrnn.CellWeights.from_keras(*weights)
    results = {"tflrnn": median_time(lambda: tflrnn.build(cell, weights=cell_weights, time_steps=time_steps), 5)}
    results["tflrnn int8"] = median_time(
        lambda: tflrnn.build(cell, weights=cell_weights, time_steps=time_steps, quantize="int8"), 5)
    results["tflrnn portable"] = median_time(
        lambda: tflrnn.build(cell, weights=cell_weights, time_steps=time_steps, lowering="portable"), 5)
    big = weights[2].shape[0] >= 1024
    results["converter (WHILE)"] = median_time(lambda: convert(keras_model(weights, time_steps)), 1 if big else 3)
    if weights[2].shape[0] <= 512:  # unrolled conversion grows with T x U^2; beyond this it takes minutes
        results["converter (unroll=True)"] = median_time(
            lambda: convert(keras_model(weights, time_steps, unroll=True)), 1 if big else 3)
    return results


_PROCESS = {
    "tflrnn": (
        "import sys\nfrom tflrnn.cli import main\n"
        "try: main(['build', '--weights', sys.argv[1], '--time-steps', sys.argv[2], '-o', sys.argv[3]])\n"
        "except SystemExit as e: assert e.code == 0\n"
    ),
    "tflrnn int8": (
        "import sys\nfrom tflrnn.cli import main\n"
        "try: main(['build', '--weights', sys.argv[1], '--time-steps', sys.argv[2], '-o', sys.argv[3],"
        " '--quantize', 'int8'])\n"
        "except SystemExit as e: assert e.code == 0\n"
    ),
    "tflrnn portable": (
        "import sys\nfrom tflrnn.cli import main\n"
        "try: main(['build', '--weights', sys.argv[1], '--time-steps', sys.argv[2], '-o', sys.argv[3],"
        " '--lowering', 'portable'])\n"
        "except SystemExit as e: assert e.code == 0\n"
    ),
    "converter (WHILE)": None,  # filled below: same program with unroll False/True
    "converter (unroll=True)": None,
}
_CONVERTER = (
    "import os, sys\nos.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\nimport numpy as np, tensorflow as tf, keras\n"
    "w = np.load(sys.argv[1]); steps = int(sys.argv[2])\n"
    "layer = keras.layers.SimpleRNN(w['bias'].shape[0], return_sequences=True, unroll={unroll})\n"
    "model = keras.Sequential([keras.Input((steps, w['kernel'].shape[0]), batch_size=1), layer])\n"
    "layer.set_weights([w['kernel'], w['recurrent_kernel'], w['bias']])\n"
    "open(sys.argv[3], 'wb').write(tf.lite.TFLiteConverter.from_keras_model(model).convert())\n"
)
_PROCESS["converter (WHILE)"] = _CONVERTER.format(unroll=False)
_PROCESS["converter (unroll=True)"] = _CONVERTER.format(unroll=True)
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so it would count this (TensorFlow-sized) parent's pages that
# the child shared between fork and exec.
_PEAK = (
    "\nfor line in open('/proc/self/status'):\n"
    "    if line.startswith('VmHWM:'): print('peak_kb', line.split()[1])\n"
)


def whole_process(way: str, npz: Path, time_steps: int, out: Path) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of a fresh process that reads the weights and writes the model."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PROCESS[way] + _PEAK, str(npz), str(time_steps), str(out)],
                          capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    peak = int(done.stdout.strip().splitlines()[-1].split()[1])
    return elapsed, peak


# One model on one runtime in a fresh process: the median invoke, and the peak memory the runtime adds over the
# process after its imports (the model's bytes included: the runtime holds them), from VmHWM.
_RUNTIME_PROBE = r"""
import json, statistics, sys, time
import numpy as np
def peak_kb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'): return int(line.split()[1])
path, runtime, runs, elements, arena = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if runtime.startswith('litert'):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
elif runtime == 'compiled':
    from ai_edge_litert.compiled_model import CompiledModel
else:
    from tflite_micro.python.tflite_micro import runtime as tflm
base = peak_kb()
data = open(path, 'rb').read()
x = np.ones(elements, np.float32) * 0.1
if runtime.startswith('litert'):
    resolver = OpResolverType.AUTO if runtime == 'litert' else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail['index'], x.reshape(detail['shape']))
    invoke = interpreter.invoke
elif runtime == 'compiled':
    model = CompiledModel.from_buffer(data)
    inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
    inputs[0].write(x)
    invoke = lambda: model.run_by_index(0, inputs, outputs)
else:
    interpreter = tflm.Interpreter.from_bytes(data, arena_size=arena)
    interpreter.set_input(x.reshape(interpreter.get_input_details(0)['shape']), 0)
    invoke = interpreter.invoke
start = time.perf_counter()
invoke()
print('first_invoke_us', (time.perf_counter() - start) * 1e6, flush=True)
for _ in range(max(2, runs // 10)):
    invoke()
times = []
for _ in range(runs):
    start = time.perf_counter()
    invoke()
    times.append(time.perf_counter() - start)
print(json.dumps({'median_us': statistics.median(times) * 1e6, 'memory_kb': peak_kb() - base}))
"""
RUNTIME_TIMEOUT_S = 60


def on_runtime(path: Path, runtime: str, runs: int) -> dict:
    """{"median_us", "memory_kb"} of the model on `runtime` (litert, litert-builtin, compiled, micro), or
    {"error": why} when it does not run there (the runtime's own message, or the timeout)."""
    import tflrnn
    from tflrnn.runners import micro_arena_bytes

    model = tflrnn.inspect(path.read_bytes()).model
    graph = model.subgraphs[0]
    elements = int(np.prod(graph.tensors[graph.inputs[0]].shape))
    arena = micro_arena_bytes(model)
    try:
        done = subprocess.run([sys.executable, "-c", _RUNTIME_PROBE, str(path), runtime, str(runs), str(elements),
                               str(arena)], capture_output=True, text=True, timeout=RUNTIME_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        started = "first_invoke_us" in (exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or "")
        return {"error": f"{f'did not finish {runs} invokes' if started else 'its first invoke did not finish'} "
                         f"within {RUNTIME_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"error": _reason(done.stderr, done.returncode)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reason(stderr: str, code: int) -> str:
    """Why a runtime refused a model, in its own words ('Variable tensors not yet supported')."""
    for known in ("Variable tensors not yet supported", "Didn't find op for builtin opcode '"):
        if known in stderr:
            return (known + stderr.split(known, 1)[1].split("'")[0] + "'") if known.endswith("'") else known
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING"))]
    return lines[-1][:100] if lines else f"exit {code}"


def baseline_peak_kb() -> int:
    """Peak RSS of a process that imports what `tflrnn build` imports and builds nothing."""
    program = "import numpy, click, tflrnn.cli, tflrnn.builder, tflrnn.config" + _PEAK
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1].split()[1])


def op_count(data: bytes) -> int:
    import tflrnn

    return sum(len(g.operators) for g in tflrnn.inspect(data).model.subgraphs)


def max_error(data: bytes, model, x: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return float(np.max(np.abs(y - model.predict(x, verbose=0))))


def compare(units: int, input_size: int, time_steps: int, runs: int, work: Path, errors: bool) -> dict:
    import tflrnn.benchmark

    weights = keras_weights(units, input_size)
    weight_bytes = sum(w.nbytes for w in weights)
    npz = work / f"w{units}.npz"
    np.savez(npz, kernel=weights[0], recurrent_kernel=weights[1], bias=weights[2])
    built = in_process(weights, time_steps)
    files = {}
    for way, (_, data) in built.items():
        files[way] = work / f"{way.replace(' ', '_').replace('(', '').replace(')', '').replace('=', '')}_{units}.tflite"
        files[way].write_bytes(data)
    x = np.random.default_rng(1).standard_normal((1, time_steps, input_size)).astype(np.float32)
    reference = keras_model(weights, time_steps) if errors else None
    # Latency: each converter model timed pair by pair with tflrnn's in one run; tflrnn's own median comes from
    # its pairing with the WHILE model, so every number in a row was measured together.
    timings = {way: tflrnn.benchmark.bench(files["tflrnn"], vs=files[way], runs=runs, warmup=max(2, runs // 10))
               for way in built if way != "tflrnn"}
    timings["tflrnn"] = {"vs": timings["converter (WHILE)"]["model"], "ratio": {"median": 1.0}}
    rows = {}
    for way, (seconds, data) in built.items():
        process_seconds, peak_kb = whole_process(way, npz, time_steps, work / "out.tflite")
        timing = timings[way]
        rows[way] = {
            "build_in_process_s": seconds,
            "build_whole_process_s": process_seconds,
            "peak_rss_kb": peak_kb,
            "bytes": len(data),
            "bytes_per_weight_byte": len(data) / weight_bytes,
            "ops": op_count(data),
            "invoke_median_us": timing["vs"]["median_us"],
            "invoke_ratio_to_tflrnn": timing["ratio"]["median"],
            "max_error_vs_keras": max_error(data, reference, x) if errors else None,
            # every runtime for the headline; LiteRT's default (its memory) across the sweep
            "runtimes": {runtime: on_runtime(files[way], runtime, runs)
                         for runtime in (HEADLINE_RUNTIMES if errors else
                                         ("litert", "compiled", "micro") if units in EVERY_RUNTIME_AT else
                                         ("litert",))},
        }
        if way == "tflrnn portable":
            rows[way]["recurrence"] = "loop" if "WHILE" in {
                tflrnn.model.op_name(op.code) for op in tflrnn.inspect(data).model.subgraphs[0].operators} else "unrolled"
    return {"units": units, "input_size": input_size, "time_steps": time_steps, "weight_bytes": weight_bytes,
            "ways": rows}


def delegate_check(units: int, runs: int = 15) -> dict:
    """Median invoke (us) of the WHILE model with and without the default XNNPACK delegate, and of the fused op:
    tells whether XNNPACK explains the converter's speed at this size."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    import tflrnn

    weights = keras_weights(units, units)
    models = {
        "while_xnnpack": (convert(keras_model(weights, 50)), OpResolverType.AUTO),
        "while_builtin": (None, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
        "fused": (tflrnn.build(tflrnn.RNNCell(units), weights=tflrnn.CellWeights.from_keras(*weights), time_steps=50),
                  OpResolverType.AUTO),
    }
    models["while_builtin"] = (models["while_xnnpack"][0], models["while_builtin"][1])
    result = {"units": units}
    for name, (data, resolver) in models.items():
        interpreter = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.ones(detail["shape"], np.float32))
        times = []
        for _ in range(runs):
            interpreter.reset_all_variables()
            start = time.perf_counter()
            interpreter.invoke()
            times.append(time.perf_counter() - start)
        result[name] = statistics.median(times) * 1e6
    return result


def recurrence_check(sizes, work: Path, runs: int = 30) -> list[dict]:
    """The portable lowering's two forms of the steps at each size (input = units, T = 50): invoke and memory on
    LiteRT, with and without XNNPACK: what `--recurrence auto` chooses between."""
    import tflrnn

    results = []
    for units in sizes:
        weights = tflrnn.CellWeights.from_keras(*keras_weights(units, units))
        result = {"units": units}
        for form in ("unrolled", "loop"):
            path = work / f"portable_{form}_{units}.tflite"
            path.write_bytes(tflrnn.build(tflrnn.RNNCell(units), weights=weights, time_steps=50,
                                          lowering="portable", recurrence=form))
            result[form] = on_runtime(path, "litert", runs)
            result[f"{form}-builtin"] = on_runtime(path, "litert-builtin", runs)
        results.append(result)
    return results


def replace_section(path: Path, text: str, start: str, end: str) -> None:
    """Write `text` over the section of `path` between the markers `start` and `end` (the text holds them), or
    append it; the other sections are left as they are."""
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ai_edge_litert
    import tensorflow as tf

    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, numpy {np.__version__}, TensorFlow {tf.__version__}, ai-edge-litert "
            f"{ai_edge_litert.__version__}")


def markdown(headline: dict, sweep: list[dict], baseline_kb: int, about: str, command: str, plot: str,
             delegates: dict, forms: list[dict]) -> str:
    from tflrnn.lowering.portable import LOOP_ABOVE_R_BYTES

    ways = [w for w in headline["ways"] if w != "tflrnn int8"] + ["tflrnn int8"]  # int8 last, as its own column
    h = headline["ways"]
    t = h["tflrnn"]
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {about}.",
        "",
        f"Reproduce: `{command}` (numbers vary by a few percent between runs).",
        "",
        f"## One SimpleRNN: units {headline['units']}, input {headline['input_size']}, "
        f"T {headline['time_steps']}, batch 1",
        "",
        f"Raw weights: {headline['weight_bytes']:,} bytes. Latency is the median invoke with the state reset "
        "before each, timed pair by pair against tflrnn's float model in one run (LiteRT's default delegates "
        "on). `tflrnn portable` is `--lowering portable` (plain builtin ops, the state in resource variables); "
        "`tflrnn int8` is the hybrid model (`--quantize int8`: int8 W and R, float activations); its error "
        "against Keras is the int8 quantization's.",
        "",
        "| | " + " | ".join(ways) + " |",
        "| --- | " + " | ".join("---:" for _ in ways) + " |",
    ]

    def row(label, key, fmt):
        return f"| {label} | " + " | ".join(fmt(h[w][key]) for w in ways) + " |"

    lines += [
        row("build, in-process", "build_in_process_s", lambda v: f"{v * 1000:,.1f} ms"),
        row("build, whole process", "build_whole_process_s", lambda v: f"{v:,.2f} s"),
        row("peak RSS, whole process", "peak_rss_kb", lambda v: f"{v / 1024:,.0f} MiB"),
        row("file size", "bytes", lambda v: f"{v:,} B"),
        row("size / raw float weights", "bytes_per_weight_byte", lambda v: f"{v:.2f}x"),
        row("ops", "ops", str),
        row("invoke (median)", "invoke_median_us", lambda v: f"{v:,.1f} us"),
        row("invoke vs tflrnn", "invoke_ratio_to_tflrnn", lambda v: f"{v:.2f}x"),
        row("max error vs Keras", "max_error_vs_keras", lambda v: "n/a" if v is None else f"{v:.1e}"),
    ]
    for runtime in HEADLINE_RUNTIMES:
        if all(runtime in h[w]["runtimes"] for w in ways):
            lines += [
                f"| invoke, {RUNTIME_LABELS[runtime]} | " + " | ".join(
                    _cell(h[w]["runtimes"][runtime], lambda r: f"{r['median_us']:,.1f} us", reason=True)
                    for w in ways) + " |",
                f"| memory, {RUNTIME_LABELS[runtime]} | " + " | ".join(
                    _cell(h[w]["runtimes"][runtime], lambda r: f"{r['memory_kb'] / 1024:,.1f} MiB") for w in ways)
                + " |",
            ]
    lines += [
        "",
        "The runtime rows time each model on its own in a fresh process (median of the same number of invokes, "
        "after a warm-up; the state carries between them); memory is the peak the runtime adds over that process "
        "after its imports, the model's bytes included (VmHWM). `n/a` gives the runtime's own reason.",
        "",
        "Targets against the converter's default (WHILE) model:",
        "",
    ]
    w = h["converter (WHILE)"]
    targets = [
        ("build >= 100x faster in-process", w["build_in_process_s"] / t["build_in_process_s"], 100, ">="),
        ("file <= 0.6x its size", t["bytes"] / w["bytes"], 0.6, "<="),
        ("invoke >= 3x faster", w["invoke_ratio_to_tflrnn"], 3, ">="),
    ]
    for label, value, goal, sense in targets:
        met = value >= goal if sense == ">=" else value <= goal
        lines.append(f"- {label}: **{value:,.2f}x** ({'met' if met else 'missed'})")
    peers = [h[way]["invoke_median_us"] for way in ("tflrnn", "converter (WHILE)", "converter (unroll=True)") if way in h]
    p = h["tflrnn portable"]
    lines += [
        "",
        "Targets of the portable lowering:",
        "",
        f"- invoke at most 0.8x the fastest of the fused op, WHILE and unrolled: **{p['invoke_median_us'] / min(peers):.2f}x** "
        f"({'met' if p['invoke_median_us'] <= 0.8 * min(peers) else 'missed'})",
        f"- file at most the raw weights + 16 KiB: **{p['bytes'] - headline['weight_bytes']:,} B** over "
        f"({'met' if p['bytes'] - headline['weight_bytes'] <= 16384 else 'missed'})",
    ]
    if "converter (unroll=True)" in h:
        u = h["converter (unroll=True)"]
        lines.append(
            f"- the fastest peer, the unrolled graph: its invoke takes {u['invoke_ratio_to_tflrnn']:.2f}x tflrnn's, "
            f"its file is {u['bytes'] / t['bytes']:.2f}x tflrnn's, and it converts in "
            f"{u['build_in_process_s'] * 1000:,.0f} ms against tflrnn's {t['build_in_process_s'] * 1000:,.2f} ms"
        )
    lines += [
        "",
        "## Sweep: input = units, T = 50",
        "",
        f"Peak RSS is a whole `tflrnn build --weights` process; the interpreter-free baseline (imports only) is "
        f"{baseline_kb / 1024:,.0f} MiB. Throughput is raw weight bytes over in-process build time.",
        "",
        "| units | weights | tflrnn build | throughput | tflrnn peak RSS - baseline | / weights | tflrnn size | "
        "WHILE convert | WHILE size | WHILE peak RSS | tflrnn invoke | WHILE invoke | int8 size | int8 invoke |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for point in sweep:
        t, w, q = point["ways"]["tflrnn"], point["ways"]["converter (WHILE)"], point["ways"]["tflrnn int8"]
        extra = (t["peak_rss_kb"] - baseline_kb) * 1024
        lines.append(
            f"| {point['units']:,} | {point['weight_bytes'] / 2**20:,.2f} MiB | {t['build_in_process_s'] * 1000:,.2f} ms"
            f" | {point['weight_bytes'] / t['build_in_process_s'] / 1e6:,.0f} MB/s | {extra / 2**20:,.1f} MiB | "
            f"{extra / point['weight_bytes']:.2f}x | {t['bytes']:,} B | {w['build_in_process_s']:,.2f} s | "
            f"{w['bytes']:,} B | {w['peak_rss_kb'] / 1024:,.0f} MiB | {t['invoke_median_us']:,.0f} us | "
            f"{w['invoke_median_us']:,.0f} us | {q['bytes']:,} B | {q['invoke_median_us']:,.0f} us |"
        )
    lines += portable_sweep(sweep)
    crossover = next((p["units"] for p in sweep
                      if p["ways"]["converter (WHILE)"]["invoke_median_us"] < p["ways"]["tflrnn"]["invoke_median_us"]),
                     None)
    last = sweep[-1]
    lines += [
        "",
        "## Reading the numbers",
        "",
        "- At small sizes the per-iteration overhead of the WHILE loop (21 ops) dominates and the fused op wins. "
        "The unrolled graph has no loop (and 202 ops): faster still at 64 units, at 2.6x the file size.",
        (f"- From {crossover} units (input = units, batch 1) the WHILE model invokes faster than the fused op. "
         "XNNPACK (which does not take UNIDIRECTIONAL_SEQUENCE_RNN) is not the main reason: at "
         f"{delegates['units']} units the WHILE model takes {delegates['while_xnnpack'] / 1000:,.1f} ms with the "
         f"default XNNPACK delegate and {delegates['while_builtin'] / 1000:,.1f} ms without it, the fused op "
         f"{delegates['fused'] / 1000:,.1f} ms. The fused kernel steps with TFLite's tensor_utils matrix-vector "
         "routine, which here is slower than FULLY_CONNECTED's GEMV; phones run a NEON build of that routine, so "
         "measure there with `tflrnn bench --vs` before choosing at large sizes. tflrnn still gives one op, state "
         "that carries across invokes, and a build in milliseconds instead of seconds."
         if crossover else "- The fused op invokes faster than the WHILE model at every size measured."),
        f"- Peak memory of `tflrnn build --weights` at {last['units']} units is the weights as read plus the "
        "flatbuffer being written, about 2x the weight bytes above the baseline; going lower would mean streaming "
        "the weights to the file after the tables (buffer offsets), which tflrnn does not do.",
        (f"- The hybrid int8 model (`--quantize int8`) runs the kernel's int8 path: at {last['units']} units it "
         f"invokes in {last['ways']['tflrnn int8']['invoke_median_us'] / 1000:,.1f} ms against "
         f"{last['ways']['converter (WHILE)']['invoke_median_us'] / 1000:,.1f} ms for the WHILE model and "
         f"{last['ways']['tflrnn']['invoke_median_us'] / 1000:,.1f} ms for the float fused op, in a quarter of the "
         f"bytes; its error against Keras is int8 rounding ({h['tflrnn int8']['max_error_vs_keras']:.1e} at "
         f"{headline['units']} units)."),
        "- Small cells build in well under a millisecond, so their throughput figures measure fixed costs; the "
        "throughput target concerns the largest cell.",
        "- The portable lowering (one FULLY_CONNECTED for every step's input projection, then each step's "
        "FULLY_CONNECTED by R, ADD and TANH) is the fastest float model at " + ", ".join(
            f"{p['units']:,}" for p in sweep if _fastest_peer(p) is None) + " units" + "".join(
            f"; at {p['units']:,} units the {_fastest_peer(p)[0]} is faster ({_fastest_peer(p)[1]:,.0f} us against "
            f"{p['ways']['tflrnn portable']['invoke_median_us']:,.0f} us)" for p in sweep
            if _fastest_peer(p) is not None) + ".",
        "- Its two forms of the steps (`--recurrence`; T = 50, input = units, each timed on its own in a fresh "
        "process): unrolled, XNNPACK packs each step's FULLY_CONNECTED by R on its own, one copy of R per step; "
        "as a WHILE loop, its one FULLY_CONNECTED by R is packed once, for about 1 us of loop overhead per step. "
        "`--recurrence auto` unrolls while the unrolled steps hold at most 8 MiB of R (T x units^2 x 4 bytes over "
        "the layers' directions: 128 units at T = 50) and loops beyond.",
        "",
        "| units | unrolled | loop | unrolled, no XNNPACK | loop, no XNNPACK | auto |",
        "| ---: | ---: | ---: | ---: | ---: | :--- |",
        *(f"| {f['units']:,} | " + " | ".join(
            _cell(f[k], lambda r: f"{r['median_us']:,.0f} us, {r['memory_kb'] / 1024:,.1f} MiB")
            for k in ("unrolled", "loop", "unrolled-builtin", "loop-builtin"))
          + f" | {'loop' if 50 * f['units'] ** 2 * 4 > LOOP_ABOVE_R_BYTES else 'unrolled'} |" for f in forms),
        "",
        f"![latency and size against units]({plot})",
        "",
    ]
    return "\n".join(lines)


def _fastest_peer(point: dict) -> tuple[str, float] | None:
    """The peer that invokes faster than the portable model at this size (its name and time), or None."""
    names = {"tflrnn": "fused op", "converter (WHILE)": "WHILE model", "converter (unroll=True)": "unrolled model"}
    ways = point["ways"]
    best = min((ways[w]["invoke_median_us"], w) for w in names if w in ways)
    return (names[best[1]], best[0]) if best[0] < ways["tflrnn portable"]["invoke_median_us"] else None


def portable_sweep(sweep: list[dict]) -> list[str]:
    """The portable lowering against its peers at every size: invoke and runtime memory (LiteRT default)."""
    peers = ("tflrnn", "converter (WHILE)", "converter (unroll=True)")
    names = {"tflrnn": "fused", "converter (WHILE)": "WHILE", "converter (unroll=True)": "unrolled"}
    lines = [
        "",
        "## Sweep: the portable lowering against its peers (input = units, T = 50, LiteRT default)",
        "",
        "Invoke is the pair-by-pair median above; memory is what the interpreter adds over its imports, the model "
        "included. The portable model's steps are unrolled or a WHILE loop, as `--recurrence auto` chose. The "
        "converter's unrolled model is not converted beyond 512 units (minutes per model).",
        "",
        "| units | weights | portable steps | portable invoke | " + " | ".join(f"{names[p]} invoke" for p in peers)
        + " | portable memory | " + " | ".join(f"{names[p]} memory" for p in peers)
        + " | memory target | portable size |",
        "| ---: | ---: | :--- | " + " | ".join("---:" for _ in range(2 * len(peers) + 4)) + " |",
    ]
    for point in sweep:
        ways = point["ways"]
        portable = ways["tflrnn portable"]

        def invoke(way):
            return f"{ways[way]['invoke_median_us']:,.0f} us" if way in ways else "n/a"

        def memory(way):
            return _cell(ways[way]["runtimes"]["litert"], lambda r: f"{r['memory_kb'] / 1024:,.1f} MiB") \
                if way in ways else "n/a"

        lines.append(
            f"| {point['units']:,} | {point['weight_bytes'] / 2**20:,.2f} MiB | {portable['recurrence']} | "
            f"{invoke('tflrnn portable')} | " + " | ".join(invoke(p) for p in peers) + f" | "
            f"{memory('tflrnn portable')} | " + " | ".join(memory(p) for p in peers) + f" | "
            f"{memory_target_kb(point['weight_bytes']) / 1024:,.1f} MiB | {portable['bytes']:,} B |")
    lines += [
        "",
        "The same models on the CompiledModel API and TFLite Micro (each timed on its own in a fresh process; "
        "memory as above; `n/a` gives the runtime's reason):",
        "",
        "| units | runtime | portable invoke | " + " | ".join(f"{names[p]} invoke" for p in peers)
        + " | portable memory | " + " | ".join(f"{names[p]} memory" for p in peers) + " |",
        "| ---: | :--- | " + " | ".join("---:" for _ in range(2 * len(peers) + 2)) + " |",
    ]
    for point in sweep:
        ways = point["ways"]
        for runtime in ("compiled", "micro"):
            if runtime not in ways["tflrnn portable"]["runtimes"]:
                continue
            results = [ways[w]["runtimes"][runtime] if w in ways else {"error": "not converted"}
                       for w in ("tflrnn portable", *peers)]
            lines.append(
                f"| {point['units']:,} | {RUNTIME_LABELS[runtime]} | " + " | ".join(
                    _cell(r, lambda r: f"{r['median_us']:,.0f} us", reason=True) for r in results) + " | "
                + " | ".join(_cell(r, lambda r: f"{r['memory_kb'] / 1024:,.1f} MiB") for r in results) + " |")
    lines += ["", "Targets of the portable lowering across the sweep:", ""]
    for point in sweep:
        ways = point["ways"]
        portable = ways["tflrnn portable"]
        fastest = min(ways[p]["invoke_median_us"] for p in peers if p in ways)
        used = portable["runtimes"]["litert"].get("memory_kb")
        goal = memory_target_kb(point["weight_bytes"])
        speed = ("" if point["units"] not in (256, 1024) else
                 f"invoke {portable['invoke_median_us'] / fastest:.2f}x the fastest peer "
                 f"({'met' if portable['invoke_median_us'] < fastest else 'missed'}: faster than all three); ")
        memory = ("memory n/a (missed: " + portable["runtimes"]["litert"].get("error", "not measured") + ")"
                  if used is None else f"memory {used / 1024:,.1f} MiB against {goal / 1024:,.1f} MiB "
                  f"({'met' if used <= goal else 'missed'})")
        lines.append(f"- {point['units']:,} units: {speed}{memory}")
    return lines


def _cell(result: dict, show, reason: bool = False) -> str:
    if "error" in result:
        return f"n/a: {result['error']}" if reason else "n/a"
    return show(result)


def memory_target_kb(weight_bytes: int) -> float:
    """The portable lowering's memory target: twice the weights plus 16 MiB."""
    return (2 * weight_bytes + 16 * 2**20) / 1024


def plot(sweep: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = [p["units"] for p in sweep]
    figure, (latency, size) = plt.subplots(1, 2, figsize=(11, 4.2))
    for way, style in (("tflrnn", "o-"), ("tflrnn portable", "v-"), ("tflrnn int8", "d-."),
                       ("converter (WHILE)", "s--"), ("converter (unroll=True)", "^:")):
        points = [(p["units"], p["ways"][way]) for p in sweep if way in p["ways"]]
        if not points:
            continue
        xs = [u for u, _ in points]
        latency.plot(xs, [r["invoke_median_us"] for _, r in points], style, label=way)
        size.plot(xs, [r["bytes"] / 2**20 for _, r in points], style, label=way)
    size.plot(units, [p["weight_bytes"] / 2**20 for p in sweep], "k-", alpha=0.3, label="raw weights")
    for axis, title, label in ((latency, "Invoke latency (T = 50, batch 1)", "median us per invoke"),
                               (size, "File size", "MiB")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("units (= input size)")
        axis.set_ylabel(label)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="units 16..256 only, fewer runs")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks.png")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    units = [16, 32, 64, 128, 256] if args.quick else [16, 32, 64, 128, 256, 512, 1024, 2048]
    runs = 50 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("headline: units 64, input 32, T 50", file=sys.stderr)
        headline = compare(**HEADLINE, runs=runs, work=work, errors=True)
        sweep = []
        for u in units:
            print(f"sweep: units {u}", file=sys.stderr)
            sweep.append(compare(u, u, 50, runs=max(10, runs // (1 + u // 128)), work=work, errors=False))
        baseline = baseline_peak_kb()
        delegates = delegate_check(256 if args.quick else 1024)
        forms = recurrence_check((64, 256) if args.quick else (64, 128, 256, 1024), work)
    command = "scripts/bench.py" + (" --quick" if args.quick else "")
    plot(sweep, args.plot)
    relative_plot = os.path.relpath(args.plot, args.out.parent)
    text = markdown(headline, sweep, baseline, machine(), command, relative_plot, delegates, forms)
    # The sections other scripts write (`<!-- int8: scripts/bench_int8.py -->` ... `<!-- /int8 -->`, the GRU's) are
    # theirs: kept as they were
    previous = args.out.read_text() if args.out.exists() else ""
    kept = [m.group(0) for m in re.finditer(r"<!-- (\w+): .*?<!-- /\1 -->\n", previous, re.S)]
    args.out.write_text("\n".join([text.rstrip("\n") + "\n", *kept]))
    if args.json:
        args.json.write_text(json.dumps({"headline": headline, "sweep": sweep, "baseline_peak_kb": baseline,
                                         "delegates": delegates, "forms": forms}, indent=2))
    print(f"wrote {args.out} and {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
