#!/usr/bin/env bash
# Set up (.venv with the test extra, which brings TensorFlow for the cross-checks) and run the tests.
# Usage: scripts/test.sh [pytest options]
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv "[test]"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
