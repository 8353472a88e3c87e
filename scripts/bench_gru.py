#!/usr/bin/env python3
"""tflrnn's GRU against TensorFlow's converter, side by side in one run, on the same Keras 3 GRU weights (issue 20).

One GRU (reset_after=True, Keras 3's default), T = 50, batch 1, return_sequences, five ways: the converter's
default (a WHILE loop) and its unroll=True graph of the Keras layer (from_keras_model, a fixed batch-1 input), and
tflrnn's portable GRU unrolled and as a WHILE loop of one and of five steps a pass (GRUWeights.from_keras of the
same weights). At 64 units (input 32), 256 (input 256) and 1024 (input 256): invoke on LiteRT with its default
XNNPACK delegate and without, on the CompiledModel API and on TFLite Micro (each model on its own in a fresh
process, as scripts/bench.py times them), the memory the runtime adds, the file size, the raw float32 weights, the XNNPACK partitions, and the largest
error of each runtime's output against Keras' `model.predict` on the same input. The LiteRT default is also timed
pair by pair (tflrnn.benchmark.bench, the state reset before each invoke) for the invoke targets. Then full int8
at 64 and 256 units, on the same 64 calibration sequences and 16 test sequences: the converter's (WHILE and
unroll=True) against tflrnn's (portable, quantize="full-int8", state="carry" and state="zero"), each invoke from
zeros for the error against Keras float, with the TFLite Micro arena each needs, and issue 20's full-int8 targets.

    .venv/bin/python scripts/bench_gru.py            # writes the GRU section of BENCHMARKS.md
    .venv/bin/python scripts/bench_gru.py --quick    # 64 units only, fewer repeats
    .venv/bin/python scripts/bench_gru.py --no-write # print the section only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TIME_STEPS = 50
SIZES = ((64, 32), (256, 256), (1024, 256))  # (units, input)
# tflrnn's forms: (recurrence, steps per pass of the loop)
MINE = {"tflrnn unrolled": ("unrolled", 1), "tflrnn loop": ("loop", 1), "tflrnn loop (5 a pass)": ("loop", 5)}
FORMS = ("converter (WHILE)", "converter (unroll=True)", *MINE)
SHORT = {"converter (WHILE)": "converter WHILE", "converter (unroll=True)": "converter unroll=True",
         "tflrnn unrolled": "tflrnn unrolled", "tflrnn loop": "tflrnn loop",
         "tflrnn loop (5 a pass)": "tflrnn loop, 5 a pass",
         "tflrnn (state=carry)": "tflrnn state=carry", "tflrnn (state=zero)": "tflrnn state=zero"}
INT8_FORMS = ("converter (WHILE)", "converter (unroll=True)", "tflrnn (state=carry)", "tflrnn (state=zero)")
INT8_MAX_UNITS = 256  # the full-int8 trials run at the sizes up to this many units
RUNTIMES = ("litert", "litert-builtin", "compiled", "micro")
RUNTIME_LABELS = {"litert": "LiteRT (XNNPACK)", "litert-builtin": "LiteRT builtin", "compiled": "CompiledModel",
                  "micro": "TFLite Micro"}
# An unrolled graph gets one FULLY_CONNECTED by R per step and XNNPACK packs each on its own: T copies of R at run
# time. Forms whose file or packed copies would pass this are not built.
SKIP_ABOVE_BYTES = 200 * 2**20
RUNTIME_TIMEOUT_S = 30
CALIBRATION = 64
INT8_TESTS = 16
SECTION_START, SECTION_END = "<!-- gru: scripts/bench_gru.py -->", "<!-- /gru -->"


# The converter's fd-level quiet (scripts/int8_converter.py) and the machine facts line (scripts/bench.py): one
# each, shared by the benchmarks
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import machine, replace_section  # noqa: E402
from int8_converter import _quiet as quiet  # noqa: E402


def keras_weights(units: int, input_size: int, seed: int = 0) -> list[np.ndarray]:
    """A Keras GRU's weights (reset_after): kernel [I, 3U] glorot-uniform, recurrent_kernel [U, 3U] orthogonal per
    gate, bias [2, 3U] N(0, 0.1) (not Keras' zeros, so both bias rows are exercised)."""
    rng = np.random.default_rng(seed)
    limit = np.sqrt(6 / (input_size + 3 * units))
    kernel = rng.uniform(-limit, limit, (input_size, 3 * units)).astype(np.float32)
    blocks = []
    for _ in range(3):
        q, r = np.linalg.qr(rng.standard_normal((units, units)))
        blocks.append(q * np.sign(np.diag(r)))
    recurrent = np.concatenate(blocks, axis=1).astype(np.float32)
    bias = (rng.standard_normal((2, 3 * units)) * 0.1).astype(np.float32)
    return [kernel, recurrent, bias]


def keras_model(weights, time_steps: int, unroll: bool = False):
    import keras

    units = weights[1].shape[0]
    layer = keras.layers.GRU(units, return_sequences=True, unroll=unroll, reset_after=True)
    model = keras.Sequential([keras.Input((time_steps, weights[0].shape[0]), batch_size=1), layer])
    layer.set_weights(weights)
    return model


def convert(model, calibration=None) -> bytes:
    """The converter's float model, or its full int8 (float interface, as scripts/int8_converter.py makes it)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample] for sample in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    with quiet():
        return bytes(converter.convert())


_CONVERT_INT8 = r"""
import faulthandler, os, sys
import numpy as np
faulthandler.enable(file=os.fdopen(os.dup(2), "w"))  # a crash's Python stack, past bench_gru.quiet()'s redirect
sys.path.insert(0, sys.argv[1])
import bench_gru
arrays = np.load(sys.argv[2])
model = bench_gru.keras_model([arrays["kernel"], arrays["recurrent_kernel"], arrays["bias"]], bench_gru.TIME_STEPS,
                              unroll=sys.argv[3] == "1")
open(sys.argv[4], "wb").write(bench_gru.convert(model, arrays["calibration"]))
"""


def convert_int8_in_child(weights, unroll: bool, calibration, path: Path, work: Path) -> str | None:
    """The converter's full int8, in a child process: its calibrator can crash the process (it segfaults on the
    WHILE GRU here). None when it wrote `path`, else why not."""
    npz = work / "int8_weights.npz"
    np.savez(npz, kernel=weights[0], recurrent_kernel=weights[1], bias=weights[2], calibration=calibration)
    try:
        done = subprocess.run([sys.executable, "-c", _CONVERT_INT8, str(ROOT / "scripts"), str(npz),
                               "1" if unroll else "0", str(path)], capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        return "the conversion did not finish within 20 minutes"
    if done.returncode < 0:
        import signal

        phase = " in its calibrator" if "optimize/calibrator.py" in done.stderr else ""
        return f"the converter crashed{phase} ({signal.Signals(-done.returncode).name})"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(
            ("I0000", "W0000", "INFO", "WARNING", " "))]
        return " ".join((lines[-1] if lines else f"exit {done.returncode}").split())[:160]
    return None


def build_tflrnn(weights, time_steps: int, recurrence: str, steps_per_iteration: int = 1) -> bytes:
    from tflrnn.builder import build
    from tflrnn.cells.gru import GRUCell, GRUWeights

    gru = GRUWeights.from_keras(*weights, reset_after=True)
    return build(GRUCell(gru.num_units), weights=gru, input_size=gru.input_size, time_steps=time_steps,
                 recurrence=recurrence, steps_per_iteration=steps_per_iteration)


def skip_reason(form: str, units: int, input_size: int) -> str | None:
    """Why a form is not built at this size: an unrolled graph whose T packed copies of R pass ~200 MB."""
    if "unroll" not in form:
        return None
    packed = TIME_STEPS * 3 * units * units * 4
    if packed > SKIP_ABOVE_BYTES:
        return f"not built: XNNPACK would pack R once per step, {packed / 2**20:,.0f} MiB"
    return None


# One model on one runtime in a fresh process (scripts/bench.py's probe, plus the output of the first invoke, from
# the zero state, for the error against Keras, and for LiteRT's default the XNNPACK partition log): the median
# invoke and the peak memory the runtime adds over the process after its imports (VmHWM; the model's bytes
# included: the runtime holds them).
_PROBE = r"""
import json, os, statistics, subprocess, sys, time
import numpy as np
def peak_kb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'): return int(line.split()[1])
path, runtime, runs, arena, xpath, ypath = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
if runtime.startswith('litert'):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    if runtime == 'litert':
        # TFLite logs 'Replacing n out of m node(s) with delegate ..., yielding k partitions for subgraph s' at
        # VERBOSE only; the minimal logger's threshold is a (local) static of this library: lower it in place.
        # (the parent found the offset: readelf's output here would raise this process's peak memory)
        lib, offset = sys.argv[8], int(sys.argv[9])
        if offset:
            import ctypes
            start = min(int(l.split('-')[0], 16) for l in open('/proc/self/maps') if l.rstrip().endswith(lib))
            ctypes.c_int.from_address(start + offset).value = 0  # TFLITE_LOG_VERBOSE
