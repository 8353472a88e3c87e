"""The smallest TFLite Micro tensor arena a model runs in, measured with the tflite-micro interpreter.

A microcontroller user sizes RAM from it. Micro's own allocation record undercounts what allocation needs (20,960
bytes recorded for a model that needs 24,000 to 26,000), so the arena is found by bisection instead: the smallest
size, to 16 bytes, with which the interpreter allocates and invokes twice (the second invoke uses the state the
first carried). A too-small arena usually raises, but some sizes crash the interpreter outright, so the trials run
in a child process; a crash counts as too small and the search goes on in a new child.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

ALIGNMENT = 16
_MAX_CHILDREN = 64
CHILD_SECONDS = 120  # a search takes well under a second for a model a microcontroller holds
# The largest arena tried: far beyond any microcontroller's RAM, and a bound on what measuring costs (a model whose
# declared shapes ask for gigabytes would otherwise have the interpreter allocate them)
MAX_ARENA = 512 << 20

# The child: bisects between argv's low (fails) and high (runs), printing each trial before and after it.
_TRIALS = r"""
import sys
from tflite_micro.python.tflite_micro import runtime as tflm
data = sys.stdin.buffer.read()
low, high = int(sys.argv[1]), int(sys.argv[2])

def runs(size):
    try:
        interpreter = tflm.Interpreter.from_bytes(data, arena_size=size)
        interpreter.invoke()
        interpreter.invoke()
        return True
    except RuntimeError:
        return False

if not runs(high):
    print("none", high, flush=True)
    sys.exit(0)
while high - low > 16:
    size = (low + high) // 2 // 16 * 16
    size = size if size > low else low + 16
    print("try", size, flush=True)
    if runs(size):
        high = size
        print("ok", size, flush=True)
    else:
        low = size
        print("no", size, flush=True)
print("found", high, flush=True)
"""


def micro_installed() -> bool:
    return importlib.util.find_spec("tflite_micro") is not None


def not_measured() -> str:
    """Why a full-int8 model's arena is not given (minimum_arena returned None): what to install, or that TFLite
    Micro did not run the model."""
    if not micro_installed():
        return "not measured: pip install 'tflrnn[micro]'"
    return f"not measured: TFLite Micro did not allocate and run the model (in up to {MAX_ARENA >> 20} MiB)"


def minimum_arena(data: bytes, upper: int) -> int | None:
    """The smallest arena (bytes, a multiple of 16) the model allocates and runs in, searched up to `upper` (at most
    MAX_ARENA); None when tflite-micro is not installed or the model does not run in that many bytes."""
    if not micro_installed():
        return None
    low, high = 0, -(-min(upper, MAX_ARENA) // ALIGNMENT) * ALIGNMENT
    for _ in range(_MAX_CHILDREN):
        try:
            child = subprocess.run([sys.executable, "-c", _TRIALS, str(low), str(high)], input=data,
                                   capture_output=True, timeout=CHILD_SECONDS)
        except subprocess.TimeoutExpired:
            return None
        trying = None
        for line in child.stdout.decode().splitlines():
            word, _, value = line.partition(" ")
            if word == "none":
                return None
            if word == "found":
                return int(value)
            if word == "try":
                trying = int(value)
            elif word in ("ok", "no"):
                high, low = (int(value), low) if word == "ok" else (high, int(value))
                trying = None
        if trying is None:  # it stopped outside a trial: not a verdict to go on from
            return None
        low = trying  # the child crashed on this size: too small
    return None
