# Sourced by demo.sh and test.sh: create .venv with a Python 3.10+ if it is missing, and install tflrnn into it.
# Usage: ensure_venv [pip extras, e.g. "[test]"] (installed under the pins of scripts/constraints.txt)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

ensure_venv() {
    local extras="${1:-}"
    if [ ! -x "$VENV/bin/python" ]; then
        local python="${PYTHON:-}"
        if [ -z "$python" ]; then
            for candidate in python3 python3.13 python3.12 python3.11 python3.10 python; do
                if command -v "$candidate" >/dev/null 2>&1 \
                    && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
                    python="$candidate"
                    break
                fi
            done
        fi
        if [ -z "$python" ]; then
            echo "tflrnn needs Python 3.10 or newer (set PYTHON=/path/to/python3)." >&2
            exit 2
        fi
        echo "creating $VENV with $("$python" --version 2>&1)"
        "$python" -m venv "$VENV"
        quiet_pip install --upgrade pip
    fi
    # Cheap when nothing changed; keeps the venv in step with pyproject.toml.
    quiet_pip install -e "$ROOT$extras" -c "$ROOT/scripts/constraints.txt"
}

# pip and the build backend are chatty; keep their output in a log and show it only when they fail.
quiet_pip() {
    local log="$VENV/pip.log"
    if ! "$VENV/bin/python" -m pip --disable-pip-version-check "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "pip $* failed; the whole log is in $log" >&2
        exit 2
    fi
}
