#!/usr/bin/env python3
"""Whole-process timings of the `tflrnn` command and the size overhead of its files.

Targets: `tflrnn build --units 64 --input-size 32 --time-steps 50` under 0.15 s median; the file within 1 KiB of
the raw weight bytes; `tflrnn verify` under 1 s; `tflrnn build --weights model.keras` under 0.5 s; and how long
`tflrnn verify --against model.keras` takes. Baselines in the same interpreter are printed beside them, since
Python start-up and numpy's import are most of a build. The Keras rows need the tensorflow extra (they are
skipped without it).

    .venv/bin/python scripts/bench_cli.py [--runs 21] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD_ARGS = ["build", "--units", "64", "--input-size", "32", "--time-steps", "50"]


def timed(argv: list[str], runs: int) -> dict:
    samples = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    samples = sorted(samples[1:])  # the first run warms the file cache
    return {
        "median_s": statistics.median(samples),
        "p10_s": samples[len(samples) // 10],
        "p90_s": samples[(len(samples) * 9) // 10],
        "runs": runs,
    }


def _keras_file(directory: Path) -> Path | None:
    """A Keras 3 model with a 64-unit SimpleRNN over 32 features, saved as .keras (None without keras)."""
    program = (
        "import sys, keras\n"
        "model = keras.Sequential([keras.Input((50, 32)), keras.layers.SimpleRNN(64, return_sequences=True)])\n"
        "model.save(sys.argv[1])"
    )
    path = directory / "model.keras"
    made = subprocess.run([sys.executable, "-c", program, str(path)], capture_output=True)
    return path if made.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tflrnn = shutil.which("tflrnn", path=str(Path(sys.executable).parent)) or shutil.which("tflrnn")
    if tflrnn is None:
        sys.exit("the tflrnn command is not installed in this environment (run scripts/demo.sh first)")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "bench.tflite"
        results = {
            "python -c pass": timed([sys.executable, "-c", "pass"], args.runs),
            "python -c 'import numpy'": timed([sys.executable, "-c", "import numpy"], args.runs),
            "tflrnn " + " ".join(BUILD_ARGS): timed([tflrnn, *BUILD_ARGS, "-o", str(model)], args.runs),
            "tflrnn verify": timed([tflrnn, "verify", str(model)], args.runs),
        }
        size = model.stat().st_size
        keras_file = _keras_file(Path(tmp))
        if keras_file is not None:
            from_keras = Path(tmp) / "keras.tflite"
            build_keras = [tflrnn, "build", "--weights", str(keras_file), "--time-steps", "50", "-o", str(from_keras)]
            results["tflrnn build --weights model.keras"] = timed(build_keras, args.runs)
            against = [tflrnn, "verify", str(from_keras), "--against", str(keras_file)]
            results["tflrnn verify --against model.keras"] = timed(against, max(3, args.runs // 4))
    units, inputs = 64, 32
    weight_bytes = 4 * (units * inputs + units * units + units)
    report = {
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.release()}",
        "timings": results,
        "file_bytes": size,
        "weight_bytes": weight_bytes,
        "overhead_bytes": size - weight_bytes,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"machine: {report['machine']}")
    width = max(map(len, results))
    for name, t in results.items():
        print(f"{name:<{width}}  median {t['median_s'] * 1000:6.1f} ms  (p10 {t['p10_s'] * 1000:.1f}, "
              f"p90 {t['p90_s'] * 1000:.1f}, {t['runs']} runs)")
    print(f"file {size:,} bytes = raw weights {weight_bytes:,} + {size - weight_bytes:,} bytes of structure")


if __name__ == "__main__":
    main()
