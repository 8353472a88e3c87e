"""Many models from one manifest, for CI: build and verify each in parallel, then write the artifacts,
SHA256SUMS, report.json and report.md.

Workers only compute (bytes and a verify report); the parent writes every file atomically, in manifest order,
so an interrupted run leaves whole artifacts or none, and the same manifest gives byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .config import parse_document, validate
from .errors import ConfigError, TflrnnError
from .files import read_bytes, write_atomic
from .reference import DEFAULT_ATOL, DEFAULT_RTOL
from .version import __version__

MANIFEST_SCHEMA = "manifest.schema.json"
REPORT_SCHEMA = "manifest-report.schema.json"  # what manifest_report follows (checked in the tests)


@dataclass
class Entry:
    name: str
    settings: dict  # defaults merged in; paths made absolute
    paths: dict = field(default_factory=dict)  # each absolute path -> as the report shows it (from the manifest)


@dataclass
class Outcome:
    """One entry's result. `data` is None when it failed."""

    name: str
    data: bytes | None = None
    summary: dict = field(default_factory=dict)
    verify: dict | None = None
    error: str | None = None
    against_skipped: str | None = None  # why the framework comparison was not run, when it was left out
    paths: dict = field(default_factory=dict)  # the entry's paths: absolute -> as the report shows them

    @property
    def passed(self) -> bool:
        return self.error is None and self.verify is not None and self.verify["passed"]

    @property
    def max_abs_error(self) -> float | None:
        errors = [c["max_abs_error"] for c in (self.verify or {}).get("checks", []) if c["max_abs_error"] is not None]
        return max(errors) if errors else None


def load_manifest(path) -> list[Entry]:
    path = Path(path)
    raw = read_bytes(path, "manifest")
    try:
        document = parse_document(raw.decode("utf-8"), path)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    validate(document, MANIFEST_SCHEMA, str(path))
    defaults = document.get("defaults", {})
    entries, seen = [], set()
    for item in document["models"]:
        if item["name"] in seen:
            raise ConfigError(f"{path}: two models are named '{item['name']}'")
        seen.add(item["name"])
        settings = {**defaults, **item}
        paths = {}
        for key in ("weights", "config", "calibration", "data"):
            if key in settings:
                settings[key] = str((path.parent / settings[key]).resolve())
                paths[settings[key]] = Path(os.path.relpath(settings[key], path.parent.resolve())).as_posix()
        entries.append(Entry(item["name"], settings, paths))
    return entries


