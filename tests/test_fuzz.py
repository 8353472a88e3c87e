"""The fuzz harness (scripts/fuzz.py): a seeded quick run over every target, and the regression corpus.

Every case must end with exit 0, 1 (verify) or 2 inside the time limit, with no traceback, one stderr line on an
error, and no output file (nor a stray temporary) on failure. tests/fuzz_corpus/ keeps inputs that once failed,
named <target>-<hash><suffix> (extra arguments in <file>.args); `python scripts/fuzz.py --replay tests/fuzz_corpus`
runs them outside pytest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import fuzz  # noqa: E402

CORPUS = Path(__file__).parent / "fuzz_corpus"
QUICK_CASES = 300
QUICK_SEED = 0
CORPUS_TIMEOUT = 5.0  # seconds: tflrnn handles each of these inputs in well under one once it is right


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    return work, fuzz.prepare(work)


def _report(case: fuzz.Case, result: fuzz.Result, count: int = 1) -> str:
    return (f"{case.target} [{case.mutation}] x{count}: {'; '.join(result.problems)}\n"
            f"    tflrnn {' '.join(result.argv)}\n    " + result.detail.replace("\n", "\n    "))


def test_seed_inputs_are_valid(harness):
    """The mutations start from inputs every command accepts."""
    work, seeds = harness
    cases = [fuzz.Case(target, seed.data, seed.suffix, list(seed.args), seed.name)
             for seed in seeds["model"] for target in ("inspect", "verify", "export")]
    cases += [fuzz.Case("build-weights", seed.data, seed.suffix, list(seed.args), seed.name)
              for seed in seeds["weights"]]
    cases += [fuzz.Case("build-config", seed.data, seed.suffix, list(seed.args), seed.name)
              for seed in seeds["config"]]
    bad = []
    for case in cases:
        result = fuzz.run_case(case, work)
        if result.code != 0 or not result.passed:
            bad.append(f"{case.target} {case.seed}: exit {result.code} {result.err.strip()} {result.problems}")
    assert not bad, "\n".join(bad)


def test_quick_run(harness):
    """A seeded run over every target; a few cases also run as real `python -m tflrnn` processes."""
    work, seeds = harness
    cases = [fuzz.make_case(seeds, QUICK_SEED, i) for i in range(QUICK_CASES)]
    summary = fuzz.fuzz(cases, work, seeds=seeds, subprocess_checks=6, minimize_failures=False)
    assert summary.cases >= QUICK_CASES
    assert set(summary.by_target) == set(fuzz.TARGETS)
    assert summary.modes["subprocess"] >= 5
    failures = [_report(case, result, count) for case, result, count in summary.signatures.values()]
    assert not failures, f"{summary.failed} failing cases, {len(failures)} distinct:\n" + "\n".join(failures)


CORPUS_CASES = fuzz.load_corpus(CORPUS) if CORPUS.is_dir() else []


@pytest.mark.parametrize("case", CORPUS_CASES, ids=[c.mutation.split(":", 1)[1] for c in CORPUS_CASES])
def test_corpus(harness, case, monkeypatch):
    """Inputs that once failed: each must now pass (in the target's usual mode)."""
    monkeypatch.setenv("TFLRNN_READ_TIMEOUT", "2")  # a Keras file whose HDF5 parse hangs: stopped after 2 s
    work, _ = harness
    result = fuzz.run_case(case, work, timeout=CORPUS_TIMEOUT)
    assert result.passed, _report(case, result)


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


def test_forked_case_is_killed_at_the_time_limit(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(fuzz, "_call_cli", lambda argv: time.sleep(30) or 0)
    start = time.monotonic()
    result = fuzz.run_argv(["inspect", "x"], "fork", 0.5)
    assert result.code is None and time.monotonic() - start < 5