elif runtime == 'compiled':
    from ai_edge_litert.compiled_model import CompiledModel
else:
    from tflite_micro.python.tflite_micro import runtime as tflm
base = peak_kb()
data = open(path, 'rb').read()
x = np.load(xpath)
extra = {}
if runtime.startswith('litert'):
    resolver = OpResolverType.AUTO if runtime == 'litert' else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]['index'], x)
    invoke = interpreter.invoke
    output = lambda: interpreter.get_tensor(interpreter.get_output_details()[0]['index'])
    extra['delegate_nodes'] = sum(o['op_name'] == 'DELEGATE' for o in interpreter._get_ops_details())
elif runtime == 'compiled':
    model = CompiledModel.from_buffer(data)
    inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
    inputs[0].write(x.ravel())
    invoke = lambda: model.run_by_index(0, inputs, outputs)
    output = lambda: outputs[0].read(int(np.prod(x.shape[:2])) * int(sys.argv[7]), np.float32)
else:
    interpreter = tflm.Interpreter.from_bytes(data, arena_size=arena)
    interpreter.set_input(x, 0)
    invoke = interpreter.invoke
    output = lambda: interpreter.get_output(0)
start = time.perf_counter()
invoke()
print('first_invoke_us', (time.perf_counter() - start) * 1e6, flush=True)
np.save(ypath, np.array(output(), np.float32).reshape(-1))
for _ in range(max(2, runs // 10)):
    invoke()
times = []
for _ in range(runs):
    start = time.perf_counter()
    invoke()
    times.append(time.perf_counter() - start)
print(json.dumps({'median_us': statistics.median(times) * 1e6, 'memory_kb': peak_kb() - base, **extra}))
"""
_PARTITIONS = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, yielding (\d+) "
                         r"partitions for subgraph (\d+) \(([^)]*)\)")


_LOGGER = []


def severity_symbol() -> tuple[str, int]:
    """The library holding TFLite's minimal logger and the offset of its threshold (0: not found, no log)."""
    if not _LOGGER:
        import ai_edge_litert

        lib = os.path.realpath(os.path.join(os.path.dirname(ai_edge_litert.__file__), "libpywrap_litert_common.so"))
        name = "_ZN6tflite16logging_internal13MinimalLogger21minimum_log_severity_E"
        try:
            symbols = subprocess.run(["readelf", "-Ws", lib], capture_output=True, text=True).stdout
            offset = next((int(line.split()[1], 16) for line in symbols.splitlines() if line.endswith(name)), 0)
        except OSError:
            offset = 0
        _LOGGER.append((lib, offset))
    return _LOGGER[0]


def on_runtime(path: Path, runtime: str, runs: int, x: np.ndarray, reference: np.ndarray, work: Path) -> dict:
    """{"median_us", "memory_kb", "max_error"[, "delegate_nodes", "partitions"]} of the model on `runtime`, or
    {"error": why} when it does not run there (the runtime's own message, or the timeout)."""
    import tflrnn
    from tflrnn.runners import micro_arena_bytes

    arena = micro_arena_bytes(tflrnn.inspect(path.read_bytes()).model)
    xpath, ypath = work / "x.npy", work / "y.npy"
    np.save(xpath, x)
    ypath.unlink(missing_ok=True)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path), runtime, str(runs), str(arena), str(xpath),
                               str(ypath), str(reference.shape[-1]), *map(str, severity_symbol())],
                              capture_output=True, text=True, timeout=RUNTIME_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        started = "first_invoke_us" in out
        return {"error": f"{f'did not finish {runs} invokes' if started else 'its first invoke did not finish'} "
                         f"within {RUNTIME_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"error": _reason(done.stderr, done.returncode)}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    y = np.load(ypath)
    result["max_error"] = float(np.max(np.abs(y - reference.reshape(-1)))) if y.size == reference.size else None
    if runtime == "litert":
        result["partitions"] = [
            {"replaced": int(m[0]), "nodes": int(m[1]), "partitions": int(m[3]), "subgraph": int(m[4]), "name": m[5]}
            for m in _PARTITIONS.findall(done.stderr) if m[2].startswith("TfLiteXNNPack")]
    return result


def _reason(stderr: str, code: int) -> str:
    """Why a runtime refused a model, in its own words."""
    for known in ("Variable tensors not yet supported", "Didn't find op for builtin opcode '"):
        if known in stderr:
            return (known + stderr.split(known, 1)[1].split("'")[0] + "'") if known.endswith("'") else known
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING",
                                                                                            "VERBOSE", "I0000"))]
    return " ".join(lines[-1].split())[:120] if lines else f"exit {code}"