def build_entry(entry: Entry, check_models: bool = True) -> Outcome:
    """Build and (unless `check_models` is false) verify one entry in memory; runs in a worker process."""
    from .against import missing_runner
    from .sources import FORMATS
    from .builder import model_of, network_of
    from .config import BuildOptions, resolve_build_options
    from .verification import against_refused, verify
    from .writer import write

    s = entry.settings
    try:
        plan = resolve_build_options(BuildOptions.from_manifest(s), given_by="the manifest")
        network = network_of(**plan.options)
        model = model_of(network)
        data = write(model)
        report, skipped = None, None
        if check_models:
            against = None
            refused = against_refused(len(network.layers), bool(network.head),
                                      any(layer.int8 is not None for layer in network.layers),
                                      any(layer.int8 is not None and layer.kind == "lstm" for layer in network.layers))
            wanted = s.get("against")  # true, false, or unset: compare when the source's framework is installed
            if (plan.source is not None and FORMATS[plan.source.format].runs and wanted is not False
                    and not refused):
                skipped = missing_runner(plan.source.format) if wanted is None else None
                against = None if skipped else s["weights"]
            source = {"format": s.get("format"), "layer": s.get("layer"), "scope": s.get("scope"),
                      "layer_index": s.get("layer_index"), "atol": s.get("atol", DEFAULT_ATOL),
                      "rtol": s.get("rtol", DEFAULT_RTOL)}
            # A full-int8 model is not the source's float arithmetic: its float model, built beside it from the
            # same entry, is what is compared with the source; the int8 model is held to the float weights
            # (weights.match, its error) and to `data` / `max_error`.
            beside = against if network.int8 is not None else None
            verified = verify(data, weights=plan.options["weights"], against=None if beside else against,
                              data=s.get("data"), max_error=s.get("max_error"), **source)
            if beside is not None:
                _compare_float_model(verified, plan.options, beside, source)
            report = verified.to_dict()
    except TflrnnError as exc:
        return Outcome(entry.name, error=str(exc), paths=entry.paths)
    except Exception as exc:  # one entry's bug must not take the others down; it is still reported
        return Outcome(entry.name, error=f"internal error: {type(exc).__name__}: {exc}", paths=entry.paths)
    graph = model.subgraphs[0]
    cells = plan.options["cell"] if isinstance(plan.options["cell"], list) else [plan.options["cell"]]
    summary = {
        "input_shape": list(graph.tensors[graph.inputs[0]].shape),
        "output_shape": list(graph.tensors[graph.outputs[0]].shape),
        "activation": ", ".join(dict.fromkeys(c.activation if c.kind == "rnn" else c.kind.upper() for c in cells)),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return Outcome(entry.name, data, summary, report, against_skipped=skipped, paths=entry.paths)


def _compare_float_model(report, options: dict, against, source: dict) -> None:
    """Verify the float model of an int8 entry against its source, and add that comparison to the int8 model's
    report (with any other check of the float model that failed)."""
    from .builder import float_network_of, model_of
    from .verification import verify
    from .writer import write

    float_report = verify(write(model_of(float_network_of(**options))), against=against, **source)
    for check in float_report.checks:
        if check.kind == "against" or not check.passed:
            check.detail = f"the float model built beside it from the same entry: {check.detail}"
            report.checks.append(check)
    report.against = float_report.against
    report.notes.append("the int8 model is compared with its source through the float model built beside it; "
                        "the int8 model itself is held to the float weights and, with `data`, to your sequences")


def build_all(entries: list[Entry], jobs: int | None = None, on_result=None, check_models: bool = True
              ) -> list[Outcome]:
    """Build (and verify) every entry, `jobs` at a time (default: all cores); results in manifest order."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(entries)))
    results: dict[str, Outcome] = {}
    if jobs == 1:
        for entry in entries:
            results[entry.name] = build_entry(entry, check_models)
            if on_result:
                on_result(results[entry.name])
    else:
        # A process that has imported TensorFlow (the API called from a notebook or a test) holds its threads' locks,
        # and a forked worker deadlocks on them: then the workers start afresh. Otherwise the platform's default
        # (a fork on Linux: cheap, and it imports nothing again, so no other tflrnn on the path can shadow this one).
        context = multiprocessing.get_context("spawn" if "tensorflow" in sys.modules else None)
        with ProcessPoolExecutor(max_workers=jobs, initializer=_ignore_sigint, mp_context=context) as pool:
            futures = [pool.submit(build_entry, entry, check_models) for entry in entries]
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    results[outcome.name] = outcome
                    if on_result:
                        on_result(outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return [results[entry.name] for entry in entries]


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the parent cancels the pool and reports; workers stay quiet.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def write_artifacts(outcomes: list[Outcome], out_dir, manifest_path) -> None:
    """The models, SHA256SUMS, report.json and report.md, each written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for outcome in outcomes:
        if outcome.data is not None:
            write_atomic(out_dir / f"{outcome.name}.tflite", outcome.data)
    write_atomic(out_dir / "SHA256SUMS", sha256sums(outcomes).encode())
    report = manifest_report(outcomes, manifest_path)
    write_atomic(out_dir / "report.json", (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())
    write_atomic(out_dir / "report.md", markdown_report(report).encode())


def sha256sums(outcomes: list[Outcome]) -> str:
    lines = sorted(f"{o.summary['sha256']}  {o.name}.tflite" for o in outcomes if o.data is not None)
    return "".join(line + "\n" for line in lines)


def manifest_report(outcomes: list[Outcome], manifest_path) -> dict:
    """The report: the same for the same manifest on any machine (paths relative to the manifest)."""
    directory = Path(manifest_path).resolve().parent
    return {
        "tool": {"name": "tflrnn", "version": __version__},
        "manifest": Path(manifest_path).name,
        "passed": all(o.passed for o in outcomes),
        "models": [
            {
                "name": o.name,
                "file": f"{o.name}.tflite" if o.data is not None else None,
                **{key: o.summary.get(key) for key in ("input_shape", "output_shape", "activation", "bytes",
                                                        "sha256")},
                "max_abs_error": o.max_abs_error,
                "passed": o.passed,
                "failed_checks": [c["name"] for c in (o.verify or {}).get("checks", []) if not c["passed"]],
                "against": _relative((o.verify or {}).get("against"), directory, o.paths),
                "against_skipped": o.against_skipped,
                "notes": _relative((o.verify or {}).get("notes", []), directory, o.paths),
                "error": _relative(o.error, directory, o.paths),
            }
            for o in outcomes
        ],
    }


def _relative(value, directory: Path, paths: dict):
    """A report value (a string, or the strings in a list or dict) with the entry's paths as the manifest gives
    them (relative to it, in POSIX form, ../ included) and any other path under its directory made relative."""
    if isinstance(value, str):
        for absolute in sorted(paths, key=len, reverse=True):
            value = value.replace(absolute, paths[absolute])
        prefix = str(directory) + os.sep
        return value.replace(prefix, "")
    if isinstance(value, list):
        return [_relative(v, directory, paths) for v in value]
    if isinstance(value, dict):
        return {k: _relative(v, directory, paths) for k, v in value.items()}
    return value


def markdown_report(report: dict) -> str:
    """A table readable as a CI job summary."""
    passed = sum(m["passed"] for m in report["models"])
    lines = [
        f"## tflrnn: {passed} of {len(report['models'])} models passed",
        "",
        "| model | input | output | activation | bytes | sha256 | max error | result |",
        "| --- | --- | --- | --- | ---: | --- | ---: | --- |",
    ]
    for m in report["models"]:
        if m["error"] is not None:
            lines.append(f"| {m['name']} | | | | | | | error: {_cell(m['error'])} |")
            continue
        error = "" if m["max_abs_error"] is None else f"{m['max_abs_error']:.2e}"
        result = "pass" if m["passed"] else "FAIL: " + ", ".join(m["failed_checks"])
        if m["against_skipped"]:
            result += f" (comparison skipped: {_cell(m['against_skipped'])})"
        lines.append(
            f"| {m['name']} | {m['input_shape']} | {m['output_shape']} | {m['activation']} | {m['bytes']:,} | "
            f"`{m['sha256'][:12]}` | {error} | {result} |"
        )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def check_artifacts(outcomes: list[Outcome], out_dir) -> list[str]:
    """Rebuilt models that differ from what DIR holds (CI drift), as one line each; empty when all match."""
    out_dir = Path(out_dir)
    drift = []
    for o in outcomes:
        if o.data is None:
            drift.append(f"{o.name}: cannot rebuild: {o.error}")
            continue
        path = out_dir / f"{o.name}.tflite"
        if not path.is_file():
            drift.append(f"{o.name}: {path} is missing")
        elif (committed := path.read_bytes()) != o.data:
            committed = hashlib.sha256(committed).hexdigest()
            drift.append(f"{o.name}: {path} differs from a rebuild (committed sha256 {committed[:12]}, rebuild "
                         f"{o.summary['sha256'][:12]})")
    expected = {f"{o.name}.tflite" for o in outcomes}
    for path in sorted(out_dir.glob("*.tflite")):
        if path.name not in expected:
            drift.append(f"{path} is not in the manifest")
    sums = out_dir / "SHA256SUMS"
    if not sums.is_file() or sums.read_text() != sha256sums(outcomes):
        drift.append(f"{sums} does not list the rebuilt models")
    return drift
