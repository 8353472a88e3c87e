#!/usr/bin/env python3
"""Full int8: tflrnn's `--quantize full-int8` against TensorFlow's converter (full int8 from the unrolled Keras
SimpleRNN, scripts/int8_converter.py) on the same weights and data: file size, error against the float recurrence
on LiteRT (with and without XNNPACK) and TFLite Micro, LiteRT invoke time, and the smallest TFLite Micro arena
(tflrnn.arena, the same measurement for both). Writes its section of BENCHMARKS.md (between the int8 markers).

    .venv/bin/python scripts/bench_int8.py [--no-write]

The network is issue 13's: U=32, I=16, T=20, batch 1; tflrnn's seeded weights (Keras' initializers); 64
calibration sequences and 8 test sequences of standard normal data.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import int8_converter as conv  # noqa: E402

import tflrnn  # noqa: E402
from tflrnn import reference  # noqa: E402
from tflrnn.arena import minimum_arena  # noqa: E402
from tflrnn.builder import model_of, network_of  # noqa: E402
from tflrnn.reader import read  # noqa: E402
from tflrnn.runners import micro_arena_bytes  # noqa: E402
from tflrnn.writer import write  # noqa: E402

UNITS, INPUTS, STEPS = 32, 16, 20
BEGIN, END = "<!-- int8: scripts/bench_int8.py -->", "<!-- /int8 -->"


def _tflrnn_model(state: str, calibration) -> tuple[bytes, object]:
    network = network_of(tflrnn.RNNCell(UNITS), input_size=INPUTS, time_steps=STEPS, lowering="portable",
                         quantize="full-int8", calibration=calibration, state=state)
    return write(model_of(network)), network


def _runs(data: bytes, xs, carried: bool) -> dict[str, list[np.ndarray]]:
    """Outputs on each runtime; each invoke from zeros unless `carried` (the model keeps its state)."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    found = {}
    for label, xnnpack in (("LiteRT", True), ("LiteRT without XNNPACK", False)):
        interpreter = conv._litert(data, xnnpack)
        x_index, y_index = (interpreter.get_input_details()[0]["index"],
                            interpreter.get_output_details()[0]["index"])
        outputs = []
        for x in xs:
            interpreter.set_tensor(x_index, x)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(y_index).copy())
        found[label] = outputs
    micro = tflm.Interpreter.from_bytes(data, arena_size=1 << 20)
    outputs = []
    for x in xs:
        if not carried:
            micro.reset()
        micro.set_input(x, 0)
        micro.invoke()
        outputs.append(np.array(micro.get_output(0), copy=True))
    found["TFLite Micro"] = outputs
    return found


def _errors(outputs, expected) -> tuple[float, float]:
    error = np.abs(np.stack(outputs).astype(np.float64) - np.stack(expected))
    return float(error.max()), float(error.mean())


def measure() -> dict:
    float_network = network_of(tflrnn.RNNCell(UNITS), input_size=INPUTS, time_steps=STEPS, lowering="portable")
    weights = [tuple(float_network.layers[0].weights.arrays())]
    calibration = np.random.default_rng(1).standard_normal((64, 1, STEPS, INPUTS)).astype(np.float32)
    tests = np.random.default_rng(2).standard_normal((8, 1, STEPS, INPUTS)).astype(np.float32)
    from_zeros = [reference.run_network(float_network, x)[0][0] for x in tests]
    carried, states = [], None
    for x in tests:
        outputs, states = reference.run_network(float_network, x, states)
        carried.append(outputs[0])

    converter = conv.converter_full_int8(weights, calibration, time_steps=STEPS)
    zero, _ = _tflrnn_model("zero", calibration)
    carry, _ = _tflrnn_model("carry", calibration)
    rows = []
    for label, data, expected, keeps in (("converter (unrolled Keras, full int8), each invoke from zeros", converter,
                                          from_zeros, False),
                                         ("tflrnn --state zero, each invoke from zeros", zero, from_zeros, False),
                                         ("tflrnn --state carry, the state carried over the 8 invokes", carry, carried,
                                          True)):
        runs = _runs(data, tests, keeps)
        rows.append({
            "model": label, "bytes": len(data),
            "errors": {runtime: _errors(outputs, expected) for runtime, outputs in runs.items()},
            "invoke_us": {"LiteRT": conv._median_invoke_us(data, tests[0], True),
                          "LiteRT without XNNPACK": conv._median_invoke_us(data, tests[0], False)},
            "micro_arena": minimum_arena(data, micro_arena_bytes(read(data))),
        })
    return {"rows": rows, "float_weight_bytes": 4 * (UNITS * INPUTS + UNITS * UNITS + UNITS)}


def markdown(result: dict) -> str:
    lines = [BEGIN, "", "## Full int8 against the converter's (issue 13)", "",
             f"U={UNITS}, I={INPUTS}, T={STEPS}, batch 1; the same float weights ({result['float_weight_bytes']:,} "
             "bytes as float32) and the same 64 calibration sequences for both; error = |output - the float64 "
             "recurrence of the float weights| over 8 test sequences (20 x 32 values each), max / mean. "
             f"{platform.machine()}, Python {platform.python_version()}; `.venv/bin/python scripts/bench_int8.py`.",
             "", "| model | file | LiteRT | LiteRT without XNNPACK | TFLite Micro | LiteRT invoke (XNNPACK / builtin) "
             "| Micro arena |", "|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        errors = [row["errors"][k] for k in ("LiteRT", "LiteRT without XNNPACK", "TFLite Micro")]
        lines.append(f"| {row['model']} | {row['bytes']:,} B | "
                     + " | ".join(f"{m:.4f} / {a:.4f}" for m, a in errors)
                     + f" | {row['invoke_us']['LiteRT']:.1f} / {row['invoke_us']['LiteRT without XNNPACK']:.1f} us"
                     f" | {row['micro_arena']:,} B |")
    lines += ["", "The converter's model keeps no state (each invoke starts from zeros); tflrnn's carries it, and its "
              "error over carried invokes is measured against the float recurrence carried the same way.", "", END]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="Print the section; leave BENCHMARKS.md as it is.")
    args = parser.parse_args()
    section = markdown(measure())
    print(section)
    if not args.no_write:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text()
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n", re.S)
        text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
        path.write_text(text)


if __name__ == "__main__":
    main()
