"""The `tflrnn` command: parse, call the library, print.

Exit codes: 0 success; 1 verify ran and a check failed; 2 bad input (one line on stderr, no output file);
3 internal error (a bug: rerun with --debug for the traceback); 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path

import click

from .errors import TflrnnError
from .reference import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SEQUENCES
from .version import __version__

# Each command imports what it needs when it runs: `tflrnn build` must not pay for the reader or the runtime.

_debug = os.environ.get("TFLRNN_DEBUG", "").lower() not in ("", "0", "false", "no")
_path = click.Path(path_type=Path)  # existence is checked by the library, with its own message


class _SizeOrDynamic(click.ParamType):
    """An integer, or the word "dynamic" (checked by the library, which says why a batch cannot be)."""

    name = "integer|dynamic"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "dynamic":
            return value
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is neither an integer nor 'dynamic'", param, ctx)


_size_or_dynamic = _SizeOrDynamic()


class _BatchSize(_SizeOrDynamic):
    """An integer. "dynamic" is still passed on, for the library to say why a batch cannot be, but help does not
    offer it."""

    name = "integer"


_batch_size = _BatchSize()
_TYPES = {"int": int, "float": float, "path": _path, "size_or_dynamic": _size_or_dynamic, "batch_size": _batch_size}


def _build_options(command):
    """`tflrnn build`'s options, from the one table that declares them (options.py)."""
    from .options import BUILD_OPTIONS

    for option in reversed(BUILD_OPTIONS):
        kind = click.Choice(list(option.choices)) if option.choices else _TYPES.get(option.type)
        extra = {"is_flag": True, "default": None} if option.flag else {"type": kind}
        if "/" in option.flags[0]:
            extra["default"] = None
        command = click.option(*option.flags, option.key, help=option.help, **extra)(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tflrnn")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
def cli(debug: bool) -> None:
    """Write and verify TFLite models of recurrent networks (basic RNN, GRU and LSTM cells): TFLite's fused ops
    (UNIDIRECTIONAL_SEQUENCE_RNN / _LSTM, stacked and bidirectional; an LSTM also in full int8, on TFLite's integer
    LSTM kernel) or plain builtin ops every TFLite runtime runs (--lowering portable, float or full int8)."""
    global _debug
    _debug = _debug or debug
    if debug:
        os.environ["TFLRNN_DEBUG"] = "1"  # for the library too: native logs and child processes' stderr shown


@cli.command()
@_build_options
@click.option("-o", "--output", type=_path, default=Path("rnn.tflite"), show_default=True)
@click.option("--manifest", type=_path, help="Build and verify every model a manifest (TOML/JSON) lists.")
@click.option("--out-dir", type=_path, default=Path("tflrnn-models"), show_default=True,
              help="With --manifest: where the models, SHA256SUMS, report.json and report.md go.")
@click.option("--check", is_flag=True, help="With --manifest: rebuild in memory; exit 1 if --out-dir differs.")
@click.option("--jobs", type=int, help="With --manifest: models built at once (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (with --manifest: the report) as JSON.")
@click.pass_context
def build(ctx, output, manifest, out_dir, check, jobs, as_json, **chosen):
    """Write a .tflite: fused RNN or LSTM ops (one per layer) or the portable lowering, the state carried in the
    model (zero at first and after a reset), given by the caller, or none."""
    from .builder import build_file
    from .config import BuildOptions, resolve_build_options

    if manifest is not None:
        single = [p.opts[0] for p in ctx.command.params
                  if p.name not in ("manifest", "out_dir", "check", "jobs", "as_json")
                  and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
        if single:
            raise TflrnnError(f"--manifest builds what the manifest says; drop {', '.join(single)}")
        ctx.exit(_build_manifest(manifest, out_dir, check, jobs, as_json))
    manifest_only = [f"--{name.replace('_', '-')}" for name in ("out_dir", "check", "jobs")
                     if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if manifest_only:
        raise TflrnnError(f"--out-dir, --check and --jobs go with --manifest; without one, build writes the model -o "
                          f"names: drop {', '.join(manifest_only)}")

    options = BuildOptions(**chosen)
    weights, activation, lowering = chosen["weights"], chosen["activation"], chosen["lowering"]
    plan = resolve_build_options(options)
    summary = build_file(output, **plan.options)
    summary["sizes_from"] = plan.origins
    if plan.source is not None:
        summary["source"] = {"path": str(weights), **plan.source.to_dict()}
        if plan.sources:
            summary["source"]["cells"] = [s.to_dict() for s in plan.sources]
    if as_json:
        click.echo(_json(summary))
        return
    for source in plan.sources or ([plan.source] if plan.source is not None else []):
        click.echo(f"read {weights}: {source.describe(activation)}")
    layout = "time-major" if summary["time_major"] else "batch-major"
    stages = _stages(summary["layers"])
    if summary["bidirectional"] and len(stages) == 1:
        layer = summary["layers"][0]
        what = f"forward and backward {layer['units']} {_cell_text(layer)}"
    elif summary["bidirectional"]:  # layer by layer, one way or both (a plain layer, then a bidirectional one...)
        what = f"{len(stages)} layers (" + ", ".join(stages) + ")"
    elif len(summary["layers"]) == 1:
        what = f"state {summary['state_shape']}, {_cell_text(summary)}"
    else:
        what = f"{len(summary['layers'])} layers (" + ", ".join(
            f"{layer['units']} {_cell_text(layer)}" for layer in summary["layers"]) + ")"
    if summary.get("dense"):
        what += ", then dense " + ", ".join(f"{d['units']} {d['activation']}" for d in summary["dense"])
    from .lowering import lowering as lowering_named

    if len(lowering_named(summary["lowering"]).states) > 1 or summary["state"] != "carry":
        what += f", state {summary['state']}"
    if summary.get("recurrence"):
        what += f", steps {summary['recurrence']}"
        if (summary.get("steps_per_iteration") or 1) > 1:
            what += f" ({summary['steps_per_iteration']} a pass)"
    if summary.get("int8"):
        arena = summary["int8"]["micro_arena_bytes"]
        from .arena import not_measured

        wide = (", int16 values, int8 weights (16x8)" if summary["int8"]["values"] == "int16" else
                ", int16 input" if summary["int8"]["input"]["type"] == "int16" else "")
        what += (f", full int8 ({summary['int8']['io']} interface{wide}, TFLite Micro arena "
                 + (f"{arena:,} bytes)" if arena else f"{not_measured()})"))
    click.echo(
        f"{output}: {summary['op']} input {summary['input_shape']} -> output {summary['output_shape']}, "
        f"{what}, {layout}, {summary['bytes']:,} bytes, sha256 {summary['sha256']}"
    )
    click.echo("  " + _sizes_line(summary))
    from .cells import kind as cell_kind

    unfused = sorted({layer["cell"] for layer in summary["layers"] if not cell_kind(layer["cell"]).fused})
    if unfused and lowering is None:
        click.echo(f"  {', '.join(k.upper() for k in unfused)}: TFLite has no builtin op, so the portable lowering "
                   "(plain builtin ops every TFLite runtime runs)")
    calibration = (summary.get("int8") or {}).get("calibration")
    if calibration:
        from .verification.data import clipped_text

        measured = ("" if calibration["max_error"] is None else
                    f"on its {calibration['sequences']} calibration sequences against the float model (LiteRT): error "
                    f"max {calibration['max_error']:.4g}, mean {calibration['mean_error']:.4g}; ")
        click.echo(f"  {measured}beyond the int8 formats: {clipped_text(calibration['clipped'])}")
        for warning in calibration["warnings"]:
            click.echo(f"warning: {warning}", err=True)


def _cell_text(layer: dict) -> str:
    """A layer as the summary names it: its activation for the basic cell, its kind for the others."""
    if layer.get("cell", "rnn") == "rnn":
        return layer["activation"]
    return layer["cell"].upper() + _settings_text(layer)


def _settings_text(layer: dict) -> str:
    """A cell's settings as the summary and inspect say them, in its kind's words (cells/: a GRU's reset before, an
    LSTM's cell_clip)."""
    from .cells import kind

    describe = kind(layer.get("cell", "rnn")).describe
    return describe(layer) if describe else ""


def _stages(layers: list[dict]) -> list[str]:
    """The summary's layers stage by stage: `rnn/cell_0 5 tanh`, a bidirectional one as `rnn/cell_1 forward and
    backward 4 tanh` (its directions are named <name>/fw and <name>/bw)."""
    stages, previous = [], None
    for layer in layers:
        base, _, direction = layer["name"].rpartition("/")
        if direction == "bw" and previous is not None and previous["name"] == f"{base}/fw":
            stages[-1] = f"{base} forward and backward {layer['units']} {_cell_text(layer)}"
        else:
            stages.append(f"{layer['name']} {layer['units']} {_cell_text(layer)}")
        previous = layer
    return stages


def _quantization_text(q: dict | None) -> str:
    """A tensor's quantization: `scale 0.0305 zero_point -2`, or its per-channel scales' range."""
    if not q or not q["scale"]:
        return ""
    if len(q["scale"]) == 1:  # a file may hold fewer zero points than scales: shown as they are
        return f"scale {q['scale'][0]:.6g} zero_point {q['zero_point'][0] if q['zero_point'] else 'none'}"
    return (f"{len(q['scale'])} channels (axis {q['quantized_dimension']}), scales {min(q['scale']):.4g} .. "
            f"{max(q['scale']):.4g}")


def _sizes_line(summary: dict) -> str:
    """Where each size came from, so that a default is never silent: `time_steps 20 (from the Keras Input), ...`."""
    shape = summary["input_shape"]
    time, batch = (shape[0], shape[1]) if summary["time_major"] else (shape[1], shape[0])
    values = {"input_size": shape[2], "time_steps": "dynamic" if time == -1 else time, "batch_size": batch}
    origins = summary["sizes_from"]
    shown = [f"{key} {value} ({_origin(origins[key])})" for key, value in values.items()]
    shown.append(f"{'time-major' if summary['time_major'] else 'batch-major'} ({_origin(origins['time_major'])})")
    return ", ".join(shown)


def _origin(origin: str) -> str:
    return origin if origin == "default" else f"from {origin}"


def _build_manifest(manifest: Path, out_dir: Path, check: bool, jobs: int | None, as_json: bool) -> int:
    from .manifest import build_all, check_artifacts, load_manifest, manifest_report, write_artifacts

    entries = load_manifest(manifest)
    if jobs is not None and jobs < 1:
        raise TflrnnError(f"--jobs must be a positive integer, got {jobs}")
    done = []
    verb = "rebuilding" if check else "building"
    on_terminal = sys.stderr.isatty()
    progress = (click.progressbar(length=len(entries), label=f"{verb} {len(entries)} models", file=sys.stderr)
                if on_terminal else contextlib.nullcontext())

    def show(outcome) -> None:
        done.append(outcome)
        if on_terminal:
            bar.update(1)
            return
        if outcome.error is not None:
            state = f"error: {outcome.error}"
        elif check:
            state = f"rebuilt ({outcome.summary['bytes']:,} bytes)"
        else:
            error = "" if outcome.max_abs_error is None else f", max error {outcome.max_abs_error:.2e}"
            skipped = f"; comparison skipped: {outcome.against_skipped}" if outcome.against_skipped else ""
            state = f"{'pass' if outcome.passed else 'FAIL'} ({outcome.summary['bytes']:,} bytes{error}{skipped})"
        click.echo(f"[{len(done)}/{len(entries)}] {outcome.name}: {state}", err=as_json)

    with progress as bar:
        outcomes = build_all(entries, jobs, show, check_models=not check)
    if check:
        drift = check_artifacts(outcomes, out_dir)
        for line in drift:
            click.echo(f"drift: {line}", err=as_json)
        click.echo(f"{out_dir}: {'up to date' if not drift else f'{len(drift)} difference(s)'}", err=as_json)
        if as_json:
            click.echo(_json({"out_dir": str(out_dir), "up_to_date": not drift, "drift": drift}))
        return 0 if not drift else 1
    write_artifacts(outcomes, out_dir, manifest)
    report = manifest_report(outcomes, manifest)
    failed = [m["name"] for m in report["models"] if not m["passed"]]
    if as_json:
        click.echo(_json(report))
    else:
        click.echo(f"{out_dir}: {len(outcomes) - len(failed)} of {len(outcomes)} models passed"
                   + (f"; failed: {', '.join(failed)}" if failed else "")
                   + " (SHA256SUMS, report.json, report.md)")
    return 0 if not failed else 1


@cli.command()
@click.argument("model", type=_path)
@click.option("--weights", type=_path, help="Also check the model holds exactly these trained weights (any format).")
@click.option("--against", type=_path,
              help="Also run the source model (Keras, ONNX, PyTorch, TF checkpoint) in its framework and compare.")
@click.option("--format", "source_format", metavar="FORMAT",
              help="Format of --against / --weights: npz, keras, checkpoint, safetensors, torch or onnx.")
@click.option("--layer", help="Keras: the SimpleRNN, GRU or LSTM layer of --against / --weights.")
@click.option("--scope", help="TF checkpoint: the variable scope of --against / --weights.")
@click.option("--layer-index", type=int, help="PyTorch: the nn.RNN, nn.GRU or nn.LSTM layer of --against / --weights.")
@click.option("--runtime", type=click.Choice(["litert", "tensorflow", "compiled", "micro", "all"]), default="litert",
              show_default=True,
              help="Interpreter(s) to run the model on: LiteRT's classic Interpreter, tf.lite, LiteRT's CompiledModel "
                   "API, TFLite Micro, or all (for a fused model: litert and tensorflow, and micro when its ops are "
                   "all UNIDIRECTIONAL_SEQUENCE_LSTM; for a portable one: every one installed).")
@click.option("--atol", type=float, default=DEFAULT_ATOL, show_default=True, help="Absolute tolerance.")
@click.option("--rtol", type=float, default=DEFAULT_RTOL, show_default=True, help="Relative tolerance.")
@click.option("--sequences", type=int, default=DEFAULT_SEQUENCES, show_default=True,
              help="Consecutive invokes (the state must carry across them).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--data", type=_path,
              help="Your own input sequences, .npy or .npz [N,B,T,I] ([N,T,B,I] time-major): run the model over them "
                   "(the state as it keeps it) against the float network, and report the max and mean error and, for "
                   "a full-int8 model, the share of values each int8 format clips.")
@click.option("--max-error", type=float,
              help="With --data: fail when an output is further than this from the float network (the recurrent "
                   "layers' float weights of --weights when given, else the model's own).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schemas/verify-report.schema.json).")
@click.pass_context
def verify(ctx, model, weights, against, source_format, layer, scope, layer_index, runtime, atol, rtol, sequences,
           seed, data, max_error, as_json):
    """Check MODEL's structure and run it against the numpy reference: on LiteRT, or with --runtime on tf.lite,
    LiteRT's CompiledModel API, TFLite Micro or all of them. A model another tool wrote: only its outputs, --against
    the Keras model it came from."""
    from .verification import verify as verify_model

    report = verify_model(model, weights=weights, against=against, format=source_format, layer=layer,
                          scope=scope, layer_index=layer_index, runtime=runtime, atol=atol, rtol=rtol,
                          sequences=sequences, seed=seed, data=data, max_error=max_error)
    if as_json:
        click.echo(_json(report.to_dict()))
    else:
        several = len({c.runtime for c in report.checks if c.runtime}) > 1  # some may have failed to load
        labels = [c.name + (f" [{c.runtime}]" if c.runtime and several else "") for c in report.checks]
        width = max(map(len, labels))
        for label, check in zip(labels, report.checks):
            click.echo(f"{'PASS' if check.passed else 'FAIL'}  {label:<{width}}  {check.detail}")
        for note in report.notes:
            click.echo(f"note: {note}")
        runtime = " on " + ", ".join(f"{r['name']} {r['version']}" for r in report.runtimes) if report.runtimes else ""
        if report.passed:
            click.echo(f"{model}: all {len(report.checks)} checks passed{runtime}")
        else:
            failed = ", ".join(label for label, c in zip(labels, report.checks) if not c.passed)
            click.echo(f"{model}: {len(report.failures)} of {len(report.checks)} checks failed{runtime}: {failed}")
    ctx.exit(0 if report.passed else 1)


@cli.command()
@click.argument("model", type=_path)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect(model, as_json):
    """Show what MODEL holds: tensors, ops, options, signature, metadata. Reads the file only."""
    from .inspection import inspect as inspect_model

    inspected = inspect_model(model)
    info = inspected.to_dict()
    if as_json:
        click.echo(_json(info))
        return
    click.echo(f"{info['model']}: {info['bytes']:,} bytes, sha256 {info['sha256']}")
    click.echo(f"schema version {info['schema_version']}, description {info['description']!r}")
    if info["network"] is not None:
        from .cells import kind

        network = info["network"]
        steps = f", steps {network['recurrence']}" if network.get("recurrence") else ""
        if (network.get("steps_per_iteration") or 1) > 1:
            steps += f" ({network['steps_per_iteration']} a pass)"
        click.echo(f"network ({network['lowering']} lowering, state {network['state']}{steps}): " + ", ".join(
            f"'{layer['name']}' {kind(layer['cell']).title}"
            + (f" {layer['activation']}" if layer["cell"] == "rnn" else "")
            + _settings_text(layer)
            + f" {layer['units']} units (input {layer['input_size']})" for layer in network["layers"]))
    for index, graph in enumerate(info["subgraphs"]):
        click.echo(f"subgraph {index} {graph['name']!r}: inputs {graph['inputs']}, outputs {graph['outputs']}")
        name_width = max([len(t["name"]) for t in graph["tensors"]] + [4])
        click.echo(f"  {'#':>3}  {'name':<{name_width}}  {'shape':<16} {'dtype':<8} {'variable':<8} {'bytes':>12}"
                   "  quantization")
        for t in graph["tensors"]:
            variable = "yes" if t["variable"] else ""
            click.echo(
                f"  {t['index']:>3}  {t['name']:<{name_width}}  {str(t['shape']):<16} {t['dtype']:<8} "
                f"{variable:<8} {t['bytes']:>12,}  {_quantization_text(t['quantization'])}".rstrip()
            )
        for index_op, op in enumerate(graph["operators"]):
            click.echo(
                f"  op {index_op}: {op['op']} v{op['version']} (builtin_code {op['builtin_code']}, "
                f"deprecated_builtin_code {op['deprecated_builtin_code']}) inputs {op['inputs']} "
                f"outputs {op['outputs']}" + (f" intermediates {op['intermediates']}" if op.get("intermediates") else "")
            )
            if op["options"]:
                click.echo("    " + ", ".join(f"{k} {v}" for k, v in op["options"].items() if k != "type")
                           + f" ({op['options']['type']})")
    for sig in info["signatures"]:
        click.echo(f"signature {sig['key']!r}: inputs {sig['inputs']}, outputs {sig['outputs']}")
        tensors = info["subgraphs"][sig["subgraph"]]["tensors"] if sig["subgraph"] < len(info["subgraphs"]) else []
        for key, index in {**sig["inputs"], **sig["outputs"]}.items():
            t = tensors[index] if 0 <= index < len(tensors) else None
            if t is not None and t["quantization"] is not None:
                click.echo(f"  {key}: {t['dtype']}, {_quantization_text(t['quantization'])}")
    if info["micro_arena_bytes"] is not None:
        click.echo(f"TFLite Micro arena: {info['micro_arena_bytes']:,} bytes (the smallest it allocates and runs in, "
                   "measured)")
    elif inspected.full_int8:
        from .arena import not_measured

        click.echo(f"TFLite Micro arena {not_measured()}")
    for key, value in info["metadata"].items():
        shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        click.echo(f"metadata {key}: {shown}")


@cli.command()
@click.argument("model", type=_path)
@click.option("-o", "--output", type=_path, default=Path("weights.npz"), show_default=True)
@click.option("--format", "names", type=click.Choice(["tflite", "keras"]), default="tflite", show_default=True,
              help="tflite: input_weights [U,I], recurrent_weights, bias (a GRU: [3U,I], ..., and recurrent_bias; an "
                   "LSTM: [4U,I], ...); "
                   "keras: kernel [I,U], recurrent_kernel, bias.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def weights(model, output, names, as_json):
    """Write MODEL's weights to an .npz (TfLiteRNNCell's, a GRU's or an LSTM's role names, or Keras names)."""
    from .weights import export_weights

    written = export_weights(model, output, keras_names=names == "keras")
    if as_json:
        click.echo(_json(written))
    else:
        arrays = ", ".join(f"{k} {v}" for k, v in written["arrays"].items())
        structure = ", and how the layers connect: build --weights rebuilds the model" if written["network"] else ""
        click.echo(f"{output}: {arrays} (weights sha256 {written['weights_sha256']}){structure}")


def _json(document) -> str:
    return json.dumps(document, indent=2, allow_nan=False)  # strict JSON: a NaN here would be a bug, not output


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (CI cancelling a job) cleans up exactly as Ctrl-C does


@cli.command()
@click.argument("model", type=_path)
@click.option("--vs", "other", type=_path, help="Another .tflite to time alternately against MODEL.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed invokes per model.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed invokes first.")
@click.option("--threads", type=int, default=1, show_default=True, help="Interpreter threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the timings as JSON.")
def bench(model, other, runs, warmup, threads, as_json):
    """Invoke latency of MODEL on LiteRT's classic Interpreter with its default XNNPACK delegate (which runs what it
    supports of a portable model; the fused RNN ops run on the builtin kernels), the state reset before each timed
    invoke (a portable model's through its reset signature)."""
    from .benchmark import bench as run_bench

    result = run_bench(model, vs=other, runs=runs, warmup=warmup, threads=threads)
    if as_json:
        click.echo(_json(result))
        return
    for key in ("model", "vs"):
        if key in result:
            t = result[key]
            click.echo(
                f"{t['model']}: median {t['median_us']:,.1f} us per invoke (p10 {t['p10_us']:,.1f}, "
                f"p90 {t['p90_us']:,.1f}), {t['per_step_median_us']:,.2f} us per step over {t['time_steps']} steps"
            )
    if "ratio" in result:
        r = result["ratio"]
        click.echo(f"{other} takes {r['median']:.2f}x as long as {model} (pair by pair: p10 {r['p10']:.2f}x, "
                   f"p90 {r['p90']:.2f}x; {runs} pairs on {result['runtime']['name']} "
                   f"{result['runtime']['version']}, {threads} thread{'s' if threads > 1 else ''})")


def main(argv: list[str] | None = None) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    if not (sys.argv[1:] if argv is None else argv):
        click.echo(cli.get_help(click.Context(cli, info_name="tflrnn")))
        sys.exit(0)
    if not sys.warnoptions:
        # numpy's warnings about NaN or overflow in a hostile file's values: the checks and errors say what is
        # wrong, in one line; a stray warning would only add noise (`python -W` still shows them).
        warnings.filterwarnings("ignore", category=RuntimeWarning)
    try:
        code = cli.main(args=argv, prog_name="tflrnn", standalone_mode=False)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "tflrnn"
        _fail(f"{exc.format_message()} (see '{command} --help')", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except TflrnnError as exc:
        if _debug:
            traceback.print_exc()  # the traceback first; the line and the exit code are those without --debug
        _fail(str(exc), exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        _fail("interrupted", 130)
    except MemoryError:
        _fail("not enough memory for this input", 2)
    except BrokenPipeError:
        sys.stderr.close()  # output piped into something that stopped reading: not an error of ours
        sys.exit(0)
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        if _debug:
            traceback.print_exc()
        hint = "" if _debug else " (rerun with --debug for the traceback)"
        _fail(f"internal error: {type(exc).__name__}: {exc}{hint}", 3)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    click.echo(f"tflrnn: error: {' '.join(message.split())}", err=True)
    sys.exit(code)
