"""The fuzz harness (scripts/fuzz.py): a seeded quick run over every target, and the regression corpus.

Every case must end with exit 0, 1 (verify) or 2 inside the time limit, with no traceback, one stderr line on an
error, and no output file (nor a stray temporary) on failure. tests/fuzz_corpus/ keeps inputs that once failed,
named <target>-<hash><suffix> (extra arguments in <file>.args); `python scripts/fuzz.py --replay tests/fuzz_corpus`
runs them outside pytest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fuzzing as fuzz  # scripts/fuzzing, on pytest's pythonpath

CORPUS = Path(__file__).parent / "fuzz_corpus"
HARNESS = Path(fuzz.__file__).resolve().parent.parent / "fuzz.py"
QUICK_CASES = 300
QUICK_SEED = 0
CORPUS_TIMEOUT = 5.0  # seconds: tflrnn handles each of these inputs in well under one once it is right


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    return work, fuzz.prepare(work)


def test_seed_inputs_are_valid(harness):
    """The mutations start from inputs every command accepts."""
    work, seeds = harness
    cases = [fuzz.Case(target, seed.data, seed.suffix, list(seed.args), seed.name)
             for seed in seeds["model"] for target in ("inspect", "verify", "export")]
    cases += [fuzz.Case("build-weights", seed.data, seed.suffix, list(seed.args), seed.name)
              for seed in seeds["weights"]]
    cases += [fuzz.Case("build-config", seed.data, seed.suffix, list(seed.args), seed.name)
              for seed in seeds["config"]]
    cases += [fuzz.Case("build-calibration", seed.data, seed.suffix, list(seed.args), seed.name)
              for seed in seeds["calibration"]]
    bad = []
    for case in cases:
        result = fuzz.run_case(case, work, "inprocess")  # not forked from this process: see _harness_run
        if result.code != 0 or not result.passed:
            bad.append(f"{case.target} {case.seed}: exit {result.code} {result.err.strip()} {result.problems}")
    assert not bad, "\n".join(bad)


def _harness_run(tmp_path, *args, env=None) -> dict:
    """The harness's own command in a fresh process, its summary back as JSON. Its fork mode forks the process it
    runs in: here, a fresh single-threaded one, not pytest's, which by now holds the native threads of TensorFlow,
    onnxruntime and torch (a fork taken while one of them holds a lock can hang the child)."""
    summary = tmp_path / "summary.json"
    subprocess.run([sys.executable, str(HARNESS), *map(str, args), "--workdir", tmp_path / "work",
                    "--json", summary], capture_output=True, text=True, timeout=600,
                   env={**os.environ, **(env or {})})
    return json.loads(summary.read_text())


def _distinct(summary: dict) -> str:
    return "\n".join(f"{f['target']} [{f['mutation']}] x{f['count']}: {'; '.join(f['problems'])}\n"
                     f"    tflrnn {' '.join(f['argv'])}\n    {f['detail']}" for f in summary["distinct_failures"])


def test_quick_run(tmp_path):
    """A seeded run over every target; a few cases also run as real `python -m tflrnn` processes."""
    summary = _harness_run(tmp_path, "--cases", QUICK_CASES, "--seed", QUICK_SEED, "--subprocess-checks", 6,
                           "--no-minimize")
    assert summary["cases"] >= QUICK_CASES
    assert set(summary["by_target"]) == set(fuzz.TARGETS)
    assert summary["modes"]["subprocess"] >= 5
    assert summary["failures"] == 0, f"{summary['failures']} failing cases:\n{_distinct(summary)}"


CORPUS_CASES = fuzz.load_corpus(CORPUS) if CORPUS.is_dir() else []


def test_corpus(tmp_path):
    """Inputs that once failed: each must now pass (in the target's usual mode). A Keras file whose HDF5 parse
    hangs is stopped after 2 s."""
    summary = _harness_run(tmp_path, "--replay", CORPUS, "--timeout", CORPUS_TIMEOUT,
                           env={"TFLRNN_READ_TIMEOUT": "2"})
    assert summary["cases"] == len(CORPUS_CASES) > 0
    assert summary["failures"] == 0, f"{summary['failures']} failing cases:\n{_distinct(summary)}"


def test_corpus_names_are_understood():
    names = [p.name for p in CORPUS.iterdir() if not p.name.startswith(".") and not p.name.endswith((".args", ".md"))]
    assert len(names) == len(CORPUS_CASES), sorted(names)


# The judge itself: a harness that cannot see a failure proves nothing ----------------------------------------


def _judged(tmp_path, target, code, out="", err="", files=()):
    outdir = tmp_path / "out"
    outdir.mkdir(parents=True)
    for name in files:
        (outdir / name).write_bytes(b"x")
    result = fuzz.Result(code, out, err, 0.01, "inprocess", [])
    fuzz.judge(fuzz.Case(target, b"", ".npz"), result, outdir)
    return result.problems


def test_judge_flags_each_violation(tmp_path):
    assert _judged(tmp_path / "a", "build-weights", 2, err="tflrnn: error: bad\n") == []
    assert _judged(tmp_path / "b", "build-weights", 3, err="tflrnn: error: internal error: KeyError\n")
    assert _judged(tmp_path / "c", "build-weights", None)[0].startswith("timeout")
    assert _judged(tmp_path / "d", "verify", -11)[0].startswith("crash")
    assert _judged(tmp_path / "e", "inspect", 2, err="Traceback (most recent call last):\nx\n")
    assert _judged(tmp_path / "f", "build-config", 2, err="tflrnn: error: x\n", files=["model.tflite"])
    assert _judged(tmp_path / "g", "build-config", 2, err="tflrnn: error: x\n", files=[".model.tflite.1.part"])
    assert _judged(tmp_path / "h", "inspect", 1)
    assert _judged(tmp_path / "i", "verify", 0, err="RuntimeWarning: overflow\n")
    # tflrnn's own warnings are for the user; a stray line beside them is still flagged
    assert _judged(tmp_path / "j", "inspect", 0, err="warning: input of the network: ...\n") == []
    assert _judged(tmp_path / "k", "inspect", 0, err="warning: x\nUserWarning: y\n")


def test_forked_case_is_killed_at_the_time_limit(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(fuzz.run, "_call_cli", lambda argv: time.sleep(30) or 0)
    start = time.monotonic()
    result = fuzz.run_argv(["inspect", "x"], "fork", 0.5)
    assert result.code is None and time.monotonic() - start < 5
