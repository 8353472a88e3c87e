"""The sha256 of a broad set of builds, for refactors that must not change a byte: run before and after, compare.

Usage: python scripts/build_hashes.py OUT.json [--compare BEFORE.json]
Needs the test venv (the sample sources include a Keras file). Every build goes through the real command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent

# name -> `tflrnn build` arguments; {src} is the sample sources' directory, {dir} a scratch directory.
BUILDS = {
    "default": ["--units", "64"],
    "units64": ["--units", "64", "--input-size", "32", "--time-steps", "50"],
    **{f"act_{a}": ["--units", "8", "--activation", a, "--time-steps", "3"]
       for a in ("tanh", "relu", "relu6", "linear", "relu_n1_to_1", "sign_bit")},
    "time_major_batch2": ["--units", "8", "--input-size", "3", "--time-steps", "4", "--batch-size", "2",
                          "--time-major"],
    "stack3_last": ["--units", "8", "--layers", "3", "--last-step", "--time-steps", "5"],
    "bidi_concat": ["--units", "6", "--bidirectional", "--time-steps", "4"],
    "bidi_none": ["--units", "6", "--bidirectional", "--merge", "none", "--time-steps", "4"],
    "bidi_stack_last": ["--units", "5", "--layers", "2", "--bidirectional", "--last-step", "--time-steps", "4"],
    "bidi_last_none": ["--units", "5", "--bidirectional", "--last-step", "--merge", "none"],
    "int8": ["--units", "16", "--quantize", "int8", "--time-steps", "6"],
    "int8_asym_tm": ["--units", "16", "--quantize", "int8", "--asymmetric-inputs", "--time-major"],
    "int8_bidi": ["--units", "6", "--quantize", "int8", "--bidirectional"],
    "dynamic": ["--units", "8", "--time-steps", "dynamic"],
    "dynamic_bidi_last": ["--units", "4", "--time-steps", "dynamic", "--bidirectional", "--last-step"],
    "seed7_name": ["--units", "8", "--seed", "7", "--name", "enc/rnn"],
    "config_cells": ["--config", "{dir}/cells.json"],
    "config_reuse": ["--config", "{dir}/reuse.json"],
    "npz": ["--weights", "{src}/rnn.npz", "--time-steps", "8"],
    "npz_keras_names": ["--weights", "{dir}/keras_names.npz"],
    "keras_classifier": ["--weights", "{src}/rnn.keras"],
    "keras_h5": ["--weights", "{src}/rnn.h5", "--time-steps", "dynamic"],
    "keras_layer": ["--weights", "{src}/rnn.keras", "--layer", "rnn"],
    "keras_weights_only": ["--weights", "{src}/rnn.weights.h5", "--activation", "relu"],
    "onnx": ["--weights", "{src}/rnn.onnx"],
    "onnx_overridden": ["--weights", "{src}/rnn.onnx", "--batch-major", "--time-steps", "2"],
    "safetensors": ["--weights", "{src}/rnn.safetensors", "--activation", "relu"],
    "safetensors_int8": ["--weights", "{src}/rnn.safetensors", "--quantize", "int8"],
    **{f"portable_{name}": ["--units", "6", "--input-size", "3", "--time-steps", "5", "--lowering", "portable", *args]
       for name, args in {
           "unrolled": [],
           "loop": ["--recurrence", "loop"],
           "bidi_stack_zero_last": ["--state", "zero", "--bidirectional", "--layers", "2", "--last-step"],
           "full_int8": ["--quantize", "full-int8", "--calibration", "{dir}/calibration.npy"],
           "full_int8_io_relu": ["--quantize", "full-int8", "--calibration", "{dir}/calibration.npy", "--io", "int8",
                                 "--state", "io", "--activation", "relu"],
           "full_int8_bidi_zero": ["--quantize", "full-int8", "--calibration", "{dir}/calibration.npy",
                                   "--bidirectional", "--state", "zero"],
       }.items()},
    "portable_dynamic_io": ["--units", "6", "--input-size", "3", "--time-steps", "dynamic", "--lowering", "portable",
                            "--state", "io"],
}

CONFIGS = {
    "cells.json": {"cells": [{"num_units": 8, "activation": "relu", "name": "enc/l0"},
                             {"num_units": 4, "name": "enc/l1", "bidirectional": True}],
                   "input_size": 5, "time_steps": 6, "return_sequences": False},
    "reuse.json": {"cells": [{"num_units": 6, "name": "shared"}, {"num_units": 6, "name": "shared", "reuse": True}],
                   "input_size": 6, "time_steps": 3},
}


def hashes(tflrnn: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        src = scratch / "sources"
        subprocess.run([sys.executable, str(SCRIPTS / "sample_sources.py"), str(src)], check=True)
        for name, document in CONFIGS.items():
            (scratch / name).write_text(json.dumps(document))
        import numpy as np

        np.save(scratch / "calibration.npy",
                np.random.default_rng(0).standard_normal((16, 1, 5, 3)).astype(np.float32))
        with np.load(src / "rnn.npz") as arrays:
            np.savez(scratch / "keras_names.npz", kernel=arrays["input_weights"].T,
                     recurrent_kernel=arrays["recurrent_weights"].T, bias=arrays["bias"])
        found = {}
        for name, args in BUILDS.items():
            out = scratch / f"{name}.tflite"
            argv = [a.format(src=src, dir=scratch) for a in args]
            result = subprocess.run([tflrnn, "build", *argv, "-o", str(out)], capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"{name}: tflrnn build {' '.join(argv)} failed: {result.stderr.strip()}")
            found[name] = hashlib.sha256(out.read_bytes()).hexdigest()
        return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--compare", type=Path, help="an earlier run's JSON: exit 1 on any difference")
    parser.add_argument("--tflrnn", default=str(Path(sys.executable).parent / "tflrnn"))
    options = parser.parse_args()
    found = hashes(options.tflrnn)
    options.out.write_text(json.dumps(found, indent=2) + "\n")
    print(f"{len(found)} builds -> {options.out}")
    if options.compare:
        before = json.loads(options.compare.read_text())
        differ = sorted(k for k in before.keys() | found.keys() if before.get(k) != found.get(k))
        print(f"same bytes: {len(found) - len(differ)} of {len(found)}" + (f"; differ: {differ}" if differ else ""))
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
