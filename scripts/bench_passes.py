#!/usr/bin/env python3
"""How many steps a pass of the portable lowering's WHILE loop should run (`--steps-per-iteration`), measured.

One GRU (Keras 3 reset_after) and one LSTM at 64 units, input 32, T = 50, batch 1, the same weights as
scripts/bench_gru.py and scripts/bench_lstm.py draw: tflrnn's portable model unrolled, and as a loop of 1, 2, 5, 10,
25 and 50 steps a pass. All the models of a kind are loaded in one process and timed in turn, round after round
(200 invokes a round after 20 of warm-up, the state carried), on LiteRT with its default XNNPACK delegate and on its
builtin kernels alone, 1 thread: the median of the rounds' medians. With the file's bytes over the raw float32
weights.

    .venv/bin/python scripts/bench_passes.py             # writes its section of BENCHMARKS.md
    .venv/bin/python scripts/bench_passes.py --no-write  # print the section only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import machine, replace_section  # noqa: E402

UNITS, INPUT, TIME_STEPS = 64, 32, 50
FORMS = (("unrolled", "unrolled", 1), *((f"{k} a pass" if k > 1 else "loop", "loop", k) for k in (1, 2, 5, 10, 25, 50)))
ROUNDS, INVOKES, WARMUP = 11, 200, 20
SECTION_START, SECTION_END = "<!-- passes: scripts/bench_passes.py -->", "<!-- /passes -->"


def models(kind: str) -> tuple[int, dict[str, bytes]]:
    """(the raw weights' bytes, each form's model) of the GRU or the LSTM."""
    import bench_gru
    import bench_lstm
    from tflrnn.builder import build
    from tflrnn.cells.gru import GRUCell, GRUWeights
    from tflrnn.cells.lstm import LSTMCell, LSTMWeights

    if kind == "GRU":
        keras = bench_gru.keras_weights(UNITS, INPUT)
        cell, weights = GRUCell(UNITS), GRUWeights.from_keras(*keras, reset_after=True)
    else:
        keras = bench_lstm.keras_weights(UNITS, INPUT)
        cell, weights = LSTMCell(UNITS), LSTMWeights.from_keras(*keras)
    return sum(w.nbytes for w in keras), {
        label: build(cell, weights=weights, input_size=INPUT, time_steps=TIME_STEPS, lowering="portable",
                     recurrence=recurrence, steps_per_iteration=steps)
        for label, recurrence, steps in FORMS}


def timed(built: dict[str, bytes], xnnpack: bool) -> dict[str, float]:
    """Each model's median invoke (us), the models timed in turn round after round in this process."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    runners = {}
    for label, data in built.items():
        interpreter = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        x = np.random.default_rng(1).standard_normal(detail["shape"]).astype(np.float32)
        runners[label] = (interpreter, detail["index"], x)
    medians = {label: [] for label in built}
    for _ in range(ROUNDS):
        for label, (interpreter, index, x) in runners.items():
            times = []
            for k in range(WARMUP + INVOKES):
                interpreter.set_tensor(index, x)
                start = time.perf_counter()
                interpreter.invoke()
                if k >= WARMUP:
                    times.append(time.perf_counter() - start)
            medians[label].append(statistics.median(times) * 1e6)
    return {label: statistics.median(found) for label, found in medians.items()}


def section(results: dict, facts: str, elapsed: float) -> str:
    labels = [label for label, _, _ in FORMS]
    lines = [SECTION_START, "", "## Steps a pass of the portable loop", "",
             f"Machine: {facts}.", "",
             f"Reproduce: `scripts/bench_passes.py` ({elapsed / 60:,.1f} minutes here; numbers vary by a few percent "
             "between runs).", "",
             f"One GRU (Keras 3, reset_after) and one LSTM, {UNITS} units, input {INPUT}, T = {TIME_STEPS}, batch 1, "
             "the weights scripts/bench_gru.py and scripts/bench_lstm.py draw, as tflrnn's portable model unrolled "
             "and as a WHILE loop of 1 to 50 steps a pass (`--steps-per-iteration`). The models of a kind are timed in turn in one process, "
             f"{ROUNDS} rounds of {INVOKES} invokes (the state carried), 1 thread: the median of the rounds' medians. "
             "Why the best number of steps a pass is small: [docs/model.md](docs/model.md#the-portable-lowering).", "",
             "| | " + " | ".join(labels) + " |", "| --- | " + " | ".join("---:" for _ in labels) + " |"]
    for kind, found in results.items():
        lines.append(f"| {kind}, file over the weights | "
                     + " | ".join(f"{found['bytes'][label] - found['weights']:+,} B" for label in labels) + " |")
        for runtime in ("LiteRT (XNNPACK)", "LiteRT builtin"):
            lines.append(f"| {kind}, invoke, {runtime} | "
                         + " | ".join(f"{found[runtime][label]:,.1f} us" for label in labels) + " |")
    best = {kind: min((label for label in labels if label != "unrolled"), key=found["LiteRT (XNNPACK)"].get)
            for kind, found in results.items()}
    lines += ["", "Fastest loop on LiteRT (XNNPACK): " + "; ".join(
        f"{kind} {label} ({results[kind]['LiteRT (XNNPACK)'][label]:,.1f} us against "
        f"{results[kind]['LiteRT (XNNPACK)']['unrolled']:,.1f} us unrolled)" for kind, label in best.items()) + ".",
              "", SECTION_END, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the section; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    started = time.perf_counter()
    results = {}
    for kind in ("GRU", "LSTM"):
        print(f"{kind}: building and timing", file=sys.stderr, flush=True)
        weights, built = models(kind)
        results[kind] = {"weights": weights, "bytes": {label: len(data) for label, data in built.items()},
                         "LiteRT (XNNPACK)": timed(built, xnnpack=True),
                         "LiteRT builtin": timed(built, xnnpack=False)}
    text = section(results, machine(), time.perf_counter() - started)
    if args.no_write:
        print(text)
    else:
        replace_section(ROOT / "BENCHMARKS.md", text, SECTION_START, SECTION_END)
        print("wrote the steps-a-pass section of BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
