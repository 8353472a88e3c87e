"""A whole run: counting, reporting distinct failures, and the command line (`python scripts/fuzz.py`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .cases import Case, DEFAULT_MODES, DEFAULT_TIMEOUT, MODES, Result, Seed, TARGETS, _innermost, _tail
from .seeds import generate_seeds
from .run import run_case
from .generate import load_corpus, make_case, minimize, save_case


@dataclass
class Summary:
    cases: int = 0
    seconds: float = 0.0
    by_target: Counter = field(default_factory=Counter)
    by_mutation: Counter = field(default_factory=Counter)  # (target, family)
    codes: Counter = field(default_factory=Counter)  # (target, code)
    modes: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)  # (case, result)
    notes: list = field(default_factory=list)  # (case, result)
    signatures: dict = field(default_factory=dict)  # signature -> (case, result, count)
    slowest: list = field(default_factory=list)

    def add(self, case: Case, result: Result) -> None:
        self.cases += 1
        self.by_target[case.target] += 1
        self.by_mutation[(case.target, case.family)] += 1
        self.codes[(case.target, "timeout" if result.code is None else str(result.code))] += 1
        self.modes[result.mode] += 1
        self.slowest = sorted(self.slowest + [(result.seconds, case.target, f"#{case.index} {case.mutation}")],
                              reverse=True)[:5]
        if result.notes:
            self.notes.append((case, result))
        if not result.passed:
            self.failures.append((case, result))
            sig = result.signature(case)
            first = self.signatures.get(sig)
            self.signatures[sig] = (first[0], first[1], first[2] + 1) if first else (case, result, 1)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def to_dict(self) -> dict:
        return {
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "by_target": dict(self.by_target),
            "exit_codes": {f"{t} {c}": n for (t, c), n in sorted(self.codes.items())},
            "by_mutation": {f"{t} {m}": n for (t, m), n in sorted(self.by_mutation.items())},
            "modes": dict(self.modes),
            "failures": self.failed,
            "distinct_failures": [
                {"target": c.target, "problems": r.problems, "where": _innermost(r.trace or r.err), "count": n,
                 "mutation": c.mutation, "seed": c.seed, "argv": r.argv, "detail": r.detail,
                 "traceback_tail": _tail(r.trace, 12)}
                for (c, r, n) in self.signatures.values()
            ],
            "notes": [{"target": c.target, "mutation": c.mutation, "notes": r.notes} for c, r in self.notes[:50]],
        }


def fuzz(cases, workdir: Path, modes: dict | None = None, timeout: float = DEFAULT_TIMEOUT,
         save_failures: Path | None = None, seeds: dict | None = None, time_budget: float | None = None,
         verbose: bool = False, progress: bool = False, minimize_failures: bool = True,
         subprocess_checks: int = 0) -> Summary:
    """Run cases; keep counts and failures. `subprocess_checks`: also run that many cases (spread over the
    targets) as real `python -m tflrnn` processes."""
    modes = {**DEFAULT_MODES, **(modes or {})}
    summary = Summary()
    start = time.monotonic()
    chosen_for_subprocess: dict[str, int] = Counter()
    saved_signatures = set()
    last_report = start
    for case in cases:
        if time_budget is not None and time.monotonic() - start > time_budget:
            break
        result = run_case(case, workdir, modes[case.target], timeout)
        summary.add(case, result)
        if verbose or not result.passed:
            status = "ok" if result.passed else "FAIL " + "; ".join(result.problems)
            print(f"[{case.index}] {case.target} {case.seed} {case.mutation} -> {result.code} "
                  f"({result.seconds:.2f}s) {status}", file=sys.stderr, flush=True)
        if not result.passed and save_failures is not None:
            sig = result.signature(case)
            if sig not in saved_signatures:
                saved_signatures.add(sig)
                small = minimize(case, result, workdir, seeds) if minimize_failures else case
                path = save_case(small, save_failures)
                print(f"    saved {path}", file=sys.stderr, flush=True)
        if subprocess_checks and chosen_for_subprocess[case.target] < max(1, subprocess_checks // len(TARGETS)) \
                and sum(chosen_for_subprocess.values()) < subprocess_checks:
            chosen_for_subprocess[case.target] += 1
            end_to_end = run_case(case, workdir, "subprocess", timeout)
            summary.add(case, end_to_end)
            if not end_to_end.passed:
                print(f"[{case.index}] {case.target} {case.mutation} (subprocess) -> {end_to_end.code} FAIL "
                      + "; ".join(end_to_end.problems), file=sys.stderr, flush=True)
        if progress and time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            print(f"... {summary.cases} cases, {summary.failed} failures, {last_report - start:.0f} s",
                  file=sys.stderr, flush=True)
    summary.seconds = time.monotonic() - start
    return summary


def print_summary(summary: Summary, file=sys.stdout) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"{summary.cases} cases in {summary.seconds:.1f} s ({', '.join(f'{m} {n}' for m, n in summary.modes.items())})")
    p("\ncases and exit codes per target:")
    for target in TARGETS:
        if summary.by_target[target]:
            codes = ", ".join(f"{c}: {n}" for (t, c), n in sorted(summary.codes.items()) if t == target)
            p(f"  {target:<14} {summary.by_target[target]:>6}   exit {codes}")
    p("\ncases per target and mutation family:")
    for target in TARGETS:
        fams = sorted(((m, n) for (t, m), n in summary.by_mutation.items() if t == target), key=lambda x: -x[1])
        if fams:
            p(f"  {target:<14} " + ", ".join(f"{m} {n}" for m, n in fams))
    p("\nslowest: " + "; ".join(f"{s:.2f}s {t} {m[:60]}" for s, t, m in summary.slowest))
    if summary.notes:
        kinds = Counter(n.split(":")[0] for _, r in summary.notes for n in r.notes)
        p("\nnotes (passing): " + ", ".join(f"{k} {n}" for k, n in kinds.items()))
    p(f"\nfailures: {summary.failed} ({len(summary.signatures)} distinct)")
    for (case, result, count) in summary.signatures.values():
        p(f"\n- {case.target}: {'; '.join(result.problems)}  [x{count}]")
        p(f"  mutation: {case.mutation} (seed {case.seed}, index {case.index})")
        p(f"  argv: tflrnn {' '.join(result.argv)}")
        if result.detail:
            p("  " + result.detail.replace("\n", "\n  "))


def prepare(workdir: Path) -> dict[str, list[Seed]]:
    """Seeds, with the modules the cases use imported once here (forked children then start warm)."""
    import tflrnn.cli  # noqa: F401
    import tflrnn.inspection  # noqa: F401
    import tflrnn.verification  # noqa: F401
    import tflrnn.config  # noqa: F401
    import tflrnn.sources  # noqa: F401

    for module in ("jsonschema", "h5py", "onnx", "safetensors.numpy", "ai_edge_litert.interpreter",
                   "tflrnn.sources.npz", "tflrnn.sources.keras_files", "tflrnn.sources.onnx_graph",
                   "tflrnn.sources.pytorch", "tflrnn.runtime", "tflrnn.quantization", "tflrnn.arrays"):
        with contextlib.suppress(ImportError):
            __import__(module)
    return generate_seeds(Path(workdir) / "seeds")


def quick_run(n: int = 300, seed: int = 0, workdir: Path | None = None, subprocess_checks: int = 5,
              save_failures: Path | None = None) -> Summary:
    """The seeded run the test suite does."""
    with tempfile.TemporaryDirectory(prefix="tflrnn-fuzz-") as tmp:
        work = Path(workdir or tmp)
        seeds = prepare(work)
        cases = (make_case(seeds, seed, i) for i in range(n))
        return fuzz(cases, work, seeds=seeds, subprocess_checks=subprocess_checks, save_failures=save_failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=sys.modules[__package__].__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, help="number of cases (default 300; --long: 100000, time-bounded)")
    parser.add_argument("--seed", type=int, default=0, help="run seed: the same seed gives the same cases")
    parser.add_argument("--long", action="store_true", help="many cases with more stacked edits, until "
                        "--time-budget (default 540 s)")
    parser.add_argument("--time-budget", type=float, help="stop starting cases after this many seconds")
    parser.add_argument("--targets", help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--mode", action="append", default=[],
                        help="MODE or TARGET=MODE (inprocess, fork, subprocess); repeatable")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per case")
    parser.add_argument("--save-failures", type=Path, help="save one input per distinct failure here (a corpus)")
    parser.add_argument("--no-minimize", action="store_true", help="save failing inputs as found")
    parser.add_argument("--subprocess-checks", type=int, default=5,
                        help="cases also run as real subprocesses, spread over the targets (default 5)")
    parser.add_argument("--replay", type=Path, help="run the corpus in this directory instead of generating cases")
    parser.add_argument("--show", type=int, help="run only case number N of the seeded run and print everything")
    parser.add_argument("--keep", type=Path, help="with --show: also write the case's input file here")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    options = parser.parse_args(argv)

    modes = {}
    for item in options.mode:
        if "=" in item:
            target, mode = item.split("=", 1)
            modes[target] = mode
        else:
            modes.update({t: item for t in TARGETS})
    if any(m not in MODES for m in modes.values()) or any(t not in TARGETS for t in modes):
        parser.error(f"--mode takes MODE or TARGET=MODE with MODE in {', '.join(MODES)}")
    targets = tuple(options.targets.split(",")) if options.targets else TARGETS
    if any(t not in TARGETS for t in targets):
        parser.error(f"--targets: choose from {', '.join(TARGETS)}")

    with tempfile.TemporaryDirectory(prefix="tflrnn-fuzz-") as tmp:
        work = options.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        seeds = prepare(work)
        if options.show is not None:
            case = make_case(seeds, options.seed, options.show, targets, options.long)
            result = run_case(case, work, modes.get(case.target), options.timeout)
            print(f"case {case.index}: {case.target} seed {case.seed}, mutation {case.mutation}, args {case.args}")
            print(f"argv: tflrnn {' '.join(result.argv)}  ({result.mode}, {result.seconds:.2f} s)")
            print(f"exit: {result.code}\n--- stdout\n{result.out[-3000:]}\n--- stderr\n{result.err[-3000:]}")
            print(f"problems: {result.problems or 'none'}; notes: {result.notes or 'none'}")
            if result.trace:
                print(f"--- traceback (from a --debug re-run where the exit was 3)\n{_tail(result.trace, 40)}")
            if options.keep:
                print(f"kept {save_case(case, options.keep)}")
            return 0 if result.passed else 1
        if options.replay is not None:
            cases = load_corpus(options.replay)
            print(f"replaying {len(cases)} cases from {options.replay}", file=sys.stderr)
        else:
            count = options.cases if options.cases is not None else (100000 if options.long else 300)
            cases = (make_case(seeds, options.seed, i, targets, options.long) for i in range(count))
        budget = options.time_budget if options.time_budget is not None else (540.0 if options.long else None)
        summary = fuzz(cases, work, modes, options.timeout, options.save_failures, seeds, budget, options.verbose,
                       progress=options.long, minimize_failures=not options.no_minimize,
                       subprocess_checks=0 if options.replay else options.subprocess_checks)
    print_summary(summary)
    if options.json:
        options.json.write_text(json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
    return 0 if summary.failed == 0 else 1
