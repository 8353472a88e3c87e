"""Fuzz harness for the tflrnn command line (`python scripts/fuzz.py`; this package is its parts).

Mutates valid inputs and feeds them to the commands that read files from other people:

| target              | command                                         | seed inputs                              |
| ------------------- | ----------------------------------------------- | ---------------------------------------- |
| `inspect`           | `tflrnn inspect MODEL`                          | models written by `tflrnn build`         |
| `verify`            | `tflrnn verify MODEL --sequences 2`             | the same models                          |
| `export`            | `tflrnn weights MODEL -o OUT.npz`               | the same models                          |
| `build-weights`     | `tflrnn build --weights FILE -o OUT.tflite`     | npz, safetensors, onnx, .keras/.h5 files |
| `build-config`      | `tflrnn build --config FILE -o OUT.tflite`      | JSON and TOML cell configs               |
| `build-calibration` | `tflrnn build --calibration FILE -o OUT.tflite` | .npy / .npz for small full-int8 builds   |

Mutations: byte flips, truncation, splices; flatbuffer-aware ones at the positions the reader really dereferences
(root and vtable offsets, uoffsets, vector lengths, int32 vector elements, string bytes, weight data), a wrong file
identifier, and semantic edits made through tflrnn's own reader and writer; for weights, array-level edits (NaN,
inf, wrong dtypes and shapes), format-level ones (npy headers, safetensors headers, ONNX attributes and
initializers, HDF5 attributes and datasets, Keras configs), non-UTF-8 names; for configs, type confusion, huge
numbers, NaN/inf, deep nesting in JSON and TOML; for calibration data, the array (dtypes, shapes, NaN), the .npy
header (numpy's parser: unterminated dicts, expressions, Python 2 longs, versions, lengths, object and structured
dtypes) and the .npz's zip (declared sizes, CRCs, compression methods, encryption, members), and bombs: a member
whose header or zip entry declares far more than the file holds.

Pass criteria for every case: exit code 0, 1 (verify only) or 2 within the time limit; no traceback; on exit 2 one
line on stderr (`tflrnn: error: ...`) and nothing on stdout; nothing on stderr otherwise but tflrnn's own
`warning: ...` lines; no output file (and no stray `.part` temporary) when the command fails; an output file that
tflrnn can read when `build` succeeds.

Cases run in-process through `tflrnn.cli.main` (fast), in a forked child of this process (fast, and isolated
from a native crash, a hang inside C code, or a huge allocation: `verify` runs a native interpreter, `build
--weights` reads HDF5 through its C library), or as a real `python -m tflrnn` subprocess (a few per run, end to
end). `--mode` switches, e.g. `--mode verify=inprocess` now that verify runs the interpreter in a child process of
its own, or `--mode subprocess` for everything (slow: ~0.3 s a case). Each case's address space is capped at the
harness's own plus 3 GiB: an input that needs more fails as `memory` instead of swapping the machine.

    python scripts/fuzz.py --cases 300 --seed 0        # the quick run tests/test_fuzz.py does (~15 s)
    python scripts/fuzz.py --long --seed 2 --save-failures /tmp/found --json /tmp/long.json
                                                       # the long run: ~17,000 cases in 9 minutes (--time-budget)
    python scripts/fuzz.py --replay tests/fuzz_corpus  # re-run the regression corpus
    python scripts/fuzz.py --long --seed 2 --show 1234 --keep /tmp/k   # one case: argv, output, traceback

A long run prints counts per target, exit code and mutation family, and each distinct failure (by target, problem
and the innermost tflrnn frame) with its command and, for an internal error, the traceback from a `--debug`
re-run. `--save-failures DIR` writes one input per distinct failure (shrunk where cheap: config lines dropped,
seed bytes restored) as `<target>-<hash><suffix>` (+ `.args`), the naming tests/fuzz_corpus uses; review and copy
new ones there. The same `--seed` (and `--long` or not) gives the same cases.

Exit code: 0 when every case passed, 1 when any failed.

| module            | owns                                                                       |
| ----------------- | -------------------------------------------------------------------------- |
| cases.py          | Case, Result, Seed and the harness's constants                             |
| formats.py        | writers of every input format (npz, safetensors, ONNX, Keras, JSON, TOML)  |
| seeds.py          | the valid inputs that cases mutate                                         |
| mutate_*.py       | mutations of bytes, models, weights files, configs and calibration data    |
| generate.py       | the seeded cases, and the regression corpus                                |
| run.py            | running one case, and judging it                                           |
| session.py        | a whole run, its summary and the command line                              |
"""

from .cases import DEFAULT_MODES, DEFAULT_TIMEOUT, MODES, TARGETS, Case, Result, Seed
from .generate import load_corpus, make_case, minimize, save_case
from .run import judge, run_argv, run_case
from .session import Summary, fuzz, main, prepare, print_summary, quick_run

__all__ = ["DEFAULT_MODES", "DEFAULT_TIMEOUT", "MODES", "TARGETS", "Case", "Result", "Seed", "load_corpus",
           "make_case", "minimize", "save_case", "judge", "run_argv", "run_case", "Summary", "fuzz", "main",
           "prepare", "print_summary", "quick_run"]
