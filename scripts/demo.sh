#!/usr/bin/env bash
# Set up (.venv) and run the main job: build a 64-unit fused RNN model and verify it in LiteRT.
# Usage: scripts/demo.sh [extra `tflrnn build` options]
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv
mkdir -p "$ROOT/build"
"$VENV/bin/tflrnn" build --units 64 -o "$ROOT/build/rnn.tflite" "$@"
"$VENV/bin/tflrnn" verify "$ROOT/build/rnn.tflite"