def op_count(data: bytes) -> int:
    """Operators over every subgraph."""
    import tflrnn

    return sum(len(g.operators) for g in tflrnn.inspect(data).model.subgraphs)


def compare(units: int, input_size: int, runs: int, work: Path) -> dict:
    import tflrnn.benchmark

    weights = keras_weights(units, input_size)
    weight_bytes = sum(w.nbytes for w in weights)
    x = np.random.default_rng(1).standard_normal((1, TIME_STEPS, input_size)).astype(np.float32)
    with quiet():
        reference = keras_model(weights, TIME_STEPS).predict(x, verbose=0)
    ways = {}
    for form in FORMS:
        reason = skip_reason(form, units, input_size)
        if reason:
            ways[form] = {"skipped": reason}
            continue
        print(f"  {units} units: {form}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        if form.startswith("converter"):
            data = convert(keras_model(weights, TIME_STEPS, unroll="unroll" in form))
        else:
            data = build_tflrnn(weights, TIME_STEPS, *MINE[form])
        seconds = time.perf_counter() - start
        path = work / f"{re.sub(r'[^a-z0-9]+', '_', form.lower())}_{units}.tflite"
        path.write_bytes(data)
        ways[form] = {"path": str(path), "build_s": seconds, "bytes": len(data), "ops": op_count(data),
                      "runtimes": {runtime: on_runtime(path, runtime, runs if runtime != "micro" else
                                                       max(5, runs // 4), x, reference, work)
                                   for runtime in RUNTIMES}}
    # The invoke targets: each tflrnn form against each converter form, pair by pair in one process (LiteRT default,
    # the state reset before each invoke), so the ratio is measured, not derived from separate runs.
    pairs = {}
    for mine in MINE:
        for theirs in ("converter (WHILE)", "converter (unroll=True)"):
            if "path" in ways[mine] and "path" in ways[theirs]:
                timed = tflrnn.benchmark.bench(ways[mine]["path"], vs=ways[theirs]["path"], runs=runs,
                                               warmup=max(2, runs // 10))
                pairs[f"{mine} | {theirs}"] = {"mine_us": timed["model"]["median_us"],
                                               "theirs_us": timed["vs"]["median_us"],
                                               "ratio": 1 / timed["ratio"]["median"]}  # tflrnn's time / theirs
    return {"units": units, "input_size": input_size, "weight_bytes": weight_bytes, "ways": ways, "pairs": pairs,
            "auto": auto_recurrence(weights)}


def auto_recurrence(weights) -> str:
    """What tflrnn's default (`recurrence="auto"`) writes at this size: "unrolled" or "loop"."""
    import tflrnn
    from tflrnn.model import op_name

    data = build_tflrnn(weights, TIME_STEPS, "auto")
    graph = tflrnn.inspect(data).model.subgraphs[0]
    return "loop" if any(op_name(op.code) == "WHILE" for op in graph.operators) else "unrolled"


def build_tflrnn_int8(weights, time_steps: int, calibration, state: str) -> bytes:
    """tflrnn's full-int8 GRU (portable, float interface: QUANTIZE / DEQUANTIZE at the edges), calibrated on the
    same sequences the converter gets. state="carry": the state in a resource variable that the `reset` signature
    zeroes (calibrated with the state carried from one sequence to the next); "zero": each invoke from zeros."""
    from tflrnn.builder import build
    from tflrnn.cells.gru import GRUCell, GRUWeights

    gru = GRUWeights.from_keras(*weights, reset_after=True)
    return build(GRUCell(gru.num_units), weights=gru, input_size=gru.input_size, time_steps=time_steps,
                 lowering="portable", quantize="full-int8", calibration=calibration, state=state)


def micro_arena(data: bytes, form: str) -> int | None:
    """The smallest TFLite Micro arena the model allocates and invokes (twice) in: `tflrnn.inspect` for tflrnn's
    models; for the converter's, the same bisection (tflrnn.arena.minimum_arena) run directly."""
    import tflrnn

    if form.startswith("tflrnn"):
        return tflrnn.inspect(data).micro_arena_bytes
    from tflrnn.arena import minimum_arena
    from tflrnn.runners import micro_arena_bytes

    return minimum_arena(data, max(micro_arena_bytes(tflrnn.inspect(data).model), 10 * len(data)))


def int8_trial(units: int, input_size: int, runs: int, work: Path) -> dict:
    """Full int8 of the same GRU: the converter's, WHILE and unrolled, and tflrnn's, state carried and zeroed: does
    it convert / build, run, how big, how wrong (against Keras float on INT8_TESTS sequences, each from the zero
    state), the Micro arena."""
    import tflrnn
    from tflrnn.model import op_name

    weights = keras_weights(units, input_size)
    calibration = np.random.default_rng(2).standard_normal((CALIBRATION, 1, TIME_STEPS, input_size)).astype(np.float32)
    tests = np.random.default_rng(3).standard_normal((INT8_TESTS, 1, TIME_STEPS, input_size)).astype(np.float32)
    with quiet():
        float_model = keras_model(weights, TIME_STEPS)
        references = [float_model.predict(t, verbose=0) for t in tests]
    results = {}
    for form in INT8_FORMS:
        print(f"  {units} units: full int8, {form}", file=sys.stderr, flush=True)
        path = work / f"int8_{form.split()[0]}_{form.split()[-1].strip('()=').replace('=', '_')}_{units}.tflite"
        start = time.perf_counter()
        if form.startswith("converter"):
            error = convert_int8_in_child(weights, "unroll" in form, calibration, path, work)
            if error:
                results[form] = {"error": error}
                continue
        else:
            try:
                path.write_bytes(build_tflrnn_int8(weights, TIME_STEPS, calibration, form.split("=")[1].rstrip(")")))
            except Exception as exc:  # noqa: BLE001 - the table says why
                results[form] = {"error": " ".join(str(exc).split())[:160]}
                continue
        seconds = time.perf_counter() - start
        data = path.read_bytes()
        types = sorted({op_name(o.code) for g in tflrnn.inspect(data).model.subgraphs for o in g.operators})
        result = {"build_s": seconds, "bytes": len(data), "ops": op_count(data), "op_types": types,
                  "micro_arena": micro_arena(data, form), "runtimes": {}}
        for runtime in RUNTIMES:
            timed = on_runtime(path, runtime, runs if runtime != "micro" else max(5, runs // 4), tests[0],
                               references[0], work)
            if "error" not in timed:
                timed["max_error"], timed["mean_error"] = _errors(data, runtime, tests, references)
            result["runtimes"][runtime] = timed
        results[form] = result
    return {"units": units, "input_size": input_size, "weight_bytes": sum(w.nbytes for w in weights),
            "forms": results}


def _errors(data: bytes, runtime: str, tests, references) -> tuple[float, float]:
    """Max and mean |output - Keras float| over the test sequences, each invoke from zeros: a model that carries
    its state (tflrnn's state="carry") is reset before each (its `reset` signature; Micro's reset()); the
    converter's keeps none."""
    outputs = []
    with quiet():
        if runtime.startswith("litert"):
            sys.path.insert(0, str(ROOT / "scripts"))
            from int8_converter import _litert

            interpreter = _litert(data, runtime == "litert")
            stateful = "reset" in interpreter.get_signature_list()
            inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
            for x in tests:
                if stateful:  # a runner per call: one kept alive holds the interpreter's tensors, and invoke refuses
                    interpreter.get_signature_runner("reset")()
                interpreter.set_tensor(inp, x)
                interpreter.invoke()
                outputs.append(interpreter.get_tensor(out).copy())
        elif runtime == "compiled":
            from ai_edge_litert.compiled_model import CompiledModel

            model = CompiledModel.from_buffer(data)
            signatures = model.get_signature_list()
            inputs, outs = model.create_input_buffers(0), model.create_output_buffers(0)
            for x in tests:
                if "reset" in signatures:
                    model.run_by_index(model.get_signature_index("reset"), [], [])
                inputs[0].write(x.ravel())
                model.run_by_index(0, inputs, outs)
                outputs.append(outs[0].read(references[0].size, np.float32).copy())
        else:
            from tflite_micro.python.tflite_micro import runtime as tflm

            interpreter = tflm.Interpreter.from_bytes(data, arena_size=max(1 << 20, 10 * len(data)))
            for x in tests:
                interpreter.reset()  # zeroes variables; nothing to do for a model without state
                interpreter.set_input(x, 0)
                interpreter.invoke()
                outputs.append(np.array(interpreter.get_output(0), np.float32))
    errors = np.abs(np.stack([np.asarray(o).reshape(r.shape) for o, r in zip(outputs, references)])
                    - np.stack(references))
    return float(errors.max()), float(errors.mean())


def _us(value: float) -> str:
    return f"{value:,.0f} us" if value >= 100 else f"{value:,.1f} us"


def _cell(result: dict, show) -> str:
    if "error" in result:
        return f"n/a: {result['error']}"
    return show(result)


def _partitions(result: dict) -> str:
    """'n of m nodes, k partitions' per subgraph XNNPACK touched (the main graph and the loop body)."""
    if "error" in result or not result.get("partitions"):
        return "n/a"
    parts = [p for p in result["partitions"] if p["name"] not in ("init", "reset")]
    return "; ".join(f"{p['name']}: {p['replaced']}/{p['nodes']} nodes, {p['partitions']} partitions"
                     for p in parts) + f" ({result['delegate_nodes']} DELEGATE in the main graph)"


def memory_target_kb(weight_bytes: int) -> float:
    return (2 * weight_bytes + 16 * 2**20) / 1024


def markdown(points: list[dict], int8: list[dict], facts: str, command: str, elapsed: float) -> str:
    lines = [
        SECTION_START,
        "",
        "## GRU against the converter's (issue 20)",
        "",
        f"Machine: {facts}.",
        "",
        f"Reproduce: `{command}` ({elapsed / 60:,.1f} minutes here; numbers vary by a few percent between runs).",
        "",
        "One Keras 3 GRU (reset_after=True), T = 50, batch 1, return_sequences, the same weights five ways: the "
        "converter's default conversion (a WHILE loop) and its `unroll=True` graph (`TFLiteConverter."
        "from_keras_model`, a fixed batch-1 input), and tflrnn's portable GRU (`GRUWeights.from_keras`, state "
        "carried in resource variables) unrolled and as a WHILE loop (`--recurrence`) of one step a pass and of five "
        "(`--steps-per-iteration 5`: five steps unrolled in the loop's body). Weights: kernel "
        "glorot-uniform, recurrent kernel orthogonal per gate, both bias rows N(0, 0.1). Each model runs on each "
        "runtime on its own in a fresh process: the median invoke after a warm-up (the state carries between "
        "invokes), the peak memory the runtime adds over the process after its imports, the model's bytes included "
        "(VmHWM), and the largest |output - Keras `model.predict`| of its first invoke (from the zero state) on the "
        "same input. `n/a` gives the runtime's own reason. Partitions: TFLite's own log of what the default XNNPACK "
        "delegate took, per subgraph (n of m nodes; the partitions count both the delegated and the refused runs of "
        "nodes).",
        "",
    ]
    for point in points:
        ways = point["ways"]
        weight_bytes = point["weight_bytes"]
        lines += [
            f"### {point['units']:,} units, input {point['input_size']:,}",
            "",
            f"Raw float32 weights: {weight_bytes:,} B. tflrnn's default (`recurrence=\"auto\"`) writes the "
            f"{point['auto']} form at this size.",
            "",
            "| | " + " | ".join(SHORT[f] for f in FORMS) + " |",
            "| --- | " + " | ".join("---:" for _ in FORMS) + " |",
        ]

        def row(label, show):
            cells = []
            for form in FORMS:
                way = ways[form]
                cells.append("n/a" if "skipped" in way else show(way))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")

        skipped = [f"{SHORT[f]}: {ways[f]['skipped']}" for f in FORMS if "skipped" in ways[f]]
        row("build / convert", lambda w: f"{w['build_s'] * 1000:,.1f} ms" if w["build_s"] < 1 else
            f"{w['build_s']:,.2f} s")
        row("file size", lambda w: f"{w['bytes']:,} B")
        row("file - raw weights", lambda w: f"{w['bytes'] - weight_bytes:+,} B")
        row("ops (all subgraphs)", lambda w: f"{w['ops']:,}")
        for runtime in RUNTIMES:
            row(f"invoke, {RUNTIME_LABELS[runtime]}",
                lambda w, r=runtime: _cell(w["runtimes"][r], lambda x: _us(x["median_us"])))
            row(f"memory, {RUNTIME_LABELS[runtime]}",
                lambda w, r=runtime: _cell(w["runtimes"][r], lambda x: f"{x['memory_kb'] / 1024:,.1f} MiB")
                if "error" not in w["runtimes"][r] else "n/a")
        for runtime in RUNTIMES:
            row(f"max error vs Keras, {RUNTIME_LABELS[runtime]}",
                lambda w, r=runtime: "n/a" if "error" in w["runtimes"][r] or w["runtimes"][r]["max_error"] is None
                else f"{w['runtimes'][r]['max_error']:.1e}")
        row("XNNPACK partitions", lambda w: _partitions(w["runtimes"]["litert"]))
        lines.append("")
        if skipped:
            lines += ["Not built: " + "; ".join(skipped) + ".", ""]
        if point["pairs"]:
            lines += ["Pair by pair on LiteRT (XNNPACK), the state reset before each invoke (tflrnn.benchmark.bench), "
                      "tflrnn's median against the converter's:", ""]
            for name, pair in point["pairs"].items():
                mine, theirs = name.split(" | ")
                lines.append(f"- {mine} {_us(pair['mine_us'])} against {SHORT[theirs]} {_us(pair['theirs_us'])}: "
                             f"**{pair['ratio']:.2f}x**")
            lines.append("")
    lines += targets(points)
    lines += int8_section(int8, [(p["units"], p["input_size"]) for p in points])
    lines += [SECTION_END, ""]
    return "\n".join(lines)


def targets(points: list[dict]) -> list[str]:
    """Issue 20's targets against the results: invoke (pair by pair, LiteRT default) at most 0.8x the converter's
    fastest form at 64 units and faster than every form at 256 and 1024; memory (LiteRT default) at most 2x the
    weights + 16 MiB; file at most the raw weights + 16 KiB at 64 units."""
    lines = ["### Targets", "",
             "Invoke: tflrnn's faster form against the converter's fastest, pair by pair on LiteRT (XNNPACK). "
             "Memory: LiteRT (XNNPACK), at most 2x the weights + 16 MiB. File: at most the raw weights + 16 KiB "
             "(64 units).", ""]
    for point in points:
        ways, units = point["ways"], point["units"]
        pairs = point["pairs"]
        parts = []
        if pairs:
            best_mine = min(MINE,
                            key=lambda m: min((p["mine_us"] for n, p in pairs.items() if n.startswith(f"{m} |")),
                                              default=float("inf")))
            theirs = {n.split(" | ")[1]: p for n, p in pairs.items() if n.startswith(f"{best_mine} |")}
            fastest = min(theirs, key=lambda t: theirs[t]["theirs_us"])
            ratio = theirs[fastest]["ratio"]
            if units == 64:
                goal = 0.8
                parts.append(f"invoke: {best_mine} is **{ratio:.2f}x** {SHORT[fastest]} (target <= 0.80x: "
                             f"{'met' if ratio <= goal else f'missed by {ratio / goal:.2f}x'})")
            else:
                worst = max(theirs.values(), key=lambda p: p["ratio"])["ratio"]
                unbuilt = [SHORT[f] for f in FORMS if f.startswith("converter") and "skipped" in ways[f]]
                parts.append(f"invoke: {best_mine} is **{ratio:.2f}x** {SHORT[fastest]}" + "".join(
                    f", {p['ratio']:.2f}x {SHORT[t]}" for t, p in theirs.items() if t != fastest)
                    + f" (target < 1x every form: {'met' if worst < 1 else f'missed by {worst:.2f}x'}"
                    + (f"; {', '.join(unbuilt)} not built" if unbuilt else "") + ")")
        fresh = {f: ways[f]["runtimes"]["litert"]["median_us"] for f in FORMS
                 if "median_us" in ways[f].get("runtimes", {}).get("litert", {})}
        mine = [f for f in fresh if f.startswith("tflrnn")]
        theirs_fresh = [f for f in fresh if f.startswith("converter")]
        if mine and theirs_fresh:
            best, rival = min(mine, key=fresh.get), min(theirs_fresh, key=fresh.get)
            parts.append(f"timed in fresh processes instead (the table): {best} {fresh[best] / fresh[rival]:.2f}x "
                         f"{SHORT[rival]}")
        goal_kb = memory_target_kb(point["weight_bytes"])
        for form in MINE:
            result = ways[form].get("runtimes", {}).get("litert", {})
            if "memory_kb" in result:
                parts.append(f"{form} memory {result['memory_kb'] / 1024:,.1f} MiB against {goal_kb / 1024:,.1f} "
                             f"MiB ({'met' if result['memory_kb'] <= goal_kb else 'missed'})")
        if units == 64:
            for form in MINE:
                if "bytes" in ways[form]:
                    over = ways[form]["bytes"] - point["weight_bytes"]
                    parts.append(f"{form} file {over:+,} B over the weights (target <= 16,384 B: "
                                 f"{'met' if over <= 16384 else f'missed by {over - 16384:,} B'})")
        if units == 64 and pairs:  # the two targets in one model
            both = []
            for form in MINE:
                theirs = [p for n, p in pairs.items() if n.startswith(f"{form} |")]
                if theirs and "bytes" in ways[form]:
                    ratio = min(theirs, key=lambda p: p["theirs_us"])["ratio"]
                    if ratio <= 0.8 and ways[form]["bytes"] - point["weight_bytes"] <= 16384:
                        both.append(f"{form} ({ratio:.2f}x, {ways[form]['bytes'] - point['weight_bytes']:+,} B)")
            parts.append("invoke and file in one form: " + (", ".join(both) if both else "none"))
        lines.append(f"- {units:,} units: " + "; ".join(parts))
    return lines + [""]


def _arena(value) -> str:
    return f"{value:,} B" if value else "not measured"


def int8_section(trials: list[dict], sizes: list[tuple[int, int]]) -> list[str]:
    if not trials:
        return []
    lines = ["### Full int8", "",
             f"The same GRU in full int8, float interface (QUANTIZE / DEQUANTIZE at the edges), both calibrated on the "
             f"same {CALIBRATION} standard-normal sequences: the converter's (`Optimize.DEFAULT`, "
             "`TFLITE_BUILTINS_INT8`, a representative dataset; its model keeps no state) and tflrnn's "
             "(`lowering=\"portable\", quantize=\"full-int8\", calibration=...`; it writes the steps unrolled) with "
             "`state=\"carry\"` (the state in a resource variable, zeroed by the `reset` signature; calibrated with "
             "the state carried from one sequence to the next) and `state=\"zero\"` (each invoke from zeros, as the "
             f"converter's). Runtime cells: error against Keras float over the same {INT8_TESTS} test sequences, each "
             "invoke from zeros (state=carry: reset before each), max / mean; then the median invoke as above (the "
             "state carries between timed invokes). Micro arena: the smallest TFLite Micro arena the model allocates "
             "and invokes twice in (`tflrnn.inspect(data).micro_arena_bytes`; for the converter's, the same "
             "bisection, `tflrnn.arena.minimum_arena`).", "",
             "| units | form | file | file / raw float weights | ops | Micro arena | LiteRT (XNNPACK) | LiteRT builtin | "
             "CompiledModel | TFLite Micro |",
             "| ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for trial in trials:
        for form, result in trial["forms"].items():
            if "error" in result:
                verb = "does not convert" if form.startswith("converter") else "does not build"
                lines.append(f"| {trial['units']:,} | {SHORT[form]} | n/a: {verb}: {result['error']} | "
                             "| | | | | | |")
                continue

            def show(r):
                error = (f"{r['max_error']:.3f} / {r['mean_error']:.5f}, " if "mean_error" in r else
                         f"max {r['max_error']:.3f} (first sequence), " if r.get("max_error") is not None else "")
                return error + _us(r["median_us"])

            lines.append(f"| {trial['units']:,} | {SHORT[form]} | {result['bytes']:,} B | "
                         f"{result['bytes'] / trial['weight_bytes']:.2f}x | {result['ops']:,} | "
                         f"{_arena(result.get('micro_arena'))} | " + " | ".join(
                             _cell(result["runtimes"][r], show) for r in RUNTIMES) + " |")
    lines.append("")
    done = {t["units"] for t in trials}
    untried = [u for u, _ in sizes if u not in done]
    if untried:
        while_failed = all("error" in t["forms"].get("converter (WHILE)", {"error": ""}) for t in trials)
        lines += [f"Not run at {', '.join(f'{u:,}' for u in untried)} units: the script runs full int8 up to "
                  f"{INT8_MAX_UNITS} units (the converter's unroll=True graph is not built above that"
                  + (", and its full int8 of the WHILE graph failed at every size tried" if while_failed else "")
                  + ").", ""]
    for trial in trials:
        for form, result in trial["forms"].items():
            if "op_types" in result:
                float_ops = [t for t in result["op_types"] if t in ("WHILE",)]
                lines.append(f"- {trial['units']:,} units, {SHORT[form]}: built in "
                             + (f"{result['build_s'] * 1000:,.0f} ms" if result["build_s"] < 1 else
                                f"{result['build_s']:,.1f} s")
                             + f"; op types {', '.join(result['op_types'])}"
                             + (f" (still a {float_ops[0]} loop)" if float_ops else ""))
    lines.append("")
    return lines + int8_targets(trials)


def int8_targets(trials: list[dict]) -> list[str]:
    """Issue 20's full-int8 targets: error against the float recurrence no worse than the converter's full int8
    where the converter produces one (max and mean, runtime by runtime, against the converter's best form), the
    file at most half of the converter's (its smallest), the Micro arena reported."""
    lines = ["### Full-int8 targets", "",
             "Error against the float recurrence no worse than the converter's full int8 where the converter produces "
             "one (max and mean, each runtime against the same runtime; the converter's lower error where both of its "
             "forms convert), the file at most half of the converter's, the Micro arena reported.", ""]
    for trial in trials:
        units, forms = trial["units"], trial["forms"]
        theirs = {f: r for f, r in forms.items() if f.startswith("converter") and "error" not in r}
        for form, result in forms.items():
            if not form.startswith("tflrnn"):
                continue
            if "error" in result:
                lines.append(f"- {units:,} units, {SHORT[form]}: does not build ({result['error']})")
                continue
            parts = []
            if not theirs:
                parts.append("error: the converter produces no full int8 here (no target); "
                             + ", ".join(f"{RUNTIME_LABELS[r]} {result['runtimes'][r]['max_error']:.3f} / "
                                         f"{result['runtimes'][r]['mean_error']:.5f}" for r in RUNTIMES
                                         if "mean_error" in result["runtimes"][r]))
            else:
                worse, cells = [], []
                for runtime in RUNTIMES:
                    mine = result["runtimes"][runtime]
                    rivals = [r["runtimes"][runtime] for r in theirs.values() if "mean_error" in r["runtimes"][runtime]]
                    if "mean_error" not in mine or not rivals:
                        continue
                    ratios = {}
                    for key in ("max_error", "mean_error"):
                        best = min(r[key] for r in rivals)
                        ratios[key] = mine[key] / best
                        if mine[key] > best:
                            worse.append(f"{key.split('_')[0]} on {RUNTIME_LABELS[runtime]} {mine[key]:.5f} against "
                                         f"{best:.5f} (+{(ratios[key] - 1) * 100:.1f}%)")
                    cells.append(f"{RUNTIME_LABELS[runtime]} max {ratios['max_error']:.2f}x, mean "
                                 f"{ratios['mean_error']:.3f}x")
                parts.append("error against the converter's: " + "; ".join(cells) + " (target <= 1x: "
                             + ("met" if not worse else "missed: " + ", ".join(worse)) + ")")
                smallest = min(theirs.values(), key=lambda r: r["bytes"])
                ratio = result["bytes"] / smallest["bytes"]
                parts.append(f"file {result['bytes']:,} B, {ratio:.2f}x the converter's {smallest['bytes']:,} B "
                             f"(target <= 0.50x: {'met' if ratio <= 0.5 else 'missed'})")
            rival_arenas = [f"{SHORT[f]} {r['micro_arena']:,} B" for f, r in theirs.items() if r.get("micro_arena")]
            parts.append(f"Micro arena {_arena(result.get('micro_arena'))} ("
                         + ("reported" if result.get("micro_arena") else "missed: not reported")
                         + (f"; the converter's: {', '.join(rival_arenas)}" if rival_arenas else "") + ")")
            lines.append(f"- {units:,} units, {SHORT[form]}: " + "; ".join(parts))
    return lines + [""]


def write_section(path: Path, text: str) -> None:
    """Replace the GRU section (between its markers) or append it; the other sections are left as they are."""
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
    started = time.perf_counter()
    points, int8 = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for units, input_size in sizes:
            print(f"GRU: units {units}, input {input_size}, T {TIME_STEPS}", file=sys.stderr, flush=True)
            runs = (50 if args.quick else 200) // (1 if units <= 64 else 2 if units <= 256 else 10)
            points.append(compare(units, input_size, runs, work))
        for units, input_size in [size for size in sizes if size[0] <= INT8_MAX_UNITS]:  # full int8
            int8.append(int8_trial(units, input_size, 50 if args.quick else 200, work))
    elapsed = time.perf_counter() - started
    command = "scripts/bench_gru.py" + (" --quick" if args.quick else "") + (
        f" --sizes {args.sizes}" if args.sizes else "")
    text = markdown(points, int8, machine(), command, elapsed)
    if args.json:
        args.json.write_text(json.dumps({"points": points, "int8": int8}, indent=2))
    if args.no_write:
        print(text)
    else:
        write_section(args.out, text)
        print(text)
        print(f"wrote the GRU section of {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
