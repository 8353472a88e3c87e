#!/usr/bin/env bash
# What a user installs, checked as a user runs it: build the wheel, install it (not editable) into a fresh venv
# outside the checkout with the extras that need no TensorFlow (keras, onnx, safetensors), and run every command
# from another directory: the main job, `build --weights` for each format those extras read, inspect, weights,
# bench, a manifest, the Python API, and the portable and full-int8 models on every runtime the extras bring (each
# runtime `verify --runtime all` loads must run a numeric check: none may be skipped silently). Then run the `run:`
# lines of examples/ci/github-actions.yml, as written, in a clean copy of the repository. pip's cache makes the venv
# cheap after the first run.
# Usage: scripts/check_wheel.sh
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv "[test]"  # the test venv writes the sample source models (a .keras file needs Keras)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

step() {  # run a command quietly; on failure show its output and stop
    local log="$work/step.log"
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "check_wheel: FAILED: $*" >&2
        exit 1
    fi
}

echo "check_wheel: building the wheel and a fresh venv in $work"
step "$VENV/bin/python" -m pip wheel --disable-pip-version-check --no-deps -w "$work/dist" "$ROOT"
wheel=$(ls "$work"/dist/tflrnn-*.whl)
python="$(readlink -f "$VENV/bin/python")"  # the interpreter the project's venv was made with
step "$python" -m venv "$work/venv"
step "$work/venv/bin/python" -m pip install --disable-pip-version-check "$wheel[keras,onnx,safetensors,micro]" \
    -c "$ROOT/scripts/constraints.txt"
step "$VENV/bin/python" "$ROOT/scripts/sample_sources.py" "$work/sources"
installed=$SECONDS

mkdir "$work/run"
cd "$work/run"  # not the checkout: the installed package must stand alone
export PATH="$work/venv/bin:$PATH"
step python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is not None)"
step python -c "import tflrnn, pathlib; assert pathlib.Path(tflrnn.__file__).is_relative_to('$work/venv'), tflrnn.__file__"

# `verify MODEL --runtime all --json [arguments]` passes, each of RUNTIMES runs at least one numeric check
# (numeric.*, int8.steps, int8.outputs, against.*), and so does every other runtime verify loaded.
cat >"$work/ran.py" <<'EOF'
import json
import sys

path, required = sys.argv[1], set(sys.argv[2].split(","))
report = json.load(open(path))
assert report["passed"], (path, [c for c in report["checks"] if not c["passed"]])
loaded = {r["name"] for r in report["runtimes"]}
numeric = {}
for check in report["checks"]:
    if check["runtime"] and check["name"].startswith(("numeric.", "int8.steps", "int8.ops", "int8.outputs", "int8.loop",
                                                       "against.")):
        numeric.setdefault(check["runtime"], []).append(check["name"])
missing = (required | loaded) - set(numeric)
assert not missing, f"{path}: no numeric check ran on {sorted(missing)}; loaded {sorted(loaded)}; notes {report['notes']}"
print(f"check_wheel: {path}: " + "; ".join(f"{r} {', '.join(sorted(set(numeric[r])))}" for r in sorted(numeric)))
EOF
verify_everywhere() {  # MODEL RUNTIMES(comma-separated) [verify arguments...]
    local model="$1" runtimes="$2"
    shift 2
    step bash -c 'tflrnn verify "$0" --runtime all --json "$@" >"$0.verify.json"' "$model" "$@"
    step python "$work/ran.py" "$model.verify.json" "$runtimes"
    cat "$work/step.log"
}

echo "check_wheel: the main job, and every command"
step tflrnn build --units 64 -o rnn.tflite
step tflrnn verify rnn.tflite
step tflrnn inspect rnn.tflite --json
step tflrnn weights rnn.tflite -o rnn.npz
step tflrnn build --weights rnn.npz --units 64 -o rebuilt.tflite
step cmp rnn.tflite rebuilt.tflite
step tflrnn bench rnn.tflite --runs 5 --warmup 1
for source in rnn.npz rnn.keras rnn.h5 rnn.weights.h5 rnn.onnx rnn.safetensors; do
    step tflrnn build --weights "$work/sources/$source" -o "$source.tflite"
    step tflrnn verify "$source.tflite" --weights "$work/sources/$source"
done
step tflrnn verify rnn.onnx.tflite --against "$work/sources/rnn.onnx"
# The portable lowering on every runtime the wheel's extras bring (LiteRT +/- XNNPACK, CompiledModel, TFLite Micro)
everywhere=litert,litert+xnnpack,compiled,micro
step tflrnn build --units 64 --time-steps 50 --lowering portable -o portable.tflite
verify_everywhere portable.tflite "$everywhere"
step tflrnn build --weights "$work/sources/rnn.onnx" --lowering portable --recurrence loop -o loop.tflite
verify_everywhere loop.tflite "$everywhere" --against "$work/sources/rnn.onnx"
# Full int8 for microcontrollers: built from calibration data, verified step by step on LiteRT and TFLite Micro
step python -c "import numpy as np; np.save('calibration.npy', np.random.default_rng(1).standard_normal((16, 1, 20, 16)).astype(np.float32))"
step bash -c 'tflrnn build --units 32 --input-size 16 --time-steps 20 --lowering portable --quantize full-int8 --calibration calibration.npy -o int8.tflite >int8.build.txt'
step grep -Eq "TFLite Micro arena [0-9,]+ bytes" int8.build.txt  # the smallest arena it runs in, measured
step grep -Eq "calibration sequences against the float model \(LiteRT\): error max" int8.build.txt
# int8.steps reads every tensor back on LiteRT and TFLite Micro; CompiledModel and XNNPACK give only the outputs,
# held to the float reference by int8.outputs
verify_everywhere int8.tflite litert,litert+xnnpack,compiled,micro
step tflrnn verify int8.tflite --data calibration.npy --max-error 0.2  # gated on the user's data
step tflrnn inspect int8.tflite
# A GRU (the second cell kind: portable only), float and full int8, on every runtime, its state carried
step tflrnn build --cell gru --units 16 --input-size 16 --time-steps 20 -o gru.tflite
verify_everywhere gru.tflite "$everywhere"
# ... and as a WHILE loop of 5 steps a pass, bidirectional
step tflrnn build --cell gru --bidirectional --units 8 --input-size 16 --time-steps 20 --steps-per-iteration 5 -o gru_passes.tflite
verify_everywhere gru_passes.tflite "$everywhere"
step tflrnn build --cell gru --units 16 --input-size 16 --time-steps 20 --quantize full-int8 --calibration calibration.npy -o gru_int8.tflite
verify_everywhere gru_int8.tflite litert,litert+xnnpack,compiled,micro
# An LSTM (the third kind, its state h and c), portable and as a WHILE loop, on every runtime, its state carried
step tflrnn build --cell lstm --lowering portable --units 16 --input-size 16 --time-steps 20 -o lstm.tflite
verify_everywhere lstm.tflite "$everywhere"
step tflrnn build --cell lstm --lowering portable --recurrence loop --bidirectional --units 8 --input-size 16 --time-steps 20 -o lstm_loop.tflite
verify_everywhere lstm_loop.tflite "$everywhere"
# The fused LSTM op in full int8 (TFLite's integer LSTM kernel, int16 c) on LiteRT and TFLite Micro, state carried
step tflrnn build --cell lstm --units 16 --input-size 16 --time-steps 20 --quantize full-int8 --calibration calibration.npy -o lstm_int8.tflite
verify_everywhere lstm_int8.tflite litert,micro
# The portable LSTM in full int8 (16x8: int16 values), as a WHILE loop, on every runtime (its unrolled twin step by step)
step tflrnn build --cell lstm --lowering portable --recurrence loop --units 16 --input-size 16 --time-steps 20 --quantize full-int8 --calibration calibration.npy -o lstm_16x8.tflite
verify_everywhere lstm_16x8.tflite "$everywhere"
step tflrnn build --cell lstm --units 16 --input-size 16 --time-steps 20 --quantize int8 -o lstm_hybrid.tflite
verify_everywhere lstm_hybrid.tflite litert
step python - <<EOF
import tflrnn
data = tflrnn.build(tflrnn.RNNCell(8), weights=None, time_steps=3)
assert tflrnn.verify(data).passed
assert tflrnn.inspect(data).to_dict()["subgraphs"][0]["operators"][0]["op"] == "UNIDIRECTIONAL_SEQUENCE_RNN"
EOF

cat >models.toml <<EOF
[defaults]
time_steps = 8

[[models]]
name = "seeded"
units = 16

[[models]]
name = "npz"
weights = "$work/sources/rnn.npz"

[[models]]
name = "keras_classifier"       # compared with Keras only where TensorFlow is installed: skipped here
weights = "$work/sources/rnn.keras"

[[models]]
name = "onnx"
weights = "$work/sources/rnn.onnx"

[[models]]
name = "safetensors"            # compared with torch only where torch is installed: skipped here
weights = "$work/sources/rnn.safetensors"
EOF
step tflrnn build --manifest models.toml --out-dir models
step tflrnn build --manifest models.toml --out-dir models --check
step grep -q "comparison skipped" models/report.md

echo "check_wheel: examples/ci/github-actions.yml, its run: lines as written"
mkdir "$work/repo"
git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 cp --parents -P -t "$work/repo")
cd "$work/repo"
export GITHUB_STEP_SUMMARY="$work/summary.md"
sed -n 's/^ *\(- \)\{0,1\}run: //p' "$ROOT/examples/ci/github-actions.yml" >"$work/workflow.sh"
while IFS= read -r line; do
    step bash -euo pipefail -c "$line"
done <"$work/workflow.sh"
step grep -q "models passed" "$GITHUB_STEP_SUMMARY"

echo "check_wheel: passed ($((installed - started)) s to build and install, $((SECONDS - installed)) s to run)"
